//! The state shared by the ordering layer, the handlers and the background tasks.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use basis_code::{Limits, WorkspaceIndex};
use basis_feedback::Writer;

use crate::documents::Documents;
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
}

pub struct Shared {
    pub options: ServerOptions,
    /// Set once `initialize` has been answered; document sync before it is dropped.
    pub initialized: AtomicBool,
    encoding: AtomicU8,
    pub docs: Mutex<Documents>,
    /// Bumped by every document change: a long request that sees it move answers
    /// `ContentModified`.
    pub edits: AtomicU64,
    pub root: Mutex<Option<PathBuf>>,
    pub index: RwLock<WorkspaceIndex>,
    /// Becomes true when the first index build has finished (or failed).
    pub index_ready: tokio::sync::watch::Sender<bool>,
    /// Saves and watched-file changes received but not yet applied to the index:
    /// queries wait for them, so a save is seen by the next query.
    pub index_updates: tokio::sync::watch::Sender<u64>,
    pub limits: Limits,
    pub settings: Mutex<Settings>,
    pub models: ModelHost,
    pub feedback: Mutex<Option<Writer>>,
    pub tracker: Mutex<Tracker>,
    pub counters: Counters,
    pub progress_supported: Mutex<bool>,
    /// The cancellation flags of the skills' `$/progress` tokens.
    pub progress_cancels:
        Mutex<std::collections::HashMap<String, Arc<std::sync::atomic::AtomicBool>>>,
    /// The diagnostics the skills published (review comments, test failures).
    pub diagnostics: Mutex<crate::skills::SkillDiagnostics>,
}

impl Shared {
    pub fn new(options: ServerOptions) -> Arc<Self> {
        let models = ModelHost::new(options.resolver.clone());
        Arc::new(Self {
            options,
            initialized: AtomicBool::new(false),
            encoding: AtomicU8::new(Encoding::Utf16 as u8),
            docs: Mutex::new(Documents::default()),
            edits: AtomicU64::new(0),
            root: Mutex::new(None),
            index: RwLock::new(WorkspaceIndex::new(PathBuf::new(), Limits::default())),
            index_ready: tokio::sync::watch::Sender::new(false),
            index_updates: tokio::sync::watch::Sender::new(0),
            limits: Limits::default(),
            settings: Mutex::new(Settings::default()),
            models,
            feedback: Mutex::new(None),
            tracker: Mutex::new(Tracker::default()),
            counters: Counters::default(),
            progress_supported: Mutex::new(false),
            progress_cancels: Mutex::new(Default::default()),
            diagnostics: Mutex::new(Default::default()),
        })
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

    pub fn root(&self) -> Option<PathBuf> {
        self.root.lock().unwrap().clone()
    }

    /// The text of an open document (a cheap rope clone).
    pub fn open_rope(&self, uri: &str) -> Option<ropey::Rope> {
        self.docs.lock().unwrap().get(uri).map(|d| d.rope.clone())
    }

    pub fn feedback(&self) -> Option<Writer> {
        self.feedback.lock().unwrap().clone()
    }

    /// The workspace-relative path of a file URI, if it is inside the workspace.
    pub fn relative_path(&self, path: &std::path::Path) -> Option<String> {
        let root = self.root()?;
        let rel = path.strip_prefix(&root).ok()?;
        Some(
            rel.components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/"),
        )
    }
}
