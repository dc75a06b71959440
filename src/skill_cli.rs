//! What the skill subcommands share: loading the model at its current version,
//! a progress line while it generates, the workspace index, and recording each
//! suggestion (and what happened to it) in the feedback store, as the server does.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use anyhow::{bail, Context, Result};
use basis_feedback::{Event, EventKind, Store as FeedbackStore};
use basis_model::{LanguageModel, Precision};
use basis_skills::generate::{Context as SuggestionContext, Generated};
use basis_skills::SkillId;

/// A loaded model and the version it runs.
pub struct Loaded {
    pub lm: LanguageModel,
    pub name: String,
    pub version: String,
    pub spec: basis_model::registry::ModelSpec,
    pub at: basis_model::registry::Version,
}

/// Loads `--model` (default: the default model, pulled if missing) at the
/// version it names (`NAME@v2`), else at the version the registry serves.
pub fn load_model(spec: Option<&str>) -> Result<Loaded> {
    let (name, version) = match spec {
        Some(s) => {
            let (n, v) = basis_model::registry::split_version(s)?;
            (Some(n), v)
        }
        None => (None, None),
    };
    let spec = crate::generate::resolve(name)?;
    let version = match version {
        Some(v) => v,
        None => spec.current()?,
    };
    let lm = spec
        .load(
            version,
            Precision::Quantized,
            &basis_model::default_device(),
        )
        .with_context(|| format!("loading {} {version}", spec.name))?;
    Ok(Loaded {
        lm,
        name: spec.name.clone(),
        version: version.to_string(),
        spec,
        at: version,
    })
}

/// The repository root, checked.
pub fn repo(path: &Path) -> Result<PathBuf> {
    let repo = path
        .canonicalize()
        .with_context(|| format!("cannot open the repository {}", path.display()))?;
    if !repo.is_dir() {
        bail!("{} is not a directory", repo.display());
    }
    Ok(repo)
}

/// `file` (absolute, or relative to the repository) as a repository-relative
/// path with `/` separators, and its text. A file that resolves outside the
/// repository (`..`, a link pointing out) is refused before it is read.
pub fn repo_file(repo: &Path, file: &Path) -> Result<(String, String)> {
    let inside = basis_code::Workspace::new(repo).locate(file)?;
    let abs = &inside.path;
    let bytes = std::fs::read(abs).with_context(|| format!("cannot open {}", file.display()))?;
    if basis_code::looks_binary(&bytes) {
        bail!("{} looks like a binary file", abs.display());
    }
    let text =
        String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8 text", abs.display()))?;
    Ok((inside.rel, text))
}

/// Indexes a repository with a progress bar on stderr.
pub fn index(repo: &Path) -> Result<basis_code::WorkspaceIndex> {
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template("indexing {bar:30} {pos}/{len} files")
            .expect("the template is valid"),
    );
    let never = AtomicBool::new(false);
    let index = basis_code::WorkspaceIndex::build(
        repo.to_path_buf(),
        basis_code::Limits::default(),
        &mut |p| {
            bar.set_length(p.total as u64);
            bar.set_position(p.done as u64);
        },
        &never,
    )
    .with_context(|| format!("indexing {}", repo.display()))?;
    bar.finish_and_clear();
    Ok(index)
}

/// A reader of the repository's files by relative path, for the skills'
/// context from other files.
pub fn reader(repo: &Path) -> impl Fn(&str) -> Option<String> {
    let ws = basis_code::Workspace::new(repo);
    move |p| ws.read(Path::new(p))
}

/// A spinner on stderr counting the tokens generated.
pub struct Progress(indicatif::ProgressBar);

impl Progress {
    pub fn new(what: &str) -> Self {
        let bar = indicatif::ProgressBar::new_spinner().with_style(
            indicatif::ProgressStyle::with_template("{spinner} {msg}")
                .expect("the template is valid"),
        );
        bar.set_message(format!("{what}…"));
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        Progress(bar)
    }

