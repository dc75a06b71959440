//! The publish gate: is a trained version better than the one served?
//!
//! Both versions are evaluated on the same held-out tasks ([`crate::eval`]).
//! Per skill, the paired difference of each task's mean reward (after − before)
//! has a mean and a standard error; the skill got worse beyond noise when its
//! mean difference is below `−sigmas × SE` (with no spread at all, any drop
//! counts). The gate passes when no skill got worse beyond noise and the mean
//! over the skills improved by more than `min_gain`.
//!
//! Review is judged by balanced accuracy, not by its mean reward: a model that
//! learns to answer YES every time scores the share of YES tasks in the mean
//! reward (0.5 on a balanced split, more on a split of mostly YES), and RL finds
//! that answer first (BENCHMARKS.md, "more-itertools with a split by time"). Each
//! review task's reward is weighted by `n / (2 × tasks with its verdict)`, so the
//! weighted mean is the mean of the share right on YES tasks and on NO tasks, and
//! the paired differences keep their standard error. A split with one verdict
//! only keeps plain weights.

use std::collections::BTreeMap;

use serde::Serialize;

use basis_skills::SkillId;

use crate::eval::Report;

/// The gate's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gate {
    /// A skill may drop by at most this many standard errors.
    pub sigmas: f64,
    /// The mean over the skills must rise by more than this.
    pub min_gain: f64,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            sigmas: 2.0,
            min_gain: 0.0,
        }
    }
}

/// One skill before and after.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SkillChange {
    pub tasks: usize,
    pub before: f64,
    pub after: f64,
    /// The standard error of the paired per-task difference.
    pub stderr: f64,
    /// Worse beyond noise.
    pub worse: bool,
    /// Scored by balanced accuracy (review over tasks of both verdicts).
    pub balanced: bool,
}

/// What the gate found.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Verdict {
    pub passed: bool,
    pub per_skill: BTreeMap<String, SkillChange>,
    pub mean_before: f64,
    pub mean_after: f64,
    /// Why it failed (empty when it passed).
    pub reasons: Vec<String>,
}

/// One task's score in one report.
struct TaskScore {
    skill: String,
    mean: f64,
    /// Review: the verdict that was right, where a sample recorded it.
    expected: Option<bool>,
}

/// Each task's mean reward, by task id.
fn per_task(r: &Report) -> BTreeMap<&str, TaskScore> {
    r.tasks
        .iter()
        .filter(|t| !t.samples.is_empty())
        .map(|t| {
            let mean = t.samples.iter().map(|s| s.reward).sum::<f64>() / t.samples.len() as f64;
            let expected = t
                .samples
                .iter()
                .find_map(|s| s.score.verdict.map(|v| v.expected));
            let skill = t.skill.as_str().to_string();
            (
                t.id.as_str(),
                TaskScore {
                    skill,
                    mean,
                    expected,
                },
            )
        })
        .collect()
}

/// One weight per task (see the module docs): balanced over the two verdicts
/// where every task has one and both occur, 1 otherwise.
fn weights(expected: &[Option<bool>]) -> (Vec<f64>, bool) {
    let n = expected.len() as f64;
    let yes = expected.iter().filter(|e| **e == Some(true)).count() as f64;
    let no = expected.iter().filter(|e| **e == Some(false)).count() as f64;
    if yes == 0.0 || no == 0.0 || yes + no < n {
        return (vec![1.0; expected.len()], false);
    }
    let w = expected
        .iter()
        .map(|e| n / (2.0 * if *e == Some(true) { yes } else { no }))
        .collect();
    (w, true)
}

