//! `basis check-device`: is training on this device right, and how fast is it?
//! Made for a GPU machine that has no model file and no network (the model is
//! random, of the default model's shape, written to a temporary folder), and
//! useful on any machine:
//!
//! 1. **logits**: the f32 model on the device against the same model on the
//!    CPU, on the same tokens (the largest difference, relative to the logits'
//!    spread);
//! 2. **GRPO**: a few optimizer steps of the trainer's real update
//!    ([`crate::train::optimize`]) on the device, rewarding one of four
//!    completions of a prompt: the rewarded completion's log-probability must
//!    rise and everything must stay finite;
//! 3. **throughput**: the update step (forward, backward, AdamW) for LoRA (the
//!    trainer's default adapter) and for full fine-tuning, in tokens per second
//!    and in achieved model FLOP/s (6 N per token for full fine-tuning, 4 N for
//!    LoRA, which computes no weight gradients), and MFU against a given peak.
//!
//! Each result is one JSON line on stdout.

use std::time::Instant;

use basis_model::tiny::{write_random_model, TinySpec};
use basis_model::{Device, LanguageModel, Logits, Precision, Tensor};
use basis_skills::SkillId;
use serde_json::{json, Value};

use crate::policy::{Policy, PolicyConfig};
use crate::train::{optimize, Rollout, StepMetrics, TrainConfig};
use crate::TrainError;

/// SmolLM2-135M's shape (the default model).
pub const DEFAULT_SHAPE: TinySpec = TinySpec {
    vocab: 49152,
    hidden: 576,
    intermediate: 1536,
    layers: 30,
    heads: 9,
    kv_heads: 3,
};

/// What to run.
#[derive(Debug, Clone)]
pub struct CheckConfig {
    pub shape: TinySpec,
    /// Throughput batches: (sequences, tokens each).
    pub shapes: Vec<(usize, usize)>,
    /// Timed update steps per measurement (after one warm-up step).
    pub steps: usize,
    /// The device's peak f32 FLOP/s, for MFU (none: not reported).
    pub peak_flops: Option<f64>,
}

fn err(e: impl std::fmt::Display) -> TrainError {
    TrainError::Input(e.to_string())
}

