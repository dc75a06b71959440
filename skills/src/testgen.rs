//! Unit-test generation: a function → tests for it, placed where its language
//! keeps them (Rust: the file's `#[cfg(test)] mod tests`; Python:
//! `tests/test_<module>.py`; Go: `<file>_test.go`; JavaScript/TypeScript:
//! `<file>.test.<ext>`).
//!
//! The reward is the paper's: the tests pass on the original code and fail on
//! every mutant of the function (see `basis_code::mutate`); the share of mutants
//! killed is reported beside it. The graded reward ([`grade`]) is that share,
//! for tests that pass on the original code.

use std::collections::HashMap;
use std::path::Path;

use basis_code::related::{callees, callers, defined_names, identifiers};
use basis_code::{Language, Limits, ParsedFile, Related, Symbol, SymbolKind, WorkspaceIndex};
use basis_model::{LanguageModel, Message};
use serde::{Deserialize, Serialize};

use crate::generate::{code_prompt, Generated, Options, Prompt};
use crate::parse::{extract_code, fence_name, fence_names, reindent};
use crate::prompt::{cut_piece, other_files_block};
use crate::runner::{run_tests, RunnerError, TestReport};
use crate::sandbox::Sandbox;
use crate::SkillError;

/// The task input: a function of a file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Input {
    /// Relative to the repository root.
    pub path: String,
    pub text: String,
    /// The function's name (`name` or `Container.name`).
    pub symbol: String,
    /// Its callees and callers in other files ([`input_for`] finds them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<Related>,
}

/// A function found in a file.
#[derive(Debug, Clone, Default)]
pub struct Function {
    pub name: String,
    pub container: Option<String>,
    pub start_byte: usize,
    pub end_byte: usize,
}

fn functions(language: Language, text: &str) -> Vec<Function> {
    fn walk(symbols: &[Symbol], out: &mut Vec<Function>) {
        for s in symbols {
            if matches!(s.kind, SymbolKind::Function | SymbolKind::Method) {
                out.push(Function {
                    name: s.name.clone(),
                    container: s.container.clone(),
                    start_byte: s.span.start_byte,
                    end_byte: s.span.end_byte,
                });
            }
            walk(&s.children, out);
        }
    }
    let parsed = ParsedFile::parse(language, text, &Limits::default());
    let mut out = Vec::new();
    walk(&parsed.symbols(text), &mut out);
    out
}

/// The function named `symbol` (`name` or `Container.name`) in `text`.
pub fn find_function(language: Language, text: &str, symbol: &str) -> Option<Function> {
    functions(language, text).into_iter().find(|f| {
        f.name == symbol
            || f.container.as_ref().is_some_and(|c| {
                format!("{c}.{}", f.name) == symbol || format!("{c}::{}", f.name) == symbol
            })
    })
}

/// The innermost function around byte `offset`.
pub fn function_at(language: Language, text: &str, offset: usize) -> Option<Function> {
    functions(language, text)
        .into_iter()
        .filter(|f| f.start_byte <= offset && offset <= f.end_byte)
        .min_by_key(|f| f.end_byte - f.start_byte)
}

/// The Python module name of a file (`src/pkg/mod.py` → `pkg.mod`).
pub fn python_module(path: &str) -> String {
    let p = path.strip_suffix(".py").unwrap_or(path);
    let p = p.strip_prefix("src/").unwrap_or(p);
    let p = p.strip_suffix("/__init__").unwrap_or(p);
    p.replace('/', ".")
}

/// Where tests for a file go.
pub fn test_path(language: Language, path: &str) -> String {
    let p = Path::new(path);
    let stem = p.file_stem().and_then(|s| s.to_str()).unwrap_or("module");
    let dir = p
        .parent()
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_default();
    let join = |name: String| {
        if dir.is_empty() {
            name
        } else {
            format!("{dir}/{name}")
        }
    };
    let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("js");
    match language {
        Language::Rust => path.to_string(),
        Language::Python => format!("tests/test_{}.py", python_module(path).replace('.', "_")),
        Language::Go => join(format!("{stem}_test.go")),
        Language::JavaScript | Language::TypeScript | Language::Tsx => {
            join(format!("{stem}.test.{ext}"))
        }
    }
}

const SYSTEM: &str = "You are a unit test writer. Write focused unit tests for the given \
function: normal cases, edge cases and errors, each checking exact results. Answer with only \
the test code in one fenced code block.";

fn how_to(language: Language, input: &Input, name: &str) -> String {
    match language {
        Language::Python => format!(
            "Write a Python unittest file. Import the function with `from {} import {name}`; \
             put the tests in a class deriving from unittest.TestCase.",
            python_module(&input.path)
        ),
        Language::Rust => "Write Rust `#[test]` functions for the file's `mod tests` \
             (which has `use super::*;`). Answer with the test functions only."
            .into(),
        Language::Go => {
            "Write a Go test file in the same package using the testing package.".into()
        }
        _ => {
            format!(
            "Write a test file for node's built-in runner (node:test and node:assert), importing \
             from './{}'.",
            Path::new(&input.path).file_stem().and_then(|s| s.to_str()).unwrap_or("module")
        )
        }
    }
}

