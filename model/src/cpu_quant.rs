//! CPU matrix multiplies for GGML's Q4_1 and Q8_0 weights with AVX2 or AVX-512
//! VNNI, as a candle custom op that runs on rayon's pool.
//!
//! A matrix whose rows fill groups of sixteen is repacked at load so that one
//! vector load holds four quants of each of 8 (AVX2) or 16 (AVX-512) rows, and
//! tiles run several activation rows against each group: each weight block is
//! read once per tile, not once per activation row. Both instruction sets'
//! tiles sum the same exact integers and then take the same float steps, so
//! they give the same bits. Other matrices run row kernels on GGML's layout.
//!
//! candle's own Q4_1 dot product is scalar (its SIMD kernels cover Q4_0, Q8_0 and
//! the k-quants), which made the default SmolLM2 Q4_1 model about 15x slower than
//! llama.cpp; its Q8_0 path runs on a second thread pool that fights rayon's for the
//! same cores. These kernels follow ggml's arithmetic: activations are quantized per
//! block of 32 (scale `d = amax / 127`, and for Q4_1 also `s = d · Σq`, both stored as
//! f16), a Q4_1 block's dot product is `d_w·d_x·Σ q_w q_x + m_w·s_x` and a Q8_0
//! block's `d_w·d_x·Σ q_w q_x`. The results are thus the ones llama.cpp computes, up
//! to float summation order.
#![allow(unsafe_code)] // SIMD intrinsics; each unsafe block states why it is sound.

use std::sync::Arc;

use candle_core::quantized::GgmlDType;
use candle_core::{CpuStorage, CustomOp1, Layout, Shape};
use half::f16;
use rayon::prelude::*;

use crate::isa::Isa;

const QK: usize = 32;

/// GGML's Q4_1 block: f16 scale and minimum, 16 bytes of nibbles (low nibbles are
/// elements 0..16, high nibbles 16..32). Kept as stored: the kernels are bound by
/// memory bandwidth, so every byte per block counts.
#[derive(Clone, Copy)]
#[repr(C)]
struct BlockQ4_1 {
    d: u16,
    m: u16,
    qs: [u8; 16],
}

/// GGML's Q8_0 block: f16 scale and 32 signed bytes.
#[derive(Clone, Copy)]
#[repr(C)]
struct BlockQ8_0 {
    d: u16,
    qs: [i8; 32],
}

/// Sixteen consecutive Q4_1 weight rows' blocks at one block index, interleaved:
/// `qs[64u + 4l + c]` is byte `4u + c` of row `l`'s nibbles, so one 64-byte load
/// holds four bytes of each of the sixteen rows and one AVX-512 `vpdpbusd`
/// against four broadcast activation bytes advances sixteen dot products at once
/// (the idea of llama.cpp's repacked CPU layouts, applied to Q4_1). Each 32-byte
/// half of such a load is the same for rows 0-7 and 8-15, which is what the AVX2
/// tile reads. The same 20 bytes per row and block as GGML's, so decode reads no
/// more.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Group16Q4_1 {
    qs: [u8; 256],
    d: [u16; 16],
    m: [u16; 16],
}

/// Sixteen consecutive Q8_0 weight rows' blocks at one block index, interleaved
/// as [`Group16Q4_1`]'s are: `qs[64u + 4l + c]` is quant `4u + c` of row `l`
/// (eight runs of 64 bytes). `sums[l]` is the sum of row `l`'s 32 quants:
/// `vpdpbusd` multiplies unsigned by signed bytes, so the VNNI tile feeds it the
/// activations plus 128 and takes `128 · sums[l]` back off. 36 bytes per row and
/// block, against GGML's 34.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Group16Q8_0 {
    qs: [i8; 512],
    d: [u16; 16],
    sums: [i16; 16],
}

/// Rows per [`Group16Q4_1`] and [`Group16Q8_0`].
const GROUP: usize = 16;

fn f16_to_f32(bits: u16) -> f32 {
    f16::from_bits(bits).to_f32()
}

/// The block formats the kernels read.
enum Blocks {
    Q4_1(Vec<BlockQ4_1>),
    Q8_0(Vec<BlockQ8_0>),
    /// Q4_1 repacked for the tiles: `groups[g * bpr + i]` holds block `i` of rows
    /// `16g..16g + 16`.
    Q4_1x16(Vec<Group16Q4_1>),
    /// Q8_0 repacked the same way.
    Q8_0x16(Vec<Group16Q8_0>),
}

/// A quantized matrix of `rows` × `cols`, unpacked for the kernels: scales as f32
/// (exactly the stored f16 values) beside the packed quants.
pub(crate) struct QuantMatrix {
    rows: usize,
    cols: usize,
    blocks: Blocks,
}

impl QuantMatrix {
    /// Whether the kernels run here: this CPU has AVX2 and FMA, and
    /// `BASIS_KERNELS` does not ask for the portable path (see [`Isa`]).
    pub(crate) fn supported() -> bool {
        Isa::active() >= Isa::Avx2
    }

    /// From GGML's raw bytes (row-major, `cols / 32` blocks per row); `None` for a
    /// type the kernels do not cover. Q4_1 with a multiple of 16 rows is repacked
    /// into [`Group16Q4_1`]s, which both the AVX-512 VNNI and the AVX2 tiles read.
    pub(crate) fn from_ggml(
        dtype: GgmlDType,
        bytes: &[u8],
        rows: usize,
        cols: usize,
    ) -> Option<Self> {
        Self::from_ggml_as(dtype, bytes, rows, cols, true)
    }

