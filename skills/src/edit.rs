//! Code editing: an instruction + a location (a byte range of a file) → the
//! replacement for that range.
//!
//! The model sees the code to change with as much surrounding context as the
//! prompt budget allows (whole lines before and after, nearest first), and
//! answers with the new code in a fenced block. The parser takes the code out of
//! whatever the model says and gives it the selection's indentation. The reward:
//! the task's tests pass in the sandbox after the edit; where a task has no tests,
//! the replacement matches the reference up to layout. The graded reward gives
//! partial credit: the share of the task's tests that pass, or without tests the
//! replacement's token-level similarity to the reference.

use std::collections::HashMap;
use std::path::Path;

use basis_code::related::{callees, callees_in_file, defined_names};
use basis_code::{Language, Limits, ParsedFile, Related, WorkspaceIndex};
use basis_model::{LanguageModel, Message};
use serde::{Deserialize, Serialize};

use crate::generate::{code_prompt, Generated, Options, Prompt};
use crate::parse::{
    extract_code, fence_name, fence_names, first_indent, normalized_code, reindent,
};
use crate::prompt::other_files_block;
use crate::runner::{run, RunnerError, TestCounts, TestReport, Tests};
use crate::sandbox::Sandbox;
use crate::SkillError;

/// The task input: the file, the range to edit and the instruction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Input {
    /// Relative to the repository root.
    pub path: String,
    pub text: String,
    pub start_byte: usize,
    pub end_byte: usize,
    pub instruction: String,
    /// Definitions the code to change uses, from the rest of the file and from
    /// other files ([`Input::find_related`] finds them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<Related>,
}

/// The reference of an edit task: tests that must pass after the edit, or the
/// expected replacement.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Reference {
    pub tests: Option<Tests>,
    pub code: Option<String>,
}

crate::skill!(EditSkill, crate::SkillId::Edit, "editing", partial);

/// The default budget and sampling of this skill.
pub fn default_options() -> Options {
    Options::greedy(1536, 384)
}

impl Input {
    pub fn language(&self) -> Option<Language> {
        Language::from_path(Path::new(&self.path))
    }

    /// Checks the range: inside the text and on character boundaries.
    pub fn validate(&self) -> Result<(), SkillError> {
        if self.instruction.trim().is_empty() {
            return Err(SkillError::Input(
                "the instruction is empty; say what to change".into(),
            ));
        }
        if self.start_byte > self.end_byte
            || self.end_byte > self.text.len()
            || !self.text.is_char_boundary(self.start_byte)
            || !self.text.is_char_boundary(self.end_byte)
        {
            return Err(SkillError::Input(format!(
                "the range {}..{} is not inside {} ({} bytes)",
                self.start_byte,
                self.end_byte,
                self.path,
                self.text.len()
            )));
        }
        Ok(())
    }

    /// Finds the definitions the code to change uses ([`Input::related`]):
    /// those of the file outside the lines the prompt shows around it, then
    /// those of other files of the repository, through `index`, with `read`
    /// giving a file's text (the editor's buffer where one is open).
    pub fn find_related(&mut self, index: &WorkspaceIndex, read: &dyn Fn(&str) -> Option<String>) {
        let Some(language) = self.language() else {
            return;
        };
        if self.validate().is_err() {
            return;
        }
        let (before, after) = self.context(MAX_CONTEXT_LINES);
        let shown = (self.start_byte - before.len(), self.end_byte + after.len());
        let range = (self.start_byte, self.end_byte);
        let symbols =
            ParsedFile::parse(language, &self.text, &Limits::default()).symbols(&self.text);
        let mut related =
            callees_in_file(&self.path, &self.text, &symbols, range, shown, RELATED_MAX);
        let defined = defined_names(&symbols);
        let code = &self.text[self.start_byte..self.end_byte];
        let room = RELATED_MAX - related.len();
        related.extend(callees(index, &self.path, code, &defined, read, room));
        self.related = related;
    }

    /// Up to `k` whole lines before and after the range.
    fn context(&self, k: usize) -> (&str, &str) {
        let before = &self.text[..self.start_byte];
        let mut start = before.len();
        for _ in 0..=k {
            match before[..start].rfind('\n') {
                Some(i) => start = i,
                None => {
                    start = 0;
                    break;
                }
            }
        }
        let before = if start == 0 {
            before
        } else {
            &before[start + 1..]
        };
        let after = &self.text[self.end_byte..];
        let end = after
            .match_indices('\n')
            .nth(k.saturating_sub(1))
            .map(|(i, _)| i + 1)
            .unwrap_or(after.len());
        (
            if k == 0 { "" } else { before },
            if k == 0 { "" } else { &after[..end] },
        )
    }
}

