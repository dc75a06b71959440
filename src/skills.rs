//! `basis edit`, `basis testgen`, `basis reproduce` and `basis review`: the four
//! skills on the command line. Each runs exactly the skill code the server runs
//! (`basis_skills::{edit, testgen, reproduce, review}`), prints its answer on
//! stdout and progress on stderr, and records the suggestion in the feedback
//! store. Generated code only ever runs in the sandbox.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use basis_feedback::EventKind;
use basis_skills::diff::unified;
use basis_skills::sandbox::Sandbox;
use basis_skills::{edit, reproduce, review, runner, testgen, SkillId};
use clap::Args;

use crate::skill_cli::{self, Progress};

#[derive(Args)]
pub struct EditArgs {
    /// The repository the file is in.
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// The file to edit (relative to the repository, or absolute).
    #[arg(long)]
    file: PathBuf,
    /// The lines to edit, 1-based and inclusive: `A-B`, or `A` for one line.
    #[arg(long)]
    lines: String,
    /// Write the edit to the file (default: only print the diff).
    #[arg(long)]
    apply: bool,
    /// A model name from the store, or a path (default: the default model).
    #[arg(long)]
    model: Option<String>,
    /// Print the model's raw answer to stderr.
    #[arg(long)]
    verbose: bool,
    /// What to change.
    instruction: String,
}

/// `A-B` (1-based, inclusive) → byte range of those whole lines in `text`.
fn line_range(spec: &str, text: &str) -> Result<(usize, usize)> {
    let (a, b) = match spec.split_once('-') {
        Some((a, b)) => (a.trim(), b.trim()),
        None => (spec.trim(), spec.trim()),
    };
    let parse = |s: &str| -> Result<usize> {
        s.parse::<usize>()
            .ok()
            .filter(|n| *n >= 1)
            .with_context(|| {
                format!("`{spec}` is not a line range such as 3-7 (lines count from 1)")
            })
    };
    let (a, b) = (parse(a)?, parse(b)?);
    if a > b {
        bail!("the line range {spec} is backwards");
    }
    let starts: Vec<usize> = std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .filter(|&i| i < text.len())
        .collect();
    let count = starts.len();
    if b > count {
        bail!("the file has {count} lines; {spec} is past its end");
    }
    let end = starts.get(b).copied().unwrap_or(text.len());
    Ok((starts[a - 1], end))
}

