//! A model's versions on the command line: `basis model versions`, `use`
//! (promote or roll back), `publish RUN_DIR` (the evaluation gate, then the
//! registry) and `export-adapter` (a version as a PEFT adapter folder).
//!
//! Publishing evaluates the run's adapter (the best on the validation split,
//! where the run kept one with `--eval-every`; else its last) and the served
//! version on the task file's held-out split, judges them with the trainer's
//! gate (`basis_trainer::gate`: paired differences and their 95% intervals),
//! and only then publishes the adapter as the next version, whose manifest
//! records its parent, the tasks, the steps and the before/after table. A
//! running `basis lsp` watches `current` and swaps.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use basis_model::registry::{split_version, Version};
use basis_model::Precision;
use basis_skills::sandbox::Sandbox;
use basis_trainer::eval::{self, ModelLabel, Report};
use basis_trainer::gate::{self, Gate};
use basis_trainer::task::{self, Task};
use basis_trainer::workspace::Workspaces;
use serde::{Deserialize, Serialize};

/// What `basis train` records about a run in `RUN_DIR/run.json`, for a later
/// `basis model publish RUN_DIR`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    pub schema: String,
    pub model: String,
    /// The version training started from (the published version's parent).
    pub parent: String,
    pub tasks: PathBuf,
    pub repo_root: PathBuf,
    pub skills: Vec<String>,
    pub steps: usize,
    pub full: bool,
    pub config_digest: String,
    /// The reward the run optimised (`graded`, `binary`); runs from before the
    /// choice have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reward: Option<String>,
}

pub const RUN_SCHEMA: &str = "basis.run/1";

impl RunInfo {
    pub fn read(run: &Path) -> Result<RunInfo> {
        let path = run.join("run.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{} is not a training run (no run.json)", run.display()))?;
        serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))
    }

    pub fn write(&self, run: &Path) -> Result<()> {
        let path = run.join("run.json");
        crate::skill_cli::write_file(&path, &serde_json::to_string_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))
    }
}

/// How publishing judges a run.
pub struct PublishOptions {
    pub force: bool,
    pub gate: Gate,
    /// Samples per held-out task (greedy with one).
    pub samples: usize,
    /// Only these many held-out tasks per skill (all when `None`).
    pub limit: Option<usize>,
}

fn evaluate(
    lm: &basis_model::LanguageModel,
    label: ModelLabel,
    tasks: &[Task],
    workspaces: &Workspaces,
    sandbox: &Sandbox,
    samples: usize,
) -> Report {
    let config = eval::Config {
        samples,
        temperature: if samples > 1 { 0.7 } else { 0.0 },
        ..eval::Config::default()
    };
    crate::eval::evaluate_with_progress(lm, label, tasks, workspaces, sandbox, &config)
}

