//! The model crate's error type: every failure a user can cause (a bad file, an
//! unsupported architecture, a prompt that does not fit) has its own variant with a
//! message that says what was wrong and what to do.

use std::path::PathBuf;

/// Errors of the model crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a usable model file: {reason}")]
    BadModelFile { path: PathBuf, reason: String },
    #[error("unsupported model architecture `{0}`: Basis runs the Llama family (llama) and Qwen2 (qwen2)")]
    UnsupportedArchitecture(String),
    #[error("the model has no tokenizer data: {0}")]
    MissingTokenizer(String),
    #[error("tokenizer error: {0}")]
    Tokenizer(String),
    #[error("chat template error: {0}")]
    ChatTemplate(String),
    #[error("the prompt has {prompt_tokens} tokens but the model's context holds {context} (leave room for at least one generated token)")]
    PromptTooLong {
        prompt_tokens: usize,
        context: usize,
    },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("LoRA adapter error: {0}")]
    Adapter(String),
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
}

impl Error {
    pub(crate) fn bad_file(path: impl Into<PathBuf>, reason: impl std::fmt::Display) -> Self {
        Error::BadModelFile {
            path: path.into(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
