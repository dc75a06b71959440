//! Code localization: an issue in natural language + the repository → the files (and
//! symbols) where it would be fixed, best first.
//!
//! Candidates come from retrieval over the workspace index; the model sees them as a
//! numbered list and answers with the files to change, most likely first. The files
//! it names come first in the result, in its order; the other candidates follow in
//! retrieval order, so a model that says nothing useful still gives the retrieval
//! ranking. The reward is the paper's: the predicted file set equals the reference
//! set exactly; recall@k and F1 are reported beside it. The graded reward is the
//! F1 of the predicted set.
//!
//! Retrieval alone is the floor: the server and the CLI ask the model only where
//! an evaluation measured its ranking better than retrieval's on the repository
//! ([`model_measured_better`]), and answer with retrieval's ranking elsewhere.

use std::path::Path;

use basis_code::{FileHit, Span, WorkspaceIndex};
use basis_model::registry::{Registry, Version};
use basis_model::{LanguageModel, Message};
use serde::{Deserialize, Serialize};

use crate::generate::{text_prompt, Generated, Options, Prompt};
use crate::parse::{leading_number, path_like_tokens};
use crate::SkillError;

/// What the model localizes: the issue, and the candidate files retrieval found
/// for it (best first; see [`candidates`]).
#[derive(Debug, Clone)]
pub struct Input {
    pub issue: String,
    pub candidates: Vec<FileHit>,
    /// How many locations to return.
    pub limit: usize,
}

/// The reference answer of a task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reference {
    pub files: Vec<String>,
}

/// How many candidate files retrieval offers the model by default.
pub const CANDIDATES: usize = 8;

/// The budget and sampling of a localization: a short answer (a few paths).
pub fn default_options() -> Options {
    Options::greedy(1536, 64)
}

crate::skill!(LocalizeSkill, crate::SkillId::Localize, "localizing");

const SYSTEM: &str = "You are a code localization assistant. Given an issue and a numbered \
list of candidate files from a repository, answer with the paths of the files that must \
change to resolve the issue, most likely first, one per line. Use only paths from the list.";

/// The chat for an issue with the first `k` candidates.
pub fn render(issue: &str, candidates: &[FileHit], k: usize) -> Vec<Message> {
    let mut user = format!("Issue:\n{}\n\nCandidate files:\n", issue.trim());
    for (i, c) in candidates.iter().take(k).enumerate() {
        user.push_str(&format!("[{}] {}\n", i + 1, c.path));
        if !c.symbols.is_empty() {
            let names: Vec<String> = c
                .symbols
                .iter()
                .map(|s| match &s.container {
                    Some(parent) => format!("{parent}.{}", s.name),
                    None => s.name.clone(),
                })
                .collect();
            user.push_str(&format!("    symbols: {}\n", names.join(", ")));
        }
    }
    if k == 0 {
        user.push_str("(none)\n");
    }
    user.push_str("\nFiles to change:");
    vec![Message::system(SYSTEM), Message::user(user)]
}

/// The candidate paths a model's answer names, in its order, without repeats. It
/// understands paths (whole, or a unique suffix such as `parser.py`) and list
/// numbers (`[2]`, `2.`) on lines that name no path; anything else is ignored.
pub fn parse(completion: &str, candidates: &[FileHit]) -> Vec<String> {
    let mut chosen: Vec<String> = Vec::new();
    fn push(chosen: &mut Vec<String>, path: &str) {
        if !chosen.iter().any(|c| c == path) {
            chosen.push(path.to_string());
        }
    }
    for line in completion.lines() {
        let tokens = path_like_tokens(line);
        // A line that names a path is about that path; its leading number is the
        // model's own list numbering, not a candidate's.
        let names_a_path = !tokens.is_empty();
        for token in tokens {
            let token = token.trim_start_matches("./");
            if let Some(c) = candidates.iter().find(|c| c.path == token) {
                push(&mut chosen, &c.path);
                continue;
            }
            let mut suffix_matches = candidates
                .iter()
                .filter(|c| c.path.ends_with(&format!("/{token}")));
            if let (Some(c), None) = (suffix_matches.next(), suffix_matches.next()) {
                push(&mut chosen, &c.path);
            }
        }
        if !names_a_path {
            if let Some(n) = leading_number(line) {
                if let Some(c) = n.checked_sub(1).and_then(|i| candidates.get(i)) {
                    push(&mut chosen, &c.path);
                }
            }
        }
    }
    chosen
}

