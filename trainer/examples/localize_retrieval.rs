//! Retrieval for localization, measured on mined tasks: each task's repository
//! at its commit, indexed as the server indexes it, ranked by retrieval alone
//! (no model). Prints exact@|reference| (the first |reference| files are
//! exactly the reference) and recall@5 per repository, split and ranking:
//! plain BM25 over file texts, the index's default fusion, and with `--tune`
//! the best weights of a grid searched on the `train` split only.
//!
//! Building the indexes takes most of the time; `--save FILE` keeps every
//! task's evidence, and `--load FILE` measures from it without them.
//!
//! cargo build --workspace --example localize_retrieval
//! target/debug/examples/localize_retrieval [--tune] [--cache DIR] [--save FILE] TASKS.jsonl...
//! target/debug/examples/localize_retrieval [--tune] --load FILE

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use basis_code::{Evidence, Fusion};
use basis_trainer::task::{self, Spec};
use basis_trainer::workspace::Workspaces;

/// A task's evidence, computed once and ranked under every weighting.
#[derive(serde::Serialize, serde::Deserialize)]
struct Case {
    repo: String,
    split: String,
    reference: Vec<String>,
    evidence: Vec<Evidence>,
}

/// The files best first, as `WorkspaceIndex::search_with` orders them.
fn ranking(evidence: &[Evidence], fusion: &Fusion) -> Vec<String> {
    order(evidence, fusion)
        .into_iter()
        .map(|i| evidence[i].path.clone())
        .collect()
}

/// The same as indices into `evidence` (sorted by path, so an index breaks ties
/// as the path does).
fn order(evidence: &[Evidence], fusion: &Fusion) -> Vec<usize> {
    let mut scored: Vec<(f32, usize)> = evidence
        .iter()
        .enumerate()
        .map(|(i, e)| (fusion.score(e), i))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().map(|(_, i)| i).collect()
}

fn exact_at_ref(ranking: &[String], reference: &[String]) -> f64 {
    let top: BTreeSet<&str> = ranking
        .iter()
        .take(reference.len())
        .map(String::as_str)
        .collect();
    let want: BTreeSet<&str> = reference.iter().map(String::as_str).collect();
    f64::from(u8::from(top == want))
}

fn recall_at(ranking: &[String], reference: &[String], k: usize) -> f64 {
    let hits = reference
        .iter()
        .filter(|r| ranking.iter().take(k).any(|p| p == *r))
        .count();
    hits as f64 / reference.len().max(1) as f64
}

#[derive(Default, Clone, Copy)]
struct Sum {
    tasks: usize,
    exact: f64,
    recall5: f64,
}

impl Sum {
    fn add(&mut self, case: &Case, fusion: &Fusion) {
        // Only the first max(|reference|, 5) files count: their paths are enough.
        let top: Vec<String> = order(&case.evidence, fusion)
            .into_iter()
            .take(case.reference.len().max(5))
            .map(|i| case.evidence[i].path.clone())
            .collect();
        self.tasks += 1;
        self.exact += exact_at_ref(&top, &case.reference);
        self.recall5 += recall_at(&top, &case.reference, 5);
    }
    fn exact(&self) -> f64 {
        self.exact / self.tasks.max(1) as f64
    }
    fn recall5(&self) -> f64 {
        self.recall5 / self.tasks.max(1) as f64
    }
}

/// Per repository, on one split.
fn per_repo(cases: &[Case], split: &str, fusion: &Fusion) -> BTreeMap<String, Sum> {
    let mut out: BTreeMap<String, Sum> = BTreeMap::new();
    for c in cases.iter().filter(|c| c.split == split) {
        out.entry(c.repo.clone()).or_default().add(c, fusion);
    }
    out
}

/// What tuning maximises: exact@ref averaged over repositories (each counts
/// the same, however many tasks it has), then recall@5 likewise.
fn objective(cases: &[Case], fusion: &Fusion) -> (f64, f64) {
    let repos = per_repo(cases, "train", fusion);
    let n = repos.len().max(1) as f64;
    (
        repos.values().map(Sum::exact).sum::<f64>() / n,
        repos.values().map(Sum::recall5).sum::<f64>() / n,
    )
}

