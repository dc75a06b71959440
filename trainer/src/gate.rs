//! The publish gate: is a trained version better than the one served, beyond
//! noise?
//!
//! Both versions are evaluated on the same held-out tasks ([`crate::eval`]) and
//! paired task by task ([`crate::eval::compare`]): per skill, the mean over the
//! tasks of each task's mean reward after minus before, with its 95% interval
//! from a bootstrap over the tasks ([`crate::stats`]). The gate passes when
//!
//! - no skill is worse beyond noise: no skill's interval lies below 0 (its
//!   upper end under 0), and
//! - the mean over the skills is better beyond noise: its interval lies above
//!   0 (its lower end over 0; each skill's tasks resampled within the skill).
//!
//! Review is judged by balanced accuracy, not by its mean reward: a model that
//! learns to answer YES every time scores the share of YES tasks in the mean
//! reward (0.5 on a balanced split, more on a split of mostly YES), and RL finds
//! that answer first (BENCHMARKS.md, "more-itertools with a split by time").
//! Balanced accuracy, the mean of the share right on YES tasks and on NO tasks,
//! is 0.5 for any constant answer; its change is resampled with the YES and NO
//! tasks apart. Where the tasks have one verdict only it is not defined, and
//! review counts by its mean reward.

use std::collections::BTreeMap;

use serde::Serialize;

use basis_skills::SkillId;

use crate::eval::{self, Difference, Report, TaskResult};
use crate::stats::{self, Tally};

/// The gate's settings.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Gate {
    /// The mean's interval must lie above this (0: above no change).
    pub min_gain: f64,
}

/// One skill before and after.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SkillChange {
    pub tasks: usize,
    pub before: f64,
    pub after: f64,
    /// `after − before`, the mean of the paired per-task differences.
    pub difference: f64,
    /// Its 95% interval.
    pub ci95: Option<[f64; 2]>,
    /// Worse beyond noise: the interval lies below 0.
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
    /// The 95% interval of `mean_after − mean_before`.
    pub mean_ci95: Option<[f64; 2]>,
    /// Why it failed (empty when it passed).
    pub reasons: Vec<String>,
}

/// A unit the mean's bootstrap resamples: a task's paired difference, or for
/// review by balanced accuracy, a task's right verdicts before and after.
#[derive(Debug, Clone, Copy)]
struct Unit {
    difference: f64,
    before: Tally,
    after: Tally,
}

/// A review task's samples: how many gave the right verdict, of how many.
fn verdict_tally(t: &TaskResult) -> Option<(bool, Tally)> {
    let calls: Vec<_> = t.samples.iter().filter_map(|s| s.score.verdict).collect();
    let expected = calls.first()?.expected;
    let right = calls.iter().filter(|c| c.said == Some(c.expected)).count();
    Some((
        expected,
        Tally {
            sum: right as f64,
            n: calls.len() as f64,
        },
    ))
}

fn task_mean(t: &TaskResult) -> f64 {
    t.samples.iter().map(|s| s.reward).sum::<f64>() / t.samples.len() as f64
}

/// The tasks scored in both reports, per skill: (before, after).
fn pairs<'a>(
    before: &'a Report,
    after: &'a Report,
) -> BTreeMap<SkillId, Vec<(&'a TaskResult, &'a TaskResult)>> {
    let b: BTreeMap<&str, &TaskResult> = before
        .tasks
        .iter()
        .filter(|t| !t.samples.is_empty())
        .map(|t| (t.id.as_str(), t))
        .collect();
    let mut out: BTreeMap<SkillId, Vec<_>> = BTreeMap::new();
    let mut scored: Vec<&TaskResult> = after
        .tasks
        .iter()
        .filter(|t| !t.samples.is_empty())
        .collect();
    scored.sort_by(|x, y| x.id.cmp(&y.id));
    for a in scored {
        if let Some(b) = b.get(a.id.as_str()) {
            out.entry(a.skill).or_default().push((*b, a));
        }
    }
    out
}

