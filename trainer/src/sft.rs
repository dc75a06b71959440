//! The warm start (`basis train --sft`): supervised fine-tuning on the tasks'
//! reference answers before reinforcement learning, for a model too weak to
//! ever earn a reward on some skill. Each answer is written the way the skill's
//! parser reads it (after the prompt's own start of the answer), and the loss is
//! the mean negative log-likelihood of the answer's tokens only (the prompt is
//! masked out).
//!
//! | skill | the reference answer |
//! |---|---|
//! | localize | the reference files, one a line |
//! | edit | the reference code, closing the fence the prompt opened |
//! | review | the verdict after `VERDICT:` |
//! | reproduce | the test a task's `test_patch` adds (SWE-bench), in a fence |
//! | testgen | none in the tasks (the mutants are the reference): not warmed up |

use basis_model::LanguageModel;
use basis_skills::generate::Prompt;

use crate::episode::Episode;
use crate::task::{Spec, Task, Verdict};

/// The reference answer of a task as a completion of `prompt`, if it has one.
pub fn reference_completion(task: &Task, prompt: &Prompt) -> Option<String> {
    let fenced = prompt.answer_start.starts_with("```");
    match &task.spec {
        Spec::Localize { reference, .. } => Some(reference.files.join("\n")),
        Spec::Edit { reference, .. } => {
            let mut code = reference.replacement.clone();
            if !code.ends_with('\n') {
                code.push('\n');
            }
            Some(if fenced { format!("{code}```") } else { code })
        }
        Spec::Review { reference, .. } => Some(match reference.verdict {
            Verdict::Yes => " YES".into(),
            Verdict::No => " NO".into(),
        }),
        Spec::Reproduce { reference, .. } => {
            let patch = reference.test_patch.as_deref()?;
            let added: String = patch
                .lines()
                .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
                .map(|l| format!("{}\n", &l[1..]))
                .collect();
            (!added.trim().is_empty()).then(|| if fenced { format!("{added}```") } else { added })
        }
        Spec::Testgen { .. } => None,
    }
}

/// A task's prompt ids and its reference answer's ids (ending with the end of
/// turn when the answer is not a fenced block, so the model learns to stop).
pub fn example(lm: &LanguageModel, task: &Task, episode: &Episode) -> Option<(Vec<u32>, Vec<u32>)> {
    let prompt = episode.prompt(lm, &episode.default_options()).ok()?;
    let text = reference_completion(task, &prompt)?;
    let mut ids = lm.tokenizer.encode(&text).ok()?;
    if !text.ends_with("```") {
        if let Some(&eos) = lm.tokenizer.eos_ids().first() {
            ids.push(eos);
        }
    }
    (!ids.is_empty()).then_some((prompt.fitted.ids, ids))
}
