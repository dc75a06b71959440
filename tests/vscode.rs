//! A real VS Code (code-server, driven in headless Chromium by playwright-core)
//! with the Basis extension (`editors/vscode`, built and packaged as a .vsix
//! here) runs the shared editor scenario (`editors/scenario.json`: the five
//! skills, each once accepted and once rejected through VS Code's own interface)
//! against `basis lsp`; then the feedback store must hold exactly the expected
//! events (`support::scenario::check_feedback`, the same check as the Neovim
//! suite's). Node, code-server, playwright-core and Chromium come from
//! `scripts/install-vscode-test.sh`, which this test runs on first use, as the
//! model is pulled on first use. Screenshots of every step are kept under
//! `target/vscode-e2e-artifacts/`.

mod support;

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `$BASIS_TOOLS/vscode-test`, installed by the script when missing.
#[allow(clippy::disallowed_methods)] // Runs the install script (pip, npm, apt-get).
fn tools() -> PathBuf {
    let tools = std::env::var_os("BASIS_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/basis-tools")
        })
        .join("vscode-test");
    if !tools.join(".complete").is_file() || !Path::new("/usr/bin/chromium").is_file() {
        let started = Instant::now();
        let out = Command::new("bash")
            .arg(root().join("scripts/install-vscode-test.sh"))
            .stdin(Stdio::null())
            .output()
            .expect("bash runs");
        assert!(
            out.status.success(),
            "installing the VS Code test tools failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "installed the VS Code test tools in {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
    tools
}

/// Runs npm (the installed Node's) in `dir`.
#[allow(clippy::disallowed_methods)] // npm builds the extension; nothing generated runs.
fn npm(tools: &Path, dir: &Path, args: &[&str]) {
    let path = format!(
        "{}:{}",
        tools.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new(tools.join("bin/npm"))
        .args(args)
        .current_dir(dir)
        .env("PATH", path)
        .env("npm_config_update_notifier", "false")
        .env("npm_config_fund", "false")
        .env("npm_config_audit", "false")
        .stdin(Stdio::null())
        .output()
        .expect("npm runs");
    assert!(
        out.status.success(),
        "npm {args:?} in {} failed:\n{}\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Installs the extension's dependencies (`npm ci`, when the lock file is newer
/// than what is installed), runs its unit tests and packages it; returns the .vsix.
fn build_extension(tools: &Path) -> PathBuf {
    let dir = root().join("editors/vscode");
    let installed = dir.join("node_modules/.package-lock.json");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if modified(&installed).is_none()
        || modified(&installed) < modified(&dir.join("package-lock.json"))
    {
        npm(tools, &dir, &["ci", "--no-audit", "--no-fund"]);
    }
    npm(tools, &dir, &["test"]);
    npm(tools, &dir, &["run", "package"]);
    let vsix = dir.join("basis.vsix");
    assert!(vsix.is_file(), "{} was not made", vsix.display());
    vsix
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// code-server, stopped with its extension host and language server when dropped.
struct CodeServer {
    child: Child,
}

impl Drop for CodeServer {
    #[allow(clippy::disallowed_methods)] // kill(1) the process group this test started.
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// `{"a": {"b": 1}}` as `[("basis.a.b", 1)]`, VS Code's setting keys.
fn flatten(
    prefix: &str,
    v: &serde_json::Value,
    out: &mut serde_json::Map<String, serde_json::Value>,
) {
    match v {
        serde_json::Value::Object(o) => {
            for (k, v) in o {
                flatten(&format!("{prefix}.{k}"), v, out);
            }
        }
        v => {
            out.insert(prefix.to_string(), v.clone());
        }
    }
}

#[allow(clippy::disallowed_methods)] // Runs code-server and the playwright driver; nothing generated runs here.
#[test]
fn vscode_runs_the_editor_scenario() {
    let started = Instant::now();
    support::default_model();
    let tools = tools();
    let vsix = build_extension(&tools);
    let node = tools.join("bin/node");
    let entry = tools.join("node_modules/code-server/out/node/entry.js");

    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    support::copy_dir(&support::scenario::fixture(), &repo);
    support::git_commit_all(&repo);
    let db = tmp.path().join("fb.sqlite3");
    let user_data = tmp.path().join("user-data");
    let extensions = tmp.path().join("extensions");
    let trace = tmp.path().join("trace.jsonl");

    // Settings: the scenario's server options, the feedback store, the binary.
    let mut options = support::scenario::load()["initOptions"].clone();
    options["feedback"]["path"] = serde_json::json!(db);
    let mut settings = serde_json::Map::new();
    flatten("basis", &options, &mut settings);
    settings.insert("basis.path".into(), env!("CARGO_BIN_EXE_basis").into());
    for (k, v) in [
        ("security.workspace.trust.enabled", serde_json::json!(false)),
        ("workbench.startupEditor", "none".into()),
        (
            "workbench.secondarySideBar.defaultVisibility",
            "hidden".into(),
        ),
        ("telemetry.telemetryLevel", "off".into()),
        ("extensions.autoCheckUpdates", false.into()),
        ("extensions.autoUpdate", false.into()),
        ("update.mode", "none".into()),
        ("workbench.tips.enabled", false.into()),
        ("workbench.enableExperiments", false.into()),
        ("git.enabled", false.into()),
        ("chat.disableAIFeatures", true.into()),
        ("files.hotExit", "off".into()),
        (
            "editor.quickSuggestions",
            serde_json::json!({"other": false, "comments": false, "strings": false}),
        ),
    ] {
        settings.insert(k.into(), v);
    }
    let settings = serde_json::to_string_pretty(&settings).unwrap();
    // The extension runs in code-server's (remote) extension host, which reads
    // machine-scoped settings such as basis.path from Machine/settings.json.
    for dir in ["User", "Machine"] {
        std::fs::create_dir_all(user_data.join(dir)).unwrap();
        std::fs::write(user_data.join(dir).join("settings.json"), &settings).unwrap();
    }
    let config = tmp.path().join("code-server.yaml");
    std::fs::write(&config, "auth: none\n").unwrap();
    let code_server = |args: &[&std::ffi::OsStr]| {
        let mut cmd = Command::new(&node);
        cmd.arg(&entry)
            .arg("--config")
            .arg(&config)
            .arg("--user-data-dir")
            .arg(&user_data)
            .arg("--extensions-dir")
            .arg(&extensions)
            .args(args);
        cmd
    };
    let out = code_server(&["--install-extension".as_ref(), vsix.as_os_str()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "installing the extension failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let mut cmd = code_server(&[
        "--auth".as_ref(),
        "none".as_ref(),
        "--disable-telemetry".as_ref(),
        "--disable-update-check".as_ref(),
        "--disable-workspace-trust".as_ref(),
        "--disable-getting-started-override".as_ref(),
        "--bind-addr".as_ref(),
        bind.as_ref(),
        repo.as_os_str(),
    ]);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let child = cmd
        .env("BASIS_VSCODE_TRACE", &trace)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("code-server starts");
    let mut server = CodeServer { child };
    let stdout = server.child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = Vec::new();
    loop {
        while let Ok(line) = rx.try_recv() {
            seen.push(line);
        }
        if seen.iter().any(|l| l.contains("HTTP server listening"))
            && TcpStream::connect(&bind).is_ok()
        {
            break;
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("code-server exited {status}:\n{}", seen.join("\n"));
        }
        assert!(
            Instant::now() < deadline,
            "code-server did not listen in 120 s:\n{}",
            seen.join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let artifacts = root().join("target/vscode-e2e-artifacts").join(format!(
        "run-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    ));
    std::fs::create_dir_all(&artifacts).unwrap();
    let results_path = artifacts.join("results.json");
    let steps = std::env::var("BASIS_E2E_STEPS").ok();
    let mut driver = Command::new(&node);
    driver
        .arg(root().join("editors/vscode/test/e2e/driver.js"))
        .env("NODE_PATH", tools.join("node_modules"))
        .env("BASIS_E2E_URL", format!("http://{bind}"))
        .env("BASIS_E2E_SCENARIO", support::scenario::path())
        .env("BASIS_E2E_REPO", &repo)
        .env("BASIS_E2E_TRACE", &trace)
        .env("BASIS_E2E_ARTIFACTS", &artifacts)
        .env("BASIS_E2E_RESULTS", &results_path)
        .env("BASIS_E2E_BROWSER_DIR", tmp.path().join("chromium-profile"))
        .stdin(Stdio::null());
    if let Some(s) = &steps {
        driver.env("BASIS_E2E_STEPS", s);
    }
    let mut driver = driver.spawn().expect("the driver starts");
    let deadline = Instant::now() + Duration::from_secs(1200);
    let status = loop {
        if let Some(s) = driver.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = driver.kill();
            panic!(
                "the VS Code driver did not finish in 1200 s; see {}",
                artifacts.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let _ = std::fs::copy(&trace, artifacts.join("trace.jsonl"));
    eprintln!("VS Code screenshots and results: {}", artifacts.display());
    let text = std::fs::read_to_string(&results_path)
        .unwrap_or_else(|e| panic!("no results ({e}); the driver exited {status}"));
    let results: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(status.success(), "the driver exited {status}: {results}");

    // Time from the command to the suggestion on screen, and the request's own
    // time as the extension measured it (its round trip to the server).
    // The extension's own share (its trace: from its command to the suggestion
    // shown, less the request) is printed beside it.
    // Per skill: on screen, in the server, in the extension (ms).
    type Times = (Vec<f64>, Vec<f64>, Vec<f64>);
    let mut times: std::collections::BTreeMap<&str, Times> = Default::default();
    for step in results["steps"].as_array().unwrap() {
        eprintln!(
            "{:<18} {:>7} ms on screen ({:>7} ms coloured as a diff, first partial answer at {:>5} ms), {:>7} ms in the server, {:>5} ms in the extension, {:>7} ms the step{}",
            step["name"].as_str().unwrap_or(""),
            step["uiMs"],
            step["coloredMs"],
            step["firstPartialMs"],
            step["serverMs"],
            step["extensionMs"],
            step["stepMs"],
            step["error"]
                .as_str()
                .map(|e| format!(" ERROR {}", e.lines().next().unwrap_or("")))
                .unwrap_or_default()
        );
        let skill = step["skill"].as_str().unwrap_or("");
        if let (Some(ui), Some(server)) = (step["uiMs"].as_f64(), step["serverMs"].as_f64()) {
            let e = times.entry(skill).or_default();
            e.0.push(ui);
            e.1.push(server);
            if let Some(ext) = step["extensionMs"].as_f64() {
                e.2.push(ext);
            }
        }
    }
    let p50 = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    for skill in ["localize", "edit"] {
        if let Some((ui, server, ext)) = times.get_mut(skill) {
            eprintln!(
                "p50 {skill}: {:.0} ms from the command to the suggestion on screen, {:.0} ms the request in the server, {:.0} ms the extension's own",
                p50(ui),
                p50(server),
                p50(ext)
            );
        }
    }
    // Everything the extension sent is on disk (it flushed) and the server is gone.
    drop(server);
    let store = basis_feedback::Store::open(&db).unwrap();
    for step in results["steps"].as_array().unwrap() {
        let kinds: Vec<String> = step["suggestionId"]
            .as_str()
            .map(|id| {
                store
                    .events(id)
                    .unwrap()
                    .iter()
                    .map(|e| format!("{:?}", e.kind))
                    .collect()
            })
            .unwrap_or_default();
        eprintln!(
            "{:<18} stored events {kinds:?}",
            step["name"].as_str().unwrap_or("")
        );
    }
    drop(store);
    for step in results["steps"].as_array().unwrap() {
        assert!(
            step["error"].is_null(),
            "step {} failed: {}",
            step["name"],
            step["error"]
        );
        assert!(
            !step["screenshots"].as_array().unwrap().is_empty(),
            "{step}"
        );
    }
    assert!(
        results["statusBar"]
            .as_str()
            .unwrap_or("")
            .contains("Basis:"),
        "{results}"
    );
    let only: Option<Vec<&str>> = steps.as_deref().map(|s| s.split(',').collect());
    support::scenario::check_feedback(&db, &results, only.as_deref());
    eprintln!(
        "the VS Code scenario took {:.0} s",
        started.elapsed().as_secs_f64()
    );
}
