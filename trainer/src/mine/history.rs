//! Tasks from a repository's history: commits that fix something.
//!
//! A commit is taken when its message says it fixes something (fix, bug, error,
//! crash, wrong, regression, resolves #n, ...), it is not a merge, and it changes
//! one to three source files (test files aside) by at most [`MAX_CHANGED_LINES`]
//! lines, with no binary file and not only renames. Each gives:
//!
//! - a **localize** task at its parent commit: the message (its first line
//!   cleared of prefixes like `fix(parser):` or `[bugfix]`, trailers dropped) →
//!   the source files it changed;
//! - a **review** task with the real diff (all of the commit's text files) for the
//!   message → YES;
//! - a **review** task → NO: the same message with one of, chosen by the seed
//!   among those the commit allows: the diff of another commit (at that commit's
//!   parent), the diff with one hunk reverted, or the diff with a bug planted in
//!   a function it touches (a tree-sitter mutant);
//! - an **edit** task at its parent commit for each source file whose changes all
//!   fall inside one function: that function's lines → the function as the commit
//!   left it, with the message as the instruction. It has no test command: its
//!   binary reward is the reference itself, its graded reward how far the answer
//!   went from the starting function toward it.

use std::collections::BTreeMap;
use std::path::Path;

use basis_code::Language;
use basis_skills::diff::{parse_patch, render_patch, FileChange};
use serde_json::json;

use super::mutation::{functions, Function};
use super::{is_test_path, shuffled, task_id, Config, MineError, Mined, Progress};
use crate::task::{
    EditInput, EditReference, LocalizeInput, LocalizeReference, Meta, RepoRef, ReviewInput,
    ReviewReference, Spec, Task, Verdict, TASK_SCHEMA,
};
use crate::workspace::git_text;

/// The most lines (added plus deleted) a fix commit may change.
pub const MAX_CHANGED_LINES: usize = 200;

/// A fix commit, as the miner sees it.
#[derive(Debug, Clone)]
struct Fix {
    sha: String,
    parent: String,
    issue: String,
    /// The source files it changed (test files aside), sorted.
    sources: Vec<String>,
    /// Every text file it changed.
    files: Vec<String>,
    /// Its diff against its parent (text files).
    diff: String,
}

fn git(repo: &Path, args: &[&str]) -> Result<String, MineError> {
    git_text(repo, args).map_err(|e| MineError::Git(e.to_string()))
}

/// Words of a subject that say a commit fixes something.
const FIX_WORDS: &[&str] = &[
    "fix",
    "fixes",
    "fixed",
    "fixing",
    "bug",
    "bugfix",
    "hotfix",
    "error",
    "crash",
    "crashes",
    "wrong",
    "incorrect",
    "regression",
    "broken",
    "resolve",
    "resolves",
    "resolved",
    "correct",
    "corrects",
    "mistake",
    "fail",
    "fails",
    "failing",
    "handle",
    "handles",
];

/// Words of a subject that say the fix is of tooling, style or docs, not of
/// behaviour.
const NOT_A_BUG: &[&str] = &[
    "lint",
    "linting",
    "linter",
    "mypy",
    "flake8",
    "pylint",
    "clippy",
    "typo",
    "typos",
    "format",
    "formatting",
    "style",
    "docs",
    "doc",
    "docstring",
    "documentation",
    "changelog",
    "ci",
    "typing",
    "annotations",
    "warning",
    "warnings",
    "deprecation",
    "readme",
];

/// Whether a commit message says it fixes something (a behaviour, not a lint).
pub fn says_fix(message: &str) -> bool {
    let subject = message.lines().next().unwrap_or("").to_ascii_lowercase();
    let words: Vec<&str> = subject
        .split(|c: char| !c.is_ascii_alphanumeric())
        .collect();
    words.iter().any(|w| FIX_WORDS.contains(w)) && !words.iter().any(|w| NOT_A_BUG.contains(w))
}

