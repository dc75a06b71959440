//! Benchmark of the server's responsiveness: `textDocument/documentSymbol` latency
//! (after an edit, so each one reparses) while idle and while a generation runs
//! (`basis/localize` with a long answer). Drives the real `basis lsp` over stdio;
//! prints one JSON object on stdout.
//!
//! Usage: bench_lsp BASIS_BINARY REPO FILE_IN_REPO [SAMPLES]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

struct Client {
    stdin: ChildStdin,
    rx: Receiver<Value>,
    next_id: i64,
}

impl Client {
    fn send(&mut self, v: &Value) {
        let body = v.to_string();
        write!(self.stdin, "Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
        self.stdin.flush().unwrap();
    }

    fn request(&mut self, method: &str, params: Value) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        id
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(&json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// Waits for a message matching `pred`, answering server requests; the
    /// responses to other ids seen on the way are returned too.
    fn wait(&mut self, pred: impl Fn(&Value) -> bool, seen: &mut Vec<Value>) -> Value {
        loop {
            let m = self
                .rx
                .recv_timeout(Duration::from_secs(300))
                .expect("the server answers");
            if m.get("method").is_some() && m.get("id").is_some() {
                let id = m["id"].clone();
                self.send(&json!({"jsonrpc": "2.0", "id": id, "result": null}));
            }
            if pred(&m) {
                return m;
            }
            seen.push(m);
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn uri(path: &std::path::Path) -> String {
    format!("file://{}", path.display())
}

#[allow(clippy::print_stdout, clippy::disallowed_methods)] // A benchmark driver: runs the binary, prints its result.
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, bin, repo, file, rest @ ..] = &args[..] else {
        panic!("usage: bench_lsp BASIS_BINARY REPO FILE_IN_REPO [SAMPLES]");
    };
    let samples: usize = rest.first().map(|s| s.parse().unwrap()).unwrap_or(200);
    let repo = std::fs::canonicalize(repo).unwrap();
    let file = repo.join(file);
    let text = std::fs::read_to_string(&file).unwrap();
    let db = std::env::temp_dir().join(format!("basis-bench-lsp-{}.sqlite3", std::process::id()));
    let mut child = Command::new(bin)
        .arg("lsp")
        .env("BASIS_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        loop {
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                if line == "\r\n" {
                    break;
                }
                if let Some(n) = line.strip_prefix("Content-Length: ") {
                    len = n.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            if tx.send(serde_json::from_slice(&body).unwrap()).is_err() {
                return;
            }
        }
    });
    let mut c = Client {
        stdin: child.stdin.take().unwrap(),
        rx,
        next_id: 1,
    };
    let mut seen = Vec::new();
    let id = c.request(
        "initialize",
        json!({
            "processId": null, "rootUri": uri(&repo),
            "capabilities": {"window": {"workDoneProgress": true}},
            "initializationOptions": {"feedback": {"path": db}, "sampling": {"maxTokens": 100000, "temperature": 1.0}, "localize": {"useModel": "always"}},
        }),
    );
    c.wait(|m| m["id"] == id, &mut seen);
    c.notify("initialized", json!({}));
    c.wait(
        |m| m["method"] == "$/progress" && m["params"]["value"]["kind"] == "end",
        &mut seen,
    );
    let doc = uri(&file);
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": doc, "languageId": "python", "version": 1, "text": text}}),
    );
    let mut version = 1;
    // One edit + documentSymbol round trip, in milliseconds.
    let mut round_trip = |c: &mut Client, seen: &mut Vec<Value>| -> f64 {
        version += 1;
        let start = Instant::now();
        c.notify(
            "textDocument/didChange",
            json!({"textDocument": {"uri": doc, "version": version},
                   "contentChanges": [{"range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}}, "text": "#\n"}]}),
        );
        let id = c.request(
            "textDocument/documentSymbol",
            json!({"textDocument": {"uri": doc}}),
        );
        let r = c.wait(|m| m["id"] == id && m.get("method").is_none(), seen);
        assert!(r.get("error").is_none(), "{r}");
        start.elapsed().as_secs_f64() * 1000.0
    };
    // Warm up (the first parse is a full one), then measure idle.
    round_trip(&mut c, &mut seen);
    let mut idle: Vec<f64> = (0..samples)
        .map(|_| round_trip(&mut c, &mut seen))
        .collect();
    // Load the model, then measure while a long generation runs.
    let warm = c.request("basis/localize", json!({"query": "warm up the model"}));
    c.notify("$/cancelRequest", json!({"id": warm}));
    c.wait(|m| m["id"] == warm && m.get("method").is_none(), &mut seen);
    let gen = c.request(
        "basis/localize",
        json!({"query": "queryset filtering returns duplicate rows when joining"}),
    );
    std::thread::sleep(Duration::from_millis(2000));
    let mut busy = Vec::new();
    for _ in 0..samples {
        busy.push(round_trip(&mut c, &mut seen));
        std::thread::sleep(Duration::from_millis(20));
    }
    let gen_still_running = !seen.iter().any(|m| m["id"] == gen);
    c.notify("$/cancelRequest", json!({"id": gen}));
    let _ = c.wait(|m| m["id"] == gen && m.get("method").is_none(), &mut seen);
    let stats = c.request("basis/debug/stats", Value::Null);
    let stats = c.wait(|m| m["id"] == stats, &mut seen);
    let shutdown = c.request("shutdown", Value::Null);
    c.wait(|m| m["id"] == shutdown, &mut seen);
    c.notify("exit", Value::Null);
    let _ = child.wait();
    let _ = std::fs::remove_file(&db);
    idle.sort_by(f64::total_cmp);
    busy.sort_by(f64::total_cmp);
    let result = json!({
        "file": file.display().to_string(),
        "file_bytes": text.len(),
        "samples": samples,
        "idle_p50_ms": percentile(&idle, 0.5),
        "idle_p99_ms": percentile(&idle, 0.99),
        "generating_p50_ms": percentile(&busy, 0.5),
        "generating_p99_ms": percentile(&busy, 0.99),
        "generation_ran_throughout": gen_still_running,
        "server_stats": stats["result"],
    });
    println!("{result}");
}
