//! Tasks from bugs planted in covered functions.
//!
//! The repository is checked out at `HEAD` (a throwaway tree) and its test
//! command run in the sandbox; it must pass as it is. Then, function by function
//! in an order the seed decides, tree-sitter mutants (`basis_code::mutants`) are
//! laid over the file and the test command run again; a mutant counts only if
//! the tests then fail (not time out). A function with such a mutant gives:
//!
//! - an **edit** task: the repository with the mutant (`repo.patch`), the
//!   function's lines, and a one-line instruction written from the function's
//!   documentation and the failing assertion; the reference is the original
//!   code and the reward is the test command passing;
//! - a **testgen** task on the original code: tests for the function that pass
//!   and fail on every one of its detected mutants (listed as diffs); for
//!   Python, the repository's own tests that caught them as a reference answer;
//! - a **reproduce** task: the repository with the mutant, an issue written
//!   from the documented behaviour and the assertion message (never naming the
//!   test), and the reverse of the mutant as the fix; for Python, the
//!   repository's own test that caught the mutant, as a reference answer for
//!   the warm start (`own_test`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use basis_code::{Language, Limits, ParsedFile, Symbol, SymbolKind};
use basis_skills::diff::FileChange;
use basis_skills::generate::code_answer_start;
use basis_skills::parse::fence_name;
use basis_skills::runner::{self, Tests};
use basis_skills::sandbox::Sandbox;
use basis_skills::SkillId;
use basis_skills::{reproduce, testgen};
use serde_json::json;

use super::{is_test_path, own_test, shuffled, task_id, Config, Mined, Progress};
use crate::task::{
    EditInput, EditReference, Meta, RepoRef, ReproduceInput, ReproduceReference, Spec, Task,
    TestgenInput, TestgenReference, TASK_SCHEMA,
};
use crate::workspace::{git_text, resolve_commit, Workspaces};

/// Mutants listed in a testgen task at most.
const MUTANTS_PER_TESTGEN_TASK: usize = 4;

/// A function the miner may plant bugs in.
#[derive(Debug, Clone)]
pub(super) struct Function {
    file: String,
    language: Language,
    pub(super) symbol: String,
    pub(super) start_byte: usize,
    pub(super) end_byte: usize,
    doc: Option<String>,
}

/// How one language's tests run in this repository.
#[derive(Debug, Clone)]
struct Suite {
    language: Language,
    tests: Tests,
    /// The command line as tasks record it.
    command: String,
}

/// A mutant the tests caught.
struct Caught {
    description: String,
    text: String,
    message: String,
    /// The failing test cases (module, class, method) the output names.
    cases: Vec<(String, String, String)>,
}

/// Files of the checkout that are inside it by their own path (see
/// [`basis_code::Workspace`]): links pointing out, and links to other files,
/// are left out.
fn files_of(root: &Path) -> Vec<String> {
    let ws = basis_code::Workspace::new(root);
    let mut files = listed_files(root);
    files.retain(|f| {
        ws.locate(Path::new(f))
            .is_ok_and(|inside| inside.rel == *f && inside.path.is_file())
    });
    files
}

/// A file of the repository by its relative path, if it is inside it.
fn read_inside(root: &Path, rel: &str) -> Option<String> {
    basis_code::Workspace::new(root).read(Path::new(rel))
}

/// Git's list of tracked files, else a walk.
fn listed_files(root: &Path) -> Vec<String> {
    if let Ok(list) = git_text(root, &["ls-files", "-z"]) {
        let mut v: Vec<String> = list
            .split('\0')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        if !v.is_empty() {
            v.sort();
            return v;
        }
    }
    // Links are not followed: the files' paths are built name by name.
    fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.')
                || matches!(name.as_str(), "target" | "node_modules" | "__pycache__")
            {
                continue;
            }
            let child = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&e.path(), &child, out);
            } else {
                out.push(child);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, "", &mut out);
    out.sort();
    out
}

