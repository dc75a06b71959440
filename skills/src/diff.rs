//! Changes between two versions of files: unified diffs (what `basis edit` prints
//! and what review reads), the changed line ranges of the new version (where
//! review may comment), and reading and applying unified diffs (the patches of
//! task files and of SWE-bench instances).

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

/// A unified diff's part for one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePatch {
    /// The file before (`None` for a new file) and after (`None` when deleted),
    /// relative, without git's `a/` and `b/` prefixes.
    pub old_path: Option<String>,
    pub new_path: Option<String>,
    pub hunks: Vec<PatchHunk>,
}

impl FilePatch {
    /// The file this patch is about (its new path, or the old one if deleted).
    pub fn path(&self) -> &str {
        self.new_path
            .as_deref()
            .or(self.old_path.as_deref())
            .unwrap_or("")
    }
}

/// One `@@` hunk: its 1-based start lines and its lines, each with its newline
/// (none on a line marked `\ No newline at end of file`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchHunk {
    pub old_start: usize,
    pub new_start: usize,
    pub lines: Vec<PatchLine>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchLine {
    Context(String),
    Remove(String),
    Add(String),
}

impl PatchHunk {
    fn old_lines(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().filter_map(|l| match l {
            PatchLine::Context(t) | PatchLine::Remove(t) => Some(t.as_str()),
            PatchLine::Add(_) => None,
        })
    }

