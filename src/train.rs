//! `basis train --tasks FILE`: joint reinforcement learning over the skills
//! (the trainer crate's GRPO loop) on the command line, with a progress bar,
//! a run folder (metrics, checkpoints, the adapter), `--resume`, with
//! `--eval-every` a validation curve and the best checkpoint on it, and with
//! `--publish` the evaluation gate and the registry. `basis train plot RUN_DIR`
//! draws the reward curves.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use basis_model::{LoraConfig, Precision};
use basis_skills::sandbox::Sandbox;
use basis_trainer::episode::Episode;
use basis_trainer::episode::RewardKind;
use basis_trainer::feedback::OffPolicy;
use basis_trainer::grpo::Clip;
use basis_trainer::mine::split;
use basis_trainer::policy::{Policy, PolicyConfig};
use basis_trainer::task::{self, Task};
use basis_trainer::train::{self, Event, Sampler, TrainConfig};
use basis_trainer::validation::{self, Validation};
use basis_trainer::workspace::Workspaces;
use clap::{Args, Subcommand, ValueEnum};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct TrainArgs {
    #[command(subcommand)]
    command: Option<TrainCommand>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum TrainCommand {
    /// Draws a run's reward curves per skill (RUN_DIR/rewards.png and .svg).
    Plot {
        /// The run's folder.
        run: PathBuf,
    },
}

#[derive(Args)]
pub struct RunArgs {
    /// The task file (its `train` split is trained on).
    #[arg(long)]
    tasks: Option<PathBuf>,
    /// Only these skills (comma-separated).
    #[arg(long, value_delimiter = ',')]
    skills: Vec<String>,
    /// Rollout steps.
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// cpu, cuda, cuda:N or auto (the first GPU when the build has CUDA).
    #[arg(long, default_value = "auto")]
    device: String,
    /// Evaluate the result on the held-out tasks against the served version and
    /// publish it as the next version if the gate passes.
    #[arg(long)]
    publish: bool,
    /// With --publish: publish whatever the evaluation says (and say so).
    #[arg(long)]
    force: bool,
    /// The model (NAME[@VERSION]; default: the default model at its current version).
    #[arg(long)]
    model: Option<String>,
    /// The run's folder (metrics.jsonl, checkpoints/, adapter/).
    #[arg(long, default_value = "basis-run")]
    run: PathBuf,
    /// Continue the run in --run from its last checkpoint.
    #[arg(long)]
    resume: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Samples per task (G).
    #[arg(long, default_value_t = 8)]
    group_size: usize,
    /// Tasks per step.
    #[arg(long, default_value_t = 5, value_parser = crate::at_least_one)]
    tasks_per_step: usize,
    /// Samples for a task the policy has never earned a reward on (default:
    /// twice --group-size), where one lucky sample is likelier.
    #[arg(long)]
    max_group_size: Option<usize>,
    /// More draws of tasks a step may take while fewer than --tasks-per-step
    /// groups have samples with different rewards (0: none).
    #[arg(long, default_value_t = 2)]
    draw_rounds: usize,
    /// Draw tasks in the seeded balanced order only, without preferring those
    /// whose samples earned different rewards.
    #[arg(long)]
    no_curriculum: bool,
    /// Optimizer steps per batch of rollouts.
    #[arg(long, default_value_t = 2, value_parser = crate::at_least_one)]
    epochs: usize,
    /// Optimizer steps per epoch (gradient accumulation within each).
    #[arg(long, default_value_t = 1, value_parser = crate::at_least_one)]
    minibatches: usize,
    #[arg(long, default_value_t = 1e-4)]
    lr: f64,
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f64,
    #[arg(long, default_value_t = 1.0)]
    max_grad_norm: f64,
    #[arg(long, default_value_t = 2)]
    warmup_steps: usize,
    /// Train every weight instead of LoRA adapters.
    #[arg(long)]
    full: bool,
    /// Start from this adapter (a PEFT folder, e.g. another run's RUN_DIR/adapter)
    /// instead of the served version's or fresh ones.
    #[arg(long, conflicts_with = "full")]
    init_adapter: Option<PathBuf>,
    #[arg(long, default_value_t = 8, value_parser = crate::at_least_one)]
    lora_rank: usize,
    #[arg(long, default_value_t = 16.0)]
    lora_alpha: f64,
    /// LoRA's target modules (comma-separated PEFT names).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "q_proj,k_proj,v_proj,o_proj"
    )]
    lora_targets: Vec<String>,
    /// Sampling temperature of the rollouts (the ratio's log-probs use it too).
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// At most this many tokens a rollout (default: each skill's own limit).
    #[arg(long)]
    max_new_tokens: Option<usize>,
    /// Tokens the update runs the model on at once: a group's prompt and as
    /// many of its completions as fit, the rest in further parts. Longer
    /// sequences (prompt and answer: groups, feedback episodes, warm-start
    /// answers) are left out and counted (memory grows with the tokens, ~2.7 MB
    /// a token for the default model with LoRA).
    #[arg(long, default_value_t = basis_trainer::train::DEFAULT_MAX_TRAIN_TOKENS)]
    max_train_tokens: usize,
    #[arg(long, default_value_t = 0.2)]
    eps_low: f64,
    #[arg(long, default_value_t = 0.28)]
    eps_high: f64,
    /// The KL penalty's weight (k3 estimator; 0: none).
    #[arg(long, default_value_t = 0.0)]
    beta: f64,
    /// Do not divide advantages by the group's std.
    #[arg(long)]
    no_scale_rewards: bool,
    #[arg(long, default_value_t = 5, value_parser = crate::at_least_one)]
    checkpoint_every: usize,
    /// Supervised fine-tuning on the tasks' reference answers first.
    #[arg(long)]
    sft: bool,
    #[arg(long, default_value_t = 2, value_parser = crate::at_least_one)]
    sft_epochs: usize,
    /// The warm start's peak learning rate (default: --lr). Fitting a few
    /// reference answers takes more than reinforcement learning's small steps.
    #[arg(long)]
    sft_lr: Option<f64>,
    /// Editor feedback as off-policy episodes: a feedback store (SQLite), or a
    /// `basis feedback export` file or https:// URL; with no value, the store
    /// `basis feedback` reads (the server's).
    #[arg(long, value_name = "DB|FILE|URL")]
    feedback: Option<Option<String>>,
    /// The weight of feedback episodes against the verifiable tasks.
    #[arg(long, default_value_t = 0.5)]
    feedback_weight: f64,
    /// The reward to optimise.
    #[arg(long, value_enum, default_value_t = Reward::Graded)]
    reward: Reward,
    /// What relative `repo.path`s are relative to (default: the task file's folder).
    #[arg(long)]
    repo_root: Option<PathBuf>,
    /// Scoring threads (default: the number of cores).
    #[arg(long, value_parser = crate::at_least_one)]
    jobs: Option<usize>,
    /// Samples per held-out task in the publish evaluation.
    #[arg(long, default_value_t = 1, value_parser = crate::at_least_one)]
    gate_samples: usize,
    /// Score the task file's validation split at the start, every N steps and
    /// at the end (a line in metrics.jsonl each), and keep the best weights in
    /// RUN_DIR/best: what --publish and `basis model publish` then judge.
    #[arg(long, value_name = "N", value_parser = crate::at_least_one)]
    eval_every: Option<usize>,
    /// Samples per validation task (the K of `basis eval --samples`; greedy
    /// with one, temperature 0.7 with more).
    #[arg(long, default_value_t = 1, value_parser = crate::at_least_one)]
    eval_samples: usize,
}

