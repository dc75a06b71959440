//! A task made ready for its skill: the skill's input, built from the task's
//! tree as the server would build it from the user's workspace, and the means
//! to score an answer with the skill's own verifier. The evaluator and the
//! trainer both go through here, so a task is asked and scored one way.
//!
//! | skill | the skill's input | reward | graded reward |
//! |---|---|---|---|
//! | localize | the issue and retrieval's candidates from the task tree's index | the files the model named equal the reference set | their F1 |
//! | edit | the file and the byte range of the task's lines | the task's test command passes after the edit (else: the reference up to layout) | the share of the tests failing on the starting code that now pass (else: the share of the way from the starting code to the reference, by token similarity) |
//! | testgen | the file and the symbol | the tests pass on the task's code and fail on every listed mutant | they pass × the share of mutants killed |
//! | reproduce | the issue and the files retrieval finds for it | the test fails on the task's code and passes with the fix | half for each |
//! | review | the intent and the patch applied to the task's tree | the verdict equals the reference | the same (the trainer weighs YES and NO tasks apart) |
//!
//! Each grade is the skill's own, computed by its verifier in `basis_skills`
//! beside the reward; [`RewardKind`] says which of the two a run optimises.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use basis_code::Language;
use basis_model::LanguageModel;
use basis_skills::diff::{apply_patch, parse_patch};
use basis_skills::generate::{Generated, Options, Prompt};
use basis_skills::runner::{RunnerError, Tests};
use basis_skills::sandbox::Sandbox;
use basis_skills::{edit, localize, reproduce, review, testgen, Skill, SkillError, SkillId};

use crate::task::{Spec, Task, Verdict};
use crate::workspace::TaskTree;

/// How many files a reproduction sees as context (as the server does).
const REPRODUCE_CONTEXT_FILES: usize = 3;

/// The `k` of localization's recall@k.
pub const RECALL_K: usize = 5;

/// A task's skill input and what its answer is scored against.
pub enum Episode {
    Localize {
        input: localize::Input,
        reference: Vec<String>,
    },
    Edit {
        input: edit::Input,
        reference: edit::Reference,
        /// What the tests say of the starting code, run once when first needed:
        /// where the graded reward measures from.
        start: std::sync::OnceLock<Option<basis_skills::runner::TestCounts>>,
    },
    Testgen {
        input: testgen::Input,
        mutants: Vec<testgen::MutantFile>,
    },
    Reproduce {
        input: reproduce::Input,
        reference: reproduce::Reference,
    },
    Review {
        input: review::Input,
        verdict: bool,
    },
}

/// One answer: the skill's outcome.
pub enum Answer {
    Localize(localize::Outcome),
    Edit(edit::Outcome),
    Testgen(testgen::Outcome),
    Reproduce(reproduce::Outcome),
    Review(review::Outcome),
}

impl Answer {
    /// The model call behind it.
    pub fn generated(&self) -> &Generated {
        match self {
            Answer::Localize(o) => &o.generated,
            Answer::Edit(o) => &o.generated,
            Answer::Testgen(o) => &o.generated,
            Answer::Reproduce(o) => &o.generated,
            Answer::Review(o) => &o.generated,
        }
    }
}

/// An answer's reward and what else the evaluator reports about it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Score {
    /// The paper's binary reward: 1 for a right answer, else 0.
    pub reward: f64,
    /// The skill's graded reward: partial credit in [0, 1] (see the module
    /// docs), 1 where `reward` is.
    pub graded: f64,
    /// Localization: the share of the reference files among the first
    /// [`RECALL_K`] of the ranking, and the F1 of the named files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recall_at_k: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub f1: Option<f64>,
    /// One line on how it went (a test run's summary, surviving mutants, ...).
    pub note: String,
    /// Review: the verdict that was right and the one the answer gave.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict: Option<ReviewCall>,
}

