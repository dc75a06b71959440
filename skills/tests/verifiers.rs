//! The verifiers of edit, testgen and reproduce on known good and known bad
//! answers, run for real in the sandbox on the fixture repositories.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use basis_code::Language;
use basis_skills::sandbox::Sandbox;
use basis_skills::{edit, reproduce, testgen};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

fn read(repo: &Path, rel: &str) -> String {
    std::fs::read_to_string(repo.join(rel)).unwrap()
}

fn sandbox() -> Sandbox {
    Sandbox::detect()
}

#[test]
fn an_edit_scores_by_the_tasks_tests() {
    let repo = fixture("py_shop");
    let text = read(&repo, "shop/pricing.py");
    let sel = "    if quantity > BULK_QUANTITY:\n";
    let start = text.find(sel).unwrap();
    let input = edit::Input {
        path: "shop/pricing.py".into(),
        text: text.clone(),
        start_byte: start,
        end_byte: start + sel.len(),
        instruction: "give the discount from BULK_QUANTITY items on".into(),
        related: Vec::new(),
    };
    // The task's tests: ten items get the bulk price, and four more cases.
    let test = "import unittest\nfrom shop.pricing import bulk_price\n\n\nclass T(unittest.TestCase):\n    def test_ten(self):\n        self.assertEqual(bulk_price(2.0, 10), 18.0)\n\n    def test_eleven(self):\n        self.assertEqual(bulk_price(2.0, 11), 19.8)\n\n    def test_twelve(self):\n        self.assertEqual(bulk_price(2.0, 12), 21.6)\n\n    def test_five(self):\n        self.assertEqual(bulk_price(2.0, 5), 10.0)\n\n    def test_one(self):\n        self.assertEqual(bulk_price(2.0, 1), 2.0)\n";
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo, dir.path());
    std::fs::write(dir.path().join("tests/test_task.py"), test).unwrap();
    let reference = edit::Reference {
        tests: Some(basis_skills::runner::Tests::Target(
            "tests/test_task.py".into(),
        )),
        code: None,
    };
    let sb = sandbox();
    // The starting code fails only the ten-item case.
    let tests = reference.tests.as_ref().unwrap();
    let start = edit::start_counts(&sb, dir.path(), &HashMap::new(), &input, tests);
    assert_eq!(
        start,
        Some(basis_skills::runner::TestCounts {
            passed: 4,
            failed: 1
        })
    );
    let good = edit::verify(
        &sb,
        dir.path(),
        &HashMap::new(),
        &input,
        Some("    if quantity >= BULK_QUANTITY:\n"),
        &reference,
        start,
    )
    .unwrap();
    assert_eq!(
        (good.reward, good.graded),
        (1.0, 1.0),
        "{:?}",
        good.report.map(|r| r.outcome.stderr)
    );
    let bad = edit::verify(
        &sb,
        dir.path(),
        &HashMap::new(),
        &input,
        Some("    if quantity > BULK_QUANTITY + 1:\n"),
        &reference,
        None,
    )
    .unwrap();
    // From twelve items on only: ten and eleven fail, 3 of the 5 tests pass;
    // measured from the start (4 of 5), it fixed nothing and broke one: 0.
    assert_eq!(
        (bad.reward, bad.graded),
        (0.0, 0.6),
        "{:?}",
        bad.report.as_ref().map(|r| &r.outcome.stderr)
    );
    let report = bad.report.unwrap();
    assert_eq!(edit::tests_grade(&report, start), 0.0);
    // The user's tree is untouched: the edit only ever existed in the sandbox copy.
    assert_eq!(read(dir.path(), "shop/pricing.py"), text);
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() == "target" || entry.file_name() == "__pycache__" {
                continue;
            }
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn py_testgen(tests: &str) -> testgen::Score {
    let repo = fixture("py_shop");
    let input = testgen::Input {
        path: "shop/pricing.py".into(),
        text: read(&repo, "shop/pricing.py"),
        symbol: "clamp_quantity".into(),
        related: Vec::new(),
    };
    let f = testgen::find_function(Language::Python, &input.text, &input.symbol).unwrap();
    let answer = format!("```python\n{tests}```");
    let code = testgen::parse(&answer, Language::Python, &input, &f).unwrap();
    let placement = testgen::place(Language::Python, &input, &code, None);
    assert_eq!(placement.path, "tests/test_shop_pricing.py");
    let mutants = testgen::mutants_of(&input, &f, 16);
    testgen::verify(
        &sandbox(),
        &repo,
        &HashMap::new(),
        &input,
        &placement,
        &mutants,
    )
    .unwrap()
}