/// Evaluates a run's adapter against the served version and publishes it if
/// the gate passes (or `force`). Returns the new version, or an error saying
/// why it was not published.
pub fn publish_run(run: &Path, opts: &PublishOptions) -> Result<Version> {
    let info = RunInfo::read(run)?;
    // The best on the validation split, where the run kept one.
    let best = basis_trainer::validation::best(run);
    let adapter = match best {
        Some(_) => basis_trainer::validation::best_dir(run).join("adapter"),
        None => run.join("adapter"),
    };
    if info.full {
        bail!(
            "{} is a full fine-tuning run: the registry's versions are LoRA adapters on the base weights, \
             so it cannot be published (its weights are in {})",
            run.display(),
            run.join("model.safetensors").display()
        );
    }
    if !adapter.join("adapter_model.safetensors").is_file() {
        bail!(
            "{} has no adapter yet (the run has not finished a step)",
            run.display()
        );
    }
    let spec = crate::generate::resolve(Some(&info.model))?;
    let Some(registry) = spec.registry() else {
        bail!(
            "{} is a model from a path: only a model in the store has versions",
            info.model
        );
    };
    let served = spec.current()?;
    if served.to_string() != info.parent {
        eprintln!(
            "note: the run started from {} but {served} is served now; it is judged against {served}",
            info.parent
        );
    }
    let read =
        task::read(&info.tasks).with_context(|| format!("reading {}", info.tasks.display()))?;
    let skills: Vec<&str> = info.skills.iter().map(String::as_str).collect();
    let mut per_skill = std::collections::BTreeMap::new();
    let held: Vec<Task> = read
        .tasks
        .into_iter()
        .map(|l| l.task)
        .filter(|t| t.split() == "heldout")
        .filter(|t| skills.is_empty() || skills.contains(&t.skill().as_str()))
        .filter(|t| {
            let n = per_skill.entry(t.skill()).or_insert(0usize);
            *n += 1;
            opts.limit.is_none_or(|l| *n <= l)
        })
        .collect();
    let device = basis_model::default_device();
    let mut details = serde_json::json!({
        "run": run.canonicalize().unwrap_or_else(|_| run.to_path_buf()),
        "tasks": info.tasks,
        "skills": info.skills,
        "steps": info.steps,
        "parent": served.to_string(),
        "held_out_tasks": held.len(),
    });
    let mut summary = format!("{} steps on {}", info.steps, info.tasks.display());
    if let Some(b) = best {
        eprintln!(
            "judging the run's best validation checkpoint: after step {} (score {:.3})",
            b.step, b.score
        );
        details["checkpoint"] = serde_json::json!({
            "best_validation_step": b.step,
            "validation_score": b.score,
        });
        summary.push_str(&format!(" (the best on validation: step {})", b.step));
    }
    if held.is_empty() {
        if !opts.force {
            bail!(
                "{} has no held-out tasks of the run's skills to judge the run on; \
                 publish without the gate with --force",
                info.tasks.display()
            );
        }
        eprintln!("no held-out tasks: publishing without evaluation (--force)");
        details["gate"] = serde_json::json!("skipped: no held-out tasks (--force)");
    } else {
        let workspaces = crate::eval::open_workspaces(&info.repo_root, &held)?;
        let sandbox = Sandbox::detect();
        let before_lm = spec.load(served, Precision::Quantized, &device)?;
        let before = evaluate(
            &before_lm,
            ModelLabel {
                name: spec.name.clone(),
                version: served.to_string(),
            },
            &held,
            &workspaces,
            &sandbox,
            opts.samples,
        );
        drop(before_lm);
        let mut after_lm = spec.load(Version::Base, Precision::Quantized, &device)?;
        basis_model::lora::load_adapter(&mut after_lm.model, &adapter)
            .with_context(|| format!("loading the run's adapter {}", adapter.display()))?;
        let after = evaluate(
            &after_lm,
            ModelLabel {
                name: spec.name.clone(),
                version: "the run".into(),
            },
            &held,
            &workspaces,
            &sandbox,
            opts.samples,
        );
        let verdict = gate::judge(&before, &after, &opts.gate);
        let table = gate::markdown(&verdict, &format!("{served}"), "trained");
        let report = format!(
            "# Publishing {}\n\n{}: held-out tasks of {}, {} sample(s) each.\n\n{table}\n{}\n",
            run.display(),
            match best {
                Some(b) => format!("The run's best checkpoint on validation (step {})", b.step),
                None => "The run's adapter".into(),
            },
            info.tasks.display(),
            opts.samples,
            if verdict.passed {
                "The gate passed.".to_string()
            } else {
                format!("The gate failed: {}.", verdict.reasons.join("; "))
            }
        );
        crate::skill_cli::write_file(&run.join("publish.md"), &report)?;
        {
            use std::io::Write;
            std::io::stdout().lock().write_all(table.as_bytes())?;
        }
        details["before"] = serde_json::to_value(&before.per_skill)?;
        details["after"] = serde_json::to_value(&after.per_skill)?;
        details["gate"] = serde_json::to_value(&verdict)?;
        details["table"] = serde_json::json!(table);
        summary.push_str(&format!(
            "; held-out mean {:.3} -> {:.3}",
            verdict.mean_before, verdict.mean_after
        ));
        if !verdict.passed {
            if !opts.force {
                bail!(
                    "not published: {} (the table is in {}; --force publishes anyway)",
                    verdict.reasons.join("; "),
                    run.join("publish.md").display()
                );
            }
            eprintln!(
                "the gate failed ({}); publishing anyway (--force)",
                verdict.reasons.join("; ")
            );
            details["forced"] = serde_json::json!(true);
        }
    }
    let v = registry.publish(&adapter, &summary, details)?;
    eprintln!(
        "published {} {v} (parent {served}); it is now current, and a running `basis lsp` switches to it",
        spec.name
    );
    Ok(v)
}