/// Which reward a run optimises.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RewardKind {
    /// The paper's: 1 for a right answer, else 0.
    Binary,
    /// Partial credit per skill (the module docs), and review's YES and NO
    /// tasks weighed to carry half a batch each. The default: a weak model
    /// rarely earns a binary reward, so most of its groups teach nothing.
    #[default]
    Graded,
}

impl RewardKind {
    /// The reward of this kind in `score`.
    pub fn of(self, score: &Score) -> f64 {
        match self {
            RewardKind::Binary => score.reward,
            RewardKind::Graded => score.graded,
        }
    }

    /// Its name on the command line and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RewardKind::Binary => "binary",
            RewardKind::Graded => "graded",
        }
    }
}

/// A review answer's verdict beside the right one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ReviewCall {
    pub expected: bool,
    /// `None`: the answer gave no verdict.
    pub said: Option<bool>,
}

/// Why a task could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum EpisodeError {
    #[error("{0}")]
    Task(String),
}

fn task_error(message: impl Into<String>) -> EpisodeError {
    EpisodeError::Task(message.into())
}

/// The byte offsets of 1-based inclusive lines `start..=end` of `text`.
fn line_span(text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    let mut offsets = vec![0usize];
    for (i, c) in text.char_indices() {
        if c == '\n' {
            offsets.push(i + 1);
        }
    }
    let lines = if text.ends_with('\n') || text.is_empty() {
        offsets.len() - 1
    } else {
        offsets.len()
    };
    if start == 0 || end < start || end > lines {
        return None;
    }
    let from = offsets[start - 1];
    let to = offsets.get(end).copied().unwrap_or(text.len());
    Some((from, to))
}

/// The test command of a task, read as argv.
fn tests_of(command: Option<&str>) -> Result<Option<Tests>, EpisodeError> {
    match command {
        None => Ok(None),
        Some(c) => Tests::command(c)
            .map(Some)
            .ok_or_else(|| task_error(format!("the test command `{c}` is not a command line"))),
    }
}

/// Files after a patch, laid over the tree (relative path → text).
fn patched(tree: &TaskTree, patch: &str) -> Result<HashMap<String, String>, EpisodeError> {
    let parsed = parse_patch(patch).map_err(|e| task_error(e.to_string()))?;
    let changes = apply_patch(&parsed, &|p| tree.read(p)).map_err(|e| task_error(e.to_string()))?;
    Ok(changes.into_iter().map(|c| (c.path, c.new)).collect())
}

