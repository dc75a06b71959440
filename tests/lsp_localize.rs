//! Localization end to end with the real default model: `basis/localize`, the
//! `basis.localize` command and `basis localize` on the committed fixture
//! repository give the same answer; every suggestion lands in the feedback store
//! with its model version and log-probs; a published model version is picked up
//! without a restart; and acknowledged feedback survives SIGKILL.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::lsp::{file_uri, LspClient};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/localize_repo")
}

const ISSUE: &str = "apply_discount returns a negative price when the discount percent is over 100";

fn options(db: &Path, extra: Value) -> Value {
    // The model chooses the files (not only where an evaluation says it beats
    // retrieval): these tests are about the model's answers.
    let mut o = json!({
        "feedback": {"path": db},
        "sampling": {"maxTokens": 24},
        "localize": {"useModel": "always"},
    });
    if let (Some(o), Some(extra)) = (o.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            o.insert(k.clone(), v.clone());
        }
    }
    o
}

fn relative(uri: &str, root: &Path) -> String {
    let prefix = format!("{}/", file_uri(root));
    uri.strip_prefix(&prefix).unwrap_or(uri).to_string()
}

#[test]
fn localize_request_command_and_cli_agree_and_are_recorded() {
    support::default_model();
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("feedback.sqlite3");
    let root = fixture();
    let mut c = LspClient::start(&[]);
    c.initialize(&root, &["utf-16"], options(&db, json!({})));
    c.wait_indexed();

    let r = c.call("basis/localize", json!({"query": ISSUE, "limit": 5}));
    let id = r["suggestionId"]
        .as_str()
        .expect("a suggestion id")
        .to_string();
    assert_eq!(r["modelVersion"], "base");
    let locations = r["locations"].as_array().unwrap();
    assert!(!locations.is_empty() && locations.len() <= 5, "{r}");
    let paths: Vec<String> = locations
        .iter()
        .map(|l| relative(l["uri"].as_str().unwrap(), &root))
        .collect();
    assert!(
        paths.iter().any(|p| p == "inventory/pricing.py"),
        "the pricing module is among {paths:?}"
    );
    let scores: Vec<f64> = locations
        .iter()
        .map(|l| l["score"].as_f64().unwrap())
        .collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "best first: {scores:?}"
    );
    let pricing = locations
        .iter()
        .find(|l| l["uri"].as_str().unwrap().ends_with("pricing.py"))
        .unwrap();
    assert_eq!(pricing["symbol"], "apply_discount", "{pricing}");
    assert_eq!(pricing["range"]["start"]["line"], 3, "{pricing}");

    // The command gives the same answer (greedy decoding, same prompt).
    let cmd = c.call(
        "workspace/executeCommand",
        json!({"command": "basis.localize", "arguments": [ISSUE]}),
    );
    let cmd_paths: Vec<String> = cmd["locations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| relative(l["uri"].as_str().unwrap(), &root))
        .collect();
    assert_eq!(&cmd_paths[..paths.len()], &paths[..]);
    assert_ne!(cmd["suggestionId"], r["suggestionId"]);

    // Feedback on it, then a flush: everything is on disk.
    c.notify(
        "basis/feedback",
        json!({"suggestionId": id, "kind": "shown"}),
    );
    c.notify(
        "basis/feedback",
        json!({"suggestionId": id, "kind": "accepted"}),
    );
    c.notify(
        "basis/feedback",
        json!({"suggestionId": id, "kind": "bogus"}),
    );
    c.call("basis/feedbackFlush", Value::Null);
    let store = basis_feedback::Store::open(&db).unwrap();
    let s = store
        .suggestion(&id)
        .unwrap()
        .expect("the suggestion is stored");
    assert_eq!(
        (s.skill.as_str(), s.model_version.as_str()),
        ("localize", "base")
    );
    assert_eq!(s.model_name, "smollm2-135m-instruct");
    assert!(
        s.prompt.contains(ISSUE) && s.prompt.contains("inventory/pricing.py"),
        "{}",
        s.prompt
    );
    assert!(s.token_count > 0 && s.logprob_sum < 0.0, "{s:?}");
    let kinds: Vec<String> = store
        .events(&id)
        .unwrap()
        .iter()
        .map(|e| {
            serde_json::to_value(&e.kind).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(kinds, ["shown", "accepted"]);
    let log = c.wait_stderr("unknown feedback kind `bogus`");
    assert!(log.contains("unknown feedback kind `bogus`"), "{log}");
    assert!(c.shutdown());

    // The CLI prints the same ranking as path:line rows.
    let out = support::run(&[
        "localize",
        "--repo",
        root.to_str().unwrap(),
        "--limit",
        "5",
        "--candidates",
        "8",
        "--use-model",
        "always",
        ISSUE,
    ]);
    assert!(out.status.success(), "{}", support::stderr(&out));
    let rows: Vec<String> = support::stdout(&out).lines().map(str::to_string).collect();
    let cli_paths: Vec<String> = rows
        .iter()
        .map(|r| r.rsplit_once(':').unwrap().0.to_string())
        .collect();
    assert_eq!(cli_paths, paths, "CLI rows: {rows:?}");
    assert!(
        rows.contains(&"inventory/pricing.py:4".to_string()),
        "{rows:?}"
    );
}

#[test]
fn cli_localize_rejects_bad_input_clearly() {
    let out = support::run(&["localize", "--repo", "/definitely/not/here", "x"]);
    assert!(!out.status.success());
    assert!(
        support::stderr(&out).contains("cannot open the repository"),
        "{}",
        support::stderr(&out)
    );
    let out = support::run(&["localize", "--repo", fixture().to_str().unwrap(), "  "]);
    assert!(!out.status.success());
    assert!(
        support::stderr(&out).contains("empty"),
        "{}",
        support::stderr(&out)
    );
}

#[test]
fn by_default_the_model_reorders_only_where_an_evaluation_found_it_better() {
    let model = support::default_model();
    let home = tempfile::tempdir().unwrap();
    let home_str = home.path().to_str().unwrap();
    let out = support::basis()
        .args(["model", "pull", model.to_str().unwrap(), "--name", "m"])
        .env("BASIS_HOME", home_str)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", support::stderr(&out));
    let db = home.path().join("fb.sqlite3");
    let root = fixture();
    let mut c = LspClient::start(&[("BASIS_HOME", home_str)]);
    c.initialize(
        &root,
        &["utf-16"],
        json!({"feedback": {"path": db}, "model": "m", "sampling": {"maxTokens": 24}}),
    );
    // No evaluation yet: retrieval's ranking, and no generation.
    let r = c.call("basis/localize", json!({"query": ISSUE}));
    assert_eq!(r["ranking"], "retrieval", "{r}");
    assert_eq!(
        c.call("basis/debug/stats", Value::Null)["generationsStarted"],
        0
    );
    let retrieval: Vec<String> = r["locations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| relative(l["uri"].as_str().unwrap(), &root))
        .collect();
    // The CLI decides the same way, and prints retrieval's ranking.
    let cli = |verbose_says: &str| {
        let out = support::basis()
            .args(["localize", "--repo", root.to_str().unwrap()])
            .args(["--model", "m", "--verbose", ISSUE])
            .env("BASIS_HOME", home_str)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", support::stderr(&out));
        let err = support::stderr(&out);
        assert!(err.contains(verbose_says), "{err}");
        support::stdout(&out)
            .lines()
            .map(|r| r.rsplit_once(':').unwrap().0.to_string())
            .collect::<Vec<String>>()
    };
    assert_eq!(cli("retrieval's ranking"), retrieval);
    let registry = basis_model::registry::Registry::new(home.path().join("models/m"));
    let repo = root.canonicalize().unwrap().display().to_string();
    // An evaluation where retrieval did better changes nothing.
    registry
        .record_eval(
            basis_model::registry::Version::Base,
            "localize",
            &repo,
            json!({"tasks": 4, "model_exact_at_ref": 0.25, "retrieval_exact_at_ref": 0.5}),
        )
        .unwrap();
    assert_eq!(
        c.call("basis/localize", json!({"query": ISSUE}))["ranking"],
        "retrieval"
    );
    // One where the model did better: the model orders the files.
    registry
        .record_eval(
            basis_model::registry::Version::Base,
            "localize",
            &repo,
            json!({"tasks": 4, "model_exact_at_ref": 0.75, "retrieval_exact_at_ref": 0.5}),
        )
        .unwrap();
    let r = c.call("basis/localize", json!({"query": ISSUE}));
    assert_eq!(r["ranking"], "model", "{r}");
    assert_eq!(
        c.call("basis/debug/stats", Value::Null)["generationsStarted"],
        1
    );
    cli("model answer:");
    // `never` overrides it.
    c.notify(
        "workspace/didChangeConfiguration",
        json!({"settings": {"feedback": {"path": db}, "model": "m", "localize": {"useModel": "never"}}}),
    );
    assert_eq!(
        c.call("basis/localize", json!({"query": ISSUE}))["ranking"],
        "retrieval"
    );
    assert!(c.shutdown());
}

#[test]
fn a_published_version_is_served_without_a_restart() {
    let model = support::default_model();
    let home = tempfile::tempdir().unwrap();
    let home_str = home.path().to_str().unwrap();
    // A store of our own, with the default model's file registered in place.
    let out = support::basis()
        .args(["model", "pull", model.to_str().unwrap(), "--name", "m"])
        .env("BASIS_HOME", home_str)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", support::stderr(&out));
    let db = home.path().join("fb.sqlite3");
    let mut c = LspClient::start(&[("BASIS_HOME", home_str)]);
    c.initialize(&fixture(), &["utf-16"], options(&db, json!({"model": "m"})));
    let first = c.call("basis/localize", json!({"query": ISSUE}));
    assert_eq!(first["modelVersion"], "base");

    // Train nothing, but publish a real adapter (B = 0) as version v1.
    let adapter = home.path().join("adapter");
    let mut lm = basis_model::LanguageModel::load(
        model,
        basis_model::Precision::Quantized,
        &basis_model::Device::Cpu,
    )
    .unwrap();
    lm.model
        .add_lora(basis_model::LoraConfig::new(2, 4.0, &["q_proj"]), 1)
        .unwrap();
    basis_model::lora::save_adapter(&lm.model, &adapter).unwrap();
    let registry = basis_model::registry::Registry::new(home.path().join("models/m"));
    let v1 = registry
        .publish(&adapter, "test publish", serde_json::Value::Null)
        .unwrap();
    assert_eq!(v1.to_string(), "v1");

    let changed = c.wait_for("basis/modelChanged", |_| true);
    assert_eq!(changed["params"], json!({"model": "m", "version": "v1"}));
    let second = c.call("basis/localize", json!({"query": ISSUE}));
    assert_eq!(second["modelVersion"], "v1");
    // B = 0: the adapter changes nothing, so the answer is the same.
    assert_eq!(first["locations"], second["locations"]);
    c.call("basis/feedbackFlush", Value::Null);
    let store = basis_feedback::Store::open(&db).unwrap();
    let s = store
        .suggestion(second["suggestionId"].as_str().unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(s.model_version, "v1");
    assert!(c.shutdown());
}

#[test]
fn cancelling_a_localization_stops_the_generation() {
    support::default_model();
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("feedback.sqlite3");
    let mut c = LspClient::start(&[]);
    // A long answer, so that the cancel arrives mid-generation.
    c.initialize(
        &fixture(),
        &["utf-16"],
        options(
            &db,
            json!({"sampling": {"maxTokens": 2000, "temperature": 1.0}}),
        ),
    );
    // Load the model first, then cancel once the generation has begun (its
    // progress says so): the cancel lands in the prefill or between tokens.
    c.call("basis/localize", json!({"query": ISSUE}));
    let id = c.send_request("basis/localize", json!({"query": ISSUE}));
    c.wait_progress_begin("Basis: localizing");
    c.notify("$/cancelRequest", json!({"id": id}));
    let r = c.wait_response(id);
    assert_eq!(r["error"]["code"], -32800, "{r}");
    let stats = c.wait_stats(|s| s["generationsCancelled"] == 1);
    assert_eq!(
        stats["generationsFinished"], 1,
        "only the first one: {stats}"
    );
    assert!(c.shutdown());
}

#[test]
fn an_edit_during_localization_gives_content_modified() {
    support::default_model();
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("feedback.sqlite3");
    let root = fixture();
    let mut c = LspClient::start(&[]);
    c.initialize(
        &root,
        &["utf-16"],
        options(
            &db,
            json!({"sampling": {"maxTokens": 300, "temperature": 1.0}}),
        ),
    );
    c.call("basis/localize", json!({"query": ISSUE}));
    let uri = file_uri(&root.join("inventory/pricing.py"));
    c.open(&uri, "python", "x = 1\n");
    let id = c.send_request("basis/localize", json!({"query": ISSUE}));
    c.wait_progress_begin("Basis: localizing");
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": uri, "version": 2}, "contentChanges": [{"text": "x = 2\n"}]}),
    );
    let r = c.wait_response(id);
    assert_eq!(r["error"]["code"], -32801, "{r}");
    assert!(c.shutdown());
}

#[test]
fn acknowledged_feedback_survives_sigkill() {
    support::default_model();
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("feedback.sqlite3");
    let mut acknowledged: Vec<(String, usize)> = Vec::new();
    for round in 0..8 {
        let mut c = LspClient::start(&[]);
        c.initialize(
            &fixture(),
            &["utf-16"],
            options(&db, json!({"sampling": {"maxTokens": 4}})),
        );
        let r = c.call("basis/localize", json!({"query": ISSUE}));
        let id = r["suggestionId"].as_str().unwrap().to_string();
        // Stream events; flush now and then (each flush acknowledges what came
        // before it); die at a different point each round.
        let die_after = 37 + round * 23;
        let mut acked = 0;
        for i in 0..die_after {
            c.notify(
                "basis/feedback",
                json!({"suggestionId": id, "kind": "shown"}),
            );
            if i % 16 == 15 {
                c.call("basis/feedbackFlush", Value::Null);
                acked = i + 1;
            }
        }
        c.kill();
        acknowledged.push((id, acked));
    }
    let store = basis_feedback::Store::open(&db).unwrap();
    for (id, acked) in &acknowledged {
        assert!(
            store.suggestion(id).unwrap().is_some(),
            "suggestion {id} was acknowledged but is gone"
        );
        let events = store.events(id).unwrap().len();
        assert!(
            events >= *acked,
            "{id}: {acked} events acknowledged, {events} stored"
        );
    }
}

#[test]
fn undone_and_retained_edits_are_recorded_by_the_server() {
    support::default_model();
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("feedback.sqlite3");
    let ws = tempfile::tempdir().unwrap();
    std::fs::write(ws.path().join("a.py"), "x = 1\n").unwrap();
    std::fs::write(
        ws.path().join("totals.py"),
        "def compute_total(items):\n    return sum(items)\n",
    )
    .unwrap();
    let mut c = LspClient::start(&[]);
    c.initialize(
        ws.path(),
        &["utf-16"],
        options(&db, json!({"feedback": {"path": db, "undoWindowSeconds": 30, "retainedAfterMinutes": 0.02}})),
    );
    let uri = file_uri(&ws.path().join("a.py"));
    c.open(&uri, "python", "x = 1\n");
    let undone = c.call("basis/localize", json!({"query": "compute total"}))["suggestionId"]
        .as_str()
        .unwrap()
        .to_string();
    let kept = c.call("basis/localize", json!({"query": "compute total"}))["suggestionId"]
        .as_str()
        .unwrap()
        .to_string();
    // The user accepts two edits; the first is undone at once, the second stays.
    let edit = |c: &mut LspClient, version: i32, text: &str| {
        c.notify(
            "textDocument/didChange",
            json!({"textDocument": {"uri": uri, "version": version}, "contentChanges": [{"text": text}]}),
        );
    };
    edit(&mut c, 2, "x = 1\ndef added():\n    return 2\n");
    c.notify("basis/feedback", json!({"suggestionId": undone, "kind": "accepted", "uri": uri, "text": "def added():\n    return 2\n"}));
    edit(&mut c, 3, "x = 1\n");
    edit(&mut c, 4, "x = 1\ndef kept():\n    return 3\n");
    c.notify("basis/feedback", json!({"suggestionId": kept, "kind": "accepted", "uri": uri, "text": "def kept():\n    return 3\n"}));
    let store = basis_feedback::Store::open(&db).unwrap();
    let start = Instant::now();
    loop {
        c.call("basis/feedbackFlush", Value::Null);
        let kinds = |id: &str| -> Vec<Value> {
            store
                .events(id)
                .unwrap()
                .iter()
                .map(|e| serde_json::to_value(&e.kind).unwrap())
                .collect()
        };
        let (u, k) = (kinds(&undone), kinds(&kept));
        let undone_seen = u
            .iter()
            .any(|e| e["kind"] == "rejected" && e["reason"] == "undone");
        let retained_seen = k
            .iter()
            .any(|e| e["kind"] == "retained" && e["fraction"] == 1.0);
        if undone_seen && retained_seen {
            assert!(!k.iter().any(|e| e["kind"] == "rejected"), "{k:?}");
            break;
        }
        assert!(
            start.elapsed() < support::lsp::TIMEOUT,
            "undone: {u:?}, kept: {k:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(c.shutdown());
}

#[test]
fn a_repeated_request_reuses_the_prompt_and_the_stats_say_so() {
    support::default_model();
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("feedback.sqlite3");
    let mut c = LspClient::start(&[]);
    c.initialize(&fixture(), &["utf-16"], options(&db, json!({})));
    c.wait_indexed();
    let first = c.call("basis/localize", json!({"query": ISSUE}));
    let second = c.call("basis/localize", json!({"query": ISSUE}));
    assert_eq!(first["locations"], second["locations"]);
    let stats = c.call("basis/debug/stats", Value::Null);
    let p = &stats["prefixCache"];
    assert_eq!(p["misses"], 1, "{stats}");
    assert_eq!(p["hits"], 1, "{stats}");
    assert!(p["reusedTokens"].as_u64().unwrap() > 100, "{stats}");
    assert_eq!(p["entries"], 1, "{stats}");
    // A limit of 0 empties it.
    c.notify(
        "workspace/didChangeConfiguration",
        json!({"settings": {"prefixCache": {"maxMegabytes": 0}}}),
    );
    let stats = c.wait_stats(|s| s["prefixCache"]["entries"] == 0);
    assert_eq!(stats["prefixCache"]["bytes"], 0);
    assert!(c.shutdown());
}
