//! The trainer on a tiny randomly initialised model (seconds, no model file):
//! the shared-prompt log-probs equal the one-sequence ones with their
//! gradients, every trainable weight learns, GRPO overfits a reward that pays
//! for one answer, a resumed run ends at the same weights as one that never
//! stopped, a group longer than the training limit is left out, and the warm
//! start fits its reference answers.

use basis_model::generate::SamplingParams;
use basis_model::tiny::{write_random_model, TinySpec};
use basis_model::{Device, LanguageModel, LoraConfig, Precision, Tensor};
use basis_skills::SkillId;
use basis_trainer::checkpoint;
use basis_trainer::feedback::OffPolicy;
use basis_trainer::policy::{Policy, PolicyConfig};
use basis_trainer::train::{self, optimize, Rollout, StepMetrics, TrainConfig};

fn tiny(dir: &std::path::Path) -> LanguageModel {
    write_random_model(dir, &TinySpec::default(), 11).unwrap();
    LanguageModel::load(dir, Precision::F32, &Device::Cpu).unwrap()
}

fn lora() -> PolicyConfig {
    PolicyConfig {
        lora: Some(LoraConfig::new(
            4,
            8.0,
            &["q_proj", "k_proj", "v_proj", "o_proj"],
        )),
        ..PolicyConfig::default()
    }
}

fn full() -> PolicyConfig {
    PolicyConfig {
        lora: None,
        ..PolicyConfig::default()
    }
}

fn max_abs(t: &Tensor) -> f32 {
    t.abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    max_abs(&(a - b).unwrap())
}

/// The gradients of `sum_i w_i · Σ logp_i` for each trainable variable.
fn grads(policy: &Policy, logps: &[Tensor]) -> Vec<Tensor> {
    let mut loss: Option<Tensor> = None;
    for (i, l) in logps.iter().enumerate() {
        let term = (l.sum_all().unwrap() * (i as f64 + 1.0)).unwrap();
        loss = Some(match loss {
            Some(p) => (p + term).unwrap(),
            None => term,
        });
    }
    let g = loss.unwrap().backward().unwrap();
    policy
        .vars()
        .iter()
        .map(|(name, v)| {
            g.get(v.as_tensor())
                .unwrap_or_else(|| panic!("{name} got no gradient"))
                .clone()
        })
        .collect()
}

#[test]
fn the_shared_prompt_gives_the_same_log_probs_and_gradients() {
    let dir = tempfile::tempdir().unwrap();
    for cfg in [lora(), full()] {
        let mut policy = Policy::from_model(tiny(dir.path()), cfg, 3).unwrap();
        // LoRA's B starts at zero: move it so the adapters matter.
        let mut acc = policy.accumulator();
        let l = policy
            .completion_logprobs(&[1, 2, 3], &[4, 5], 1.0)
            .unwrap();
        policy.backward(&l.sum_all().unwrap(), &mut acc).unwrap();
        policy.step(acc).unwrap();

        let prompt = [3u32, 9, 14, 2, 7, 30];
        let completions: [&[u32]; 3] = [&[5, 6, 7, 8], &[9], &[10, 11]];
        let shared = policy.group_logprobs(&prompt, &completions, 0.7).unwrap();
        let single: Vec<Tensor> = completions
            .iter()
            .map(|c| policy.completion_logprobs(&prompt, c, 0.7).unwrap())
            .collect();
        for (a, b) in shared.iter().zip(&single) {
            assert_eq!(a.dims(), b.dims());
            assert!(
                max_diff(a, b) < 1e-5,
                "log-probs differ by {}",
                max_diff(a, b)
            );
        }
        for (ga, gb) in grads(&policy, &shared).iter().zip(grads(&policy, &single)) {
            let scale = max_abs(&gb).max(1e-3);
            assert!(
                max_diff(ga, &gb) / scale < 1e-4,
                "gradients differ by {}",
                max_diff(ga, &gb)
            );
        }
    }
}