/// The code of the file that explains `function`, most relevant first: the
/// file's imports; for a method, its class's header and constructor; the file's
/// definitions of the names the function uses (constants, classes, helpers), in
/// the order it first uses them; then the file's functions that call it. The
/// prompt holds as many as fit its budget, so in a long module it gets what the
/// function depends on rather than the file's first lines.
pub fn context_pieces(language: Language, text: &str, function: &Function) -> Vec<String> {
    let body = &text[function.start_byte..function.end_byte];
    let used = identifiers(body);
    let cut = cut_piece;
    let mut pieces = Vec::new();
    let imports: Vec<&str> = text.lines().filter(|l| is_import(language, l)).collect();
    if !imports.is_empty() {
        pieces.push(imports.join("\n"));
    }
    let parsed = ParsedFile::parse(language, text, &Limits::default());
    let symbols = parsed.symbols(text);
    let inside = |s: &Symbol| {
        s.span.start_byte <= function.start_byte && function.end_byte <= s.span.end_byte
    };
    // A method's class: its first line and its constructor.
    for s in symbols
        .iter()
        .filter(|s| inside(s) && s.span.start_byte < function.start_byte)
    {
        let header = text[s.span.start_byte..].lines().next().unwrap_or_default();
        let ctor = s
            .children
            .iter()
            .find(|c| matches!(c.name.as_str(), "__init__" | "new" | "constructor") && !inside(c));
        let mut piece = header.to_string();
        if let Some(c) = ctor {
            piece.push_str(&format!("\n    ...\n{}", cut(&indented(text, c))));
        }
        pieces.push(piece);
    }
    // Definitions the function uses, in the order it first uses them.
    let mut defs: Vec<(usize, String)> = symbols
        .iter()
        .filter(|s| !inside(s) && s.name != function.name)
        .filter_map(|s| {
            used.iter()
                .position(|u| *u == s.name)
                .map(|at| (at, cut(&indented(text, s))))
        })
        .collect();
    if language == Language::Python {
        // Module-level assignments (constants, tables) are no symbols.
        defs.extend(assignments(text).into_iter().filter_map(|(name, code)| {
            used.iter()
                .position(|u| *u == name)
                .map(|at| (at, cut(code)))
        }));
    }
    defs.sort_by_key(|(at, _)| *at);
    pieces.extend(defs.into_iter().map(|(_, code)| code));
    // Its callers in the file.
    let mut callers = Vec::new();
    let walk = |list: &[Symbol], callers: &mut Vec<String>| {
        for s in list {
            if matches!(s.kind, SymbolKind::Function | SymbolKind::Method)
                && !inside(s)
                && identifiers(&text[s.span.start_byte..s.span.end_byte])
                    .contains(&function.name.as_str())
            {
                callers.push(cut(&indented(text, s)));
            }
        }
    };
    walk(&symbols, &mut callers);
    for s in &symbols {
        walk(&s.children, &mut callers);
    }
    pieces.extend(callers);
    pieces
}

/// A Python module's top-level assignments (`NAME = …`, `NAME: T = …`), each
/// with its continuation lines: (name, code).
fn assignments(text: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut offset = 0;
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let start = offset;
        offset += line.len();
        i += 1;
        let name_len = line
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(line.len());
        let (name, rest) = line.split_at(name_len);
        let rest = rest.trim_start();
        let assigns = (rest.starts_with('=') && !rest.starts_with("=="))
            || (rest.starts_with(':') && rest.contains('='));
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) || !assigns {
            continue;
        }
        // Continuation: indented lines and closing brackets.
        while i < lines.len()
            && lines[i].starts_with([' ', '\t', ')', ']', '}'])
            && !lines[i].trim().is_empty()
        {
            offset += lines[i].len();
            i += 1;
        }
        out.push((name, &text[start..offset]));
    }
    out
}

/// A symbol's code from the start of its first line (so that a method keeps its indentation).
fn indented(text: &str, s: &Symbol) -> String {
    let line_start = text[..s.span.start_byte].rfind('\n').map_or(0, |i| i + 1);
    text[line_start..s.span.end_byte].to_string()
}

/// Whether a line of the file is one of its imports (at the top level).
fn is_import(language: Language, line: &str) -> bool {
    match language {
        Language::Python => line.starts_with("import ") || line.starts_with("from "),
        Language::Rust => line.starts_with("use "),
        Language::Go => line.starts_with("import ") || line.starts_with("package "),
        Language::JavaScript | Language::TypeScript | Language::Tsx => {
            line.starts_with("import ") || (line.starts_with("const ") && line.contains("require("))
        }
    }
}

