//! Causal attention on the CPU, `softmax(scale · q kᵀ) v`, for the query rows of
//! grouped-query heads: [`crate::ops::causal_attention`] (prefill, training's
//! forward) and [`crate::ops::cached_attention`] (over the KV cache) both run it.
//!
//! The work is split by (key/value head, query position). The `groups` query
//! heads that share a key/value head see the same keys, so they run together:
//! each block of 8 to 32 keys is loaded once for all of them, their scores stay in
//! registers while the head dimension is summed, and each value row is loaded
//! once for all of their outputs.
//!
//! Each row's numbers are fixed by its query, its visible keys and how many they
//! are, never by the rows that come with it. The prefix cache, a group of
//! samples sharing one prefill and a cold prefill need this: they must give the
//! same numbers for the same position. The arithmetic, on every path:
//! - a score is a chain of fused multiply-adds over the head dimension, in order,
//!   from 0;
//! - softmax: `e_j = exp((s_j − max) · scale)` with [`exp`]; the sum adds `e_j`
//!   into lane `j mod 8` in key order over whole blocks of eight, adds the lanes
//!   pairwise (`((0+1)+(2+3))+((4+5)+(6+7))`), then the remaining keys in order;
//! - an output is a chain of fused multiply-adds over the keys, in order, from 0,
//!   times `1 / sum`.
//!
//! The portable path does exactly these operations, so it gives the AVX2 path's
//! bits, and the AVX-512 one's (sixteen keys or dimensions a vector where the
//! AVX2 path has eight); the tests hold every path this CPU has to that (see
//! [`crate::isa`]).

#![allow(unsafe_code)] // SIMD intrinsics; each unsafe block states why it is sound.

use rayon::prelude::*;

use crate::isa::Isa;

/// The most query heads a block computes together (its scores are in registers).
const MAX_ROWS: usize = 8;
/// Lanes of the sum (see the module docs).
const LANES: usize = 8;

/// What keys and values are stored as: f32, or f16 (each read as the f32 it
/// is exactly, so the arithmetic above is unchanged).
pub(crate) trait Elem: Copy + Send + Sync {
    fn f32(self) -> f32;
    /// Eight elements from `p`, as f32.
    ///
    /// # Safety
    /// The CPU has AVX2 and F16C; `p` points at eight elements.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256;
    /// Sixteen elements from `p`, as f32.
    ///
    /// # Safety
    /// The CPU has AVX-512 F; `p` points at sixteen elements.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load16(p: *const Self) -> std::arch::x86_64::__m512;
}

impl Elem for f32 {
    #[inline(always)]
    fn f32(self) -> f32 {
        self
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const f32) -> std::arch::x86_64::__m256 {
        std::arch::x86_64::_mm256_loadu_ps(p)
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load16(p: *const f32) -> std::arch::x86_64::__m512 {
        std::arch::x86_64::_mm512_loadu_ps(p)
    }
}

impl Elem for half::f16 {
    #[inline(always)]
    fn f32(self) -> f32 {
        self.to_f32()
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const half::f16) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load16(p: *const half::f16) -> std::arch::x86_64::__m512 {
        use std::arch::x86_64::*;
        _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i))
    }
}

/// Where one head's keys and values are held.
pub(crate) struct Kv<'a, T> {
    /// Keys transposed: dimension `d` of key `j` at `kt[d * ld + j]`.
    pub kt: &'a [T],
    pub ld: usize,
    /// Values: key `j`'s at `v[j * hd..][..hd]`.
    pub v: &'a [T],
}

/// The queries: `blocks` (batch × key/value heads) of `groups × t` rows of
/// `hd`, row `g * t + p` being query head `g` of the block at the `p`-th of `t`
/// new positions, after `past` earlier ones; `keys` keys a block in all.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dims {
    pub groups: usize,
    pub t: usize,
    pub hd: usize,
    pub keys: usize,
    pub past: usize,
}

