//! Which tasks a step rolls out, and how many samples each gets. A weak policy
//! earns the same reward on every sample of most tasks, and GRPO learns nothing
//! from such a group; three things keep the steps' groups informative:
//!
//! - **a curriculum**: the balanced batch ([`crate::train::batch`]) is drawn
//!   [`LOOKAHEAD`] times over, and within each skill the tasks whose groups so
//!   far had reward variance come first, then the tasks not seen yet, then the
//!   tasks whose every group agreed;
//! - **dynamic sampling** (DAPO): while fewer than the step's quota of groups
//!   have variance, more tasks are drawn and rolled out, at most
//!   `draw_rounds` more times a step, so a task file with no signal in it ends
//!   a step instead of looping;
//! - **adaptive group size**: a task the policy has never earned a reward on
//!   gets up to `max_group_size` samples, where one lucky sample is likelier.
//!
//! What it knows of a task is what this run saw of it ([`History`]), keyed by
//! task id and written to `metrics.jsonl` with each step, so a resumed run
//! rebuilds it and draws what an uninterrupted run would.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::grpo;
use crate::task::Task;
use crate::train::{batch, TrainConfig};

/// How many balanced draws the curriculum chooses a step's tasks from, per task.
pub const LOOKAHEAD: usize = 3;

/// A mean reward under this counts as "never rewarded" for the group size.
const NEAR_ZERO: f64 = 0.05;

/// What a step saw of one task (a line of `metrics.jsonl` holds them).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub task: String,
    pub samples: usize,
    pub mean: f64,
    /// Every sample got the same reward: the group taught nothing.
    pub flat: bool,
}

