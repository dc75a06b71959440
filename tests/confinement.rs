//! The workspace is a boundary: a hostile workspace (links pointing out of it,
//! a linked folder, links created after the first index, URIs with `..`,
//! `%2e%2e`, doubled slashes and a mixed-case scheme, documents opened from
//! outside and through an alias) is driven through every request, command and
//! code action of the real server and every CLI command that takes a file or a
//! repository. Nothing outside is read into an answer, a notification or the
//! feedback store, no `workspace/applyEdit` names a path outside, and no file
//! outside changes.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use support::lsp::{file_uri, LspClient};

/// Text that exists only in the files outside the workspace.
const CANARY: &str = "CANARY-5e1f";

struct Hostile {
    _tmp: tempfile::TempDir,
    /// The workspace (a copy of `py_shop`, committed, then links added).
    ws: PathBuf,
    /// The folder beside it holding the canaries.
    outside: PathBuf,
    /// A folder the workspace links to.
    outside_dir: PathBuf,
    db: PathBuf,
}

#[cfg(unix)]
fn link(target: &Path, at: &Path) {
    std::os::unix::fs::symlink(target, at).unwrap();
}

/// The workspace and the canaries. `commit_links`: the links are committed (a
/// cloned hostile repository) rather than left untracked.
fn hostile(commit_links: bool) -> Hostile {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().canonicalize().unwrap();
    let ws = base.join("ws");
    let outside = base.join("outside");
    let outside_dir = base.join("outside_dir");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::create_dir_all(&outside_dir).unwrap();
    std::fs::write(
        outside.join("secret.py"),
        format!("def canary_leak_fn(price):\n    return \"{CANARY}-py\" + str(price)\n"),
    )
    .unwrap();
    std::fs::write(
        outside.join("test_pricing_canary.py"),
        format!("# {CANARY}-test\nimport unittest\n"),
    )
    .unwrap();
    std::fs::write(
        outside_dir.join("widget.js"),
        format!("function canaryWidget(price) {{\n  return \"{CANARY}-js\" + price;\n}}\nmodule.exports = {{ canaryWidget }};\n"),
    )
    .unwrap();
    support::copy_dir(&support::fixture("py_shop"), &ws);
    if !commit_links {
        support::git_commit_all(&ws);
    }
    link(&outside.join("secret.py"), &ws.join("shop/leak.py"));
    link(&outside_dir, &ws.join("vendor"));
    link(
        &outside.join("test_pricing_canary.py"),
        &ws.join("tests/test_shop_pricing.py"),
    );
    link(&ws.join("shop/pricing.py"), &ws.join("shop/alias.py"));
    if commit_links {
        support::git_commit_all(&ws);
    }
    let db = base.join("feedback.sqlite3");
    Hostile {
        _tmp: tmp,
        ws,
        outside,
        outside_dir,
        db,
    }
}

/// Every file outside the workspace, with its bytes.
fn snapshot(h: &Hostile) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for dir in [&h.outside, &h.outside_dir] {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            out.insert(p.clone(), std::fs::read(&p).unwrap());
        }
    }
    out
}

/// The ways of naming `outside/secret.py` from the workspace.
fn outside_uris(h: &Hostile) -> Vec<String> {
    let ws = file_uri(&h.ws);
    let ws_path = h.ws.display().to_string();
    vec![
        file_uri(&h.outside.join("secret.py")),
        format!("{ws}/../outside/secret.py"),
        format!("{ws}/%2e%2e/outside/secret.py"),
        format!("{ws}/shop/%2E%2E/%2E%2E/outside/secret.py"),
        format!("file://{ws_path}//shop//..//..//outside/secret.py"),
        format!("FILE://{ws_path}/../outside/secret.py"),
        file_uri(&h.ws.join("shop/leak.py")),
        file_uri(&h.ws.join("vendor/widget.js")),
    ]
}

/// Whether a URI the server named resolves inside the workspace.
fn inside(h: &Hostile, uri: &str) -> bool {
    basis_code::Workspace::new(&h.ws).locate_uri(uri).is_ok()
}

