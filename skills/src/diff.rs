//! Changes between two versions of files: unified diffs (what `basis edit` prints
//! and what review reads) and the changed line ranges of the new version (where
//! review may comment).

use similar::{ChangeTag, TextDiff};

/// One file's change: its text before and after (empty when it did not exist).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileChange {
    /// Relative to the repository root, with `/` separators.
    pub path: String,
    pub old: String,
    pub new: String,
}

/// A changed range of the new version, in 0-based lines, `end` exclusive. A pure
/// deletion is an empty range at the line after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hunk {
    pub start: usize,
    pub end: usize,
}

impl Hunk {
    /// Whether 0-based `line` is in the hunk (a deletion's hunk holds its line).
    pub fn contains(&self, line: usize) -> bool {
        (self.start..self.end.max(self.start + 1)).contains(&line)
    }
}

/// The unified diff of `old` → `new` with `a/` and `b/` path prefixes, as git
/// prints it; empty when they are equal.
pub fn unified(path: &str, old: &str, new: &str, context: usize) -> String {
    if old == new {
        return String::new();
    }
    let diff = TextDiff::from_lines(old, new);
    let mut out = diff
        .unified_diff()
        .context_radius(context)
        .header(&format!("a/{path}"), &format!("b/{path}"))
        .to_string();
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// The unified diff of every change, in order.
pub fn unified_all(changes: &[FileChange], context: usize) -> String {
    changes
        .iter()
        .map(|c| unified(&c.path, &c.old, &c.new, context))
        .collect()
}

/// The changed line ranges of `new` against `old`.
pub fn hunks(old: &str, new: &str) -> Vec<Hunk> {
    let diff = TextDiff::from_lines(old, new);
    let mut out: Vec<Hunk> = Vec::new();
    let mut open: Option<Hunk> = None;
    let mut new_line = 0usize;
    for change in diff.iter_all_changes() {
        match change.tag() {
            ChangeTag::Equal => {
                out.extend(open.take());
                new_line += 1;
            }
            ChangeTag::Delete => {
                open.get_or_insert(Hunk {
                    start: new_line,
                    end: new_line,
                });
            }
            ChangeTag::Insert => {
                let h = open.get_or_insert(Hunk {
                    start: new_line,
                    end: new_line,
                });
                new_line += 1;
                h.end = new_line;
            }
        }
    }
    out.extend(open);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unified_diff_has_git_headers_and_hunks() {
        let d = unified("a.py", "x = 1\ny = 2\n", "x = 1\ny = 3\n", 3);
        assert!(d.starts_with("--- a/a.py\n+++ b/a.py\n@@"), "{d}");
        assert!(d.contains("-y = 2\n+y = 3\n"), "{d}");
        assert_eq!(unified("a.py", "same\n", "same\n", 3), "");
        // A new file.
        let d = unified("n.py", "", "print(1)\n", 3);
        assert!(d.contains("+print(1)"), "{d}");
    }

    #[test]
    fn hunks_are_ranges_of_the_new_text() {
        let old = "a\nb\nc\nd\ne\n";
        let new = "a\nB\nc\nd\nx\ny\ne\n";
        assert_eq!(
            hunks(old, new),
            vec![Hunk { start: 1, end: 2 }, Hunk { start: 4, end: 6 }]
        );
        // A deletion is an empty range where the lines were.
        let h = hunks("a\nb\nc\n", "a\nc\n");
        assert_eq!(h, vec![Hunk { start: 1, end: 1 }]);
        assert!(h[0].contains(1) && !h[0].contains(0));
        assert!(hunks("same\n", "same\n").is_empty());
        assert_eq!(hunks("", "new\nfile\n"), vec![Hunk { start: 0, end: 2 }]);
    }
}
