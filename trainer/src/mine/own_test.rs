//! The repository's own tests as reference answers. When a mutant makes the
//! suite fail, the tests that failed already show the bug: one of them, cut
//! out of its module (the module's imports, its class line, the class's
//! set-up and helper methods, and that one test), is a test file that fails
//! on the mutant and passes on the original, a reproduction; one failing test
//! for each of a function's mutants makes tests that catch them all, testgen's
//! answer. The miner keeps such a file only after checking exactly that with
//! the skill's verifier, so the warm start (`basis train --sft`) has answers
//! to learn from. Python unittest only: a Rust test in a `mod tests` of the
//! file itself reaches private items and does not stand alone.

use basis_code::related::uses;
use basis_code::{Language, Limits, ParsedFile, SymbolKind};

/// The failing unittest cases a run's output names, in order: module
/// (dotted), class and method. unittest writes `FAIL: test_x (pkg.mod.Class.test_x)`
/// (Python 3.11 on) or `FAIL: test_x (pkg.mod.Class)`. A failing doctest
/// (`FAIL: name (pkg.mod)`) reads as one whose module file does not exist.
pub fn failing_cases(output: &str) -> Vec<(String, String, String)> {
    output
        .lines()
        .filter_map(|line| {
            let rest = line
                .strip_prefix("FAIL: ")
                .or_else(|| line.strip_prefix("ERROR: "))?;
            let (method, id) = rest.trim().split_once(' ')?;
            let id = id.strip_prefix('(')?.strip_suffix(')')?;
            let id = id.strip_suffix(&format!(".{method}")).unwrap_or(id);
            let (module, class) = id.rsplit_once('.')?;
            let ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_');
            (ok(method) && ok(class) && module.split('.').all(ok))
                .then(|| (module.to_string(), class.to_string(), method.to_string()))
        })
        .collect()
}

/// The file of a dotted module, relative to where unittest discovery started.
pub fn module_path(module: &str) -> String {
    format!("{}.py", module.replace('.', "/"))
}

/// Line `n` (0-based) and the lines of decorators right above it, as the
/// byte offset where they start.
fn with_decorators(lines: &[&str], starts: &[usize], n: usize) -> usize {
    let mut first = n;
    while first > 0 && lines[first - 1].trim_start().starts_with('@') {
        first -= 1;
    }
    starts[first]
}

/// `module_text` cut down to the module's imports and class `class` with its
/// methods that are not tests plus the test `method`. `None` when the module
/// has no such class and method.
pub fn one_test_file(module_text: &str, class: &str, method: &str) -> Option<String> {
    tests_file(module_text, &[(class.to_string(), method.to_string())])
}

/// `module_text` cut down to the module's imports and, for each class among
/// `cases` (class, test method), the class with its methods that are not tests
/// and the tests `cases` name. `None` when a case is not in the module.
pub fn tests_file(module_text: &str, cases: &[(String, String)]) -> Option<String> {
    let parsed = ParsedFile::parse(Language::Python, module_text, &Limits::default());
    let symbols = parsed.symbols(module_text);
    let lines: Vec<&str> = module_text.split_inclusive('\n').collect();
    let starts: Vec<usize> = lines
        .iter()
        .scan(0, |at, l| {
            let s = *at;
            *at += l.len();
            Some(s)
        })
        .collect();
    let line_of = |byte: usize| starts.partition_point(|&s| s <= byte) - 1;
    // The imports: top-level `import` and `from` statements, with the lines of
    // a parenthesized list.
    let mut imports: Vec<String> = Vec::new();
    let mut open = false;
    for l in &lines {
        if open {
            imports.last_mut().expect("an open statement").push_str(l);
            open = !l.contains(')');
        } else if l.starts_with("import ") || l.starts_with("from ") {
            imports.push(l.to_string());
            open = l.contains('(') && !l.contains(')');
        }
    }
    let mut out = String::new();
    let mut found = 0;
    for c in symbols.iter().filter(|s| s.kind == SymbolKind::Class) {
        let wanted = |m: &str| {
            cases
                .iter()
                .any(|(class, method)| *class == c.name && method == m)
        };
        if !c.children.iter().any(|m| wanted(&m.name)) {
            continue;
        }
        out.push_str("\n\n");
        out.push_str(lines[line_of(c.span.start_byte)].trim_end());
        out.push('\n');
        for m in c.children.iter().filter(|m| m.kind == SymbolKind::Method) {
            if m.name.starts_with("test") && !wanted(&m.name) {
                continue;
            }
            found += usize::from(wanted(&m.name));
            let from = with_decorators(&lines, &starts, line_of(m.span.start_byte));
            let to = module_text[m.span.end_byte..]
                .find('\n')
                .map_or(module_text.len(), |i| m.span.end_byte + i + 1);
            out.push('\n');
            out.push_str(&module_text[from..to]);
        }
    }
    let distinct: std::collections::BTreeSet<&(String, String)> = cases.iter().collect();
    if found != distinct.len() || found == 0 {
        return None;
    }
    // Only the imports the kept code uses: a test module's whole import block
    // (more-itertools' is 40 lines) is what a small model learns otherwise.
    let used: String = imports
        .iter()
        .filter_map(|i| used_import(i, &out))
        .collect();
    Some(format!("{used}{out}"))
}

