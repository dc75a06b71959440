//! Prompt rendering within a token budget: a skill renders its chat messages with
//! the first `k` pieces of context, and [`fit_prompt`] finds the largest `k` whose
//! prompt, through the model's own chat template, fits.

use basis_code::{Language, Related};
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

    /// The budget for a model with `context` tokens of context: the context
    /// around a request grows with it (a model with 4x the default model's
    /// [`DEFAULT_CONTEXT`] gets 4x the context pieces), prompt and answer fit
    /// it, and a bare request may use all of it the answer leaves.
    pub fn within_context(self, context: usize) -> Budget {
        let max_new = self.max_new_tokens.min(context / 2);
        let room = context.saturating_sub(max_new);
        let scale = (context / DEFAULT_CONTEXT).max(1);
        Budget {
            max_prompt_tokens: self.max_prompt_tokens.saturating_mul(scale).min(room),
            max_new_tokens: max_new,
            max_request_tokens: room,
        }
    }
}

/// The context length the skills' default budgets are chosen for: the default
/// model's (SmolLM2's 8192), where they are a latency choice on a CPU.
pub const DEFAULT_CONTEXT: usize = 8192;

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

/// Lines of one context piece shown at most.
pub const PIECE_LINES: usize = 40;

/// `code` without trailing blank space, cut to its first [`PIECE_LINES`] lines
/// (`...` marks the cut).
pub fn cut_piece(code: &str) -> String {
    let lines: Vec<&str> = code.lines().collect();
    if lines.len() <= PIECE_LINES {
        code.trim_end().to_string()
    } else {
        format!("{}\n    ...", lines[..PIECE_LINES].join("\n"))
    }
}

/// Code from other files of the repository (see [`basis_code::related`]) as one
/// fenced block after `heading`, each piece under a comment naming its file;
/// empty when there is none.
pub fn other_files_block(language: Language, heading: &str, pieces: &[&Related]) -> String {
    if pieces.is_empty() {
        return String::new();
    }
    let comment = language.line_comment();
    let body: Vec<String> = pieces
        .iter()
        .map(|r| format!("{comment} {}\n{}", r.path, cut_piece(&r.code)))
        .collect();
    format!(
        "{heading}\n```{}\n{}\n```\n\n",
        crate::parse::fence_name(Some(language)),
        body.join("\n\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_follows_the_models_context() {
        let b = Budget::new(1024, 512);
        assert_eq!(b.within_context(8192).max_prompt_tokens, 1024);
        assert_eq!(b.within_context(12000).max_prompt_tokens, 1024);
        assert_eq!(b.within_context(32768).max_prompt_tokens, 4096);
        // A short context: the answer keeps its half, the prompt gets the rest.
        let short = b.within_context(1024);
        assert_eq!((short.max_prompt_tokens, short.max_new_tokens), (512, 512));
        assert_eq!(short.max_request_tokens, 512);
    }
}
