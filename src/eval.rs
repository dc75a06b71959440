//! `basis eval --tasks FILE`: how good a model is at each skill, on tasks with
//! known answers. It runs each task K times through exactly the skill code the
//! server runs, scores every answer with the skill's verifier (in the sandbox),
//! prints a table per skill (the binary Avg@K, and the graded reward beside
//! it) and writes `report.json`, `report.md` and
//! `answers.jsonl` (every sample's completion, in the format `--answers` reads).
//! Every score has a 95% interval (a bootstrap over tasks). With `--compare
//! VERSION`, the same tasks with another version of the model; with `--adapter`,
//! with the base weights alone: side by side, with the paired difference per
//! skill and its interval (in `report.json`'s `comparison` and `report.md`);
//! with `--baseline-answers FILE`, against answers recorded earlier (an
//! experiment's base run, scored again rather than sampled again); with any of
//! the three, what the publish gate would decide (`gate.json`). A
//! stored model's localization figures are also kept in its registry, per
//! repository, for the server's `localize.useModel: "auto"`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use basis_skills::sandbox::Sandbox;
use basis_trainer::eval::{self, ModelLabel, Report};
use basis_trainer::gate::{self, Gate};
use basis_trainer::task::{self, Task};
use basis_trainer::workspace::Workspaces;
use clap::Args;

#[derive(Args)]
pub struct EvalArgs {
    /// The task file.
    #[arg(long)]
    tasks: PathBuf,
    /// The model: a name from the store (with `@VERSION`: base, v<N>, current)
    /// or a path (default: the default model at its current version).
    #[arg(long)]
    model: Option<String>,
    /// Samples per task (the K of Avg@K and Pass@K).
    #[arg(long, default_value_t = 1, value_parser = crate::at_least_one)]
    samples: usize,
    /// Sampling temperature (default: 0, greedy, with one sample; 0.7 with more).
    #[arg(long)]
    temperature: Option<f32>,
    /// Sample i of a task uses seed S + i.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Only these skills (comma-separated).
    #[arg(long, value_delimiter = ',')]
    skills: Vec<String>,
    /// Only tasks of this split (train, validation, heldout).
    #[arg(long)]
    split: Option<String>,
    /// At most this many tasks per skill (in file order).
    #[arg(long)]
    limit: Option<usize>,
    /// Where report.json, report.md and answers.jsonl (what the model wrote) go.
    #[arg(long, default_value = "eval-report")]
    out: PathBuf,
    /// Another version of the same model to evaluate on the same tasks (e.g.
    /// v3), and the paired difference per skill.
    #[arg(long)]
    compare: Option<String>,
    /// Evaluate the base weights with this adapter (a PEFT folder, e.g. a
    /// training run's RUN_DIR/adapter) instead of a registry version, then the
    /// base weights alone on the same tasks, and the paired difference.
    #[arg(long, conflicts_with = "compare")]
    adapter: Option<PathBuf>,
    /// What relative `repo.path`s are relative to (default: the task file's folder).
    #[arg(long)]
    repo_root: Option<PathBuf>,
    /// Sandbox runs at once (default: the number of cores).
    #[arg(long, value_parser = crate::at_least_one)]
    jobs: Option<usize>,
    /// Score recorded answers instead of sampling the model: JSON lines of
    /// `{"id": TASK_ID, "completion": TEXT}` (several lines per task make K).
    #[arg(long)]
    answers: Option<PathBuf>,
    /// The other side of the comparison from recorded answers instead of
    /// sampling it again: e.g. the `answers.jsonl` of an earlier `basis eval` of
    /// the base model on the same tasks, with the same K. Scored here, then the
    /// paired difference per skill, as with `--compare` or `--adapter`.
    #[arg(long, conflicts_with = "compare")]
    baseline_answers: Option<PathBuf>,
}

/// Recorded answers: task id → its completions, in file order.
type Answers = std::collections::HashMap<String, Vec<String>>;

/// Reads recorded answers (`--answers`, `--baseline-answers`).
fn read_answers(path: &Path) -> Result<Answers> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Answers::default();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not JSON", path.display(), i + 1))?;
        let (Some(id), Some(c)) = (v["id"].as_str(), v["completion"].as_str()) else {
            bail!(
                "{}:{}: expected {{\"id\", \"completion\"}}",
                path.display(),
                i + 1
            );
        };
        out.entry(id.to_string()).or_default().push(c.to_string());
    }
    Ok(out)
}