/// Judges `after` against `before` (see the module docs). Only tasks scored in
/// both count.
pub fn judge(before: &Report, after: &Report, gate: &Gate) -> Verdict {
    let b = per_task(before);
    let a = per_task(after);
    let mut paired: BTreeMap<String, Vec<(f64, f64, Option<bool>)>> = BTreeMap::new();
    for (id, x) in &b {
        if let Some(y) = a.get(id) {
            paired.entry(x.skill.clone()).or_default().push((
                x.mean,
                y.mean,
                x.expected.or(y.expected),
            ));
        }
    }
    let mut per_skill = BTreeMap::new();
    let mut reasons = Vec::new();
    for (skill, scored) in paired {
        let (w, balanced) = if skill == SkillId::Review.as_str() {
            weights(&scored.iter().map(|p| p.2).collect::<Vec<_>>())
        } else {
            (vec![1.0; scored.len()], false)
        };
        let pairs: Vec<(f64, f64)> = scored
            .iter()
            .zip(&w)
            .map(|(p, w)| (p.0 * w, p.1 * w))
            .collect();
        let n = pairs.len() as f64;
        let before = pairs.iter().map(|p| p.0).sum::<f64>() / n;
        let after = pairs.iter().map(|p| p.1).sum::<f64>() / n;
        let d: Vec<f64> = pairs.iter().map(|p| p.1 - p.0).collect();
        let dm = after - before;
        let var = if d.len() > 1 {
            d.iter().map(|x| (x - dm) * (x - dm)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        let stderr = (var / n).sqrt();
        let worse = dm < -gate.sigmas * stderr - 1e-12;
        if worse {
            reasons.push(format!(
                "{skill} got worse: {before:.3} -> {after:.3} (more than {} standard errors of {stderr:.3})",
                gate.sigmas
            ));
        }
        per_skill.insert(
            skill,
            SkillChange {
                tasks: pairs.len(),
                before,
                after,
                stderr,
                worse,
                balanced,
            },
        );
    }
    let mean = |f: fn(&SkillChange) -> f64| {
        per_skill.values().map(f).sum::<f64>() / per_skill.len().max(1) as f64
    };
    let (mean_before, mean_after) = (mean(|c| c.before), mean(|c| c.after));
    if per_skill.is_empty() {
        reasons.push("no held-out task was scored for both versions".into());
    } else if mean_after - mean_before <= gate.min_gain {
        reasons.push(format!(
            "the mean did not improve: {mean_before:.3} -> {mean_after:.3}"
        ));
    }
    Verdict {
        passed: reasons.is_empty(),
        per_skill,
        mean_before,
        mean_after,
        reasons,
    }
}

/// The verdict as a markdown table.
pub fn markdown(v: &Verdict, before: &str, after: &str) -> String {
    let mut out = format!(
        "| skill | tasks | {before} | {after} | change | stderr | worse beyond noise |\n|---|---|---|---|---|---|---|\n"
    );
    for (skill, c) in &v.per_skill {
        let skill = if c.balanced {
            format!("{skill} (balanced accuracy)")
        } else {
            skill.clone()
        };
        out.push_str(&format!(
            "| {skill} | {} | {:.3} | {:.3} | {:+.3} | {:.3} | {} |\n",
            c.tasks,
            c.before,
            c.after,
            c.after - c.before,
            c.stderr,
            if c.worse { "yes" } else { "no" }
        ));
    }
    out.push_str(&format!(
        "| **mean** | | {:.3} | {:.3} | {:+.3} | | |\n",
        v.mean_before,
        v.mean_after,
        v.mean_after - v.mean_before
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::episode::{ReviewCall, Score};
    use crate::eval::{summarize, Config, ModelLabel, Sample, TaskResult};

    fn report(rewards: &[(&str, SkillId, f64)]) -> Report {
        scored(
            rewards
                .iter()
                .map(|(id, skill, r)| (*id, *skill, *r, Score::default())),
        )
    }

    /// Review tasks: (id, the right verdict, the verdict said), one sample each.
    fn reviews(calls: &[(&str, bool, bool)]) -> Report {
        scored(calls.iter().map(|(id, expected, said)| {
            let score = Score {
                verdict: Some(ReviewCall {
                    expected: *expected,
                    said: Some(*said),
                }),
                ..Score::default()
            };
            (*id, SkillId::Review, f64::from(expected == said), score)
        }))
    }

    fn scored<'a>(tasks: impl Iterator<Item = (&'a str, SkillId, f64, Score)>) -> Report {
        let tasks = tasks
            .map(|(id, skill, reward, score)| TaskResult {
                id: id.to_string(),
                skill,
                split: "heldout".into(),
                samples: vec![Sample {
                    reward,
                    score,
                    tokens: 1,
                    latency_ms: 1,
                    completion: String::new(),
                }],
                rankings: None,
            })
            .collect();
        let label = ModelLabel {
            name: "m".into(),
            version: "base".into(),
        };
        summarize(label, &Config::default(), tasks, Vec::new())
    }

    #[test]
    fn a_better_mean_with_no_skill_worse_passes() {
        use SkillId::*;
        let before = report(&[("a", Edit, 0.0), ("b", Edit, 0.0), ("c", Review, 1.0)]);
        let after = report(&[("a", Edit, 1.0), ("b", Edit, 0.0), ("c", Review, 1.0)]);
        let v = judge(&before, &after, &Gate::default());
        assert!(v.passed, "{:?}", v.reasons);
        assert!((v.mean_after - 0.75).abs() < 1e-12 && (v.mean_before - 0.5).abs() < 1e-12);
    }

    #[test]
    fn a_skill_that_drops_without_spread_fails_and_no_gain_fails() {
        use SkillId::*;
        let before = report(&[("a", Edit, 0.0), ("c", Review, 1.0), ("d", Review, 1.0)]);
        let after = report(&[("a", Edit, 1.0), ("c", Review, 0.0), ("d", Review, 0.0)]);
        let v = judge(&before, &after, &Gate::default());
        assert!(!v.passed);
        assert!(v.per_skill["review"].worse && !v.per_skill["edit"].worse);
        let same = judge(&before, &before, &Gate::default());
        assert!(!same.passed && same.reasons[0].contains("did not improve"));
    }

    #[test]
    fn a_noisy_drop_within_the_sigmas_is_not_worse() {
        use SkillId::*;
        // Differences +1, -1, -1, 0: mean -0.25, stderr ~0.48.
        let before = report(&[
            ("a", Edit, 0.0),
            ("b", Edit, 1.0),
            ("c", Edit, 1.0),
            ("d", Edit, 0.0),
        ]);
        let after = report(&[
            ("a", Edit, 1.0),
            ("b", Edit, 0.0),
            ("c", Edit, 0.0),
            ("d", Edit, 0.0),
        ]);
        let v = judge(&before, &after, &Gate::default());
        assert!(!v.per_skill["edit"].worse);
        let strict = judge(
            &before,
            &after,
            &Gate {
                sigmas: 0.0,
                min_gain: 0.0,
            },
        );
        assert!(strict.per_skill["edit"].worse);
    }

    #[test]
    fn review_is_judged_by_balanced_accuracy_so_a_constant_yes_does_not_pass() {
        // Three YES tasks and one NO. Before: right on one YES task and on the NO
        // task (mean reward 0.50, balanced accuracy (1/3 + 1) / 2 = 0.667).
        // After: YES every time (mean reward 0.75, balanced accuracy 0.50).
        let before = reviews(&[
            ("a", true, true),
            ("b", true, false),
            ("c", true, false),
            ("d", false, false),
        ]);
        let after = reviews(&[
            ("a", true, true),
            ("b", true, true),
            ("c", true, true),
            ("d", false, true),
        ]);
        assert_eq!(after.per_skill["review"].avg_at_k, 0.75);
        let v = judge(&before, &after, &Gate::default());
        let r = &v.per_skill["review"];
        assert!(r.balanced);
        assert!((r.before - 2.0 / 3.0).abs() < 1e-12, "{}", r.before);
        assert!((r.after - 0.5).abs() < 1e-12, "{}", r.after);
        assert!(!v.passed && v.reasons[0].contains("did not improve"));
        assert!(markdown(&v, "v1", "trained").contains("| review (balanced accuracy) | 4 |"));
        // Telling the NO task apart from the YES ones is what passes.
        let v = judge(&after, &before, &Gate::default());
        assert!(v.passed, "{:?}", v.reasons);
        // One verdict only on the split: plain mean reward.
        let yes_only = reviews(&[("a", true, true), ("b", true, false)]);
        let v = judge(&yes_only, &yes_only, &Gate::default());
        assert!(!v.per_skill["review"].balanced);
        assert_eq!(v.per_skill["review"].before, 0.5);
    }
}
