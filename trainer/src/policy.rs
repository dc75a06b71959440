//! The policy being trained: the model in f32 on the training path (candle
//! ops that all record a backward pass), with LoRA adapters (the default) or
//! every weight trainable, and its optimizer.
//!
//! The optimizer is AdamW as PyTorch's `torch.optim.AdamW` computes it
//! (decoupled weight decay, bias-corrected moments), written here so that its
//! state can be checkpointed and restored exactly. Each step: the gradients'
//! global norm is clipped; a step whose loss or gradient is not finite is
//! skipped (and said so); the learning rate follows a linear warmup and a
//! cosine decay to zero.

use std::collections::HashMap;
use std::path::Path;

use basis_model::{LanguageModel, LoraConfig, Precision};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};

use crate::TrainError;

/// How the policy is trained.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    /// LoRA adapters; `None` trains every weight.
    pub lora: Option<LoraConfig>,
    pub lr: f64,
    pub weight_decay: f64,
    pub betas: (f64, f64),
    pub eps: f64,
    /// Gradients are scaled down to this global norm.
    pub max_grad_norm: f64,
    pub warmup_steps: usize,
    /// Optimizer steps in the whole run (the cosine's length).
    pub total_steps: usize,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            lora: Some(LoraConfig::new(8, 16.0, &["q_proj", "k_proj", "v_proj", "o_proj"])),
            lr: 1e-4,
            weight_decay: 0.0,
            betas: (0.9, 0.999),
            eps: 1e-8,
            max_grad_norm: 1.0,
            warmup_steps: 2,
            total_steps: 100,
        }
    }
}

fn logprobs(
    lm: &LanguageModel,
    prompt: &[u32],
    completion: &[u32],
    temperature: f32,
) -> Result<Tensor, TrainError> {
    Ok(basis_model::generate::completion_logprobs_tensor(
        &lm.model,
        prompt,
        completion,
        temperature,
    )?)
}

/// The learning rate at optimizer step `step` (0-based).
pub fn learning_rate(cfg: &PolicyConfig, step: usize) -> f64 {
    if step < cfg.warmup_steps {
        return cfg.lr * (step + 1) as f64 / cfg.warmup_steps as f64;
    }
    let span = cfg.total_steps.saturating_sub(cfg.warmup_steps).max(1);
    let done = (step - cfg.warmup_steps).min(span) as f64 / span as f64;
    cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * done).cos())
}

/// AdamW's moments, one pair per trainable variable, in f32 host memory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Moments {
    pub m: Vec<Vec<f32>>,
    pub v: Vec<Vec<f32>>,
    /// Optimizer steps taken (bias correction).
    pub t: u64,
}

/// What one optimizer step did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepReport {
    /// The gradients' global norm before clipping.
    pub grad_norm: f64,
    pub lr: f64,
    /// True when the step was skipped because something was not finite.
    pub skipped_non_finite: bool,
}

/// The model being trained and its optimizer state.
pub struct Policy {
    pub lm: LanguageModel,
    pub cfg: PolicyConfig,
    pub moments: Moments,
    /// The reference policy of the KL term for full fine-tuning (a frozen copy
    /// of the starting weights); with LoRA the reference is the model with its
    /// adapters switched off.
    pub reference: Option<Box<LanguageModel>>,
}

/// Gradients accumulated over micro-batches, one per trainable variable.
pub struct Accumulated {
    grads: Vec<Option<Tensor>>,
}

impl Policy {
    /// Loads the model at `weights` in f32 on `device` and makes it trainable.
    pub fn load(weights: &Path, cfg: PolicyConfig, device: &Device, seed: u64) -> Result<Policy, TrainError> {
        let lm = LanguageModel::load(weights, Precision::F32, device)?;
        Self::from_model(lm, cfg, seed)
    }

    /// Makes a loaded f32 model trainable (fresh adapters seeded with `seed`).
    pub fn from_model(mut lm: LanguageModel, cfg: PolicyConfig, seed: u64) -> Result<Policy, TrainError> {
        match &cfg.lora {
            Some(l) => lm.model.add_lora(l.clone(), seed)?,
            None => lm.model.train_all_weights()?,
        }
        Ok(Self::from_trained(lm, cfg))
    }

    /// A model whose trainable variables are already set (an adapter loaded
    /// from a published version) with a fresh optimizer.
    pub fn from_trained(lm: LanguageModel, cfg: PolicyConfig) -> Policy {
        Policy {
            lm,
            cfg,
            moments: Moments::default(),
            reference: None,
        }
    }

    pub fn vars(&self) -> &[(String, Var)] {
        self.lm.model.trainable_vars()
    }

