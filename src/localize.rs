//! `basis localize --repo PATH "issue text"`: the localization skill on the
//! command line. It runs exactly the code the server runs (retrieval candidates
//! from the workspace index, `LocalizeSkill`), and prints `path:line`
//! rows, best first.
//!
//! As in the server (`localize.useModel`), the model chooses among retrieval's
//! candidates only where it is measured to help: by default (`--use-model auto`)
//! where `basis eval` of the model's version on this repository found its
//! ranking better than retrieval's; elsewhere the rows are retrieval's ranking,
//! and no model is loaded.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use basis_model::registry::Registry;
use basis_skills::localize::{self, LocalizeSkill};
use basis_skills::Skill;
use clap::{Args, ValueEnum};

/// When the model chooses the files.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UseModel {
    /// Where an evaluation measured the model better than retrieval here.
    Auto,
    Always,
    /// Retrieval alone.
    Never,
}

#[derive(Args)]
pub struct LocalizeArgs {
    /// The repository to search.
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// A model name from the store, or a path (default: the default model).
    #[arg(long)]
    model: Option<String>,
    /// When the model reorders retrieval's ranking: `auto` where `basis eval` of
    /// its version on this repository found it better than retrieval alone.
    #[arg(long, value_enum, default_value_t = UseModel::Auto)]
    use_model: UseModel,
    /// How many locations to print.
    #[arg(long, default_value_t = 10, value_parser = crate::at_least_one)]
    limit: usize,
    /// How many retrieval candidates the model chooses from.
    #[arg(long, default_value_t = 8, value_parser = crate::at_least_one)]
    candidates: usize,
    /// Print the model's raw answer (or why there is none) to stderr.
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
    // As many candidates as rows: without the model they are the rows.
    let n = args.candidates.max(args.limit).max(1);
    let candidates = localize::candidates(&index, &args.issue, n);
    if candidates.is_empty() {
        bail!(
            "nothing in {} matches the issue ({} files indexed)",
            repo.display(),
            index.file_count()
        );
    }
    let use_model = match args.use_model {
        UseModel::Always => true,
        UseModel::Never => false,
        UseModel::Auto => measured_better(args.model.as_deref(), &repo)?,
    };
    let locations = if use_model {
        let input = localize::Input {
            issue: args.issue.clone(),
            candidates: candidates[..args.candidates.min(candidates.len())].to_vec(),
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
        outcome.locations
    } else {
        if args.verbose {
            eprintln!(
                "retrieval's ranking: no evaluation measured the model better on this repository (--use-model always asks it)"
            );
        }
        localize::rank(&[], &candidates, args.limit.max(1))
    };
    let mut out = std::io::stdout().lock();
    for loc in &locations {
        let line = loc.span.map(|s| s.start.row + 1).unwrap_or(1);
        writeln!(out, "{}:{}", loc.path, line)?;
    }
    Ok(())
}

/// Whether `basis eval` measured `model` (at the version it would run) better
/// than retrieval on `repo`. A model that is not in the store has no
/// evaluations, and finding that out neither loads nor pulls it.
fn measured_better(model: Option<&str>, repo: &Path) -> Result<bool> {
    let (name, version) = match model {
        Some(spec) => basis_model::registry::split_version(spec)?,
        None => (crate::store::DEFAULT_MODEL, None),
    };
    let store = crate::store::Store::open()?;
    if crate::store::validate_name(name).is_err() || store.manifest(name)?.is_none() {
        return Ok(false);
    }
    let registry = Registry::new(store.model_dir(name));
    let version = match version {
        Some(v) => v,
        None => registry.current()?,
    };
    Ok(localize::model_measured_better(&registry, version, repo))
}
