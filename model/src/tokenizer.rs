//! The tokenizer, built with the `tokenizers` crate from a Hugging Face
//! `tokenizer.json` or from a GGUF file's own vocabulary (`tokenizer.ggml.*`).
//!
//! For GGUF, the BPE model is assembled from the vocabulary and merges, and the
//! pre-tokenizer follows the file's `tokenizer.ggml.pre`, as llama.cpp does: e.g.
//! SmolLM2's `smollm` splits every digit on its own before the GPT-2 regex.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::Value;
use serde_json::json;

use crate::error::{Error, Result};

/// Llama 3's (`llama-bpe`), also used by DeepSeek-Coder-V2-style vocabularies.
const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's.
const QWEN2_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A tokenizer with the model's special tokens.
///
/// Text is read two ways: [`Tokenizer::encode`] treats everything as text, so a
/// `<|im_end|>` written in a file or an issue is a few ordinary tokens, never the
/// end of a turn; [`Tokenizer::encode_with_special_tokens`] turns special-token
/// markers into their control tokens, for text the caller wrote itself (a chat
/// template's own markers, a raw prompt).
pub struct Tokenizer {
    /// Recognises special tokens written in the text.
    inner: tokenizers::Tokenizer,
    /// The same tokenizer, reading special-token markers as plain text.
    plain: tokenizers::Tokenizer,
    bos: Option<String>,
    eos: Option<String>,
    /// Token ids that end a generation.
    eos_ids: Vec<u32>,
}

impl Tokenizer {
    /// From a Hugging Face `tokenizer.json` (and, beside it, `tokenizer_config.json`
    /// for the BOS/EOS tokens and `generation_config.json` for extra EOS ids).
    pub fn from_hf_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        if !path.exists() {
            return Err(Error::MissingTokenizer(format!(
                "{} does not exist",
                path.display()
            )));
        }
        let inner = tokenizers::Tokenizer::from_file(&path)
            .map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))?;
        let config = read_json(&dir.join("tokenizer_config.json"))?;
        let token_str = |key: &str| -> Option<String> {
            let v = config.as_ref()?.get(key)?;
            v.as_str().map(str::to_string).or_else(|| {
                v.get("content")
                    .and_then(|c| c.as_str())
                    .map(str::to_string)
            })
        };
        let bos = token_str("bos_token");
        let eos = token_str("eos_token");
        let mut eos_ids: Vec<u32> = eos.iter().filter_map(|t| inner.token_to_id(t)).collect();
        if let Some(gen) = read_json(&dir.join("generation_config.json"))? {
            match gen.get("eos_token_id") {
                Some(serde_json::Value::Number(n)) => eos_ids.extend(n.as_u64().map(|x| x as u32)),
                Some(serde_json::Value::Array(a)) => {
                    eos_ids.extend(a.iter().filter_map(|x| x.as_u64()).map(|x| x as u32))
                }
                _ => {}
            }
        }
        Ok(Self::with_specials(inner, bos, eos, eos_ids))
    }

    /// From GGUF metadata (`tokenizer.ggml.model == "gpt2"`, a byte-level BPE).
    pub fn from_gguf(metadata: &HashMap<String, Value>) -> Result<Self> {
        let get = |k: &str| metadata.get(k);
        let model = get("tokenizer.ggml.model")
            .and_then(|v| v.to_string().ok())
            .ok_or_else(|| {
                Error::MissingTokenizer("no `tokenizer.ggml.model` in the GGUF metadata".into())
            })?;
        if model != "gpt2" {
            return Err(Error::MissingTokenizer(format!(
                "GGUF tokenizer model `{model}` is not supported yet (only byte-level BPE, `gpt2`); \
                 register the model as a Hugging Face directory with its tokenizer.json instead"
            )));
        }
        let tokens = string_array(get("tokenizer.ggml.tokens"), "tokenizer.ggml.tokens")?;
        let merges = string_array(get("tokenizer.ggml.merges"), "tokenizer.ggml.merges")?;
        let types: Vec<i64> = match get("tokenizer.ggml.token_type").and_then(|v| v.to_vec().ok()) {
            Some(v) => v
                .iter()
                .map(|x| match x {
                    Value::I32(i) => *i as i64,
                    Value::U32(i) => *i as i64,
                    _ => 1,
                })
                .collect(),
            None => vec![1; tokens.len()],
        };
        let pre = get("tokenizer.ggml.pre")
            .and_then(|v| v.to_string().ok())
            .map(String::as_str)
            .unwrap_or("default");
        let pre_tokenizer = pre_tokenizer_for(pre)?;

        let vocab: serde_json::Map<String, serde_json::Value> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), json!(i)))
            .collect();
        // Control (3) and user-defined (4) tokens are matched whole in the input.
        let added: Vec<serde_json::Value> = tokens
            .iter()
            .enumerate()
            .filter(|(i, _)| matches!(types.get(*i), Some(3) | Some(4)))
            .map(|(i, t)| {
                json!({"id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                       "normalized": false, "special": types[i] == 3})
            })
            .collect();
        let spec = json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": null,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {
                "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                "vocab": vocab, "merges": merges,
            },
        });
        let inner: tokenizers::Tokenizer =
            spec.to_string().parse().map_err(|e: tokenizers::Error| {
                Error::Tokenizer(format!("building the tokenizer from GGUF: {e}"))
            })?;
        let token_at = |key: &str| -> Option<String> {
            let id = get(key)?.to_u32().ok()? as usize;
            tokens.get(id).cloned()
        };
        let bos = token_at("tokenizer.ggml.bos_token_id");
        let eos = token_at("tokenizer.ggml.eos_token_id");
        let eos_ids: Vec<u32> = ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"]
            .iter()
            .filter_map(|k| get(k).and_then(|v| v.to_u32().ok()))
            .collect();
        Ok(Self::with_specials(inner, bos, eos, eos_ids))
    }

    fn with_specials(
        inner: tokenizers::Tokenizer,
        bos: Option<String>,
        eos: Option<String>,
        mut eos_ids: Vec<u32>,
    ) -> Self {
        eos_ids.sort_unstable();
        eos_ids.dedup();
        let mut plain = inner.clone();
        plain.set_encode_special_tokens(true);
        Self {
            inner,
            plain,
            bos,
            eos,
            eos_ids,
        }
    }

    /// Token ids of `text`, all of it read as text: special-token markers written
    /// in it (e.g. `<|im_end|>`) become ordinary tokens. No BOS/EOS is added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Self::ids(&self.plain, text)
    }

    /// Token ids of `text` in which special-token markers (e.g. `<|im_start|>`)
    /// become their control tokens. Only for text whose markers are meant as
    /// such: a chat template's own, or a raw prompt its author wrote.
    pub fn encode_with_special_tokens(&self, text: &str) -> Result<Vec<u32>> {
        Self::ids(&self.inner, text)
    }

    fn ids(t: &tokenizers::Tokenizer, text: &str) -> Result<Vec<u32>> {
        let enc = t
            .encode_fast(text, false)
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Whether `id` is one of the special (control) tokens.
    pub fn is_special(&self, id: u32) -> bool {
        self.inner
            .get_added_vocabulary()
            .get_added_tokens_decoder()
            .get(&id)
            .is_some_and(|t| t.special)
    }

    /// The text of `ids`, special tokens left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| Error::Tokenizer(e.to_string()))
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn bos_token(&self) -> Option<&str> {
        self.bos.as_deref()
    }

    pub fn eos_token(&self) -> Option<&str> {
        self.eos.as_deref()
    }

    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }
}