/// Causal attention of `q` (laid out as [`Dims`] says) over each block's keys
/// and values (`kv(block)`): position `p` sees keys `0..=past + p`. The output
/// has q's layout.
pub(crate) fn attention<'a, T: Elem + 'a>(
    q: &[f32],
    shape: Dims,
    scale: f32,
    kv: impl Fn(usize) -> Kv<'a, T> + Sync,
    isa: Isa,
) -> Vec<f32> {
    let Dims {
        groups,
        t,
        hd,
        keys,
        past,
    } = shape;
    let start = std::time::Instant::now();
    let rows = groups * t;
    // The outputs by (block, position, group), so that a task's rows are
    // contiguous; put in q's order after. A task is a position's groups, which
    // share each load of a key and of a value. (Splitting a decoding step's few
    // tasks into single rows, to keep both threads busy, measured slower: each
    // row then loads the keys and values again.)
    let blocks = q.len() / (rows * hd).max(1);
    let mut by_position = vec![0f32; q.len()];
    by_position
        .par_chunks_mut(groups * hd)
        .enumerate()
        .for_each_init(
            || vec![0f32; MAX_ROWS * keys],
            |scores, (i, out)| {
                let (blk, p) = (i / t, i % t);
                let n = (past + p + 1).min(keys);
                let kv = kv(blk);
                for (c, out) in out.chunks_mut(MAX_ROWS * hd).enumerate() {
                    // The block's query rows, without an allocation per task.
                    let mut rows_here: [&[f32]; MAX_ROWS] = [&[]; MAX_ROWS];
                    let m = out.len() / hd;
                    for (i, r) in rows_here[..m].iter_mut().enumerate() {
                        let g = c * MAX_ROWS + i;
                        *r = &q[(blk * rows + g * t + p) * hd..][..hd];
                    }
                    block(isa, &rows_here[..m], &kv, n, scale, scores, out);
                }
            },
        );
    // Two multiply-adds per visible key and dimension (score and output) for
    // every row.
    let visible: usize = (0..t).map(|p| (past + p + 1).min(keys)).sum();
    let flops = 4 * blocks * groups * visible * hd;
    let count = |start: std::time::Instant| {
        crate::stats::count_attention(flops as u64, start.elapsed().as_nanos() as u64)
    };
    if t == 1 {
        count(start);
        return by_position;
    }
    let mut out = vec![0f32; q.len()];
    out.par_chunks_mut(rows * hd)
        .zip(by_position.par_chunks(rows * hd))
        .for_each(|(out, src)| {
            for (i, row) in src.chunks_exact(hd).enumerate() {
                let (p, g) = (i / groups, i % groups);
                out[(g * t + p) * hd..][..hd].copy_from_slice(row);
            }
        });
    count(start);
    out
}

/// Up to [`MAX_ROWS`] query rows `q` over the first `n` keys of `kv`, into
/// `out` (row after row); `scores` is room for at least `q.len() × n` numbers.
fn block<T: Elem>(
    isa: Isa,
    q: &[&[f32]],
    kv: &Kv<T>,
    n: usize,
    scale: f32,
    scores: &mut [f32],
    out: &mut [f32],
) {
    assert!(
        (1..=MAX_ROWS).contains(&q.len()),
        "attention block: {} rows",
        q.len()
    );
    let hd = out.len() / q.len();
    assert!(
        hd > 0
            && n > 0
            && q.iter().all(|q| q.len() == hd)
            && kv.ld >= n
            && kv.kt.len() >= (hd - 1) * kv.ld + n
            && kv.v.len() >= n * hd
            && scores.len() >= q.len() * n,
        "attention block: inputs do not fit"
    );
    // Never a path this CPU lacks, whatever the caller asked for.
    let isa = isa.min(Isa::detected());
    #[cfg(target_arch = "x86_64")]
    if isa >= Isa::Avx2 {
        macro_rules! rows {
            ($($r:literal)*) => {
                match q.len() {
                    $($r => {
                        let q: &[&[f32]; $r] = q.try_into().expect("matched length");
                        // SAFETY: `isa` is at most what this CPU runs (capped
                        // above), and the bounds the kernel reads within are
                        // asserted above.
                        unsafe { avx2::block(q, kv, n, scale, scores, out, isa >= Isa::Avx512) }
                    })*
                    _ => unreachable!("asserted above"),
                }
            };
        }
        rows!(1 2 3 4 5 6 7 8);
        return;
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = isa;
    portable::block(q, kv, n, scale, scores, out);
}

/// `e^x` for the softmax, the same bits on every path: `x` clamped to
/// [-87, 88], `x = k ln 2 + r` with `k` rounded to even, `e^r` by its Taylor
/// polynomial of degree 7 (|r| ≤ ln 2 / 2: within 2 ulp), times `2^k`.
#[allow(clippy::manual_clamp)] // clamp keeps a NaN; max/min turn it into EXP_MIN, as the AVX2 path does
pub(crate) fn exp(x: f32) -> f32 {
    let x = x.max(EXP_MIN).min(EXP_MAX);
    let k = (x * std::f32::consts::LOG2_E).round_ties_even();
    let r = k.mul_add(-LN2_HI, x);
    let r = k.mul_add(-LN2_LO, r);
    let mut p = TAYLOR[0];
    for c in &TAYLOR[1..] {
        p = p.mul_add(r, *c);
    }
    p * f32::from_bits(((k as i32 + 127) << 23) as u32)
}

const EXP_MIN: f32 = -87.0;
const EXP_MAX: f32 = 88.0;
/// ln 2 in two parts: a high one with few bits, so that `k · LN2_HI` is exact,
/// and the rest.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// 1/7!, 1/6!, …, 1/1!, 1/0!: Horner's order.
const TAYLOR: [f32; 8] = [
    1.0 / 5040.0,
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    0.5,
    1.0,
    1.0,
];

/// The lanes of the sum, added pairwise (see the module docs).
fn lane_sum(l: [f32; LANES]) -> f32 {
    ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]))
}

