//! The open documents: their text (a rope), version, language and syntax tree.
//!
//! Document sync (`didOpen`, `didChange`, `didClose`) is applied here strictly in
//! arrival order by the [`crate::layer`] before any handler runs, so nothing can
//! reorder it. Applying a change only edits the rope and remembers the edit;
//! parsing waits until something needs the tree (then the remembered edits make
//! it an incremental reparse), so typing never waits on tree-sitter.

use std::collections::HashMap;

use basis_code::{Language, Limits, ParsedFile, Symbol, TextEdit};
use ropey::Rope;
use tower_lsp_server::ls_types::TextDocumentContentChangeEvent;

use crate::position::{point_of_char, to_char, Encoding};

/// One open document.
pub struct Document {
    pub rope: Rope,
    pub version: i32,
    pub language: Option<Language>,
    /// Distinguishes a reopened document from the one closed before it.
    pub epoch: u64,
    /// The syntax tree of the text as it was before `tree_edits`; `None` until
    /// something asks for it, or while a parse runs on a snapshot.
    tree: Option<ParsedFile>,
    tree_edits: Vec<TextEdit>,
}

impl Document {
    fn new(text: &str, version: i32, language: Option<Language>, epoch: u64) -> Self {
        Self {
            rope: Rope::from_str(text),
            version,
            language,
            epoch,
            tree: None,
            tree_edits: Vec::new(),
        }
    }

    /// Applies one content change. Returns a warning when its range had to be
    /// clamped (the client and we may now disagree; the next full sync fixes it).
    fn apply(&mut self, change: &TextDocumentContentChangeEvent, enc: Encoding) -> Option<String> {
        let Some(range) = change.range else {
            self.rope = Rope::from_str(&change.text);
            self.tree = None;
            self.tree_edits.clear();
            return None;
        };
        let (mut start, ok_start) = to_char(&self.rope, range.start, enc);
        let (mut end, ok_end) = to_char(&self.rope, range.end, enc);
        let mut warning = (!ok_start || !ok_end)
            .then(|| format!("change range {range:?} is outside the document; clamped"));
        if end < start {
            warning = Some(format!("change range {range:?} ends before it starts"));
            std::mem::swap(&mut start, &mut end);
        }
        let start_byte = self.rope.char_to_byte(start);
        let old_end_byte = self.rope.char_to_byte(end);
        let start_point = point_of_char(&self.rope, start);
        let old_end_point = point_of_char(&self.rope, end);
        self.rope.remove(start..end);
        self.rope.insert(start, &change.text);
        let new_end = start + change.text.chars().count();
        self.tree_edits.push(TextEdit {
            start_byte,
            old_end_byte,
            new_end_byte: start_byte + change.text.len(),
            start: start_point,
            old_end: old_end_point,
            new_end: point_of_char(&self.rope, new_end),
        });
        warning
    }
}

/// What a background parse needs: the text and the tree to start from.
pub struct ParseSnapshot {
    pub uri: String,
    pub epoch: u64,
    pub version: i32,
    pub rope: Rope,
    pub language: Language,
    tree: Option<ParsedFile>,
    edits: Vec<TextEdit>,
}

impl ParseSnapshot {
    /// Brings the tree up to date with the snapshot's text (an incremental reparse
    /// when there was a tree) and returns the symbols. Runs off the message loop.
    pub fn parse(mut self, limits: &Limits) -> (ParsedTree, Vec<Symbol>) {
        let text = self.rope.to_string();
        let tree = match self.tree.take() {
            Some(mut t) if !self.edits.is_empty() => {
                t.reparse(&text, &self.edits, limits);
                t
            }
            Some(t) => t,
            None => ParsedFile::parse(self.language, &text, limits),
        };
        let symbols = tree.symbols(&text);
        let skipped = tree.skipped().map(str::to_string);
        (
            ParsedTree {
                uri: self.uri,
                epoch: self.epoch,
                tree,
                skipped,
            },
            symbols,
        )
    }
}

/// A tree parsed on a snapshot, to be handed back with [`Documents::return_tree`].
pub struct ParsedTree {
    uri: String,
    epoch: u64,
    tree: ParsedFile,
    pub skipped: Option<String>,
}

/// All open documents, keyed by URI string.
#[derive(Default)]
pub struct Documents {
    docs: HashMap<String, Document>,
    next_epoch: u64,
}