/// Review's tasks as two groups, YES and NO, when every task has a verdict
/// and both occur; `None` otherwise.
fn review_groups(tasks: &[(&TaskResult, &TaskResult)]) -> Option<[Vec<Unit>; 2]> {
    let mut groups: [Vec<Unit>; 2] = [Vec::new(), Vec::new()];
    for (b, a) in tasks {
        let ((expected, before), (_, after)) = (verdict_tally(b)?, verdict_tally(a)?);
        groups[usize::from(!expected)].push(Unit {
            difference: 0.0,
            before,
            after,
        });
    }
    (!groups[0].is_empty() && !groups[1].is_empty()).then_some(groups)
}

/// The mean over skills of each skill's change (see the module docs) on
/// resampled groups: `plain` groups of paired differences, then, where
/// `review` is set, review's YES and NO groups as the last two.
fn mean_change(groups: &[Vec<Unit>], review: bool) -> Option<f64> {
    let plain = if review {
        groups.len() - 2
    } else {
        groups.len()
    };
    let mut changes: Vec<f64> = groups[..plain]
        .iter()
        .map(|g| stats::mean(&g.iter().map(|u| u.difference).collect::<Vec<_>>()))
        .collect::<Option<_>>()?;
    if review {
        changes.push(balanced_change(&groups[plain..])?);
    }
    stats::mean(&changes)
}

/// Balanced accuracy after minus before, from the YES and NO groups.
fn balanced_change(yes_no: &[Vec<Unit>]) -> Option<f64> {
    let side = |after: bool| -> Option<f64> {
        let share = |g: &Vec<Unit>| {
            let t: Vec<Tally> = g
                .iter()
                .map(|u| if after { u.after } else { u.before })
                .collect();
            stats::pooled(&t)
        };
        Some((share(&yes_no[0])? + share(&yes_no[1])?) / 2.0)
    };
    Some(side(true)? - side(false)?)
}

/// A skill's change from a paired difference.
fn change(d: &Difference, balanced: bool) -> SkillChange {
    SkillChange {
        tasks: d.tasks,
        before: d.before,
        after: d.after,
        difference: d.difference,
        ci95: d.ci95,
        worse: d.ci95.is_some_and(|[_, hi]| hi < 0.0),
        balanced,
    }
}

/// An interval, signed, or `n/a`.
fn interval(ci: Option<[f64; 2]>) -> String {
    ci.map_or_else(|| "n/a".into(), |[lo, hi]| format!("[{lo:+.3}, {hi:+.3}]"))
}

