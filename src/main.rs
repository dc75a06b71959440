//! `basis`: the command-line entry point. Subcommands parse their arguments here and
//! call into the crates that do the work; nothing but a command's own output goes
//! to stdout (progress, statistics and errors go to stderr).

mod check_device;
mod eval;
mod feedback;
mod fsutil;
mod generate;
mod localize;
mod lsp;
mod plot;
mod progress;
mod pull;
mod skill_cli;
mod skills;
mod store;
mod tasks;
mod train;
mod versions;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "basis",
    version,
    about = "A language server and a trainer for one coding model"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Manage the models in the store ($BASIS_HOME/models).
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
    /// Generate text with a model; prints only the generated text on stdout.
    Generate(generate::GenerateArgs),
    /// Print the token ids of a text as a JSON array (no special tokens added).
    Tokenize(generate::TokenizeArgs),
    /// Run the language server (over stdio unless --listen is given).
    Lsp(lsp::LspArgs),
    /// Find where in a repository an issue would be fixed; prints path:line rows,
    /// best first.
    Localize(localize::LocalizeArgs),
    /// Edit lines of a file as instructed; prints a unified diff (--apply writes it).
    Edit(skills::EditArgs),
    /// Write unit tests for a function and run them in the sandbox; prints the
    /// test file's diff. Exit code 1 when the tests fail.
    Testgen(skills::TestgenArgs),
    /// Write a test that reproduces an issue and run it in the sandbox; prints the
    /// test. Exit code 0 when it reproduces (fails as a test), 1 when not, 2 on error.
    Reproduce(skills::ReproduceArgs),
    /// Review the uncommitted changes (against --base, default HEAD); prints
    /// `path:line: comment` rows and the verdict. Exit code 0 for YES, 1 for NO,
    /// 2 on error.
    Review(skills::ReviewArgs),
    /// Mine, count or import skill tasks with known answers (basis.task/1).
    Tasks {
        #[command(subcommand)]
        command: tasks::TasksCommand,
    },
    /// Score a model on a task file, per skill (Avg@K, Pass@K); writes
    /// report.json and report.md.
    Eval(eval::EvalArgs),
    /// Check training on a device (the CPU or a GPU): logits against the CPU, a
    /// few GRPO steps, the update step's throughput; JSON lines on stdout.
    CheckDevice(check_device::CheckDeviceArgs),
    /// Train the model on a task file with joint reinforcement learning (GRPO)
    /// over the skills; `basis train plot RUN_DIR` draws a run's reward curves.
    // Boxed: its many settings would make every command as large.
    Train(Box<train::TrainArgs>),
    /// Inspect, export or purge the feedback store.
    Feedback {
        /// The store's file (default: $BASIS_HOME/feedback/feedback.sqlite3).
        #[arg(long, global = true)]
        db: Option<PathBuf>,
        #[command(subcommand)]
        command: feedback::FeedbackCommand,
    },
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Download a known model (default: smollm2-135m-instruct), or register a local
    /// GGUF file or Hugging Face directory by path.
    Pull {
        /// A known model's name, or the path of a .gguf file or model directory.
        model: Option<String>,
        /// The name to register a local path under (default: the file's name).
        #[arg(long)]
        name: Option<String>,
    },
    /// List the models in the store.
    List,
    /// List a model's versions (the served one marked with *).
    Versions {
        /// The model (default: the default model).
        model: Option<String>,
    },
    /// Serve another version: NAME@v<N> or NAME@base (promotion or rollback).
    Use {
        /// NAME@VERSION
        version: String,
    },
    /// Evaluate a training run's adapter against the served version on the
    /// held-out tasks and publish it as the next version if the gate passes.
    Publish {
        /// The run's folder (what `basis train --run` wrote).
        run: PathBuf,
        /// Publish whatever the evaluation says (and say so).
        #[arg(long)]
        force: bool,
        /// Samples per held-out task.
        #[arg(long, default_value_t = 1, value_parser = at_least_one)]
        gate_samples: usize,
        /// At most this many held-out tasks per skill.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Write a version's adapter to a folder that PEFT loads.
    ExportAdapter {
        /// NAME@v<N> (default version: the served one).
        version: String,
        /// The folder to write.
        #[arg(long)]
        out: PathBuf,
        /// `base_model_name_or_path` to record (e.g. HuggingFaceTB/SmolLM2-135M-Instruct).
        #[arg(long)]
        base_model: Option<String>,
    },
}

