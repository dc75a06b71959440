//! Training-path ops with a backward pass of their own, where candle's composite
//! ops do more work than the gradient needs.
//!
//! - [`linear`]: `y = x Wᵀ` for a dense weight. candle's matmul backward computes
//!   the gradients of both operands; a frozen weight (LoRA's base weights, a
//!   tensor that is not a `Var`) needs none, and its `xᵀ·dy` is as costly as the
//!   forward matmul itself. This op computes the weight's gradient only when the
//!   weight is trainable, and counts both kinds ([`crate::stats`]).
//! - [`token_logprobs`]: `log_softmax(logits)[target]` per row in one pass
//!   (running max and sum of exponentials), and its backward
//!   `g · (onehot(target) − softmax)` in one more, where the composite form
//!   materialises several (rows × vocabulary) tensors.
//! - [`rms_norm`] and [`rope`]: the transformer's per-row ops, each one pass
//!   forward and one backward, where the composite forms take five to eight
//!   candle ops (and as many allocations and gradient accumulations) each.
//! - [`causal_attention`]: scores, causal mask, softmax and the weighted sum of
//!   values in one pass per query row; its backward recomputes a row's
//!   probabilities instead of keeping them, so a layer keeps no (rows × keys)
//!   tensor for the gradient (composite attention keeps two: 14.8 GB of peak
//!   memory for one 2,048-token LoRA step of the default model).
//! - [`cached_attention`]: the same numbers for inference over the KV cache,
//!   from the keys the cache keeps transposed, so that a decoding step neither
//!   copies nor transposes the cache.
//!
//! The fused ops run on the CPU in f32; elsewhere the callers use candle's
//! composite ops (the same functions, differentiable, slower).

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::attention::{attention, Dims, Kv};
use crate::isa::Isa;
use crate::stats;

/// `x Wᵀ` with a backward that skips a frozen weight's gradient.
struct Linear;

impl CustomOp2 for Linear {
    fn name(&self) -> &'static str {
        "basis-linear"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        xl: &Layout,
        w: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (m, k) = xl.shape().dims2()?;
        let (n, _) = wl.shape().dims2()?;
        let wt = wl.transpose(0, 1)?;
        let out = x.matmul(w, (1, m, n, k), xl, &wt)?;
        Ok((out, Shape::from((m, n))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        x: &candle_core::CudaStorage,
        xl: &Layout,
        w: &candle_core::CudaStorage,
        wl: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let (m, k) = xl.shape().dims2()?;
        let (n, _) = wl.shape().dims2()?;
        let wt = wl.transpose(0, 1)?;
        let out = x.matmul(w, (1, m, n, k), xl, &wt)?;
        Ok((out, Shape::from((m, n))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dx = grad.matmul(w)?;
        let dw = if w.is_variable() {
            stats::count_weight_grad();
            Some(grad.t()?.matmul(x)?)
        } else {
            stats::count_frozen_skip();
            None
        };
        Ok((Some(dx), dw))
    }
}

/// `x Wᵀ` for x (m, k) and a dense W (n, k); see the module docs.
pub fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    if x.dtype() != DType::F32 || w.dtype() != DType::F32 {
        return x.matmul(&w.t()?);
    }
    x.contiguous()?.apply_op2(&w.contiguous()?, Linear)
}

/// `x Wᵀ + s · (x Aᵀ) Bᵀ`: a frozen dense W with a LoRA adapter (A (r, k),
/// B (n, r)) as one op, so that the backward is one node: `dx = dy W + s (dy B) A`,
/// `dA = s (dy B)ᵀ x`, `dB = s dyᵀ (x Aᵀ)`, and no weight gradient for W. As
/// separate candle ops the adapter's path takes six nodes, each with its own
/// gradient buffers and accumulation into x's gradient.
struct LoraLinear {
    w: Tensor,
    scale: f64,
}

impl candle_core::CustomOp3 for LoraLinear {
    fn name(&self) -> &'static str {
        "basis-lora-linear"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        xl: &Layout,
        a: &CpuStorage,
        al: &Layout,
        b: &CpuStorage,
        bl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (m, k) = xl.shape().dims2()?;
        let (r, _) = al.shape().dims2()?;
        let (n, _) = bl.shape().dims2()?;
        let (ws, wl) = self.w.storage_and_layout();
        let candle_core::Storage::Cpu(w) = &*ws else {
            candle_core::bail!("lora_linear: the weight is not on the CPU")
        };
        // The same products, in the same order, as the separate ops: x Wᵀ,
        // then (x Aᵀ) Bᵀ, scaled, added.
        let y = x.matmul(w, (1, m, n, k), xl, &wl.transpose(0, 1)?)?;
        let h = x.matmul(a, (1, m, r, k), xl, &al.transpose(0, 1)?)?;
        let hl = Layout::contiguous((m, r));
        let d = h.matmul(b, (1, m, n, r), &hl, &bl.transpose(0, 1)?)?;
        let (CpuStorage::F32(mut y), CpuStorage::F32(d)) = (y, d) else {
            candle_core::bail!("lora_linear: f32 only")
        };
        let s = self.scale as f32;
        y.par_iter_mut()
            .zip(d.par_iter())
            .for_each(|(y, d)| *y += d * s);
        Ok((CpuStorage::F32(y), Shape::from((m, n))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        stats::count_frozen_skip();
        let gh = (grad.matmul(b)? * self.scale)?;
        let h = x.matmul(&a.t()?)?;
        let da = gh.t()?.matmul(x)?;
        let db = (grad.t()?.matmul(&h)? * self.scale)?;
        // The first layer's input (frozen embeddings) needs no gradient.
        let dx = if x.track_op() {
            Some((grad.matmul(&self.w)? + gh.matmul(a)?)?)
        } else {
            None
        };
        Ok((dx, Some(da), Some(db)))
    }
}

/// `x Wᵀ + scale · (x Aᵀ) Bᵀ` for x (m, k), a frozen dense W (n, k) and a LoRA
/// adapter A (r, k), B (n, r), on the CPU in f32; see `LoraLinear` in this module.
pub fn lora_linear(x: &Tensor, w: &Tensor, a: &Tensor, b: &Tensor, scale: f64) -> Result<Tensor> {
    x.contiguous()?.apply_op3(
        &a.contiguous()?,
        &b.contiguous()?,
        LoraLinear {
            w: w.contiguous()?,
            scale,
        },
    )
}

/// Per-row `log_softmax(logits)[target]` with a one-pass backward.
struct TokenLogprobs;

/// The numbers of a contiguous CPU tensor (an op's input).
fn numbers<'a, T: candle_core::WithDType>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [T]> {
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("a custom op's input is not contiguous".into()))?;
    Ok(&s.as_slice::<T>()?[a..b])
}

fn f32s<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    numbers(s, l)
}

