//! A language-server client for end-to-end tests: runs the real `basis lsp` over
//! stdio, frames JSON-RPC, and puts a timeout on every wait. Server-to-client
//! requests are answered with `null` unless a test asks to leave them unanswered.
//! Dropping the client sends shutdown and exit, then kills the server if needed.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};

use std::path::Path;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const TIMEOUT: Duration = Duration::from_secs(120);

pub struct LspClient {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    rx: Receiver<Value>,
    next_id: i64,
    /// Messages read but not yet asked for.
    inbox: VecDeque<Value>,
    /// Answer server requests (`window/workDoneProgress/create`, ...) at once.
    pub answer_server_requests: bool,
    /// The `applied` answer to `workspace/applyEdit`.
    pub apply_edits: bool,
    /// Server requests seen and left unanswered.
    pub unanswered: Vec<Value>,
    stderr: Arc<Mutex<String>>,
    /// Bytes of stdout that were not a well-formed LSP frame.
    garbage: Arc<Mutex<Vec<u8>>>,
}

fn read_frame(r: &mut impl BufRead, garbage: &Mutex<Vec<u8>>) -> Option<Value> {
    let mut len = None;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        match line.strip_prefix("Content-Length: ") {
            Some(n) => len = n.trim().parse::<usize>().ok(),
            None if line.starts_with("Content-Type: ") => {}
            None => garbage.lock().unwrap().extend_from_slice(line.as_bytes()),
        }
    }
    let mut body = vec![0u8; len?];
    r.read_exact(&mut body).ok()?;
    match serde_json::from_slice(&body) {
        Ok(v) => Some(v),
        Err(_) => {
            garbage.lock().unwrap().extend_from_slice(&body);
            Some(Value::Null)
        }
    }
}

