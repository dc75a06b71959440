//! Code intelligence for Basis, with no LSP in it: tree-sitter parsing of Rust,
//! Python, TypeScript/TSX, JavaScript and Go (incremental on edits), symbols with
//! their spans and docs, a workspace index that honours `.gitignore`, and BM25
//! retrieval over files and symbols for localization candidates and prompt context.
//!
//! Positions here are tree-sitter's: byte offsets, and rows with byte columns. The
//! server converts them to LSP positions at its boundary.

mod confine;
mod index;
mod lang;
pub mod mutate;
mod parse;
pub mod related;
mod symbols;
mod terms;

pub use confine::{path_of_uri, Inside, Refused, Workspace};
pub use index::{Evidence, FileHit, Fusion, IndexedFile, Progress, SymbolHit, WorkspaceIndex};
pub use lang::Language;
pub use mutate::{mutants, Mutant, MutationKind};
pub use parse::{looks_binary, Limits, ParsedFile, Point, Span, TextEdit};
pub use related::{is_test_path, Related, Role};
pub use symbols::{Symbol, SymbolKind};
pub use terms::{for_each_term, terms};

use std::path::PathBuf;

/// Errors of building an index.
#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    #[error("cancelled")]
    Cancelled,
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