/// Judges `after` against `before` (see the module docs). Only tasks scored in
/// both count.
pub fn judge(before: &Report, after: &Report, gate: &Gate) -> Verdict {
    let comparison = eval::compare(before, after);
    let paired = pairs(before, after);
    let mut per_skill = BTreeMap::new();
    let mut groups: Vec<Vec<Unit>> = Vec::new();
    let mut review = None;
    for (skill, tasks) in &paired {
        let name = skill.as_str().to_string();
        let by_verdict = (*skill == SkillId::Review)
            .then(|| review_groups(tasks))
            .flatten();
        let balanced = comparison.review_balanced_accuracy.as_ref();
        match (by_verdict, balanced) {
            (Some(yes_no), Some(d)) => {
                per_skill.insert(name, change(d, true));
                review = Some(yes_no);
            }
            _ => {
                let Some(d) = comparison.per_skill.get(&name) else {
                    continue;
                };
                per_skill.insert(name, change(d, false));
                groups.push(
                    tasks
                        .iter()
                        .map(|(b, a)| Unit {
                            difference: task_mean(a) - task_mean(b),
                            before: Tally { sum: 0.0, n: 0.0 },
                            after: Tally { sum: 0.0, n: 0.0 },
                        })
                        .collect(),
                );
            }
        }
    }
    let has_review = review.is_some();
    groups.extend(review.into_iter().flatten());
    let mean = |f: fn(&SkillChange) -> f64| {
        stats::mean(&per_skill.values().map(f).collect::<Vec<_>>()).unwrap_or(0.0)
    };
    let (mean_before, mean_after) = (mean(|c| c.before), mean(|c| c.after));
    let mean_ci95 = stats::bootstrap(&groups, |g| mean_change(g, has_review));
    let mut reasons = Vec::new();
    for (skill, c) in &per_skill {
        if c.worse {
            reasons.push(format!(
                "{skill}{} got worse: {:.3} -> {:.3}, a difference of {:+.3} whose 95% interval {} lies below 0",
                if c.balanced { " (balanced accuracy)" } else { "" },
                c.before,
                c.after,
                c.difference,
                interval(c.ci95)
            ));
        }
    }
    if per_skill.is_empty() {
        reasons.push("no held-out task was scored for both versions".into());
    } else if !mean_ci95.is_some_and(|[lo, _]| lo > gate.min_gain) {
        reasons.push(format!(
            "the mean over the skills did not improve beyond noise: {mean_before:.3} -> {mean_after:.3}, a difference of {:+.3} whose 95% interval {} does not lie above {}",
            mean_after - mean_before,
            interval(mean_ci95),
            gate.min_gain
        ));
    }
    Verdict {
        passed: reasons.is_empty(),
        per_skill,
        mean_before,
        mean_after,
        mean_ci95,
        reasons,
    }
}