/// The log of the sum of exponentials of a row, with its max for stability.
fn logsumexp(row: &[f32]) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = row.iter().map(|&x| (x - max).exp()).sum();
    max + sum.ln()
}

impl CustomOp2 for TokenLogprobs {
    fn name(&self) -> &'static str {
        "basis-token-logprobs"
    }

    fn cpu_fwd(
        &self,
        logits: &CpuStorage,
        ll: &Layout,
        targets: &CpuStorage,
        tl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (rows, vocab) = ll.shape().dims2()?;
        let x = f32s(logits, ll)?;
        let t: &[u32] = numbers(targets, tl)?;
        let out: Vec<f32> = (0..rows)
            .into_par_iter()
            .map(|r| {
                let row = &x[r * vocab..(r + 1) * vocab];
                row[t[r] as usize] - logsumexp(row)
            })
            .collect();
        Ok((CpuStorage::F32(out), Shape::from(rows)))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // token_logprobs uses this op only on the CPU.
        let (rows, vocab) = logits.dims2()?;
        let logits = logits.contiguous()?;
        let (ls, ll) = logits.storage_and_layout();
        let candle_core::Storage::Cpu(ls) = &*ls else {
            candle_core::bail!("token_logprobs: not on the CPU")
        };
        let x = f32s(ls, ll)?;
        let targets = targets.contiguous()?;
        let t: Vec<u32> = targets.to_vec1()?;
        let g: Vec<f32> = grad.to_dtype(DType::F32)?.to_vec1()?;
        let mut out = vec![0f32; rows * vocab];
        out.par_chunks_mut(vocab).enumerate().for_each(|(r, o)| {
            let row = &x[r * vocab..(r + 1) * vocab];
            let lse = logsumexp(row);
            let gr = g[r];
            for (oj, &xj) in o.iter_mut().zip(row) {
                *oj = -gr * (xj - lse).exp();
            }
            o[t[r] as usize] += gr;
        });
        let dlogits = Tensor::from_vec(out, (rows, vocab), logits.device())?;
        Ok((Some(dlogits), None))
    }
}

fn composite_logprobs(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(logits, candle_core::D::Minus1)?;
    let index = targets.contiguous()?.unsqueeze(candle_core::D::Minus1)?;
    logp.gather(&index, candle_core::D::Minus1)?
        .squeeze(candle_core::D::Minus1)
}

/// `log_softmax(logits)[target]` for logits (rows, vocab) and u32 targets
/// (rows): the fused op on the CPU in f32, candle's composite ops elsewhere.
pub fn token_logprobs(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    if logits.device().is_cpu() && logits.dtype() == DType::F32 {
        logits
            .contiguous()?
            .apply_op2(&targets.contiguous()?, TokenLogprobs)
    } else {
        composite_logprobs(logits, targets)
    }
}

/// Whether the fused row ops apply to `x`.
pub fn fused(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}