/// The weightings tuning tries. Test and other files are discounted, never
/// dropped: a query that names one still finds it.
fn grid() -> Vec<Fusion> {
    let mut out = Vec::new();
    for path in [0.0, 0.5, 1.0, 2.0, 4.0, 8.0] {
        for symbol in [0.0, 0.25, 0.5, 1.0, 2.0] {
            for test in [0.02, 0.1, 0.3, 1.0] {
                for other in [0.02, 0.1, 0.3, 1.0] {
                    out.push(Fusion {
                        text: 1.0,
                        path,
                        symbol,
                        test,
                        other,
                    });
                }
            }
        }
    }
    out
}

#[allow(clippy::print_stdout)] // The measurement is its output.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut tune = false;
    let (mut cache, mut save, mut load): (Option<PathBuf>, Option<PathBuf>, Option<PathBuf>) =
        (None, None, None);
    let mut files: Vec<PathBuf> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--tune" => tune = true,
            "--cache" => cache = args.next().map(PathBuf::from),
            "--save" => save = args.next().map(PathBuf::from),
            "--load" => load = args.next().map(PathBuf::from),
            _ => files.push(PathBuf::from(a)),
        }
    }
    if files.is_empty() == load.is_none() {
        return Err("usage: localize_retrieval [--tune] [--cache DIR] [--save FILE] TASKS.jsonl... | [--tune] --load FILE".into());
    }
    let temp = tempfile::tempdir()?;
    let cache = cache.unwrap_or_else(|| temp.path().to_path_buf());
    let mut cases: Vec<Case> = match &load {
        Some(path) => std::fs::read_to_string(path)?
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    for file in &files {
        let tasks = task::read(file)?;
        let root = file.parent().unwrap_or(Path::new("."));
        let workspaces = Workspaces::new(root, &cache);
        for located in &tasks.tasks {
            let t = &located.task;
            let Spec::Localize { input, reference } = &t.spec else {
                continue;
            };
            let tree = match workspaces.open(&t.repo) {
                Ok(tree) => tree,
                Err(e) => {
                    eprintln!("{}: skipped: {e}", t.id);
                    continue;
                }
            };
            let index = tree.index();
            let repo = workspaces.repo_path(&t.repo);
            let repo = repo.canonicalize().unwrap_or(repo);
            let case = Case {
                repo: repo
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default(),
                split: t.split().to_string(),
                reference: reference.files.clone(),
                evidence: index.evidence(&input.issue),
            };
            // The measurement ranks as the index does.
            let searched: Vec<String> = index
                .search(&input.issue, 10)
                .into_iter()
                .map(|h| h.path)
                .collect();
            let ranked = ranking(&case.evidence, &Fusion::default());
            assert_eq!(searched, ranked[..ranked.len().min(10)], "{}", t.id);
            cases.push(case);
        }
        eprintln!("{}: {} localize tasks so far", file.display(), cases.len());
    }
    if let Some(path) = &save {
        let mut text = String::new();
        for c in &cases {
            text.push_str(&serde_json::to_string(c)?);
            text.push('\n');
        }
        std::fs::write(path, text)?;
    }
    let plain = Fusion {
        text: 1.0,
        path: 0.0,
        symbol: 0.0,
        test: 1.0,
        other: 1.0,
    };
    let mut rankings: Vec<(String, Fusion)> = vec![
        ("plain BM25 (file texts)".into(), plain),
        ("default fusion".into(), Fusion::default()),
    ];
    if tune {
        let mut best = (Fusion::default(), objective(&cases, &Fusion::default()));
        for f in grid() {
            let o = objective(&cases, &f);
            if o.0 > best.1 .0 || (o.0 == best.1 .0 && o.1 > best.1 .1) {
                best = (f, o);
            }
        }
        eprintln!(
            "best on train: {:?}: exact@ref {:.3}, recall@5 {:.3} (mean over repositories)",
            best.0, best.1 .0, best.1 .1
        );
        rankings.push(("tuned on train".into(), best.0));
    }
    println!("| repository | split | tasks | ranking | exact@ref | recall@5 |");
    println!("|---|---|---:|---|---:|---:|");
    let splits: BTreeSet<&str> = cases.iter().map(|c| c.split.as_str()).collect();
    for split in splits {
        for (name, fusion) in &rankings {
            for (repo, s) in per_repo(&cases, split, fusion) {
                println!(
                    "| {repo} | {split} | {} | {name} | {:.3} | {:.3} |",
                    s.tasks,
                    s.exact(),
                    s.recall5()
                );
            }
        }
    }
    Ok(())
}