    /// [`Self::from_ggml`], repacking Q4_1 (when its rows allow) iff `repack`.
    fn from_ggml_as(
        dtype: GgmlDType,
        bytes: &[u8],
        rows: usize,
        cols: usize,
        repack: bool,
    ) -> Option<Self> {
        let block_bytes = match dtype {
            GgmlDType::Q4_1 => 20,
            GgmlDType::Q8_0 => 34,
            _ => return None,
        };
        if !cols.is_multiple_of(QK) || bytes.len() != rows * cols / QK * block_bytes {
            return None;
        }
        let u16_at = |b: &[u8], at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
        if dtype == GgmlDType::Q8_0 && rows.is_multiple_of(GROUP) && repack {
            let bpr = cols / QK;
            let block = |r: usize, i: usize| &bytes[(r * bpr + i) * block_bytes..][..block_bytes];
            let mut groups = Vec::with_capacity(rows / GROUP * bpr);
            for g in 0..rows / GROUP {
                for i in 0..bpr {
                    let mut packed = Group16Q8_0 {
                        qs: [0; 512],
                        d: [0; 16],
                        sums: [0; 16],
                    };
                    for l in 0..GROUP {
                        let b = block(g * GROUP + l, i);
                        packed.d[l] = u16_at(b, 0);
                        let q = |j: usize| b[2 + j] as i8;
                        packed.sums[l] = (0..QK).map(|j| q(j) as i16).sum();
                        for u in 0..8 {
                            for c in 0..4 {
                                packed.qs[64 * u + 4 * l + c] = q(4 * u + c);
                            }
                        }
                    }
                    groups.push(packed);
                }
            }
            return Some(Self {
                rows,
                cols,
                blocks: Blocks::Q8_0x16(groups),
            });
        }
        if dtype == GgmlDType::Q4_1 && rows.is_multiple_of(GROUP) && repack {
            let bpr = cols / QK;
            let block = |r: usize, i: usize| &bytes[(r * bpr + i) * block_bytes..][..block_bytes];
            let mut groups = Vec::with_capacity(rows / GROUP * bpr);
            for g in 0..rows / GROUP {
                for i in 0..bpr {
                    let mut packed = Group16Q4_1 {
                        qs: [0; 256],
                        d: [0; 16],
                        m: [0; 16],
                    };
                    for l in 0..GROUP {
                        let b = block(g * GROUP + l, i);
                        packed.d[l] = u16_at(b, 0);
                        packed.m[l] = u16_at(b, 2);
                        for u in 0..4 {
                            packed.qs[64 * u + 4 * l..][..4].copy_from_slice(&b[4 + 4 * u..][..4]);
                        }
                    }
                    groups.push(packed);
                }
            }
            return Some(Self {
                rows,
                cols,
                blocks: Blocks::Q4_1x16(groups),
            });
        }
        let blocks = match dtype {
            GgmlDType::Q4_1 => Blocks::Q4_1(
                bytes
                    .chunks_exact(block_bytes)
                    .map(|b| BlockQ4_1 {
                        d: u16_at(b, 0),
                        m: u16_at(b, 2),
                        qs: b[4..20].try_into().expect("16 bytes"),
                    })
                    .collect(),
            ),
            _ => Blocks::Q8_0(
                bytes
                    .chunks_exact(block_bytes)
                    .map(|b| BlockQ8_0 {
                        d: u16_at(b, 0),
                        qs: std::array::from_fn(|j| b[2 + j] as i8),
                    })
                    .collect(),
            ),
        };
        Some(Self { rows, cols, blocks })
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    pub(crate) fn cols(&self) -> usize {
        self.cols
    }

    /// Dequantized row `r` (for tests).
    #[cfg(test)]
    fn row_f32(&self, r: usize) -> Vec<f32> {
        let bpr = self.cols / QK;
        let mut out = Vec::with_capacity(self.cols);
        for b in r * bpr..(r + 1) * bpr {
            match &self.blocks {
                Blocks::Q4_1(w) => {
                    let (d, m) = (f16_to_f32(w[b].d), f16_to_f32(w[b].m));
                    let mut block = [0f32; QK];
                    for j in 0..16 {
                        block[j] = (w[b].qs[j] & 0x0F) as f32 * d + m;
                        block[j + 16] = (w[b].qs[j] >> 4) as f32 * d + m;
                    }
                    out.extend_from_slice(&block);
                }
                Blocks::Q8_0(w) => {
                    out.extend(w[b].qs.iter().map(|&q| q as f32 * f16_to_f32(w[b].d)))
                }
                Blocks::Q8_0x16(groups) => {
                    let (g, l, i) = (r / GROUP, r % GROUP, b - r * bpr);
                    let p = &groups[g * bpr + i];
                    let d = f16_to_f32(p.d[l]);
                    out.extend((0..QK).map(|j| p.qs[64 * (j / 4) + 4 * l + j % 4] as f32 * d));
                }
                Blocks::Q4_1x16(groups) => {
                    let (g, l, i) = (r / GROUP, r % GROUP, b - r * bpr);
                    let p = &groups[g * bpr + i];
                    let (d, m) = (f16_to_f32(p.d[l]), f16_to_f32(p.m[l]));
                    let byte = |j: usize| p.qs[64 * (j / 4) + 4 * l + j % 4];
                    let mut block = [0f32; QK];
                    for j in 0..16 {
                        block[j] = (byte(j) & 0x0F) as f32 * d + m;
                        block[j + 16] = (byte(j) >> 4) as f32 * d + m;
                    }
                    out.extend_from_slice(&block);
                }
            }
        }
        out
    }

    /// The dot product of weight row `r` with a quantized activation row.
    fn dot(&self, r: usize, x: &Q8Row<'_>) -> f32 {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: `QuantMatrix::supported()` is checked before a matrix is built
            // for the kernels, so the CPU has AVX2 and FMA.
            unsafe {
                match &self.blocks {
                    Blocks::Q4_1(w) => dot1_q4_1_avx2(w, r, x),
                    Blocks::Q8_0(w) => dot1_q8_0_avx2(w, r, x),
                    Blocks::Q4_1x16(_) | Blocks::Q8_0x16(_) => {
                        unreachable!("repacked weights run in tiles")
                    }
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self.dot_scalar(r, x)
        }
    }

    /// The dot products of four consecutive weight rows from `r` (fewer at the end
    /// of the matrix; the extra lanes are not meaningful).
    fn dot4(&self, r: usize, x: &Q8Row<'_>) -> [f32; 4] {
        #[cfg(target_arch = "x86_64")]
        {
            let last = self.rows - 1;
            let rows = [r, (r + 1).min(last), (r + 2).min(last), (r + 3).min(last)];
            // SAFETY: as in `dot`.
            unsafe {
                match &self.blocks {
                    Blocks::Q4_1(w) => dot4_q4_1_avx2(w, rows, x),
                    Blocks::Q8_0(w) => dot4_q8_0_avx2(w, rows, x),
                    Blocks::Q4_1x16(_) | Blocks::Q8_0x16(_) => {
                        unreachable!("repacked weights run in tiles")
                    }
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            std::array::from_fn(|i| self.dot_scalar((r + i).min(self.rows - 1), x))
        }
    }

    /// Dot products of four weight rows from `r` with four activation rows:
    /// `out[i][k]` is activation row `i` with weight row `r + k` (clamped as in
    /// `dot4`). Each weight block is unpacked once for the four activation rows.
    fn dot4x4(&self, r: usize, xs: [&Q8Row<'_>; 4]) -> [[f32; 4]; 4] {
        #[cfg(target_arch = "x86_64")]
        {
            let last = self.rows - 1;
            let rows = [r, (r + 1).min(last), (r + 2).min(last), (r + 3).min(last)];
            // SAFETY: as in `dot`.
            unsafe {
                match &self.blocks {
                    Blocks::Q4_1(w) => dot4x4_q4_1_avx2(w, rows, xs),
                    Blocks::Q8_0(w) => xs.map(|x| dot4_q8_0_avx2(w, rows, x)),
                    Blocks::Q4_1x16(_) | Blocks::Q8_0x16(_) => {
                        unreachable!("repacked weights run in tiles")
                    }
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            xs.map(|x| self.dot4(r, x))
        }
    }

    #[cfg_attr(all(target_arch = "x86_64", not(test)), allow(dead_code))]
    #[allow(clippy::needless_range_loop)] // Indices mirror ggml's reference loops.
    fn dot_scalar(&self, r: usize, x: &Q8Row<'_>) -> f32 {
        let bpr = self.cols / QK;
        let mut sum = 0f32;
        for (i, b) in (r * bpr..(r + 1) * bpr).enumerate() {
            let mut sumi = 0i32;
            match &self.blocks {
                Blocks::Q4_1(w) => {
                    for j in 0..16 {
                        sumi += (w[b].qs[j] & 0x0F) as i32 * x.qs[i][j] as i32;
                        sumi += (w[b].qs[j] >> 4) as i32 * x.qs[i][j + 16] as i32;
                    }
                    sum += f16_to_f32(w[b].d) * x.d[i] * sumi as f32 + f16_to_f32(w[b].m) * x.s[i];
                }
                Blocks::Q8_0(w) => {
                    for j in 0..QK {
                        sumi += w[b].qs[j] as i32 * x.qs[i][j] as i32;
                    }
                    sum += f16_to_f32(w[b].d) * x.d[i] * sumi as f32;
                }
                Blocks::Q8_0x16(groups) => {
                    let (g, l) = (r / GROUP, r % GROUP);
                    let p = &groups[g * bpr + i];
                    for j in 0..QK {
                        sumi += p.qs[64 * (j / 4) + 4 * l + j % 4] as i32 * x.qs[i][j] as i32;
                    }
                    sum += f16_to_f32(p.d[l]) * x.d[i] * sumi as f32;
                }
                Blocks::Q4_1x16(groups) => {
                    let (g, l) = (r / GROUP, r % GROUP);
                    let p = &groups[g * bpr + i];
                    for j in 0..16 {
                        let byte = p.qs[64 * (j / 4) + 4 * l + j % 4];
                        sumi += (byte & 0x0F) as i32 * x.qs[i][j] as i32;
                        sumi += (byte >> 4) as i32 * x.qs[i][j + 16] as i32;
                    }
                    sum += f16_to_f32(p.d[l]) * x.d[i] * sumi as f32 + f16_to_f32(p.m[l]) * x.s[i];
                }
            }
        }
        sum
    }
}

/// Activation rows quantized per block of 32 (ggml's Q8_1; Q8_0 is the same
/// without `s`): row `j`'s block `i` at index `j * bpr + i` of each vector, so a
/// kernel walks several rows with one base pointer and a stride.
struct Q8Rows {
    bpr: usize,
    d: Vec<f32>,
    s: Vec<f32>,
    qs: Vec<[i8; QK]>,
}

/// One row of [`Q8Rows`].
#[derive(Clone, Copy)]
struct Q8Row<'a> {
    d: &'a [f32],
    s: &'a [f32],
    qs: &'a [[i8; QK]],
}

impl Q8Rows {
    fn len(&self) -> usize {
        self.d.len() / self.bpr.max(1)
    }

    fn row(&self, j: usize) -> Q8Row<'_> {
        let at = j * self.bpr..(j + 1) * self.bpr;
        Q8Row {
            d: &self.d[at.clone()],
            s: &self.s[at.clone()],
            qs: &self.qs[at],
        }
    }

    /// What a tile of `mr` rows from `first` reads, against a group run of
    /// `blocks` blocks, writing `out` rows: pointers to row `first`'s quants,
    /// scales and sums, where row `first + j`'s block `i` is at offset
    /// `j * bpr + i`. Panics where the tile would read or write out of bounds.
    fn tile_start(
        &self,
        first: usize,
        mr: usize,
        blocks: usize,
        out: usize,
    ) -> (*const [i8; QK], *const f32, *const f32) {
        assert!(mr <= out && blocks == self.bpr && (first + mr) * self.bpr <= self.d.len());
        let at = first * self.bpr;
        (
            self.qs[at..].as_ptr(),
            self.d[at..].as_ptr(),
            self.s[at..].as_ptr(),
        )
    }
}

/// Quantizes `x` (rows of `k` values), rows in parallel when there are several.
fn quantize_rows(x: &[f32], k: usize) -> Q8Rows {
    let bpr = k / QK;
    let blocks = x.len() / QK;
    let mut rows = Q8Rows {
        bpr,
        d: vec![0.0; blocks],
        s: vec![0.0; blocks],
        qs: vec![[0; QK]; blocks],
    };
    /// One row's values, and its scales, sums and quants to fill.
    type RowOut<'a> = (
        ((&'a [f32], &'a mut [f32]), &'a mut [f32]),
        &'a mut [[i8; QK]],
    );
    #[cfg(target_arch = "x86_64")]
    let avx2 = std::arch::is_x86_feature_detected!("avx2");
    let quantize = |(((x, d), s), qs): RowOut<'_>| {
        for (((block, d), s), qs) in x.chunks_exact(QK).zip(d).zip(s).zip(qs) {
            let block: &[f32; QK] = block.try_into().expect("32 values");
            #[cfg(target_arch = "x86_64")]
            let (scale, sum, q) = if avx2 {
                // SAFETY: the CPU has AVX2, just checked.
                unsafe { quantize_block_avx2(block) }
            } else {
                quantize_block(block)
            };
            #[cfg(not(target_arch = "x86_64"))]
            let (scale, sum, q) = quantize_block(block);
            *d = f16::from_f32(scale).to_f32();
            *s = f16::from_f32(sum as f32 * scale).to_f32();
            *qs = q;
        }
    };
    if x.len() > k {
        x.par_chunks(k)
            .zip(rows.d.par_chunks_mut(bpr))
            .zip(rows.s.par_chunks_mut(bpr))
            .zip(rows.qs.par_chunks_mut(bpr))
            .for_each(quantize);
    } else {
        quantize((((x, &mut rows.d[..]), &mut rows.s[..]), &mut rows.qs[..]));
    }
    rows
}

/// One block of 32 activations as `(d, Σq, q)`: `d = amax / 127` and `q = x / d`
/// rounded to nearest, ties away from zero. (Ties to even, as one of ggml's SIMD
/// paths rounds, is not a detail here: it lowered top-1 agreement with llama.cpp on
/// the reference text from 254 to 252 of 258 positions and changed a greedy
/// continuation at a confident step.)
#[cfg_attr(all(target_arch = "x86_64", not(test)), allow(dead_code))]
fn quantize_block(block: &[f32; QK]) -> (f32, i32, [i8; QK]) {
    let amax = block.iter().fold(0f32, |a, &v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let q: [i8; QK] = std::array::from_fn(|j| (block[j] * id).round() as i8);
    (d, q.iter().map(|&v| v as i32).sum(), q)
}

/// [`quantize_block`] with AVX2: the same arithmetic, so the same bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn quantize_block_avx2(block: &[f32; QK]) -> (f32, i32, [i8; QK]) {
    use std::arch::x86_64::*;
    // SAFETY: `block` is 32 floats, read as four unaligned vectors of eight.
    let v: [__m256; 4] = std::array::from_fn(|i| _mm256_loadu_ps(block.as_ptr().add(8 * i)));
    let sign = _mm256_set1_ps(-0.0);
    let abs = v.map(|v| _mm256_andnot_ps(sign, v));
    let m = _mm256_max_ps(_mm256_max_ps(abs[0], abs[1]), _mm256_max_ps(abs[2], abs[3]));
    let m = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    let amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
    let d = amax / 127.0;
    let id = _mm256_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
    // Ties away from zero: truncate x + copysign(0.5 - 2^-25, x), exact for every
    // f32 (a half lands on the next integer, anything below it does not).
    let below_half = _mm256_set1_ps(0.499_999_97);
    let q = v.map(|v| {
        let x = _mm256_mul_ps(v, id);
        let nudge = _mm256_or_ps(below_half, _mm256_and_ps(x, sign));
        _mm256_cvtps_epi32(_mm256_round_ps(
            _mm256_add_ps(x, nudge),
            _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC,
        ))
    });
    let sum = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
    let sum = _mm_add_epi32(
        _mm256_extracti128_si256(sum, 1),
        _mm256_castsi256_si128(sum),
    );
    let sum = _mm_add_epi32(sum, _mm_shuffle_epi32(sum, 0b01_00_11_10));
    let sum = _mm_add_epi32(sum, _mm_shuffle_epi32(sum, 0b10_11_00_01));
    // Packing works within 128-bit lanes: i32 -> i16 -> i8 leaves the eight groups
    // of four in the order 0 2 4 6 1 3 5 7; the permute puts them back.
    let q16 = [
        _mm256_packs_epi32(q[0], q[1]),
        _mm256_packs_epi32(q[2], q[3]),
    ];
    let q8 = _mm256_packs_epi16(q16[0], q16[1]);
    let q8 = _mm256_permutevar8x32_epi32(q8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    let mut out = [0i8; QK];
    _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, q8);
    (d, _mm_cvtsi128_si32(sum), out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn hsum(acc: std::arch::x86_64::__m256) -> f32 {
    use std::arch::x86_64::*;
    let s = _mm_add_ps(_mm256_extractf128_ps(acc, 1), _mm256_castps256_ps128(acc));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot4_q4_1_avx2(w: &[BlockQ4_1], rows: [usize; 4], x: &Q8Row<'_>) -> [f32; 4] {
    use std::arch::x86_64::*;
    let bpr = x.d.len();
    let base = rows.map(|r| r * bpr);
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut mins = [0f32; 4];
    let low_mask = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    for i in 0..bpr {
        // SAFETY: `x.qs[i]` is 32 bytes and each `qs` below 16; the loads are unaligned.
        let qx = _mm256_loadu_si256(x.qs[i].as_ptr() as *const __m256i);
        let (dx, sx) = (x.d[i], x.s[i]);
        for k in 0..4 {
            let b = &w[base[k] + i];
            mins[k] += f16_to_f32(b.m) * sx;
            let packed = _mm_loadu_si128(b.qs.as_ptr() as *const __m128i);
            let qw = _mm256_and_si256(
                _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed),
                low_mask,
            );
            let sums = _mm256_madd_epi16(_mm256_maddubs_epi16(qw, qx), ones);
            acc[k] = _mm256_fmadd_ps(
                _mm256_set1_ps(f16_to_f32(b.d) * dx),
                _mm256_cvtepi32_ps(sums),
                acc[k],
            );
        }
    }
    std::array::from_fn(|k| hsum(acc[k]) + mins[k])
}

/// One weight row with one activation row (the decode case): the row's blocks
/// are read once, in order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot1_q4_1_avx2(w: &[BlockQ4_1], row: usize, x: &Q8Row<'_>) -> f32 {
    use std::arch::x86_64::*;
    let bpr = x.d.len();
    let blocks = &w[row * bpr..(row + 1) * bpr];
    let mut acc = _mm256_setzero_ps();
    let mut mins = 0f32;
    let low_mask = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    for (b, ((qs, &dx), &sx)) in blocks.iter().zip(x.qs.iter().zip(x.d).zip(x.s)) {
        // SAFETY: each `qs` is 16 bytes and each activation block 32; unaligned loads.
        let qx = _mm256_loadu_si256(qs.as_ptr() as *const __m256i);
        mins += f16_to_f32(b.m) * sx;
        let packed = _mm_loadu_si128(b.qs.as_ptr() as *const __m128i);
        let qw = _mm256_and_si256(
            _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed),
            low_mask,
        );
        let sums = _mm256_madd_epi16(_mm256_maddubs_epi16(qw, qx), ones);
        acc = _mm256_fmadd_ps(
            _mm256_set1_ps(f16_to_f32(b.d) * dx),
            _mm256_cvtepi32_ps(sums),
            acc,
        );
    }
    hsum(acc) + mins
}

/// [`dot1_q4_1_avx2`] for Q8_0 weights.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot1_q8_0_avx2(w: &[BlockQ8_0], row: usize, x: &Q8Row<'_>) -> f32 {
    use std::arch::x86_64::*;
    let bpr = x.d.len();
    let blocks = &w[row * bpr..(row + 1) * bpr];
    let mut acc = _mm256_setzero_ps();
    let ones = _mm256_set1_epi16(1);
    for (b, (qs, &dx)) in blocks.iter().zip(x.qs.iter().zip(x.d)) {
        // SAFETY: both operands are 32 bytes; the loads are unaligned.
        let qx = _mm256_loadu_si256(qs.as_ptr() as *const __m256i);
        let qw = _mm256_loadu_si256(b.qs.as_ptr() as *const __m256i);
        // maddubs multiplies unsigned by signed bytes: move w's sign onto x.
        let prod = _mm256_maddubs_epi16(_mm256_sign_epi8(qw, qw), _mm256_sign_epi8(qx, qw));
        let sums = _mm256_madd_epi16(prod, ones);
        acc = _mm256_fmadd_ps(
            _mm256_set1_ps(f16_to_f32(b.d) * dx),
            _mm256_cvtepi32_ps(sums),
            acc,
        );
    }
    hsum(acc)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot4x4_q4_1_avx2(
    w: &[BlockQ4_1],
    rows: [usize; 4],
    xs: [&Q8Row<'_>; 4],
) -> [[f32; 4]; 4] {
    use std::arch::x86_64::*;
    let bpr = xs[0].d.len();
    let base = rows.map(|r| r * bpr);
    let mut acc = [[_mm256_setzero_ps(); 4]; 4];
    let mut mins = [[0f32; 4]; 4];
    let low_mask = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    for i in 0..bpr {
        // SAFETY: each `qs` is 16 bytes and each activation block 32; unaligned loads.
        let qx = xs.map(|x| _mm256_loadu_si256(x.qs[i].as_ptr() as *const __m256i));
        for k in 0..4 {
            let b = &w[base[k] + i];
            let (d, m) = (f16_to_f32(b.d), f16_to_f32(b.m));
            let packed = _mm_loadu_si128(b.qs.as_ptr() as *const __m128i);
            let qw = _mm256_and_si256(
                _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed),
                low_mask,
            );
            for j in 0..4 {
                mins[j][k] += m * xs[j].s[i];
                let sums = _mm256_madd_epi16(_mm256_maddubs_epi16(qw, qx[j]), ones);
                acc[j][k] = _mm256_fmadd_ps(
                    _mm256_set1_ps(d * xs[j].d[i]),
                    _mm256_cvtepi32_ps(sums),
                    acc[j][k],
                );
            }
        }
    }
    std::array::from_fn(|j| std::array::from_fn(|k| hsum(acc[j][k]) + mins[j][k]))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot4_q8_0_avx2(w: &[BlockQ8_0], rows: [usize; 4], x: &Q8Row<'_>) -> [f32; 4] {
    use std::arch::x86_64::*;
    let bpr = x.d.len();
    let base = rows.map(|r| r * bpr);
    let mut acc = [_mm256_setzero_ps(); 4];
    let ones = _mm256_set1_epi16(1);
    for i in 0..bpr {
        // SAFETY: both operands are 32 bytes; the loads are unaligned.
        let qx = _mm256_loadu_si256(x.qs[i].as_ptr() as *const __m256i);
        let dx = x.d[i];
        for k in 0..4 {
            let b = &w[base[k] + i];
            let qw = _mm256_loadu_si256(b.qs.as_ptr() as *const __m256i);
            // maddubs multiplies unsigned by signed bytes: move w's sign onto x.
            let prod = _mm256_maddubs_epi16(_mm256_sign_epi8(qw, qw), _mm256_sign_epi8(qx, qw));
            let sums = _mm256_madd_epi16(prod, ones);
            acc[k] = _mm256_fmadd_ps(
                _mm256_set1_ps(f16_to_f32(b.d) * dx),
                _mm256_cvtepi32_ps(sums),
                acc[k],
            );
        }
    }
    std::array::from_fn(|k| hsum(acc[k]))
}

/// Sixteen repacked Q4_1 weight rows (`groups`: their `bpr` blocks) against `MR`
/// activation rows from `first`: `out[j][l]` is activation row `first + j` with
/// weight row `l`. Per block, the nibbles are unpacked once for all `MR` rows, and
/// each activation row costs eight `vpdpbusd`, one conversion and three
/// multiply-adds for 512 products.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn tile_q4_1_vnni<const MR: usize>(
    groups: &[Group16Q4_1],
    xs: &Q8Rows,
    first: usize,
    out: &mut [[f32; GROUP]],
) {
    use std::arch::x86_64::*;
    let bpr = xs.bpr;
    let (qp, dp, sp) = xs.tile_start(first, MR, groups.len(), out.len());
    let mut acc = [_mm512_setzero_ps(); MR];
    let low_mask = _mm512_set1_epi8(0x0F);
    for (i, b) in groups.iter().enumerate() {
        // SAFETY: `Group16Q4_1` is 64-byte aligned with `qs` first (256 bytes) and
        // `d`, `m` 32 bytes each. The activation offsets are below `MR * bpr`, in
        // bounds by `tile_start`'s assert; their blocks are 32 bytes read as eight i32.
        let dw = _mm512_cvtph_ps(_mm256_loadu_si256(b.d.as_ptr() as *const __m256i));
        let mw = _mm512_cvtph_ps(_mm256_loadu_si256(b.m.as_ptr() as *const __m256i));
        let mut wq = [_mm512_setzero_si512(); 8];
        for u in 0..4 {
            let packed = _mm512_load_si512(b.qs.as_ptr().add(64 * u) as *const __m512i);
            wq[u] = _mm512_and_si512(packed, low_mask);
            wq[u + 4] = _mm512_and_si512(_mm512_srli_epi16(packed, 4), low_mask);
        }
        for (j, acc) in acc.iter_mut().enumerate() {
            let off = j * bpr + i;
            let xq = qp.add(off) as *const i32;
            // Elements 4t..4t+4 of the block for t < 4 (low nibbles) and
            // 16+4(t-4).. for t >= 4 (high nibbles): activation bytes 4t..4t+4 either way.
            let mut sums = _mm512_setzero_si512();
            for (t, &w) in wq.iter().enumerate() {
                sums = _mm512_dpbusd_epi32(sums, w, _mm512_set1_epi32(xq.add(t).read_unaligned()));
            }
            let scaled = _mm512_mul_ps(_mm512_cvtepi32_ps(sums), _mm512_set1_ps(*dp.add(off)));
            *acc = _mm512_fmadd_ps(scaled, dw, *acc);
            *acc = _mm512_fmadd_ps(mw, _mm512_set1_ps(*sp.add(off)), *acc);
        }
    }
    for (o, acc) in out.iter_mut().zip(acc) {
        _mm512_storeu_ps(o.as_mut_ptr(), acc);
    }
}

/// [`tile_q4_1_vnni`] in AVX2, eight weight rows (one half of each 64-byte load)
/// at a time. `vpmaddubsw` multiplies the nibbles by four broadcast activation
/// bytes and adds pairs into i16; the block's eight such products are summed in
/// i16 (at most 8 · 2 · 15 · 127 = 30,480, so nothing saturates) and `vpmaddwd`
/// finishes the sums in i32. The integer sums are thus exactly the VNNI tile's,
/// and the float steps after them are the same, so both tiles give the same bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_q4_1_avx2<const MR: usize>(
    groups: &[Group16Q4_1],
    xs: &Q8Rows,
    first: usize,
    out: &mut [[f32; GROUP]],
) {
    use std::arch::x86_64::*;
    let bpr = xs.bpr;
    let (qp, dp, sp) = xs.tile_start(first, MR, groups.len(), out.len());
    let low_mask = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    for half in 0..2 {
        let mut acc = [_mm256_setzero_ps(); MR];
        for (i, b) in groups.iter().enumerate() {
            // SAFETY: as in `tile_q4_1_vnni`; each 64-byte run of `qs` is 64-byte
            // aligned, so its halves are 32-byte aligned, and `d`, `m` hold 16 f16
            // of which eight are read from `8 * half`.
            let dw = _mm256_cvtph_ps(_mm_loadu_si128(b.d.as_ptr().add(8 * half) as *const __m128i));
            let mw = _mm256_cvtph_ps(_mm_loadu_si128(b.m.as_ptr().add(8 * half) as *const __m128i));
            let mut sums = [_mm256_setzero_si256(); MR];
            for u in 0..4 {
                let packed =
                    _mm256_load_si256(b.qs.as_ptr().add(64 * u + 32 * half) as *const __m256i);
                let lo = _mm256_and_si256(packed, low_mask);
                let hi = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low_mask);
                for (j, sums) in sums.iter_mut().enumerate() {
                    // Low nibbles of bytes 4u.. are elements 4u.., high ones 16 + 4u...
                    let xq = qp.add(j * bpr + i) as *const i32;
                    let xl = _mm256_set1_epi32(xq.add(u).read_unaligned());
                    let xh = _mm256_set1_epi32(xq.add(u + 4).read_unaligned());
                    *sums = _mm256_add_epi16(*sums, _mm256_maddubs_epi16(lo, xl));
                    *sums = _mm256_add_epi16(*sums, _mm256_maddubs_epi16(hi, xh));
                }
            }
            for (j, (acc, sums)) in acc.iter_mut().zip(sums).enumerate() {
                let off = j * bpr + i;
                let sums = _mm256_madd_epi16(sums, ones);
                let scaled = _mm256_mul_ps(_mm256_cvtepi32_ps(sums), _mm256_set1_ps(*dp.add(off)));
                *acc = _mm256_fmadd_ps(scaled, dw, *acc);
                *acc = _mm256_fmadd_ps(mw, _mm256_set1_ps(*sp.add(off)), *acc);
            }
        }
        for (o, acc) in out.iter_mut().zip(acc) {
            _mm256_storeu_ps(o.as_mut_ptr().add(8 * half), acc);
        }
    }
}

/// A tile: sixteen repacked weight rows against `take` activation rows from
/// `first`, written to `out[..take]`.
type Tile<G> = unsafe fn(&[G], &Q8Rows, usize, &mut [[f32; GROUP]]);

/// Picks the `$tile::<take>` instance for `take` activation rows (1 to `$mr`).
#[cfg(target_arch = "x86_64")]
macro_rules! tile_for {
    ($take:expr, $tile:ident, 8) => {
        match $take {
            8 => $tile::<8> as _,
            7 => $tile::<7> as _,
            6 => $tile::<6> as _,
            5 => $tile::<5> as _,
            other => tile_for!(other, $tile, 4),
        }
    };
    ($take:expr, $tile:ident, 4) => {
        match $take {
            4 => $tile::<4> as _,
            3 => $tile::<3> as _,
            2 => $tile::<2> as _,
            _ => $tile::<1> as _,
        }
    };
}

/// A group of sixteen repacked weight rows, and the tiles that read it.
trait Tiled: Sized + Sync {
    /// The tile of `isa` (AVX2 or AVX-512; both give the same bits) for `take`
    /// activation rows, 1 to [`tile_rows`]`(isa)`.
    fn tile(isa: Isa, take: usize) -> Tile<Self>;
}

impl Tiled for Group16Q4_1 {
    fn tile(isa: Isa, take: usize) -> Tile<Self> {
        #[cfg(target_arch = "x86_64")]
        return if isa >= Isa::Avx512 {
            tile_for!(take, tile_q4_1_vnni, 8)
        } else {
            tile_for!(take, tile_q4_1_avx2, 4)
        };
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("repacked weights exist only on x86_64 ({isa:?}, {take})")
    }
}

impl Tiled for Group16Q8_0 {
    fn tile(isa: Isa, take: usize) -> Tile<Self> {
        #[cfg(target_arch = "x86_64")]
        return if isa >= Isa::Avx512 {
            tile_for!(take, tile_q8_0_vnni, 8)
        } else {
            tile_for!(take, tile_q8_0_avx2, 4)
        };
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("repacked weights exist only on x86_64 ({isa:?}, {take})")
    }
}

/// `x Wᵀ` for weights repacked in groups of sixteen rows, with the tiles `isa`
/// names: each task takes four groups (64 weight rows) and runs every
/// activation row against them, [`tile_rows`] at a time.
fn matmul_tiled<G: Tiled>(groups: &[G], rows: &Q8Rows, n: usize, isa: Isa) -> Vec<f32> {
    let mr = tile_rows(isa);
    let (m, bpr) = (rows.len(), rows.bpr);
    by_bands(m, n, |r0, r1, band| {
        let width = r1 - r0;
        let mut out = [[0f32; GROUP]; 8];
        for g in r0 / GROUP..r1 / GROUP {
            let blocks = &groups[g * bpr..(g + 1) * bpr];
            for i0 in (0..m).step_by(mr) {
                let take = (m - i0).min(mr);
                // SAFETY: `tile_rows` checked that this CPU has `isa`'s instructions.
                unsafe { G::tile(isa, take)(blocks, rows, i0, &mut out) };
                let col = g * GROUP - r0;
                for (j, dots) in out.iter().take(take).enumerate() {
                    band[(i0 + j) * width + col..][..GROUP].copy_from_slice(dots);
                }
            }
        }
    })
}

/// Activation rows per tile: sixteen AVX2 registers hold four rows' sums beside
/// the weights, thirty-two AVX-512 ones eight.
fn tile_rows(isa: Isa) -> usize {
    assert!(
        isa >= Isa::Avx2 && isa <= Isa::detected(),
        "no tile for {isa:?} here"
    );
    if isa >= Isa::Avx512 {
        8
    } else {
        4
    }
}

/// Sixteen repacked Q8_0 weight rows against `MR` activation rows from `first`,
/// as [`tile_q4_1_vnni`]: `vpdpbusd` of the activations plus 128 (unsigned) with
/// the weights, less `128 · Σw`, is the exact integer dot product.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn tile_q8_0_vnni<const MR: usize>(
    groups: &[Group16Q8_0],
    xs: &Q8Rows,
    first: usize,
    out: &mut [[f32; GROUP]],
) {
    use std::arch::x86_64::*;
    let bpr = xs.bpr;
    let (qp, dp, _) = xs.tile_start(first, MR, groups.len(), out.len());
    let mut acc = [_mm512_setzero_ps(); MR];
    let flip = _mm512_set1_epi8(-128);
    for (i, b) in groups.iter().enumerate() {
        // SAFETY: `Group16Q8_0` is 64-byte aligned with `qs` first (512 bytes),
        // then `d` and `sums` (32 bytes each). Activation offsets as in
        // `tile_q4_1_vnni`.
        let dw = _mm512_cvtph_ps(_mm256_loadu_si256(b.d.as_ptr() as *const __m256i));
        let offset = _mm512_slli_epi32(
            _mm512_cvtepi16_epi32(_mm256_loadu_si256(b.sums.as_ptr() as *const __m256i)),
            7,
        );
        let wq: [__m512i; 8] =
            std::array::from_fn(|u| _mm512_load_si512(b.qs.as_ptr().add(64 * u) as *const __m512i));
        for (j, acc) in acc.iter_mut().enumerate() {
            let off = j * bpr + i;
            let xq = qp.add(off) as *const i32;
            let mut sums = _mm512_setzero_si512();
            for (u, &w) in wq.iter().enumerate() {
                // x + 128 as unsigned bytes: the sign bit flipped.
                let x = _mm512_xor_si512(_mm512_set1_epi32(xq.add(u).read_unaligned()), flip);
                sums = _mm512_dpbusd_epi32(sums, x, w);
            }
            let sums = _mm512_sub_epi32(sums, offset);
            let scaled = _mm512_mul_ps(_mm512_cvtepi32_ps(sums), _mm512_set1_ps(*dp.add(off)));
            *acc = _mm512_fmadd_ps(scaled, dw, *acc);
        }
    }
    for (o, acc) in out.iter_mut().zip(acc) {
        _mm512_storeu_ps(o.as_mut_ptr(), acc);
    }
}

/// [`tile_q8_0_vnni`] in AVX2, eight weight rows at a time: `vpmaddubsw` of the
/// weights' magnitudes with the activations carrying the weights' signs (at most
/// 2 · 128 · 127 = 32,512 a pair, so nothing saturates), `vpmaddwd` into i32.
/// The same integer sums as the VNNI tile and the same float steps: the same bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_q8_0_avx2<const MR: usize>(
    groups: &[Group16Q8_0],
    xs: &Q8Rows,
    first: usize,
    out: &mut [[f32; GROUP]],
) {
    use std::arch::x86_64::*;
    let bpr = xs.bpr;
    let (qp, dp, _) = xs.tile_start(first, MR, groups.len(), out.len());
    let ones = _mm256_set1_epi16(1);
    for half in 0..2 {
        let mut acc = [_mm256_setzero_ps(); MR];
        for (i, b) in groups.iter().enumerate() {
            // SAFETY: as in `tile_q8_0_vnni`; each 64-byte run's halves are
            // 32-byte aligned, and eight of the sixteen scales are read.
            let dw = _mm256_cvtph_ps(_mm_loadu_si128(b.d.as_ptr().add(8 * half) as *const __m128i));
            let mut sums = [_mm256_setzero_si256(); MR];
            for u in 0..8 {
                let w = _mm256_load_si256(b.qs.as_ptr().add(64 * u + 32 * half) as *const __m256i);
                let magnitude = _mm256_abs_epi8(w);
                for (j, sums) in sums.iter_mut().enumerate() {
                    let xq = qp.add(j * bpr + i) as *const i32;
                    let x = _mm256_sign_epi8(_mm256_set1_epi32(xq.add(u).read_unaligned()), w);
                    let pairs = _mm256_maddubs_epi16(magnitude, x);
                    *sums = _mm256_add_epi32(*sums, _mm256_madd_epi16(pairs, ones));
                }
            }
            for (j, (acc, sums)) in acc.iter_mut().zip(sums).enumerate() {
                let off = j * bpr + i;
                let scaled = _mm256_mul_ps(_mm256_cvtepi32_ps(sums), _mm256_set1_ps(*dp.add(off)));
                *acc = _mm256_fmadd_ps(scaled, dw, *acc);
            }
        }
        for (o, acc) in out.iter_mut().zip(acc) {
            _mm256_storeu_ps(o.as_mut_ptr().add(8 * half), acc);
        }
    }
}

