//! `basis train`: joint reinforcement learning over the skills with GRPO
//! (docs/design.md, "The training loop").
//!
//! A step takes a batch of tasks from one buffer that mixes the selected skills
//! in a seeded random order, the same number of each; samples a group of G
//! answers to each task's prompt (one prefill, decoded as one batch, by the
//! sampling model: the served quantized model with the current adapter, or the
//! policy itself); scores them with the skills' verifiers on threads of their
//! own (the sandbox runs code); skips groups whose rewards all agree; and takes
//! `epochs` optimizer steps on the batch's clipped surrogate ([`crate::grpo`]),
//! with the behaviour log-probs kept from sampling. Editor feedback, when
//! given, joins each batch as off-policy episodes ([`crate::feedback`]).
//!
//! The reward is the skills' graded one by default, the paper's binary one
//! with [`RewardKind::Binary`]; graded, a batch's review groups are weighed so
//! that the YES and the NO tasks carry half of it each
//! ([`basis_skills::review::class_weights`]).
//!
//! Every step appends one JSON line to `RUN_DIR/metrics.jsonl`; every
//! `checkpoint_every` steps, and at the end, a checkpoint is written
//! ([`crate::checkpoint`]). Randomness comes from the seed and the step only.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use basis_model::LanguageModel;
use basis_skills::generate::{complete_many, Prompt};
use basis_skills::sandbox::Sandbox;
use basis_skills::SkillId;
use candle_core::{DType, Tensor};
use rand::seq::{IndexedRandom, SliceRandom};
use rand::SeedableRng;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::checkpoint;
use crate::episode::{Answer, Episode, RewardKind, ScoreCache};
use crate::feedback::OffPolicy;
use crate::grpo::{self, Clip, LossParts};
use crate::policy::{Policy, PolicyConfig};
use crate::sampling::{self, History, Outcome};
use crate::task::Task;
use crate::workspace::{TaskTree, Workspaces};
use crate::TrainError;

/// The longest sequence (prompt and answer, in tokens) an update trains on by
/// default: a LoRA step of the default model holds about 2.7 MB a token
/// (BENCHMARKS.md), so 4,096 tokens fit in about 12 GB.
pub const DEFAULT_MAX_TRAIN_TOKENS: usize = 4096;

/// How to train.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    pub skills: Vec<SkillId>,
    /// Rollout steps.
    pub steps: usize,
    /// Tasks (groups) per step.
    pub tasks_per_step: usize,
    /// Samples per task (G).
    pub group_size: usize,
    /// Optimizer steps per batch of rollouts.
    pub epochs: usize,
    /// Optimizer steps per epoch: the batch's sequences split this many ways
    /// (gradients accumulate within each part).
    pub minibatches: usize,
    pub temperature: f32,
    /// At most this many tokens a rollout (`None`: the skill's own limit).
    pub max_new_tokens: Option<usize>,
    /// Tokens the update runs the model on at once: a group's prompt and as
    /// many of its completions as fit (the rest in further parts). A sequence
    /// (prompt and answer) longer than this is left out and counted. Training
    /// memory grows with it.
    pub max_train_tokens: usize,
    pub clip: Clip,
    /// Divide advantages by the group's std (TRL's `scale_rewards`).
    pub scale_rewards: bool,
    pub seed: u64,
    pub checkpoint_every: usize,
    /// Scoring threads (sandbox runs at once).
    pub jobs: usize,
    /// The weight of editor-feedback episodes against the verifiable tasks.
    pub feedback_weight: f64,
    /// The reward optimised.
    pub reward: RewardKind,
    /// Prefer tasks whose groups had reward variance ([`crate::sampling`]).
    pub curriculum: bool,
    /// More draws a step may take while too few groups have variance.
    pub draw_rounds: usize,
    /// Samples for a task never rewarded yet (at least `group_size`).
    pub max_group_size: usize,
    pub policy: PolicyConfig,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            skills: SkillId::ALL.to_vec(),
            steps: 20,
            tasks_per_step: 5,
            group_size: 8,
            epochs: 2,
            minibatches: 1,
            temperature: 1.0,
            max_new_tokens: None,
            max_train_tokens: DEFAULT_MAX_TRAIN_TOKENS,
            clip: Clip::default(),
            scale_rewards: true,
            seed: 0,
            checkpoint_every: 5,
            jobs: std::thread::available_parallelism().map_or(2, |n| n.get()),
            feedback_weight: 0.5,
            reward: RewardKind::default(),
            curriculum: true,
            draw_rounds: 2,
            max_group_size: 16,
            policy: PolicyConfig::default(),
        }
    }
}

