//! The `LanguageServer` handlers: lifecycle, settings, symbols, feedback, and the
//! dispatch to the skills ([`crate::skills`]).
//!
//! Rules every handler keeps (see also [`crate::cancel`] and [`crate::layer`]):
//! - it never awaits a request to the client (that can deadlock the transport):
//!   client requests such as `window/workDoneProgress/create` are sent from
//!   spawned tasks, with a bound on how long they wait for the answer;
//! - a notification handler never waits at all: document sync and index updates
//!   are applied by the ordering layer, and anything slower is spawned;
//! - blocking work (parsing, indexing, the model) runs on the blocking pool, with a
//!   cancellation flag that is raised when the request is cancelled (its future is
//!   dropped), so a generation stops between tokens; waits on internal state are
//!   bounded and answer an error when the bound passes;
//! - a long request that sees the documents change under it answers
//!   `ContentModified`.

use std::ops::Deref;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tower_lsp_server::jsonrpc::Result;
use tower_lsp_server::ls_types::*;
use tower_lsp_server::LanguageServer;

use crate::cancel::bounded;
use crate::indexing::{self, wait_for_index};
use crate::position::Encoding;
use crate::proto::{self, FeedbackParams, LocalizeParams, LocalizeResult, ModelChanged, Texts};
use crate::settings::Settings;
use crate::skills::{self, run::token_key};
use crate::state::{Ctx, Shared};

/// How long `basis/feedbackFlush` and `shutdown` wait for the feedback store.
const FLUSH_WAIT: Duration = Duration::from_secs(30);

/// The server tower-lsp-server drives: a [`Ctx`] with the handlers on it.
pub struct Backend(pub Ctx);

impl Deref for Backend {
    type Target = Ctx;
    fn deref(&self) -> &Ctx {
        &self.0
    }
}

impl Backend {
    /// Starts the writer of the feedback store named by the settings.
    fn start_feedback(&self, settings: &Settings) {
        let path = settings.feedback.path.clone().unwrap_or_else(|| {
            basis_feedback::Store::default_path(&self.shared.options.basis_home)
        });
        match basis_feedback::Writer::spawn(&path, settings.feedback.privacy(), 1024) {
            Ok(w) => *self.shared.feedback.lock() = Some(w),
            Err(e) => tracing::error!("feedback is off: cannot open {}: {e}", path.display()),
        }
    }

    fn apply_settings(&self, settings: Settings) {
        self.shared.models.set_model(settings.model.clone());
        self.shared
            .models
            .set_prefix_limit(settings.prefix_cache.max_megabytes << 20);
        if let Some(w) = self.shared.feedback() {
            w.set_privacy(settings.feedback.privacy());
        }
        *self.shared.settings.lock() = settings;
    }

    /// Watches the model registry's pointer and the accepted-edit tracker.
    fn spawn_watchers(&self) {
        let Ctx { client, shared } = self.0.clone();
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
                    Err(e) => tracing::warn!(
                        "checking the model version: {}",
                        basis_model::error::Causes(e.as_ref())
                    ),
                }
                record_tracked(&shared);
            }
        });
    }

    /// `basis/localize`.
    pub async fn localize(&self, params: LocalizeParams) -> Result<LocalizeResult> {
        skills::localize::request(self, params).await
    }

    /// `basis/feedback`: what the user did with a suggestion.
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
            self.shared.tracker.lock().track(
                &params.suggestion_id,
                uri.as_str(),
                text,
                Instant::now(),
            );
        }
        self.shared.record_event(&params.suggestion_id, kind);
    }

    /// `window/workDoneProgress/cancel`: the user cancelled a skill's progress.
    pub async fn progress_cancel(&self, params: WorkDoneProgressCancelParams) {
        let key = token_key(&params.token);
        if let Some(flag) = self.shared.progress_cancels.lock().get(&key) {
            flag.store(true, Ordering::Release);
        }
    }

    /// `basis/feedbackFlush`: answers once everything sent before is on disk.
    pub async fn feedback_flush(&self) -> Result<Option<Value>> {
        let Some(w) = self.shared.feedback() else {
            return Ok(None);
        };
        let flushed = tokio::task::spawn_blocking(move || w.flush());
        bounded(&self.shared, FLUSH_WAIT, flushed, || {
            format!(
                "the feedback store did not finish writing within {}s",
                FLUSH_WAIT.as_secs()
            )
        })
        .await?
        .map_err(proto::internal)?
        .map_err(proto::internal)?;
        Ok(None)
    }

    pub async fn debug_document_text(&self, params: Value) -> Result<Value> {
        crate::debug::document_text(self, params)
    }

    pub async fn debug_stats(&self) -> Result<Value> {
        Ok(crate::debug::stats(&self.shared))
    }

    pub async fn debug_panic(&self) -> Result<Value> {
        crate::debug::panic(&self.shared)
    }

    pub async fn debug_sleep(&self, params: Value) -> Result<Value> {
        crate::debug::sleep(self, params).await
    }
}

