//! One model call of a skill: a fitted prompt in, the completion with what the
//! feedback store and the trainer need out (its behaviour log-prob and length).
//! Every skill generates through [`complete`], so every suggestion carries the
//! same record, built once by [`Generated::suggestion`].

use std::time::Instant;

use basis_model::{FinishReason, LanguageModel, SamplingParams};

use crate::prompt::{Budget, FittedPrompt};
use crate::{SkillError, SkillId};

/// A completion of a skill's prompt.
#[derive(Debug, Clone, Default)]
pub struct Generated {
    pub prompt: String,
    pub completion: String,
    /// Sum of the behaviour policy's log-probs of the completion's tokens.
    pub logprob_sum: f64,
    pub token_count: usize,
    /// False when the answer hit the token limit (it may be cut off).
    pub finished: bool,
    pub latency_ms: u64,
}

/// Where a suggestion was made, for its feedback record.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub model_name: String,
    pub model_version: String,
    pub workspace: Option<String>,
    /// Workspace-relative path of the file the suggestion is about.
    pub file: Option<String>,
    pub language: Option<String>,
}

impl Generated {
    /// The feedback record of this completion as a suggestion of `skill`.
    pub fn suggestion(&self, skill: SkillId, cx: &Context) -> basis_feedback::Suggestion {
        basis_feedback::Suggestion {
            id: basis_feedback::new_suggestion_id(),
            created_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
            skill: skill.as_str().into(),
            model_name: cx.model_name.clone(),
            model_version: cx.model_version.clone(),
            workspace: cx.workspace.clone(),
            file: cx.file.clone(),
            language: cx.language.clone(),
            prompt: self.prompt.clone(),
            completion: self.completion.clone(),
            logprob_sum: self.logprob_sum,
            token_count: self.token_count as u32,
            latency_ms: self.latency_ms,
        }
    }
}

/// Generates one completion of `prompt` within `budget`. `on_tokens` hears the
/// number of tokens generated so far (for progress); `cancelled` is polled
/// between tokens and turns into [`SkillError::Cancelled`].
pub fn complete(
    lm: &LanguageModel,
    prompt: FittedPrompt,
    sampling: &SamplingParams,
    budget: Budget,
    on_tokens: &mut dyn FnMut(usize),
    cancelled: &dyn Fn() -> bool,
) -> Result<Generated, SkillError> {
    let start = Instant::now();
    let params = SamplingParams {
        max_tokens: sampling.max_tokens.min(budget.max_new_tokens).max(1),
        ..sampling.clone()
    };
    let mut tokens = 0usize;
    let generation = lm.generate(
        &prompt.ids,
        &params,
        1,
        &mut |_| {
            tokens += 1;
            on_tokens(tokens);
        },
        cancelled,
    )?;
    let c = generation
        .completions
        .into_iter()
        .next()
        .ok_or_else(|| SkillError::Input("the model returned no completion".into()))?;
    if c.finish_reason == FinishReason::Cancelled {
        return Err(SkillError::Cancelled);
    }
    Ok(Generated {
        prompt: prompt.text,
        logprob_sum: c.sum_logprob(),
        token_count: c.token_ids.len(),
        finished: c.finish_reason != FinishReason::Length,
        completion: c.text,
        latency_ms: start.elapsed().as_millis() as u64,
    })
}