/// The chat for tests of `function`, with `shown`, the first of its context
/// pieces ([`context_pieces`]), and `other`, code from other files
/// ([`Input::related`]).
pub fn render(
    input: &Input,
    language: Language,
    function: &Function,
    shown: &[String],
    other: &[Related],
) -> Vec<Message> {
    let lang = fence_name(Some(language));
    let code = &input.text[function.start_byte..function.end_byte];
    let mut user = format!("File: {}\n\n", input.path);
    if !shown.is_empty() {
        user.push_str(&format!(
            "From the same file (what the function uses and what uses it):\n```{lang}\n{}\n```\n\n",
            shown.join("\n\n")
        ));
    }
    let other: Vec<&Related> = other.iter().collect();
    user.push_str(&other_files_block(
        language,
        "From other files (what the function uses and what uses it):",
        &other,
    ));
    user.push_str(&format!(
        "Function `{}`:\n```{lang}\n{code}\n```\n\n",
        input.symbol
    ));
    user.push_str(&how_to(language, input, &function.name));
    user.push_str("\n\nTests:");
    vec![Message::system(SYSTEM), Message::user(user)]
}

/// The test code of a model's answer, ready to place: Python gets the imports it
/// needs and its pytest-style functions collected for unittest; Rust gets the
/// bodies of a `mod tests` wrapper it may have written. `None` when the answer
/// holds no code.
pub fn parse(
    completion: &str,
    language: Language,
    input: &Input,
    function: &Function,
) -> Option<String> {
    let code = extract_code(completion, fence_names(Some(language)));
    if code.trim().is_empty() {
        return None;
    }
    Some(match language {
        // A method is reached through its class: the import is the class's.
        Language::Python => python_tests(
            &code,
            Some((
                &python_module(&input.path),
                function.container.as_deref().unwrap_or(&function.name),
            )),
        ),
        Language::Rust => rust_tests(&code),
        _ => code,
    })
}

/// A Python test file from a model's code: `import unittest` and the import of
/// `function` (module, name) added where missing, and pytest-style functions
/// collected into a `TestCase` so that unittest runs them too.
pub(crate) fn python_tests(code: &str, function: Option<(&str, &str)>) -> String {
    // `from __future__` imports must come first in a file: they go above the
    // lines added here.
    let (future, rest): (Vec<&str>, Vec<&str>) = code
        .lines()
        .partition(|l| l.starts_with("from __future__ import"));
    let mut out: String = future.iter().map(|l| format!("{l}\n")).collect();
    let futures = out.len();
    let rest = rest.join("\n");
    let code = if future.is_empty() { code } else { &rest };
    if !code.contains("import unittest") {
        out.push_str("import unittest\n");
    }
    if let Some((module, name)) = function {
        let imported = code.lines().any(|l| {
            let l = l.trim();
            (l.starts_with("from ") || l.starts_with("import ")) && l.contains(name)
        });
        if !imported {
            out.push_str(&format!("from {module} import {name}\n"));
        }
    }
    // Standard modules the tests use (`random.shuffle(…)`) but never import: a
    // small model often forgets the line.
    for m in missing_stdlib_imports(code) {
        out.push_str(&format!("import {m}\n"));
    }
    if out.len() > futures {
        out.push('\n');
    }
    out.push_str(code.trim_end());
    out.push('\n');
    let has_case = code.contains("TestCase");
    let has_functions = code.lines().any(|l| l.starts_with("def test"));
    if has_functions && !has_case {
        // pytest-style functions, collected into a TestCase so unittest runs them too.
        out.push_str(
            "\n\nclass BasisCollectedTests(unittest.TestCase):\n    pass\n\n\n\
             for _name, _fn in list(globals().items()):\n    \
             if _name.startswith(\"test\") and callable(_fn):\n        \
             setattr(BasisCollectedTests, _name, lambda self, _f=_fn: _f())\n",
        );
    }
    out
}

/// Standard-library modules tests commonly use.
const STDLIB: &[&str] = &[
    "collections",
    "copy",
    "decimal",
    "fractions",
    "functools",
    "itertools",
    "json",
    "math",
    "operator",
    "os",
    "random",
    "re",
    "statistics",
    "string",
    "sys",
    "time",
    "typing",
];

/// The modules of [`STDLIB`] that `code` uses as `module.name` without binding the
/// name anywhere (an import, an assignment, a parameter).
fn missing_stdlib_imports(code: &str) -> Vec<&'static str> {
    STDLIB
        .iter()
        .copied()
        .filter(|m| {
            let used = code.match_indices(&format!("{m}.")).any(|(i, _)| {
                !code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '.')
            });
            let bound = code.lines().any(|l| {
                let t = l.trim();
                ((t.starts_with("import ") || t.starts_with("from ")) && t.contains(m))
                    || t.starts_with(&format!("{m} ="))
                    || t.starts_with(&format!("def {m}("))
                    || t.contains(&format!("({m},"))
                    || t.contains(&format!("({m})"))
                    || t.contains(&format!(", {m})"))
                    || t.contains(&format!(" as {m}"))
            });
            used && !bound
        })
        .collect()
}

