//! The feedback store: one record per suggestion the server made and any number of
//! events on it (shown, accepted, partially accepted, rejected with a reason,
//! retained, executed), in SQLite (WAL mode), schema-versioned with migrations.
//!
//! The server writes through a [`Writer`]: a background thread fed by a bounded
//! queue, so typing never waits on the disk; a full queue drops events and counts
//! them. A suggestion's `ack` fires only after its transaction committed, which is
//! what lets the server promise that every suggestion id a client sees is stored.
//! WAL with `synchronous=NORMAL` keeps every committed transaction through a
//! process kill (SIGKILL); only a power loss can take the last ones back.
//!
//! Nothing here knows LSP, the model or the skills: a skill is a plain string.
//! A suggestion about a file outside its workspace is refused where records are
//! written ([`Suggestion::check_confined`]), whatever the caller checked before.

mod privacy;
mod reward;
mod store;
mod writer;

pub use privacy::{scrub_secrets, Privacy, PrivacyLevel};
pub use reward::{reward, RewardConfig};
pub use store::{SkillStats, Stats, Store, SCHEMA_VERSION};
pub use writer::Writer;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One suggestion, as shown to a user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suggestion {
    pub id: String,
    pub created_ms: i64,
    pub skill: String,
    pub model_name: String,
    pub model_version: String,
    pub workspace: Option<String>,
    /// Workspace-relative path of the file it is about, if any.
    pub file: Option<String>,
    pub language: Option<String>,
    pub prompt: String,
    pub completion: String,
    /// Sum of the behaviour policy's log-probs of the completion's tokens.
    pub logprob_sum: f64,
    pub token_count: u32,
    pub latency_ms: u64,
    /// The token ids of prompt and completion and the behaviour policy's
    /// log-prob of each completion token: what a trainer needs to learn from
    /// the suggestion off-policy. Not kept at privacy level `no_code`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Tokens>,
}

impl Suggestion {
    /// Refuses a suggestion about a file that is not inside its workspace by
    /// the one rule ([`basis_code::Workspace`]: links and `..` resolved first),
    /// or about a file with no workspace to check it against.
    pub fn check_confined(&self) -> Result<(), FeedbackError> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let Some(workspace) = &self.workspace else {
            return Err(FeedbackError::OutsideWorkspace(format!(
                "the suggestion is about {file} but names no workspace"
            )));
        };
        basis_code::Workspace::new(std::path::Path::new(workspace))
            .locate(std::path::Path::new(file))
            .map(|_| ())
            .map_err(|e| FeedbackError::OutsideWorkspace(e.to_string()))
    }
}

/// See [`Suggestion::tokens`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tokens {
    pub prompt_ids: Vec<u32>,
    pub completion_ids: Vec<u32>,
    pub logprobs: Vec<f32>,
    /// The temperature `logprobs` are at (the server's sampling temperature, 1
    /// when it decoded greedily). Records written before it was kept have
    /// none: the server decoded greedily then, so they read as 1.
    #[serde(default = "unit_temperature")]
    pub temperature: f32,
}

fn unit_temperature() -> f32 {
    1.0
}

/// What happened to a suggestion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    Shown,
    Accepted,
    PartiallyAccepted {
        fraction: f64,
    },
    /// dismissed, replaced, undone, …
    Rejected {
        reason: String,
    },
    /// The share of the accepted text still present after some minutes.
    Retained {
        fraction: f64,
        after_minutes: u32,
    },
    /// A sandbox run of the suggestion's code.
    Executed {
        passed: bool,
        summary: String,
    },
}

impl EventKind {
    /// The `kind` tag as stored.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Shown => "shown",
            EventKind::Accepted => "accepted",
            EventKind::PartiallyAccepted { .. } => "partially_accepted",
            EventKind::Rejected { .. } => "rejected",
            EventKind::Retained { .. } => "retained",
            EventKind::Executed { .. } => "executed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub suggestion_id: String,
    pub time_ms: i64,
    pub kind: EventKind,
}

/// Errors of the feedback store.
#[derive(Debug, thiserror::Error)]
pub enum FeedbackError {
    #[error("feedback database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("feedback database {path} was written by a newer Basis (schema {found}, this build knows {known}); upgrade Basis or point feedback.path elsewhere")]
    NewerSchema {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("no suggestion with id {0}")]
    UnknownSuggestion(String),
    #[error("cannot create {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing the export: {0}")]
    Export(std::io::Error),
    #[error("the feedback writer has stopped")]
    WriterStopped,
    #[error("writing feedback to {path}: {message}")]
    WriteFailed { path: PathBuf, message: String },
    #[error("not recorded: {0}")]
    OutsideWorkspace(String),
}

/// A new suggestion id: the time in milliseconds (hex, so ids sort by time) and
/// 64 random bits.
pub fn new_suggestion_id() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    // RandomState is seeded from the OS once per process; mixing in a counter and
    // the pid gives distinct values per call and per process.
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.write_u64(ms);
    format!("{ms:012x}-{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_sort_by_time() {
        let a = new_suggestion_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let ids: std::collections::HashSet<String> =
            (0..1000).map(|_| new_suggestion_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|b| b.as_str() > a.as_str()));
    }

    #[test]
    fn tokens_recorded_without_a_temperature_read_as_greedy_ones() {
        // Records from before the temperature was kept: the server decoded
        // greedily then, and a greedy token's log-prob is at temperature 1.
        let t: Tokens =
            serde_json::from_str(r#"{"prompt_ids":[1],"completion_ids":[2],"logprobs":[-0.5]}"#)
                .unwrap();
        assert_eq!(t.temperature, 1.0);
        let t = Tokens {
            temperature: 0.7,
            ..t
        };
        let back: Tokens = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn event_kinds_serialize_with_a_kind_tag() {
        let kinds = [
            EventKind::Shown,
            EventKind::Accepted,
            EventKind::PartiallyAccepted { fraction: 0.5 },
            EventKind::Rejected {
                reason: "undone".into(),
            },
            EventKind::Retained {
                fraction: 0.9,
                after_minutes: 10,
            },
            EventKind::Executed {
                passed: true,
                summary: "3 passed".into(),
            },
        ];
        for k in kinds {
            let v = serde_json::to_value(&k).unwrap();
            assert_eq!(v["kind"], k.name());
            let back: EventKind = serde_json::from_value(v).unwrap();
            assert_eq!(back, k);
        }
    }
}