/// `--reward`: the trainer's [`RewardKind`] on the command line.
#[derive(Clone, Copy, ValueEnum)]
enum Reward {
    /// The paper's: 1 for a right answer, else 0.
    Binary,
    /// Partial credit per skill, review's YES and NO tasks weighed alike
    /// (docs/design.md).
    Graded,
}

impl From<Reward> for RewardKind {
    fn from(r: Reward) -> Self {
        match r {
            Reward::Binary => RewardKind::Binary,
            Reward::Graded => RewardKind::Graded,
        }
    }
}

/// `cpu`, `cuda`, `cuda:N`, `auto` → a device, or why not.
pub fn device(spec: &str) -> Result<basis_model::Device> {
    match spec {
        "cpu" => Ok(basis_model::Device::Cpu),
        "auto" => Ok(basis_model::default_device()),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let n: usize = s
                .strip_prefix("cuda:")
                .map(str::parse)
                .transpose()
                .with_context(|| format!("`{s}`: expected cuda or cuda:N"))?
                .unwrap_or(0);
            cuda(n)
        }
        other => bail!("unknown device `{other}` (cpu, cuda, cuda:N, auto)"),
    }
}

#[cfg(feature = "cuda")]
fn cuda(n: usize) -> Result<basis_model::Device> {
    basis_model::Device::new_cuda(n).with_context(|| format!("no CUDA device {n} here"))
}

