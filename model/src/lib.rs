//! The Basis coding model: a candle implementation of the Llama family and Qwen2
//! loaded from GGUF or safetensors, its tokenizer and chat template, generation with
//! per-token log-probs, and LoRA adapters in PEFT's layout.
//!
//! Architecture invariant: this crate knows nothing of skills, editors or LSP. It
//! turns token ids into logits and text into token ids, and nothing else.

pub mod alloc;
mod attention;
pub mod chat;
pub mod config;
mod cpu_quant;
pub mod error;
pub mod generate;
mod gguf_check;
pub mod isa;
pub mod kv_cache;
pub mod lora;
pub mod ops;
pub mod registry;
pub mod stats;
pub mod tiny;
pub mod tokenizer;
pub mod transformer;
pub mod weights;

use std::path::Path;

pub use candle_core::{Device, Tensor};
pub use chat::{ChatTemplate, Message};
pub use config::{Architecture, ModelConfig};
pub use error::{Error, Result};
pub use generate::{
    Completion, FinishReason, Flow, Generation, Generator, Request, SamplingParams, TextDelta,
};
pub use lora::LoraConfig;
pub use tokenizer::Tokenizer;
pub use transformer::{Logits, Model, OpMode};
pub use weights::Precision;

/// The device models run on: the first CUDA GPU when built with the `cuda` feature
/// and one is present, otherwise the CPU.
pub fn default_device() -> Device {
    #[cfg(feature = "cuda")]
    if let Ok(d) = Device::new_cuda(0) {
        return d;
    }
    Device::Cpu
}

/// Fixes the CPU thread count once for the process. candle asks for its thread count
/// on every op and, unless `RAYON_NUM_THREADS` is set, reads /proc/cpuinfo each time
/// (a measurable share of a decode step). Call at the start of `main`, before any
/// thread exists.
///
/// It also shortens how long candle's element-wise worker threads spin waiting
/// for the next op before they sleep (`CANDLE_BARRIER_POOL_SPIN_LIMIT`, default
/// 25,000 spins): while a matmul runs on every core, a spinning worker takes a
/// core from it. Measured on the 2-core bench machine (BENCHMARKS.md): 8,000
/// keeps decode's speed and makes prefill and the LoRA update step faster; 2,000
/// slows decode. Either variable, set by the user, wins.
pub fn configure_threads() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", "8000");
    }
}

/// A chat prompt as text (what is stored and shown) and as the token ids the
/// model reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatPrompt {
    pub text: String,
    pub ids: Vec<u32>,
}

/// A model with everything needed to turn a chat into text.
pub struct LanguageModel {
    pub model: Model,
    pub tokenizer: Tokenizer,
    pub chat_template: Option<ChatTemplate>,
    pub generator: Generator,
}

impl LanguageModel {
    /// Loads a GGUF file or a Hugging Face directory (config.json, *.safetensors,
    /// tokenizer.json).
    pub fn load(path: &Path, precision: Precision, device: &Device) -> Result<Self> {
        let ckpt = transformer::open_checkpoint(path, device)?;
        let (tokenizer, template_src) = match ckpt.gguf_metadata() {
            Some(meta) => {
                let tok = Tokenizer::from_gguf(meta)?;
                let tmpl = meta
                    .get("tokenizer.chat_template")
                    .and_then(|v| v.to_string().ok())
                    .cloned();
                (tok, tmpl)
            }
            None => {
                let tok = Tokenizer::from_hf_dir(path)?;
                let tmpl = read_hf_chat_template(path)?;
                (tok, tmpl)
            }
        };
        let model = Model::from_checkpoint(&ckpt, precision, device)?;
        if tokenizer.vocab_size() > model.config().vocab_size {
            return Err(Error::bad_file(
                path,
                format!(
                    "the tokenizer has {} tokens but the model only {} embeddings",
                    tokenizer.vocab_size(),
                    model.config().vocab_size
                ),
            ));
        }
        let chat_template = template_src
            .map(|src| ChatTemplate::new(&src, tokenizer.bos_token(), tokenizer.eos_token()))
            .transpose()?;
        Ok(Self {
            model,
            tokenizer,
            chat_template,
            generator: Generator::new(),
        })
    }