/// The issue a fix commit's message describes: the first line without its
/// prefix noise, then the body without trailers. Empty when nothing is left.
pub fn issue_of(message: &str) -> String {
    let mut lines = message.lines();
    let mut subject = lines.next().unwrap_or("").trim().to_string();
    // Prefixes: `fix:`, `fix(scope):`, `[bugfix]`, `BUG:`, `gh-123:`, `#123:`.
    loop {
        let before = subject.clone();
        if subject.starts_with('[') {
            if let Some(end) = subject.find(']') {
                subject = subject[end + 1..].trim_start().to_string();
            }
        }
        if let Some(colon) = subject.find(':') {
            let head = &subject[..colon];
            let looks_prefix = head.len() <= 24
                && !head.contains(' ')
                && head
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "()-_/#.!".contains(c));
            if looks_prefix {
                subject = subject[colon + 1..].trim_start().to_string();
            }
        }
        if subject == before {
            break;
        }
    }
    // "Fixes #12" and the like at the end say nothing about the issue.
    let subject = subject
        .trim_end_matches(|c: char| c == '.' || c.is_whitespace())
        .to_string();
    let trailer = |l: &str| {
        let t = l.trim();
        let key = t.split(':').next().unwrap_or("");
        (t.contains(':') && !key.contains(' ') && key.contains('-') && key.len() < 30)
            || t.to_ascii_lowercase().starts_with("fixes #")
            || t.to_ascii_lowercase().starts_with("closes #")
    };
    let body: Vec<&str> = lines.filter(|l| !trailer(l)).collect();
    let body = body.join("\n").trim().to_string();
    let mut first = subject.chars();
    let subject: String = match first.next() {
        Some(c) => c.to_uppercase().chain(first).collect(),
        None => String::new(),
    };
    if body.is_empty() {
        subject
    } else {
        format!("{subject}\n\n{body}")
    }
}

/// Reads a commit: `None` when it is not a fix the miner takes.
fn read_fix(repo: &Path, sha: &str) -> Result<Option<Fix>, MineError> {
    let head = git(repo, &["log", "-1", "--format=%P%x00%B", sha])?;
    let (parents, message) = head.split_once('\0').unwrap_or(("", ""));
    let parents: Vec<&str> = parents.split_whitespace().collect();
    if parents.len() != 1 || !says_fix(message) {
        return Ok(None);
    }
    let issue = issue_of(message);
    if issue.split_whitespace().count() < 3 {
        return Ok(None);
    }
    let numstat = git(
        repo,
        &["diff", "--numstat", "-M", "--no-color", parents[0], sha],
    )?;
    let (mut sources, mut files, mut changed) = (Vec::new(), Vec::new(), 0usize);
    let mut only_renames = true;
    for line in numstat.lines() {
        let mut cols = line.splitn(3, '\t');
        let (added, deleted, path) = (cols.next(), cols.next(), cols.next());
        let (Some(added), Some(deleted), Some(path)) = (added, deleted, path) else {
            continue;
        };
        if added == "-" || deleted == "-" {
            return Ok(None); // a binary file
        }
        if path.contains(" => ") {
            // A rename (`a => b`, `dir/{a => b}`): not a fix of one place.
            return Ok(None);
        }
        let n = added.parse::<usize>().unwrap_or(0) + deleted.parse::<usize>().unwrap_or(0);
        if n > 0 {
            only_renames = false;
        }
        changed += n;
        files.push(path.to_string());
        if Language::from_path(Path::new(path)).is_some() && !is_test_path(path) {
            sources.push(path.to_string());
        }
    }
    if only_renames || sources.is_empty() || sources.len() > 3 || changed > MAX_CHANGED_LINES {
        return Ok(None);
    }
    sources.sort();
    files.sort();
    let mut args = vec!["diff", "--no-color", "-U3", parents[0], sha, "--"];
    args.extend(files.iter().map(String::as_str));
    let diff = git(repo, &args)?;
    // Only patches Basis can read and apply make tasks.
    if parse_patch(&diff).map(|p| p.is_empty()).unwrap_or(true) {
        return Ok(None);
    }
    Ok(Some(Fix {
        sha: sha.to_string(),
        parent: parents[0].to_string(),
        issue,
        sources,
        files,
        diff,
    }))
}

fn show(repo: &Path, rev: &str, path: &str) -> Option<String> {
    git_text(repo, &["show", &format!("{rev}:{path}")]).ok()
}

fn task(
    config: &Config,
    id: String,
    spec: Spec,
    commit: &str,
    meta: BTreeMap<String, serde_json::Value>,
) -> Task {
    Task {
        schema: TASK_SCHEMA.into(),
        id,
        spec,
        repo: RepoRef {
            path: config.repo_path_in_tasks.clone(),
            commit: Some(commit.to_string()),
            patch: None,
        },
        language: None,
        meta: Meta {
            source: "mined:history".into(),
            split: None,
            extra: meta,
        },
    }
}

/// The 0-based row of byte `at` in `text`.
fn row_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
}

