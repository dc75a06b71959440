//! `basis/debug/*`: what tests and a debugging user can ask the server about its
//! state, and two test hooks (`--test-hooks`) that panic or block on purpose.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tower_lsp_server::jsonrpc::{Error, ErrorCode, Result};

use crate::cancel::CancelOnDrop;
use crate::proto;
use crate::state::{Ctx, Shared};

/// `basis/debug/documentText {uri}` → `{version, text}` of an open document.
pub fn document_text(cx: &Ctx, params: Value) -> Result<Value> {
    let uri = params
        .get("uri")
        .and_then(Value::as_str)
        .ok_or_else(|| proto::invalid_params("expected {uri}"))?;
    let docs = cx.shared.docs.lock();
    let doc = docs
        .get(uri)
        .ok_or_else(|| proto::invalid_params(format!("{uri} is not open")))?;
    Ok(json!({"version": doc.version, "text": doc.rope.to_string()}))
}

/// `basis/debug/stats`: the server's counters.
pub fn stats(shared: &Shared) -> Value {
    let c = &shared.counters;
    let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    json!({
        "generationsStarted": n(&c.generations_started),
        "generationsFinished": n(&c.generations_finished),
        "generationsCancelled": n(&c.generations_cancelled),
        "requestsRefused": n(&c.requests_refused),
        "waitsTimedOut": n(&c.waits_timed_out),
        "indexUpdatesApplied": n(&c.index_updates_applied),
        "modelRuns": n(&c.model_runs),
        "modelRunsPeak": n(&c.model_runs_peak),
        "indexUpdatesPending": shared.index_updates.pending(),
        "indexReady": *shared.index_ready.borrow(),
        "indexedFiles": shared.index.read().file_count(),
        "openDocuments": shared.docs.lock().len(),
        "trackedSuggestions": shared.tracker.lock().len(),
        "feedbackDropped": shared.feedback().map(|w| w.dropped()).unwrap_or(0),
        // The served model's cache of prompt prefixes (null before it is loaded).
        "prefixCache": shared.models.loaded().map(|m| m.lm.generator.prefix_stats()),
    })
}

fn needs_hooks(shared: &Shared, method: &str) -> Result<()> {
    if shared.options.test_hooks {
        Ok(())
    } else {
        Err(proto::error(
            ErrorCode::MethodNotFound,
            format!("{method} needs --test-hooks"),
        ))
    }
}

/// Test hook: panics, to show the panic boundary.
pub fn panic(shared: &Shared) -> Result<Value> {
    needs_hooks(shared, "basis/debug/panic")?;
    panic!("basis/debug/panic was called");
}

/// Test hook: a request that takes `ms` milliseconds of blocking work, polling
/// its cancellation flag like a generation does and waiting for a turn at the
/// model as one does; with `untilEdited`, the work also ends as soon as a
/// document changes (a test need not guess how long an edit takes to arrive).
pub async fn sleep(cx: &Ctx, params: Value) -> Result<Value> {
    needs_hooks(&cx.shared, "basis/debug/sleep")?;
    let ms = params.get("ms").and_then(Value::as_u64).unwrap_or(1000);
    let until_edited = params.get("untilEdited").and_then(Value::as_bool) == Some(true);
    let cancel = Arc::new(AtomicBool::new(false));
    let _guard = CancelOnDrop(cancel.clone());
    let turn = cx.model_turn(|| {}).await?;
    let shared = cx.shared.clone();
    // Seen before the work counts as started: an edit a test sends once it sees
    // the start is an edit during the work.
    let edits_before = shared.edits.load(Ordering::Acquire);
    shared
        .counters
        .generations_started
        .fetch_add(1, Ordering::Release);
    let finished = tokio::task::spawn_blocking(move || {
        let _turn = turn;
        let end = Instant::now() + Duration::from_millis(ms);
        while Instant::now() < end {
            if until_edited && shared.edits.load(Ordering::Acquire) != edits_before {
                break;
            }
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
    if cx.shared.edits.load(Ordering::Acquire) != edits_before {
        return Err(Error::content_modified());
    }
    Ok(json!({"finished": finished}))
}
