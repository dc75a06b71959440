//! The decoder-only transformer of the Llama family (SmolLM2, Llama, CodeLlama,
//! DeepSeek-Coder) and of Qwen2 (Qwen2.5-Coder): pre-norm blocks of grouped-query
//! attention with rotary position embeddings and a SwiGLU MLP.
//! References: Touvron et al., "LLaMA" (arXiv 2302.13971); Qwen2 technical report
//! (arXiv 2407.10671), which adds biases to the q/k/v projections.
//!
//! One implementation serves two paths:
//! - serving: quantized weights (candle's quantized matmul), a KV cache and candle's
//!   fused kernels (rms_norm, rope, softmax_last_dim);
//! - training: f32 weights and only ops that record a backward pass. candle's fused
//!   kernels and the quantized matmul record none, so with them `backward()` succeeds
//!   while the weights silently get no gradient; `OpMode::Differentiable` avoids them
//!   and uses our own ops with a backward pass (`crate::ops`: RMSNorm, rope, causal
//!   softmax, a linear that skips a frozen weight's gradient).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::{QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor, Var};

use crate::config::ModelConfig;
use crate::cpu_quant::{QuantMatMul, QuantMatrix};
use crate::error::{Error, Result};
use crate::kv_cache::KvCache;
use crate::lora::{LoraConfig, LoraWeights};
use crate::weights::{Checkpoint, Precision, RawWeight};

/// Which kernels the forward pass uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpMode {
    /// candle's fused kernels: fast, but they record no gradient.
    Fused,
    /// Composite ops that all have a backward pass.
    Differentiable,
}

/// Which positions get logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// Only the last position (generation).
    Last,
    /// Every position (teacher forcing, training).
    All,
    /// The positions from this one on (training on a completion: the prompt's
    /// positions need no logits, and the output layer is the largest matmul).
    From(usize),
}

enum LinearWeight {
    Quantized(QMatMul),
    /// Q4_1 / Q8_0 on a CPU with AVX2: our kernels (see `cpu_quant`).
    CpuQuant(Arc<QuantMatrix>),
    Dense(Tensor),
}

/// A projection `y = x Wᵀ + b`, optionally with a LoRA update `(x Aᵀ) Bᵀ · α/r`.
pub(crate) struct Linear {
    weight: LinearWeight,
    bias: Option<Tensor>,
    lora: Option<LoraWeights>,
    /// False while the adapter is switched off (the reference policy).
    lora_on: bool,
    out_features: usize,
}

impl Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        // A frozen dense weight with its adapter: one op, one backward node.
        if let (LinearWeight::Dense(w), None, Some(lora)) = (&self.weight, &self.bias, &self.lora) {
            if self.lora_on && crate::ops::fused(x) && !w.is_variable() {
                let x2 = x.reshape((b * t, ()))?;
                let y = crate::ops::lora_linear(
                    &x2,
                    w,
                    lora.a.as_tensor(),
                    lora.b.as_tensor(),
                    lora.scale(),
                )?;
                return Ok(y.reshape((b, t, self.out_features))?);
            }
        }
        let y = match &self.weight {
            LinearWeight::Quantized(q) => q.forward(x)?,
            LinearWeight::CpuQuant(w) => {
                x.contiguous()?.apply_op1_no_bwd(&QuantMatMul(w.clone()))?
            }
            LinearWeight::Dense(w) => {
                let x2 = x.reshape((b * t, ()))?;
                crate::ops::linear(&x2, w)?.reshape((b, t, self.out_features))?
            }
        };
        let y = match &self.bias {
            Some(bias) => y.broadcast_add(bias)?,
            None => y,
        };
        match &self.lora {
            Some(lora) if self.lora_on => Ok((y + lora.delta(x)?)?),
            _ => Ok(y),
        }
    }

    pub(crate) fn in_out(&self) -> Result<(usize, usize)> {
        let dims = match &self.weight {
            LinearWeight::Quantized(QMatMul::QTensor(q)) => q.shape().dims2()?,
            LinearWeight::Quantized(QMatMul::Tensor(t) | QMatMul::TensorF16(t)) => t.dims2()?,
            LinearWeight::Dense(t) => t.dims2()?,
            LinearWeight::CpuQuant(w) => (w.rows(), w.cols()),
        };
        Ok((dims.1, dims.0))
    }
}