#[test]
fn every_trainable_weight_gets_a_gradient_lora_and_full() {
    let dir = tempfile::tempdir().unwrap();
    for (cfg, want) in [(lora(), 2 * 4 * 2), (full(), 2 * 9 + 2)] {
        let policy = Policy::from_model(tiny(dir.path()), cfg, 5).unwrap();
        assert_eq!(policy.vars().len(), want);
        let logps = policy
            .group_logprobs(&[1, 2, 3, 4], &[&[5, 6, 7], &[8, 9]], 1.0)
            .unwrap();
        for (g, (name, _)) in grads(&policy, &logps).iter().zip(policy.vars()) {
            let sum = g
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            // LoRA's A gets no gradient while B is zero; B always does.
            if !name.contains("lora_A") {
                assert!(sum > 0.0, "{name} got an all-zero gradient");
            }
        }
    }
}

/// The optimizer's moments exist, zero and of the right sizes, before the first
/// step: allocated at the first step they would take the space its activations
/// had freed and make the second step grow the heap (see
/// `Policy::reset_optimizer`). A policy without them (a checkpoint saved before
/// its first step) still steps.
#[test]
fn the_optimizer_state_is_allocated_before_the_first_step() {
    let dir = tempfile::tempdir().unwrap();
    for cfg in [lora(), full()] {
        let mut policy = Policy::from_model(tiny(dir.path()), cfg, 5).unwrap();
        let sizes: Vec<usize> = policy.vars().iter().map(|(_, v)| v.elem_count()).collect();
        let m = &policy.moments;
        assert_eq!(m.t, 0);
        for moment in [&m.m, &m.v] {
            assert_eq!(moment.iter().map(Vec::len).collect::<Vec<_>>(), sizes);
            assert!(moment.iter().flatten().all(|&x| x == 0.0));
        }
        policy.moments = basis_trainer::policy::Moments::default();
        let logps = policy.group_logprobs(&[1, 2, 3], &[&[4, 5]], 1.0).unwrap();
        let loss = logps[0].sum_all().unwrap().neg().unwrap();
        let mut acc = policy.accumulator();
        policy.backward(&loss, &mut acc).unwrap();
        policy.step(acc).unwrap();
        assert_eq!(policy.moments.t, 1);
        assert_eq!(policy.moments.m.len(), sizes.len());
    }
}

/// G one-token answers to `prompt` sampled from the policy, reward 1 for
/// `target`. Sampling is seeded by the step, as in `basis train`.
fn toy_rollout(
    policy: &mut Policy,
    cfg: &TrainConfig,
    step: usize,
    prompt: &[u32],
    target: u32,
) -> Rollout {
    let params = SamplingParams {
        temperature: 1.0,
        max_tokens: 1,
        seed: 1000 + step as u64,
        ..SamplingParams::default()
    };
    let generation = policy
        .lm
        .generate_controlled(
            prompt,
            &params,
            cfg.group_size,
            &mut |_| basis_model::generate::Flow::Continue,
            &|| false,
        )
        .unwrap();
    let samples: Vec<(Vec<u32>, Vec<f32>)> = generation
        .completions
        .into_iter()
        .map(|c| (c.token_ids, c.logprobs))
        .collect();
    let rewards = samples
        .iter()
        .map(|(ids, _)| f64::from(u8::from(ids == &[target])))
        .collect();
    Rollout {
        skill: SkillId::Review,
        prompt: prompt.to_vec(),
        samples,
        rewards,
        verdict: None,
    }
}

/// One GRPO step of the toy task ([`toy_rollout`], then the update).
fn toy_step(
    policy: &mut Policy,
    cfg: &TrainConfig,
    step: usize,
    prompt: &[u32],
    target: u32,
) -> StepMetrics {
    let rollout = toy_rollout(policy, cfg, step, prompt, target);
    let mut m = StepMetrics::default();
    optimize(policy, vec![rollout], &[], cfg, step, &mut m).unwrap();
    m
}

/// The share of `n` samples that are `target`.
fn hit_rate(policy: &Policy, prompt: &[u32], target: u32, n: usize) -> f64 {
    let params = SamplingParams {
        temperature: 1.0,
        max_tokens: 1,
        seed: 99,
        ..SamplingParams::default()
    };
    let g = policy
        .lm
        .generate_controlled(
            prompt,
            &params,
            n,
            &mut |_| basis_model::generate::Flow::Continue,
            &|| false,
        )
        .unwrap();
    g.completions
        .iter()
        .filter(|c| c.token_ids == [target])
        .count() as f64
        / n as f64
}