impl Outcome {
    pub fn of(task: &str, rewards: &[f64]) -> Outcome {
        Outcome {
            task: task.to_string(),
            samples: rewards.len(),
            mean: rewards.iter().sum::<f64>() / rewards.len().max(1) as f64,
            flat: grpo::no_signal(rewards),
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    groups: usize,
    flat: usize,
    mean_sum: f64,
}

/// What the run has seen of each task so far.
#[derive(Debug, Clone, Default)]
pub struct History {
    seen: HashMap<String, Seen>,
}

impl History {
    pub fn observe(&mut self, o: &Outcome) {
        let s = self.seen.entry(o.task.clone()).or_default();
        s.groups += 1;
        s.flat += usize::from(o.flat);
        s.mean_sum += o.mean;
    }

    /// The history of the steps up to `upto` from `metrics.jsonl`'s lines (a
    /// resumed run's).
    pub fn from_metrics(lines: &[serde_json::Value], upto: usize) -> History {
        let mut h = History::default();
        for line in lines {
            if line["step"].as_u64().is_none_or(|s| s as usize > upto) {
                continue;
            }
            for o in line["outcomes"].as_array().into_iter().flatten() {
                let (Some(task), Some(mean)) = (o["task"].as_str(), o["mean"].as_f64()) else {
                    continue;
                };
                h.observe(&Outcome {
                    task: task.to_string(),
                    samples: o["samples"].as_u64().unwrap_or(0) as usize,
                    mean,
                    flat: o["flat"].as_bool().unwrap_or(false),
                });
            }
        }
        h
    }

    /// 0: a group of it had variance; 1: not seen yet; 2: every group agreed.
    fn priority(&self, id: &str) -> u8 {
        match self.seen.get(id) {
            None => 1,
            Some(s) if s.flat < s.groups => 0,
            Some(_) => 2,
        }
    }

    /// Samples for a task: `base`, or up to `max` for one never rewarded.
    pub fn group_size(&self, id: &str, base: usize, max: usize) -> usize {
        match self.seen.get(id) {
            Some(s) if s.mean_sum / (s.groups.max(1) as f64) < NEAR_ZERO => max.max(base),
            _ => base,
        }
    }
}

/// The seed of draw round `round` (round 0 is the step's own batch).
fn round_seed(seed: u64, round: usize) -> u64 {
    if round == 0 {
        seed
    } else {
        seed ^ (round as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

/// `n` tasks for round `round` of `step`, none of `taken`: the balanced batch,
/// reordered within each skill by the curriculum when `cfg.curriculum` (see
/// the module docs). Without it, round 0 is exactly [`batch`].
pub fn pick(
    tasks: &[Task],
    cfg: &TrainConfig,
    step: usize,
    round: usize,
    n: usize,
    history: &History,
    taken: &HashSet<usize>,
) -> Vec<usize> {
    let seed = round_seed(cfg.seed, round);
    let pool_size = if cfg.curriculum { n * LOOKAHEAD } else { n };
    let mut pool = batch(tasks, &cfg.skills, pool_size, seed, step);
    // Each skill keeps the share of the first n draws the balance gave it.
    let order: Vec<_> = pool.iter().take(n).map(|&i| tasks[i].skill()).collect();
    if !cfg.curriculum && round == 0 {
        return pool;
    }
    let mut seen = taken.clone();
    pool.retain(|i| seen.insert(*i));
    if !cfg.curriculum {
        pool.truncate(n);
        return pool;
    }
    let mut per_skill: BTreeMap<_, Vec<usize>> = BTreeMap::new();
    for &i in &pool {
        per_skill.entry(tasks[i].skill()).or_default().push(i);
    }
    for list in per_skill.values_mut() {
        // Stable: equal priorities keep the seeded order.
        list.sort_by_key(|&i| history.priority(&tasks[i].id));
        list.reverse();
    }
    order
        .into_iter()
        .filter_map(|skill| per_skill.get_mut(&skill)?.pop())
        .collect()
}

/// Groups with reward variance among `rewards`.
pub fn with_signal<'a>(rewards: impl IntoIterator<Item = &'a [f64]>) -> usize {
    rewards.into_iter().filter(|r| !grpo::no_signal(r)).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use basis_skills::SkillId;

    fn tasks(n: usize) -> Vec<Task> {
        (0..n)
            .map(|i| {
                let skill = if i % 2 == 0 { "localize" } else { "review" };
                let spec = if skill == "localize" {
                    serde_json::json!({"input": {"issue": "x"}, "reference": {"files": ["a.py"]}})
                } else {
                    serde_json::json!({"input": {"issue": "x", "patch": ""}, "reference": {"verdict": "YES"}})
                };
                let mut v = serde_json::json!({"schema": "basis.task/1", "id": format!("t{i}"),
                    "skill": skill, "repo": {"path": "."}, "meta": {"source": "hand"}});
                v["input"] = spec["input"].clone();
                v["reference"] = spec["reference"].clone();
                serde_json::from_value(v).unwrap()
            })
            .collect()
    }

    fn cfg(curriculum: bool) -> TrainConfig {
        TrainConfig {
            skills: vec![SkillId::Localize, SkillId::Review],
            curriculum,
            ..TrainConfig::default()
        }
    }

    #[test]
    fn without_the_curriculum_the_first_round_is_the_balanced_batch() {
        let t = tasks(10);
        let c = cfg(false);
        for step in 0..4 {
            assert_eq!(
                pick(&t, &c, step, 0, 4, &History::default(), &HashSet::new()),
                batch(&t, &c.skills, 4, c.seed, step)
            );
        }
    }

    #[test]
    fn the_curriculum_prefers_tasks_with_variance_then_unseen_and_keeps_the_balance() {
        let t = tasks(12);
        let c = cfg(true);
        let mut h = History::default();
        // Every task seen flat but t3 (review) and t4 (localize), which varied.
        for task in &t {
            let varied = task.id == "t3" || task.id == "t4";
            h.observe(&Outcome::of(
                &task.id,
                if varied { &[0.0, 1.0] } else { &[0.0, 0.0] },
            ));
        }
        let chosen = pick(&t, &c, 0, 0, 4, &h, &HashSet::new());
        assert_eq!(chosen.len(), 4);
        let skills: Vec<_> = chosen.iter().map(|&i| t[i].skill()).collect();
        assert_eq!(skills.iter().filter(|s| **s == SkillId::Review).count(), 2);
        let pool = batch(&t, &c.skills, 12, c.seed, 0);
        for (id, skill) in [("t3", SkillId::Review), ("t4", SkillId::Localize)] {
            let i = t.iter().position(|x| x.id == id).unwrap();
            if pool.contains(&i) {
                // Drawn into the pool: it is taken, first of its skill.
                let first = chosen.iter().find(|&&j| t[j].skill() == skill).unwrap();
                assert_eq!(*first, i, "{chosen:?}");
            }
        }
        // Taken tasks are not drawn again.
        let taken: HashSet<usize> = chosen.iter().copied().collect();
        let more = pick(&t, &c, 0, 1, 4, &h, &taken);
        assert!(more.iter().all(|i| !taken.contains(i)), "{more:?}");
    }

    #[test]
    fn a_never_rewarded_task_gets_the_larger_group_and_history_survives_a_resume() {
        let mut h = History::default();
        h.observe(&Outcome::of("zero", &[0.0, 0.0, 0.0, 0.0]));
        h.observe(&Outcome::of("some", &[0.0, 0.5, 0.0, 0.0]));
        assert_eq!(h.group_size("zero", 4, 8), 8);
        assert_eq!(h.group_size("some", 4, 8), 4);
        assert_eq!(h.group_size("unseen", 4, 8), 4);
        // The same history read back from metrics lines, up to a step.
        let lines = vec![
            serde_json::json!({"step": 1, "outcomes": [Outcome::of("zero", &[0.0, 0.0])]}),
            serde_json::json!({"step": 2, "outcomes": [Outcome::of("zero", &[1.0, 0.0])]}),
        ];
        assert_eq!(History::from_metrics(&lines, 1).group_size("zero", 4, 8), 8);
        let both = History::from_metrics(&lines, 2);
        assert_eq!(both.group_size("zero", 4, 8), 4);
        assert_eq!(both.priority("zero"), 0);
        assert_eq!(History::from_metrics(&lines, 1).priority("zero"), 2);
    }
}
