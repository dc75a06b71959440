//! Sampling from the model: temperature, top-k, top-p, seed, stop strings, max
//! tokens, streaming, cancellation between tokens; G samples of one prompt decoded
//! as one batch after one shared prefill (the trainer samples groups); the
//! log-probability of every sampled token; teacher-forced log-probs of a given
//! completion; reuse of the KV cache of the previous prompt's common prefix.

use std::sync::Mutex;
use std::time::Instant;

use candle_core::{Tensor, D};
use rand::{Rng, SeedableRng};

use crate::error::{Error, Result};
use crate::kv_cache::KvCache;
use crate::tokenizer::Tokenizer;
use crate::transformer::{Logits, Model};

/// How to sample.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    /// Nucleus sampling threshold; 1 disables it.
    pub top_p: f32,
    /// Keep only the k most likely tokens; 0 disables it.
    pub top_k: usize,
    /// Sample `i` of a group draws from a random stream of its own, seeded with
    /// `seed + i` (wrapping): a group of `n` gives what `n` single requests with
    /// seeds `seed`, `seed + 1`, … give, so a caller may batch or split samples
    /// without changing them.
    pub seed: u64,
    pub max_tokens: usize,
    /// Generation stops when the text contains one of these (the stop string and
    /// what follows it are cut from the text).
    pub stop: Vec<String>,
}

impl SamplingParams {
    /// The temperature of the distribution a token's log-prob is taken from
    /// (see [`Completion::logprobs`]): the sampling temperature, 1 when greedy.
    pub fn logprob_temperature(&self) -> f32 {
        if self.temperature <= 0.0 {
            1.0
        } else {
            self.temperature
        }
    }
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            seed: 0,
            max_tokens: 256,
            stop: Vec::new(),
        }
    }
}

/// Why a sequence stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The model produced an end-of-sequence token.
    Eos,
    /// A stop string appeared.
    Stop,
    /// `max_tokens` or the context length was reached.
    Length,
    /// The caller cancelled.
    Cancelled,
}

/// One sampled completion.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub text: String,
    pub token_ids: Vec<u32>,
    /// log p(token) of each sampled token under the distribution it was drawn from
    /// before top-k/top-p truncation: the softmax of logits / temperature (of the raw
    /// logits when greedy). This is the behaviour policy's log-prob that off-policy
    /// training needs, and what a trainer recomputes at the same temperature.
    pub logprobs: Vec<f32>,
    pub finish_reason: FinishReason,
}

impl Completion {
    pub fn sum_logprob(&self) -> f64 {
        self.logprobs.iter().map(|&x| x as f64).sum()
    }
}

/// The completions of one request and what it cost.
#[derive(Debug, Clone)]
pub struct Generation {
    pub completions: Vec<Completion>,
    pub prompt_tokens: usize,
    /// Prompt tokens whose keys/values came from the previous request's cache.
    pub reused_prompt_tokens: usize,
    pub prefill_secs: f64,
    /// Tokens decoded after the first one of each sequence (which the prefill
    /// produced), summed over the group.
    pub decode_tokens: usize,
    pub decode_secs: f64,
    /// The counters ([`crate::stats`]) over the prefill and over the decode.
    /// They are process-wide: other work running at the same time counts too.
    pub prefill_work: crate::stats::Work,
    pub decode_work: crate::stats::Work,
}

impl Generation {
    /// The result of a request cancelled before it started: `n` empty
    /// completions.
    fn cancelled(prompt_tokens: usize, n: usize) -> Self {
        let none = Completion {
            text: String::new(),
            token_ids: Vec::new(),
            logprobs: Vec::new(),
            finish_reason: FinishReason::Cancelled,
        };
        Self {
            completions: vec![none; n],
            prompt_tokens,
            reused_prompt_tokens: 0,
            prefill_secs: 0.0,
            decode_tokens: 0,
            decode_secs: 0.0,
            prefill_work: Default::default(),
            decode_work: Default::default(),
        }
    }
}

