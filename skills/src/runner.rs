//! Test runners: how to run a workspace's tests (or one test file) in the sandbox,
//! per language, or a clear reason why they cannot run here.
//!
//! - Python: `pytest` when the sandbox's Python has it, else `unittest`.
//! - Rust: `cargo test --offline` with the host toolchain mounted read-only and a
//!   build cache shared by every run on the same workspace, so a second run only
//!   rebuilds the workspace's own crates.
//! - JavaScript: `node --test`. TypeScript and Go: only where their toolchains are
//!   installed; otherwise "not available", never a silent pass.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use basis_code::Language;
use sha2::{Digest, Sha256};

use crate::sandbox::{Isolation, Mount, Outcome, Sandbox, SandboxError};

/// A test run's result.
#[derive(Debug, Clone)]
pub struct TestReport {
    pub command: Vec<String>,
    pub outcome: Outcome,
}

impl TestReport {
    /// A finished run's report from what it printed (for reading recorded runs
    /// again, and for tests of the readers).
    pub fn of_output(code: i32, stdout: &str, stderr: &str) -> TestReport {
        TestReport {
            command: Vec::new(),
            outcome: Outcome {
                code: Some(code),
                timed_out: false,
                cancelled: false,
                stdout: stdout.into(),
                stderr: stderr.into(),
                truncated: 0,
                elapsed: std::time::Duration::ZERO,
            },
        }
    }

    pub fn passed(&self) -> bool {
        self.outcome.success()
    }

    /// One line about the run: passed or failed, the command, the time.
    pub fn summary(&self) -> String {
        let o = &self.outcome;
        if o.timed_out {
            return format!("the tests timed out after {:.1}s", o.elapsed.as_secs_f64());
        }
        if o.cancelled {
            return format!(
                "the test run was cancelled after {:.1}s",
                o.elapsed.as_secs_f64()
            );
        }
        format!(
            "tests {} ({}) in {:.1}s",
            if o.success() { "passed" } else { "failed" },
            self.command.join(" "),
            o.elapsed.as_secs_f64()
        )
    }

