//! `basis tasks` end to end on repositories with known answers: the example
//! repository's fix commits become exactly their localize tasks, a function no
//! test covers gives no task, the train, validation and held-out splits share
//! no commit (the example's history clusters in few files, so it is split by
//! time) and no function, the same seed gives the same file byte for byte, bad
//! task lines are reported line by line, and SWE-bench instances become tasks.

mod support;

use std::path::Path;

use serde_json::Value;
use support::{stderr, stdout};

/// Builds the example repository (fixed commit ids) under `dir/shopkit`.
fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn mine(repo: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "tasks",
        "mine",
        "--repo",
        repo.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    support::run(&args)
}

/// The bulk-discount fix of the example's history, and its parent.
const BULK_FIX: &str = "e8b5dbf2df56f6ffa8638eea33c60808536f8a89";
const BULK_FIX_PARENT: &str = "62d34439146f255e23924b2441d7b3eb582c291e";
/// A commit that adds a feature and fixes nothing.
const LOW_STOCK_FEATURE: &str = "a2144c52ce3242452b635bc9469f6c3b55444d81";

#[test]
fn mining_the_example_gives_known_tasks_a_clean_split_and_the_same_bytes_twice() {
    let dir = tempfile::tempdir().unwrap();
    let repo = support::shopkit(dir.path(), "shopkit");
    let out = dir.path().join("a/tasks.jsonl");
    let o = mine(&repo, &out, &["--max", "8", "--seed", "0"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let tasks = lines(&out);
    // Every skill has tasks; the stats table counts them.
    for skill in ["localize", "edit", "testgen", "reproduce", "review"] {
        assert!(tasks.iter().any(|t| t["skill"] == skill), "no {skill} task");
    }
    assert!(
        stdout(&o).contains(&format!("total\t\t\t{}", tasks.len())),
        "{}",
        stdout(&o)
    );
    // The bulk-discount fix: a localize task with exactly its source file, at
    // its parent, with the repository as seen from the task file's folder.
    let loc: Vec<&Value> = tasks
        .iter()
        .filter(|t| t["skill"] == "localize" && t["meta"]["commit"] == BULK_FIX)
        .collect();
    assert_eq!(loc.len(), 1, "{loc:?}");
    assert_eq!(
        loc[0]["reference"]["files"],
        serde_json::json!(["shopkit/pricing.py"])
    );
    assert_eq!(loc[0]["repo"]["commit"], BULK_FIX_PARENT);
    assert_eq!(loc[0]["repo"]["path"], "../shopkit");
    assert!(loc[0]["input"]["issue"]
        .as_str()
        .unwrap()
        .contains("ten items"));
    // Seven fix commits, seven localize tasks; a feature commit gives none.
    assert_eq!(tasks.iter().filter(|t| t["skill"] == "localize").count(), 7);
    assert!(!tasks
        .iter()
        .any(|t| t["meta"]["commit"] == LOW_STOCK_FEATURE));
    // Reviews come in YES/NO pairs.
    let verdicts = |v: &str| {
        tasks
            .iter()
            .filter(|t| t["reference"]["verdict"] == v)
            .count()
    };
    assert_eq!(verdicts("YES"), verdicts("NO"));
    // The example's fixes touch a few files, joined by the review tasks made
    // with another commit's diff: too few groups for three sides that share no
    // file, so it is split by time. No commit is on two sides, nor a function
    // of the tasks mined from the tests; every skill is on every side.
    assert!(
        stderr(&o).contains("note: split by time: "),
        "{}",
        stderr(&o)
    );
    let mut side: std::collections::BTreeMap<String, String> = Default::default();
    for t in &tasks {
        let split = t["meta"]["split"].as_str().unwrap().to_string();
        let mut keys: Vec<String> = ["commit", "other_commit"]
            .iter()
            .filter_map(|k| t["meta"][k].as_str())
            .map(|c| format!("commit:{c}"))
            .collect();
        if let Some(symbol) = t["meta"]["symbol"].as_str() {
            keys.push(format!("function:{}::{symbol}", t["meta"]["files"][0]));
        }
        assert!(!keys.is_empty(), "{t}");
        for k in keys {
            let s = side.entry(k.clone()).or_insert(split.clone());
            assert_eq!(*s, split, "{k} is on two sides");
        }
    }
    for split in ["train", "validation", "heldout"] {
        for skill in ["localize", "edit", "testgen", "reproduce", "review"] {
            assert!(
                tasks
                    .iter()
                    .any(|t| t["skill"] == skill && t["meta"]["split"] == split),
                "no {split} task for {skill}"
            );
        }
        let n = tasks.iter().filter(|t| t["meta"]["split"] == split).count();
        assert!(
            stdout(&o).contains(&format!("total\t\t{split}\t{n}\n")),
            "{}",
            stdout(&o)
        );
    }
    // The held-out side takes the newest fixes that fit its share: the
    // parse_amount fix (the newest, "Handle discounts over 100%", joins two
    // older fixes through review tasks made with their diffs: too many tasks
    // for the share), not the oldest, the bulk-discount fix.
    let newest_fix = "706b7dbea6949a7cdd91a9c3720c505775ce26d8";
    let split_of = |commit: &str| {
        tasks
            .iter()
            .find(|t| t["skill"] == "localize" && t["meta"]["commit"] == commit)
            .map(|t| t["meta"]["split"].clone())
    };
    assert_eq!(split_of(newest_fix), Some("heldout".into()));
    assert_ne!(split_of(BULK_FIX), Some("heldout".into()));
    // A Python reproduction carries the repository's own test that caught the
    // bug (the miner checked that it fails before the fix and passes after);
    // a Rust one has none.
    for t in tasks.iter().filter(|t| t["skill"] == "reproduce") {
        let test = t["reference"]["test"].as_str();
        if t["language"] == "python" {
            let test = test.unwrap_or_else(|| panic!("no test: {t}"));
            assert!(
                test.contains("(unittest.TestCase):") && test.matches("    def test").count() == 1,
                "{test}"
            );
        } else {
            assert_eq!(test, None, "{t}");
        }
    }
    // Likewise testgen's reference tests (a failing test of every listed
    // mutant, from one module): all six of shopkit's Python functions.
    let with_tests: Vec<&Value> = tasks
        .iter()
        .filter(|t| t["skill"] == "testgen" && t["reference"]["tests"].is_string())
        .collect();
    assert_eq!(with_tests.len(), 6, "{tasks:#?}");
    for t in with_tests {
        assert_eq!(t["language"], "python", "{t}");
        assert!(
            t["reference"]["tests"]
                .as_str()
                .unwrap()
                .contains("(unittest.TestCase):"),
            "{t}"
        );
    }
    // The same seed: the same bytes. Another seed: another file.
    let again = dir.path().join("b/tasks.jsonl");
    assert!(mine(&repo, &again, &["--max", "8", "--seed", "0"])
        .status
        .success());
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&again).unwrap());
    let other = dir.path().join("c/tasks.jsonl");
    assert!(mine(&repo, &other, &["--max", "8", "--seed", "7"])
        .status
        .success());
    assert_ne!(std::fs::read(&out).unwrap(), std::fs::read(&other).unwrap());
    // The file reads back without a bad line.
    let stats = support::run(&["tasks", "stats", out.to_str().unwrap()]);
    assert!(
        stats.status.success() && stderr(&stats).is_empty(),
        "{}",
        stderr(&stats)
    );
    // The user's tree is as it was: nothing was checked out in it.
    support::git(&repo, &["diff", "--quiet", "HEAD"]);
}

