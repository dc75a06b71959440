//! The three-way split: `train`, `validation` (what a run picks its checkpoint
//! on) and `heldout` (what a model is judged and published on).
//!
//! Tasks are joined into groups (union-find) by the keys they name in their
//! `meta`, and a group goes to one side whole. By default the keys are the
//! files and commits (`files`, `commit`, `other_commit`): no file or commit is
//! shared across the three sides. The groups are put in an order the seed
//! decides; the held-out side takes groups in that order until every skill has
//! its share of held-out tasks, then the validation side likewise from the
//! groups left, and the rest is trained on. Shares are counted per skill, so a
//! skill with tasks gets tasks on every side where the groups allow it. A side
//! takes the groups that keep every skill within its share first, then those
//! that take one a little past it; a group that would take a skill well past
//! its share stays where it is (one file that every task touches must not hold
//! everything out).
//!
//! A repository whose history clusters in few files (every fix touches the
//! same module) has few groups, too few for three sides. When the split by
//! files leaves a side without a skill that has tasks, or well short of its
//! share, and a split by time does better, the split is by time instead:
//! history tasks are kept apart by commit only, and the sides take the newest
//! commits first (the held-out side the newest that fit its share, validation
//! the next), and tasks mined from the tests at one commit by function (file
//! and symbol).
//! Files are then shared across the sides; commits and functions are not. The
//! split says which it made, and what it could not do, in its notes.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use basis_skills::SkillId;

use crate::task::Task;

/// The split trained on (and the split of a task in a file that was not split).
pub const TRAIN: &str = "train";
/// The split a run picks its checkpoint on (`basis train --eval-every`).
pub const VALIDATION: &str = "validation";
/// The split a model is judged on (`basis eval --split heldout`, the gate).
pub const HELDOUT: &str = "heldout";

/// The shares of tasks asked for besides training, per skill.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shares {
    pub validation: f64,
    pub heldout: f64,
}

/// How the tasks were split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Whole files and commits on one side.
    Files,
    /// Commits (newest held out) and functions on one side; files shared.
    Time,
}

/// What [`assign`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub method: Method,
    /// Things a user should know: the fallback, and sides short of their share.
    pub notes: Vec<String>,
}

/// The keys that must not be on two sides.
fn keys(task: &Task, method: Method) -> Vec<String> {
    let mut out = Vec::new();
    let extra = &task.meta.extra;
    for k in ["commit", "other_commit"] {
        if let Some(c) = extra.get(k).and_then(|v| v.as_str()) {
            out.push(format!("commit:{c}"));
        }
    }
    let files: Vec<&str> = extra
        .get("files")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|f| f.as_str()).collect())
        .unwrap_or_default();
    match method {
        Method::Files => out.extend(files.iter().map(|f| format!("file:{f}"))),
        Method::Time if out.is_empty() => match extra.get("symbol").and_then(|v| v.as_str()) {
            Some(symbol) => out.extend(files.iter().map(|f| format!("function:{f}::{symbol}"))),
            None => out.extend(files.iter().map(|f| format!("file:{f}"))),
        },
        Method::Time => {}
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

/// Tasks that must stay together: the smallest key names the group.
struct Group {
    name: String,
    members: Vec<usize>,
    /// The newest commit time among its keys' commits (Unix seconds).
    newest: Option<i64>,
}

/// The tasks joined by shared keys (see the module docs).
fn groups(tasks: &[Task], method: Method, times: &BTreeMap<String, i64>) -> Vec<Group> {
    let mut key_ids: BTreeMap<String, usize> = BTreeMap::new();
    let task_keys: Vec<Vec<usize>> = tasks
        .iter()
        .map(|t| {
            keys(t, method)
                .into_iter()
                .map(|k| {
                    let n = key_ids.len();
                    *key_ids.entry(k).or_insert(n)
                })
                .collect()
        })
        .collect();
    let mut names: Vec<&str> = vec![""; key_ids.len()];
    for (k, &i) in &key_ids {
        names[i] = k;
    }
    let mut parent: Vec<usize> = (0..key_ids.len()).collect();
    for ks in &task_keys {
        for w in ks.windows(2) {
            let (a, b) = (find(&mut parent, w[0]), find(&mut parent, w[1]));
            if a != b {
                parent[a.max(b)] = a.min(b);
            }
        }
    }
    let mut by_root: BTreeMap<usize, Group> = BTreeMap::new();
    for (t, ks) in task_keys.iter().enumerate() {
        let root = find(&mut parent, ks[0]);
        let g = by_root.entry(root).or_insert_with(|| Group {
            name: names[ks[0]].to_string(),
            members: Vec::new(),
            newest: None,
        });
        g.members.push(t);
        for &k in ks {
            let name = names[k];
            if name < g.name.as_str() {
                g.name = name.to_string();
            }
            let time = name.strip_prefix("commit:").and_then(|c| times.get(c));
            if let Some(&time) = time {
                g.newest = Some(g.newest.map_or(time, |n| n.max(time)));
            }
        }
    }
    by_root.into_values().collect()
}

/// The groups in the order the sides take them: the seed's order, or by time
/// the newest first (groups without a commit time after, in the seed's order).
fn order(mut groups: Vec<Group>, method: Method, seed: u64) -> Vec<Group> {
    let hash = |name: &str| -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(seed.to_le_bytes());
        h.update(name.as_bytes());
        h.finalize().into()
    };
    match method {
        Method::Files => groups.sort_by_cached_key(|g| hash(&g.name)),
        Method::Time => groups.sort_by_cached_key(|g| (std::cmp::Reverse(g.newest), hash(&g.name))),
    }
    groups
}

