//! `basis lsp` over stdio, without the model: the protocol's traps, each with a
//! test. Lifecycle and JSON-RPC errors, document sync under random incremental
//! edits in every position encoding, the panic boundary, cancellation, edits that
//! arrive mid-request, server requests the client never answers, and huge or
//! binary files.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::lsp::{file_uri, LspClient};

fn code(resp: &Value) -> i64 {
    resp["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("expected an error response, got {resp}"))
}

fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("shapes.py"),
        "class Circle:\n    def area(self):\n        return 3.14 * self.r ** 2\n\ndef unit_circle():\n    return Circle()\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("lib.rs"),
        "/// Adds.\npub fn add(a: i32, b: i32) -> i32 { a + b }\nstruct Point { x: f64 }\nimpl Point { fn norm(&self) -> f64 { self.x.abs() } }\n",
    )
    .unwrap();
    dir
}

fn options(dir: &std::path::Path) -> Value {
    // A hidden directory, so that the index does not list the database.
    json!({"feedback": {"path": dir.join(".basis/feedback.sqlite3")}})
}

#[test]
fn lifecycle_and_json_rpc_errors() {
    let ws = workspace();
    let mut c = LspClient::start(&[]);
    // Before initialize: ServerNotInitialized.
    let r = c.request(
        "textDocument/documentSymbol",
        json!({"textDocument": {"uri": "file:///x.py"}}),
    );
    assert_eq!(code(&r), -32002, "{r}");
    c.initialize(ws.path(), &["utf-16"], options(ws.path()));
    // Malformed JSON: a parse error with a null id.
    c.send_raw(b"{this is not json");
    let parse_error = c.wait_for_error_with_null_id();
    assert_eq!(code(&parse_error), -32700, "{parse_error}");
    // Unknown method.
    let r = c.request("basis/noSuchMethod", json!({}));
    assert_eq!(code(&r), -32601, "{r}");
    // Wrong params.
    let r = c.request("textDocument/documentSymbol", json!({"textDocument": 7}));
    assert_eq!(code(&r), -32602, "{r}");
    // A document that is not open.
    let r = c.request(
        "textDocument/documentSymbol",
        json!({"textDocument": {"uri": "file:///nope.py"}}),
    );
    assert_eq!(code(&r), -32602, "{r}");
    // Test hooks are only there with --test-hooks; this server has them.
    let r = c.request("basis/debug/sleep", json!({"ms": 1}));
    assert_eq!(r["result"]["finished"], true, "{r}");
    // After shutdown: InvalidRequest.
    let r = c.request("shutdown", Value::Null);
    assert!(r.get("error").is_none(), "{r}");
    let r = c.request("workspace/symbol", json!({"query": ""}));
    assert_eq!(code(&r), -32600, "{r}");
    assert!(
        c.garbage().is_empty(),
        "non-protocol bytes on stdout: {:?}",
        String::from_utf8_lossy(&c.garbage())
    );
    assert!(c.shutdown());
}

trait NullIdError {
    fn wait_for_error_with_null_id(&mut self) -> Value;
}

impl NullIdError for LspClient {
    fn wait_for_error_with_null_id(&mut self) -> Value {
        // Error responses have no method: find the one with a null id among the
        // messages, with the harness's timeout. A request sent after it is the
        // marker that everything before it was read.
        let marker = self.send_request("basis/debug/stats", Value::Null);
        self.wait_response(marker);
        self.drain()
            .into_iter()
            .find(|m| m["id"].is_null() && m.get("error").is_some())
            .expect("an error response with a null id")
    }
}

/// A tiny deterministic generator (no dependency for it).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// LSP positions computed the way a client does, independently of the server:
/// lines end at "\n", "\r\n" or "\r"; columns count units of the encoding.
fn position_of(text: &[char], idx: usize, enc: &str) -> (usize, usize) {
    let (mut line, mut col) = (0usize, 0usize);
    let mut i = 0;
    while i < idx {
        let c = text[i];
        if c == '\r' && i + 1 < text.len() && text[i + 1] == '\n' && i + 1 < idx {
            line += 1;
            col = 0;
            i += 2;
            continue;
        }
        if c == '\n' || c == '\r' {
            line += 1;
            col = 0;
        } else {
            col += match enc {
                "utf-8" => c.len_utf8(),
                "utf-16" => c.len_utf16(),
                _ => 1,
            };
        }
        i += 1;
    }
    (line, col)
}