/// A contiguous f32 tensor's numbers, read under its storage lock.
fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = t.contiguous()?;
    let (s, l) = t.storage_and_layout();
    let candle_core::Storage::Cpu(s) = &*s else {
        candle_core::bail!("expected a CPU tensor")
    };
    Ok(f(f32s(s, l)?))
}

/// RMSNorm, `x · w / sqrt(mean(x²) + eps)` over the last axis.
struct RmsNorm {
    eps: f32,
}

impl RmsNorm {
    fn inv(&self, row: &[f32]) -> f32 {
        let ms = row.iter().map(|v| v * v).sum::<f32>() / row.len() as f32;
        1.0 / (ms + self.eps).sqrt()
    }
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "basis-rms-norm"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        xl: &Layout,
        w: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w) = (f32s(x, xl)?, f32s(w, wl)?);
        let n = w.len();
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(n)
            .zip(x.par_chunks(n))
            .for_each(|(o, row)| {
                let r = self.inv(row);
                for ((o, &v), &wj) in o.iter_mut().zip(row).zip(w) {
                    *o = v * r * wj;
                }
            });
        Ok((CpuStorage::F32(out), xl.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let n = w.elem_count();
        let want_dw = w.is_variable();
        let (dx, dw) = with_f32(x, |x| {
            with_f32(w, |w| {
                with_f32(grad, |g| {
                    let mut dx = vec![0f32; x.len()];
                    // dx_j = r·w_j·g_j − r³·x_j·mean_i(g_i·w_i·x_i); dw_j = Σ_rows g_j·x_j·r
                    let dw_rows: Vec<Vec<f32>> = dx
                        .par_chunks_mut(n)
                        .zip(x.par_chunks(n).zip(g.par_chunks(n)))
                        .map(|(d, (row, gr))| {
                            let r = self.inv(row);
                            let dot = row
                                .iter()
                                .zip(gr)
                                .zip(w)
                                .map(|((&xv, &gv), &wv)| xv * gv * wv)
                                .sum::<f32>()
                                / n as f32;
                            let r3 = r * r * r;
                            for j in 0..n {
                                d[j] = r * w[j] * gr[j] - r3 * row[j] * dot;
                            }
                            if want_dw {
                                row.iter().zip(gr).map(|(&xv, &gv)| gv * xv * r).collect()
                            } else {
                                Vec::new()
                            }
                        })
                        .collect();
                    let dw = want_dw.then(|| {
                        let mut acc = vec![0f32; n];
                        for r in &dw_rows {
                            for (a, v) in acc.iter_mut().zip(r) {
                                *a += v;
                            }
                        }
                        acc
                    });
                    (dx, dw)
                })
            })
        })???;
        let dx = Tensor::from_vec(dx, x.shape(), x.device())?;
        let dw = dw
            .map(|d| Tensor::from_vec(d, w.shape(), w.device()))
            .transpose()?;
        Ok((Some(dx), dw))
    }
}

/// RMSNorm over the last axis of `x` with weight `w` (fused on the CPU).
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    if fused(x) && w.dtype() == DType::F32 {
        return x
            .contiguous()?
            .apply_op2(&w.contiguous()?, RmsNorm { eps: eps as f32 });
    }
    let inv = (x.sqr()?.mean_keepdim(candle_core::D::Minus1)? + eps)?
        .sqrt()?
        .recip()?;
    x.broadcast_mul(&inv)?.broadcast_mul(w)
}

/// Rotary embedding in the "rotate half" layout for x (b, heads, t, d) with
/// cos/sin tables (t, d/2), which are constants.
struct Rope {
    cos: Vec<f32>,
    sin: Vec<f32>,
    t: usize,
    half: usize,
}

impl Rope {
    /// `sign` +1: the rotation; -1: its transpose (the backward).
    fn apply(&self, x: &[f32], sign: f32) -> Vec<f32> {
        let d = 2 * self.half;
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(d)
            .zip(x.par_chunks(d))
            .enumerate()
            .for_each(|(i, (o, row))| {
                let pos = i % self.t;
                let (c, s) = (
                    &self.cos[pos * self.half..(pos + 1) * self.half],
                    &self.sin[pos * self.half..(pos + 1) * self.half],
                );
                let (x1, x2) = row.split_at(self.half);
                let (o1, o2) = o.split_at_mut(self.half);
                for j in 0..self.half {
                    o1[j] = x1[j] * c[j] - sign * x2[j] * s[j];
                    o2[j] = x2[j] * c[j] + sign * x1[j] * s[j];
                }
            });
        out
    }
}

impl candle_core::CustomOp1 for Rope {
    fn name(&self) -> &'static str {
        "basis-rope"
    }

    fn cpu_fwd(&self, x: &CpuStorage, xl: &Layout) -> Result<(CpuStorage, Shape)> {
        Ok((
            CpuStorage::F32(self.apply(f32s(x, xl)?, 1.0)),
            xl.shape().clone(),
        ))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let dx = with_f32(grad, |g| self.apply(g, -1.0))?;
        Ok(Some(Tensor::from_vec(dx, x.shape(), x.device())?))
    }
}