/// How many of a skill's `n` tasks a share asks for: at least one where the
/// skill has three tasks or more (one for each side).
fn wanted(n: usize, share: f64) -> usize {
    if share <= 0.0 {
        return 0;
    }
    let asked = (share.min(1.0) * n as f64).round() as usize;
    if n >= 3 {
        asked.max(1)
    } else {
        asked
    }
}

/// How far past its share a side may take a skill for a group to join it:
/// half as much again, or two tasks (a group that brings a needed skill may
/// bring a task or two of one the side already has).
fn room(want: usize) -> usize {
    if want == 0 {
        0
    } else {
        want + (want / 2).max(2)
    }
}

fn skill_counts(tasks: &[Task], members: &[usize]) -> BTreeMap<SkillId, usize> {
    let mut c = BTreeMap::new();
    for &m in members {
        *c.entry(tasks[m].skill()).or_default() += 1;
    }
    c
}

/// Each task's side, the groups taken in `groups`' order (see the module docs).
fn fill(tasks: &[Task], groups: &[Group], shares: Shares) -> Vec<&'static str> {
    let total = skill_counts(tasks, &(0..tasks.len()).collect::<Vec<_>>());
    let mut side = vec![TRAIN; tasks.len()];
    let mut taken = vec![false; groups.len()];
    for (name, share) in [(HELDOUT, shares.heldout), (VALIDATION, shares.validation)] {
        let want: BTreeMap<SkillId, usize> =
            total.iter().map(|(s, &n)| (*s, wanted(n, share))).collect();
        let mut got: BTreeMap<SkillId, usize> = BTreeMap::new();
        // First the groups that keep every skill within its share, then
        // those that take one a little past it.
        for limit in [|want| want, room] {
            for (g, group) in groups.iter().enumerate() {
                if taken[g] {
                    continue;
                }
                let counts = skill_counts(tasks, &group.members);
                let has = |s: &SkillId| got.get(s).copied().unwrap_or(0);
                let needed = counts.keys().any(|s| has(s) < want[s]);
                let fits = counts.iter().all(|(s, c)| has(s) + c <= limit(want[s]));
                if !(needed && fits) {
                    continue;
                }
                taken[g] = true;
                for (s, c) in counts {
                    *got.entry(s).or_default() += c;
                }
                for &m in &group.members {
                    side[m] = name;
                }
            }
        }
    }
    side
}

/// What a split falls short of on one side.
struct Shortfall {
    side: &'static str,
    share: f64,
    got: usize,
    /// Skills with tasks in the file but none on this side.
    missing: Vec<&'static str>,
    /// Fewer than half the tasks asked for.
    short: bool,
}

