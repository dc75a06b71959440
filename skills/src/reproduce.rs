//! Issue reproduction: an issue text → one test that shows the failure.
//!
//! The model sees the issue and the code retrieval finds for it, and writes a
//! complete test file, placed where the language keeps tests
//! (`tests/test_basis_reproduction.py`, `tests/basis_reproduction.rs`, ...). A run
//! in the sandbox tells whether it reproduces: the test must *fail* as a test
//! (an assertion, a panic, the exception the issue describes, an error raised in
//! the code under test), not break (a compile error, no test found, a timeout, or
//! an error in the test's own code before it reaches the code under test: a name
//! it never imported, an import of what does not exist, a syntax error, a missing
//! fixture). The reward: it fails on the code before the fix and passes after it;
//! a broken test earns nothing. The graded reward ([`grade`]) gives half for
//! each: failing before the fix in a way the fix changes, and passing after it.

use std::collections::HashMap;
use std::path::Path;

use basis_code::Language;
use basis_model::{LanguageModel, Message};
use serde::{Deserialize, Serialize};

use crate::generate::{code_prompt, Generated, Options, Prompt};
use crate::parse::{extract_code, fence_name, fence_names};
use crate::runner::{raised_errors, run_tests, RaisedError, RunnerError, TestReport};
use crate::sandbox::{Outcome as RunOutcome, Sandbox};
use crate::testgen::python_tests;
use crate::SkillError;

/// A file the model sees as context.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContextFile {
    pub path: String,
    pub text: String,
}

/// The task input.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Input {
    pub issue: String,
    /// The code retrieval found for the issue, most relevant first.
    pub context: Vec<ContextFile>,
    /// For Rust: the library crate's name, which an integration test imports.
    pub crate_name: Option<String>,
    /// For Rust: the crate's folder (relative; empty for the root), where the
    /// integration test goes.
    #[serde(default)]
    pub crate_dir: Option<String>,
}

impl Input {
    /// The language of the reproduction: that of the first context file in a
    /// language we can run tests for.
    pub fn language(&self) -> Option<Language> {
        self.context
            .iter()
            .find_map(|c| Language::from_path(Path::new(&c.path)))
    }
}

/// The reproduction input for an issue: up to `files` of the files retrieval
/// finds for it (their text from `read`, which sees unsaved buffers), and for
/// Rust the crate's name.
pub fn input_for(
    index: &basis_code::WorkspaceIndex,
    root: &Path,
    issue: &str,
    files: usize,
    read: &dyn Fn(&str) -> Option<String>,
) -> Input {
    let hits = crate::localize::candidates(index, issue, crate::localize::CANDIDATES);
    let context: Vec<ContextFile> = hits
        .iter()
        .filter(|h| Language::from_path(Path::new(&h.path)).is_some())
        .filter(|h| !h.path.contains("basis_reproduction"))
        .take(files.max(1))
        .filter_map(|h| {
            Some(ContextFile {
                path: h.path.clone(),
                text: read(&h.path)?,
            })
        })
        .collect();
    let crate_dir = context
        .iter()
        .find(|c| c.path.ends_with(".rs"))
        .and_then(|c| crate::runner::rust_crate_of(root, &HashMap::new(), &c.path));
    Input {
        issue: issue.to_string(),
        context,
        crate_name: crate_name(&root.join(crate_dir.as_deref().unwrap_or(""))),
        crate_dir,
    }
}

/// The library crate's name of a Cargo package at `root` (as code imports it).
pub fn crate_name(root: &Path) -> Option<String> {
    let toml = basis_code::Workspace::new(root).read(Path::new("Cargo.toml"))?;
    let line = toml
        .lines()
        .skip_while(|l| l.trim() != "[package]")
        .find(|l| l.trim_start().starts_with("name") && l.contains('='))?;
    Some(
        line.split_once('=')?
            .1
            .trim()
            .trim_matches('"')
            .replace('-', "_"),
    )
}

/// The reference of a reproduction task: the fix, as files laid over the
/// repository (relative path → text).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Reference {
    pub fix: HashMap<String, String>,
}

