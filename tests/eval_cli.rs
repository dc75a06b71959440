//! `basis eval` end to end. With recorded answers, a right and a wrong answer
//! for each skill go through the skills' own parsers and verifiers (the sandbox
//! runs the tests) and get exactly 1 and 0, and partly right answers the
//! graded reward's partial credit beside a binary 0; SWE-bench tasks are
//! scored against their reference; a task whose repository is missing is
//! reported and skipped. With the real default model, the bundled task file is
//! evaluated.

mod support;

use std::path::Path;

use basis_skills::diff::{patch_of, FileChange};
use serde_json::{json, Value};
use support::{stderr, stdout};

const HEAD: &str = "31d6db33010c00a61972609c3006be7b5dd4c171";

fn task(id: &str, skill: &str, input: Value, reference: Value, patch: Option<String>) -> Value {
    json!({
        "schema": "basis.task/1", "id": id, "skill": skill,
        "repo": {"path": "shopkit", "commit": HEAD, "patch": patch},
        "input": input, "reference": reference, "meta": {"source": "hand"}
    })
}

fn patch(path: &str, old: &str, new: &str) -> String {
    patch_of(
        &[FileChange {
            path: path.into(),
            old: old.into(),
            new: new.into(),
        }],
        3,
    )
}

fn line_of(text: &str, needle: &str) -> usize {
    text[..text.find(needle).unwrap()].matches('\n').count() + 1
}

fn write_lines(path: &Path, lines: &[Value]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(path, text).unwrap();
}

/// Runs `basis eval` and returns the report.
fn eval(dir: &Path, tasks: &Path, extra: &[&str]) -> Value {
    let out_dir = dir.join("report");
    let mut args = vec![
        "eval",
        "--tasks",
        tasks.to_str().unwrap(),
        "--repo-root",
        dir.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--model",
        support::default_model().to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = support::run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("| **mean** |"), "{}", stdout(&o));
    // Progress on a pipe: plain lines, the first at the start.
    assert!(stderr(&o).contains("eval: 0/"), "{}", stderr(&o));
    assert!(out_dir.join("report.md").is_file());
    serde_json::from_str(&std::fs::read_to_string(out_dir.join("report.json")).unwrap()).unwrap()
}

/// Task `id`'s samples' `field` (`reward`, `graded`).
fn scores(report: &Value, id: &str, field: &str) -> Vec<f64> {
    let t = report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("no result for {id}: skipped {}", report["skipped"]));
    t["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s[field].as_f64().unwrap())
        .collect()
}

fn rewards(report: &Value, id: &str) -> Vec<f64> {
    scores(report, id, "reward")
}

/// A task of each skill on shopkit's pricing module, and the edit task's
/// function fixed and broken.
struct PricingTasks {
    tasks: Vec<Value>,
    fixed_fn: String,
    broken_fn: String,
}

/// The tasks of [`PricingTasks`] on the shopkit repository at `repo`:
/// localize bulk_price's module; edit bulk_price, its threshold broken; test
/// apply_discount against two mutants (adding the discount, not clamping it);
/// reproduce a discount that adds; review bulk_price's threshold moved (YES).
fn pricing_tasks(repo: &Path) -> PricingTasks {
    let pricing = std::fs::read_to_string(repo.join("shopkit/pricing.py")).unwrap();

    // edit: the bulk threshold broken again; fix the function.
    let broken = pricing.replace("quantity >= BULK_QUANTITY", "quantity > BULK_QUANTITY");
    let start = line_of(&broken, "def bulk_price");
    let end = line_of(&broken, "    return round(total, 2)");
    let fixed_fn: String = pricing
        .lines()
        .skip(start - 1)
        .take(end - start + 1)
        .map(|l| format!("{l}\n"))
        .collect();
    let broken_fn: String = broken
        .lines()
        .skip(start - 1)
        .take(end - start + 1)
        .map(|l| format!("{l}\n"))
        .collect();
    // testgen and reproduce: a discount that adds instead of subtracting.
    let adds = pricing.replace("(100 - percent)", "(100 + percent)");
    let unclamped = pricing.replace(
        "percent = min(max(percent, 0), 100)",
        "percent = max(percent, 0)",
    );
    let tests = [
        task(
            "loc",
            "localize",
            json!({"issue": "bulk_price in the pricing module charges the full price for ten items in the cart"}),
            json!({"files": ["shopkit/pricing.py"]}),
            None,
        ),
        task(
            "edit",
            "edit",
            json!({"instruction": "give the bulk discount from BULK_QUANTITY items on", "file": "shopkit/pricing.py", "start_line": start, "end_line": end}),
            json!({"replacement": fixed_fn, "test_command": "python3 -m unittest discover -v -s ."}),
            Some(patch("shopkit/pricing.py", &pricing, &broken)),
        ),
        task(
            "testgen",
            "testgen",
            json!({"file": "shopkit/pricing.py", "symbol": "apply_discount"}),
            json!({"mutants": [patch("shopkit/pricing.py", &pricing, &adds), patch("shopkit/pricing.py", &pricing, &unclamped)]}),
            None,
        ),
        task(
            "repro",
            "reproduce",
            json!({"issue": "apply_discount raises the price instead of lowering it: a 10% discount on 50.0 gives 55.0"}),
            json!({"fix": patch("shopkit/pricing.py", &adds, &pricing)}),
            Some(patch("shopkit/pricing.py", &pricing, &adds)),
        ),
        task(
            "rev",
            "review",
            json!({"issue": "Give the bulk discount from eleven items on", "patch": patch("shopkit/pricing.py", &pricing, &broken)}),
            json!({"verdict": "YES"}),
            None,
        ),
    ];
    PricingTasks {
        tasks: tests.to_vec(),
        fixed_fn,
        broken_fn,
    }
}