fn shortfalls(tasks: &[Task], side: &[&str], shares: Shares) -> Vec<Shortfall> {
    let present: BTreeSet<SkillId> = tasks.iter().map(Task::skill).collect();
    let mut out = Vec::new();
    for (name, share) in [(HELDOUT, shares.heldout), (VALIDATION, shares.validation)] {
        let want = (share.clamp(0.0, 1.0) * tasks.len() as f64).round() as usize;
        if want == 0 {
            continue;
        }
        let got = side.iter().filter(|s| **s == name).count();
        let missing: Vec<&'static str> = present
            .iter()
            .filter(|s| {
                !tasks
                    .iter()
                    .zip(side)
                    .any(|(t, x)| t.skill() == **s && *x == name)
            })
            .map(|s| s.as_str())
            .collect();
        let short = got * 2 < want;
        if short || !missing.is_empty() {
            out.push(Shortfall {
                side: name,
                share,
                got,
                missing,
                short,
            });
        }
    }
    out
}

/// How bad shortfalls are: sides without a skill, then sides short of their share.
fn badness(s: &[Shortfall]) -> (usize, usize) {
    (
        s.iter().map(|x| x.missing.len()).sum(),
        s.iter().filter(|x| x.short).count(),
    )
}

fn split_with(
    tasks: &[Task],
    shares: Shares,
    seed: u64,
    times: &BTreeMap<String, i64>,
    method: Method,
) -> Vec<&'static str> {
    let ordered = order(groups(tasks, method, times), method, seed);
    fill(tasks, &ordered, shares)
}

/// Sets `meta.split` of every task to `train`, `validation` or `heldout` (see
/// the module docs). `times` holds the commits' times (Unix seconds) for a
/// split by time; without them that split orders commits by the seed.
pub fn assign(
    tasks: &mut [Task],
    shares: Shares,
    seed: u64,
    times: &BTreeMap<String, i64>,
) -> Outcome {
    let by_files = split_with(tasks, shares, seed, times, Method::Files);
    let short_by_files = shortfalls(tasks, &by_files, shares);
    let mut method = Method::Files;
    let mut side = by_files;
    let mut notes = Vec::new();
    if !short_by_files.is_empty() {
        let by_time = split_with(tasks, shares, seed, times, Method::Time);
        if badness(&shortfalls(tasks, &by_time, shares)) < badness(&short_by_files) {
            notes.push(
                "split by time: these tasks' files and commits join into too few groups for \
                 train, validation and held-out sides that share no file, so the sides share no \
                 commit (the held-out side takes the newest commits' tasks that fit its share, \
                 the validation side the next ones) and no function (the tasks mined from the \
                 tests), but they do share files"
                    .to_string(),
            );
            method = Method::Time;
            side = by_time;
        }
    }
    for s in shortfalls(tasks, &side, shares) {
        notes.push(shortfall_note(tasks.len(), &s, method));
    }
    for (t, s) in tasks.iter_mut().zip(side) {
        t.meta.split = Some(s.to_string());
    }
    Outcome { method, notes }
}