#[test]
fn strong_python_tests_kill_every_mutant() {
    let strong = "class T(unittest.TestCase):\n    def test_bounds(self):\n        self.assertEqual(clamp_quantity(5, 1, 9), 5)\n        self.assertEqual(clamp_quantity(0, 1, 9), 1)\n        self.assertEqual(clamp_quantity(1, 1, 9), 1)\n        self.assertEqual(clamp_quantity(9, 1, 9), 9)\n        self.assertEqual(clamp_quantity(10, 1, 9), 9)\n";
    let s = py_testgen(strong);
    assert!(s.passed_original, "{}", s.report.outcome.stderr);
    assert!(s.mutants >= 4, "{} mutants", s.mutants);
    assert_eq!(s.killed, s.mutants, "survivors: {:?}", s.survivors);
    assert_eq!((s.reward, s.graded), (1.0, 1.0));
}

#[test]
fn weak_or_wrong_python_tests_score_zero() {
    // Only the middle case: flipped comparisons and removed returns survive.
    let weak = "def test_middle():\n    assert clamp_quantity(5, 1, 9) == 5\n";
    let s = py_testgen(weak);
    assert!(s.passed_original, "{}", s.report.outcome.stderr);
    assert!(!s.survivors.is_empty());
    assert!(s.killed < s.mutants);
    assert_eq!(s.reward, 0.0);
    // Graded, the share of mutants it killed.
    assert_eq!(s.graded, s.killed as f64 / s.mutants as f64);
    // A test that fails on the original code scores nothing, graded too.
    let wrong = "def test_wrong():\n    assert clamp_quantity(5, 1, 9) == 6\n";
    let s = py_testgen(wrong);
    assert!(!s.passed_original);
    assert_eq!((s.reward, s.graded), (0.0, 0.0));
}

#[test]
fn rust_tests_are_judged_in_the_files_tests_module() {
    let repo = fixture("rust_ledger");
    let input = testgen::Input {
        path: "src/lib.rs".into(),
        text: read(&repo, "src/lib.rs"),
        symbol: "clamp_percent".into(),
        related: Vec::new(),
    };
    let f = testgen::find_function(Language::Rust, &input.text, &input.symbol).unwrap();
    let answer = "```rust\n#[test]\nfn clamps() {\n    assert_eq!(clamp_percent(-1), 0);\n    assert_eq!(clamp_percent(0), 0);\n    assert_eq!(clamp_percent(1), 1);\n    assert_eq!(clamp_percent(50), 50);\n    assert_eq!(clamp_percent(100), 100);\n    assert_eq!(clamp_percent(101), 100);\n}\n```";
    let code = testgen::parse(answer, Language::Rust, &input, &f).unwrap();
    let placement = testgen::place(Language::Rust, &input, &code, None);
    assert_eq!(placement.path, "src/lib.rs");
    let mutants = testgen::mutants_of(&input, &f, 6);
    let s = testgen::verify(
        &sandbox(),
        &repo,
        &HashMap::new(),
        &input,
        &placement,
        &mutants,
    )
    .unwrap();
    assert!(s.passed_original, "{}", s.report.outcome.stderr);
    assert!(s.mutants >= 3);
    assert_eq!(s.killed, s.mutants, "survivors: {:?}", s.survivors);
    assert_eq!(s.reward, 1.0);
}

const PY_FIX: &str = "    if quantity >= BULK_QUANTITY:";

fn py_fix() -> reproduce::Reference {
    let repo = fixture("py_shop");
    let fixed = read(&repo, "shop/pricing.py").replace("    if quantity > BULK_QUANTITY:", PY_FIX);
    reproduce::Reference {
        fix: HashMap::from([("shop/pricing.py".to_string(), fixed)]),
    }
}

/// Scores a Python reproduction whose test asserts `assertion` against the fix.
fn py_reproduction(import: &str, assertion: &str) -> reproduce::Score {
    let answer = format!(
        "```python\nfrom {import} import bulk_price\n\nclass T(unittest.TestCase):\n    def test_it(self):\n        {assertion}\n```"
    );
    py_score(&answer, &py_fix())
}

/// Scores the reproduction in a model's `answer` against `reference`.
fn py_score(answer: &str, reference: &reproduce::Reference) -> reproduce::Score {
    let test = reproduce::parse(answer, Language::Python);
    let path = reproduce::test_path(Language::Python, "shop/pricing.py", None);
    reproduce::verify(
        &sandbox(),
        &fixture("py_shop"),
        &HashMap::new(),
        Language::Python,
        &path,
        test.as_deref(),
        reference,
    )
    .unwrap()
}

