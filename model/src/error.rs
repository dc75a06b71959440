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

/// An error and its causes on one line, `what: why: why`, as anyhow's `{:#}`
/// writes them, except that a cause is left out where the message before it
/// already ends with it: errors that put their source in their own message
/// (`cannot read {path}: {source}`, and candle's and SQLite's wrapped in ours)
/// would otherwise say it twice. Every place that shows a user an error chain
/// writes it with this.
pub struct Causes<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Causes<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut line = self.0.to_string();
        let mut next = self.0.source();
        while let Some(cause) = next {
            let text = cause.to_string();
            if !line.ends_with(&text) {
                line.push_str(": ");
                line.push_str(&text);
            }
            next = cause.source();
        }
        f.write_str(&line)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_in_the_message_is_written_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = Error::io("/x/adapter_config.json", io);
        let wrapped = anyhow::Error::new(e).context("loading the adapter /x");
        assert_eq!(
            Causes(wrapped.as_ref()).to_string(),
            "loading the adapter /x: cannot read /x/adapter_config.json: no such file"
        );
        // anyhow alone says it twice.
        assert!(format!("{wrapped:#}").ends_with("no such file: no such file"));
        // A cause not in the message is kept.
        let plain = anyhow::anyhow!("root cause").context("outer");
        assert_eq!(Causes(plain.as_ref()).to_string(), "outer: root cause");
    }
}