/// What a streaming callback says about the sequence whose text it received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// That sequence is done (the caller saw enough).
    Stop,
}

/// What the streaming callback receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextDelta<'a> {
    /// Which sample of the group.
    pub index: usize,
    pub text: &'a str,
}

/// Prompt tokens prefilled in one pass; a longer prompt is prefilled in chunks.
const PREFILL_CHUNK: usize = 512;

/// Minimum prompt length worth keeping a KV cache for.
const PREFIX_CACHE_MIN_TOKENS: usize = 16;

/// The default memory limit of the prefix cache.
pub const DEFAULT_PREFIX_CACHE_BYTES: usize = 256 << 20;

struct PrefixEntry {
    ids: Vec<u32>,
    cache: KvCache,
    bytes: usize,
    used: u64,
}

/// The KV caches of recent prompts, keyed by their token ids, within a memory
/// limit (least recently used first out).
struct PrefixCache {
    entries: Vec<PrefixEntry>,
    limit: usize,
    clock: u64,
    stats: PrefixStats,
}

/// How the prefix cache has done since the start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrefixStats {
    /// Prompts that reused a cached prefix (of at least 16 tokens).
    pub hits: u64,
    /// Prompts that found none.
    pub misses: u64,
    /// Prompt tokens in all lookups, and how many of them were reused.
    pub prompt_tokens: u64,
    pub reused_tokens: u64,
    /// Entries and bytes held now.
    pub entries: usize,
    pub bytes: usize,
    /// Entries dropped to stay within the memory limit.
    pub evictions: u64,
}

impl PrefixCache {
    fn bytes(&self) -> usize {
        self.entries.iter().map(|e| e.bytes).sum()
    }

    fn evict_to(&mut self, limit: usize) {
        while self.bytes() > limit && !self.entries.is_empty() {
            let oldest = (0..self.entries.len())
                .min_by_key(|&i| self.entries[i].used)
                .expect("not empty");
            self.entries.swap_remove(oldest);
            self.stats.evictions += 1;
        }
    }
}

/// A generator over one model and tokenizer. It keeps the KV caches of recent
/// prompts (a bounded LRU cache keyed by token ids), so that a request sharing a
/// prefix with one of them (the same system prompt and file context, a retried
/// request, the K samples of an evaluation) prefills only what is new.
pub struct Generator {
    prefix: Mutex<PrefixCache>,
}

impl Default for Generator {
    fn default() -> Self {
        Self::new()
    }
}

impl Generator {
    pub fn new() -> Self {
        Self {
            prefix: Mutex::new(PrefixCache {
                entries: Vec::new(),
                limit: DEFAULT_PREFIX_CACHE_BYTES,
                clock: 0,
                stats: PrefixStats::default(),
            }),
        }
    }

    fn prefix_cache(&self) -> std::sync::MutexGuard<'_, PrefixCache> {
        self.prefix.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the prefix cache's memory limit (0 keeps nothing).
    pub fn set_prefix_limit(&self, bytes: usize) {
        let mut c = self.prefix_cache();
        c.limit = bytes;
        c.evict_to(bytes);
    }

    /// The prefix cache's counters.
    pub fn prefix_stats(&self) -> PrefixStats {
        let c = self.prefix_cache();
        PrefixStats {
            entries: c.entries.len(),
            bytes: c.bytes(),
            ..c.stats
        }
    }