/// The tasks to run: read (bad lines reported), filtered.
fn selected(args: &EvalArgs) -> Result<Vec<Task>> {
    let read =
        task::read(&args.tasks).with_context(|| format!("reading {}", args.tasks.display()))?;
    for e in &read.errors {
        eprintln!("{e}");
    }
    let skills = crate::tasks::parse_skills(&args.skills)?;
    let mut per_skill = std::collections::BTreeMap::new();
    let tasks: Vec<Task> = read
        .tasks
        .into_iter()
        .map(|l| l.task)
        .filter(|t| skills.contains(&t.skill()))
        .filter(|t| args.split.as_deref().is_none_or(|s| t.split() == s))
        .filter(|t| {
            let n = per_skill.entry(t.skill()).or_insert(0usize);
            *n += 1;
            args.limit.is_none_or(|l| *n <= l)
        })
        .collect();
    if tasks.is_empty() {
        bail!(
            "no tasks to evaluate in {} (skills {}; split {})",
            args.tasks.display(),
            skills
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            args.split.as_deref().unwrap_or("any")
        );
    }
    Ok(tasks)
}

/// Evaluates `model` on `tasks`, or scores recorded `answers` instead when
/// given. With `--adapter`, on the base weights: with the adapter when
/// `with_adapter`, else alone (what the adapter is compared against).
fn run_one(
    args: &EvalArgs,
    model: Option<&str>,
    with_adapter: bool,
    answers: Option<Answers>,
    tasks: &[Task],
    workspaces: &Workspaces,
    sandbox: &Sandbox,
) -> Result<(Report, crate::skill_cli::Loaded)> {
    let mut loaded = crate::skill_cli::load_model(model)?;
    if let Some(dir) = &args.adapter {
        if model.is_some_and(|m| m.contains('@'))
            || loaded.at != basis_model::registry::Version::Base
        {
            loaded = crate::skill_cli::load_model(Some(&format!("{}@base", loaded.name)))?;
        }
        if with_adapter {
            basis_model::lora::load_adapter(&mut loaded.lm.model, dir)
                .with_context(|| format!("loading the adapter {}", dir.display()))?;
            loaded.version = format!("base+{}", dir.display());
        }
    }
    // Recorded answers make K: the most any task has.
    let samples = answers
        .as_ref()
        .and_then(|a| a.values().map(Vec::len).max())
        .unwrap_or(args.samples)
        .max(1);
    let config = eval::Config {
        samples,
        temperature: args
            .temperature
            .unwrap_or(if samples > 1 { 0.7 } else { 0.0 }),
        seed: args.seed,
        jobs: args.jobs.unwrap_or(eval::Config::default().jobs),
        answers,
    };
    let label = ModelLabel {
        name: loaded.name.clone(),
        version: loaded.version.clone(),
    };
    let report = evaluate_with_progress(&loaded.lm, label, tasks, workspaces, sandbox, &config);
    Ok((report, loaded))
}

/// `eval::evaluate` with a line saying what runs and a progress bar on stderr
/// (also what `basis model publish` evaluates with).
pub fn evaluate_with_progress(
    lm: &basis_model::LanguageModel,
    label: ModelLabel,
    tasks: &[Task],
    workspaces: &Workspaces,
    sandbox: &Sandbox,
    config: &eval::Config,
) -> Report {
    eprintln!(
        "evaluating {} {} on {} tasks, {} sample(s) each",
        label.name,
        label.version,
        tasks.len(),
        config.samples
    );
    let bar = crate::progress::Bar::new(
        "eval",
        "{bar:30} {pos}/{len} tasks {msg}",
        tasks.len() as u64,
    );
    let report = eval::evaluate(lm, label, tasks, workspaces, sandbox, config, &mut |p| {
        bar.set_position(p.done as u64);
        bar.set_message(p.task);
    });
    bar.finish_and_clear();
    report
}

/// Where a task file's relative repository paths are read: `--repo-root`,
/// or else the task file's folder.
pub fn repo_root(tasks_file: &Path, given: Option<&Path>) -> PathBuf {
    match given {
        Some(r) => r.to_path_buf(),
        None => tasks_file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
    }
}

/// The task trees under `repo_root`, after checking that the tasks'
/// repositories are there: none there is an error before any work starts, some
/// missing a warning (those tasks are skipped and listed in the report).
pub fn open_workspaces(repo_root: &Path, tasks: &[Task]) -> Result<Workspaces> {
    let store = crate::store::Store::open()?;
    let workspaces = Workspaces::new(repo_root, store.root().join("cache/trees"));
    let missing = workspaces.check_repos(tasks.iter().map(|t| &t.repo))?;
    for path in &missing {
        eprintln!(
            "warning: the repository {} does not exist; its tasks are skipped",
            path.display()
        );
    }
    Ok(workspaces)
}

fn write(dir: &Path, name: &str, text: &str) -> Result<()> {
    let path = dir.join(name);
    crate::skill_cli::write_file(&path, text).with_context(|| format!("writing {}", path.display()))
}