#[cfg(not(feature = "cuda"))]
fn cuda(_: usize) -> Result<basis_model::Device> {
    bail!("this build of basis has no CUDA support: build it with scripts/build-cuda.sh (cargo --features cuda)")
}

pub fn run_train(args: TrainArgs) -> Result<()> {
    match args.command {
        Some(TrainCommand::Plot { run }) => crate::plot::rewards(&run),
        None => train(args.run),
    }
}

fn read_tasks(path: &Path, skills: &[basis_skills::SkillId], split: &str) -> Result<Vec<Task>> {
    let read = task::read(path).with_context(|| format!("reading {}", path.display()))?;
    for e in &read.errors {
        eprintln!("{e}");
    }
    Ok(read
        .tasks
        .into_iter()
        .map(|l| l.task)
        .filter(|t| skills.contains(&t.skill()) && t.split() == split)
        .collect())
}

/// The validation tasks of the skills trained, for `--eval-every`, or an
/// error that says what to do where the file has none.
fn validation_tasks(path: &Path, skills: &[basis_skills::SkillId]) -> Result<Vec<Task>> {
    let read = task::read(path).with_context(|| format!("reading {}", path.display()))?;
    let all: Vec<Task> = read.tasks.into_iter().map(|l| l.task).collect();
    let mut splits: Vec<&str> = all.iter().map(Task::split).collect();
    splits.sort_unstable();
    splits.dedup();
    let validation: Vec<&Task> = all
        .iter()
        .filter(|t| t.split() == split::VALIDATION)
        .collect();
    if validation.is_empty() {
        bail!(
            "--eval-every: {} has no validation split (its tasks are {}): mine the repository again with `basis tasks mine`, which writes train, validation and heldout splits (--validation sets its share), or leave out --eval-every",
            path.display(),
            splits.join(", ")
        );
    }
    let mine: Vec<Task> = validation
        .iter()
        .filter(|t| skills.contains(&t.skill()))
        .map(|t| (*t).clone())
        .collect();
    if mine.is_empty() {
        let mut theirs: Vec<&str> = validation.iter().map(|t| t.skill().as_str()).collect();
        theirs.dedup();
        bail!(
            "--eval-every: the validation split of {} has no task of the skills trained ({}), only of {}; train those too, or mine with a larger --validation share",
            path.display(),
            skills.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
            theirs.join(", ")
        );
    }
    Ok(mine)
}

/// Refuses validation tasks none of which can be made ready (the curve would
/// be empty) before the run starts; warns of those that cannot.
fn check_validation(workspaces: &Workspaces, tasks: &[Task]) -> Result<()> {
    let missing = workspaces.check_repos(tasks.iter().map(|t| &t.repo))?;
    let mut failed = Vec::new();
    for t in tasks {
        let ready = workspaces
            .open(&t.repo)
            .map_err(|e| e.to_string())
            .and_then(|tree| Episode::prepare(t, &tree).map_err(|e| e.to_string()));
        if let Err(e) = ready {
            failed.push(format!("{}: {e}", t.id));
        }
    }
    if failed.len() == tasks.len() {
        bail!(
            "--eval-every: none of the {} validation tasks can be prepared ({}{})",
            tasks.len(),
            failed
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join("; "),
            if missing.is_empty() {
                ""
            } else {
                "; is --repo-root right?"
            }
        );
    }
    for f in &failed {
        eprintln!("warning: validation task {f}; it is left out");
    }
    Ok(())
}

/// What a validation prints.
fn validation_line(p: &basis_trainer::validation::Point) -> String {
    let mut line = format!(
        "validation after step {}: score {:.3} (mean Avg@{} {:.3}{}) on {} tasks",
        p.step,
        p.score,
        p.samples,
        p.mean,
        p.review_balanced_accuracy
            .map(|b| format!(", review's balanced accuracy {b:.3}"))
            .unwrap_or_default(),
        p.tasks
    );
    if p.skipped > 0 {
        line += &format!(", {} skipped", p.skipped);
    }
    if p.best {
        line += ", the best so far (kept)";
    }
    line
}

