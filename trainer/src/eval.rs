//! `basis eval`: a model on a task file, K samples a task, through exactly the
//! skill code the server runs ([`crate::episode`]), scored by the skills' own
//! verifiers, and a report per skill.
//!
//! Per skill: the tasks scored, Avg@K (the mean reward over all samples), Pass@K
//! (the share of tasks with at least one sample rewarded 1), the mean latency and
//! tokens of a sample; the mean of Avg@K over the skills. Localization adds
//! recall@k and F1 beside its exact-set reward, and the retrieval-only ranking
//! (BM25, no model) scored the same way, so a user sees whether the model adds
//! anything to retrieval.
//!
//! Generation runs on this thread (the model uses every core); scoring runs on
//! `jobs` threads of its own beside it (sandbox runs at once), each distinct
//! answer of a task scored once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use basis_model::LanguageModel;
use basis_skills::generate::complete;
use basis_skills::sandbox::Sandbox;
use basis_skills::{localize, SkillId};
use serde::Serialize;

use crate::episode::{Answer, Episode, Score, ScoreCache, RECALL_K};
use crate::task::Task;
use crate::workspace::{TaskTree, Workspaces};

/// How to evaluate.
#[derive(Debug, Clone)]
pub struct Config {
    /// Samples per task (the K of Avg@K and Pass@K).
    pub samples: usize,
    /// Sampling temperature (0: greedy; with K > 1, samples then all agree).
    pub temperature: f32,
    /// Sample `i` of every task uses seed `seed + i`.
    pub seed: u64,
    /// Scoring runs at once (sandbox runs).
    pub jobs: usize,
    /// Recorded answers (task id → completions) to score instead of sampling
    /// the model: the same prompts, parsers and verifiers, with the model's part
    /// fixed (to check a verifier, or to score answers made elsewhere).
    pub answers: Option<HashMap<String, Vec<String>>>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            samples: 1,
            temperature: 0.0,
            seed: 0,
            jobs: std::thread::available_parallelism().map_or(2, |n| n.get()),
            answers: None,
        }
    }
}

/// Which model made the answers.
#[derive(Debug, Clone, Serialize)]
pub struct ModelLabel {
    pub name: String,
    pub version: String,
}

/// One sample's result.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub reward: f64,
    #[serde(flatten)]
    pub score: Score,
    pub tokens: usize,
    pub latency_ms: u64,
    /// What the model wrote (kept out of `report.json`; see [`answers_jsonl`]).
    #[serde(skip)]
    pub completion: String,
}

/// Localization's rankings scored the same way: the model's, and retrieval's.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Rankings {
    /// The first |reference| files of the ranking are exactly the reference.
    pub model_exact_at_ref: f64,
    pub retrieval_exact_at_ref: f64,
    pub retrieval_recall_at_k: f64,
}

/// One task's results.
#[derive(Debug, Clone, Serialize)]
pub struct TaskResult {
    pub id: String,
    pub skill: SkillId,
    pub split: String,
    pub samples: Vec<Sample>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rankings: Option<Rankings>,
}

/// A task that was not scored, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub id: String,
    pub skill: SkillId,
    pub reason: String,
}

/// One skill's figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SkillSummary {
    pub tasks: usize,
    pub avg_at_k: f64,
    pub pass_at_k: f64,
    pub mean_latency_ms: f64,
    pub mean_tokens: f64,
    /// Localization only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recall_at_k: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub f1: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rankings: Option<Rankings>,
    /// Review only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdicts: Option<Verdicts>,
}

/// What a review's samples answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Said {
    pub yes: usize,
    pub no: usize,
    /// No verdict at all.
    pub neither: usize,
}

impl Said {
    fn total(&self) -> usize {
        self.yes + self.no + self.neither
    }
}

