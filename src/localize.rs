//! `basis localize --repo PATH "issue text"`: the localization skill on the
//! command line. It runs exactly the code the server runs (retrieval candidates
//! from the workspace index, `LocalizeSkill`), and prints `path:line`
//! rows, best first.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Result};
use basis_skills::localize::{self, LocalizeSkill};
use basis_skills::Skill;
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
    #[arg(long, default_value_t = 10, value_parser = crate::at_least_one)]
    limit: usize,
    /// How many retrieval candidates the model chooses from.
    #[arg(long, default_value_t = 8, value_parser = crate::at_least_one)]
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
    let repo = crate::skill_cli::repo(&args.repo)?;
    let index = crate::skill_cli::index(&repo)?;
    let candidates = localize::candidates(&index, &args.issue, args.candidates.max(1));
    if candidates.is_empty() {
        bail!(
            "nothing in {} matches the issue ({} files indexed)",
            repo.display(),
            index.file_count()
        );
    }
    let input = localize::Input {
        issue: args.issue.clone(),
        candidates,
        limit: args.limit.max(1),
    };
    let loaded = crate::skill_cli::load_model(args.model.as_deref())?;
    let outcome = LocalizeSkill::run(
        &loaded.lm,
        &input,
        &LocalizeSkill::default_options(),
        &mut |_| {},
        &|| false,
    )?;
    if args.verbose {
        eprintln!("model answer: {:?}", outcome.generated.completion);
    }
    crate::skill_cli::record(
        basis_skills::SkillId::Localize,
        &outcome.generated,
        &loaded,
        &repo,
        None,
    );
    let mut out = std::io::stdout().lock();
    for loc in &outcome.locations {
        let line = loc.span.map(|s| s.start.row + 1).unwrap_or(1);
        writeln!(out, "{}:{}", loc.path, line)?;
    }
    Ok(())
}
