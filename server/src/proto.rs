//! Basis's own protocol extensions (the `basis/...` methods) and the conversions
//! from the plain types of `code` and `skills` to LSP types: the boundary where
//! editor-neutral results become protocol values.
//!
//! | method | kind | params → result |
//! |---|---|---|
//! | `basis/localize` | request | [`LocalizeParams`] → [`LocalizeResult`] |
//! | `basis/feedback` | notification | [`FeedbackParams`] |
//! | `basis/feedbackFlush` | request | `null` → `null`, once everything sent before is on disk |
//! | `basis/modelChanged` | server → client notification | [`ModelChanged`] |
//! | `basis/partial` | server → client notification | [`Partial`]: a command's answer so far, when its argument named a `partialToken` |
//! | `basis/debug/documentText` | request | `{uri}` → `{version, text}` |
//! | `basis/debug/stats` | request | `null` → counters |

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use basis_code::{Span, Symbol, SymbolKind as CodeKind};
use ropey::Rope;
use serde::{Deserialize, Serialize};
use tower_lsp_server::jsonrpc::{Error, ErrorCode};
use tower_lsp_server::ls_types::{
    CreateFile, CreateFileOptions, DocumentChangeOperation, DocumentChanges, DocumentSymbol, OneOf,
    OptionalVersionedTextDocumentIdentifier, Position, Range, ResourceOp, SymbolKind,
    TextDocumentEdit, TextEdit, Uri, WorkspaceEdit,
};

