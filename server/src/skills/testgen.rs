//! Unit-test generation in the editor: the code action "Basis: generate tests
//! for `f`" inside a function and the command `basis.testgen {uri, position}`.
//! The tests are placed where the language keeps them (`applyEdit`); once the
//! client applied them they run in the sandbox, and the result comes back as a
//! message, an `executed` event and errors on the lines where tests failed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use basis_code::Language;
use basis_feedback::EventKind;
use basis_skills::testgen::{self, TestgenSkill};
use basis_skills::{runner, SkillId};
use ropey::Rope;
use serde::Deserialize;
use serde_json::{json, Value};
use tower_lsp_server::jsonrpc::Result;
use tower_lsp_server::ls_types::*;

use super::run::{arg, cancellable_sandbox, skill_error, wants_preview, StepProgress};
use super::SOURCE;
use crate::position::{from_byte, to_char, Encoding};
use crate::proto::{self, create_file_edit, text_edit};
use crate::state::Ctx;

pub const COMMAND: &str = "basis.testgen";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Args {
    uri: Uri,
    position: Position,
}

/// What a run of the accepted tests needs.
struct TestRun {
    id: String,
    language: Language,
    placement: testgen::Placement,
    root: PathBuf,
}

/// The code action for the function under the cursor of an open document.
pub fn code_action(cx: &Ctx, uri: &Uri, at: Position) -> Option<CodeActionOrCommand> {
    let rope = cx.shared.open_rope(uri.as_str())?;
    let language = uri.to_file_path().and_then(|p| Language::from_path(&p))?;
    let text = rope.to_string();
    let offset = rope.char_to_byte(to_char(&rope, at, cx.shared.encoding()).0);
    let f = testgen::function_at(language, &text, offset)?;
    let title = format!("Basis: generate tests for `{}`", f.name);
    Some(CodeActionOrCommand::CodeAction(CodeAction {
        title: title.clone(),
        kind: Some(CodeActionKind::new("source.basis.testgen")),
        command: Some(Command {
            title,
            command: COMMAND.into(),
            arguments: Some(vec![json!({"uri": uri, "position": at})]),
        }),
        ..Default::default()
    }))
}

/// `basis.testgen`.
pub async fn command(cx: &Ctx, args: Vec<Value>) -> Result<Value> {
    let preview = wants_preview(&args);
    let a: Args = arg(args, COMMAND)?;
    let (rel, _path, text) = cx.text_of(&a.uri)?;
    let language = testgen::language_of(&rel).map_err(skill_error)?;
    let rope = Rope::from_str(&text);
    let enc = cx.shared.encoding();
    let offset = rope.char_to_byte(to_char(&rope, a.position, enc).0);
    let function = testgen::function_at(language, &text, offset)
        .ok_or_else(|| proto::invalid_params("there is no function at this position"))?;
    let symbol = match &function.container {
        Some(c)
            if testgen::find_function(language, &text, &function.name).map(|f| f.start_byte)
                != Some(function.start_byte) =>
        {
            format!("{c}.{}", function.name)
        }
        _ => function.name.clone(),
    };
    let mut input = testgen::Input {
        path: rel.clone(),
        text,
        symbol,
        related: Vec::new(),
    };
    cx.with_index_if_ready(|index, read| input.find_related(index, read));
    // Where the tests would go is checked before the model runs: a test folder
    // linked out of the workspace is refused, not written through.
    let (test_path, test_uri) = cx.target(&testgen::test_path(language, &rel))?;
    let (outcome, served) = cx.run_skill::<TestgenSkill>(&input).await?;
    let id = cx
        .record(SkillId::Testgen, &outcome.generated, &served, Some(&rel))
        .await?;
    let Some(tests) = outcome.tests else {
        return Err(cx.no_code(&id, "the model's answer held no test code"));
    };
    let root = cx.workspace_root()?;
    let existing = match cx.shared.open_rope(test_uri.as_str()) {
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
    let run = TestRun {
        id: id.clone(),
        language,
        placement: placement.clone(),
        root,
    };
    cx.offer_edit(
        preview,
        "Basis: generate tests".into(),
        workspace_edit.clone(),
        id.clone(),
        Some((test_uri.clone(), placement.inserted.clone())),
        move |cx| async move { run_generated_tests(&cx, run).await },
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
async fn run_generated_tests(cx: &Ctx, run: TestRun) {
    let mut overlay = cx.overlay();
    overlay.insert(run.placement.path.clone(), run.placement.new_text.clone());
    let (sb, cancel) = cancellable_sandbox();
    let progress = StepProgress::start(cx, "Basis: running the tests in the sandbox", cancel);
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
            publish_test_failures(cx, &run.root, &test_file, failures).await;
        }
    }
    let (passed, message) = match result {
        Ok(Ok(report)) => (report.passed(), format!("Basis: {}", report.summary())),
        Ok(Err(e)) => (false, format!("Basis: the tests could not run: {e}")),
        Err(e) => (false, format!("Basis: the test run failed: {e}")),
    };
    progress.end(message.clone()).await;
    // A run the user stopped says nothing about the tests.
    if !cancelled {
        cx.shared.record_event(
            &run.id,
            EventKind::Executed {
                passed,
                summary: message.clone(),
            },
        );
    }
    cx.tell(passed, message).await;
}

/// Replaces the test-failure diagnostics with `failures` (errors on the lines
/// where the tests failed); `test_file`'s are published even when empty.
async fn publish_test_failures(
    cx: &Ctx,
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
        let mut state = cx.shared.diagnostics.lock();
        let mut uris: Vec<String> = state.test_failures.keys().cloned().collect();
        uris.extend(per_file.keys().cloned());
        uris.extend(Uri::from_file_path(test_file).map(|u| u.as_str().to_string()));
        uris.sort();
        uris.dedup();
        state.test_failures = per_file;
        uris
    };
    cx.publish(uris).await;
}

/// A `WorkspaceEdit` inserting `text` at byte `at` of a file with text
/// `existing`, or creating the file when it does not exist.
fn insertion_edit(
    uri: &Uri,
    existing: Option<&str>,
    at: usize,
    text: &str,
    enc: Encoding,
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