fn toy_config(steps: usize) -> TrainConfig {
    let (lr, epochs) = (3e-2, 2);
    TrainConfig {
        group_size: 16,
        epochs,
        steps,
        policy: PolicyConfig {
            lr,
            warmup_steps: 1,
            total_steps: steps * epochs,
            ..lora()
        },
        ..TrainConfig::default()
    }
}

/// log p(`token` | `prompt`) under the policy at `temperature`.
fn token_logprob(policy: &Policy, prompt: &[u32], token: u32, temperature: f32) -> f32 {
    policy
        .completion_logprobs(prompt, &[token], temperature)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()[0]
}

/// The answer the untrained model gives about as often as chance (1 in the
/// vocabulary's size): the token whose probability after `prompt` is closest.
fn a_chance_answer(policy: &Policy, prompt: &[u32]) -> u32 {
    let vocab = policy.lm.model.config().vocab_size as u32;
    let chance = (1.0 / vocab as f32).ln();
    (1..vocab)
        .min_by(|&a, &b| {
            let lp = |t: u32| token_logprob(policy, prompt, t, 1.0);
            (lp(a) - chance).abs().total_cmp(&(lp(b) - chance).abs())
        })
        .expect("a vocabulary")
}

#[test]
fn grpo_overfits_a_reward_that_pays_for_one_answer() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = toy_config(30);
    let mut policy = Policy::from_model(tiny(dir.path()), cfg.policy.clone(), 1).unwrap();
    let prompt = [4u32, 8, 15, 16, 23];
    let target = a_chance_answer(&policy, &prompt);
    let before = hit_rate(&policy, &prompt, target, 200);
    assert!(
        before < 0.2,
        "the untrained model already says it {before} of the time"
    );
    let mut rewards = Vec::new();
    for step in 0..cfg.steps {
        rewards.push(toy_step(&mut policy, &cfg, step, &prompt, target).reward);
    }
    let after = hit_rate(&policy, &prompt, target, 200);
    assert!(
        after >= 0.9,
        "after {} steps: {after} (rewards per step {rewards:?})",
        cfg.steps
    );
}

#[test]
fn the_kl_term_measures_the_distance_from_the_reference_lora_and_full() {
    // β > 0 through the real update: with LoRA the reference is the model with
    // its adapters off, with full fine-tuning a frozen copy of the starting
    // weights. Both start where the policy is (KL 0) and see it move away.
    let dir = tempfile::tempdir().unwrap();
    let prompt = [4u32, 8, 15, 16, 23];
    for (name, policy_cfg) in [("lora", lora()), ("full", full())] {
        let mut cfg = toy_config(4);
        cfg.epochs = 1;
        cfg.clip.beta = 0.5;
        cfg.policy = PolicyConfig {
            lr: 3e-2,
            warmup_steps: 1,
            total_steps: 4,
            ..policy_cfg
        };
        let mut policy = Policy::from_model(tiny(dir.path()), cfg.policy.clone(), 1).unwrap();
        let target = a_chance_answer(&policy, &prompt);
        if name == "full" {
            // Without its reference, a full fine-tuning run cannot have a KL term.
            let rollout = toy_rollout(&mut policy, &cfg, 0, &prompt, target);
            let err = optimize(
                &mut policy,
                vec![rollout],
                &[],
                &cfg,
                0,
                &mut Default::default(),
            )
            .unwrap_err();
            assert!(
                err.to_string().contains("needs the reference model"),
                "{err}"
            );
            policy.reference = Some(Box::new(tiny(dir.path())));
        }
        // (KL, whether the step updated: a group whose samples all earn the
        // same reward is skipped and measures nothing.)
        let kls: Vec<(f64, bool)> = (0..cfg.steps)
            .map(|step| {
                let m = toy_step(&mut policy, &cfg, step, &prompt, target);
                (m.kl, m.update_tokens > 0)
            })
            .collect();
        assert!(
            kls[0].1 && kls[0].0.abs() < 1e-6,
            "{name}: KL before any step {kls:?}"
        );
        let later: Vec<f64> = kls[1..].iter().filter(|k| k.1).map(|k| k.0).collect();
        assert!(
            !later.is_empty() && later.iter().all(|k| k.is_finite() && *k > 1e-6),
            "{name}: KL after steps {kls:?}"
        );
    }
}

