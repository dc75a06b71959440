//! GRPO's arithmetic (Shao et al., "DeepSeekMath", arXiv 2402.03300), as TRL's
//! `GRPOTrainer` computes it, with DAPO's asymmetric clip (Yu et al., arXiv
//! 2503.14476):
//!
//! - the advantage of sample i of a group: `A_i = r_i - mean(r)`, divided by the
//!   group's standard deviation (unbiased, plus 1e-4) when scaling is on;
//! - per completion token t: the ratio `ρ_t = exp(logp_t - logp_old_t)` against
//!   the behaviour policy that sampled it, and the clipped surrogate
//!   `-min(ρ_t A, clip(ρ_t, 1 - ε_low, 1 + ε_high) A)`;
//! - optionally `β · KL_t` with the k3 estimator against a reference policy:
//!   `exp(ref_t - logp_t) - (ref_t - logp_t) - 1`;
//! - the loss: the mean over every completion token of the batch (token level).
//!
//! `trainer/tests/reference/grpo_reference.py` computes the same in PyTorch on
//! fixed inputs; `tests/grpo_oracle.rs` holds this module to it.

use candle_core::{DType, Result, Tensor};

/// The surrogate's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clip {
    pub eps_low: f64,
    pub eps_high: f64,
    /// The KL penalty's weight (0: no reference model needed).
    pub beta: f64,
}

impl Default for Clip {
    fn default() -> Self {
        Self {
            eps_low: 0.2,
            eps_high: 0.28,
            beta: 0.0,
        }
    }
}

/// Group-centred advantages of one group's rewards (see the module docs).
pub fn advantages(rewards: &[f64], scale_by_std: bool) -> Vec<f64> {
    let n = rewards.len();
    if n == 0 {
        return Vec::new();
    }
    let mean = rewards.iter().sum::<f64>() / n as f64;
    let centred: Vec<f64> = rewards.iter().map(|r| r - mean).collect();
    if !scale_by_std {
        return centred;
    }
    let var = if n > 1 {
        centred.iter().map(|c| c * c).sum::<f64>() / (n - 1) as f64
    } else {
        0.0
    };
    let std = var.sqrt();
    centred.iter().map(|c| c / (std + 1e-4)).collect()
}

/// Whether a group's rewards all agree (its advantages are all zero: it
/// teaches nothing and is skipped).
pub fn no_signal(rewards: &[f64]) -> bool {
    rewards.windows(2).all(|w| (w[0] - w[1]).abs() < 1e-12)
}

/// What the loss of one batch was made of.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LossParts {
    /// Tokens in the loss.
    pub tokens: usize,
    /// The share of tokens where the clip took over.
    pub clip_fraction: f64,
    /// The mean k3 KL (0 without a reference).
    pub kl: f64,
    /// The mean ratio.
    pub ratio: f64,
}

/// The per-token GRPO loss of one sequence, summed (not averaged: the caller
/// divides by the batch's token count, so the batch loss is the token-level
/// mean). `logp` (seq) carries the gradient; `old` and `reference` are the
/// behaviour and reference log-probs (seq) and `advantage` the sequence's.
pub fn sequence_loss(
    logp: &Tensor,
    old: &Tensor,
    reference: Option<&Tensor>,
    advantage: f64,
    clip: &Clip,
) -> Result<(Tensor, LossParts)> {
    let n = logp.dim(0)?;
    let ratio = (logp - old)?.exp()?;
    let unclipped = (&ratio * advantage)?;
    let clipped = (ratio.clamp(1.0 - clip.eps_low, 1.0 + clip.eps_high)? * advantage)?;
    let per_token = unclipped.minimum(&clipped)?.neg()?;
    let mut kl_mean = 0.0;
    let per_token = match reference {
        Some(r) if clip.beta > 0.0 => {
            let d = (r - logp)?;
            let kl = ((d.exp()? - &d)? - 1.0)?;
            kl_mean = kl.mean_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            (per_token + (kl * clip.beta)?)?
        }
        _ => per_token,
    };
    let r: Vec<f32> = ratio.to_dtype(DType::F32)?.to_vec1()?;
    let clipped_tokens = r
        .iter()
        .filter(|&&x| {
            let x = x as f64;
            (advantage < 0.0 && x < 1.0 - clip.eps_low)
                || (advantage > 0.0 && x > 1.0 + clip.eps_high)
        })
        .count();
    let parts = LossParts {
        tokens: n,
        clip_fraction: clipped_tokens as f64 / n.max(1) as f64,
        kl: kl_mean,
        ratio: r.iter().map(|&x| x as f64).sum::<f64>() / n.max(1) as f64,
    };
    Ok((per_token.sum_all()?, parts))
}

/// Parts of several sequences, weighted by their tokens.
pub fn combine(parts: &[LossParts]) -> LossParts {
    let tokens: usize = parts.iter().map(|p| p.tokens).sum();
    let w = |f: fn(&LossParts) -> f64| {
        parts.iter().map(|p| f(p) * p.tokens as f64).sum::<f64>() / tokens.max(1) as f64
    };
    LossParts {
        tokens,
        clip_fraction: w(|p| p.clip_fraction),
        kl: w(|p| p.kl),
        ratio: w(|p| p.ratio),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn advantages_centre_and_scale_a_group() {
        let a = advantages(&[1.0, 0.0, 0.0, 1.0], false);
        assert_eq!(a, vec![0.5, -0.5, -0.5, 0.5]);
        let s = advantages(&[1.0, 0.0, 0.0, 1.0], true);
        let std = (4.0f64 * 0.25 / 3.0).sqrt();
        assert!((s[0] - 0.5 / (std + 1e-4)).abs() < 1e-12);
        assert!(no_signal(&[1.0, 1.0, 1.0]) && !no_signal(&[1.0, 0.0]));
        assert_eq!(advantages(&[0.3], true), vec![0.0]);
    }

    #[test]
    fn the_clip_bounds_the_ratio_on_the_side_the_advantage_pushes() {
        let d = Device::Cpu;
        let old = Tensor::new(&[0.0f32, 0.0, 0.0], &d).unwrap();
        // Ratios e^0.5 (past 1.28), 1, e^-0.5 (below 0.8).
        let logp = Tensor::new(&[0.5f32, 0.0, -0.5], &d).unwrap();
        let (loss, parts) = sequence_loss(&logp, &old, None, 1.0, &Clip::default()).unwrap();
        let l = loss.to_scalar::<f32>().unwrap() as f64;
        // A > 0: min(ρA, clip(ρ)A) = 1.28, 1, e^-0.5.
        let want = -(1.28 + 1.0 + (-0.5f64).exp());
        assert!((l - want).abs() < 1e-5, "{l} vs {want}");
        assert!((parts.clip_fraction - 1.0 / 3.0).abs() < 1e-12);
    }
}
