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
use candle_core::{CpuStorage, DType, Device, Storage, Tensor, Var};
use rayon::prelude::*;

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
            lora: Some(LoraConfig::new(
                8,
                16.0,
                &["q_proj", "k_proj", "v_proj", "o_proj"],
            )),
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

fn group_logprobs(
    lm: &LanguageModel,
    prompt: &[u32],
    completions: &[&[u32]],
    temperature: f32,
) -> Result<Vec<Tensor>, TrainError> {
    if prompt.is_empty() || completions.iter().any(|c| c.is_empty()) {
        return Err(TrainError::Input("an empty prompt or completion".into()));
    }
    let model = &lm.model;
    let device = model.device();
    let scale = |l: Tensor| -> Result<Tensor, TrainError> {
        Ok(
            if temperature > 0.0 && (temperature - 1.0).abs() > f32::EPSILON {
                (l / temperature as f64)?
            } else {
                l
            },
        )
    };
    let input = Tensor::new(prompt, device)?.unsqueeze(0)?;
    // The prompt's last position predicts every completion's first token.
    let (prefix, first) = model.prefix(&input, basis_model::Logits::From(prompt.len() - 1))?;
    let first = scale(first)?.squeeze(0)?; // (1, vocab)
    let longest = completions.iter().map(|c| c.len()).max().unwrap_or(1);
    let rest = if longest > 1 {
        // Each completion but its last token, padded on the right (a causal
        // model's padding after a sequence does not change the sequence).
        let width = longest - 1;
        let mut ids = Vec::with_capacity(completions.len() * width);
        for c in completions {
            ids.extend_from_slice(&c[..c.len() - 1]);
            ids.extend(std::iter::repeat_n(0u32, width - (c.len() - 1)));
        }
        let ids = Tensor::from_vec(ids, (completions.len(), width), device)?;
        Some(scale(model.forward_after(
            &prefix,
            &ids,
            basis_model::Logits::All,
        )?)?)
    } else {
        None
    };
    let mut out = Vec::with_capacity(completions.len());
    for (i, c) in completions.iter().enumerate() {
        let head = Tensor::new(&c[..1], device)?;
        let lp0 = basis_model::generate::token_logprobs(&first, &head)?;
        if c.len() == 1 {
            out.push(lp0);
            continue;
        }
        let logits = rest
            .as_ref()
            .expect("longest > 1")
            .get(i)?
            .narrow(0, 0, c.len() - 1)?;
        let targets = Tensor::new(&c[1..], device)?;
        let lps = basis_model::generate::token_logprobs(&logits, &targets)?;
        out.push(Tensor::cat(&[&lp0, &lps], 0)?);
    }
    Ok(out)
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

impl Moments {
    /// Zero moments for `vars`, before any step. The zeros are written, not
    /// asked of the allocator as zeroed memory (`vec![0.0; n]`, `calloc`): a
    /// fresh block from calloc stays mapped to the kernel's zero page until
    /// written, so the first AdamW step, which reads each moment and then
    /// writes it, would fault every page twice (measured: 437,000 faults in
    /// that step's optimizer for the 135M model, fully fine-tuned, against 0).
    pub fn zeros(vars: &[(String, Var)]) -> Moments {
        let zeros = || {
            vars.iter()
                .map(|(_, v)| {
                    let mut z = Vec::with_capacity(v.elem_count());
                    z.resize(v.elem_count(), 0.0);
                    z
                })
                .collect()
        };
        Moments {
            m: zeros(),
            v: zeros(),
            t: 0,
        }
    }
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

impl Accumulated {
    /// Gradients given directly, one per trainable variable in [`Policy::vars`]
    /// order (`None`: no gradient), e.g. to check the optimizer on its own.
    pub fn with_gradients(grads: Vec<Option<Tensor>>) -> Self {
        Self { grads }
    }
}

impl Policy {
    /// Loads the model at `weights` in f32 on `device` and makes it trainable.
    pub fn load(
        weights: &Path,
        cfg: PolicyConfig,
        device: &Device,
        seed: u64,
    ) -> Result<Policy, TrainError> {
        let lm = LanguageModel::load(weights, Precision::F32, device)?;
        Self::from_model(lm, cfg, seed)
    }

    /// Makes a loaded f32 model trainable (fresh adapters seeded with `seed`).
    pub fn from_model(
        mut lm: LanguageModel,
        cfg: PolicyConfig,
        seed: u64,
    ) -> Result<Policy, TrainError> {
        match &cfg.lora {
            Some(l) => lm.model.add_lora(l.clone(), seed)?,
            None => lm.model.train_all_weights()?,
        }
        Ok(Self::from_trained(lm, cfg))
    }

    /// A model whose trainable variables are already set (an adapter loaded
    /// from a published version) with a fresh optimizer.
    pub fn from_trained(lm: LanguageModel, cfg: PolicyConfig) -> Policy {
        let mut policy = Policy {
            lm,
            cfg,
            moments: Moments::default(),
            reference: None,
        };
        policy.reset_optimizer();
        policy
    }

    /// A fresh optimizer: zero moments, no steps taken. The moments are
    /// allocated here, before the first forward pass, and not at the first
    /// step: allocated then, they would take the heap space the step's
    /// activations had just freed, and the second step would grow the heap
    /// by their size and fault it in again (with the memory kept by
    /// `basis_model::alloc::keep_freed_memory`, every later step reuses the
    /// first one's pages).
    pub fn reset_optimizer(&mut self) {
        if self.moments.t == 0 && !self.moments.m.is_empty() {
            return; // Fresh already (every step that writes them counts in t).
        }
        // The old moments go first, so the new ones can take their place.
        self.moments = Moments::default();
        self.moments = Moments::zeros(self.vars());
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

    /// Log-probs of several completions of one prompt, one tensor per
    /// completion (with the gradient): the prompt runs once as a shared prefix
    /// and the completions as one padded batch after it
    /// ([`basis_model::transformer::Model::forward_after`]), which gives the same
    /// numbers as [`Policy::completion_logprobs`] on each, for a fraction of the
    /// work when the prompt is long.
    pub fn group_logprobs(
        &self,
        prompt: &[u32],
        completions: &[&[u32]],
        temperature: f32,
    ) -> Result<Vec<Tensor>, TrainError> {
        group_logprobs(&self.lm, prompt, completions, temperature)
    }

    /// [`Policy::group_logprobs`] under the reference policy (no gradient): the
    /// frozen copy, or this model with its adapters off.
    pub fn reference_group_logprobs(
        &mut self,
        prompt: &[u32],
        completions: &[&[u32]],
        temperature: f32,
    ) -> Result<Vec<Tensor>, TrainError> {
        let detach = |v: Vec<Tensor>| v.into_iter().map(|t| t.detach()).collect();
        if let Some(r) = &self.reference {
            return Ok(detach(group_logprobs(r, prompt, completions, temperature)?));
        }
        if self.lm.model.lora_config().is_none() {
            return Err(TrainError::Input(
                "a KL term with full fine-tuning needs the reference model loaded".into(),
            ));
        }
        self.lm.model.set_adapters_enabled(false);
        let out = group_logprobs(&self.lm, prompt, completions, temperature);
        self.lm.model.set_adapters_enabled(true);
        Ok(detach(out?))
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
                // Kept detached, in storage of its own: a gradient can carry
                // the op history of the backward that made it, and holding it
                // would keep this micro-batch's whole graph alive while the
                // next one runs.
                *slot = Some(match slot.take() {
                    Some(prev) => (prev + g)?.detach(),
                    None => g.detach().copy()?,
                });
            }
        }
        Ok(())
    }

    /// One AdamW step with the accumulated gradients (see the module docs).
    pub fn step(&mut self, acc: Accumulated) -> Result<StepReport, TrainError> {
        let lr = learning_rate(&self.cfg, self.moments.t as usize);
        let grads: Vec<Option<Tensor>> = acc
            .grads
            .into_iter()
            .map(|g| g.map(|g| g.to_dtype(DType::F32)?.contiguous()).transpose())
            .collect::<Result<_, _>>()?;
        let mut sq = 0f64;
        for g in grads.iter().flatten() {
            sq += with_f32s(g, |x| {
                x.par_chunks(1 << 16)
                    .map(|c| c.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>())
                    .sum::<f64>()
            })?;
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
            // A checkpoint saved before its first step.
            let t = self.moments.t;
            self.moments = Moments::zeros(self.vars());
            self.moments.t = t;
        }
        self.moments.t += 1;
        let t = self.moments.t as i32;
        let (b1, b2) = self.cfg.betas;
        let hyper = AdamW {
            clip: clip as f32,
            b1: b1 as f32,
            b2: b2 as f32,
            step_size: (lr / (1.0 - b1.powi(t))) as f32,
            bc2_sqrt: (1.0 - b2.powi(t)).sqrt() as f32,
            eps: self.cfg.eps as f32,
            decay: (1.0 - lr * self.cfg.weight_decay) as f32,
        };
        let vars: Vec<Var> = self.vars().iter().map(|(_, v)| v.clone()).collect();
        for (i, var) in vars.iter().enumerate() {
            let (m, v) = (&mut self.moments.m[i], &mut self.moments.v[i]);
            // A variable without a gradient is left alone, as PyTorch's AdamW
            // leaves a parameter whose `.grad` is None.
            if let Some(g) = &grads[i] {
                with_f32s(g, |g| hyper.apply(var, g, m, v))??;
            }
        }
        // Prompt keys and values cached by the generator are stale now.
        self.lm.generator.clear_prefix();
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
        self.lm.generator.clear_prefix();
        Ok(())
    }
}

/// Runs `f` on a contiguous f32 tensor's numbers (copied to the host when the
/// tensor is elsewhere).
fn with_f32s<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R, TrainError> {
    let (storage, layout) = t.storage_and_layout();
    if let (Storage::Cpu(CpuStorage::F32(all)), Some((a, b))) =
        (&*storage, layout.contiguous_offsets())
    {
        return Ok(f(&all[a..b]));
    }
    drop(storage);
    let host: Vec<f32> = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    Ok(f(&host))
}

/// One AdamW update's constants (PyTorch's formulation).
struct AdamW {
    /// The gradient's scale from norm clipping.
    clip: f32,
    b1: f32,
    b2: f32,
    /// lr / (1 - b1^t)
    step_size: f32,
    /// sqrt(1 - b2^t)
    bc2_sqrt: f32,
    eps: f32,
    /// 1 - lr * weight_decay
    decay: f32,
}

impl AdamW {
    /// p ← p·decay − step_size · m̂ / (√v̂ + eps), with m and v updated first.
    fn update(&self, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        const CHUNK: usize = 1 << 14;
        p.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .for_each(|(((p, g), m), v)| {
                for j in 0..p.len() {
                    let gj = g[j] * self.clip;
                    m[j] = self.b1 * m[j] + (1.0 - self.b1) * gj;
                    v[j] = self.b2 * v[j] + (1.0 - self.b2) * gj * gj;
                    let denom = v[j].sqrt() / self.bc2_sqrt + self.eps;
                    p[j] = p[j] * self.decay - self.step_size * m[j] / denom;
                }
            });
    }

    /// Updates `var` in place (on the CPU; through the host elsewhere).
    fn apply(&self, var: &Var, g: &[f32], m: &mut [f32], v: &mut [f32]) -> Result<(), TrainError> {
        if var.device().is_cpu() && var.dtype() == DType::F32 && var.as_tensor().is_contiguous() {
            let op = InPlace {
                adamw: self,
                g,
                mv: std::cell::RefCell::new((m, v)),
            };
            var.as_tensor().inplace_op1(&op)?;
            return Ok(());
        }
        let shape = var.shape().clone();
        let mut p: Vec<f32> = var
            .as_tensor()
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1()?;
        self.update(&mut p, g, m, v);
        let new = Tensor::from_vec(p, shape, var.device())?.to_dtype(var.dtype())?;
        var.set(&new)?;
        Ok(())
    }
}

/// The update as candle's in-place op on a variable's own storage.
struct InPlace<'a> {
    adamw: &'a AdamW,
    g: &'a [f32],
    mv: std::cell::RefCell<(&'a mut [f32], &'a mut [f32])>,
}

