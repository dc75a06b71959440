//! Low-rank adapters (Hu et al., "LoRA", arXiv 2106.09685) on the attention and MLP
//! projections, saved and loaded in PEFT's layout (`adapter_config.json` +
//! `adapter_model.safetensors` with `base_model.model.…lora_A.weight` names) so that
//! PEFT and vLLM load them as they are.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::transformer::{Model, LORA_TARGETS};

/// The adapter's hyper-parameters, serialised as PEFT's `adapter_config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    pub r: usize,
    pub lora_alpha: f64,
    pub target_modules: Vec<String>,
    #[serde(default)]
    pub lora_dropout: f64,
    #[serde(default = "default_peft_type")]
    pub peft_type: String,
    #[serde(default = "default_task_type")]
    pub task_type: String,
    #[serde(default = "default_bias")]
    pub bias: String,
    #[serde(default)]
    pub fan_in_fan_out: bool,
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    #[serde(default)]
    pub use_rslora: bool,
    #[serde(default = "default_true")]
    pub inference_mode: bool,
}

fn default_peft_type() -> String {
    "LORA".into()
}
fn default_task_type() -> String {
    "CAUSAL_LM".into()
}
fn default_bias() -> String {
    "none".into()
}
fn default_true() -> bool {
    true
}

impl LoraConfig {
    /// Rank `r`, scale `alpha`, on the given PEFT module names (`q_proj`, …).
    pub fn new(r: usize, lora_alpha: f64, target_modules: &[&str]) -> Self {
        Self {
            r,
            lora_alpha,
            target_modules: target_modules.iter().map(|s| s.to_string()).collect(),
            lora_dropout: 0.0,
            peft_type: default_peft_type(),
            task_type: default_task_type(),
            bias: default_bias(),
            fan_in_fan_out: false,
            base_model_name_or_path: None,
            use_rslora: false,
            inference_mode: true,
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.r == 0 {
            return Err(Error::Adapter("rank r must be at least 1".into()));
        }
        if self.peft_type != "LORA" {
            return Err(Error::Adapter(format!(
                "peft_type {} is not LORA",
                self.peft_type
            )));
        }
        if self.fan_in_fan_out {
            return Err(Error::Adapter(
                "fan_in_fan_out adapters are not supported".into(),
            ));
        }
        if self.bias != "none" {
            return Err(Error::Adapter(format!(
                "bias `{}` is not supported (only `none`)",
                self.bias
            )));
        }
        if self.target_modules.is_empty() {
            return Err(Error::Adapter("no target modules".into()));
        }
        for m in &self.target_modules {
            if !LORA_TARGETS.contains(&m.as_str()) {
                return Err(Error::Adapter(format!(
                    "unknown target module `{m}`; choose from {}",
                    LORA_TARGETS.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// Whether the layer named e.g. `self_attn.q_proj` is adapted.
    pub(crate) fn targets(&self, layer: &str) -> bool {
        let leaf = layer.rsplit('.').next().unwrap_or(layer);
        self.target_modules.iter().any(|m| m == leaf)
    }

    /// The factor applied to B·A: α/r (or α/√r with rsLoRA).
    pub fn scale(&self) -> f64 {
        if self.use_rslora {
            self.lora_alpha / (self.r as f64).sqrt()
        } else {
            self.lora_alpha / self.r as f64
        }
    }
}

/// The two matrices of one adapted layer: A (r, in), B (out, r).
pub(crate) struct LoraWeights {
    pub(crate) a: Var,
    pub(crate) b: Var,
    scale: f64,
}

impl LoraWeights {
    /// A with PEFT's default (Kaiming-uniform with a = √5, i.e. U(±1/√in)), B zero.
    pub(crate) fn init(
        cfg: &LoraConfig,
        inp: usize,
        out: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let bound = 1.0 / (inp as f32).sqrt();
        let a: Vec<f32> = (0..cfg.r * inp)
            .map(|_| rng.random_range(-bound..bound))
            .collect();
        let a = Tensor::from_vec(a, (cfg.r, inp), device)?;
        let b = Tensor::zeros((out, cfg.r), DType::F32, device)?;
        Self::from_tensors(cfg, &a, &b, device)
    }

    pub(crate) fn from_tensors(
        cfg: &LoraConfig,
        a: &Tensor,
        b: &Tensor,
        device: &Device,
    ) -> Result<Self> {
        Ok(Self {
            a: Var::from_tensor(&a.to_dtype(DType::F32)?.to_device(device)?)?,
            b: Var::from_tensor(&b.to_dtype(DType::F32)?.to_device(device)?)?,
            scale: cfg.scale(),
        })
    }

    /// α / r.
    pub(crate) fn scale(&self) -> f64 {
        self.scale
    }

    /// (x Aᵀ) Bᵀ · scale, for x of shape (batch, seq, in).
    pub(crate) fn delta(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, inp) = x.dims3()?;
        let x2 = x.reshape((b * t, inp))?;
        let h = x2.matmul(&self.a.as_tensor().t()?)?;
        let y = h.matmul(&self.b.as_tensor().t()?)?;
        let out = y.dim(1)?;
        Ok((y * self.scale)?.reshape((b, t, out))?)
    }
}

const CONFIG_FILE: &str = "adapter_config.json";
const WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// Writes the model's adapter to `dir` in PEFT's layout. Each file is written to a
/// temporary name and renamed, so a reader never sees half an adapter file.
pub fn save_adapter(model: &Model, dir: &Path) -> Result<()> {
    let cfg = model
        .lora_config()
        .ok_or_else(|| Error::Adapter("the model has no LoRA adapter to save".into()))?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let tensors: HashMap<String, Tensor> = model
        .trainable_vars()
        .iter()
        .map(|(name, var)| (name.clone(), var.as_tensor().clone()))
        .collect();
    let tmp = dir.join(format!(".{WEIGHTS_FILE}.tmp"));
    candle_core::safetensors::save(&tensors, &tmp)?;
    let dst = dir.join(WEIGHTS_FILE);
    std::fs::rename(&tmp, &dst).map_err(|e| Error::io(&dst, e))?;
    let json = serde_json::to_string_pretty(cfg).map_err(|e| Error::Adapter(e.to_string()))?;
    let tmp = dir.join(format!(".{CONFIG_FILE}.tmp"));
    std::fs::write(&tmp, json).map_err(|e| Error::io(&tmp, e))?;
    let dst = dir.join(CONFIG_FILE);
    std::fs::rename(&tmp, &dst).map_err(|e| Error::io(&dst, e))?;
    Ok(())
}

/// Reads a PEFT adapter directory and attaches it to the model.
pub fn load_adapter(model: &mut Model, dir: &Path) -> Result<()> {
    let cfg_path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
    let cfg: LoraConfig = serde_json::from_str(&text)
        .map_err(|e| Error::Adapter(format!("{}: {e}", cfg_path.display())))?;
    let weights = dir.join(WEIGHTS_FILE);
    let tensors = candle_core::safetensors::load(&weights, model.device())
        .map_err(|e| Error::Adapter(format!("{}: {e}", weights.display())))?;
    model.set_lora(cfg, &tensors)
}