    fn new_lines(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().filter_map(|l| match l {
            PatchLine::Context(t) | PatchLine::Add(t) => Some(t.as_str()),
            PatchLine::Remove(_) => None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    #[error("line {line} of the patch: {message}")]
    Malformed { line: usize, message: String },
    #[error("{path}: a binary patch, which Basis does not apply")]
    Binary { path: String },
    #[error("{path}: hunk {hunk} does not apply (its lines are not in the file)")]
    DoesNotApply { path: String, hunk: usize },
    #[error("{path}: the patch changes a file that does not exist")]
    Missing { path: String },
    #[error("{path}: the patch creates a file that already exists")]
    Exists { path: String },
}

fn strip_prefix_path(raw: &str) -> Option<String> {
    let raw = raw.split('\t').next().unwrap_or(raw).trim_end();
    if raw == "/dev/null" {
        return None;
    }
    let p = raw
        .strip_prefix("a/")
        .or_else(|| raw.strip_prefix("b/"))
        .unwrap_or(raw);
    Some(p.to_string())
}

fn hunk_range(s: &str) -> Option<(usize, usize)> {
    let (start, len) = match s.split_once(',') {
        Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
        None => (s.parse().ok()?, 1),
    };
    Some((start, len))
}

/// Reads a unified diff (as git or `diff -u` write it): one [`FilePatch`] per
/// file, hunks checked against their line counts. Text outside file sections
/// (a commit message, `diff --git` and `index` lines) is skipped.
pub fn parse_patch(text: &str) -> Result<Vec<FilePatch>, PatchError> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut out: Vec<FilePatch> = Vec::new();
    let mut i = 0;
    let bad = |line: usize, message: &str| PatchError::Malformed {
        line: line + 1,
        message: message.into(),
    };
    while i < lines.len() {
        let line = lines[i].trim_end_matches(['\n', '\r']);
        if line.starts_with("GIT binary patch") || line.starts_with("Binary files ") {
            let path = line.split(" and ").last().unwrap_or("").to_string();
            return Err(PatchError::Binary { path });
        }
        let Some(old) = line.strip_prefix("--- ") else {
            i += 1;
            continue;
        };
        let new_line = lines
            .get(i + 1)
            .map(|l| l.trim_end_matches(['\n', '\r']))
            .ok_or_else(|| bad(i, "`---` without `+++`"))?;
        let new = new_line
            .strip_prefix("+++ ")
            .ok_or_else(|| bad(i + 1, "`---` not followed by `+++`"))?;
        let mut patch = FilePatch {
            old_path: strip_prefix_path(old),
            new_path: strip_prefix_path(new),
            hunks: Vec::new(),
        };
        i += 2;
        while i < lines.len() && lines[i].starts_with("@@") {
            let head = lines[i].trim_end_matches(['\n', '\r']);
            let mut parts = head.split_whitespace();
            let (_, old_r, new_r) = (parts.next(), parts.next(), parts.next());
            let (old_start, mut old_left) = old_r
                .and_then(|r| r.strip_prefix('-'))
                .and_then(hunk_range)
                .ok_or_else(|| bad(i, "a hunk header without `-start,len`"))?;
            let (new_start, mut new_left) = new_r
                .and_then(|r| r.strip_prefix('+'))
                .and_then(hunk_range)
                .ok_or_else(|| bad(i, "a hunk header without `+start,len`"))?;
            let mut hunk = PatchHunk {
                old_start,
                new_start,
                lines: Vec::new(),
            };
            i += 1;
            while old_left > 0 || new_left > 0 {
                let Some(raw) = lines.get(i) else {
                    return Err(bad(i, "the patch ends inside a hunk"));
                };
                let (tag, body) = match raw.chars().next() {
                    Some(c @ (' ' | '-' | '+')) => (c, raw[1..].to_string()),
                    // Some tools drop the space of an empty context line.
                    Some('\n') | Some('\r') => (' ', raw.to_string()),
                    _ => return Err(bad(i, "a hunk line that is not ` `, `-` or `+`")),
                };
                let line = match tag {
                    ' ' if old_left > 0 && new_left > 0 => {
                        old_left -= 1;
                        new_left -= 1;
                        PatchLine::Context(body)
                    }
                    '-' if old_left > 0 => {
                        old_left -= 1;
                        PatchLine::Remove(body)
                    }
                    '+' if new_left > 0 => {
                        new_left -= 1;
                        PatchLine::Add(body)
                    }
                    _ => return Err(bad(i, "the hunk has more lines than its header says")),
                };
                hunk.lines.push(line);
                i += 1;
                // `\ No newline at end of file` belongs to the line before it.
                if lines.get(i).is_some_and(|l| l.starts_with("\\ ")) {
                    if let Some(PatchLine::Context(t) | PatchLine::Remove(t) | PatchLine::Add(t)) =
                        hunk.lines.last_mut()
                    {
                        if t.ends_with('\n') {
                            t.pop();
                            if t.ends_with('\r') {
                                t.pop();
                            }
                        }
                    }
                    i += 1;
                }
            }
            // A marker after the last line of a hunk.
            if lines.get(i).is_some_and(|l| l.starts_with("\\ ")) {
                i += 1;
            }
            patch.hunks.push(hunk);
        }
        out.push(patch);
    }
    Ok(out)
}

/// Applies `patch` to the files `read` gives (`None`: the file does not exist)
/// and returns each changed file before and after (a deleted file's `new` is
/// empty, as is a created file's `old`). Every hunk must match exactly; a hunk
/// may sit a few lines off its stated place (as `patch` allows).
pub fn apply_patch(
    patch: &[FilePatch],
    read: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<FileChange>, PatchError> {
    let mut out = Vec::new();
    for fp in patch {
        let path = fp.path().to_string();
        let old = match &fp.old_path {
            Some(p) => read(p).ok_or_else(|| PatchError::Missing { path: p.clone() })?,
            None => {
                if read(&path).is_some() {
                    return Err(PatchError::Exists { path });
                }
                String::new()
            }
        };
        let new = apply_hunks(&path, &old, &fp.hunks)?;
        let new = if fp.new_path.is_none() {
            String::new()
        } else {
            new
        };
        out.push(FileChange { path, old, new });
    }
    Ok(out)
}

fn apply_hunks(path: &str, old: &str, hunks: &[PatchHunk]) -> Result<String, PatchError> {
    let lines: Vec<&str> = old.split_inclusive('\n').collect();
    let mut out = String::with_capacity(old.len());
    let mut at = 0usize; // next line of `lines` not yet copied
    for (n, h) in hunks.iter().enumerate() {
        let want: Vec<&str> = h.old_lines().collect();
        let stated = h.old_start.saturating_sub(1).max(at);
        let fits = |start: usize| {
            start + want.len() <= lines.len()
                && want.iter().zip(&lines[start..]).all(|(w, l)| w == l)
        };
        // The stated place first, then nearer places before farther ones.
        let found = (0..=lines.len())
            .flat_map(|d| [stated.checked_add(d), stated.checked_sub(d)])
            .flatten()
            .filter(|&s| s >= at && s <= lines.len())
            .take(2 * 200)
            .find(|&s| fits(s));
        let Some(start) = found else {
            return Err(PatchError::DoesNotApply {
                path: path.to_string(),
                hunk: n + 1,
            });
        };
        out.extend(lines[at..start].iter().copied());
        out.extend(h.new_lines());
        at = start + want.len();
    }
    out.extend(lines[at..].iter().copied());
    Ok(out)
}

/// The patch that undoes `patch`.
pub fn reverse_patch(patch: &[FilePatch]) -> Vec<FilePatch> {
    patch
        .iter()
        .map(|fp| FilePatch {
            old_path: fp.new_path.clone(),
            new_path: fp.old_path.clone(),
            hunks: fp
                .hunks
                .iter()
                .map(|h| PatchHunk {
                    old_start: h.new_start,
                    new_start: h.old_start,
                    lines: h
                        .lines
                        .iter()
                        .map(|l| match l {
                            PatchLine::Context(t) => PatchLine::Context(t.clone()),
                            PatchLine::Remove(t) => PatchLine::Add(t.clone()),
                            PatchLine::Add(t) => PatchLine::Remove(t.clone()),
                        })
                        .collect(),
                })
                .collect(),
        })
        .collect()
}

/// A patch as text, the way git writes it.
pub fn render_patch(patch: &[FilePatch]) -> String {
    let mut out = String::new();
    for fp in patch {
        let name = |p: &Option<String>, prefix: &str| match p {
            Some(p) => format!("{prefix}{p}"),
            None => "/dev/null".into(),
        };
        out.push_str(&format!(
            "--- {}\n+++ {}\n",
            name(&fp.old_path, "a/"),
            name(&fp.new_path, "b/")
        ));
        for h in &fp.hunks {
            let (o, n) = (h.old_lines().count(), h.new_lines().count());
            out.push_str(&format!(
                "@@ -{},{o} +{},{n} @@\n",
                h.old_start, h.new_start
            ));
            for l in &h.lines {
                let (tag, t) = match l {
                    PatchLine::Context(t) => (' ', t),
                    PatchLine::Remove(t) => ('-', t),
                    PatchLine::Add(t) => ('+', t),
                };
                out.push(tag);
                out.push_str(t);
                if !t.ends_with('\n') {
                    out.push_str("\n\\ No newline at end of file\n");
                }
            }
        }
    }
    out
}

/// The patch of `changes` (old → new per file; an empty side is a missing file).
pub fn patch_of(changes: &[FileChange], context: usize) -> String {
    let mut out = String::new();
    for c in changes {
        if c.old == c.new {
            continue;
        }
        let mut d = unified(&c.path, &c.old, &c.new, context);
        if c.old.is_empty() {
            d = d.replacen(&format!("--- a/{}", c.path), "--- /dev/null", 1);
        }
        if c.new.is_empty() {
            d = d.replacen(&format!("+++ b/{}", c.path), "+++ /dev/null", 1);
        }
        out.push_str(&d);
    }
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
    #[test]
    fn patches_round_trip_apply_and_reverse() {
        let old = "a\nb\nc\nd\ne\nf\ng\nh\n";
        let new = "a\nB\nc\nd\ne\nf\nG\nh\nI\n";
        let files = |p: &str| match p {
            "x.py" => Some(old.to_string()),
            _ => None,
        };
        let text = patch_of(
            &[FileChange {
                path: "x.py".into(),
                old: old.into(),
                new: new.into(),
            }],
            1,
        );
        let patch = parse_patch(&text).unwrap();
        assert_eq!(patch.len(), 1);
        assert_eq!(patch[0].hunks.len(), 2, "{text}");
        let applied = apply_patch(&patch, &files).unwrap();
        assert_eq!(applied[0].new, new);
        // Reversed, it takes the new text back.
        let back = apply_patch(&reverse_patch(&patch), &|_| Some(new.to_string())).unwrap();
        assert_eq!(back[0].new, old);
        // Rendered and read again, it is the same patch.
        assert_eq!(parse_patch(&render_patch(&patch)).unwrap(), patch);
        // Shifted by lines added above, it still applies.
        let shifted = format!("top\n{old}");
        let moved = apply_patch(&patch, &|_| Some(shifted.clone())).unwrap();
        assert_eq!(moved[0].new, format!("top\n{new}"));
        // On text that does not hold its lines, it does not.
        let err = apply_patch(&patch, &|_| Some("other\n".into())).unwrap_err();
        assert!(
            matches!(err, PatchError::DoesNotApply { hunk: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn git_patches_with_new_deleted_files_and_no_newline() {
        let text = "diff --git a/n.py b/n.py\nnew file mode 100644\nindex 0000000..1111111\n--- /dev/null\n+++ b/n.py\n@@ -0,0 +1,2 @@\n+x = 1\n+y = 2\n\\ No newline at end of file\ndiff --git a/old.py b/old.py\ndeleted file mode 100644\n--- a/old.py\n+++ /dev/null\n@@ -1 +0,0 @@\n-gone\n";
        let patch = parse_patch(text).unwrap();
        assert_eq!(patch[0].old_path, None);
        assert_eq!(patch[1].new_path, None);
        let read = |p: &str| (p == "old.py").then(|| "gone\n".to_string());
        let out = apply_patch(&patch, &read).unwrap();
        assert_eq!(out[0].new, "x = 1\ny = 2");
        assert_eq!((out[1].old.as_str(), out[1].new.as_str()), ("gone\n", ""));
        // Creating a file that exists, or changing one that does not, fails.
        assert!(apply_patch(&patch[..1], &|_| Some(String::new())).is_err());
        assert!(apply_patch(&patch[1..], &|_| None).is_err());
        // Malformed patches are errors with a line number, never panics.
        for bad in [
            "--- a/x\n",
            "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n x\n",
            "--- a/x\n+++ b/x\n@@ nonsense @@\n",
        ] {
            assert!(parse_patch(bad).is_err(), "{bad:?}");
        }
        for cut in 0..text.len() {
            if text.is_char_boundary(cut) {
                let _ = parse_patch(&text[..cut]);
            }
        }
    }
}
