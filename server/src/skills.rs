//! The four skills in the editor: edit, testgen, reproduce and review, as code
//! actions and `workspace/executeCommand` commands.
//!
//! | command | arguments | what happens |
//! |---|---|---|
//! | `basis.edit` | `{uri, range, instruction}` | the edit is computed, then sent as `workspace/applyEdit` |
//! | `basis.testgen` | `{uri, position}` | tests for the function at `position` are written (`applyEdit`), then run in the sandbox; the result comes as a message and an `executed` feedback event |
//! | `basis.reproduce` | `"issue"` or `{issue}` | a test is written and run in the sandbox; the answer says whether it reproduces; the test file is created with `applyEdit` |
//! | `basis.review` | `{intent?, base?}` or nothing | the uncommitted changes (unsaved buffers included) against git `base` (default `HEAD`) are reviewed; comments become diagnostics (source `basis`) on the changed hunks |
//! | `basis.reviewFeedback` | `{suggestionId, uri, index, kind}` | a review quick fix was applied (`accepted`) or the comment dismissed (`rejected`) |
//!
//! Code actions: on a selection, "Basis: edit…" (the client asks for the
//! instruction and adds it to the command's argument); inside a function,
//! "Basis: generate tests for `f`"; on a `basis` diagnostic, "apply the
//! suggested change" (when the comment proposes one) and "dismiss".
//!
//! Every generation and sandbox run shows `$/progress` (cancellable) and stops
//! when the request or the progress is cancelled. Every suggestion is stored with
//! its model version and log-probs before the client hears of it; what the client
//! does with an `applyEdit` is recorded as `accepted` or `rejected`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use basis_code::Language;
use basis_feedback::{Event, EventKind};
use basis_model::LanguageModel;
use basis_skills::generate::{Context as SuggestionContext, Generated};
use basis_skills::sandbox::Sandbox;
use basis_skills::{edit, reproduce, review, runner, testgen, Skill, SkillError, SkillId};
use ropey::Rope;
use serde::Deserialize;
use serde_json::{json, Value};
use tower_lsp_server::jsonrpc::{Error, Result};
use tower_lsp_server::ls_types::*;

use crate::backend::{now_ms, Backend, CancelOnDrop};
use crate::model_host::Served;
use crate::position::{from_byte, from_char, to_char};
use crate::proto;

pub const COMMAND_EDIT: &str = "basis.edit";
pub const COMMAND_TESTGEN: &str = "basis.testgen";
pub const COMMAND_REPRODUCE: &str = "basis.reproduce";
pub const COMMAND_REVIEW: &str = "basis.review";
pub const COMMAND_REVIEW_FEEDBACK: &str = "basis.reviewFeedback";

/// The `source` of review diagnostics.
pub const SOURCE: &str = "basis";

static PROGRESS_IDS: AtomicU64 = AtomicU64::new(1);