fn rust_tests(code: &str) -> String {
    // Unwrap `#[cfg(test)] mod tests { ... }` if the model wrote one.
    let inner = match code.find("mod tests") {
        Some(i) => match (code[i..].find('{'), code.rfind('}')) {
            (Some(open), Some(close)) if i + open < close => &code[i + open + 1..close],
            _ => code,
        },
        None => code,
    };
    let body: Vec<&str> = inner
        .lines()
        .filter(|l| {
            let t = l.trim();
            t != "use super::*;" && t != "#[cfg(test)]"
        })
        .collect();
    let body = body.join("\n");
    reindent(body.trim_matches('\n'), "    ")
}

/// Where the tests go and the test file after placing them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The test file, relative to the repository root.
    pub path: String,
    /// Whether the file exists (`insert_at` is then an offset in its text).
    pub exists: bool,
    pub insert_at: usize,
    /// The text inserted at `insert_at`.
    pub inserted: String,
    /// The whole test file afterwards.
    pub new_text: String,
}

/// Places `tests` for a function of `input`. `existing` is the current text of
/// the test file, if it exists (for Rust, the source file itself).
pub fn place(language: Language, input: &Input, tests: &str, existing: Option<&str>) -> Placement {
    let path = test_path(language, &input.path);
    let existing = if language == Language::Rust {
        Some(input.text.as_str())
    } else {
        existing
    };
    let (insert_at, inserted) = match (language, existing) {
        (Language::Rust, Some(text)) => {
            let parsed = ParsedFile::parse(language, text, &Limits::default());
            let module = parsed
                .symbols(text)
                .into_iter()
                .find(|s| s.kind == SymbolKind::Module && s.name == "tests");
            match module {
                Some(m) if text[..m.span.end_byte].ends_with('}') => {
                    (m.span.end_byte - 1, format!("\n{}\n", tests.trim_end()))
                }
                _ => (
                    text.len(),
                    format!(
                        "{}\n#[cfg(test)]\nmod tests {{\n    use super::*;\n\n{}\n}}\n",
                        if text.ends_with('\n') { "" } else { "\n" },
                        tests.trim_end()
                    ),
                ),
            }
        }
        (_, Some(text)) => (
            text.len(),
            format!(
                "{}\n\n{}",
                if text.ends_with('\n') { "" } else { "\n" },
                tests.trim_end()
            ) + "\n",
        ),
        (_, None) => (0, tests.to_string()),
    };
    let old = existing.unwrap_or("");
    let insert_at = insert_at.min(old.len());
    let new_text = format!("{}{}{}", &old[..insert_at], inserted, &old[insert_at..]);
    Placement {
        path,
        exists: existing.is_some(),
        insert_at,
        inserted,
        new_text,
    }
}

crate::skill!(TestgenSkill, crate::SkillId::Testgen, "writing tests");

/// The default budget and sampling of this skill. The prompt's prefill dominates
/// the time to an answer on a CPU (about 120 prompt tokens/s on 2 cores), so the
/// context is kept to 1024 tokens.
pub fn default_options() -> Options {
    Options::greedy(1024, 512)
}

/// What a test generation produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub function: Function,
    /// The test code; `None` when the model gave none.
    pub tests: Option<String>,
    pub generated: Generated,
}

pub fn language_of(path: &str) -> Result<Language, SkillError> {
    Language::from_path(Path::new(path))
        .ok_or_else(|| SkillError::Input(format!("{path}: not a language Basis writes tests for")))
}

/// The function `input` names, or why there is none.
fn function_of(input: &Input) -> Result<(Language, Function), SkillError> {
    let language = language_of(&input.path)?;
    let function = find_function(language, &input.text, &input.symbol).ok_or_else(|| {
        SkillError::Input(format!("no function `{}` in {}", input.symbol, input.path))
    })?;
    Ok((language, function))
}

/// Callers and callees from other files a test prompt shows at most, each.
const RELATED_EACH: usize = 3;

impl Input {
    /// Finds the function's callees and callers in other files of the
    /// repository ([`Input::related`]): through `index`, with `read` giving a
    /// file's text (the editor's buffer where one is open).
    pub fn find_related(&mut self, index: &WorkspaceIndex, read: &dyn Fn(&str) -> Option<String>) {
        let Ok((language, function)) = function_of(self) else {
            return;
        };
        // What the file defines (the function among it) is shown from the file itself.
        let symbols =
            ParsedFile::parse(language, &self.text, &Limits::default()).symbols(&self.text);
        let defined = defined_names(&symbols);
        let body = &self.text[function.start_byte..function.end_byte];
        let mut related = callees(index, &self.path, body, &defined, read, RELATED_EACH);
        related.extend(callers(
            index,
            &self.path,
            &function.name,
            read,
            RELATED_EACH,
        ));
        self.related = related;
    }
}