/// One place to look, best first.
#[derive(Debug, Clone, Serialize)]
pub struct Location {
    /// Relative to the repository root, with `/` separators.
    pub path: String,
    /// The best-matching symbol in the file, if any.
    pub symbol: Option<String>,
    /// The symbol's span; `None` means the start of the file.
    pub span: Option<Span>,
    /// In (0, 2]: the retrieval score relative to the best candidate's, plus 1 when
    /// the model chose the file. Sorting by it gives the returned order.
    pub score: f32,
    /// Whether the model named this file.
    pub chosen: bool,
}

/// Merges the model's choice with the retrieval ranking (see the module docs).
pub fn rank(chosen: &[String], candidates: &[FileHit], limit: usize) -> Vec<Location> {
    let best = candidates
        .iter()
        .map(|c| c.score)
        .fold(0.0f32, f32::max)
        .max(f32::MIN_POSITIVE);
    let location = |c: &FileHit, chosen: bool, rank_bonus: f32| {
        let top = c.symbols.first();
        Location {
            path: c.path.clone(),
            symbol: top.map(|s| s.name.clone()),
            span: top.map(|s| s.span),
            score: (c.score / best).clamp(0.0, 1.0) * 0.999
                + rank_bonus
                + if chosen { 1.0 } else { 0.0 },
            chosen,
        }
    };
    let mut out: Vec<Location> = Vec::new();
    let n = chosen.len().max(1) as f32;
    for (i, path) in chosen.iter().enumerate() {
        if let Some(c) = candidates.iter().find(|c| &c.path == path) {
            // Chosen files keep the model's order whatever their retrieval scores:
            // the bonus puts the i-th above the (i+1)-th.
            let mut loc = location(c, true, 0.0);
            loc.score = 1.0 + (n - i as f32) / n;
            out.push(loc);
        }
    }
    for c in candidates {
        if !chosen.contains(&c.path) {
            out.push(location(c, false, 0.0));
        }
    }
    out.truncate(limit);
    out
}

/// How good a predicted file set is against the reference.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Score {
    /// The reward: 1 when the predicted set equals the reference set, else 0.
    pub reward: f64,
    /// The graded reward: the predicted set's F1 (1 exactly where `reward` is).
    pub graded: f64,
    /// Share of the reference files among the first `k` predictions.
    pub recall_at_k: f64,
    pub f1: f64,
}

/// Scores `predicted` (best first) against `reference` (see [`Score`]).
pub fn verify(predicted: &[String], reference: &[String], k: usize) -> Score {
    use std::collections::BTreeSet;
    let norm = |p: &String| p.trim_start_matches("./").to_string();
    let pred: BTreeSet<String> = predicted.iter().map(norm).collect();
    let refs: BTreeSet<String> = reference.iter().map(norm).collect();
    let top_k: BTreeSet<String> = predicted.iter().take(k).map(norm).collect();
    let hits = pred.intersection(&refs).count() as f64;
    let recall_at_k = if refs.is_empty() {
        0.0
    } else {
        top_k.intersection(&refs).count() as f64 / refs.len() as f64
    };
    let precision = if pred.is_empty() {
        0.0
    } else {
        hits / pred.len() as f64
    };
    let recall = if refs.is_empty() {
        0.0
    } else {
        hits / refs.len() as f64
    };
    let f1 = if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    };
    Score {
        reward: if !refs.is_empty() && pred == refs {
            1.0
        } else {
            0.0
        },
        graded: f1,
        recall_at_k,
        f1,
    }
}

/// The retrieval candidates for an issue: the `n` best files.
pub fn candidates(index: &WorkspaceIndex, issue: &str, n: usize) -> Vec<FileHit> {
    index.search(issue, n)
}

