//! A CPU matrix multiply for GGML's Q4_1 weights with AVX2, as a candle custom op.
//!
//! candle's own Q4_1 dot product is scalar (its SIMD kernels cover Q4_0, Q8_0 and
//! the k-quants), which made the default SmolLM2 Q4_1 model about 15x slower than
//! llama.cpp. This kernel follows ggml's arithmetic: activations are quantized per
//! block of 32 to Q8_1 (scale `d = amax / 127` and `s = d · Σq`, both stored as f16),
//! and a block's dot product is `d_w·d_x·Σ q_w q_x + m_w·s_x`. The results are thus
//! the ones llama.cpp computes, up to float summation order.
#![allow(unsafe_code)] // SIMD intrinsics; each unsafe block states why it is sound.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, Layout, Shape};
use half::f16;
use rayon::prelude::*;

const QK: usize = 32;
const BLOCK_BYTES: usize = 20;

/// A Q4_1 matrix of `rows` × `cols`, unpacked for the kernel: per block its scale and
/// minimum as f32 (exactly the stored f16 values) and its 16 bytes of nibbles.
pub(crate) struct Q41Matrix {
    rows: usize,
    cols: usize,
    d: Vec<f32>,
    m: Vec<f32>,
    qs: Vec<[u8; 16]>,
}

impl Q41Matrix {
    /// Whether this CPU can run the kernel.
    pub(crate) fn supported() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// From GGML's raw Q4_1 bytes (row-major, `cols / 32` blocks per row).
    pub(crate) fn from_ggml(bytes: &[u8], rows: usize, cols: usize) -> Option<Self> {
        if cols % QK != 0 || bytes.len() != rows * cols / QK * BLOCK_BYTES {
            return None;
        }
        let n = bytes.len() / BLOCK_BYTES;
        let mut d = Vec::with_capacity(n);
        let mut m = Vec::with_capacity(n);
        let mut qs = Vec::with_capacity(n);
        for b in bytes.chunks_exact(BLOCK_BYTES) {
            d.push(f16::from_le_bytes([b[0], b[1]]).to_f32());
            m.push(f16::from_le_bytes([b[2], b[3]]).to_f32());
            qs.push(b[4..20].try_into().expect("16 bytes"));
        }
        Some(Self { rows, cols, d, m, qs })
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    pub(crate) fn cols(&self) -> usize {
        self.cols
    }

    fn blocks_per_row(&self) -> usize {
        self.cols / QK
    }

    /// Dequantized row `r` (for tests and the f32 path).
    #[cfg(test)]
    fn row_f32(&self, r: usize) -> Vec<f32> {
        let bpr = self.blocks_per_row();
        let mut out = Vec::with_capacity(self.cols);
        for b in r * bpr..(r + 1) * bpr {
            let mut block = [0f32; QK];
            for j in 0..16 {
                block[j] = (self.qs[b][j] & 0x0F) as f32 * self.d[b] + self.m[b];
                block[j + 16] = (self.qs[b][j] >> 4) as f32 * self.d[b] + self.m[b];
            }
            out.extend_from_slice(&block);
        }
        out
    }
}

/// One activation row quantized to Q8_1.
struct Q81Row {
    d: Vec<f32>,
    s: Vec<f32>,
    qs: Vec<[i8; 32]>,
}

fn quantize_q8_1(x: &[f32]) -> Q81Row {
    let nb = x.len() / QK;
    let mut row = Q81Row {
        d: Vec::with_capacity(nb),
        s: Vec::with_capacity(nb),
        qs: Vec::with_capacity(nb),
    };
    for block in x.chunks_exact(QK) {
        let amax = block.iter().fold(0f32, |a, &v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut q = [0i8; 32];
        let mut sum = 0i32;
        for (qi, &v) in q.iter_mut().zip(block) {
            *qi = (v * id).round() as i8;
            sum += *qi as i32;
        }
        row.d.push(f16::from_f32(d).to_f32());
        row.s.push(f16::from_f32(sum as f32 * d).to_f32());
        row.qs.push(q);
    }
    row
}

/// Σ over blocks of `d_w·d_x·Σ q_w q_x + m_w·s_x` for weight row `r`.
fn dot(w: &Q41Matrix, r: usize, x: &Q81Row) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `Q41Matrix::supported()` is checked before any op is built, so the
        // CPU has AVX2 and FMA.
        unsafe { dot_avx2(w, r, x) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        dot_scalar(w, r, x)
    }
}

#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn dot_scalar(w: &Q41Matrix, r: usize, x: &Q81Row) -> f32 {
    let bpr = w.blocks_per_row();
    let mut sum = 0f32;
    for (i, b) in (r * bpr..(r + 1) * bpr).enumerate() {
        let mut sumi = 0i32;
        for j in 0..16 {
            sumi += (w.qs[b][j] & 0x0F) as i32 * x.qs[i][j] as i32;
            sumi += (w.qs[b][j] >> 4) as i32 * x.qs[i][j + 16] as i32;
        }
        sum += w.d[b] * x.d[i] * sumi as f32 + w.m[b] * x.s[i];
    }
    sum
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(w: &Q41Matrix, r: usize, x: &Q81Row) -> f32 {
    use std::arch::x86_64::*;
    let bpr = w.blocks_per_row();
    let base = r * bpr;
    let mut acc = _mm256_setzero_ps();
    let mut mins = 0f32;
    let low_mask = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    for i in 0..bpr {
        let b = base + i;
        mins += w.m[b] * x.s[i];
        // SAFETY: `qs[b]` is 16 bytes and `x.qs[i]` 32 bytes; unaligned loads.
        let packed = _mm_loadu_si128(w.qs[b].as_ptr() as *const __m128i);
        // Low nibbles are elements 0..16, high nibbles 16..32.
        let both = _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed);
        let qw = _mm256_and_si256(both, low_mask);
        let qx = _mm256_loadu_si256(x.qs[i].as_ptr() as *const __m256i);
        let pairs = _mm256_maddubs_epi16(qw, qx);
        let quads = _mm256_madd_epi16(pairs, ones);
        let scale = _mm256_set1_ps(w.d[b] * x.d[i]);
        acc = _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(quads), acc);
    }
    let hi = _mm256_extractf128_ps(acc, 1);
    let lo = _mm256_castps256_ps128(acc);
    let s = _mm_add_ps(hi, lo);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s) + mins
}