/// A char index that LSP can name (not between "\r" and "\n").
fn valid_index(text: &[char], rng: &mut Lcg) -> usize {
    loop {
        let i = rng.below(text.len() + 1);
        if i > 0 && i < text.len() && text[i - 1] == '\r' && text[i] == '\n' {
            continue;
        }
        return i;
    }
}

#[test]
fn a_thousand_random_edits_leave_the_same_text_in_every_encoding() {
    let pieces = [
        "a",
        "é",
        "😀",
        "中文",
        "\r\n",
        "\n",
        "\r",
        "\u{2028}",
        "def f():\n    pass\n",
        "",
        "👩‍👩‍👧",
        "\t",
        "x = '🚀'\r\n",
    ];
    for enc in ["utf-8", "utf-16", "utf-32"] {
        let ws = workspace();
        let mut c = LspClient::start(&[]);
        let init = c.initialize(ws.path(), &[enc], options(ws.path()));
        assert_eq!(init["capabilities"]["positionEncoding"], enc);
        let uri = file_uri(&ws.path().join("edit.py"));
        let mut text: Vec<char> =
            "import os\r\n\nclass A:\n    def m(self):\n        return '😀'\n"
                .chars()
                .collect();
        c.open(&uri, "python", &text.iter().collect::<String>());
        let mut rng = Lcg(0x5eed + enc.len() as u64);
        let mut version = 1;
        let mut edits = 0;
        while edits < 1000 {
            // A message with one to three changes, each applied to the text the
            // previous one left, as the specification says.
            let mut changes = Vec::new();
            for _ in 0..1 + rng.below(3) {
                let a = valid_index(&text, &mut rng);
                let b = valid_index(&text, &mut rng);
                let (start, end) = (a.min(b), a.max(b).min(a.min(b) + 12));
                let end = if end > start
                    && end < text.len()
                    && text[end - 1] == '\r'
                    && text[end] == '\n'
                {
                    end - 1
                } else {
                    end
                };
                let insert = pieces[rng.below(pieces.len())];
                let (sl, sc) = position_of(&text, start, enc);
                let (el, ec) = position_of(&text, end, enc);
                text.splice(start..end, insert.chars());
                changes.push(json!({
                    "range": {"start": {"line": sl, "character": sc}, "end": {"line": el, "character": ec}},
                    "text": insert,
                }));
                edits += 1;
            }
            version += 1;
            c.notify(
                "textDocument/didChange",
                json!({"textDocument": {"uri": uri, "version": version}, "contentChanges": changes}),
            );
            if version % 50 == 0 {
                let r = c.call("basis/debug/documentText", json!({"uri": uri}));
                let expected: String = text.iter().collect();
                assert_eq!(
                    r["text"].as_str().unwrap(),
                    expected,
                    "{enc}: texts differ after {edits} edits"
                );
                assert_eq!(r["version"], version);
                let syms = c.request(
                    "textDocument/documentSymbol",
                    json!({"textDocument": {"uri": uri}}),
                );
                assert!(syms.get("error").is_none(), "{syms}");
            }
        }
        let r = c.call("basis/debug/documentText", json!({"uri": uri}));
        assert_eq!(
            r["text"].as_str().unwrap(),
            text.iter().collect::<String>(),
            "{enc}: final text differs"
        );
        assert!(
            !c.stderr().contains("outside the document"),
            "{enc}: a valid range was clamped:\n{}",
            c.stderr()
        );
        assert!(c.shutdown());
    }
}

#[test]
fn document_symbols_use_the_negotiated_encoding() {
    let ws = workspace();
    // "/* 😀 */ " is 11 UTF-8 bytes, 9 UTF-16 units and 8 code points long.
    for (enc, col) in [("utf-8", 11), ("utf-16", 9), ("utf-32", 8)] {
        let mut c = LspClient::start(&[]);
        c.initialize(ws.path(), &[enc, "utf-16"], options(ws.path()));
        let uri = file_uri(&ws.path().join("e.rs"));
        c.open(&uri, "rust", "const A: i32 = 1;\n/* 😀 */ fn g() {}\n");
        let syms = c.call(
            "textDocument/documentSymbol",
            json!({"textDocument": {"uri": uri}}),
        );
        let g = syms
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "g")
            .expect("g is a symbol");
        assert_eq!(
            g["range"]["start"],
            json!({"line": 1, "character": col}),
            "{enc}"
        );
        assert!(c.shutdown());
    }
}

