//! Edit, testgen, reproduce and review in the language server, end to end with the
//! real default model on copies of the fixture repositories: code actions, the
//! commands, the `workspace/applyEdit` that follows, the sandbox run and its
//! report, review diagnostics on the changed hunks of unsaved buffers, and the
//! feedback records of each (with what the client did with the edit).

mod support;

use std::path::PathBuf;

use serde_json::{json, Value};
use support::lsp::{file_uri, LspClient};

struct Session {
    c: LspClient,
    root: PathBuf,
    db: PathBuf,
    _tmp: tempfile::TempDir,
}

fn session(name: &str) -> Session {
    support::default_model();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join(name);
    support::copy_dir(&support::fixture(name), &root);
    support::git_commit_all(&root);
    let db = tmp.path().join("feedback.sqlite3");
    let mut c = LspClient::start(&[]);
    let init = c.initialize(&root, &["utf-16"], json!({"feedback": {"path": db}}));
    let commands = init["capabilities"]["executeCommandProvider"]["commands"].to_string();
    for cmd in [
        "basis.edit",
        "basis.testgen",
        "basis.reproduce",
        "basis.review",
        "basis.reviewFeedback",
        "basis.accept",
        "basis.reject",
    ] {
        assert!(commands.contains(cmd), "{cmd} in {commands}");
    }
    assert!(
        init["capabilities"]["codeActionProvider"].is_object(),
        "{init}"
    );
    c.wait_indexed();
    Session {
        c,
        root,
        db,
        _tmp: tmp,
    }
}

impl Session {
    fn open(&mut self, rel: &str) -> (String, String) {
        let text = std::fs::read_to_string(self.root.join(rel)).unwrap();
        let uri = file_uri(&self.root.join(rel));
        self.c.open(&uri, "python", &text);
        (uri, text)
    }

    fn feedback(&mut self) -> Vec<Value> {
        self.c.call("basis/feedbackFlush", Value::Null);
        let out = support::run(&["feedback", "--db", self.db.to_str().unwrap(), "export"]);
        assert!(out.status.success(), "{}", support::stderr(&out));
        support::stdout(&out)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn exec(&mut self, command: &str, args: Value) -> Value {
        self.c.request(
            "workspace/executeCommand",
            json!({"command": command, "arguments": [args]}),
        )
    }
}

/// The result of a skill command, or `None` when the model's answer held no code
/// (the one error a well-formed request may get from the small model; it is
/// recorded, as the tests of the CLI check).
fn answered(r: &Value) -> Option<&Value> {
    match r.get("error") {
        Some(e) => {
            let m = e["message"].as_str().unwrap_or_default();
            assert!(
                m.contains("held no code") || m.contains("held no test code"),
                "{r}"
            );
            None
        }
        None => Some(&r["result"]),
    }
}

fn record<'a>(records: &'a [Value], id: &str) -> &'a Value {
    records
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("suggestion {id} is stored: {records:?}"))
}

