//! The workspace index inside the server: the first build in the background
//! (with `$/progress`), the updates from saves and watched-file changes, and the
//! bounded wait of the queries that need both.
//!
//! Updates are queued by the ordering layer in arrival order and applied by one
//! worker thread of their own, never by a handler future: a handler occupies
//! one of tower-lsp-server's few concurrency slots, so queries waiting for an
//! update that sat in the queue behind them once froze the server for good.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tower_lsp_server::jsonrpc::Error;
use tower_lsp_server::ls_types::NumberOrString;

use crate::cancel::bounded;
use crate::state::{Ctx, Shared};

/// How long a query waits for the first build and the saves before it.
pub const INDEX_WAIT: Duration = Duration::from_secs(30);

/// How long the server waits for the client to answer a progress request.
pub const CLIENT_ANSWER_WAIT: Duration = Duration::from_secs(30);

/// A change the index must follow.
pub enum Update {
    /// A saved file, with its text when the client sent it.
    Saved { path: PathBuf, text: Option<String> },
    /// Files created, changed or deleted on disk.
    Changed(Vec<PathBuf>),
}

/// The queue of updates and how far the worker has got through it.
pub struct IndexUpdates {
    queue: Sender<Update>,
    pushed: AtomicU64,
    applied: tokio::sync::watch::Sender<u64>,
}

impl IndexUpdates {
    pub fn new() -> (Self, Receiver<Update>) {
        let (queue, rx) = std::sync::mpsc::channel();
        (
            Self {
                queue,
                pushed: AtomicU64::new(0),
                applied: tokio::sync::watch::Sender::new(0),
            },
            rx,
        )
    }

    /// Queues an update (called in arrival order).
    pub fn push(&self, update: Update) {
        self.pushed.fetch_add(1, Ordering::AcqRel);
        if self.queue.send(update).is_err() {
            self.applied.send_modify(|n| *n += 1);
        }
    }

    /// Updates queued but not applied yet.
    pub fn pending(&self) -> u64 {
        self.pushed
            .load(Ordering::Acquire)
            .saturating_sub(*self.applied.borrow())
    }
}

/// Starts the thread that applies updates once the first build is in place (the
/// build reads every file from disk as it is then, saves included).
pub fn spawn_update_worker(shared: &Arc<Shared>, queue: Receiver<Update>) {
    let weak: Weak<Shared> = Arc::downgrade(shared);
    let mut ready = shared.index_ready.subscribe();
    let started = std::thread::Builder::new()
        .name("basis-index-updates".into())
        .spawn(move || {
            if futures::executor::block_on(ready.wait_for(|r| *r)).is_err() {
                return;
            }
            while let Ok(update) = queue.recv() {
                let Some(shared) = weak.upgrade() else { return };
                let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    apply(&shared, update)
                }));
                if applied.is_err() {
                    tracing::error!("applying an index update panicked; the index may miss it");
                }
                shared
                    .counters
                    .index_updates_applied
                    .fetch_add(1, Ordering::Relaxed);
                shared.index_updates.applied.send_modify(|n| *n += 1);
            }
        });
    if let Err(e) = started {
        tracing::error!("cannot start the index update thread: {e}; saves are not indexed");
    }
}

fn apply(shared: &Shared, update: Update) {
    match update {
        Update::Saved { path, text } => {
            let rel = shared.relative_path(&path);
            let mut index = shared.index.write();
            match (text, rel) {
                (Some(text), Some(rel)) => index.update_text(&rel, &text),
                _ => index.refresh_path(&path),
            }
        }
        Update::Changed(paths) => {
            let mut index = shared.index.write();
            for path in paths {
                index.refresh_path(&path);
            }
        }
    }
}