#[test]
fn a_panicking_handler_answers_with_an_error_and_the_server_lives_on() {
    let ws = workspace();
    let mut c = LspClient::start(&[]);
    c.initialize(ws.path(), &["utf-16"], options(ws.path()));
    let uri = file_uri(&ws.path().join("shapes.py"));
    c.open(
        &uri,
        "python",
        &std::fs::read_to_string(ws.path().join("shapes.py")).unwrap(),
    );
    for _ in 0..3 {
        let r = c.request("basis/debug/panic", Value::Null);
        assert_eq!(code(&r), -32603, "{r}");
        assert!(
            r["error"]["message"]
                .as_str()
                .unwrap()
                .contains("basis/debug/panic was called"),
            "{r}"
        );
        let syms = c.call(
            "textDocument/documentSymbol",
            json!({"textDocument": {"uri": uri}}),
        );
        assert_eq!(syms[0]["name"], "Circle");
    }
    let log = c.wait_stderr("panicked");
    assert!(log.contains("panicked"), "the panic is logged:\n{log}");
    assert!(c.shutdown());
}

#[test]
fn cancel_stops_the_work_and_gets_exactly_one_response() {
    let ws = workspace();
    let mut c = LspClient::start(&[]);
    c.initialize(ws.path(), &["utf-16"], options(ws.path()));
    // An hour of blocking work: it can only end early by seeing the flag.
    let id = c.send_request("basis/debug/sleep", json!({"ms": 3_600_000}));
    c.wait_stats(|s| s["generationsStarted"] == 1);
    c.notify("$/cancelRequest", json!({"id": id}));
    let r = c.wait_response(id);
    assert_eq!(code(&r), -32800, "{r}");
    // The blocking work saw the flag and stopped (it counts as cancelled, not
    // finished).
    let stats = c.wait_stats(|s| s["generationsCancelled"] == 1);
    assert_eq!(stats["generationsFinished"], 0, "{stats}");
    // Cancelling again, or late, produces nothing more, up to the server's exit.
    c.notify("$/cancelRequest", json!({"id": id}));
    let (exited, rest) = c.shutdown_and_collect();
    assert!(exited);
    let dupes: Vec<&Value> = rest
        .iter()
        .filter(|m| m["id"] == id && m.get("method").is_none())
        .collect();
    assert!(dupes.is_empty(), "a second response: {dupes:?}");
}

/// Model runs take turns, two at a time: the others wait, and one cancelled
/// while it waits never starts.
#[test]
fn model_runs_take_turns_and_one_cancelled_while_waiting_never_starts() {
    let ws = workspace();
    let mut c = LspClient::start(&[]);
    c.initialize(ws.path(), &["utf-16"], options(ws.path()));
    let sleep = |c: &mut LspClient| c.send_request("basis/debug/sleep", json!({"ms": 3_600_000}));
    let running = [sleep(&mut c), sleep(&mut c)];
    c.wait_stats(|s| s["generationsStarted"] == 2 && s["modelRuns"] == 2);
    let waiting = [sleep(&mut c), sleep(&mut c)];
    // The last one gives up while it waits.
    c.notify("$/cancelRequest", json!({"id": waiting[1]}));
    assert_eq!(code(&c.wait_response(waiting[1])), -32800);
    // A running one ends: the other waiting one takes its turn.
    c.notify("$/cancelRequest", json!({"id": running[0]}));
    assert_eq!(code(&c.wait_response(running[0])), -32800);
    c.wait_stats(|s| s["generationsStarted"] == 3 && s["modelRuns"] == 2);
    for id in [running[1], waiting[0]] {
        c.notify("$/cancelRequest", json!({"id": id}));
        assert_eq!(code(&c.wait_response(id)), -32800);
    }
    let stats = c.wait_stats(|s| s["generationsCancelled"] == 3 && s["modelRuns"] == 0);
    assert_eq!(stats["generationsStarted"], 3, "{stats}");
    assert_eq!(stats["modelRunsPeak"], 2, "{stats}");
    assert!(c.shutdown());
}