/// `x Wᵀ` for x of shape (…, cols): a candle op without backward (serving only).
pub(crate) struct Q41MatMul(pub(crate) Arc<Q41Matrix>);

/// Output rows handled by one task.
const ROWS_PER_TASK: usize = 64;

impl CustomOp1 for Q41MatMul {
    fn name(&self) -> &'static str {
        "q4_1-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let w = &*self.0;
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("q4_1-matmul expects f32 activations");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("q4_1-matmul expects contiguous activations");
        };
        let x = &data[start..end];
        let dims = layout.shape().dims();
        let k = *dims.last().unwrap_or(&0);
        if k != w.cols {
            candle_core::bail!("q4_1-matmul: activations have {k} columns, weights {}", w.cols);
        }
        let m = x.len() / k;
        let n = w.rows;
        let rows: Vec<Q81Row> = x.par_chunks(k).map(quantize_q8_1).collect();
        let mut out = vec![0f32; m * n];
        if m == 1 {
            out.par_chunks_mut(ROWS_PER_TASK).enumerate().for_each(|(t, chunk)| {
                for (j, o) in chunk.iter_mut().enumerate() {
                    *o = dot(w, t * ROWS_PER_TASK + j, &rows[0]);
                }
            });
        } else {
            // Each task takes a band of weight rows and runs every activation row
            // against it, so a weight row is read from memory once per call.
            let bands: Vec<Vec<f32>> = (0..n.div_ceil(ROWS_PER_TASK))
                .into_par_iter()
                .map(|t| {
                    let r0 = t * ROWS_PER_TASK;
                    let r1 = (r0 + ROWS_PER_TASK).min(n);
                    let mut band = vec![0f32; m * (r1 - r0)];
                    for r in r0..r1 {
                        for (i, row) in rows.iter().enumerate() {
                            band[i * (r1 - r0) + (r - r0)] = dot(w, r, row);
                        }
                    }
                    band
                })
                .collect();
            for (t, band) in bands.iter().enumerate() {
                let r0 = t * ROWS_PER_TASK;
                let width = band.len() / m;
                for i in 0..m {
                    out[i * n + r0..i * n + r0 + width].copy_from_slice(&band[i * width..(i + 1) * width]);
                }
            }
        }
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().expect("at least one dim") = n;
        Ok((CpuStorage::F32(out), Shape::from(out_dims)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_q4_1(rows: usize, cols: usize, seed: u32) -> Vec<u8> {
        let mut state = seed;
        let mut next = || {
            state = state.wrapping_mul(1664525).wrapping_add(1013904223);
            state
        };
        let mut bytes = Vec::new();
        for _ in 0..rows * cols / QK {
            let d = f16::from_f32((next() % 1000) as f32 / 40_000.0);
            let m = f16::from_f32(-((next() % 1000) as f32) / 3_000.0);
            bytes.extend(d.to_le_bytes());
            bytes.extend(m.to_le_bytes());
            for _ in 0..16 {
                bytes.push((next() >> 8) as u8);
            }
        }
        bytes
    }

    #[test]
    fn simd_matches_scalar_and_dequantized_reference() {
        let (rows, cols) = (70, 128);
        let w = Q41Matrix::from_ggml(&random_q4_1(rows, cols, 7), rows, cols).unwrap();
        let x: Vec<f32> = (0..cols).map(|i| ((i * 37 % 17) as f32 - 8.0) / 7.0).collect();
        let q = quantize_q8_1(&x);
        for r in 0..rows {
            let simd = dot(&w, r, &q);
            let scalar = dot_scalar(&w, r, &q);
            assert!((simd - scalar).abs() <= 1e-4 * scalar.abs().max(1.0), "row {r}: {simd} vs {scalar}");
            // Against the exact f32 product: only the activation quantization differs.
            let exact: f32 = w.row_f32(r).iter().zip(&x).map(|(a, b)| a * b).sum();
            assert!((simd - exact).abs() < 0.05 * exact.abs().max(1.0), "row {r}: {simd} vs {exact}");
        }
    }

    #[test]
    fn op_matches_row_dots_for_batches() {
        if !Q41Matrix::supported() {
            return;
        }
        let (rows, cols) = (130, 64);
        let w = Arc::new(Q41Matrix::from_ggml(&random_q4_1(rows, cols, 3), rows, cols).unwrap());
        let x: Vec<f32> = (0..3 * cols).map(|i| ((i * 13 % 29) as f32 - 14.0) / 9.0).collect();
        let t = candle_core::Tensor::from_vec(x.clone(), (1, 3, cols), &candle_core::Device::Cpu).unwrap();
        let y = t.apply_op1_no_bwd(&Q41MatMul(w.clone())).unwrap();
        assert_eq!(y.dims(), &[1, 3, rows]);
        let y: Vec<Vec<f32>> = y.squeeze(0).unwrap().to_vec2().unwrap();
        for i in 0..3 {
            let q = quantize_q8_1(&x[i * cols..(i + 1) * cols]);
            for r in 0..rows {
                assert_eq!(y[i][r], dot(&w, r, &q));
            }
        }
    }
}
