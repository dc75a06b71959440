//! Task files: `basis.task/1`, one JSON object a line (docs/design.md). This is
//! the one module that reads and writes them.
//!
//! Reading never fails as a whole: every bad line (not JSON, an unknown skill, a
//! missing field, a path that leaves the repository, a duplicate id) is reported
//! with its file and line and skipped, and the good lines are returned. Writing
//! is atomic (a temporary file renamed over the target) and deterministic: the
//! same tasks give the same bytes.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use basis_skills::SkillId;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The schema this build writes (and the only one there is so far).
pub const TASK_SCHEMA: &str = "basis.task/1";

/// One task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub schema: String,
    pub id: String,
    #[serde(flatten)]
    pub spec: Spec,
    pub repo: RepoRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(default)]
    pub meta: Meta,
}

/// Where the task's code is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoRef {
    /// The repository, relative to the repository root the reader is given (by
    /// default the task file's folder), or absolute.
    pub path: String,
    /// A commit to check the repository out at (into a throwaway tree).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// A unified diff laid over that checkout: the task's starting state when it
    /// is no commit of the repository (a mined bug, say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
}

/// Where a task came from and which split it is in; anything else a miner
/// records goes in `extra`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// e.g. `mined:history`, `mined:mutation`, `swebench:<instance>`, `hand`.
    #[serde(default)]
    pub source: String,
    /// `train`, `validation` or `heldout` (files mined before the validation
    /// split have the first and the last only); none when the file was not split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// The skill, its input and its reference answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "skill", rename_all = "snake_case")]