fn pre_tokenizer_for(pre: &str) -> Result<serde_json::Value> {
    let byte_level = |use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex});
    let split = |pattern: &str| json!({"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": false});
    Ok(match pre {
        "default" | "gpt-2" | "gpt2" | "olmo" => byte_level(true),
        // StarCoder-style vocabularies: digits split one by one, then GPT-2's regex.
        "smollm" | "starcoder" | "refact" | "codeshell" => {
            json!({"type": "Sequence", "pretokenizers": [split(r"\p{N}"), byte_level(true)]})
        }
        "qwen2" | "deepseek-r1-qwen" => json!({"type": "Sequence", "pretokenizers": [split(QWEN2_PATTERN), byte_level(false)]}),
        "llama-bpe" | "llama3" | "smaug-bpe" => {
            json!({"type": "Sequence", "pretokenizers": [split(LLAMA3_PATTERN), byte_level(false)]})
        }
        other => {
            return Err(Error::MissingTokenizer(format!(
                "GGUF pre-tokenizer `{other}` is not supported; supported: default, gpt2, smollm, starcoder, qwen2, llama-bpe"
            )))
        }
    })
}

fn string_array(v: Option<&Value>, key: &str) -> Result<Vec<String>> {
    let arr = v
        .and_then(|v| v.to_vec().ok())
        .ok_or_else(|| Error::MissingTokenizer(format!("no `{key}` array in the GGUF metadata")))?;
    arr.iter()
        .map(|x| {
            x.to_string()
                .cloned()
                .map_err(|_| Error::MissingTokenizer(format!("`{key}` holds a non-string")))
        })
        .collect()
}

fn read_json(path: &Path) -> Result<Option<serde_json::Value>> {
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))
}
