//! The train/held-out split: whole files and commits go to one side, so no
//! held-out task shares a file or a commit with a training task.
//!
//! Tasks are joined into groups (union-find) by the files and commits they
//! name in their `meta` (`files`, `commit`, `other_commit`); the groups are put
//! in an order the seed decides, and groups go to the held-out side in that
//! order until it holds the asked share of the tasks.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use basis_skills::SkillId;

use crate::task::Task;

fn keys(task: &Task) -> Vec<String> {
    let mut out = Vec::new();
    let extra = &task.meta.extra;
    for k in ["commit", "other_commit"] {
        if let Some(c) = extra.get(k).and_then(|v| v.as_str()) {
            out.push(format!("commit:{c}"));
        }
    }
    if let Some(files) = extra.get("files").and_then(|v| v.as_array()) {
        out.extend(
            files
                .iter()
                .filter_map(|f| f.as_str())
                .map(|f| format!("file:{f}")),
        );
    }
    if out.is_empty() {
        out.push(format!("task:{}", task.id));
    }
    out
}

fn find(parent: &mut [usize], x: usize) -> usize {
    let mut r = x;
    while parent[r] != r {
        r = parent[r];
    }
    let mut x = x;
    while parent[x] != r {
        let next = parent[x];
        parent[x] = r;
        x = next;
    }
    r
}

/// How many of `n` tasks a held-out share asks for.
fn wanted(n: usize, holdout: f64) -> usize {
    (holdout.clamp(0.0, 1.0) * n as f64).round() as usize
}

/// Sets `meta.split` of every task to `train` or `heldout` (see the module docs).
pub fn assign(tasks: &mut [Task], holdout: f64, seed: u64) {
    let mut key_ids: BTreeMap<String, usize> = BTreeMap::new();
    let task_keys: Vec<Vec<usize>> = tasks
        .iter()
        .map(|t| {
            keys(t)
                .into_iter()
                .map(|k| {
                    let n = key_ids.len();
                    *key_ids.entry(k).or_insert(n)
                })
                .collect()
        })
        .collect();
    let mut parent: Vec<usize> = (0..key_ids.len()).collect();
    for ks in &task_keys {
        for w in ks.windows(2) {
            let (a, b) = (find(&mut parent, w[0]), find(&mut parent, w[1]));
            if a != b {
                parent[a.max(b)] = a.min(b);
            }
        }
    }
    // Each group is named by its smallest key; the seed orders the groups.
    let names: Vec<&String> = {
        let mut v: Vec<(&String, usize)> = key_ids.iter().map(|(k, &i)| (k, i)).collect();
        v.sort_by_key(|(_, i)| *i);
        v.into_iter().map(|(k, _)| k).collect()
    };
    let mut groups: BTreeMap<usize, (String, Vec<usize>)> = BTreeMap::new();
    for (t, ks) in task_keys.iter().enumerate() {
        let root = find(&mut parent, ks[0]);
        let entry = groups
            .entry(root)
            .or_insert_with(|| (names[root].clone(), Vec::new()));
        entry.1.push(t);
    }
    for ks in &task_keys {
        for &k in ks {
            let root = find(&mut parent, k);
            if let Some(g) = groups.get_mut(&root) {
                if *names[k] < g.0 {
                    g.0 = names[k].clone();
                }
            }
        }
    }
    let mut order: Vec<([u8; 32], Vec<usize>)> = groups
        .into_values()
        .map(|(name, members)| {
            let mut h = Sha256::new();
            h.update(seed.to_le_bytes());
            h.update(name.as_bytes());
            (h.finalize().into(), members)
        })
        .collect();
    order.sort();
    let want = wanted(tasks.len(), holdout);
    let mut held = 0usize;
    let mut split = vec!["train"; tasks.len()];
    // A group that would overshoot the share by more than half of it stays in
    // training (one file that every task touches must not hold everything out).
    let room = want + want / 2;
    for (_, members) in order {
        if held >= want {
            break;
        }
        if held + members.len() > room.max(1) {
            continue;
        }
        held += members.len();
        for m in members {
            split[m] = "heldout";
        }
    }
    for (t, s) in tasks.iter_mut().zip(split) {
        t.meta.split = Some(s.to_string());
    }
}