#[test]
fn an_edit_during_a_request_gives_content_modified() {
    let ws = workspace();
    let mut c = LspClient::start(&[]);
    c.initialize(ws.path(), &["utf-16"], options(ws.path()));
    let uri = file_uri(&ws.path().join("shapes.py"));
    c.open(&uri, "python", "x = 1\n");
    // Blocking work that ends when it sees an edit (a generation would go on
    // and then answer the same).
    let id = c.send_request(
        "basis/debug/sleep",
        json!({"ms": 3_600_000, "untilEdited": true}),
    );
    c.wait_stats(|s| s["generationsStarted"] == 1);
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": uri, "version": 2}, "contentChanges": [{"text": "x = 2\n"}]}),
    );
    let r = c.wait_response(id);
    assert_eq!(code(&r), -32801, "{r}");
    // Without an edit the same request succeeds.
    let r = c.call("basis/debug/sleep", json!({"ms": 10}));
    assert_eq!(r["finished"], true);
    // Opening and closing a document change no text: not an edit (an editor
    // opens files whenever it likes, and a request must not fail for it).
    let id = c.send_request("basis/debug/sleep", json!({"ms": 600, "untilEdited": true}));
    c.wait_stats(|s| s["generationsStarted"] == 3);
    let other = file_uri(&ws.path().join("other.py"));
    c.open(&other, "python", "y = 1\n");
    c.notify(
        "textDocument/didClose",
        json!({"textDocument": {"uri": other}}),
    );
    let r = c.wait_response(id);
    assert_eq!(r["result"]["finished"], true, "{r}");
    assert!(c.shutdown());
}

#[test]
fn server_requests_the_client_never_answers_block_nothing() {
    let ws = workspace();
    let mut c = LspClient::start(&[]);
    c.answer_server_requests = false;
    c.initialize(ws.path(), &["utf-16"], options(ws.path()));
    // The index is built even though window/workDoneProgress/create is never
    // answered, and requests keep being served meanwhile.
    let syms = c.call("workspace/symbol", json!({"query": "area"}));
    let names: Vec<&str> = syms
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"area"), "{syms}");
    let uri = file_uri(&ws.path().join("lib.rs"));
    c.open(
        &uri,
        "rust",
        &std::fs::read_to_string(ws.path().join("lib.rs")).unwrap(),
    );
    let syms = c.call(
        "textDocument/documentSymbol",
        json!({"textDocument": {"uri": uri}}),
    );
    assert!(
        syms.as_array().unwrap().iter().any(|s| s["name"] == "add"),
        "{syms}"
    );
    let _ = c.drain();
    assert!(
        c.unanswered
            .iter()
            .any(|m| m["method"] == "window/workDoneProgress/create"),
        "the server asked: {:?}",
        c.unanswered
    );
    assert!(c.shutdown());
}

#[test]
fn the_index_build_reports_progress_and_workspace_symbols_follow_saves() {
    let ws = workspace();
    let mut c = LspClient::start(&[]);
    c.initialize(ws.path(), &["utf-16"], options(ws.path()));
    c.wait_for("$/progress", |m| m["params"]["value"]["kind"] == "begin");
    let end = c.wait_indexed();
    assert!(
        end["params"]["value"]["message"]
            .as_str()
            .unwrap()
            .contains("indexed 2 files"),
        "{end}"
    );
    let syms = c.call("workspace/symbol", json!({"query": "unit_circle"}));
    assert_eq!(syms[0]["name"], "unit_circle");
    assert_eq!(
        syms[0]["location"]["range"]["start"],
        json!({"line": 4, "character": 0})
    );
    // A new file, saved from the editor, is indexed.
    let path = ws.path().join("new_module.py");
    std::fs::write(&path, "def freshly_saved():\n    pass\n").unwrap();
    let uri = file_uri(&path);
    c.open(&uri, "python", "def freshly_saved():\n    pass\n");
    c.notify(
        "textDocument/didSave",
        json!({"textDocument": {"uri": uri}, "text": "def freshly_saved():\n    pass\n"}),
    );
    let syms = c.call("workspace/symbol", json!({"query": "freshly_saved"}));
    assert_eq!(syms.as_array().unwrap().len(), 1, "{syms}");
    // A file deleted on disk disappears after didChangeWatchedFiles.
    std::fs::remove_file(ws.path().join("shapes.py")).unwrap();
    c.notify(
        "workspace/didChangeWatchedFiles",
        json!({"changes": [{"uri": file_uri(&ws.path().join("shapes.py")), "type": 3}]}),
    );
    let syms = c.call("workspace/symbol", json!({"query": "unit_circle"}));
    assert!(syms.as_array().unwrap().is_empty(), "{syms}");
    assert!(c.shutdown());
}