fn feedback_episodes(spec: &str, model: &str) -> Result<Vec<OffPolicy>> {
    let cfg = basis_feedback::RewardConfig::default();
    let loaded = if spec.starts_with("https://") || spec.starts_with("http://") {
        let text = ureq::get(spec)
            .call()
            .with_context(|| format!("fetching {spec}"))?
            .body_mut()
            .read_to_string()
            .with_context(|| format!("reading {spec}"))?;
        basis_trainer::feedback::from_export(&text, model, &cfg)?
    } else {
        let path = Path::new(spec);
        let head = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        if head.starts_with(b"SQLite format 3") {
            basis_trainer::feedback::from_store(path, model, &cfg)?
        } else {
            basis_trainer::feedback::from_export(&String::from_utf8_lossy(&head), model, &cfg)?
        }
    };
    eprintln!("feedback: {}", loaded.describe());
    if loaded.episodes.is_empty() && !loaded.other_models.is_empty() {
        bail!(
            "every usable feedback record is of another base model ({}); this run trains {model}",
            loaded
                .other_models
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(loaded.episodes)
}

/// What a finished step prints (`metrics.jsonl` has the rest): its rewards
/// and update, and whatever went wrong, so that a broken sandbox or a task
/// that cannot be prepared does not pass for a step without signal.
fn step_line(m: &train::StepMetrics) -> String {
    let mut line = format!(
        "step {}: reward {:.3} {:?}, loss {:+.4}, clip {:.2}, grad {:.3}, {:.0} rollout tok/s, {:.0} update tok/s, {} skipped groups",
        m.step, m.reward, m.reward_per_skill, m.loss, m.clip_fraction, m.grad_norm,
        m.rollout_tokens_per_s, m.update_tokens_per_s, m.skipped_groups,
    );
    for (n, what) in [
        (m.skipped_too_long, "too long to train on"),
        (
            m.skipped_non_finite,
            "optimizer step(s) skipped: the gradient was not finite",
        ),
        (
            m.unscored,
            "answer(s) not scored (the verifier failed; reward 0)",
        ),
        (
            m.unready_tasks,
            "task(s) that could not be prepared, left out",
        ),
        (
            m.extra_draws,
            "more draw(s) of tasks: too few groups had different rewards",
        ),
        (m.grown_groups, "larger group(s) for tasks never rewarded"),
    ] {
        if n > 0 {
            line += &format!(", {n} {what}");
        }
    }
    for e in &m.errors {
        line += &format!("\n  warning: {e}");
    }
    line
}

/// Settings under which GRPO could never learn, refused before anything runs
/// (a run would end as if it had trained).
fn check_settings(a: &RunArgs) -> Result<()> {
    if a.group_size < 2 {
        bail!(
            "--group-size {} is too small: GRPO scores each sample against the others of its task's group, so it needs at least 2",
            a.group_size
        );
    }
    if a.max_group_size.is_some_and(|m| m < a.group_size) {
        bail!(
            "--max-group-size {} is below --group-size {}: it is the larger group a never-rewarded task gets",
            a.max_group_size.unwrap_or(0),
            a.group_size
        );
    }
    if a.max_new_tokens == Some(0) {
        bail!("--max-new-tokens must be at least 1: a rollout of no tokens cannot earn a reward");
    }
    if !(a.temperature > 0.0 && a.temperature.is_finite()) {
        bail!(
            "--temperature {} is not a sampling temperature: GRPO learns from the differences between a group's samples, so it needs one above 0",
            a.temperature
        );
    }
    Ok(())
}

fn train(a: RunArgs) -> Result<()> {
    let Some(tasks_path) = a.tasks.clone() else {
        bail!("give the tasks with --tasks FILE (mine some with `basis tasks mine`)");
    };
    check_settings(&a)?;
    basis_model::alloc::keep_freed_memory();
    let skills = crate::tasks::parse_skills(&a.skills)?;
    let tasks = read_tasks(&tasks_path, &skills, "train")?;
    if tasks.is_empty() {
        bail!(
            "no training tasks of the skills asked for in {}",
            tasks_path.display()
        );
    }
    let validation = match a.eval_every {
        Some(every) => Some(Validation {
            tasks: validation_tasks(&tasks_path, &skills)?,
            config: basis_trainer::eval::Config {
                samples: a.eval_samples,
                temperature: if a.eval_samples > 1 { 0.7 } else { 0.0 },
                jobs: a
                    .jobs
                    .unwrap_or(basis_trainer::eval::Config::default().jobs),
                ..basis_trainer::eval::Config::default()
            },
            every,
        }),
        None => None,
    };
    let device = device(&a.device)?;
    let loaded = crate::skill_cli::load_model(a.model.as_deref())?;
    let lora = (!a.full).then(|| {
        let targets: Vec<&str> = a.lora_targets.iter().map(String::as_str).collect();
        LoraConfig::new(a.lora_rank, a.lora_alpha, &targets)
    });
    let optimizer_steps = a.steps * a.epochs * a.minibatches;
    let cfg = TrainConfig {
        skills: skills.clone(),
        steps: a.steps,
        tasks_per_step: a.tasks_per_step,
        group_size: a.group_size,
        epochs: a.epochs,
        minibatches: a.minibatches,
        temperature: a.temperature,
        max_new_tokens: a.max_new_tokens,
        max_train_tokens: a.max_train_tokens,
        clip: Clip {
            eps_low: a.eps_low,
            eps_high: a.eps_high,
            beta: a.beta,
        },
        scale_rewards: !a.no_scale_rewards,
        seed: a.seed,
        checkpoint_every: a.checkpoint_every,
        jobs: a.jobs.unwrap_or(TrainConfig::default().jobs),
        feedback_weight: a.feedback_weight,
        reward: a.reward.into(),
        curriculum: !a.no_curriculum,
        draw_rounds: a.draw_rounds,
        max_group_size: a.max_group_size.unwrap_or(2 * a.group_size),
        policy: PolicyConfig {
            lora,
            lr: a.lr,
            weight_decay: a.weight_decay,
            max_grad_norm: a.max_grad_norm,
            warmup_steps: a.warmup_steps,
            total_steps: optimizer_steps,
            ..PolicyConfig::default()
        },
    };
    let feedback = match &a.feedback {
        Some(Some(f)) => feedback_episodes(f, &loaded.name)?,
        Some(None) => {
            let db = crate::feedback::existing_db(None)?;
            feedback_episodes(&db.to_string_lossy(), &loaded.name)?
        }
        None => Vec::new(),
    };
    // The policy: the base weights in f32, with the served version's adapter
    // when one is served (training continues from it), else fresh adapters.
    let mut base = loaded
        .spec
        .load(
            basis_model::registry::Version::Base,
            Precision::F32,
            &device,
        )
        .with_context(|| format!("loading {} in f32 for training", loaded.spec.name))?;
    let mut policy = match (&cfg.policy.lora, loaded.spec.registry()) {
        (Some(_), _) if a.init_adapter.is_some() => {
            let dir = a.init_adapter.as_ref().expect("checked");
            basis_model::lora::load_adapter(&mut base.model, dir)
                .with_context(|| format!("loading the adapter {}", dir.display()))?;
            let mut cfg_policy = cfg.policy.clone();
            cfg_policy.lora = base.model.lora_config().cloned();
            Policy::from_trained(base, cfg_policy)
        }
        (Some(lora), Some(registry)) if loaded.at != basis_model::registry::Version::Base => {
            registry.load_into(&mut base.model, loaded.at)?;
            let served = base.model.lora_config().cloned();
            if served.as_ref().map(|c| (c.r, &c.target_modules))
                != Some((lora.r, &lora.target_modules))
            {
                bail!(
                    "{} {} is an adapter of rank {} on {:?}; train it with the same --lora-rank and --lora-targets, or serve base first (`basis model use {}@base`)",
                    loaded.name,
                    loaded.version,
                    served.as_ref().map_or(0, |c| c.r),
                    served.as_ref().map(|c| c.target_modules.clone()).unwrap_or_default(),
                    loaded.name
                );
            }
            let mut cfg_policy = cfg.policy.clone();
            cfg_policy.lora = served;
            Policy::from_trained(base, cfg_policy)
        }
        _ => Policy::from_model(base, cfg.policy.clone(), a.seed)?,
    };
    if a.full && loaded.at != basis_model::registry::Version::Base {
        eprintln!(
            "note: --full trains the base weights of {}; the served {}'s adapter is not part of it",
            loaded.name, loaded.version
        );
    }
    if a.beta > 0.0 && a.full {
        // The reference is the base weights: with LoRA the model with its
        // adapters off, with full fine-tuning (which starts from the base) a
        // frozen copy of them.
        let reference = loaded.spec.load(
            basis_model::registry::Version::Base,
            Precision::F32,
            &device,
        )?;
        policy.reference = Some(Box::new(reference));
    }
    eprintln!(
        "training {} {} ({}), {} trainable numbers, on {} tasks of {}, for the {} reward",
        loaded.name,
        loaded.version,
        if a.full { "every weight" } else { "LoRA" },
        policy.trainable_parameters(),
        tasks.len(),
        skills
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        cfg.reward.as_str()
    );
    let mut start = 0;
    if a.resume {
        let Some(dir) = basis_trainer::checkpoint::latest(&a.run) else {
            bail!("--resume: {} has no checkpoint", a.run.display());
        };
        let st = basis_trainer::checkpoint::state(&dir)?;
        if st.config_digest != cfg.digest() {
            bail!("--resume: {} was made with other settings; give the same options as the run it continues", dir.display());
        }
        basis_trainer::checkpoint::load(&dir, &mut policy)?;
        start = st.step;
        eprintln!("resuming {} after step {start}", a.run.display());
    } else if basis_trainer::checkpoint::latest(&a.run).is_some() {
        bail!(
            "{} already holds a run; continue it with --resume, or give another --run",
            a.run.display()
        );
    }
    let repo_root = crate::eval::repo_root(&tasks_path, a.repo_root.as_deref());
    let workspaces = crate::eval::open_workspaces(&repo_root, &tasks)?;
    if let Some(v) = &validation {
        check_validation(&workspaces, &v.tasks)?;
    }
    let sandbox = Sandbox::detect();
    std::fs::create_dir_all(&a.run).with_context(|| format!("creating {}", a.run.display()))?;
    crate::versions::RunInfo {
        schema: crate::versions::RUN_SCHEMA.into(),
        model: loaded.name.clone(),
        parent: loaded.version.clone(),
        tasks: crate::versions::absolute(&tasks_path),
        repo_root: crate::versions::absolute(&repo_root),
        skills: skills.iter().map(|s| s.as_str().to_string()).collect(),
        steps: a.steps,
        full: a.full,
        config_digest: cfg.digest(),
        reward: Some(cfg.reward.as_str().to_string()),
    }
    .write(&a.run)?;
    let bar = crate::progress::Bar::new("train", "{bar:30} step {pos}/{len} {msg}", a.steps as u64);
    bar.set_position(start as u64);
    if a.sft && start == 0 {
        let (fit, too_long): (Vec<_>, Vec<_>) = tasks
            .iter()
            .filter_map(|t| {
                let tree = workspaces.open(&t.repo).ok()?;
                let ep = basis_trainer::episode::Episode::prepare(t, &tree).ok()?;
                Some((t.skill(), basis_trainer::sft::example(&loaded.lm, t, &ep)?))
            })
            .partition(|(_, (prompt, answer))| prompt.len() + answer.len() <= a.max_train_tokens);
        // How many reference answers each skill gave the warm start.
        let mut per_skill: std::collections::BTreeMap<&str, usize> = Default::default();
        for (skill, _) in &fit {
            *per_skill.entry(skill.as_str()).or_default() += 1;
        }
        let examples: Vec<_> = fit.into_iter().map(|(_, e)| e).collect();
        if !too_long.is_empty() {
            eprintln!(
                "warm start: {} of {} answers left out, longer than {} tokens with their prompt (--max-train-tokens)",
                too_long.len(),
                examples.len() + too_long.len(),
                a.max_train_tokens
            );
        }
        let sft_lr = a.sft_lr.unwrap_or(a.lr);
        bar.set_message(format!(
            "warm start on {} reference answers",
            examples.len()
        ));
        let losses = train::warm_start(
            &mut policy,
            &examples,
            a.sft_epochs,
            4,
            sft_lr,
            a.seed,
            &mut |e| match e {
                Event::Fitted {
                    epoch,
                    epochs,
                    done,
                    of,
                } => bar.set_message(format!(
                    "warm start: epoch {epoch}/{epochs}, {done}/{of} answers"
                )),
                Event::Epoch {
                    epoch,
                    epochs,
                    loss,
                } => bar.println(format!(
                    "warm start: epoch {epoch}/{epochs}, loss {loss:.3}"
                )),
                _ => {}
            },
        )?;
        eprintln!(
            "warm start: {} answers ({}), loss per epoch {:?}",
            examples.len(),
            per_skill
                .iter()
                .map(|(s, n)| format!("{s} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
            losses.iter().map(|l| format!("{l:.3}")).collect::<Vec<_>>()
        );
        let record = serde_json::json!({
            "examples": examples.len(),
            "per_skill": per_skill,
            "left_out_too_long": too_long.len(),
            "epochs": a.sft_epochs,
            "lr": sft_lr,
            "loss_per_epoch": losses,
        });
        crate::skill_cli::write_file(
            &a.run.join("warm_start.json"),
            &serde_json::to_string_pretty(&record)?,
        )?;
    }
    // LoRA rollouts decode with the served (quantized) model carrying the
    // policy's adapter; full fine-tuning decodes with the policy itself.
    let mut sampler = if a.full {
        Sampler::Policy
    } else {
        Sampler::Served(Box::new(loaded.lm))
    };
    // Steps already scored (a resumed run), and the first validation that
    // failed: the run goes on without the curve and ends with the error.
    let mut validated: std::collections::BTreeSet<usize> = validation::read(&a.run)?
        .into_iter()
        .map(|p| p.step)
        .collect();
    let mut validation_failed: Option<anyhow::Error> = None;
    let metrics = train::train(
        &mut policy,
        &mut sampler,
        &tasks,
        &feedback,
        &workspaces,
        &sandbox,
        &cfg,
        &a.run,
        start,
        &mut |e| match e {
            Event::Phase(p) => bar.set_message(p),
            Event::Epoch { .. } | Event::Fitted { .. } => {}
            Event::Step(m) => {
                bar.set_position(m.step as u64);
                bar.println(step_line(m));
            }
            Event::Trained { step, lm } => {
                let Some(v) = &validation else { return };
                if !v.due(step, a.steps) || validated.contains(&step) || validation_failed.is_some()
                {
                    return;
                }
                let label = basis_trainer::eval::ModelLabel {
                    name: loaded.name.clone(),
                    version: format!("{} after step {step}", a.run.display()),
                };
                let scored = v.run(&a.run, step, lm, label, &workspaces, &sandbox, &mut |p| {
                    bar.set_message(format!("validation {}/{}", p.done, p.total))
                });
                match scored {
                    Ok(p) => {
                        bar.println(validation_line(&p));
                        validated.insert(step);
                    }
                    Err(e) => {
                        bar.println(format!("warning: validation after step {step} failed: {e}"));
                        validation_failed = Some(anyhow::Error::new(e));
                    }
                }
            }
        },
    )?;
    bar.finish_and_clear();
    if policy.lm.model.lora_config().is_some() {
        let adapter = a.run.join("adapter");
        basis_model::lora::save_adapter(&policy.lm.model, &adapter)?;
        eprintln!("the adapter is in {}", adapter.display());
    } else {
        let path = a.run.join("model.safetensors");
        candle_core::safetensors::save(&policy.tensors(), &path)?;
        eprintln!("the weights are in {}", path.display());
    }
    eprintln!(
        "{} steps done; metrics in {}",
        metrics.len() + start,
        a.run.join("metrics.jsonl").display()
    );
    for note in train::signal_notes(&metrics) {
        eprintln!("note: {note}");
    }
    if let Some(e) = validation_failed {
        return Err(e.context("the validation curve is incomplete (the run's weights are saved)"));
    }
    if let Some(b) = validation::best(&a.run).filter(|_| validation.is_some()) {
        eprintln!(
            "the best validation score, {:.3}, was after step {}: its weights are in {} (what publishing judges)",
            b.score,
            b.step,
            validation::best_dir(&a.run).display()
        );
    }
    if a.publish {
        // The evaluation decodes with a model of its own: give back the
        // training's memory, the freed memory kept for reuse included.
        drop((policy, sampler));
        basis_model::alloc::give_back_freed_memory();
        let opts = crate::versions::options(a.force, a.gate_samples, None);
        crate::versions::publish_run(&a.run, &opts)?;
    }
    Ok(())
}