/// A note for a split that came out short of the asked share, or that left a
/// skill without held-out tasks: tasks that share files and commits form few
/// groups (a repository whose code is in one file is one group), and the
/// evaluation then has little or nothing to measure.
pub fn shortfall_note(tasks: &[Task], holdout: f64) -> Option<String> {
    let want = wanted(tasks.len(), holdout);
    let held = tasks.iter().filter(|t| t.split() == "heldout").count();
    let missing: Vec<&str> = SkillId::ALL
        .iter()
        .filter(|&&s| tasks.iter().any(|t| t.skill() == s))
        .filter(|&&s| {
            !tasks
                .iter()
                .any(|t| t.skill() == s && t.split() == "heldout")
        })
        .map(|s| s.as_str())
        .collect();
    if want == 0 || (held * 2 >= want && missing.is_empty()) {
        return None;
    }
    let mut note = format!(
        "split: {held} of {} tasks held out (asked {:.0}%): no held-out task may share a \
         file or a commit with a training task, and these tasks' files and commits join \
         into few groups",
        tasks.len(),
        holdout * 100.0
    );
    if !missing.is_empty() {
        note += &format!("; no held-out task for {}", missing.join(", "));
    }
    note += ". Another --seed, or mining the history skills (localize, review) and the \
             test skills (edit, testgen, reproduce) into separate files, may split better; \
             for a repository whose commits nearly all touch one file, \
             bench/temporal_split.py splits by time instead (the newest commits held out)";
    Some(note)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{LocalizeInput, LocalizeReference, Meta, RepoRef, Spec, TASK_SCHEMA};
    use serde_json::json;

    fn t(id: &str, commit: Option<&str>, files: &[&str]) -> Task {
        let mut extra = std::collections::BTreeMap::new();
        if let Some(c) = commit {
            extra.insert("commit".to_string(), json!(c));
        }
        extra.insert("files".to_string(), json!(files));
        Task {
            schema: TASK_SCHEMA.into(),
            id: id.into(),
            spec: Spec::Localize {
                input: LocalizeInput {
                    issue: "x y z".into(),
                },
                reference: LocalizeReference {
                    files: vec!["a".into()],
                },
            },
            repo: RepoRef {
                path: ".".into(),
                commit: None,
                patch: None,
            },
            language: None,
            meta: Meta {
                source: "t".into(),
                split: None,
                extra,
            },
        }
    }

    #[test]
    fn no_file_or_commit_is_on_both_sides_and_the_seed_decides() {
        // Groups of four tasks (two commits, one file), and one file all touch.
        let mut tasks: Vec<Task> = (0..40)
            .map(|i| {
                t(
                    &format!("t{i}"),
                    Some(&format!("c{}", i / 2)),
                    &[&format!("f{}.py", i / 4)],
                )
            })
            .collect();
        tasks.push(t("big-1", None, &["everything.py", "f0.py"]));
        tasks.push(t("lonely", None, &["z.py"]));
        let mut a = tasks.clone();
        assign(&mut a, 0.3, 1);
        let mut sides: BTreeMap<String, &str> = BTreeMap::new();
        for task in &a {
            for k in keys(task) {
                let side = task.meta.split.as_deref().unwrap();
                let seen = sides.entry(k.clone()).or_insert(side);
                assert_eq!(*seen, side, "{k} is on both sides");
            }
        }
        let mut b = tasks.clone();
        assign(&mut b, 0.3, 1);
        assert_eq!(a, b, "the same seed, the same split");
        let held = a.iter().filter(|t| t.split() == "heldout").count();
        assert!(
            (8..=16).contains(&held),
            "{held} of {} held out for 0.3",
            a.len()
        );
        let mut c = tasks.clone();
        assign(&mut c, 0.3, 2);
        assert_ne!(a, c, "another seed, another split");
    }

    #[test]
    fn a_split_short_of_its_share_or_without_a_skill_gets_a_note() {
        // One file every task touches: one group, too big to hold out.
        let mut one: Vec<Task> = (0..10)
            .map(|i| t(&format!("t{i}"), None, &["all.py"]))
            .collect();
        assign(&mut one, 0.2, 0);
        let note = shortfall_note(&one, 0.2).expect("nothing held out");
        assert!(
            note.contains("0 of 10 tasks held out (asked 20%)"),
            "{note}"
        );
        assert!(note.contains("no held-out task for localize"), "{note}");
        assert!(note.contains("bench/temporal_split.py"), "{note}");
        // Ten files: the share is met and the one skill has held-out tasks.
        let mut many: Vec<Task> = (0..10)
            .map(|i| t(&format!("t{i}"), None, &[&format!("f{i}.py")]))
            .collect();
        assign(&mut many, 0.2, 0);
        assert_eq!(shortfall_note(&many, 0.2), None);
    }
}
