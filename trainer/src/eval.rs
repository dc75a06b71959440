//! `basis eval`: a model on a task file, K samples a task, through exactly the
//! skill code the server runs ([`crate::episode`]), scored by the skills' own
//! verifiers, and a report per skill.
//!
//! Per skill: the tasks scored, Avg@K (the mean reward over all samples), Pass@K
//! (the share of tasks with at least one sample rewarded 1), the mean latency and
//! tokens of a sample; the mean of Avg@K over the skills. Avg@K is the paper's
//! binary reward; the skills' graded reward (partial credit, what training
//! optimises by default; [`crate::episode`]) is reported beside it, its mean
//! over all samples and over the skills. Localization adds
//! recall@k and F1 beside its exact-set reward, and the retrieval-only ranking
//! (BM25, no model) scored the same way, so a user sees whether the model adds
//! anything to retrieval, with the paired difference of the two.
//!
//! Every score comes with a 95% interval from a bootstrap over tasks, a task's
//! K samples kept together ([`crate::stats`]); review adds balanced accuracy
//! and its interval. [`compare`] pairs two reports of the same tasks: per skill,
//! each task's mean reward in one minus its mean in the other, and the mean of
//! those differences over the skills, each with its interval; the same for the
//! graded reward.
//!
//! Generation runs on this thread (the model uses every core); scoring runs on
//! `jobs` threads of its own beside it (sandbox runs at once), each distinct
//! answer of a task scored once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use basis_model::LanguageModel;
use basis_skills::generate::complete_many;
use basis_skills::sandbox::Sandbox;
use basis_skills::{localize, SkillId};
use serde::Serialize;

use crate::episode::{Answer, Episode, Score, ScoreCache, RECALL_K};
use crate::stats::{self, Tally};
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
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    /// Avg@K's 95% interval (bootstrap over tasks).
    pub ci95: Option<[f64; 2]>,
    /// The graded reward's mean over all samples, beside Avg@K's binary one.
    pub graded: f64,
    /// Its 95% interval (bootstrap over tasks).
    pub graded_ci95: Option<[f64; 2]>,
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
    /// The model's ranking against retrieval's, exact at |reference|, paired
    /// per task (before: retrieval's, after: the model's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_minus_retrieval: Option<Difference>,
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
    /// Its 95% interval (bootstrap over the YES tasks and over the NO tasks).
    pub balanced_accuracy_ci95: Option<[f64; 2]>,
}

impl Verdicts {
    fn count(tasks: &[&TaskResult]) -> Self {
        let mut v = Verdicts::default();
        let samples = tasks.iter().flat_map(|t| t.samples.iter());
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
        let groups = verdict_tallies(tasks);
        v.balanced_accuracy_ci95 = stats::bootstrap(&groups, balanced_accuracy);
        v
    }
}

/// Review tasks as two groups, the YES tasks and the NO tasks: per task, its
/// samples' right verdicts over those with a verdict to check.
fn verdict_tallies(tasks: &[&TaskResult]) -> Vec<Vec<Tally>> {
    [true, false]
        .iter()
        .map(|&expected| {
            tasks
                .iter()
                .filter_map(|t| verdict_tally(t, expected))
                .collect()
        })
        .collect()
}

/// A task's samples whose right verdict is `expected`: how many said it, of
/// how many; `None` when it has none.
fn verdict_tally(t: &TaskResult, expected: bool) -> Option<Tally> {
    let calls = t
        .samples
        .iter()
        .filter_map(|s| s.score.verdict)
        .filter(|c| c.expected == expected);
    let (right, n) = calls.fold((0.0, 0.0), |(r, n), c| {
        (r + f64::from(u8::from(c.said == Some(expected))), n + 1.0)
    });
    (n > 0.0).then_some(Tally { sum: right, n })
}

/// The mean of the share right on YES tasks and on NO tasks, from
/// [`verdict_tallies`]; `None` unless both kinds have samples.
fn balanced_accuracy(groups: &[Vec<Tally>]) -> Option<f64> {
    Some((stats::pooled(&groups[0])? + stats::pooled(&groups[1])?) / 2.0)
}

/// A paired difference: per task, one score minus another, on the tasks that
/// have both; `before` and `after` are the two means over those tasks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    pub tasks: usize,
    pub before: f64,
    pub after: f64,
    /// `after − before`.
    pub difference: f64,
    /// Its 95% interval (bootstrap over the tasks).
    pub ci95: Option<[f64; 2]>,
}

impl Difference {
    /// The difference of `(before, after)` pairs; `None` with no pairs.
    fn paired(pairs: &[(f64, f64)]) -> Option<Self> {
        let diffs: Vec<f64> = pairs.iter().map(|(b, a)| a - b).collect();
        Some(Difference {
            tasks: pairs.len(),
            before: stats::mean(&pairs.iter().map(|p| p.0).collect::<Vec<_>>())?,
            after: stats::mean(&pairs.iter().map(|p| p.1).collect::<Vec<_>>())?,
            difference: stats::mean(&diffs)?,
            ci95: stats::bootstrap(&[diffs], |g| stats::mean(&g[0])),
        })
    }