fn quote(words: &[String]) -> String {
    words
        .iter()
        .map(|w| {
            if w.chars().any(char::is_whitespace) {
                format!("\"{w}\"")
            } else {
                w.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `suite` narrowed to the tests whose names hold the function's name (pytest's
/// and unittest's `-k`, cargo's name filter); `None` where the runner has no such
/// filter or the name is too short or generic to find its tests by.
fn narrowed(suite: &Suite, func: &Function) -> Option<Suite> {
    let name = func.symbol.rsplit('.').next()?.trim_matches('_');
    if name.len() < 4 || name == "init" || name == "new" {
        return None;
    }
    let mut argv = Tests::command(&suite.command).and_then(|t| match t {
        Tests::Command(argv) => Some(argv),
        _ => None,
    })?;
    let has = |w: &str| argv.iter().any(|a| a == w);
    if has("pytest") {
        argv.extend(["-k".to_string(), name.to_string()]);
    } else if has("unittest") {
        // unittest's patterns are case-sensitive: `chunked` and `ChunkedTests`.
        let camel: String = name
            .split('_')
            .filter(|w| !w.is_empty())
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_uppercase().chain(c).collect::<String>())
                    .unwrap_or_default()
            })
            .collect();
        argv.extend(["-k", name, "-k", &camel].map(String::from));
    } else if argv.first().is_some_and(|a| a == "cargo") && has("test") {
        argv.push(name.to_string());
    } else {
        return None;
    }
    Some(Suite {
        language: suite.language,
        command: quote(&argv),
        tests: Tests::Command(argv),
    })
}

/// Whether a passing run ran at least one test (a name filter can match none),
/// by the runner's own summary counts.
fn ran_some(r: &runner::TestReport) -> bool {
    r.counts().is_some_and(|c| c.total() > 0)
}

/// The test suites the repository has, per language (or the user's command).
fn suites(root: &Path, files: &[String], config: &Config) -> Vec<Suite> {
    let has = |lang: Language| {
        files
            .iter()
            .any(|f| Language::from_path(Path::new(f)) == Some(lang) && !is_test_path(f))
    };
    let mut out = Vec::new();
    if let Some(cmd) = &config.test_command {
        if let Some(tests) = Tests::command(cmd) {
            for lang in [Language::Python, Language::Rust] {
                if has(lang) {
                    out.push(Suite {
                        language: lang,
                        tests: tests.clone(),
                        command: cmd.clone(),
                    });
                }
            }
        }
        return out;
    }
    if has(Language::Python) && files.iter().any(|f| f.ends_with(".py") && is_test_path(f)) {
        out.push(Suite {
            language: Language::Python,
            tests: Tests::Suite,
            command: String::new(),
        });
    }
    // A crate at the root, or each crate in a folder of its own.
    let manifests: Vec<&String> = files.iter().filter(|f| f.ends_with("Cargo.toml")).collect();
    for m in manifests {
        let dir = m.trim_end_matches("Cargo.toml").trim_end_matches('/');
        let tests = if dir.is_empty() {
            Tests::Suite
        } else {
            Tests::Command(
                [
                    "cargo",
                    "test",
                    "--offline",
                    "--quiet",
                    "--manifest-path",
                    m.as_str(),
                ]
                .map(String::from)
                .to_vec(),
            )
        };
        if root.join(m).is_file() && has(Language::Rust) {
            out.push(Suite {
                language: Language::Rust,
                tests,
                command: String::new(),
            });
        }
    }
    out
}

/// Functions and methods of a file, with their documentation.
pub(super) fn functions(file: &str, language: Language, text: &str) -> Vec<Function> {
    fn walk(symbols: &[Symbol], out: &mut Vec<(Symbol, Option<String>)>, container: Option<&str>) {
        for s in symbols {
            // Tests are not what bugs are planted in (Rust keeps them in `mod tests`).
            if s.kind == SymbolKind::Module && matches!(s.name.as_str(), "tests" | "test") {
                continue;
            }
            if matches!(s.kind, SymbolKind::Function | SymbolKind::Method) {
                out.push((s.clone(), container.map(String::from)));
            }
            let inner = if matches!(
                s.kind,
                SymbolKind::Class | SymbolKind::Impl | SymbolKind::Struct
            ) {
                Some(s.name.as_str())
            } else {
                container
            };
            walk(&s.children, out, inner);
        }
    }
    let parsed = ParsedFile::parse(language, text, &Limits::default());
    let mut found = Vec::new();
    walk(&parsed.symbols(text), &mut found, None);
    found
        .into_iter()
        .filter(|(s, _)| {
            !s.name.starts_with("test") && !s.name.starts_with('_') || s.name == "__init__"
        })
        .filter(|(s, _)| text[s.span.start_byte..s.span.end_byte].lines().count() >= 3)
        .map(|(s, container)| Function {
            file: file.to_string(),
            language,
            symbol: match container {
                Some(c) if c != s.name => format!("{c}.{}", s.name),
                _ => s.name.clone(),
            },
            start_byte: s.span.start_byte,
            end_byte: s.span.end_byte,
            doc: s.doc.clone(),
        })
        .collect()
}

/// The first sentence of a doc comment, on one line.
fn first_sentence(doc: &str) -> String {
    let flat: String = doc
        .lines()
        .map(|l| {
            l.trim()
                .trim_start_matches("///")
                .trim_start_matches("//!")
                .trim()
        })
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let flat = flat
        .trim_matches(|c| c == '"' || c == '\'' || c == ' ')
        .to_string();
    match flat.find(". ") {
        Some(i) => flat[..=i].to_string(),
        None => flat,
    }
}

/// A failure message with every word that names a test replaced.
fn scrubbed(message: &str) -> String {
    let one_line: String = message.split_whitespace().collect::<Vec<_>>().join(" ");
    let words: Vec<String> = one_line
        .split(' ')
        .map(|w| {
            if w.to_ascii_lowercase().contains("test") {
                "…".to_string()
            } else {
                w.to_string()
            }
        })
        .collect();
    let text = words.join(" ");
    if text.chars().count() > 160 {
        format!("{}…", text.chars().take(160).collect::<String>())
    } else {
        text
    }
}

/// What a failed run says went wrong, without the test's name.
fn failure_message(report: &runner::TestReport, language: Language) -> String {
    let f = report.failures(language);
    let raw = match f.first() {
        Some(f) if !f.message.trim().is_empty() => f.message.clone(),
        _ => {
            let out = format!("{}\n{}", report.outcome.stdout, report.outcome.stderr);
            out.lines()
                .rev()
                .find(|l| l.contains("Error") || l.contains("panicked") || l.contains("assert"))
                .unwrap_or("the tests fail")
                .to_string()
        }
    };
    scrubbed(&raw)
}

fn line_of(text: &str, byte: usize) -> usize {
    text[..byte.min(text.len())].matches('\n').count() + 1
}

/// The whole lines `start..=end` (1-based) of `text`.
fn lines(text: &str, start: usize, end: usize) -> String {
    text.split_inclusive('\n')
        .skip(start - 1)
        .take(end + 1 - start)
        .collect()
}

/// A failing case of a mutant that is a test method in a module of the
/// checkout.
struct OwnCase {
    module: String,
    /// The module's text.
    text: std::rc::Rc<String>,
    class: String,
    method: String,
    /// The module cut down to this one test ([`own_test::one_test_file`]).
    alone: String,
}

/// The failing cases of `mutant` that are test methods in modules of the
/// checkout, in the output's order (each module read once).
fn own_cases(root: &Path, mutant: &Caught) -> Vec<OwnCase> {
    let mut modules: HashMap<&str, Option<std::rc::Rc<String>>> = HashMap::new();
    mutant
        .cases
        .iter()
        .filter_map(|(module, class, method)| {
            let text = modules
                .entry(module)
                .or_insert_with(|| {
                    read_inside(root, &own_test::module_path(module)).map(std::rc::Rc::new)
                })
                .clone()?;
            let alone = own_test::one_test_file(&text, class, method)?;
            Some(OwnCase {
                module: module.clone(),
                text,
                class: class.clone(),
                method: method.clone(),
                alone,
            })
        })
        .collect()
}

/// Python code as a model's answer: inside the fence the prompt opens, closed,
/// as the warm start writes it and the skills read it back.
fn python_answer(code: &str) -> String {
    format!(
        "{}{code}```",
        code_answer_start(fence_name(Some(Language::Python)))
    )
}

/// How many of a mutant's failing tests are tried as its reproduction.
const OWN_TESTS_TRIED: usize = 3;

/// The repository's own test that caught `mutant`, cut down to a test file
/// (see [`own_test`]): the first of its failing tests that fails on the mutant
/// and passes on the original as the reproduce skill's verifier runs it.
fn own_reproduction(
    sandbox: &Sandbox,
    root: &Path,
    file: &str,
    original: &str,
    mutant: &Caught,
) -> Option<String> {
    own_cases(root, mutant)
        .into_iter()
        .take(OWN_TESTS_TRIED)
        .find_map(|case| {
            let test = case.alone;
            let parsed = reproduce::parse(&python_answer(&test), Language::Python)?;
            let score = reproduce::verify(
                sandbox,
                root,
                &HashMap::from([(file.to_string(), mutant.text.clone())]),
                Language::Python,
                &reproduce::test_path(Language::Python, file, None),
                Some(&parsed),
                &reproduce::Reference {
                    fix: HashMap::from([(file.to_string(), original.to_string())]),
                },
            )
            .ok()?;
            (score.reward == 1.0).then_some(test)
        })
}

/// The repository's own tests that caught `mutants` (for each, its first
/// failing test in a module all of them have one in), cut down to a test file
/// (see [`own_test`]), if the testgen skill's verifier, placing them as it
/// places an answer, says they pass on the original and catch every mutant.
fn own_tests(
    sandbox: &Sandbox,
    root: &Path,
    func: &Function,
    original: &str,
    mutants: &[Caught],
) -> Option<String> {
    let per_mutant: Vec<Vec<OwnCase>> = mutants.iter().map(|m| own_cases(root, m)).collect();
    let module = per_mutant
        .first()?
        .iter()
        .map(|c| &c.module)
        .find(|module| {
            per_mutant
                .iter()
                .all(|cases| cases.iter().any(|c| &c.module == *module))
        })?;
    let mut text = String::new();
    let mut pairs = Vec::new();
    for cases in &per_mutant {
        let c = cases.iter().find(|c| &c.module == module)?;
        text.clone_from(&c.text);
        pairs.push((c.class.clone(), c.method.clone()));
    }
    let tests = own_test::tests_file(&text, &pairs)?;
    let input = testgen::Input {
        path: func.file.clone(),
        text: original.to_string(),
        symbol: func.symbol.clone(),
        related: Vec::new(),
    };
    let function = testgen::find_function(Language::Python, original, &func.symbol)?;
    let parsed = testgen::parse(&python_answer(&tests), Language::Python, &input, &function)?;
    let existing = read_inside(root, &testgen::test_path(Language::Python, &func.file));
    let placement = testgen::place(Language::Python, &input, &parsed, existing.as_deref());
    let files: Vec<testgen::MutantFile> = mutants
        .iter()
        .map(|m| testgen::MutantFile {
            description: m.description.clone(),
            text: m.text.clone(),
        })
        .collect();
    let score = testgen::verify(sandbox, root, &HashMap::new(), &input, &placement, &files).ok()?;
    (score.reward == 1.0).then_some(tests)
}

/// Mines covered functions (see the module docs).
pub fn mine(
    repo: &Path,
    config: &Config,
    sandbox: &Sandbox,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Mined {
    let mut out = Mined::default();
    // The state the tasks name: HEAD, checked out beside the repository.
    let head = resolve_commit(repo, "HEAD");
    let cache: PathBuf = std::env::temp_dir().join("basis-mine-trees");
    let workspaces = Workspaces::new(repo, &cache);
    let root = match &head {
        Some(sha) => match workspaces.open(&RepoRef {
            path: ".".into(),
            commit: Some(sha.clone()),
            patch: None,
        }) {
            Ok(t) => t.root,
            Err(e) => {
                out.notes
                    .push(format!("mutation: cannot check out HEAD: {e}"));
                return out;
            }
        },
        None => repo.to_path_buf(),
    };
    let files = files_of(&root);
    let suites = suites(&root, &files, config);
    if suites.is_empty() {
        out.notes.push("mutation: no test suite found (Python tests, a Cargo crate); give one with --test-command".into());
        return out;
    }
    let mut candidates = Vec::new();
    let mut ready: Vec<Suite> = Vec::new();
    for (i, suite) in suites.iter().enumerate() {
        progress(Progress {
            phase: "running the test suite",
            done: i,
            total: suites.len(),
        });
        let baseline = runner::run(
            sandbox,
            &root,
            &HashMap::new(),
            suite.language,
            &suite.tests,
        );
        match baseline {
            Ok(r) if r.passed() && !ran_some(&r) => out.notes.push(format!(
                "mutation: the {} test command ran no test ({}): no mutant could be caught; give the command that runs them with --test-command",
                suite.language.name(),
                quote(&r.command)
            )),
            Ok(r) if r.passed() => {
                let mut s = suite.clone();
                s.command = if s.command.is_empty() {
                    quote(&r.command)
                } else {
                    s.command
                };
                ready.push(s);
            }
            Ok(r) => out.notes.push(format!(
                "mutation: the {} tests do not pass as they are ({}); no tasks from {} code",
                suite.language.name(),
                r.summary(),
                suite.language.name()
            )),
            Err(e) => out.notes.push(format!("mutation: {e}")),
        }
    }
    for suite in &ready {
        let crate_dir = match &suite.tests {
            Tests::Command(argv) => argv
                .iter()
                .position(|a| a == "--manifest-path")
                .and_then(|i| argv.get(i + 1))
                .map(|m| m.trim_end_matches("Cargo.toml").to_string()),
            _ => None,
        };
        for f in &files {
            if Language::from_path(Path::new(f)) != Some(suite.language) || is_test_path(f) {
                continue;
            }
            if let Some(dir) = &crate_dir {
                if !f.starts_with(dir.as_str()) {
                    continue;
                }
            }
            let Some(text) = read_inside(&root, f) else {
                continue;
            };
            for func in functions(f, suite.language, &text) {
                candidates.push((suite.clone(), func, text.clone()));
            }
        }
    }
    let candidates = shuffled(candidates, config.seed, "mutation");
    let wants = |s: SkillId| config.skills.contains(&s);
    let need = |made: &BTreeMap<SkillId, usize>| {
        [SkillId::Edit, SkillId::Testgen, SkillId::Reproduce]
            .iter()
            .any(|s| wants(*s) && made.get(s).copied().unwrap_or(0) < config.max_per_skill)
    };
    let mut made: BTreeMap<SkillId, usize> = BTreeMap::new();
    let budget = candidates
        .len()
        .min(config.max_per_skill.saturating_mul(4).max(8));
    let mut uncovered = 0usize;
    for (n, (suite, func, text)) in candidates.iter().take(budget).enumerate() {
        if !need(&made) {
            break;
        }
        progress(Progress {
            phase: "mutating functions",
            done: n,
            total: budget,
        });
        // The tests named after the function, when they run and pass: a whole
        // suite per mutant takes minutes on a real repository.
        let targeted = narrowed(suite, func);
        let suite = match &targeted {
            Some(t) => match runner::run(sandbox, &root, &HashMap::new(), t.language, &t.tests) {
                Ok(r) if r.passed() && ran_some(&r) => t,
                _ => suite,
            },
            None => suite,
        };
        let mutants = basis_code::mutants(
            func.language,
            text,
            func.start_byte,
            func.end_byte,
            config.mutants_per_function,
        );
        let mut caught = Vec::new();
        for m in mutants {
            let overlay = HashMap::from([(func.file.clone(), m.text.clone())]);
            let Ok(r) = runner::run(sandbox, &root, &overlay, suite.language, &suite.tests) else {
                continue;
            };
            if !r.passed() && !r.outcome.timed_out {
                caught.push(Caught {
                    description: m.description,
                    message: failure_message(&r, suite.language),
                    cases: own_test::failing_cases(&format!(
                        "{}\n{}",
                        r.outcome.stdout, r.outcome.stderr
                    )),
                    text: m.text,
                });
            }
        }
        if caught.is_empty() {
            uncovered += 1;
            continue;
        }
        let repo_ref = |patch: Option<String>| RepoRef {
            path: config.repo_path_in_tasks.clone(),
            commit: head.clone(),
            patch,
        };
        let meta = |extra: &[(&str, serde_json::Value)]| {
            let mut m = BTreeMap::new();
            m.insert("files".to_string(), json!([func.file]));
            m.insert("symbol".to_string(), json!(func.symbol));
            for (k, v) in extra {
                m.insert(k.to_string(), v.clone());
            }
            Meta {
                source: "mined:mutation".into(),
                split: None,
                extra: m,
            }
        };
        let diff = |new: &str| {
            basis_skills::diff::patch_of(
                &[FileChange {
                    path: func.file.clone(),
                    old: text.clone(),
                    new: new.to_string(),
                }],
                3,
            )
        };
        let first = &caught[0];
        let delta = first.text.len() as isize - text.len() as isize;
        let doc = func
            .doc
            .as_deref()
            .map(first_sentence)
            .filter(|d| !d.is_empty());
        let name = func.symbol.rsplit('.').next().unwrap_or(&func.symbol);
        let language = Some(func.language.name().to_lowercase());
        if wants(SkillId::Edit)
            && made.get(&SkillId::Edit).copied().unwrap_or(0) < config.max_per_skill
        {
            let start_line = line_of(text, func.start_byte);
            let end_orig = line_of(text, func.end_byte.saturating_sub(1));
            let end_mutant = line_of(
                &first.text,
                (func.end_byte as isize + delta).max(0) as usize - 1,
            );
            let instruction = match &doc {
                Some(d) => format!("Fix `{name}` so that it does what its documentation says ({d}); a check of it fails with: {}", first.message),
                None => format!("Fix `{name}`: a check of it fails with: {}", first.message),
            };
            *made.entry(SkillId::Edit).or_default() += 1;
            out.tasks.push(Task {
                schema: TASK_SCHEMA.into(),
                id: task_id("edit", &[&func.file, &func.symbol, &first.description]),
                spec: Spec::Edit {
                    input: EditInput {
                        instruction,
                        file: func.file.clone(),
                        start_line,
                        end_line: end_mutant,
                    },
                    reference: EditReference {
                        replacement: lines(text, start_line, end_orig),
                        test_command: Some(suite.command.clone()),
                    },
                },
                repo: repo_ref(Some(diff(&first.text))),
                language: language.clone(),
                meta: meta(&[("mutant", json!(first.description))]),
            });
        }
        if wants(SkillId::Testgen)
            && made.get(&SkillId::Testgen).copied().unwrap_or(0) < config.max_per_skill
        {
            let listed = &caught[..caught.len().min(MUTANTS_PER_TESTGEN_TASK)];
            let tests = (func.language == Language::Python)
                .then(|| own_tests(sandbox, &root, func, text, listed))
                .flatten();
            *made.entry(SkillId::Testgen).or_default() += 1;
            out.tasks.push(Task {
                schema: TASK_SCHEMA.into(),
                id: task_id("testgen", &[&func.file, &func.symbol]),
                spec: Spec::Testgen {
                    input: TestgenInput {
                        file: func.file.clone(),
                        symbol: func.symbol.clone(),
                    },
                    reference: TestgenReference {
                        test_command: Some(suite.command.clone()),
                        mutants: listed.iter().map(|c| diff(&c.text)).collect(),
                        tests,
                    },
                },
                repo: repo_ref(None),
                language: language.clone(),
                meta: meta(&[(
                    "mutants",
                    json!(caught
                        .iter()
                        .take(MUTANTS_PER_TESTGEN_TASK)
                        .map(|c| c.description.clone())
                        .collect::<Vec<_>>()),
                )]),
            });
        }
        if wants(SkillId::Reproduce)
            && made.get(&SkillId::Reproduce).copied().unwrap_or(0) < config.max_per_skill
        {
            let issue = match &doc {
                Some(d) => format!("`{name}` in `{}` does not do what its documentation says: {d}\n\nUsed as documented, it goes wrong: {}", func.file, first.message),
                None => format!("`{name}` in `{}` gives a wrong result.\n\nUsed as the code around it expects, it goes wrong: {}", func.file, first.message),
            };
            let fix = basis_skills::diff::patch_of(
                &[FileChange {
                    path: func.file.clone(),
                    old: first.text.clone(),
                    new: text.clone(),
                }],
                3,
            );
            let test = (func.language == Language::Python)
                .then(|| own_reproduction(sandbox, &root, &func.file, text, first))
                .flatten();
            *made.entry(SkillId::Reproduce).or_default() += 1;
            out.tasks.push(Task {
                schema: TASK_SCHEMA.into(),
                id: task_id("repro", &[&func.file, &func.symbol, &first.description]),
                spec: Spec::Reproduce {
                    input: ReproduceInput { issue },
                    reference: ReproduceReference {
                        fix,
                        test_command: Some(suite.command.clone()),
                        test_patch: None,
                        test,
                    },
                },
                repo: repo_ref(Some(diff(&first.text))),
                language,
                meta: meta(&[("mutant", json!(first.description))]),
            });
        }
    }
    progress(Progress {
        phase: "mutating functions",
        done: budget,
        total: budget,
    });
    if uncovered > 0 {
        out.notes.push(format!("mutation: {uncovered} function(s) tried had no mutant the tests catch (not covered) and gave no task"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_never_name_a_test() {
        let m = scrubbed("AssertionError: 18.0 != 20.0 : bulk price\n  in test_bulk_price (tests.test_pricing.T)");
        assert!(!m.to_lowercase().contains("test"), "{m}");
        assert!(m.contains("18.0 != 20.0"), "{m}");
        assert_eq!(
            first_sentence("  Returns the price. Rounded to cents.\n"),
            "Returns the price."
        );
        assert_eq!(
            first_sentence("/// Adds\n/// two numbers"),
            "Adds two numbers"
        );
    }

    #[test]
    fn functions_of_a_python_file_with_their_docs() {
        let src = "class Cart:\n    def total(self):\n        \"\"\"The sum of the prices.\"\"\"\n        return sum(self.items)\n\n\ndef test_helper():\n    x = 1\n    return x\n\n\ndef tiny(): return 1\n";
        let f = functions("shop/cart.py", Language::Python, src);
        let names: Vec<&str> = f.iter().map(|f| f.symbol.as_str()).collect();
        assert_eq!(names, vec!["Cart.total"]);
        assert!(f[0]
            .doc
            .as_deref()
            .unwrap_or("")
            .contains("sum of the prices"));
    }

    fn suite(command: &str) -> Suite {
        Suite {
            language: Language::Python,
            tests: Tests::command(command).unwrap(),
            command: command.to_string(),
        }
    }

    fn func(symbol: &str) -> Function {
        Function {
            file: "m.py".into(),
            language: Language::Python,
            symbol: symbol.into(),
            start_byte: 0,
            end_byte: 0,
            doc: None,
        }
    }

    #[test]
    fn a_suite_is_narrowed_to_the_tests_named_after_the_function() {
        let unittest = suite("python3 -m unittest discover -v -s .");
        assert_eq!(
            narrowed(&unittest, &func("Splitter.split_at"))
                .unwrap()
                .command,
            "python3 -m unittest discover -v -s . -k split_at -k SplitAt"
        );
        let pytest = suite("python3 -m pytest -q");
        assert_eq!(
            narrowed(&pytest, &func("chunked")).unwrap().command,
            "python3 -m pytest -q -k chunked"
        );
        let cargo = suite("cargo test --offline --quiet --manifest-path a/Cargo.toml");
        assert_eq!(
            narrowed(&cargo, &func("Version.parse_loose"))
                .unwrap()
                .command,
            "cargo test --offline --quiet --manifest-path a/Cargo.toml parse_loose"
        );
        // Too generic a name to find its tests by, or a runner with no filter.
        assert!(narrowed(&unittest, &func("Cart.__init__")).is_none());
        assert!(narrowed(&unittest, &func("add")).is_none());
        assert!(narrowed(&suite("make test"), &func("chunked")).is_none());
    }

    #[test]
    fn a_run_that_matched_no_test_is_told_from_one_that_ran_some() {
        let report = |stdout: &str, stderr: &str| runner::TestReport::of_output(0, stdout, stderr);
        assert!(ran_some(&report(
            "",
            "test_x (t.T.test_x) ... ok\n\nRan 3 tests in 0.01s\n\nOK\n"
        )));
        assert!(!ran_some(&report("", "\nRan 0 tests in 0.000s\n\nOK\n")));
        assert!(ran_some(&report("2 passed, 40 deselected in 0.12s\n", "")));
        assert!(!ran_some(&report("40 deselected in 0.12s\n", "")));
        assert!(ran_some(&report(
            "\nrunning 0 tests\n\nrunning 2 tests\n..\ntest result: ok. 2 passed\n",
            ""
        )));
        assert!(!ran_some(&report(
            "\nrunning 0 tests\n\ntest result: ok. 0 passed; 0 failed\n",
            ""
        )));
    }
}