/// Clap's parser for a count that has to be at least 1: a 0 there would run as 1
/// or do nothing and end as if it had worked, so it is refused instead.
pub(crate) fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Lsp(_)) {
        lsp::reserve_a_core_for_the_editor();
    }
    basis_model::configure_threads();
    // Commands whose exit code 1 means an answer (NO, not reproduced) fail with 2.
    let error_code = match cli.command {
        Command::Review(_) | Command::Reproduce(_) => 2,
        _ => 1,
    };
    let ok = |r: anyhow::Result<()>| r.map(|()| ExitCode::SUCCESS);
    let result = match cli.command {
        Command::Model { command } => match command {
            ModelCommand::Pull { model, name } => ok(model_pull(model, name)),
            ModelCommand::List => ok(model_list()),
            ModelCommand::Versions { model } => ok(versions::list(model.as_deref())),
            ModelCommand::Use { version } => ok(versions::use_version(&version)),
            ModelCommand::Publish {
                run,
                force,
                gate_samples,
                limit,
            } => ok(
                versions::publish_run(&run, &versions::options(force, gate_samples, limit))
                    .map(|_| ()),
            ),
            ModelCommand::ExportAdapter {
                version,
                out,
                base_model,
            } => ok(versions::export_adapter(
                &version,
                &out,
                base_model.as_deref(),
            )),
        },
        Command::Generate(args) => ok(generate::run_generate(args)),
        Command::Tokenize(args) => ok(generate::run_tokenize(args)),
        Command::Lsp(args) => ok(lsp::run_lsp(args)),
        Command::Localize(args) => ok(localize::run_localize(args)),
        Command::Edit(args) => skills::run_edit(args),
        Command::Testgen(args) => skills::run_testgen(args),
        Command::Reproduce(args) => skills::run_reproduce(args),
        Command::Review(args) => skills::run_review(args),
        Command::Tasks { command } => ok(tasks::run_tasks(command)),
        Command::Eval(args) => ok(eval::run_eval(args)),
        Command::Train(args) => ok(train::run_train(*args)),
        Command::CheckDevice(args) => ok(check_device::run_check_device(args)),
        Command::Feedback { db, command } => ok(feedback::run_feedback(command, db)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", basis_model::error::Causes(e.as_ref()));
            ExitCode::from(error_code)
        }
    }
}

fn model_pull(model: Option<String>, name: Option<String>) -> anyhow::Result<()> {
    let store = store::Store::open()?;
    let spec = model.unwrap_or_else(|| store::DEFAULT_MODEL.to_string());
    if let Some(known) = store::known_model(&spec) {
        if name.is_some() {
            anyhow::bail!("--name only applies when registering a local path");
        }
        let (m, downloaded) = pull::pull(&store, known)?;
        let path = store.weights_path(&m);
        if downloaded {
            eprintln!(
                "pulled {} ({}) to {}",
                m.name,
                known.description,
                path.display()
            );
        } else {
            eprintln!("{} is already in the store at {}", m.name, path.display());
        }
        return Ok(());
    }
    let path = PathBuf::from(&spec);
    if !path.exists() {
        let known: Vec<&str> = store::KNOWN_MODELS.iter().map(|m| m.name).collect();
        anyhow::bail!(
            "`{spec}` is neither a known model ({}) nor an existing path",
            known.join(", ")
        );
    }
    let m = store.register(&path, name.as_deref())?;
    // Load it once so that a broken file is reported now, not at first use.
    let tok = generate::load_tokenizer(&store.weights_path(&m));
    if let Err(e) = tok {
        let _ = std::fs::remove_dir_all(store.model_dir(&m.name));
        return Err(e.context(format!("{} cannot be used as a model", path.display())));
    }
    eprintln!("registered {} -> {}", m.name, m.path.display());
    Ok(())
}

fn model_list() -> anyhow::Result<()> {
    use std::io::Write;
    let store = store::Store::open()?;
    let mut out = std::io::stdout().lock();
    for m in store.list()? {
        let path = store.weights_path(&m);
        let state = if path.exists() { "" } else { "  (missing)" };
        writeln!(out, "{}\t{:?}\t{}{state}", m.name, m.format, path.display())?;
    }
    Ok(())
}
