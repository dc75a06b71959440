//! The five skills in the editor, one file each; what they share is in [`run`].
//!
//! | command | arguments | what happens |
//! |---|---|---|
//! | `basis.localize` (and the request `basis/localize`) | `"query"` or `{query, limit?}` | ranked locations for the issue |
//! | `basis.edit` | `{uri, range, instruction}` | the edit is computed, then sent as `workspace/applyEdit` |
//! | `basis.testgen` | `{uri, position}` | tests for the function at `position` are written (`applyEdit`), then run in the sandbox; the result comes as a message and an `executed` feedback event |
//! | `basis.reproduce` | `"issue"` or `{issue}` | a test is written and run in the sandbox; the answer says whether it reproduces and holds the test file's `edit`, which is sent as `applyEdit` |
//! | `basis.review` | `{intent?, base?}` or nothing | the uncommitted changes (unsaved buffers included) against git `base` (default `HEAD`) are reviewed; comments become diagnostics (source `basis`) on the changed hunks |
//! | `basis.reviewFeedback` | `{suggestionId, uri, index, kind}` | a review quick fix was applied (`accepted`) or the comment dismissed (`rejected`) |
//! | `basis.accept` | `{suggestionId}` | a previewed edit is sent as `workspace/applyEdit` |
//! | `basis.reject` | `{suggestionId, reason?}` | a previewed edit is dropped and recorded as `rejected` (reason `dismissed` by default) |
//!
//! Edit, testgen and reproduce take `preview: true` in their argument: the edit
//! then comes only in the answer, and waits for `basis.accept` or `basis.reject`
//! (for clients whose `applyEdit` handler cannot wait for the user, as Neovim's).
//! Every generation and sandbox run shows `$/progress` (cancellable) and stops
//! when the request or the progress is cancelled. Every suggestion is stored with
//! its model version and log-probs before the client hears of it; what the client
//! does with an `applyEdit` is recorded as `accepted` or `rejected`.

pub mod edit;
pub mod localize;
pub mod reproduce;
pub mod review;
pub mod run;
pub mod testgen;

use serde_json::Value;
use tower_lsp_server::jsonrpc::Result;
use tower_lsp_server::ls_types::{CodeActionOrCommand, CodeActionParams};

use crate::proto;
use crate::state::Ctx;

/// The `source` of the skills' diagnostics.
pub const SOURCE: &str = "basis";

/// Every command the server offers.
pub const COMMANDS: [&str; 8] = [
    localize::COMMAND,
    edit::COMMAND,
    testgen::COMMAND,
    reproduce::COMMAND,
    review::COMMAND,
    review::COMMAND_FEEDBACK,
    COMMAND_ACCEPT,
    COMMAND_REJECT,
];

/// Applies a previewed edit.
pub const COMMAND_ACCEPT: &str = "basis.accept";
/// Turns a previewed edit down.
pub const COMMAND_REJECT: &str = "basis.reject";

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct PreviewAnswer {
    suggestion_id: String,
    reason: Option<String>,
}

/// `workspace/executeCommand`.
pub async fn command(cx: &Ctx, command: &str, args: Vec<Value>) -> Result<Option<Value>> {
    let answer = match command {
        localize::COMMAND => localize::command(cx, args).await,
        edit::COMMAND => edit::command(cx, args).await,
        testgen::COMMAND => testgen::command(cx, args).await,
        reproduce::COMMAND => reproduce::command(cx, args).await,
        review::COMMAND => review::command(cx, args).await,
        review::COMMAND_FEEDBACK => review::feedback_command(cx, args).await,
        COMMAND_ACCEPT => run::arg::<PreviewAnswer>(args, command)
            .and_then(|a| cx.accept_preview(&a.suggestion_id)),
        COMMAND_REJECT => run::arg::<PreviewAnswer>(args, command)
            .and_then(|a| cx.reject_preview(&a.suggestion_id, a.reason)),
        other => Err(proto::invalid_params(format!(
            "unknown command `{other}` (one of: {})",
            COMMANDS.join(", ")
        ))),
    };
    answer.map(Some)
}

/// `textDocument/codeAction`: quick fixes on review comments, "edit…" on a
/// selection, tests for the function under the cursor. None on a document
/// outside the workspace: no skill reads it.
pub fn code_actions(cx: &Ctx, params: &CodeActionParams) -> Vec<CodeActionOrCommand> {
    let uri = &params.text_document.uri;
    if cx.shared.locate_uri(uri.as_str()).is_err() {
        return Vec::new();
    }
    let mut actions = review::code_actions(cx, uri, &params.context.diagnostics);
    actions.extend(edit::code_action(uri, params.range));
    actions.extend(testgen::code_action(cx, uri, params.range.start));
    actions
}
