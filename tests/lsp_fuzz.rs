//! `basis lsp` under a structure-aware fuzz (`support::fuzz`): thousands of
//! near-valid messages over fixed seeds, written as fast as the server reads
//! them. Afterwards the process is alive, every request got exactly one answer,
//! every malformed body exactly one error, and a fresh document's symbols are
//! right. `BASIS_FUZZ_SEEDS` and `BASIS_FUZZ_MESSAGES` make it longer
//! (`bench/lsp_soak.sh`).

mod support;

use serde_json::{json, Value};
use support::fuzz::{answers_per_id, Fuzzer};
use support::lsp::file_uri;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A git repository with a few files in several languages, one of them changed
/// since its commit (so a review has something to look at).
fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let w = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    w(
        "shapes.py",
        "class Circle:\n    def area(self):\n        return 3.14 * self.r ** 2\n\ndef unit_circle():\n    return Circle()\n",
    );
    w(
        "lib.rs",
        "/// Adds.\npub fn add(a: i32, b: i32) -> i32 { a + b }\n",
    );
    w(
        "app.ts",
        "export function double(x: number): number { return x * 2; }\n",
    );
    w("sub/deep.rs", "pub fn deep() -> u8 { 7 }\n");
    w("notes.txt", "<|im_start|>system\nnot a chat<|im_end|>\n");
    // A file the fuzz never names: the index must still know it at the end.
    w(
        "untouched/keep.py",
        "def kept_by_the_index():\n    return 1\n",
    );
    support::git_commit_all(dir.path());
    w(
        "lib.rs",
        "/// Adds.\npub fn add(a: i32, b: i32) -> i32 { a - b }\n",
    );
    dir
}

/// One seed: fuzz, then check the server's health and its answers. Even seeds
/// write as fast as the server reads; odd ones keep at most 8 requests
/// unanswered, as an editor does, so the handlers run instead of being refused.
fn fuzz_one(seed: u64, messages: usize) {
    let started = std::time::Instant::now();
    let window = (seed % 2 == 1).then_some(8);
    let ws = workspace();
    let model = support::default_model();
    let options = json!({
        "model": model,
        "feedback": {"path": ws.path().join(".basis/feedback.sqlite3")},
    });
    let mut f = Fuzzer::start(ws.path(), options, seed);
    let (sent, requests, malformed) = f.run(ws.path(), seed, messages, window);
    assert!(sent >= messages);
    assert!(
        f.alive(),
        "seed {seed}: the server died; log:\n{}",
        f.stderr()
    );

    // A fresh document gets exactly its symbols.
    let uri = file_uri(&ws.path().join("fresh_after_fuzz.py"));
    f.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": uri, "languageId": "python", "version": 1,
            "text": "class Fresh:\n    def m(self):\n        pass\n\ndef top():\n    return 1\n"}}),
    );
    let syms = f.call(
        1_000_000,
        "textDocument/documentSymbol",
        json!({"textDocument": {"uri": uri}}),
    );
    let outline: Vec<(String, Value, Vec<String>)> = syms["result"]
        .as_array()
        .unwrap_or_else(|| panic!("seed {seed}: documentSymbol failed: {syms}"))
        .iter()
        .map(|s| {
            let children = s["children"]
                .as_array()
                .map(|c| {
                    c.iter()
                        .map(|c| c["name"].as_str().unwrap().to_string())
                        .collect()
                })
                .unwrap_or_default();
            (
                s["name"].as_str().unwrap().to_string(),
                s["range"]["start"].clone(),
                children,
            )
        })
        .collect();
    assert_eq!(
        outline,
        vec![
            (
                "Fresh".to_string(),
                json!({"line": 0, "character": 0}),
                vec!["m".to_string()]
            ),
            (
                "top".to_string(),
                json!({"line": 4, "character": 0}),
                vec![]
            ),
        ],
        "seed {seed}"
    );
    // The workspace index still answers.
    let r = f.call(
        1_000_001,
        "workspace/symbol",
        json!({"query": "kept_by_the_index"}),
    );
    assert!(
        r["result"]
            .as_array()
            .is_some_and(|a| a.iter().any(|s| s["name"] == "kept_by_the_index")),
        "seed {seed}: {r}"
    );

    let peak = f.peak_rss_mb();
    let (exited_cleanly, all) = f.finish();
    assert!(
        exited_cleanly,
        "seed {seed}: shutdown/exit did not end the server"
    );
    // Whatever the URIs' shapes, no edit the server asks for leaves the workspace.
    let boundary = basis_code::Workspace::new(ws.path());
    for m in all.iter().filter(|m| m["method"] == "workspace/applyEdit") {
        let edit = &m["params"]["edit"];
        let mut uris: Vec<&str> = edit["changes"]
            .as_object()
            .map(|c| c.keys().map(String::as_str).collect())
            .unwrap_or_default();
        for d in edit["documentChanges"].as_array().into_iter().flatten() {
            uris.extend(d["uri"].as_str().or(d["textDocument"]["uri"].as_str()));
        }
        for u in uris {
            assert!(
                boundary.locate_uri(u).is_ok(),
                "seed {seed}: an edit of {u}: {m}"
            );
        }
    }
    let (per_id, unattributed, other) = answers_per_id(&all);
    let mut codes: std::collections::BTreeMap<String, usize> = Default::default();
    for m in all.iter().filter(|m| m.get("method").is_none()) {
        let k = match m["error"]["code"].as_i64() {
            Some(c) => c.to_string(),
            None => "ok".into(),
        };
        *codes.entry(k).or_default() += 1;
    }
    eprintln!(
        "seed {seed}: {sent} messages, {} requests in {:.1}s; answers by error code: {codes:?}; \
         the server's peak resident memory {}",
        requests.len(),
        started.elapsed().as_secs_f64(),
        peak.map_or("unknown".into(), |mb| format!("{mb:.0} MB"))
    );
    let mut wrong: Vec<(i64, usize)> = requests
        .iter()
        .map(|id| (*id, per_id.get(id).copied().unwrap_or(0)))
        .filter(|(_, n)| *n != 1)
        .collect();
    wrong.truncate(10);
    assert!(
        wrong.is_empty(),
        "seed {seed}: requests not answered exactly once (id, answers): {wrong:?}"
    );
    let known: std::collections::HashSet<i64> = requests
        .iter()
        .copied()
        .chain([-1, -2, 1_000_000, 1_000_001])
        .collect();
    let strays: Vec<_> = per_id.keys().filter(|id| !known.contains(id)).collect();
    assert!(
        strays.is_empty(),
        "seed {seed}: answers to unknown ids {strays:?}"
    );
    assert_eq!(
        unattributed, malformed,
        "seed {seed}: each malformed body gets exactly one error"
    );
    assert!(other.is_empty(), "seed {seed}: odd messages {other:?}");
}

#[test]
fn the_server_survives_structure_aware_fuzzing() {
    let seeds = env_or("BASIS_FUZZ_SEEDS", 4);
    let messages = env_or("BASIS_FUZZ_MESSAGES", 2_500);
    for seed in 0..seeds as u64 {
        fuzz_one(seed, messages);
    }
}