impl TrainConfig {
    /// A digest of what decides the weights (a resumed run must match it).
    pub fn digest(&self) -> String {
        let mut text = format!(
            "{:?}|{}|{}|{}|{}|{}|{}|{:?}|{}|{:?}|{}|{}|{}|{:?}",
            self.skills,
            self.steps,
            self.tasks_per_step,
            self.group_size,
            self.epochs,
            self.minibatches,
            self.temperature,
            self.max_new_tokens,
            self.max_train_tokens,
            self.clip,
            self.scale_rewards,
            self.seed,
            self.feedback_weight,
            self.policy
        );
        // Runs from before the choice were binary: theirs keep their digest.
        if self.reward != RewardKind::Binary {
            text.push_str(&format!("|{}", self.reward.as_str()));
        }
        // Likewise runs from before the sampling choices, which had none.
        if self.curriculum || self.draw_rounds > 0 || self.max_group_size > self.group_size {
            text.push_str(&format!(
                "|{}|{}|{}",
                self.curriculum, self.draw_rounds, self.max_group_size
            ));
        }
        let d = Sha256::digest(text.as_bytes());
        d.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

/// Who samples the rollouts.
pub enum Sampler {
    /// A serving model (quantized) given the policy's adapter after each step.
    Served(Box<LanguageModel>),
    /// The policy's own model (full fine-tuning, or no separate serving model).
    Policy,
}

/// One step's metrics (a line of `metrics.jsonl`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct StepMetrics {
    pub step: usize,
    pub reward: f64,
    pub reward_per_skill: BTreeMap<String, f64>,
    /// What `reward` is: the skills' graded reward or the paper's binary one.
    pub reward_kind: RewardKind,
    pub loss: f64,
    pub kl: f64,
    pub clip_fraction: f64,
    pub ratio: f64,
    pub grad_norm: f64,
    pub lr: f64,
    pub groups: usize,
    pub skipped_groups: usize,
    /// Groups and feedback episodes longer than `max_train_tokens`.
    pub skipped_too_long: usize,
    pub skipped_non_finite: usize,
    pub rollout_tokens: usize,
    pub rollout_tokens_per_s: f64,
    /// The sampled groups' prompt tokens (each prefilled once a group) and the
    /// seconds the sampling took, prefills included.
    pub rollout_prompt_tokens: usize,
    pub rollout_secs: f64,
    pub update_tokens: usize,
    pub update_tokens_per_s: f64,
    pub feedback_episodes: usize,
    /// Answers whose score came from the run's cache (the same completion to
    /// the same task earlier in the run, in this step's group included).
    pub cached_scores: usize,
    /// Answers whose verifier failed (they count as reward 0).
    pub unscored: usize,
    /// Chosen tasks that could not be made ready (left out of the step).
    pub unready_tasks: usize,
    /// What went wrong with those, each message once (at most [`MAX_ERRORS`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Tasks rolled out, in how many draws beyond the first (dynamic sampling),
    /// how many of their groups had reward variance, and how many got the
    /// larger group of a task never rewarded ([`crate::sampling`]).
    pub drawn_tasks: usize,
    pub extra_draws: usize,
    pub signal_groups: usize,
    pub grown_groups: usize,
    /// What each group showed of its task (the curriculum's history).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outcomes: Vec<Outcome>,
    pub seconds: f64,
}

/// Steps in a row without one group with reward variance, after every draw,
/// that end a run: its tasks hold nothing this policy can learn from.
pub const STEPS_WITHOUT_SIGNAL: usize = 3;

/// Distinct error messages kept in a step's metrics.
pub const MAX_ERRORS: usize = 5;

impl StepMetrics {
    fn error(&mut self, message: String) {
        if self.errors.len() < MAX_ERRORS && !self.errors.contains(&message) {
            self.errors.push(message);
        }
    }
}

/// What the caller hears as the run goes.
pub enum Event<'a> {
    Phase(&'a str),
    Step(&'a StepMetrics),
    /// A warm-start batch was fitted: `done` of the epoch's `of` answers.
    Fitted {
        epoch: usize,
        epochs: usize,
        done: usize,
        of: usize,
    },
    /// A warm-start epoch ended (1-based), with its mean loss.
    Epoch {
        epoch: usize,
        epochs: usize,
        loss: f64,
    },
    /// The weights after `step` steps (first those the run starts or resumes
    /// from), in the model that samples the rollouts: for a caller that scores
    /// them on held-out tasks ([`crate::validation`]).
    Trained {
        step: usize,
        lm: &'a LanguageModel,
    },
}

/// Shows the caller the sampling model with the policy's current weights.
fn trained(policy: &mut Policy, sampler: &Sampler, step: usize, on: &mut dyn FnMut(Event<'_>)) {
    match sampler {
        Sampler::Served(lm) => on(Event::Trained { step, lm }),
        Sampler::Policy => {
            policy.lm.model.set_op_mode(basis_model::OpMode::Fused);
            on(Event::Trained {
                step,
                lm: &policy.lm,
            });
            policy
                .lm
                .model
                .set_op_mode(basis_model::OpMode::Differentiable);
        }
    }
}

/// A scored group: G samples of one prompt, with the behaviour log-probs of
/// their tokens and their rewards.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    pub skill: SkillId,
    pub prompt: Vec<u32>,
    /// (completion token ids, behaviour log-probs), one per sample.
    pub samples: Vec<(Vec<u32>, Vec<f32>)>,
    pub rewards: Vec<f64>,
    /// A review task's right verdict (YES: `true`), which the graded reward
    /// balances the batch by; `None` for the other skills.
    pub verdict: Option<bool>,
}

/// Each group's weight in the update: 1, except under the graded reward for
/// review groups, weighed so that the batch's YES tasks and NO tasks carry
/// half of the review groups' weight each ([`basis_skills::review::class_weights`]).
/// Otherwise a batch of mostly YES tasks pushes a policy that leans to YES
/// further toward it, more on the YES tasks than it pushes back on the NO
/// ones, until it says YES every time.
pub fn group_weights(groups: &[Rollout], reward: RewardKind) -> Vec<f64> {
    let mut weights = vec![1.0; groups.len()];
    if reward != RewardKind::Graded {
        return weights;
    }
    let reviews: Vec<(usize, bool)> = groups
        .iter()
        .enumerate()
        .filter_map(|(i, g)| Some((i, g.verdict?)))
        .collect();
    let verdicts: Vec<bool> = reviews.iter().map(|&(_, v)| v).collect();
    for ((i, _), w) in reviews
        .iter()
        .zip(basis_skills::review::class_weights(&verdicts))
    {
        weights[*i] = w;
    }
    weights
}

/// One completion in the update: its tokens, behaviour log-probs, advantage
/// and weight.
struct Sequence {
    completion: Vec<u32>,
    old: Vec<f32>,
    advantage: f64,
    weight: f64,
}

/// The completions of one prompt (a rollout group, or one feedback record):
/// the unit the update runs the model on (the prompt once, its completions as
/// a batch after it).
struct UpdateGroup {
    prompt: Vec<u32>,
    seqs: Vec<Sequence>,
    /// The temperature of the behaviour log-probs (the rollouts', or the one
    /// a feedback record was sampled at): the policy's and the reference's
    /// log-probs are computed at it too.
    temperature: f32,
}

impl UpdateGroup {
    /// The sequences in parts the model runs at once: the prompt and the
    /// part's completions, padded to the longest, within `budget` tokens (a
    /// step's memory grows with them). A part holds one sequence at least, and
    /// its prompt runs once per part.
    fn parts(&self, budget: usize) -> Vec<std::ops::Range<usize>> {
        let longest = self
            .seqs
            .iter()
            .map(|s| s.completion.len())
            .max()
            .unwrap_or(1)
            .max(1);
        let per = (budget.saturating_sub(self.prompt.len()) / longest).max(1);
        (0..self.seqs.len())
            .step_by(per)
            .map(|start| start..(start + per).min(self.seqs.len()))
            .collect()
    }

    fn completions(&self, range: std::ops::Range<usize>) -> Vec<&[u32]> {
        self.seqs[range]
            .iter()
            .map(|s| s.completion.as_slice())
            .collect()
    }
}

/// The reference policy's log-probs of each sequence of each group (the KL
/// term's), computed once per batch.
fn reference_logprobs(
    policy: &mut Policy,
    groups: &[UpdateGroup],
    budget: usize,
) -> Result<Vec<Vec<Vec<f32>>>, TrainError> {
    groups
        .iter()
        .map(|g| {
            let mut out = Vec::with_capacity(g.seqs.len());
            for part in g.parts(budget) {
                for t in policy.reference_group_logprobs(
                    &g.prompt,
                    &g.completions(part),
                    g.temperature,
                )? {
                    out.push(t.to_vec1::<f32>()?);
                }
            }
            Ok(out)
        })
        .collect()
}

/// A task made ready once: its tree, episode and prompt.
struct Ready {
    tree: TaskTree,
    episode: Episode,
    prompt: Prompt,
}

fn rng(seed: u64, step: usize, salt: &str) -> rand::rngs::StdRng {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update((step as u64).to_le_bytes());
    h.update(salt.as_bytes());
    let d = h.finalize();
    let mut k = [0u8; 8];
    k.copy_from_slice(&d[..8]);
    rand::rngs::StdRng::seed_from_u64(u64::from_le_bytes(k))
}

/// The batch of step `step`: `n` task indices, the skills taking turns in a
/// seeded order, each skill's tasks in a seeded cycle (counts stay balanced).
pub fn batch(tasks: &[Task], skills: &[SkillId], n: usize, seed: u64, step: usize) -> Vec<usize> {
    let mut per_skill: BTreeMap<SkillId, Vec<usize>> = BTreeMap::new();
    for (i, t) in tasks.iter().enumerate() {
        if skills.contains(&t.skill()) {
            per_skill.entry(t.skill()).or_default().push(i);
        }
    }
    let present: Vec<SkillId> = per_skill.keys().copied().collect();
    if present.is_empty() {
        return Vec::new();
    }
    let mut order = present.clone();
    order.shuffle(&mut rng(seed, step, "skills"));
    let mut out = Vec::with_capacity(n);
    for k in 0..n {
        let skill = order[k % order.len()];
        let list = &per_skill[&skill];
        // The (step * n + k)-th draw of this skill: walk a seeded permutation of
        // its tasks, a new permutation each full pass.
        let draw = step * n.div_ceil(order.len()) + k / order.len();
        let pass = draw / list.len();
        let mut perm = list.clone();
        perm.shuffle(&mut rng(seed, pass, skill.as_str()));
        out.push(perm[draw % list.len()]);
    }
    out
}

/// Trains `policy` on `tasks` (see the module docs). `start` is the number of
/// steps already done (a resumed run).
#[allow(clippy::too_many_arguments)]
pub fn train(
    policy: &mut Policy,
    sampler: &mut Sampler,
    tasks: &[Task],
    feedback: &[OffPolicy],
    workspaces: &Workspaces,
    sandbox: &Sandbox,
    cfg: &TrainConfig,
    run: &Path,
    start: usize,
    on: &mut dyn FnMut(Event<'_>),
) -> Result<Vec<StepMetrics>, TrainError> {
    std::fs::create_dir_all(run).map_err(|source| TrainError::Io {
        path: run.to_path_buf(),
        source,
    })?;
    let mut ready: HashMap<usize, Result<Ready, String>> = HashMap::new();
    let cache = ScoreCache::default();
    let mut all = Vec::new();
    let mut history = if start > 0 {
        History::from_metrics(&read_metrics(run).unwrap_or_default(), start)
    } else {
        History::default()
    };
    let mut without_signal = 0usize;
    sync(policy, sampler)?;
    trained(policy, sampler, start, on);
    for step in start..cfg.steps {
        let t0 = Instant::now();
        let mut m = StepMetrics {
            step: step + 1,
            ..StepMetrics::default()
        };
        on(Event::Phase("rollouts"));
        let groups = draw(
            policy, sampler, tasks, &history, &mut ready, workspaces, sandbox, &cache, cfg, step,
            &mut m,
        )?;
        for o in &m.outcomes {
            history.observe(o);
        }
        without_signal = if m.signal_groups == 0 {
            without_signal + 1
        } else {
            0
        };
        on(Event::Phase("update"));
        optimize(policy, groups, feedback, cfg, step, &mut m)?;
        sync(policy, sampler)?;
        m.seconds = t0.elapsed().as_secs_f64();
        append_metrics(run, &m)?;
        if (step + 1) % cfg.checkpoint_every.max(1) == 0 || step + 1 == cfg.steps {
            on(Event::Phase("checkpoint"));
            checkpoint::save(
                run,
                policy,
                &checkpoint::State {
                    schema: "basis.checkpoint/1".into(),
                    step: step + 1,
                    optimizer_steps: policy.moments.t,
                    seed: cfg.seed,
                    config_digest: cfg.digest(),
                },
            )?;
        }
        on(Event::Step(&m));
        trained(policy, sampler, step + 1, on);
        all.push(m);
        if without_signal >= STEPS_WITHOUT_SIGNAL && step + 1 < cfg.steps {
            return Err(TrainError::Input(format!(
                "{without_signal} steps in a row had no task whose samples earned different \
                 rewards, after {} more draws each: there is nothing to learn from in these \
                 tasks for this model (see RUN_DIR/metrics.jsonl); try --reward graded, more \
                 tasks, a warm start (--sft), or a higher --temperature",
                cfg.draw_rounds
            )));
        }
    }
    Ok(all)
}

/// The step's groups: the first draw of tasks, then more while fewer than
/// the quota have reward variance, at most `cfg.draw_rounds` more times
/// ([`crate::sampling`]). Counts go into `m`.
#[allow(clippy::too_many_arguments)]
fn draw(
    policy: &mut Policy,
    sampler: &mut Sampler,
    tasks: &[Task],
    history: &History,
    ready: &mut HashMap<usize, Result<Ready, String>>,
    workspaces: &Workspaces,
    sandbox: &Sandbox,
    cache: &ScoreCache,
    cfg: &TrainConfig,
    step: usize,
    m: &mut StepMetrics,
) -> Result<Vec<Rollout>, TrainError> {
    let mut taken = std::collections::HashSet::new();
    let mut groups: Vec<Rollout> = Vec::new();
    for round in 0..=cfg.draw_rounds {
        let have = sampling::with_signal(groups.iter().map(|g| g.rewards.as_slice()));
        let need = if round == 0 {
            cfg.tasks_per_step
        } else {
            cfg.tasks_per_step.saturating_sub(have)
        };
        if need == 0 {
            break;
        }
        let chosen = sampling::pick(tasks, cfg, step, round, need, history, &taken);
        if chosen.is_empty() {
            break;
        }
        m.extra_draws += usize::from(round > 0);
        m.drawn_tasks += chosen.len();
        taken.extend(chosen.iter().copied());
        let sizes: Vec<usize> = chosen
            .iter()
            .map(|&i| history.group_size(&tasks[i].id, cfg.group_size, cfg.max_group_size))
            .collect();
        m.grown_groups += sizes.iter().filter(|&&n| n > cfg.group_size).count();
        let drawn = rollouts(
            policy, sampler, tasks, &chosen, &sizes, round, ready, workspaces, sandbox, cache, cfg,
            step, m,
        )?;
        for (i, g) in drawn {
            m.outcomes.push(Outcome::of(&tasks[i].id, &g.rewards));
            groups.push(g);
        }
    }
    m.signal_groups = sampling::with_signal(groups.iter().map(|g| g.rewards.as_slice()));
    Ok(groups)
}

/// The learning half of a step: rewards per skill into `m`, group-centred
/// advantages, groups without signal skipped (and counted), editor feedback
/// added as off-policy episodes, then the optimizer steps ([`update`]).
pub fn optimize(
    policy: &mut Policy,
    groups: Vec<Rollout>,
    feedback: &[OffPolicy],
    cfg: &TrainConfig,
    step: usize,
    m: &mut StepMetrics,
) -> Result<(), TrainError> {
    let mut per_skill: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for g in &groups {
        per_skill
            .entry(g.skill.as_str().to_string())
            .or_default()
            .extend(&g.rewards);
    }
    m.reward_per_skill = per_skill
        .iter()
        .map(|(k, v)| (k.clone(), v.iter().sum::<f64>() / v.len().max(1) as f64))
        .collect();
    let rewards: Vec<f64> = per_skill.values().flatten().copied().collect();
    m.reward = rewards.iter().sum::<f64>() / rewards.len().max(1) as f64;
    m.reward_kind = cfg.reward;
    m.groups = groups.len();
    let weights = group_weights(&groups, cfg.reward);
    let mut update_groups = Vec::new();
    for (g, weight) in groups.into_iter().zip(weights) {
        if grpo::no_signal(&g.rewards) {
            m.skipped_groups += 1;
            continue;
        }
        let longest = g
            .samples
            .iter()
            .map(|(ids, _)| ids.len())
            .max()
            .unwrap_or(0);
        if g.prompt.len() + longest > cfg.max_train_tokens {
            m.skipped_too_long += 1;
            continue;
        }
        let adv = grpo::advantages(&g.rewards, cfg.scale_rewards);
        let seqs: Vec<Sequence> = g
            .samples
            .into_iter()
            .zip(adv)
            .filter(|((ids, _), _)| !ids.is_empty())
            .map(|((completion, old), advantage)| Sequence {
                completion,
                old,
                advantage,
                weight,
            })
            .collect();
        if !seqs.is_empty() {
            update_groups.push(UpdateGroup {
                prompt: g.prompt,
                seqs,
                temperature: cfg.temperature,
            });
        }
    }
    if !feedback.is_empty() && cfg.feedback_weight > 0.0 {
        let mut r = rng(cfg.seed, step, "feedback");
        let take = cfg.tasks_per_step.min(feedback.len());
        let picked: Vec<&OffPolicy> = feedback.choose_multiple(&mut r, take).collect();
        let rewards: Vec<f64> = picked.iter().map(|f| f.reward).collect();
        let mean = rewards.iter().sum::<f64>() / rewards.len().max(1) as f64;
        for f in picked {
            if f.prompt_ids.len() + f.completion_ids.len() > cfg.max_train_tokens {
                m.skipped_too_long += 1;
            } else if f.reward != mean {
                update_groups.push(UpdateGroup {
                    prompt: f.prompt_ids.clone(),
                    seqs: vec![Sequence {
                        completion: f.completion_ids.clone(),
                        old: f.logprobs.clone(),
                        advantage: f.reward - mean,
                        weight: cfg.feedback_weight,
                    }],
                    temperature: f.temperature,
                });
                m.feedback_episodes += 1;
            }
        }
    }
    update(policy, &update_groups, cfg, step, m)
}

/// The warm start: `epochs` passes of supervised fine-tuning over `examples`
/// (prompt ids, answer ids), one optimizer step per `batch` examples, the loss
/// the mean negative log-likelihood of the answers' tokens. The warm start has
/// a warmup and cosine schedule of its own, peaking at `lr`, and leaves a fresh
/// optimizer and the learning rate as they were for what follows. Returns the
/// mean loss of each epoch.
#[allow(clippy::too_many_arguments)]
pub fn warm_start(
    policy: &mut Policy,
    examples: &[(Vec<u32>, Vec<u32>)],
    epochs: usize,
    batch: usize,
    lr: f64,
    seed: u64,
    on: &mut dyn FnMut(Event<'_>),
) -> Result<Vec<f64>, TrainError> {
    let mut losses = Vec::new();
    let (rl_steps, rl_lr) = (policy.cfg.total_steps, policy.cfg.lr);
    policy.cfg.total_steps = epochs * examples.len().div_ceil(batch.max(1));
    policy.cfg.lr = lr;
    policy.reset_optimizer();
    for epoch in 0..epochs {
        on(Event::Phase("warm start"));
        let mut order: Vec<usize> = (0..examples.len()).collect();
        order.shuffle(&mut rng(seed, epoch, "sft"));
        let (mut sum, mut n) = (0.0, 0usize);
        for chunk in order.chunks(batch.max(1)) {
            let tokens: usize = chunk.iter().map(|&i| examples[i].1.len()).sum();
            let mut acc = policy.accumulator();
            for &i in chunk {
                let (prompt, answer) = &examples[i];
                let logp = policy.completion_logprobs(prompt, answer, 1.0)?;
                let loss = (logp.sum_all()?.neg()? / tokens.max(1) as f64)?;
                sum += loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
                policy.backward(&loss, &mut acc)?;
            }
            policy.step(acc)?;
            n += 1;
            on(Event::Fitted {
                epoch: epoch + 1,
                epochs,
                done: (n * batch.max(1)).min(examples.len()),
                of: examples.len(),
            });
        }
        losses.push(sum / n.max(1) as f64);
        on(Event::Epoch {
            epoch: epoch + 1,
            epochs,
            loss: sum / n.max(1) as f64,
        });
    }
    policy.cfg.total_steps = rl_steps;
    policy.cfg.lr = rl_lr;
    policy.reset_optimizer();
    Ok(losses)
}

/// Gives the sampler the policy's current weights.
fn sync(policy: &mut Policy, sampler: &mut Sampler) -> Result<(), TrainError> {
    if let Sampler::Served(lm) = sampler {
        if let Some(cfg) = policy.lm.model.lora_config().cloned() {
            let tensors = policy.tensors();
            lm.model.set_lora(cfg, &tensors)?;
        }
        // Cached prompt keys and values were computed with the old weights.
        lm.generator.clear_prefix();
    } else {
        policy.lm.generator.clear_prefix();
    }
    Ok(())
}

/// Samples and scores the groups of one step.
#[allow(clippy::too_many_arguments)]
fn rollouts(
    policy: &mut Policy,
    sampler: &mut Sampler,
    tasks: &[Task],
    chosen: &[usize],
    sizes: &[usize],
    round: usize,
    ready: &mut HashMap<usize, Result<Ready, String>>,
    workspaces: &Workspaces,
    sandbox: &Sandbox,
    cache: &ScoreCache,
    cfg: &TrainConfig,
    step: usize,
    m: &mut StepMetrics,
) -> Result<Vec<(usize, Rollout)>, TrainError> {
    let sampling_start = Instant::now();
    let lm: &LanguageModel = match sampler {
        Sampler::Served(lm) => lm,
        Sampler::Policy => {
            policy.lm.model.set_op_mode(basis_model::OpMode::Fused);
            &policy.lm
        }
    };
    // Answers to score: (group slot, tree, episode index, answers).
    let mut pending: Vec<(usize, Vec<Answer>)> = Vec::new();
    let mut groups: Vec<Option<Rollout>> = Vec::new();
    // The prompts to sample, each with its group's size, and their slots.
    let mut prompts: Vec<(Prompt, usize)> = Vec::new();
    let mut prompt_slots: Vec<usize> = Vec::new();
    for (slot, &i) in chosen.iter().enumerate() {
        let entry = ready.entry(i).or_insert_with(|| {
            let task = &tasks[i];
            let tree = workspaces.open(&task.repo).map_err(|e| e.to_string())?;
            let episode = Episode::prepare(task, &tree).map_err(|e| e.to_string())?;
            let prompt = episode
                .prompt(lm, &episode.default_options())
                .map_err(|e| e.to_string())?;
            Ok(Ready {
                tree,
                episode,
                prompt,
            })
        });
        let r = match entry {
            Ok(r) => r,
            Err(e) => {
                m.unready_tasks += 1;
                m.error(format!("task {}: {e}", tasks[i].id));
                groups.push(None);
                continue;
            }
        };
        let mut p = r.prompt.clone();
        p.sampling.temperature = cfg.temperature;
        if let Some(n) = cfg.max_new_tokens {
            p.sampling.max_tokens = p.sampling.max_tokens.min(n);
        }
        // Round 0 keeps the seeds runs had before dynamic sampling.
        let salt = if round == 0 {
            format!("sample-{slot}")
        } else {
            format!("sample-{round}-{slot}")
        };
        let mut seed_rng = rng(cfg.seed, step, &salt);
        p.sampling.seed = rand::Rng::random::<u64>(&mut seed_rng);
        prompts.push((p, sizes[slot]));
        prompt_slots.push(slot);
        groups.push(None);
    }
    // Every group's samples are decoded together (one pass over the weights per
    // step for all of them); each group's are what it would sample alone.
    let mut failed = None;
    complete_many(lm, &prompts, &mut |j, generated| {
        let slot = prompt_slots[j];
        let i = chosen[slot];
        let gens = match generated {
            Ok(gens) => gens,
            Err(e) => {
                failed.get_or_insert(e);
                return;
            }
        };
        let Some(Ok(r)) = ready.get(&i) else { return };
        m.rollout_tokens += gens.iter().map(|g| g.token_ids.len()).sum::<usize>();
        m.rollout_prompt_tokens += r.prompt.fitted.ids.len();
        let samples = gens
            .iter()
            .map(|g| (g.token_ids.clone(), g.token_logprobs.clone()))
            .collect();
        let answers: Vec<Answer> = gens
            .into_iter()
            .map(|g| r.episode.finish(&r.prompt, g))
            .collect();
        groups[slot] = Some(Rollout {
            skill: tasks[i].skill(),
            prompt: r.prompt.fitted.ids.clone(),
            samples,
            rewards: Vec::new(),
            verdict: match &r.episode {
                Episode::Review { verdict, .. } => Some(*verdict),
                _ => None,
            },
        });
        pending.push((slot, answers));
    });
    if let Some(e) = failed {
        return Err(e.into());
    }
    let sampled_secs = sampling_start.elapsed().as_secs_f64();
    // A step may sample in several draws (dynamic sampling): both sums run over all.
    m.rollout_secs += sampled_secs;
    m.rollout_tokens_per_s = m.rollout_tokens as f64 / m.rollout_secs.max(1e-9);
    if let Sampler::Policy = sampler {
        policy
            .lm
            .model
            .set_op_mode(basis_model::OpMode::Differentiable);
    }
    // Score on threads of their own.
    let hits_before = cache.hits();
    let scored: Mutex<HashMap<usize, Vec<f64>>> = Mutex::new(HashMap::new());
    let failed: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let work: Mutex<Vec<(usize, Vec<Answer>)>> = Mutex::new(pending);
    std::thread::scope(|s| {
        for _ in 0..cfg.jobs.max(1) {
            s.spawn(|| loop {
                let job = work.lock().unwrap_or_else(|e| e.into_inner()).pop();
                let Some((slot, answers)) = job else { break };
                let i = chosen[slot];
                let Some(Ok(r)) = ready.get(&i) else { continue };
                let id = &tasks[i].id;
                let rewards = answers
                    .iter()
                    .map(|a| match cache.score(sandbox, &r.tree, &r.episode, id, a) {
                        Ok(s) => cfg.reward.of(&s),
                        Err(e) => {
                            failed
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push(format!("scoring an answer to {id}: {e}"));
                            0.0
                        }
                    })
                    .collect();
                scored
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(slot, rewards);
            });
        }
    });
    m.cached_scores = cache.hits() - hits_before;
    for e in failed.into_inner().unwrap_or_else(|e| e.into_inner()) {
        m.unscored += 1;
        m.error(e);
    }
    let mut scored = scored.into_inner().unwrap_or_else(|e| e.into_inner());
    Ok(groups
        .into_iter()
        .enumerate()
        .filter_map(|(slot, g)| {
            let mut g = g?;
            g.rewards = scored.remove(&slot)?;
            Some((chosen[slot], g))
        })
        .collect())
}

/// `epochs` × `minibatches` optimizer steps on the batch's groups.
fn update(
    policy: &mut Policy,
    groups: &[UpdateGroup],
    cfg: &TrainConfig,
    step: usize,
    m: &mut StepMetrics,
) -> Result<(), TrainError> {
    if groups.is_empty() {
        return Ok(());
    }
    let t0 = Instant::now();
    let reference = if cfg.clip.beta > 0.0 {
        Some(reference_logprobs(policy, groups, cfg.max_train_tokens)?)
    } else {
        None
    };
    let mut parts_all = Vec::new();
    let mut loss_total = 0.0;
    let mut norms = Vec::new();
    for epoch in 0..cfg.epochs.max(1) {
        let mut order: Vec<usize> = (0..groups.len()).collect();
        order.shuffle(&mut rng(cfg.seed, step, &format!("epoch-{epoch}")));
        let parts_n = cfg.minibatches.clamp(1, order.len());
        for chunk in order.chunks(order.len().div_ceil(parts_n)) {
            // The token-level mean over the minibatch's completion tokens.
            let tokens: usize = chunk
                .iter()
                .flat_map(|&g| groups[g].seqs.iter().map(|s| s.completion.len()))
                .sum();
            let mut acc = policy.accumulator();
            for &gi in chunk {
                let g = &groups[gi];
                for part in g.parts(cfg.max_train_tokens) {
                    let logps = policy.group_logprobs(
                        &g.prompt,
                        &g.completions(part.clone()),
                        g.temperature,
                    )?;
                    let mut loss: Option<Tensor> = None;
                    for (i, logp) in part.clone().zip(&logps) {
                        let s = &g.seqs[i];
                        let old = Tensor::new(s.old.as_slice(), logp.device())?;
                        let reference = match &reference {
                            Some(r) => Some(Tensor::new(r[gi][i].as_slice(), logp.device())?),
                            None => None,
                        };
                        let (l, parts) = grpo::sequence_loss(
                            logp,
                            &old,
                            reference.as_ref(),
                            s.advantage,
                            &cfg.clip,
                        )?;
                        let l = (l * (s.weight / tokens.max(1) as f64))?;
                        loss = Some(match loss {
                            Some(prev) => (prev + l)?,
                            None => l,
                        });
                        parts_all.push(parts);
                        m.update_tokens += s.completion.len();
                    }
                    m.update_tokens += g.prompt.len();
                    if let Some(loss) = loss {
                        loss_total += loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
                        policy.backward(&loss, &mut acc)?;
                    }
                }
            }
            let report = policy.step(acc)?;
            if report.skipped_non_finite {
                m.skipped_non_finite += 1;
            }
            norms.push(report.grad_norm);
            m.lr = report.lr;
        }
    }
    let parts: LossParts = grpo::combine(&parts_all);
    let steps = norms.len().max(1) as f64;
    m.loss = loss_total / steps;
    m.kl = parts.kl;
    m.clip_fraction = parts.clip_fraction;
    m.ratio = parts.ratio;
    m.grad_norm = norms.iter().sum::<f64>() / steps;
    m.update_tokens_per_s = m.update_tokens as f64 / t0.elapsed().as_secs_f64().max(1e-9);
    Ok(())
}

fn append_metrics(run: &Path, m: &StepMetrics) -> Result<(), TrainError> {
    let path = run.join("metrics.jsonl");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|source| TrainError::Io {
            path: path.clone(),
            source,
        })?;
    let line = serde_json::to_string(m).expect("metrics serialise") + "\n";
    f.write_all(line.as_bytes())
        .and_then(|_| f.flush())
        .map_err(|source| TrainError::Io {
            path: path.clone(),
            source,
        })
}

/// The step lines of a run's metrics (the last line of each step, when a
/// resumed run wrote one twice); lines of another `kind` (validation) aside.
pub fn read_metrics(run: &Path) -> Result<Vec<serde_json::Value>, TrainError> {
    let path = run.join("metrics.jsonl");
    let text = std::fs::read_to_string(&path).map_err(|source| TrainError::Io {
        path: path.clone(),
        source,
    })?;
    let mut by_step: BTreeMap<u64, serde_json::Value> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
            if let (Some(s), None) = (v["step"].as_u64(), v.get("kind")) {
                by_step.insert(s, v);
            }
        }
    }
    Ok(by_step.into_values().collect())
}

/// What a run's steps say about its learning signal, as sentences for whoever
/// started it: the skills none of whose rollouts earned a reward (GRPO learns
/// nothing from a group whose samples all score the same), and whether any
/// step changed the weights at all. Empty when there is nothing to say.
pub fn signal_notes(metrics: &[StepMetrics]) -> Vec<String> {
    let mut notes = Vec::new();
    let mut earned: BTreeMap<&str, bool> = BTreeMap::new();
    for m in metrics {
        for (skill, r) in &m.reward_per_skill {
            *earned.entry(skill.as_str()).or_default() |= *r > 0.0;
        }
    }
    let never: Vec<&str> = earned
        .iter()
        .filter(|(_, e)| !**e)
        .map(|(s, _)| *s)
        .collect();
    if !never.is_empty() {
        notes.push(format!(
            "no rollout of {} earned a reward in {} step(s), so GRPO had nothing to learn from there; \
             a warm start on the tasks' reference answers (--sft) or larger groups (--group-size) may give it some",
            never.join(", "),
            metrics.len()
        ));
    }
    if !metrics.is_empty() && metrics.iter().all(|m| m.update_tokens == 0) {
        notes.push(
            "no step updated the model (every group was skipped; each step's line says how many): \
             the weights are the ones the run started from"
                .into(),
        );
    }
    notes
}

/// Where a run keeps things.
pub fn run_paths(run: &Path) -> (PathBuf, PathBuf) {
    (run.join("metrics.jsonl"), run.join("checkpoints"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{LocalizeInput, LocalizeReference, Meta, RepoRef, Spec, TASK_SCHEMA};

    fn t(id: &str, skill: &str) -> Task {
        let spec = match skill {
            "localize" => Spec::Localize {
                input: LocalizeInput {
                    issue: "a b c".into(),
                },
                reference: LocalizeReference {
                    files: vec!["a".into()],
                },
            },
            _ => Spec::Review {
                input: crate::task::ReviewInput {
                    issue: "x".into(),
                    patch: String::new(),
                },
                reference: crate::task::ReviewReference {
                    verdict: crate::task::Verdict::Yes,
                },
            },
        };
        Task {
            schema: TASK_SCHEMA.into(),
            id: id.into(),
            spec,
            repo: RepoRef {
                path: ".".into(),
                commit: None,
                patch: None,
            },
            language: None,
            meta: Meta::default(),
        }
    }

    #[test]
    fn batches_balance_the_skills_and_follow_the_seed() {
        let mut tasks: Vec<Task> = (0..9).map(|i| t(&format!("l{i}"), "localize")).collect();
        tasks.extend((0..2).map(|i| t(&format!("r{i}"), "review")));
        let skills = SkillId::ALL.to_vec();
        let mut counts: BTreeMap<SkillId, usize> = BTreeMap::new();
        for step in 0..10 {
            let b = batch(&tasks, &skills, 4, 3, step);
            assert_eq!(b.len(), 4);
            for i in b {
                *counts.entry(tasks[i].skill()).or_default() += 1;
            }
        }
        assert_eq!(counts[&SkillId::Localize], counts[&SkillId::Review]);
        assert_eq!(
            batch(&tasks, &skills, 4, 3, 5),
            batch(&tasks, &skills, 4, 3, 5)
        );
        assert_ne!(
            (0..4)
                .map(|s| batch(&tasks, &skills, 4, 3, s))
                .collect::<Vec<_>>(),
            (0..4)
                .map(|s| batch(&tasks, &skills, 4, 4, s))
                .collect::<Vec<_>>()
        );
    }

    /// A group of a review task whose right verdict is `verdict`, its samples'
    /// verdicts `said` (YES: `true`), each rewarded 1 when right.
    fn review_group(verdict: bool, said: &[bool]) -> Rollout {
        Rollout {
            skill: SkillId::Review,
            prompt: vec![1],
            samples: said.iter().map(|_| (vec![2], vec![-1.0])).collect(),
            rewards: said
                .iter()
                .map(|&s| f64::from(u8::from(s == verdict)))
                .collect(),
            verdict: Some(verdict),
        }
    }

    /// How far a step pushes the policy toward YES: the weighted advantages of
    /// the samples that said YES, over the batch.
    fn push_toward_yes(groups: &[Rollout], weights: &[f64], said: &[bool], scale: bool) -> f64 {
        groups
            .iter()
            .zip(weights)
            .map(|(g, w)| {
                let adv = grpo::advantages(&g.rewards, scale);
                w * adv
                    .iter()
                    .zip(said)
                    .filter(|(_, &yes)| yes)
                    .map(|(a, _)| a)
                    .sum::<f64>()
            })
            .sum()
    }

    #[test]
    fn review_weights_leave_a_constant_answer_no_advantage() {
        // A batch of 3 YES tasks and 1 NO: each class carries half, so 2/3
        // for each YES group and 2 for the NO one (4 in all, as unweighted).
        let yes_tasks = [true, true, true, false];
        let always = [true; 4];
        let batch: Vec<Rollout> = yes_tasks
            .iter()
            .map(|&v| review_group(v, &always))
            .collect();
        let w = group_weights(&batch, RewardKind::Graded);
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(
            w[..3].iter().all(|&x| close(x, 2.0 / 3.0)) && close(w[3], 2.0),
            "{w:?}"
        );
        assert_eq!(group_weights(&batch, RewardKind::Binary), [1.0; 4]);
        // The always-YES policy: every group's rewards agree, so every group
        // is skipped and nothing is learned, weights or not.
        assert!(batch.iter().all(|g| grpo::no_signal(&g.rewards)));
        // A policy that says YES three times in four whatever the patch: on
        // each YES task its YES samples get +1/4 each (reward 1 against a mean
        // of 3/4), on the NO task -1/4 each. Unweighted, the batch pushes it
        // toward YES by 3 × 3/4 - 3/4 = 3/2; weighted, 2/3 × 9/4 - 2 × 3/4 = 0.
        let leaning = [true, true, true, false];
        let batch: Vec<Rollout> = yes_tasks
            .iter()
            .map(|&v| review_group(v, &leaning))
            .collect();
        let w = group_weights(&batch, RewardKind::Graded);
        for scale in [false, true] {
            let push = push_toward_yes(&batch, &w, &leaning, scale);
            assert!(push.abs() < 1e-9, "scale {scale}: {push}");
        }
        let unweighted = push_toward_yes(&batch, &[1.0; 4], &leaning, false);
        assert!(close(unweighted, 1.5), "{unweighted}");
        // Groups of other skills keep weight 1 beside them.
        let mut mixed = batch;
        mixed.push(Rollout {
            skill: SkillId::Edit,
            verdict: None,
            ..review_group(true, &leaning)
        });
        assert_eq!(group_weights(&mixed, RewardKind::Graded)[4], 1.0);
    }

    #[test]
    fn the_signal_notes_name_the_skills_that_never_earned_a_reward() {
        let step = |edit: f64, review: f64, update_tokens: usize| StepMetrics {
            reward_per_skill: [("edit".to_string(), edit), ("review".to_string(), review)]
                .into_iter()
                .collect(),
            update_tokens,
            ..StepMetrics::default()
        };
        let notes = signal_notes(&[step(0.0, 0.5, 10), step(0.0, 0.0, 0)]);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].starts_with("no rollout of edit earned a reward in 2 step(s)"));
        let notes = signal_notes(&[step(0.0, 0.0, 0)]);
        assert!(notes[0].starts_with("no rollout of edit, review earned"));
        assert!(notes[1].starts_with("no step updated the model"));
        assert!(signal_notes(&[step(0.25, 1.0, 5)]).is_empty());
        assert!(signal_notes(&[]).is_empty());
    }

    #[test]
    fn a_group_runs_in_parts_that_fit_the_token_budget_with_its_prompt() {
        let g = |prompt: usize, lens: &[usize]| UpdateGroup {
            prompt: vec![1; prompt],
            seqs: lens
                .iter()
                .map(|&n| Sequence {
                    completion: vec![2; n],
                    old: vec![0.0; n],
                    advantage: 1.0,
                    weight: 1.0,
                })
                .collect(),
            temperature: 1.0,
        };
        // 16 completions padded to 384 after a 1,500-token prompt: 6 fit in
        // 4,096 tokens with the prompt (the rows alone would fit 10).
        let parts = g(1500, &[384; 16]).parts(4096);
        assert_eq!(parts, vec![0..6, 6..12, 12..16]);
        // Every sequence is in exactly one part, each part within the budget.
        let group = g(100, &[5, 90, 40, 1, 77, 300, 12]);
        let parts = group.parts(1000);
        assert_eq!(parts.iter().map(|r| r.len()).sum::<usize>(), 7);
        assert!(parts.windows(2).all(|w| w[0].end == w[1].start));
        assert!(parts.iter().all(|r| 100 + r.len() * 300 <= 1000));
        // A sequence that alone fills the budget still runs, one at a time.
        assert_eq!(g(4000, &[96, 96]).parts(4096), vec![0..1, 1..2]);
    }
}
