//! `basis feedback stats|export|purge`: the feedback store from the command line.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use basis_feedback::{RewardConfig, Store};
use clap::{Subcommand, ValueEnum};

#[derive(Subcommand)]
pub enum FeedbackCommand {
    /// Counts of suggestions and events per skill, and records dropped under load.
    Stats {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write every suggestion with its events and reward to stdout.
    Export {
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
    },
    /// Delete suggestions (and their events).
    Purge {
        /// Only those older than this many days.
        #[arg(long)]
        older_than_days: Option<u64>,
        /// Required: purging cannot be undone.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// One `basis.feedback/1` record per line.
    Jsonl,
    /// Unpaired prompt/completion/label lines, as KTO trainers read them.
    Kto,
}

/// The path of the store at `path` (default: [`default_db`]), which must
/// exist: the commands that read or trim what the server recorded, and
/// training on it, must not take a mistyped path for a new, empty store.
pub fn existing_db(path: Option<PathBuf>) -> Result<PathBuf> {
    let path = match path {
        Some(p) => p,
        None => default_db()?,
    };
    if !path.exists() {
        anyhow::bail!(
            "no feedback store at {}: the server creates it when it records its first suggestion (another one: --db PATH or BASIS_FEEDBACK_DB)",
            path.display()
        );
    }
    Ok(path)
}

fn open(path: Option<PathBuf>) -> Result<Store> {
    let path = existing_db(path)?;
    Store::open(&path).with_context(|| format!("opening the feedback store {}", path.display()))
}

/// The feedback store the CLI uses: `$BASIS_FEEDBACK_DB` when set, else the
/// server's default, `$BASIS_HOME/feedback/feedback.sqlite3`.
pub fn default_db() -> Result<PathBuf> {
    match std::env::var_os("BASIS_FEEDBACK_DB") {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => Ok(Store::default_path(crate::store::Store::open()?.root())),
    }
}

pub fn run_feedback(command: FeedbackCommand, db: Option<PathBuf>) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match command {
        FeedbackCommand::Stats { json } => {
            let stats = open(db)?.stats()?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&stats)?)?;
                return Ok(());
            }
            writeln!(
                out,
                "suggestions {}  events {}  dropped {}",
                stats.suggestions, stats.events, stats.dropped
            )?;
            writeln!(
                out,
                "skill      suggestions  shown  accepted  rejected  executed  mean reward"
            )?;
            for s in &stats.by_skill {
                let reward = s
                    .mean_reward
                    .map(|r| format!("{r:.3}"))
                    .unwrap_or_else(|| "-".into());
                writeln!(
                    out,
                    "{:<10} {:>11}  {:>5}  {:>8}  {:>8}  {:>8}  {:>11}",
                    s.skill, s.suggestions, s.shown, s.accepted, s.rejected, s.executed, reward
                )?;
            }
        }
        FeedbackCommand::Export { format } => {
            let store = open(db)?;
            let reward = RewardConfig::default();
            let n = match format {
                ExportFormat::Jsonl => store.export_jsonl(&mut out, &reward)?,
                ExportFormat::Kto => store.export_kto(&mut out, &reward)?,
            };
            eprintln!("exported {n} records");
        }
        FeedbackCommand::Purge {
            older_than_days,
            yes,
        } => {
            if !yes {
                anyhow::bail!("purge deletes feedback for good; add --yes to confirm");
            }
            let before = older_than_days.map(|d| {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|t| t.as_millis() as i64)
                    .unwrap_or(0);
                now - (d as i64) * 86_400_000
            });
            let n = open(db)?.purge(before)?;
            eprintln!("purged {n} suggestions");
        }
    }
    Ok(())
}
