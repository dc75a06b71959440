//! Conventions as tests: every Rust file starts with a `//!` doc saying what it is
//! for, and no test is skipped or expected to panic (a known wrong behaviour is
//! asserted as it is, with a note).

use std::path::{Path, PathBuf};

/// Folders whose Rust files are not ours to check: build output, git, the
/// committed fixture repositories the skills are tested on (user code, as
/// users write it), and reference material.
const NOT_OURS: [&str; 5] = ["target", ".git", "fixtures", "reference", "node_modules"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path
                .file_name()
                .is_some_and(|n| !NOT_OURS.iter().any(|x| n == *x))
            {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every Rust file of the repository that is ours: every crate's sources,
/// tests, examples and benchmarks, wherever they are.
fn all_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(root, &mut files);
    for must in [
        "skills/tests/sandbox_probes.rs",
        "examples/bench_skills.rs",
        "server/src/skills/run.rs",
    ] {
        assert!(
            files.iter().any(|f| f.ends_with(must)),
            "the walk misses {must}"
        );
    }
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

/// ARCHITECTURE.md's code map: the crates' table and the file map in its code block.
fn architecture() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md")).unwrap()
}

/// The crate table: (package name, folder, the basis crates it may depend on).
fn crate_table() -> Vec<(String, String, Vec<String>)> {
    let text = architecture();
    let mut rows = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("| `basis")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let name = cells[1].split('`').nth(1).unwrap().to_string();
        let folder = cells[2].trim_matches('`').trim_end_matches('/').to_string();
        rows.push((
            name,
            folder,
            cells[3].split(',').map(|c| c.trim().to_string()).collect(),
        ));
    }
    assert!(
        rows.len() >= 6,
        "the crate table in ARCHITECTURE.md: {rows:?}"
    );
    rows
}

#[test]
fn every_crate_depends_only_on_the_crates_the_architecture_allows() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let table = crate_table();
    let short = |package: &str| package.trim_start_matches("basis-").to_string();
    let workspace = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    for (name, folder, allowed) in &table {
        let manifest = std::fs::read_to_string(root.join(folder).join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "{folder}/Cargo.toml is not the package {name}"
        );
        let members_line = workspace
            .lines()
            .find(|l| l.starts_with("members"))
            .unwrap();
        assert!(
            members_line.contains(&format!("\"{folder}\"")),
            "{folder} is not a workspace member"
        );
        let deps = manifest
            .split("\n[")
            .find(|section| section.starts_with("dependencies]"))
            .unwrap_or("");
        for dep in deps.lines().filter_map(|l| l.split(['.', ' ', '=']).next()) {
            if !dep.starts_with("basis-") {
                continue;
            }
            let ok = allowed
                .iter()
                .any(|a| a == "all of them" || *a == short(dep));
            assert!(
                ok,
                "{name} depends on {dep}, which ARCHITECTURE.md does not allow ({allowed:?})"
            );
        }
    }
    // Every workspace member is in the table.
    let members: Vec<&str> = workspace
        .lines()
        .find(|l| l.starts_with("members"))
        .unwrap()
        .split('"')
        .skip(1)
        .step_by(2)
        .collect();
    for m in members {
        assert!(
            table.iter().any(|(_, f, _)| f == m),
            "workspace member {m} is not in ARCHITECTURE.md's table"
        );
    }
}

#[test]
fn the_code_map_lists_every_file_of_every_crate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = architecture();
    let block = text.split("```").nth(1).expect("the code map's code block");
    for (_, folder, _) in crate_table() {
        let header = if folder == "." {
            "src/".to_string()
        } else {
            format!("{folder}/")
        };
        let section: String = block
            .lines()
            .skip_while(|l| !l.starts_with(&header))
            .skip(1)
            .take_while(|l| l.starts_with(' '))
            .collect::<Vec<_>>()
            .join("\n");
        let mut files = Vec::new();
        rust_files(&root.join(folder).join("src"), &mut files);
        for f in files {
            let name = f.file_name().unwrap().to_str().unwrap();
            assert!(
                section.contains(name),
                "ARCHITECTURE.md's code map has no {name} under {header} ({})",
                f.display()
            );
        }
    }
}

/// Whether a path is inside the workspace is decided in one place: clippy.toml
/// bans `Path::starts_with` and `Path::strip_prefix` (scripts/test.sh denies the
/// lint), and the only item allowed to use them is in code/src/confine.rs.
#[test]
fn only_the_workspace_boundary_compares_paths_with_a_root() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let clippy = std::fs::read_to_string(root.join("clippy.toml")).unwrap();
    for m in [
        "std::path::Path::starts_with",
        "std::path::Path::strip_prefix",
    ] {
        assert!(
            clippy.contains(&format!("path = \"{m}\"")),
            "clippy.toml bans {m}"
        );
    }
    let test_sh = std::fs::read_to_string(root.join("scripts/test.sh")).unwrap();
    assert!(test_sh.contains("-D clippy::disallowed_methods"));
    for f in all_files() {
        let text = std::fs::read_to_string(&f).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            if !l.contains("allow(clippy::disallowed_methods)") {
                continue;
            }
            // The allowed item: up to the next line that closes at its indent.
            let indent = l.len() - l.trim_start().len();
            let body = lines[i + 1..]
                .iter()
                .take_while(|x| !(x.len() - x.trim_start().len() == indent && x.trim() == "}"))
                .any(|x| x.contains(".strip_prefix(&") || x.contains(".starts_with(&"));
            assert!(
                !body || f.ends_with("code/src/confine.rs"),
                "{}:{}: a path prefix test outside code/src/confine.rs; use basis_code::Workspace",
                f.display(),
                i + 1
            );
        }
    }
}