/// Rotary embedding of x (b, heads, t, d) with tables (t, d/2) (fused on the CPU).
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let (_, _, t, d) = x.dims4()?;
    let half = d / 2;
    if fused(x) {
        let op = Rope {
            cos: cos.contiguous()?.flatten_all()?.to_vec1()?,
            sin: sin.contiguous()?.flatten_all()?.to_vec1()?,
            t,
            half,
        };
        return x.contiguous()?.apply_op1(op);
    }
    let cos = Tensor::cat(&[cos, cos], candle_core::D::Minus1)?;
    let sin = Tensor::cat(&[sin, sin], candle_core::D::Minus1)?;
    let x1 = x.narrow(candle_core::D::Minus1, 0, half)?;
    let x2 = x.narrow(candle_core::D::Minus1, half, half)?;
    let rotated = Tensor::cat(&[&x2.neg()?, &x1], candle_core::D::Minus1)?;
    x.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?
}

/// The attention kernel's dimensions for `rows` query rows that are the
/// groups' blocks of `t` new positions after `past` cached ones.
fn attention_dims(rows: usize, t: usize, hd: usize, keys: usize, past: usize) -> Result<Dims> {
    if t == 0 || !rows.is_multiple_of(t) {
        candle_core::bail!("attention: {rows} query rows are not groups of {t}");
    }
    Ok(Dims {
        groups: rows / t,
        t,
        hd,
        keys,
        past,
    })
}

/// Causal attention over the KV cache, for inference: [`causal_attention`]'s
/// numbers (the same [`crate::attention`] kernel) from keys the cache keeps transposed
/// (b, kv_heads, hd, keys) and its values (b, kv_heads, keys, hd), both read
/// where the cache holds them: nothing the size of the cache is copied or
/// transposed at a step. Keys and values are both f32 or both f16.
pub fn cached_attention(
    q: &Tensor,
    kt: &Tensor,
    v: &Tensor,
    scale: f64,
    t: usize,
) -> Result<Tensor> {
    let past = kt.dim(3)? - t;
    q.contiguous()?.apply_op3_no_bwd(
        kt,
        v,
        &CachedAttention {
            scale: scale as f32,
            t,
            past,
        },
    )
}

struct CachedAttention {
    scale: f32,
    t: usize,
    past: usize,
}

impl candle_core::CustomOp3 for CachedAttention {
    fn name(&self) -> &'static str {
        "basis-cached-attention"
    }

    fn cpu_fwd(
        &self,
        q: &CpuStorage,
        ql: &Layout,
        kt: &CpuStorage,
        ktl: &Layout,
        v: &CpuStorage,
        vl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, h, rows, hd) = ql.shape().dims4()?;
        let (kb, kh, khd, keys) = ktl.shape().dims4()?;
        let (vb, vh, vkeys, vhd) = vl.shape().dims4()?;
        if (kb, kh, khd) != (b, h, hd) || (vb, vh, vkeys, vhd) != (b, h, keys, hd) {
            candle_core::bail!(
                "cached attention: q {:?}, keys transposed {:?}, v {:?} do not fit",
                ql.shape(),
                ktl.shape(),
                vl.shape()
            );
        }
        let (ks, vs) = (ktl.stride(), vl.stride());
        if (keys > 1 && (ks[3] != 1 || vs[2] != hd)) || (hd > 1 && vs[3] != 1) {
            candle_core::bail!("cached attention: the cache's rows are not contiguous");
        }
        let shape = attention_dims(rows, self.t, hd, keys, self.past)?;
        let q = f32s(q, ql)?;
        let (k0, v0) = (ktl.start_offset(), vl.start_offset());
        fn run<T: crate::attention::Elem>(
            q: &[f32],
            (kt, v): (&[T], &[T]),
            (k0, ks, v0, vs): (usize, &[usize], usize, &[usize]),
            (h, hd, keys): (usize, usize, usize),
            shape: Dims,
            scale: f32,
        ) -> Vec<f32> {
            attention(
                q,
                shape,
                scale,
                |blk| Kv {
                    kt: &kt[k0 + blk / h * ks[0] + blk % h * ks[1]..][..(hd - 1) * ks[2] + keys],
                    ld: ks[2],
                    v: &v[v0 + blk / h * vs[0] + blk % h * vs[1]..][..keys * hd],
                },
                Isa::active(),
            )
        }
        let at = (k0, ks, v0, vs);
        let out = match (kt, v) {
            (CpuStorage::F32(kt), CpuStorage::F32(v)) => {
                run(q, (kt, v), at, (h, hd, keys), shape, self.scale)
            }
            (CpuStorage::F16(kt), CpuStorage::F16(v)) => {
                run(q, (kt, v), at, (h, hd, keys), shape, self.scale)
            }
            _ => {
                candle_core::bail!("cached attention: keys and values must both be f32 or both f16")
            }
        };
        Ok((CpuStorage::F32(out), ql.shape().clone()))
    }
}

