//! Held-out curves during training: every N steps a run scores its weights on
//! the task file's validation split with the evaluator ([`crate::eval`]: the
//! same prompts, K and temperature as `basis eval`), writes the result to
//! `RUN_DIR/metrics.jsonl` as a line of its own (`"kind": "validation"`), and
//! keeps the weights of the best score so far in `RUN_DIR/best/`: what `basis
//! model publish` then judges, on the held-out split, through the gate.
//!
//! A score is the mean over the skills of each skill's Avg@K, review's by its
//! balanced accuracy where its tasks have both verdicts (as the gate judges
//! it: a run that drifts to answering YES every time does not look better on
//! the way). Step 0 is the weights the run starts from (after a warm start);
//! a later step must score strictly higher to replace the best.
//!
//! `best/` is written beside it under a temporary name and renamed into place,
//! so it is always one whole checkpoint: `best.json` (its step and score) and
//! the adapter in PEFT's layout (`best/adapter/`), or for full fine-tuning the
//! weights (`best/model.safetensors`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use basis_model::LanguageModel;
use basis_skills::sandbox::Sandbox;
use serde::{Deserialize, Serialize};

use crate::eval::{self, ModelLabel, Report};
use crate::task::Task;
use crate::workspace::Workspaces;
use crate::TrainError;

/// The `kind` of a validation line in `metrics.jsonl` (a step's line has none).
pub const KIND: &str = "validation";

/// One validation: a line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub kind: String,
    /// Steps done when the weights were scored (0: before the first).
    pub step: usize,
    /// What the best is chosen by (see the module docs).
    pub score: f64,
    /// The mean of Avg@K over the skills, and its 95% interval.
    pub mean: f64,
    pub mean_ci95: Option<[f64; 2]>,
    /// Each skill's Avg@K.
    pub per_skill: BTreeMap<String, f64>,
    pub review_balanced_accuracy: Option<f64>,
    /// Tasks scored, and tasks that could not be.
    pub tasks: usize,
    pub skipped: usize,
    /// Samples a task (K).
    pub samples: usize,
    /// The best score so far: its weights are in `best/`.
    pub best: bool,
    pub seconds: f64,
}

/// The best validation's step and score (`best/best.json`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Best {
    pub step: usize,
    pub score: f64,
}

/// What a run validates on, and how.
pub struct Validation {
    pub tasks: Vec<Task>,
    /// The evaluator's settings (K, temperature, seed, scoring threads).
    pub config: eval::Config,
    /// Every this many steps (and at the start and the last step).
    pub every: usize,
}

/// The score a report gives a checkpoint (see the module docs).
pub fn score(report: &Report) -> f64 {
    let each: Vec<f64> = report
        .per_skill
        .iter()
        .map(|(skill, s)| match &s.verdicts {
            Some(v) if skill == "review" => v.balanced_accuracy.unwrap_or(s.avg_at_k),
            _ => s.avg_at_k,
        })
        .collect();
    crate::stats::mean(&each).unwrap_or(0.0)
}

/// Where a run keeps its best weights.
pub fn best_dir(run: &Path) -> PathBuf {
    run.join("best")
}

/// The best validation so far, if the run has one.
pub fn best(run: &Path) -> Option<Best> {
    let text = std::fs::read_to_string(best_dir(run).join("best.json")).ok()?;
    serde_json::from_str(&text).ok()
}

impl Validation {
    /// Whether the weights after `step` of `steps` are scored: at the start,
    /// every [`Validation::every`] steps and at the end.
    pub fn due(&self, step: usize, steps: usize) -> bool {
        step == 0 || step == steps || step.is_multiple_of(self.every.max(1))
    }