    /// The last `n` lines of the run's output.
    pub fn output_tail(&self, n: usize) -> String {
        let all = format!("{}{}", self.outcome.stdout, self.outcome.stderr);
        let lines: Vec<&str> = all.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("{0} tests cannot run here: {1}")]
    NotAvailable(&'static str, String),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

/// Where the shared Rust build cache of a workspace lives on the host.
fn cargo_cache(workspace: &Path) -> PathBuf {
    let digest = Sha256::digest(workspace.display().to_string().as_bytes());
    let id: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let base = std::env::var_os("BASIS_HOME")
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".cache/basis")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("sandbox-cache").join(id)
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/local/go/bin")])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// The sandbox and command for `language`'s tests; `target` narrows them to a
/// test file (Python, JavaScript) or a test-name filter (Rust, Go).
pub fn prepare(
    base: &Sandbox,
    workspace: &Path,
    language: Language,
    target: Option<&str>,
) -> Result<(Sandbox, Vec<String>), RunnerError> {
    let mut sb = base.clone();
    let argv: Vec<String> = match language {
        Language::Python => {
            let probe = sb.run(workspace, &HashMap::new(), &["python3", "-c", "import pytest"])?;
            let pytest = probe.success();
            let argv: Vec<&str> = match (pytest, target) {
                (true, Some(t)) => vec!["python3", "-m", "pytest", "-q", t],
                (true, None) => vec!["python3", "-m", "pytest", "-q"],
                (false, Some(t)) => vec!["python3", "-m", "unittest", "-v", t],
                (false, None) => vec!["python3", "-m", "unittest", "discover", "-v", "-s", "."],
            };
            argv.into_iter().map(String::from).collect()
        }
        Language::Rust => {
            let home = home().ok_or_else(|| RunnerError::NotAvailable("Rust", "HOME is not set".into()))?;
            let cargo_home = std::env::var_os("CARGO_HOME").map(PathBuf::from).unwrap_or(home.join(".cargo"));
            let rustup_home = std::env::var_os("RUSTUP_HOME").map(PathBuf::from).unwrap_or(home.join(".rustup"));
            if !cargo_home.join("bin/cargo").is_file() {
                return Err(RunnerError::NotAvailable(
                    "Rust",
                    format!("no cargo at {}", cargo_home.join("bin/cargo").display()),
                ));
            }
            let cache = cargo_cache(workspace);
            let (target_dir, home_dir) = (cache.join("target"), cache.join("cargo-home"));
            for d in [&target_dir, &home_dir] {
                std::fs::create_dir_all(d).map_err(SandboxError::Copy)?;
            }
            match sb.isolation {
                Isolation::Bubblewrap => {
                    let registry = cargo_home.join("registry");
                    std::fs::create_dir_all(home_dir.join("registry")).map_err(SandboxError::Copy)?;
                    sb.mounts.extend([
                        Mount { host: cache.clone(), inside: "/cache".into(), writable: true },
                        Mount { host: cargo_home.join("bin"), inside: "/opt/cargo/bin".into(), writable: false },
                        Mount { host: rustup_home, inside: "/opt/rustup".into(), writable: false },
                    ]);
                    if registry.is_dir() {
                        sb.mounts.push(Mount {
                            host: registry,
                            inside: "/cache/cargo-home/registry".into(),
                            writable: false,
                        });
                    }
                    sb.env.extend([
                        ("CARGO_HOME".into(), "/cache/cargo-home".into()),
                        ("RUSTUP_HOME".into(), "/opt/rustup".into()),
                        ("CARGO_TARGET_DIR".into(), "/cache/target".into()),
                    ]);
                    sb.path.push("/opt/cargo/bin".into());
                }
                Isolation::LimitsOnly => {
                    sb.env.extend([
                        ("CARGO_HOME".into(), cargo_home.display().to_string()),
                        ("RUSTUP_HOME".into(), rustup_home.display().to_string()),
                        ("CARGO_TARGET_DIR".into(), target_dir.display().to_string()),
                    ]);
                    sb.path.push(cargo_home.join("bin").display().to_string());
                }
            }
            let mut argv: Vec<String> = ["cargo", "test", "--offline", "--quiet"].map(String::from).to_vec();
            argv.extend(target.map(String::from));
            argv
        }
        Language::JavaScript => {
            if find_on_path("node").is_none() {
                return Err(RunnerError::NotAvailable("JavaScript", "node is not installed".into()));
            }
            let mut argv: Vec<String> = ["node", "--test"].map(String::from).to_vec();
            argv.extend(target.map(String::from));
            argv
        }
        Language::TypeScript | Language::Tsx => {
            return Err(RunnerError::NotAvailable(
                "TypeScript",
                "no TypeScript test runner is set up in the sandbox yet (node cannot run .ts files directly)".into(),
            ))
        }
        Language::Go => {
            let go = find_on_path("go")
                .ok_or_else(|| RunnerError::NotAvailable("Go", "the Go toolchain (go) is not installed".into()))?;
            sb.path.push(go.parent().expect("a file has a parent").display().to_string());
            let mut argv: Vec<String> = ["go", "test", "./..."].map(String::from).to_vec();
            if let Some(t) = target {
                argv.extend(["-run".into(), t.into()]);
            }
            argv
        }
    };
    Ok((sb, argv))
}

/// Which tests a run runs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tests {
    /// The language's whole suite, with the runner's own command.
    Suite,
    /// The runner's command narrowed to a test file or name filter.
    Target(String),
    /// A command of the task's own (e.g. `python3 -m pytest -q tests/`), run in
    /// the language's sandbox environment.
    Command(Vec<String>),
}

impl Tests {
    /// A command line as a task file writes it (`"cargo test --offline"`),
    /// split on whitespace; quotes group words (`"a b"`, `'a b'`).
    pub fn command(line: &str) -> Option<Tests> {
        let mut words = Vec::new();
        let (mut word, mut quote, mut started) = (String::new(), None, false);
        for c in line.chars() {
            match (quote, c) {
                (None, '"' | '\'') => {
                    quote = Some(c);
                    started = true;
                }
                (Some(q), c) if c == q => quote = None,
                (None, c) if c.is_whitespace() => {
                    if started {
                        words.push(std::mem::take(&mut word));
                        started = false;
                    }
                }
                (_, c) => {
                    word.push(c);
                    started = true;
                }
            }
        }
        if quote.is_some() {
            return None;
        }
        if started {
            words.push(word);
        }
        (!words.is_empty()).then_some(Tests::Command(words))
    }
}

/// The folder (relative, `""` for the root) of the Rust crate that holds
/// `path`: the nearest one above it with a `Cargo.toml` (in `workspace`, or in
/// `overlay`).
pub fn rust_crate_of(
    workspace: &Path,
    overlay: &HashMap<String, String>,
    path: &str,
) -> Option<String> {
    let mut dir = Path::new(path).parent();
    while let Some(d) = dir {
        let manifest = d.join("Cargo.toml");
        let rel = manifest.to_string_lossy().replace('\\', "/");
        if workspace.join(&manifest).is_file() || overlay.contains_key(&rel) {
            return Some(d.to_string_lossy().replace('\\', "/"));
        }
        dir = d.parent();
    }
    None
}

/// Runs `tests` of `workspace` (with `overlay` written over its copy). A Rust
/// crate in a folder of its own (no `Cargo.toml` at the root) is found from the
/// Rust files in `overlay` (the code or tests under test) and run with
/// `--manifest-path`.
pub fn run(
    base: &Sandbox,
    workspace: &Path,
    overlay: &HashMap<String, String>,
    language: Language,
    tests: &Tests,
) -> Result<TestReport, RunnerError> {
    let target = match tests {
        Tests::Target(t) => Some(t.as_str()),
        _ => None,
    };
    let (sb, mut argv) = prepare(base, workspace, language, target)?;
    if let Tests::Command(command) = tests {
        argv = command.clone();
    } else if language == Language::Rust && !workspace.join("Cargo.toml").is_file() {
        let mut paths: Vec<&String> = overlay.keys().filter(|p| p.ends_with(".rs")).collect();
        paths.sort();
        if let Some(dir) = paths
            .iter()
            .find_map(|p| rust_crate_of(workspace, overlay, p))
        {
            if !dir.is_empty() {
                argv.splice(
                    2..2,
                    ["--manifest-path".to_string(), format!("{dir}/Cargo.toml")],
                );
            }
        }
    }
    let args: Vec<&str> = argv.iter().map(String::as_str).collect();
    let outcome = sb.run(workspace, overlay, &args)?;
    Ok(TestReport {
        command: argv,
        outcome,
    })
}

/// Runs the tests of `workspace` (with `overlay` written over its copy),
/// narrowed to `target` when given.
pub fn run_tests(
    base: &Sandbox,
    workspace: &Path,
    overlay: &HashMap<String, String>,
    language: Language,
    target: Option<&str>,
) -> Result<TestReport, RunnerError> {
    let tests = match target {
        Some(t) => Tests::Target(t.to_string()),
        None => Tests::Suite,
    };
    run(base, workspace, overlay, language, &tests)
}

/// A failing test, as a runner's output names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub test: String,
    /// Relative to the workspace, `/`-separated.
    pub path: String,
    /// 0-based.
    pub line: usize,
    pub message: String,
}