#[test]
fn feedback_episodes_alone_move_the_policy_toward_what_was_accepted() {
    // Two recorded suggestions for one prompt, one accepted (reward 1) and one
    // rejected (0), with the behaviour log-probs the server recorded. Trained
    // on them alone, the accepted answer becomes likelier and the rejected one
    // less likely; a weight of 0 leaves the policy as it was; log-probs
    // recorded far below the policy's clip the ratio.
    let dir = tempfile::tempdir().unwrap();
    let prompt = [4u32, 8, 15, 16, 23];
    let (good, bad) = (7u32, 9u32);
    let episodes = |policy: &Policy, shift: f32, temperature: f32| -> Vec<OffPolicy> {
        [(good, 1.0), (bad, 0.0)]
            .iter()
            .map(|&(t, reward)| {
                let lp = token_logprob(policy, &prompt, t, temperature);
                OffPolicy {
                    id: format!("s{t}"),
                    skill: "edit".into(),
                    prompt_ids: prompt.to_vec(),
                    completion_ids: vec![t],
                    logprobs: vec![lp - shift],
                    temperature,
                    reward,
                }
            })
            .collect()
    };
    let logp = |policy: &Policy, t: u32| token_logprob(policy, &prompt, t, 1.0);
    let mut cfg = toy_config(5);
    cfg.epochs = 1;
    let mut policy = Policy::from_model(tiny(dir.path()), cfg.policy.clone(), 1).unwrap();
    let before = (logp(&policy, good), logp(&policy, bad));
    for step in 0..cfg.steps {
        let mut m = StepMetrics::default();
        let fb = episodes(&policy, 0.0, 1.0);
        optimize(&mut policy, Vec::new(), &fb, &cfg, step, &mut m).unwrap();
        assert_eq!(m.feedback_episodes, 2, "{m:?}");
        assert!(m.update_tokens > 0, "{m:?}");
    }
    let after = (logp(&policy, good), logp(&policy, bad));
    assert!(
        after.0 > before.0 + 0.1,
        "accepted: {before:?} -> {after:?}"
    );
    assert!(
        after.1 < before.1 - 0.1,
        "rejected: {before:?} -> {after:?}"
    );

    // Weight 0: feedback is not trained on.
    let mut quiet = cfg.clone();
    quiet.feedback_weight = 0.0;
    let mut m = StepMetrics::default();
    let fb = episodes(&policy, 0.0, 1.0);
    optimize(&mut policy, Vec::new(), &fb, &quiet, 0, &mut m).unwrap();
    assert_eq!(m.feedback_episodes, 0);
    assert_eq!((logp(&policy, good), logp(&policy, bad)), after);

    // Behaviour log-probs far below the policy's: the accepted answer's ratio
    // is far above 1 + ε_high and clipped.
    let mut m = StepMetrics::default();
    let fb = episodes(&policy, 5.0, 1.0);
    optimize(&mut policy, Vec::new(), &fb, &cfg, 0, &mut m).unwrap();
    assert!(m.clip_fraction > 0.0, "{m:?}");

    // Recorded at another temperature than the run samples at: the policy's
    // log-probs are computed at the record's, so before any step the ratio is
    // 1 (at the run's it would not be).
    let mut policy = Policy::from_model(tiny(dir.path()), cfg.policy.clone(), 1).unwrap();
    let mut m = StepMetrics::default();
    let fb = episodes(&policy, 0.0, 0.5);
    assert_ne!(fb[0].logprobs, episodes(&policy, 0.0, 1.0)[0].logprobs);
    optimize(&mut policy, Vec::new(), &fb, &cfg, 0, &mut m).unwrap();
    assert!((m.ratio - 1.0).abs() < 1e-5, "{m:?}");
    assert_eq!(m.clip_fraction, 0.0, "{m:?}");
}

