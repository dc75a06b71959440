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
            seed,
        } => import_swebench(&file, out.as_deref(), holdout, seed),
    }
}

fn mine(args: MineArgs) -> Result<()> {
    let repo = crate::skill_cli::repo(&args.repo)?;
    if !(0.0..1.0).contains(&args.holdout) {
        bail!("--holdout {} is not a share in [0, 1)", args.holdout);
    }
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
        holdout: args.holdout,
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
    writeln!(out, "total\t\t\t{}", tasks.len())?;
    Ok(())
}

fn import_swebench(file: &Path, out: Option<&Path>, holdout: f64, seed: u64) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let (instances, errors) = basis_trainer::swebench::read_instances(file, &text);
    for e in &errors {
        eprintln!("{e}");
    }
    let mut tasks = basis_trainer::swebench::tasks(&instances);
    if holdout > 0.0 {
        basis_trainer::mine::split::assign(&mut tasks, holdout, seed);
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
