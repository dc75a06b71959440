//! One model call of a skill: a fitted prompt in, the completion with what the
//! feedback store and the trainer need out (its behaviour log-prob and length).
//! Every skill generates through [`complete`], so every suggestion carries the
//! same record, built once by [`Generated::suggestion`].

use std::cell::RefCell;
use std::time::{Duration, Instant};

use basis_model::{
    FinishReason, Flow, Generation, LanguageModel, Request, SamplingParams, TextDelta,
};

use crate::prompt::{Budget, FittedPrompt};
use crate::{SkillError, SkillId};

/// How a skill asks the model: the token budget and the sampling.
#[derive(Debug, Clone)]
pub struct Options {
    pub budget: Budget,
    pub sampling: SamplingParams,
}

impl Options {
    /// Greedy decoding with a prompt of at most `max_prompt_tokens` and an answer
    /// of at most `max_new_tokens`.
    pub fn greedy(max_prompt_tokens: usize, max_new_tokens: usize) -> Options {
        Options {
            budget: Budget::new(max_prompt_tokens, max_new_tokens),
            sampling: SamplingParams {
                temperature: 0.0,
                max_tokens: max_new_tokens,
                ..SamplingParams::default()
            },
        }
    }

    /// These options sampling at `temperature` with `seed` (an editor's settings).
    pub fn sampled(mut self, temperature: f32, seed: u64) -> Options {
        self.sampling.temperature = temperature;
        self.sampling.seed = seed;
        self
    }
}

/// A completion of a skill's prompt.
#[derive(Debug, Clone, Default)]
pub struct Generated {
    /// The prompt as the model saw it, including `answer_start`.
    pub prompt: String,
    /// What the prompt already wrote of the answer (an opening code fence), or "".
    pub answer_start: String,
    pub completion: String,
    /// Sum of the behaviour policy's log-probs of the completion's tokens.
    pub logprob_sum: f64,
    pub token_count: usize,
    /// False when the answer hit the token limit, or was stopped going in
    /// circles ([`repeats_itself`]): it may end inside a statement.
    pub finished: bool,
    pub latency_ms: u64,
    /// The prompt's tokens, the sampled tokens and the behaviour policy's
    /// log-prob of each (what a trainer's importance ratio needs).
    pub prompt_ids: Vec<u32>,
    pub token_ids: Vec<u32>,
    pub token_logprobs: Vec<f32>,
    /// The temperature those log-probs are at (the sampling temperature, 1
    /// when greedy): a trainer recomputes them at the same one.
    pub logprob_temperature: f32,
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
    /// The whole answer: `answer_start` followed by the completion. Parsers read this.
    pub fn answer(&self) -> String {
        format!("{}{}", self.answer_start, self.completion)
    }

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
            tokens: (!self.token_ids.is_empty()).then(|| basis_feedback::Tokens {
                prompt_ids: self.prompt_ids.clone(),
                completion_ids: self.token_ids.clone(),
                logprobs: self.token_logprobs.clone(),
                temperature: self.logprob_temperature,
            }),
        }
    }
}

/// What a skill asks the model: its prompt, fitted to the budget, with the
/// start of the answer already written, and how to sample the rest (the token
/// limit within the budget, the stop strings). A skill builds one with
/// [`code_prompt`] or [`text_prompt`]; the server, the CLI, the evaluator and
/// the trainer all sample from it.
#[derive(Debug, Clone)]
pub struct Prompt {
    /// The rendered prompt, `answer_start` included, and its token ids.
    pub fitted: FittedPrompt,
    pub answer_start: String,
    pub sampling: SamplingParams,
}