/// The `m` × `n` product computed in parallel by bands of [`ROWS_PER_TASK`] weight
/// rows, so a task reads its weight rows from memory once for every activation row:
/// `fill(r0, r1, band)` writes outputs `r0..r1` of each activation row `i` at
/// `band[i * (r1 - r0)..]`, and the bands are then laid side by side.
fn by_bands(m: usize, n: usize, fill: impl Fn(usize, usize, &mut [f32]) + Sync) -> Vec<f32> {
    let mut out = vec![0f32; m * n];
    if m == 0 {
        return out;
    }
    let bands: Vec<Vec<f32>> = (0..n.div_ceil(ROWS_PER_TASK))
        .into_par_iter()
        .map(|t| {
            let r0 = t * ROWS_PER_TASK;
            let r1 = (r0 + ROWS_PER_TASK).min(n);
            let mut band = vec![0f32; m * (r1 - r0)];
            fill(r0, r1, &mut band);
            band
        })
        .collect();
    for (t, band) in bands.iter().enumerate() {
        let r0 = t * ROWS_PER_TASK;
        let width = band.len() / m;
        for i in 0..m {
            out[i * n + r0..][..width].copy_from_slice(&band[i * width..][..width]);
        }
    }
    out
}

/// `x Wᵀ` for x of shape (…, cols): a candle op without backward (serving only).
pub(crate) struct QuantMatMul(pub(crate) Arc<QuantMatrix>);