    /// Samples `n` completions of `prompt`. `on_text` receives text as it is decoded;
    /// `cancelled` is polled between tokens.
    #[allow(clippy::too_many_arguments)]
    pub fn generate(
        &self,
        model: &Model,
        tokenizer: &Tokenizer,
        prompt: &[u32],
        params: &SamplingParams,
        n: usize,
        on_text: &mut dyn FnMut(TextDelta<'_>),
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Generation> {
        self.generate_controlled(
            model,
            tokenizer,
            prompt,
            params,
            n,
            &mut |d| {
                on_text(d);
                Flow::Continue
            },
            cancelled,
        )
    }

    /// [`Generator::generate`], where `on_text` may also stop the one sequence
    /// its text belongs to ([`Flow::Stop`]: it finishes as [`FinishReason::Stop`])
    /// while the others of the group go on.
    #[allow(clippy::too_many_arguments)]
    pub fn generate_controlled(
        &self,
        model: &Model,
        tokenizer: &Tokenizer,
        prompt: &[u32],
        params: &SamplingParams,
        n: usize,
        on_text: &mut dyn FnMut(TextDelta<'_>) -> Flow,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Generation> {
        let mut g = self.start(model, tokenizer, prompt, params, n, on_text, cancelled)?;
        while !g.done() {
            if cancelled() {
                g.cancel();
                break;
            }
            let logits = on_pool(|| model.decode_ragged(&g.last_tokens(), &mut [&mut g.cache]))?;
            g.accept(&logits.squeeze(1)?.to_vec2()?, tokenizer, on_text)?;
        }
        Ok(g.finish())
    }

    /// Generates every request, decoding the sequences of several requests
    /// together, continuous-batching style: one step runs every active
    /// sequence's next token through one pass over the weights
    /// ([`Model::decode_ragged`]); a request is prefilled and joins as soon as
    /// the sequences under way leave room for it within `budget_tokens` (each
    /// sequence counts its prompt and its `max_tokens`: about what its KV cache
    /// can grow to), and leaves when its last sequence finishes. A request too
    /// big for the budget runs alone. Each request's results are the ones
    /// [`Generator::generate_controlled`] gives it alone, bit for bit (its
    /// samples draw from streams of their own: see [`SamplingParams::seed`]).
    /// `on_done(i, result)` hears request `i`'s result as soon as it is done;
    /// when `cancelled` turns true the requests under way finish as cancelled
    /// and the others are not started.
    pub fn generate_many(
        &self,
        model: &Model,
        tokenizer: &Tokenizer,
        requests: Vec<Request<'_>>,
        budget_tokens: usize,
        cancelled: &dyn Fn() -> bool,
        on_done: &mut dyn FnMut(usize, Result<Generation>),
    ) {
        let mut waiting = requests.into_iter().enumerate().peekable();
        // (request index, its callback, its group, the tokens it counts)
        let mut running: Vec<(usize, OnText<'_>, Group<'_>, usize)> = Vec::new();
        loop {
            while let Some((_, r)) = waiting.peek() {
                let need = r.tokens();
                let in_use: usize = running.iter().map(|r| r.3).sum();
                if cancelled() || !running.is_empty() && in_use + need > budget_tokens {
                    break;
                }
                let (i, r) = waiting.next().expect("peeked");
                let Request {
                    prompt,
                    params,
                    n,
                    on_text,
                } = r;
                match self.start(
                    model,
                    tokenizer,
                    prompt,
                    params,
                    n,
                    &mut *on_text,
                    cancelled,
                ) {
                    Ok(g) if g.done() => on_done(i, Ok(g.finish())),
                    Ok(g) => running.push((i, on_text, g, need)),
                    Err(e) => on_done(i, Err(e)),
                }
            }
            if running.is_empty() {
                if cancelled() {
                    // Those not started get no token at all, as a request
                    // cancelled during its prefill.
                    for (i, r) in waiting.by_ref() {
                        on_done(i, Ok(Generation::cancelled(r.prompt.len(), r.n)));
                    }
                }
                if waiting.peek().is_none() {
                    break;
                }
                continue;
            }
            if cancelled() {
                for (i, _, mut g, _) in running.drain(..) {
                    g.cancel();
                    on_done(i, Ok(g.finish()));
                }
                continue;
            }
            let tokens: Vec<u32> = running.iter().flat_map(|r| r.2.last_tokens()).collect();
            let mut caches: Vec<&mut KvCache> =
                running.iter_mut().map(|r| &mut r.2.cache).collect();
            let step = on_pool(|| model.decode_ragged(&tokens, &mut caches))
                .and_then(|logits| Ok(logits.squeeze(1)?.to_vec2::<f32>()?));
            let rows = match step {
                Ok(rows) => rows,
                Err(e) => {
                    // The step failed for every request in it.
                    let message = format!("decoding failed: {e}");
                    for (i, _, _, _) in running.drain(..) {
                        let e = candle_core::Error::Msg(message.clone());
                        on_done(i, Err(Error::Candle(e)));
                    }
                    continue;
                }
            };
            let mut at = 0;
            let mut still = Vec::with_capacity(running.len());
            for (i, on_text, mut g, need) in running.drain(..) {
                let b = g.active.len();
                let accepted = g.accept(&rows[at..at + b], tokenizer, on_text);
                at += b;
                match accepted {
                    Err(e) => on_done(i, Err(e)),
                    Ok(()) if g.done() => on_done(i, Ok(g.finish())),
                    Ok(()) => still.push((i, on_text, g, need)),
                }
            }
            running = still;
        }
    }

    /// Checks a request, prefills its prompt (reusing a cached prefix) and
    /// samples each sequence's first token.
    #[allow(clippy::too_many_arguments)]
    fn start<'p>(
        &self,
        model: &Model,
        tokenizer: &Tokenizer,
        prompt: &[u32],
        params: &'p SamplingParams,
        n: usize,
        on_text: &mut dyn FnMut(TextDelta<'_>) -> Flow,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Group<'p>> {
        if prompt.is_empty() {
            return Err(Error::InvalidArgument("the prompt is empty".into()));
        }
        if n == 0 {
            return Err(Error::InvalidArgument(
                "at least one sample must be asked for".into(),
            ));
        }
        if !(params.temperature >= 0.0 && params.temperature.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "temperature {} must be >= 0",
                params.temperature
            )));
        }
        if !(params.top_p > 0.0 && params.top_p <= 1.0) {
            return Err(Error::InvalidArgument(format!(
                "top_p {} must be in (0, 1]",
                params.top_p
            )));
        }
        let context = model.config().context_length;
        if prompt.len() >= context {
            return Err(Error::PromptTooLong {
                prompt_tokens: prompt.len(),
                context,
            });
        }
        let vocab = model.config().vocab_size;
        if let Some(&bad) = prompt.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::InvalidArgument(format!(
                "token id {bad} is outside the vocabulary of {vocab}"
            )));
        }
        let max_tokens = params.max_tokens.min(context - prompt.len());

