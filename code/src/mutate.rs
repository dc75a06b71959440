//! Mutants of one function, for judging generated unit tests.
//!
//! A test suite written for a function is worth something when it passes on the
//! function as written and fails on small, plausible bugs planted in it. This module
//! plants those bugs: given a file, its language and the byte span of one function,
//! [`mutants`] parses the file with tree-sitter and returns copies of the whole file,
//! each with exactly one change inside the function's body (never its name or
//! parameters). The share of mutants a suite "kills" (fails on) scores the suite.
//!
//! The kinds of change ([`MutationKind`]):
//!
//! - [`FlipComparison`](MutationKind::FlipComparison): a comparison operator becomes
//!   its negation: `<` and `>=`, `<=` and `>`, `==` and `!=` (and `===`, `!==` in
//!   JavaScript and TypeScript) swap.
//! - [`FlipBoolean`](MutationKind::FlipBoolean): `and` and `or` (Python), `&&` and
//!   `||` (the others) swap.
//! - [`OffByOne`](MutationKind::OffByOne): a plain decimal integer literal `n`
//!   becomes `n + 1` (a Rust suffix is kept when the new value still fits its type).
//! - [`SwapArguments`](MutationKind::SwapArguments): the first two arguments of a
//!   call trade places (not keyword, spread or type arguments, nor equal texts).
//! - [`RemoveStatement`](MutationKind::RemoveStatement): one statement of the body,
//!   in any nested block, goes away; a Python block left empty gets `pass` instead.
//!   Declarations (Rust `let`, JavaScript `const`, Go `:=`, ...) are kept, as are a
//!   Rust block's tail expression and the final valued `return` of a Rust or Go
//!   body, since removing those mostly breaks compilation rather than behaviour.
//!
//! Mutants can still fail to compile or loop forever (removing `i += 1`), so
//! whoever runs tests against them needs a timeout and should count either as a kill.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use serde::Serialize;
use tree_sitter::{Node, Parser};

use crate::Language;

/// What a mutant changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MutationKind {
    FlipComparison,
    FlipBoolean,
    OffByOne,
    SwapArguments,
    RemoveStatement,
}

/// One mutant: the whole file with one change applied.
#[derive(Debug, Clone, Serialize)]
pub struct Mutant {
    pub kind: MutationKind,
    /// What changed and where, e.g. "line 5: `<` -> `>=`" (1-based line).
    pub description: String,
    /// The whole file text with this one mutation applied.
    pub text: String,
    /// The replaced range, in bytes of the original text.
    pub start_byte: usize,
    pub end_byte: usize,
}

/// Mutants of the function occupying `start_byte..end_byte` of `text`, in source
/// order, at most `max` of them, deduplicated by resulting text, and never equal to
/// the original.
///
/// The function is the first outermost function (or method, closure, lambda) lying
/// wholly inside the span, else the innermost one enclosing it. Out-of-range spans
/// are clamped to the text; no function there, a function with syntax errors, or
/// text that does not parse give no mutants. Never panics.
pub fn mutants(
    language: Language,
    text: &str,
    start_byte: usize,
    end_byte: usize,
    max: usize,
) -> Vec<Mutant> {
    if max == 0 || text.is_empty() {
        return Vec::new();
    }
    let end = end_byte.min(text.len());
    let start = start_byte.min(end);
    if start >= end {
        return Vec::new();
    }
    let mut parser = Parser::new();
    if parser.set_language(&language.grammar()).is_err() {
        return Vec::new();
    }
    let Some(tree) = parser.parse(text, None) else {
        return Vec::new();
    };
    let Some(function) = find_function(tree.root_node(), start, end) else {
        return Vec::new();
    };
    if function.has_error() {
        return Vec::new();
    }
    let Some(body) = function.child_by_field_name("body") else {
        return Vec::new();
    };
    let ctx = Ctx {
        language,
        text,
        function,
        body,
    };
    let mut edits = Vec::new();
    let mut cursor = body.walk();
    'walk: loop {
        visit(&ctx, cursor.node(), &mut edits);
        if cursor.goto_first_child() {
            continue;
        }
        loop {
            if cursor.goto_next_sibling() {
                break;
            }
            if !cursor.goto_parent() {
                break 'walk;
            }
        }
    }
    // Stable: edits anchored at the same byte keep the order of the walk.
    edits.sort_by_key(|e| e.anchor);
    apply(text, edits, max)
}

