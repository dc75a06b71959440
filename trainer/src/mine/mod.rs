//! `basis tasks mine`: skill tasks with known answers from a repository alone.
//!
//! - [`history`]: commits that fix something give localization tasks (the
//!   message → the files changed, at the parent commit) and review tasks (the
//!   real diff → YES; a diff from another commit, with a hunk reverted, or with
//!   a planted bug → NO).
//! - [`mutation`]: functions the repository's tests cover (a tree-sitter mutant
//!   of them makes the test command fail, in the sandbox) give edit tasks (fix
//!   the mutant), testgen tasks (catch the mutants) and reproduction tasks (show
//!   the mutant's bug).
//! - [`split`]: a deterministic train/validation/held-out split that keeps
//!   every file and commit on one side (or, for a history that clusters in few
//!   files, every commit, the newest held out).
//!
//! The same repository, options and seed give the same task file, byte for byte.

pub mod history;
pub mod mutation;
pub mod own_test;
pub mod split;

use std::path::Path;

use basis_skills::sandbox::Sandbox;
use basis_skills::SkillId;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use sha2::{Digest, Sha256};

use crate::task::Task;

/// What to mine.
#[derive(Debug, Clone)]
pub struct Config {
    pub skills: Vec<SkillId>,
    /// At most this many tasks per skill.
    pub max_per_skill: usize,
    pub seed: u64,
    /// The share of tasks held out (whole files and commits at a time).
    pub holdout: f64,
    /// The share of tasks a run picks its checkpoint on, likewise apart.
    pub validation: f64,
    /// The test command (`python3 -m pytest -q`, ...) instead of the detected one.
    pub test_command: Option<String>,
    /// How many commits back the history miner looks.
    pub max_commits: usize,
    /// Mutants tried per function.
    pub mutants_per_function: usize,
    /// What `repo.path` says in the tasks (the repository as seen from the task
    /// file's folder).
    pub repo_path_in_tasks: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            skills: SkillId::ALL.to_vec(),
            max_per_skill: 50,
            seed: 0,
            holdout: 0.2,
            validation: 0.1,
            test_command: None,
            max_commits: 1000,
            mutants_per_function: 6,
            repo_path_in_tasks: ".".into(),
        }
    }
}

/// What mining produced, and what it noticed on the way.
#[derive(Debug, Default)]
pub struct Mined {
    pub tasks: Vec<Task>,
    /// Things a user should know (a test suite that does not pass, a language
    /// with no runner here, ...).
    pub notes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum MineError {
    #[error("{0} is not a git repository (the history miner reads its commits)")]
    NotARepository(String),
    #[error("{0}")]
    Git(String),
}

/// Where mining is, for a progress bar.
pub struct Progress<'a> {
    pub phase: &'a str,
    pub done: usize,
    pub total: usize,
}

/// Mines `repo` (see the module docs).
pub fn mine(
    repo: &Path,
    config: &Config,
    sandbox: &Sandbox,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Mined, MineError> {
    let mut out = Mined::default();
    let wants = |s: SkillId| config.skills.contains(&s);
    if wants(SkillId::Localize) || wants(SkillId::Review) || wants(SkillId::Edit) {
        let h = history::mine(repo, config, progress)?;
        out.tasks.extend(h.tasks);
        out.notes.extend(h.notes);
    }
    if wants(SkillId::Edit) || wants(SkillId::Testgen) || wants(SkillId::Reproduce) {
        let m = mutation::mine(repo, config, sandbox, progress);
        out.tasks.extend(m.tasks);
        out.notes.extend(m.notes);
    }
    out.tasks.retain(|t| wants(t.skill()));
    out.tasks
        .sort_by(|a, b| (skill_rank(a.skill()), &a.id).cmp(&(skill_rank(b.skill()), &b.id)));
    out.tasks.dedup_by(|a, b| a.id == b.id);
    if config.holdout > 0.0 || config.validation > 0.0 {
        let shares = split::Shares {
            validation: config.validation,
            heldout: config.holdout,
        };
        let times = commit_times(repo, &out.tasks);
        let outcome = split::assign(&mut out.tasks, shares, config.seed, &times);
        out.notes.extend(outcome.notes);
    }
    Ok(out)
}

/// When the commits the tasks name were made (committer time, Unix seconds),
/// for a split by time; empty if git cannot say.
fn commit_times(repo: &Path, tasks: &[Task]) -> std::collections::BTreeMap<String, i64> {
    let commits: std::collections::BTreeSet<&str> = tasks
        .iter()
        .flat_map(|t| ["commit", "other_commit"].map(|k| t.meta.extra.get(k)))
        .filter_map(|v| v.and_then(|v| v.as_str()))
        .collect();
    if commits.is_empty() {
        return Default::default();
    }
    let mut args = vec!["show", "-s", "--format=%H %ct"];
    args.extend(commits);
    let Ok(text) = crate::workspace::git_text(repo, &args) else {
        return Default::default();
    };
    text.lines()
        .filter_map(|l| {
            let (sha, time) = l.split_once(' ')?;
            Some((sha.to_string(), time.trim().parse().ok()?))
        })
        .collect()
}

fn skill_rank(s: SkillId) -> usize {
    SkillId::ALL
        .iter()
        .position(|x| *x == s)
        .unwrap_or(usize::MAX)
}

/// A short, stable id from the parts that make a task what it is.
pub(crate) fn task_id(prefix: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    let hex: String = h
        .finalize()
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{prefix}-{hex}")
}

/// `items` in a seeded order (the same seed, the same order).
pub(crate) fn shuffled<T>(mut items: Vec<T>, seed: u64, salt: &str) -> Vec<T> {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(salt.as_bytes());
    let digest = h.finalize();
    let mut key = [0u8; 8];
    key.copy_from_slice(&digest[..8]);
    let mut rng = rand::rngs::StdRng::seed_from_u64(u64::from_le_bytes(key));
    items.shuffle(&mut rng);
    items
}

pub use basis_code::is_test_path;
