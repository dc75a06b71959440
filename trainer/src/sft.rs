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
//! | reproduce | the task's test file (mined: the repository's own test that caught the bug), else the test its `test_patch` adds (SWE-bench), in a fence |
//! | testgen | the task's tests (mined: the repository's own tests that caught the mutants), in a fence |

use basis_model::LanguageModel;

use crate::episode::Episode;
use crate::task::{Spec, Task, Verdict};

/// The reference answer of a task as a completion of a prompt whose answer
/// starts with `answer_start`, if it has one.
pub fn reference_completion(task: &Task, answer_start: &str) -> Option<String> {
    let fenced = answer_start.starts_with("```");
    match &task.spec {
        Spec::Localize { reference, .. } => Some(reference.files.join("\n")),
        Spec::Edit { reference, .. } => Some(code(&reference.replacement, fenced)),
        Spec::Review { reference, .. } => Some(match reference.verdict {
            Verdict::Yes => " YES".into(),
            Verdict::No => " NO".into(),
        }),
        Spec::Reproduce { reference, .. } => {
            if let Some(test) = &reference.test {
                return Some(code(test, fenced));
            }
            let patch = reference.test_patch.as_deref()?;
            let added: String = patch
                .lines()
                .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
                .map(|l| format!("{}\n", &l[1..]))
                .collect();
            (!added.trim().is_empty()).then(|| code(&added, fenced))
        }
        Spec::Testgen { reference, .. } => reference.tests.as_deref().map(|t| code(t, fenced)),
    }
}

/// Code as an answer: ending with a line break, and with the closing fence
/// where the prompt opened one.
fn code(text: &str, fenced: bool) -> String {
    let mut text = text.to_string();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    if fenced {
        text.push_str("```");
    }
    text
}

/// A task's prompt ids and its reference answer's ids (ending with the end of
/// turn when the answer is not a fenced block, so the model learns to stop).
pub fn example(lm: &LanguageModel, task: &Task, episode: &Episode) -> Option<(Vec<u32>, Vec<u32>)> {
    let prompt = episode.prompt(lm, &episode.default_options()).ok()?;
    let text = reference_completion(task, &prompt.answer_start)?;
    let mut ids = lm.tokenizer.encode(&text).ok()?;
    if !text.ends_with("```") {
        if let Some(&eos) = lm.tokenizer.eos_ids().first() {
            ids.push(eos);
        }
    }
    (!ids.is_empty()).then_some((prompt.fitted.ids, ids))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reproduce(test: Option<&str>, test_patch: Option<&str>) -> Task {
        let line = serde_json::json!({
            "schema": "basis.task/1", "id": "r", "skill": "reproduce",
            "input": {"issue": "x"}, "repo": {"path": "."},
            "reference": {"fix": "", "test": test, "test_patch": test_patch},
        });
        serde_json::from_value(line).unwrap()
    }

    #[test]
    fn a_reproduction_answers_with_its_test_file_else_what_its_patch_adds() {
        let file =
            "import unittest\n\nclass T(unittest.TestCase):\n    def test_x(self):\n        pass";
        let patch = "--- a/t.py\n+++ b/t.py\n@@ -0,0 +1 @@\n+def test_y(): pass\n";
        let both = reproduce(Some(file), Some(patch));
        assert_eq!(
            reference_completion(&both, "```python\n").unwrap(),
            format!("{file}\n```")
        );
        assert_eq!(
            reference_completion(&both, "").unwrap(),
            format!("{file}\n")
        );
        let patch_only = reproduce(None, Some(patch));
        assert_eq!(
            reference_completion(&patch_only, "```python\n").unwrap(),
            "def test_y(): pass\n```"
        );
        assert_eq!(
            reference_completion(&reproduce(None, None), "```python\n"),
            None
        );
    }
}