/// Whether the model's choice is measured to help on the repository at `root`:
/// `basis eval` of this `version` there found the model's ranking better than
/// retrieval's alone (exact at |reference|; the figures the registry keeps per
/// version and repository). Without such figures the answer is no: retrieval
/// is the floor, and the model has to be shown to beat it.
pub fn model_measured_better(registry: &Registry, version: Version, root: &Path) -> bool {
    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    let evals = registry.evals(version);
    let figures = &evals["localize"][root.display().to_string()];
    match (
        figures["model_exact_at_ref"].as_f64(),
        figures["retrieval_exact_at_ref"].as_f64(),
    ) {
        (Some(model), Some(retrieval)) => model > retrieval,
        _ => false,
    }
}

/// Everything a localization produced: what the user sees and what the feedback
/// store and the trainer need.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub locations: Vec<Location>,
    /// The files the model named (the predicted set the verifier scores).
    pub chosen: Vec<String>,
    pub generated: Generated,
}

/// The prompt of a localization: the issue and as many candidates (paths and
/// symbol names) as fit the budget.
pub fn prompt(lm: &LanguageModel, input: &Input, opts: &Options) -> Result<Prompt, SkillError> {
    if input.issue.trim().is_empty() {
        return Err(SkillError::Input("the issue text is empty".into()));
    }
    if input.candidates.is_empty() {
        return Err(SkillError::Input(
            "nothing in the repository matches the issue".into(),
        ));
    }
    let budget = opts.budget.within_context(lm.model.config().context_length);
    text_prompt(
        lm,
        input.candidates.len(),
        budget,
        &|k| render(&input.issue, &input.candidates, k),
        "",
        &opts.sampling,
    )
}

