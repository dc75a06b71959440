//! What every skill's LSP side shares: `$/progress` that the user can cancel, the
//! model call on the blocking pool, storing the suggestion before its id reaches
//! the client, `workspace/applyEdit` with its answer recorded, the sandbox, and
//! publishing the skills' diagnostics.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use basis_code::{Inside, Language};
use basis_feedback::{EventKind, Suggestion};
use basis_model::LanguageModel;
use basis_skills::generate::{Context as SuggestionContext, Generated};
use basis_skills::sandbox::Sandbox;
use basis_skills::{Skill, SkillError, SkillId};
use serde::Deserialize;
use serde_json::Value;
use tower_lsp_server::jsonrpc::{Error, Result};
use tower_lsp_server::ls_types::*;

use crate::cancel::{bounded, CancelOnDrop};
use crate::model_host::Served;
use crate::proto;
use crate::state::{Ctx, Shared};

/// A boxed future with no output, sendable between threads (a partial answer's listener).
pub type BoxFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// How long a skill waits for the feedback store to confirm a suggestion.
const STORE_WAIT: Duration = Duration::from_secs(30);

/// How long an `applyEdit` may stay unanswered before it counts as rejected.
const APPLY_EDIT_WAIT: Duration = Duration::from_secs(600);

/// How long the server waits for the client to answer a progress request.
const PROGRESS_CREATE_WAIT: Duration = Duration::from_secs(30);

static PROGRESS_IDS: AtomicU64 = AtomicU64::new(1);

/// A copy of the sandbox whose runs stop when the returned flag is raised.
pub fn cancellable_sandbox() -> (Sandbox, Arc<AtomicBool>) {
    let cancel = Arc::new(AtomicBool::new(false));
    let sb = Sandbox {
        cancel: Some(cancel.clone()),
        ..sandbox().clone()
    };
    (sb, cancel)
}

/// The sandbox, detected once per server (detection probes bwrap and warns in
/// the log when it cannot isolate).
fn sandbox() -> &'static Sandbox {
    static SANDBOX: std::sync::OnceLock<Sandbox> = std::sync::OnceLock::new();
    SANDBOX.get_or_init(Sandbox::detect)
}

/// What runs once a previewed edit was applied (the tests of a testgen).
type Then =
    Box<dyn FnOnce(Ctx) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send>;

/// An edit offered for preview, waiting for `basis.accept` or `basis.reject`.
pub struct PendingEdit {
    label: String,
    edit: WorkspaceEdit,
    track: Option<(Uri, String)>,
    then: Then,
}

/// Whether a command's argument asks for a preview (`{…, "preview": true}`):
/// the edit then waits for `basis.accept` instead of being sent at once.
pub fn wants_preview(args: &[Value]) -> bool {
    args.first()
        .and_then(|a| a.get("preview"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// A command's first argument, deserialised; an error that names the command.
pub fn arg<T: for<'de> Deserialize<'de>>(args: Vec<Value>, command: &str) -> Result<T> {
    let first = args
        .into_iter()
        .next()
        .ok_or_else(|| proto::invalid_params(format!("{command} needs an argument")))?;
    serde_json::from_value(first).map_err(|e| proto::invalid_params(format!("{command}: {e}")))
}

/// A command's first argument as text: `"text"` or `{<key>: "text"}`.
pub fn text_arg(args: Vec<Value>, command: &str, key: &str) -> Result<String> {
    let text = match args.into_iter().next() {
        Some(Value::String(s)) => s,
        Some(v) => v
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| proto::invalid_params(format!("{command} needs {{{key}}}")))?,
        None => {
            return Err(proto::invalid_params(format!(
                "{command} needs the {key} text as its argument"
            )))
        }
    };
    if text.trim().is_empty() {
        return Err(proto::invalid_params(format!(
            "the {key} text is empty; describe it"
        )));
    }
    Ok(text)
}

pub fn skill_error(e: SkillError) -> Error {
    match e {
        SkillError::Cancelled => Error::request_cancelled(),
        SkillError::Input(m) => proto::invalid_params(m),
        e => proto::internal(e),
    }
}

/// A turn at the model ([`Shared::model_runs`]), counted in
/// `Counters::model_runs` while it lives. It moves into the blocking work, so
/// that it ends with the work and not with the request: a cancelled run still
/// finishes its step before another takes its place.
pub struct ModelTurn {
    _permit: tokio::sync::OwnedSemaphorePermit,
    shared: Arc<Shared>,
}

impl Drop for ModelTurn {
    fn drop(&mut self) {
        self.shared
            .counters
            .model_runs
            .fetch_sub(1, Ordering::AcqRel);
    }
}

impl Ctx {
    /// Waits for a turn at the model; `waiting` is called first when none is
    /// free. A request cancelled while it waits allocates nothing.
    pub async fn model_turn(&self, waiting: impl FnOnce()) -> Result<ModelTurn> {
        let runs = self.shared.model_runs.clone();
        let permit = match runs.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                waiting();
                runs.acquire_owned()
                    .await
                    .map_err(|e| proto::internal(format!("no turn at the model: {e}")))?
            }
        };
        let c = &self.shared.counters;
        let now = c.model_runs.fetch_add(1, Ordering::AcqRel) + 1;
        c.model_runs_peak.fetch_max(now, Ordering::AcqRel);
        Ok(ModelTurn {
            _permit: permit,
            shared: self.shared.clone(),
        })
    }
}