mod portable {
    use super::*;

    /// [`super::block`] in plain Rust, loops the compiler can vectorise.
    pub(super) fn block<T: Elem>(
        q: &[&[f32]],
        kv: &Kv<T>,
        n: usize,
        scale: f32,
        scores: &mut [f32],
        out: &mut [f32],
    ) {
        let hd = q[0].len();
        for ((q, s), o) in q.iter().zip(scores.chunks_mut(n)).zip(out.chunks_mut(hd)) {
            s.fill(0.0);
            for (d, &qd) in q.iter().enumerate() {
                for (s, &k) in s.iter_mut().zip(&kv.kt[d * kv.ld..][..n]) {
                    *s = qd.mul_add(k.f32(), *s);
                }
            }
            let inv = softmax(s, scale);
            o.fill(0.0);
            for (&p, v) in s.iter().zip(kv.v.chunks_exact(hd)) {
                for (o, &v) in o.iter_mut().zip(v) {
                    *o = p.mul_add(v.f32(), *o);
                }
            }
            o.iter_mut().for_each(|o| *o *= inv);
        }
    }

    /// The scores `s` become `e_j` (see the module docs); returns `1 / sum`.
    pub(super) fn softmax(s: &mut [f32], scale: f32) -> f32 {
        let max = s.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        let mut lanes = [0f32; LANES];
        let mut blocks = s.chunks_exact_mut(LANES);
        for b in &mut blocks {
            for (l, x) in lanes.iter_mut().zip(b) {
                *x = exp((*x - max) * scale);
                *l += *x;
            }
        }
        let mut sum = lane_sum(lanes);
        for x in blocks.into_remainder() {
            *x = exp((*x - max) * scale);
            sum += *x;
        }
        1.0 / sum
    }
}

/// The score and output loops of [`avx2::block`] for one vector width (the
/// AVX2 and the AVX-512 module each instantiate them): the target features, the
/// vector type, its lanes, [`Elem`]'s load for it, and the intrinsics.
#[cfg(target_arch = "x86_64")]
macro_rules! lane_loops {
    ($features:literal, $vec:ty, $lanes:literal, $load:ident, $zero:ident, $set1:ident,
     $fma:ident, $mul:ident, $store:ident) => {
        /// The scores of keys `j..` in blocks of `lanes · C` while whole ones
        /// remain; returns the first key not done.
        ///
        /// # Safety
        /// As `avx2::block`'s, and the CPU has the features named.
        #[target_feature(enable = $features)]
        pub(super) unsafe fn score_keys<T: Elem, const R: usize, const C: usize>(
            qp: &[*const f32; R],
            sp: &[*mut f32; R],
            kv: &Kv<T>,
            hd: usize,
            mut j: usize,
            n: usize,
        ) -> usize {
            while j + $lanes * C <= n {
                let mut acc = [[$zero(); C]; R];
                let mut k = kv.kt.as_ptr().add(j);
                for d in 0..hd {
                    let kd: [$vec; C] = std::array::from_fn(|c| T::$load(k.add($lanes * c)));
                    for r in 0..R {
                        let qd = $set1(*qp[r].add(d));
                        for c in 0..C {
                            acc[r][c] = $fma(qd, kd[c], acc[r][c]);
                        }
                    }
                    k = k.add(kv.ld);
                }
                for r in 0..R {
                    for c in 0..C {
                        $store(sp[r].add(j + $lanes * c), acc[r][c]);
                    }
                }
                j += $lanes * C;
            }
            j
        }

        /// The outputs' dimensions `c..` in blocks of `lanes · C` while whole
        /// ones remain, times `inv`; returns the first dimension not done.
        ///
        /// # Safety
        /// As `avx2::block`'s, and the CPU has the features named.
        #[target_feature(enable = $features)]
        pub(super) unsafe fn outputs<T: Elem, const R: usize, const C: usize>(
            sp: &[*mut f32; R],
            op: &[*mut f32; R],
            inv: &[f32; R],
            v: *const T,
            hd: usize,
            n: usize,
            mut c: usize,
        ) -> usize {
            while c + $lanes * C <= hd {
                let mut acc = [[$zero(); C]; R];
                let mut vj = v.add(c);
                for j in 0..n {
                    let x: [$vec; C] = std::array::from_fn(|i| T::$load(vj.add($lanes * i)));
                    for r in 0..R {
                        let p = $set1(*sp[r].add(j));
                        for i in 0..C {
                            acc[r][i] = $fma(p, x[i], acc[r][i]);
                        }
                    }
                    vj = vj.add(hd);
                }
                for r in 0..R {
                    let inv = $set1(inv[r]);
                    for i in 0..C {
                        $store(op[r].add(c + $lanes * i), $mul(acc[r][i], inv));
                    }
                }
                c += $lanes * C;
            }
            c
        }
    };
}