/// The prompt of a test generation: the function and as many of its context
/// pieces ([`context_pieces`], then [`Input::related`]) as the budget holds, the
/// answer started as a code fence.
pub fn prompt(lm: &LanguageModel, input: &Input, opts: &Options) -> Result<Prompt, SkillError> {
    let (language, function) = function_of(input)?;
    let budget = opts.budget.within_context(lm.model.config().context_length);
    // Parsed once: the budget's search renders with several counts of them.
    let pieces = context_pieces(language, &input.text, &function);
    let related = &input.related;
    code_prompt(
        lm,
        pieces.len() + related.len(),
        budget,
        &|k| {
            let other = k.saturating_sub(pieces.len()).min(related.len());
            render(
                input,
                language,
                &function,
                &pieces[..k.min(pieces.len())],
                &related[..other],
            )
        },
        fence_name(Some(language)),
        &opts.sampling,
    )
}

/// Reads the tests out of a completion.
pub fn finish(input: &Input, _prompt: &Prompt, generated: Generated) -> Outcome {
    // `prompt` found the function: an input without one never gets here.
    let (language, function) = match function_of(input) {
        Ok(f) => f,
        Err(_) => {
            return Outcome {
                tests: None,
                function: Function::default(),
                generated,
            }
        }
    };
    let answer = generated.answer();
    // An answer cut off by the token limit ends inside a test; without that
    // test the file still runs the complete ones.
    let answer = if generated.finished {
        answer.as_str()
    } else {
        without_unfinished_test(&answer, language)
    };
    Outcome {
        tests: parse(answer, language, input, &function),
        function,
        generated,
    }
}

/// `answer` up to its last test's first line (and that test's decorators or
/// attributes), when an earlier test exists: what a cut-off answer holds whole.
fn without_unfinished_test(answer: &str, language: Language) -> &str {
    let starts_test = |line: &str| {
        let t = line.trim_start();
        match language {
            Language::Python => t.starts_with("def test") || t.starts_with("async def test"),
            Language::Rust => t.starts_with("#[test]"),
            _ => false,
        }
    };
    let mut offsets = Vec::new();
    let mut at = 0;
    for line in answer.split_inclusive('\n') {
        if starts_test(line) {
            offsets.push(at);
        }
        at += line.len();
    }
    let [.., earlier, last] = offsets[..] else {
        return answer;
    };
    // Decorators right above the last test go with it.
    let mut cut = last;
    while let Some(prev) = answer[earlier..cut].trim_end_matches('\n').rfind('\n') {
        let line = answer[earlier + prev + 1..cut].trim();
        if language == Language::Python && line.starts_with('@') {
            cut = earlier + prev + 1;
        } else {
            break;
        }
    }
    &answer[..cut]
}

/// The test target the runner narrows to for a placement.
pub fn target(language: Language, placement: &Placement) -> Option<String> {
    match language {
        Language::Rust | Language::Go => None,
        _ => Some(placement.path.clone()),
    }
}

/// How generated tests fared.
#[derive(Debug, Clone)]
pub struct Score {
    /// 1 when the tests pass on the original and fail on every mutant.
    pub reward: f64,
    /// [`grade`]: partial credit in [0, 1], 1 exactly where `reward` is.
    pub graded: f64,
    pub passed_original: bool,
    pub mutants: usize,
    pub killed: usize,
    /// The mutants the tests did not catch.
    pub survivors: Vec<String>,
    pub report: TestReport,
}

/// A bug planted in the function under test: the whole file with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutantFile {
    /// What changed, e.g. "line 5: `<` -> `>=`".
    pub description: String,
    pub text: String,
}

/// Up to `max` tree-sitter mutants of `function` in `input`'s file (the bugs
/// `basis testgen --mutants N` scores tests against).
pub fn mutants_of(input: &Input, function: &Function, max: usize) -> Vec<MutantFile> {
    let Some(language) = Language::from_path(Path::new(&input.path)) else {
        return Vec::new();
    };
    basis_code::mutants(
        language,
        &input.text,
        function.start_byte,
        function.end_byte,
        max,
    )
    .into_iter()
    .map(|m| MutantFile {
        description: m.description,
        text: m.text,
    })
    .collect()
}