/// Writes `answers` (task id, completion) as `--answers` reads them.
fn write_answers(path: &Path, answers: &[(&str, String)]) {
    write_lines(
        path,
        &answers
            .iter()
            .map(|(id, c)| json!({"id": id, "completion": c}))
            .collect::<Vec<_>>(),
    );
}

#[test]
fn recorded_right_and_wrong_answers_score_one_and_zero_for_every_skill() {
    let dir = tempfile::tempdir().unwrap();
    let repo = support::shopkit(dir.path(), "shopkit");
    let PricingTasks {
        tasks: tests,
        fixed_fn,
        broken_fn,
    } = pricing_tasks(&repo);
    let tasks = dir.path().join("tasks.jsonl");
    write_lines(&tasks, &tests);
    let strong = "import unittest\nfrom shopkit.pricing import apply_discount\n\n\nclass T(unittest.TestCase):\n    def test_discounts(self):\n        self.assertEqual(apply_discount(50.0, 10), 45.0)\n        self.assertEqual(apply_discount(20.0, 120), 0.0)\n```";
    let weak = "import unittest\nfrom shopkit.pricing import apply_discount\n\n\nclass T(unittest.TestCase):\n    def test_no_discount(self):\n        self.assertEqual(apply_discount(20.0, 0), 20.0)\n```";
    let shows = "import unittest\nfrom shopkit.pricing import apply_discount\n\n\nclass T(unittest.TestCase):\n    def test_ten_percent(self):\n        self.assertEqual(apply_discount(50.0, 10), 45.0)\n```";
    let answers = [
        ("loc", "shopkit/pricing.py\n".to_string()),
        ("loc", "shopkit/cart.py\n".to_string()),
        ("edit", format!("{fixed_fn}```")),
        ("edit", format!("{broken_fn}```")),
        ("testgen", strong.to_string()),
        ("testgen", weak.to_string()),
        ("repro", shows.to_string()),
        ("repro", weak.to_string()),
        ("rev", " YES\nshopkit/pricing.py:23: fine".to_string()),
        ("rev", " NO".to_string()),
    ];
    let answers_file = dir.path().join("answers.jsonl");
    write_answers(&answers_file, &answers);
    let report = eval(
        dir.path(),
        &tasks,
        &["--answers", answers_file.to_str().unwrap()],
    );
    assert_eq!(report["skipped"], json!([]), "{}", report["skipped"]);
    // Two recorded answers a task: K is 2, whatever --samples says.
    assert_eq!(report["samples"], 2);
    for id in ["loc", "edit", "testgen", "repro", "rev"] {
        assert_eq!(
            rewards(&report, id),
            vec![1.0, 0.0],
            "{id}: {}",
            serde_json::to_string_pretty(&report["tasks"]).unwrap()
        );
    }
    for skill in ["localize", "edit", "testgen", "reproduce", "review"] {
        let s = &report["per_skill"][skill];
        assert_eq!(
            (s["avg_at_k"].as_f64(), s["pass_at_k"].as_f64()),
            (Some(0.5), Some(1.0)),
            "{skill}: {s}"
        );
        // One task a skill: every resample of the tasks is that task.
        assert_eq!(s["ci95"], json!([0.5, 0.5]), "{skill}: {s}");
    }
    assert_eq!(report["mean"], 0.5);
    assert_eq!(report["mean_ci95"], json!([0.5, 0.5]));
    // Graded, the right answers earn 1 too and the wrong ones nothing: the
    // edit that keeps the broken threshold passes 13 of shopkit's 14 tests,
    // as the starting code did, and the grade counts only what it fixed.
    for id in ["loc", "edit", "testgen", "repro", "rev"] {
        assert_eq!(scores(&report, id, "graded"), vec![1.0, 0.0], "{id}");
    }
    // No comparison asked for, none written.
    assert!(report.get("comparison").is_none());
    // Review's one task is a YES: one sample said YES, one NO; with no NO task
    // there is no balanced accuracy, and the report says why.
    assert_eq!(
        report["per_skill"]["review"]["verdicts"],
        json!({"on_yes": {"yes": 1, "no": 1, "neither": 0}, "on_no": {"yes": 0, "no": 0, "neither": 0}, "balanced_accuracy": null, "balanced_accuracy_ci95": null})
    );
    // What was scored is written back in the same format, in the same order.
    let written = std::fs::read_to_string(dir.path().join("report/answers.jsonl")).unwrap();
    let written: Vec<Value> = written
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let given: Vec<Value> = answers
        .iter()
        .map(|(id, c)| json!({"id": id, "completion": c}))
        .collect();
    assert_eq!(written, given);
    let md = std::fs::read_to_string(dir.path().join("report/report.md")).unwrap();
    assert!(
        md.contains("on tasks whose answer is YES the samples said YES 1, NO 1, neither 0")
            && md.contains("no task's answer is NO")
            && md.contains("With one right verdict only"),
        "{md}"
    );
}