        // Prefill, reusing the cached prefix where there is one.
        let start = Instant::now();
        let work_start = crate::stats::snapshot();
        let (mut cache, reused) = self.take_prefix(model, prompt)?;
        // In chunks: a chunk's activations are all that is held beside the cache
        // (a 4k-token prompt in one pass held about 350 MB), and a prefill cut
        // anywhere gives the logits of one pass, bit for bit.
        let mut logits = None;
        for chunk in prompt[reused..].chunks(PREFILL_CHUNK) {
            let ids = Tensor::new(chunk, model.device())?.unsqueeze(0)?;
            logits = Some(on_pool(|| {
                model.forward(&ids, Some(&mut cache), Logits::Last)
            })?);
        }
        let first_logits: Vec<f32> = logits
            .expect("at least one token to prefill")
            .flatten_all()?
            .to_vec1()?;
        self.store_prefix(prompt, &cache)?;
        let prefill_secs = start.elapsed().as_secs_f64();
        let work_prefilled = crate::stats::snapshot();
        // A caller that gave up during the prefill gets no token at all.
        let cancelled_in_prefill = cancelled();

        let mut g = Group {
            params,
            max_tokens,
            rngs: (0..n)
                .map(|i| rand::rngs::StdRng::seed_from_u64(params.seed.wrapping_add(i as u64)))
                .collect(),
            seqs: (0..n).map(|_| SeqState::default()).collect(),
            active: Vec::new(),
            cache: if n > 1 {
                cache.fork(n, max_tokens)?
            } else {
                cache
            },
            prompt_tokens: prompt.len(),
            reused,
            prefill_secs,
            decode_start: Instant::now(),
            decode_tokens: 0,
            work_start,
            work_prefilled,
        };
        if cancelled_in_prefill {
            for s in &mut g.seqs {
                s.finish = Some(FinishReason::Cancelled);
            }
        } else if max_tokens == 0 {
            for s in &mut g.seqs {
                s.finish = Some(FinishReason::Length);
            }
        } else {
            for (i, s) in g.seqs.iter_mut().enumerate() {
                let (tok, lp) = sample(&first_logits, params, &mut g.rngs[i]);
                s.push(i, tok, lp, tokenizer, params, max_tokens, on_text)?;
            }
        }
        g.active = (0..n).collect();
        g.keep_unfinished()?;
        Ok(g)
    }

    /// A cache holding the longest prefix of `prompt` that a kept entry shares
    /// (always leaving at least one token to prefill), and its length.
    fn take_prefix(&self, model: &Model, prompt: &[u32]) -> Result<(KvCache, usize)> {
        let mut c = self.prefix_cache();
        let best = c
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let common = e.ids.iter().zip(prompt).take_while(|(a, b)| a == b).count();
                (i, common.min(prompt.len() - 1).min(e.cache.len()))
            })
            .max_by_key(|&(_, common)| common);
        c.stats.prompt_tokens += prompt.len() as u64;
        if let Some((i, common)) = best.filter(|&(_, n)| n >= PREFIX_CACHE_MIN_TOKENS) {
            c.clock += 1;
            let clock = c.clock;
            c.entries[i].used = clock;
            c.stats.hits += 1;
            c.stats.reused_tokens += common as u64;
            let mut cache = c.entries[i].cache.fork(1, prompt.len() - common)?;
            cache.truncate(common);
            return Ok((cache, common));
        }
        c.stats.misses += 1;
        Ok((model.new_cache(), 0))
    }

    /// Keeps the cache of `prompt` (replacing entries it extends), within the limit.
    fn store_prefix(&self, prompt: &[u32], cache: &KvCache) -> Result<()> {
        if prompt.len() < PREFIX_CACHE_MIN_TOKENS {
            return Ok(());
        }
        let limit = {
            let c = self.prefix_cache();
            // A repeated prompt found itself in `take_prefix` (which marked it
            // used): copying its cache again would only replace it.
            if c.entries.iter().any(|e| e.ids == prompt) {
                return Ok(());
            }
            c.limit
        };
        if limit == 0 {
            return Ok(());
        }
        // The copy is made outside the lock (it is the expensive part).
        let copy = cache.fork(1, 0)?;
        let bytes = copy.bytes();
        if bytes > limit {
            return Ok(());
        }
        let mut c = self.prefix_cache();
        // An entry whose ids this prompt starts with is covered by the new one.
        c.entries
            .retain(|e| !(e.ids.len() <= prompt.len() && prompt.starts_with(&e.ids)));
        c.clock += 1;
        let used = c.clock;
        c.entries.push(PrefixEntry {
            ids: prompt.to_vec(),
            cache: copy,
            bytes,
            used,
        });
        c.evict_to(limit);
        Ok(())
    }

    /// Drops every kept prefix (e.g. when the model's weights change).
    pub fn clear_prefix(&self) {
        self.prefix_cache().entries.clear();
    }
}