pub fn run_edit(args: EditArgs) -> Result<ExitCode> {
    if args.instruction.trim().is_empty() {
        bail!("the instruction is empty; say what to change");
    }
    let repo = skill_cli::repo(&args.repo)?;
    let (path, text) = skill_cli::repo_file(&repo, &args.file)?;
    let (start_byte, end_byte) = line_range(&args.lines, &text)?;
    let mut input = edit::Input {
        path: path.clone(),
        text,
        start_byte,
        end_byte,
        instruction: args.instruction.clone(),
        related: Vec::new(),
    };
    input.validate()?;
    input.find_related(&skill_cli::index(&repo)?, &skill_cli::reader(&repo));
    let loaded = skill_cli::load_model(args.model.as_deref())?;
    let outcome = skill_cli::run_skill::<edit::EditSkill>(&loaded, &input, args.verbose)?;
    let id = skill_cli::record(
        SkillId::Edit,
        &outcome.generated,
        &loaded,
        &repo,
        Some(&path),
    );
    let Some(replacement) = outcome.replacement else {
        return Err(skill_cli::no_code(&outcome.generated));
    };
    let new_text = edit::apply(&input, &replacement);
    let diff = unified(&path, &input.text, &new_text, 3);
    std::io::stdout().lock().write_all(diff.as_bytes())?;
    if diff.is_empty() {
        eprintln!("the model left the code as it was");
    }
    if args.apply && !diff.is_empty() {
        skill_cli::write_in_repo(&repo, &path, &new_text)?;
        skill_cli::record_event(id.as_deref(), EventKind::Accepted);
        eprintln!("applied to {path}");
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct TestgenArgs {
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// The file the function is in.
    #[arg(long)]
    file: PathBuf,
    /// The function: `name`, or `Type.name` / `Type::name` for a method.
    #[arg(long)]
    symbol: String,
    /// Write the tests into the repository (default: only print them as a diff).
    #[arg(long)]
    apply: bool,
    /// Do not run the tests in the sandbox.
    #[arg(long)]
    no_run: bool,
    /// Also run the tests against up to N mutants of the function (the reward).
    #[arg(long, default_value_t = 0)]
    mutants: usize,
    #[arg(long)]
    model: Option<String>,
    #[arg(long)]
    verbose: bool,
}

pub fn run_testgen(args: TestgenArgs) -> Result<ExitCode> {
    let repo = skill_cli::repo(&args.repo)?;
    let (path, text) = skill_cli::repo_file(&repo, &args.file)?;
    let language = testgen::language_of(&path)?;
    let mut input = testgen::Input {
        path: path.clone(),
        text,
        symbol: args.symbol.clone(),
        related: Vec::new(),
    };
    if testgen::find_function(language, &input.text, &input.symbol).is_none() {
        bail!("no function `{}` in {path}", args.symbol);
    }
    input.find_related(&skill_cli::index(&repo)?, &skill_cli::reader(&repo));
    // Where the tests go is checked before the model runs: a test folder linked
    // out of the repository is refused, and nothing is read or written there.
    let test_path = testgen::test_path(language, &path);
    basis_code::Workspace::new(&repo).locate(Path::new(&test_path))?;
    let loaded = skill_cli::load_model(args.model.as_deref())?;
    let outcome = skill_cli::run_skill::<testgen::TestgenSkill>(&loaded, &input, args.verbose)?;
    let id = skill_cli::record(
        SkillId::Testgen,
        &outcome.generated,
        &loaded,
        &repo,
        Some(&path),
    );
    let Some(tests) = outcome.tests else {
        return Err(skill_cli::no_code(&outcome.generated));
    };
    let existing = skill_cli::reader(&repo)(&test_path);
    let placement = testgen::place(language, &input, &tests, existing.as_deref());
    let diff = unified(
        &placement.path,
        existing.as_deref().unwrap_or(""),
        &placement.new_text,
        3,
    );
    std::io::stdout().lock().write_all(diff.as_bytes())?;
    let mut ok = true;
    if !args.no_run {
        let sandbox = Sandbox::detect();
        let progress = Progress::new("running the tests in the sandbox");
        if args.mutants > 0 {
            let mutants = testgen::mutants_of(&input, &outcome.function, args.mutants);
            let score = testgen::verify(
                &sandbox,
                &repo,
                &HashMap::new(),
                &input,
                &placement,
                &mutants,
            )?;
            progress.done();
            report_tests(&score.report);
            if score.passed_original {
                eprintln!("mutants killed: {}/{}", score.killed, score.mutants);
                for s in &score.survivors {
                    eprintln!("  survived: {s}");
                }
            }
            ok = score.passed_original;
            skill_cli::record_event(id.as_deref(), executed(&score.report, Some(&score)));
        } else {
            let overlay = HashMap::from([(placement.path.clone(), placement.new_text.clone())]);
            let target = testgen::target(language, &placement);
            let report = runner::run_tests(&sandbox, &repo, &overlay, language, target.as_deref())?;
            progress.done();
            report_tests(&report);
            ok = report.passed();
            skill_cli::record_event(id.as_deref(), executed(&report, None));
        }
    }
    if args.apply {
        skill_cli::write_in_repo(&repo, &placement.path, &placement.new_text)?;
        skill_cli::record_event(id.as_deref(), EventKind::Accepted);
        eprintln!("wrote the tests to {}", placement.path);
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The `executed` event of a test run.
fn executed(report: &runner::TestReport, score: Option<&testgen::Score>) -> EventKind {
    let mut summary = report.summary();
    if let Some(s) = score {
        summary.push_str(&format!("; mutants killed {}/{}", s.killed, s.mutants));
    }
    EventKind::Executed {
        passed: report.passed(),
        summary,
    }
}

fn report_tests(report: &runner::TestReport) {
    eprintln!("{}", report.summary());
    if !report.passed() {
        eprintln!("{}", report.output_tail(30));
    }
}

#[derive(Args)]
pub struct ReproduceArgs {
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// Write the test into the repository.
    #[arg(long)]
    apply: bool,
    /// How many of the files retrieval finds the model sees.
    #[arg(long, default_value_t = 3)]
    context_files: usize,
    #[arg(long)]
    model: Option<String>,
    #[arg(long)]
    verbose: bool,
    /// The issue, in natural language.
    issue: String,
}

pub fn run_reproduce(args: ReproduceArgs) -> Result<ExitCode> {
    if args.issue.trim().is_empty() {
        bail!("the issue text is empty");
    }
    let repo = skill_cli::repo(&args.repo)?;
    let index = skill_cli::index(&repo)?;
    let input = reproduce::input_for(
        &index,
        &repo,
        &args.issue,
        args.context_files,
        &skill_cli::reader(&repo),
    );
    if input.context.is_empty() {
        bail!(
            "nothing in {} matches the issue ({} files indexed)",
            repo.display(),
            index.file_count()
        );
    }
    let loaded = skill_cli::load_model(args.model.as_deref())?;
    let outcome = skill_cli::run_skill::<reproduce::ReproduceSkill>(&loaded, &input, args.verbose)?;
    let id = skill_cli::record(
        SkillId::Reproduce,
        &outcome.generated,
        &loaded,
        &repo,
        Some(&outcome.path),
    );
    let Some(test) = outcome.test else {
        return Err(skill_cli::no_code(&outcome.generated));
    };
    std::io::stdout().lock().write_all(test.as_bytes())?;
    let progress = Progress::new("running it in the sandbox");
    let (verdict, report) = reproduce::check(
        &Sandbox::detect(),
        &repo,
        &HashMap::new(),
        outcome.language,
        &outcome.path,
        &test,
    )?;
    progress.done();
    let reproduced = verdict == reproduce::Verdict::Failed;
    let line = verdict.describe();
    eprintln!("{line} ({})", report.summary());
    if !reproduced {
        report_tests(&report);
    }
    skill_cli::record_event(
        id.as_deref(),
        EventKind::Executed {
            passed: reproduced,
            summary: line,
        },
    );
    if args.apply {
        skill_cli::write_in_repo(&repo, &outcome.path, &test)?;
        skill_cli::record_event(id.as_deref(), EventKind::Accepted);
        eprintln!("wrote the test to {}", outcome.path);
    }
    Ok(if reproduced {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[derive(Args)]
pub struct ReviewArgs {
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// The revision to review the working tree against.
    #[arg(long, default_value = "HEAD")]
    base: String,
    /// What the change is meant to do (default: the commit messages since --base,
    /// or a plain correctness review when there are none).
    #[arg(long)]
    intent: Option<String>,
    #[arg(long)]
    model: Option<String>,
    #[arg(long)]
    verbose: bool,
}

/// The intent of the changes since `base`: the commit messages in between.
fn default_intent(repo: &std::path::Path, base: &str) -> String {
    let messages = basis_skills::git::messages_since(repo, base);
    if messages.is_empty() {
        review::NO_INTENT.to_string()
    } else {
        messages
    }
}

pub fn run_review(args: ReviewArgs) -> Result<ExitCode> {
    let repo = skill_cli::repo(&args.repo)?;
    let changes = basis_skills::git::changes(&repo, &args.base, &HashMap::new())?;
    if changes.is_empty() {
        bail!(
            "nothing changed in {} against {}",
            repo.display(),
            args.base
        );
    }
    let intent = args
        .intent
        .clone()
        .unwrap_or_else(|| default_intent(&repo, &args.base));
    let input = review::Input { intent, changes };
    let loaded = skill_cli::load_model(args.model.as_deref())?;
    let outcome = skill_cli::run_skill::<review::ReviewSkill>(&loaded, &input, args.verbose)?;
    skill_cli::record(SkillId::Review, &outcome.generated, &loaded, &repo, None);
    if !outcome.review.summary.is_empty() {
        eprintln!("{}", outcome.review.summary);
    }
    let mut out = std::io::stdout().lock();
    for c in &outcome.review.comments {
        writeln!(out, "{}:{}: {}", c.path, c.line + 1, c.message)?;
    }
    let yes = outcome.review.verdict == Some(true);
    let note = if outcome.review.verdict.is_none() {
        " (the model gave no verdict)"
    } else {
        ""
    };
    writeln!(out, "verdict: {}{note}", if yes { "YES" } else { "NO" })?;
    Ok(if yes {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_ranges_are_whole_lines() {
        let t = "a\nbb\nccc\n";
        assert_eq!(line_range("2", t).unwrap(), (2, 5));
        assert_eq!(line_range("1-3", t).unwrap(), (0, t.len()));
        assert_eq!(line_range("3-3", "a\nb\nc").unwrap(), (4, 5));
        assert!(line_range("0-1", t).is_err());
        assert!(line_range("3-2", t).is_err());
        assert!(line_range("2-9", t)
            .unwrap_err()
            .to_string()
            .contains("3 lines"));
        assert!(line_range("x", t).is_err());
    }
}