/// Waits until the first build is in place and the updates received so far are
/// applied; past [`INDEX_WAIT`] the request gets an error saying why.
pub async fn wait_for_index(shared: &Shared) -> Result<(), Error> {
    let target = shared.index_updates.pushed.load(Ordering::Acquire);
    let mut ready = shared.index_ready.subscribe();
    let mut applied = shared.index_updates.applied.subscribe();
    let wait = async {
        let _ = ready.wait_for(|r| *r).await;
        let _ = applied.wait_for(|n| *n >= target).await;
    };
    bounded(shared, INDEX_WAIT, wait, || {
        if !*shared.index_ready.borrow() {
            let p = &shared.index_progress;
            format!(
                "the workspace index is still being built ({} of {} files); try again when its progress ends",
                p.done.load(Ordering::Relaxed),
                p.total.load(Ordering::Relaxed)
            )
        } else {
            format!(
                "{} saved files are still being indexed; try again",
                shared.index_updates.pending()
            )
        }
    })
    .await
}

/// Builds the workspace index in the background, with `$/progress` when the
/// client supports it. Progress is sent only once the client has answered the
/// create request, and the build never waits for that answer.
pub fn spawn_build(cx: &Ctx) {
    let Ctx { client, shared } = cx.clone();
    let progress_supported = shared.progress_supported.load(Ordering::Acquire);
    tokio::spawn(async move {
        let Some(root) = shared.root() else {
            shared.index_ready.send_replace(true);
            return;
        };
        let token = NumberOrString::String("basis/index".into());
        let (created_tx, created_rx) = tokio::sync::oneshot::channel::<bool>();
        if progress_supported {
            let client = client.clone();
            let token = token.clone();
            tokio::spawn(async move {
                let answer = tokio::time::timeout(
                    CLIENT_ANSWER_WAIT,
                    client.create_work_done_progress(token),
                )
                .await;
                let _ = created_tx.send(matches!(answer, Ok(Ok(()))));
            });
        } else {
            let _ = created_tx.send(false);
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<basis_code::Progress>();
        let limits = shared.limits.clone();
        let build_root = root.clone();
        let build = tokio::task::spawn_blocking(move || {
            let never = AtomicBool::new(false);
            let start = Instant::now();
            let r = basis_code::WorkspaceIndex::build(
                build_root,
                limits,
                &mut |p| {
                    let _ = tx.send(p.clone());
                },
                &never,
            );
            (r, start.elapsed())
        });
        let mut created_rx = created_rx;
        let mut ongoing = None;
        let mut last_pct = u32::MAX;
        while let Some(p) = rx.recv().await {
            shared.index_progress.done.store(p.done, Ordering::Relaxed);
            shared
                .index_progress
                .total
                .store(p.total, Ordering::Relaxed);
            if ongoing.is_none() && matches!(created_rx.try_recv(), Ok(true)) {
                ongoing = Some(
                    client
                        .progress(token.clone(), "Basis: indexing")
                        .with_percentage(0)
                        .begin()
                        .await,
                );
            }
            let pct = (p.done * 100).checked_div(p.total).unwrap_or(100) as u32;
            if let Some(o) = &ongoing {
                if pct != last_pct {
                    last_pct = pct;
                    o.report_with_message(format!("{}/{} files", p.done, p.total), pct)
                        .await;
                }
            }
        }
        let (result, took) = match build.await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("the index build panicked: {e}");
                shared.index_ready.send_replace(true);
                return;
            }
        };
        let message = match result {
            Ok(index) => {
                for (path, reason) in index.skipped_files() {
                    tracing::info!("index: skipped {path}: {reason}");
                }
                let msg = format!(
                    "indexed {} files, {} symbols in {:.2}s",
                    index.file_count(),
                    index.symbol_count(),
                    took.as_secs_f64()
                );
                *shared.index.write() = index;
                msg
            }
            Err(e) => format!("indexing {} failed: {e}", root.display()),
        };
        tracing::info!("{message}");
        shared.index_ready.send_replace(true);
        // A small workspace is indexed before the client answers the create
        // request; wait a little for it (the index is already in use).
        if ongoing.is_none() {
            let answer = tokio::time::timeout(Duration::from_secs(5), &mut created_rx).await;
            if matches!(answer, Ok(Ok(true))) {
                ongoing = Some(
                    client
                        .progress(token.clone(), "Basis: indexing")
                        .with_percentage(0)
                        .begin()
                        .await,
                );
            }
        }
        if let Some(o) = ongoing {
            o.finish_with_message(message).await;
        }
    });
}
