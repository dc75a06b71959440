//! Conventions as tests: every Rust file starts with a `//!` doc saying what it is
//! for, and no test is skipped or expected to panic (a known wrong behaviour is
//! asserted as it is, with a note).

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path
                .file_name()
                .is_some_and(|n| n != "target" && n != "reference")
            {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn all_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in [
        "src",
        "tests",
        "model/src",
        "model/examples",
        "code/src",
        "feedback/src",
        "skills/src",
        "server/src",
    ] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 15, "found only {} files", files.len());
    files
}

#[test]
fn every_file_starts_with_a_module_doc() {
    let missing: Vec<_> = all_files()
        .into_iter()
        .filter(|p| !std::fs::read_to_string(p).unwrap().starts_with("//!"))
        .collect();
    assert!(
        missing.is_empty(),
        "files without a leading //! doc: {missing:?}"
    );
}

#[test]
fn no_test_is_ignored_or_expected_to_panic() {
    let banned = [concat!("#[", "ignore"), concat!("#[", "should_panic")];
    for path in all_files() {
        let text = std::fs::read_to_string(&path).unwrap();
        for b in banned {
            assert!(!text.contains(b), "{} uses {b}]", path.display());
        }
    }
}