/// Waits until the feedback store shows `kind` for suggestion `id`.
fn wait_event(s: &mut Session, id: &str, kind: &str) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let records = s.feedback();
        let r = record(&records, id).clone();
        if support::event_kinds(&r).iter().any(|k| k == kind) {
            return r;
        }
        assert!(std::time::Instant::now() < deadline, "no {kind} event: {r}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn code_actions_offer_edit_on_a_selection_and_tests_inside_a_function() {
    let mut s = session("py_shop");
    let (uri, _) = s.open("shop/pricing.py");
    let actions = s.c.call(
        "textDocument/codeAction",
        json!({"textDocument": {"uri": uri}, "range": {"start": {"line": 24, "character": 4}, "end": {"line": 25, "character": 27}}, "context": {"diagnostics": []}}),
    );
    let titles: Vec<&str> = actions
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        ["Basis: edit…", "Basis: generate tests for `bulk_price`"],
        "{actions}"
    );
    let edit = &actions[0]["command"];
    assert_eq!(edit["command"], "basis.edit");
    assert_eq!(edit["arguments"][0]["range"]["start"]["line"], 24);
    // At the top of the file, outside any function, with no selection: nothing.
    let none = s.c.call(
        "textDocument/codeAction",
        json!({"textDocument": {"uri": uri}, "range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}}, "context": {"diagnostics": []}}),
    );
    assert_eq!(none, json!([]));
    assert!(s.c.shutdown());
}

#[test]
fn edit_command_answers_with_an_edit_applies_it_and_records_the_acceptance() {
    let mut s = session("py_shop");
    let (uri, _) = s.open("shop/pricing.py");
    let range = json!({"start": {"line": 24, "character": 0}, "end": {"line": 26, "character": 0}});
    let r = s.exec(
        "basis.edit",
        json!({"uri": uri, "range": range, "instruction": "give the discount from BULK_QUANTITY items on"}),
    );
    let Some(result) = answered(&r) else {
        return;
    };
    let id = result["suggestionId"].as_str().unwrap().to_string();
    assert_eq!(result["modelVersion"], "base");
    let edits = &result["edit"]["changes"][&uri];
    assert_eq!(edits[0]["range"], range, "{result}");
    let apply = s.c.wait_for("workspace/applyEdit", |_| true);
    assert_eq!(apply["params"]["edit"], result["edit"]);
    assert_eq!(apply["params"]["label"], "Basis: edit");
    let rec = wait_event(&mut s, &id, "accepted");
    assert_eq!(rec["skill"], "edit");
    assert_eq!(rec["file"], "shop/pricing.py");
    assert!(rec["logprob_sum"].as_f64().unwrap() < 0.0);

    // Bad input gets clear errors and the server keeps serving.
    let no_instruction = s.exec("basis.edit", json!({"uri": uri, "range": range}));
    assert_eq!(no_instruction["error"]["code"], -32602, "{no_instruction}");
    let far = json!({"start": {"line": 500, "character": 0}, "end": {"line": 501, "character": 0}});
    let bad = s.exec(
        "basis.edit",
        json!({"uri": uri, "range": far, "instruction": "x"}),
    );
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
    let outside = s.exec(
        "basis.edit",
        json!({"uri": "file:///etc/passwd", "range": range, "instruction": "x"}),
    );
    assert!(
        outside["error"]["message"]
            .as_str()
            .unwrap()
            .contains("outside the workspace"),
        "{outside}"
    );
    assert!(s.c.shutdown());
}

#[test]
fn a_previewed_edit_waits_for_the_client_to_accept_or_reject_it() {
    let mut s = session("py_shop");
    let (uri, _) = s.open("shop/pricing.py");
    let range = json!({"start": {"line": 24, "character": 0}, "end": {"line": 26, "character": 0}});
    let args = json!({"uri": uri, "range": range, "preview": true,
        "instruction": "give the discount from BULK_QUANTITY items on"});
    let r = s.exec("basis.edit", args.clone());
    let Some(result) = answered(&r) else {
        return;
    };
    let rejected = result["suggestionId"].as_str().unwrap().to_string();
    assert!(result["edit"]["changes"][&uri].is_array(), "{result}");
    // Nothing is sent to apply while the client shows the preview.
    s.feedback();
    assert!(
        s.c.drain()
            .iter()
            .all(|m| m["method"] != "workspace/applyEdit"),
        "a previewed edit is not sent before it is accepted"
    );
    let no = s.exec("basis.reject", json!({"suggestionId": rejected}));
    assert_eq!(no["result"]["suggestionId"], rejected.as_str(), "{no}");
    let rec = wait_event(&mut s, &rejected, "rejected");
    assert!(rec.to_string().contains("dismissed"), "{rec}");
    // Answered once: a second answer, or one for no preview, is a clear error.
    for cmd in ["basis.reject", "basis.accept"] {
        let again = s.exec(cmd, json!({"suggestionId": rejected}));
        assert_eq!(again["error"]["code"], -32602, "{again}");
        assert!(again.to_string().contains("no previewed edit"), "{again}");
    }

    let r = s.exec("basis.edit", args);
    let accepted = answered(&r).unwrap()["suggestionId"]
        .as_str()
        .unwrap()
        .to_string();
    let yes = s.exec("basis.accept", json!({"suggestionId": accepted}));
    let apply = s.c.wait_for("workspace/applyEdit", |_| true);
    assert_eq!(apply["params"]["edit"], yes["result"]["edit"]);
    let rec = wait_event(&mut s, &accepted, "accepted");
    assert!(!support::event_kinds(&rec).contains(&"rejected".to_string()));
    assert!(s.c.shutdown());
}

#[test]
fn an_edit_streams_its_replacement_line_by_line_before_the_answer() {
    let mut s = session("py_shop");
    let (uri, _) = s.open("shop/pricing.py");
    let range = json!({"start": {"line": 21, "character": 0}, "end": {"line": 27, "character": 0}});
    let r = s.exec(
        "basis.edit",
        json!({"uri": uri, "range": range, "partialToken": "p1",
            "instruction": "give the discount from BULK_QUANTITY items on"}),
    );
    let partials = |msgs: &[Value]| -> Vec<String> {
        msgs.iter()
            .filter(|m| m["method"] == "basis/partial")
            .map(|m| {
                assert_eq!(m["params"]["token"], "p1", "{m}");
                m["params"]["value"]["replacement"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    let before = partials(&s.c.take_inbox());
    let Some(result) = answered(&r) else {
        return;
    };
    let fin = result["replacement"].as_str().unwrap();
    s.feedback();
    assert!(
        partials(&s.c.drain()).is_empty(),
        "a partial after the answer"
    );
    // One per completed line, each the one before and a line more, all lines
    // of the final replacement (the model may end mid-line; that part comes
    // only with the answer).
    eprintln!("{} partials before the answer {fin:?}", before.len());
    assert!(!before.is_empty(), "no partial before the answer {fin:?}");
    let final_lines: Vec<&str> = fin.lines().collect();
    for (i, p) in before.iter().enumerate() {
        assert!(p.ends_with('\n'), "{p:?}");
        let lines: Vec<&str> = p.lines().collect();
        assert!(
            lines.len() <= final_lines.len() && lines[..] == final_lines[..lines.len()],
            "partial {i} {p:?} is not the start of {fin:?}"
        );
        if i > 0 {
            assert!(lines.len() > before[i - 1].lines().count(), "{before:?}");
        }
    }
    // Without a token nothing is streamed.
    let r = s.exec(
        "basis.edit",
        json!({"uri": uri, "range": range, "instruction": "give the discount from BULK_QUANTITY items on"}),
    );
    assert!(partials(&s.c.take_inbox()).is_empty(), "{r}");
    assert!(s.c.shutdown());
}

#[test]
fn a_rejected_edit_is_recorded_as_rejected() {
    let mut s = session("py_shop");
    s.c.apply_edits = false;
    let (uri, _) = s.open("shop/cart.py");
    let range = json!({"start": {"line": 16, "character": 0}, "end": {"line": 18, "character": 0}});
    let r = s.exec("basis.edit", json!({"uri": uri, "range": range, "instruction": "return the total as an integer number of cents"}));
    let Some(result) = answered(&r) else {
        return;
    };
    let id = result["suggestionId"].as_str().unwrap().to_string();
    s.c.wait_for("workspace/applyEdit", |_| true);
    let rec = wait_event(&mut s, &id, "rejected");
    assert!(!support::event_kinds(&rec).contains(&"accepted".to_string()));
    assert!(s.c.shutdown());
}

#[test]
fn testgen_command_writes_tests_then_runs_them_in_the_sandbox() {
    let mut s = session("py_shop");
    let (uri, _) = s.open("shop/pricing.py");
    let r = s.exec(
        "basis.testgen",
        json!({"uri": uri, "position": {"line": 14, "character": 8}}),
    );
    let Some(result) = answered(&r) else {
        return;
    };
    let id = result["suggestionId"].as_str().unwrap().to_string();
    let test_uri = file_uri(&s.root.join("tests/test_shop_pricing.py"));
    assert_eq!(result["testFile"], test_uri);
    // A new file: created, then filled.
    let ops = &result["edit"]["documentChanges"];
    assert_eq!(ops[0]["kind"], "create", "{result}");
    assert_eq!(ops[1]["textDocument"]["uri"], test_uri);
    s.c.wait_for("workspace/applyEdit", |_| true);
    let shown = s.c.wait_for("window/showMessage", |m| {
        m["params"]["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("Basis: ")
    });
    let message = shown["params"]["message"].as_str().unwrap();
    assert!(
        message.contains("tests passed")
            || message.contains("tests failed")
            || message.contains("timed out"),
        "{message}"
    );
    // Failing tests are also errors on their lines in the test file.
    let published = s.c.wait_for("textDocument/publishDiagnostics", |m| {
        m["params"]["uri"] == test_uri
    });
    let diags = published["params"]["diagnostics"].as_array().unwrap();
    if message.contains("tests passed") {
        assert!(diags.is_empty(), "{published}");
    }
    for d in diags {
        assert_eq!(d["severity"], 1, "{d}");
        assert_eq!(d["source"], "basis");
        assert!(d["message"].as_str().unwrap().contains("failed"), "{d}");
    }
    let rec = wait_event(&mut s, &id, "executed");
    let executed = rec["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "executed")
        .unwrap();
    assert_eq!(
        executed["passed"].as_bool().unwrap(),
        message.contains("tests passed"),
        "{rec}"
    );
    assert!(support::event_kinds(&rec).contains(&"accepted".to_string()));
    // The user's tree was not touched by the run (the client owns the file).
    assert!(!s.root.join("tests/test_shop_pricing.py").exists());
    // No function at the position: a clear error.
    let none = s.exec(
        "basis.testgen",
        json!({"uri": uri, "position": {"line": 0, "character": 0}}),
    );
    assert!(
        none["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no function"),
        "{none}"
    );
    assert!(s.c.shutdown());
}

/// The prompts of testgen and edit hold, from the workspace index, the code of
/// other files that calls the function (testgen) or that the code uses (edit).
#[test]
fn testgen_and_edit_prompts_hold_callers_and_callees_from_other_files() {
    let mut s = session("py_shop");
    let (pricing, _) = s.open("shop/pricing.py");
    // `bulk_price`, called by `Cart.total` in shop/cart.py.
    s.exec(
        "basis.testgen",
        json!({"uri": pricing, "position": {"line": 23, "character": 8}, "preview": true}),
    );
    let (cart, _) = s.open("shop/cart.py");
    // `Cart.total`'s return, which calls `bulk_price` of shop/pricing.py.
    let range = json!({"start": {"line": 17, "character": 0}, "end": {"line": 18, "character": 0}});
    s.exec(
        "basis.edit",
        json!({"uri": cart, "range": range, "instruction": "round to whole cents", "preview": true}),
    );
    let records = s.feedback();
    let prompt = |skill: &str| -> String {
        let r = records
            .iter()
            .find(|r| r["skill"] == skill)
            .unwrap_or_else(|| panic!("a {skill} suggestion is stored: {records:?}"));
        r["prompt"].as_str().unwrap().to_string()
    };
    let testgen = prompt("testgen");
    assert!(
        testgen.contains("From other files")
            && testgen.contains("# shop/cart.py\n    def total(self):"),
        "{testgen}"
    );
    let edit = prompt("edit");
    assert!(
        edit.contains("Definitions it uses:")
            && edit.contains("# shop/pricing.py\ndef bulk_price("),
        "{edit}"
    );
    assert!(s.c.shutdown());
}

#[test]
fn reproduce_command_runs_the_test_and_says_whether_it_reproduces() {
    let mut s = session("py_shop");
    let r = s.exec(
        "basis.reproduce",
        json!("Buying exactly 10 items should get the 10% bulk discount, but bulk_price(2.0, 10) returns 20.0 instead of 18.0"),
    );
    let Some(result) = answered(&r) else {
        return;
    };
    let id = result["suggestionId"].as_str().unwrap().to_string();
    assert_eq!(
        result["testFile"],
        file_uri(&s.root.join("tests/test_basis_reproduction.py"))
    );
    let reproduced = result["reproduced"].as_bool().unwrap();
    assert_eq!(
        reproduced,
        result["verdict"]["result"] == "failed",
        "{result}"
    );
    let message = result["message"].as_str().unwrap();
    assert!(
        message.starts_with("reproduces") || message.starts_with("does not reproduce"),
        "{message}"
    );
    s.c.wait_for("workspace/applyEdit", |m| {
        m["params"]["edit"]["documentChanges"][0]["kind"] == "create"
    });
    let rec = wait_event(&mut s, &id, "executed");
    assert_eq!(rec["skill"], "reproduce");
    let empty = s.exec("basis.reproduce", json!({"issue": "  "}));
    assert_eq!(empty["error"]["code"], -32602);
    assert!(s.c.shutdown());
}

#[test]
fn review_command_reviews_unsaved_changes_against_head() {
    let mut s = session("py_shop");
    // Nothing changed yet.
    let r = s.exec("basis.review", Value::Null);
    assert!(
        r["result"]["message"]
            .as_str()
            .unwrap()
            .contains("nothing changed"),
        "{r}"
    );
    // An unsaved change in the editor is what gets reviewed.
    let (uri, text) = s.open("shop/pricing.py");
    let changed = text.replace("quantity > BULK_QUANTITY", "quantity >= BULK_QUANTITY");
    s.c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": uri, "version": 2}, "contentChanges": [{"text": changed}]}),
    );
    let r = s.exec(
        "basis.review",
        json!({"intent": "Give the bulk discount from ten items on"}),
    );
    let result = &r["result"];
    let verdict = result["verdict"].as_str().unwrap_or_else(|| panic!("{r}"));
    assert!(verdict == "YES" || verdict == "NO");
    let id = result["suggestionId"].as_str().unwrap().to_string();
    let shown = s.c.wait_for("window/showMessage", |m| {
        m["params"]["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("Basis review:")
    });
    assert!(shown["params"]["message"]
        .as_str()
        .unwrap()
        .contains(verdict));
    let comments = result["comments"].as_array().unwrap();
    if !comments.is_empty() {
        // Comments are diagnostics on the changed line (line 25, 0-based 24).
        let published = s.c.wait_for("textDocument/publishDiagnostics", |m| {
            m["params"]["uri"] == uri
        });
        let diags = published["params"]["diagnostics"].as_array().unwrap();
        assert!(
            diags
                .iter()
                .all(|d| d["source"] == "basis" && d["range"]["start"]["line"] == 24),
            "{published}"
        );
        // Dismissing one records it and takes it away.
        let d = &diags[0];
        let actions = s.c.call(
            "textDocument/codeAction",
            json!({"textDocument": {"uri": uri}, "range": d["range"], "context": {"diagnostics": [d]}}),
        );
        let dismiss = actions
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["title"] == "Basis: dismiss this comment")
            .unwrap_or_else(|| panic!("{actions}"));
        let cmd = &dismiss["command"];
        s.c.call(
            "workspace/executeCommand",
            json!({"command": cmd["command"], "arguments": cmd["arguments"]}),
        );
        let again = s.c.wait_for("textDocument/publishDiagnostics", |m| {
            m["params"]["uri"] == uri
        });
        assert_eq!(
            again["params"]["diagnostics"].as_array().unwrap().len(),
            diags.len() - 1
        );
        wait_event(&mut s, &id, "rejected");
    }
    let records = s.feedback();
    assert_eq!(record(&records, &id)["skill"], "review");
    let bad = s.exec("basis.review", json!({"base": "no-such-rev"}));
    assert!(
        bad["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no-such-rev"),
        "{bad}"
    );
    assert!(s.c.shutdown());
}

#[test]
fn a_skill_shows_progress_and_stops_when_its_progress_is_cancelled() {
    let mut s = session("py_shop");
    let (uri, _) = s.open("shop/pricing.py");
    let id = s.c.send_request(
        "workspace/executeCommand",
        json!({"command": "basis.testgen", "arguments": [{"uri": uri, "position": {"line": 14, "character": 8}}]}),
    );
    let begin = s.c.wait_for("$/progress", |m| {
        m["params"]["value"]["kind"] == "begin"
            && m["params"]["value"]["title"] == "Basis: writing tests"
    });
    assert_eq!(begin["params"]["value"]["cancellable"], true);
    let token = begin["params"]["token"].clone();
    s.c.notify("window/workDoneProgress/cancel", json!({"token": token}));
    let r = s.c.wait_response(id);
    assert_eq!(r["error"]["code"], -32800, "cancelled: {r}");
    let end = s.c.wait_for("$/progress", |m| {
        m["params"]["token"] == token && m["params"]["value"]["kind"] == "end"
    });
    assert_eq!(end["params"]["value"]["message"], "cancelled");
    let stats = s.c.call("basis/debug/stats", Value::Null);
    assert_eq!(stats["generationsCancelled"], 1, "{stats}");
    // Nothing was suggested, so nothing was recorded.
    assert!(s.feedback().is_empty());
    // Cancelling the request itself works the same way.
    let id = s.c.send_request(
        "workspace/executeCommand",
        json!({"command": "basis.testgen", "arguments": [{"uri": uri, "position": {"line": 14, "character": 8}}]}),
    );
    s.c.wait_for("$/progress", |m| {
        m["params"]["value"]["kind"] == "begin" && m["params"]["token"] != token
    });
    s.c.notify("$/cancelRequest", json!({"id": id}));
    let r = s.c.wait_response(id);
    assert_eq!(r["error"]["code"], -32800, "cancelled: {r}");
    assert!(s.c.shutdown());
}

#[test]
fn review_on_save_when_enabled() {
    let mut s = session("py_shop");
    s.c.notify(
        "workspace/didChangeConfiguration",
        json!({"settings": {"review": {"onSave": true}}}),
    );
    let (uri, text) = s.open("shop/pricing.py");
    let changed = text.replace("quantity > BULK_QUANTITY", "quantity >= BULK_QUANTITY");
    std::fs::write(s.root.join("shop/pricing.py"), &changed).unwrap();
    s.c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": uri, "version": 2}, "contentChanges": [{"text": changed}]}),
    );
    s.c.notify(
        "textDocument/didSave",
        json!({"textDocument": {"uri": uri}, "text": changed}),
    );
    let shown = s.c.wait_for("window/showMessage", |m| {
        m["params"]["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("Basis review:")
    });
    let message = shown["params"]["message"].as_str().unwrap();
    assert!(
        message.contains("YES") || message.contains("NO"),
        "{message}"
    );
    let records = s.feedback();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["skill"], "review");
    assert!(s.c.shutdown());
}

#[test]
fn rust_tests_go_into_the_files_tests_module_and_run_with_cargo() {
    let mut s = session("rust_ledger");
    let rel = "src/lib.rs";
    let text = std::fs::read_to_string(s.root.join(rel)).unwrap();
    let uri = file_uri(&s.root.join(rel));
    s.c.open(&uri, "rust", &text);
    // Inside `fee` (line 15, 0-based 14).
    let actions = s.c.call(
        "textDocument/codeAction",
        json!({"textDocument": {"uri": uri}, "range": {"start": {"line": 15, "character": 4}, "end": {"line": 15, "character": 4}}, "context": {"diagnostics": []}}),
    );
    assert_eq!(
        actions[0]["title"], "Basis: generate tests for `fee`",
        "{actions}"
    );
    let cmd = &actions[0]["command"];
    let r = s.c.request(
        "workspace/executeCommand",
        json!({"command": cmd["command"], "arguments": cmd["arguments"]}),
    );
    let Some(result) = answered(&r) else {
        return;
    };
    assert_eq!(
        result["testFile"], uri,
        "Rust tests live in the file itself"
    );
    // An insertion into the existing file, inside its `mod tests` (before the
    // module's closing brace on the last line).
    let edit = &result["edit"]["changes"][&uri][0];
    let last_line = text.lines().count() as u64 - 1;
    assert_eq!(edit["range"]["start"], edit["range"]["end"], "{edit}");
    assert_eq!(edit["range"]["start"]["line"], last_line, "{edit}");
    s.c.wait_for("workspace/applyEdit", |_| true);
    let shown = s.c.wait_for("window/showMessage", |m| {
        m["params"]["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("Basis: ")
    });
    let message = shown["params"]["message"].as_str().unwrap();
    assert!(
        message.contains("cargo test --offline"),
        "the Rust runner ran: {message}"
    );
    let id = result["suggestionId"].as_str().unwrap().to_string();
    let rec = wait_event(&mut s, &id, "executed");
    assert_eq!(rec["language"], "rust");
    assert!(s.c.shutdown());
}