use crate::position::{range_of_bytes, Encoding};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalizeParams {
    pub query: String,
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalizeResult {
    pub suggestion_id: String,
    pub model_version: String,
    /// `model` when the model ordered the files, `retrieval` when the ranking is
    /// retrieval's alone (`localize.useModel`).
    pub ranking: String,
    pub locations: Vec<LocalizedLocation>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalizedLocation {
    pub uri: Uri,
    pub range: Range,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    pub score: f32,
}

/// A client's report of what the user did with a suggestion.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedbackParams {
    pub suggestion_id: String,
    /// shown, accepted, partially_accepted, rejected, retained, executed
    pub kind: String,
    pub reason: Option<String>,
    pub fraction: Option<f64>,
    pub passed: Option<bool>,
    pub summary: Option<String>,
    /// For `accepted`: where the text went and what it was, so the server can see
    /// an undo and measure retention.
    pub uri: Option<Uri>,
    pub text: Option<String>,
}

impl FeedbackParams {
    pub fn event_kind(&self) -> Result<basis_feedback::EventKind, String> {
        use basis_feedback::EventKind as K;
        let fraction = || {
            self.fraction
                .filter(|f| (0.0..=1.0).contains(f))
                .ok_or_else(|| format!("`{}` needs a `fraction` between 0 and 1", self.kind))
        };
        Ok(match self.kind.as_str() {
            "shown" => K::Shown,
            "accepted" => K::Accepted,
            "partially_accepted" => K::PartiallyAccepted {
                fraction: fraction()?,
            },
            "rejected" => K::Rejected {
                reason: self.reason.clone().unwrap_or_else(|| "dismissed".into()),
            },
            "retained" => K::Retained {
                fraction: fraction()?,
                after_minutes: 0,
            },
            "executed" => K::Executed {
                passed: self
                    .passed
                    .ok_or("`executed` needs `passed` (true or false)")?,
                summary: self.summary.clone().unwrap_or_default(),
            },
            other => {
                return Err(format!(
                    "unknown feedback kind `{other}` (shown, accepted, partially_accepted, rejected, retained, executed)"
                ))
            }
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelChanged {
    pub model: String,
    pub version: String,
}

/// A command's answer so far (`basis.edit`: `{"replacement": …}`, the complete
/// lines of the new code so far), sent while the model writes to a client that
/// put a `partialToken` in the command's argument; each one replaces the one
/// before, and all of them come before the command's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Partial {
    pub token: String,
    pub value: serde_json::Value,
}

pub fn error(code: ErrorCode, message: impl Into<String>) -> Error {
    Error {
        code,
        message: message.into().into(),
        data: None,
    }
}

pub fn internal(message: impl std::fmt::Display) -> Error {
    error(ErrorCode::InternalError, message.to_string())
}

pub fn invalid_params(message: impl std::fmt::Display) -> Error {
    error(ErrorCode::InvalidParams, message.to_string())
}

pub fn symbol_kind(k: CodeKind) -> SymbolKind {
    match k {
        CodeKind::Module => SymbolKind::MODULE,
        CodeKind::Class => SymbolKind::CLASS,
        CodeKind::Struct => SymbolKind::STRUCT,
        CodeKind::Enum => SymbolKind::ENUM,
        CodeKind::Interface | CodeKind::Trait => SymbolKind::INTERFACE,
        CodeKind::Impl => SymbolKind::NAMESPACE,
        CodeKind::Function => SymbolKind::FUNCTION,
        CodeKind::Method => SymbolKind::METHOD,
        CodeKind::Constant => SymbolKind::CONSTANT,
        CodeKind::TypeAlias => SymbolKind::TYPE_PARAMETER,
        CodeKind::Field => SymbolKind::FIELD,
    }
}

pub fn range(rope: &Rope, span: &Span, enc: Encoding) -> Range {
    range_of_bytes(rope, span.start_byte, span.end_byte, enc)
}

/// Symbols as the hierarchical `DocumentSymbol[]`.
#[allow(deprecated)] // `deprecated` is a required field of the struct
pub fn document_symbols(symbols: &[Symbol], rope: &Rope, enc: Encoding) -> Vec<DocumentSymbol> {
    symbols
        .iter()
        .map(|s| {
            let full = range(rope, &s.span, enc);
            let mut selection = range(rope, &s.name_span, enc);
            // LSP requires the selection range inside the full range.
            if selection.start < full.start || selection.end > full.end {
                selection = Range::new(full.start, full.start);
            }
            DocumentSymbol {
                name: if s.name.is_empty() {
                    "<anonymous>".into()
                } else {
                    s.name.clone()
                },
                detail: s.container.clone(),
                kind: symbol_kind(s.kind),
                tags: None,
                deprecated: None,
                range: full,
                selection_range: selection,
                children: (!s.children.is_empty())
                    .then(|| document_symbols(&s.children, rope, enc)),
            }
        })
        .collect()
}

/// Texts of files for position conversion, read once per request: the open
/// document's text when there is one, else the file on disk.
pub struct Texts<'a> {
    pub open: &'a dyn Fn(&str) -> Option<Rope>,
    cache: HashMap<PathBuf, Option<Rope>>,
}

/// Files larger than this are not read just to convert a position; their
/// locations fall back to line starts.
const MAX_CONVERT_BYTES: u64 = 16 << 20;

impl<'a> Texts<'a> {
    pub fn new(open: &'a dyn Fn(&str) -> Option<Rope>) -> Self {
        Self {
            open,
            cache: HashMap::new(),
        }
    }

    /// The rope of `path` (whose URI is `uri`).
    pub fn rope(&mut self, path: &Path, uri: &Uri) -> Option<&Rope> {
        if !self.cache.contains_key(path) {
            let rope = (self.open)(uri.as_str()).or_else(|| {
                let meta = std::fs::metadata(path).ok()?;
                if meta.len() > MAX_CONVERT_BYTES {
                    return None;
                }
                let text = std::fs::read_to_string(path).ok()?;
                Some(Rope::from_str(&text))
            });
            self.cache.insert(path.to_path_buf(), rope);
        }
        self.cache.get(path).and_then(|r| r.as_ref())
    }

    /// The LSP range of `span` in `path`; without the text, the span's rows with
    /// byte columns (right for ASCII lines).
    pub fn range(&mut self, path: &Path, uri: &Uri, span: &Span, enc: Encoding) -> Range {
        match self.rope(path, uri) {
            Some(rope) => range(rope, span, enc),
            None => Range::new(
                Position::new(span.start.row as u32, span.start.column as u32),
                Position::new(span.end.row as u32, span.end.column as u32),
            ),
        }
    }
}

/// A `WorkspaceEdit` replacing `range` of one document with `text`.
pub fn text_edit(uri: &Uri, range: Range, text: String) -> WorkspaceEdit {
    WorkspaceEdit {
        changes: Some(HashMap::from([(
            uri.clone(),
            vec![TextEdit::new(range, text)],
        )])),
        ..Default::default()
    }
}

/// A `WorkspaceEdit` creating a file (unless it exists) with `text`.
pub fn create_file_edit(uri: &Uri, text: &str) -> WorkspaceEdit {
    WorkspaceEdit {
        document_changes: Some(DocumentChanges::Operations(vec![
            DocumentChangeOperation::Op(ResourceOp::Create(CreateFile {
                uri: uri.clone(),
                options: Some(CreateFileOptions {
                    overwrite: Some(false),
                    ignore_if_exists: Some(true),
                }),
                annotation_id: None,
            })),
            DocumentChangeOperation::Edit(TextDocumentEdit {
                text_document: OptionalVersionedTextDocumentIdentifier {
                    uri: uri.clone(),
                    version: None,
                },
                edits: vec![OneOf::Left(TextEdit::new(
                    Range::new(Position::new(0, 0), Position::new(0, 0)),
                    text.to_string(),
                ))],
            }),
        ])),
        ..Default::default()
    }
}