    /// How many numbers training updates.
    pub fn trainable_parameters(&self) -> usize {
        self.vars().iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// Log-probs of `completion` after `prompt` under the policy at
    /// `temperature`, one per completion token, with the gradient.
    pub fn completion_logprobs(
        &self,
        prompt: &[u32],
        completion: &[u32],
        temperature: f32,
    ) -> Result<Tensor, TrainError> {
        logprobs(&self.lm, prompt, completion, temperature)
    }

    /// The same under the reference policy (no gradient): the frozen copy, or
    /// this model with its adapters off.
    pub fn reference_logprobs(
        &mut self,
        prompt: &[u32],
        completion: &[u32],
        temperature: f32,
    ) -> Result<Tensor, TrainError> {
        if let Some(r) = &self.reference {
            return Ok(logprobs(r, prompt, completion, temperature)?.detach());
        }
        if self.lm.model.lora_config().is_none() {
            return Err(TrainError::Input(
                "a KL term with full fine-tuning needs the reference model loaded".into(),
            ));
        }
        self.lm.model.set_adapters_enabled(false);
        let out = logprobs(&self.lm, prompt, completion, temperature);
        self.lm.model.set_adapters_enabled(true);
        Ok(out?.detach())
    }

    /// An empty gradient accumulator.
    pub fn accumulator(&self) -> Accumulated {
        Accumulated {
            grads: vec![None; self.vars().len()],
        }
    }

    /// Adds the gradients of `loss` (a scalar) to `acc`.
    pub fn backward(&self, loss: &Tensor, acc: &mut Accumulated) -> Result<(), TrainError> {
        let store: GradStore = loss.backward()?;
        for (slot, (_, var)) in acc.grads.iter_mut().zip(self.vars()) {
            if let Some(g) = store.get(var.as_tensor()) {
                *slot = Some(match slot.take() {
                    Some(prev) => (prev + g)?,
                    None => g.clone(),
                });
            }
        }
        Ok(())
    }

    /// One AdamW step with the accumulated gradients (see the module docs).
    pub fn step(&mut self, acc: Accumulated) -> Result<StepReport, TrainError> {
        let lr = learning_rate(&self.cfg, self.moments.t as usize);
        let mut grads: Vec<Vec<f32>> = Vec::with_capacity(acc.grads.len());
        let mut sq = 0f64;
        for (g, (_, var)) in acc.grads.into_iter().zip(self.vars()) {
            let g: Vec<f32> = match g {
                Some(g) => g.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?,
                None => vec![0.0; var.elem_count()],
            };
            sq += g.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>();
            grads.push(g);
        }
        let norm = sq.sqrt();
        if !norm.is_finite() {
            return Ok(StepReport {
                grad_norm: norm,
                lr,
                skipped_non_finite: true,
            });
        }
        let clip = if norm > self.cfg.max_grad_norm {
            self.cfg.max_grad_norm / (norm + 1e-6)
        } else {
            1.0
        };
        if self.moments.m.is_empty() {
            self.moments.m = grads.iter().map(|g| vec![0.0; g.len()]).collect();
            self.moments.v = grads.iter().map(|g| vec![0.0; g.len()]).collect();
        }
        self.moments.t += 1;
        let t = self.moments.t as i32;
        let (b1, b2) = self.cfg.betas;
        let bc1 = 1.0 - b1.powi(t);
        let bc2 = 1.0 - b2.powi(t);
        let (wd, eps) = (self.cfg.weight_decay, self.cfg.eps);
        let step_size = (lr / bc1) as f32;
        let bc2_sqrt = bc2.sqrt() as f32;
        let decay = (1.0 - lr * wd) as f32;
        let (b1, b2) = (b1 as f32, b2 as f32);
        let vars: Vec<Var> = self.vars().iter().map(|(_, v)| v.clone()).collect();
        for (i, var) in vars.iter().enumerate() {
            let shape = var.shape().clone();
            let mut p: Vec<f32> = var.as_tensor().to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
            let (m, v, g) = (&mut self.moments.m[i], &mut self.moments.v[i], &grads[i]);
            for j in 0..p.len() {
                let gj = g[j] * clip as f32;
                m[j] = b1 * m[j] + (1.0 - b1) * gj;
                v[j] = b2 * v[j] + (1.0 - b2) * gj * gj;
                let denom = v[j].sqrt() / bc2_sqrt + eps as f32;
                p[j] = p[j] * decay - step_size * m[j] / denom;
            }
            let new = Tensor::from_vec(p, shape, var.device())?.to_dtype(var.dtype())?;
            var.set(&new)?;
        }
        Ok(StepReport {
            grad_norm: norm,
            lr,
            skipped_non_finite: false,
        })
    }

    /// The trainable tensors by their PEFT / Hugging Face names.
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        self.vars()
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect()
    }

    /// Puts saved tensors (by name) back into the trainable variables.
    pub fn restore(&mut self, tensors: &HashMap<String, Tensor>) -> Result<(), TrainError> {
        for (name, var) in self.vars() {
            let t = tensors
                .get(name)
                .ok_or_else(|| TrainError::Checkpoint(format!("the checkpoint has no `{name}`")))?;
            if t.dims() != var.dims() {
                return Err(TrainError::Checkpoint(format!(
                    "`{name}` is {:?} in the checkpoint but {:?} here",
                    t.dims(),
                    var.dims()
                )));
            }
            var.set(&t.to_dtype(var.dtype())?.to_device(var.device())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_to_zero() {
        let cfg = PolicyConfig {
            lr: 1.0,
            warmup_steps: 2,
            total_steps: 10,
            ..PolicyConfig::default()
        };
        assert_eq!(learning_rate(&cfg, 0), 0.5);
        assert_eq!(learning_rate(&cfg, 1), 1.0);
        assert_eq!(learning_rate(&cfg, 2), 1.0);
        assert!((learning_rate(&cfg, 6) - 0.5).abs() < 1e-12);
        assert!(learning_rate(&cfg, 10).abs() < 1e-12);
        assert!(learning_rate(&cfg, 50).abs() < 1e-12);
    }
}