pub enum Spec {
    Localize {
        input: LocalizeInput,
        reference: LocalizeReference,
    },
    Edit {
        input: EditInput,
        reference: EditReference,
    },
    Testgen {
        input: TestgenInput,
        reference: TestgenReference,
    },
    Reproduce {
        input: ReproduceInput,
        reference: ReproduceReference,
    },
    Review {
        input: ReviewInput,
        reference: ReviewReference,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalizeInput {
    pub issue: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalizeReference {
    /// Relative to the repository root.
    pub files: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EditInput {
    pub instruction: String,
    pub file: String,
    /// 1-based, inclusive.
    pub start_line: usize,
    pub end_line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EditReference {
    /// The code that replaces the lines.
    pub replacement: String,
    /// The command whose success is the reward (run in the sandbox).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_command: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestgenInput {
    pub file: String,
    /// `name` or `Container.name`.
    pub symbol: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestgenReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_command: Option<String>,
    /// Unified diffs, each a bug in the function the tests must catch.
    pub mutants: Vec<String>,
    /// Tests that pass and catch every mutant (mined: the repository's own
    /// tests that caught them, checked with the skill's verifier).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReproduceInput {
    pub issue: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReproduceReference {
    /// The unified diff that fixes the issue.
    pub fix: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_command: Option<String>,
    /// A diff adding a test that shows the issue (SWE-bench's `test_patch`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_patch: Option<String>,
    /// A whole test file that shows the issue (mined: the repository's own
    /// test that caught the bug, checked to fail before the fix and pass after).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewInput {
    /// What the patch is meant to do.
    pub issue: String,
    pub patch: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    #[serde(rename = "YES")]
    Yes,
    #[serde(rename = "NO")]
    No,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewReference {
    pub verdict: Verdict,
}

impl Spec {
    pub fn skill(&self) -> SkillId {
        match self {
            Spec::Localize { .. } => SkillId::Localize,
            Spec::Edit { .. } => SkillId::Edit,
            Spec::Testgen { .. } => SkillId::Testgen,
            Spec::Reproduce { .. } => SkillId::Reproduce,
            Spec::Review { .. } => SkillId::Review,
        }
    }

    /// Every repository path the task names (files to read, reference files).
    fn paths(&self) -> Vec<&str> {
        match self {
            Spec::Localize { reference, .. } => {
                reference.files.iter().map(String::as_str).collect()
            }
            Spec::Edit { input, .. } => vec![input.file.as_str()],
            Spec::Testgen { input, .. } => vec![input.file.as_str()],
            Spec::Reproduce { .. } | Spec::Review { .. } => Vec::new(),
        }
    }
}

impl Task {
    pub fn skill(&self) -> SkillId {
        self.spec.skill()
    }

    /// The split it is in (`train` when the file was not split).
    pub fn split(&self) -> &str {
        self.meta.split.as_deref().unwrap_or("train")
    }

    /// What is wrong with a task that parsed, if anything.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.schema != TASK_SCHEMA {
            out.push(format!(
                "schema `{}` is not one this build reads ({TASK_SCHEMA})",
                self.schema
            ));
        }
        if self.id.trim().is_empty() {
            out.push("the id is empty".into());
        }
        if self.repo.path.trim().is_empty() {
            out.push("`repo.path` is empty".into());
        }
        for p in self.spec.paths() {
            if let Some(why) = escapes(p) {
                out.push(format!("the path `{p}` {why}"));
            }
        }
        match &self.spec {
            Spec::Edit { input, .. } => {
                if input.start_line == 0 || input.end_line < input.start_line {
                    out.push(format!(
                        "lines {}-{} are not a range (1-based, inclusive)",
                        input.start_line, input.end_line
                    ));
                }
                if input.instruction.trim().is_empty() {
                    out.push("the instruction is empty".into());
                }
            }
            Spec::Localize { input, reference } => {
                if input.issue.trim().is_empty() {
                    out.push("the issue is empty".into());
                }
                if reference.files.is_empty() {
                    out.push("the reference names no files".into());
                }
            }
            Spec::Reproduce { input, reference } => {
                if input.issue.trim().is_empty() {
                    out.push("the issue is empty".into());
                }
                if let Err(e) = basis_skills::diff::parse_patch(&reference.fix) {
                    out.push(format!("the fix is not a patch: {e}"));
                }
            }
            Spec::Review { input, .. } => {
                if let Err(e) = basis_skills::diff::parse_patch(&input.patch) {
                    out.push(format!("the patch is not a patch: {e}"));
                }
            }
            Spec::Testgen { input, reference } => {
                if input.symbol.trim().is_empty() {
                    out.push("the symbol is empty".into());
                }
                if reference.mutants.is_empty() {
                    out.push("the reference lists no mutants".into());
                }
            }
        }
        if let Some(patch) = &self.repo.patch {
            if let Err(e) = basis_skills::diff::parse_patch(patch) {
                out.push(format!("`repo.patch` is not a patch: {e}"));
            }
        }
        out
    }
}

/// Why `path` is not a plain path inside a repository, if it is not.
fn escapes(path: &str) -> Option<&'static str> {
    let p = Path::new(path);
    if path.is_empty() {
        return Some("is empty");
    }
    if p.is_absolute() {
        return Some("is absolute; task paths are relative to the repository");
    }
    let mut depth = 0i32;
    for c in p.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return Some("leaves the repository");
        }
    }
    None
}

/// A bad line of a task file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// A task and the line it came from.
#[derive(Debug, Clone)]
pub struct Located {
    pub line: usize,
    pub task: Task,
}

/// The tasks of a file and its bad lines.
#[derive(Debug, Default)]
pub struct TaskFile {
    pub tasks: Vec<Located>,
    pub errors: Vec<LineError>,
}

/// Reads a task file (see the module docs). Blank lines and lines starting with
/// `#` are skipped. Only a file that cannot be read at all is an error.
pub fn read(path: &Path) -> std::io::Result<TaskFile> {
    let bytes = std::fs::read(path)?;
    Ok(parse(path, &String::from_utf8_lossy(&bytes)))
}

/// Reads task lines from `text` (`file` names them in errors).
pub fn parse(file: &Path, text: &str) -> TaskFile {
    let mut out = TaskFile::default();
    let mut ids = HashSet::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let mut error = |message: String| {
            out.errors.push(LineError {
                file: file.to_path_buf(),
                line,
                message,
            })
        };
        let value: Value = match serde_json::from_str(trimmed) {
            Ok(v) => v,
            Err(e) => {
                error(format!("not JSON: {e}"));
                continue;
            }
        };
        if let Some(skill) = value.get("skill").and_then(Value::as_str) {
            if SkillId::parse(skill).is_none() {
                error(format!(
                    "unknown skill `{skill}` (localize, edit, testgen, reproduce, review)"
                ));
                continue;
            }
        }
        let task: Task = match serde_json::from_value(value) {
            Ok(t) => t,
            Err(e) => {
                error(format!("not a {TASK_SCHEMA} task: {e}"));
                continue;
            }
        };
        let problems = task.problems();
        if !problems.is_empty() {
            error(problems.join("; "));
            continue;
        }
        if !ids.insert(task.id.clone()) {
            error(format!("the id `{}` is used by an earlier line", task.id));
            continue;
        }
        out.tasks.push(Located { line, task });
    }
    out
}

/// The task lines of `tasks`, one JSON object each.
pub fn to_jsonl(tasks: &[Task]) -> String {
    let mut out = String::new();
    for t in tasks {
        out.push_str(&serde_json::to_string(t).expect("tasks serialise"));
        out.push('\n');
    }
    out
}

/// Writes `tasks` to `path` atomically (a temporary file in the same folder,
/// synced, renamed over it).
pub fn write(path: &Path, tasks: &[Task]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(to_jsonl(tasks).as_bytes())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(skill: &str, input: Value, reference: Value) -> String {
        serde_json::json!({
            "schema": TASK_SCHEMA, "id": format!("t-{skill}"), "skill": skill,
            "repo": {"path": "."}, "input": input, "reference": reference,
            "meta": {"source": "hand"}
        })
        .to_string()
    }

    #[test]
    fn every_skill_round_trips_byte_for_byte() {
        let lines = [
            line(
                "localize",
                serde_json::json!({"issue": "x breaks"}),
                serde_json::json!({"files": ["a.py"]}),
            ),
            line(
                "edit",
                serde_json::json!({"instruction": "fix", "file": "a.py", "start_line": 1, "end_line": 2}),
                serde_json::json!({"replacement": "x = 1\n", "test_command": "python3 -m pytest -q"}),
            ),
            line(
                "testgen",
                serde_json::json!({"file": "a.py", "symbol": "f"}),
                serde_json::json!({"mutants": ["--- a/a.py\n+++ b/a.py\n@@ -1 +1 @@\n-a\n+b\n"]}),
            ),
            line(
                "reproduce",
                serde_json::json!({"issue": "x breaks"}),
                serde_json::json!({"fix": "--- a/a.py\n+++ b/a.py\n@@ -1 +1 @@\n-a\n+b\n"}),
            ),
            line(
                "review",
                serde_json::json!({"issue": "x", "patch": "--- a/a.py\n+++ b/a.py\n@@ -1 +1 @@\n-a\n+b\n"}),
                serde_json::json!({"verdict": "NO"}),
            ),
        ];
        let text = lines.join("\n") + "\n";
        let file = parse(Path::new("t.jsonl"), &text);
        assert!(file.errors.is_empty(), "{:?}", file.errors);
        let tasks: Vec<Task> = file.tasks.into_iter().map(|l| l.task).collect();
        assert_eq!(tasks.len(), 5);
        let again = to_jsonl(&tasks);
        let reread = parse(Path::new("t.jsonl"), &again);
        let tasks2: Vec<Task> = reread.tasks.into_iter().map(|l| l.task).collect();
        assert_eq!(tasks, tasks2);
        assert_eq!(to_jsonl(&tasks2), again);
    }

    #[test]
    fn every_kind_of_bad_line_is_reported_with_its_line() {
        let good = line(
            "localize",
            serde_json::json!({"issue": "x breaks"}),
            serde_json::json!({"files": ["a.py"]}),
        );
        let text = [
            "{not json".to_string(),
            line("refactor", serde_json::json!({}), serde_json::json!({})),
            line("edit", serde_json::json!({"file": "a.py", "start_line": 1, "end_line": 2}), serde_json::json!({"replacement": ""})),
            line("localize", serde_json::json!({"issue": "x"}), serde_json::json!({"files": ["../../etc/passwd"]})),
            line("edit", serde_json::json!({"instruction": "i", "file": "/abs.py", "start_line": 1, "end_line": 1}), serde_json::json!({"replacement": ""})),
            line("edit", serde_json::json!({"instruction": "i", "file": "a.py", "start_line": 5, "end_line": 2}), serde_json::json!({"replacement": ""})),
            line("review", serde_json::json!({"issue": "x", "patch": "--- a/x\n"}), serde_json::json!({"verdict": "YES"})),
            line("review", serde_json::json!({"issue": "x", "patch": ""}), serde_json::json!({"verdict": "MAYBE"})),
            String::new(),
            "# a comment".into(),
            good.clone(),
            good,
            "[1, 2]".into(),
        ]
        .join("\n");
        let file = parse(Path::new("bad.jsonl"), &text);
        assert_eq!(file.tasks.len(), 1);
        assert_eq!(file.tasks[0].line, 11);
        let lines: Vec<usize> = file.errors.iter().map(|e| e.line).collect();
        assert_eq!(
            lines,
            vec![1, 2, 3, 4, 5, 6, 7, 8, 12, 13],
            "{:#?}",
            file.errors
        );
        let msg = |l: usize| {
            file.errors
                .iter()
                .find(|e| e.line == l)
                .unwrap()
                .to_string()
        };
        assert!(msg(1).starts_with("bad.jsonl:1: not JSON"), "{}", msg(1));
        assert!(msg(2).contains("unknown skill `refactor`"), "{}", msg(2));
        assert!(msg(3).contains("instruction"), "{}", msg(3));
        assert!(msg(4).contains("leaves the repository"), "{}", msg(4));
        assert!(msg(5).contains("absolute"), "{}", msg(5));
        assert!(msg(6).contains("not a range"), "{}", msg(6));
        assert!(msg(7).contains("not a patch"), "{}", msg(7));
        assert!(msg(8).contains("MAYBE"), "{}", msg(8));
        assert!(msg(12).contains("earlier line"), "{}", msg(12));
    }
}
