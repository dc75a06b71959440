//! Prompt rendering within a token budget: a skill renders its chat messages with
//! the first `k` pieces of context, and [`fit_prompt`] finds the largest `k` whose
//! prompt, through the model's own chat template, fits.

use basis_model::{LanguageModel, Message};

use crate::SkillError;

/// How many tokens a prompt may use, and how many the answer may use.
///
/// `max_prompt_tokens` bounds the context pieces around the request (a latency
/// choice: prefill dominates the time to an answer on a CPU); a request that
/// alone needs more (a long function to test) is still answered as long as it
/// fits `max_request_tokens`, which [`Budget::within_context`] sets from the
/// model's context length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub max_prompt_tokens: usize,
    pub max_new_tokens: usize,
    pub max_request_tokens: usize,
}

impl Budget {
    pub fn new(max_prompt_tokens: usize, max_new_tokens: usize) -> Budget {
        Budget {
            max_prompt_tokens,
            max_new_tokens,
            max_request_tokens: max_prompt_tokens,
        }
    }

    /// The budget within the model's context: prompt and answer fit it, and a
    /// bare request may use all of it the answer leaves.
    pub fn within_context(self, context: usize) -> Budget {
        let max_new = self.max_new_tokens.min(context / 2);
        let room = context.saturating_sub(max_new);
        Budget {
            max_prompt_tokens: self.max_prompt_tokens.min(room),
            max_new_tokens: max_new,
            max_request_tokens: room,
        }
    }
}

/// A rendered prompt with its token ids and how many context pieces it holds.
#[derive(Debug, Clone)]
pub struct FittedPrompt {
    pub text: String,
    pub ids: Vec<u32>,
    pub pieces: usize,
}

/// Renders `render(k)` for the largest `k <= max_pieces` whose prompt fits
/// `budget.max_prompt_tokens`. `render(0)` must be the bare task; if even that does
/// not fit, the error says how long it is.
pub fn fit_prompt(
    lm: &LanguageModel,
    max_pieces: usize,
    budget: Budget,
    render: &dyn Fn(usize) -> Vec<Message>,
) -> Result<FittedPrompt, SkillError> {
    fit_prompt_with_answer(lm, max_pieces, budget, render, "")
}

/// [`fit_prompt`] with the start of the assistant's answer already written
/// (`answer_start`, e.g. an opening code fence), which the model continues.
pub fn fit_prompt_with_answer(
    lm: &LanguageModel,
    max_pieces: usize,
    budget: Budget,
    render: &dyn Fn(usize) -> Vec<Message>,
    answer_start: &str,
) -> Result<FittedPrompt, SkillError> {
    let encode = |k: usize| -> Result<FittedPrompt, SkillError> {
        let prompt = lm.chat_prompt(&render(k), answer_start)?;
        Ok(FittedPrompt {
            text: prompt.text,
            ids: prompt.ids,
            pieces: k,
        })
    };
    let full = encode(max_pieces)?;
    if full.ids.len() <= budget.max_prompt_tokens {
        return Ok(full);
    }
    // Binary search on k: the prompt grows with every piece.
    let (mut lo, mut hi) = (0usize, max_pieces);
    let mut best: Option<FittedPrompt> = None;
    while lo < hi {
        let mid = (lo + hi) / 2;
        let p = encode(mid)?;
        if p.ids.len() <= budget.max_prompt_tokens {
            lo = mid + 1;
            best = Some(p);
        } else {
            hi = mid;
        }
    }
    match best {
        Some(p) => Ok(p),
        None => {
            // The request alone, over the budget for context but within the
            // model's context: answered, without context.
            let bare = encode(0)?;
            if bare.ids.len() <= budget.max_request_tokens.max(budget.max_prompt_tokens) {
                Ok(bare)
            } else {
                Err(SkillError::Input(format!(
                    "the request alone takes {} tokens, over the {} the model's context leaves beside the answer; shorten it",
                    bare.ids.len(),
                    budget.max_request_tokens.max(budget.max_prompt_tokens)
                )))
            }
        }
    }
}