/// Review's samples by the verdict that was right. Avg@K alone cannot tell a
/// reviewer from a constant: on tasks half YES and half NO, answering YES every
/// time scores 0.5. Balanced accuracy, the mean of the share right on YES tasks
/// and on NO tasks, is 0.5 for any constant answer whatever the mix.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Verdicts {
    /// Samples of tasks whose right verdict is YES.
    pub on_yes: Said,
    /// Samples of tasks whose right verdict is NO.
    pub on_no: Said,
    /// Only where there are tasks of both verdicts.
    pub balanced_accuracy: Option<f64>,
}

impl Verdicts {
    fn count<'a>(samples: impl Iterator<Item = &'a Sample>) -> Self {
        let mut v = Verdicts::default();
        for verdict in samples.filter_map(|s| s.score.verdict) {
            let side = if verdict.expected {
                &mut v.on_yes
            } else {
                &mut v.on_no
            };
            match verdict.said {
                Some(true) => side.yes += 1,
                Some(false) => side.no += 1,
                None => side.neither += 1,
            }
        }
        let (y, n) = (v.on_yes.total(), v.on_no.total());
        if y > 0 && n > 0 {
            v.balanced_accuracy =
                Some((v.on_yes.yes as f64 / y as f64 + v.on_no.no as f64 / n as f64) / 2.0);
        }
        v
    }
}

/// The whole evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: String,
    pub model: ModelLabel,
    pub samples: usize,
    pub temperature: f32,
    pub seed: u64,
    pub per_skill: BTreeMap<String, SkillSummary>,
    /// The mean of Avg@K over the skills evaluated.
    pub mean: f64,
    pub skipped: Vec<Skipped>,
    pub tasks: Vec<TaskResult>,
}

/// A task's answers, waiting to be scored.
struct Job {
    n: usize,
    id: String,
    skill: SkillId,
    split: String,
    tree: TaskTree,
    episode: Episode,
    answers: Vec<Answer>,
    rankings: Option<Rankings>,
}

/// Where the evaluation is, for a progress bar.
pub struct Progress<'a> {
    pub done: usize,
    pub total: usize,
    pub task: &'a str,
}