#[test]
fn a_function_no_test_catches_gives_no_task() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("calc");
    std::fs::create_dir_all(repo.join("tests")).unwrap();
    std::fs::write(
        repo.join("calc.py"),
        "def covered(a, b):\n    \"\"\"The sum of a and b.\"\"\"\n    total = a + b\n    return total\n\n\ndef uncovered(a, b):\n    \"\"\"The larger of a and b.\"\"\"\n    if a > b:\n        return a\n    return b\n",
    )
    .unwrap();
    std::fs::write(repo.join("tests/__init__.py"), "").unwrap();
    std::fs::write(
        repo.join("tests/test_calc.py"),
        "import unittest\nfrom calc import covered\n\n\nclass T(unittest.TestCase):\n    def test_covered(self):\n        self.assertEqual(covered(2, 3), 5)\n",
    )
    .unwrap();
    support::git_commit_all(&repo);
    let out = dir.path().join("tasks.jsonl");
    let o = mine(&repo, &out, &["--skills", "edit,testgen,reproduce"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let tasks = lines(&out);
    assert_eq!(tasks.len(), 3, "{tasks:#?}");
    // All three share calc.py: none can be held out, and the user is told.
    assert!(
        tasks.iter().all(|t| t["meta"]["split"] == "train"),
        "{tasks:#?}"
    );
    assert!(
        stderr(&o).contains("0 of 3 tasks held out (asked 20%)")
            && stderr(&o).contains("no held-out task for edit, testgen, reproduce"),
        "{}",
        stderr(&o)
    );
    for t in &tasks {
        assert_eq!(t["meta"]["symbol"], "covered", "{t}");
    }
    assert!(stderr(&o).contains("not covered"), "{}", stderr(&o));
    // Progress on a pipe: plain lines.
    assert!(stderr(&o).contains("mining: 0 starting"), "{}", stderr(&o));
    // The reproduction's issue never names the test.
    let issue = tasks.iter().find(|t| t["skill"] == "reproduce").unwrap()["input"]["issue"]
        .as_str()
        .unwrap()
        .to_lowercase();
    assert!(!issue.contains("test"), "{issue}");
    // Shares that leave nothing to train on are refused, and nothing written.
    let none_left = dir.path().join("none-left.jsonl");
    for (shares, says) in [
        (
            ["--holdout", "0.5", "--validation", "0.5"],
            "--holdout 0.5 and --validation 0.5 leave nothing to train on",
        ),
        (
            ["--holdout", "0.2", "--validation", "1.5"],
            "--validation 1.5 is not a share in [0, 1)",
        ),
    ] {
        let o = mine(&repo, &none_left, &shares);
        assert!(!o.status.success(), "{shares:?}");
        assert!(stderr(&o).contains(says), "{}", stderr(&o));
        assert!(!none_left.exists());
    }
}

#[test]
fn a_test_command_that_runs_no_test_is_said_and_no_mutant_is_tried() {
    // pytest-style tests that unittest (all the sandbox has) finds none of: the
    // suite "passes" with 0 tests, and mutating every function against it would
    // take minutes and catch nothing (a real repository's case).
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("calc");
    std::fs::create_dir_all(repo.join("tests")).unwrap();
    std::fs::write(
        repo.join("calc.py"),
        "def covered(a, b):\n    total = a + b\n    return total\n",
    )
    .unwrap();
    std::fs::write(
        repo.join("tests/test_calc.py"),
        "from calc import covered\n\n\ndef test_covered():\n    assert covered(2, 3) == 5\n",
    )
    .unwrap();
    support::git_commit_all(&repo);
    let out = dir.path().join("tasks.jsonl");
    let o = mine(&repo, &out, &["--skills", "edit,testgen,reproduce"]);
    assert!(!o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("the python test command ran no test")
            && stderr(&o).contains("mining: 0 mutating functions")
            && stderr(&o).contains("no tasks were mined"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
}

#[test]
fn a_task_file_of_two_splits_still_reads() {
    // A file mined before the validation split: train and heldout only.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("old.jsonl");
    let task = |id: &str, split: &str| {
        format!(
            r#"{{"schema":"basis.task/1","id":"{id}","skill":"localize","repo":{{"path":"."}},"input":{{"issue":"the total is wrong"}},"reference":{{"files":["a.py"]}},"meta":{{"source":"mined:history","split":"{split}"}}}}"#
        )
    };
    let text = [task("a", "train"), task("b", "train"), task("c", "heldout")].join("\n");
    std::fs::write(&file, text).unwrap();
    let o = support::run(&["tasks", "stats", file.to_str().unwrap()]);
    assert!(
        o.status.success() && stderr(&o).is_empty(),
        "{}",
        stderr(&o)
    );
    let table = stdout(&o);
    assert!(
        table.contains("localize\t-\theldout\t1\nlocalize\t-\ttrain\t2\n"),
        "{table}"
    );
    assert!(
        table.ends_with("total\t\ttrain\t2\ntotal\t\theldout\t1\ntotal\t\t\t3\n"),
        "{table}"
    );
}

#[test]
fn bad_task_lines_are_reported_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.jsonl");
    let good = r#"{"schema":"basis.task/1","id":"ok","skill":"localize","repo":{"path":"."},"input":{"issue":"the total is wrong"},"reference":{"files":["a.py"]}}"#;
    let text = [
        "{oops",
        r#"{"schema":"basis.task/1","id":"x","skill":"refactor","repo":{"path":"."},"input":{},"reference":{}}"#,
        r#"{"schema":"basis.task/1","id":"y","skill":"localize","repo":{"path":"."},"input":{"issue":"q w e"},"reference":{"files":["../../x"]}}"#,
        good,
    ]
    .join("\n");
    std::fs::write(&file, text).unwrap();
    let o = support::run(&["tasks", "stats", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    let path = file.display().to_string();
    for (line, what) in [
        (1, "not JSON"),
        (2, "unknown skill"),
        (3, "leaves the repository"),
    ] {
        assert!(
            err.contains(&format!("{path}:{line}: ")) && err.contains(what),
            "line {line}: {err}"
        );
    }
    assert!(stdout(&o).contains("total\t\t\t1"), "{}", stdout(&o));
}

#[test]
fn swebench_instances_become_tasks() {
    let fixture = support::fixture("swebench/instances.jsonl");
    let o = support::run(&["tasks", "import-swebench", fixture.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let tasks: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of = |skill: &str| tasks.iter().filter(|t| t["skill"] == skill).count();
    assert_eq!((of("localize"), of("review"), of("reproduce")), (3, 6, 3));
    let first = tasks
        .iter()
        .find(|t| t["skill"] == "localize" && t["meta"]["instance_id"] == "shopkit__shopkit-1")
        .unwrap();
    assert_eq!(
        first["reference"]["files"],
        serde_json::json!(["shopkit/pricing.py"])
    );
    assert_eq!(first["repo"]["path"], "shopkit");
    assert_eq!(first["repo"]["commit"], BULK_FIX_PARENT);
    let repro = tasks
        .iter()
        .find(|t| t["skill"] == "reproduce" && t["meta"]["instance_id"] == "shopkit__shopkit-3")
        .unwrap();
    assert!(repro["reference"]["test_patch"]
        .as_str()
        .unwrap()
        .contains("overdraft.rs"));
    // A file that is not instances: reported, nothing written.
    let bad = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bad.path(), "{\"instance_id\": 1}\n").unwrap();
    let o = support::run(&["tasks", "import-swebench", bad.path().to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(":1: not a SWE-bench instance"),
        "{}",
        stderr(&o)
    );
}