/// Where the reproduction test goes: near the code retrieval found (for Rust,
/// in the `tests/` folder of the crate at `crate_dir`).
pub fn test_path(language: Language, near: &str, crate_dir: Option<&str>) -> String {
    let dir = Path::new(near)
        .parent()
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_default();
    let join = |name: &str| {
        if dir.is_empty() {
            name.to_string()
        } else {
            format!("{dir}/{name}")
        }
    };
    match language {
        Language::Python => "tests/test_basis_reproduction.py".into(),
        Language::Rust => match crate_dir {
            Some(d) if !d.is_empty() => format!("{d}/tests/basis_reproduction.rs"),
            _ => "tests/basis_reproduction.rs".into(),
        },
        Language::Go => join("basis_reproduction_test.go"),
        Language::JavaScript => join("basis_reproduction.test.js"),
        Language::TypeScript | Language::Tsx => join("basis_reproduction.test.ts"),
    }
}

const SYSTEM: &str = "You write a test that reproduces a reported issue. The test must fail \
on the current code because of the bug the issue describes, and pass once the bug is fixed. \
Write exactly one test, checking the behaviour the issue says is wrong. Answer with only a \
complete test file in one fenced code block.";

fn how_to(language: Language, input: &Input) -> String {
    match language {
        Language::Python => "Use unittest (a class deriving from unittest.TestCase); import \
             the code under test by its module path from the repository root."
            .into(),
        Language::Rust => format!(
            "Write a Rust integration test file (tests/*.rs) with one #[test] function; import \
             the library with `use {}::*;`.",
            input.crate_name.as_deref().unwrap_or("the_crate")
        ),
        Language::Go => {
            "Write a Go test file in the package of the code, with one Test function.".into()
        }
        _ => "Write a test file for node's built-in runner (node:test and node:assert).".into(),
    }
}

/// The chat with the first `k` lines of context (across the files, in order).
pub fn render(input: &Input, language: Language, k: usize) -> Vec<Message> {
    let lang = fence_name(Some(language));
    let mut user = format!("Issue:\n{}\n\n", input.issue.trim());
    let mut left = k;
    for c in &input.context {
        if left == 0 {
            break;
        }
        let lines: Vec<&str> = c.text.lines().take(left).collect();
        left -= lines.len();
        user.push_str(&format!(
            "File {}:\n```{lang}\n{}\n```\n\n",
            c.path,
            lines.join("\n")
        ));
    }
    user.push_str(&how_to(language, input));
    user.push_str("\n\nTest:");
    vec![Message::system(SYSTEM), Message::user(user)]
}

/// The test file of a model's answer (Python gets `import unittest` and its
/// pytest-style functions collected). `None` when the answer holds no code.
pub fn parse(completion: &str, language: Language) -> Option<String> {
    let code = extract_code(completion, fence_names(Some(language)));
    if code.trim().is_empty() {
        return None;
    }
    Some(match language {
        Language::Python => python_tests(&code, None),
        _ => code,
    })
}

crate::skill!(
    ReproduceSkill,
    crate::SkillId::Reproduce,
    "writing a reproduction"
);

/// The default budget and sampling of this skill. The prompt's prefill dominates
/// the time to an answer on a CPU (about 120 prompt tokens/s on 2 cores), so the
/// context is kept to 1024 tokens.
pub fn default_options() -> Options {
    Options::greedy(1024, 384)
}

/// What a reproduction produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub language: Language,
    /// Where the test goes, relative to the repository root.
    pub path: String,
    /// The test file; `None` when the model gave no code.
    pub test: Option<String>,
    pub generated: Generated,
}

/// The language of the reproduction, or why there is none.
fn language_for(input: &Input) -> Result<Language, SkillError> {
    if input.issue.trim().is_empty() {
        return Err(SkillError::Input("the issue text is empty".into()));
    }
    input.language().ok_or_else(|| {
        SkillError::Input("no code in a language Basis can test was found for this issue".into())
    })
}