/// An import statement cut down to the names `code` uses (`None`: none).
/// `from __future__` and `*` imports are kept whole.
fn used_import(statement: &str, code: &str) -> Option<String> {
    let flat = statement.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.starts_with("from __future__") || flat.ends_with('*') {
        return Some(format!("{flat}\n"));
    }
    // (what the statement names, the name it binds)
    let bound = |part: &str, dotted_binds_first: bool| -> (String, String) {
        let part = part.trim();
        match part.split_once(" as ") {
            Some((_, alias)) => (part.to_string(), alias.trim().to_string()),
            None if dotted_binds_first => (
                part.to_string(),
                part.split('.').next().unwrap_or(part).to_string(),
            ),
            None => (part.to_string(), part.to_string()),
        }
    };
    let keep = |names: &str, dotted: bool| -> Vec<String> {
        names
            .split(',')
            .map(|p| p.trim().trim_matches(|c| c == '(' || c == ')').trim())
            .filter(|p| !p.is_empty())
            .map(|p| bound(p, dotted))
            .filter(|(_, b)| uses(code, b))
            .map(|(p, _)| p)
            .collect()
    };
    let (head, kept) = if let Some(names) = flat.strip_prefix("import ") {
        ("import ".to_string(), keep(names, true))
    } else {
        let (module, names) = flat.strip_prefix("from ")?.split_once(" import ")?;
        (format!("from {module} import "), keep(names, false))
    };
    (!kept.is_empty()).then(|| format!("{head}{}\n", kept.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_imports_the_tests_use() {
        let code = "class T(TestCase):\n    def test_a(self):\n        self.assertEqual(mi.first(chain([1])), np.ones)\n";
        for (statement, kept) in [
            (
                "from __future__ import annotations\n",
                Some("from __future__ import annotations\n"),
            ),
            ("import cmath\n", None),
            (
                "import more_itertools as mi\n",
                Some("import more_itertools as mi\n"),
            ),
            (
                "import numpy.linalg, numpy as np\n",
                Some("import numpy as np\n"),
            ),
            (
                "from itertools import (\n    accumulate,\n    chain,\n)\n",
                Some("from itertools import chain\n"),
            ),
            (
                "from unittest import TestCase, mock\n",
                Some("from unittest import TestCase\n"),
            ),
            ("from os import *\n", Some("from os import *\n")),
            // `chain` used, `chained` not: whole words only.
            ("from x import chained\n", None),
        ] {
            assert_eq!(used_import(statement, code).as_deref(), kept, "{statement}");
        }
    }

    #[test]
    fn the_failing_cases_in_either_unittest_format() {
        let out = "test_a (tests.test_cart.CartTest.test_a) ... ok\n\
                   ======\nFAIL: chunked (more_itertools.more)\n\
                   ======\nFAIL: test_add (tests.test_cart.CartTest.test_add)\n----\n\
                   ERROR: test_total (test_shop.ShopTests)\nFAIL: something odd\n";
        let case = |m: &str, c: &str, t: &str| (m.to_string(), c.to_string(), t.to_string());
        assert_eq!(
            failing_cases(out),
            vec![
                // The doctest reads as module `more_itertools`, class `more`:
                // no such file, and the miner moves on.
                case("more_itertools", "more", "chunked"),
                case("tests.test_cart", "CartTest", "test_add"),
                case("test_shop", "ShopTests", "test_total"),
            ]
        );
        assert_eq!(module_path("tests.test_cart"), "tests/test_cart.py");
    }

    #[test]
    fn one_test_with_its_imports_set_up_and_helpers() {
        let module = "\"\"\"Cart tests.\"\"\"\nimport unittest\nfrom shopkit.cart import (\n    Cart,\n)\n\nLIMIT = 3\n\n\nclass Other(unittest.TestCase):\n    def test_other(self):\n        pass\n\n\nclass CartTest(unittest.TestCase):\n    @classmethod\n    def setUpClass(cls):\n        cls.n = 1\n\n    def test_one(self):\n        self.assertEqual(1, 1)\n\n    def make(self):\n        return Cart()\n\n    def test_two(self):\n        self.assertEqual(self.make().count(), 0)\n";
        let file = one_test_file(module, "CartTest", "test_two").unwrap();
        assert_eq!(
            file,
            "import unittest\nfrom shopkit.cart import Cart\n\n\nclass CartTest(unittest.TestCase):\n\n    @classmethod\n    def setUpClass(cls):\n        cls.n = 1\n\n    def make(self):\n        return Cart()\n\n    def test_two(self):\n        self.assertEqual(self.make().count(), 0)\n"
        );
        assert_eq!(one_test_file(module, "CartTest", "test_three"), None);
        // Several cases, in two classes, each class once.
        let two = |c: &str, m: &str| (c.to_string(), m.to_string());
        let file = tests_file(
            module,
            &[
                two("CartTest", "test_one"),
                two("Other", "test_other"),
                two("CartTest", "test_one"),
            ],
        )
        .unwrap();
        assert!(
            file.contains("class Other(unittest.TestCase):\n\n    def test_other")
                && file.matches("class CartTest").count() == 1
                && file.contains("def test_one")
                && !file.contains("def test_two"),
            "{file}"
        );
        assert_eq!(
            tests_file(
                module,
                &[two("CartTest", "test_one"), two("CartTest", "nope")]
            ),
            None
        );
        assert_eq!(one_test_file(module, "Missing", "test_two"), None);
    }
}