impl Documents {
    pub fn open(&mut self, uri: &str, text: &str, version: i32, language: Option<Language>) {
        self.next_epoch += 1;
        self.docs.insert(
            uri.to_string(),
            Document::new(text, version, language, self.next_epoch),
        );
    }

    /// Applies a `didChange` in order. Returns warnings to log; a change to a
    /// document that is not open is an error (the client skipped `didOpen`).
    pub fn change(
        &mut self,
        uri: &str,
        version: i32,
        changes: &[TextDocumentContentChangeEvent],
        enc: Encoding,
    ) -> Result<Vec<String>, String> {
        let doc = self
            .docs
            .get_mut(uri)
            .ok_or_else(|| format!("didChange for {uri}, which is not open"))?;
        let mut warnings = Vec::new();
        for change in changes {
            warnings.extend(doc.apply(change, enc));
        }
        if version <= doc.version {
            warnings.push(format!(
                "didChange for {uri} has version {version}, not above {}",
                doc.version
            ));
        }
        doc.version = version;
        Ok(warnings)
    }

    pub fn close(&mut self, uri: &str) -> bool {
        self.docs.remove(uri).is_some()
    }

    pub fn get(&self, uri: &str) -> Option<&Document> {
        self.docs.get(uri)
    }

    /// Every open document with its URI.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Document)> {
        self.docs.iter()
    }

    pub fn len(&self) -> usize {
        self.docs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// Takes what a parse of `uri` needs, leaving the tree out until
    /// [`Documents::return_tree`] brings it back. `None` when the document is not
    /// open or its language is not one we parse.
    pub fn parse_snapshot(&mut self, uri: &str) -> Option<ParseSnapshot> {
        let doc = self.docs.get_mut(uri)?;
        let language = doc.language?;
        Some(ParseSnapshot {
            uri: uri.to_string(),
            epoch: doc.epoch,
            version: doc.version,
            rope: doc.rope.clone(),
            language,
            tree: doc.tree.take(),
            edits: std::mem::take(&mut doc.tree_edits),
        })
    }

    /// Puts a parsed tree back. Edits that arrived while it was parsed stay
    /// remembered, and apply on top of it at the next parse.
    pub fn return_tree(&mut self, parsed: ParsedTree) {
        if let Some(doc) = self.docs.get_mut(&parsed.uri) {
            if doc.epoch == parsed.epoch && doc.tree.is_none() {
                doc.tree = Some(parsed.tree);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_lsp_server::ls_types::{Position, Range};

    fn change(sl: u32, sc: u32, el: u32, ec: u32, text: &str) -> TextDocumentContentChangeEvent {
        TextDocumentContentChangeEvent {
            range: Some(Range::new(Position::new(sl, sc), Position::new(el, ec))),
            range_length: None,
            text: text.into(),
        }
    }

    #[test]
    fn changes_apply_in_order_and_trees_follow() {
        let mut docs = Documents::default();
        docs.open(
            "file:///a.py",
            "def f():\n    pass\n",
            1,
            Some(Language::Python),
        );
        let limits = Limits::default();
        let (tree, syms) = docs.parse_snapshot("file:///a.py").unwrap().parse(&limits);
        docs.return_tree(tree);
        assert_eq!(syms[0].name, "f");
        let w = docs
            .change(
                "file:///a.py",
                2,
                &[change(0, 4, 0, 5, "g😀"), change(0, 4, 0, 7, "hello")],
                Encoding::Utf16,
            )
            .unwrap();
        assert!(w.is_empty(), "{w:?}");
        let doc = docs.get("file:///a.py").unwrap();
        assert_eq!(doc.rope.to_string(), "def hello():\n    pass\n");
        let (_, syms) = docs.parse_snapshot("file:///a.py").unwrap().parse(&limits);
        assert_eq!(syms[0].name, "hello");
    }

    #[test]
    fn bad_ranges_are_clamped_with_a_warning() {
        let mut docs = Documents::default();
        docs.open("u", "abc", 1, None);
        let w = docs
            .change(
                "u",
                2,
                &[change(0, 2, 0, 1, "X"), change(7, 0, 9, 0, "!")],
                Encoding::Utf8,
            )
            .unwrap();
        assert_eq!(w.len(), 2);
        assert_eq!(docs.get("u").unwrap().rope.to_string(), "aXc!");
        assert!(docs.change("nope", 1, &[], Encoding::Utf8).is_err());
    }
}