#[test]
fn a_resumed_run_ends_at_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    let cfg = toy_config(6);
    let prompt = [4u32, 8, 15, 16, 23];
    let target = a_chance_answer(
        &Policy::from_model(tiny(&model), cfg.policy.clone(), 1).unwrap(),
        &prompt,
    );
    let state = |step: usize| checkpoint::State {
        schema: "basis.checkpoint/1".into(),
        step,
        optimizer_steps: 0,
        seed: cfg.seed,
        config_digest: cfg.digest(),
    };
    let weights = |p: &Policy| -> Vec<Vec<f32>> {
        p.vars()
            .iter()
            .map(|(_, v)| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
            .collect()
    };

    let mut straight = Policy::from_model(tiny(&model), cfg.policy.clone(), 1).unwrap();
    let initial = weights(&straight);
    for step in 0..6 {
        toy_step(&mut straight, &cfg, step, &prompt, target);
    }
    assert_ne!(
        weights(&straight),
        initial,
        "six steps changed nothing: the test would prove nothing"
    );

    let run = dir.path().join("run");
    let mut first = Policy::from_model(tiny(&model), cfg.policy.clone(), 1).unwrap();
    for step in 0..3 {
        toy_step(&mut first, &cfg, step, &prompt, target);
    }
    let mut st = state(3);
    st.optimizer_steps = first.moments.t;
    checkpoint::save(&run, &first, &st).unwrap();
    drop(first);

    // A new process would start from a fresh policy (other adapter seeds even).
    let mut resumed = Policy::from_model(tiny(&model), cfg.policy.clone(), 77).unwrap();
    let dir_latest = checkpoint::latest(&run).expect("a checkpoint");
    let loaded = checkpoint::load(&dir_latest, &mut resumed).unwrap();
    assert_eq!(loaded.step, 3);
    for step in loaded.step..6 {
        toy_step(&mut resumed, &cfg, step, &prompt, target);
    }
    assert_eq!(
        weights(&straight),
        weights(&resumed),
        "the resumed run's weights differ"
    );
    assert_eq!(straight.moments, resumed.moments);
}

#[test]
fn a_group_longer_than_the_training_limit_is_left_out_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let prompt = [5u32, 6, 7, 8];
    let rollout = Rollout {
        skill: SkillId::Review,
        prompt: prompt.to_vec(),
        samples: vec![
            (vec![9, 10], vec![-1.0, -1.0]),
            (vec![11, 12], vec![-1.0, -1.0]),
        ],
        rewards: vec![1.0, 0.0],
        verdict: None,
    };
    let weights = |p: &Policy| -> Vec<Vec<f32>> {
        p.vars()
            .iter()
            .map(|(_, v)| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
            .collect()
    };
    for (limit, trains) in [(prompt.len() + 1, false), (prompt.len() + 2, true)] {
        let cfg = TrainConfig {
            max_train_tokens: limit,
            ..toy_config(1)
        };
        let mut policy = Policy::from_model(tiny(dir.path()), cfg.policy.clone(), 1).unwrap();
        let before = weights(&policy);
        let mut m = StepMetrics::default();
        optimize(&mut policy, vec![rollout.clone()], &[], &cfg, 0, &mut m).unwrap();
        assert_eq!(m.skipped_too_long, usize::from(!trains), "limit {limit}");
        assert_eq!(m.skipped_groups, 0);
        assert_eq!(weights(&policy) != before, trains, "limit {limit}");
    }
}

#[test]
fn the_warm_start_fits_its_answers_then_gives_back_the_rl_settings() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = PolicyConfig {
        lr: 1e-4,
        total_steps: 7,
        ..lora()
    };
    let mut policy = Policy::from_model(tiny(dir.path()), cfg, 1).unwrap();
    // Two prompts that differ in one token, each with its own answer: the
    // answer has to depend on the prompt.
    let examples = vec![
        (vec![3u32, 9, 14, 2], vec![20u32, 21, 22]),
        (vec![3u32, 9, 15, 2], vec![23u32, 24]),
    ];
    let nll = |p: &Policy| -> f64 {
        examples
            .iter()
            .map(|(prompt, answer)| {
                let l = p.completion_logprobs(prompt, answer, 1.0).unwrap();
                -f64::from(l.mean_all().unwrap().to_scalar::<f32>().unwrap())
            })
            .sum::<f64>()
            / examples.len() as f64
    };
    let before = nll(&policy);
    let losses = train::warm_start(&mut policy, &examples, 40, 2, 2e-2, 0, &mut |_| {}).unwrap();
    let after = nll(&policy);
    assert_eq!(losses.len(), 40);
    assert!(
        after < 0.1 * before && losses[39] < 0.1 * losses[0],
        "the answers were not fitted: {before:.3} -> {after:.3}, losses {losses:?}"
    );
    // Reinforcement learning goes on with its own rate, schedule and a
    // fresh optimizer.
    assert_eq!((policy.cfg.lr, policy.cfg.total_steps), (1e-4, 7));
    assert_eq!(policy.moments.t, 0);
}