/// Node kinds, across the grammars, of functions that have a `body` field.
const FUNCTION_KINDS: &[&str] = &[
    // Rust
    "function_item",
    "closure_expression",
    // Python
    "function_definition",
    "lambda",
    // JavaScript, TypeScript
    "function_declaration",
    "function_expression",
    "function",
    "generator_function_declaration",
    "generator_function",
    "arrow_function",
    "method_definition",
    // Go (also `function_declaration`)
    "method_declaration",
    "func_literal",
];

fn is_function(node: Node<'_>) -> bool {
    node.is_named() && FUNCTION_KINDS.contains(&node.kind())
}

/// The first outermost function inside `start..end`, else the innermost enclosing it.
fn find_function(root: Node<'_>, start: usize, end: usize) -> Option<Node<'_>> {
    let mut cursor = root.walk();
    'walk: loop {
        let node = cursor.node();
        if node.start_byte() < end && node.end_byte() > start {
            if is_function(node) && node.start_byte() >= start && node.end_byte() <= end {
                return Some(node);
            }
            if cursor.goto_first_child() {
                continue;
            }
        }
        loop {
            if cursor.goto_next_sibling() {
                break;
            }
            if !cursor.goto_parent() {
                break 'walk;
            }
        }
    }
    let mut node = root.descendant_for_byte_range(start, end);
    while let Some(n) = node {
        if is_function(n) {
            return Some(n);
        }
        node = n.parent();
    }
    None
}

struct Ctx<'a> {
    language: Language,
    text: &'a str,
    function: Node<'a>,
    body: Node<'a>,
}

impl Ctx<'_> {
    fn text_of(&self, node: Node<'_>) -> &str {
        self.text.get(node.byte_range()).unwrap_or("")
    }
}

/// A planned change: replace `start..end` with `replacement`.
struct Edit {
    /// Where the change sits in the source, for ordering.
    anchor: usize,
    start: usize,
    end: usize,
    replacement: String,
    kind: MutationKind,
    description: String,
}

impl Edit {
    fn at(node: Node<'_>, kind: MutationKind, replacement: String, description: String) -> Edit {
        Edit {
            anchor: node.start_byte(),
            start: node.start_byte(),
            end: node.end_byte(),
            replacement,
            kind,
            description: format!("line {}: {description}", node.start_position().row + 1),
        }
    }
}

fn visit(ctx: &Ctx<'_>, node: Node<'_>, edits: &mut Vec<Edit>) {
    if !node.is_named() {
        operator(ctx, node, edits);
        return;
    }
    match node.kind() {
        "integer" | "integer_literal" | "int_literal" | "number" => off_by_one(ctx, node, edits),
        "call" | "call_expression" => swap_arguments(ctx, node, edits),
        // A Go `block` holds one `statement_list`, which holds the statements.
        "block" if ctx.language == Language::Go => {}
        "block" | "statement_block" | "statement_list" => remove_statements(ctx, node, edits),
        _ => {}
    }
}

fn operator(ctx: &Ctx<'_>, node: Node<'_>, edits: &mut Vec<Edit>) {
    let Some(parent) = node.parent() else {
        return;
    };
    let python = ctx.language == Language::Python;
    let (kind, to) = match (parent.kind(), node.kind()) {
        ("binary_expression" | "comparison_operator", op) => match op {
            "<" => (MutationKind::FlipComparison, ">="),
            ">=" => (MutationKind::FlipComparison, "<"),
            "<=" => (MutationKind::FlipComparison, ">"),
            ">" => (MutationKind::FlipComparison, "<="),
            "==" => (MutationKind::FlipComparison, "!="),
            "!=" => (MutationKind::FlipComparison, "=="),
            "===" => (MutationKind::FlipComparison, "!=="),
            "!==" => (MutationKind::FlipComparison, "==="),
            "&&" if !python => (MutationKind::FlipBoolean, "||"),
            "||" if !python => (MutationKind::FlipBoolean, "&&"),
            _ => return,
        },
        ("boolean_operator", "and") if python => (MutationKind::FlipBoolean, "or"),
        ("boolean_operator", "or") if python => (MutationKind::FlipBoolean, "and"),
        _ => return,
    };
    let from = ctx.text_of(node);
    if from != node.kind() {
        return;
    }
    edits.push(Edit::at(
        node,
        kind,
        to.to_string(),
        format!("`{from}` -> `{to}`"),
    ));
}