/// Causal attention, `softmax(scale · q kᵀ) v` where query row `r` of a block
/// of `t` sees keys `0..=past + r % t`, in one pass per query row.
///
/// Each row's arithmetic is the same however many rows come with it: its scores
/// sum over the head dimension in order, its output over the visible keys in
/// order. So a prompt prefilled after a prefix-cache hit, a group of samples
/// sharing one prefill and a cold prefill give the same numbers for the same
/// position. (Batched matmuls do not: their blocking depends on the row count, and
/// the 8-bit activations of the quantized path turn a last-bit difference into a
/// different token now and then.)
struct CausalAttention {
    scale: f32,
    t: usize,
    past: usize,
}

impl candle_core::CustomOp3 for CausalAttention {
    fn name(&self) -> &'static str {
        "basis-causal-attention"
    }

    fn cpu_fwd(
        &self,
        q: &CpuStorage,
        ql: &Layout,
        k: &CpuStorage,
        kl: &Layout,
        v: &CpuStorage,
        vl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (b, h, rows, hd) = ql.shape().dims4()?;
        let (kb, kh, keys, khd) = kl.shape().dims4()?;
        if (kb, kh, khd) != (b, h, hd) || vl.shape() != kl.shape() {
            candle_core::bail!(
                "causal attention: q {:?}, k {:?}, v {:?} do not fit",
                ql.shape(),
                kl.shape(),
                vl.shape()
            );
        }
        let (q, k, v) = (f32s(q, ql)?, f32s(k, kl)?, f32s(v, vl)?);
        // Keys transposed per head (hd × keys), so a row's scores grow by one
        // broadcast multiply-add over contiguous keys per head dimension.
        let mut kt = vec![0f32; b * h * hd * keys];
        kt.par_chunks_mut(hd * keys)
            .zip(k.par_chunks(keys * hd))
            .for_each(|(kt, k)| {
                for (j, key) in k.chunks_exact(hd).enumerate() {
                    for (d, &x) in key.iter().enumerate() {
                        kt[d * keys + j] = x;
                    }
                }
            });
        let shape = attention_dims(rows, self.t, hd, keys, self.past)?;
        let out = attention(
            q,
            shape,
            self.scale,
            |blk| Kv {
                kt: &kt[blk * hd * keys..][..hd * keys],
                ld: keys,
                v: &v[blk * keys * hd..][..keys * hd],
            },
            Isa::active(),
        );
        Ok((CpuStorage::F32(out), ql.shape().clone()))
    }

    /// Recomputes each row's probabilities from q and k instead of keeping
    /// them, so training holds no (rows × keys) tensor per layer: with
    /// `p = softmax(scale · q kᵀ)`, `o = p v`, `D = dO · o`,
    /// `ds_j = p_j (dO · v_j − D)`: `dq = scale Σ ds_j k_j`,
    /// `dk_j += scale ds_j q`, `dv_j += p_j dO`.
    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (b, h, rows, hd) = q.dims4()?;
        let keys = k.dim(2)?;
        let host = |t: &Tensor| t.flatten_all()?.to_vec1::<f32>();
        let (qs, ks, vs, os, gs) = (host(q)?, host(k)?, host(v)?, host(res)?, host(grad)?);
        // Each block (batch, head) splits its rows into chunks, each with its own
        // dk and dv to add up after, so two cores share even one block.
        let blocks = b * h;
        let chunks = (4 * rayon::current_num_threads())
            .div_ceil(blocks)
            .clamp(1, rows);
        let per = rows.div_ceil(chunks);
        let mut dq = vec![0f32; qs.len()];
        let parts: Vec<(usize, Vec<f32>, Vec<f32>)> = dq
            .par_chunks_mut(rows * hd)
            .enumerate()
            .flat_map(|(blk, dq)| {
                dq.par_chunks_mut(per * hd)
                    .enumerate()
                    .map(move |(c, dq)| (blk, c * per, dq))
            })
            .map(|(blk, first, dq)| {
                let (kb, vb) = (
                    &ks[blk * keys * hd..][..keys * hd],
                    &vs[blk * keys * hd..][..keys * hd],
                );
                let (mut dk, mut dv) = (vec![0f32; keys * hd], vec![0f32; keys * hd]);
                let mut p = vec![0f32; keys];
                for (i, dq) in dq.chunks_exact_mut(hd).enumerate() {
                    let r = first + i;
                    let at = (blk * rows + r) * hd;
                    let (qr, or, gr) = (&qs[at..][..hd], &os[at..][..hd], &gs[at..][..hd]);
                    let n = (self.past + r % self.t + 1).min(keys);
                    let p = &mut p[..n];
                    for (p, key) in p.iter_mut().zip(kb.chunks_exact(hd)) {
                        *p = dot(qr, key);
                    }
                    let max = p.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let mut sum = 0f32;
                    for x in p.iter_mut() {
                        *x = ((*x - max) * self.scale).exp();
                        sum += *x;
                    }
                    let inv = 1.0 / sum;
                    let d = dot(gr, or);
                    for (j, &pj) in p.iter().enumerate() {
                        let pj = pj * inv;
                        let row = j * hd..(j + 1) * hd;
                        let ds = pj * (dot(gr, &vb[row.clone()]) - d) * self.scale;
                        axpy(dq, ds, &kb[row.clone()]);
                        axpy(&mut dk[row.clone()], ds, qr);
                        axpy(&mut dv[row], pj, gr);
                    }
                }
                (blk, dk, dv)
            })
            .collect();
        let mut dk = vec![0f32; ks.len()];
        let mut dv = vec![0f32; vs.len()];
        for (blk, pk, pv) in &parts {
            axpy(&mut dk[blk * keys * hd..][..keys * hd], 1.0, pk);
            axpy(&mut dv[blk * keys * hd..][..keys * hd], 1.0, pv);
        }
        let dev = q.device();
        Ok((
            Some(Tensor::from_vec(dq, q.shape(), dev)?),
            Some(Tensor::from_vec(dk, k.shape(), dev)?),
            Some(Tensor::from_vec(dv, v.shape(), dev)?),
        ))
    }
}