#[test]
fn a_python_reproduction_must_fail_before_the_fix_and_pass_after() {
    let good = py_reproduction(
        "shop.pricing",
        "self.assertEqual(bulk_price(2.0, 10), 18.0)",
    );
    assert_eq!(good.before, reproduce::Verdict::Failed);
    assert_eq!(good.after, Some(reproduce::Verdict::Passed));
    assert_eq!((good.reward, good.graded), (1.0, 1.0));
    // Passes before the fix: it shows nothing.
    let passes = py_reproduction(
        "shop.pricing",
        "self.assertEqual(bulk_price(2.0, 11), 19.8)",
    );
    assert_eq!(passes.before, reproduce::Verdict::Passed);
    assert_eq!((passes.reward, passes.graded), (0.0, 0.0));
    // Broken (imports a module that does not exist): not a reproduction.
    let broken = py_reproduction(
        "shop.nothing",
        "self.assertEqual(bulk_price(2.0, 10), 18.0)",
    );
    assert!(
        matches!(broken.before, reproduce::Verdict::Broken(_)),
        "{:?}",
        broken.before
    );
    assert_eq!((broken.reward, broken.graded), (0.0, 0.0));
    // Fails after the fix too: a wrong expectation.
    let wrong = py_reproduction(
        "shop.pricing",
        "self.assertEqual(bulk_price(2.0, 10), 17.0)",
    );
    assert_eq!(wrong.before, reproduce::Verdict::Failed);
    assert_eq!(wrong.after, Some(reproduce::Verdict::Failed));
    assert_eq!(wrong.reward, 0.0);
    // Graded, it fails before the fix on what the fix changes (20.0, then
    // 18.0, against 17.0): half.
    assert_eq!(wrong.graded, 0.5);
    // A test that fails the same way on both sides shows nothing of the issue.
    let always = py_reproduction("shop.pricing", "self.assertTrue(bulk_price is None)");
    assert_eq!(always.before, reproduce::Verdict::Failed);
    assert_eq!(always.after, Some(reproduce::Verdict::Failed));
    assert_eq!((always.reward, always.graded), (0.0, 0.0));
}

#[test]
fn a_python_reproduction_that_errors_in_its_own_code_is_broken_and_earns_nothing() {
    // The editor scenario's answer: it calls bulk_price but never imports it.
    let unimported = py_score(
        "```python\nclass T(unittest.TestCase):\n    def test_it(self):\n        self.assertEqual(bulk_price(2.0, 10), 18.0)\n```",
        &py_fix(),
    );
    assert_eq!(
        unimported.before,
        reproduce::Verdict::Broken(
            "the test is broken: NameError: name 'bulk_price' is not defined".into()
        )
    );
    assert_eq!(
        unimported.before.describe(),
        "does not reproduce: the test is broken: NameError: name 'bulk_price' is not defined"
    );
    assert_eq!((unimported.after, unimported.reward), (None, 0.0));
    assert_eq!(unimported.graded, 0.0);
    // It imports what only the fix adds: it passes after the fix, but what makes
    // it fail before is its own import, not the issue.
    let mut adds = py_fix();
    adds.fix.get_mut("shop/pricing.py").unwrap().push_str(
        "\n\ndef bulk_total(unit_price, quantity):\n    return bulk_price(unit_price, quantity)\n",
    );
    let new_name = py_score(
        "```python\nfrom shop.pricing import bulk_total\n\nclass T(unittest.TestCase):\n    def test_it(self):\n        self.assertEqual(bulk_total(2.0, 10), 18.0)\n```",
        &adds,
    );
    assert!(
        matches!(&new_name.before, reproduce::Verdict::Broken(why)
            if why.starts_with("the test is broken: ImportError: cannot import name 'bulk_total'")),
        "{:?}",
        new_name.before
    );
    assert_eq!(new_name.reward, 0.0);
}

#[test]
fn a_rust_reproduction_runs_as_an_integration_test() {
    let repo = fixture("rust_ledger");
    let path = reproduce::test_path(Language::Rust, "src/lib.rs", None);
    let test = reproduce::parse(
        "```rust\nuse ledger::*;\n\n#[test]\nfn minus_one_is_overdrawn() {\n    let mut l = Ledger::new();\n    l.record(-1);\n    assert!(l.is_overdrawn());\n}\n```",
        Language::Rust,
    );
    let fixed = read(&repo, "src/lib.rs").replace("self.balance() < -1", "self.balance() < 0");
    let reference = reproduce::Reference {
        fix: HashMap::from([("src/lib.rs".to_string(), fixed)]),
    };
    let s = reproduce::verify(
        &sandbox(),
        &repo,
        &HashMap::new(),
        Language::Rust,
        &path,
        test.as_deref(),
        &reference,
    )
    .unwrap();
    assert_eq!(s.before, reproduce::Verdict::Failed);
    assert_eq!(s.after, Some(reproduce::Verdict::Passed));
    assert_eq!((s.reward, s.graded), (1.0, 1.0));
    let broken = reproduce::parse(
        "```rust\n#[test]\nfn x() { assert!(nope()); }\n```",
        Language::Rust,
    );
    let s = reproduce::verify(
        &sandbox(),
        &repo,
        &HashMap::new(),
        Language::Rust,
        &path,
        broken.as_deref(),
        &reference,
    )
    .unwrap();
    assert!(
        matches!(s.before, reproduce::Verdict::Broken(_)),
        "{:?}",
        s.before
    );
    assert_eq!(s.graded, 0.0);
}