    /// The mean over skills of each skill's paired difference, the skills'
    /// tasks resampled within each skill.
    fn over_skills(skills: &[Vec<(f64, f64)>]) -> Option<Self> {
        let each: Option<Vec<Difference>> = skills.iter().map(|p| Self::paired(p)).collect();
        let each = each?;
        let field =
            |f: fn(&Difference) -> f64| stats::mean(&each.iter().map(f).collect::<Vec<_>>());
        let diffs: Vec<Vec<f64>> = skills
            .iter()
            .map(|p| p.iter().map(|(b, a)| a - b).collect())
            .collect();
        Some(Difference {
            tasks: each.iter().map(|d| d.tasks).sum(),
            before: field(|d| d.before)?,
            after: field(|d| d.after)?,
            difference: field(|d| d.difference)?,
            ci95: stats::bootstrap(&diffs, |g| stats::mean_over(g, stats::mean)),
        })
    }
}

/// One report against another of the same tasks (see [`compare`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// The model this report is compared against (the `before` side).
    pub against: ModelLabel,
    /// Per skill, each task's mean reward here minus there.
    pub per_skill: BTreeMap<String, Difference>,
    /// The mean over the skills of those differences.
    pub mean: Option<Difference>,
    /// The same two for the graded reward.
    pub graded_per_skill: BTreeMap<String, Difference>,
    pub graded_mean: Option<Difference>,
    /// Review's balanced accuracy here minus there, on the tasks both scored.
    pub review_balanced_accuracy: Option<Difference>,
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
    /// Its 95% interval (each skill's tasks resampled within the skill).
    pub mean_ci95: Option<[f64; 2]>,
    /// The mean of the graded reward over the skills, and its interval.
    pub graded_mean: f64,
    pub graded_mean_ci95: Option<[f64; 2]>,
    /// With `--compare` or `--adapter`: this report against the other model's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comparison: Option<Comparison>,
    pub skipped: Vec<Skipped>,
    pub tasks: Vec<TaskResult>,
}

/// A task with its prompt, waiting for its answers.
struct Prepared<'t> {
    n: usize,
    task: &'t Task,
    tree: TaskTree,
    episode: Episode,
    prompt: basis_skills::generate::Prompt,
}

impl Prepared<'_> {
    /// The task's job for the scorers, with the answers' rankings for localize.
    fn into_job(self, answers: Vec<Answer>) -> Job {
        let rankings = match &self.episode {
            Episode::Localize { input, reference } => Some(rankings(input, reference, &answers)),
            _ => None,
        };
        Job {
            n: self.n,
            id: self.task.id.clone(),
            skill: self.task.skill(),
            split: self.task.split().to_string(),
            tree: self.tree,
            episode: self.episode,
            answers,
            rankings,
        }
    }
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
        // Each task's prompt first; then every task's k samples are decoded
        // together with other tasks' (`complete_many`), and a task goes to the
        // scorers as soon as its samples are done.
        let mut prepared: Vec<Option<Prepared>> = Vec::new();
        progress(Progress {
            done: 0,
            total: tasks.len(),
            task: "",
        });
        for (n, task) in tasks.iter().enumerate() {
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
            let mut ready = Prepared {
                n,
                task,
                tree,
                episode,
                prompt,
            };
            if let Some(recorded) = &config.answers {
                let Some(completions) = recorded.get(&task.id) else {
                    skip("no recorded answer".into());
                    continue;
                };
                let answers = completions
                    .iter()
                    .map(|c| {
                        let g = basis_skills::generate::Generated {
                            prompt: ready.prompt.fitted.text.clone(),
                            answer_start: ready.prompt.answer_start.clone(),
                            completion: c.clone(),
                            finished: true,
                            ..Default::default()
                        };
                        ready.episode.finish(&ready.prompt, g)
                    })
                    .collect();
                if jobs.send(ready.into_job(answers)).is_err() {
                    break;
                }
                progress(Progress {
                    done: n + 1,
                    total: tasks.len(),
                    task: &task.id,
                });
                continue;
            }
            // Sample i draws from the stream seeded `seed + i`.
            ready.prompt.sampling.temperature = config.temperature;
            ready.prompt.sampling.seed = config.seed;
            prepared.push(Some(ready));
        }
        let prompts: Vec<(basis_skills::generate::Prompt, usize)> = prepared
            .iter()
            .flatten()
            .map(|p| (p.prompt.clone(), k))
            .collect();
        let mut done = tasks.len() - prompts.len();
        complete_many(lm, &prompts, &mut |i, generated| {
            let ready = prepared[i].take().expect("each prompt is done once");
            done += 1;
            progress(Progress {
                done,
                total: tasks.len(),
                task: &ready.task.id,
            });
            match generated {
                Ok(gs) => {
                    let answers = gs
                        .into_iter()
                        .map(|g| ready.episode.finish(&ready.prompt, g))
                        .collect();
                    let _ = jobs.send(ready.into_job(answers));
                }
                Err(e) => skipped
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Skipped {
                        id: ready.task.id.clone(),
                        skill: ready.task.skill(),
                        reason: format!("generation failed: {e}"),
                    }),
            }
        });
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
    let (mut tallies, mut graded) = (Vec::new(), Vec::new());
    for skill in SkillId::ALL {
        let mine: Vec<&TaskResult> = tasks.iter().filter(|t| t.skill == skill).collect();
        if mine.is_empty() {
            continue;
        }
        tallies.push(mine.iter().map(|t| tally(t)).collect::<Vec<_>>());
        graded.push(mine.iter().map(|t| graded_tally(t)).collect::<Vec<_>>());
        per_skill.insert(skill.as_str().to_string(), skill_summary(skill, &mine));
    }
    let mean_all = mean(per_skill.values().map(|s| s.avg_at_k));
    let graded_mean = mean(per_skill.values().map(|s| s.graded));
    let over_skills = |g: &[Vec<Tally>]| stats::mean_over(g, stats::pooled);
    Report {
        schema: "basis.eval/1".into(),
        model,
        samples: config.samples.max(1),
        temperature: config.temperature,
        seed: config.seed,
        per_skill,
        mean: mean_all,
        mean_ci95: stats::bootstrap(&tallies, over_skills),
        graded_mean,
        graded_mean_ci95: stats::bootstrap(&graded, over_skills),
        comparison: None,
        skipped,
        tasks,
    }
}