fn shortfall_note(n: usize, s: &Shortfall, method: Method) -> String {
    let (what, one) = if s.side == HELDOUT {
        ("held out", "held-out")
    } else {
        ("in validation", "validation")
    };
    let kept = match method {
        Method::Files => "files and commits",
        Method::Time => "commits and functions",
    };
    let mut note = format!(
        "split: {} of {n} tasks {what} (asked {:.0}%): no {one} task may share its {kept} \
         with a task of another side, and these tasks' {kept} join into few groups",
        s.got,
        s.share * 100.0,
    );
    if !s.missing.is_empty() {
        note += &format!("; no {one} task for {}", s.missing.join(", "));
    }
    note += ". Another --seed, a larger --max, or mining the history skills (localize, \
             review) and the test skills (edit, testgen, reproduce) into separate files may \
             split better";
    note
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::{LocalizeInput, LocalizeReference, Meta, RepoRef, Spec, TASK_SCHEMA};
    use serde_json::json;

    const SHARES: Shares = Shares {
        validation: 0.2,
        heldout: 0.2,
    };

    fn task(id: &str, commits: &[&str], files: &[&str], symbol: Option<&str>) -> Task {
        let mut extra = std::collections::BTreeMap::new();
        for (k, c) in ["commit", "other_commit"].iter().zip(commits) {
            extra.insert(k.to_string(), json!(c));
        }
        extra.insert("files".to_string(), json!(files));
        if let Some(s) = symbol {
            extra.insert("symbol".to_string(), json!(s));
        }
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

    fn t(id: &str, commit: Option<&str>, files: &[&str]) -> Task {
        task(id, commit.as_slice(), files, None)
    }

    /// A review task (another skill than `t`'s localize).
    fn review(id: &str, commits: &[&str], files: &[&str]) -> Task {
        let mut x = task(id, commits, files, None);
        x.spec = Spec::Review {
            input: crate::task::ReviewInput {
                issue: "i".into(),
                patch: String::new(),
            },
            reference: crate::task::ReviewReference {
                verdict: crate::task::Verdict::Yes,
            },
        };
        x
    }

    /// An edit task mined at one commit: a function of a file.
    fn edit(id: &str, file: &str, symbol: &str) -> Task {
        let mut x = task(id, &[], &[file], Some(symbol));
        x.spec = Spec::Edit {
            input: crate::task::EditInput {
                instruction: "fix".into(),
                file: file.into(),
                start_line: 1,
                end_line: 1,
            },
            reference: crate::task::EditReference {
                replacement: String::new(),
                test_command: None,
            },
        };
        x
    }

    fn side_of(tasks: &[Task], id: &str) -> String {
        tasks
            .iter()
            .find(|t| t.id == id)
            .unwrap()
            .split()
            .to_string()
    }

    /// Every key of `method` is on one side only.
    fn assert_apart(tasks: &[Task], method: Method) {
        let mut sides: BTreeMap<String, &str> = BTreeMap::new();
        for task in tasks {
            for k in keys(task, method) {
                let side = task.meta.split.as_deref().unwrap();
                let seen = sides.entry(k.clone()).or_insert(side);
                assert_eq!(*seen, side, "{k} is on two sides");
            }
        }
    }

    fn count(tasks: &[Task], side: &str) -> usize {
        tasks.iter().filter(|t| t.split() == side).count()
    }

    #[test]
    fn no_file_or_commit_is_on_two_sides_and_the_seed_decides() {
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
        let outcome = assign(&mut a, SHARES, 1, &BTreeMap::new());
        assert_eq!(
            outcome,
            Outcome {
                method: Method::Files,
                notes: vec![]
            }
        );
        assert_apart(&a, Method::Files);
        for side in [HELDOUT, VALIDATION] {
            let n = count(&a, side);
            // 0.2 of 42 asks for 8; a group of four may overshoot by up to 4.
            assert!((8..=12).contains(&n), "{n} tasks {side} for 0.2");
        }
        let mut b = tasks.clone();
        assign(&mut b, SHARES, 1, &BTreeMap::new());
        assert_eq!(a, b, "the same seed, the same split");
        let mut c = tasks.clone();
        assign(&mut c, SHARES, 2, &BTreeMap::new());
        assert_ne!(a, c, "another seed, another split");
    }

    #[test]
    fn every_skill_gets_its_share_on_each_side() {
        // Ten localize tasks and ten review tasks, each in a file of its own:
        // each side takes two of each skill, not four of one.
        let mut tasks: Vec<Task> = (0..10)
            .map(|i| t(&format!("l{i}"), None, &[&format!("l{i}.py")]))
            .collect();
        tasks.extend((0..10).map(|i| review(&format!("r{i}"), &[], &[&format!("r{i}.py")])));
        let outcome = assign(&mut tasks, SHARES, 0, &BTreeMap::new());
        assert!(outcome.notes.is_empty(), "{:?}", outcome.notes);
        for side in [HELDOUT, VALIDATION, TRAIN] {
            for skill in [SkillId::Localize, SkillId::Review] {
                let n = tasks
                    .iter()
                    .filter(|t| t.skill() == skill && t.split() == side)
                    .count();
                let want = if side == TRAIN { 6 } else { 2 };
                assert_eq!(n, want, "{skill:?} {side}");
            }
        }
    }

    #[test]
    fn a_history_in_one_file_is_split_by_time_newest_held_out() {
        // Every fix touches lib.py; the tests' tasks are functions of lib.py.
        // By files there is one group; by time, commits and functions apart.
        let mut tasks: Vec<Task> = (0..10)
            .map(|i| t(&format!("l{i}"), Some(&format!("c{i}")), &["lib.py"]))
            .collect();
        // A NO review made with another commit's diff joins the two commits.
        tasks.push(review("r-no", &["c1", "c2"], &["lib.py"]));
        tasks.extend((0..10).map(|i| edit(&format!("e{i}"), "lib.py", &format!("f{i}"))));
        // Commit ci was made at time 100 + i: c9 is the newest.
        let times: BTreeMap<String, i64> =
            (0..10).map(|i| (format!("c{i}"), 100 + i as i64)).collect();
        let mut by_time = tasks.clone();
        let outcome = assign(&mut by_time, SHARES, 0, &times);
        assert_eq!(outcome.method, Method::Time);
        assert!(
            outcome.notes[0].starts_with("split by time: "),
            "{:?}",
            outcome.notes
        );
        assert_apart(&by_time, Method::Time);
        // The two newest fixes are held out, the next two validate.
        for (i, side) in [(9, HELDOUT), (8, HELDOUT), (7, VALIDATION), (6, VALIDATION)] {
            assert_eq!(side_of(&by_time, &format!("l{i}")), side, "l{i}");
        }
        assert_eq!(side_of(&by_time, "l0"), TRAIN);
        // The review joined c1 and c2: on one side with both.
        assert_eq!(side_of(&by_time, "r-no"), side_of(&by_time, "l1"));
        assert_eq!(side_of(&by_time, "l2"), side_of(&by_time, "l1"));
        for side in [HELDOUT, VALIDATION] {
            let edits = by_time
                .iter()
                .filter(|t| t.skill() == SkillId::Edit && t.split() == side)
                .count();
            assert_eq!(edits, 2, "edit tasks {side}");
        }
        // Without commit times the commits are ordered by the seed: still
        // apart, and the same seed gives the same split.
        let mut a = tasks.clone();
        assert_eq!(
            assign(&mut a, SHARES, 5, &BTreeMap::new()).method,
            Method::Time
        );
        assert_apart(&a, Method::Time);
        let mut b = tasks.clone();
        assign(&mut b, SHARES, 5, &BTreeMap::new());
        assert_eq!(a, b);
    }

    #[test]
    fn a_split_short_of_its_share_or_without_a_skill_gets_a_note() {
        // One file and no commit every task touches: one group either way, too
        // big to hold out.
        let mut one: Vec<Task> = (0..10)
            .map(|i| t(&format!("t{i}"), None, &["all.py"]))
            .collect();
        // Tasks without a symbol or a commit keep their files by time too.
        let outcome = assign(&mut one, SHARES, 0, &BTreeMap::new());
        assert_eq!(outcome.method, Method::Files);
        assert_eq!(outcome.notes.len(), 2, "{:?}", outcome.notes);
        let [held, validation] = [&outcome.notes[0], &outcome.notes[1]];
        assert!(
            held.contains("0 of 10 tasks held out (asked 20%)")
                && held.contains("no held-out task for localize"),
            "{held}"
        );
        assert!(
            validation.contains("0 of 10 tasks in validation (asked 20%)")
                && validation.contains("no validation task for localize"),
            "{validation}"
        );
        assert_eq!(count(&one, TRAIN), 10);
        // Ten files: every side has its share and the one skill.
        let mut many: Vec<Task> = (0..10)
            .map(|i| t(&format!("t{i}"), None, &[&format!("f{i}.py")]))
            .collect();
        assert!(assign(&mut many, SHARES, 0, &BTreeMap::new())
            .notes
            .is_empty());
        // No validation asked for: two sides, as files made before it had.
        let mut two = many.clone();
        let shares = Shares {
            validation: 0.0,
            heldout: 0.2,
        };
        assert!(assign(&mut two, shares, 0, &BTreeMap::new())
            .notes
            .is_empty());
        assert_eq!((count(&two, HELDOUT), count(&two, VALIDATION)), (2, 0));
    }

    #[test]
    fn shares_are_per_skill_with_one_task_a_side_from_three() {
        assert_eq!(wanted(3, 0.1), 1);
        assert_eq!(wanted(2, 0.2), 0);
        assert_eq!(wanted(8, 0.2), 2);
        assert_eq!(wanted(100, 0.1), 10);
        assert_eq!(wanted(100, 0.0), 0);
        assert_eq!((room(0), room(1), room(2), room(10)), (0, 3, 4, 15));
    }
}