/// Strips the sandbox's (or a copy's) workspace prefix from a path in output.
fn workspace_relative(path: &str) -> Option<String> {
    let p = path.trim();
    if let Some(rest) = p.strip_prefix("/work/") {
        return Some(rest.to_string());
    }
    if p.starts_with('/') {
        // The fallback runs in a temporary copy: `.../basis-sandbox-XXXX/work/...`.
        return p
            .find("/work/")
            .map(|i| p[i + "/work/".len()..].to_string());
    }
    Some(p.trim_start_matches("./").to_string())
}

impl TestReport {
    /// The failing tests the output names, with where they failed (Python
    /// unittest and pytest, Rust's test harness); empty when it names none.
    pub fn failures(&self, language: Language) -> Vec<Failure> {
        let out = format!("{}\n{}", self.outcome.stdout, self.outcome.stderr);
        match language {
            Language::Python => python_failures(&out),
            Language::Rust => rust_failures(&out),
            _ => Vec::new(),
        }
    }
}

/// How many tests a run ran, as its runner's summary counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestCounts {
    pub passed: usize,
    /// Failures and errors (a test that could not load counts as one).
    pub failed: usize,
}

impl TestCounts {
    pub fn total(&self) -> usize {
        self.passed + self.failed
    }
}

impl TestReport {
    /// The run's test counts, from the summary its runner prints: cargo's
    /// `test result: … N passed; M failed` (every test binary's, added up),
    /// unittest's `Ran N tests` with `FAILED (failures=a, errors=b)`, pytest's
    /// `x passed, y failed, z errors in 0.1s`, node's `# pass N` / `# fail M`
    /// (`ℹ` for its spec reporter). `None` when the output has no summary
    /// (it did not compile, it timed out, Go's runner, which counts no passes).
    pub fn counts(&self) -> Option<TestCounts> {
        let out = format!("{}\n{}", self.outcome.stdout, self.outcome.stderr);
        cargo_counts(&out)
            .or_else(|| unittest_counts(&out))
            .or_else(|| pytest_counts(&out))
            .or_else(|| node_counts(&out))
    }
}