impl Episode {
    /// Builds the skill's input for `task` from its tree.
    pub fn prepare(task: &Task, tree: &TaskTree) -> Result<Episode, EpisodeError> {
        // A task's file is read only if it is inside its repository, by the one
        // rule (a link pointing out is refused), and known by its own path.
        let file_of = |path: &str| {
            let rel = tree.locate(path).map_err(|e| task_error(e.to_string()))?;
            let text = tree
                .read(&rel)
                .ok_or_else(|| task_error(format!("{path} is not in the task's repository")))?;
            Ok::<_, EpisodeError>((rel, text))
        };
        Ok(match &task.spec {
            Spec::Localize { input, reference } => {
                let index = tree.index();
                Episode::Localize {
                    input: localize::Input {
                        candidates: localize::candidates(
                            &index,
                            &input.issue,
                            localize::CANDIDATES,
                        ),
                        issue: input.issue.clone(),
                        limit: 10,
                    },
                    reference: reference.files.clone(),
                }
            }
            Spec::Edit { input, reference } => {
                let (file, text) = file_of(&input.file)?;
                let (start_byte, end_byte) = line_span(&text, input.start_line, input.end_line)
                    .ok_or_else(|| {
                        task_error(format!(
                            "lines {}-{} are not in {}",
                            input.start_line, input.end_line, input.file
                        ))
                    })?;
                let mut skill_input = edit::Input {
                    path: file,
                    text,
                    start_byte,
                    end_byte,
                    instruction: input.instruction.clone(),
                    related: Vec::new(),
                };
                skill_input.find_related(&tree.index(), &|p| tree.read(p));
                Episode::Edit {
                    input: skill_input,
                    reference: edit::Reference {
                        tests: tests_of(reference.test_command.as_deref())?,
                        code: Some(reference.replacement.clone()),
                    },
                    start: std::sync::OnceLock::new(),
                }
            }
            Spec::Testgen { input, reference } => {
                let (file, text) = file_of(&input.file)?;
                let mut skill_input = testgen::Input {
                    path: file.clone(),
                    text,
                    symbol: input.symbol.clone(),
                    related: Vec::new(),
                };
                skill_input.find_related(&tree.index(), &|p| tree.read(p));
                let mut mutants = Vec::new();
                for (i, m) in reference.mutants.iter().enumerate() {
                    let files = patched(tree, m)
                        .map_err(|e| task_error(format!("mutant {}: {e}", i + 1)))?;
                    let Some(text) = files.get(&input.file).or_else(|| files.get(&file)) else {
                        return Err(task_error(format!(
                            "mutant {} does not change {}",
                            i + 1,
                            input.file
                        )));
                    };
                    mutants.push(testgen::MutantFile {
                        description: format!("mutant {}", i + 1),
                        text: text.clone(),
                    });
                }
                Episode::Testgen {
                    input: skill_input,
                    mutants,
                }
            }
            Spec::Reproduce { input, reference } => {
                let index = tree.index();
                let skill_input = reproduce::input_for(
                    &index,
                    &tree.root,
                    &input.issue,
                    REPRODUCE_CONTEXT_FILES,
                    &|p| tree.read(p),
                );
                Episode::Reproduce {
                    input: skill_input,
                    reference: reproduce::Reference {
                        fix: patched(tree, &reference.fix)?,
                    },
                }
            }
            Spec::Review { input, reference } => {
                let parsed = parse_patch(&input.patch).map_err(|e| task_error(e.to_string()))?;
                let changes = apply_patch(&parsed, &|p| tree.read(p))
                    .map_err(|e| task_error(e.to_string()))?;
                Episode::Review {
                    input: review::Input {
                        intent: input.issue.clone(),
                        changes,
                    },
                    verdict: reference.verdict == Verdict::Yes,
                }
            }
        })
    }

    pub fn skill(&self) -> SkillId {
        match self {
            Episode::Localize { .. } => SkillId::Localize,
            Episode::Edit { .. } => SkillId::Edit,
            Episode::Testgen { .. } => SkillId::Testgen,
            Episode::Reproduce { .. } => SkillId::Reproduce,
            Episode::Review { .. } => SkillId::Review,
        }
    }

    /// The skill's default budget and sampling (what the server uses).
    pub fn default_options(&self) -> Options {
        match self {
            Episode::Localize { .. } => localize::LocalizeSkill::default_options(),
            Episode::Edit { .. } => edit::EditSkill::default_options(),
            Episode::Testgen { .. } => testgen::TestgenSkill::default_options(),
            Episode::Reproduce { .. } => reproduce::ReproduceSkill::default_options(),
            Episode::Review { .. } => review::ReviewSkill::default_options(),
        }
    }

    /// The skill's prompt for this task.
    pub fn prompt(&self, lm: &LanguageModel, opts: &Options) -> Result<Prompt, SkillError> {
        match self {
            Episode::Localize { input, .. } => localize::LocalizeSkill::prompt(lm, input, opts),
            Episode::Edit { input, .. } => edit::EditSkill::prompt(lm, input, opts),
            Episode::Testgen { input, .. } => testgen::TestgenSkill::prompt(lm, input, opts),
            Episode::Reproduce { input, .. } => reproduce::ReproduceSkill::prompt(lm, input, opts),
            Episode::Review { input, .. } => review::ReviewSkill::prompt(lm, input, opts),
        }
    }

