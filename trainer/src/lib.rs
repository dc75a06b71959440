//! The trainer's side of Basis: skill tasks with known answers, evaluation, and
//! the training loop. Tasks are read and written by [`task`] (`basis.task/1`),
//! mined from a repository's history and tests by [`mine`], imported from
//! SWE-bench instances by [`swebench`]; [`workspace`] checks a task's repository
//! out into a throwaway tree; [`episode`] turns a task into the input of its
//! skill and scores an answer by the skill's own verifier; [`eval`] runs a model
//! on a task file and reports per skill, with intervals from [`stats`];
//! [`train`] is GRPO over the skills ([`grpo`] its arithmetic, [`policy`] the
//! model and optimizer, [`checkpoint`] its checkpoints, [`sft`] the warm start,
//! [`feedback`] editor feedback as off-policy episodes, [`validation`] its
//! held-out curve and best checkpoint); [`gate`] decides what is published.
//!
//! Architecture invariant: this crate runs the skills only through
//! `basis_skills` (the same prompts, parsers and verifiers as the server), runs
//! repository code only in the sandbox, and knows nothing of LSP.

pub mod checkpoint;
pub mod device_check;
pub mod episode;
pub mod eval;
pub mod feedback;
pub mod gate;
pub mod grpo;
pub mod mine;
pub mod policy;
pub mod sampling;
pub mod sft;
pub mod stats;
pub mod swebench;
pub mod task;
pub mod train;
pub mod validation;
pub mod workspace;

pub use task::{Spec, Task, TASK_SCHEMA};

/// Errors of training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Model(#[from] basis_model::Error),
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
    #[error(transparent)]
    Skill(#[from] basis_skills::SkillError),
    #[error("{0}")]
    Input(String),
    #[error("the checkpoint cannot be used: {0}")]
    Checkpoint(String),
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}