impl LspClient {
    /// Starts `basis lsp --test-hooks` with extra environment variables.
    pub fn start(env: &[(&str, &str)]) -> LspClient {
        let mut cmd = super::basis();
        cmd.args(["lsp", "--test-hooks"])
            .env("BASIS_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("basis lsp starts");
        let stdout = child.stdout.take().unwrap();
        let stderr_pipe = child.stderr.take().unwrap();
        let (tx, rx) = channel();
        let garbage = Arc::new(Mutex::new(Vec::new()));
        let g = garbage.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            while let Some(v) = read_frame(&mut r, &g) {
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let s = stderr.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stderr_pipe);
            let mut line = String::new();
            while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                s.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        LspClient {
            stdin: child.stdin.take(),
            child: Some(child),
            rx,
            next_id: 1,
            inbox: VecDeque::new(),
            answer_server_requests: true,
            apply_edits: true,
            unanswered: Vec::new(),
            stderr,
            garbage,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The server's log once it contains `needle`. A line the server wrote
    /// before answering can reach this side after the answer (its own pipe,
    /// its own reader thread), so a test that asserts on the log waits for it;
    /// the harness's timeout guards against a hang. Returns the log as it is
    /// then, whether or not the line came.
    pub fn wait_stderr(&self, needle: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let log = self.stderr();
            if log.contains(needle) || Instant::now() >= deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn garbage(&self) -> Vec<u8> {
        self.garbage.lock().unwrap().clone()
    }

    pub fn send_raw(&mut self, body: &[u8]) {
        if let Err(e) = self.try_send_raw(body) {
            panic!(
                "writing to the server failed ({e}); its stderr:\n{}",
                self.stderr()
            );
        }
    }

    fn try_send_raw(&mut self, body: &[u8]) -> std::io::Result<()> {
        let stdin = self.stdin.as_mut().ok_or(std::io::ErrorKind::BrokenPipe)?;
        write!(stdin, "Content-Length: {}\r\n\r\n", body.len())?;
        stdin.write_all(body)?;
        stdin.flush()
    }

    fn send(&mut self, msg: &Value) {
        self.send_raw(msg.to_string().as_bytes());
    }

    pub fn notify(&mut self, method: &str, params: Value) {
        self.send(&json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// Sends a request and returns its id without waiting.
    pub fn send_request(&mut self, method: &str, params: Value) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        id
    }

    /// The next message from the server, answering server requests on the way.
    fn next_message(&mut self, deadline: Instant) -> Value {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = match self.rx.recv_timeout(left) {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => panic!(
                "timed out waiting for the server; its stderr:\n{}",
                self.stderr()
            ),
            Err(RecvTimeoutError::Disconnected) => {
                panic!("the server closed stdout; its stderr:\n{}", self.stderr())
            }
        };
        let is_server_request = msg.get("method").is_some() && msg.get("id").is_some();
        if is_server_request {
            if self.answer_server_requests {
                let id = msg["id"].clone();
                // An edit is reported as applied (as an editor that applied it
                // would); everything else gets `null`.
                let result = if msg["method"] == "workspace/applyEdit" {
                    json!({"applied": self.apply_edits})
                } else {
                    Value::Null
                };
                self.send(&json!({"jsonrpc": "2.0", "id": id, "result": result}));
            } else {
                self.unanswered.push(msg.clone());
            }
        }
        msg
    }

    /// Waits for the response to request `id` (the whole message: `result` or
    /// `error`), keeping other messages for later.
    pub fn wait_response(&mut self, id: i64) -> Value {
        if let Some(i) = self
            .inbox
            .iter()
            .position(|m| m.get("id") == Some(&json!(id)) && m.get("method").is_none())
        {
            return self.inbox.remove(i).unwrap();
        }
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let msg = self.next_message(deadline);
            if msg.get("id") == Some(&json!(id)) && msg.get("method").is_none() {
                return msg;
            }
            self.inbox.push_back(msg);
        }
    }

    /// Sends a request and waits for its response message.
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.send_request(method, params);
        self.wait_response(id)
    }

    /// Sends a request and returns its `result`, failing on an error response.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let r = self.request(method, params);
        assert!(
            r.get("error").is_none(),
            "{method} failed: {r}\nstderr:\n{}",
            self.stderr()
        );
        r["result"].clone()
    }

    /// Waits for a notification (or server request) with this method that
    /// satisfies `pred`.
    pub fn wait_for(&mut self, method: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self
            .inbox
            .iter()
            .position(|m| m.get("method") == Some(&json!(method)) && pred(m))
        {
            return self.inbox.remove(i).unwrap();
        }
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let msg = self.next_message(deadline);
            if msg.get("method") == Some(&json!(method)) && pred(&msg) {
                return msg;
            }
            self.inbox.push_back(msg);
        }
    }

    /// Every message received so far and not taken.
    /// The messages read while waiting for something else, and only those.
    pub fn take_inbox(&mut self) -> Vec<Value> {
        self.inbox.drain(..).collect()
    }

    pub fn drain(&mut self) -> Vec<Value> {
        while let Ok(m) = self.rx.try_recv() {
            self.inbox.push_back(m);
        }
        self.inbox.drain(..).collect()
    }

    /// `initialize` + `initialized` for a workspace, offering these position
    /// encodings; returns the `initialize` result.
    pub fn initialize(&mut self, root: &Path, encodings: &[&str], options: Value) -> Value {
        let uri = file_uri(root);
        let result = self.call(
            "initialize",
            json!({
                "processId": null,
                "rootUri": uri,
                "workspaceFolders": [{"uri": uri, "name": "ws"}],
                "capabilities": {
                    "general": {"positionEncodings": encodings},
                    "window": {"workDoneProgress": true},
                    "workspace": {"didChangeWatchedFiles": {"dynamicRegistration": true}}
                },
                "initializationOptions": options,
            }),
        );
        self.notify("initialized", json!({}));
        result
    }

    /// Waits for the end of the workspace index build.
    pub fn wait_indexed(&mut self) -> Value {
        self.wait_for("$/progress", |m| {
            m["params"]["token"] == "basis/index" && m["params"]["value"]["kind"] == "end"
        })
    }

    pub fn open(&mut self, uri: &str, language: &str, text: &str) {
        self.notify(
            "textDocument/didOpen",
            json!({"textDocument": {"uri": uri, "languageId": language, "version": 1, "text": text}}),
        );
    }

    /// Polls `basis/debug/stats` until `pred` holds and returns the stats (the
    /// harness's timeout guards against a hang; nothing here measures time).
    pub fn wait_stats(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let stats = self.call("basis/debug/stats", Value::Null);
            if pred(&stats) {
                return stats;
            }
            assert!(
                Instant::now() < deadline,
                "the server's counters never got there: {stats}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the `begin` of a `$/progress` titled `title` that was not seen
    /// before this call: the server's own sign that the work has started.
    pub fn wait_progress_begin(&mut self, title: &str) -> Value {
        let seen: Vec<Value> = self
            .inbox
            .iter()
            .filter(|m| m["method"] == "$/progress")
            .map(|m| m["params"]["token"].clone())
            .collect();
        self.wait_for("$/progress", |m| {
            m["params"]["value"]["kind"] == "begin"
                && m["params"]["value"]["title"] == title
                && !seen.contains(&m["params"]["token"])
        })
    }

    /// Shuts the server down cleanly and returns whether it exited with success.
    pub fn shutdown(mut self) -> bool {
        self.finish()
    }

    /// Shuts the server down and returns, with whether it exited cleanly, every
    /// message it sent that no wait took: after `exit` nothing more can come, so
    /// this is how a test shows that something did *not* happen.
    pub fn shutdown_and_collect(mut self) -> (bool, Vec<Value>) {
        let ok = self.finish();
        let mut rest: Vec<Value> = self.inbox.drain(..).collect();
        while let Ok(m) = self.rx.recv_timeout(Duration::from_secs(5)) {
            rest.push(m);
        }
        (ok, rest)
    }

    fn finish(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        if self.stdin.is_some() {
            let id = self.next_id;
            self.next_id += 1;
            let msg = json!({"jsonrpc": "2.0", "id": id, "method": "shutdown"});
            let _ = self.try_send_raw(msg.to_string().as_bytes());
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                match self.rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(m) if m.get("id") == Some(&json!(id)) && m.get("method").is_none() => break,
                    Ok(m) => self.inbox.push_back(m),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            let _ = self.try_send_raw(
                json!({"jsonrpc": "2.0", "method": "exit"})
                    .to_string()
                    .as_bytes(),
            );
            self.stdin = None;
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server with SIGKILL, without a goodbye.
    pub fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for LspClient {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// A `file://` URI for a path (percent-encoding what needs it).
pub fn file_uri(path: &Path) -> String {
    let mut out = String::from("file://");
    for b in path.to_str().expect("test paths are UTF-8").bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
