//! The request and notification handlers.
//!
//! Rules every handler here keeps:
//! - it never awaits a request to the client (that can deadlock the transport):
//!   client requests such as `window/workDoneProgress/create` are sent from
//!   spawned tasks, and nothing waits on their answers;
//! - blocking work (parsing, indexing, the model) runs on the blocking pool, with a
//!   cancellation flag that is raised when the request is cancelled (its future is
//!   dropped), so a generation stops between tokens;
//! - a long request that sees the documents change under it answers
//!   `ContentModified`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use basis_feedback::{Event, Suggestion};
use basis_skills::localize;
use serde_json::{json, Value};
use tower_lsp_server::jsonrpc::{ErrorCode, Result};
use tower_lsp_server::ls_types::*;
use tower_lsp_server::{Client, LanguageServer};

use crate::position::Encoding;
use crate::proto::{
    self, FeedbackParams, LocalizeParams, LocalizeResult, LocalizedLocation, ModelChanged, Texts,
};
use crate::settings::Settings;
use crate::skills;
use crate::state::Shared;

pub struct Backend {
    pub client: Client,
    pub shared: Arc<Shared>,
}

/// Raises its flag when dropped: a request future that is dropped (cancelled)
/// tells its blocking work to stop.
pub(crate) struct CancelOnDrop(pub(crate) Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub const COMMAND_LOCALIZE: &str = "basis.localize";

impl Backend {
    /// Starts the writer of the feedback store named by the settings.
    fn start_feedback(&self, settings: &Settings) {
        let path = settings.feedback.path.clone().unwrap_or_else(|| {
            basis_feedback::Store::default_path(&self.shared.options.basis_home)
        });
        match basis_feedback::Writer::spawn(&path, settings.feedback.privacy(), 1024) {
            Ok(w) => *self.shared.feedback.lock().unwrap() = Some(w),
            Err(e) => tracing::error!("feedback is off: cannot open {}: {e}", path.display()),
        }
    }

    fn apply_settings(&self, settings: Settings) {
        self.shared.models.set_model(settings.model.clone());
        if let Some(w) = self.shared.feedback() {
            w.set_privacy(settings.feedback.privacy());
        }
        *self.shared.settings.lock().unwrap() = settings;
    }

    /// Builds the workspace index in the background, with `$/progress` when the
    /// client supports it.
    fn spawn_index_build(&self, progress_supported: bool) {
        let shared = self.shared.clone();
        let client = self.client.clone();
        tokio::spawn(async move {
            let Some(root) = shared.root() else {
                shared.index_ready.send_replace(true);
                return;
            };
            let token = NumberOrString::String("basis/index".into());
            // The create request is answered whenever the client likes; the build
            // does not wait for it, and progress is sent only once it is answered.
            let (created_tx, created_rx) = tokio::sync::oneshot::channel::<bool>();
            if progress_supported {
                let client = client.clone();
                let token = token.clone();
                tokio::spawn(async move {
                    let ok = client.create_work_done_progress(token).await.is_ok();
                    let _ = created_tx.send(ok);
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
                    *shared.index.write().unwrap() = index;
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

    /// Watches the model registry's pointer and the accepted-edit tracker.
    fn spawn_watchers(&self) {
        let shared = self.shared.clone();
        let client = self.client.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                match shared.models.poll().await {
                    Ok(Some(served)) => {
                        client
                            .send_notification::<ModelChangedNotification>(ModelChanged {
                                model: served.name.clone(),
                                version: served.version.to_string(),
                            })
                            .await;
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!("checking the model version: {e:#}"),
                }
                check_tracker(&shared);
            }
        });
    }

    /// Waits for the first index build and for the saves received before.
    pub(crate) async fn wait_for_index(&self) {
        let mut ready = self.shared.index_ready.subscribe();
        let _ = ready.wait_for(|ready| *ready).await;
        let mut pending = self.shared.index_updates.subscribe();
        let _ = pending.wait_for(|n| *n == 0).await;
    }

    /// `basis/localize`: retrieval candidates, the model's choice, a stored
    /// suggestion, then the answer.
    pub async fn localize(&self, params: LocalizeParams) -> Result<LocalizeResult> {
        if params.query.trim().is_empty() {
            return Err(proto::invalid_params(
                "`query` is empty; describe the issue",
            ));
        }
        self.wait_for_index().await;
        let edits_before = self.shared.edits.load(Ordering::Acquire);
        let settings = self.shared.settings.lock().unwrap().clone();
        let opts = localize::Options {
            candidates: settings.localize.candidates.max(1),
            limit: params.limit.unwrap_or(10).clamp(1, 100),
            sampling: basis_model::SamplingParams {
                temperature: settings.sampling.temperature,
                max_tokens: settings.sampling.max_tokens,
                seed: settings.sampling.seed,
                ..Default::default()
            },
            ..Default::default()
        };
        let candidates = {
            let index = self.shared.index.read().unwrap();
            localize::candidates(&index, &params.query, &opts)
        };
        let query = params.query.clone();
        let (outcome, served) = self
            .generate("Basis: localizing", move |lm, _, cancelled| {
                localize::run(lm, &query, &candidates, &opts, cancelled)
            })
            .await?;
        if self.shared.edits.load(Ordering::Acquire) != edits_before {
            return Err(tower_lsp_server::jsonrpc::Error::content_modified());
        }
        let root = self.shared.root().unwrap_or_default();
        let suggestion_id = self
            .record(
                basis_skills::SkillId::Localize,
                &outcome.generated,
                &served,
                None,
            )
            .await;

        let enc = self.shared.encoding();
        let open = |uri: &str| self.shared.open_rope(uri);
        let mut texts = Texts::new(&open);
        let locations = outcome
            .locations
            .iter()
            .filter_map(|l| {
                let path = root.join(&l.path);
                let uri = Uri::from_file_path(&path)?;
                let range = match &l.span {
                    Some(span) => texts.range(&path, &uri, span, enc),
                    None => Range::default(),
                };
                Some(LocalizedLocation {
                    uri,
                    range,
                    symbol: l.symbol.clone(),
                    score: l.score,
                })
            })
            .collect();
        Ok(LocalizeResult {
            suggestion_id,
            model_version: served.version.to_string(),
            locations,
        })
    }

    /// Records a suggestion and waits until it is on disk, so that every
    /// suggestion id a client receives is in the store. A full queue drops it
    /// (counted) rather than making the user wait.
    pub(crate) async fn store_suggestion(&self, s: Suggestion) {
        let Some(writer) = self.shared.feedback() else {
            return;
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let queued = writer.record_suggestion(
            s,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        if !queued {
            tracing::warn!("feedback queue full: a suggestion was not recorded");
            return;
        }
        match rx.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("recording a suggestion failed: {e}"),
            Err(_) => tracing::error!("the feedback writer stopped"),
        }
    }

    pub async fn feedback(&self, params: FeedbackParams) {
        let kind = match params.event_kind() {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!("basis/feedback: {e}");
                return;
            }
        };
        if let (basis_feedback::EventKind::Accepted, Some(uri), Some(text)) =
            (&kind, &params.uri, &params.text)
        {
            self.shared.tracker.lock().unwrap().track(
                &params.suggestion_id,
                uri.as_str(),
                text,
                Instant::now(),
            );
        }
        if let Some(w) = self.shared.feedback() {
            w.record_event(Event {
                suggestion_id: params.suggestion_id,
                time_ms: now_ms(),
                kind,
            });
        }
    }

    /// `window/workDoneProgress/cancel`: the user cancelled a skill's progress.
    pub async fn progress_cancel(&self, params: WorkDoneProgressCancelParams) {
        let key = skills::token_key(&params.token);
        if let Some(flag) = self.shared.progress_cancels.lock().unwrap().get(&key) {
            flag.store(true, Ordering::Release);
        }
    }

    pub async fn feedback_flush(&self) -> Result<Option<Value>> {
        let Some(w) = self.shared.feedback() else {
            return Ok(None);
        };
        tokio::task::spawn_blocking(move || w.flush())
            .await
            .map_err(proto::internal)?
            .map_err(proto::internal)?;
        Ok(None)
    }

    pub async fn debug_document_text(&self, params: Value) -> Result<Value> {
        let uri = params
            .get("uri")
            .and_then(Value::as_str)
            .ok_or_else(|| proto::invalid_params("expected {uri}"))?;
        let docs = self.shared.docs.lock().unwrap();
        let doc = docs
            .get(uri)
            .ok_or_else(|| proto::invalid_params(format!("{uri} is not open")))?;
        Ok(json!({"version": doc.version, "text": doc.rope.to_string()}))
    }

    pub async fn debug_stats(&self) -> Result<Value> {
        let c = &self.shared.counters;
        let index = self.shared.index.read().unwrap();
        Ok(json!({
            "generationsStarted": c.generations_started.load(Ordering::Relaxed),
            "generationsFinished": c.generations_finished.load(Ordering::Relaxed),
            "generationsCancelled": c.generations_cancelled.load(Ordering::Relaxed),
            "indexedFiles": index.file_count(),
            "openDocuments": self.shared.docs.lock().unwrap().len(),
            "trackedSuggestions": self.shared.tracker.lock().unwrap().len(),
            "feedbackDropped": self.shared.feedback().map(|w| w.dropped()).unwrap_or(0),
        }))
    }

    /// Test hook: panics, to show the panic boundary.
    pub async fn debug_panic(&self) -> Result<Value> {
        if !self.shared.options.test_hooks {
            return Err(proto::error(
                ErrorCode::MethodNotFound,
                "basis/debug/panic needs --test-hooks",
            ));
        }
        panic!("basis/debug/panic was called");
    }

    /// Test hook: a request that takes `ms` milliseconds of blocking work, polling
    /// its cancellation flag like a generation does.
    pub async fn debug_sleep(&self, params: Value) -> Result<Value> {
        if !self.shared.options.test_hooks {
            return Err(proto::error(
                ErrorCode::MethodNotFound,
                "basis/debug/sleep needs --test-hooks",
            ));
        }
        let ms = params.get("ms").and_then(Value::as_u64).unwrap_or(1000);
        let cancel = Arc::new(AtomicBool::new(false));
        let _guard = CancelOnDrop(cancel.clone());
        let shared = self.shared.clone();
        shared
            .counters
            .generations_started
            .fetch_add(1, Ordering::Relaxed);
        let edits_before = shared.edits.load(Ordering::Acquire);
        let finished = tokio::task::spawn_blocking(move || {
            let end = Instant::now() + Duration::from_millis(ms);
            while Instant::now() < end {
                if cancel.load(Ordering::Acquire) {
                    shared
                        .counters
                        .generations_cancelled
                        .fetch_add(1, Ordering::Relaxed);
                    return false;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            shared
                .counters
                .generations_finished
                .fetch_add(1, Ordering::Relaxed);
            true
        })
        .await
        .map_err(proto::internal)?;
        if self.shared.edits.load(Ordering::Acquire) != edits_before {
            return Err(tower_lsp_server::jsonrpc::Error::content_modified());
        }
        Ok(json!({"finished": finished}))
    }
}

/// Records the tracker's due events.
fn check_tracker(shared: &Shared) {
    if shared.tracker.lock().unwrap().is_empty() {
        return;
    }
    let fb = shared.settings.lock().unwrap().feedback.clone();
    let text_of = |uri: &str| -> Option<String> {
        if let Some(rope) = shared.open_rope(uri) {
            return Some(rope.to_string());
        }
        let path = uri.parse::<Uri>().ok()?.to_file_path()?.into_owned();
        std::fs::read_to_string(path).ok()
    };
    let events = shared.tracker.lock().unwrap().check(
        Instant::now(),
        Duration::from_secs_f64(fb.undo_window_seconds.max(0.0)),
        Duration::from_secs_f64(fb.retained_after_minutes.max(0.0) * 60.0),
        &text_of,
    );
    if let Some(w) = shared.feedback() {
        for (suggestion_id, kind) in events {
            w.record_event(Event {
                suggestion_id,
                time_ms: now_ms(),
                kind,
            });
        }
    }
}

/// `basis/modelChanged`.
pub enum ModelChangedNotification {}

impl notification::Notification for ModelChangedNotification {
    type Params = ModelChanged;
    const METHOD: &'static str = "basis/modelChanged";
}

impl LanguageServer for Backend {
    async fn initialize(&self, params: InitializeParams) -> Result<InitializeResult> {
        let enc = Encoding::negotiate(
            params
                .capabilities
                .general
                .as_ref()
                .and_then(|g| g.position_encodings.as_deref()),
        );
        self.shared.set_encoding(enc);
        #[allow(deprecated)] // root_uri is what older clients send
        let root = params
            .workspace_folders
            .as_ref()
            .and_then(|f| f.first())
            .map(|f| f.uri.clone())
            .or(params.root_uri.clone())
            .and_then(|u| u.to_file_path().map(|p| p.into_owned()));
        *self.shared.root.lock().unwrap() = root.clone();
        if let Some(root) = &root {
            *self.shared.index.write().unwrap() =
                basis_code::WorkspaceIndex::new(root.clone(), self.shared.limits.clone());
        }
        let settings = match Settings::from_json(params.initialization_options.as_ref()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("{e}; using the defaults");
                Settings::default()
            }
        };
        self.start_feedback(&settings);
        self.apply_settings(settings);
        let progress_supported = params
            .capabilities
            .window
            .as_ref()
            .and_then(|w| w.work_done_progress)
            .unwrap_or(false);
        *self.shared.progress_supported.lock().unwrap() = progress_supported;
        self.shared.initialized.store(true, Ordering::Release);
        Ok(InitializeResult {
            capabilities: ServerCapabilities {
                position_encoding: Some(enc.kind()),
                text_document_sync: Some(TextDocumentSyncCapability::Options(
                    TextDocumentSyncOptions {
                        open_close: Some(true),
                        change: Some(TextDocumentSyncKind::INCREMENTAL),
                        save: Some(TextDocumentSyncSaveOptions::SaveOptions(SaveOptions {
                            include_text: Some(true),
                        })),
                        ..Default::default()
                    },
                )),
                document_symbol_provider: Some(OneOf::Left(true)),
                workspace_symbol_provider: Some(OneOf::Left(true)),
                code_action_provider: Some(CodeActionProviderCapability::Options(
                    CodeActionOptions {
                        code_action_kinds: Some(vec![
                            CodeActionKind::QUICKFIX,
                            CodeActionKind::REFACTOR_REWRITE,
                            CodeActionKind::new("source.basis.testgen"),
                        ]),
                        ..Default::default()
                    },
                )),
                execute_command_provider: Some(ExecuteCommandOptions {
                    commands: [
                        COMMAND_LOCALIZE,
                        skills::COMMAND_EDIT,
                        skills::COMMAND_TESTGEN,
                        skills::COMMAND_REPRODUCE,
                        skills::COMMAND_REVIEW,
                        skills::COMMAND_REVIEW_FEEDBACK,
                    ]
                    .map(String::from)
                    .to_vec(),
                    ..Default::default()
                }),
                experimental: Some(
                    json!({"basis": {"requests": ["basis/localize", "basis/feedbackFlush"], "notifications": ["basis/feedback", "basis/modelChanged"]}}),
                ),
                ..Default::default()
            },
            server_info: Some(ServerInfo {
                name: "basis".into(),
                version: Some(env!("CARGO_PKG_VERSION").into()),
            }),
            offset_encoding: None,
        })
    }

    async fn initialized(&self, _: InitializedParams) {
        let progress = *self.shared.progress_supported.lock().unwrap();
        self.spawn_index_build(progress);
        self.spawn_watchers();
        // Ask to be told about file changes on disk; sent from a task so that no
        // handler waits on the client.
        let client = self.client.clone();
        tokio::spawn(async move {
            let options = DidChangeWatchedFilesRegistrationOptions {
                watchers: vec![FileSystemWatcher {
                    glob_pattern: GlobPattern::String("**/*".into()),
                    kind: None,
                }],
            };
            let registration = Registration {
                id: "basis/watched-files".into(),
                method: "workspace/didChangeWatchedFiles".into(),
                register_options: serde_json::to_value(options).ok(),
            };
            if let Err(e) = client.register_capability(vec![registration]).await {
                tracing::info!("the client did not take the file watcher registration: {e}");
            }
        });
    }

    async fn shutdown(&self) -> Result<()> {
        if let Some(w) = self.shared.feedback() {
            let _ = tokio::task::spawn_blocking(move || w.flush()).await;
        }
        Ok(())
    }

    async fn did_open(&self, _: DidOpenTextDocumentParams) {
        // Applied by the ordering layer.
    }

    async fn did_change(&self, _: DidChangeTextDocumentParams) {
        // Applied by the ordering layer.
    }

    async fn did_close(&self, _: DidCloseTextDocumentParams) {
        // Applied by the ordering layer.
    }

    async fn did_save(&self, params: DidSaveTextDocumentParams) {
        if self.shared.settings.lock().unwrap().review.on_save {
            let backend = Backend {
                client: self.client.clone(),
                shared: self.shared.clone(),
            };
            tokio::spawn(async move {
                if let Err(e) = backend.review_command(Vec::new()).await {
                    tracing::info!("review on save: {}", e.message);
                }
            });
        }
        let Some(path) = params
            .text_document
            .uri
            .to_file_path()
            .map(|p| p.into_owned())
        else {
            return;
        };
        let Some(rel) = self.shared.relative_path(&path) else {
            return;
        };
        let shared = self.shared.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let mut index = shared.index.write().unwrap();
            match params.text {
                Some(text) => index.update_text(&rel, &text),
                None => index.refresh_path(&path),
            }
        })
        .await;
    }

    async fn did_change_watched_files(&self, params: DidChangeWatchedFilesParams) {
        let shared = self.shared.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let mut index = shared.index.write().unwrap();
            for change in params.changes {
                if let Some(path) = change.uri.to_file_path() {
                    index.refresh_path(&path);
                }
            }
        })
        .await;
    }

    async fn did_change_configuration(&self, params: DidChangeConfigurationParams) {
        let current = self.shared.settings.lock().unwrap().clone();
        match current.changed(Some(&params.settings)) {
            Ok(s) => self.apply_settings(s),
            Err(e) => {
                tracing::warn!("{e}; keeping the previous settings");
                self.client.show_message(MessageType::WARNING, e).await;
            }
        }
    }

    async fn document_symbol(
        &self,
        params: DocumentSymbolParams,
    ) -> Result<Option<DocumentSymbolResponse>> {
        let uri = params.text_document.uri;
        let snapshot = {
            let mut docs = self.shared.docs.lock().unwrap();
            if docs.get(uri.as_str()).is_none() {
                return Err(proto::invalid_params(format!(
                    "{} is not open",
                    uri.as_str()
                )));
            }
            docs.parse_snapshot(uri.as_str())
        };
        let Some(snapshot) = snapshot else {
            return Ok(Some(DocumentSymbolResponse::Nested(Vec::new())));
        };
        let limits = self.shared.limits.clone();
        let (version, rope) = (snapshot.version, snapshot.rope.clone());
        let (tree, symbols) = tokio::task::spawn_blocking(move || snapshot.parse(&limits))
            .await
            .map_err(proto::internal)?;
        if let Some(reason) = &tree.skipped {
            tracing::info!("{}: no symbols: {reason}", uri.as_str());
        }
        let mut docs = self.shared.docs.lock().unwrap();
        docs.return_tree(tree);
        match docs.get(uri.as_str()) {
            Some(doc) if doc.version == version => {}
            _ => return Err(tower_lsp_server::jsonrpc::Error::content_modified()),
        }
        drop(docs);
        let enc = self.shared.encoding();
        Ok(Some(DocumentSymbolResponse::Nested(
            proto::document_symbols(&symbols, &rope, enc),
        )))
    }

    #[allow(deprecated)] // SymbolInformation::deprecated is a required field
    async fn symbol(
        &self,
        params: WorkspaceSymbolParams,
    ) -> Result<Option<WorkspaceSymbolResponse>> {
        self.wait_for_index().await;
        let hits = self
            .shared
            .index
            .read()
            .unwrap()
            .workspace_symbols(&params.query, 256);
        let root = self.shared.root().unwrap_or_default();
        let enc = self.shared.encoding();
        let open = |uri: &str| self.shared.open_rope(uri);
        let mut texts = Texts::new(&open);
        let symbols = hits
            .iter()
            .filter_map(|h| {
                let path = root.join(&h.path);
                let uri = Uri::from_file_path(&path)?;
                let range = texts.range(&path, &uri, &h.span, enc);
                Some(SymbolInformation {
                    name: h.name.clone(),
                    kind: proto::symbol_kind(h.kind),
                    tags: None,
                    deprecated: None,
                    location: Location { uri, range },
                    container_name: h.container.clone(),
                })
            })
            .collect();
        Ok(Some(WorkspaceSymbolResponse::Flat(symbols)))
    }

    async fn execute_command(&self, params: ExecuteCommandParams) -> Result<Option<LSPAny>> {
        match params.command.as_str() {
            COMMAND_LOCALIZE => {
                // Arguments: [{query, limit?}] or ["query text"].
                let first = params.arguments.into_iter().next();
                let p: LocalizeParams = match first {
                    Some(Value::String(query)) => LocalizeParams { query, limit: None },
                    Some(v) => serde_json::from_value(v).map_err(proto::invalid_params)?,
                    None => {
                        return Err(proto::invalid_params(
                            "basis.localize needs the issue text as its argument",
                        ))
                    }
                };
                let r = self.localize(p).await?;
                Ok(Some(serde_json::to_value(r).map_err(proto::internal)?))
            }
            other => match self.skill_command(other, params.arguments).await {
                Some(r) => r,
                None => Err(proto::invalid_params(format!("unknown command `{other}`"))),
            },
        }
    }

    async fn code_action(&self, params: CodeActionParams) -> Result<Option<CodeActionResponse>> {
        self.skill_code_actions(params).await
    }
}