#[derive(Default)]
struct SeqState {
    tokens: Vec<u32>,
    logprobs: Vec<f32>,
    text: String,
    /// Incremental detokenization: text is emitted once the bytes decoded so far
    /// form whole characters.
    prefix_offset: usize,
    read_offset: usize,
    finish: Option<FinishReason>,
}

impl SeqState {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        index: usize,
        tok: u32,
        logprob: f32,
        tokenizer: &Tokenizer,
        params: &SamplingParams,
        max_tokens: usize,
        on_text: &mut dyn FnMut(TextDelta<'_>) -> Flow,
    ) -> Result<()> {
        self.tokens.push(tok);
        self.logprobs.push(logprob);
        if tokenizer.eos_ids().contains(&tok) {
            self.finish = Some(FinishReason::Eos);
            return Ok(());
        }
        let before = tokenizer.decode(&self.tokens[self.prefix_offset..self.read_offset])?;
        let after = tokenizer.decode(&self.tokens[self.prefix_offset..])?;
        if after.len() > before.len()
            && !after.ends_with('\u{FFFD}')
            && after.is_char_boundary(before.len())
        {
            let delta = &after[before.len()..];
            let old_len = self.text.len();
            self.text.push_str(delta);
            self.prefix_offset = self.read_offset;
            self.read_offset = self.tokens.len();
            if let Some(cut) = find_stop(&self.text, old_len, &params.stop) {
                let emitted_upto = cut.max(old_len);
                self.text.truncate(cut);
                if emitted_upto > old_len {
                    on_text(TextDelta {
                        index,
                        text: &self.text[old_len..emitted_upto],
                    });
                }
                self.finish = Some(FinishReason::Stop);
                return Ok(());
            }
            let flow = on_text(TextDelta {
                index,
                text: &self.text[old_len..],
            });
            if flow == Flow::Stop {
                self.finish = Some(FinishReason::Stop);
                return Ok(());
            }
        }
        if self.tokens.len() >= max_tokens {
            self.finish = Some(FinishReason::Length);
        }
        Ok(())
    }
}