/// The prompt of a reproduction: the issue and the code retrieval found for it,
/// the answer started as a code fence.
pub fn prompt(lm: &LanguageModel, input: &Input, opts: &Options) -> Result<Prompt, SkillError> {
    let language = language_for(input)?;
    let budget = opts.budget.within_context(lm.model.config().context_length);
    let lines: usize = input
        .context
        .iter()
        .map(|c| c.text.lines().count())
        .sum::<usize>()
        .min(600);
    code_prompt(
        lm,
        lines,
        budget,
        &|k| render(input, language, k),
        fence_name(Some(language)),
        &opts.sampling,
    )
}

/// Reads the test out of a completion, and where it goes.
pub fn finish(input: &Input, _prompt: &Prompt, generated: Generated) -> Outcome {
    let language = input.language().unwrap_or(Language::Python);
    let near = input.context.first().map(|c| c.path.as_str()).unwrap_or("");
    Outcome {
        language,
        path: test_path(language, near, input.crate_dir.as_deref()),
        test: parse(&generated.answer(), language),
        generated,
    }
}

/// What a test run says about a reproduction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", content = "reason", rename_all = "snake_case")]
pub enum Verdict {
    Passed,
    /// Failed as a test: an assertion, a panic, or an error raised in the code
    /// under test.
    Failed,
    /// Did not run as a test (why): it does not load or compile, finds no
    /// test, times out, or errors in the test's own code before it reaches the
    /// code under test (`the test is broken: NameError: …`).
    Broken(String),
}

impl Verdict {
    /// What the verdict means for a reproduction, in a sentence.
    pub fn describe(&self) -> String {
        match self {
            Verdict::Failed => "reproduces: the test fails on the current code".into(),
            Verdict::Passed => "does not reproduce: the test passes on the current code".into(),
            Verdict::Broken(why) => format!("does not reproduce: {why}"),
        }
    }
}

/// Errors that, raised in the test file itself, say the test is wrong rather
/// than the code: a name it never defined or imported, an import of something
/// that does not exist (yet: a name only the fix adds cannot tell the issue
/// apart either), a file that does not parse.
const PYTHON_TEST_ERRORS: &[&str] = &[
    "NameError",
    "UnboundLocalError",
    "ImportError",
    "ModuleNotFoundError",
    "SyntaxError",
    "IndentationError",
    "TabError",
];

/// Why a test run's errors show a broken test, quoting the first such error;
/// `None` when every error is one the code under test may answer for.
fn broken_by_errors(language: Language, test_path: &str, output: &str) -> Option<String> {
    let in_test = |e: &RaisedError| e.raised_in.as_deref() == Some(test_path);
    let broken = |e: &RaisedError| match language {
        Language::Python => {
            let kind = e.kind();
            // A test function that takes arguments: a pytest fixture that does not
            // exist (unittest, running the collected function, misses the argument).
            let missing_fixture = (e.line.starts_with("fixture '")
                && e.line.ends_with("' not found"))
                || (kind == "TypeError" && is_test_missing_arguments(e.message()));
            // `module.name` where the module has no such name: an import by another way.
            let missing_attribute = kind == "AttributeError" && e.message().starts_with("module '");
            missing_fixture
                || (in_test(e) && (PYTHON_TEST_ERRORS.contains(&kind) || missing_attribute))
                // The test file could not load for a reason of its own.
                || (e.loading && (in_test(e) || e.raised_in.is_none()))
        }
        Language::JavaScript | Language::TypeScript | Language::Tsx => {
            e.kind() == "ReferenceError" && in_test(e)
        }
        Language::Rust | Language::Go => false,
    };
    raised_errors(language, output)
        .into_iter()
        .find(broken)
        .map(|e| format!("the test is broken: {}", quoted(&e.line)))
}

/// `test_x() missing 1 required positional argument: 'cart'`: the test function
/// itself wants an argument.
fn is_test_missing_arguments(message: &str) -> bool {
    message
        .split_once("() missing ")
        .is_some_and(|(function, rest)| {
            function
                .rsplit('.')
                .next()
                .unwrap_or("")
                .starts_with("test")
                && rest.contains("required positional argument")
        })
}

/// An error line as the verdict quotes it: one line of bounded length.
fn quoted(line: &str) -> String {
    const MAX: usize = 200;
    let line = line.trim();
    match line.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_string(),
    }
}

