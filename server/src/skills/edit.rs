//! Code editing in the editor: the code action "Basis: edit…" on a selection and
//! the command `basis.edit {uri, range, instruction}`. The replacement is sent
//! as `workspace/applyEdit`; whether the client applied it is recorded.

use basis_skills::edit::{self, EditSkill};
use basis_skills::SkillId;
use ropey::Rope;
use serde::Deserialize;
use serde_json::{json, Value};
use tower_lsp_server::jsonrpc::{Error, Result};
use tower_lsp_server::ls_types::*;

use super::run::{arg, skill_error, wants_preview};
use crate::position::{from_byte, to_char};
use crate::proto::{self, text_edit};
use crate::state::Ctx;

pub const COMMAND: &str = "basis.edit";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Args {
    uri: Uri,
    range: Range,
    instruction: Option<String>,
    /// Asks for the replacement as it is written (`basis/partial`).
    partial_token: Option<String>,
}

/// The code action on a selection; the client asks for the instruction and adds
/// it to the command's argument.
pub fn code_action(uri: &Uri, range: Range) -> Option<CodeActionOrCommand> {
    if range.start == range.end {
        return None;
    }
    Some(CodeActionOrCommand::CodeAction(CodeAction {
        title: "Basis: edit…".into(),
        kind: Some(CodeActionKind::REFACTOR_REWRITE),
        command: Some(Command {
            title: "Basis: edit…".into(),
            command: COMMAND.into(),
            arguments: Some(vec![json!({"uri": uri, "range": range})]),
        }),
        ..Default::default()
    }))
}

/// `basis.edit`.
pub async fn command(cx: &Ctx, args: Vec<Value>) -> Result<Value> {
    let preview = wants_preview(&args);
    let a: Args = arg(args, COMMAND)?;
    let instruction = a
        .instruction
        .filter(|i| !i.trim().is_empty())
        .ok_or_else(|| {
            proto::invalid_params("basis.edit needs an `instruction`: say what to change")
        })?;
    let (rel, _path, text) = cx.text_of(&a.uri)?;
    let rope = Rope::from_str(&text);
    let enc = cx.shared.encoding();
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
    let mut input = edit::Input {
        path: rel.clone(),
        text,
        start_byte,
        end_byte,
        instruction,
        related: Vec::new(),
    };
    input.validate().map_err(skill_error)?;
    cx.with_index_if_ready(|index, read| input.find_related(index, read));
    let notify = cx.partial_notifier(
        a.partial_token.clone(),
        |replacement| json!({ "replacement": replacement }),
    );
    let (outcome, served) = cx
        .run_skill_streaming::<EditSkill, _, _>(&input, notify)
        .await?;
    // The range is stale if the buffer changed while the model wrote.
    if let Some(rope) = cx.shared.open_rope(a.uri.as_str()) {
        if rope != input.text.as_str() {
            return Err(Error::content_modified());
        }
    }
    let id = cx
        .record(SkillId::Edit, &outcome.generated, &served, Some(&rel))
        .await?;
    let Some(replacement) = outcome.replacement else {
        return Err(cx.no_code(
            &id,
            "the model's answer held no code; try rephrasing the instruction",
        ));
    };
    let range = Range::new(
        from_byte(&rope, start_byte, enc),
        from_byte(&rope, end_byte, enc),
    );
    let workspace_edit = text_edit(&a.uri, range, replacement.clone());
    cx.offer_edit(
        preview,
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