pub fn run_eval(args: EvalArgs) -> Result<()> {
    let tasks = selected(&args)?;
    // Recorded answers are read before anything runs: a file that cannot be
    // read fails now, not after the evaluation.
    let recorded = args.answers.as_deref().map(read_answers).transpose()?;
    let baseline = args
        .baseline_answers
        .as_deref()
        .map(read_answers)
        .transpose()?;
    let repo_root = repo_root(&args.tasks, args.repo_root.as_deref());
    let workspaces = open_workspaces(&repo_root, &tasks)?;
    let sandbox = Sandbox::detect();
    let model = args.model.as_deref();
    let (mut report, loaded) =
        run_one(&args, model, true, recorded, &tasks, &workspaces, &sandbox)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    write_report(&args.out, &report)?;
    write(&args.out, "answers.jsonl", &eval::answers_jsonl(&report))?;
    if args.adapter.is_none() {
        keep_localization(&loaded, &report, &tasks, &workspaces);
    }
    drop(loaded);
    // What this report is compared against: recorded answers, another
    // version, or the base weights without the adapter.
    let other = match (&args.compare, &args.adapter) {
        _ if baseline.is_some() => {
            let mut b = run_one(&args, model, false, baseline, &tasks, &workspaces, &sandbox)?.0;
            let file = args
                .baseline_answers
                .as_deref()
                .and_then(Path::file_name)
                .unwrap_or_default();
            b.model.version = format!("recorded ({})", file.to_string_lossy());
            Some(b)
        }
        (Some(version), _) => {
            let name = model
                .map(|m| m.rsplit_once('@').map_or(m, |(n, _)| n))
                .unwrap_or(crate::store::DEFAULT_MODEL);
            let spec = format!("{name}@{version}");
            Some(
                run_one(
                    &args,
                    Some(&spec),
                    false,
                    None,
                    &tasks,
                    &workspaces,
                    &sandbox,
                )?
                .0,
            )
        }
        // Recorded answers are the same whatever the weights: nothing to compare.
        (None, Some(_)) if args.answers.is_none() => {
            Some(run_one(&args, model, false, None, &tasks, &workspaces, &sandbox)?.0)
        }
        _ => None,
    };
    let mut md = eval::markdown(&report);
    if let Some(b) = other {
        write(
            &args.out,
            "compare.json",
            &serde_json::to_string_pretty(&b)?,
        )?;
        write(&args.out, "compare-answers.jsonl", &eval::answers_jsonl(&b))?;
        report.comparison = Some(eval::compare(&b, &report));
        write_report(&args.out, &report)?;
        md.push_str(&eval::compare_markdown(&report));
        // What `basis model publish` would decide on these two.
        let verdict = gate::judge(&b, &report, &Gate::default());
        write(
            &args.out,
            "gate.json",
            &serde_json::to_string_pretty(&verdict)?,
        )?;
        md.push_str(&format!(
            "
## What the publish gate would say

{}
{}
",
            gate::markdown(&verdict, &b.model.version, &report.model.version),
            if verdict.passed {
                "It would publish.".to_string()
            } else {
                format!("It would refuse: {}.", verdict.reasons.join("; "))
            }
        ));
    }
    write(&args.out, "report.md", &md)?;
    std::io::stdout().lock().write_all(md.as_bytes())?;
    eprintln!("wrote {}", args.out.join("report.md").display());
    Ok(())
}

fn write_report(dir: &Path, report: &Report) -> Result<()> {
    write(dir, "report.json", &serde_json::to_string_pretty(report)?)
}

/// Keeps a stored model's localization figures per repository in its
/// registry, where the server looks when `localize.useModel` is `auto`.
fn keep_localization(
    loaded: &crate::skill_cli::Loaded,
    report: &Report,
    tasks: &[Task],
    workspaces: &Workspaces,
) {
    let Some(registry) = loaded.spec.registry() else {
        return;
    };
    let version = loaded.at;
    let mut per_repo: std::collections::BTreeMap<String, (usize, f64, f64)> = Default::default();
    for r in report.tasks.iter().filter(|t| t.rankings.is_some()) {
        let Some(task) = tasks.iter().find(|t| t.id == r.id) else {
            continue;
        };
        let path = workspaces.repo_path(&task.repo);
        let path = path.canonicalize().unwrap_or(path).display().to_string();
        let rk = r.rankings.as_ref().expect("filtered");
        let e = per_repo.entry(path).or_default();
        e.0 += 1;
        e.1 += rk.model_exact_at_ref;
        e.2 += rk.retrieval_exact_at_ref;
    }
    for (repo, (n, model, retrieval)) in per_repo {
        let figures = serde_json::json!({
            "tasks": n,
            "model_exact_at_ref": model / n as f64,
            "retrieval_exact_at_ref": retrieval / n as f64,
        });
        if let Err(e) = registry.record_eval(version, "localize", &repo, figures) {
            eprintln!("warning: the localization figures were not kept in the registry: {e}");
        }
    }
}