/// The verdict as a markdown table.
pub fn markdown(v: &Verdict, before: &str, after: &str) -> String {
    let mut out = format!(
        "| skill | tasks | {before} | {after} | difference | 95% interval | worse beyond noise |\n|---|---|---|---|---|---|---|\n"
    );
    let ordered = SkillId::ALL
        .iter()
        .filter_map(|s| v.per_skill.get_key_value(s.as_str()));
    for (skill, c) in ordered {
        let skill = if c.balanced {
            format!("{skill} (balanced accuracy)")
        } else {
            skill.clone()
        };
        out.push_str(&format!(
            "| {skill} | {} | {:.3} | {:.3} | {:+.3} | {} | {} |\n",
            c.tasks,
            c.before,
            c.after,
            c.difference,
            interval(c.ci95),
            if c.worse { "yes" } else { "no" }
        ));
    }
    out.push_str(&format!(
        "| **mean** | | {:.3} | {:.3} | {:+.3} | {} | |\n",
        v.mean_before,
        v.mean_after,
        v.mean_after - v.mean_before,
        interval(v.mean_ci95)
    ));
    out.push_str(
        "\nThe gate passes when no skill's interval lies below 0 and the mean's lies above 0.\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::episode::{ReviewCall, Score};
    use crate::eval::{summarize, Config, ModelLabel, Sample};

    /// Tasks of `skill` named `{prefix}{i}`, one sample each, rewarded `rewards`.
    fn tasks(prefix: &str, skill: SkillId, rewards: &[f64]) -> Vec<(String, SkillId, f64, Score)> {
        rewards
            .iter()
            .enumerate()
            .map(|(i, r)| (format!("{prefix}{i}"), skill, *r, Score::default()))
            .collect()
    }

    /// Review tasks: (the right verdict, the verdict said), one sample each,
    /// named `r0`, `r1`, ….
    fn reviews(calls: &[(bool, bool)]) -> Vec<(String, SkillId, f64, Score)> {
        calls
            .iter()
            .enumerate()
            .map(|(i, (expected, said))| {
                let score = Score {
                    verdict: Some(ReviewCall {
                        expected: *expected,
                        said: Some(*said),
                    }),
                    ..Score::default()
                };
                let reward = f64::from(expected == said);
                (format!("r{i}"), SkillId::Review, reward, score)
            })
            .collect()
    }

    fn report(parts: &[Vec<(String, SkillId, f64, Score)>]) -> Report {
        let tasks = parts
            .iter()
            .flatten()
            .map(|(id, skill, reward, score)| TaskResult {
                id: id.clone(),
                skill: *skill,
                split: "heldout".into(),
                samples: vec![Sample {
                    reward: *reward,
                    score: score.clone(),
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

    fn judged(before: &Report, after: &Report) -> Verdict {
        judge(before, after, &Gate::default())
    }

    #[test]
    fn a_mean_better_beyond_noise_with_no_skill_worse_passes() {
        use SkillId::*;
        // Edit: five tasks from 0 to 1; review (one verdict only, so by its
        // mean reward): the same. Differences +1 and 0: the mean's interval is
        // [0.5, 0.5].
        let before = report(&[tasks("e", Edit, &[0.0; 5]), tasks("r", Review, &[1.0; 3])]);
        let after = report(&[tasks("e", Edit, &[1.0; 5]), tasks("r", Review, &[1.0; 3])]);
        let v = judged(&before, &after);
        assert!(v.passed, "{:?}", v.reasons);
        assert_eq!((v.mean_before, v.mean_after), (0.5, 1.0));
        assert_eq!(v.mean_ci95, Some([0.5, 0.5]));
        assert_eq!(v.per_skill["edit"].ci95, Some([1.0, 1.0]));
        assert!(!v.per_skill["review"].balanced);
        let md = markdown(&v, "v1", "trained");
        assert!(
            md.contains("| edit | 5 | 0.000 | 1.000 | +1.000 | [+1.000, +1.000] | no |"),
            "{md}"
        );
        assert!(
            md.contains("| **mean** | | 0.500 | 1.000 | +0.500 | [+0.500, +0.500] | |"),
            "{md}"
        );
    }

    #[test]
    fn a_skill_worse_beyond_noise_fails_even_when_the_mean_rises() {
        use SkillId::*;
        // Edit and testgen up on every task, localize down on every task: the
        // mean rises by 1/3, beyond noise, but localize's interval is below 0.
        let before = report(&[
            tasks("e", Edit, &[0.0; 4]),
            tasks("t", Testgen, &[0.0; 4]),
            tasks("l", Localize, &[1.0; 3]),
        ]);
        let after = report(&[
            tasks("e", Edit, &[1.0; 4]),
            tasks("t", Testgen, &[1.0; 4]),
            tasks("l", Localize, &[0.0; 3]),
        ]);
        let v = judged(&before, &after);
        assert!(!v.passed);
        assert!(v.mean_ci95.is_some_and(|[lo, _]| lo > 0.0), "{v:?}");
        assert!(v.per_skill["localize"].worse && !v.per_skill["edit"].worse);
        assert_eq!(v.reasons.len(), 1, "{:?}", v.reasons);
        assert!(
            v.reasons[0].starts_with("localize got worse: 1.000 -> 0.000"),
            "{}",
            v.reasons[0]
        );
    }

    #[test]
    fn changes_within_noise_neither_fail_a_skill_nor_pass_the_mean() {
        use SkillId::*;
        // Differences +1, -1, -1, 0, +1, +1: a mean of +1/6 whose interval
        // holds 0 both ways. The old rule (the mean rose, no drop beyond two
        // standard errors) passed this.
        let before = report(&[tasks("e", Edit, &[0.0, 1.0, 1.0, 0.0, 0.0, 0.0])]);
        let after = report(&[tasks("e", Edit, &[1.0, 0.0, 0.0, 0.0, 1.0, 1.0])]);
        let v = judged(&before, &after);
        let [lo, hi] = v.per_skill["edit"].ci95.unwrap();
        assert!(lo < 0.0 && hi > 0.0, "{lo}..{hi}");
        assert!(!v.per_skill["edit"].worse);
        assert!(!v.passed);
        assert_eq!(v.reasons.len(), 1, "{:?}", v.reasons);
        assert!(
            v.reasons[0].starts_with(
                "the mean over the skills did not improve beyond noise: 0.333 -> 0.500"
            ),
            "{}",
            v.reasons[0]
        );
        // The same model against itself: no change, and no gain.
        let same = judged(&before, &before);
        assert!(!same.passed && same.mean_ci95 == Some([0.0, 0.0]));
        // Nothing in common: nothing to judge on.
        let other = report(&[tasks("x", Edit, &[1.0])]);
        let none = judged(&before, &other);
        assert!(!none.passed && none.reasons[0].starts_with("no held-out task was scored"));
    }

    #[test]
    fn a_model_that_always_answers_yes_is_refused() {
        // Six YES tasks and two NO tasks. Before: right on three YES tasks and
        // on both NO tasks (mean reward 5/8, balanced accuracy (1/2 + 1) / 2 =
        // 3/4). After: YES every time, a better mean reward (6/8) and a
        // balanced accuracy of 1/2.
        let yes_no = |said: [bool; 8]| {
            let expected = [true, true, true, true, true, true, false, false];
            reviews(&expected.into_iter().zip(said).collect::<Vec<_>>())
        };
        let before = report(&[yes_no([
            true, true, true, false, false, false, false, false,
        ])]);
        let always_yes = report(&[yes_no([true; 8])]);
        assert_eq!(
            (
                before.per_skill["review"].avg_at_k,
                always_yes.per_skill["review"].avg_at_k
            ),
            (0.625, 0.75)
        );
        let v = judged(&before, &always_yes);
        let r = &v.per_skill["review"];
        assert!(r.balanced);
        assert_eq!((r.before, r.after, r.difference), (0.75, 0.5, -0.25));
        assert!(r.worse, "{r:?}");
        assert!(!v.passed);
        assert!(
            v.reasons[0].starts_with("review (balanced accuracy) got worse: 0.750 -> 0.500"),
            "{:?}",
            v.reasons
        );
        assert!(v.reasons[1].starts_with("the mean over the skills did not improve"));
        assert!(markdown(&v, "v1", "trained")
            .contains("| review (balanced accuracy) | 8 | 0.750 | 0.500 | -0.250 |"));
        // Against a model that already said YES every time it is no better.
        let v = judged(&always_yes, &always_yes);
        assert!(!v.passed);
        // Telling the NO tasks apart from the YES ones is what passes: both NO
        // tasks right where they were wrong, every YES task still right.
        let reviewer = report(&[yes_no([true, true, true, true, true, true, false, false])]);
        let v = judged(&always_yes, &reviewer);
        assert!(v.passed, "{:?}", v.reasons);
        assert_eq!(v.mean_ci95, Some([0.5, 0.5]));
        // One verdict only on the split: review counts by its mean reward.
        let yes_only = report(&[reviews(&[(true, true), (true, false)])]);
        let v = judged(&yes_only, &yes_only);
        assert!(!v.per_skill["review"].balanced);
        assert_eq!(v.per_skill["review"].before, 0.5);
    }

    #[test]
    fn the_mean_counts_review_by_balanced_accuracy_beside_the_other_skills() {
        use SkillId::*;
        // Edit up by 1 on every task; review from a reviewer to YES every time
        // (balanced accuracy 1 -> 1/2): the mean over the skills moves by
        // (1 - 0.5) / 2 = +0.25 and review's drop fails the gate on its own.
        let expected = [true, true, false, false];
        let calls = |said: [bool; 4]| reviews(&expected.into_iter().zip(said).collect::<Vec<_>>());
        let before = report(&[
            tasks("e", Edit, &[0.0; 4]),
            calls([true, true, false, false]),
        ]);
        let after = report(&[tasks("e", Edit, &[1.0; 4]), calls([true; 4])]);
        let v = judged(&before, &after);
        assert_eq!((v.mean_before, v.mean_after), (0.5, 0.75));
        assert_eq!(v.mean_ci95, Some([0.25, 0.25]));
        assert!(!v.passed && v.per_skill["review"].worse, "{v:?}");
    }
}