/// `N word` (`3 passed`): the number and the word.
fn count_of(part: &str) -> Option<(usize, &str)> {
    let (n, word) = part.trim().split_once(' ')?;
    Some((n.parse().ok()?, word.trim()))
}

fn cargo_counts(out: &str) -> Option<TestCounts> {
    let mut counts: Option<TestCounts> = None;
    for line in out.lines() {
        let Some((_, rest)) = line.split_once("test result: ") else {
            continue;
        };
        let c = counts.get_or_insert(TestCounts {
            passed: 0,
            failed: 0,
        });
        // `ok. 3 passed; 0 failed; 0 ignored; …`
        let rest = rest.split_once(". ").map_or(rest, |(_, r)| r);
        for (n, word) in rest.split(';').filter_map(count_of) {
            match word {
                "passed" => c.passed += n,
                "failed" => c.failed += n,
                _ => {}
            }
        }
    }
    counts
}

fn unittest_counts(out: &str) -> Option<TestCounts> {
    let mut ran: Option<usize> = None;
    let mut failed = 0;
    for line in out.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("Ran ") {
            // `Ran 5 tests in 0.01s`
            if let Some(n) = rest.split(' ').next().and_then(|n| n.parse::<usize>().ok()) {
                *ran.get_or_insert(0) += n;
            }
        } else if let Some(rest) = line.strip_prefix("FAILED (") {
            // `FAILED (failures=1, errors=1, skipped=2)`
            for part in rest.trim_end_matches(')').split(',') {
                if let Some((key, n)) = part.split_once('=') {
                    let n: usize = n.trim().parse().unwrap_or(0);
                    if matches!(key.trim(), "failures" | "errors" | "unexpected successes") {
                        failed += n;
                    }
                }
            }
        }
    }
    let ran = ran?;
    Some(TestCounts {
        passed: ran.saturating_sub(failed),
        failed,
    })
}

fn pytest_counts(out: &str) -> Option<TestCounts> {
    // The last line such as `3 passed, 2 failed, 1 error in 0.12s` (inside
    // `=` rules without -q).
    out.lines().rev().find_map(|line| {
        let line = line.trim().trim_matches('=').trim();
        let (parts, time) = line.rsplit_once(" in ")?;
        if !time.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        let mut c = TestCounts {
            passed: 0,
            failed: 0,
        };
        for part in parts.split(", ") {
            let (n, word) = count_of(part)?;
            match word {
                "passed" => c.passed += n,
                "failed" | "error" | "errors" => c.failed += n,
                _ => {}
            }
        }
        Some(c)
    })
}

fn node_counts(out: &str) -> Option<TestCounts> {
    // The summary's `pass N`, `fail N` and `cancelled N` lines (the last of
    // each: a test file's own subtests print none).
    let (mut passed, mut failed, mut cancelled) = (None, None, 0);
    for line in out.lines() {
        let t = line.trim().trim_start_matches(['#', 'ℹ']).trim();
        let Some((word, n)) = t.split_once(' ') else {
            continue;
        };
        let Ok(n) = n.trim().parse::<usize>() else {
            continue;
        };
        match word {
            "pass" => passed = Some(n),
            "fail" => failed = Some(n),
            "cancelled" => cancelled = n,
            _ => {}
        }
    }
    Some(TestCounts {
        passed: passed?,
        failed: failed? + cancelled,
    })
}