/// Output rows handled by one task.
const ROWS_PER_TASK: usize = 64;

impl CustomOp1 for QuantMatMul {
    fn name(&self) -> &'static str {
        "basis-quant-matmul"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let w = &*self.0;
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("quantized matmul expects f32 activations");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("quantized matmul expects contiguous activations");
        };
        let x = &data[start..end];
        let dims = layout.shape().dims();
        let k = *dims.last().unwrap_or(&0);
        if k != w.cols {
            candle_core::bail!(
                "quantized matmul: activations have {k} columns, weights {}",
                w.cols
            );
        }
        let n = w.rows;
        let rows = quantize_rows(x, k);
        let out = match &w.blocks {
            Blocks::Q4_1x16(groups) => matmul_tiled(groups, &rows, n, Isa::active()),
            Blocks::Q8_0x16(groups) => matmul_tiled(groups, &rows, n, Isa::active()),
            _ => w.matmul_rows(&rows, n),
        };
        let mut out_dims = dims.to_vec();
        *out_dims.last_mut().expect("at least one dim") = n;
        Ok((CpuStorage::F32(out), Shape::from(out_dims)))
    }
}

impl QuantMatrix {
    /// `x Wᵀ` for GGML's own block layouts (AVX2).
    fn matmul_rows(&self, rows: &Q8Rows, n: usize) -> Vec<f32> {
        let w = self;
        let m = rows.len();
        let rows: Vec<Q8Row<'_>> = (0..m).map(|j| rows.row(j)).collect();
        if m == 1 {
            let mut out = vec![0f32; n];
            // One weight row per kernel call, read once in order. (The decode
            // once called the four-row kernel with one row four times and kept
            // one result: 2.7x slower as soon as the kernel stopped being
            // inlined, where LLVM had merged the four identical lanes.)
            out.par_chunks_mut(ROWS_PER_TASK)
                .enumerate()
                .for_each(|(t, chunk)| {
                    for (j, o) in chunk.iter_mut().enumerate() {
                        *o = w.dot(t * ROWS_PER_TASK + j, &rows[0]);
                    }
                });
            return out;
        }
        by_bands(m, n, |r0, r1, band| {
            let width = r1 - r0;
            for r in (r0..r1).step_by(4) {
                let take = (r1 - r).min(4);
                let mut put = |i: usize, dots: &[f32; 4]| {
                    band[i * width + (r - r0)..i * width + (r - r0) + take]
                        .copy_from_slice(&dots[..take]);
                };
                let mut i = 0;
                while i + 4 <= m {
                    let tile = w.dot4x4(r, [&rows[i], &rows[i + 1], &rows[i + 2], &rows[i + 3]]);
                    for (j, dots) in tile.iter().enumerate() {
                        put(i + j, dots);
                    }
                    i += 4;
                }
                for (i, row) in rows.iter().enumerate().skip(i) {
                    put(i, &w.dot4(r, row));
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: u32) -> impl FnMut() -> u32 {
        let mut state = seed;
        move || {
            state = state.wrapping_mul(1664525).wrapping_add(1013904223);
            state
        }
    }

    fn random_blocks(dtype: GgmlDType, rows: usize, cols: usize, seed: u32) -> Vec<u8> {
        let mut next = lcg(seed);
        let mut bytes = Vec::new();
        for _ in 0..rows * cols / QK {
            bytes.extend(f16::from_f32((next() % 1000) as f32 / 40_000.0).to_le_bytes());
            if dtype == GgmlDType::Q4_1 {
                bytes.extend(f16::from_f32(-((next() % 1000) as f32) / 3_000.0).to_le_bytes());
            }
            let quants = if dtype == GgmlDType::Q4_1 { 16 } else { 32 };
            for _ in 0..quants {
                bytes.push((next() >> 8) as u8);
            }
        }
        bytes
    }

    #[test]
    fn simd_matches_scalar_and_dequantized_reference() {
        let (rows, cols) = (70, 128);
        let x: Vec<f32> = (0..cols)
            .map(|i| ((i * 37 % 17) as f32 - 8.0) / 7.0)
            .collect();
        let q = quantize_rows(&x, cols);
        let q = q.row(0);
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
            let w = QuantMatrix::from_ggml(dtype, &random_blocks(dtype, rows, cols, 7), rows, cols)
                .unwrap();
            for r in 0..rows {
                let simd = w.dot(r, &q);
                let scalar = w.dot_scalar(r, &q);
                assert!(
                    (simd - scalar).abs() <= 1e-4 * scalar.abs().max(1.0),
                    "{dtype:?} row {r}: {simd} vs {scalar}"
                );
                // Against the exact f32 product: only the activation quantization differs.
                let exact: f32 = w.row_f32(r).iter().zip(&x).map(|(a, b)| a * b).sum();
                assert!(
                    (simd - exact).abs() < 0.05 * exact.abs().max(1.0),
                    "{dtype:?} row {r}: {simd} vs {exact}"
                );
            }
        }
    }

    #[test]
    #[allow(clippy::needless_range_loop)]
    fn op_matches_row_dots_for_batches() {
        let (rows, cols) = (130, 64);
        let w = Arc::new(
            QuantMatrix::from_ggml(
                GgmlDType::Q4_1,
                &random_blocks(GgmlDType::Q4_1, rows, cols, 3),
                rows,
                cols,
            )
            .unwrap(),
        );
        let x: Vec<f32> = (0..3 * cols)
            .map(|i| ((i * 13 % 29) as f32 - 14.0) / 9.0)
            .collect();
        let t = candle_core::Tensor::from_vec(x.clone(), (1, 3, cols), &candle_core::Device::Cpu)
            .unwrap();
        let y = t.apply_op1_no_bwd(&QuantMatMul(w.clone())).unwrap();
        assert_eq!(y.dims(), &[1, 3, rows]);
        let y: Vec<Vec<f32>> = y.squeeze(0).unwrap().to_vec2().unwrap();
        for i in 0..3 {
            let q = quantize_rows(&x[i * cols..(i + 1) * cols], cols);
            let q = q.row(0);
            for r in 0..rows {
                assert_eq!(y[i][r], w.dot(r, &q));
            }
        }
    }

    #[test]
    fn simd_quantization_equals_scalar() {
        let mut next = lcg(11);
        let mut blocks: Vec<[f32; QK]> = (0..200)
            .map(|_| std::array::from_fn(|_| ((next() >> 8) % 20_001) as f32 / 1000.0 - 10.0))
            .collect();
        blocks.push([0.0; QK]);
        // Halves from -126.5 to 126.5 and their float neighbours.
        for k in -127..127 {
            let half = k as f32 + 0.5;
            blocks.push(std::array::from_fn(|j| match j {
                0 => 127.0,
                1 => half,
                2 => f32::from_bits(half.to_bits() - 1),
                3 => f32::from_bits(half.to_bits() + 1),
                _ => -half,
            }));
        }
        // Exact halves after scaling (amax 127 makes d = 1): ties go away from zero.
        blocks.push(std::array::from_fn(|j| {
            if j == 0 {
                127.0
            } else {
                j as f32 - 15.5
            }
        }));
        for block in &blocks {
            let (d, sum, q) = quantize_block(block);
            assert_eq!(sum, q.iter().map(|&v| v as i32).sum::<i32>());
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 is present, just checked.
                let simd = unsafe { quantize_block_avx2(block) };
                assert_eq!(simd, (d, sum, q), "block {block:?}");
            }
        }
        let halves = quantize_block(&blocks[blocks.len() - 1]).2;
        assert_eq!(&halves[1..5], &[-15, -14, -13, -12]);
    }

    #[test]
    fn repacked_weights_are_the_same_weights() {
        let (rows, cols) = (48, 96);
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
            let bytes = random_blocks(dtype, rows, cols, 5);
            let plain = QuantMatrix::from_ggml_as(dtype, &bytes, rows, cols, false).unwrap();
            let packed = QuantMatrix::from_ggml_as(dtype, &bytes, rows, cols, true).unwrap();
            assert!(matches!(
                packed.blocks,
                Blocks::Q4_1x16(_) | Blocks::Q8_0x16(_)
            ));
            let x: Vec<f32> = (0..cols)
                .map(|i| ((i * 7 % 23) as f32 - 11.0) / 5.0)
                .collect();
            let q = quantize_rows(&x, cols);
            let q = q.row(0);
            for r in 0..rows {
                assert_eq!(packed.row_f32(r), plain.row_f32(r), "{dtype:?} row {r}");
                assert_eq!(
                    packed.dot_scalar(r, &q),
                    plain.dot_scalar(r, &q),
                    "{dtype:?} row {r}"
                );
            }
            if let Blocks::Q8_0x16(groups) = &packed.blocks {
                for (k, g) in groups.iter().enumerate() {
                    for l in 0..GROUP {
                        let quants = (0..QK).map(|j| g.qs[64 * (j / 4) + 4 * l + j % 4] as i16);
                        assert_eq!(g.sums[l], quants.sum::<i16>(), "group {k} row {l}");
                    }
                }
            }
            // Rows that do not fill groups of sixteen keep GGML's layout.
            let odd = random_blocks(dtype, 40, cols, 5);
            let odd = QuantMatrix::from_ggml_as(dtype, &odd, 40, cols, true).unwrap();
            assert!(matches!(odd.blocks, Blocks::Q4_1(_) | Blocks::Q8_0(_)));
        }
    }

    /// The repacked tiles (AVX2, and AVX-512 VNNI where this CPU has it), Q4_1 and
    /// Q8_0, against the row kernels on GGML's layout, for every tile height (1 to
    /// 8 activation rows and remainders) and several bands: close to them, and the
    /// tiles the same bits as each other, whatever rows a row is batched with.
    #[test]
    fn repacked_tiles_match_the_row_kernels_and_each_other() {
        let tiles: Vec<Isa> = Isa::available()
            .into_iter()
            .filter(|&i| i >= Isa::Avx2)
            .collect();
        if tiles.is_empty() {
            eprintln!("skipped: this CPU has no AVX2");
            return;
        }
        let (rows, cols) = (192, 576);
        for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0] {
            let bytes = random_blocks(dtype, rows, cols, 9);
            let plain = QuantMatrix::from_ggml_as(dtype, &bytes, rows, cols, false).unwrap();
            let packed = QuantMatrix::from_ggml_as(dtype, &bytes, rows, cols, true).unwrap();
            let product = |q: &Q8Rows, isa: Isa| match &packed.blocks {
                Blocks::Q4_1x16(groups) => matmul_tiled(groups, q, rows, isa),
                Blocks::Q8_0x16(groups) => matmul_tiled(groups, q, rows, isa),
                _ => panic!("{dtype:?} not repacked"),
            };
            for m in [1, 2, 3, 4, 5, 7, 8, 9, 17, 128] {
                let x: Vec<f32> = (0..m * cols)
                    .map(|i| ((i * 31 % 41) as f32 - 20.0) / 6.0)
                    .collect();
                let q = quantize_rows(&x, cols);
                let want = plain.matmul_rows(&q, rows);
                let mut first: Option<Vec<f32>> = None;
                for &isa in &tiles {
                    let got = product(&q, isa);
                    assert_eq!(got.len(), m * rows);
                    for i in 0..m {
                        let alone =
                            product(&quantize_rows(&x[i * cols..(i + 1) * cols], cols), isa);
                        let row = &got[i * rows..(i + 1) * rows];
                        assert_eq!(alone, row, "{dtype:?} {isa:?} m {m}, row {i}");
                    }
                    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            (g - w).abs() <= 1e-4 * w.abs().max(1.0),
                            "{dtype:?} {isa:?} m {m}, output {i}: {g} vs {w}"
                        );
                    }
                    match &first {
                        None => first = Some(got),
                        Some(f) => assert!(
                            f.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits()),
                            "{dtype:?} {isa:?} m {m}: not the bits of {:?}",
                            tiles[0]
                        ),
                    }
                }
            }
        }
    }

    #[test]
    fn unsupported_types_and_bad_sizes_are_refused() {
        assert!(QuantMatrix::from_ggml(GgmlDType::Q4K, &[0; 144], 1, 256).is_none());
        assert!(QuantMatrix::from_ggml(GgmlDType::Q8_0, &[0; 33], 1, 32).is_none());
    }
}
