//! Benchmark of the workspace index on a real repository: build time and files/s
//! (best of N), and retrieval latency (p50/p95) over queries made from the
//! repository's own docstrings, with how often the docstring's file comes first
//! (over all of them, and over those outside test files: search discounts test
//! files, which a fix rarely changes). Prints one JSON object on stdout.
//!
//! Usage: bench_index REPO [RUNS]

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use basis_code::{Limits, WorkspaceIndex};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[allow(clippy::print_stdout)] // The benchmark's result is its output.
fn main() {
    let mut args = std::env::args().skip(1);
    let repo = PathBuf::from(args.next().expect("usage: bench_index REPO [RUNS]"));
    let runs: usize = args
        .next()
        .map(|r| r.parse().expect("RUNS is a number"))
        .unwrap_or(3);
    let never = AtomicBool::new(false);
    let mut best = f64::MAX;
    let mut index = None;
    for _ in 0..runs {
        let start = Instant::now();
        let idx = WorkspaceIndex::build(repo.clone(), Limits::default(), &mut |_| {}, &never)
            .expect("the index builds");
        best = best.min(start.elapsed().as_secs_f64());
        index = Some(idx);
    }
    let index = index.expect("at least one run");
    // Queries: the first line of up to 200 docstrings, spread over the repository.
    let mut docs: Vec<(String, String)> = Vec::new();
    let mut files: Vec<_> = index.files().collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    for f in files {
        for s in &f.symbols {
            if let Some(d) = &s.doc {
                let line = d.lines().next().unwrap_or("").trim();
                if line.split_whitespace().count() >= 4 {
                    docs.push((line.to_string(), f.path.clone()));
                }
            }
        }
    }
    let step = (docs.len() / 200).max(1);
    let queries: Vec<&(String, String)> = docs.iter().step_by(step).take(200).collect();
    let mut latencies = Vec::new();
    let (mut top1, mut top1_code) = (0usize, 0usize);
    for (q, path) in &queries {
        let start = Instant::now();
        let hits = index.search(q, 10);
        latencies.push(start.elapsed().as_secs_f64() * 1000.0);
        if hits.first().is_some_and(|h| &h.path == path) {
            top1 += 1;
            top1_code += usize::from(!basis_code::is_test_path(path));
        }
    }
    let code_queries = queries
        .iter()
        .filter(|(_, p)| !basis_code::is_test_path(p))
        .count();
    latencies.sort_by(f64::total_cmp);
    let result = serde_json::json!({
        "files": index.file_count(),
        "symbols": index.symbol_count(),
        "skipped": index.skipped_files().len(),
        "build_s": best,
        "files_per_s": index.file_count() as f64 / best,
        "queries": queries.len(),
        "search_p50_ms": percentile(&latencies, 0.5),
        "search_p95_ms": percentile(&latencies, 0.95),
        "docstring_top1": top1 as f64 / queries.len().max(1) as f64,
        "docstring_top1_code": top1_code as f64 / code_queries.max(1) as f64,
    });
    println!("{result}");
}
