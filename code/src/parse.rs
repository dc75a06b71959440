//! Parsing with tree-sitter, bounded in time and size, and incremental reparsing.

use std::time::{Duration, Instant};

use serde::Serialize;
use tree_sitter::{InputEdit, Parser, Tree};

use crate::lang::Language;
use crate::symbols::{extract, Symbol};

/// A position as tree-sitter counts it: 0-based row, column in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize)]
pub struct Point {
    pub row: usize,
    pub column: usize,
}

/// A range of text: byte offsets and the matching points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Span {
    pub start_byte: usize,
    pub end_byte: usize,
    pub start: Point,
    pub end: Point,
}

impl Span {
    pub(crate) fn of(node: tree_sitter::Node<'_>) -> Span {
        let (s, e) = (node.start_position(), node.end_position());
        Span {
            start_byte: node.start_byte(),
            end_byte: node.end_byte(),
            start: Point {
                row: s.row,
                column: s.column,
            },
            end: Point {
                row: e.row,
                column: e.column,
            },
        }
    }
}

/// One edit, as the server computes it from its rope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextEdit {
    pub start_byte: usize,
    pub old_end_byte: usize,
    pub new_end_byte: usize,
    pub start: Point,
    pub old_end: Point,
    pub new_end: Point,
}

/// Bounds on the work done per file.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Larger texts are not parsed (no symbols).
    pub max_parse_bytes: usize,
    /// Larger files are indexed by path only.
    pub max_index_bytes: u64,
    /// A parse taking longer is abandoned.
    pub parse_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_parse_bytes: 8 << 20,
            max_index_bytes: 2 << 20,
            parse_timeout: Duration::from_secs(2),
        }
    }
}

/// NUL in the first 8 KiB, or not UTF-8.
pub fn looks_binary(bytes: &[u8]) -> bool {
    bytes[..bytes.len().min(8192)].contains(&0) || std::str::from_utf8(bytes).is_err()
}

/// A file's syntax tree (or why there is none).
pub struct ParsedFile {
    language: Language,
    tree: Option<Tree>,
    skipped: Option<String>,
}

fn run_parser(
    language: Language,
    text: &str,
    old: Option<&Tree>,
    limits: &Limits,
) -> Result<Tree, String> {
    if text.len() > limits.max_parse_bytes {
        return Err(format!(
            "{} bytes, over the parse limit of {}",
            text.len(),
            limits.max_parse_bytes
        ));
    }
    let mut parser = Parser::new();
    parser
        .set_language(&language.grammar())
        .map_err(|e| format!("grammar: {e}"))?;
    let deadline = Instant::now() + limits.parse_timeout;
    let bytes = text.as_bytes();
    let mut read =
        |offset: usize, _: tree_sitter::Point| -> &[u8] { bytes.get(offset..).unwrap_or(&[]) };
    let mut progress = |_: &tree_sitter::ParseState| Instant::now() > deadline;
    let options = tree_sitter::ParseOptions::new().progress_callback(&mut progress);
    parser
        .parse_with_options(&mut read, old, Some(options))
        .ok_or_else(|| format!("parsing took longer than {:?}", limits.parse_timeout))
}

fn input_edit(e: &TextEdit) -> InputEdit {
    let p = |p: Point| tree_sitter::Point {
        row: p.row,
        column: p.column,
    };
    InputEdit {
        start_byte: e.start_byte,
        old_end_byte: e.old_end_byte,
        new_end_byte: e.new_end_byte,
        start_position: p(e.start),
        old_end_position: p(e.old_end),
        new_end_position: p(e.new_end),
    }
}

impl ParsedFile {
    /// Parses `text` within `limits`; never panics or hangs (see [`ParsedFile::skipped`]).
    pub fn parse(language: Language, text: &str, limits: &Limits) -> ParsedFile {
        match run_parser(language, text, None, limits) {
            Ok(tree) => ParsedFile {
                language,
                tree: Some(tree),
                skipped: None,
            },
            Err(reason) => ParsedFile {
                language,
                tree: None,
                skipped: Some(reason),
            },
        }
    }

    /// Applies `edits` (in order) to the old tree and reparses `new_text` from it.
    pub fn reparse(&mut self, new_text: &str, edits: &[TextEdit], limits: &Limits) {
        let old = self.tree.take().map(|mut t| {
            for e in edits {
                t.edit(&input_edit(e));
            }
            t
        });
        match run_parser(self.language, new_text, old.as_ref(), limits) {
            Ok(tree) => {
                self.tree = Some(tree);
                self.skipped = None;
            }
            Err(reason) => self.skipped = Some(reason),
        }
    }

    /// The file's symbols, in source order (empty when it was not parsed).
    pub fn symbols(&self, text: &str) -> Vec<Symbol> {
        match &self.tree {
            Some(t) => extract(self.language, t, text),
            None => Vec::new(),
        }
    }

    /// Why there is no tree, if there is none.
    pub fn skipped(&self) -> Option<&str> {
        self.skipped.as_deref()
    }

    pub fn language(&self) -> Language {
        self.language
    }

    /// The S-expression of the tree (for tests and debugging).
    pub fn sexp(&self) -> Option<String> {
        self.tree.as_ref().map(|t| t.root_node().to_sexp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_detection() {
        assert!(looks_binary(b"abc\0def"));
        assert!(looks_binary(&[0xff, 0xfe, 0x41]));
        assert!(!looks_binary("fn main() {} // 😀".as_bytes()));
    }

    #[test]
    fn oversized_and_slow_parses_are_skipped() {
        let limits = Limits {
            max_parse_bytes: 10,
            ..Limits::default()
        };
        let p = ParsedFile::parse(Language::Python, "x = 1\ny = 2\n", &limits);
        assert!(p.skipped().unwrap().contains("over the parse limit"));
        assert!(p.symbols("x = 1\ny = 2\n").is_empty());
        let limits = Limits {
            parse_timeout: Duration::ZERO,
            ..Limits::default()
        };
        let text = "def f(x):\n    return x\n".repeat(20_000);
        let p = ParsedFile::parse(Language::Python, &text, &limits);
        assert!(
            p.skipped().unwrap().contains("longer than"),
            "{:?}",
            p.skipped()
        );
    }

    #[test]
    fn a_two_megabyte_line_parses() {
        let text = format!(
            "const data = [{}];\nfunction after() {{}}\n",
            "1,".repeat(1 << 20)
        );
        let start = Instant::now();
        let limits = Limits {
            parse_timeout: Duration::from_secs(60),
            ..Limits::default()
        };
        let p = ParsedFile::parse(Language::JavaScript, &text, &limits);
        eprintln!("2 MB line parsed in {:?}", start.elapsed());
        assert_eq!(p.skipped(), None);
        let names: Vec<String> = p.symbols(&text).into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["after"]);
    }
}