/// Reads a run of the reproduction test at `test_path` (relative to the
/// workspace; see the module docs).
pub fn classify(language: Language, test_path: &str, run: &RunOutcome) -> Verdict {
    if run.timed_out {
        return Verdict::Broken("the test ran past the time limit".into());
    }
    if run.cancelled {
        return Verdict::Broken("the run was cancelled".into());
    }
    let out = format!("{}\n{}", run.stdout, run.stderr);
    if !run.success() {
        if let Some(why) = broken_by_errors(language, test_path, &out) {
            return Verdict::Broken(why);
        }
    }
    let broken = |m: &str| Verdict::Broken(m.into());
    match language {
        Language::Python => {
            // A load error is the test's own unless it was raised in the code
            // under test (read above); one whose error line could not be read
            // is the test's too.
            let load_failed =
                out.contains("unittest.loader._FailedTest") || out.contains("ERROR collecting");
            let read = raised_errors(language, &out).iter().any(|e| e.loading);
            if load_failed && !read {
                return broken("the test is broken: the test file could not be imported");
            }
            if out.contains("Ran 0 tests") || out.contains("no tests ran") {
                return broken("no test was found in the file");
            }
        }
        Language::Rust => {
            if out.contains("error[E") || out.contains("error: could not compile") {
                let first = out
                    .lines()
                    .find(|l| l.starts_with("error[E") || l.starts_with("error:"))
                    .unwrap_or("");
                return Verdict::Broken(format!("the test does not compile: {}", quoted(first)));
            }
            if out.contains("could not find `Cargo.toml`") {
                return broken("the test is in no crate (no Cargo.toml above it)");
            }
            if out.contains("running 0 tests") && !out.contains("running 1 test") && run.success() {
                return broken("no test was found in the file");
            }
        }
        Language::Go => {
            if out.contains("[build failed]") || out.contains("[setup failed]") {
                return broken("the test does not compile");
            }
        }
        Language::JavaScript | Language::TypeScript | Language::Tsx => {
            if out.contains("SyntaxError") || out.contains("Cannot find module") {
                return broken("the test file could not be loaded");
            }
        }
    }
    if run.success() {
        Verdict::Passed
    } else {
        Verdict::Failed
    }
}

/// Runs the reproduction test `test` at `path` over `workspace` with `overlay`.
pub fn check(
    sandbox: &Sandbox,
    workspace: &Path,
    overlay: &HashMap<String, String>,
    language: Language,
    path: &str,
    test: &str,
) -> Result<(Verdict, TestReport), RunnerError> {
    let mut overlay = overlay.clone();
    overlay.insert(path.to_string(), test.to_string());
    let target = match language {
        Language::Rust => Some(
            Path::new(path)
                .file_stem()
                .and_then(|s| s.to_str())
                .map(|s| format!("--test={s}"))
                .unwrap_or_default(),
        ),
        Language::Go => None,
        _ => Some(path.to_string()),
    };
    let report = run_tests(sandbox, workspace, &overlay, language, target.as_deref())?;
    Ok((classify(language, path, &report.outcome), report))
}

/// The score of a reproduction.
#[derive(Debug, Clone)]
pub struct Score {
    /// 1 when the test fails before the fix (as a test, [`Verdict::Failed`]; a
    /// broken test earns nothing) and passes after it.
    pub reward: f64,
    /// [`grade`]: partial credit in [0, 1], 1 exactly where `reward` is.
    pub graded: f64,
    pub before: Verdict,
    pub after: Option<Verdict>,
}

/// The graded reward of a reproduction: half for failing before the fix as a
/// test ([`Verdict::Failed`]; a broken test earns nothing) where the fix
/// changes how it fails (`fix_changes_failure`: a test that fails the same way
/// after the fix, such as `assert False`, shows nothing about the issue), half
/// for passing after the fix. Passing after earns only after failing before: a
/// test that passes on both sides shows nothing either.
pub fn grade(before: &Verdict, after: Option<&Verdict>, fix_changes_failure: bool) -> f64 {
    if *before != Verdict::Failed {
        return 0.0;
    }
    let passed_after = after == Some(&Verdict::Passed);
    let half = |earned: bool| if earned { 0.5 } else { 0.0 };
    half(fix_changes_failure || passed_after) + half(passed_after)
}