/// `$/progress` of one long step; nothing is sent when the client does not
/// support it or has not answered the create request yet. A progress dropped
/// before [`StepProgress::end`] (its request was cancelled) ends as "cancelled",
/// so no client is left showing work that stopped.
pub struct StepProgress {
    client: tower_lsp_server::Client,
    shared: Arc<Shared>,
    token: ProgressToken,
    created: tokio::sync::watch::Receiver<bool>,
    ended: bool,
}

impl StepProgress {
    /// Starts a progress the client may cancel, which raises `cancel`.
    pub fn start(cx: &Ctx, title: &str, cancel: Arc<AtomicBool>) -> StepProgress {
        let token = NumberOrString::String(format!(
            "basis/skill/{}",
            PROGRESS_IDS.fetch_add(1, Ordering::Relaxed)
        ));
        let (tx, rx) = tokio::sync::watch::channel(false);
        if cx.shared.progress_supported.load(Ordering::Acquire) {
            cx.shared
                .progress_cancels
                .lock()
                .insert(token_key(&token), cancel);
            let client = cx.client.clone();
            let token = token.clone();
            let title = title.to_string();
            tokio::spawn(async move {
                let created = tokio::time::timeout(
                    PROGRESS_CREATE_WAIT,
                    client.create_work_done_progress(token.clone()),
                )
                .await;
                if matches!(created, Ok(Ok(()))) {
                    client
                        .send_notification::<notification::Progress>(ProgressParams {
                            token,
                            value: ProgressParamsValue::WorkDone(WorkDoneProgress::Begin(
                                WorkDoneProgressBegin {
                                    title,
                                    cancellable: Some(true),
                                    message: None,
                                    percentage: None,
                                },
                            )),
                        })
                        .await;
                    let _ = tx.send(true);
                }
            });
        }
        StepProgress {
            client: cx.client.clone(),
            shared: cx.shared.clone(),
            token,
            created: rx,
            ended: false,
        }
    }

    pub fn report(&self, message: String) {
        if !*self.created.borrow() {
            return;
        }
        let client = self.client.clone();
        let token = self.token.clone();
        tokio::spawn(async move {
            client
                .send_notification::<notification::Progress>(ProgressParams {
                    token,
                    value: ProgressParamsValue::WorkDone(WorkDoneProgress::Report(
                        WorkDoneProgressReport {
                            cancellable: Some(true),
                            message: Some(message),
                            percentage: None,
                        },
                    )),
                })
                .await;
        });
    }

    pub async fn end(mut self, message: String) {
        self.ended = true;
        self.finish(message).await;
    }

