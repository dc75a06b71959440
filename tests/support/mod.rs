//! Shared helpers for the end-to-end tests: the real `basis` binary, and the real
//! default model, pulled into the store on first use (as a newcomer's first
//! `basis generate` does).
#![allow(dead_code)]

pub mod fuzz;
pub mod lsp;
pub mod scenario;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

#[allow(clippy::disallowed_methods)] // Tests run the real binary.
pub fn basis() -> Command {
    Command::new(env!("CARGO_BIN_EXE_basis"))
}

/// Runs `basis args…` and returns its output.
pub fn run(args: &[&str]) -> Output {
    basis().args(args).output().expect("the basis binary runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The default model's GGUF, pulled with `basis model pull` if the store lacks it.
/// The pull takes a file lock, so test binaries running at once download it once.
pub fn default_model() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let out = run(&["model", "pull"]);
        assert!(
            out.status.success(),
            "basis model pull failed:\n{}",
            stderr(&out)
        );
        let list = run(&["model", "list"]);
        let text = stdout(&list);
        let line = text
            .lines()
            .find(|l| l.starts_with("smollm2-135m-instruct\t"))
            .unwrap_or_else(|| panic!("the default model is not listed:\n{text}"));
        PathBuf::from(line.split('\t').nth(2).expect("path column"))
    })
}

/// The directory of committed reference values.
pub fn reference_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("model/tests/reference")
}

pub fn reference(name: &str) -> serde_json::Value {
    let path = reference_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("an array of ids")
        .iter()
        .map(|x| x.as_u64().expect("an id") as u32)
        .collect()
}

/// Logits at every position of one sequence: (seq, vocab).
pub fn logits_all(model: &basis_model::Model, ids: &[u32]) -> Vec<Vec<f32>> {
    let t = basis_model::Tensor::new(ids, model.device())
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    model
        .forward(&t, None, basis_model::Logits::All)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec2()
        .unwrap()
}

/// A committed fixture repository.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Copies a directory tree, leaving out build outputs (`target`, `Cargo.lock`,
/// `__pycache__`).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "target" || name == "__pycache__" || name == "Cargo.lock" {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Runs git in `dir`, failing the test if it fails.
pub fn git(dir: &Path, args: &[&str]) {
    git_output(dir, args);
}

/// Runs git in `dir` and returns what it printed, failing the test if it fails.
#[allow(clippy::disallowed_methods)] // tests set up real git repositories
pub fn git_output(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Makes `dir` a git repository with everything in it committed.
pub fn git_commit_all(dir: &Path) {
    git(dir, &["init", "-q"]);
    git(dir, &["add", "."]);
    git(
        dir,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qm",
            "start",
        ],
    );
}

/// The kinds of a feedback record's events (from `basis feedback export`), in order.
pub fn event_kinds(record: &serde_json::Value) -> Vec<String> {
    record["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect()
}

/// The bundled example repository (`examples/shopkit/build.sh`), built into
/// `dir/name`; returns its path.
pub fn shopkit(dir: &Path, name: &str) -> PathBuf {
    let dest = dir.join(name);
    #[allow(clippy::disallowed_methods)] // the example's own build script
    let out = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/shopkit/build.sh"))
        .arg(&dest)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    dest
}