/// Rows `from..=to` of `text`, each with its line end.
fn rows(text: &str, from: usize, to: usize) -> String {
    text.split_inclusive('\n')
        .skip(from)
        .take(to + 1 - from)
        .collect()
}

/// The rows a function spans in `text`, first and last (0-based, inclusive).
fn span_rows(f: &Function, text: &str) -> (usize, usize) {
    (
        row_of(text, f.start_byte),
        row_of(text, f.end_byte.saturating_sub(1)),
    )
}

/// The edit a fix made to `path`, if every change of that file falls inside one
/// function: the function's rows before (1-based, inclusive) and its text after.
fn function_edit(repo: &Path, fix: &Fix, path: &str) -> Option<(EditInput, EditReference)> {
    let language = Language::from_path(Path::new(path))?;
    let old = show(repo, &fix.parent, path)?;
    let new = show(repo, &fix.sha, path)?;
    // The changed rows of the old text (a deletion holds the row after it).
    let changed = basis_skills::diff::hunks(&new, &old);
    let before = functions(path, language, &old);
    let touched: Vec<&Function> = before
        .iter()
        .filter(|f| {
            let (a, b) = span_rows(f, &old);
            changed.iter().any(|h| (a..=b).any(|r| h.contains(r)))
        })
        .collect();
    let [f] = touched[..] else {
        return None;
    };
    let (a, b) = span_rows(f, &old);
    if changed.is_empty() || !changed.iter().all(|h| h.start >= a && h.end <= b + 1) {
        return None;
    }
    let after = functions(path, language, &new)
        .into_iter()
        .find(|g| g.symbol == f.symbol)?;
    let (c, d) = span_rows(&after, &new);
    let replacement = rows(&new, c, d);
    if replacement == rows(&old, a, b) {
        return None;
    }
    Some((
        EditInput {
            instruction: fix.issue.clone(),
            file: path.to_string(),
            start_line: a + 1,
            end_line: b + 1,
        },
        EditReference {
            replacement,
            test_command: None,
        },
    ))
}

/// The diff with its `drop`-th hunk (counted over all files) left out.
fn without_hunk(diff: &str, drop: usize) -> Option<String> {
    let mut patch = parse_patch(diff).ok()?;
    let mut n = 0;
    for fp in &mut patch {
        let before = fp.hunks.len();
        let mut kept = Vec::new();
        for h in fp.hunks.drain(..) {
            if n != drop {
                kept.push(h);
            }
            n += 1;
        }
        fp.hunks = kept;
        debug_assert!(fp.hunks.len() <= before);
    }
    patch.retain(|fp| !fp.hunks.is_empty());
    (!patch.is_empty()).then(|| render_patch(&patch))
}

/// The diff with a bug planted in a function of a source file it changes: the
/// parent's text → the fixed text with one mutation.
fn with_planted_bug(repo: &Path, fix: &Fix, pick: usize) -> Option<(String, String)> {
    for path in &fix.sources {
        let language = Language::from_path(Path::new(path))?;
        let new = show(repo, &fix.sha, path)?;
        let old = show(repo, &fix.parent, path).unwrap_or_default();
        // Functions that the fix touched come first.
        let mutants = basis_code::mutants(language, &new, 0, new.len(), 64);
        let changed = basis_skills::diff::hunks(&old, &new);
        let line_of = |byte: usize| new[..byte.min(new.len())].matches('\n').count();
        let mut touching: Vec<&basis_code::Mutant> = mutants
            .iter()
            .filter(|m| changed.iter().any(|h| h.contains(line_of(m.start_byte))))
            .collect();
        if touching.is_empty() {
            touching = mutants.iter().collect();
        }
        if touching.is_empty() {
            continue;
        }
        let m = touching[pick % touching.len()];
        let mut changes: Vec<FileChange> = Vec::new();
        for f in &fix.files {
            let (o, n) = if f == path {
                (old.clone(), m.text.clone())
            } else {
                (
                    show(repo, &fix.parent, f).unwrap_or_default(),
                    show(repo, &fix.sha, f).unwrap_or_default(),
                )
            };
            changes.push(FileChange {
                path: f.clone(),
                old: o,
                new: n,
            });
        }
        let diff = basis_skills::diff::patch_of(&changes, 3);
        return Some((diff, m.description.clone()));
    }
    None
}

