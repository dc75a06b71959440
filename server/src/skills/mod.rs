//! The five skills in the editor, one file each; what they share is in [`run`].
//!
//! | command | arguments | what happens |
//! |---|---|---|
//! | `basis.localize` (and the request `basis/localize`) | `"query"` or `{query, limit?}` | ranked locations for the issue |
//! | `basis.edit` | `{uri, range, instruction}` | the edit is computed, then sent as `workspace/applyEdit` |
//! | `basis.testgen` | `{uri, position}` | tests for the function at `position` are written (`applyEdit`), then run in the sandbox; the result comes as a message and an `executed` feedback event |
//! | `basis.reproduce` | `"issue"` or `{issue}` | a test is written and run in the sandbox; the answer says whether it reproduces; the test file is created with `applyEdit` |
//! | `basis.review` | `{intent?, base?}` or nothing | the uncommitted changes (unsaved buffers included) against git `base` (default `HEAD`) are reviewed; comments become diagnostics (source `basis`) on the changed hunks |
//! | `basis.reviewFeedback` | `{suggestionId, uri, index, kind}` | a review quick fix was applied (`accepted`) or the comment dismissed (`rejected`) |
//!
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
pub const COMMANDS: [&str; 6] = [
    localize::COMMAND,
    edit::COMMAND,
    testgen::COMMAND,
    reproduce::COMMAND,
    review::COMMAND,
    review::COMMAND_FEEDBACK,
];

/// `workspace/executeCommand`.
pub async fn command(cx: &Ctx, command: &str, args: Vec<Value>) -> Result<Option<Value>> {
    let answer = match command {
        localize::COMMAND => localize::command(cx, args).await,
        edit::COMMAND => edit::command(cx, args).await,
        testgen::COMMAND => testgen::command(cx, args).await,
        reproduce::COMMAND => reproduce::command(cx, args).await,
        review::COMMAND => review::command(cx, args).await,
        review::COMMAND_FEEDBACK => review::feedback_command(cx, args).await,
        other => Err(proto::invalid_params(format!(
            "unknown command `{other}` (one of: {})",
            COMMANDS.join(", ")
        ))),
    };
    answer.map(Some)
}

/// `textDocument/codeAction`: quick fixes on review comments, "edit…" on a
/// selection, tests for the function under the cursor.
pub fn code_actions(cx: &Ctx, params: &CodeActionParams) -> Vec<CodeActionOrCommand> {
    let uri = &params.text_document.uri;
    let mut actions = review::code_actions(cx, uri, &params.context.diagnostics);
    actions.extend(edit::code_action(uri, params.range));
    actions.extend(testgen::code_action(cx, uri, params.range.start));
    actions
}