/// Evaluates `lm` on `tasks` (see the module docs).
pub fn evaluate(
    lm: &LanguageModel,
    model: ModelLabel,
    tasks: &[Task],
    workspaces: &Workspaces,
    sandbox: &Sandbox,
    config: &Config,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Report {
    let k = config.samples.max(1);
    let results: Mutex<BTreeMap<usize, TaskResult>> = Mutex::default();
    let skipped: Mutex<Vec<Skipped>> = Mutex::default();
    let cache = ScoreCache::default();
    let (jobs, queue) = std::sync::mpsc::channel::<Job>();
    let queue = Mutex::new(queue);
    std::thread::scope(|scope| {
        for _ in 0..config.jobs.max(1) {
            scope.spawn(|| loop {
                let job = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
                let Ok(job) = job else { break };
                let scored = score_all(
                    sandbox,
                    &job.tree,
                    &job.episode,
                    &job.id,
                    &job.answers,
                    &cache,
                );
                match scored {
                    Ok(samples) => {
                        results.lock().unwrap_or_else(|e| e.into_inner()).insert(
                            job.n,
                            TaskResult {
                                id: job.id,
                                skill: job.skill,
                                split: job.split,
                                samples,
                                rankings: job.rankings,
                            },
                        );
                    }
                    Err(reason) => {
                        skipped
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(Skipped {
                                id: job.id,
                                skill: job.skill,
                                reason,
                            })
                    }
                }
            });
        }
        for (n, task) in tasks.iter().enumerate() {
            progress(Progress {
                done: n,
                total: tasks.len(),
                task: &task.id,
            });
            let skip = |reason: String| {
                skipped
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Skipped {
                        id: task.id.clone(),
                        skill: task.skill(),
                        reason,
                    })
            };
            let tree = match workspaces.open(&task.repo) {
                Ok(t) => t,
                Err(e) => {
                    skip(e.to_string());
                    continue;
                }
            };
            let episode = match Episode::prepare(task, &tree) {
                Ok(e) => e,
                Err(e) => {
                    skip(e.to_string());
                    continue;
                }
            };
            let prompt = match episode.prompt(lm, &episode.default_options()) {
                Ok(p) => p,
                Err(e) => {
                    skip(format!("no prompt: {e}"));
                    continue;
                }
            };
            let mut answers = Vec::with_capacity(k);
            let mut failed = None;
            if let Some(recorded) = &config.answers {
                let Some(completions) = recorded.get(&task.id) else {
                    skip("no recorded answer".into());
                    continue;
                };
                for c in completions {
                    let g = basis_skills::generate::Generated {
                        prompt: prompt.fitted.text.clone(),
                        answer_start: prompt.answer_start.clone(),
                        completion: c.clone(),
                        finished: true,
                        ..Default::default()
                    };
                    answers.push(episode.finish(&prompt, g));
                }
            }
            for i in 0..if config.answers.is_some() { 0 } else { k } {
                let mut sample_prompt = prompt.clone();
                sample_prompt.sampling.temperature = config.temperature;
                sample_prompt.sampling.seed = config.seed.wrapping_add(i as u64);
                match complete(lm, &sample_prompt, &mut |_| {}, &|| false) {
                    Ok(g) => answers.push(episode.finish(&prompt, g)),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            if let Some(e) = failed {
                skip(format!("generation failed: {e}"));
                continue;
            }
            let rankings = match &episode {
                Episode::Localize { input, reference } => {
                    Some(rankings(input, reference, &answers))
                }
                _ => None,
            };
            let job = Job {
                n,
                id: task.id.clone(),
                skill: task.skill(),
                split: task.split().to_string(),
                tree,
                episode,
                answers,
                rankings,
            };
            if jobs.send(job).is_err() {
                break;
            }
        }
        drop(jobs);
        progress(Progress {
            done: tasks.len(),
            total: tasks.len(),
            task: "",
        });
    });
    let tasks_done: Vec<TaskResult> = results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_values()
        .collect();
    let mut skipped = skipped.into_inner().unwrap_or_else(|e| e.into_inner());
    skipped.sort_by(|a, b| a.id.cmp(&b.id));
    summarize(model, config, tasks_done, skipped)
}

/// Scores a task's answers (each distinct answer once).
fn score_all(
    sandbox: &Sandbox,
    tree: &TaskTree,
    episode: &Episode,
    id: &str,
    answers: &[Answer],
    cache: &ScoreCache,
) -> Result<Vec<Sample>, String> {
    let mut out = Vec::with_capacity(answers.len());
    for a in answers {
        let score = cache
            .score(sandbox, tree, episode, id, a)
            .map_err(|e| format!("scoring failed: {e}"))?;
        let g = a.generated();
        out.push(Sample {
            reward: score.reward,
            score,
            tokens: g.token_count,
            latency_ms: g.latency_ms,
            completion: g.completion.clone(),
        });
    }
    Ok(out)
}

/// Every sample's completion as JSON lines of `{"id", "completion"}`, in task
/// and sample order: what the model wrote, in the format `--answers` reads, so
/// a report's answers can be read and scored again.
pub fn answers_jsonl(report: &Report) -> String {
    let mut out = String::new();
    for t in &report.tasks {
        for s in &t.samples {
            out.push_str(&serde_json::json!({"id": t.id, "completion": s.completion}).to_string());
            out.push('\n');
        }
    }
    out
}

/// The model's ranking (mean over samples) and retrieval's, on the same terms.
fn rankings(input: &localize::Input, reference: &[String], answers: &[Answer]) -> Rankings {
    let exact_at_ref = |ranking: &[String]| {
        let n = reference.len();
        let top: std::collections::BTreeSet<&str> = ranking
            .iter()
            .take(n)
            .map(|s| s.trim_start_matches("./"))
            .collect();
        let want: std::collections::BTreeSet<&str> = reference
            .iter()
            .map(|s| s.trim_start_matches("./"))
            .collect();
        if top == want {
            1.0
        } else {
            0.0
        }
    };
    let retrieval: Vec<String> = input.candidates.iter().map(|c| c.path.clone()).collect();
    let mut model = 0.0;
    for a in answers {
        if let Answer::Localize(o) = a {
            let ranking: Vec<String> = o.locations.iter().map(|l| l.path.clone()).collect();
            model += exact_at_ref(&ranking);
        }
    }
    Rankings {
        model_exact_at_ref: model / answers.len().max(1) as f64,
        retrieval_exact_at_ref: exact_at_ref(&retrieval),
        retrieval_recall_at_k: localize::verify(&retrieval, reference, RECALL_K).recall_at_k,
    }
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let (mut sum, mut n) = (0.0, 0usize);
    for x in v {
        sum += x;
        n += 1;
    }
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

/// The per-skill figures of the task results.
pub fn summarize(
    model: ModelLabel,
    config: &Config,
    tasks: Vec<TaskResult>,
    skipped: Vec<Skipped>,
) -> Report {
    let mut per_skill = BTreeMap::new();
    for skill in SkillId::ALL {
        let mine: Vec<&TaskResult> = tasks.iter().filter(|t| t.skill == skill).collect();
        if mine.is_empty() {
            continue;
        }
        let samples = || mine.iter().flat_map(|t| t.samples.iter());
        let mut s = SkillSummary {
            tasks: mine.len(),
            avg_at_k: mean(samples().map(|x| x.reward)),
            pass_at_k: mean(
                mine.iter()
                    .map(|t| f64::from(u8::from(t.samples.iter().any(|x| x.reward >= 1.0)))),
            ),
            mean_latency_ms: mean(samples().map(|x| x.latency_ms as f64)),
            mean_tokens: mean(samples().map(|x| x.tokens as f64)),
            ..SkillSummary::default()
        };
        if skill == SkillId::Localize {
            s.recall_at_k = Some(mean(samples().filter_map(|x| x.score.recall_at_k)));
            s.f1 = Some(mean(samples().filter_map(|x| x.score.f1)));
            let r: Vec<&Rankings> = mine.iter().filter_map(|t| t.rankings.as_ref()).collect();
            s.rankings = Some(Rankings {
                model_exact_at_ref: mean(r.iter().map(|x| x.model_exact_at_ref)),
                retrieval_exact_at_ref: mean(r.iter().map(|x| x.retrieval_exact_at_ref)),
                retrieval_recall_at_k: mean(r.iter().map(|x| x.retrieval_recall_at_k)),
            });
        }
        if skill == SkillId::Review {
            s.verdicts = Some(Verdicts::count(samples()));
        }
        per_skill.insert(skill.as_str().to_string(), s);
    }
    let mean_all = mean(per_skill.values().map(|s| s.avg_at_k));
    Report {
        schema: "basis.eval/1".into(),
        model,
        samples: config.samples.max(1),
        temperature: config.temperature,
        seed: config.seed,
        per_skill,
        mean: mean_all,
        skipped,
        tasks,
    }
}

/// The skills' figures in the skills' own order (localize first, review last).
fn ordered(per_skill: &BTreeMap<String, SkillSummary>) -> Vec<(&str, &SkillSummary)> {
    SkillId::ALL
        .iter()
        .filter_map(|s| per_skill.get_key_value(s.as_str()))
        .map(|(k, v)| (k.as_str(), v))
        .collect()
}

/// The report as a markdown table (also what `basis eval` prints).
pub fn markdown(report: &Report) -> String {
    let k = report.samples;
    let mut out = format!(
        "Model {} {}, {k} sample(s) a task at temperature {}\n\n",
        report.model.name, report.model.version, report.temperature
    );
    out.push_str(&format!(
        "| skill | tasks | Avg@{k} | Pass@{k} | latency (s) | tokens |\n|---|---|---|---|---|---|\n"
    ));
    for (skill, s) in ordered(&report.per_skill) {
        out.push_str(&format!(
            "| {skill} | {} | {:.3} | {:.3} | {:.2} | {:.0} |\n",
            s.tasks,
            s.avg_at_k,
            s.pass_at_k,
            s.mean_latency_ms / 1000.0,
            s.mean_tokens
        ));
    }
    out.push_str(&format!("| **mean** | | **{:.3}** | | | |\n", report.mean));
    if let Some(l) = report.per_skill.get("localize") {
        if let (Some(r), Some(recall), Some(f1)) = (&l.rankings, l.recall_at_k, l.f1) {
            out.push_str(&format!(
                "\nLocalization: the files the model named match exactly {:.3} (F1 {f1:.3}); its ranking has {:.3} of the reference files in the top {RECALL_K} (recall@{RECALL_K}) and the top |reference| files are exactly the reference {:.3}. Retrieval alone (BM25, no model): recall@{RECALL_K} {:.3}, exact at |reference| {:.3}.\n",
                l.avg_at_k, recall, r.model_exact_at_ref, r.retrieval_recall_at_k, r.retrieval_exact_at_ref
            ));
        }
    }
    if let Some(v) = report.per_skill.get("review").and_then(|r| r.verdicts) {
        out.push('\n');
        out.push_str(&review_line(&v));
        out.push('\n');
    }
    if !report.skipped.is_empty() {
        out.push_str(&format!("\n{} task(s) skipped:\n", report.skipped.len()));
        for s in &report.skipped {
            out.push_str(&format!("- {} ({}): {}\n", s.id, s.skill, s.reason));
        }
    }
    out
}

/// Review's verdicts in a sentence.
fn review_line(v: &Verdicts) -> String {
    let said = |answer: &str, s: &Said| {
        if s.total() == 0 {
            format!("no task's answer is {answer}")
        } else {
            format!(
                "on tasks whose answer is {answer} the samples said YES {}, NO {}, neither {}",
                s.yes, s.no, s.neither
            )
        }
    };
    let mut line = format!(
        "Review: {}; {}.",
        said("YES", &v.on_yes),
        said("NO", &v.on_no)
    );
    match v.balanced_accuracy {
        Some(b) => line.push_str(&format!(
            " Balanced accuracy {b:.3} (one verdict every time scores 0.500)."
        )),
        None => line.push_str(
            " With one right verdict only, one verdict every time would score 1.0 or 0.0 here.",
        ),
    }
    line
}

/// Two reports of the same tasks side by side, with the change per skill.
pub fn compare_markdown(a: &Report, b: &Report) -> String {
    let k = a.samples;
    let mut out = format!(
        "| skill | {} {} Avg@{k} | {} {} Avg@{k} | change |\n|---|---|---|---|\n",
        a.model.name, a.model.version, b.model.name, b.model.version
    );
    let change = |x: f64, y: f64| {
        if x > 0.0 {
            format!("{:+.1}%", (y - x) / x * 100.0)
        } else {
            format!("{:+.3}", y - x)
        }
    };
    for (skill, s) in ordered(&a.per_skill) {
        let other = b.per_skill.get(skill).map(|o| o.avg_at_k);
        match other {
            Some(y) => out.push_str(&format!(
                "| {skill} | {:.3} | {y:.3} | {} |\n",
                s.avg_at_k,
                change(s.avg_at_k, y)
            )),
            None => out.push_str(&format!("| {skill} | {:.3} | n/a | |\n", s.avg_at_k)),
        }
    }
    out.push_str(&format!(
        "| **mean** | **{:.3}** | **{:.3}** | {} |\n",
        a.mean,
        b.mean,
        change(a.mean, b.mean)
    ));
    let balanced = |r: &Report| {
        r.per_skill
            .get("review")
            .and_then(|s| s.verdicts)
            .and_then(|v| v.balanced_accuracy)
    };
    if let (Some(x), Some(y)) = (balanced(a), balanced(b)) {
        out.push_str(&format!(
            "\nReview's balanced accuracy: {x:.3} against {y:.3} (one verdict every time scores 0.500).\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::episode::ReviewCall;

    fn review_task(id: &str, expected: bool, said: &[Option<bool>]) -> TaskResult {
        TaskResult {
            id: id.into(),
            skill: SkillId::Review,
            split: "heldout".into(),
            samples: said
                .iter()
                .map(|&said| Sample {
                    reward: f64::from(u8::from(said == Some(expected))),
                    score: Score {
                        verdict: Some(ReviewCall { expected, said }),
                        ..Score::default()
                    },
                    tokens: 1,
                    latency_ms: 1,
                    completion: String::new(),
                })
                .collect(),
            rankings: None,
        }
    }

    fn report(version: &str, tasks: Vec<TaskResult>) -> Report {
        let label = ModelLabel {
            name: "m".into(),
            version: version.into(),
        };
        summarize(label, &Config::default(), tasks, Vec::new())
    }

    fn said(yes: usize, no: usize, neither: usize) -> Said {
        Said { yes, no, neither }
    }

    fn verdicts(tasks: Vec<TaskResult>) -> (f64, Verdicts) {
        let r = report("v1", tasks);
        let s = &r.per_skill["review"];
        (s.avg_at_k, s.verdicts.unwrap())
    }

    #[test]
    fn review_verdicts_tell_a_constant_answer_from_a_reviewer() {
        let (yes, no) = (Some(true), Some(false));
        // Always YES on a balanced split: Avg@K 0.5 and balanced accuracy 0.5.
        let (avg, v) = verdicts(vec![
            review_task("a", true, &[yes, yes]),
            review_task("b", false, &[yes, yes]),
        ]);
        assert_eq!((avg, v.balanced_accuracy), (0.5, Some(0.5)));
        assert_eq!(v.on_yes, said(2, 0, 0));
        assert_eq!(v.on_no, said(2, 0, 0));
        // Always YES where three tasks in four are YES: Avg@K 0.75, still 0.5.
        let (avg, v) = verdicts(vec![
            review_task("a", true, &[yes]),
            review_task("b", true, &[yes]),
            review_task("c", true, &[yes]),
            review_task("d", false, &[yes]),
        ]);
        assert_eq!((avg, v.balanced_accuracy), (0.75, Some(0.5)));
        // Half right on each side, with answers that give no verdict.
        let (_, v) = verdicts(vec![
            review_task("a", true, &[yes, None]),
            review_task("b", false, &[no, yes, None, no]),
        ]);
        assert_eq!(v.balanced_accuracy, Some(0.5));
        assert_eq!(v.on_no, said(1, 2, 1));
        // Every answer right.
        let (_, v) = verdicts(vec![
            review_task("a", true, &[yes]),
            review_task("b", false, &[no]),
        ]);
        assert_eq!(v.balanced_accuracy, Some(1.0));
        // One kind of task only: no balanced accuracy.
        let (_, v) = verdicts(vec![review_task("a", true, &[yes, no])]);
        assert_eq!(v.balanced_accuracy, None);
    }

    #[test]
    fn the_tables_say_what_review_answered() {
        let (yes, no) = (Some(true), Some(false));
        let constant = report(
            "v1",
            vec![
                review_task("a", true, &[yes, yes]),
                review_task("b", false, &[yes, None]),
            ],
        );
        let right = report(
            "v2",
            vec![
                review_task("a", true, &[yes, yes]),
                review_task("b", false, &[no, no]),
            ],
        );
        let md = markdown(&constant);
        assert!(
            md.contains("on tasks whose answer is YES the samples said YES 2, NO 0, neither 0; on tasks whose answer is NO the samples said YES 1, NO 0, neither 1. Balanced accuracy 0.500"),
            "{md}"
        );
        let md = compare_markdown(&constant, &right);
        assert!(
            md.contains("Review's balanced accuracy: 0.500 against 1.000"),
            "{md}"
        );
    }
}
