//! `basis localize --repo PATH "issue text"`: the localization skill on the
//! command line. It runs exactly the code the server runs (retrieval candidates
//! from the workspace index, `skills::localize::run`), and prints `path:line`
//! rows, best first.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use anyhow::{bail, Context, Result};
use basis_model::{LanguageModel, Precision, SamplingParams};
use basis_skills::localize;
use clap::Args;

#[derive(Args)]
pub struct LocalizeArgs {
    /// The repository to search.
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// A model name from the store, or a path (default: the default model).
    #[arg(long)]
    model: Option<String>,
    /// How many locations to print.
    #[arg(long, default_value_t = 10)]
    limit: usize,
    /// How many retrieval candidates the model chooses from.
    #[arg(long, default_value_t = 8)]
    candidates: usize,
    /// Print the model's raw answer to stderr.
    #[arg(long)]
    verbose: bool,
    /// The issue, in natural language.
    issue: String,
}

pub fn run_localize(args: LocalizeArgs) -> Result<()> {
    if args.issue.trim().is_empty() {
        bail!("the issue text is empty");
    }
    let repo = args
        .repo
        .canonicalize()
        .with_context(|| format!("cannot open the repository {}", args.repo.display()))?;
    if !repo.is_dir() {
        bail!("{} is not a directory", repo.display());
    }
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template("indexing {bar:30} {pos}/{len} files")
            .expect("the template is valid"),
    );
    let never = AtomicBool::new(false);
    let index = basis_code::WorkspaceIndex::build(
        repo.clone(),
        basis_code::Limits::default(),
        &mut |p| {
            bar.set_length(p.total as u64);
            bar.set_position(p.done as u64);
        },
        &never,
    )
    .with_context(|| format!("indexing {}", repo.display()))?;
    bar.finish_and_clear();
    let opts = localize::Options {
        candidates: args.candidates.max(1),
        limit: args.limit.max(1),
        sampling: SamplingParams {
            temperature: 0.0,
            max_tokens: 64,
            ..Default::default()
        },
        ..Default::default()
    };
    let candidates = localize::candidates(&index, &args.issue, &opts);
    if candidates.is_empty() {
        bail!(
            "nothing in {} matches the issue ({} files indexed)",
            repo.display(),
            index.file_count()
        );
    }
    let spec = crate::generate::resolve(args.model.as_deref())?;
    let mut lm = LanguageModel::load(
        &spec.weights,
        Precision::Quantized,
        &basis_model::default_device(),
    )
    .with_context(|| format!("loading {}", spec.weights.display()))?;
    if let Some(dir) = &spec.model_dir {
        let registry = basis_model::registry::Registry::new(dir);
        registry.load_into(&mut lm.model, registry.current()?)?;
    }
    let outcome = localize::run(&lm, &args.issue, &candidates, &opts, &|| false)?;
    if args.verbose {
        eprintln!("model answer: {:?}", outcome.completion);
    }
    let mut out = std::io::stdout().lock();
    for loc in &outcome.locations {
        let line = loc.span.map(|s| s.start.row + 1).unwrap_or(1);
        writeln!(out, "{}:{}", loc.path, line)?;
    }
    Ok(())
}
