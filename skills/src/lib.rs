//! The five atomic skills, defined once and shared by the language server, the CLI
//! and the trainer: a skill's task input, its prompt (rendered through the model's
//! own chat template within a token budget), the parser of whatever the model says
//! (it never panics), and the verifier that scores an answer as a reward.
//!
//! A prompt the server sends is exactly a prompt the trainer trains on: both call the
//! same `render` and `parse` functions here. Nothing in this crate knows LSP.

pub mod diff;
pub mod edit;
pub mod generate;
pub mod git;
pub mod localize;
pub mod parse;
pub mod prompt;
pub mod reproduce;
pub mod review;
pub mod runner;
pub mod sandbox;
pub mod testgen;

pub use prompt::{fit_prompt, Budget, FittedPrompt};

use serde::{Deserialize, Serialize};

/// The five skills. Their ids are stable: they appear in task files, feedback
/// records and exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkillId {
    Localize,
    Edit,
    Testgen,
    Reproduce,
    Review,
}

impl SkillId {
    pub const ALL: [SkillId; 5] = [
        SkillId::Localize,
        SkillId::Edit,
        SkillId::Testgen,
        SkillId::Reproduce,
        SkillId::Review,
    ];

    /// The id used in task files, feedback records and exports.
    pub fn as_str(self) -> &'static str {
        match self {
            SkillId::Localize => "localize",
            SkillId::Edit => "edit",
            SkillId::Testgen => "testgen",
            SkillId::Reproduce => "reproduce",
            SkillId::Review => "review",
        }
    }

    pub fn parse(id: &str) -> Option<SkillId> {
        Self::ALL.into_iter().find(|s| s.as_str() == id)
    }
}

impl std::fmt::Display for SkillId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors of running a skill.
#[derive(Debug, thiserror::Error)]
pub enum SkillError {
    #[error(transparent)]
    Model(#[from] basis_model::Error),
    #[error("cancelled")]
    Cancelled,
    #[error("{0}")]
    Input(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skill_ids_round_trip() {
        for s in SkillId::ALL {
            assert_eq!(SkillId::parse(s.as_str()), Some(s));
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        assert_eq!(SkillId::parse("Localize"), None);
    }
}