/// A request's streaming callback.
type OnText<'a> = &'a mut dyn FnMut(TextDelta<'_>) -> Flow;

/// One request of [`Generator::generate_many`]: `n` completions of `prompt`,
/// their text streamed to `on_text` as in [`Generator::generate_controlled`].
pub struct Request<'a> {
    pub prompt: &'a [u32],
    pub params: &'a SamplingParams,
    pub n: usize,
    pub on_text: OnText<'a>,
}

impl Request<'_> {
    /// What the request counts against a batch's token budget: each sequence's
    /// prompt and new tokens.
    fn tokens(&self) -> usize {
        self.n * (self.prompt.len() + self.params.max_tokens)
    }
}

/// One request's sequences while they are decoded, alone or beside others'.
struct Group<'p> {
    params: &'p SamplingParams,
    max_tokens: usize,
    seqs: Vec<SeqState>,
    /// Sequence `i` samples from `rngs[i]` (see [`SamplingParams::seed`]).
    rngs: Vec<rand::rngs::StdRng>,
    /// `active[j]` is the sequence in row `j` of the cache.
    active: Vec<usize>,
    cache: KvCache,
    prompt_tokens: usize,
    reused: usize,
    prefill_secs: f64,
    decode_start: Instant,
    decode_tokens: usize,
    work_start: crate::stats::Work,
    work_prefilled: crate::stats::Work,
}

