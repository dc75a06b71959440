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

pub use generate::{Generated, Options, Prompt};
pub use prompt::{fit_prompt, Budget, FittedPrompt};

use serde::{Deserialize, Serialize};

/// The five skills. Their ids are stable: they appear in task files, feedback
/// records and exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
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

/// A skill: a task input in, an outcome out, through the model. The server,
/// the CLI, the evaluator and the trainer run all five through this one
/// interface, in two halves around the model call: [`Skill::prompt`] says what
/// to ask, and [`Skill::finish`] reads one completion of it. [`Skill::run`]
/// does both with one sample; the trainer samples a group of the same prompt.
pub trait Skill {
    const ID: SkillId;
    /// What it is doing, for progress messages ("editing").
    const DOING: &'static str;
    type Input: Clone + Send + Sync + 'static;
    type Outcome: Send + 'static;

    /// The budget and sampling it uses unless told otherwise.
    fn default_options() -> generate::Options;

    /// The prompt for `input` within the budget of `opts`, or why there is none.
    fn prompt(
        lm: &basis_model::LanguageModel,
        input: &Self::Input,
        opts: &generate::Options,
    ) -> Result<generate::Prompt, SkillError>;

    /// What one completion of `prompt` says (the parsers never fail: an answer
    /// that says nothing usable is an outcome that holds nothing).
    fn finish(
        input: &Self::Input,
        prompt: &generate::Prompt,
        generated: generate::Generated,
    ) -> Self::Outcome;

    /// The model call behind an outcome (for its feedback record).
    fn generated(outcome: &Self::Outcome) -> &generate::Generated;

    /// What an unfinished answer already says, for a client that shows it as it
    /// comes (an edit's replacement so far); `answer` is the answer's start and
    /// the complete lines generated so far. `None`: nothing to show (yet).
    fn partial(_input: &Self::Input, _answer: &str) -> Option<String> {
        None
    }

    /// [`Skill::run`], and `on_partial` hears each new [`Skill::partial`] as
    /// the model completes a line.
    fn run_streaming(
        lm: &basis_model::LanguageModel,
        input: &Self::Input,
        opts: &generate::Options,
        on_tokens: &mut dyn FnMut(usize),
        on_partial: &mut dyn FnMut(String),
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Self::Outcome, SkillError> {
        let prompt = Self::prompt(lm, input, opts)?;
        let mut last: Option<String> = None;
        let mut on_lines = |lines: &str| {
            let answer = format!("{}{lines}", prompt.answer_start);
            if let Some(p) = Self::partial(input, &answer) {
                if last.as_deref() != Some(p.as_str()) {
                    last = Some(p.clone());
                    on_partial(p);
                }
            }
        };
        let generated = generate::complete_lines(lm, &prompt, on_tokens, &mut on_lines, cancelled)?;
        Ok(Self::finish(input, &prompt, generated))
    }

    /// Asks the model once. `on_tokens` hears how many tokens are generated so
    /// far; `cancelled` is polled between tokens.
    fn run(
        lm: &basis_model::LanguageModel,
        input: &Self::Input,
        opts: &generate::Options,
        on_tokens: &mut dyn FnMut(usize),
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Self::Outcome, SkillError> {
        let prompt = Self::prompt(lm, input, opts)?;
        let generated = generate::complete(lm, &prompt, on_tokens, cancelled)?;
        Ok(Self::finish(input, &prompt, generated))
    }
}

/// Implements [`Skill`] for a skill module's marker type from its `Input`,
/// `Outcome`, `default_options`, `prompt` and `finish` (and `partial`, when
/// named after the verb: `skill!(M, id, "doing", partial)`).
macro_rules! skill {
    ($marker:ident, $id:expr, $doing:expr, partial) => {
        crate::skill!($marker, $id, $doing, {
            fn partial(input: &Input, answer: &str) -> Option<String> {
                partial(input, answer)
            }
        });
    };
    ($marker:ident, $id:expr, $doing:expr) => {
        crate::skill!($marker, $id, $doing, {});
    };
    ($marker:ident, $id:expr, $doing:expr, { $($extra:item)* }) => {
        /// This module's skill, for code that runs skills generically.
        pub struct $marker;

        impl crate::Skill for $marker {
            const ID: crate::SkillId = $id;
            const DOING: &'static str = $doing;
            type Input = Input;
            type Outcome = Outcome;

            fn default_options() -> crate::generate::Options {
                default_options()
            }

            fn prompt(
                lm: &basis_model::LanguageModel,
                input: &Input,
                opts: &crate::generate::Options,
            ) -> Result<crate::generate::Prompt, crate::SkillError> {
                prompt(lm, input, opts)
            }

            fn finish(
                input: &Input,
                prompt: &crate::generate::Prompt,
                generated: crate::generate::Generated,
            ) -> Outcome {
                finish(input, prompt, generated)
            }

            fn generated(outcome: &Outcome) -> &crate::generate::Generated {
                &outcome.generated
            }

            $($extra)*
        }
    };
}
pub(crate) use skill;

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