/// Lines of context on each side at most: more makes a small model repeat the
/// file instead of editing the range.
const MAX_CONTEXT_LINES: usize = 12;

/// Definitions an edit prompt shows at most, beside the lines around the code.
const RELATED_MAX: usize = 3;

const SYSTEM: &str = "You are a code editing assistant. You rewrite the lines you are \
given as the instruction says, and answer with only the rewritten lines in one fenced code block.";

/// How many lines of context on each side an edit prompt may show.
fn context_lines(input: &Input) -> usize {
    input.text.lines().count().min(MAX_CONTEXT_LINES)
}

/// The chat for an edit with `k` pieces of context: up to
/// [`MAX_CONTEXT_LINES`] lines on each side first, then the definitions it uses
/// ([`Input::related`]). The context comes first, then the instruction and the
/// lines to rewrite last, where a small model attends most.
pub fn render(input: &Input, k: usize) -> Vec<Message> {
    let lang = fence_name(input.language());
    let lines = context_lines(input);
    let (before, after) = input.context(k.min(lines));
    let code = input.text[input.start_byte..input.end_byte].trim_end_matches('\n');
    let mut user = String::new();
    if let Some(language) = input.language() {
        let shown = k.saturating_sub(lines).min(input.related.len());
        let related: Vec<&Related> = input.related[..shown].iter().collect();
        user.push_str(&other_files_block(
            language,
            "Definitions it uses:",
            &related,
        ));
    }
    if !(before.trim().is_empty() && after.trim().is_empty()) {
        user.push_str(&format!(
            "The code around it in {}:\n```{lang}\n{before}{code}\n{}\n```\n\n",
            input.path,
            after.trim_end_matches('\n')
        ));
    }
    user.push_str(&format!(
        "Instruction: {}\n\nRewrite these lines as the instruction says; answer with the new lines only:\n```{lang}\n{code}\n```",
        input.instruction.trim()
    ));
    vec![Message::system(SYSTEM), Message::user(user)]
}

/// The replacement for the range in a model's answer (`Generated::answer`), indented like the range
/// and ending in a newline exactly when the range does. `None` when the answer
/// holds no code.
pub fn parse(completion: &str, input: &Input) -> Option<String> {
    let code = extract_code(completion, fence_names(input.language()));
    if code.trim().is_empty() {
        return None;
    }
    let original = &input.text[input.start_byte..input.end_byte];
    // A selection that starts mid-line keeps the line's text before it, so the
    // first line must not be indented again.
    let line_start = input.text[..input.start_byte]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let mid_line = !input.text[line_start..input.start_byte].trim().is_empty()
        || (input.start_byte > line_start && !original.contains('\n'));
    let mut out = if mid_line {
        let r = reindent(&code, "");
        r.trim_end_matches('\n').to_string()
    } else {
        reindent(&code, first_indent(original))
    };
    if original.ends_with('\n') && !out.ends_with('\n') {
        out.push('\n');
    } else if !original.ends_with('\n') {
        while out.ends_with('\n') {
            out.pop();
        }
    }
    Some(out)
}

/// The replacement an unfinished answer holds so far (its complete lines,
/// indented as [`parse`] does), for a preview that fills in as the model writes.
pub fn partial(input: &Input, answer: &str) -> Option<String> {
    let lines = &answer[..answer.rfind('\n')? + 1];
    // Only the opening fence so far: no code yet.
    let body = lines.trim();
    if body.starts_with("```") && !body.contains('\n') {
        return None;
    }
    let mut code = parse(lines, input)?;
    // The last line shown is complete: a selection without a final newline
    // would have it cut.
    if !code.ends_with('\n') {
        code.push('\n');
    }
    Some(code)
}

/// The whole file after the edit.
pub fn apply(input: &Input, replacement: &str) -> String {
    let mut s = String::with_capacity(input.text.len() + replacement.len());
    s.push_str(&input.text[..input.start_byte]);
    s.push_str(replacement);
    s.push_str(&input.text[input.end_byte..]);
    s
}

/// What an edit produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The new code for the range; `None` when the model gave none.
    pub replacement: Option<String>,
    pub generated: Generated,
}