impl Group<'_> {
    fn done(&self) -> bool {
        self.active.is_empty()
    }

    /// The last token of each active sequence, in the cache's row order.
    fn last_tokens(&self) -> Vec<u32> {
        self.active
            .iter()
            .map(|&i| *self.seqs[i].tokens.last().expect("one token sampled"))
            .collect()
    }

    /// Samples the next token of each active sequence from its row of logits.
    fn accept(
        &mut self,
        rows: &[Vec<f32>],
        tokenizer: &Tokenizer,
        on_text: &mut dyn FnMut(TextDelta<'_>) -> Flow,
    ) -> Result<()> {
        self.decode_tokens += self.active.len();
        for (row, &i) in rows.iter().zip(&self.active) {
            let (tok, lp) = sample(row, self.params, &mut self.rngs[i]);
            self.seqs[i].push(i, tok, lp, tokenizer, self.params, self.max_tokens, on_text)?;
        }
        self.keep_unfinished()
    }

    /// Drops the finished sequences from the batch and their rows from the cache.
    fn keep_unfinished(&mut self) -> Result<()> {
        let still: Vec<usize> = (0..self.active.len())
            .filter(|&j| self.seqs[self.active[j]].finish.is_none())
            .collect();
        if still.len() < self.active.len() {
            if !still.is_empty() {
                self.cache
                    .select(&still.iter().map(|&j| j as u32).collect::<Vec<_>>())?;
            }
            self.active = still.iter().map(|&j| self.active[j]).collect();
        }
        Ok(())
    }

    fn cancel(&mut self) {
        for &i in &self.active {
            self.seqs[i].finish = Some(FinishReason::Cancelled);
        }
        self.active.clear();
    }

    fn finish(self) -> Generation {
        let work_end = crate::stats::snapshot();
        Generation {
            completions: self
                .seqs
                .into_iter()
                .map(|s| Completion {
                    text: s.text,
                    token_ids: s.tokens,
                    logprobs: s.logprobs,
                    finish_reason: s.finish.unwrap_or(FinishReason::Length),
                })
                .collect(),
            prompt_tokens: self.prompt_tokens,
            reused_prompt_tokens: self.reused,
            prefill_secs: self.prefill_secs,
            decode_tokens: self.decode_tokens,
            decode_secs: self.decode_start.elapsed().as_secs_f64(),
            prefill_work: self.work_prefilled.since(&self.work_start),
            decode_work: work_end.since(&self.work_prefilled),
        }
    }
}

/// Runs `f` on a thread of rayon's pool. The kernels split every matmul over that
/// pool; called from outside it, each of the ~200 matmuls of a decode step would
/// put this thread to sleep and wake it again, which costs more than the matmul.
pub(crate) fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}

/// The byte offset of the first stop string that ends after `new_from`.
fn find_stop(text: &str, new_from: usize, stops: &[String]) -> Option<usize> {
    stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| {
            let mut from = new_from.saturating_sub(s.len() - 1);
            while !text.is_char_boundary(from) {
                from -= 1;
            }
            text[from..].find(s.as_str()).map(|i| from + i)
        })
        .min()
}

/// Draws a token; returns it with its log-prob (see `Completion::logprobs`).
pub(crate) fn sample(logits: &[f32], params: &SamplingParams, rng: &mut impl Rng) -> (u32, f32) {
    let greedy = params.temperature <= 0.0;
    let t = params.logprob_temperature();
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let probs: Vec<f32> = logits.iter().map(|&l| ((l - max) / t).exp()).collect();
    let total: f32 = probs.iter().sum();
    let logprob_of = |i: usize| ((logits[i] - max) / t) - total.ln();
    if greedy {
        let best = argmax(logits);
        return (best as u32, logprob_of(best));
    }
    // Candidates after top-k and top-p, most likely first only when needed.
    let mut candidates: Vec<usize> = (0..probs.len()).collect();
    if params.top_k > 0 && params.top_k < candidates.len() {
        candidates.select_nth_unstable_by(params.top_k - 1, |&a, &b| probs[b].total_cmp(&probs[a]));
        candidates.truncate(params.top_k);
    }
    if params.top_p < 1.0 {
        candidates.sort_unstable_by(|&a, &b| probs[b].total_cmp(&probs[a]));
        let mass: f32 = candidates.iter().map(|&i| probs[i]).sum();
        let mut acc = 0.0;
        let mut keep = candidates.len();
        for (j, &i) in candidates.iter().enumerate() {
            acc += probs[i];
            if acc >= params.top_p * mass {
                keep = j + 1;
                break;
            }
        }
        candidates.truncate(keep);
    }
    let mass: f32 = candidates.iter().map(|&i| probs[i]).sum();
    let mut u = rng.random::<f32>() * mass;
    for &i in &candidates {
        u -= probs[i];
        if u <= 0.0 {
            return (i as u32, logprob_of(i));
        }
    }
    let last = *candidates.last().expect("at least one candidate");
    (last as u32, logprob_of(last))
}

fn argmax(xs: &[f32]) -> usize {
    xs.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if v > bv {
                (i, v)
            } else {
                (bi, bv)
            }
        })
        .0
}