/// Mines fix commits (see the module docs).
pub fn mine(
    repo: &Path,
    config: &Config,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Mined, MineError> {
    if git_text(repo, &["rev-parse", "--git-dir"]).is_err() {
        return Err(MineError::NotARepository(repo.display().to_string()));
    }
    let max = config.max_commits.to_string();
    let list = git(
        repo,
        &["rev-list", "--no-merges", "--max-count", &max, "HEAD"],
    )?;
    let shas: Vec<&str> = list.lines().collect();
    let mut fixes = Vec::new();
    for (i, sha) in shas.iter().enumerate() {
        progress(Progress {
            phase: "reading history",
            done: i,
            total: shas.len(),
        });
        if let Some(f) = read_fix(repo, sha)? {
            fixes.push(f);
        }
    }
    progress(Progress {
        phase: "reading history",
        done: shas.len(),
        total: shas.len(),
    });
    let mut out = Mined::default();
    if fixes.is_empty() {
        out.notes.push(format!(
            "history: none of the last {} commits is a small fix of 1-3 source files",
            shas.len()
        ));
        return Ok(out);
    }
    // The seed decides which fixes make tasks (up to the maximum) and how.
    let fixes = shuffled(fixes, config.seed, "history");
    let (mut localize, mut review, mut edit) = (0usize, 0usize, 0usize);
    for (i, fix) in fixes.iter().enumerate() {
        let meta = |extra: &[(&str, serde_json::Value)]| {
            let mut m = BTreeMap::new();
            m.insert("commit".to_string(), json!(fix.sha));
            m.insert("files".to_string(), json!(fix.sources));
            for (k, v) in extra {
                m.insert(k.to_string(), v.clone());
            }
            m
        };
        if localize < config.max_per_skill {
            localize += 1;
            out.tasks.push(task(
                config,
                task_id("loc", &[&fix.sha]),
                Spec::Localize {
                    input: LocalizeInput {
                        issue: fix.issue.clone(),
                    },
                    reference: LocalizeReference {
                        files: fix.sources.clone(),
                    },
                },
                &fix.parent,
                meta(&[]),
            ));
        }
        if config.skills.contains(&basis_skills::SkillId::Edit) {
            for path in &fix.sources {
                if edit >= config.max_per_skill {
                    break;
                }
                if let Some((input, reference)) = function_edit(repo, fix, path) {
                    edit += 1;
                    out.tasks.push(task(
                        config,
                        task_id("edit-h", &[&fix.sha, path]),
                        Spec::Edit { input, reference },
                        &fix.parent,
                        meta(&[("variant", json!("the function as the fix left it"))]),
                    ));
                }
            }
        }
        if review + 2 > config.max_per_skill {
            continue;
        }
        review += 2;
        out.tasks.push(task(
            config,
            task_id("rev", &[&fix.sha, "yes"]),
            Spec::Review {
                input: ReviewInput {
                    issue: fix.issue.clone(),
                    patch: fix.diff.clone(),
                },
                reference: ReviewReference {
                    verdict: Verdict::Yes,
                },
            },
            &fix.parent,
            meta(&[("variant", json!("the commit's own diff"))]),
        ));
        // A NO: the kinds this commit allows, one picked by the seed.
        let hunks: usize = parse_patch(&fix.diff)
            .map(|p| p.iter().map(|f| f.hunks.len()).sum())
            .unwrap_or(0);
        let mut kinds = vec!["planted bug"];
        if hunks >= 2 {
            kinds.push("hunk reverted");
        }
        if fixes.len() >= 2 {
            kinds.push("another commit's diff");
        }
        let pick = shuffled(kinds.clone(), config.seed, &fix.sha);
        let mut made = false;
        for kind in pick {
            let no = match kind {
                "hunk reverted" => without_hunk(&fix.diff, i % hunks.max(1))
                    .map(|d| (d, fix.parent.clone(), kind.to_string(), None)),
                "another commit's diff" => {
                    let other = &fixes[(i + 1) % fixes.len()];
                    (other.diff != fix.diff).then(|| {
                        (
                            other.diff.clone(),
                            other.parent.clone(),
                            kind.to_string(),
                            Some(other.sha.clone()),
                        )
                    })
                }
                _ => with_planted_bug(repo, fix, i)
                    .map(|(d, what)| (d, fix.parent.clone(), format!("planted bug: {what}"), None)),
            };
            let Some((diff, commit, variant, other)) = no else {
                continue;
            };
            if diff == fix.diff {
                continue;
            }
            let mut extra = vec![("variant", json!(variant))];
            if let Some(o) = &other {
                // The split keeps that commit on this task's side too.
                extra.push(("other_commit", json!(o)));
            }
            out.tasks.push(task(
                config,
                task_id("rev", &[&fix.sha, "no"]),
                Spec::Review {
                    input: ReviewInput {
                        issue: fix.issue.clone(),
                        patch: diff,
                    },
                    reference: ReviewReference {
                        verdict: Verdict::No,
                    },
                },
                &commit,
                meta(&extra),
            ));
            made = true;
            break;
        }
        if !made {
            // Keep the review tasks balanced: no NO, no YES either.
            out.tasks.pop();
            review -= 2;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A repository with `before` committed, then `after` committed as a fix;
    /// returns the repository and the fix.
    fn fixed(before: &str, after: &str) -> (tempfile::TempDir, Fix) {
        let repo = tempfile::tempdir().unwrap();
        let sh = |args: &[&str]| crate::workspace::test_git(repo.path(), args);
        sh(&["init", "-q"]);
        std::fs::write(repo.path().join("calc.py"), before).unwrap();
        sh(&["add", "."]);
        sh(&["commit", "-qm", "start"]);
        std::fs::write(repo.path().join("calc.py"), after).unwrap();
        sh(&["commit", "-qam", "Fix the count of an empty list of items"]);
        let sha = git(repo.path(), &["rev-parse", "HEAD"]).unwrap();
        let fix = read_fix(repo.path(), sha.trim())
            .unwrap()
            .expect("a fix commit");
        (repo, fix)
    }

    const BEFORE: &str = "import os\n\n\ndef count(items):\n    n = 0\n    for i in items:\n        n += 1\n    return n - 1\n\n\ndef total(items):\n    s = 0\n    for i in items:\n        s += i\n    return s\n";

    #[test]
    fn a_fix_inside_one_function_is_an_edit_of_that_function() {
        let after = BEFORE.replace(
            "    return n - 1\n",
            "    # every item counts\n    return n\n",
        );
        let (repo, fix) = fixed(BEFORE, &after);
        let (input, reference) = function_edit(repo.path(), &fix, "calc.py").unwrap();
        assert_eq!(input.instruction, "Fix the count of an empty list of items");
        assert_eq!((input.start_line, input.end_line), (4, 8));
        assert_eq!(
            reference.replacement,
            "def count(items):\n    n = 0\n    for i in items:\n        n += 1\n    # every item counts\n    return n\n"
        );
        assert_eq!(reference.test_command, None);
    }

    #[test]
    fn a_fix_across_two_functions_or_outside_any_is_no_edit_task() {
        let both = BEFORE
            .replace("return n - 1", "return n")
            .replace("return s\n", "return s or 0\n");
        let (repo, fix) = fixed(BEFORE, &both);
        assert!(function_edit(repo.path(), &fix, "calc.py").is_none());
        let import = BEFORE.replace("import os", "import sys");
        let (repo, fix) = fixed(BEFORE, &import);
        assert!(function_edit(repo.path(), &fix, "calc.py").is_none());
    }

    #[test]
    fn fix_messages_and_their_issues() {
        assert!(says_fix("Fix off-by-one in pagination"));
        assert!(says_fix("parser: handle empty input"));
        assert!(!says_fix("Add a cache for the index"));
        assert!(!says_fix("Prefix the logs"), "whole words only");
        assert!(!says_fix("Fix mypy findings"));
        assert!(!says_fix("fix typo in the docs"));
        assert_eq!(
            issue_of("fix(pricing): discount over 100% gives a negative price\n\nSeen with 120%.\n\nSigned-off-by: A <a@b>\nFixes #12\n"),
            "Discount over 100% gives a negative price\n\nSeen with 120%."
        );
        assert_eq!(
            issue_of("[bugfix] BUG: crash on empty cart."),
            "Crash on empty cart"
        );
        assert_eq!(
            issue_of("gh-123: wrong total when quantity is zero"),
            "Wrong total when quantity is zero"
        );
        assert_eq!(
            issue_of("fix: Parser breaks on tabs"),
            "Parser breaks on tabs"
        );
    }

    #[test]
    fn a_hunk_can_be_left_out() {
        let diff = "--- a/x.py\n+++ b/x.py\n@@ -1,1 +1,1 @@\n-a\n+A\n@@ -10,1 +10,1 @@\n-b\n+B\n";
        let out = without_hunk(diff, 1).unwrap();
        assert!(out.contains("+A") && !out.contains("+B"), "{out}");
        assert!(without_hunk("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n", 0).is_none());
    }
}
