//! The state shared by the ordering layer, the handlers and the background tasks,
//! and [`Ctx`], what every handler works with.
//!
//! Locks are `parking_lot`'s: they do not poison, so a panic caught by the panic
//! boundary while a lock was held cannot turn every later request into a panic.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

use basis_code::{Inside, Limits, Refused, Workspace, WorkspaceIndex};
use basis_feedback::{Event, EventKind, Writer};
use parking_lot::{Mutex, RwLock};
use tower_lsp_server::ls_types::Diagnostic;
use tower_lsp_server::Client;

use crate::documents::Documents;
use crate::indexing::IndexUpdates;
use crate::model_host::ModelHost;
use crate::position::Encoding;
use crate::settings::Settings;
use crate::tracker::Tracker;
use crate::ServerOptions;

/// Counters a test or a debugging user can read with `basis/debug/stats`.
#[derive(Default)]
pub struct Counters {
    pub generations_started: AtomicU64,
    pub generations_finished: AtomicU64,
    pub generations_cancelled: AtomicU64,
    /// Requests answered "busy" because too many were in flight.
    pub requests_refused: AtomicU64,
    /// Waits on internal state (the index, the feedback store) that hit their bound.
    pub waits_timed_out: AtomicU64,
    /// Index updates (saves, watched-file changes) applied.
    pub index_updates_applied: AtomicU64,
    /// Model runs under way now, and the most there have been at once (at most
    /// [`MODEL_RUNS`]).
    pub model_runs: AtomicU64,
    pub model_runs_peak: AtomicU64,
}

/// The diagnostics the skills left in the editor, per document URI: the last
/// review's comments, and the failures of the last generated tests' run. A
/// document's published diagnostics are both together.
#[derive(Default)]
pub struct SkillDiagnostics {
    pub review: HashMap<String, Vec<Diagnostic>>,
    pub test_failures: HashMap<String, Vec<Diagnostic>>,
}

impl SkillDiagnostics {
    /// Everything published for `uri`.
    pub fn all(&self, uri: &str) -> Vec<Diagnostic> {
        let mut v = self.review.get(uri).cloned().unwrap_or_default();
        v.extend(self.test_failures.get(uri).cloned().unwrap_or_default());
        v
    }
}

/// How far the first index build has got (for "still indexing" answers).
#[derive(Default)]
pub struct IndexProgress {
    pub done: AtomicUsize,
    pub total: AtomicUsize,
}

pub struct Shared {
    pub options: ServerOptions,
    /// Set once `initialize` has been answered; document sync before it is dropped.
    pub initialized: AtomicBool,
    /// Set by the first `initialized`: the background tasks start once.
    pub started: AtomicBool,
    encoding: AtomicU8,
    pub docs: Mutex<Documents>,
    /// Bumped by every change to an open document's text (`didChange`; opening
    /// and closing are not changes): a long request that sees it move answers
    /// `ContentModified`.
    pub edits: AtomicU64,
    /// The workspace folder, canonical: the boundary of everything the server
    /// reads into a prompt, indexes, stores or names in an edit.
    pub root: Mutex<Option<Workspace>>,
    pub index: RwLock<WorkspaceIndex>,
    /// Becomes true when the first index build has finished (or failed).
    pub index_ready: tokio::sync::watch::Sender<bool>,
    pub index_progress: IndexProgress,
    /// Saves and watched-file changes, applied in arrival order by one worker.
    pub index_updates: IndexUpdates,
    pub limits: Limits,
    pub settings: Mutex<Settings>,
    pub models: ModelHost,
    pub feedback: Mutex<Option<Writer>>,
    pub tracker: Mutex<Tracker>,
    pub counters: Counters,
    pub progress_supported: AtomicBool,
    /// The cancellation flags of the skills' `$/progress` tokens.
    pub progress_cancels: Mutex<HashMap<String, Arc<AtomicBool>>>,
    /// The diagnostics the skills published (review comments, test failures).
    pub diagnostics: Mutex<SkillDiagnostics>,
    /// The review started by the last save (`review.onSave`): a new save stops it.
    pub review_on_save: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Edits offered for preview (`preview: true`), by suggestion id, until the
    /// client answers `basis.accept` or `basis.reject`.
    pub previews: Mutex<HashMap<String, crate::skills::run::PendingEdit>>,
    /// Permits to run the model ([`MODEL_RUNS`] at a time): each run holds a KV
    /// cache and the activations of its prompt, and on a laptop's few cores runs
    /// beyond these finish no sooner, so the others wait their turn (and one
    /// cancelled while waiting never allocates anything).
    pub model_runs: Arc<tokio::sync::Semaphore>,
}

