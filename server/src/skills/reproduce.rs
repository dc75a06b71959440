//! Issue reproduction in the editor: the command `basis.reproduce` (`"issue"` or
//! `{issue}`) writes one test from the code retrieval finds for the issue, runs
//! it in the sandbox before answering (the answer says whether it reproduces),
//! and offers the test file with `applyEdit`.

use basis_feedback::EventKind;
use basis_skills::reproduce::{self, ReproduceSkill};
use basis_skills::SkillId;
use ropey::Rope;
use serde_json::{json, Value};
use tower_lsp_server::jsonrpc::{Error, Result};
use tower_lsp_server::ls_types::*;

use super::run::{cancellable_sandbox, text_arg, wants_preview, StepProgress};
use crate::cancel::CancelOnDrop;
use crate::indexing::wait_for_index;
use crate::position::{from_byte, Encoding};
use crate::proto::{self, create_file_edit, text_edit};
use crate::state::Ctx;

pub const COMMAND: &str = "basis.reproduce";

/// `basis.reproduce`.
pub async fn command(cx: &Ctx, args: Vec<Value>) -> Result<Value> {
    let preview = wants_preview(&args);
    let issue = text_arg(args, COMMAND, "issue")?;
    let root = cx.workspace_root()?;
    wait_for_index(&cx.shared).await?;
    let overlay = cx.overlay();
    let input = cx
        .with_index_if_ready(|index, read| reproduce::input_for(index, &root, &issue, 3, read))
        .ok_or_else(|| proto::internal("the workspace index is not ready"))?;
    if input.context.is_empty() {
        return Err(proto::invalid_params(
            "nothing in the workspace matches the issue",
        ));
    }
    let (outcome, served) = cx.run_skill::<ReproduceSkill>(&input).await?;
    let id = cx
        .record(
            SkillId::Reproduce,
            &outcome.generated,
            &served,
            Some(&outcome.path),
        )
        .await?;
    let Some(test) = outcome.test else {
        return Err(cx.no_code(&id, "the model's answer held no test code"));
    };
    let (test_path, test_uri) = cx.target(&outcome.path)?;
    let (sb, cancel) = cancellable_sandbox();
    let _guard = CancelOnDrop(cancel.clone());
    let progress =
        StepProgress::start(cx, "Basis: running the reproduction in the sandbox", cancel);
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
            progress.end(format!("failed: {e}")).await;
            return Err(proto::internal(format!(
                "the reproduction could not run: {e}"
            )));
        }
    };
    if report.outcome.cancelled {
        progress.end("cancelled".into()).await;
        return Err(Error::request_cancelled());
    }
    let reproduced = verdict == reproduce::Verdict::Failed;
    let message = verdict.describe();
    progress.end(message.clone()).await;
    cx.shared.record_event(
        &id,
        EventKind::Executed {
            passed: reproduced,
            summary: message.clone(),
        },
    );
    let existing = std::fs::read_to_string(&test_path).ok();
    let workspace_edit =
        replace_file_edit(&test_uri, existing.as_deref(), &test, cx.shared.encoding());
    cx.offer_edit(
        preview,
        "Basis: reproduction test".into(),
        workspace_edit.clone(),
        id.clone(),
        Some((test_uri.clone(), test.clone())),
        |_| async {},
    );
    cx.tell(reproduced, format!("Basis: {message}")).await;
    let output = report.output_tail(40);
    Ok(json!({
        "suggestionId": id,
        "modelVersion": served.version.to_string(),
        "testFile": test_uri,
        "test": test,
        "edit": workspace_edit,
        "reproduced": reproduced,
        "verdict": verdict,
        "message": message,
        "output": output,
    }))
}

/// A `WorkspaceEdit` making a file's text `text`.
fn replace_file_edit(
    uri: &Uri,
    existing: Option<&str>,
    text: &str,
    enc: Encoding,
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