enum Embedding {
    Quantized(Arc<QTensor>),
    Dense(Tensor),
}

struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
}

struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

struct Block {
    input_layernorm: Tensor,
    self_attn: Attention,
    post_attention_layernorm: Tensor,
    mlp: Mlp,
}

/// The target module names LoRA may adapt, as PEFT spells them.
pub const LORA_TARGETS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// A loaded causal language model.
pub struct Model {
    cfg: ModelConfig,
    device: Device,
    precision: Precision,
    op_mode: OpMode,
    embed_tokens: Embedding,
    layers: Vec<Block>,
    norm: Tensor,
    lm_head: Linear,
    /// cos/sin tables, (context_length, head_dim / 2).
    rope_cos: Tensor,
    rope_sin: Tensor,
    /// The weights that training updates: every weight (full fine-tuning) or the
    /// LoRA matrices.
    trainable: Vec<(String, Var)>,
    lora: Option<LoraConfig>,
}

/// The keys and values of a shared prefix, per layer, as graph tensors
/// ([`Model::prefix`]).
pub struct Prefix {
    kv: Vec<(Tensor, Tensor)>,
    len: usize,
}

impl Prefix {
    /// Positions in the prefix.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// What comes before the tokens of a forward pass.
enum Past<'a> {
    Nothing,
    /// A serving KV cache (appended to).
    Cache(&'a mut KvCache),
    /// A prefix being computed (its keys and values are recorded).
    Record(&'a mut Prefix),
    /// A prefix every sequence of the batch continues.
    Shared(&'a Prefix),
}

/// Where the weights come from.
pub(crate) fn open_checkpoint(path: &Path, device: &Device) -> Result<Checkpoint> {
    if path.is_dir() {
        Checkpoint::open_safetensors(path, device)
    } else if path.exists() {
        Checkpoint::open_gguf(path)
    } else {
        Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
        ))
    }
}

impl Model {
    /// Loads weights from a checkpoint. `Precision::F32` gives the training path
    /// (differentiable ops); `Precision::Quantized` the serving path.
    pub(crate) fn from_checkpoint(
        ckpt: &Checkpoint,
        precision: Precision,
        device: &Device,
    ) -> Result<Self> {
        let cfg = ckpt.config()?;
        let mut w = Loader {
            raw: ckpt.read_all(&cfg, precision, device)?,
            path: ckpt.path(),
            precision,
            device,
        };
        let h = cfg.hidden_size;
        let q_out = cfg.num_heads * cfg.head_dim;
        let kv_out = cfg.num_kv_heads * cfg.head_dim;
        let qkv_bias = cfg.architecture == crate::config::Architecture::Qwen2;
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for i in 0..cfg.num_layers {
            let p = format!("model.layers.{i}");
            layers.push(Block {
                input_layernorm: w.norm(&format!("{p}.input_layernorm.weight"), h)?,
                self_attn: Attention {
                    q_proj: w.linear(&format!("{p}.self_attn.q_proj"), q_out, h, qkv_bias)?,
                    k_proj: w.linear(&format!("{p}.self_attn.k_proj"), kv_out, h, qkv_bias)?,
                    v_proj: w.linear(&format!("{p}.self_attn.v_proj"), kv_out, h, qkv_bias)?,
                    o_proj: w.linear(&format!("{p}.self_attn.o_proj"), h, q_out, false)?,
                },
                post_attention_layernorm: w
                    .norm(&format!("{p}.post_attention_layernorm.weight"), h)?,
                mlp: Mlp {
                    gate_proj: w.linear(
                        &format!("{p}.mlp.gate_proj"),
                        cfg.intermediate_size,
                        h,
                        false,
                    )?,
                    up_proj: w.linear(
                        &format!("{p}.mlp.up_proj"),
                        cfg.intermediate_size,
                        h,
                        false,
                    )?,
                    down_proj: w.linear(
                        &format!("{p}.mlp.down_proj"),
                        h,
                        cfg.intermediate_size,
                        false,
                    )?,
                },
            });
        }
        let norm = w.norm("model.norm.weight", h)?;
        let emb = w.take("model.embed_tokens.weight", &[cfg.vocab_size, h])?;
        let (embed_tokens, tied_head) = match (emb, precision) {
            (RawWeight::Quantized(q), Precision::Quantized) => {
                let (rows, cols) = q.shape().dims2()?;
                let fast = (device.is_cpu() && QuantMatrix::supported())
                    .then(|| QuantMatrix::from_ggml(q.dtype(), &q.data().ok()?, rows, cols))
                    .flatten();
                let q = Arc::new(q);
                let head = match fast {
                    Some(m) => LinearWeight::CpuQuant(Arc::new(m)),
                    None => LinearWeight::Quantized(QMatMul::from_arc(q.clone())?),
                };
                (Embedding::Quantized(q), head)
            }
            (emb, _) => {
                let t = emb.to_dense(device)?;
                (Embedding::Dense(t.clone()), LinearWeight::Dense(t))
            }
        };
        let lm_head = if cfg.tie_word_embeddings {
            Linear {
                weight: tied_head,
                bias: None,
                lora: None,
                lora_on: true,
                out_features: cfg.vocab_size,
            }
        } else {
            w.linear("lm_head", cfg.vocab_size, h, false)?
        };

        let (rope_cos, rope_sin) = rope_tables(&cfg, device)?;
        Ok(Self {
            op_mode: match precision {
                Precision::Quantized => OpMode::Fused,
                Precision::F32 => OpMode::Differentiable,
            },
            cfg,
            device: device.clone(),
            precision,
            embed_tokens,
            layers,
            norm,
            lm_head,
            rope_cos,
            rope_sin,
            trainable: Vec::new(),
            lora: None,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    pub fn op_mode(&self) -> OpMode {
        self.op_mode
    }

    /// Chooses the kernels: `Fused` is faster for sampling, `Differentiable` is
    /// required for training.
    pub fn set_op_mode(&mut self, mode: OpMode) {
        self.op_mode = mode;
    }

    /// A fresh KV cache. The quantized serving path keeps keys and values in
    /// f16 (see [`KvCache::half`]); f32 weights (training, the references) keep
    /// them in f32, so the trainer's numbers are those of its own forward pass.
    pub fn new_cache(&self) -> KvCache {
        let cache = KvCache::new(self.cfg.num_layers);
        match self.precision {
            Precision::Quantized => cache.half(),
            Precision::F32 => cache,
        }
    }

    /// Runs the transformer on `ids` (batch, seq). With a cache, the new tokens are
    /// placed after the cached positions and their keys/values appended.
    pub fn forward(
        &self,
        ids: &Tensor,
        cache: Option<&mut KvCache>,
        logits: Logits,
    ) -> Result<Tensor> {
        match cache {
            Some(c) => self.run(ids, Past::Cache(c), logits),
            None => self.run(ids, Past::Nothing, logits),
        }
    }

    /// Runs a shared prefix (one sequence, `ids` of shape (1, p)) and keeps its
    /// keys and values as tensors of the graph, so that gradients reach the
    /// prefix through every sequence that continues it ([`Model::forward_after`]).
    /// Returns the prefix and the logits that `logits` asks for.
    pub fn prefix(&self, ids: &Tensor, logits: Logits) -> Result<(Prefix, Tensor)> {
        let mut prefix = Prefix {
            kv: Vec::with_capacity(self.cfg.num_layers),
            len: ids.dim(1)?,
        };
        let out = self.run(ids, Past::Record(&mut prefix), logits)?;
        Ok((prefix, out))
    }

    /// Runs `ids` (batch, seq): each sequence of the batch continues the same
    /// `prefix` (training a group of completions of one prompt: the prompt is
    /// computed once, not once per completion, and the result is the same).
    pub fn forward_after(&self, prefix: &Prefix, ids: &Tensor, logits: Logits) -> Result<Tensor> {
        self.run(ids, Past::Shared(prefix), logits)
    }

    fn run(&self, ids: &Tensor, mut past_kv: Past<'_>, logits: Logits) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let past = match &past_kv {
            Past::Nothing | Past::Record(_) => 0,
            Past::Cache(c) => c.len(),
            Past::Shared(p) => p.len,
        };
        if past + t > self.cfg.context_length {
            return Err(Error::PromptTooLong {
                prompt_tokens: past + t,
                context: self.cfg.context_length,
            });
        }
        if let Past::Cache(c) = &past_kv {
            if !c.is_empty() && c.batch() != b {
                return Err(Error::InvalidArgument(format!(
                    "the cache holds {} sequences but {b} were given",
                    c.batch()
                )));
            }
        }
        if let Past::Record(_) = &past_kv {
            if b != 1 {
                return Err(Error::InvalidArgument(format!(
                    "a shared prefix is one sequence, not {b}"
                )));
            }
        }
        let mut x = self.embed(ids)?;
        let cos = self.rope_cos.narrow(0, past, t)?;
        let sin = self.rope_sin.narrow(0, past, t)?;
        let mask = if t > 1 {
            Some(causal_mask(t, past, &self.device)?)
        } else {
            None
        };
        for (i, block) in self.layers.iter().enumerate() {
            let residual = &x;
            let h = self.rms_norm(&x, &block.input_layernorm)?;
            let h = self.attention(
                i,
                &block.self_attn,
                &h,
                &cos,
                &sin,
                mask.as_ref(),
                &mut past_kv,
            )?;
            let x1 = (residual + h)?;
            x = self.mlp_residual(block, x1)?;
        }
        if let Past::Cache(c) = past_kv {
            c.advance(t);
        }
        let x = match logits {
            Logits::Last => x.narrow(1, t - 1, 1)?,
            Logits::All => x,
            Logits::From(start) => {
                let start = start.min(t - 1);
                x.narrow(1, start, t - start)?
            }
        };
        let x = self.rms_norm(&x, &self.norm)?;
        self.lm_head.forward(&x)
    }

    /// One decoding step for several caches at once, each of its own length:
    /// `caches[c]` holds `caches[c].batch()` sequences and `tokens` one new token
    /// per sequence, the caches' rows in order. Every projection runs over all
    /// the rows together, one pass over the weights for all of them; attention
    /// runs per cache. Returns the logits, (rows, 1, vocab). A row's numbers are
    /// the ones [`Model::forward`] gives its cache alone: the kernels compute
    /// each row on its own, whatever it is batched with.
    pub fn decode_ragged(&self, tokens: &[u32], caches: &mut [&mut KvCache]) -> Result<Tensor> {
        let sizes: Vec<usize> = caches.iter().map(|c| c.batch()).collect();
        if caches.iter().any(|c| c.is_empty()) {
            return Err(Error::InvalidArgument(
                "a ragged decoding step continues caches that hold a prompt".into(),
            ));
        }
        if sizes.iter().sum::<usize>() != tokens.len() {
            return Err(Error::InvalidArgument(format!(
                "the caches hold {} sequences but {} tokens were given",
                sizes.iter().sum::<usize>(),
                tokens.len()
            )));
        }
        if let Some(c) = caches
            .iter()
            .find(|c| c.len() + 1 > self.cfg.context_length)
        {
            return Err(Error::PromptTooLong {
                prompt_tokens: c.len() + 1,
                context: self.cfg.context_length,
            });
        }
        let ids = Tensor::new(tokens, &self.device)?.unsqueeze(1)?;
        let mut x = self.embed(&ids)?;
        let rope = caches
            .iter()
            .map(|c| {
                Ok((
                    self.rope_cos.narrow(0, c.len(), 1)?,
                    self.rope_sin.narrow(0, c.len(), 1)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        for (layer, block) in self.layers.iter().enumerate() {
            let h = self.rms_norm(&x, &block.input_layernorm)?;
            let [q, k, v] = self.qkv(&block.self_attn, &h)?;
            let mut outs = Vec::with_capacity(caches.len());
            let mut at = 0;
            for ((cache, &b), (cos, sin)) in caches.iter_mut().zip(&sizes).zip(&rope) {
                let rows = |t: &Tensor| t.narrow(0, at, b);
                let mut past = Past::Cache(cache);
                outs.push(self.attend(
                    layer,
                    rows(&q)?,
                    rows(&k)?,
                    rows(&v)?,
                    cos,
                    sin,
                    None,
                    &mut past,
                )?);
                at += b;
            }
            let h = block.self_attn.o_proj.forward(&Tensor::cat(&outs, 0)?)?;
            let x1 = (&x + h)?;
            x = self.mlp_residual(block, x1)?;
        }
        for cache in caches.iter_mut() {
            cache.advance(1);
        }
        let x = self.rms_norm(&x, &self.norm)?;
        self.lm_head.forward(&x)
    }

    /// The token embeddings of `ids` (b, t): (b, t, hidden).
    fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        Ok(match &self.embed_tokens {
            Embedding::Quantized(q) => q.embedding(ids)?,
            Embedding::Dense(w) => w
                .index_select(&ids.flatten_all()?, 0)?
                .reshape((b, t, ()))?,
        })
    }

    /// `x1` plus the block's MLP of its normalised self: the second half of a block.
    fn mlp_residual(&self, block: &Block, x1: Tensor) -> Result<Tensor> {
        let h = self.rms_norm(&x1, &block.post_attention_layernorm)?;
        let mlp = &block.mlp;
        let gate = mlp.gate_proj.forward(&h)?.silu()?;
        let up = mlp.up_proj.forward(&h)?;
        let h = mlp.down_proj.forward(&(gate * up)?)?;
        Ok((x1 + h)?)
    }

    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        layer: usize,
        attn: &Attention,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: Option<&Tensor>,
        past_kv: &mut Past<'_>,
    ) -> Result<Tensor> {
        let [q, k, v] = self.qkv(attn, x)?;
        let out = self.attend(layer, q, k, v, cos, sin, mask, past_kv)?;
        attn.o_proj.forward(&out)
    }

    /// The query, key and value projections of `x` (b, t, hidden), each as
    /// (b, heads, t, head_dim).
    fn qkv(&self, attn: &Attention, x: &Tensor) -> Result<[Tensor; 3]> {
        let cfg = &self.cfg;
        let (b, t, _) = x.dims3()?;
        let hd = cfg.head_dim;
        let project = |proj: &Linear, heads: usize| -> Result<Tensor> {
            Ok(proj
                .forward(x)?
                .reshape((b, t, heads, hd))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        Ok([
            project(&attn.q_proj, cfg.num_heads)?,
            project(&attn.k_proj, cfg.num_kv_heads)?,
            project(&attn.v_proj, cfg.num_kv_heads)?,
        ])
    }

    /// Attention of projected queries, keys and values (see [`Model::qkv`]) after
    /// the positions `past_kv` holds: the heads' outputs as (b, t, hidden), before
    /// the output projection.
    #[allow(clippy::too_many_arguments)]
    fn attend(
        &self,
        layer: usize,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: Option<&Tensor>,
        past_kv: &mut Past<'_>,
    ) -> Result<Tensor> {
        let cfg = &self.cfg;
        let (b, _, t, hd) = q.dims4()?;
        let q = self.rope(&q, cos, sin)?;
        let k = self.rope(&k, cos, sin)?;
        // Where the cache keeps the keys transposed too (the CPU), attention
        // reads them there.
        let mut cached_kt = None;
        let (k, v) = match past_kv {
            Past::Cache(c) => {
                let kv = c.append(layer, &k, &v)?;
                cached_kt = c.keys_transposed(layer, t)?;
                kv
            }
            Past::Nothing => (k, v),
            Past::Record(p) => {
                p.kv.push((k.clone(), v.clone()));
                (k, v)
            }
            Past::Shared(p) => {
                let (pk, pv) = &p.kv[layer];
                let (_, h, n, d) = pk.dims4()?;
                let pk = pk.broadcast_as((b, h, n, d))?;
                let pv = pv.broadcast_as((b, h, n, d))?;
                (
                    Tensor::cat(&[&pk, &k], 2)?.contiguous()?,
                    Tensor::cat(&[&pv, &v], 2)?.contiguous()?,
                )
            }
        };
        let total = k.dim(2)?;
        // Grouped-query attention without copying keys/values: the query heads that
        // share a key/value head are stacked along the sequence axis.
        let groups = cfg.kv_groups();
        let q = q.reshape((b, cfg.num_kv_heads, groups * t, hd))?;
        let scale = 1.0 / (hd as f64).sqrt();
        // (b, kv_heads, groups * t, hd)
        let out = match self.op_mode {
            // On the CPU: one pass per query row, the same numbers for a position
            // whatever it is batched with, and a backward that keeps no
            // (rows × keys) tensor (see `ops::causal_attention`).
            _ if crate::ops::fused(&q) => match &cached_kt {
                Some(kt) => crate::ops::cached_attention(&q, kt, &v, scale, t)?,
                None => crate::ops::causal_attention(&q, &k, &v, scale, t)?,
            },
            OpMode::Fused => {
                let att = (q.matmul(&k.t()?)? * scale)?;
                let att = match mask {
                    Some(m) => att
                        .reshape((b, cfg.num_kv_heads, groups, t, total))?
                        .broadcast_add(m)?
                        .reshape((b, cfg.num_kv_heads, groups * t, total))?,
                    None => att,
                };
                candle_nn::ops::softmax_last_dim(&att)?.matmul(&v)?
            }
            OpMode::Differentiable => {
                crate::ops::causal_softmax(&q.matmul(&k.t()?)?, scale, t, mask)?.matmul(&v)?
            }
        };
        Ok(out
            .reshape((b, cfg.num_heads, t, hd))?
            .transpose(1, 2)?
            .reshape((b, t, cfg.num_heads * hd))?)
    }

    fn rms_norm(&self, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        let eps = self.cfg.rms_norm_eps;
        match self.op_mode {
            OpMode::Fused => Ok(candle_nn::ops::rms_norm(&x.contiguous()?, w, eps as f32)?),
            OpMode::Differentiable => Ok(crate::ops::rms_norm(x, w, eps)?),
        }
    }

    /// Rotary embedding in the Hugging Face ("rotate half") layout.
    fn rope(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        match self.op_mode {
            OpMode::Fused => Ok(candle_nn::rotary_emb::rope(x, cos, sin)?),
            OpMode::Differentiable => Ok(crate::ops::rope(x, cos, sin)?),
        }
    }

    /// Turns every weight into a trainable variable (full fine-tuning). Only for the
    /// f32 path.
    pub fn train_all_weights(&mut self) -> Result<()> {
        if self.precision != Precision::F32 {
            return Err(Error::InvalidArgument(
                "training needs the model loaded with Precision::F32".into(),
            ));
        }
        let mut vars = Vec::new();
        let mut as_var = |name: String, t: &mut Tensor| -> Result<()> {
            let var = Var::from_tensor(t)?;
            *t = var.as_tensor().clone();
            vars.push((name, var));
            Ok(())
        };
        let tied = self.cfg.tie_word_embeddings;
        if let Embedding::Dense(w) = &mut self.embed_tokens {
            as_var("model.embed_tokens.weight".into(), w)?;
            if tied {
                if let LinearWeight::Dense(head) = &mut self.lm_head.weight {
                    *head = w.clone();
                }
            }
        }
        for (i, block) in self.layers.iter_mut().enumerate() {
            let p = format!("model.layers.{i}");
            as_var(
                format!("{p}.input_layernorm.weight"),
                &mut block.input_layernorm,
            )?;
            as_var(
                format!("{p}.post_attention_layernorm.weight"),
                &mut block.post_attention_layernorm,
            )?;
            for (name, lin) in block.linears_mut() {
                if let LinearWeight::Dense(w) = &mut lin.weight {
                    as_var(format!("{p}.{name}.weight"), w)?;
                }
                if let Some(b) = &mut lin.bias {
                    as_var(format!("{p}.{name}.bias"), b)?;
                }
            }
        }
        as_var("model.norm.weight".into(), &mut self.norm)?;
        if !tied {
            if let LinearWeight::Dense(w) = &mut self.lm_head.weight {
                as_var("lm_head.weight".into(), w)?;
            }
        }
        self.trainable = vars;
        Ok(())
    }

    /// The weights that training updates, with their Hugging Face / PEFT names.
    pub fn trainable_vars(&self) -> &[(String, Var)] {
        &self.trainable
    }

    /// The LoRA configuration, if adapters are attached.
    pub fn lora_config(&self) -> Option<&LoraConfig> {
        self.lora.as_ref()
    }

    /// Switches the adapters off (the base model: a reference policy for a KL
    /// term) or back on; the adapters stay attached.
    pub fn set_adapters_enabled(&mut self, on: bool) {
        for block in &mut self.layers {
            for (_, lin) in block.linears_mut() {
                lin.lora_on = on;
            }
        }
    }

    /// Attaches fresh LoRA adapters (A random, B zero: the model's outputs are
    /// unchanged until B is trained). Their matrices become the trainable variables.
    pub fn add_lora(&mut self, cfg: LoraConfig, seed: u64) -> Result<()> {
        cfg.validate()?;
        let device = self.device.clone();
        let mut vars = Vec::new();
        let mut rng_seed = seed;
        for (i, block) in self.layers.iter_mut().enumerate() {
            for (name, lin) in block.linears_mut() {
                if !cfg.targets(name) {
                    continue;
                }
                let (inp, out) = lin.in_out()?;
                let prefix = format!("base_model.model.model.layers.{i}.{name}");
                rng_seed = rng_seed.wrapping_add(1);
                let w = LoraWeights::init(&cfg, inp, out, rng_seed, &device)?;
                vars.push((format!("{prefix}.lora_A.weight"), w.a.clone()));
                vars.push((format!("{prefix}.lora_B.weight"), w.b.clone()));
                lin.lora = Some(w);
            }
        }
        self.trainable = vars;
        self.lora = Some(cfg);
        Ok(())
    }

    /// Attaches LoRA adapters with the given tensors (PEFT names, as in
    /// `adapter_model.safetensors`).
    pub fn set_lora(&mut self, cfg: LoraConfig, tensors: &HashMap<String, Tensor>) -> Result<()> {
        cfg.validate()?;
        let mut vars = Vec::new();
        let mut used = 0;
        for (i, block) in self.layers.iter_mut().enumerate() {
            for (name, lin) in block.linears_mut() {
                if !cfg.targets(name) {
                    continue;
                }
                let prefix = format!("base_model.model.model.layers.{i}.{name}");
                let get = |k: &str| -> Result<Tensor> {
                    let key = format!("{prefix}.{k}.weight");
                    tensors
                        .get(&key)
                        .cloned()
                        .ok_or_else(|| Error::Adapter(format!("the adapter has no tensor `{key}`")))
                };
                let (a, b) = (get("lora_A")?, get("lora_B")?);
                let (inp, out) = lin.in_out()?;
                if a.dims() != [cfg.r, inp] || b.dims() != [out, cfg.r] {
                    return Err(Error::Adapter(format!(
                        "{prefix}: A {:?} / B {:?} do not fit a {out}x{inp} layer with rank {}",
                        a.dims(),
                        b.dims(),
                        cfg.r
                    )));
                }
                used += 2;
                let w = LoraWeights::from_tensors(&cfg, &a, &b, &self.device)?;
                vars.push((format!("{prefix}.lora_A.weight"), w.a.clone()));
                vars.push((format!("{prefix}.lora_B.weight"), w.b.clone()));
                lin.lora = Some(w);
            }
        }
        if used != tensors.len() {
            return Err(Error::Adapter(format!(
                "the adapter has {} tensors but only {used} match this model's target modules",
                tensors.len()
            )));
        }
        self.trainable = vars;
        self.lora = Some(cfg);
        Ok(())
    }
}

/// Takes tensors out of a checkpoint by name, checking their shapes.
struct Loader<'a> {
    raw: HashMap<String, RawWeight>,
    path: &'a Path,
    precision: Precision,
    device: &'a Device,
}

impl Loader<'_> {
    fn take(&mut self, name: &str, dims: &[usize]) -> Result<RawWeight> {
        let w = self
            .raw
            .remove(name)
            .ok_or_else(|| Error::bad_file(self.path, format!("missing tensor `{name}`")))?;
        if w.dims() != dims {
            return Err(Error::bad_file(
                self.path,
                format!(
                    "tensor `{name}` has shape {:?}, expected {dims:?}",
                    w.dims()
                ),
            ));
        }
        Ok(w)
    }

    fn norm(&mut self, name: &str, dim: usize) -> Result<Tensor> {
        self.take(name, &[dim])?.to_dense(self.device)
    }

    fn linear(&mut self, name: &str, out: usize, inp: usize, bias: bool) -> Result<Linear> {
        let weight = match (
            self.take(&format!("{name}.weight"), &[out, inp])?,
            self.precision,
        ) {
            (RawWeight::Quantized(q), Precision::Quantized) => {
                let fast = (self.device.is_cpu() && QuantMatrix::supported())
                    .then(|| QuantMatrix::from_ggml(q.dtype(), &q.data().ok()?, out, inp))
                    .flatten();
                match fast {
                    Some(m) => LinearWeight::CpuQuant(Arc::new(m)),
                    None => LinearWeight::Quantized(QMatMul::from_qtensor(q)?),
                }
            }
            (w, _) => LinearWeight::Dense(w.to_dense(self.device)?),
        };
        let bias = if bias {
            Some(
                self.take(&format!("{name}.bias"), &[out])?
                    .to_dense(self.device)?,
            )
        } else {
            None
        };
        Ok(Linear {
            weight,
            bias,
            lora: None,
            lora_on: true,
            out_features: out,
        })
    }
}

impl Block {
    fn linears_mut(&mut self) -> [(&'static str, &mut Linear); 7] {
        let a = &mut self.self_attn;
        let m = &mut self.mlp;
        [
            ("self_attn.q_proj", &mut a.q_proj),
            ("self_attn.k_proj", &mut a.k_proj),
            ("self_attn.v_proj", &mut a.v_proj),
            ("self_attn.o_proj", &mut a.o_proj),
            ("mlp.gate_proj", &mut m.gate_proj),
            ("mlp.up_proj", &mut m.up_proj),
            ("mlp.down_proj", &mut m.down_proj),
        ]
    }
}

fn rope_tables(cfg: &ModelConfig, device: &Device) -> Result<(Tensor, Tensor)> {
    let half = cfg.head_dim / 2;
    let inv_freq: Vec<f32> = (0..half)
        .map(|i| 1.0 / cfg.rope_theta.powf(2.0 * i as f32 / cfg.head_dim as f32))
        .collect();
    let inv_freq = Tensor::from_vec(inv_freq, (1, half), device)?;
    let positions = Tensor::arange(0u32, cfg.context_length as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((cfg.context_length, 1))?;
    let freqs = positions.broadcast_mul(&inv_freq)?;
    Ok((freqs.cos()?, freqs.sin()?))
}

/// (t, past + t) additive mask: new token i sees every cached position and the new
/// positions up to itself.
fn causal_mask(t: usize, past: usize, device: &Device) -> Result<Tensor> {
    let total = past + t;
    let mask: Vec<f32> = (0..t)
        .flat_map(|i| (0..total).map(move |j| if j > past + i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Ok(Tensor::from_vec(mask, (t, total), device)?)
}