impl candle_core::InplaceOp1 for InPlace<'_> {
    fn name(&self) -> &'static str {
        "basis-adamw"
    }

    fn cpu_fwd(
        &self,
        storage: &mut CpuStorage,
        layout: &candle_core::Layout,
    ) -> candle_core::Result<()> {
        let CpuStorage::F32(all) = storage else {
            candle_core::bail!("adamw: expected f32 weights")
        };
        let (a, b) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("adamw: weights not contiguous".into()))?;
        let mut mv = self.mv.borrow_mut();
        let (m, v) = &mut *mv;
        if b - a != self.g.len() || m.len() != self.g.len() {
            candle_core::bail!(
                "adamw: {} weights, {} gradients, {} moments",
                b - a,
                self.g.len(),
                m.len()
            );
        }
        self.adamw.update(&mut all[a..b], self.g, m, v);
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

    /// The accumulator keeps gradients, not the graphs they came from: a
    /// micro-batch's forward and backward must be freed before the next one
    /// runs (holding them grew a group of 16 long answers' update past 24 GB).
    #[test]
    fn accumulated_gradients_hold_no_graph() {
        let dir = tempfile::tempdir().unwrap();
        let spec = basis_model::tiny::TinySpec::default();
        basis_model::tiny::write_random_model(dir.path(), &spec, 5).unwrap();
        for lora in [PolicyConfig::default().lora, None] {
            let lm = LanguageModel::load(dir.path(), Precision::F32, &Device::Cpu).unwrap();
            let cfg = PolicyConfig {
                lora,
                ..PolicyConfig::default()
            };
            let policy = Policy::from_model(lm, cfg, 1).unwrap();
            let mut acc = policy.accumulator();
            for prompt in [[3u32, 4, 5], [6, 7, 8]] {
                let lps = policy
                    .group_logprobs(&prompt, &[&[9, 10], &[11]], 1.0)
                    .unwrap();
                let loss = (lps[0].sum_all().unwrap() + lps[1].sum_all().unwrap()).unwrap();
                policy.backward(&loss, &mut acc).unwrap();
            }
            let held: Vec<&Tensor> = acc.grads.iter().flatten().collect();
            assert!(!held.is_empty());
            assert!(held.iter().all(|g| !g.track_op()));
        }
    }

    #[test]
    fn a_non_finite_gradient_skips_the_step_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let spec = basis_model::tiny::TinySpec::default();
        basis_model::tiny::write_random_model(dir.path(), &spec, 5).unwrap();
        let lm = LanguageModel::load(dir.path(), Precision::F32, &Device::Cpu).unwrap();
        let mut policy = Policy::from_model(lm, PolicyConfig::default(), 1).unwrap();
        let weights = |p: &Policy| -> Vec<Vec<f32>> {
            p.vars()
                .iter()
                .map(|(_, v)| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
                .collect()
        };
        let gradients = |p: &Policy, bad: f32| -> Accumulated {
            let grads = p
                .vars()
                .iter()
                .enumerate()
                .map(|(i, (_, v))| {
                    let g = v.as_tensor().ones_like().unwrap();
                    Some(if i == 0 {
                        g.affine(0.0, bad as f64).unwrap()
                    } else {
                        g
                    })
                })
                .collect();
            Accumulated::with_gradients(grads)
        };
        let before = weights(&policy);
        for bad in [f32::NAN, f32::INFINITY] {
            let g = gradients(&policy, bad);
            let report = policy.step(g).unwrap();
            assert!(report.skipped_non_finite, "{bad}");
            assert_eq!(policy.moments.t, 0, "{bad}");
            assert_eq!(weights(&policy), before, "{bad}");
        }
        // A finite gradient after them steps as usual.
        let g = gradients(&policy, 1.0);
        let report = policy.step(g).unwrap();
        assert!(!report.skipped_non_finite);
        assert_eq!(policy.moments.t, 1);
        assert_ne!(weights(&policy), before);
    }
}
