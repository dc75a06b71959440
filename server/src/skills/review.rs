//! Code review in the editor: the command `basis.review {intent?, base?}` (and
//! every save, with `review.onSave`) reviews the uncommitted changes against git
//! (unsaved buffers included). Its comments become diagnostics (source `basis`)
//! on the changed hunks, with quick fixes to apply a proposed line or dismiss the
//! comment; `basis.reviewFeedback` records which the user chose.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use basis_feedback::EventKind;
use basis_skills::review::{self, ReviewSkill};
use basis_skills::SkillId;
use ropey::Rope;
use serde::Deserialize;
use serde_json::{json, Value};
use tower_lsp_server::jsonrpc::Result;
use tower_lsp_server::ls_types::*;

use super::run::{arg, BoxFuture};
use super::SOURCE;
use crate::position::{from_char, Encoding};
use crate::proto::{self, text_edit};
use crate::state::Ctx;

pub const COMMAND: &str = "basis.review";
pub const COMMAND_FEEDBACK: &str = "basis.reviewFeedback";

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Args {
    intent: Option<String>,
    base: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FeedbackArgs {
    suggestion_id: String,
    uri: Uri,
    index: usize,
    kind: String,
}

/// `basis.review`.
pub async fn command(cx: &Ctx, args: Vec<Value>) -> Result<Value> {
    let a: Args = match args.into_iter().next() {
        None | Some(Value::Null) => Args::default(),
        Some(v) => serde_json::from_value(v)
            .map_err(|e| proto::invalid_params(format!("{COMMAND}: {e}")))?,
    };
    let root = cx.workspace_root()?;
    let base = a.base.unwrap_or_else(|| "HEAD".into());
    let overlay = cx.overlay();
    let (root_for_git, base_for_git) = (root.clone(), base.clone());
    let changes = tokio::task::spawn_blocking(move || {
        basis_skills::git::changes(&root_for_git, &base_for_git, &overlay)
    })
    .await
    .map_err(proto::internal)?
    .map_err(proto::invalid_params)?;
    if changes.is_empty() {
        publish_review(cx, HashMap::new()).await;
        return Ok(
            json!({"verdict": null, "comments": [], "message": format!("nothing changed against {base}")}),
        );
    }
    let intent = a
        .intent
        .filter(|i| !i.trim().is_empty())
        .unwrap_or_else(|| review::NO_INTENT.to_string());
    let input = review::Input { intent, changes };
    let enc = cx.shared.encoding();
    // Each comment shows as a diagnostic once the model has written it (without
    // quick fixes: those need the suggestion's id, known at the end).
    let streamed = Arc::new(AtomicBool::new(false));
    let on_partial = {
        let (cx, input, root, streamed) =
            (cx.clone(), input.clone(), root.clone(), streamed.clone());
        move |comments: String| -> BoxFuture {
            let (cx, input, root) = (cx.clone(), input.clone(), root.clone());
            streamed.store(true, Ordering::Release);
            Box::pin(async move {
                let Ok(comments) = serde_json::from_str::<Vec<review::Comment>>(&comments) else {
                    return;
                };
                let so_far = review::Review {
                    comments,
                    summary: String::new(),
                    verdict: None,
                };
                let (per_file, _) = by_file(&so_far, &input, None, &root, enc);
                publish_review(&cx, per_file).await;
            })
        }
    };
    let (outcome, served) = match cx
        .run_skill_streaming::<ReviewSkill, _, _>(&input, Some(on_partial))
        .await
    {
        Ok(r) => r,
        Err(e) => {
            // No comments of a review that did not finish stay on screen.
            if streamed.load(Ordering::Acquire) {
                publish_review(cx, HashMap::new()).await;
            }
            return Err(e);
        }
    };
    let id = cx
        .record(SkillId::Review, &outcome.generated, &served, None)
        .await?;
    let (per_file, comments) = by_file(&outcome.review, &input, Some(&id), &root, enc);
    publish_review(cx, per_file).await;
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
    cx.tell(verdict == "YES", message.clone()).await;
    Ok(json!({
        "suggestionId": id,
        "modelVersion": served.version.to_string(),
        "verdict": verdict,
        "comments": comments,
        "summary": outcome.review.summary,
        "message": message,
    }))
}

/// Reviews after a save (`review.onSave`); a newer save stops the review an
/// older one started (its generation is cancelled), so saves never pile up
/// generations nobody asked to wait for.
pub fn on_save(cx: &Ctx) {
    let task_cx = cx.clone();
    let task = tokio::spawn(async move {
        if let Err(e) = command(&task_cx, Vec::new()).await {
            tracing::info!("review on save: {}", e.message);
        }
    });
    if let Some(older) = cx.shared.review_on_save.lock().replace(task) {
        older.abort();
    }
}

/// Replaces the review diagnostics: files reviewed before and not now are cleared.
async fn publish_review(cx: &Ctx, per_file: HashMap<Uri, Vec<Diagnostic>>) {
    let old: Vec<String> = {
        let mut state = cx.shared.diagnostics.lock();
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
    cx.publish(uris).await;
}

/// `basis.reviewFeedback`: a review comment's quick fix was applied, or the
/// comment dismissed. A dismissed comment's diagnostic goes away.
pub async fn feedback_command(cx: &Ctx, args: Vec<Value>) -> Result<Value> {
    let a: FeedbackArgs = arg(args, COMMAND_FEEDBACK)?;
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
    cx.shared.record_event(&a.suggestion_id, kind);
    if let Some(diags) = cx.shared.diagnostics.lock().review.get_mut(a.uri.as_str()) {
        diags.retain(|d| {
            d.data
                .as_ref()
                .and_then(|v| v.get("index"))
                .and_then(Value::as_u64)
                != Some(a.index as u64)
        });
    }
    cx.publish(vec![a.uri.as_str().to_string()]).await;
    Ok(Value::Null)
}

/// The quick fixes on the review comments the client sent in a code action's context.
pub fn code_actions(cx: &Ctx, uri: &Uri, context: &[Diagnostic]) -> Vec<CodeActionOrCommand> {
    let known: Vec<Diagnostic> = cx
        .shared
        .diagnostics
        .lock()
        .review
        .get(uri.as_str())
        .cloned()
        .unwrap_or_default();
    review_actions(uri, context, &known)
}

/// A review's diagnostics per file URI, and its comments as the command answers
/// them.
fn by_file(
    review: &review::Review,
    input: &review::Input,
    suggestion_id: Option<&str>,
    root: &std::path::Path,
    enc: Encoding,
) -> (HashMap<Uri, Vec<Diagnostic>>, Vec<Value>) {
    let mut per_file: HashMap<Uri, Vec<Diagnostic>> = HashMap::new();
    let mut comments = Vec::new();
    for (i, (path, d)) in review_diagnostics(review, input, suggestion_id, enc)
        .into_iter()
        .enumerate()
    {
        let Some(uri) = Uri::from_file_path(root.join(&path)) else {
            continue;
        };
        let suggestion = &review.comments[i].suggestion;
        comments.push(
            json!({"uri": uri, "range": d.range, "message": d.message, "suggestion": suggestion}),
        );
        per_file.entry(uri).or_default().push(d);
    }
    (per_file, comments)
}

/// The diagnostics of a review's comments, with the file each is on: a
/// warning over the commented line (a changed line), its `data` holding the
/// suggestion id, the comment's index and its proposed replacement — when the
/// suggestion's id is known (a review still being written has no quick fixes).
pub fn review_diagnostics(
    review: &review::Review,
    input: &review::Input,
    suggestion_id: Option<&str>,
    enc: Encoding,
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
                data: suggestion_id
                    .map(|id| json!({"suggestionId": id, "index": i, "suggestion": c.suggestion})),
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
        // A comment of a review still being written has no fixes yet.
        let Some(data) = known.data.clone() else {
            continue;
        };
        let id = data
            .get("suggestionId")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let index = data.get("index").and_then(Value::as_u64).unwrap_or(0);
        let feedback = |kind: &str| Command {
            title: format!("Basis: record {kind}"),
            command: COMMAND_FEEDBACK.into(),
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

#[cfg(test)]
mod tests {
    use super::*;
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
        let diags = review_diagnostics(&review, &input, Some("s1"), Encoding::Utf16);
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
        let actions = review_actions(&uri, std::slice::from_ref(&sent), &known);
        assert_eq!(actions.len(), 2);
        // The comments of a review still being written carry no fixes.
        let streaming = review_diagnostics(&review, &input, None, Encoding::Utf16);
        assert!(streaming.iter().all(|(_, d)| d.data.is_none()));
        let known_so_far: Vec<Diagnostic> = streaming.into_iter().map(|(_, d)| d).collect();
        assert!(review_actions(&uri, &[sent], &known_so_far).is_empty());
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