    /// Ends what began (the begin may still be on its way: wait a little for it).
    fn finish(&self, message: String) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.shared
            .progress_cancels
            .lock()
            .remove(&token_key(&self.token));
        let (client, token, mut created) = (
            self.client.clone(),
            self.token.clone(),
            self.created.clone(),
        );
        async move {
            let began = tokio::time::timeout(Duration::from_secs(2), created.wait_for(|c| *c))
                .await
                .is_ok_and(|r| r.is_ok());
            if began {
                client
                    .send_notification::<notification::Progress>(ProgressParams {
                        token,
                        value: ProgressParamsValue::WorkDone(WorkDoneProgress::End(
                            WorkDoneProgressEnd {
                                message: Some(message),
                            },
                        )),
                    })
                    .await;
            }
        }
    }
}

impl Drop for StepProgress {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let end = self.finish("cancelled".into());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(end);
        }
    }
}

pub fn token_key(token: &ProgressToken) -> String {
    match token {
        NumberOrString::Number(n) => n.to_string(),
        NumberOrString::String(s) => s.clone(),
    }
}

impl Ctx {
    /// The workspace root, or an error saying a workspace is needed.
    pub fn workspace_root(&self) -> Result<PathBuf> {
        self.shared
            .root()
            .ok_or_else(|| proto::invalid_params("Basis needs a workspace folder for this"))
    }

    /// The unsaved editor buffers inside the workspace: relative path → text.
    pub fn overlay(&self) -> HashMap<String, String> {
        let docs = self.shared.docs.lock();
        docs.iter()
            .filter_map(|(uri, doc)| {
                let inside = self.shared.locate_uri(uri).ok()?;
                Some((inside.rel, doc.rope.to_string()))
            })
            .collect()
    }

    /// Calls `f` with the workspace index and a reader of the workspace's files
    /// (unsaved buffers first) once the index's first build is done; before
    /// that, not at all: a skill that can answer without the index's context
    /// (edit, testgen) does not wait for it.
    pub fn with_index_if_ready<T>(
        &self,
        f: impl FnOnce(&basis_code::WorkspaceIndex, &dyn Fn(&str) -> Option<String>) -> T,
    ) -> Option<T> {
        let ws = self.shared.workspace()?;
        if !*self.shared.index_ready.borrow() {
            return None;
        }
        let overlay = self.overlay();
        let read = |p: &str| match overlay.get(p) {
            Some(t) => Some(t.clone()),
            None => ws.read(Path::new(p)),
        };
        Some(f(&self.shared.index.read(), &read))
    }

    /// A file's text: the open buffer, else the file on disk. Returns the
    /// workspace-relative path, the absolute (canonical) path and the text. A
    /// document outside the workspace (through a link or `..`, or opened from
    /// elsewhere) is refused with a message saying why, before anything is read.
    pub fn text_of(&self, uri: &Uri) -> Result<(String, PathBuf, String)> {
        let Inside { path, rel } = self
            .shared
            .locate_uri(uri.as_str())
            .map_err(proto::invalid_params)?;
        if let Some(rope) = self.shared.open_rope(uri.as_str()) {
            return Ok((rel, path, rope.to_string()));
        }
        let bytes = std::fs::read(&path)
            .map_err(|e| proto::invalid_params(format!("cannot read {}: {e}", path.display())))?;
        if basis_code::looks_binary(&bytes) {
            return Err(proto::invalid_params(format!(
                "{} looks like a binary file",
                path.display()
            )));
        }
        let text = String::from_utf8(bytes)
            .map_err(|_| proto::invalid_params(format!("{} is not UTF-8 text", path.display())))?;
        Ok((rel, path, text))
    }

    /// The file an answer would create or change, `rel` to the workspace: its
    /// canonical path and URI, or an error when it resolves outside (a folder
    /// linked out of the workspace, say). Every `WorkspaceEdit` target that is
    /// not the editor's own document goes through here.
    pub fn target(&self, rel: &str) -> Result<(PathBuf, Uri)> {
        let ws = self
            .shared
            .workspace()
            .ok_or_else(|| proto::invalid_params("Basis needs a workspace folder for this"))?;
        let inside = ws
            .locate(Path::new(rel))
            .map_err(|e| proto::invalid_params(e.to_string()))?;
        let uri = Uri::from_file_path(&inside.path)
            .ok_or_else(|| proto::internal(format!("{} has no file URI", inside.path.display())))?;
        Ok((inside.path, uri))
    }