    /// What a completion of `prompt` says, read by the skill's parser.
    pub fn finish(&self, prompt: &Prompt, generated: Generated) -> Answer {
        match self {
            Episode::Localize { input, .. } => {
                Answer::Localize(localize::LocalizeSkill::finish(input, prompt, generated))
            }
            Episode::Edit { input, .. } => {
                Answer::Edit(edit::EditSkill::finish(input, prompt, generated))
            }
            Episode::Testgen { input, .. } => {
                Answer::Testgen(testgen::TestgenSkill::finish(input, prompt, generated))
            }
            Episode::Reproduce { input, .. } => {
                Answer::Reproduce(reproduce::ReproduceSkill::finish(input, prompt, generated))
            }
            Episode::Review { input, .. } => {
                Answer::Review(review::ReviewSkill::finish(input, prompt, generated))
            }
        }
    }

    /// Whether scoring this task runs code (in the sandbox).
    pub fn runs_code(&self) -> bool {
        match self {
            Episode::Localize { .. } | Episode::Review { .. } => false,
            Episode::Edit { reference, .. } => reference.tests.is_some(),
            Episode::Testgen { .. } | Episode::Reproduce { .. } => true,
        }
    }

    /// The reward of `answer` by the skill's own verifier; code runs in
    /// `sandbox`, over a copy of `tree`.
    pub fn score(
        &self,
        sandbox: &Sandbox,
        tree: &TaskTree,
        answer: &Answer,
    ) -> Result<Score, RunnerError> {
        match (self, answer) {
            (Episode::Localize { reference, .. }, Answer::Localize(o)) => {
                let named = localize::verify(&o.chosen, reference, RECALL_K);
                let ranking: Vec<String> = o.locations.iter().map(|l| l.path.clone()).collect();
                let ranked = localize::verify(&ranking, reference, RECALL_K);
                Ok(Score {
                    reward: named.reward,
                    graded: named.graded,
                    recall_at_k: Some(ranked.recall_at_k),
                    f1: Some(named.f1),
                    note: format!("named {:?}", o.chosen),
                    verdict: None,
                })
            }
            (
                Episode::Edit {
                    input,
                    reference,
                    start,
                },
                Answer::Edit(o),
            ) => {
                let start = reference.tests.as_ref().and_then(|tests| {
                    *start.get_or_init(|| {
                        edit::start_counts(sandbox, &tree.root, &tree.overlay, input, tests)
                    })
                });
                let s = edit::verify(
                    sandbox,
                    &tree.root,
                    &tree.overlay,
                    input,
                    o.replacement.as_deref(),
                    reference,
                    start,
                )?;
                let note = match (&o.replacement, &s.report) {
                    (None, _) => "the answer held no code".to_string(),
                    (Some(_), Some(r)) => r.summary(),
                    (Some(_), None) => "compared with the reference".to_string(),
                };
                Ok(Score {
                    reward: s.reward,
                    graded: s.graded,
                    note,
                    ..Score::default()
                })
            }
            (Episode::Testgen { input, mutants }, Answer::Testgen(o)) => {
                let Some(tests) = &o.tests else {
                    return Ok(Score {
                        note: "the answer held no test code".into(),
                        ..Score::default()
                    });
                };
                let language = testgen::language_of(&input.path)
                    .map_err(|e| RunnerError::NotAvailable("these", e.to_string()))?;
                let test_path = testgen::test_path(language, &input.path);
                let existing = tree.read(&test_path);
                let placement = testgen::place(language, input, tests, existing.as_deref());
                let s = testgen::verify(
                    sandbox,
                    &tree.root,
                    &tree.overlay,
                    input,
                    &placement,
                    mutants,
                )?;
                let note = if s.passed_original {
                    format!("killed {}/{} mutants", s.killed, s.mutants)
                } else {
                    // What went wrong first (a wrong expectation, a name the
                    // tests made up, an import), so a report says why.
                    let failures = s.report.failures(language);
                    let first = failures.first().map_or(String::new(), |f| {
                        format!(
                            "; {} failing, first: {}",
                            failures.len(),
                            f.message.chars().take(120).collect::<String>()
                        )
                    });
                    format!(
                        "the tests fail on the task's code: {}{first}",
                        s.report.summary()
                    )
                };
                Ok(Score {
                    reward: s.reward,
                    graded: s.graded,
                    note,
                    ..Score::default()
                })
            }
            (Episode::Reproduce { reference, .. }, Answer::Reproduce(o)) => {
                let s = reproduce::verify(
                    sandbox,
                    &tree.root,
                    &tree.overlay,
                    o.language,
                    &o.path,
                    o.test.as_deref(),
                    reference,
                )?;
                let note = match &s.after {
                    Some(after) => format!(
                        "before the fix: {}; after: {}",
                        s.before.describe(),
                        after.describe()
                    ),
                    None => format!("before the fix: {}", s.before.describe()),
                };
                Ok(Score {
                    reward: s.reward,
                    graded: s.graded,
                    note,
                    ..Score::default()
                })
            }
            (Episode::Review { verdict, .. }, Answer::Review(o)) => {
                let reward = review::verify(&o.review, &review::Reference { verdict: *verdict });
                let said = match o.review.verdict {
                    Some(true) => "YES",
                    Some(false) => "NO",
                    None => "no verdict",
                };
                Ok(Score {
                    reward,
                    // Per answer the same; the trainer weighs the classes.
                    graded: reward,
                    note: format!("said {said}"),
                    verdict: Some(ReviewCall {
                        expected: *verdict,
                        said: o.review.verdict,
                    }),
                    ..Score::default()
                })
            }
            _ => Err(RunnerError::NotAvailable(
                "these",
                "the answer is of another skill".into(),
            )),
        }
    }