/// What a failing run says went wrong: the errors it raised and the failures
/// it names (a test's own timing and the like left out), to tell whether the
/// fix changed it.
fn failure_lines(language: Language, report: &TestReport) -> Vec<String> {
    let out = format!("{}\n{}", report.outcome.stdout, report.outcome.stderr);
    let mut lines: Vec<String> = raised_errors(language, &out)
        .into_iter()
        .map(|e| e.line)
        .collect();
    lines.extend(report.failures(language).into_iter().map(|f| f.message));
    lines
}

/// Scores a reproduction against the reference fix (see the module docs):
/// `base` is the task's starting state over `workspace` (the code with the
/// issue), and the fix's files go over it for the run after the fix.
pub fn verify(
    sandbox: &Sandbox,
    workspace: &Path,
    base: &HashMap<String, String>,
    language: Language,
    path: &str,
    test: Option<&str>,
    reference: &Reference,
) -> Result<Score, RunnerError> {
    let Some(test) = test else {
        return Ok(Score {
            reward: 0.0,
            graded: 0.0,
            before: Verdict::Broken("no test was written".into()),
            after: None,
        });
    };
    let (before, before_run) = check(sandbox, workspace, base, language, path, test)?;
    if before != Verdict::Failed {
        return Ok(Score {
            reward: 0.0,
            graded: 0.0,
            before,
            after: None,
        });
    }
    let mut fixed = base.clone();
    fixed.extend(reference.fix.iter().map(|(k, v)| (k.clone(), v.clone())));
    let (after, after_run) = check(sandbox, workspace, &fixed, language, path, test)?;
    let (was, is) = (
        failure_lines(language, &before_run),
        failure_lines(language, &after_run),
    );
    // Where neither run names what went wrong (Go), there is nothing to
    // compare: the failure before the fix earns its half.
    let changed = was != is || was.is_empty();
    Ok(Score {
        reward: if after == Verdict::Passed { 1.0 } else { 0.0 },
        graded: grade(&before, Some(&after), changed),
        before,
        after: Some(after),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn run(code: Option<i32>, stdout: &str, stderr: &str) -> RunOutcome {
        RunOutcome {
            code,
            timed_out: false,
            cancelled: false,
            stdout: stdout.into(),
            stderr: stderr.into(),
            truncated: 0,
            elapsed: Duration::ZERO,
        }
    }

    const PY_TEST: &str = "tests/test_basis_reproduction.py";
    const JS_TEST: &str = "lib/basis_reproduction.test.js";

    #[test]
    fn runs_are_told_apart_as_pass_fail_or_broken() {
        let py = |r: &RunOutcome| classify(Language::Python, PY_TEST, r);
        let rs = |r: &RunOutcome| classify(Language::Rust, "tests/basis_reproduction.rs", r);
        assert_eq!(
            py(&run(Some(0), "", "Ran 1 test in 0.001s\n\nOK")),
            Verdict::Passed
        );
        let fail = "FAIL: test_x\nAssertionError: 2 != 3\nRan 1 test\nFAILED (failures=1)";
        assert_eq!(py(&run(Some(1), "", fail)), Verdict::Failed);
        let exc =
            "ERROR: test_x\nZeroDivisionError: division by zero\nRan 1 test\nFAILED (errors=1)";
        assert_eq!(py(&run(Some(1), "", exc)), Verdict::Failed);
        let import = "ERROR: test_basis (unittest.loader._FailedTest.test_basis)\nImportError: Failed to import test module";
        assert!(matches!(py(&run(Some(1), "", import)), Verdict::Broken(_)));
        // A load error whose error line cannot be read is the test's too.
        let unread = "ERROR: test_basis (unittest.loader._FailedTest.test_basis)\n----\nRan 1 test";
        assert!(matches!(py(&run(Some(1), "", unread)), Verdict::Broken(_)));
        assert!(matches!(
            py(&run(Some(5), "", "Ran 0 tests in 0s\n\nNO TESTS RAN")),
            Verdict::Broken(_)
        ));
        assert_eq!(
            rs(&run(
                Some(101),
                "",
                "error[E0425]: cannot find value `x` in this scope\n --> tests/basis_reproduction.rs:3:5\nerror: could not compile `ledger` (test \"basis_reproduction\")"
            )),
            Verdict::Broken(
                "the test does not compile: error[E0425]: cannot find value `x` in this scope"
                    .into()
            )
        );
        assert_eq!(
            rs(&run(Some(101), "thread 'x' panicked at", "")),
            Verdict::Failed
        );
        let mut t = run(None, "", "");
        t.timed_out = true;
        assert!(matches!(py(&t), Verdict::Broken(_)));
    }

    /// A run's output captured in `skills/tests/runs/` (see its README).
    macro_rules! captured {
        ($name:literal) => {
            (
                $name,
                include_str!(concat!("../tests/runs/", $name, ".txt")),
            )
        };
    }

    /// The verdict on a failed run of the reproduction test whose output is
    /// `output`, in the language its capture's name starts with.
    fn verdict_of(name: &str, output: &str) -> Verdict {
        let (language, path) = if name.starts_with("python") {
            (Language::Python, PY_TEST)
        } else {
            (Language::JavaScript, JS_TEST)
        };
        classify(language, path, &run(Some(1), output, ""))
    }

    #[test]
    fn a_test_that_errors_before_the_code_under_test_is_broken() {
        let broken = |error: &str| Verdict::Broken(format!("the test is broken: {error}"));
        let name_error = broken("NameError: name 'bulk_price' is not defined");
        let missing_name = broken(
            "ImportError: cannot import name 'bulk_pricing' from 'shop.pricing' (/work/shop/pricing.py)",
        );
        let missing_module = broken("ModuleNotFoundError: No module named 'shop.nothing'");
        let syntax_error = broken("SyntaxError: '(' was never closed");
        let module_attribute =
            broken("AttributeError: module 'shop.pricing' has no attribute 'bulk_pricing'");
        let reference_error = broken("ReferenceError: bulkPrice is not defined");
        let cases = [
            (captured!("python_unittest_name_error"), &name_error),
            (captured!("python_pytest_name_error"), &name_error),
            (captured!("python_unittest_missing_name"), &missing_name),
            (captured!("python_pytest_missing_name"), &missing_name),
            (captured!("python_unittest_missing_module"), &missing_module),
            (captured!("python_pytest_missing_module"), &missing_module),
            (captured!("python_unittest_syntax_error"), &syntax_error),
            (captured!("python_pytest_syntax_error"), &syntax_error),
            (
                captured!("python_unittest_missing_fixture"),
                &broken("TypeError: test_it() missing 1 required positional argument: 'cart'"),
            ),
            (
                captured!("python_pytest_missing_fixture"),
                &broken("fixture 'cart' not found"),
            ),
            (
                captured!("python_unittest_module_attribute"),
                &module_attribute,
            ),
            (
                captured!("python_pytest_module_attribute"),
                &module_attribute,
            ),
            (captured!("node_tap_reference_error"), &reference_error),
            (captured!("node_spec_reference_error"), &reference_error),
            (
                captured!("node_tap_top_level_reference_error"),
                &reference_error,
            ),
            (
                captured!("node_spec_top_level_reference_error"),
                &reference_error,
            ),
        ];
        for ((name, output), expected) in cases {
            assert_eq!(&verdict_of(name, output), expected, "{name}");
            // Any output is read without a panic, cut anywhere.
            for (cut, _) in output.char_indices().step_by(5) {
                let _ = verdict_of(name, &output[..cut]);
            }
        }
        assert_eq!(
            name_error.describe(),
            "does not reproduce: the test is broken: NameError: name 'bulk_price' is not defined"
        );
    }

    #[test]
    fn the_graded_reward_gives_half_for_each_side_of_the_fix() {
        // Fails before the fix for an unrelated reason, an error in the test's
        // own code (a name it never imported): broken, and it earns nothing,
        // whatever happens after the fix or how the fix changes its output.
        let (name, output) = captured!("python_unittest_name_error");
        let broken = verdict_of(name, output);
        assert!(matches!(broken, Verdict::Broken(_)), "{broken:?}");
        assert_eq!(grade(&broken, None, true), 0.0);
        assert_eq!(grade(&broken, Some(&Verdict::Passed), true), 0.0);
        // Fails as a test before the fix.
        let (name, output) = captured!("python_unittest_assertion");
        let failed = verdict_of(name, output);
        assert_eq!(failed, Verdict::Failed);
        // ... and passes after it: both halves.
        assert_eq!(grade(&failed, Some(&Verdict::Passed), false), 1.0);
        // ... and still fails after it, differently: the first half.
        assert_eq!(grade(&failed, Some(&Verdict::Failed), true), 0.5);
        // ... the same way after it (`assert False`): the fix changes
        // nothing it shows.
        assert_eq!(grade(&failed, Some(&Verdict::Failed), false), 0.0);
        // ... and breaks after it.
        let broken_after = Some(&broken);
        assert_eq!(grade(&failed, broken_after, true), 0.5);
        // Passes before the fix: nothing to reproduce, nothing earned.
        assert_eq!(grade(&Verdict::Passed, Some(&Verdict::Passed), true), 0.0);
    }

    #[test]
    fn an_error_raised_in_the_code_under_test_is_a_failure() {
        let cases = [
            captured!("python_unittest_assertion"),
            captured!("python_pytest_assertion"),
            // `bulk_price(…).cents`: the test's own frame, but the value's fault.
            captured!("python_unittest_value_attribute"),
            captured!("python_pytest_value_attribute"),
            // A NameError, but in shop/pricing.py: the code under test's.
            captured!("python_unittest_library_name_error"),
            captured!("python_pytest_library_name_error"),
            // The code under test fails as it is imported.
            captured!("python_unittest_library_load_error"),
            captured!("python_pytest_library_load_error"),
            captured!("node_tap_assertion"),
            captured!("node_spec_assertion"),
            captured!("node_tap_library_reference_error"),
            captured!("node_spec_library_reference_error"),
        ];
        for (name, output) in cases {
            assert_eq!(verdict_of(name, output), Verdict::Failed, "{name}");
        }
    }

    #[test]
    fn parse_takes_a_test_file_out_of_any_answer() {
        let a =
            "To reproduce:\n```python\ndef test_discount():\n    assert apply(100, 10) == 90\n```";
        let t = parse(a, Language::Python).unwrap();
        assert!(t.starts_with("import unittest\n"));
        assert!(t.contains("BasisCollectedTests"));
        assert!(parse("I am not sure what the issue is.", Language::Python).is_none());
        for (k, _) in a.char_indices() {
            let _ = parse(&a[..k], Language::Python);
            let _ = parse(&a[..k], Language::Rust);
        }
        assert_eq!(
            test_path(Language::Go, "pkg/a.go", None),
            "pkg/basis_reproduction_test.go"
        );
        assert_eq!(
            test_path(Language::Rust, "src/lib.rs", Some("")),
            "tests/basis_reproduction.rs"
        );
        assert_eq!(
            test_path(Language::Rust, "ledger/src/lib.rs", Some("ledger")),
            "ledger/tests/basis_reproduction.rs"
        );
    }

    #[test]
    fn render_shares_the_line_budget_across_files() {
        let input = Input {
            issue: "apply_discount gives the wrong price".into(),
            context: vec![
                ContextFile {
                    path: "a.py".into(),
                    text: "a1\na2\na3\n".into(),
                },
                ContextFile {
                    path: "b.py".into(),
                    text: "b1\nb2\n".into(),
                },
            ],
            crate_name: None,
            crate_dir: None,
        };
        let m = render(&input, Language::Python, 4);
        assert!(
            m[1].content.contains("a3")
                && m[1].content.contains("b1")
                && !m[1].content.contains("b2")
        );
        let m = render(&input, Language::Python, 0);
        assert!(!m[1].content.contains("File "));
        assert_eq!(input.language(), Some(Language::Python));
    }
}
