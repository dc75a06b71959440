//! The publish gate: is a trained version better than the one served?
//!
//! Both versions are evaluated on the same held-out tasks ([`crate::eval`]).
//! Per skill, the paired difference of each task's mean reward (after − before)
//! has a mean and a standard error; the skill got worse beyond noise when its
//! mean difference is below `−sigmas × SE` (with no spread at all, any drop
//! counts). The gate passes when no skill got worse beyond noise and the mean
//! over the skills improved by more than `min_gain`.

use std::collections::BTreeMap;

use serde::Serialize;

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

/// Each task's mean reward, by task id.
fn per_task(r: &Report) -> BTreeMap<&str, (String, f64)> {
    r.tasks
        .iter()
        .filter(|t| !t.samples.is_empty())
        .map(|t| {
            let m = t.samples.iter().map(|s| s.reward).sum::<f64>() / t.samples.len() as f64;
            (t.id.as_str(), (t.skill.as_str().to_string(), m))
        })
        .collect()
}

/// Judges `after` against `before` (see the module docs). Only tasks scored in
/// both count.
pub fn judge(before: &Report, after: &Report, gate: &Gate) -> Verdict {
    let b = per_task(before);
    let a = per_task(after);
    let mut diffs: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for (id, (skill, x)) in &b {
        if let Some((_, y)) = a.get(id) {
            diffs.entry(skill.clone()).or_default().push((*x, *y));
        }
    }
    let mut per_skill = BTreeMap::new();
    let mut reasons = Vec::new();
    for (skill, pairs) in diffs {
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
    use crate::episode::Score;
    use crate::eval::{summarize, Config, ModelLabel, Sample, TaskResult};
    use basis_skills::SkillId;

    fn report(rewards: &[(&str, SkillId, f64)]) -> Report {
        let tasks = rewards
            .iter()
            .map(|(id, skill, r)| TaskResult {
                id: id.to_string(),
                skill: *skill,
                split: "heldout".into(),
                samples: vec![Sample {
                    reward: *r,
                    score: Score::default(),
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
}