/// Runs `placement`'s tests on the original code (`input`'s file, over the
/// task's starting state `base`) and on each of `mutants`: the reward is 1 when
/// they pass on the original and fail on every mutant (see the module docs).
pub fn verify(
    sandbox: &Sandbox,
    workspace: &Path,
    base: &HashMap<String, String>,
    input: &Input,
    placement: &Placement,
    mutants: &[MutantFile],
) -> Result<Score, RunnerError> {
    let language = Language::from_path(Path::new(&input.path)).ok_or_else(|| {
        RunnerError::NotAvailable("these", format!("{} is in no language we run", input.path))
    })?;
    let target = target(language, placement);
    let mut overlay = base.clone();
    overlay.insert(input.path.clone(), input.text.clone());
    overlay.insert(placement.path.clone(), placement.new_text.clone());
    let report = run_tests(sandbox, workspace, &overlay, language, target.as_deref())?;
    let passed_original = report.passed();
    let mut score = Score {
        reward: 0.0,
        graded: 0.0,
        passed_original,
        mutants: mutants.len(),
        killed: 0,
        survivors: Vec::new(),
        report,
    };
    if !passed_original {
        return Ok(score);
    }
    for m in mutants {
        let mut overlay = base.clone();
        if placement.path == input.path {
            // The tests live in the mutated file: put them into the mutant at
            // the same place (before the mutation: the same offset; after it:
            // the same distance from the end).
            let same_prefix = input
                .text
                .bytes()
                .zip(m.text.bytes())
                .take_while(|(a, b)| a == b)
                .count();
            let at = if placement.insert_at <= same_prefix {
                placement.insert_at
            } else {
                m.text
                    .len()
                    .saturating_sub(input.text.len().saturating_sub(placement.insert_at))
            };
            let at = (0..=at.min(m.text.len()))
                .rev()
                .find(|&i| m.text.is_char_boundary(i))
                .unwrap_or(0);
            overlay.insert(
                input.path.clone(),
                format!("{}{}{}", &m.text[..at], placement.inserted, &m.text[at..]),
            );
        } else {
            overlay.insert(input.path.clone(), m.text.clone());
            overlay.insert(placement.path.clone(), placement.new_text.clone());
        }
        let r = run_tests(sandbox, workspace, &overlay, language, target.as_deref())?;
        if r.passed() {
            score.survivors.push(m.description.clone());
        } else {
            score.killed += 1;
        }
    }
    score.reward = if !mutants.is_empty() && score.killed == mutants.len() {
        1.0
    } else {
        0.0
    };
    score.graded = grade(passed_original, score.killed, mutants.len());
    Ok(score)
}