#[cfg(target_arch = "x86_64")]
#[allow(clippy::needless_range_loop)] // indices over register arrays read clearer
mod avx2 {
    use super::*;
    use std::arch::x86_64::*;

    /// [`super::block`] for `R` rows: the portable path's operations, eight
    /// keys or eight dimensions a vector; sixteen first where `wide` (the CPU
    /// has AVX-512: [`avx512`]).
    ///
    /// # Safety
    /// The CPU has AVX2, FMA and F16C, and AVX-512 F where `wide`; `kv.kt` holds `(hd − 1) · kv.ld + n` numbers,
    /// `kv.v` `n · hd`, `scores` `R · n`, `out` `R · hd` (`hd` each query's
    /// length).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn block<T: Elem, const R: usize>(
        q: &[&[f32]; R],
        kv: &Kv<T>,
        n: usize,
        scale: f32,
        scores: &mut [f32],
        out: &mut [f32],
        wide: bool,
    ) {
        let hd = q[0].len();
        // Pointer steps rather than index products: no overflow checks in the
        // loops, whatever the profile.
        let qp: [*const f32; R] = std::array::from_fn(|r| q[r].as_ptr());
        let sp: [*mut f32; R] = std::array::from_fn(|r| scores.as_mut_ptr().add(r * n));
        // Scores: eight keys a vector, two vectors at a time while the
        // registers hold 2R sums, in registers across the head dimension.
        let mut j = 0;
        if wide {
            j = avx512::score_keys::<T, R, 2>(&qp, &sp, kv, hd, j, n);
        }
        if R <= 6 {
            j = score_keys::<T, R, 2>(&qp, &sp, kv, hd, j, n);
        }
        j = score_keys::<T, R, 1>(&qp, &sp, kv, hd, j, n);
        for j in j..n {
            for r in 0..R {
                let (mut acc, mut k) = (0f32, kv.kt.as_ptr().add(j));
                for d in 0..hd {
                    acc = (*qp[r].add(d)).mul_add((*k).f32(), acc);
                    k = k.add(kv.ld);
                }
                *sp[r].add(j) = acc;
            }
        }
        let mut inv = [0f32; R];
        for r in 0..R {
            inv[r] = softmax(std::slice::from_raw_parts_mut(sp[r], n), scale);
        }
        // Outputs: eight dimensions a vector, two at a time where they fit, in
        // registers across the keys.
        let op: [*mut f32; R] = std::array::from_fn(|r| out.as_mut_ptr().add(r * hd));
        let mut c = 0;
        if wide {
            // Four vectors of sixteen dimensions while the registers hold
            // them all, two otherwise.
            c = if R <= 6 {
                avx512::outputs::<T, R, 4>(&sp, &op, &inv, kv.v.as_ptr(), hd, n, c)
            } else {
                avx512::outputs::<T, R, 2>(&sp, &op, &inv, kv.v.as_ptr(), hd, n, c)
            };
        }
        if R <= 6 {
            c = outputs::<T, R, 2>(&sp, &op, &inv, kv.v.as_ptr(), hd, n, c);
        }
        c = outputs::<T, R, 1>(&sp, &op, &inv, kv.v.as_ptr(), hd, n, c);
        for d in c..hd {
            for r in 0..R {
                let (mut acc, mut vj) = (0f32, kv.v.as_ptr().add(d));
                for j in 0..n {
                    acc = (*sp[r].add(j)).mul_add((*vj).f32(), acc);
                    vj = vj.add(hd);
                }
                *op[r].add(d) = acc * inv[r];
            }
        }
    }

    lane_loops!(
        "avx2,fma,f16c",
        __m256,
        8,
        load8,
        _mm256_setzero_ps,
        _mm256_set1_ps,
        _mm256_fmadd_ps,
        _mm256_mul_ps,
        _mm256_storeu_ps
    );

    /// [`portable::softmax`], eight keys a vector.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn softmax(s: &mut [f32], scale: f32) -> f32 {
        let n = s.len();
        let whole = n / LANES * LANES;
        let p = s.as_mut_ptr();
        let mut m = _mm256_set1_ps(f32::NEG_INFINITY);
        for j in (0..whole).step_by(LANES) {
            m = _mm256_max_ps(m, _mm256_loadu_ps(p.add(j)));
        }
        let mut lanes = [0f32; LANES];
        _mm256_storeu_ps(lanes.as_mut_ptr(), m);
        let max = lanes
            .iter()
            .chain(&s[whole..])
            .fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        let (vmax, vscale) = (_mm256_set1_ps(max), _mm256_set1_ps(scale));
        let mut sum = _mm256_setzero_ps();
        for j in (0..whole).step_by(LANES) {
            let x = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(p.add(j)), vmax), vscale);
            let e = exp8(x);
            _mm256_storeu_ps(p.add(j), e);
            sum = _mm256_add_ps(sum, e);
        }
        _mm256_storeu_ps(lanes.as_mut_ptr(), sum);
        let mut sum = lane_sum(lanes);
        for x in &mut s[whole..] {
            *x = exp((*x - max) * scale);
            sum += *x;
        }
        1.0 / sum
    }

    /// [`super::exp`] of eight lanes.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn exp8(x: __m256) -> __m256 {
        let x = _mm256_min_ps(
            _mm256_max_ps(x, _mm256_set1_ps(EXP_MIN)),
            _mm256_set1_ps(EXP_MAX),
        );
        let k = _mm256_round_ps(
            _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)),
            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
        );
        let r = _mm256_fmadd_ps(k, _mm256_set1_ps(-LN2_HI), x);
        let r = _mm256_fmadd_ps(k, _mm256_set1_ps(-LN2_LO), r);
        let mut p = _mm256_set1_ps(TAYLOR[0]);
        for c in &TAYLOR[1..] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(*c));
        }
        let bits = _mm256_slli_epi32(
            _mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)),
            23,
        );
        _mm256_mul_ps(p, _mm256_castsi256_ps(bits))
    }
}