/// A task's rewards, summed, and its sample count.
fn tally(t: &TaskResult) -> Tally {
    Tally {
        sum: t.samples.iter().map(|s| s.reward).sum(),
        n: t.samples.len() as f64,
    }
}

/// A task's graded rewards, summed, and its sample count.
fn graded_tally(t: &TaskResult) -> Tally {
    Tally {
        sum: t.samples.iter().map(|s| s.score.graded).sum(),
        n: t.samples.len() as f64,
    }
}

/// One skill's figures from its tasks (at least one).
fn skill_summary(skill: SkillId, mine: &[&TaskResult]) -> SkillSummary {
    let samples = || mine.iter().flat_map(|t| t.samples.iter());
    let tallies: Vec<Tally> = mine.iter().map(|t| tally(t)).collect();
    let graded: Vec<Tally> = mine.iter().map(|t| graded_tally(t)).collect();
    let mut s = SkillSummary {
        tasks: mine.len(),
        avg_at_k: mean(samples().map(|x| x.reward)),
        ci95: stats::bootstrap(&[tallies], |g| stats::pooled(&g[0])),
        graded: mean(samples().map(|x| x.score.graded)),
        graded_ci95: stats::bootstrap(&[graded], |g| stats::pooled(&g[0])),
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
        let pairs: Vec<(f64, f64)> = r
            .iter()
            .map(|x| (x.retrieval_exact_at_ref, x.model_exact_at_ref))
            .collect();
        s.model_minus_retrieval = Difference::paired(&pairs);
    }
    if skill == SkillId::Review {
        s.verdicts = Some(Verdicts::count(mine));
    }
    s
}

/// Each task's mean reward (by `of`, a sample's binary or graded reward), by
/// task id (tasks with samples only).
fn task_means(r: &Report, of: fn(&TaskResult) -> Tally) -> BTreeMap<&str, (&TaskResult, f64)> {
    r.tasks
        .iter()
        .filter(|t| !t.samples.is_empty())
        .map(|t| (t.id.as_str(), (t, of(t).sum / t.samples.len() as f64)))
        .collect()
}

/// Per skill, the paired differences of `before` and `after` (by `of`), and
/// their mean over the skills.
fn paired_differences(
    before: &Report,
    after: &Report,
    of: fn(&TaskResult) -> Tally,
) -> (BTreeMap<String, Difference>, Option<Difference>) {
    let b = task_means(before, of);
    let mut pairs: BTreeMap<SkillId, Vec<(f64, f64)>> = BTreeMap::new();
    for (id, (t, a)) in task_means(after, of) {
        if let Some((_, x)) = b.get(id) {
            pairs.entry(t.skill).or_default().push((*x, a));
        }
    }
    let per_skill = pairs
        .iter()
        .filter_map(|(skill, p)| Some((skill.as_str().to_string(), Difference::paired(p)?)))
        .collect();
    let skills: Vec<Vec<(f64, f64)>> = pairs.into_values().collect();
    (per_skill, Difference::over_skills(&skills))
}

