//! `basis tasks mine|stats|import-swebench`: skill tasks with known answers
//! (`basis.task/1`, docs/design.md), mined from a repository, counted, or
//! imported from SWE-bench instances. The work is the trainer crate's; this is
//! the command line around it: arguments, progress bars, files.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use basis_skills::sandbox::Sandbox;
use basis_skills::SkillId;
use basis_trainer::mine::split;
use basis_trainer::task::{self, Task};
use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub enum TasksCommand {
    /// Mine tasks from a repository's history and tests (sandboxed).
    Mine(MineArgs),
    /// Count the tasks of a file per skill, language and split.
    Stats {
        /// The task file.
        file: PathBuf,
    },
    /// Turn SWE-bench instances (JSON or JSON lines) into tasks.
    ImportSwebench {
        /// The instances.
        file: PathBuf,
        /// Where to write the tasks (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Hold out this share of the instances (whole repositories' files and
        /// commits on one side).
        #[arg(long, default_value_t = 0.0)]
        holdout: f64,
        /// Put this share in the validation split, likewise apart.
        #[arg(long, default_value_t = 0.0)]
        validation: f64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

#[derive(Args)]
pub struct MineArgs {
    /// The repository (a git repository with tests).
    #[arg(long)]
    repo: PathBuf,
    /// The task file to write.
    #[arg(long)]
    out: PathBuf,
    /// Which skills to mine tasks for (comma-separated; default: all five).
    #[arg(long, value_delimiter = ',')]
    skills: Vec<String>,
    /// At most this many tasks per skill.
    #[arg(long, default_value_t = 50, value_parser = crate::at_least_one)]
    max: usize,
    /// Decides which commits and functions make tasks, and the split.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The share of tasks held out for evaluation (whole files and commits).
    #[arg(long, default_value_t = 0.2)]
    holdout: f64,
    /// The share of tasks a training run picks its checkpoint on (`basis
    /// train --eval-every`), apart from both others likewise.
    #[arg(long, default_value_t = 0.1)]
    validation: f64,
    /// The test command (default: detected: pytest or unittest, cargo test).
    #[arg(long)]
    test_command: Option<String>,
    /// How many commits back to look for fixes.
    #[arg(long, default_value_t = 1000, value_parser = crate::at_least_one)]
    max_commits: usize,
}

/// Skill ids from the command line (all five when none are given).
pub fn parse_skills(names: &[String]) -> Result<Vec<SkillId>> {
    if names.is_empty() {
        return Ok(SkillId::ALL.to_vec());
    }
    names
        .iter()
        .map(|n| {
            SkillId::parse(n.trim()).with_context(|| {
                format!("unknown skill `{n}` (localize, edit, testgen, reproduce, review)")
            })
        })
        .collect()
}

/// `to` as seen from the folder `from` (both absolute), with `/` separators.
fn relative(from: &Path, to: &Path) -> String {
    let (a, b): (Vec<_>, Vec<_>) = (from.components().collect(), to.components().collect());
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<String> = vec!["..".into(); a.len() - common];
    parts.extend(
        b[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    }
}

fn bar(what: &str) -> crate::progress::Bar {
    let bar = crate::progress::Bar::new(what, "{msg} {bar:30} {pos}/{len}", 0);
    bar.set_message("starting");
    bar
}

pub fn run_tasks(command: TasksCommand) -> Result<()> {
    match command {
        TasksCommand::Mine(args) => mine(args),
        TasksCommand::Stats { file } => stats(&file),
        TasksCommand::ImportSwebench {
            file,
            out,
            holdout,
            validation,
            seed,
        } => {
            let shares = check_shares(holdout, validation)?;
            import_swebench(&file, out.as_deref(), shares, seed)
        }
    }
}

fn mine(args: MineArgs) -> Result<()> {
    let repo = crate::skill_cli::repo(&args.repo)?;
    let shares = check_shares(args.holdout, args.validation)?;
    let out_dir = match args.out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let out_dir = out_dir.canonicalize()?;
    let config = basis_trainer::mine::Config {
        skills: parse_skills(&args.skills)?,
        max_per_skill: args.max,
        seed: args.seed,
        holdout: shares.heldout,
        validation: shares.validation,
        test_command: args.test_command,
        max_commits: args.max_commits,
        repo_path_in_tasks: relative(&out_dir, &repo),
        ..Default::default()
    };
    let sandbox = Sandbox::detect();
    let progress = bar("mining");
    let mined = basis_trainer::mine::mine(&repo, &config, &sandbox, &mut |p| {
        progress.set_message(p.phase.to_string());
        progress.set_length(p.total as u64);
        progress.set_position(p.done as u64);
    })?;
    progress.finish_and_clear();
    for note in &mined.notes {
        eprintln!("note: {note}");
    }
    if mined.tasks.is_empty() {
        bail!("no tasks were mined from {}", repo.display());
    }
    task::write(&args.out, &mined.tasks)
        .with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!(
        "wrote {} tasks to {}",
        mined.tasks.len(),
        args.out.display()
    );
    print_stats(&mined.tasks)
}

/// `--holdout` and `--validation` as shares, or why they are not: each in
/// [0, 1), and something left to train on.
fn check_shares(holdout: f64, validation: f64) -> Result<split::Shares> {
    for (flag, share) in [("--holdout", holdout), ("--validation", validation)] {
        if !(0.0..1.0).contains(&share) {
            bail!("{flag} {share} is not a share in [0, 1)");
        }
    }
    if holdout + validation >= 1.0 {
        bail!(
            "--holdout {holdout} and --validation {validation} leave nothing to train on: together they must be under 1"
        );
    }
    Ok(split::Shares {
        validation,
        heldout: holdout,
    })
}

fn stats(file: &Path) -> Result<()> {
    let read = task::read(file).with_context(|| format!("reading {}", file.display()))?;
    for e in &read.errors {
        eprintln!("{e}");
    }
    let tasks: Vec<Task> = read.tasks.into_iter().map(|l| l.task).collect();
    print_stats(&tasks)
}

/// Counts per skill, language and split, as a table on stdout.
fn print_stats(tasks: &[Task]) -> Result<()> {
    let mut counts: BTreeMap<(usize, String, String), usize> = BTreeMap::new();
    for t in tasks {
        let rank = SkillId::ALL
            .iter()
            .position(|s| *s == t.skill())
            .unwrap_or(9);
        let language = t.language.clone().unwrap_or_else(|| "-".into());
        *counts
            .entry((rank, language, t.split().to_string()))
            .or_default() += 1;
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "skill\tlanguage\tsplit\ttasks")?;
    for ((rank, language, split), n) in &counts {
        writeln!(out, "{}\t{language}\t{split}\t{n}", SkillId::ALL[*rank])?;
    }
    // Each split's total, in the order train, validation, heldout (then any
    // other name a hand-made file uses).
    let mut per_split: BTreeMap<(usize, &str), usize> = BTreeMap::new();
    for t in tasks {
        let rank = [split::TRAIN, split::VALIDATION, split::HELDOUT]
            .iter()
            .position(|s| *s == t.split())
            .unwrap_or(3);
        *per_split.entry((rank, t.split())).or_default() += 1;
    }
    for ((_, split), n) in &per_split {
        writeln!(out, "total\t\t{split}\t{n}")?;
    }
    writeln!(out, "total\t\t\t{}", tasks.len())?;
    Ok(())
}

fn import_swebench(
    file: &Path,
    out: Option<&Path>,
    shares: split::Shares,
    seed: u64,
) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let (instances, errors) = basis_trainer::swebench::read_instances(file, &text);
    for e in &errors {
        eprintln!("{e}");
    }
    let mut tasks = basis_trainer::swebench::tasks(&instances);
    if shares.heldout > 0.0 || shares.validation > 0.0 {
        let outcome = split::assign(&mut tasks, shares, seed, &BTreeMap::new());
        for note in &outcome.notes {
            eprintln!("note: {note}");
        }
    }
    if tasks.is_empty() {
        bail!(
            "no tasks from {} ({} instances read)",
            file.display(),
            instances.len()
        );
    }
    match out {
        Some(path) => {
            task::write(path, &tasks).with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "wrote {} tasks from {} instances to {}",
                tasks.len(),
                instances.len(),
                path.display()
            );
        }
        None => std::io::stdout()
            .lock()
            .write_all(task::to_jsonl(&tasks).as_bytes())?,
    }
    Ok(())
}