/// The score and output loops in sixteen lanes, for [`avx2::block`] on a CPU
/// with AVX-512: the same operations on each key and dimension, so the same
/// bits (the softmax stays in eight lanes, where its sum is defined).
#[cfg(target_arch = "x86_64")]
#[allow(clippy::needless_range_loop)] // indices over register arrays read clearer
mod avx512 {
    use super::*;
    use std::arch::x86_64::*;

    lane_loops!(
        "avx512f,avx2,fma,f16c",
        __m512,
        16,
        load16,
        _mm512_setzero_ps,
        _mm512_set1_ps,
        _mm512_fmadd_ps,
        _mm512_mul_ps,
        _mm512_storeu_ps
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_of_the_libm_one_and_the_same_on_every_path() {
        let xs: Vec<f32> = (0..20_000)
            .map(|i| -90.0 + i as f32 * 0.0045)
            .chain([0.0, -0.0, f32::NEG_INFINITY, -1e-30])
            .collect();
        for &x in &xs {
            let (got, want) = (exp(x), x.max(EXP_MIN).exp());
            assert!(
                (got - want).abs() <= 2.0 * f32::EPSILON * want,
                "exp({x}) = {got}, libm {want}"
            );
        }
        #[cfg(target_arch = "x86_64")]
        if Isa::detected() >= Isa::Avx2 {
            for c in xs.chunks_exact(8) {
                let mut got = [0f32; 8];
                // SAFETY: this CPU has AVX2 and FMA.
                unsafe {
                    use std::arch::x86_64::*;
                    let e = avx2::exp8(_mm256_loadu_ps(c.as_ptr()));
                    _mm256_storeu_ps(got.as_mut_ptr(), e);
                }
                let want: Vec<u32> = c.iter().map(|&x| exp(x).to_bits()).collect();
                let got: Vec<u32> = got.iter().map(|x| x.to_bits()).collect();
                assert_eq!(got, want, "at {c:?}");
            }
        }
    }

    /// Attention in f64 from its definition, for one block.
    fn reference(q: &[f32], shape: Dims, scale: f32, kt: &[f32], ld: usize, v: &[f32]) -> Vec<f64> {
        let Dims {
            groups,
            t,
            hd,
            keys,
            past,
        } = shape;
        let mut out = vec![0f64; groups * t * hd];
        for (r, o) in out.chunks_mut(hd).enumerate() {
            let n = (past + r % t + 1).min(keys);
            let qr = &q[r * hd..][..hd];
            let s: Vec<f64> = (0..n)
                .map(|j| {
                    (0..hd)
                        .map(|d| qr[d] as f64 * kt[d * ld + j] as f64)
                        .sum::<f64>()
                })
                .collect();
            let max = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = s.iter().map(|x| ((x - max) * scale as f64).exp()).collect();
            let sum: f64 = e.iter().sum();
            for (j, e) in e.iter().enumerate() {
                for d in 0..hd {
                    o[d] += e / sum * v[j * hd + d] as f64;
                }
            }
        }
        out
    }

    fn numbers(len: usize, seed: u64) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// Every path against the f64 definition, and all paths to the same bits,
    /// over head sizes that do and do not fill a vector, block sizes above and
    /// below [`MAX_ROWS`] and key counts around the blocks of eight.
    #[test]
    fn every_path_matches_the_definition_and_gives_the_same_bits() {
        for (groups, t, hd, past) in [
            (7, 1, 64, 1500),
            (7, 17, 64, 0),
            (3, 1, 64, 300),
            (3, 5, 12, 9),
            (9, 4, 8, 3),
            (1, 1, 5, 0),
            (2, 3, 80, 40),
        ] {
            let keys = past + t;
            let ld = keys + 5;
            let shape = Dims {
                groups,
                t,
                hd,
                keys,
                past,
            };
            let q = numbers(2 * groups * t * hd, 1);
            let kt = numbers(2 * hd * ld, 2);
            let v = numbers(2 * keys * hd, 3);
            let scale = 1.0 / (hd as f32).sqrt();
            check_paths(&q, shape, scale, &kt, ld, &v);
            // Keys and values stored in f16: the same arithmetic on the
            // rounded numbers.
            let half = |x: &[f32]| -> Vec<half::f16> {
                x.iter().map(|&x| half::f16::from_f32(x)).collect()
            };
            check_paths(&q, shape, scale, &half(&kt), ld, &half(&v));
        }
    }

    /// Every path against the f64 definition over the same numbers, and all
    /// paths to the same bits.
    fn check_paths<T: Elem>(q: &[f32], shape: Dims, scale: f32, kt: &[T], ld: usize, v: &[T]) {
        let Dims {
            groups,
            t,
            hd,
            keys,
            ..
        } = shape;
        let kv = |blk: usize| Kv {
            kt: &kt[blk * hd * ld..][..hd * ld],
            ld,
            v: &v[blk * keys * hd..][..keys * hd],
        };
        let portable = attention(q, shape, scale, kv, Isa::Portable);
        let f32s = |x: &[T]| -> Vec<f32> { x.iter().map(|x| x.f32()).collect() };
        let (kt32, v32) = (f32s(kt), f32s(v));
        for blk in 0..2 {
            let want = reference(
                &q[blk * groups * t * hd..][..groups * t * hd],
                shape,
                scale,
                &kt32[blk * hd * ld..],
                ld,
                &v32[blk * keys * hd..],
            );
            let got = &portable[blk * groups * t * hd..][..groups * t * hd];
            for (g, w) in got.iter().zip(&want) {
                assert!((*g as f64 - w).abs() < 1e-5, "{shape:?}: {g} against {w}");
            }
        }
        for isa in Isa::available() {
            let got = attention(q, shape, scale, kv, isa);
            assert!(
                got.iter()
                    .zip(&portable)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{isa:?} differs from the portable path at {shape:?}"
            );
        }
    }
}