/// The prompt of an edit: the instruction and the code around the selection,
/// the answer started as a code fence.
pub fn prompt(lm: &LanguageModel, input: &Input, opts: &Options) -> Result<Prompt, SkillError> {
    input.validate()?;
    let mut budget = opts.budget.within_context(lm.model.config().context_length);
    // An edit rarely grows the code more than a few times; a bound keeps a model
    // that runs on from writing a whole file.
    let selected = input.end_byte - input.start_byte;
    budget.max_new_tokens = budget.max_new_tokens.min(96 + selected / 2);
    code_prompt(
        lm,
        context_lines(input) + input.related.len(),
        budget,
        &|k| render(input, k),
        fence_name(input.language()),
        &opts.sampling,
    )
}

/// Reads the replacement out of a completion.
pub fn finish(input: &Input, _prompt: &Prompt, generated: Generated) -> Outcome {
    Outcome {
        replacement: parse(&generated.answer(), input),
        generated,
    }
}

/// The score of an edit.
#[derive(Debug, Clone)]
pub struct Score {
    pub reward: f64,
    /// Partial credit in [0, 1], 1 where `reward` is: how far the answer got
    /// from the starting code toward passing ([`tests_grade`]), or without
    /// tests toward the reference ([`change_grade`]). Leaving the code as it
    /// was earns 0.
    pub graded: f64,
    /// The test run, where the task has tests.
    pub report: Option<TestReport>,
}

/// The graded reward of an edit's test run: 1 when the tests pass; else the
/// share of the tests failing on the starting code (`start`, the selection
/// unedited) that now pass, or without such a count the share of the tests
/// that pass. 0 when the run counts none, or says none failed though it did
/// (it broke somewhere the counts do not show). Measuring from the start keeps
/// an answer that changes nothing from earning the tests it does not touch.
pub fn tests_grade(report: &TestReport, start: Option<TestCounts>) -> f64 {
    if report.passed() {
        return 1.0;
    }
    if report.outcome.timed_out || report.outcome.cancelled {
        return 0.0;
    }
    let Some(c) = report.counts().filter(|c| c.failed > 0) else {
        return 0.0;
    };
    match start {
        Some(s) if s.failed > 0 => {
            ((c.passed as f64 - s.passed as f64) / s.failed as f64).clamp(0.0, 1.0)
        }
        _ => c.passed as f64 / c.total() as f64,
    }
}

/// The graded reward of an edit without tests: how much closer to the reference
/// the answer is than the starting code was, as a share of the way (token
/// [`similarity`]); 0 for the starting code itself or anything further off.
pub fn change_grade(original: &str, reference: &str, answer: &str) -> f64 {
    let before = similarity(reference, original);
    let after = similarity(reference, answer);
    if before >= 1.0 {
        return after;
    }
    ((after - before) / (1.0 - before)).clamp(0.0, 1.0)
}

/// What the task's tests say of the starting code (the selection unedited):
/// where [`tests_grade`] measures from. `None` when the run counts nothing.
pub fn start_counts(
    sandbox: &Sandbox,
    workspace: &Path,
    base: &HashMap<String, String>,
    input: &Input,
    tests: &Tests,
) -> Option<TestCounts> {
    let language = input.language()?;
    let mut overlay = base.clone();
    overlay.insert(input.path.clone(), input.text.clone());
    let report = run(sandbox, workspace, &overlay, language, tests).ok()?;
    if report.passed() {
        return report.counts().or(Some(TestCounts {
            passed: 1,
            failed: 0,
        }));
    }
    report.counts()
}

/// Code as tokens for [`similarity`]: runs of letters, digits and `_`, and
/// every other character but whitespace on its own.
fn code_tokens(code: &str) -> Vec<&str> {
    let mut tokens = Vec::new();
    let mut word: Option<usize> = None;
    for (i, c) in code.char_indices() {
        let in_word = c.is_alphanumeric() || c == '_';
        match (word, in_word) {
            (None, true) => word = Some(i),
            (Some(start), false) => {
                tokens.push(&code[start..i]);
                word = None;
            }
            _ => {}
        }
        if !in_word && !c.is_whitespace() {
            tokens.push(&code[i..i + c.len_utf8()]);
        }
    }
    if let Some(start) = word {
        tokens.push(&code[start..]);
    }
    tokens
}