/// Model runs at once (see [`Shared::model_runs`]): two, so that a quick
/// request need not wait for the whole of a long one.
pub const MODEL_RUNS: usize = 2;

impl Shared {
    pub fn new(options: ServerOptions) -> Arc<Self> {
        let models = ModelHost::new(options.resolver.clone());
        let (index_updates, queue) = IndexUpdates::new();
        let shared = Arc::new(Self {
            options,
            initialized: AtomicBool::new(false),
            started: AtomicBool::new(false),
            encoding: AtomicU8::new(Encoding::Utf16 as u8),
            docs: Mutex::new(Documents::default()),
            edits: AtomicU64::new(0),
            root: Mutex::new(None),
            index: RwLock::new(WorkspaceIndex::new(PathBuf::new(), Limits::default())),
            index_ready: tokio::sync::watch::Sender::new(false),
            index_progress: IndexProgress::default(),
            index_updates,
            limits: Limits::default(),
            settings: Mutex::new(Settings::default()),
            models,
            feedback: Mutex::new(None),
            tracker: Mutex::new(Tracker::default()),
            counters: Counters::default(),
            progress_supported: AtomicBool::new(false),
            progress_cancels: Mutex::new(HashMap::new()),
            diagnostics: Mutex::new(SkillDiagnostics::default()),
            review_on_save: Mutex::new(None),
            previews: Mutex::new(HashMap::new()),
            model_runs: Arc::new(tokio::sync::Semaphore::new(MODEL_RUNS)),
        });
        crate::indexing::spawn_update_worker(&shared, queue);
        shared
    }

    pub fn encoding(&self) -> Encoding {
        match self.encoding.load(Ordering::Acquire) {
            x if x == Encoding::Utf8 as u8 => Encoding::Utf8,
            x if x == Encoding::Utf32 as u8 => Encoding::Utf32,
            _ => Encoding::Utf16,
        }
    }

    pub fn set_encoding(&self, enc: Encoding) {
        self.encoding.store(enc as u8, Ordering::Release);
    }

    /// The canonical workspace root.
    pub fn root(&self) -> Option<PathBuf> {
        self.root.lock().as_ref().map(|w| w.root().to_path_buf())
    }

    pub fn workspace(&self) -> Option<Workspace> {
        self.root.lock().clone()
    }

    /// The file a URI names, if it is inside the workspace (see
    /// [`basis_code::Workspace`]); otherwise a sentence saying why not.
    pub fn locate_uri(&self, uri: &str) -> Result<Inside, String> {
        let ws = self
            .workspace()
            .ok_or_else(|| "Basis needs a workspace folder for this".to_string())?;
        match ws.locate_uri(uri) {
            Ok(inside) if inside.rel.is_empty() => Err(format!("{uri} is the workspace folder")),
            Ok(inside) => Ok(inside),
            Err(e @ Refused::Outside { .. }) => Err(format!(
                "{e}; the document can be edited as plain text, but no skill reads it"
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The text of an open document (a cheap rope clone).
    pub fn open_rope(&self, uri: &str) -> Option<ropey::Rope> {
        self.docs.lock().get(uri).map(|d| d.rope.clone())
    }

    pub fn feedback(&self) -> Option<Writer> {
        self.feedback.lock().clone()
    }

    /// The workspace-relative path of a file, if it is inside the workspace
    /// (links resolved: a link to a file inside gives the file's own path).
    pub fn relative_path(&self, path: &std::path::Path) -> Option<String> {
        let inside = self.workspace()?.locate(path).ok()?;
        (!inside.rel.is_empty()).then_some(inside.rel)
    }

    /// Records what happened to a suggestion. Every feedback event the server
    /// writes (the client's reports, what the skills saw, the tracker's undo and
    /// retention) goes through here. It never waits: the writer's queue drops
    /// and counts what it cannot take.
    pub fn record_event(&self, suggestion_id: &str, kind: EventKind) {
        if let Some(w) = self.feedback() {
            w.record_event(Event {
                suggestion_id: suggestion_id.to_string(),
                time_ms: now_ms(),
                kind,
            });
        }
    }
}

/// Milliseconds since the Unix epoch (feedback events' clock).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What every handler works with: the client connection and the shared state.
#[derive(Clone)]
pub struct Ctx {
    pub client: Client,
    pub shared: Arc<Shared>,
}