fn python_failures(out: &str) -> Vec<Failure> {
    let mut failures = Vec::new();
    // unittest: "FAIL: test (module.Class.test)" blocks with a traceback.
    for block in out.split("======================================================================")
    {
        let mut lines = block.lines().map(str::trim_end);
        let Some(head) = lines.find(|l| l.starts_with("FAIL: ") || l.starts_with("ERROR: ")) else {
            continue;
        };
        let test = head.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut place: Option<(String, usize)> = None;
        let mut message = String::new();
        // The exception's line (`AssertionError: 3 != 4`) says what went
        // wrong; what follows it (a list diff) only details it.
        let mut exception: Option<String> = None;
        let mut in_traceback = false;
        for l in lines {
            let t = l.trim();
            if t.starts_with("Traceback") {
                in_traceback = true;
                continue;
            }
            if t.starts_with("---") && in_traceback {
                break; // the summary after the last failure
            }
            if let Some(rest) = t.strip_prefix("File \"") {
                if let Some((file, tail)) = rest.split_once("\", line ") {
                    let n: String = tail.chars().take_while(|c| c.is_ascii_digit()).collect();
                    if let (Some(path), Ok(n)) = (workspace_relative(file), n.parse::<usize>()) {
                        if !file.contains("/lib/python") && n > 0 {
                            place = Some((path, n - 1));
                        }
                    }
                }
            } else if !t.is_empty() && !t.starts_with("---") {
                message = t.to_string();
                let name = t.split(':').next().unwrap_or("");
                let is_exception = !name.is_empty()
                    && !name.contains(' ')
                    && (name.ends_with("Error") || name.ends_with("Exception"));
                if is_exception {
                    exception = Some(t.to_string());
                }
            }
        }
        if let Some((path, line)) = place {
            failures.push(Failure {
                test,
                path,
                line,
                message: exception.unwrap_or(message),
            });
        }
    }
    // pytest: "path.py:12: AssertionError" lines.
    if failures.is_empty() {
        for l in out.lines() {
            let mut parts = l.splitn(3, ':');
            if let (Some(file), Some(n), Some(msg)) = (parts.next(), parts.next(), parts.next()) {
                if file.ends_with(".py") && !file.contains(' ') {
                    if let (Ok(n), Some(path)) = (n.parse::<usize>(), workspace_relative(file)) {
                        failures.push(Failure {
                            test: String::new(),
                            path,
                            line: n.saturating_sub(1),
                            message: msg.trim().to_string(),
                        });
                    }
                }
            }
        }
    }
    failures
}

fn rust_failures(out: &str) -> Vec<Failure> {
    let mut failures = Vec::new();
    let mut lines = out.lines().peekable();
    while let Some(l) = lines.next() {
        // thread 'tests::adds' (123) panicked at src/lib.rs:40:9:
        let Some(rest) = l.strip_prefix("thread '") else {
            continue;
        };
        let Some((test, after)) = rest.split_once('\'') else {
            continue;
        };
        let Some(at) = after.split(" panicked at ").nth(1) else {
            continue;
        };
        let mut parts = at.trim_end_matches(':').rsplitn(3, ':');
        let (_col, line, file) = (parts.next(), parts.next(), parts.next());
        let (Some(line), Some(file)) = (line.and_then(|n| n.parse::<usize>().ok()), file) else {
            continue;
        };
        let mut message = lines
            .peek()
            .map(|m| m.trim().to_string())
            .unwrap_or_default();
        // assert_eq!'s values follow on lines of their own.
        let _ = lines.next();
        while let Some(next) = lines.peek() {
            let t = next.trim_start();
            if !(t.starts_with("left:") || t.starts_with("right:")) {
                break;
            }
            message.push_str(&format!(" {}", t.trim()));
            lines.next();
        }
        if let Some(path) = workspace_relative(file) {
            failures.push(Failure {
                test: test.to_string(),
                path,
                line: line.saturating_sub(1),
                message,
            });
        }
    }
    failures
}

/// An error a test run reports: what was raised, and in which of the
/// workspace's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaisedError {
    /// The error as the runner prints it (`NameError: name 'x' is not
    /// defined`, `fixture 'cart' not found`).
    pub line: String,
    /// The workspace file (relative, `/`-separated) of the innermost frame that
    /// is the workspace's own code, not the standard library, an installed
    /// package or the runner; `None` when the output names none.
    pub raised_in: Option<String>,
    /// Raised while the test file was being loaded (unittest's `_FailedTest`,
    /// pytest's collection errors), before any test ran.
    pub loading: bool,
}

impl RaisedError {
    /// The error's type (`NameError`), the part of the line before its colon.
    pub fn kind(&self) -> &str {
        self.line.split(':').next().unwrap_or("").trim()
    }

    /// What the error says, after its type.
    pub fn message(&self) -> &str {
        self.line
            .split_once(':')
            .map(|(_, m)| m.trim())
            .unwrap_or("")
    }
}

/// The errors a test run's output reports, one per failing test or load error,
/// in the order printed (Python's unittest and pytest; node's test runner).
/// Assertion failures are errors too (`AssertionError: 2 != 3`); a language
/// whose test failures name no frames (Rust, Go) reports none.
pub fn raised_errors(language: Language, output: &str) -> Vec<RaisedError> {
    match language {
        Language::Python => python_errors(output),
        Language::JavaScript | Language::TypeScript | Language::Tsx => node_errors(output),
        Language::Rust | Language::Go => Vec::new(),
    }
}

