//! A small randomly initialised model written as a Hugging Face directory
//! (`config.json`, `model.safetensors`, `tokenizer.json`, a chat template), for
//! tests that train a model from scratch in seconds (the trainer's overfit
//! test) and for checks on machines that have no model file (the GPU check).
//!
//! The vocabulary is `<eos>` and the words `w0` … `w{n-2}`, split on spaces by
//! a word-level tokenizer, so a test can say exactly which tokens an answer is.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};

use crate::error::{Error, Result};

/// The shape of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TinySpec {
    /// Tokens, `<eos>` included.
    pub vocab: usize,
    pub hidden: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
}

impl Default for TinySpec {
    fn default() -> Self {
        Self {
            vocab: 32,
            hidden: 32,
            intermediate: 64,
            layers: 2,
            heads: 4,
            kv_heads: 2,
        }
    }
}

/// The word of token `id` (id 0 is `<eos>`).
pub fn word(id: u32) -> String {
    if id == 0 {
        "<eos>".into()
    } else {
        format!("w{}", id - 1)
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

/// Writes a random model of shape `spec` (weights from `seed`) into `dir`.
pub fn write_random_model(dir: &Path, spec: &TinySpec, seed: u64) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let head_dim = spec.hidden / spec.heads;
    let config = serde_json::json!({
        "model_type": "llama",
        "vocab_size": spec.vocab,
        "hidden_size": spec.hidden,
        "intermediate_size": spec.intermediate,
        "num_hidden_layers": spec.layers,
        "num_attention_heads": spec.heads,
        "num_key_value_heads": spec.kv_heads,
        "head_dim": head_dim,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "max_position_embeddings": 512,
        "tie_word_embeddings": true,
    });
    write(&dir.join("config.json"), &config.to_string())?;

    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut normal = |rows: usize, cols: usize, std: f32| -> Result<Tensor> {
        // Box-Muller: two uniforms make one standard normal.
        let v: Vec<f32> = (0..rows * cols)
            .map(|_| {
                let u1: f32 = rng.random_range(1e-7..1.0);
                let u2: f32 = rng.random_range(0.0..1.0);
                std * (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
            })
            .collect();
        Ok(Tensor::from_vec(v, (rows, cols), &Device::Cpu)?)
    };
    let ones = |n: usize| -> Result<Tensor> { Ok(Tensor::ones(n, DType::F32, &Device::Cpu)?) };
    let (h, q, kv) = (spec.hidden, spec.heads * head_dim, spec.kv_heads * head_dim);
    let mut t: HashMap<String, Tensor> = HashMap::new();
    // Embeddings (tied to the output layer) large enough that adapters on the
    // projections alone can make one token almost certain, small enough that
    // the untrained model spreads its bets.
    t.insert(
        "model.embed_tokens.weight".into(),
        normal(spec.vocab, h, 0.25)?,
    );
    for i in 0..spec.layers {
        let p = format!("model.layers.{i}");
        t.insert(format!("{p}.input_layernorm.weight"), ones(h)?);
        t.insert(format!("{p}.post_attention_layernorm.weight"), ones(h)?);
        let std = 0.1;
        t.insert(format!("{p}.self_attn.q_proj.weight"), normal(q, h, std)?);
        t.insert(format!("{p}.self_attn.k_proj.weight"), normal(kv, h, std)?);
        t.insert(format!("{p}.self_attn.v_proj.weight"), normal(kv, h, std)?);
        t.insert(format!("{p}.self_attn.o_proj.weight"), normal(h, q, std)?);
        t.insert(
            format!("{p}.mlp.gate_proj.weight"),
            normal(spec.intermediate, h, std)?,
        );
        t.insert(
            format!("{p}.mlp.up_proj.weight"),
            normal(spec.intermediate, h, std)?,
        );
        t.insert(
            format!("{p}.mlp.down_proj.weight"),
            normal(h, spec.intermediate, std)?,
        );
    }
    t.insert("model.norm.weight".into(), ones(h)?);
    candle_core::safetensors::save(&t, dir.join("model.safetensors"))?;

    let vocab: serde_json::Map<String, serde_json::Value> = (0..spec.vocab as u32)
        .map(|id| (word(id), serde_json::json!(id)))
        .collect();
    let tokenizer = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [{
            "id": 0, "content": "<eos>", "single_word": false, "lstrip": false,
            "rstrip": false, "normalized": false, "special": true
        }],
        "normalizer": null,
        "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<eos>"},
    });
    write(&dir.join("tokenizer.json"), &tokenizer.to_string())?;
    let tokenizer_config = serde_json::json!({
        "eos_token": "<eos>",
        "chat_template": "{% for m in messages %}{{ m.content }} {% endfor %}",
    });
    write(
        &dir.join("tokenizer_config.json"),
        &tokenizer_config.to_string(),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LanguageModel, Logits, Precision};

    #[test]
    fn a_tiny_model_loads_tokenizes_and_runs() {
        let dir = tempfile::tempdir().unwrap();
        write_random_model(dir.path(), &TinySpec::default(), 7).unwrap();
        let lm = LanguageModel::load(dir.path(), Precision::F32, &Device::Cpu).unwrap();
        let ids = lm.tokenizer.encode("w0 w5 w30").unwrap();
        assert_eq!(ids, vec![1, 6, 31]);
        assert_eq!(lm.tokenizer.eos_ids(), &[0]);
        let input = Tensor::new(ids.as_slice(), &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let logits = lm.model.forward(&input, None, Logits::All).unwrap();
        assert_eq!(logits.dims(), &[1, 3, 32]);
    }
}