/// log p(target) at every position: `logits` (batch, seq, vocab), `targets`
/// (batch, seq) → (batch, seq). Differentiable (the trainer's forward).
pub fn token_logprobs(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let dims = targets.dims().to_vec();
    let vocab = logits.dim(D::Minus1)?;
    let rows: usize = dims.iter().product();
    let flat =
        crate::ops::token_logprobs(&logits.reshape((rows, vocab))?, &targets.reshape(rows)?)?;
    Ok(flat.reshape(dims)?)
}

/// Teacher-forced log-probs of `completion` after `prompt`, one per completion
/// token, at temperature `temperature` (1 for the raw distribution), as a
/// tensor that carries the gradient when the model has trainable weights.
/// Logits are computed only where completion tokens are predicted.
pub fn completion_logprobs_tensor(
    model: &Model,
    prompt: &[u32],
    completion: &[u32],
    temperature: f32,
) -> Result<Tensor> {
    if prompt.is_empty() || completion.is_empty() {
        return Err(Error::InvalidArgument(
            "prompt and completion must both be non-empty".into(),
        ));
    }
    let mut all = prompt.to_vec();
    all.extend_from_slice(&completion[..completion.len() - 1]);
    let ids = Tensor::new(all.as_slice(), model.device())?.unsqueeze(0)?;
    let logits = model.forward(&ids, None, Logits::From(prompt.len() - 1))?;
    let logits = if temperature > 0.0 && temperature != 1.0 {
        (logits / temperature as f64)?
    } else {
        logits
    };
    let targets = Tensor::new(completion, model.device())?.unsqueeze(0)?;
    Ok(token_logprobs(&logits, &targets)?.squeeze(0)?)
}

/// [`completion_logprobs_tensor`] as numbers.
pub fn completion_logprobs(
    model: &Model,
    prompt: &[u32],
    completion: &[u32],
    temperature: f32,
) -> Result<Vec<f32>> {
    Ok(completion_logprobs_tensor(model, prompt, completion, temperature)?.to_vec1()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_picks_argmax_with_its_logprob() {
        let logits = [0.0f32, 2.0, 1.0];
        let (tok, lp) = sample(
            &logits,
            &SamplingParams::default(),
            &mut rand::rngs::StdRng::seed_from_u64(0),
        );
        assert_eq!(tok, 1);
        let expected = 2.0 - (1.0f32 + 2f32.exp() + 1f32.exp()).ln();
        assert!((lp - expected).abs() < 1e-6);
    }

    #[test]
    fn top_k_one_is_greedy_and_seed_is_deterministic() {
        let logits: Vec<f32> = (0..100).map(|i| (i as f32 * 0.37).sin()).collect();
        let p = SamplingParams {
            temperature: 1.0,
            top_k: 1,
            ..Default::default()
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        assert_eq!(sample(&logits, &p, &mut rng).0 as usize, argmax(&logits));
        let p = SamplingParams {
            temperature: 0.8,
            top_p: 0.9,
            ..Default::default()
        };
        let draw = |seed| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            (0..20)
                .map(|_| sample(&logits, &p, &mut rng).0)
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn top_p_excludes_the_tail() {
        // One token has 99% of the mass: top_p 0.5 must always choose it.
        let logits = [10.0f32, 0.0, 0.0, 0.0];
        let p = SamplingParams {
            temperature: 1.0,
            top_p: 0.5,
            ..Default::default()
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        assert!((0..200).all(|_| sample(&logits, &p, &mut rng).0 == 0));
    }

    #[test]
    fn stop_strings_are_found_across_deltas() {
        assert_eq!(find_stop("hello wor", 6, &["world".into()]), None);
        assert_eq!(find_stop("hello world!", 9, &["world".into()]), Some(6));
        assert_eq!(
            find_stop("a\n\nb", 2, &["\n\n".into(), "b".into()]),
            Some(1)
        );
        assert_eq!(find_stop("é", 2, &["xyz".into()]), None);
    }
}