/// Ranks the locations: the files the model chose among those it was shown,
/// then the other candidates in retrieval order.
pub fn finish(input: &Input, prompt: &Prompt, generated: Generated) -> Outcome {
    let shown = &input.candidates[..prompt.fitted.pieces.min(input.candidates.len())];
    let chosen = parse(&generated.completion, shown);
    Outcome {
        locations: rank(&chosen, &input.candidates, input.limit),
        chosen,
        generated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use basis_code::{Point, SymbolHit, SymbolKind};

    fn hit(path: &str, score: f32, symbol: Option<&str>) -> FileHit {
        let span = Span {
            start_byte: 0,
            end_byte: 1,
            start: Point { row: 4, column: 0 },
            end: Point { row: 6, column: 0 },
        };
        FileHit {
            path: path.into(),
            score,
            symbols: symbol
                .map(|name| SymbolHit {
                    path: path.into(),
                    name: name.into(),
                    kind: SymbolKind::Function,
                    container: None,
                    span,
                    score,
                })
                .into_iter()
                .collect(),
        }
    }

    fn cands() -> Vec<FileHit> {
        vec![
            hit("src/http/parser.py", 9.0, Some("parse_header")),
            hit("src/http/client.py", 6.0, None),
            hit("src/util.py", 3.0, Some("slugify")),
            hit("docs/parser.py", 1.0, None),
        ]
    }

    #[test]
    fn parse_reads_paths_suffixes_and_numbers() {
        let c = cands();
        assert_eq!(
            parse("src/util.py\n[1]", &c),
            vec!["src/util.py", "src/http/parser.py"]
        );
        // `client.py` is a unique suffix; `parser.py` is not (two files end with it).
        assert_eq!(
            parse("- client.py\n- parser.py", &c),
            vec!["src/http/client.py"]
        );
        assert_eq!(
            parse("2. `src/http/client.py:10` and 2", &c),
            vec!["src/http/client.py"]
        );
        assert!(parse("I think the bug is in the parser.", &c).is_empty());
        assert!(parse("[9]\n0\nnonexistent/file.py", &c).is_empty());
    }

    #[test]
    fn parse_survives_truncated_and_messy_output() {
        let c = cands();
        let messy =
            "Sure! The files are:\n```text\n1. src/http/parser.py — parse_header\n2. src/ut";
        for (i, _) in messy.char_indices() {
            let _ = parse(&messy[..i], &c);
        }
        assert_eq!(parse(messy, &c), vec!["src/http/parser.py"]);
        let _ = parse("\u{0}\u{2028}[[[]]]", &c);
        let _ = parse("", &[]);
    }

    #[test]
    fn rank_puts_chosen_files_first_in_the_models_order() {
        let c = cands();
        let locs = rank(&["src/util.py".into(), "src/http/client.py".into()], &c, 3);
        let paths: Vec<&str> = locs.iter().map(|l| l.path.as_str()).collect();
        assert_eq!(
            paths,
            ["src/util.py", "src/http/client.py", "src/http/parser.py"]
        );
        assert!(locs.windows(2).all(|w| w[0].score > w[1].score));
        assert_eq!(locs[0].symbol.as_deref(), Some("slugify"));
        assert!(locs[0].chosen && !locs[2].chosen);
        // Nothing chosen: retrieval order.
        let locs = rank(&[], &c, 10);
        assert_eq!(locs.len(), 4);
        assert_eq!(locs[0].path, "src/http/parser.py");
        assert!(locs.windows(2).all(|w| w[0].score >= w[1].score));
    }

    #[test]
    fn verify_is_exact_set_match_with_recall_and_f1() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let exact = verify(&s(&["b.py", "a.py"]), &s(&["a.py", "./b.py"]), 1);
        assert_eq!(exact.reward, 1.0);
        assert_eq!(exact.f1, 1.0);
        assert_eq!(exact.recall_at_k, 0.5);
        let extra = verify(&s(&["a.py", "c.py"]), &s(&["a.py"]), 5);
        assert_eq!(extra.reward, 0.0);
        assert_eq!(extra.recall_at_k, 1.0);
        assert!((extra.f1 - 2.0 / 3.0).abs() < 1e-9);
        let none = verify(&[], &s(&["a.py"]), 5);
        assert_eq!((none.reward, none.f1, none.recall_at_k), (0.0, 0.0, 0.0));
    }

    #[test]
    fn the_graded_reward_is_the_f1_of_the_named_files() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let graded = |p: &[&str], r: &[&str]| verify(&s(p), &s(r), 5).graded;
        // One extra file: precision 2/3, recall 1, F1 2 × (2/3) / (5/3) = 4/5.
        let extra = graded(&["a.py", "b.py", "c.py"], &["a.py", "b.py"]);
        assert!((extra - 0.8).abs() < 1e-12, "{extra}");
        // One of two reference files: precision 1, recall 1/2, F1 2/3.
        let half = graded(&["a.py"], &["a.py", "b.py"]);
        assert!((half - 2.0 / 3.0).abs() < 1e-12, "{half}");
        // Exactly the reference (the reward's 1), nothing right, nothing named.
        assert_eq!(graded(&["./b.py", "a.py"], &["a.py", "b.py"]), 1.0);
        assert_eq!(graded(&["c.py"], &["a.py"]), 0.0);
        assert_eq!(graded(&[], &["a.py"]), 0.0);
    }

    #[test]
    fn the_model_is_used_only_where_an_evaluation_measured_it_better() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::new(dir.path().join("model"));
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(&repo).unwrap();
        let key = repo.canonicalize().unwrap().display().to_string();
        let record = |model: f64, retrieval: f64| {
            let figures = serde_json::json!({"tasks": 10, "model_exact_at_ref": model, "retrieval_exact_at_ref": retrieval});
            registry
                .record_eval(Version::Base, "localize", &key, figures)
                .unwrap();
        };
        let better = || model_measured_better(&registry, Version::Base, &repo);
        assert!(!better(), "no evaluation: retrieval");
        record(0.3, 0.3);
        assert!(!better(), "a tie: retrieval");
        record(0.4, 0.3);
        assert!(better());
        assert!(!model_measured_better(
            &registry,
            Version::Numbered(1),
            &repo
        ));
        assert!(!model_measured_better(&registry, Version::Base, dir.path()));
    }

    #[test]
    fn the_prompt_lists_candidates_with_numbers() {
        let msgs = render("Header parsing fails on tabs", &cands(), 2);
        let user = &msgs[1].content;
        assert!(user.contains("[1] src/http/parser.py\n    symbols: parse_header"));
        assert!(user.contains("[2] src/http/client.py"));
        assert!(!user.contains("src/util.py"));
        assert!(render("x", &cands(), 0)[1].content.contains("(none)"));
    }
}
