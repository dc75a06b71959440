//! Code from other files that a piece of code depends on (the definitions of the
//! names it uses: its callees) or that depends on it (the functions that use a
//! name: its callers), found through the workspace index. The skills put them
//! into their prompts after the code of the file itself, nearest in meaning first.
//!
//! The index knows names, spans and terms; the texts come from a `read` callback
//! (the editor's unsaved buffers first), and every piece is checked against the
//! text it was cut from, so a file changed since it was indexed gives no stale
//! code.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::{Symbol, SymbolKind, WorkspaceIndex};

/// How a piece of code relates to the code a skill works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A definition the code uses.
    Callee,
    /// A function or method that uses the code.
    Caller,
}

/// A piece of code from another file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Related {
    /// Relative to the repository root.
    pub path: String,
    /// The symbol the code is of.
    pub name: String,
    pub role: Role,
    /// The symbol's code, from the start of its first line.
    pub code: String,
}

/// A name with more definitions than this in the workspace is too generic
/// (`get`, `run`, `update`) to say which one the code means; none is shown.
const MAX_DEFINITIONS: usize = 2;

/// The identifiers of `code`, each once, in order of first use.
pub fn identifiers(code: &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for w in code.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
        if !w.is_empty() && !w.starts_with(|c: char| c.is_ascii_digit()) && !out.contains(&w) {
            out.push(w);
        }
    }
    out
}

/// The names `code` refers to as definitions, each once, in order of first use:
/// called (`name(`) or capitalised (a class, a type, a constant). A lower-case
/// name used as a value is most often a local variable or a parameter (`total =
/// total * 0.9`), and a definition elsewhere that happens to share its name is
/// no context for it.
pub fn referenced(code: &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    let mut rest = code;
    while let Some(start) = rest.find(|c: char| c.is_alphanumeric() || c == '_') {
        let word_and_after = &rest[start..];
        let len = word_and_after
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(word_and_after.len());
        let (word, after) = word_and_after.split_at(len);
        rest = after;
        if word.starts_with(|c: char| c.is_ascii_digit()) || out.contains(&word) {
            continue;
        }
        let called = after.trim_start_matches([' ', '\t']).starts_with('(');
        if called || word.starts_with(|c: char| c.is_uppercase()) {
            out.push(word);
        }
    }
    out
}

/// Whether a path looks like a test file or lives in a test folder.
pub fn is_test_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    let file = lower.rsplit('/').next().unwrap_or(&lower);
    lower.split('/').any(|seg| {
        matches!(
            seg,
            "test" | "tests" | "testing" | "spec" | "specs" | "__tests__" | "testdata" | "fixtures"
        )
    }) || file.starts_with("test_")
        || file.starts_with("tests.")
        || file.starts_with("conftest")
        || file.contains("_test.")
        || file.contains("_tests.")
        || file.contains(".test.")
        || file.contains(".spec.")
}

/// File texts read once each.
struct Texts<'a> {
    read: &'a dyn Fn(&str) -> Option<String>,
    seen: HashMap<String, Option<String>>,
}

impl<'a> Texts<'a> {
    fn new(read: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Texts {
            read,
            seen: HashMap::new(),
        }
    }

    /// The code of `symbol` in `path` from the start of its first line, when the
    /// text still has it there (its name inside its span).
    fn code(&mut self, path: &str, symbol: &Symbol) -> Option<String> {
        let read = self.read;
        let text = self
            .seen
            .entry(path.to_string())
            .or_insert_with(|| read(path))
            .as_deref()?;
        symbol_code(text, symbol)
    }
}

/// The code of `symbol` in `text` from the start of its first line (a method
/// keeps its indentation), when the text still has it there: its name inside
/// its span.
fn symbol_code(text: &str, symbol: &Symbol) -> Option<String> {
    let span = symbol.span;
    let body = text.get(span.start_byte..span.end_byte)?;
    if !body.contains(symbol.name.as_str()) {
        return None;
    }
    let line_start = text[..span.start_byte].rfind('\n').map_or(0, |i| i + 1);
    Some(text[line_start..span.end_byte].to_string())
}

/// A file's symbols at any depth.
fn all_symbols(symbols: &[Symbol]) -> Vec<&Symbol> {
    let mut out = Vec::new();
    let mut stack: Vec<&Symbol> = symbols.iter().collect();
    while let Some(s) = stack.pop() {
        out.push(s);
        stack.extend(&s.children);
    }
    out
}

/// The names a file's symbols define, at any depth.
pub fn defined_names(symbols: &[Symbol]) -> Vec<&str> {
    all_symbols(symbols)
        .into_iter()
        .map(|s| s.name.as_str())
        .collect()
}