/// A prompt whose answer starts with `answer_start` (may be empty).
pub fn text_prompt(
    lm: &LanguageModel,
    max_pieces: usize,
    budget: Budget,
    render: &dyn Fn(usize) -> Vec<basis_model::Message>,
    answer_start: &str,
    sampling: &SamplingParams,
) -> Result<Prompt, SkillError> {
    let fitted =
        crate::prompt::fit_prompt_with_answer(lm, max_pieces, budget, render, answer_start)?;
    Ok(Prompt {
        fitted,
        answer_start: answer_start.to_string(),
        sampling: SamplingParams {
            max_tokens: sampling.max_tokens.min(budget.max_new_tokens).max(1),
            ..sampling.clone()
        },
    })
}

/// A code answer's prompt: the answer starts as an opening fence in `fence`
/// (e.g. `python`), and generation stops at the closing fence.
pub fn code_prompt(
    lm: &LanguageModel,
    max_pieces: usize,
    budget: Budget,
    render: &dyn Fn(usize) -> Vec<basis_model::Message>,
    fence: &str,
    sampling: &SamplingParams,
) -> Result<Prompt, SkillError> {
    let mut sampling = sampling.clone();
    sampling.stop.push("```".into());
    text_prompt(
        lm,
        max_pieces,
        budget,
        render,
        &code_answer_start(fence),
        &sampling,
    )
}

/// Generates one completion of `prompt`. `on_tokens` hears the number of tokens
/// generated so far (for progress); `cancelled` is polled between tokens and
/// turns into [`SkillError::Cancelled`]. Generation also stops when the model
/// repeats a block of lines a third time ([`repeats_itself`]).
pub fn complete(
    lm: &LanguageModel,
    prompt: &Prompt,
    on_tokens: &mut dyn FnMut(usize),
    cancelled: &dyn Fn() -> bool,
) -> Result<Generated, SkillError> {
    complete_group(lm, prompt, 1, on_tokens, cancelled)?
        .into_iter()
        .next()
        .ok_or_else(|| SkillError::Input("the model returned no completion".into()))
}

/// `n` completions of `prompt` decoded as one batch after one shared prefill
/// (a trainer's group), each stopped on its own when it repeats itself.
/// `on_tokens` hears the tokens generated so far over the group.
pub fn complete_group(
    lm: &LanguageModel,
    prompt: &Prompt,
    n: usize,
    on_tokens: &mut dyn FnMut(usize),
    cancelled: &dyn Fn() -> bool,
) -> Result<Vec<Generated>, SkillError> {
    complete_group_lines(lm, prompt, n, on_tokens, None, cancelled)
}

/// [`complete`], and `on_lines` hears the completion's text up to its last
/// complete line each time a line is completed (for a client that shows an
/// answer as it comes).
pub fn complete_lines(
    lm: &LanguageModel,
    prompt: &Prompt,
    on_tokens: &mut dyn FnMut(usize),
    on_lines: &mut dyn FnMut(&str),
    cancelled: &dyn Fn() -> bool,
) -> Result<Generated, SkillError> {
    complete_group_lines(lm, prompt, 1, on_tokens, Some(on_lines), cancelled)?
        .into_iter()
        .next()
        .ok_or_else(|| SkillError::Input("the model returned no completion".into()))
}

fn complete_group_lines(
    lm: &LanguageModel,
    prompt: &Prompt,
    n: usize,
    on_tokens: &mut dyn FnMut(usize),
    mut on_lines: Option<&mut dyn FnMut(&str)>,
    cancelled: &dyn Fn() -> bool,
) -> Result<Vec<Generated>, SkillError> {
    let start = Instant::now();
    let mut tokens = 0usize;
    let mut watch = Watch::new(n);
    let generation = lm.generate_controlled(
        &prompt.fitted.ids,
        &prompt.sampling,
        n.max(1),
        &mut |delta| {
            tokens += 1;
            on_tokens(tokens);
            watch.hear(delta, on_lines.as_deref_mut())
        },
        cancelled,
    )?;
    if cancelled() {
        return Err(SkillError::Cancelled);
    }
    let latency = start.elapsed();
    Ok(watch.finish(prompt, generation, latency))
}