/// Records the tracker's due events (undone, retained).
fn record_tracked(shared: &Shared) {
    if shared.tracker.lock().is_empty() {
        return;
    }
    let fb = shared.settings.lock().feedback.clone();
    let text_of = |uri: &str| -> Option<String> {
        if let Some(rope) = shared.open_rope(uri) {
            return Some(rope.to_string());
        }
        let inside = shared.locate_uri(uri).ok()?;
        std::fs::read_to_string(inside.path).ok()
    };
    let events = shared.tracker.lock().check(
        Instant::now(),
        Duration::from_secs_f64(fb.undo_window_seconds.clamp(0.0, 1e9)),
        Duration::from_secs_f64(fb.retained_after_minutes.clamp(0.0, 1e9) * 60.0),
        &text_of,
    );
    for (suggestion_id, kind) in events {
        shared.record_event(&suggestion_id, kind);
    }
}

/// `basis/modelChanged`.
pub enum ModelChangedNotification {}

impl notification::Notification for ModelChangedNotification {
    type Params = ModelChanged;
    const METHOD: &'static str = "basis/modelChanged";
}

/// `basis/partial`.
pub enum PartialNotification {}

impl notification::Notification for PartialNotification {
    type Params = crate::proto::Partial;
    const METHOD: &'static str = "basis/partial";
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
            .and_then(|u| basis_code::path_of_uri(u.as_str()));
        let workspace = root.as_deref().map(basis_code::Workspace::new);
        if let Some(ws) = &workspace {
            *self.shared.index.write() = basis_code::WorkspaceIndex::new(
                ws.root().to_path_buf(),
                self.shared.limits.clone(),
            );
        }
        *self.shared.root.lock() = workspace;
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
        self.shared
            .progress_supported
            .store(progress_supported, Ordering::Release);
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
                    commands: skills::COMMANDS.map(String::from).to_vec(),
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
        if self.shared.started.swap(true, Ordering::AcqRel) {
            tracing::warn!("a second `initialized` was ignored");
            return;
        }
        indexing::spawn_build(self);
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
            let answer = tokio::time::timeout(
                indexing::CLIENT_ANSWER_WAIT,
                client.register_capability(vec![registration]),
            )
            .await;
            if !matches!(answer, Ok(Ok(()))) {
                tracing::info!("the client did not take the file watcher registration");
            }
        });
    }

    async fn shutdown(&self) -> Result<()> {
        if let Some(review) = self.shared.review_on_save.lock().take() {
            review.abort();
        }
        if let Some(w) = self.shared.feedback() {
            let flushed = tokio::task::spawn_blocking(move || w.flush());
            if tokio::time::timeout(FLUSH_WAIT, flushed).await.is_err() {
                tracing::error!("the feedback store did not finish writing before shutdown");
            }
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

    async fn did_save(&self, _: DidSaveTextDocumentParams) {
        // The index update was queued by the ordering layer.
        if self.shared.settings.lock().review.on_save {
            skills::review::on_save(self);
        }
    }

    async fn did_change_watched_files(&self, _: DidChangeWatchedFilesParams) {
        // Queued for the index by the ordering layer.
    }

    async fn did_change_configuration(&self, params: DidChangeConfigurationParams) {
        let current = self.shared.settings.lock().clone();
        match current.changed(Some(&params.settings)) {
            Ok(s) => self.apply_settings(s),
            Err(e) => {
                tracing::warn!("{e}; keeping the previous settings");
                let client = self.client.clone();
                tokio::spawn(async move { client.show_message(MessageType::WARNING, e).await });
            }
        }
    }

    async fn document_symbol(
        &self,
        params: DocumentSymbolParams,
    ) -> Result<Option<DocumentSymbolResponse>> {
        let uri = params.text_document.uri;
        let snapshot = {
            let mut docs = self.shared.docs.lock();
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
        let mut docs = self.shared.docs.lock();
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
        wait_for_index(&self.shared).await?;
        let hits = self
            .shared
            .index
            .read()
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
        skills::command(self, &params.command, params.arguments).await
    }

    async fn code_action(&self, params: CodeActionParams) -> Result<Option<CodeActionResponse>> {
        Ok(Some(skills::code_actions(self, &params)))
    }
}