/// A path in a frame, relative to the workspace, when it is the workspace's own
/// code: the standard library, installed packages and interpreter internals
/// (`<frozen runpy>`, `node:internal/…`) are not.
fn workspace_file(path: &str) -> Option<String> {
    let p = path.trim();
    let foreign = p.is_empty()
        || p.starts_with('<')
        || p.starts_with("node:")
        || p.starts_with("../")
        || [
            "site-packages",
            "dist-packages",
            "/lib/python",
            "node_modules",
        ]
        .iter()
        .any(|d| p.contains(d));
    if foreign {
        return None;
    }
    workspace_relative(p).map(|r| r.replace('\\', "/"))
}

/// A Python error line (`NameError: name 'x' is not defined`, a bare
/// `AssertionError`), as opposed to source, locals or the runner's prose.
fn is_python_error_line(line: &str) -> bool {
    let (name, message) = match line.split_once(':') {
        Some((name, message)) => (name, Some(message)),
        None => (line, None),
    };
    let identifier = |s: &str| {
        s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let last = name.rsplit('.').next().unwrap_or("");
    let error = [
        "Error",
        "Exception",
        "Warning",
        "Exit",
        "Interrupt",
        "Iteration",
    ]
    .iter()
    .any(|s| last.ends_with(s));
    // pytest.fail's `Failed: why` only counts with its message.
    let failed = last == "Failed" && message.is_some();
    name.split('.').all(identifier)
        && (error || failed)
        && message.is_none_or(|m| m.is_empty() || m.starts_with(' '))
}

/// The file a line of a Python traceback points at: unittest's and Python's
/// `File "x.py", line 7`, pytest's `x.py:7: in f` / `x.py:7: NameError` and its
/// missing fixture's `file x.py, line 5`.
fn python_location(line: &str) -> Option<&str> {
    if let Some(i) = line.find("File \"") {
        let rest = &line[i + "File \"".len()..];
        let (path, tail) = rest.split_once('"')?;
        return tail.starts_with(", line ").then_some(path);
    }
    if let Some(rest) = line.strip_prefix("file ") {
        return rest.split_once(", line ").map(|(path, _)| path);
    }
    let (path, tail) = line.split_once(':')?;
    let number = tail.split(':').next().unwrap_or("");
    (path.ends_with(".py")
        && !path.contains(' ')
        && !number.is_empty()
        && number.chars().all(|c| c.is_ascii_digit()))
    .then_some(path)
}

/// Splits Python test output into one part per reported failure: unittest's
/// blocks between `====` rules, pytest's sections under `____ name ____` titles.
fn python_sections(out: &str) -> Vec<Vec<&str>> {
    let mut sections = vec![Vec::new()];
    for line in out.lines() {
        let t = line.trim_end();
        let rule = t.starts_with("===");
        let title = t.len() > 6
            && t.starts_with("___")
            && t.ends_with("___")
            && t.trim_matches('_').trim() != ""
            && !t.trim_matches('_').contains("_ _");
        if rule || title {
            sections.push(Vec::new());
        }
        sections.last_mut().expect("one section at least").push(t);
    }
    sections
}

fn python_errors(out: &str) -> Vec<RaisedError> {
    let mut errors = Vec::new();
    for section in python_sections(out) {
        let mut error: Option<String> = None;
        let mut raised_in: Option<String> = None;
        let mut loading = false;
        for line in &section {
            let t = line.trim();
            loading |= t.contains("unittest.loader._FailedTest")
                || t.contains("ERROR collecting")
                || t.starts_with("ImportError while importing test module");
            // pytest marks the error's lines with `E` in the first column.
            let body = match t.strip_prefix('E') {
                Some(rest) if rest.is_empty() || rest.starts_with(' ') => rest.trim(),
                _ => t,
            };
            if let Some(path) = python_location(body) {
                if let Some(file) = workspace_file(path) {
                    raised_in = Some(file);
                }
            } else if is_python_error_line(body)
                || (body.starts_with("fixture '") && body.ends_with("' not found"))
            {
                error = Some(body.to_string());
            }
        }
        if let Some(line) = error {
            errors.push(RaisedError {
                line,
                raised_in,
                loading,
            });
        }
    }
    errors
}

/// The file of a node stack frame: `at f (/work/a.js:3:9)`, `at /work/a.js:3:9`,
/// or TAP's `f (/work/a.js:3:9)`.
fn node_frame_file(line: &str) -> Option<&str> {
    let t = line.trim().trim_start_matches("at ").trim();
    let place = match (t.rfind('('), t.ends_with(')')) {
        (Some(i), true) => &t[i + 1..t.len() - 1],
        _ => t,
    };
    let mut parts = place.rsplitn(3, ':');
    let (col, row, file) = (parts.next()?, parts.next()?, parts.next()?);
    let numeric = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    (numeric(col) && numeric(row) && !file.contains(' ')).then_some(file)
}

/// A node error line: `ReferenceError: x is not defined`, or as the spec
/// reporter prints it, `ReferenceError [Error]: x is not defined`; the error
/// as `Name: message`.
fn node_error_line(line: &str) -> Option<String> {
    let (head, message) = line.split_once(": ")?;
    let name = head.split(" [").next().unwrap_or(head);
    let plain = name.ends_with("Error")
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && head[name.len()..].chars().all(|c| c != ':' && c != '(');
    plain.then(|| format!("{name}: {}", message.trim()))
}

fn node_errors(out: &str) -> Vec<RaisedError> {
    let lines: Vec<&str> = out.lines().collect();
    // `#` starts TAP's comments (where node prints a test file's own crash).
    let text = |l: &str| l.trim().trim_start_matches('#').trim().to_string();
    let mut errors = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let t = text(line);
        // TAP's YAML block: `error: 'x is not defined'`, `name: 'ReferenceError'`,
        // then `stack: |-` and the frames, up to `...`.
        if let Some(name) = t.strip_prefix("name: ") {
            let name = name.trim_matches('\'');
            if !name.ends_with("Error") {
                continue;
            }
            let start = lines[..i]
                .iter()
                .rposition(|l| l.trim() == "---")
                .unwrap_or(0);
            let end = lines[i..]
                .iter()
                .position(|l| l.trim() == "...")
                .map_or(lines.len(), |e| i + e);
            let block = &lines[start..end];
            let message = block
                .iter()
                .position(|l| l.trim().starts_with("error: "))
                .map(|e| {
                    let m = block[e].trim()["error: ".len()..].trim_matches('\'');
                    // A multi-line message (`|-`): its first line.
                    match (m, block.get(e + 1)) {
                        ("|-" | "|" | ">-", Some(next)) => next.trim(),
                        _ => m,
                    }
                })
                .unwrap_or("");
            let raised_in = block
                .iter()
                .skip_while(|l| !l.trim().starts_with("stack:"))
                .skip(1)
                .filter_map(|l| node_frame_file(l))
                .find_map(workspace_file);
            errors.push(RaisedError {
                line: format!("{name}: {message}"),
                raised_in,
                loading: false,
            });
        } else if let Some(error) = node_error_line(&t) {
            let raised_in = lines[i + 1..]
                .iter()
                .map(|l| text(l))
                .take_while(|l| l.starts_with("at "))
                .find_map(|l| node_frame_file(&l).and_then(workspace_file));
            errors.push(RaisedError {
                line: error,
                raised_in,
                loading: false,
            });
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(stdout: &str, stderr: &str) -> TestReport {
        TestReport::of_output(1, stdout, stderr)
    }

    #[test]
    fn unittest_failures_point_at_the_failing_line() {
        let err = "test_a (tests.test_x.T.test_a) ... FAIL\n\n======================================================================\nFAIL: test_a (tests.test_x.T.test_a)\n----------------------------------------------------------------------\nTraceback (most recent call last):\n  File \"/work/tests/test_x.py\", line 7, in test_a\n    self.assertEqual(f(1), 2)\nAssertionError: 1 != 2\n\n======================================================================\nERROR: test_b (tests.test_x.T.test_b)\n----------------------------------------------------------------------\nTraceback (most recent call last):\n  File \"/work/tests/test_x.py\", line 10, in test_b\n    g()\n  File \"/usr/lib/python3.11/x.py\", line 3, in g\nNameError: name 'g' is not defined\n\n----------------------------------------------------------------------\nRan 2 tests in 0.001s\n\nFAILED (failures=1, errors=1)";
        let f = report("", err).failures(Language::Python);
        assert_eq!(f.len(), 2, "{f:?}");
        assert_eq!(
            f[0],
            Failure {
                test: "test_a".into(),
                path: "tests/test_x.py".into(),
                line: 6,
                message: "AssertionError: 1 != 2".into(),
            }
        );
        assert_eq!(
            (f[1].line, f[1].message.as_str()),
            (9, "NameError: name 'g' is not defined")
        );
        let pytest = "tests/test_x.py:7: AssertionError\n";
        assert_eq!(report(pytest, "").failures(Language::Python)[0].line, 6);
        assert!(report("OK", "").failures(Language::Python).is_empty());
    }

    #[test]
    fn raised_errors_say_in_which_file_they_were_raised() {
        let raised = |language, output: &str| -> Vec<(String, Option<String>, bool)> {
            raised_errors(language, output)
                .into_iter()
                .map(|e| (e.line, e.raised_in, e.loading))
                .collect()
        };
        let at =
            |line: &str, file: &str, loading| (line.to_string(), Some(file.to_string()), loading);
        let py = Language::Python;
        let price_of = "NameError: name 'price_of' is not defined";
        for output in [
            include_str!("../tests/runs/python_unittest_library_name_error.txt"),
            include_str!("../tests/runs/python_pytest_library_name_error.txt"),
        ] {
            assert_eq!(raised(py, output), [at(price_of, "shop/pricing.py", false)]);
        }
        let missing = "ModuleNotFoundError: No module named 'shop.nothing'";
        for output in [
            include_str!("../tests/runs/python_unittest_missing_module.txt"),
            include_str!("../tests/runs/python_pytest_missing_module.txt"),
        ] {
            assert_eq!(
                raised(py, output),
                [at(missing, "tests/test_basis_reproduction.py", true)]
            );
        }
        // pytest's collected function and its unittest twins: three errors.
        let fixture = raised(
            py,
            include_str!("../tests/runs/python_pytest_missing_fixture.txt"),
        );
        assert_eq!(fixture.len(), 3, "{fixture:?}");
        assert_eq!(
            fixture[0],
            at(
                "fixture 'cart' not found",
                "tests/test_basis_reproduction.py",
                false
            )
        );
        let js = Language::JavaScript;
        let price_of = "ReferenceError: priceOf is not defined";
        assert_eq!(
            raised(
                js,
                include_str!("../tests/runs/node_tap_library_reference_error.txt")
            ),
            [at(price_of, "lib/price.js", false)]
        );
        // The spec reporter repeats the failures at the end.
        assert_eq!(
            raised(
                js,
                include_str!("../tests/runs/node_spec_library_reference_error.txt")
            ),
            [
                at(price_of, "lib/price.js", false),
                at(price_of, "lib/price.js", false)
            ]
        );
        assert!(raised(py, "Ran 1 test in 0.001s\n\nOK").is_empty());
        assert!(raised(Language::Rust, "thread 'x' panicked at src/lib.rs:1:1:").is_empty());
    }

    #[test]
    fn test_counts_are_read_from_each_runners_summary() {
        let counts = |output: &str| report(output, "").counts().map(|c| (c.passed, c.failed));
        for output in [
            include_str!("../tests/runs/python_unittest_assertion.txt"),
            include_str!("../tests/runs/python_pytest_assertion.txt"),
            // A test file that does not load: one error.
            include_str!("../tests/runs/python_unittest_missing_module.txt"),
            include_str!("../tests/runs/python_pytest_missing_module.txt"),
            include_str!("../tests/runs/node_tap_assertion.txt"),
            include_str!("../tests/runs/node_spec_assertion.txt"),
        ] {
            assert_eq!(counts(output), Some((0, 1)), "{output}");
        }
        assert_eq!(
            counts("Ran 12 tests in 0.2s\n\nOK (skipped=1)"),
            Some((12, 0))
        );
        assert_eq!(
            counts("==== 7 passed, 1 failed, 2 errors, 1 warning in 1.20s ===="),
            Some((7, 3))
        );
        assert_eq!(
            counts("test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s"),
            Some((2, 0))
        );
        // No summary: a compile error, Go's runner, nothing at all.
        assert_eq!(counts("error[E0425]: cannot find value `x`"), None);
        assert_eq!(counts("--- FAIL: TestX (0.00s)\nFAIL\tpkg\t0.01s"), None);
        assert_eq!(counts(""), None);
    }

    #[test]
    fn rust_panics_point_at_the_assertion() {
        let out = "running 1 test\ntest tests::adds ... FAILED\n\nfailures:\n\n---- tests::adds stdout ----\n\nthread 'tests::adds' (4242) panicked at src/lib.rs:40:9:\nassertion `left == right` failed\n  left: 3\n right: 4\n";
        let f = report(out, "").failures(Language::Rust);
        assert_eq!(
            f,
            vec![Failure {
                test: "tests::adds".into(),
                path: "src/lib.rs".into(),
                line: 39,
                message: "assertion `left == right` failed left: 3 right: 4".into(),
            }]
        );
        assert!(report("garbage ' panicked at", "")
            .failures(Language::Rust)
            .is_empty());
    }
}