/// The token budget [`complete_many`] decodes within: each sequence counts its
/// prompt and its new tokens. 32k tokens of the default model's f16 KV cache
/// is at most about 750 MB (f32, the trainer's policy: twice that), and 8-16
/// sequences of skill-sized prompts. (`basis eval --samples 4` on 40 tasks
/// peaked at 1.4 GB with it, 0.6 GB one sample at a time: BENCHMARKS.md.)
pub const BATCH_TOKENS: usize = 32 << 10;

/// The completions of several prompts, `prompts[i].1` of prompt `i`, decoded
/// together ([`LanguageModel::generate_many`]: one pass over the weights per
/// step for every sequence under way, within [`BATCH_TOKENS`]). Each prompt's
/// completions are the ones [`complete_group`] gives it alone. `on_done(i,
/// result)` hears prompt `i`'s as soon as they are done.
pub fn complete_many(
    lm: &LanguageModel,
    prompts: &[(Prompt, usize)],
    on_done: &mut dyn FnMut(usize, Result<Vec<Generated>, SkillError>),
) {
    let watches: Vec<RefCell<Watch>> = prompts
        .iter()
        .map(|(_, n)| RefCell::new(Watch::new(*n)))
        .collect();
    let mut hearers: Vec<_> = watches
        .iter()
        .map(|w| move |delta: TextDelta<'_>| w.borrow_mut().hear(delta, None))
        .collect();
    let requests = prompts
        .iter()
        .zip(hearers.iter_mut())
        .map(|((p, n), hear)| Request {
            prompt: &p.fitted.ids,
            params: &p.sampling,
            n: (*n).max(1),
            on_text: hear,
        })
        .collect();
    lm.generate_many(requests, BATCH_TOKENS, &|| false, &mut |i, r| {
        let watch = watches[i].replace(Watch::new(0));
        let answers = r.map(|g| {
            // An answer's latency: the time its group was under way, from its
            // prefill on (the steps it shared with other groups included).
            let latency = Duration::from_secs_f64(g.prefill_secs + g.decode_secs);
            watch.finish(&prompts[i].0, g, latency)
        });
        on_done(i, answers.map_err(SkillError::from));
    });
}

/// Watches a group's text as it is decoded: stops a sequence that goes in
/// circles ([`repeats_itself`]) and passes the first sequence's complete lines on.
struct Watch {
    texts: Vec<String>,
    looped: Vec<bool>,
}

impl Watch {
    fn new(n: usize) -> Self {
        Self {
            texts: vec![String::new(); n.max(1)],
            looped: vec![false; n.max(1)],
        }
    }

    fn hear<'a>(
        &mut self,
        delta: TextDelta<'_>,
        on_lines: Option<&mut (dyn FnMut(&str) + 'a)>,
    ) -> Flow {
        let text = &mut self.texts[delta.index];
        text.push_str(delta.text);
        if delta.index == 0 && delta.text.contains('\n') {
            if let (Some(on), Some(end)) = (on_lines, text.rfind('\n')) {
                on(&text[..=end]);
            }
        }
        if delta.text.contains('\n') && repeats_itself(text) {
            // Going in circles: this answer is done.
            self.looped[delta.index] = true;
            Flow::Stop
        } else {
            Flow::Continue
        }
    }

    /// The group's answers, each with the group's `latency`.
    fn finish(self, prompt: &Prompt, generation: Generation, latency: Duration) -> Vec<Generated> {
        let latency_ms = latency.as_millis() as u64;
        generation
            .completions
            .into_iter()
            .zip(self.looped)
            .map(|(c, looped)| Generated {
                prompt: prompt.fitted.text.clone(),
                answer_start: prompt.answer_start.clone(),
                logprob_sum: c.sum_logprob(),
                token_count: c.token_ids.len(),
                finished: !looped
                    && !matches!(
                        c.finish_reason,
                        FinishReason::Length | FinishReason::Cancelled
                    ),
                completion: c.text,
                latency_ms,
                prompt_ids: prompt.fitted.ids.clone(),
                token_ids: c.token_ids,
                token_logprobs: c.logprobs,
                logprob_temperature: prompt.sampling.logprob_temperature(),
            })
            .collect()
    }
}

/// Lines of a window that, seen a third time, means the model is going in circles.
const LOOP_WINDOW: usize = 3;

/// A run of this many copies of one line (of at least [`LINE_LOOP_CHARS`]
/// characters) is a loop too.
const LINE_LOOP_RUN: usize = 6;
const LINE_LOOP_CHARS: usize = 10;

/// Whether the text's last [`LOOP_WINDOW`] non-blank lines (complete lines only)
/// already appeared twice before, line for line: a small model repeating a block
/// (the same test body under new names, the same function again) would go on
/// until the token budget. Windows of one repeated line, or under 20 characters,
/// do not count, except a run of [`LINE_LOOP_RUN`] copies of one line that is no
/// closing bracket (`random.shuffle(x)` thirty times over, seen from the
/// default model).
pub fn repeats_itself(text: &str) -> bool {
    let complete = match text.rfind('\n') {
        Some(i) => &text[..i],
        None => return false,
    };
    let lines: Vec<&str> = complete
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.len() < LOOP_WINDOW * 3 {
        return false;
    }
    let last = &lines[lines.len() - LOOP_WINDOW..];
    // Runs of one line (closing braces) and tiny windows repeat in honest code;
    // a long run of one real line does not.
    if last.iter().all(|l| *l == last[0]) {
        let run = lines.iter().rev().take_while(|l| **l == last[0]).count();
        return run >= LINE_LOOP_RUN && last[0].len() >= LINE_LOOP_CHARS;
    }
    if last.iter().map(|l| l.len()).sum::<usize>() < 20 {
        return false;
    }
    let earlier = lines.len() - LOOP_WINDOW;
    (0..earlier)
        .filter(|&i| i + LOOP_WINDOW <= earlier && lines[i..i + LOOP_WINDOW] == *last)
        .count()
        >= 2
}

/// The start of a code answer in `fence` (e.g. `python`): an opening fence. The
/// model continues inside it and stops at the closing fence, which keeps a small
/// model's answer to code instead of chatter.
pub fn code_answer_start(fence: &str) -> String {
    format!("```{fence}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_seen_a_third_time_is_a_loop() {
        let body = "    \"\"\"Checks it.\"\"\"\n    x = f(10)\n    self.assertEqual(x, 10)\n\n";
        let mut text = String::new();
        for (i, expect) in [(0, false), (1, false), (2, true)] {
            text.push_str(&format!("def test_{i}(self):\n{body}"));
            assert_eq!(repeats_itself(&text), expect, "after {} blocks", i + 1);
        }
        // Repeated single lines (closing braces, blank lines) are not a loop.
        assert!(!repeats_itself("}\n}\n}\n}\n}\n}\n}\n}\n}\n}\n"));
        // A long run of one real line is.
        let line = "        random.shuffle(range(10))\n";
        let start =
            "import random\n\ndef test_it(self):\n    x = [1, 2, 3]\n    y = list(x)\n    z = y\n";
        assert!(!repeats_itself(&format!("{start}{}", line.repeat(5))));
        assert!(repeats_itself(&format!("{start}{}", line.repeat(6))));
        // Only complete lines count, and short texts never loop.
        let three = "alpha = 1\nbeta = 2\ngamma = 3\n".repeat(3);
        assert!(repeats_itself(&three));
        assert!(!repeats_itself(three.trim_end()));
        assert!(!repeats_itself(&"a\nb\nc\n".repeat(3)), "too short to tell");
        assert!(!repeats_itself(""));
        assert!(!repeats_itself("x\n"));
    }
}