/// How close `code` is to `reference`, token by token, layout aside: 1 minus
/// the tokens to insert and delete to turn one into the other over the tokens
/// of both (2 × matched / (|a| + |b|)), so 1 for the same tokens and 0 for
/// none in common.
pub fn similarity(reference: &str, code: &str) -> f64 {
    let (a, b) = (code_tokens(reference), code_tokens(code));
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let matched: usize = similar::capture_diff_slices(similar::Algorithm::Myers, &a, &b)
        .iter()
        .map(|op| match *op {
            similar::DiffOp::Equal { len, .. } => len,
            _ => 0,
        })
        .sum();
    2.0 * matched as f64 / (a.len() + b.len()) as f64
}

/// The reward of `replacement` (see the module docs). `workspace` is the task's
/// repository and `base` the files laid over it (the task's starting state); the
/// edited file goes over those in the sandbox's copy.
pub fn verify(
    sandbox: &Sandbox,
    workspace: &Path,
    base: &HashMap<String, String>,
    input: &Input,
    replacement: Option<&str>,
    reference: &Reference,
    start: Option<TestCounts>,
) -> Result<Score, RunnerError> {
    let Some(replacement) = replacement else {
        return Ok(Score {
            reward: 0.0,
            graded: 0.0,
            report: None,
        });
    };
    if let Some(tests) = &reference.tests {
        let language = input.language().ok_or_else(|| {
            RunnerError::NotAvailable("these", format!("{} is in no language we run", input.path))
        })?;
        let mut overlay = base.clone();
        overlay.insert(input.path.clone(), apply(input, replacement));
        let report = run(sandbox, workspace, &overlay, language, tests)?;
        return Ok(Score {
            reward: if report.passed() { 1.0 } else { 0.0 },
            graded: tests_grade(&report, start),
            report: Some(report),
        });
    }
    let Some(code) = reference.code.as_deref() else {
        return Ok(Score {
            reward: 0.0,
            graded: 0.0,
            report: None,
        });
    };
    let matched = normalized_code(code) == normalized_code(replacement);
    Ok(Score {
        reward: if matched { 1.0 } else { 0.0 },
        graded: if matched {
            1.0
        } else {
            change_grade(
                &input.text[input.start_byte..input.end_byte],
                code,
                replacement,
            )
        },
        report: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(text: &str, sel: &str, instruction: &str) -> Input {
        let start = text.find(sel).unwrap();
        Input {
            path: "pkg/mod.py".into(),
            text: text.into(),
            start_byte: start,
            end_byte: start + sel.len(),
            instruction: instruction.into(),
            related: Vec::new(),
        }
    }

    const FILE: &str = "import math\n\nclass A:\n    def f(self, x):\n        return x + 1\n\n    def g(self):\n        pass\n";

    #[test]
    fn context_grows_line_by_line() {
        let i = input(FILE, "        return x + 1\n", "double it");
        assert_eq!(i.context(0), ("", ""));
        assert_eq!(i.context(1), ("    def f(self, x):\n", "\n"));
        let (b, a) = i.context(100);
        assert_eq!(b, "import math\n\nclass A:\n    def f(self, x):\n");
        assert_eq!(a, "\n    def g(self):\n        pass\n");
        let msgs = render(&i, 2);
        assert!(msgs[1].content.contains("Instruction: double it"));
        assert!(msgs[1]
            .content
            .contains("```python\n        return x + 1\n```"));
    }

    #[test]
    fn definitions_it_uses_come_after_the_lines_around_it() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        std::fs::create_dir_all(r.join("pkg")).unwrap();
        let helpers = "def scale(x, factor):\n    return x * factor\n";
        std::fs::write(r.join("pkg/helpers.py"), helpers).unwrap();
        // `limit` is defined in the file, more than 12 lines above the code.
        let mut text = String::from("def limit(x):\n    return min(x, 10)\n");
        text.push_str(&"\n".repeat(20));
        text.push_str("def f(x):\n    return limit(scale(x, 2))\n");
        std::fs::write(r.join("pkg/mod.py"), &text).unwrap();
        let index = WorkspaceIndex::build(
            r.to_path_buf(),
            Limits::default(),
            &mut |_| {},
            &std::sync::atomic::AtomicBool::new(false),
        )
        .unwrap();
        let mut i = input(&text, "    return limit(scale(x, 2))\n", "clamp at 5");
        i.find_related(&index, &|p| std::fs::read_to_string(r.join(p)).ok());
        let found: Vec<(&str, &str)> = i
            .related
            .iter()
            .map(|r| (r.path.as_str(), r.name.as_str()))
            .collect();
        assert_eq!(
            found,
            [("pkg/mod.py", "limit"), ("pkg/helpers.py", "scale")]
        );
        let lines = context_lines(&i);
        assert!(!render(&i, lines)[1].content.contains("Definitions it uses"));
        let user = &render(&i, lines + 2)[1].content;
        assert!(
            user.starts_with("Definitions it uses:\n```python\n# pkg/mod.py\ndef limit(x):"),
            "{user}"
        );
        assert!(
            user.contains("# pkg/helpers.py\ndef scale(x, factor):"),
            "{user}"
        );
    }

    #[test]
    fn parse_reindents_and_keeps_the_trailing_newline() {
        let i = input(FILE, "        return x + 1\n", "double it");
        let answer = "Here is the new code:\n```python\nreturn x * 2\n```\nDone!";
        assert_eq!(parse(answer, &i).as_deref(), Some("        return x * 2\n"));
        // Unfenced, with chatter after.
        let answer = "return x * 2\n\nThis doubles x instead of adding one.";
        assert_eq!(parse(answer, &i).as_deref(), Some("        return x * 2\n"));
        // Truncated inside the fence.
        assert_eq!(
            parse("```py\nif x:\n    return x * 2", &i).as_deref(),
            Some("        if x:\n            return x * 2\n")
        );
        assert_eq!(parse("I can't do that.", &i), None);
        assert_eq!(parse("", &i), None);
        // A selection inside a line: no indentation, no newline added.
        let i = input(FILE, "x + 1", "use a constant");
        assert_eq!(parse("```\nx + ONE\n```", &i).as_deref(), Some("x + ONE"));
        assert_eq!(
            apply(&i, "x + ONE").lines().nth(4),
            Some("        return x + ONE")
        );
    }

    #[test]
    fn parse_never_panics_on_prefixes_of_an_answer() {
        let i = input(FILE, "        return x + 1\n", "double it");
        let answer = "Sure — voilà:\n```python\n        return x * 2  # é\n```\nThat's it.";
        for (k, _) in answer.char_indices() {
            let _ = parse(&answer[..k], &i);
        }
    }

    #[test]
    fn partial_answers_grow_line_by_line_into_the_final_replacement() {
        let i = input(FILE, "        return x + 1\n", "double it");
        let answer = "```python\nif x:\n    return x * 2\nreturn 0\n";
        assert_eq!(partial(&i, "```python\n"), None);
        assert_eq!(partial(&i, "```python\nif x"), None, "no complete line yet");
        assert_eq!(
            partial(&i, "```python\nif x:\n    ret").as_deref(),
            Some("        if x:\n")
        );
        assert_eq!(partial(&i, answer), parse(answer, &i));
    }

    #[test]
    fn bad_ranges_and_instructions_are_input_errors() {
        let mut i = input(FILE, "x + 1", "x");
        i.end_byte = FILE.len() + 1;
        assert!(matches!(i.validate(), Err(SkillError::Input(_))));
        let mut i = input("é", "é", "x");
        i.end_byte = 1;
        assert!(matches!(i.validate(), Err(SkillError::Input(_))));
        let i = input(FILE, "x + 1", "  ");
        assert!(matches!(i.validate(), Err(SkillError::Input(_))));
    }

    fn report(code: i32, stdout: &str, stderr: &str) -> TestReport {
        TestReport::of_output(code, stdout, stderr)
    }

    #[test]
    fn an_edit_that_passes_3_of_5_tests_earns_three_fifths() {
        let unittest = "test_a ... ok\ntest_b ... FAIL\ntest_c ... ERROR\n\n----------------------------------------------------------------------\nRan 5 tests in 0.003s\n\nFAILED (failures=1, errors=1)\n";
        let pytest = "..F.F                                                                    [100%]\n=================================== FAILURES ===================================\n(...)\n=========================== short test summary info ============================\nFAILED tests/test_x.py::test_b - assert 1 == 2\nFAILED tests/test_x.py::test_e - assert 3 == 4\n2 failed, 3 passed in 0.05s\n";
        let cargo = "\nrunning 4 tests\n..F.\ntest result: FAILED. 3 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s\n\nrunning 1 test\nF\ntest result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s\n";
        let node = "# tests 5\n# suites 0\n# pass 3\n# fail 2\n# cancelled 0\n# skipped 0\n";
        for (runner, r) in [
            ("unittest", report(1, "", unittest)),
            ("pytest", report(1, pytest, "")),
            ("cargo", report(101, cargo, "")),
            ("node", report(1, node, "")),
        ] {
            assert_eq!(tests_grade(&r, None), 0.6, "{runner}");
        }
        // Passing is 1 whatever the counts; a run that failed with no counts
        // to read (a syntax error, no summary), or whose counts say nothing
        // failed, 0; a time-out 0.
        assert_eq!(
            tests_grade(&report(0, "", "Ran 5 tests in 0.1s\n\nOK\n"), None),
            1.0
        );
        assert_eq!(
            tests_grade(&report(1, "", "SyntaxError: invalid syntax\n"), None),
            0.0
        );
        assert_eq!(
            tests_grade(&report(1, "", "Ran 5 tests in 0.1s\n\nOK\n"), None),
            0.0
        );
        let mut timed_out = report(1, "", unittest);
        timed_out.outcome.timed_out = true;
        assert_eq!(tests_grade(&timed_out, None), 0.0);
        // Measured from the starting code: it passed 2 of 5, the answer 3 of 5,
        // one of the three failing tests fixed; as many as at the start, none.
        let start = Some(TestCounts {
            passed: 2,
            failed: 3,
        });
        assert_eq!(tests_grade(&report(1, "", unittest), start), 1.0 / 3.0);
        let same = "Ran 5 tests in 0.1s\n\nFAILED (failures=3)\n";
        assert_eq!(tests_grade(&report(1, "", same), start), 0.0);
        let worse = "Ran 5 tests in 0.1s\n\nFAILED (failures=5)\n";
        assert_eq!(tests_grade(&report(1, "", worse), start), 0.0);
    }

    #[test]
    fn without_tests_an_edit_earns_its_token_similarity_to_the_reference() {
        // [return, x, *, 2] against [return, x, *, 3]: 3 of 4 tokens in
        // common on each side, 2 × 3 / 8.
        assert_eq!(similarity("return x * 2", "return x * 3"), 0.75);
        // Layout aside, the same tokens.
        assert_eq!(similarity("return   x*2", "return x *\n    2"), 1.0);
        // [f, (, a, )] against [f, (, a, ,, b, )]: 4 in common, 2 × 4 / 10.
        assert_eq!(similarity("f(a)", "f(a, b)"), 0.8);
        assert_eq!(similarity("alpha", "beta"), 0.0);
        // Graded from the starting code: unchanged earns 0, the reference 1,
        // halfway (one of two changed tokens) in between.
        let (start, reference) = ("f(a, b) + 1", "g(a, c) + 1");
        assert_eq!(change_grade(start, reference, start), 0.0);
        assert_eq!(change_grade(start, reference, reference), 1.0);
        let half = change_grade(start, reference, "g(a, b) + 1");
        assert!(half > 0.3 && half < 0.7, "{half}");
        assert_eq!(change_grade(start, reference, "zzz"), 0.0);
        let sb = Sandbox::detect();
        let dir = tempfile::tempdir().unwrap();
        let i = input(FILE, "        return x + 1\n", "double it");
        let r = Reference {
            tests: None,
            code: Some("return x * 2".into()),
        };
        let s = verify(
            &sb,
            dir.path(),
            &HashMap::new(),
            &i,
            Some("        return x * 3\n"),
            &r,
            None,
        )
        .unwrap();
        // From `return x + 1` (half the reference's tokens) to `return x * 3`
        // (three quarters): half the way.
        assert_eq!((s.reward, s.graded), (0.0, 0.5));
        let s = verify(
            &sb,
            dir.path(),
            &HashMap::new(),
            &i,
            Some("        return   x * 2\n"),
            &r,
            None,
        )
        .unwrap();
        assert_eq!((s.reward, s.graded), (1.0, 1.0));
    }

    #[test]
    fn reference_match_ignores_layout_only() {
        let sb = Sandbox::detect();
        let dir = tempfile::tempdir().unwrap();
        let i = input(FILE, "        return x + 1\n", "double it");
        let r = Reference {
            tests: None,
            code: Some("return   x * 2".into()),
        };
        let good = verify(
            &sb,
            dir.path(),
            &HashMap::new(),
            &i,
            Some("        return x * 2\n"),
            &r,
            None,
        )
        .unwrap();
        assert_eq!(good.reward, 1.0);
        let bad = verify(
            &sb,
            dir.path(),
            &HashMap::new(),
            &i,
            Some("        return x * 3\n"),
            &r,
            None,
        )
        .unwrap();
        assert_eq!(bad.reward, 0.0);
        assert_eq!(
            verify(&sb, dir.path(), &HashMap::new(), &i, None, &r, None)
                .unwrap()
                .reward,
            0.0
        );
    }
}