    /// [`Ctx::run_skill`], and `on_partial` hears each new [`Skill::partial`]
    /// answer while the model writes; it has heard all of them when this returns.
    pub async fn run_skill_streaming<S, F, Fut>(
        &self,
        input: &S::Input,
        on_partial: Option<F>,
    ) -> Result<(S::Outcome, Arc<Served>)>
    where
        S: Skill,
        F: FnMut(String) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let Some(mut on_partial) = on_partial else {
            return self.run_skill::<S>(input).await;
        };
        let opts = self.skill_options::<S>();
        let task = input.clone();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let listener = tokio::spawn(async move {
            while let Some(p) = rx.recv().await {
                on_partial(p).await;
            }
        });
        let result = self
            .generate(&format!("Basis: {}", S::DOING), move |lm, on, cancelled| {
                S::run_streaming(
                    lm,
                    &task,
                    &opts,
                    on,
                    &mut |p| {
                        let _ = tx.send(p);
                    },
                    cancelled,
                )
            })
            .await;
        // The work (and with it the channel's sender) is gone: the partial
        // answers have all been heard once this ends.
        let _ = listener.await;
        result
    }

    /// A `basis/partial` sender for a command whose argument named a `partialToken`
    /// (`as_value` shapes each partial answer).
    pub fn partial_notifier(
        &self,
        token: Option<String>,
        as_value: fn(String) -> Value,
    ) -> Option<impl FnMut(String) -> BoxFuture + Send + 'static> {
        let token = token?;
        let client = self.client.clone();
        Some(move |p: String| {
            let client = client.clone();
            let params = crate::proto::Partial {
                token: token.clone(),
                value: as_value(p),
            };
            Box::pin(async move {
                client
                    .send_notification::<crate::backend::PartialNotification>(params)
                    .await;
            }) as BoxFuture
        })
    }

    /// A skill's options with the editor's sampling settings.
    fn skill_options<S: Skill>(&self) -> basis_skills::generate::Options {
        let settings = self.shared.settings.lock();
        S::default_options().sampled(settings.sampling.temperature, settings.sampling.seed)
    }

    /// Runs a skill's model work on the blocking pool, with `$/progress` and
    /// cancellation (of the request, or of the progress).
    pub async fn generate<T: Send + 'static>(
        &self,
        title: &str,
        work: impl FnOnce(
                &LanguageModel,
                &mut dyn FnMut(usize),
                &dyn Fn() -> bool,
            ) -> std::result::Result<T, SkillError>
            + Send
            + 'static,
    ) -> Result<(T, Arc<Served>)> {
        let served = self.shared.models.get().await.map_err(|e| {
            proto::internal(format!(
                "the model is not available: {}",
                basis_model::error::Causes(e.as_ref())
            ))
        })?;
        let cancel = Arc::new(AtomicBool::new(false));
        let _guard = CancelOnDrop(cancel.clone());
        let progress = StepProgress::start(self, title, cancel.clone());
        let turn = self
            .model_turn(|| progress.report("waiting for another request to finish".into()))
            .await?;
        if cancel.load(Ordering::Acquire) {
            progress.end("cancelled".into()).await;
            return Err(skill_error(SkillError::Cancelled));
        }
        let counters = &self.shared.counters;
        counters.generations_started.fetch_add(1, Ordering::Relaxed);
        let shared = self.shared.clone();
        let model = served.clone();
        let flag = cancel.clone();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
        let task = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let mut last = 0usize;
            let r = work(
                &model.lm,
                &mut |n| {
                    if n >= last + 16 {
                        last = n;
                        let _ = tx.send(n);
                    }
                },
                &|| flag.load(Ordering::Acquire),
            );
            let c = &shared.counters;
            match &r {
                Err(SkillError::Cancelled) => {
                    c.generations_cancelled.fetch_add(1, Ordering::Relaxed)
                }
                _ => c.generations_finished.fetch_add(1, Ordering::Relaxed),
            };
            r
        });
        let reporter = async {
            while let Some(n) = rx.recv().await {
                progress.report(format!("{n} tokens"));
            }
        };
        let (result, ()) = tokio::join!(task, reporter);
        let result = result.map_err(|e| proto::internal(format!("{title} failed: {e}")))?;
        let message = match &result {
            Ok(_) => "done".to_string(),
            Err(SkillError::Cancelled) => "cancelled".to_string(),
            Err(e) => format!("failed: {e}"),
        };
        progress.end(message).await;
        Ok((result.map_err(skill_error)?, served))
    }

    /// Runs skill `S` on `input` with the editor's sampling settings (see
    /// [`Ctx::generate`]).
    pub async fn run_skill<S: Skill>(&self, input: &S::Input) -> Result<(S::Outcome, Arc<Served>)> {
        let opts = self.skill_options::<S>();
        let task = input.clone();
        self.generate(&format!("Basis: {}", S::DOING), move |lm, on, cancelled| {
            S::run(lm, &task, &opts, on, cancelled)
        })
        .await
    }

    /// Stores a suggestion and returns its id once the store has it on disk, so
    /// that every suggestion id a client receives is in the store. A full queue
    /// drops it (counted) rather than making the user wait; a store that does not
    /// confirm within [`STORE_WAIT`] fails the request.
    pub async fn record(
        &self,
        skill: SkillId,
        generated: &Generated,
        served: &Served,
        file: Option<&str>,
    ) -> Result<String> {
        let cx = SuggestionContext {
            model_name: served.name.clone(),
            model_version: served.version.to_string(),
            workspace: self.shared.root().map(|r| r.display().to_string()),
            file: file.map(str::to_string),
            language: file
                .and_then(|f| Language::from_path(std::path::Path::new(f)))
                .map(|l| l.name().to_string()),
        };
        let s = generated.suggestion(skill, &cx);
        let id = s.id.clone();
        self.store_suggestion(s).await?;
        Ok(id)
    }

    async fn store_suggestion(&self, s: Suggestion) -> Result<()> {
        let Some(writer) = self.shared.feedback() else {
            return Ok(());
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
            return Ok(());
        }
        let written = bounded(&self.shared, STORE_WAIT, rx, || {
            format!(
                "the feedback store did not confirm the suggestion within {}s",
                STORE_WAIT.as_secs()
            )
        })
        .await?;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("recording a suggestion failed: {e}"),
            Err(_) => tracing::error!("the feedback writer stopped"),
        }
        Ok(())
    }

    /// The answer to a request whose suggestion `id` held no code: recorded as
    /// rejected, and an error saying so.
    pub fn no_code(&self, id: &str, message: &str) -> Error {
        self.shared.record_event(
            id,
            EventKind::Rejected {
                reason: "the answer held no code".into(),
            },
        );
        proto::internal(message)
    }

    /// Offers `edit` to the client. Without `preview`, it is sent as
    /// `workspace/applyEdit` at once ([`Ctx::apply_edit_then`]). With `preview`
    /// (a client that shows the change and asks first, and whose `applyEdit`
    /// handler cannot wait for the user), it waits in [`Shared::previews`]:
    /// `basis.accept` sends it then, `basis.reject` records the refusal, and one
    /// left unanswered for [`APPLY_EDIT_WAIT`] is rejected.
    pub fn offer_edit<F, Fut>(
        &self,
        preview: bool,
        label: String,
        edit: WorkspaceEdit,
        id: String,
        track: Option<(Uri, String)>,
        then: F,
    ) where
        F: FnOnce(Ctx) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        if !preview {
            return self.apply_edit_then(label, edit, id, track, then);
        }
        let pending = PendingEdit {
            label,
            edit,
            track,
            then: Box::new(move |cx| Box::pin(then(cx))),
        };
        self.shared.previews.lock().insert(id.clone(), pending);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            tokio::time::sleep(APPLY_EDIT_WAIT).await;
            if shared.previews.lock().remove(&id).is_some() {
                shared.record_event(
                    &id,
                    EventKind::Rejected {
                        reason: format!(
                            "the preview was not answered within {} s",
                            APPLY_EDIT_WAIT.as_secs()
                        ),
                    },
                );
            }
        });
    }

    /// `basis.accept {suggestionId}`: the previewed edit is sent as
    /// `workspace/applyEdit` (and recorded by the client's answer to it).
    pub fn accept_preview(&self, id: &str) -> Result<Value> {
        let p = self.take_preview(id)?;
        self.apply_edit_then(p.label, p.edit.clone(), id.to_string(), p.track, p.then);
        Ok(serde_json::json!({"suggestionId": id, "edit": p.edit}))
    }

    /// `basis.reject {suggestionId, reason?}`: the previewed edit is dropped and
    /// recorded as rejected (reason `dismissed` unless the client says more).
    pub fn reject_preview(&self, id: &str, reason: Option<String>) -> Result<Value> {
        self.take_preview(id)?;
        let reason = reason
            .filter(|r| !r.trim().is_empty())
            .unwrap_or_else(|| "dismissed".into());
        self.shared.record_event(id, EventKind::Rejected { reason });
        Ok(serde_json::json!({"suggestionId": id}))
    }

    fn take_preview(&self, id: &str) -> Result<PendingEdit> {
        self.shared.previews.lock().remove(id).ok_or_else(|| {
            proto::invalid_params(format!(
                "no previewed edit of suggestion `{id}` is waiting (it was answered \
                 already, or not answered within {} s)",
                APPLY_EDIT_WAIT.as_secs()
            ))
        })
    }

    /// Sends `edit` as `workspace/applyEdit` from a task (a handler never waits
    /// on the client) and records the answer; `then` runs once it was applied.
    /// An edit the client leaves unanswered for [`APPLY_EDIT_WAIT`] is rejected.
    pub fn apply_edit_then<F, Fut>(
        &self,
        label: String,
        edit: WorkspaceEdit,
        id: String,
        track: Option<(Uri, String)>,
        then: F,
    ) where
        F: FnOnce(Ctx) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let cx = self.clone();
        tokio::spawn(async move {
            let answer = tokio::time::timeout(
                APPLY_EDIT_WAIT,
                cx.client
                    .send_request::<request::ApplyWorkspaceEdit>(ApplyWorkspaceEditParams {
                        edit,
                        label: Some(label),
                    }),
            )
            .await;
            // A client that previews the edit answers `applied: false` with a
            // `failureReason` (e.g. "dismissed") when the user turns it down.
            let (applied, reason) = match answer {
                Ok(Ok(r)) => (r.applied, r.failure_reason),
                Ok(Err(e)) => {
                    tracing::info!("workspace/applyEdit failed: {e}");
                    (false, None)
                }
                Err(_) => {
                    tracing::info!("workspace/applyEdit got no answer");
                    (false, None)
                }
            };
            if applied {
                if let Some((uri, text)) = &track {
                    cx.shared
                        .tracker
                        .lock()
                        .track(&id, uri.as_str(), text, Instant::now());
                }
                cx.shared.record_event(&id, EventKind::Accepted);
                then(cx).await;
            } else {
                cx.shared.record_event(
                    &id,
                    EventKind::Rejected {
                        reason: reason
                            .filter(|r| !r.trim().is_empty())
                            .unwrap_or_else(|| "the edit was not applied".into()),
                    },
                );
            }
        });
    }

    /// Publishes the skills' diagnostics of each URI.
    pub async fn publish(&self, uris: Vec<String>) {
        for uri in uris {
            let diags = self.shared.diagnostics.lock().all(&uri);
            if let Ok(u) = uri.parse::<Uri>() {
                self.client.publish_diagnostics(u, diags, None).await;
            }
        }
    }

    /// Shows a message in the editor.
    pub async fn tell(&self, ok: bool, message: String) {
        let kind = if ok {
            MessageType::INFO
        } else {
            MessageType::WARNING
        };
        self.client.show_message(kind, message).await;
    }
}