    /// The language of the code the task is about, where there is one.
    pub fn language(&self) -> Option<Language> {
        let path = match self {
            Episode::Edit { input, .. } => &input.path,
            Episode::Testgen { input, .. } => &input.path,
            Episode::Reproduce { input, .. } => return input.language(),
            Episode::Localize { reference, .. } => reference.first()?,
            Episode::Review { input, .. } => &input.changes.first()?.path,
        };
        Language::from_path(Path::new(path))
    }
}

/// Verifier results by task and answer: an answer given twice to the same task
/// (a group's samples often agree, and a task comes back in later steps) runs
/// its tests once. Scoring threads share one; the evaluator keeps one per
/// evaluation and the trainer one per run. Failed scorings are not kept.
#[derive(Default)]
pub struct ScoreCache {
    scores: Mutex<HashMap<(String, u64), Score>>,
    hits: AtomicUsize,
}

impl ScoreCache {
    /// `episode`'s score of `answer`, from the cache when task `task_id` was
    /// given the same completion before.
    pub fn score(
        &self,
        sandbox: &Sandbox,
        tree: &TaskTree,
        episode: &Episode,
        task_id: &str,
        answer: &Answer,
    ) -> Result<Score, RunnerError> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        answer.generated().completion.hash(&mut h);
        let key = (task_id.to_string(), h.finish());
        let lock = || self.scores.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = lock().get(&key).cloned() {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(s);
        }
        let s = episode.score(sandbox, tree, answer)?;
        lock().insert(key, s.clone());
        Ok(s)
    }

    /// How many scores came from the cache so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_byte_spans() {
        let t = "a\nbb\nccc\n";
        assert_eq!(line_span(t, 1, 1), Some((0, 2)));
        assert_eq!(line_span(t, 2, 3), Some((2, 9)));
        assert_eq!(line_span(t, 3, 4), None);
        assert_eq!(line_span(t, 0, 1), None);
        assert_eq!(line_span("a\nb", 2, 2), Some((2, 3)));
    }
}