/// `after` against `before` on the tasks both scored: per skill, the mean over
/// tasks of (a task's mean reward in `after` − its mean in `before`); the mean
/// of those over the skills; the same for the graded reward; review's balanced
/// accuracy likewise.
pub fn compare(before: &Report, after: &Report) -> Comparison {
    let b = task_means(before, tally);
    let reviews: Vec<(&TaskResult, &TaskResult)> = task_means(after, tally)
        .into_values()
        .filter(|(t, _)| t.skill == SkillId::Review)
        .filter_map(|(t, _)| Some((b.get(t.id.as_str())?.0, t)))
        .collect();
    let (per_skill, mean) = paired_differences(before, after, tally);
    let (graded_per_skill, graded_mean) = paired_differences(before, after, graded_tally);
    Comparison {
        against: before.model.clone(),
        per_skill,
        mean,
        graded_per_skill,
        graded_mean,
        review_balanced_accuracy: balanced_accuracy_change(&reviews),
    }
}

/// Review's balanced accuracy on `(before, after)` results of the same tasks,
/// and the interval of the change, resampling YES and NO tasks apart.
fn balanced_accuracy_change(pairs: &[(&TaskResult, &TaskResult)]) -> Option<Difference> {
    // Two groups, YES tasks and NO tasks, of a task's tallies on both sides.
    let joined: Vec<Vec<(Tally, Tally)>> = [true, false]
        .iter()
        .map(|&expected| {
            pairs
                .iter()
                .filter_map(|(b, a)| {
                    Some((verdict_tally(b, expected)?, verdict_tally(a, expected)?))
                })
                .collect()
        })
        .collect();
    let side = |g: &[Vec<(Tally, Tally)>], after: bool| {
        let pick = |x: &(Tally, Tally)| if after { x.1 } else { x.0 };
        let groups: Vec<Vec<Tally>> = g.iter().map(|v| v.iter().map(pick).collect()).collect();
        balanced_accuracy(&groups)
    };
    let (before, after) = (side(&joined, false)?, side(&joined, true)?);
    Some(Difference {
        tasks: joined.iter().map(Vec::len).sum(),
        before,
        after,
        difference: after - before,
        ci95: stats::bootstrap(&joined, |g| Some(side(g, true)? - side(g, false)?)),
    })
}

/// The skills' figures in the skills' own order (localize first, review last).
fn ordered(per_skill: &BTreeMap<String, SkillSummary>) -> Vec<(&str, &SkillSummary)> {
    SkillId::ALL
        .iter()
        .filter_map(|s| per_skill.get_key_value(s.as_str()))
        .map(|(k, v)| (k.as_str(), v))
        .collect()
}

/// An interval as `[lo, hi]`, or `n/a` where there is none.
fn interval(ci: Option<[f64; 2]>) -> String {
    ci.map_or_else(|| "n/a".into(), |[lo, hi]| format!("[{lo:.3}, {hi:.3}]"))
}

/// A difference's interval, signed.
fn signed_interval(ci: Option<[f64; 2]>) -> String {
    ci.map_or_else(|| "n/a".into(), |[lo, hi]| format!("[{lo:+.3}, {hi:+.3}]"))
}

/// The report as a markdown table (also what `basis eval` prints).
pub fn markdown(report: &Report) -> String {
    let k = report.samples;
    let mut out = format!(
        "Model {} {}, {k} sample(s) a task at temperature {}\n\n",
        report.model.name, report.model.version, report.temperature
    );
    out.push_str(&format!(
        "| skill | tasks | Avg@{k} | 95% interval | graded | 95% interval | Pass@{k} | latency (s) | tokens |\n|---|---|---|---|---|---|---|---|---|\n"
    ));
    for (skill, s) in ordered(&report.per_skill) {
        out.push_str(&format!(
            "| {skill} | {} | {:.3} | {} | {:.3} | {} | {:.3} | {:.2} | {:.0} |\n",
            s.tasks,
            s.avg_at_k,
            interval(s.ci95),
            s.graded,
            interval(s.graded_ci95),
            s.pass_at_k,
            s.mean_latency_ms / 1000.0,
            s.mean_tokens
        ));
    }
    out.push_str(&format!(
        "| **mean** | | **{:.3}** | {} | **{:.3}** | {} | | | |\n",
        report.mean,
        interval(report.mean_ci95),
        report.graded_mean,
        interval(report.graded_mean_ci95)
    ));
    out.push_str(&format!(
        "\nAvg@{k} is the binary reward (the paper's), graded the partial credit each skill gives (docs/design.md). Intervals: 95%, from {} resamples of the tasks (a task's samples kept together).\n",
        stats::RESAMPLES
    ));
    if let Some(l) = report.per_skill.get("localize") {
        out.push_str(&localize_line(l));
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

/// Localization's figures beside retrieval's, in a paragraph.
fn localize_line(l: &SkillSummary) -> String {
    let (Some(r), Some(recall), Some(f1)) = (&l.rankings, l.recall_at_k, l.f1) else {
        return String::new();
    };
    let mut line = format!(
        "\nLocalization: the files the model named match exactly {:.3} (F1 {f1:.3}); its ranking has {:.3} of the reference files in the top {RECALL_K} (recall@{RECALL_K}) and the top |reference| files are exactly the reference {:.3}. Retrieval alone (BM25, no model): recall@{RECALL_K} {:.3}, exact at |reference| {:.3}.",
        l.avg_at_k, recall, r.model_exact_at_ref, r.retrieval_recall_at_k, r.retrieval_exact_at_ref
    );
    if let Some(d) = &l.model_minus_retrieval {
        line.push_str(&format!(
            " The model's ranking minus retrieval's, exact at |reference|, paired over {} task(s): {:+.3} (95% interval {}).",
            d.tasks,
            d.difference,
            signed_interval(d.ci95)
        ));
    }
    line.push('\n');
    line
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
            " Balanced accuracy {b:.3}, 95% interval {} (one verdict every time scores 0.500).",
            interval(v.balanced_accuracy_ci95)
        )),
        None => line.push_str(
            " Balanced accuracy n/a. With one right verdict only, one verdict every time would score 1.0 or 0.0 here.",
        ),
    }
    line
}

