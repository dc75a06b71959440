//! `basis tasks import-swebench`: SWE-bench-format instances (a JSON array or
//! JSON lines of `{instance_id, repo, base_commit, problem_statement, patch,
//! test_patch, FAIL_TO_PASS, PASS_TO_PASS}`) as skill tasks, with no download
//! and no repository needed:
//!
//! - **localize**: the problem statement → the files the gold patch changes
//!   (test files aside), at `base_commit`;
//! - **review**: the gold patch → YES; a corrupted patch → NO (one hunk left out
//!   when there are several; else the hunk's additions left out, so the patch only
//!   deletes; else another instance's patch of the same repository);
//! - **reproduce**: the problem statement, the gold patch as the fix and the
//!   `test_patch` as the reference reproduction.
//!
//! `repo.path` is the instance's `repo` (`owner/name`), resolved against the
//! repository root given to `basis eval` (`--repo-root`): clone `django/django`
//! to `<root>/django/django`.

use std::collections::BTreeMap;
use std::path::Path;

use basis_skills::diff::{parse_patch, render_patch, PatchLine};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::mine::{is_test_path, task_id};
use crate::task::{
    LineError, LocalizeInput, LocalizeReference, Meta, RepoRef, ReproduceInput, ReproduceReference,
    ReviewInput, ReviewReference, Spec, Task, Verdict, TASK_SCHEMA,
};

/// One SWE-bench instance (the fields Basis reads).
#[derive(Debug, Clone, Deserialize)]
pub struct Instance {
    pub instance_id: String,
    pub repo: String,
    pub base_commit: String,
    pub problem_statement: String,
    pub patch: String,
    #[serde(default)]
    pub test_patch: String,
    #[serde(rename = "FAIL_TO_PASS", default)]
    pub fail_to_pass: Value,
    #[serde(rename = "PASS_TO_PASS", default)]
    pub pass_to_pass: Value,
}

/// The instances of a file's text: a JSON array, or one object a line. Bad
/// instances are reported with their line (or array position) and skipped.
pub fn read_instances(file: &Path, text: &str) -> (Vec<Instance>, Vec<LineError>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut error = |line: usize, message: String| {
        errors.push(LineError {
            file: file.to_path_buf(),
            line,
            message,
        })
    };
    if text.trim_start().starts_with('[') {
        match serde_json::from_str::<Vec<Value>>(text) {
            Ok(items) => {
                for (i, v) in items.into_iter().enumerate() {
                    match serde_json::from_value::<Instance>(v) {
                        Ok(inst) => out.push(inst),
                        Err(e) => error(
                            i + 1,
                            format!("instance {} is not a SWE-bench instance: {e}", i + 1),
                        ),
                    }
                }
            }
            Err(e) => error(e.line(), format!("not a JSON array of instances: {e}")),
        }
        return (out, errors);
    }
    for (i, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Instance>(raw) {
            Ok(inst) => out.push(inst),
            Err(e) => error(i + 1, format!("not a SWE-bench instance: {e}")),
        }
    }
    (out, errors)
}

/// The gold patch with a flaw (see the module docs), or `None`.
fn corrupted(patch: &str, pick: usize) -> Option<(String, &'static str)> {
    let parsed = parse_patch(patch).ok()?;
    let hunks: usize = parsed.iter().map(|f| f.hunks.len()).sum();
    if hunks >= 2 {
        let mut p = parsed.clone();
        let drop = pick % hunks;
        let mut n = 0;
        for fp in &mut p {
            let mut kept = Vec::new();
            for h in fp.hunks.drain(..) {
                if n != drop {
                    kept.push(h);
                }
                n += 1;
            }
            fp.hunks = kept;
        }
        p.retain(|f| !f.hunks.is_empty());
        return Some((render_patch(&p), "one hunk left out"));
    }
    let mut p = parsed;
    let mut changed = false;
    for fp in &mut p {
        for h in &mut fp.hunks {
            let had_removals = h.lines.iter().any(|l| matches!(l, PatchLine::Remove(_)));
            if had_removals && h.lines.iter().any(|l| matches!(l, PatchLine::Add(_))) {
                h.lines.retain(|l| !matches!(l, PatchLine::Add(_)));
                changed = true;
            }
        }
    }
    changed.then(|| (render_patch(&p), "the additions left out"))
}

fn list(v: &Value) -> Value {
    match v {
        // SWE-bench stores these lists as JSON text.
        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| json!([s])),
        other => other.clone(),
    }
}