#[test]
fn a_burst_of_queries_around_a_save_is_answered_and_sees_the_save() {
    // Queries wait for the index updates of the saves before them. Those
    // updates once ran in the save's own handler, which sat in tower-lsp's
    // queue behind the waiting queries: a burst like this froze the server.
    let ws = workspace();
    let mut c = LspClient::start(&[]);
    c.initialize(ws.path(), &["utf-16"], options(ws.path()));
    let path = ws.path().join("burst.py");
    std::fs::write(&path, "def saved_in_a_burst():\n    pass\n").unwrap();
    // More queries than tower-lsp's default four slots, fewer than our cap.
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(c.send_request("workspace/symbol", json!({"query": "saved_in_a_burst"})));
    }
    c.notify(
        "textDocument/didSave",
        json!({"textDocument": {"uri": file_uri(&path)}, "text": "def saved_in_a_burst():\n    pass\n"}),
    );
    let after = c.send_request("workspace/symbol", json!({"query": "saved_in_a_burst"}));
    for id in ids {
        let r = c.wait_response(id);
        assert!(r.get("result").is_some(), "{r}");
    }
    let r = c.wait_response(after);
    assert_eq!(r["result"].as_array().map(Vec::len), Some(1), "{r}");
    assert!(c.shutdown());
}

#[test]
fn huge_long_line_and_binary_files_degrade_gracefully() {
    let ws = workspace();
    // 30 MB of Python, a 2 MB single line of JavaScript, and a binary "source" file.
    let mut big = String::with_capacity(31 << 20);
    let mut i = 0;
    while big.len() < 30 << 20 {
        big.push_str(&format!("def f{i}(x):\n    return x + {i}\n"));
        i += 1;
    }
    std::fs::write(ws.path().join("huge.py"), &big).unwrap();
    let long_line = format!("const data = [{}];\n", "1,".repeat(1 << 20));
    std::fs::write(ws.path().join("long.js"), &long_line).unwrap();
    let mut binary = b"fn main() {}\n".to_vec();
    binary.extend((0..4096).map(|i| (i % 256) as u8));
    std::fs::write(ws.path().join("blob.rs"), &binary).unwrap();

    let mut c = LspClient::start(&[]);
    c.initialize(ws.path(), &["utf-16"], options(ws.path()));
    c.wait_indexed();
    let syms = c.call("workspace/symbol", json!({"query": "unit_circle"}));
    assert_eq!(syms[0]["name"], "unit_circle");
    let log = c.wait_stderr("huge.py");
    assert!(
        log.contains("huge.py"),
        "the skipped huge file is logged:\n{log}"
    );
    let log = c.wait_stderr("blob.rs");
    assert!(
        log.contains("blob.rs"),
        "the skipped binary file is logged:\n{log}"
    );

    // Opened in the editor, they still get an answer.
    let uri = file_uri(&ws.path().join("long.js"));
    c.open(&uri, "javascript", &long_line);
    let r = c.request(
        "textDocument/documentSymbol",
        json!({"textDocument": {"uri": uri}}),
    );
    assert!(r.get("error").is_none(), "{r}");
    let uri = file_uri(&ws.path().join("huge.py"));
    c.open(&uri, "python", &big);
    let r = c.request(
        "textDocument/documentSymbol",
        json!({"textDocument": {"uri": uri}}),
    );
    assert!(r.get("error").is_none(), "{r}");
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": uri, "version": 2}, "contentChanges": [{"range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}}, "text": "# hi\n"}]}),
    );
    let r = c.call("basis/debug/stats", Value::Null);
    assert_eq!(r["openDocuments"], 2);
    assert!(c.shutdown());
}

#[test]
fn listen_serves_the_protocol_over_tcp() {
    use std::io::{BufRead, BufReader, Read, Write};
    // Its own BASIS_HOME: without settings the feedback store goes there.
    let home = tempfile::tempdir().unwrap();
    let mut child = support::basis()
        .args(["lsp", "--listen", "127.0.0.1:0"])
        .env("BASIS_LOG", "info")
        .env("BASIS_HOME", home.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The log says which port it got.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let addr = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "the server exited before listening"
        );
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.trim().to_string();
        }
    };
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"processId": null, "rootUri": null, "capabilities": {}}})
    .to_string();
    write!(stream, "Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut len = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some(n) = line.strip_prefix("Content-Length: ") {
            len = n.trim().parse().unwrap();
        }
    }
    let mut buf = vec![0; len];
    reader.read_exact(&mut buf).unwrap();
    let v: Value = serde_json::from_slice(&buf).unwrap();
    assert_eq!(v["result"]["serverInfo"]["name"], "basis", "{v}");
    // Nothing but logs on stdout's side: stdout stays empty in TCP mode.
    let _ = child.kill();
    let _ = child.wait();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(out.is_empty(), "{out}");
}