/// A report's comparison (see [`compare`]) as a heading and a table: per
/// skill, this model's Avg@K and the other's on the tasks both scored, the
/// paired difference and its interval; empty without a comparison.
pub fn compare_markdown(report: &Report) -> String {
    let Some(c) = &report.comparison else {
        return String::new();
    };
    let (k, this, other) = (report.samples, &report.model, &c.against);
    let mut out = format!(
        "\n## {} {} against {} {}\n\n| skill | tasks | {} Avg@{k} | {} Avg@{k} | difference | 95% interval |\n|---|---|---|---|---|---|\n",
        this.name, this.version, other.name, other.version, this.version, other.version
    );
    let row = |name: &str, d: &Difference| {
        format!(
            "| {name} | {} | {:.3} | {:.3} | {:+.3} | {} |\n",
            d.tasks,
            d.after,
            d.before,
            d.difference,
            signed_interval(d.ci95)
        )
    };
    for (skill, s) in ordered(&report.per_skill) {
        match c.per_skill.get(skill) {
            Some(d) => out.push_str(&row(skill, d)),
            None => out.push_str(&format!("| {skill} | 0 | {:.3} | n/a | | |\n", s.avg_at_k)),
        }
    }
    if let Some(d) = &c.mean {
        out.push_str(&row("**mean over skills**", d));
    }
    out.push_str(&format!(
        "\nGraded:\n\n| skill | tasks | {} graded | {} graded | difference | 95% interval |\n|---|---|---|---|---|---|\n",
        this.version, other.version
    ));
    for (skill, s) in ordered(&report.per_skill) {
        match c.graded_per_skill.get(skill) {
            Some(d) => out.push_str(&row(skill, d)),
            None => out.push_str(&format!("| {skill} | 0 | {:.3} | n/a | | |\n", s.graded)),
        }
    }
    if let Some(d) = &c.graded_mean {
        out.push_str(&row("**mean over skills**", d));
    }
    out.push_str(&format!(
        "\nThe difference is {} minus {}, task by task on the tasks both scored; an interval that excludes 0 is a change beyond noise.\n",
        this.version, other.version
    ));
    if let Some(d) = &c.review_balanced_accuracy {
        out.push_str(&format!(
            "\nReview's balanced accuracy: {:.3} against {:.3}, a difference of {:+.3} (95% interval {}; one verdict every time scores 0.500).\n",
            d.after,
            d.before,
            d.difference,
            signed_interval(d.ci95)
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
        let mut right = right;
        right.comparison = Some(compare(&constant, &right));
        let md = compare_markdown(&right);
        // Task a is right on both sides, task b only on this one: differences
        // 0 and 1. The YES and NO tasks are resampled apart, one each here, so
        // the change in balanced accuracy has no spread.
        assert!(md.contains("## m v2 against m v1"), "{md}");
        assert!(
            md.contains("| review | 2 | 1.000 | 0.500 | +0.500 | [+0.000, +1.000] |"),
            "{md}"
        );
        assert!(
            md.contains("Review's balanced accuracy: 1.000 against 0.500, a difference of +0.500 (95% interval [+0.500, +0.500];"),
            "{md}"
        );
    }

    /// A task whose samples earned `rewards`, binary and graded alike.
    fn task(id: &str, skill: SkillId, rewards: &[f64]) -> TaskResult {
        let pairs: Vec<(f64, f64)> = rewards.iter().map(|&r| (r, r)).collect();
        graded_task(id, skill, &pairs)
    }

    /// A task whose samples earned these (binary, graded) rewards.
    fn graded_task(id: &str, skill: SkillId, rewards: &[(f64, f64)]) -> TaskResult {
        TaskResult {
            id: id.into(),
            skill,
            split: "heldout".into(),
            samples: rewards
                .iter()
                .map(|&(reward, graded)| Sample {
                    reward,
                    score: Score {
                        reward,
                        graded,
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

    #[test]
    fn the_graded_reward_is_reported_beside_the_binary_one() {
        use SkillId::{Edit, Testgen};
        // Edit: no sample right, partial credit 0.6 and 0.2 on one task and
        // 0.4 twice on the other; testgen: one right sample (1, 1) and one
        // half (0, 0.5).
        let before = report(
            "v1",
            vec![
                graded_task("e1", Edit, &[(0.0, 0.6), (0.0, 0.2)]),
                graded_task("e2", Edit, &[(0.0, 0.4), (0.0, 0.4)]),
                graded_task("t1", Testgen, &[(1.0, 1.0), (0.0, 0.5)]),
            ],
        );
        let edit = &before.per_skill["edit"];
        assert_eq!(edit.avg_at_k, 0.0);
        assert!((edit.graded - 0.4).abs() < 1e-12, "{}", edit.graded);
        // Both tasks' means are 0.4: every resample's too.
        assert_eq!(edit.graded_ci95, Some([0.4, 0.4]));
        let testgen = &before.per_skill["testgen"];
        assert_eq!((testgen.avg_at_k, testgen.graded), (0.5, 0.75));
        assert_eq!(testgen.graded_ci95, Some([0.75, 0.75]));
        // Over the skills: (0.4 + 0.75) / 2 graded, (0 + 0.5) / 2 binary.
        assert!((before.graded_mean - 0.575).abs() < 1e-12);
        assert_eq!(before.mean, 0.25);
        let [lo, hi] = before.graded_mean_ci95.unwrap();
        assert!((lo - 0.575).abs() < 1e-9 && (hi - 0.575).abs() < 1e-9);
        let md = markdown(&before);
        assert!(
            md.contains(
                "| skill | tasks | Avg@1 | 95% interval | graded | 95% interval | Pass@1 |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| edit | 2 | 0.000 | [0.000, 0.000] | 0.400 | [0.400, 0.400] | 0.000 |"),
            "{md}"
        );
        assert!(
            md.contains("| **mean** | | **0.250** | [0.250, 0.250] | **0.575** | [0.575, 0.575] |"),
            "{md}"
        );
        let json = serde_json::to_value(&before).unwrap();
        assert_eq!(json["per_skill"]["testgen"]["graded"], 0.75);
        assert_eq!(json["tasks"][0]["samples"][0]["graded"], 0.6);
        // Compared: edit's graded reward up by 0.2 on e1 and 0.4 on e2, where
        // the binary one does not move.
        let after = report(
            "v2",
            vec![
                graded_task("e1", Edit, &[(0.0, 0.6), (0.0, 0.6)]),
                graded_task("e2", Edit, &[(0.0, 0.8), (0.0, 0.8)]),
                graded_task("t1", Testgen, &[(1.0, 1.0), (0.0, 0.5)]),
            ],
        );
        let c = compare(&before, &after);
        assert_eq!(c.per_skill["edit"].difference, 0.0);
        let graded = &c.graded_per_skill["edit"];
        assert_eq!(graded.tasks, 2);
        assert!((graded.difference - 0.3).abs() < 1e-12, "{graded:?}");
        let [lo, hi] = graded.ci95.unwrap();
        assert!(
            (lo - 0.2).abs() < 1e-9 && (hi - 0.4).abs() < 1e-9,
            "{lo}..{hi}"
        );
        let mean = c.graded_mean.as_ref().unwrap();
        assert!((mean.difference - 0.15).abs() < 1e-12, "{mean:?}");
        let mut after = after;
        after.comparison = Some(c);
        let md = compare_markdown(&after);
        assert!(
            md.contains("| edit | 2 | 0.700 | 0.400 | +0.300 | [+0.200, +0.400] |"),
            "{md}"
        );
    }

    /// `ones` tasks whose K samples are all right and `zeros` all wrong.
    fn all_or_nothing(ones: usize, zeros: usize, k: usize) -> Vec<TaskResult> {
        (0..ones + zeros)
            .map(|i| {
                task(
                    &format!("t{i}"),
                    SkillId::Edit,
                    &vec![f64::from(u8::from(i < ones)); k],
                )
            })
            .collect()
    }

    #[test]
    fn a_skills_interval_matches_the_binomial_one() {
        // 100 tasks, one sample each, 30 right: the normal approximation's
        // interval is 0.3 ± 1.96 × sqrt(0.3 × 0.7 / 100) = [0.2102, 0.3898].
        // The bootstrap's resamples are binomial(100, 0.3) / 100, so its
        // percentiles land there up to the draw (about 0.003 with 2000
        // resamples) and the proportion's steps of 0.01.
        let r = report("v1", all_or_nothing(30, 70, 1));
        let s = &r.per_skill["edit"];
        let [lo, hi] = s.ci95.unwrap();
        let half = 1.96 * (0.3f64 * 0.7 / 100.0).sqrt();
        assert!((lo - (0.3 - half)).abs() < 0.015, "{lo}");
        assert!((hi - (0.3 + half)).abs() < 0.015, "{hi}");
        // One skill: the mean over skills is that skill, resampled the same way.
        assert_eq!((r.mean, r.mean_ci95), (0.3, s.ci95));
        let md = markdown(&r);
        // The graded reward is the binary one here, with the same interval.
        assert!(
            md.contains(&format!(
                "| edit | 100 | 0.300 | [{lo:.3}, {hi:.3}] | 0.300 | [{lo:.3}, {hi:.3}] | 0.300 |"
            )),
            "{md}"
        );
    }

    #[test]
    fn a_tasks_samples_are_resampled_together() {
        // Ten tasks, four samples each, each all right or all wrong: ten
        // observations, not forty. The interval is as wide as ten give
        // (0.3 ± 0.28), twice as wide as forty independent samples' (± 0.14).
        let clustered = report("v1", all_or_nothing(3, 7, 4)).per_skill["edit"]
            .ci95
            .unwrap();
        let independent = report("v1", all_or_nothing(12, 28, 1)).per_skill["edit"]
            .ci95
            .unwrap();
        let width = |[lo, hi]: [f64; 2]| hi - lo;
        assert!(
            width(clustered) > 1.6 * width(independent),
            "{clustered:?} against {independent:?}"
        );
        let half = 1.96 * (0.3f64 * 0.7 / 10.0).sqrt();
        assert!((width(clustered) - 2.0 * half).abs() < 0.1, "{clustered:?}");
    }

    /// The 2.5th and 97.5th percentiles of the exact bootstrap distribution of
    /// the mean of `values`: every one of the n^n resamples, equally likely.
    fn exact_bootstrap(values: &[f64]) -> [f64; 2] {
        let n = values.len();
        let mut means = Vec::new();
        for code in 0..n.pow(n as u32) {
            let (mut c, mut sum) = (code, 0.0);
            for _ in 0..n {
                sum += values[c % n];
                c /= n;
            }
            means.push(sum / n as f64);
        }
        means.sort_by(f64::total_cmp);
        // The smallest mean with at least q of the resamples at or below it.
        let at = |q: f64| means[(q * means.len() as f64).ceil() as usize - 1];
        [at(0.025), at(0.975)]
    }

    #[test]
    fn paired_differences_are_taken_task_by_task() {
        use SkillId::{Edit, Testgen};
        let before = report(
            "v1",
            vec![
                task("e1", Edit, &[0.0, 0.0]),
                task("e2", Edit, &[1.0, 0.0]),
                task("e3", Edit, &[0.0, 0.0]),
                task("e4", Edit, &[1.0, 1.0]),
                task("e5", Edit, &[1.0, 1.0]), // not in `after`: left out
                task("t1", Testgen, &[1.0, 1.0]),
                task("t2", Testgen, &[0.0, 1.0]),
            ],
        );
        let after = report(
            "v2",
            vec![
                task("e1", Edit, &[1.0, 1.0]),
                task("e2", Edit, &[1.0, 1.0]),
                task("e3", Edit, &[0.0, 1.0]),
                task("e4", Edit, &[1.0, 1.0]),
                task("t1", Testgen, &[0.0, 1.0]),
                task("t2", Testgen, &[0.0, 0.0]),
                task("t3", Testgen, &[1.0, 1.0]), // not in `before`: left out
            ],
        );
        let c = compare(&before, &after);
        assert_eq!(c.against.version, "v1");
        // Edit: differences 1, 0.5, 0.5, 0; means 0.375 before, 0.875 after.
        let edit = &c.per_skill["edit"];
        assert_eq!(
            (edit.tasks, edit.before, edit.after, edit.difference),
            (4, 0.375, 0.875, 0.5)
        );
        let exact = exact_bootstrap(&[1.0, 0.5, 0.5, 0.0]);
        let [lo, hi] = edit.ci95.unwrap();
        assert!((lo - exact[0]).abs() <= 0.125 && (hi - exact[1]).abs() <= 0.125);
        assert!(lo < 0.5 && 0.5 < hi, "{lo}..{hi}");
        // Testgen: both differences -0.5, so no spread.
        let testgen = &c.per_skill["testgen"];
        assert_eq!(
            (
                testgen.tasks,
                testgen.before,
                testgen.after,
                testgen.difference
            ),
            (2, 0.75, 0.25, -0.5)
        );
        assert_eq!(testgen.ci95, Some([-0.5, -0.5]));
        // The mean over skills: (0.5 - 0.5) / 2 = 0; testgen never moves, so
        // its interval is edit's, shifted by -0.5 and halved.
        let mean = c.mean.as_ref().unwrap();
        assert_eq!(
            (mean.tasks, mean.before, mean.after, mean.difference),
            (6, 0.5625, 0.5625, 0.0)
        );
        let [mlo, mhi] = mean.ci95.unwrap();
        assert!((mlo - (exact[0] - 0.5) / 2.0).abs() <= 0.07, "{mlo}");
        assert!((mhi - (exact[1] - 0.5) / 2.0).abs() <= 0.07, "{mhi}");
        assert_eq!(c.review_balanced_accuracy, None);
        // In the report: the comparison in report.json and report.md.
        let mut after = after;
        after.comparison = Some(c);
        let json = serde_json::to_value(&after).unwrap();
        assert_eq!(
            json["comparison"]["per_skill"]["testgen"]["ci95"],
            serde_json::json!([-0.5, -0.5])
        );
        assert_eq!(json["comparison"]["mean"]["difference"], 0.0);
        let md = compare_markdown(&after);
        assert!(
            md.contains("| testgen | 2 | 0.250 | 0.750 | -0.500 | [-0.500, -0.500] |"),
            "{md}"
        );
        assert!(
            md.contains("| **mean over skills** | 6 | 0.562 | 0.562 | +0.000 |"),
            "{md}"
        );
        assert_eq!(compare_markdown(&before), "");
    }

    #[test]
    fn balanced_accuracy_is_the_mean_of_the_two_classes_accuracies() {
        let (yes, no) = (Some(true), Some(false));
        // A constant YES on three YES tasks and one NO: 0.5, and no resample
        // can make it anything else.
        let (avg, v) = verdicts(vec![
            review_task("a", true, &[yes]),
            review_task("b", true, &[yes]),
            review_task("c", true, &[yes]),
            review_task("d", false, &[yes]),
        ]);
        assert_eq!(avg, 0.75);
        assert_eq!(
            (v.balanced_accuracy, v.balanced_accuracy_ci95),
            (Some(0.5), Some([0.5, 0.5]))
        );
        // A perfect reviewer.
        let (_, v) = verdicts(vec![
            review_task("a", true, &[yes, yes]),
            review_task("b", false, &[no]),
            review_task("c", false, &[no, no]),
        ]);
        assert_eq!(
            (v.balanced_accuracy, v.balanced_accuracy_ci95),
            (Some(1.0), Some([1.0, 1.0]))
        );
        // Mixed, over samples: YES tasks right 3 of 4 and 0 of 2, so 3/6; NO
        // tasks right 1 of 2 (one sample gave no verdict) and 3 of 3, so 4/5.
        // (0.5 + 0.8) / 2 = 0.65, where Avg@K is 7/11.
        let (avg, v) = verdicts(vec![
            review_task("a", true, &[yes, yes, no, yes]),
            review_task("b", true, &[no, no]),
            review_task("c", false, &[no, None]),
            review_task("d", false, &[no, no, no]),
        ]);
        assert!((avg - 7.0 / 11.0).abs() < 1e-12, "{avg}");
        assert!((v.balanced_accuracy.unwrap() - 0.65).abs() < 1e-12);
        let [lo, hi] = v.balanced_accuracy_ci95.unwrap();
        assert!(
            lo < 0.65 && 0.65 < hi && 0.0 <= lo && hi <= 1.0,
            "{lo}..{hi}"
        );
        // One class only: no number, and the report says so.
        let r = report("v1", vec![review_task("a", true, &[yes, no])]);
        let v = r.per_skill["review"].verdicts.unwrap();
        assert_eq!(
            (v.balanced_accuracy, v.balanced_accuracy_ci95),
            (None, None)
        );
        let json = serde_json::to_value(v).unwrap();
        assert!(json["balanced_accuracy_ci95"].is_null(), "{json}");
        assert!(markdown(&r).contains("Balanced accuracy n/a."));
    }

    #[test]
    fn localization_reports_the_model_minus_retrieval_task_by_task() {
        let ranked = |id: &str, model: f64, retrieval: f64| TaskResult {
            rankings: Some(Rankings {
                model_exact_at_ref: model,
                retrieval_exact_at_ref: retrieval,
                retrieval_recall_at_k: 1.0,
            }),
            ..task(id, SkillId::Localize, &[model])
        };
        // Differences -0.5, 1 and 1.
        let r = report(
            "v1",
            vec![
                ranked("a", 0.5, 1.0),
                ranked("b", 1.0, 0.0),
                ranked("c", 1.0, 0.0),
            ],
        );
        let d = r.per_skill["localize"]
            .model_minus_retrieval
            .clone()
            .unwrap();
        assert_eq!((d.tasks, d.difference), (3, 0.5));
        assert!((d.before - 1.0 / 3.0).abs() < 1e-12 && (d.after - 2.5 / 3.0).abs() < 1e-12);
        // The exact bootstrap: all three tasks the -0.5 one in 1/27 of the
        // resamples (over 2.5%), all three a +1 in 8/27.
        assert_eq!(exact_bootstrap(&[-0.5, 1.0, 1.0]), [-0.5, 1.0]);
        let [lo, hi] = d.ci95.unwrap();
        assert!(
            (lo + 0.5).abs() <= 0.1 && (hi - 1.0).abs() <= 0.1,
            "{lo}..{hi}"
        );
        let md = markdown(&r);
        assert!(
            md.contains("The model's ranking minus retrieval's, exact at |reference|, paired over 3 task(s): +0.500 (95% interval ["),
            "{md}"
        );
    }
}