/// `a · b` in eight lanes (which the compiler keeps in vector registers).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `y += a · x`.
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// `softmax(scale · q kᵀ + causal mask) v` on the CPU (see `CausalAttention` in this module):
/// q is (b, heads, rows, hd) where row `r` is query position `r % t` of the `t`
/// new ones, after `past` cached positions; k and v are (b, heads, keys, hd).
/// Differentiable, with a backward that recomputes the probabilities, so neither
/// the scores nor the probabilities are kept for it: training memory grows with
/// the length, not its square.
pub fn causal_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f64,
    t: usize,
) -> Result<Tensor> {
    let past = k.dim(2)? - t;
    q.contiguous()?.apply_op3(
        &k.contiguous()?,
        &v.contiguous()?,
        CausalAttention {
            scale: scale as f32,
            t,
            past,
        },
    )
}

/// `softmax(scale · x + mask)` over the last axis of x (…, rows, keys), where the
/// rows are blocks of `t` queries and `mask` is the additive causal mask,
/// broadcast against x reshaped to (b, kv_heads, groups, t, keys): candle's
/// composite ops, for the devices [`causal_attention`] does not run on.
pub fn causal_softmax(x: &Tensor, scale: f64, t: usize, mask: Option<&Tensor>) -> Result<Tensor> {
    let x = (x * scale)?;
    let x = match mask {
        Some(m) => {
            let dims = x.dims4()?;
            let groups = dims.2 / t;
            x.reshape((dims.0, dims.1, groups, t, dims.3))?
                .broadcast_add(m)?
                .reshape(dims)?
        }
        None => x,
    };
    let max = x.max_keepdim(candle_core::D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(candle_core::D::Minus1)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn close(a: &Tensor, b: &Tensor, tol: f32) {
        let d = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(d < tol, "max difference {d}");
    }

    #[test]
    fn fused_logprobs_and_their_gradient_equal_the_composite_ones() {
        let d = Device::Cpu;
        let logits = Var::from_tensor(&Tensor::randn(0f32, 3.0, (5, 37), &d).unwrap()).unwrap();
        let targets = Tensor::new(&[0u32, 36, 7, 7, 20], &d).unwrap();
        let weights = Tensor::new(&[1f32, -2.0, 0.5, 3.0, 0.0], &d).unwrap();
        let fused = token_logprobs(logits.as_tensor(), &targets).unwrap();
        let composite = composite_logprobs(logits.as_tensor(), &targets).unwrap();
        close(&fused, &composite, 1e-5);
        let g1 = (fused * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g2 = (composite * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        close(
            g1.get(logits.as_tensor()).unwrap(),
            g2.get(logits.as_tensor()).unwrap(),
            1e-5,
        );
    }

    /// The fused op against the composite one: values, and the gradients of a
    /// weighted sum with respect to every variable.
    fn same_with_gradients(
        vars: &[&Var],
        fused: impl Fn() -> Tensor,
        composite: impl Fn() -> Tensor,
        tol: f32,
    ) {
        let (a, b) = (fused(), composite());
        close(&a, &b, tol);
        let weights = Tensor::randn(0f32, 1.0, a.shape(), a.device()).unwrap();
        let ga = (&a * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gb = (&b * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for v in vars {
            close(
                ga.get(v.as_tensor()).unwrap(),
                gb.get(v.as_tensor()).unwrap(),
                tol,
            );
        }
    }

    /// Attention from candle's ops, with the additive causal mask.
    fn composite_attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64, t: usize) -> Tensor {
        let (b, h, rows, _) = q.dims4().unwrap();
        let keys = k.dim(2).unwrap();
        let past = keys - t;
        let mask: Vec<f32> = (0..t)
            .flat_map(|i| {
                (0..keys).map(move |j| {
                    if j <= past + i {
                        0.0
                    } else {
                        f32::NEG_INFINITY
                    }
                })
            })
            .collect();
        let mask = Tensor::from_vec(mask, (t, keys), q.device()).unwrap();
        let scores = q.matmul(&k.t().unwrap()).unwrap();
        assert_eq!(scores.dims4().unwrap(), (b, h, rows, keys));
        causal_softmax(&scores, scale, t, Some(&mask))
            .unwrap()
            .matmul(v)
            .unwrap()
    }

    #[test]
    fn causal_attention_gradients_equal_the_composite_ones() {
        let d = Device::Cpu;
        // Two sequences, two kv heads of three query heads each, 5 new positions
        // after 3 cached ones: 15 rows a block, which the backward splits
        // unevenly into chunks.
        let (t, past, hd) = (5, 3, 8);
        let var = |rows| {
            Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 2, rows, hd), &d).unwrap()).unwrap()
        };
        let (q, k, v) = (var(3 * t), var(past + t), var(past + t));
        let (qt, kt, vt) = (q.as_tensor(), k.as_tensor(), v.as_tensor());
        same_with_gradients(
            &[&q, &k, &v],
            || causal_attention(qt, kt, vt, 0.35, t).unwrap(),
            || composite_attention(qt, kt, vt, 0.35, t),
            1e-5,
        );
    }

    #[test]
    fn causal_attention_equals_the_composite_and_ignores_batching() {
        let d = Device::Cpu;
        // Two kv heads, two query heads each (rows stacked as groups × t), 3 new
        // positions after 4 cached ones.
        let (t, past, hd) = (3, 4, 8);
        let q = Tensor::randn(0f32, 1.0, (1, 2, 2 * t, hd), &d).unwrap();
        let k = Tensor::randn(0f32, 1.0, (1, 2, past + t, hd), &d).unwrap();
        let v = Tensor::randn(0f32, 1.0, (1, 2, past + t, hd), &d).unwrap();
        let scale = 0.35;
        let fused = causal_attention(&q, &k, &v, scale, t).unwrap();
        close(&fused, &composite_attention(&q, &k, &v, scale, t), 1e-5);
        // The last position alone, against the cache of the others: the same bits.
        let last = |x: &Tensor| {
            Tensor::cat(
                &[
                    x.narrow(2, t - 1, 1).unwrap(),
                    x.narrow(2, 2 * t - 1, 1).unwrap(),
                ],
                2,
            )
            .unwrap()
        };
        let alone = causal_attention(&last(&q), &k, &v, scale, 1).unwrap();
        let both: Vec<f32> = last(&fused).flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(alone.flatten_all().unwrap().to_vec1::<f32>().unwrap(), both);
    }

    #[test]
    fn attention_over_the_cache_gives_the_same_bits() {
        let d = Device::Cpu;
        // Two sequences, two kv heads of three query heads each, 20 new
        // positions after 50 cached ones, keys and values where a cache of
        // capacity 128 holds them.
        let (t, past, hd, groups, cap) = (20, 50, 16, 3, 128);
        let keys = past + t;
        let q = Tensor::randn(0f32, 1.0, (2, 2, groups * t, hd), &d).unwrap();
        let k = Tensor::randn(0f32, 1.0, (2, 2, keys, hd), &d).unwrap();
        let v_cache = Tensor::randn(0f32, 1.0, (2, 2, cap, hd), &d).unwrap();
        let v = v_cache.narrow(2, 0, keys).unwrap();
        let kt_cache = Tensor::zeros((2, 2, hd, cap), DType::F32, &d).unwrap();
        kt_cache
            .slice_set(&k.transpose(2, 3).unwrap().contiguous().unwrap(), 3, 0)
            .unwrap();
        let kt = kt_cache.narrow(3, 0, keys).unwrap();
        let bits = |x: &Tensor| x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let scale = 0.25;
        let fused = causal_attention(&q, &k, &v.contiguous().unwrap(), scale, t).unwrap();
        let cached = cached_attention(&q, &kt, &v, scale, t).unwrap();
        assert_eq!(bits(&cached), bits(&fused));
        // A decoding step: each group's last row alone over the same cache.
        let last = |x: &Tensor| {
            let rows: Vec<Tensor> = (1..=groups)
                .map(|g| x.narrow(2, g * t - 1, 1).unwrap())
                .collect();
            Tensor::cat(&rows, 2).unwrap()
        };
        let step = cached_attention(&last(&q), &kt, &v, scale, 1).unwrap();
        assert_eq!(bits(&step), bits(&last(&fused)));
    }

    #[test]
    fn fused_row_ops_equal_the_composite_ones_with_gradients() {
        let d = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, 5, 8), &d).unwrap()).unwrap();
        let w = Var::from_tensor(&Tensor::randn(1f32, 0.2, 8, &d).unwrap()).unwrap();
        let xt = x.as_tensor();
        same_with_gradients(
            &[&x, &w],
            || rms_norm(xt, w.as_tensor(), 1e-5).unwrap(),
            || {
                let inv = (xt.sqr().unwrap().mean_keepdim(3).unwrap() + 1e-5)
                    .unwrap()
                    .sqrt()
                    .unwrap()
                    .recip()
                    .unwrap();
                xt.broadcast_mul(&inv)
                    .unwrap()
                    .broadcast_mul(w.as_tensor())
                    .unwrap()
            },
            1e-4,
        );
        let cos = Tensor::randn(0f32, 1.0, (5, 4), &d).unwrap();
        let sin = Tensor::randn(0f32, 1.0, (5, 4), &d).unwrap();
        same_with_gradients(
            &[&x],
            || rope(xt, &cos, &sin).unwrap(),
            || {
                let c = Tensor::cat(&[&cos, &cos], 1).unwrap();
                let s = Tensor::cat(&[&sin, &sin], 1).unwrap();
                let x1 = xt.narrow(3, 0, 4).unwrap();
                let x2 = xt.narrow(3, 4, 4).unwrap();
                let rot = Tensor::cat(&[&x2.neg().unwrap(), &x1], 3).unwrap();
                (xt.broadcast_mul(&c).unwrap() + rot.broadcast_mul(&s).unwrap()).unwrap()
            },
            1e-5,
        );
    }

    #[test]
    fn a_frozen_weight_gets_no_gradient_and_a_trainable_one_does() {
        let d = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (4, 6), &d).unwrap()).unwrap();
        let frozen = Tensor::randn(0f32, 1.0, (3, 6), &d).unwrap();
        let trainable = Var::from_tensor(&Tensor::randn(0f32, 1.0, (3, 6), &d).unwrap()).unwrap();
        let before = stats::snapshot();
        let y = linear(x.as_tensor(), &frozen).unwrap();
        close(
            &y,
            &x.as_tensor().matmul(&frozen.t().unwrap()).unwrap(),
            1e-5,
        );
        let g = y.sum_all().unwrap().backward().unwrap();
        assert!(g.get(&frozen).is_none());
        let want_dx = Tensor::ones((4, 3), DType::F32, &d)
            .unwrap()
            .matmul(&frozen)
            .unwrap();
        close(g.get(x.as_tensor()).unwrap(), &want_dx, 1e-5);
        let y = linear(x.as_tensor(), trainable.as_tensor()).unwrap();
        let g = y.sum_all().unwrap().backward().unwrap();
        let want_dw = Tensor::ones((3, 4), DType::F32, &d)
            .unwrap()
            .matmul(x.as_tensor())
            .unwrap();
        close(g.get(trainable.as_tensor()).unwrap(), &want_dw, 1e-5);
        let after = stats::snapshot();
        // Other tests may run linears at the same time: at least ours counted.
        assert!(after.frozen_weight_grads_skipped > before.frozen_weight_grads_skipped);
        assert!(after.weight_grads > before.weight_grads);
    }

    #[test]
    fn lora_linear_equals_the_separate_ops_and_their_gradients() {
        let d = Device::Cpu;
        let (m, k, n, r) = (7, 12, 10, 3);
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (m, k), &d).unwrap()).unwrap();
        let w = Tensor::randn(0f32, 1.0, (n, k), &d).unwrap();
        let a = Var::from_tensor(&Tensor::randn(0f32, 1.0, (r, k), &d).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 1.0, (n, r), &d).unwrap()).unwrap();
        let scale = 16.0 / 3.0;
        // Weights on the loss, so that every output's gradient differs.
        let c = Tensor::randn(0f32, 1.0, (m, n), &d).unwrap();
        let (x_, a_, b_) = (x.as_tensor(), a.as_tensor(), b.as_tensor());
        let fused = lora_linear(x_, &w, a_, b_, scale).unwrap();
        let h = x_.matmul(&a_.t().unwrap()).unwrap();
        let delta = (h.matmul(&b_.t().unwrap()).unwrap() * scale).unwrap();
        let composite = (x_.matmul(&w.t().unwrap()).unwrap() + delta).unwrap();
        // The same products in the same order: the same numbers.
        assert_eq!(
            fused.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            composite.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
        let loss = |y: &Tensor| (y * &c).unwrap().sum_all().unwrap();
        let gf = loss(&fused).backward().unwrap();
        let gc = loss(&composite).backward().unwrap();
        for t in [x_, a_, b_] {
            close(gf.get(t).unwrap(), gc.get(t).unwrap(), 1e-4);
        }
        assert!(gf.get(&w).is_none());
    }
}