fn off_by_one(ctx: &Ctx<'_>, node: Node<'_>, edits: &mut Vec<Edit>) {
    // Literals that are part of a type or a tuple field, not a value.
    if let Some(parent) = node.parent() {
        if matches!(
            parent.kind(),
            "array_type" | "field_expression" | "literal_type"
        ) {
            return;
        }
    }
    let from = ctx.text_of(node);
    let Some(to) = bump_integer(ctx.language, from) else {
        return;
    };
    let description = format!("`{from}` -> `{to}`");
    edits.push(Edit::at(node, MutationKind::OffByOne, to, description));
}

/// `n` -> `n + 1` for a plain decimal literal (with a Rust integer suffix that still fits).
fn bump_integer(language: Language, literal: &str) -> Option<String> {
    let digits_end = literal
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(literal.len());
    let (digits, suffix) = literal.split_at(digits_end);
    if digits.is_empty() || (digits.len() > 1 && digits.starts_with('0')) {
        return None;
    }
    let next = digits.parse::<u64>().ok()?.checked_add(1)?;
    if !suffix.is_empty() {
        if language != Language::Rust {
            return None;
        }
        let limit = match suffix {
            "u8" => u8::MAX as u64,
            "i8" => i8::MAX as u64,
            "u16" => u16::MAX as u64,
            "i16" => i16::MAX as u64,
            "u32" => u32::MAX as u64,
            "i32" => i32::MAX as u64,
            "i64" | "isize" => i64::MAX as u64,
            "u64" | "usize" | "u128" | "i128" => u64::MAX,
            _ => return None,
        };
        if next > limit {
            return None;
        }
    }
    Some(format!("{next}{suffix}"))
}

fn swap_arguments(ctx: &Ctx<'_>, call: Node<'_>, edits: &mut Vec<Edit>) {
    let Some(arguments) = call.child_by_field_name("arguments") else {
        return;
    };
    if !matches!(arguments.kind(), "argument_list" | "arguments") {
        return;
    }
    if ctx.language == Language::Go {
        // Builtins whose first argument is a type or must be a slice.
        let callee = call
            .child_by_field_name("function")
            .map(|f| ctx.text_of(f))
            .unwrap_or("");
        if matches!(callee, "make" | "new" | "append") {
            return;
        }
    }
    let mut cursor = arguments.walk();
    let mut args = arguments
        .named_children(&mut cursor)
        .filter(|n| !n.is_extra() && n.kind() != "attribute_item");
    let (Some(first), Some(second)) = (args.next(), args.next()) else {
        return;
    };
    let plain = |n: Node<'_>| {
        !matches!(
            n.kind(),
            "keyword_argument"
                | "list_splat"
                | "dictionary_splat"
                | "spread_element"
                | "variadic_argument"
                | "type_identifier"
        ) && !n.kind().ends_with("_type")
    };
    if !plain(first) || !plain(second) {
        return;
    }
    let (a, b) = (ctx.text_of(first), ctx.text_of(second));
    let Some(between) = ctx.text.get(first.end_byte()..second.start_byte()) else {
        return;
    };
    if a.is_empty() || b.is_empty() || a == b {
        return;
    }
    edits.push(Edit {
        anchor: first.start_byte(),
        start: first.start_byte(),
        end: second.end_byte(),
        replacement: format!("{b}{between}{a}"),
        kind: MutationKind::SwapArguments,
        description: format!(
            "line {}: swap `{}` and `{}`",
            first.start_position().row + 1,
            snippet(a),
            snippet(b)
        ),
    });
}