    /// A chat's prompt from the model's own template, with `answer_start` (the
    /// beginning of the assistant's answer, written by the caller) after it, as
    /// text and as token ids. Only the template's own markers become control
    /// tokens: message contents and `answer_start` are encoded as text, whatever
    /// they contain, so a `<|im_end|>` in a file cannot end the user's turn.
    pub fn chat_prompt(&self, messages: &[Message], answer_start: &str) -> Result<ChatPrompt> {
        let template = self.chat_template.as_ref().ok_or_else(|| {
            Error::ChatTemplate("the model has no chat template; use a raw prompt".into())
        })?;
        let mut prompt = ChatPrompt::default();
        let parts = template.render_parts(messages)?;
        let answer = chat::Part::Content(answer_start.to_string());
        for part in parts.iter().chain(std::iter::once(&answer)) {
            let ids = match part {
                chat::Part::Template(t) => self.tokenizer.encode_with_special_tokens(t)?,
                chat::Part::Content(t) => self.tokenizer.encode(t)?,
            };
            prompt.text.push_str(part.text());
            prompt.ids.extend(ids);
        }
        Ok(prompt)
    }

    /// Samples `n` completions of the token ids `prompt`.
    pub fn generate(
        &self,
        prompt: &[u32],
        params: &SamplingParams,
        n: usize,
        on_text: &mut dyn FnMut(TextDelta<'_>),
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Generation> {
        self.generator.generate(
            &self.model,
            &self.tokenizer,
            prompt,
            params,
            n,
            on_text,
            cancelled,
        )
    }

    /// [`LanguageModel::generate`] where the callback may stop one sequence of
    /// the group (see [`Generator::generate_controlled`]).
    pub fn generate_controlled(
        &self,
        prompt: &[u32],
        params: &SamplingParams,
        n: usize,
        on_text: &mut dyn FnMut(TextDelta<'_>) -> Flow,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Generation> {
        self.generator.generate_controlled(
            &self.model,
            &self.tokenizer,
            prompt,
            params,
            n,
            on_text,
            cancelled,
        )
    }

    /// Several requests decoded together (see [`Generator::generate_many`]).
    pub fn generate_many(
        &self,
        requests: Vec<Request<'_>>,
        budget_tokens: usize,
        cancelled: &dyn Fn() -> bool,
        on_done: &mut dyn FnMut(usize, Result<Generation>),
    ) {
        self.generator.generate_many(
            &self.model,
            &self.tokenizer,
            requests,
            budget_tokens,
            cancelled,
            on_done,
        )
    }
}

fn read_hf_chat_template(dir: &Path) -> Result<Option<String>> {
    let jinja = dir.join("chat_template.jinja");
    if jinja.exists() {
        return std::fs::read_to_string(&jinja)
            .map(Some)
            .map_err(|e| Error::io(&jinja, e));
    }
    let cfg = dir.join("tokenizer_config.json");
    if !cfg.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&cfg).map_err(|e| Error::io(&cfg, e))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::bad_file(&cfg, e))?;
    Ok(v.get("chat_template")
        .and_then(|t| t.as_str())
        .map(str::to_string))
}

/// Loads only the tokenizer of a GGUF file or Hugging Face directory (no weights).
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
    if path.is_dir() {
        Tokenizer::from_hf_dir(path)
    } else {
        let ckpt = weights::Checkpoint::open_gguf(path)?;
        Tokenizer::from_gguf(
            ckpt.gguf_metadata()
                .expect("a GGUF checkpoint has metadata"),
        )
    }
}
