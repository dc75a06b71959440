//! The layer in front of tower-lsp-server's service: the guarantees that
//! tower-lsp does not give.
//!
//! - **Document sync in arrival order.** tower-lsp runs several handlers at once,
//!   so two `didChange` handlers could run out of order. Its transport calls
//!   `Service::call` once per message, in arrival order, on the reading task; this
//!   layer applies `didOpen`/`didChange`/`didClose` right there, synchronously,
//!   before any handler future exists, and queues the index updates of
//!   `didSave`/`didChangeWatchedFiles` for their worker ([`crate::indexing`]).
//!   The handlers for them do nothing with the text.
//! - **Input is always read.** tower-lsp reads the next message only when one of
//!   its concurrency slots is free (after a queue of 100). So at most
//!   [`MAX_REQUESTS_IN_FLIGHT`] requests run at once, below the slots it is given
//!   ([`CONCURRENCY`]); a request beyond that is answered at once with
//!   `ServerCancelled` ("busy"), and notifications, which never wait, always find
//!   a slot. Document sync and `$/cancelRequest` are thus never stuck behind work.
//! - **A panic boundary.** A panicking handler answers its request with an internal
//!   error (a notification's panic is logged) and the server keeps serving.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use futures::FutureExt;
use serde::de::DeserializeOwned;
use tower::Service;
use tower_lsp_server::jsonrpc::{Error, ErrorCode, Request, Response};
use tower_lsp_server::ls_types::{
    DidChangeTextDocumentParams, DidChangeWatchedFilesParams, DidCloseTextDocumentParams,
    DidOpenTextDocumentParams, DidSaveTextDocumentParams,
};
use tower_lsp_server::ExitedError;

use crate::indexing::Update;
use crate::state::Shared;

/// Requests that may run at once; more are answered "busy".
pub const MAX_REQUESTS_IN_FLIGHT: usize = 32;

/// tower-lsp-server's concurrency slots: the requests, plus room for notifications.
pub const CONCURRENCY: usize = MAX_REQUESTS_IN_FLIGHT + 32;

/// Wraps the LSP service (see the module docs).
pub struct Ordered<S> {
    inner: S,
    shared: Arc<Shared>,
    in_flight: Arc<AtomicUsize>,
}

impl<S> Ordered<S> {
    pub fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self {
            inner,
            shared,
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }
}

/// Holds one of the request slots until the request's future ends (or is dropped).
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn params<T: DeserializeOwned>(req: &Request) -> Option<T> {
    serde_json::from_value(req.params()?.clone()).ok()
}

/// Applies a document-sync notification, or queues an index update. Malformed
/// ones are left to the handler, which logs them.
fn apply_in_order(shared: &Shared, req: &Request) {
    if !shared.initialized.load(Ordering::Acquire) {
        return;
    }
    let enc = shared.encoding();
    match req.method() {
        "textDocument/didOpen" => {
            if let Some(p) = params::<DidOpenTextDocumentParams>(req) {
                let doc = p.text_document;
                let language = basis_code::Language::from_lsp_id(&doc.language_id).or_else(|| {
                    doc.uri
                        .to_file_path()
                        .and_then(|path| basis_code::Language::from_path(&path))
                });
                shared
                    .docs
                    .lock()
                    .open(doc.uri.as_str(), &doc.text, doc.version, language);
                // Opening (and closing) a document changes no text: not an edit,
                // or an editor that opens a file while a request runs would see
                // it fail with `ContentModified`.
            }
        }
        "textDocument/didChange" => {
            if let Some(p) = params::<DidChangeTextDocumentParams>(req) {
                let uri = p.text_document.uri;
                let result = shared.docs.lock().change(
                    uri.as_str(),
                    p.text_document.version,
                    &p.content_changes,
                    enc,
                );
                shared.edits.fetch_add(1, Ordering::AcqRel);
                match result {
                    Ok(warnings) => {
                        for w in warnings {
                            tracing::warn!("{w}");
                        }
                    }
                    Err(e) => tracing::warn!("{e}"),
                }
            }
        }
        "textDocument/didClose" => {
            if let Some(p) = params::<DidCloseTextDocumentParams>(req) {
                shared.docs.lock().close(p.text_document.uri.as_str());
            }
        }
        "textDocument/didSave" => {
            if let Some(p) = params::<DidSaveTextDocumentParams>(req) {
                // Decoded only: the worker decides whether it is inside.
                if let Some(path) = basis_code::path_of_uri(p.text_document.uri.as_str()) {
                    shared
                        .index_updates
                        .push(Update::Saved { path, text: p.text });
                }
            }
        }
        "workspace/didChangeWatchedFiles" => {
            if let Some(p) = params::<DidChangeWatchedFilesParams>(req) {
                let paths = p
                    .changes
                    .iter()
                    .filter_map(|c| basis_code::path_of_uri(c.uri.as_str()))
                    .collect();
                shared.index_updates.push(Update::Changed(paths));
            }
        }
        _ => {}
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

impl<S> Service<Request> for Ordered<S>
where
    S: Service<Request, Response = Option<Response>, Error = ExitedError>,
    S::Future: Send + 'static,
{
    type Response = Option<Response>;
    type Error = ExitedError;
    type Future = BoxFuture<'static, Result<Option<Response>, ExitedError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let id = req.id().cloned();
        let method = req.method().to_string();
        if method.starts_with("textDocument/did") || method == "workspace/didChangeWatchedFiles" {
            let shared = &self.shared;
            if let Err(p) =
                std::panic::catch_unwind(AssertUnwindSafe(|| apply_in_order(shared, &req)))
            {
                tracing::error!("applying {method} panicked: {}", panic_message(&*p));
            }
        }
        // A request takes a slot; past the limit it is answered "busy" at once.
        let slot = match &id {
            Some(id) if !matches!(method.as_str(), "initialize" | "shutdown") => {
                let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
                let slot = Slot(self.in_flight.clone());
                if before >= MAX_REQUESTS_IN_FLIGHT {
                    drop(slot);
                    self.shared
                        .counters
                        .requests_refused
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("{method}: {before} requests in flight; answered busy");
                    let busy = Response::from_error(
                        id.clone(),
                        crate::cancel::not_now(format!(
                            "Basis is busy with {before} requests; try {method} again"
                        )),
                    );
                    return Box::pin(async move { Ok(Some(busy)) });
                }
                Some(slot)
            }
            _ => None,
        };
        let fut = self.inner.call(req);
        Box::pin(async move {
            let _slot = slot;
            let result = AssertUnwindSafe(fut).catch_unwind().await;
            match result {
                Ok(result) => result,
                Err(p) => {
                    let message = panic_message(&*p);
                    tracing::error!("handler for {method} panicked: {message}");
                    Ok(id.map(|id| {
                        Response::from_error(
                            id,
                            Error {
                                code: ErrorCode::InternalError,
                                message: format!("internal error in {method}: {message}").into(),
                                data: None,
                            },
                        )
                    }))
                }
            }
        })
    }
}