fn remove_statements(ctx: &Ctx<'_>, container: Node<'_>, edits: &mut Vec<Edit>) {
    let mut cursor = container.walk();
    let statements: Vec<Node<'_>> = container
        .named_children(&mut cursor)
        .filter(|n| !n.is_extra() && n.kind() != "case_clause")
        .collect();
    // The function's own body, where a final valued `return` must stay (Rust, Go).
    let top = container.id() == ctx.body.id()
        || container.parent().map(|p| p.id()) == Some(ctx.body.id());
    for (i, &statement) in statements.iter().enumerate() {
        let last = i + 1 == statements.len();
        if !removable(ctx, statement, last, top) {
            continue;
        }
        let shown = snippet(ctx.text_of(statement));
        let line = statement.start_position().row + 1;
        if ctx.language == Language::Python && statements.len() == 1 {
            edits.push(Edit {
                anchor: statement.start_byte(),
                start: statement.start_byte(),
                end: statement.end_byte(),
                replacement: "pass".to_string(),
                kind: MutationKind::RemoveStatement,
                description: format!("line {line}: `{shown}` -> `pass`"),
            });
            continue;
        }
        let (start, end) = removal_range(ctx, statement);
        edits.push(Edit {
            anchor: statement.start_byte(),
            start,
            end,
            replacement: String::new(),
            kind: MutationKind::RemoveStatement,
            description: format!("line {line}: remove `{shown}`"),
        });
    }
}

fn removable(ctx: &Ctx<'_>, statement: Node<'_>, last: bool, top: bool) -> bool {
    let kind = statement.kind();
    // A bare string (docstring, "use strict") or `...` does nothing: removing it
    // makes an equivalent mutant.
    let no_op = kind == "expression_statement"
        && statement.named_child_count() == 1
        && statement.named_child(0).is_some_and(|c| {
            matches!(
                c.kind(),
                "string" | "concatenated_string" | "ellipsis" | "template_string"
            )
        });
    let valued_return = |n: Node<'_>| n.named_child_count() > 0;
    match ctx.language {
        Language::Python => !no_op && kind != "pass_statement",
        Language::Rust => {
            if kind != "expression_statement" {
                return false;
            }
            let Some(inner) = statement.named_child(0) else {
                return false;
            };
            let semicolon = statement
                .child(statement.child_count().saturating_sub(1))
                .is_some_and(|c| c.kind() == ";");
            if last && !semicolon && !matches!(inner.kind(), "for_expression" | "while_expression")
            {
                return false;
            }
            !(last && top && inner.kind() == "return_expression" && valued_return(inner))
        }
        Language::Go => {
            let declaration = matches!(
                kind,
                "var_declaration"
                    | "const_declaration"
                    | "type_declaration"
                    | "short_var_declaration"
                    | "empty_statement"
            );
            let final_return =
                last && top && kind == "return_statement" && valued_return(statement);
            !declaration && !final_return
        }
        Language::JavaScript | Language::TypeScript | Language::Tsx => {
            !no_op
                && !matches!(
                    kind,
                    "lexical_declaration"
                        | "variable_declaration"
                        | "function_declaration"
                        | "generator_function_declaration"
                        | "class_declaration"
                        | "abstract_class_declaration"
                        | "empty_statement"
                        | "import_statement"
                        | "export_statement"
                        | "type_alias_declaration"
                        | "interface_declaration"
                        | "enum_declaration"
                        | "ambient_declaration"
                        | "module"
                        | "internal_module"
                )
        }
    }
}