/// `basis model versions [NAME]`: the versions, the served one marked.
pub fn list(model: Option<&str>) -> Result<()> {
    use std::io::Write;
    let spec = crate::generate::resolve(model)?;
    let Some(registry) = spec.registry() else {
        bail!(
            "{} is a model from a path: it has only its base version",
            spec.name
        );
    };
    let current = registry.current()?;
    let mut out = std::io::stdout().lock();
    let mark = |v: Version| if v == current { "*" } else { " " };
    writeln!(
        out,
        "{} base\t{}\tthe base weights",
        mark(Version::Base),
        spec.name
    )?;
    for v in registry.versions()? {
        let m = registry.manifest(v)?;
        let (parent, summary) = m
            .map(|m| (m.parent, m.summary))
            .unwrap_or_else(|| ("?".into(), String::new()));
        writeln!(out, "{} {v}\tparent {parent}\t{summary}", mark(v))?;
    }
    Ok(())
}

/// `basis model use NAME@VERSION`: serve that version (promotion or rollback).
pub fn use_version(spec_text: &str) -> Result<()> {
    let (name, version) = split_version(spec_text)?;
    let Some(version) = version else {
        bail!("say which version: {name}@base, {name}@v<N>");
    };
    let spec = crate::generate::resolve(Some(name))?;
    let Some(registry) = spec.registry() else {
        bail!(
            "{} is a model from a path: it has only its base version",
            spec.name
        );
    };
    let before = registry.current()?;
    registry.set_current(version)?;
    eprintln!("{} now serves {version} (was {before})", spec.name);
    Ok(())
}

/// `basis model export-adapter NAME@vN --out DIR`: the version's adapter as a
/// folder PEFT loads (`PeftModel.from_pretrained(base, DIR)`).
pub fn export_adapter(spec_text: &str, out: &Path, base_model: Option<&str>) -> Result<()> {
    let (name, version) = split_version(spec_text)?;
    let spec = crate::generate::resolve(Some(name))?;
    let Some(registry) = spec.registry() else {
        bail!("{} is a model from a path: it has no adapters", spec.name);
    };
    let version = match version {
        Some(v) => v,
        None => registry.current()?,
    };
    let Some(dir) = registry.version_dir(version) else {
        bail!("the base version has no adapter; name a version, e.g. {name}@v1");
    };
    let src = dir.join("adapter");
    if !src.is_dir() {
        bail!(
            "{name} has no version {version} ({} is missing)",
            src.display()
        );
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let weights = "adapter_model.safetensors";
    std::fs::copy(src.join(weights), out.join(weights))
        .with_context(|| format!("copying the adapter to {}", out.display()))?;
    let cfg_text = std::fs::read_to_string(src.join("adapter_config.json"))?;
    let mut cfg: serde_json::Value = serde_json::from_str(&cfg_text)?;
    if let Some(b) = base_model {
        cfg["base_model_name_or_path"] = serde_json::json!(b);
    }
    crate::skill_cli::write_file(
        &out.join("adapter_config.json"),
        &serde_json::to_string_pretty(&cfg)?,
    )?;
    eprintln!(
        "exported {name} {version} to {} (PEFT layout)",
        out.display()
    );
    Ok(())
}

/// The default publish options of the command line.
pub fn options(force: bool, samples: usize, limit: Option<usize>) -> PublishOptions {
    PublishOptions {
        force,
        gate: Gate::default(),
        samples: samples.max(1),
        limit,
    }
}

/// Where a relative path given on the command line points, made absolute (a
/// run's record outlives the shell it was started from).
pub fn absolute(p: &Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    })
}