#[test]
fn recorded_baseline_answers_are_scored_and_paired_without_sampling() {
    // An arm of an experiment against the base model's earlier answers: the
    // base is scored from its answers.jsonl, not sampled again.
    let dir = tempfile::tempdir().unwrap();
    let repo = support::shopkit(dir.path(), "shopkit");
    let tasks = dir.path().join("tasks.jsonl");
    write_lines(&tasks, &pricing_tasks(&repo).tasks);
    let after = dir.path().join("after.jsonl");
    write_answers(
        &after,
        &[
            ("loc", "shopkit/pricing.py\n".to_string()),
            ("loc", "shopkit/pricing.py\n".to_string()),
            ("rev", " YES".to_string()),
            ("rev", " NO".to_string()),
        ],
    );
    let before = dir.path().join("before.jsonl");
    write_answers(
        &before,
        &[
            ("loc", "shopkit/cart.py\n".to_string()),
            ("loc", "shopkit/pricing.py\nshopkit/cart.py\n".to_string()),
            ("rev", " NO".to_string()),
            ("rev", " NO".to_string()),
        ],
    );
    // A baseline file that is not there is refused before anything runs.
    let missing = dir.path().join("no-such-answers.jsonl");
    let o = support::run(&[
        "eval",
        "--tasks",
        tasks.to_str().unwrap(),
        "--repo-root",
        dir.path().to_str().unwrap(),
        "--out",
        dir.path().join("refused").to_str().unwrap(),
        "--answers",
        after.to_str().unwrap(),
        "--baseline-answers",
        missing.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no-such-answers.jsonl"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.path().join("refused").exists());
    let report = eval(
        dir.path(),
        &tasks,
        &[
            "--skills",
            "localize,review",
            "--answers",
            after.to_str().unwrap(),
            "--baseline-answers",
            before.to_str().unwrap(),
        ],
    );
    let c = &report["comparison"];
    // Localize: 1 against 0 (neither of the baseline's sets is exact); graded
    // 1 against (0 + 2/3) / 2.
    assert_eq!(c["per_skill"]["localize"]["before"], 0.0, "{c}");
    assert_eq!(c["per_skill"]["localize"]["after"], 1.0, "{c}");
    let g = c["graded_per_skill"]["localize"]["difference"]
        .as_f64()
        .unwrap();
    assert!((g - (1.0 - 1.0 / 3.0)).abs() < 1e-9, "{c}");
    // Review (a YES task): one right verdict in two against none.
    assert_eq!(c["per_skill"]["review"]["difference"], 0.5, "{c}");
    assert_eq!(c["mean"]["difference"], 0.75, "{c}");
    // What the publish gate would decide: review by balanced accuracy is not
    // defined on one YES task, so by its mean; the mean's interval (one task a
    // skill) is the point +0.75, above 0.
    let gate: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("report/gate.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(gate["passed"], true, "{gate}");
    // The baseline's scores are written beside the report.
    let base: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("report/compare.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(base["samples"], 2);
    let md = std::fs::read_to_string(dir.path().join("report/report.md")).unwrap();
    assert!(
        md.contains("recorded (before.jsonl)")
            && md.contains("What the publish gate would say")
            && md.contains("It would publish."),
        "{md}"
    );
}

#[test]
fn partly_right_answers_earn_graded_credit_beside_a_binary_zero() {
    let dir = tempfile::tempdir().unwrap();
    let repo = support::shopkit(dir.path(), "shopkit");
    let PricingTasks {
        tasks: tests,
        broken_fn,
        ..
    } = pricing_tasks(&repo);
    let tasks = dir.path().join("tasks.jsonl");
    write_lines(&tasks, &tests);
    let test = |assertion: &str| {
        format!("import unittest\nfrom shopkit.pricing import apply_discount\n\n\nclass T(unittest.TestCase):\n    def test_it(self):\n        self.assertEqual({assertion})\n```")
    };
    let answers = [
        // The reference file and one more: F1 2 × (1/2) × 1 / (3/2) = 2/3.
        ("loc", "shopkit/pricing.py\nshopkit/cart.py\n".to_string()),
        // The broken threshold kept: 13 of the 14 tests pass, as they did
        // before the answer; nothing fixed, nothing earned.
        ("edit", format!("{broken_fn}```")),
        // Passes, and catches the added discount but not the unclamped one.
        ("testgen", test("apply_discount(50.0, 10), 45.0")),
        // Fails before the fix (55.0 != 44.0) and after it (45.0 != 44.0),
        // differently: half.
        ("repro", test("apply_discount(50.0, 10), 44.0")),
        ("rev", " YES".to_string()),
    ];
    let answers_file = dir.path().join("answers.jsonl");
    write_answers(&answers_file, &answers);
    let report = eval(
        dir.path(),
        &tasks,
        &["--answers", answers_file.to_str().unwrap()],
    );
    assert_eq!(report["skipped"], json!([]), "{}", report["skipped"]);
    let expected = [
        ("localize", 0.0, 2.0 / 3.0),
        ("edit", 0.0, 0.0),
        ("testgen", 0.0, 0.5),
        ("reproduce", 0.0, 0.5),
        ("review", 1.0, 1.0),
    ];
    let md = std::fs::read_to_string(dir.path().join("report/report.md")).unwrap();
    for (skill, binary, graded) in expected {
        let s = &report["per_skill"][skill];
        assert_eq!(s["avg_at_k"].as_f64(), Some(binary), "{skill}: {s}");
        let g = s["graded"].as_f64().unwrap();
        assert!((g - graded).abs() < 1e-9, "{skill}: {s}");
        // One task a skill: no spread.
        let ci: Vec<f64> = serde_json::from_value(s["graded_ci95"].clone()).unwrap();
        assert!(ci.iter().all(|x| (x - graded).abs() < 1e-9), "{skill}: {s}");
        // report.md's table: Avg@1 and its interval, then graded and its.
        let row = format!(
            "| {skill} | 1 | {binary:.3} | [{binary:.3}, {binary:.3}] | {graded:.3} | [{graded:.3}, {graded:.3}] |"
        );
        assert!(md.contains(&row), "{row}\n{md}");
    }
    // The mean over the skills: (2/3 + 0 + 1/2 + 1/2 + 1) / 5 graded, 1/5 binary.
    let mean = (2.0 / 3.0 + 0.0 + 0.5 + 0.5 + 1.0) / 5.0;
    assert!((report["graded_mean"].as_f64().unwrap() - mean).abs() < 1e-9);
    assert_eq!(report["mean"], 0.2);
    assert!(
        md.contains(&format!(
            "| **mean** | | **0.200** | [0.200, 0.200] | **{mean:.3}** |"
        )),
        "{md}"
    );
    assert!(
        md.contains("| skill | tasks | Avg@1 | 95% interval | graded | 95% interval | Pass@1 |")
    );
}

/// A reproduction made of the lines a SWE-bench `test_patch` adds: a Rust
/// test file as it is; Python test methods inside a test case of their own,
/// with the import they need.
fn reference_reproduction(test_patch: &str) -> String {
    let added: String = test_patch
        .lines()
        .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
        .map(|l| format!("{}\n", &l[1..]))
        .collect();
    if test_patch.contains(".rs") {
        return format!("{added}```");
    }
    let import = if test_patch.contains("test_pricing") {
        "from shopkit.pricing import bulk_price"
    } else {
        "from shopkit.cart import Cart"
    };
    format!("import unittest\n{import}\n\n\nclass T(unittest.TestCase):\n{added}```")
}

#[test]
fn swebench_tasks_are_scored_against_their_reference_and_a_missing_repository_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    support::shopkit(dir.path(), "shopkit");
    let o = support::run(&[
        "tasks",
        "import-swebench",
        support::fixture("swebench/instances.jsonl")
            .to_str()
            .unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut tasks: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut answers = Vec::new();
    for t in &tasks {
        let id = t["id"].as_str().unwrap();
        let completion = match t["skill"].as_str().unwrap() {
            "localize" => t["reference"]["files"][0].as_str().unwrap().to_string(),
            "review" => format!(" {}", t["reference"]["verdict"].as_str().unwrap()),
            _ => reference_reproduction(t["reference"]["test_patch"].as_str().unwrap()),
        };
        answers.push(json!({"id": id, "completion": completion}));
    }
    // A task whose repository is not there.
    let mut missing = tasks[0].clone();
    missing["id"] = json!("lost");
    missing["repo"]["path"] = json!("no-such-repo");
    tasks.push(missing);
    let file = dir.path().join("swe.jsonl");
    write_lines(&file, &tasks);
    let answers_file = dir.path().join("answers.jsonl");
    write_lines(&answers_file, &answers);
    let report = eval(
        dir.path(),
        &file,
        &["--answers", answers_file.to_str().unwrap()],
    );
    let skipped = report["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert_eq!(skipped[0]["id"], "lost");
    assert!(
        skipped[0]["reason"]
            .as_str()
            .unwrap()
            .contains("does not exist"),
        "{skipped:?}"
    );
    for skill in ["localize", "review"] {
        assert_eq!(
            report["per_skill"][skill]["avg_at_k"], 1.0,
            "{skill}: {}",
            report["per_skill"][skill]
        );
    }
    // The gold patches are YES, the corrupted ones NO, and every answer was right.
    let verdicts = &report["per_skill"]["review"]["verdicts"];
    assert_eq!(verdicts["balanced_accuracy"], 1.0, "{verdicts}");
    assert!(verdicts["on_no"]["no"].as_u64().unwrap() > 0, "{verdicts}");
    // The reference reproductions of the Python instances fail before their fix
    // and pass after it.
    for t in report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["skill"] == "reproduce")
    {
        let r = t["samples"][0]["reward"].as_f64().unwrap();
        assert_eq!(r, 1.0, "{t}");
    }
}

#[test]
fn the_default_model_is_evaluated_on_the_bundled_tasks() {
    let dir = tempfile::tempdir().unwrap();
    // The bundled task file names its repository `repo`, beside it.
    support::shopkit(dir.path(), "repo");
    let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/shopkit/tasks.jsonl");
    let report = eval(
        dir.path(),
        &bundled,
        &["--limit", "1", "--split", "heldout"],
    );
    assert_eq!(report["skipped"], json!([]), "{}", report["skipped"]);
    for skill in ["localize", "edit", "testgen", "reproduce", "review"] {
        let s = &report["per_skill"][skill];
        assert_eq!(s["tasks"], 1, "{skill}: {s}");
        let avg = s["avg_at_k"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&avg), "{skill}: {s}");
        assert!(
            s["mean_tokens"].as_f64().unwrap() > 0.0,
            "{skill}: the model wrote nothing"
        );
    }
    let loc = &report["per_skill"]["localize"]["rankings"];
    assert!(loc["retrieval_exact_at_ref"].is_number(), "{loc}");
    // The model's ranking minus retrieval's, on the one task.
    let d = &report["per_skill"]["localize"]["model_minus_retrieval"];
    let expected = loc["model_exact_at_ref"].as_f64().unwrap()
        - loc["retrieval_exact_at_ref"].as_f64().unwrap();
    assert_eq!(
        (d["tasks"].as_u64(), d["difference"].as_f64()),
        (Some(1), Some(expected)),
        "{d}"
    );
}

#[test]
fn a_task_file_with_nothing_to_evaluate_says_what_it_looked_for() {
    let dir = tempfile::tempdir().unwrap();
    let tasks = dir.path().join("tasks.jsonl");
    std::fs::write(&tasks, "{\"not a task\n").unwrap();
    let out = support::run(&[
        "eval",
        "--tasks",
        tasks.to_str().unwrap(),
        "--skills",
        "edit,review",
        "--split",
        "heldout",
    ]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("tasks.jsonl:1: not JSON"), "{err}");
    assert!(
        err.contains("(skills edit, review; split heldout)"),
        "{err}"
    );
}