/// A copy of the sandbox whose runs stop when the returned flag is raised.
fn cancellable_sandbox() -> (Sandbox, Arc<AtomicBool>) {
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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EditArgs {
    uri: Uri,
    range: Range,
    instruction: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TestgenArgs {
    uri: Uri,
    position: Position,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ReviewArgs {
    intent: Option<String>,
    base: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewFeedbackArgs {
    suggestion_id: String,
    uri: Uri,
    index: usize,
    kind: String,
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
    fn all(&self, uri: &str) -> Vec<Diagnostic> {
        let mut v = self.review.get(uri).cloned().unwrap_or_default();
        v.extend(self.test_failures.get(uri).cloned().unwrap_or_default());
        v
    }
}

fn arg<T: for<'de> Deserialize<'de>>(args: Vec<Value>, command: &str) -> Result<T> {
    let first = args
        .into_iter()
        .next()
        .ok_or_else(|| proto::invalid_params(format!("{command} needs an argument")))?;
    serde_json::from_value(first).map_err(|e| proto::invalid_params(format!("{command}: {e}")))
}

fn skill_error(e: SkillError) -> Error {
    match e {
        SkillError::Cancelled => Error::request_cancelled(),
        SkillError::Input(m) => proto::invalid_params(m),
        e => proto::internal(e),
    }
}

/// `$/progress` of one long step; nothing is sent when the client does not
/// support it or has not answered the create request yet.
struct StepProgress {
    client: tower_lsp_server::Client,
    token: ProgressToken,
    created: tokio::sync::watch::Receiver<bool>,
}

impl StepProgress {
    /// Starts a progress the client may cancel, which raises `cancel`.
    fn start(backend: &Backend, title: &str, cancel: Arc<AtomicBool>) -> StepProgress {
        let token = NumberOrString::String(format!(
            "basis/skill/{}",
            PROGRESS_IDS.fetch_add(1, Ordering::Relaxed)
        ));
        let (tx, rx) = tokio::sync::watch::channel(false);
        let supported = *backend.shared.progress_supported.lock().unwrap();
        if supported {
            backend
                .shared
                .progress_cancels
                .lock()
                .unwrap()
                .insert(token_key(&token), cancel);
            let client = backend.client.clone();
            let token = token.clone();
            let title = title.to_string();
            tokio::spawn(async move {
                if client
                    .create_work_done_progress(token.clone())
                    .await
                    .is_ok()
                {
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
            client: backend.client.clone(),
            token,
            created: rx,
        }
    }

    fn report(&self, message: String) {
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

    async fn end(self, backend: &Backend, message: String) {
        backend
            .shared
            .progress_cancels
            .lock()
            .unwrap()
            .remove(&token_key(&self.token));
        let mut created = self.created.clone();
        // The begin may still be on its way; end only what began.
        let began =
            tokio::time::timeout(std::time::Duration::from_secs(2), created.wait_for(|c| *c))
                .await
                .is_ok_and(|r| r.is_ok());
        if began {
            self.client
                .send_notification::<notification::Progress>(ProgressParams {
                    token: self.token,
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

pub fn token_key(token: &ProgressToken) -> String {
    match token {
        NumberOrString::Number(n) => n.to_string(),
        NumberOrString::String(s) => s.clone(),
    }
}

impl Backend {
    /// The workspace root, or an error saying a workspace is needed.
    fn workspace_root(&self) -> Result<PathBuf> {
        self.shared
            .root()
            .ok_or_else(|| proto::invalid_params("Basis needs a workspace folder for this"))
    }

    /// The unsaved editor buffers inside the workspace: relative path → text.
    fn overlay(&self) -> HashMap<String, String> {
        let docs = self.shared.docs.lock().unwrap();
        docs.iter()
            .filter_map(|(uri, doc)| {
                let uri: Uri = uri.parse().ok()?;
                let path = uri.to_file_path()?;
                let rel = self.shared.relative_path(&path)?;
                Some((rel, doc.rope.to_string()))
            })
            .collect()
    }

    /// A file's text: the open buffer, else the file on disk.
    fn text_of(&self, uri: &Uri) -> Result<(String, PathBuf, String)> {
        let path = uri
            .to_file_path()
            .map(|p| p.into_owned())
            .ok_or_else(|| proto::invalid_params(format!("{} is not a file", uri.as_str())))?;
        let rel = self.shared.relative_path(&path).ok_or_else(|| {
            proto::invalid_params(format!("{} is outside the workspace", path.display()))
        })?;
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

    /// Runs a skill's model work on the blocking pool, with `$/progress` and
    /// cancellation (of the request, or of the progress).
    pub(crate) async fn generate<T: Send + 'static>(
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
        let served = self
            .shared
            .models
            .get()
            .await
            .map_err(|e| proto::internal(format!("the model is not available: {e:#}")))?;
        let cancel = Arc::new(AtomicBool::new(false));
        let _guard = CancelOnDrop(cancel.clone());
        let progress = StepProgress::start(self, title, cancel.clone());
        let counters = &self.shared.counters;
        counters.generations_started.fetch_add(1, Ordering::Relaxed);
        let shared = self.shared.clone();
        let model = served.clone();
        let flag = cancel.clone();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
        let task = tokio::task::spawn_blocking(move || {
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
        let title_owned = title.to_string();
        let reporter = async {
            while let Some(n) = rx.recv().await {
                progress.report(format!("{n} tokens"));
            }
        };
        let (result, ()) = tokio::join!(task, reporter);
        let result = result.map_err(|e| proto::internal(format!("{title_owned} failed: {e}")))?;
        let message = match &result {
            Ok(_) => "done".to_string(),
            Err(SkillError::Cancelled) => "cancelled".to_string(),
            Err(e) => format!("failed: {e}"),
        };
        progress.end(self, message).await;
        Ok((result.map_err(skill_error)?, served))
    }

    /// Stores a suggestion (waiting until it is on disk) and returns its id.
    pub(crate) async fn record(
        &self,
        skill: SkillId,
        generated: &Generated,
        served: &Served,
        file: Option<&str>,
    ) -> String {
        let cx = SuggestionContext {
            model_name: served.name.clone(),
            model_version: served.version.to_string(),
            workspace: self.shared.root().map(|r| r.display().to_string()),
            file: file.map(str::to_string),
            language: file
                .and_then(|f| Language::from_path(Path::new(f)))
                .map(|l| l.name().to_string()),
        };
        let s = generated.suggestion(skill, &cx);
        let id = s.id.clone();
        self.store_suggestion(s).await;
        id
    }

    /// Runs skill `S` on `input` with the editor's sampling settings (see
    /// [`Backend::generate`]).
    async fn run_skill<S: Skill>(&self, input: &S::Input) -> Result<(S::Outcome, Arc<Served>)> {
        let opts = {
            let settings = self.shared.settings.lock().unwrap();
            S::default_options().sampled(settings.sampling.temperature, settings.sampling.seed)
        };
        let task = input.clone();
        self.generate(&format!("Basis: {}", S::DOING), move |lm, on, cancelled| {
            S::run(lm, &task, &opts, on, cancelled)
        })
        .await
    }

    /// The answer to a request whose suggestion `id` held no code: recorded as
    /// rejected, and an error saying so.
    fn no_code(&self, id: &str, message: &str) -> Error {
        self.record_event(
            id,
            EventKind::Rejected {
                reason: "the answer held no code".into(),
            },
        );
        proto::internal(message)
    }

    fn record_event(&self, suggestion_id: &str, kind: EventKind) {
        if let Some(w) = self.shared.feedback() {
            w.record_event(Event {
                suggestion_id: suggestion_id.to_string(),
                time_ms: now_ms(),
                kind,
            });
        }
    }

    /// Sends `edit` as `workspace/applyEdit` from a task (a handler never waits
    /// on the client) and records the answer; `then` runs once it was applied.
    fn apply_edit_then<F, Fut>(
        &self,
        label: String,
        edit: WorkspaceEdit,
        id: String,
        track: Option<(Uri, String)>,
        then: F,
    ) where
        F: FnOnce(Backend) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let backend = Backend {
            client: self.client.clone(),
            shared: self.shared.clone(),
        };
        tokio::spawn(async move {
            let applied = match backend
                .client
                .send_request::<request::ApplyWorkspaceEdit>(ApplyWorkspaceEditParams {
                    edit,
                    label: Some(label),
                })
                .await
            {
                Ok(r) => r.applied,
                Err(e) => {
                    tracing::info!("workspace/applyEdit failed: {e}");
                    false
                }
            };
            if applied {
                if let Some((uri, text)) = &track {
                    backend.shared.tracker.lock().unwrap().track(
                        &id,
                        uri.as_str(),
                        text,
                        Instant::now(),
                    );
                }
                backend.record_event(&id, EventKind::Accepted);
                then(backend).await;
            } else {
                backend.record_event(
                    &id,
                    EventKind::Rejected {
                        reason: "the edit was not applied".into(),
                    },
                );
            }
        });
    }

    /// `basis.edit`.
    async fn edit_command(&self, args: Vec<Value>) -> Result<Value> {
        let a: EditArgs = arg(args, COMMAND_EDIT)?;
        let instruction = a
            .instruction
            .filter(|i| !i.trim().is_empty())
            .ok_or_else(|| {
                proto::invalid_params("basis.edit needs an `instruction`: say what to change")
            })?;
        let (rel, _path, text) = self.text_of(&a.uri)?;
        let rope = Rope::from_str(&text);
        let enc = self.shared.encoding();
        let byte = |p: Position| {
            let (c, ok) = to_char(&rope, p, enc);
            (rope.char_to_byte(c), ok)
        };
        let ((start_byte, ok1), (end_byte, ok2)) = (byte(a.range.start), byte(a.range.end));
        if !ok1 || !ok2 || start_byte > end_byte {
            return Err(proto::invalid_params(format!(
                "the range {:?} is not inside {}",
                a.range,
                a.uri.as_str()
            )));
        }
        let input = edit::Input {
            path: rel.clone(),
            text,
            start_byte,
            end_byte,
            instruction,
        };
        input.validate().map_err(skill_error)?;
        let (outcome, served) = self.run_skill::<edit::EditSkill>(&input).await?;
        // The range is stale if the buffer changed while the model wrote.
        if let Some(rope) = self.shared.open_rope(a.uri.as_str()) {
            if rope != input.text.as_str() {
                return Err(Error::content_modified());
            }
        }
        let id = self
            .record(SkillId::Edit, &outcome.generated, &served, Some(&rel))
            .await;
        let Some(replacement) = outcome.replacement else {
            return Err(self.no_code(
                &id,
                "the model's answer held no code; try rephrasing the instruction",
            ));
        };
        let range = Range::new(
            from_byte(&rope, start_byte, enc),
            from_byte(&rope, end_byte, enc),
        );
        let workspace_edit = text_edit(&a.uri, range, replacement.clone());
        self.apply_edit_then(
            "Basis: edit".into(),
            workspace_edit.clone(),
            id.clone(),
            Some((a.uri.clone(), replacement.clone())),
            |_| async {},
        );
        Ok(json!({
            "suggestionId": id,
            "modelVersion": served.version.to_string(),
            "edit": workspace_edit,
            "replacement": replacement,
        }))
    }

    /// `basis.testgen`.
    async fn testgen_command(&self, args: Vec<Value>) -> Result<Value> {
        let a: TestgenArgs = arg(args, COMMAND_TESTGEN)?;
        let (rel, _path, text) = self.text_of(&a.uri)?;
        let language = testgen::language_of(&rel).map_err(skill_error)?;
        let rope = Rope::from_str(&text);
        let enc = self.shared.encoding();
        let offset = rope.char_to_byte(to_char(&rope, a.position, enc).0);
        let function = testgen::function_at(language, &text, offset)
            .ok_or_else(|| proto::invalid_params("there is no function at this position"))?;
        let symbol = match &function.container {
            Some(c)
                if testgen::find_function(language, &text, &function.name)
                    .map(|f| f.start_byte)
                    != Some(function.start_byte) =>
            {
                format!("{c}.{}", function.name)
            }
            _ => function.name.clone(),
        };
        let input = testgen::Input {
            path: rel.clone(),
            text,
            symbol,
        };
        let (outcome, served) = self.run_skill::<testgen::TestgenSkill>(&input).await?;
        let id = self
            .record(SkillId::Testgen, &outcome.generated, &served, Some(&rel))
            .await;
        let Some(tests) = outcome.tests else {
            return Err(self.no_code(&id, "the model's answer held no test code"));
        };
        let root = self.workspace_root()?;
        let test_rel = testgen::test_path(language, &rel);
        let test_path = root.join(&test_rel);
        let test_uri = Uri::from_file_path(&test_path)
            .ok_or_else(|| proto::internal(format!("no URI for {}", test_path.display())))?;
        let existing = match self.shared.open_rope(test_uri.as_str()) {
            Some(r) => Some(r.to_string()),
            None => std::fs::read_to_string(&test_path).ok(),
        };
        let placement = testgen::place(language, &input, &tests, existing.as_deref());
        let workspace_edit = insertion_edit(
            &test_uri,
            existing.as_deref(),
            placement.insert_at,
            &placement.inserted,
            enc,
        );
        let run_ctx = TestRun {
            id: id.clone(),
            language,
            placement: placement.clone(),
            root,
        };
        self.apply_edit_then(
            "Basis: generate tests".into(),
            workspace_edit.clone(),
            id.clone(),
            Some((test_uri.clone(), placement.inserted.clone())),
            move |backend| async move { backend.run_generated_tests(run_ctx).await },
        );
        Ok(json!({
            "suggestionId": id,
            "modelVersion": served.version.to_string(),
            "testFile": test_uri,
            "edit": workspace_edit,
        }))
    }

    /// Runs tests the user accepted, in the sandbox, and reports the outcome as a
    /// message and an `executed` event.
    async fn run_generated_tests(&self, run: TestRun) {
        let mut overlay = self.overlay();
        overlay.insert(run.placement.path.clone(), run.placement.new_text.clone());
        let (sb, cancel) = cancellable_sandbox();
        let progress = StepProgress::start(self, "Basis: running the tests in the sandbox", cancel);
        let target = testgen::target(run.language, &run.placement);
        let (root, language) = (run.root.clone(), run.language);
        let result = tokio::task::spawn_blocking(move || {
            runner::run_tests(&sb, &root, &overlay, language, target.as_deref())
        })
        .await;
        let cancelled = matches!(&result, Ok(Ok(r)) if r.outcome.cancelled);
        if let Ok(Ok(report)) = &result {
            if !cancelled {
                let test_file = run.root.join(&run.placement.path);
                let failures = report.failures(run.language);
                self.publish_test_failures(&run.root, &test_file, failures)
                    .await;
            }
        }
        let (passed, message) = match result {
            Ok(Ok(report)) => (report.passed(), format!("Basis: {}", report.summary())),
            Ok(Err(e)) => (false, format!("Basis: the tests could not run: {e}")),
            Err(e) => (false, format!("Basis: the test run failed: {e}")),
        };
        progress.end(self, message.clone()).await;
        // A run the user stopped says nothing about the tests.
        if !cancelled {
            self.record_event(
                &run.id,
                EventKind::Executed {
                    passed,
                    summary: message.clone(),
                },
            );
        }
        let kind = if passed {
            MessageType::INFO
        } else {
            MessageType::WARNING
        };
        self.client.show_message(kind, message).await;
    }

    /// Replaces the test-failure diagnostics with `failures` (errors on the lines
    /// where the tests failed); `test_file`'s are published even when empty.
    async fn publish_test_failures(
        &self,
        root: &Path,
        test_file: &Path,
        failures: Vec<runner::Failure>,
    ) {
        let mut per_file: HashMap<String, Vec<Diagnostic>> = HashMap::new();
        for f in failures {
            let Some(uri) = Uri::from_file_path(root.join(&f.path)) else {
                continue;
            };
            let line = f.line as u32;
            let test = if f.test.is_empty() {
                "a test".to_string()
            } else {
                format!("`{}`", f.test)
            };
            per_file
                .entry(uri.as_str().to_string())
                .or_default()
                .push(Diagnostic {
                    range: Range::new(Position::new(line, 0), Position::new(line + 1, 0)),
                    severity: Some(DiagnosticSeverity::ERROR),
                    source: Some(SOURCE.into()),
                    message: format!("{test} failed: {}", f.message),
                    ..Default::default()
                });
        }
        let uris: Vec<String> = {
            let mut state = self.shared.diagnostics.lock().unwrap();
            let mut uris: Vec<String> = state.test_failures.keys().cloned().collect();
            uris.extend(per_file.keys().cloned());
            uris.extend(Uri::from_file_path(test_file).map(|u| u.as_str().to_string()));
            uris.sort();
            uris.dedup();
            state.test_failures = per_file;
            uris
        };
        self.publish(uris).await;
    }

    /// `basis.reproduce`.
    async fn reproduce_command(&self, args: Vec<Value>) -> Result<Value> {
        let issue = match args.into_iter().next() {
            Some(Value::String(s)) => s,
            Some(v) => v
                .get("issue")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| proto::invalid_params("basis.reproduce needs {issue}"))?,
            None => {
                return Err(proto::invalid_params(
                    "basis.reproduce needs the issue text as its argument",
                ))
            }
        };
        if issue.trim().is_empty() {
            return Err(proto::invalid_params(
                "the issue text is empty; describe the problem",
            ));
        }
        let root = self.workspace_root()?;
        self.wait_for_index().await;
        let overlay = self.overlay();
        let input = {
            let index = self.shared.index.read().unwrap();
            reproduce::input_for(&index, &root, &issue, 3, &|p| match overlay.get(p) {
                Some(t) => Some(t.clone()),
                None => std::fs::read_to_string(root.join(p)).ok(),
            })
        };
        if input.context.is_empty() {
            return Err(proto::invalid_params(
                "nothing in the workspace matches the issue",
            ));
        }
        let (outcome, served) = self.run_skill::<reproduce::ReproduceSkill>(&input).await?;
        let id = self
            .record(
                SkillId::Reproduce,
                &outcome.generated,
                &served,
                Some(&outcome.path),
            )
            .await;
        let Some(test) = outcome.test else {
            return Err(self.no_code(&id, "the model's answer held no test code"));
        };
        let (sb, cancel) = cancellable_sandbox();
        let _guard = CancelOnDrop(cancel.clone());
        let progress = StepProgress::start(
            self,
            "Basis: running the reproduction in the sandbox",
            cancel,
        );
        let (language, path, test_for_run, root_for_run) = (
            outcome.language,
            outcome.path.clone(),
            test.clone(),
            root.clone(),
        );
        let checked = tokio::task::spawn_blocking(move || {
            reproduce::check(&sb, &root_for_run, &overlay, language, &path, &test_for_run)
        })
        .await
        .map_err(proto::internal)?;
        let (verdict, report) = match checked {
            Ok(r) => r,
            Err(e) => {
                progress.end(self, format!("failed: {e}")).await;
                return Err(proto::internal(format!(
                    "the reproduction could not run: {e}"
                )));
            }
        };
        if report.outcome.cancelled {
            progress.end(self, "cancelled".into()).await;
            return Err(Error::request_cancelled());
        }
        let reproduced = verdict == reproduce::Verdict::Failed;
        let message = verdict.describe();
        progress.end(self, message.clone()).await;
        self.record_event(
            &id,
            EventKind::Executed {
                passed: reproduced,
                summary: message.clone(),
            },
        );
        let test_path = root.join(&outcome.path);
        let test_uri = Uri::from_file_path(&test_path)
            .ok_or_else(|| proto::internal(format!("no URI for {}", test_path.display())))?;
        let existing = std::fs::read_to_string(&test_path).ok();
        let workspace_edit = replace_file_edit(
            &test_uri,
            existing.as_deref(),
            &test,
            self.shared.encoding(),
        );
        self.apply_edit_then(
            "Basis: reproduction test".into(),
            workspace_edit,
            id.clone(),
            Some((test_uri.clone(), test.clone())),
            |_| async {},
        );
        self.client
            .show_message(
                if reproduced {
                    MessageType::INFO
                } else {
                    MessageType::WARNING
                },
                format!("Basis: {message}"),
            )
            .await;
        let output = report.output_tail(40);
        Ok(json!({
            "suggestionId": id,
            "modelVersion": served.version.to_string(),
            "testFile": test_uri,
            "test": test,
            "reproduced": reproduced,
            "verdict": verdict,
            "message": message,
            "output": output,
        }))
    }

    /// `basis.review`.
    pub(crate) async fn review_command(&self, args: Vec<Value>) -> Result<Value> {
        let a: ReviewArgs = match args.into_iter().next() {
            None | Some(Value::Null) => ReviewArgs::default(),
            Some(v) => serde_json::from_value(v)
                .map_err(|e| proto::invalid_params(format!("basis.review: {e}")))?,
        };
        let root = self.workspace_root()?;
        let base = a.base.unwrap_or_else(|| "HEAD".into());
        let overlay = self.overlay();
        let (root_for_git, base_for_git) = (root.clone(), base.clone());
        let changes = tokio::task::spawn_blocking(move || {
            basis_skills::git::changes(&root_for_git, &base_for_git, &overlay)
        })
        .await
        .map_err(proto::internal)?
        .map_err(proto::invalid_params)?;
        if changes.is_empty() {
            self.publish_review(&root, HashMap::new()).await;
            return Ok(
                json!({"verdict": null, "comments": [], "message": format!("nothing changed against {base}")}),
            );
        }
        let intent = a
            .intent
            .filter(|i| !i.trim().is_empty())
            .unwrap_or_else(|| review::NO_INTENT.to_string());
        let input = review::Input { intent, changes };
        let (outcome, served) = self.run_skill::<review::ReviewSkill>(&input).await?;
        let id = self
            .record(SkillId::Review, &outcome.generated, &served, None)
            .await;
        let enc = self.shared.encoding();
        let mut per_file: HashMap<Uri, Vec<Diagnostic>> = HashMap::new();
        let mut comments = Vec::new();
        for (path, d) in review_diagnostics(&outcome.review, &input, &id, enc) {
            let Some(uri) = Uri::from_file_path(root.join(&path)) else {
                continue;
            };
            let suggestion = d.data.as_ref().and_then(|v| v.get("suggestion")).cloned();
            comments.push(json!({"uri": uri, "range": d.range, "message": d.message, "suggestion": suggestion}));
            per_file.entry(uri).or_default().push(d);
        }
        self.publish_review(&root, per_file).await;
        let verdict = match outcome.review.verdict {
            Some(true) => "YES",
            _ => "NO",
        };
        let note = if outcome.review.verdict.is_none() {
            " (the model gave no verdict)"
        } else {
            ""
        };
        let message = format!(
            "Basis review: {verdict}{note}, {} comment(s)",
            comments.len()
        );
        self.client
            .show_message(
                if verdict == "YES" {
                    MessageType::INFO
                } else {
                    MessageType::WARNING
                },
                message.clone(),
            )
            .await;
        Ok(json!({
            "suggestionId": id,
            "modelVersion": served.version.to_string(),
            "verdict": verdict,
            "comments": comments,
            "summary": outcome.review.summary,
            "message": message,
        }))
    }

    /// Replaces the review diagnostics: files reviewed before and not now are cleared.
    async fn publish_review(&self, _root: &Path, per_file: HashMap<Uri, Vec<Diagnostic>>) {
        let old: Vec<String> = {
            let mut state = self.shared.diagnostics.lock().unwrap();
            let old = state.review.keys().cloned().collect();
            state.review = per_file
                .iter()
                .map(|(u, d)| (u.as_str().to_string(), d.clone()))
                .collect();
            old
        };
        let mut uris: Vec<String> = old;
        uris.extend(per_file.keys().map(|u| u.as_str().to_string()));
        uris.sort();
        uris.dedup();
        self.publish(uris).await;
    }

    /// Publishes the skills' diagnostics of each URI.
    async fn publish(&self, uris: Vec<String>) {
        for uri in uris {
            let diags = self.shared.diagnostics.lock().unwrap().all(&uri);
            if let Ok(u) = uri.parse::<Uri>() {
                self.client.publish_diagnostics(u, diags, None).await;
            }
        }
    }

    /// `basis.reviewFeedback`: a review comment's quick fix was applied, or the
    /// comment dismissed. A dismissed comment's diagnostic goes away.
    async fn review_feedback_command(&self, args: Vec<Value>) -> Result<Value> {
        let a: ReviewFeedbackArgs = arg(args, COMMAND_REVIEW_FEEDBACK)?;
        let kind = match a.kind.as_str() {
            "accepted" => EventKind::Accepted,
            "rejected" => EventKind::Rejected {
                reason: "dismissed".into(),
            },
            other => {
                return Err(proto::invalid_params(format!(
                    "unknown kind `{other}` (accepted, rejected)"
                )))
            }
        };
        self.record_event(&a.suggestion_id, kind);
        if let Some(diags) = self
            .shared
            .diagnostics
            .lock()
            .unwrap()
            .review
            .get_mut(a.uri.as_str())
        {
            diags.retain(|d| {
                d.data
                    .as_ref()
                    .and_then(|v| v.get("index"))
                    .and_then(Value::as_u64)
                    != Some(a.index as u64)
            });
        }
        self.publish(vec![a.uri.as_str().to_string()]).await;
        Ok(Value::Null)
    }

    /// Runs one of this module's commands; `None` when `command` is not one.
    pub(crate) async fn skill_command(
        &self,
        command: &str,
        args: Vec<Value>,
    ) -> Option<Result<Option<Value>>> {
        let r = match command {
            COMMAND_EDIT => self.edit_command(args).await,
            COMMAND_TESTGEN => self.testgen_command(args).await,
            COMMAND_REPRODUCE => self.reproduce_command(args).await,
            COMMAND_REVIEW => self.review_command(args).await,
            COMMAND_REVIEW_FEEDBACK => self.review_feedback_command(args).await,
            _ => return None,
        };
        Some(r.map(Some))
    }

    /// `textDocument/codeAction`.
    pub(crate) async fn skill_code_actions(
        &self,
        params: CodeActionParams,
    ) -> Result<Option<CodeActionResponse>> {
        let uri = params.text_document.uri;
        let mut actions: Vec<CodeActionOrCommand> = Vec::new();
        // Quick fixes on review comments.
        let diags: Vec<Diagnostic> = {
            let state = self.shared.diagnostics.lock().unwrap();
            state.review.get(uri.as_str()).cloned().unwrap_or_default()
        };
        actions.extend(review_actions(&uri, &params.context.diagnostics, &diags));
        // Edit a selection.
        if params.range.start != params.range.end {
            actions.push(CodeActionOrCommand::CodeAction(CodeAction {
                title: "Basis: edit…".into(),
                kind: Some(CodeActionKind::REFACTOR_REWRITE),
                command: Some(Command {
                    title: "Basis: edit…".into(),
                    command: COMMAND_EDIT.into(),
                    arguments: Some(vec![json!({"uri": uri, "range": params.range})]),
                }),
                ..Default::default()
            }));
        }
        // Tests for the function under the cursor.
        if let Some(rope) = self.shared.open_rope(uri.as_str()) {
            let language = uri.to_file_path().and_then(|p| Language::from_path(&p));
            if let Some(language) = language {
                let text = rope.to_string();
                let enc = self.shared.encoding();
                let offset = rope.char_to_byte(to_char(&rope, params.range.start, enc).0);
                if let Some(f) = testgen::function_at(language, &text, offset) {
                    actions.push(CodeActionOrCommand::CodeAction(CodeAction {
                        title: format!("Basis: generate tests for `{}`", f.name),
                        kind: Some(CodeActionKind::new("source.basis.testgen")),
                        command: Some(Command {
                            title: format!("Basis: generate tests for `{}`", f.name),
                            command: COMMAND_TESTGEN.into(),
                            arguments: Some(vec![
                                json!({"uri": uri, "position": params.range.start}),
                            ]),
                        }),
                        ..Default::default()
                    }));
                }
            }
        }
        Ok(Some(actions))
    }
}

/// The diagnostics of a review's comments, with the file each is on: a
/// warning over the commented line (a changed line), its `data` holding the
/// suggestion id, the comment's index and its proposed replacement.
pub fn review_diagnostics(
    review: &review::Review,
    input: &review::Input,
    suggestion_id: &str,
    enc: crate::position::Encoding,
) -> Vec<(String, Diagnostic)> {
    let mut out = Vec::new();
    for (i, c) in review.comments.iter().enumerate() {
        let text = input
            .changes
            .iter()
            .find(|f| f.path == c.path)
            .map(|f| f.new.as_str())
            .unwrap_or("");
        let rope = Rope::from_str(text);
        let line = c.line.min(rope.len_lines().saturating_sub(1));
        let line_text = rope.line(line).to_string();
        let line_len = line_text.trim_end_matches(['\n', '\r']).chars().count();
        let end = from_char(&rope, rope.line_to_char(line) + line_len, enc);
        let range = Range::new(Position::new(line as u32, 0), end);
        out.push((
            c.path.clone(),
            Diagnostic {
                range,
                severity: Some(DiagnosticSeverity::WARNING),
                source: Some(SOURCE.into()),
                message: c.message.clone(),
                data: Some(
                    json!({"suggestionId": suggestion_id, "index": i, "suggestion": c.suggestion}),
                ),
                ..Default::default()
            },
        ));
    }
    out
}

/// The quick fixes of the review diagnostics a client sent (`context`) that the
/// server published (`known`): apply the proposed replacement of the line, when
/// there is one, and dismiss; both tell `basis.reviewFeedback` what the user did.
pub fn review_actions(
    uri: &Uri,
    context: &[Diagnostic],
    known: &[Diagnostic],
) -> Vec<CodeActionOrCommand> {
    let mut actions = Vec::new();
    for d in context
        .iter()
        .filter(|d| d.source.as_deref() == Some(SOURCE))
    {
        let Some(known) = known
            .iter()
            .find(|k| k.range == d.range && k.message == d.message)
        else {
            continue;
        };
        let data = known.data.clone().unwrap_or(Value::Null);
        let id = data
            .get("suggestionId")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
        let feedback = |kind: &str| Command {
            title: format!("Basis: record {kind}"),
            command: COMMAND_REVIEW_FEEDBACK.into(),
            arguments: Some(vec![
                json!({"suggestionId": id, "uri": uri, "index": index, "kind": kind}),
            ]),
        };
        if let Some(suggestion) = data.get("suggestion").and_then(Value::as_str) {
            let mut text = suggestion.to_string();
            if !text.ends_with('\n') {
                text.push('\n');
            }
            let line = d.range.start.line;
            let range = Range::new(Position::new(line, 0), Position::new(line + 1, 0));
            actions.push(CodeActionOrCommand::CodeAction(CodeAction {
                title: "Basis: apply the suggested change".into(),
                kind: Some(CodeActionKind::QUICKFIX),
                diagnostics: Some(vec![known.clone()]),
                edit: Some(text_edit(uri, range, text)),
                command: Some(feedback("accepted")),
                is_preferred: Some(true),
                ..Default::default()
            }));
        }
        actions.push(CodeActionOrCommand::CodeAction(CodeAction {
            title: "Basis: dismiss this comment".into(),
            kind: Some(CodeActionKind::QUICKFIX),
            diagnostics: Some(vec![known.clone()]),
            command: Some(feedback("rejected")),
            ..Default::default()
        }));
    }
    actions
}

/// What `run_generated_tests` needs.
struct TestRun {
    id: String,
    language: Language,
    placement: testgen::Placement,
    root: PathBuf,
}

/// A `WorkspaceEdit` inserting `text` at byte `at` of a file with text
/// `existing`, or creating the file when it does not exist.
fn insertion_edit(
    uri: &Uri,
    existing: Option<&str>,
    at: usize,
    text: &str,
    enc: crate::position::Encoding,
) -> WorkspaceEdit {
    match existing {
        Some(old) => {
            let rope = Rope::from_str(old);
            let pos = from_byte(&rope, at.min(old.len()), enc);
            text_edit(uri, Range::new(pos, pos), text.to_string())
        }
        None => create_file_edit(uri, text),
    }
}

/// A `WorkspaceEdit` making a file's text `text`.
fn replace_file_edit(
    uri: &Uri,
    existing: Option<&str>,
    text: &str,
    enc: crate::position::Encoding,
) -> WorkspaceEdit {
    match existing {
        Some(old) => {
            let rope = Rope::from_str(old);
            let end = from_byte(&rope, old.len(), enc);
            text_edit(uri, Range::new(Position::new(0, 0), end), text.to_string())
        }
        None => create_file_edit(uri, text),
    }
}

/// A `WorkspaceEdit` replacing `range` of one document with `text`.
fn text_edit(uri: &Uri, range: Range, text: String) -> WorkspaceEdit {
    WorkspaceEdit {
        changes: Some(HashMap::from([(
            uri.clone(),
            vec![TextEdit::new(range, text)],
        )])),
        ..Default::default()
    }
}

fn create_file_edit(uri: &Uri, text: &str) -> WorkspaceEdit {
    WorkspaceEdit {
        document_changes: Some(DocumentChanges::Operations(vec![
            DocumentChangeOperation::Op(ResourceOp::Create(CreateFile {
                uri: uri.clone(),
                options: Some(CreateFileOptions {
                    overwrite: Some(false),
                    ignore_if_exists: Some(true),
                }),
                annotation_id: None,
            })),
            DocumentChangeOperation::Edit(TextDocumentEdit {
                text_document: OptionalVersionedTextDocumentIdentifier {
                    uri: uri.clone(),
                    version: None,
                },
                edits: vec![OneOf::Left(TextEdit::new(
                    Range::new(Position::new(0, 0), Position::new(0, 0)),
                    text.to_string(),
                ))],
            }),
        ])),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::position::Encoding;
    use basis_skills::diff::FileChange;

    fn input() -> review::Input {
        review::Input {
            intent: "give the discount from ten items on".into(),
            changes: vec![FileChange {
                path: "shop/pricing.py".into(),
                old: "def f(q):\n    if q > 10:\n        return 1\n    return 0\n".into(),
                new: "def f(q):\n    if q > 11:\n        return 1\n    return 0\n".into(),
            }],
        }
    }

    #[test]
    fn review_comments_become_diagnostics_with_quick_fixes() {
        let input = input();
        let answer = "VERDICT: NO\nshop/pricing.py:2: ten items get no discount\n```python\n    if q >= 10:\n```\nshop/pricing.py:4: unrelated";
        let review = review::parse(answer, &input);
        let diags = review_diagnostics(&review, &input, "s1", Encoding::Utf16);
        assert_eq!(diags.len(), 2);
        let (path, d) = &diags[0];
        assert_eq!(path, "shop/pricing.py");
        assert_eq!(
            d.range,
            Range::new(Position::new(1, 0), Position::new(1, 14))
        );
        assert_eq!(d.source.as_deref(), Some(SOURCE));
        // The comment on an unchanged line sits on the changed hunk.
        assert_eq!(diags[1].1.range.start.line, 1);

        let uri: Uri = "file:///w/shop/pricing.py".parse().unwrap();
        let known: Vec<Diagnostic> = diags.iter().map(|(_, d)| d.clone()).collect();
        // A client sends the diagnostic back without its data.
        let sent = Diagnostic {
            data: None,
            ..known[0].clone()
        };
        let actions = review_actions(&uri, &[sent], &known);
        assert_eq!(actions.len(), 2);
        let CodeActionOrCommand::CodeAction(apply) = &actions[0] else {
            panic!("a code action")
        };
        assert_eq!(apply.title, "Basis: apply the suggested change");
        let edit = &apply.edit.as_ref().unwrap().changes.as_ref().unwrap()[&uri][0];
        assert_eq!(edit.new_text, "    if q >= 10:\n");
        assert_eq!(
            edit.range,
            Range::new(Position::new(1, 0), Position::new(2, 0))
        );
        let args = &apply.command.as_ref().unwrap().arguments.as_ref().unwrap()[0];
        assert_eq!(args["kind"], "accepted");
        assert_eq!(args["suggestionId"], "s1");
        let CodeActionOrCommand::CodeAction(dismiss) = &actions[1] else {
            panic!("a code action")
        };
        assert!(dismiss.edit.is_none());
        assert_eq!(
            dismiss
                .command
                .as_ref()
                .unwrap()
                .arguments
                .as_ref()
                .unwrap()[0]["kind"],
            "rejected"
        );
        // The second comment proposes nothing: only dismiss.
        assert_eq!(review_actions(&uri, &[known[1].clone()], &known).len(), 1);
        // Diagnostics of other sources, or unknown ones, get nothing.
        let other = Diagnostic {
            source: Some("pyright".into()),
            ..known[0].clone()
        };
        assert!(review_actions(&uri, &[other], &known).is_empty());
        let stale = Diagnostic {
            message: "old".into(),
            ..known[0].clone()
        };
        assert!(review_actions(&uri, &[stale], &known).is_empty());
    }
}