    pub fn tokens(&self, what: &str, n: usize) {
        self.0.set_message(format!("{what}: {n} tokens"));
    }

    pub fn done(self) {
        self.0.finish_and_clear();
    }
}

/// Runs skill `S` on `input` with its default options and a spinner counting
/// tokens; prints the model's whole answer to stderr when `verbose`.
pub fn run_skill<S: basis_skills::Skill>(
    loaded: &Loaded,
    input: &S::Input,
    verbose: bool,
) -> Result<S::Outcome> {
    let progress = Progress::new(S::DOING);
    let outcome = S::run(
        &loaded.lm,
        input,
        &S::default_options(),
        &mut |n| progress.tokens(S::DOING, n),
        &|| false,
    );
    progress.done();
    let outcome = outcome?;
    if verbose {
        eprintln!("model answer: {:?}", S::generated(&outcome).answer());
    }
    Ok(outcome)
}

/// The error of an answer that held no code.
pub fn no_code(generated: &Generated) -> anyhow::Error {
    anyhow::anyhow!("the model's answer held no code: {:?}", generated.answer())
}

/// The feedback store the CLI records into (see `feedback::default_db`).
fn feedback_store() -> Result<FeedbackStore> {
    let path = crate::feedback::default_db()?;
    FeedbackStore::open(&path)
        .with_context(|| format!("opening the feedback store {}", path.display()))
}

/// Records a suggestion and returns its id. A store that cannot be written is
/// reported and the command goes on: the user's answer matters more.
pub fn record(
    skill: SkillId,
    generated: &Generated,
    loaded: &Loaded,
    repo: &Path,
    file: Option<&str>,
) -> Option<String> {
    let cx = SuggestionContext {
        model_name: loaded.name.clone(),
        model_version: loaded.version.clone(),
        workspace: Some(repo.display().to_string()),
        file: file.map(str::to_string),
        language: file
            .and_then(|f| basis_code::Language::from_path(Path::new(f)))
            .map(|l| l.name().to_string()),
    };
    let s = generated.suggestion(skill, &cx);
    let result = feedback_store().and_then(|mut store| {
        store.insert_suggestion(&s)?;
        store.insert_event(&Event {
            suggestion_id: s.id.clone(),
            time_ms: s.created_ms,
            kind: EventKind::Shown,
        })?;
        Ok(())
    });
    match result {
        Ok(()) => Some(s.id),
        Err(e) => {
            eprintln!(
                "warning: the suggestion was not recorded: {}",
                basis_model::error::Causes(e.as_ref())
            );
            None
        }
    }
}

/// Records what happened to a recorded suggestion.
pub fn record_event(id: Option<&str>, kind: EventKind) {
    let Some(id) = id else { return };
    let result = feedback_store().and_then(|mut store| {
        store.insert_event(&Event {
            suggestion_id: id.to_string(),
            time_ms: crate::fsutil::unix_now() as i64 * 1000,
            kind,
        })?;
        Ok(())
    });
    if let Err(e) = result {
        eprintln!(
            "warning: feedback was not recorded: {}",
            basis_model::error::Causes(e.as_ref())
        );
    }
}

/// Writes `text` to the file `rel` of the repository, whole or not at all: a
/// path that resolves outside it (a folder linked out, say) is refused and
/// nothing is written.
pub fn write_in_repo(repo: &Path, rel: &str, text: &str) -> Result<()> {
    let inside = basis_code::Workspace::new(repo).locate(Path::new(rel))?;
    write_file(&inside.path, text)
}

/// Writes `text` to `path` whole or not at all (a synced temporary file renamed
/// over it), creating its directory.
pub fn write_file(path: &Path, text: &str) -> Result<()> {
    let dir = path.parent().context("a file path has a directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path
        .file_name()
        .context("a file path has a name")?
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.basis-tmp"));
    crate::fsutil::write_synced(&tmp, text.as_bytes())?;
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(&tmp, meta.permissions());
    }
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
}