/// The graded reward of tests: (they pass on the original code ? 1 : 0) × the
/// share of the listed mutants they kill; 0 with no mutants to kill (as the
/// reward: tests that catch nothing show nothing).
pub fn grade(passed_original: bool, killed: usize, mutants: usize) -> f64 {
    if !passed_original || mutants == 0 {
        return 0.0;
    }
    killed.min(mutants) as f64 / mutants as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const PY: &str = "import math\n\n\ndef clamp(x, lo, hi):\n    if x < lo:\n        return lo\n    return min(x, hi)\n";

    fn py_input() -> Input {
        Input {
            path: "pkg/util.py".into(),
            text: PY.into(),
            symbol: "clamp".into(),
            related: Vec::new(),
        }
    }

    #[test]
    fn the_graded_reward_is_the_share_of_mutants_killed_by_passing_tests() {
        // Tests that pass and kill 2 of 4 mutants: 1 × 2/4.
        assert_eq!(grade(true, 2, 4), 0.5);
        assert_eq!(grade(true, 4, 4), 1.0);
        assert_eq!(grade(true, 0, 4), 0.0);
        // Tests that fail on the original code kill nothing that counts.
        assert_eq!(grade(false, 2, 4), 0.0);
        assert_eq!(grade(true, 0, 0), 0.0);
    }

    #[test]
    fn a_cut_off_answer_loses_its_unfinished_test_only() {
        let answer = "```python\nclass T(unittest.TestCase):\n    def test_a(self):\n        self.assertEqual(1, 1)\n\n    @unittest.skip\n    def test_b(self):\n        x = f(\n";
        let kept = without_unfinished_test(answer, Language::Python);
        assert!(kept.ends_with("self.assertEqual(1, 1)\n\n"), "{kept:?}");
        // One test only: nothing to fall back on, kept as it is.
        let one = "```python\ndef test_a():\n    x = f(\n";
        assert_eq!(without_unfinished_test(one, Language::Python), one);
        let rs = "#[test]\nfn a() { assert_eq!(1, 1); }\n#[test]\nfn b() {\n    let x = ";
        assert_eq!(
            without_unfinished_test(rs, Language::Rust),
            "#[test]\nfn a() { assert_eq!(1, 1); }\n"
        );
    }

    #[test]
    fn future_imports_stay_first() {
        let code = "from __future__ import annotations\nfrom unittest import TestCase\n\n\nclass T(TestCase):\n    def test_a(self):\n        pass\n";
        let out = python_tests(code, None);
        assert!(
            out.starts_with("from __future__ import annotations\nimport unittest\n\nfrom unittest import TestCase\n"),
            "{out}"
        );
        assert_eq!(out.matches("__future__").count(), 1, "{out}");
        // Without one, nothing moves.
        let plain = "import unittest\n\n\nclass T(unittest.TestCase):\n    pass\n";
        assert_eq!(python_tests(plain, None), plain);
    }

    #[test]
    fn forgotten_standard_imports_are_added() {
        let code = "class T(unittest.TestCase):\n    def test_x(self):\n        random.seed(1)\n        self.assertEqual(math.floor(2.5), 2)\n";
        let out = python_tests(code, Some(("pkg.util", "clamp")));
        assert!(
            out.contains("import random\n") && out.contains("import math\n"),
            "{out}"
        );
        // Imported, aliased, assigned or a parameter: left alone; `np.random.x` is no use of random.
        for bound in [
            "import random\nrandom.seed(1)\n",
            "import numpy as random\nrandom.seed(1)\n",
            "random = Random()\nrandom.seed(1)\n",
            "def f(random):\n    random.seed(1)\n",
            "np.random.seed(1)\n",
        ] {
            assert!(missing_stdlib_imports(bound).is_empty(), "{bound}");
        }
    }

    #[test]
    fn context_is_what_the_function_uses_then_what_uses_it() {
        let text = "import math\nfrom shop import money\n\nRATE = 0.2\n\n\ndef unrelated():\n    return 1\n\n\ndef helper(x):\n    return x * 2\n\n\ndef price(q):\n    return helper(q) * RATE\n\n\ndef total(items):\n    return sum(price(i) for i in items)\n\n\nclass Cart:\n    def __init__(self):\n        self.items = []\n\n    def add(self, x):\n        self.items.append(x)\n\n    def cost(self):\n        return total(self.items)\n";
        let f = find_function(Language::Python, text, "price").unwrap();
        let pieces = context_pieces(Language::Python, text, &f);
        assert_eq!(
            pieces,
            [
                "import math\nfrom shop import money",
                "def helper(x):\n    return x * 2",
                "RATE = 0.2",
                "def total(items):\n    return sum(price(i) for i in items)",
            ]
        );
        // A method gets its class's header and constructor first.
        let m = find_function(Language::Python, text, "Cart.cost").unwrap();
        let pieces = context_pieces(Language::Python, text, &m);
        assert_eq!(
            pieces[1],
            "class Cart:\n    ...\n    def __init__(self):\n        self.items = []"
        );
        assert!(
            pieces.iter().any(|p| p.starts_with("def total")),
            "{pieces:?}"
        );
        assert!(
            !pieces.iter().any(|p| p.contains("unrelated")),
            "{pieces:?}"
        );
        // The prompt holds the first k pieces.
        let input = Input {
            path: "shop/price.py".into(),
            text: text.into(),
            symbol: "price".into(),
            related: Vec::new(),
        };
        let pieces = context_pieces(Language::Python, text, &f);
        let user = &render(&input, Language::Python, &f, &pieces[..2], &[])[1].content;
        assert!(
            user.contains("def helper") && !user.contains("RATE = 0.2"),
            "{user}"
        );
        // Code from other files goes in a block of its own, each piece under its path.
        let other = [basis_code::Related {
            path: "shop/cart.py".into(),
            name: "checkout".into(),
            role: basis_code::Role::Caller,
            code: "def checkout(cart):\n    return price(len(cart))\n".into(),
        }];
        let user = &render(&input, Language::Python, &f, &pieces[..1], &other)[1].content;
        assert!(
            user.contains("From other files (what the function uses and what uses it):\n```python\n# shop/cart.py\ndef checkout(cart):\n    return price(len(cart))\n```"),
            "{user}"
        );
    }

    #[test]
    fn functions_are_found_by_name_and_position() {
        let f = find_function(Language::Python, PY, "clamp").unwrap();
        assert!(PY[f.start_byte..f.end_byte].starts_with("def clamp"));
        let at = function_at(Language::Python, PY, PY.find("min(").unwrap()).unwrap();
        assert_eq!(at.name, "clamp");
        assert!(function_at(Language::Python, PY, 0).is_none());
        let rs = "struct S;\nimpl S {\n    fn get(&self) -> u8 { 1 }\n}\n";
        assert!(find_function(Language::Rust, rs, "get").is_some());
        assert!(find_function(Language::Rust, rs, "S::get").is_some());
        assert!(find_function(Language::Rust, rs, "nope").is_none());
    }

    #[test]
    fn test_files_go_where_the_language_keeps_them() {
        assert_eq!(
            test_path(Language::Python, "pkg/util.py"),
            "tests/test_pkg_util.py"
        );
        assert_eq!(
            test_path(Language::Python, "src/app/core.py"),
            "tests/test_app_core.py"
        );
        assert_eq!(python_module("src/app/__init__.py"), "app");
        assert_eq!(test_path(Language::Go, "x/y.go"), "x/y_test.go");
        assert_eq!(
            test_path(Language::JavaScript, "lib/a.mjs"),
            "lib/a.test.mjs"
        );
        assert_eq!(test_path(Language::TypeScript, "a.ts"), "a.test.ts");
        assert_eq!(test_path(Language::Rust, "src/lib.rs"), "src/lib.rs");
    }

    #[test]
    fn python_answers_get_imports_and_a_test_case() {
        let i = py_input();
        let f = find_function(Language::Python, PY, "clamp").unwrap();
        let answer = "Here are tests:\n```python\ndef test_low():\n    assert clamp(0, 1, 3) == 1\n```\nThese cover the low case.";
        let t = parse(answer, Language::Python, &i, &f).unwrap();
        assert!(
            t.starts_with("import unittest\nfrom pkg.util import clamp\n"),
            "{t}"
        );
        assert!(t.contains("class BasisCollectedTests(unittest.TestCase)"));
        let answer = "```python\nimport unittest\nfrom pkg.util import clamp\n\nclass T(unittest.TestCase):\n    def test_a(self):\n        self.assertEqual(clamp(5, 1, 3), 3)\n```";
        let t = parse(answer, Language::Python, &i, &f).unwrap();
        assert!(
            t.starts_with("import unittest\nfrom pkg.util import clamp\n\nclass T"),
            "{t}"
        );
        assert!(!t.contains("BasisCollectedTests"));
        assert!(parse("No tests needed.", Language::Python, &i, &f).is_none());
        // A method: its class is imported, never the method itself (which
        // would fail the whole file with an ImportError).
        let cart = "class Cart:\n    def count(self):\n        return 0\n";
        let m = Input {
            path: "shop/cart.py".into(),
            text: cart.into(),
            symbol: "Cart.count".into(),
            related: Vec::new(),
        };
        let f = find_function(Language::Python, cart, "Cart.count").unwrap();
        let t = parse(
            "```python\ndef test_empty():\n    assert Cart().count() == 0\n```",
            Language::Python,
            &m,
            &f,
        )
        .unwrap();
        assert!(
            t.starts_with("import unittest\nfrom shop.cart import Cart\n"),
            "{t}"
        );
        assert!(!t.contains("import count"), "{t}");
        for (k, _) in answer.char_indices() {
            let _ = parse(&answer[..k], Language::Python, &i, &f);
        }
    }

    #[test]
    fn rust_tests_go_into_the_files_tests_module() {
        let src = "pub fn add(a: u8, b: u8) -> u8 {\n    a + b\n}\n";
        let i = Input {
            path: "src/lib.rs".into(),
            text: src.into(),
            symbol: "add".into(),
            related: Vec::new(),
        };
        let f = find_function(Language::Rust, src, "add").unwrap();
        let answer = "```rust\n#[cfg(test)]\nmod tests {\n    use super::*;\n\n    #[test]\n    fn adds() {\n        assert_eq!(add(1, 2), 3);\n    }\n}\n```";
        let t = parse(answer, Language::Rust, &i, &f).unwrap();
        assert_eq!(
            t,
            "    #[test]\n    fn adds() {\n        assert_eq!(add(1, 2), 3);\n    }\n"
        );
        let p = place(Language::Rust, &i, &t, None);
        assert_eq!(p.path, "src/lib.rs");
        assert_eq!(p.insert_at, src.len());
        assert!(p.new_text.starts_with(src));
        assert!(p.new_text.contains(
            "#[cfg(test)]\nmod tests {\n    use super::*;\n\n    #[test]\n    fn adds()"
        ));
        // An existing `mod tests` receives the new functions before its brace.
        let with_mod = format!("{src}\n#[cfg(test)]\nmod tests {{\n    use super::*;\n}}\n");
        let i = Input {
            text: with_mod.clone(),
            ..i
        };
        let p = place(Language::Rust, &i, &t, None);
        assert_eq!(p.new_text.matches("mod tests").count(), 1);
        assert!(p.new_text.ends_with("    }\n}\n"), "{}", p.new_text);
        assert!(p.insert_at < with_mod.len());
    }

    #[test]
    fn placement_appends_to_an_existing_test_file() {
        let i = py_input();
        let p = place(
            Language::Python,
            &i,
            "def test_b():\n    pass\n",
            Some("import x\n"),
        );
        assert!(p.exists);
        assert_eq!(p.new_text, "import x\n\n\ndef test_b():\n    pass\n");
        let p = place(Language::Python, &i, "T\n", None);
        assert!(!p.exists);
        assert_eq!((p.insert_at, p.new_text.as_str()), (0, "T\n"));
    }
}