/// The tasks of `instances` (see the module docs).
pub fn tasks(instances: &[Instance]) -> Vec<Task> {
    let mut out = Vec::new();
    for (i, inst) in instances.iter().enumerate() {
        let files: Vec<String> = match parse_patch(&inst.patch) {
            Ok(p) => {
                let mut f: Vec<String> = p
                    .iter()
                    .map(|fp| fp.path().to_string())
                    .filter(|f| !is_test_path(f))
                    .collect();
                f.sort();
                f.dedup();
                f
            }
            Err(_) => continue,
        };
        let mut extra = BTreeMap::new();
        extra.insert("instance_id".to_string(), json!(inst.instance_id));
        extra.insert("commit".to_string(), json!(inst.base_commit));
        extra.insert("files".to_string(), json!(files));
        extra.insert("FAIL_TO_PASS".to_string(), list(&inst.fail_to_pass));
        extra.insert("PASS_TO_PASS".to_string(), list(&inst.pass_to_pass));
        let make = |id: String, spec: Spec, commit: &str, more: &[(&str, Value)]| {
            let mut extra = extra.clone();
            for (k, v) in more {
                extra.insert(k.to_string(), v.clone());
            }
            Task {
                schema: TASK_SCHEMA.into(),
                id,
                spec,
                repo: RepoRef {
                    path: inst.repo.clone(),
                    commit: Some(commit.to_string()),
                    patch: None,
                },
                language: None,
                meta: Meta {
                    source: format!("swebench:{}", inst.instance_id),
                    split: None,
                    extra,
                },
            }
        };
        let issue = inst.problem_statement.trim().to_string();
        if !files.is_empty() {
            out.push(make(
                task_id("swe-loc", &[&inst.instance_id]),
                Spec::Localize {
                    input: LocalizeInput {
                        issue: issue.clone(),
                    },
                    reference: LocalizeReference {
                        files: files.clone(),
                    },
                },
                &inst.base_commit,
                &[],
            ));
        }
        let no = corrupted(&inst.patch, i)
            .map(|(p, how)| (p, inst.base_commit.clone(), how.to_string(), None))
            .or_else(|| {
                instances
                    .iter()
                    .filter(|o| {
                        o.repo == inst.repo
                            && o.instance_id != inst.instance_id
                            && o.patch != inst.patch
                    })
                    .min_by_key(|o| o.instance_id.clone())
                    .map(|o| {
                        (
                            o.patch.clone(),
                            o.base_commit.clone(),
                            format!("the patch of {}", o.instance_id),
                            Some(o.base_commit.clone()),
                        )
                    })
            });
        if let Some((patch, commit, how, other)) = no {
            out.push(make(
                task_id("swe-rev", &[&inst.instance_id, "yes"]),
                Spec::Review {
                    input: ReviewInput {
                        issue: issue.clone(),
                        patch: inst.patch.clone(),
                    },
                    reference: ReviewReference {
                        verdict: Verdict::Yes,
                    },
                },
                &inst.base_commit,
                &[("variant", json!("the gold patch"))],
            ));
            let mut more = vec![("variant", json!(how))];
            if let Some(o) = other {
                more.push(("other_commit", json!(o)));
            }
            out.push(make(
                task_id("swe-rev", &[&inst.instance_id, "no"]),
                Spec::Review {
                    input: ReviewInput {
                        issue: issue.clone(),
                        patch,
                    },
                    reference: ReviewReference {
                        verdict: Verdict::No,
                    },
                },
                &commit,
                &more,
            ));
        }
        out.push(make(
            task_id("swe-repro", &[&inst.instance_id]),
            Spec::Reproduce {
                input: ReproduceInput { issue },
                reference: ReproduceReference {
                    fix: inst.patch.clone(),
                    test_command: None,
                    test_patch: (!inst.test_patch.trim().is_empty())
                        .then(|| inst.test_patch.clone()),
                    test: None,
                },
            },
            &inst.base_commit,
            &[],
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_is_corrupted_without_the_repository() {
        let two = "--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-a\n+A\n@@ -9 +9 @@\n-b\n+B\n";
        let (p, how) = corrupted(two, 0).unwrap();
        assert_eq!(how, "one hunk left out");
        assert!(!p.contains("+A") && p.contains("+B"), "{p}");
        let one = "--- a/x.py\n+++ b/x.py\n@@ -1,2 +1,2 @@\n ctx\n-if x > 0:\n+if x >= 0:\n";
        let (p, how) = corrupted(one, 0).unwrap();
        assert_eq!(how, "the additions left out");
        assert!(p.contains("-if x > 0:") && !p.contains("+if"), "{p}");
        assert!(corrupted("--- a/x.py\n+++ b/x.py\n@@ -1,0 +1 @@\n+new\n", 0).is_none());
    }

    #[test]
    fn instances_are_read_from_arrays_and_lines_with_bad_ones_reported() {
        let one = r#"{"instance_id": "a__b-1", "repo": "a/b", "base_commit": "abc", "problem_statement": "x breaks", "patch": "--- a/b.py\n+++ b/b.py\n@@ -1 +1 @@\n-a\n+b\n", "test_patch": "", "FAIL_TO_PASS": "[\"t1\"]", "PASS_TO_PASS": []}"#;
        let (v, e) = read_instances(
            Path::new("x.jsonl"),
            &format!("{one}\n{{\"instance_id\": 3}}\n"),
        );
        assert_eq!(v.len(), 1);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].line, 2);
        let (v, e) = read_instances(Path::new("x.json"), &format!("[{one}]"));
        assert_eq!((v.len(), e.len()), (1, 0));
        let t = tasks(&v);
        let skills: Vec<_> = t.iter().map(|t| t.skill().as_str()).collect();
        assert_eq!(skills, vec!["localize", "review", "review", "reproduce"]);
        assert_eq!(t[0].meta.extra["FAIL_TO_PASS"], json!(["t1"]));
    }
}