/// The bytes to delete to remove `statement`: its whole line(s) when it stands
/// alone on them, else the statement with a following `;` separator and spacing.
/// Never reaches outside the function.
fn removal_range(ctx: &Ctx<'_>, statement: Node<'_>) -> (usize, usize) {
    let bytes = ctx.text.as_bytes();
    let (lo, hi) = (ctx.function.start_byte(), ctx.function.end_byte());
    let start = statement.start_byte();
    let mut end = statement.end_byte();
    if let Some(next) = statement.next_sibling() {
        let gap = ctx.text.get(end..next.start_byte()).unwrap_or("x");
        if !next.is_named()
            && next.kind() == ";"
            && ctx.text_of(next) == ";"
            && gap.bytes().all(is_blank)
            && next.end_byte() <= hi
        {
            end = next.end_byte();
        }
    }
    let mut after = end;
    while after < hi && after < bytes.len() && is_blank(bytes[after]) {
        after += 1;
    }
    let mut before = start;
    while before > lo && is_blank(bytes[before - 1]) {
        before -= 1;
    }
    let ends_line = after >= bytes.len() || matches!(bytes[after], b'\n' | b'\r');
    let starts_line = before == 0 || bytes[before - 1] == b'\n';
    if ends_line && starts_line && before > lo {
        // Take the newline before the line, keep the one after it.
        let mut newline = before - 1;
        if newline > lo && bytes[newline - 1] == b'\r' {
            newline -= 1;
        }
        return (newline, after);
    }
    if ends_line {
        (before, after)
    } else {
        (start, after)
    }
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// The first line of `code`, shortened, for descriptions.
fn snippet(code: &str) -> String {
    const WIDTH: usize = 60;
    let line = code.lines().next().unwrap_or("").trim();
    let mut shown: String = line.chars().take(WIDTH).collect();
    if line.chars().count() > WIDTH || code.trim_end().contains('\n') {
        shown.push_str(" ...");
    }
    shown
}

fn apply(text: &str, edits: Vec<Edit>, max: usize) -> Vec<Mutant> {
    let mut out: Vec<Mutant> = Vec::new();
    let mut seen: HashMap<u64, Vec<usize>> = HashMap::new();
    for edit in edits {
        if out.len() >= max {
            break;
        }
        let (Some(head), Some(old), Some(tail)) = (
            text.get(..edit.start),
            text.get(edit.start..edit.end),
            text.get(edit.end..),
        ) else {
            continue;
        };
        if old == edit.replacement {
            continue;
        }
        let mut mutated = String::with_capacity(head.len() + edit.replacement.len() + tail.len());
        mutated.push_str(head);
        mutated.push_str(&edit.replacement);
        mutated.push_str(tail);
        if mutated == text {
            continue;
        }
        let mut hasher = DefaultHasher::new();
        mutated.hash(&mut hasher);
        let same = seen.entry(hasher.finish()).or_default();
        if same.iter().any(|&i| out[i].text == mutated) {
            continue;
        }
        same.push(out.len());
        out.push(Mutant {
            kind: edit.kind,
            description: edit.description,
            text: mutated,
            start_byte: edit.start,
            end_byte: edit.end,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reparses(language: Language, text: &str) -> bool {
        let mut parser = Parser::new();
        parser.set_language(&language.grammar()).unwrap();
        !parser.parse(text, None).unwrap().root_node().has_error()
    }

    /// The span of the function that starts at `start_marker` and ends right before
    /// `end_marker`, trailing newlines excluded.
    fn span(text: &str, start_marker: &str, end_marker: &str) -> (usize, usize) {
        let start = text.find(start_marker).unwrap();
        let end = text[start..].find(end_marker).unwrap() + start;
        (start, text[..end].trim_end().len())
    }

    /// Checks shared by every language: valid, different, confined to the function.
    fn check_all(language: Language, text: &str, start: usize, end: usize, all: &[Mutant]) {
        let mut texts = std::collections::HashSet::new();
        for m in all {
            assert_ne!(m.text, text, "{}", m.description);
            assert!(texts.insert(m.text.clone()), "duplicate: {}", m.description);
            assert!(
                reparses(language, &m.text),
                "{}:\n{}",
                m.description,
                m.text
            );
            assert!(m.start_byte >= start && m.end_byte <= end, "{m:?}");
            assert!(m.text.starts_with(&text[..start]), "{}", m.description);
            assert!(m.text.ends_with(&text[end..]), "{}", m.description);
            assert!(m.description.starts_with("line "), "{}", m.description);
        }
        assert!(!all.is_empty());
    }

    const PYTHON: &str = "\
def before(a, b):
    return a < b


def clamp(x, lo, hi):
    if x < lo:
        return lo
    if x > hi and hi >= 0:
        return hi
    return max(x, lo + 1)


def after(n):
    return n == 0
";

    #[test]
    fn python_function() {
        let (start, end) = span(PYTHON, "def clamp", "def after");
        let all = mutants(Language::Python, PYTHON, start, end, 100);
        check_all(Language::Python, PYTHON, start, end, &all);

        let kinds: std::collections::HashSet<MutationKind> = all.iter().map(|m| m.kind).collect();
        for kind in [
            MutationKind::FlipComparison,
            MutationKind::FlipBoolean,
            MutationKind::OffByOne,
            MutationKind::SwapArguments,
            MutationKind::RemoveStatement,
        ] {
            assert!(kinds.contains(&kind), "{kind:?} missing");
        }
        let has = |needle: &str| all.iter().any(|m| m.text.contains(needle));
        let with = |needle: &str| {
            all.iter()
                .find(|m| m.text.contains(needle))
                .unwrap_or_else(|| panic!("no mutant with {needle:?}"))
        };
        assert!(has("    if x >= lo:\n"));
        assert!(has("    if x <= hi and hi >= 0:\n"));
        assert!(has("    if x > hi or hi >= 0:\n"));
        assert!(has("    if x > hi and hi < 0:\n"));
        assert!(has("    if x > hi and hi >= 1:\n"));
        assert!(has("    return max(x, lo + 2)\n"));
        // The comparisons of the neighbours are never touched.
        assert!(!has("return a >= b"));
        assert!(!has("return n != 0"));

        let swap = with("max(lo + 1, x)");
        assert_eq!(swap.kind, MutationKind::SwapArguments);
        assert_eq!(swap.description, "line 10: swap `x` and `lo + 1`");

        let flip = with("if x >= lo:");
        assert_eq!(flip.kind, MutationKind::FlipComparison);
        assert_eq!(flip.description, "line 6: `<` -> `>=`");

        // A lone statement of a block becomes `pass`.
        let pass = with("    if x < lo:\n        pass\n");
        assert_eq!(pass.kind, MutationKind::RemoveStatement);
        assert_eq!(pass.description, "line 7: `return lo` -> `pass`");
        assert!(has("    if x > hi and hi >= 0:\n        pass\n"));

        // Whole statements of the body go, lines and all.
        let removed: Vec<&Mutant> = all
            .iter()
            .filter(|m| m.kind == MutationKind::RemoveStatement)
            .collect();
        assert_eq!(removed.len(), 5, "{removed:#?}");
        assert!(has(
            "def clamp(x, lo, hi):\n    if x > hi and hi >= 0:\n        return hi\n    return max"
        ));
        assert!(has("        return hi\n\n\ndef after"));
        assert!(has(
            "def clamp(x, lo, hi):\n    if x < lo:\n        return lo\n    return max(x, lo + 1)\n"
        ));

        // Source order: the first `if` and its insides come before the second.
        let lines: Vec<usize> = all
            .iter()
            .map(|m| {
                m.description["line ".len()..]
                    .split(':')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{lines:?}");
        assert_eq!(all.len(), 12, "{all:#?}");

        // The cap keeps the first ones.
        let three = mutants(Language::Python, PYTHON, start, end, 3);
        assert_eq!(three.len(), 3);
        for (a, b) in three.iter().zip(&all) {
            assert_eq!(a.text, b.text);
        }
        assert!(mutants(Language::Python, PYTHON, start, end, 0).is_empty());
    }

    #[test]
    fn python_one_liners_and_no_ops() {
        let text = "def f(x):\n    \"\"\"Doc.\"\"\"\n    if x: return 1\n    a = 1; b = 2\n    pass\n    return a + b\n";
        let all = mutants(Language::Python, text, 0, text.len(), 100);
        check_all(Language::Python, text, 0, text.len(), &all);
        let texts: Vec<&str> = all.iter().map(|m| m.text.as_str()).collect();
        assert!(texts.iter().any(|t| t.contains("    if x: pass\n")));
        assert!(texts.iter().any(|t| t.contains("\n    b = 2\n")));
        assert!(texts.iter().any(|t| t.contains("\n    a = 1;\n")));
        // The docstring and `pass` stay in every mutant.
        assert!(texts.iter().all(|t| t.contains("\"\"\"Doc.\"\"\"")));
        assert!(texts.iter().all(|t| t.contains("    pass\n")));
    }

    const RUST: &str = "\
fn before(a: i32) -> bool {
    a < 1
}

fn check(a: i32, b: i32, c: i32) -> i32 {
    let mut total = 0;
    if a <= b && c != 0 {
        return a + 1;
    }
    total += 2;
    total = total.max(sub(a, b));
    total
}

fn after() -> u8 {
    255u8
}
";

    #[test]
    fn rust_function() {
        let (start, end) = span(RUST, "fn check", "fn after");
        let all = mutants(Language::Rust, RUST, start, end, 100);
        check_all(Language::Rust, RUST, start, end, &all);
        let kind_of = |needle: &str| {
            all.iter()
                .find(|m| m.text.contains(needle))
                .unwrap_or_else(|| panic!("no mutant with {needle:?}"))
                .kind
        };
        assert_eq!(
            kind_of("if a > b && c != 0 {"),
            MutationKind::FlipComparison
        );
        assert_eq!(kind_of("if a <= b || c != 0 {"), MutationKind::FlipBoolean);
        assert_eq!(
            kind_of("if a <= b && c == 0 {"),
            MutationKind::FlipComparison
        );
        assert_eq!(kind_of("if a <= b && c != 1 {"), MutationKind::OffByOne);
        assert_eq!(kind_of("let mut total = 1;"), MutationKind::OffByOne);
        assert_eq!(kind_of("return a + 2;"), MutationKind::OffByOne);
        assert_eq!(kind_of("total += 3;"), MutationKind::OffByOne);
        assert_eq!(kind_of("total.max(sub(b, a))"), MutationKind::SwapArguments);
        assert_eq!(
            kind_of("if a <= b && c != 0 {\n    }\n"),
            MutationKind::RemoveStatement
        );
        assert_eq!(
            kind_of("let mut total = 0;\n    total += 2;\n"),
            MutationKind::RemoveStatement
        );
        assert_eq!(
            kind_of("\n    }\n    total = total.max"),
            MutationKind::RemoveStatement
        );
        assert_eq!(
            kind_of("total += 2;\n    total\n}"),
            MutationKind::RemoveStatement
        );
        // `let` and the tail expression are never removed; neighbours never change.
        for m in &all {
            assert!(m.text.contains("    let mut total ="), "{}", m.description);
            assert!(m.text.contains("\n    total\n}"), "{}", m.description);
            assert!(m.text.contains("    255u8\n"), "{}", m.description);
            assert!(m.text.contains("    a < 1\n"), "{}", m.description);
        }
        let removed = all
            .iter()
            .filter(|m| m.kind == MutationKind::RemoveStatement)
            .count();
        assert_eq!(removed, 4, "{all:#?}");
    }

    #[test]
    fn rust_suffixes_tails_and_returns() {
        let text = "fn f(v: &[u8]) -> u8 {\n    for x in v { g(*x, 1u8); }\n    let t = (1, 2);\n    if t.0 > 254u8 { h(); }\n    return 255u8;\n}\n";
        let all = mutants(Language::Rust, text, 0, text.len(), 100);
        check_all(Language::Rust, text, 0, text.len(), &all);
        let texts: Vec<&str> = all.iter().map(|m| m.text.as_str()).collect();
        assert!(texts.iter().any(|t| t.contains("g(*x, 2u8)")));
        assert!(texts.iter().any(|t| t.contains("g(1u8, *x)")));
        assert!(texts.iter().any(|t| t.contains("t.0 > 255u8")));
        assert!(texts.iter().any(|t| !t.contains("for x in v")));
        // `255u8 + 1` does not fit, the tuple field is not a number to bump, and the
        // final `return` stays.
        assert!(texts.iter().all(|t| t.contains("return 255u8;")));
        assert!(texts.iter().all(|t| !t.contains("t.1")));
        // A `for` loop as a block's tail can go.
        let tail = "fn g(v: &[u8]) {\n    h();\n    for x in v { h(); }\n}\n";
        let all = mutants(Language::Rust, tail, 0, tail.len(), 100);
        assert!(all
            .iter()
            .any(|m| m.text == "fn g(v: &[u8]) {\n    h();\n}\n"));
    }

    #[test]
    fn javascript_and_typescript() {
        let text = "function first() { return 0; }\nfunction f(a) {\n  const b = a * 3;\n  if (a === 1) {\n    log(a, b);\n  }\n  return a < 10;\n}\nfunction last() { return 1; }\n";
        let (start, end) = span(text, "function f(", "function last");
        for language in [Language::JavaScript, Language::TypeScript, Language::Tsx] {
            let all = mutants(language, text, start, end, 100);
            check_all(language, text, start, end, &all);
            let kind_of = |needle: &str| {
                all.iter()
                    .find(|m| m.text.contains(needle))
                    .unwrap_or_else(|| panic!("{language:?}: no mutant with {needle:?}"))
                    .kind
            };
            assert_eq!(kind_of("if (a !== 1)"), MutationKind::FlipComparison);
            assert_eq!(kind_of("return a >= 10;"), MutationKind::FlipComparison);
            assert_eq!(kind_of("return a < 11;"), MutationKind::OffByOne);
            assert_eq!(kind_of("const b = a * 4;"), MutationKind::OffByOne);
            assert_eq!(kind_of("log(b, a);"), MutationKind::SwapArguments);
            assert_eq!(
                kind_of("if (a === 1) {\n  }"),
                MutationKind::RemoveStatement
            );
            assert!(all.iter().all(|m| m.text.contains("const b = a *")));
            assert!(all.iter().all(|m| m.text.contains("{ return 0; }")));
        }
    }

    #[test]
    fn go_function() {
        let text = "package p\n\nfunc f(a int) bool {\n\tb := a + 2\n\tif a == 1 && b != 0 {\n\t\tuse(a, b)\n\t}\n\treturn a < 10\n}\n\nfunc g() int { return 0 }\n";
        let (start, end) = span(text, "func f", "func g");
        let all = mutants(Language::Go, text, start, end, 100);
        check_all(Language::Go, text, start, end, &all);
        let kind_of = |needle: &str| {
            all.iter()
                .find(|m| m.text.contains(needle))
                .unwrap_or_else(|| panic!("no mutant with {needle:?}"))
                .kind
        };
        assert_eq!(kind_of("if a != 1 && b"), MutationKind::FlipComparison);
        assert_eq!(kind_of("if a == 1 || b"), MutationKind::FlipBoolean);
        assert_eq!(kind_of("return a >= 10"), MutationKind::FlipComparison);
        assert_eq!(kind_of("return a < 11"), MutationKind::OffByOne);
        assert_eq!(kind_of("b := a + 3"), MutationKind::OffByOne);
        assert_eq!(kind_of("use(b, a)"), MutationKind::SwapArguments);
        assert_eq!(kind_of("!= 0 {\n\t}"), MutationKind::RemoveStatement);
        // Declarations and the final `return` stay.
        assert!(all.iter().all(|m| m.text.contains("\tb := a +")));
        assert!(all.iter().all(|m| m.text.contains("\treturn a ")));
        assert!(all.iter().all(|m| m.text.contains("{ return 0 }")));
    }

    #[test]
    fn bad_input_gives_nothing() {
        let all_languages = [
            Language::Rust,
            Language::Python,
            Language::TypeScript,
            Language::Tsx,
            Language::JavaScript,
            Language::Go,
        ];
        let garbage = "(((( def ::: }}} fn func => ]][[ \u{0} \u{fffd} é ∑";
        for language in all_languages {
            assert!(mutants(language, "", 0, 10, 10).is_empty());
            assert!(mutants(language, garbage, 0, garbage.len(), 10).is_empty());
            for (s, e) in [(0, usize::MAX), (usize::MAX, usize::MAX), (5, 2), (3, 3)] {
                assert!(mutants(language, garbage, s, e, 10).is_empty());
            }
            // No function in the span.
            assert!(mutants(language, "x = 1 < 2\n", 0, 10, 10).is_empty());
            // Spans that cut characters in half, or run past the end, do not panic.
            let text = "def f(é):\n    return é < 1  # ∑\n";
            for s in 0..text.len() + 2 {
                for e in [s + 1, s + 3, text.len() + 5] {
                    let _ = mutants(language, text, s, e, 10);
                }
            }
        }
        // A span past the end is clamped.
        let text = "def f(x):\n    return x < 1\n";
        assert_eq!(mutants(Language::Python, text, 0, 1000, 10).len(), 3);
        // A function with a syntax error in it.
        let broken = "def f(x):\n    return x < (1\n";
        assert!(mutants(Language::Python, broken, 0, broken.len(), 10).is_empty());
        // A span inside a function means that function.
        let inner = text.find("x < 1").unwrap();
        assert_eq!(
            mutants(Language::Python, text, inner, inner + 1, 10).len(),
            3
        );
    }

    #[test]
    fn kinds_serialize_in_snake_case() {
        assert_eq!(
            serde_json::to_string(&MutationKind::FlipComparison).unwrap(),
            "\"flip_comparison\""
        );
        assert_eq!(
            serde_json::to_string(&MutationKind::RemoveStatement).unwrap(),
            "\"remove_statement\""
        );
    }
}