/// Runs the checks on `device`, calling `emit` with each result.
pub fn run(
    device: &Device,
    cfg: &CheckConfig,
    emit: &mut dyn FnMut(Value),
) -> Result<(), TrainError> {
    let dir = tempfile::tempdir().map_err(err)?;
    let t = Instant::now();
    write_random_model(dir.path(), &cfg.shape, 1)?;
    let params = {
        let s = &cfg.shape;
        let hd = s.hidden / s.heads;
        s.vocab * s.hidden
            + s.layers
                * (2 * s.hidden
                    + s.hidden * s.heads * hd * 2
                    + s.hidden * s.kv_heads * hd * 2
                    + 3 * s.hidden * s.intermediate)
            + s.hidden
    };
    emit(
        json!({"check": "model", "parameters": params, "shape": format!("{:?}", cfg.shape),
                "device": format!("{device:?}"), "seconds_to_write": t.elapsed().as_secs_f64()}),
    );

    // 1. logits, device against CPU
    let cpu = LanguageModel::load(dir.path(), Precision::F32, &Device::Cpu)?;
    let dev = LanguageModel::load(dir.path(), Precision::F32, device)?;
    let ids: Vec<u32> = (0..64u32)
        .map(|i| i.wrapping_mul(2654435761) % cfg.shape.vocab as u32)
        .collect();
    let logits = |lm: &LanguageModel| -> Result<Vec<f32>, TrainError> {
        let input = Tensor::new(ids.as_slice(), lm.model.device())?.unsqueeze(0)?;
        Ok(lm
            .model
            .forward(&input, None, Logits::All)?
            .flatten_all()?
            .to_device(&Device::Cpu)?
            .to_vec1()?)
    };
    let (a, b) = (logits(&cpu)?, logits(&dev)?);
    let spread = a.iter().fold(0f32, |m, x| m.max(x.abs()));
    let worst = a
        .iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    let argmax_agree = a
        .chunks(cfg.shape.vocab)
        .zip(b.chunks(cfg.shape.vocab))
        .filter(|(x, y)| argmax(x) == argmax(y))
        .count();
    emit(
        json!({"check": "logits", "positions": ids.len(), "max_abs_diff": worst,
                "max_abs_logit": spread, "relative": worst / spread.max(1e-12),
                "argmax_agree": argmax_agree, "ok": worst / spread.max(1e-12) < 1e-3}),
    );
    drop((cpu, dev));

    // 2. a few GRPO steps on the device
    let lm = LanguageModel::load(dir.path(), Precision::F32, device)?;
    let mut policy = Policy::from_model(
        lm,
        PolicyConfig {
            lr: 1e-3,
            ..PolicyConfig::default()
        },
        0,
    )?;
    let v = cfg.shape.vocab as u32;
    let prompt: Vec<u32> = (1..200u32).map(|i| i % (v - 1) + 1).collect();
    let completions: Vec<Vec<u32>> = (0..4u32)
        .map(|k| {
            (0..24u32)
                .map(|i| (300 + 50 * k + 7 * i) % (v - 1) + 1)
                .collect()
        })
        .collect();
    let refs: Vec<&[u32]> = completions.iter().map(Vec::as_slice).collect();
    let logp_of = |p: &Policy| -> Result<Vec<Vec<f32>>, TrainError> {
        p.group_logprobs(&prompt, &refs, 1.0)?
            .into_iter()
            .map(|t| Ok(t.to_device(&Device::Cpu)?.to_vec1::<f32>()?))
            .collect()
    };
    let before = logp_of(&policy)?;
    let train_cfg = TrainConfig {
        epochs: 1,
        ..TrainConfig::default()
    };
    let mut last = StepMetrics::default();
    for step in 0..3 {
        let old = logp_of(&policy)?;
        let rollout = Rollout {
            skill: SkillId::Review,
            prompt: prompt.clone(),
            samples: completions.iter().cloned().zip(old).collect(),
            rewards: vec![1.0, 0.0, 0.0, 0.0],
            verdict: None,
        };
        optimize(&mut policy, vec![rollout], &[], &train_cfg, step, &mut last)?;
    }
    let after = logp_of(&policy)?;
    let sum = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>();
    let rose = sum(&after[0]) - sum(&before[0]);
    let finite = after.iter().flatten().all(|x| x.is_finite());
    emit(
        json!({"check": "grpo", "steps": 3, "rewarded_logprob_before": sum(&before[0]),
                "rewarded_logprob_after": sum(&after[0]), "loss": last.loss, "grad_norm": last.grad_norm,
                "ok": finite && rose > 0.0}),
    );
    drop(policy);

    // 3. throughput of the update step
    for (mode, lora) in [("lora", PolicyConfig::default().lora), ("full", None)] {
        for &(batch, seq) in &cfg.shapes {
            let lm = LanguageModel::load(dir.path(), Precision::F32, device)?;
            let pcfg = PolicyConfig {
                lora: lora.clone(),
                lr: 1e-5,
                warmup_steps: 0,
                max_grad_norm: f64::INFINITY,
                total_steps: 1_000_000,
                ..PolicyConfig::default()
            };
            let mut policy = Policy::from_model(lm, pcfg, 0)?;
            let vocab = cfg.shape.vocab as u32;
            let all: Vec<u32> = (0..batch * (seq + 1))
                .map(|i| (i as u32).wrapping_mul(2654435761) % vocab)
                .collect();
            let all = Tensor::from_vec(all, (batch, seq + 1), device)?;
            let (input, target) = (all.narrow(1, 0, seq)?, all.narrow(1, 1, seq)?);
            let mut times = Vec::new();
            for step in 0..=cfg.steps {
                let t = Instant::now();
                let logits = policy.lm.model.forward(&input, None, Logits::All)?;
                let loss = basis_model::generate::token_logprobs(&logits, &target)?
                    .mean_all()?
                    .neg()?;
                let mut acc = policy.accumulator();
                policy.backward(&loss, &mut acc)?;
                policy.step(acc)?;
                device.synchronize()?;
                if step > 0 {
                    times.push(t.elapsed().as_secs_f64());
                }
            }
            let secs = times.iter().sum::<f64>() / times.len().max(1) as f64;
            let tok_s = (batch * seq) as f64 / secs;
            let flops_per_token = if mode == "full" { 6.0 } else { 4.0 } * params as f64;
            let achieved = tok_s * flops_per_token;
            emit(
                json!({"check": "throughput", "mode": mode, "batch": batch, "seq": seq,
                        "steps": cfg.steps, "secs_per_step": secs, "tok_per_s": tok_s,
                        "model_flops_per_s": achieved,
                        "mfu": cfg.peak_flops.map(|p| achieved / p)}),
            );
        }
    }
    Ok(())
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |b, (i, &x)| if x > b.1 { (i, x) } else { b },
        )
        .0
}
