//! Cancellation and bounded waits: the two ways a handler's wait must end.
//!
//! A handler never waits without bound on internal state. Work on the blocking
//! pool polls a flag that [`CancelOnDrop`] raises when the request's future is
//! dropped (the client cancelled it); a wait on the server's own state (the
//! index, the feedback store) goes through [`bounded`], which answers the
//! request with an error when the state is not there in time.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tower_lsp_server::jsonrpc::{Error, ErrorCode};

use crate::state::Shared;

/// LSP's `ServerCancelled`: the server gave up on the request; the client may
/// send it again later.
pub const SERVER_CANCELLED: i64 = -32802;

/// Raises its flag when dropped: a request future that is dropped (cancelled)
/// tells its blocking work to stop.
pub struct CancelOnDrop(pub Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// An error saying the request could not be served now and why.
pub fn not_now(message: impl Into<String>) -> Error {
    Error {
        code: ErrorCode::ServerError(SERVER_CANCELLED),
        message: message.into().into(),
        data: None,
    }
}

/// Waits for `fut` at most `limit`; past it, answers [`not_now`] with the message
/// `why()` gives (evaluated then, so it can say how far things got).
pub async fn bounded<T>(
    shared: &Shared,
    limit: Duration,
    fut: impl Future<Output = T>,
    why: impl FnOnce() -> String,
) -> Result<T, Error> {
    match tokio::time::timeout(limit, fut).await {
        Ok(v) => Ok(v),
        Err(_) => {
            shared
                .counters
                .waits_timed_out
                .fetch_add(1, Ordering::Relaxed);
            let message = why();
            tracing::warn!("{message}");
            Err(not_now(message))
        }
    }
}
