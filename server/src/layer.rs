//! The layer in front of tower-lsp-server's service: the two guarantees that
//! tower-lsp does not give.
//!
//! - **Document sync in arrival order.** tower-lsp runs up to four handlers at once,
//!   so two `didChange` handlers could run out of order. Its transport calls
//!   `Service::call` once per message, in arrival order, on the reading task; this
//!   layer applies `didOpen`/`didChange`/`didClose` right there, synchronously,
//!   before any handler future exists. The handlers for them do nothing with the
//!   text.
//! - **A panic boundary.** A panicking handler answers its request with an internal
//!   error (a notification's panic is logged) and the server keeps serving.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use futures::FutureExt;
use serde::de::DeserializeOwned;
use tower::Service;
use tower_lsp_server::jsonrpc::{Error, ErrorCode, Request, Response};
use tower_lsp_server::ls_types::{
    DidChangeTextDocumentParams, DidCloseTextDocumentParams, DidOpenTextDocumentParams,
};
use tower_lsp_server::ExitedError;

use crate::state::Shared;

/// Wraps the LSP service (see the module docs).
pub struct Ordered<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Ordered<S> {
    pub fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }
}

fn params<T: DeserializeOwned>(req: &Request) -> Option<T> {
    serde_json::from_value(req.params()?.clone()).ok()
}

/// Applies a document-sync notification. Malformed ones are left to the handler,
/// which logs them.
fn apply_sync(shared: &Shared, req: &Request) {
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
                shared.docs.lock().unwrap().open(
                    doc.uri.as_str(),
                    &doc.text,
                    doc.version,
                    language,
                );
                shared.edits.fetch_add(1, Ordering::AcqRel);
            }
        }
        "textDocument/didChange" => {
            if let Some(p) = params::<DidChangeTextDocumentParams>(req) {
                let uri = p.text_document.uri;
                let result = shared.docs.lock().unwrap().change(
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
                shared
                    .docs
                    .lock()
                    .unwrap()
                    .close(p.text_document.uri.as_str());
                shared.edits.fetch_add(1, Ordering::AcqRel);
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
        if method.starts_with("textDocument/did") {
            let shared = &self.shared;
            if let Err(p) = std::panic::catch_unwind(AssertUnwindSafe(|| apply_sync(shared, &req)))
            {
                tracing::error!("applying {method} panicked: {}", panic_message(&*p));
            }
        }
        // Index updates are applied by their handlers in the background; count
        // them now, in arrival order, so that queries can wait for them.
        let updates_index = matches!(
            method.as_str(),
            "textDocument/didSave" | "workspace/didChangeWatchedFiles"
        );
        if updates_index {
            self.shared.index_updates.send_modify(|n| *n += 1);
        }
        let shared = self.shared.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let result = AssertUnwindSafe(fut).catch_unwind().await;
            if updates_index {
                shared.index_updates.send_modify(|n| *n -= 1);
            }
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