/// The definitions in `text` itself (the file at `path`, whose `symbols` these
/// are) of the names that `text[start..end]` refers to ([`referenced`]), in
/// order of first use, at most `limit`, leaving out those that overlap the code
/// itself or `text[shown.0..shown.1]` (already in the prompt).
pub fn callees_in_file(
    path: &str,
    text: &str,
    symbols: &[Symbol],
    (start, end): (usize, usize),
    shown: (usize, usize),
    limit: usize,
) -> Vec<Related> {
    let flat = all_symbols(symbols);
    let Some(code) = text.get(start..end) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for name in referenced(code) {
        if out.len() >= limit {
            break;
        }
        let apart =
            |s: &Symbol, (a, b): (usize, usize)| s.span.end_byte <= a || s.span.start_byte >= b;
        let def = flat.iter().find(|s| {
            s.name == name && is_definition(s.kind) && apart(s, shown) && apart(s, (start, end))
        });
        if let Some(code) = def.and_then(|s| symbol_code(text, s)) {
            out.push(Related {
                path: path.to_string(),
                name: name.to_string(),
                role: Role::Callee,
                code,
            });
        }
    }
    out
}

fn is_definition(kind: SymbolKind) -> bool {
    !matches!(
        kind,
        SymbolKind::Module | SymbolKind::Impl | SymbolKind::Field
    )
}

/// Whether `code` uses `name` as a whole identifier.
pub fn uses(code: &str, name: &str) -> bool {
    code.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .any(|w| w == name)
}

/// The definitions, in files other than `path`, of the names `code` refers to
/// ([`referenced`]), in order of first use, at most `limit`. Names in `skip`
/// (what the file itself defines) are left out, and so are names with more than
/// two definitions in the workspace.
pub fn callees(
    index: &WorkspaceIndex,
    path: &str,
    code: &str,
    skip: &[&str],
    read: &dyn Fn(&str) -> Option<String>,
    limit: usize,
) -> Vec<Related> {
    let mut texts = Texts::new(read);
    let mut out = Vec::new();
    for name in referenced(code) {
        if out.len() >= limit {
            break;
        }
        if skip.contains(&name) {
            continue;
        }
        let defs: Vec<(&str, &Symbol)> = index
            .symbols_with_identifier(name)
            .into_iter()
            .filter(|(_, s)| s.name == name && is_definition(s.kind))
            .collect();
        if defs.is_empty() || defs.len() > MAX_DEFINITIONS || defs.iter().any(|(p, _)| *p == path) {
            continue;
        }
        // Outside the tests first: the definition, not a test's stand-in.
        let mut defs = defs;
        defs.sort_by_key(|(p, _)| is_test_path(p));
        let first = defs.into_iter().find_map(|(p, s)| {
            Some(Related {
                path: p.to_string(),
                name: s.name.clone(),
                role: Role::Callee,
                code: texts.code(p, s)?,
            })
        });
        out.extend(first);
    }
    out
}