/// The URIs a `WorkspaceEdit` names (changes, and document changes of any kind).
fn edit_uris(edit: &Value) -> Vec<String> {
    let mut out: Vec<String> = edit["changes"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    for c in edit["documentChanges"].as_array().into_iter().flatten() {
        for key in ["uri", "oldUri", "newUri"] {
            if let Some(u) = c[key].as_str() {
                out.push(u.to_string());
            }
        }
        if let Some(u) = c["textDocument"]["uri"].as_str() {
            out.push(u.to_string());
        }
    }
    out
}

fn feedback_export(db: &Path) -> String {
    if !db.exists() {
        return String::new();
    }
    let out = support::run(&["feedback", "--db", db.to_str().unwrap(), "export"]);
    assert!(out.status.success(), "{}", support::stderr(&out));
    support::stdout(&out)
}

fn exec(c: &mut LspClient, seen: &mut Vec<Value>, command: &str, args: Value) -> Value {
    let r = c.request(
        "workspace/executeCommand",
        json!({"command": command, "arguments": [args]}),
    );
    seen.push(r.clone());
    r
}

fn call(c: &mut LspClient, seen: &mut Vec<Value>, method: &str, params: Value) -> Value {
    let r = c.request(method, params);
    seen.push(r.clone());
    r
}

fn refused_as_outside(r: &Value) {
    let m = r["error"]["message"].as_str().unwrap_or_default();
    assert!(
        m.contains("outside the workspace"),
        "expected a refusal saying the file is outside: {r}"
    );
}

#[cfg(unix)]
#[test]
fn the_server_reads_writes_and_records_nothing_outside_the_workspace() {
    support::default_model();
    let h = hostile(false);
    let before = snapshot(&h);
    let mut c = LspClient::start(&[]);
    let mut seen: Vec<Value> = Vec::new();
    seen.push(c.initialize(
        &h.ws,
        &["utf-16"],
        json!({"feedback": {"path": h.db}, "localize": {"useModel": "never"}}),
    ));
    c.wait_indexed();

    // Links created after the first index, and every URI shape, as watched-file
    // events and saves: none of them may bring the target into the index.
    link(&h.outside.join("secret.py"), &h.ws.join("shop/late.py"));
    link(&h.outside_dir, &h.ws.join("late_dir"));
    let mut changed: Vec<String> = outside_uris(&h);
    changed.push(file_uri(&h.ws.join("shop/late.py")));
    changed.push(file_uri(&h.ws.join("late_dir/widget.js")));
    changed.push(file_uri(&h.ws.join("late_dir")));
    let events: Vec<Value> = changed
        .iter()
        .map(|u| json!({"uri": u, "type": 1}))
        .collect();
    c.notify(
        "workspace/didChangeWatchedFiles",
        json!({"changes": events}),
    );
    // Documents opened from outside, and through aliases, then saved.
    let secret_text = std::fs::read_to_string(h.outside.join("secret.py")).unwrap();
    for uri in outside_uris(&h) {
        c.open(&uri, "python", &secret_text);
        c.notify(
            "textDocument/didSave",
            json!({"textDocument": {"uri": uri}, "text": secret_text}),
        );
        c.notify(
            "textDocument/didSave",
            json!({"textDocument": {"uri": uri}}),
        );
    }
    for query in ["canary_leak_fn", "canaryWidget", "canary"] {
        let syms = call(
            &mut c,
            &mut seen,
            "workspace/symbol",
            json!({"query": query}),
        );
        assert_eq!(syms["result"], json!([]), "{query}: {syms}");
    }
    let found = call(
        &mut c,
        &mut seen,
        "basis/localize",
        json!({"query": "canary leak fn returns the canary widget price"}),
    );
    for l in found["result"]["locations"].as_array().unwrap() {
        assert!(inside(&h, l["uri"].as_str().unwrap()), "{l}");
    }

    // Every command and code action on a file outside: refused, before the model.
    let range = json!({"start": {"line": 0, "character": 0}, "end": {"line": 1, "character": 0}});
    for uri in outside_uris(&h) {
        let r = exec(
            &mut c,
            &mut seen,
            "basis.edit",
            json!({"uri": uri, "range": range, "instruction": "add one"}),
        );
        refused_as_outside(&r);
        let r = exec(
            &mut c,
            &mut seen,
            "basis.testgen",
            json!({"uri": uri, "position": {"line": 0, "character": 6}}),
        );
        refused_as_outside(&r);
        let actions = call(
            &mut c,
            &mut seen,
            "textDocument/codeAction",
            json!({"textDocument": {"uri": uri}, "range": range, "context": {"diagnostics": []}}),
        );
        assert_eq!(actions["result"], json!([]), "{uri}: {actions}");
    }
    // A file inside whose test file is a link pointing out.
    let pricing = file_uri(&h.ws.join("shop/pricing.py"));
    let r = exec(
        &mut c,
        &mut seen,
        "basis.testgen",
        json!({"uri": pricing, "position": {"line": 6, "character": 6}}),
    );
    refused_as_outside(&r);
    // Review: the untracked links are no added files.
    let r = exec(&mut c, &mut seen, "basis.review", json!({}));
    assert!(
        r["result"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("nothing changed")),
        "{r}"
    );
    // Reproduce: the model writes a test from what retrieval finds; the linked
    // `tests/` file it might land beside is not followed.
    let r = exec(
        &mut c,
        &mut seen,
        "basis.reproduce",
        json!("canary_leak_fn returns the wrong canary string for a price of 10"),
    );
    if let Some(f) = r["result"]["testFile"].as_str() {
        assert!(inside(&h, f), "{r}");
    }
    c.call("basis/feedbackFlush", Value::Null);
    let (clean, rest) = c.shutdown_and_collect();
    assert!(clean, "{}", rest.len());
    seen.extend(rest);

    for m in &seen {
        let text = m.to_string();
        assert!(!text.contains(CANARY), "outside text in a message: {text}");
        if m["method"] == "workspace/applyEdit" {
            for u in edit_uris(&m["params"]["edit"]) {
                assert!(inside(&h, &u), "applyEdit names {u} outside: {m}");
            }
        }
        for u in edit_uris(&m["result"]["edit"]) {
            assert!(inside(&h, &u), "an answer's edit names {u}: {m}");
        }
    }
    let stored = feedback_export(&h.db);
    assert!(
        !stored.contains(CANARY),
        "outside text in the store: {stored}"
    );
    assert!(!stored.contains("canary_leak_fn("), "{stored}");
    for line in stored.lines() {
        let rec: Value = serde_json::from_str(line).unwrap();
        if let Some(file) = rec["file"].as_str() {
            let ws = basis_code::Workspace::new(&h.ws);
            assert!(ws.locate(Path::new(file)).is_ok(), "{rec}");
        }
    }
    assert_eq!(snapshot(&h), before, "a file outside changed");
}

#[cfg(unix)]
#[test]
fn cli_commands_refuse_files_outside_the_repository_and_write_nothing() {
    let h = hostile(false);
    let before = snapshot(&h);
    let ws = h.ws.to_str().unwrap();
    let run = |args: &[&str]| {
        support::basis()
            .args(args)
            .env("BASIS_FEEDBACK_DB", &h.db)
            .output()
            .unwrap()
    };
    let secret = h.outside.join("secret.py");
    for file in [
        "shop/leak.py",
        "vendor/widget.js",
        "../outside/secret.py",
        "shop/../../outside/secret.py",
        secret.to_str().unwrap(),
    ] {
        let o = run(&[
            "edit", "--repo", ws, "--file", file, "--lines", "1", "--apply", "add one",
        ]);
        let err = support::stderr(&o);
        assert!(!o.status.success(), "{file}: {err}");
        assert!(err.contains("outside the workspace"), "{file}: {err}");
        let o = run(&[
            "testgen",
            "--repo",
            ws,
            "--file",
            file,
            "--symbol",
            "canary_leak_fn",
            "--apply",
        ]);
        assert!(!o.status.success(), "{file}");
        assert!(
            support::stderr(&o).contains("outside the workspace"),
            "{file}: {}",
            support::stderr(&o)
        );
        for out in [support::stdout(&o), support::stderr(&o)] {
            assert!(!out.contains(CANARY), "{out}");
        }
    }
    // The test file of a file inside is a link pointing out: refused before the
    // model is loaded, and nothing is written through it.
    let o = run(&[
        "testgen",
        "--repo",
        ws,
        "--file",
        "shop/pricing.py",
        "--symbol",
        "apply_discount",
        "--apply",
    ]);
    let err = support::stderr(&o);
    assert!(
        !o.status.success() && err.contains("outside the workspace"),
        "{err}"
    );
    // Review sees no added file in the untracked links.
    let o = run(&["review", "--repo", ws]);
    let err = support::stderr(&o);
    assert!(err.contains("nothing changed"), "{err}");
    assert!(!err.contains(CANARY));
    assert!(!h.db.exists() || !feedback_export(&h.db).contains(CANARY));
    assert_eq!(snapshot(&h), before, "a file outside changed");
}

#[cfg(unix)]
#[test]
fn eval_and_mining_leave_out_links_that_point_out_of_a_repository() {
    let h = hostile(true);
    let root = h.ws.parent().unwrap();
    let before = snapshot(&h);
    let head = support::git_output(&h.ws, &["rev-parse", "HEAD"])
        .trim()
        .to_string();
    let task = |id: &str, skill: &str, input: Value, reference: Value| {
        json!({"schema": "basis.task/1", "id": id, "skill": skill,
            "repo": {"path": "ws", "commit": head}, "input": input,
            "reference": reference, "meta": {"source": "hand"}})
    };
    let tasks = [
        task(
            "leak-edit",
            "edit",
            json!({"instruction": "add one", "file": "shop/leak.py", "start_line": 1, "end_line": 2}),
            json!({"replacement": "def canary_leak_fn(price):\n    return 1\n"}),
        ),
        task(
            "leak-testgen",
            "testgen",
            json!({"file": "vendor/widget.js", "symbol": "canaryWidget"}),
            json!({"mutants": ["--- a/vendor/widget.js\n+++ b/vendor/widget.js\n@@ -1 +1 @@\n-a\n+b\n"]}),
        ),
        task(
            "loc",
            "localize",
            json!({"issue": "bulk_price charges the full price for ten items"}),
            json!({"files": ["shop/pricing.py"]}),
        ),
    ];
    let tasks_file = root.join("tasks.jsonl");
    let text: String = tasks.iter().map(|t| format!("{t}\n")).collect();
    std::fs::write(&tasks_file, text).unwrap();
    let answers = root.join("answers-in.jsonl");
    std::fs::write(
        &answers,
        [
            json!({"id": "loc", "completion": "shop/pricing.py\n"}),
            json!({"id": "leak-edit", "completion": "def canary_leak_fn(price):\n    return 1\n```"}),
        ]
        .iter()
        .map(|v| format!("{v}\n"))
        .collect::<String>(),
    )
    .unwrap();
    let out = root.join("report");
    let o = support::run(&[
        "eval",
        "--tasks",
        tasks_file.to_str().unwrap(),
        "--repo-root",
        root.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--answers",
        answers.to_str().unwrap(),
        "--model",
        support::default_model().to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", support::stderr(&o));
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let skipped = report["skipped"].to_string();
    for id in ["leak-edit", "leak-testgen"] {
        assert!(skipped.contains(id), "{id} was evaluated: {skipped}");
    }
    assert!(skipped.contains("outside the workspace"), "{skipped}");
    for e in std::fs::read_dir(&out).unwrap() {
        let p = e.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        assert!(!text.contains(CANARY), "{}: {text}", p.display());
    }

    // Mining the same repository: no task is about, or holds, a file outside.
    let mined = root.join("mined.jsonl");
    let o = support::run(&[
        "tasks",
        "mine",
        "--repo",
        h.ws.to_str().unwrap(),
        "--out",
        mined.to_str().unwrap(),
        "--max",
        "2",
    ]);
    assert!(o.status.success(), "{}", support::stderr(&o));
    let text = std::fs::read_to_string(&mined).unwrap();
    assert!(!text.is_empty());
    for needle in [
        CANARY,
        "canary_leak_fn",
        "canaryWidget",
        "leak.py",
        "vendor/",
    ] {
        assert!(
            !text.contains(needle),
            "{needle} in the mined tasks: {text}"
        );
    }
    assert_eq!(snapshot(&h), before, "a file outside changed");
}
