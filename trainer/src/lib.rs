//! The trainer's side of Basis: skill tasks with known answers, and (next) the
//! training loop. Tasks are read and written by [`task`] (`basis.task/1`),
//! mined from a repository's history and tests by [`mine`], imported from
//! SWE-bench instances by [`swebench`]; [`workspace`] checks a task's repository
//! out into a throwaway tree; [`episode`] turns a task into the input of its
//! skill and scores an answer by the skill's own verifier; [`eval`] runs a model
//! on a task file and reports per skill.
//!
//! Architecture invariant: this crate runs the skills only through
//! `basis_skills` (the same prompts, parsers and verifiers as the server), runs
//! repository code only in the sandbox, and knows nothing of LSP.

pub mod episode;
pub mod eval;
pub mod mine;
pub mod swebench;
pub mod task;
pub mod workspace;

pub use task::{Spec, Task, TASK_SCHEMA};