    /// Scores `lm` (the weights after `step` steps) on the validation tasks,
    /// keeps its weights when they are the best so far, and appends the line
    /// to `metrics.jsonl`.
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &self,
        run: &Path,
        step: usize,
        lm: &LanguageModel,
        label: ModelLabel,
        workspaces: &Workspaces,
        sandbox: &Sandbox,
        progress: &mut dyn FnMut(eval::Progress<'_>),
    ) -> Result<Point, TrainError> {
        let t0 = Instant::now();
        let report = eval::evaluate(
            lm,
            label,
            &self.tasks,
            workspaces,
            sandbox,
            &self.config,
            progress,
        );
        // A prompt cached for the evaluation is no use to the rollouts.
        lm.generator.clear_prefix();
        let mut point = Point {
            kind: KIND.into(),
            step,
            score: score(&report),
            mean: report.mean,
            mean_ci95: report.mean_ci95,
            per_skill: report
                .per_skill
                .iter()
                .map(|(k, s)| (k.clone(), s.avg_at_k))
                .collect(),
            review_balanced_accuracy: report
                .per_skill
                .get("review")
                .and_then(|r| r.verdicts)
                .and_then(|v| v.balanced_accuracy),
            tasks: report.tasks.len(),
            skipped: report.skipped.len(),
            samples: report.samples,
            best: false,
            seconds: 0.0,
        };
        if report.tasks.is_empty() {
            let why: Vec<String> = report
                .skipped
                .iter()
                .take(3)
                .map(|s| format!("{}: {}", s.id, s.reason))
                .collect();
            return Err(TrainError::Input(format!(
                "no validation task could be scored ({})",
                why.join("; ")
            )));
        }
        point.best = best(run).is_none_or(|b| point.score > b.score);
        if point.best {
            keep_best(
                run,
                lm,
                Best {
                    step,
                    score: point.score,
                },
            )?;
        }
        point.seconds = t0.elapsed().as_secs_f64();
        append(run, &point)?;
        Ok(point)
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `lm`'s trainable weights and `best` as the run's best (see the
/// module docs).
pub fn keep_best(run: &Path, lm: &LanguageModel, best: Best) -> Result<(), TrainError> {
    let tmp = tempfile::Builder::new()
        .prefix(".best.")
        .tempdir_in(run)
        .map_err(io(run))?;
    if lm.model.lora_config().is_some() {
        basis_model::lora::save_adapter(&lm.model, &tmp.path().join("adapter"))?;
    } else {
        let tensors: std::collections::HashMap<String, candle_core::Tensor> = lm
            .model
            .trainable_vars()
            .iter()
            .map(|(name, var)| (name.clone(), var.as_tensor().clone()))
            .collect();
        candle_core::safetensors::save(&tensors, tmp.path().join("model.safetensors"))?;
    }
    let record = tmp.path().join("best.json");
    std::fs::write(
        &record,
        serde_json::to_string_pretty(&best).expect("best serialises"),
    )
    .map_err(io(&record))?;
    let dest = best_dir(run);
    let old = run.join(".best.old");
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    if dest.exists() {
        std::fs::rename(&dest, &old).map_err(io(&dest))?;
    }
    std::fs::rename(tmp.keep(), &dest).map_err(io(&dest))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    Ok(())
}

/// Appends a validation line to `RUN_DIR/metrics.jsonl`.
pub fn append(run: &Path, point: &Point) -> Result<(), TrainError> {
    let path = run.join("metrics.jsonl");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io(&path))?;
    let line = serde_json::to_string(point).expect("a point serialises") + "\n";
    f.write_all(line.as_bytes())
        .and_then(|_| f.flush())
        .map_err(io(&path))
}

/// A run's validation lines, one a step (the last, when a resumed run wrote
/// one twice); none when it has no metrics yet.
pub fn read(run: &Path) -> Result<Vec<Point>, TrainError> {
    let path = run.join("metrics.jsonl");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(&path)(e)),
    };
    let mut by_step: BTreeMap<usize, Point> = BTreeMap::new();
    for line in text.lines() {
        if let Ok(p) = serde_json::from_str::<Point>(line) {
            if p.kind == KIND {
                by_step.insert(p.step, p);
            }
        }
    }
    Ok(by_step.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::episode::{ReviewCall, Score};
    use crate::eval::{summarize, Config, Sample, TaskResult};
    use basis_skills::SkillId;

    fn task(id: &str, skill: SkillId, reward: f64, verdict: Option<(bool, bool)>) -> TaskResult {
        TaskResult {
            id: id.into(),
            skill,
            split: "validation".into(),
            samples: vec![Sample {
                reward,
                score: Score {
                    verdict: verdict.map(|(expected, said)| ReviewCall {
                        expected,
                        said: Some(said),
                    }),
                    ..Score::default()
                },
                tokens: 1,
                latency_ms: 1,
                completion: String::new(),
            }],
            rankings: None,
        }
    }

    fn report(tasks: Vec<TaskResult>) -> Report {
        let label = ModelLabel {
            name: "m".into(),
            version: "run".into(),
        };
        summarize(label, &Config::default(), tasks, Vec::new())
    }

    #[test]
    fn the_score_is_the_mean_over_skills_with_review_by_balanced_accuracy() {
        // Edit 1 of 2; review YES on three YES tasks and one NO task: Avg@K
        // 0.75, balanced accuracy 0.5. The score: (0.5 + 0.5) / 2.
        let always_yes = report(vec![
            task("e1", SkillId::Edit, 1.0, None),
            task("e2", SkillId::Edit, 0.0, None),
            task("r1", SkillId::Review, 1.0, Some((true, true))),
            task("r2", SkillId::Review, 1.0, Some((true, true))),
            task("r3", SkillId::Review, 1.0, Some((true, true))),
            task("r4", SkillId::Review, 0.0, Some((false, true))),
        ]);
        assert_eq!(always_yes.mean, 0.625);
        assert_eq!(score(&always_yes), 0.5);
        // Review tasks of one verdict: its Avg@K.
        let yes_only = report(vec![
            task("e1", SkillId::Edit, 1.0, None),
            task("r1", SkillId::Review, 1.0, Some((true, true))),
            task("r2", SkillId::Review, 0.0, Some((true, false))),
        ]);
        assert_eq!(score(&yes_only), 0.75);
    }

    #[test]
    fn due_at_the_start_every_n_steps_and_at_the_end() {
        let v = Validation {
            tasks: Vec::new(),
            config: Config::default(),
            every: 3,
        };
        let due: Vec<usize> = (0..=7).filter(|&s| v.due(s, 7)).collect();
        assert_eq!(due, vec![0, 3, 6, 7]);
    }

    #[test]
    fn validation_lines_read_back_beside_step_lines_the_last_of_a_step_kept() {
        let run = tempfile::tempdir().unwrap();
        let point = |step: usize, score: f64| Point {
            kind: KIND.into(),
            step,
            score,
            mean: score,
            mean_ci95: None,
            per_skill: BTreeMap::new(),
            review_balanced_accuracy: None,
            tasks: 2,
            skipped: 0,
            samples: 1,
            best: false,
            seconds: 1.0,
        };
        assert_eq!(read(run.path()).unwrap(), vec![]);
        append(run.path(), &point(0, 0.1)).unwrap();
        // A step's own line has no kind; it is not a validation.
        let metrics = run.path().join("metrics.jsonl");
        let mut text = std::fs::read_to_string(&metrics).unwrap();
        text.push_str("{\"step\": 1, \"reward\": 0.5}\n");
        std::fs::write(&metrics, text).unwrap();
        append(run.path(), &point(2, 0.2)).unwrap();
        append(run.path(), &point(2, 0.3)).unwrap();
        let read = read(run.path()).unwrap();
        assert_eq!(read, vec![point(0, 0.1), point(2, 0.3)]);
        // The step lines read without the validation lines.
        let steps = crate::train::read_metrics(run.path()).unwrap();
        assert_eq!(steps.len(), 1, "{steps:?}");
        assert_eq!(steps[0]["reward"], 0.5);
    }

    #[test]
    fn the_best_is_kept_whole_and_replaced_whole() {
        use crate::policy::{Policy, PolicyConfig};
        use basis_model::tiny::{write_random_model, TinySpec};
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("model");
        write_random_model(&model, &TinySpec::default(), 1).unwrap();
        let policy = |lora: bool| {
            let lm = LanguageModel::load(
                &model,
                basis_model::Precision::F32,
                &basis_model::Device::Cpu,
            )
            .unwrap();
            let defaults = PolicyConfig::default();
            let cfg = PolicyConfig {
                lora: if lora { defaults.lora.clone() } else { None },
                ..defaults
            };
            Policy::from_model(lm, cfg, 1).unwrap()
        };
        let run = dir.path().join("run");
        std::fs::create_dir_all(&run).unwrap();
        assert_eq!(best(&run), None);
        // An adapter, in PEFT's layout, that loads.
        let lora = policy(true);
        keep_best(
            &run,
            &lora.lm,
            Best {
                step: 0,
                score: 0.25,
            },
        )
        .unwrap();
        assert_eq!(
            best(&run),
            Some(Best {
                step: 0,
                score: 0.25
            })
        );
        let mut fresh = policy(false).lm;
        basis_model::lora::load_adapter(&mut fresh.model, &best_dir(&run).join("adapter")).unwrap();
        // Full weights: the trainable tensors, and the adapter of the last
        // best gone with it.
        keep_best(
            &run,
            &policy(false).lm,
            Best {
                step: 3,
                score: 0.5,
            },
        )
        .unwrap();
        assert_eq!(
            best(&run),
            Some(Best {
                step: 3,
                score: 0.5
            })
        );
        assert!(best_dir(&run).join("model.safetensors").is_file());
        assert!(!best_dir(&run).join("adapter").exists());
        let run = run.as_path();
        // Nothing half-written is left beside it.
        let names: Vec<String> = std::fs::read_dir(run)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["best".to_string()]);
    }
}