/// The functions and methods in files other than `path` whose code uses the
/// identifier `name`, test files last, at most `limit`.
pub fn callers(
    index: &WorkspaceIndex,
    path: &str,
    name: &str,
    read: &dyn Fn(&str) -> Option<String>,
    limit: usize,
) -> Vec<Related> {
    let mut texts = Texts::new(read);
    let mut found: Vec<(&str, &Symbol)> = index
        .symbols_with_identifier(name)
        .into_iter()
        .filter(|(p, s)| {
            *p != path
                && s.name != name
                && matches!(s.kind, SymbolKind::Function | SymbolKind::Method)
        })
        .collect();
    found.sort_by_key(|(p, _)| is_test_path(p));
    let mut out = Vec::new();
    for (p, s) in found {
        if out.len() >= limit {
            break;
        }
        let Some(code) = texts.code(p, s) else {
            continue;
        };
        if uses(&code, name) {
            out.push(Related {
                path: p.to_string(),
                name: s.name.clone(),
                role: Role::Caller,
                code,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::tests::write;
    use crate::{Language, Limits, ParsedFile};
    use std::path::Path;
    use std::sync::atomic::AtomicBool;

    const PRICING: &str = "def bulk_price(unit_price, quantity):\n    return round(unit_price * quantity, 2)\n\n\ndef get(x):\n    return x\n";
    const CART: &str = "from shop.pricing import bulk_price\n\n\nclass Cart:\n    def total(self):\n        return sum(bulk_price(p, q) for p, q in self.lines)\n\n    def size(self):\n        return len(self.lines)\n";
    const TEST: &str = "from shop.pricing import bulk_price\n\n\ndef test_bulk():\n    assert bulk_price(1, 2) == 2\n";
    const OTHER: &str = "def get(y):\n    return y\n\n\ndef bulk(n):\n    return n\n";

    fn fixture() -> (tempfile::TempDir, WorkspaceIndex) {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        write(r, "shop/pricing.py", PRICING);
        write(r, "shop/cart.py", CART);
        write(r, "tests/test_pricing.py", TEST);
        write(r, "shop/other.py", OTHER);
        write(r, "shop/more.py", "def get(z):\n    return z\n");
        let index = WorkspaceIndex::build(
            r.to_path_buf(),
            Limits::default(),
            &mut |_| {},
            &AtomicBool::new(false),
        )
        .unwrap();
        (dir, index)
    }

    fn reader(root: &Path) -> impl Fn(&str) -> Option<String> + '_ {
        move |p| std::fs::read_to_string(root.join(p)).ok()
    }

    #[test]
    fn callers_come_from_other_files_tests_last() {
        let (dir, index) = fixture();
        let read = reader(dir.path());
        let found = callers(&index, "shop/pricing.py", "bulk_price", &read, 5);
        let names: Vec<(&str, &str)> = found
            .iter()
            .map(|r| (r.path.as_str(), r.name.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("shop/cart.py", "total"),
                ("tests/test_pricing.py", "test_bulk")
            ]
        );
        assert!(
            found[0].code.starts_with("    def total(self):"),
            "{found:?}"
        );
        assert!(found.iter().all(|r| r.role == Role::Caller));
        // `bulk` is a word of `bulk_price` but not the identifier.
        assert!(callers(&index, "shop/other.py", "bulk", &read, 5).is_empty());
        assert_eq!(
            callers(&index, "shop/pricing.py", "bulk_price", &read, 1).len(),
            1
        );
    }

    #[test]
    fn callees_are_the_definitions_of_the_names_used_unless_ambiguous() {
        let (dir, index) = fixture();
        let read = reader(dir.path());
        let total = &CART[CART.find("    def total").unwrap()..CART.find("    def size").unwrap()];
        let found = callees(&index, "shop/cart.py", total, &["total"], &read, 5);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].path, "shop/pricing.py");
        assert_eq!(found[0].role, Role::Callee);
        assert!(found[0].code.starts_with("def bulk_price("));
        // `get` has three definitions: too generic to pick one.
        assert!(callees(&index, "shop/cart.py", "get(1)", &[], &read, 5).is_empty());
        // A name the file defines itself is not looked up elsewhere.
        assert!(callees(&index, "shop/pricing.py", "bulk_price(1, 2)", &[], &read, 5).is_empty());
    }

    #[test]
    fn callees_in_the_file_are_those_outside_what_is_shown() {
        let text = "def helper(x):\n    return x\n\n\ndef near(y):\n    return y\n\n\ndef f(z):\n    return helper(near(z))\n";
        let f = text.find("def f").unwrap();
        let symbols = ParsedFile::parse(Language::Python, text, &Limits::default()).symbols(text);
        let all = callees_in_file("a.py", text, &symbols, (f, text.len()), (f, f), 5);
        let names: Vec<&str> = all.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["helper", "near"]);
        assert_eq!(all[0].code, "def helper(x):\n    return x");
        let near = text.find("def near").unwrap();
        let some = callees_in_file("a.py", text, &symbols, (f, text.len()), (near, f), 5);
        assert_eq!(some.len(), 1);
        assert_eq!(some[0].name, "helper");
        assert_eq!(defined_names(&symbols).len(), 3);
    }

    #[test]
    fn a_file_changed_since_indexing_gives_no_stale_code() {
        let (dir, index) = fixture();
        write(dir.path(), "shop/cart.py", "# emptied\n");
        let read = reader(dir.path());
        assert!(callers(&index, "shop/pricing.py", "bulk_price", &read, 5)
            .iter()
            .all(|r| r.path != "shop/cart.py"));
    }

    #[test]
    fn only_calls_and_capitalised_names_count_as_references() {
        assert_eq!(
            referenced("total = total * RATE\nreturn round (total, 2) + Cart().size()"),
            ["RATE", "round", "Cart", "size"]
        );
        // `total` is a local variable here, though shop/cart.py defines a method of that name.
        let (dir, index) = fixture();
        let read = reader(dir.path());
        let code = "    total = total * 0.9\n    return bulk_price(total, 1)\n";
        let found = callees(&index, "shop/x.py", code, &[], &read, 5);
        let names: Vec<&str> = found.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["bulk_price"]);
    }

    #[test]
    fn test_paths() {
        for p in [
            "tests/test_a.py",
            "a/test_b.py",
            "pkg/a_test.go",
            "src/a.test.ts",
            "conftest.py",
        ] {
            assert!(is_test_path(p), "{p}");
        }
        for p in ["shop/cart.py", "src/lib.rs", "latest.py"] {
            assert!(!is_test_path(p), "{p}");
        }
    }
}
