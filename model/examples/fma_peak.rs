//! This machine's f32 arithmetic peak, measured: every thread runs a loop of
//! independent fused multiply-adds (AVX-512 where the CPU has it, 16 lanes each;
//! else AVX2 + FMA, 8 lanes; plain f32 otherwise) with enough accumulators to keep
//! both FMA units busy, and the best of three rounds is reported as GFLOP/s (an FMA
//! counts as two operations). `bench/run_benchmarks.sh` prints prefill's achieved
//! GFLOP/s beside it, so the distance to the limit is visible.
//!
//! On a CPU with AVX-512 VNNI, where the prefill's quantized matmuls run on
//! `vpdpbusd` (byte products summed into 32-bit lanes), the same loop of that
//! instruction gives the integer peak beside it: 64 multiply-adds each, counted
//! as 128 operations, so both peaks are in the units of the prefill's figure.
//!
//! Usage: fma_peak [THREADS]      (default: the available cores)
//! Prints one JSON line: {"impl": "machine", "what": "fma_peak", ...}.
#![allow(clippy::print_stdout)] // the result goes to stdout

use std::time::Instant;

/// Accumulators: FMA latency (4 cycles) x units (2) = 8 in flight at least.
const ACC: usize = 12;

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)] // Intrinsics; only called after the CPU was checked for them.
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_avx2(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_set1_ps(0.0); ACC];
    let a = _mm256_set1_ps(0.999_999);
    let b = _mm256_set1_ps(1e-7);
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = _mm256_fmadd_ps(*x, a, b);
        }
    }
    let mut sum = 0.0;
    for x in acc {
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), x);
        sum += lanes.iter().sum::<f32>();
    }
    sum
}

/// The widest f32 FMA this CPU has. On a CPU that splits 512-bit operations in
/// two (Zen 4) the AVX-512 loop measures no more than the AVX2 one; on one with
/// full-width units (Zen 5, Intel server cores) it measures twice as much, and a
/// peak taken with AVX2 there would be half the real one.
#[derive(Clone, Copy)]
enum Simd {
    Avx512,
    Avx2,
    Scalar,
}

impl Simd {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                return Simd::Avx512;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Simd::Avx2;
            }
        }
        Simd::Scalar
    }

    fn lanes(self) -> u64 {
        match self {
            Simd::Avx512 => 16,
            Simd::Avx2 => 8,
            Simd::Scalar => 1,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Simd::Avx512 => "avx512f, 16 f32 lanes",
            Simd::Avx2 => "avx2+fma, 8 f32 lanes",
            Simd::Scalar => "scalar f32",
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)] // Intrinsics; only called after the CPU was checked for them.
#[target_feature(enable = "avx512f")]
unsafe fn fma_avx512(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_set1_ps(0.0); ACC];
    let a = _mm512_set1_ps(0.999_999);
    let b = _mm512_set1_ps(1e-7);
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = _mm512_fmadd_ps(*x, a, b);
        }
    }
    acc.iter().map(|&x| _mm512_reduce_add_ps(x)).sum()
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)] // Intrinsics; only called after the CPU was checked for them.
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn dpbusd_avx512(iters: u64) -> i32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_set1_epi32(0); ACC];
    let a = _mm512_set1_epi8(3);
    let b = _mm512_set1_epi8(-2);
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = _mm512_dpbusd_epi32(*x, a, b);
        }
    }
    acc.iter()
        .map(|&x| _mm512_reduce_add_epi32(x))
        .fold(0, i32::wrapping_add)
}

fn fma_scalar(iters: u64) -> f32 {
    let mut acc = [0f32; ACC];
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = x.mul_add(0.999_999, 1e-7);
        }
    }
    acc.iter().sum()
}

/// Runs `iters` iterations; returns the floating-point operations done.
fn run(iters: u64, simd: Simd) -> f64 {
    let s = match simd {
        // SAFETY: `Simd::detect` chose these only when the CPU reported them.
        #[cfg(target_arch = "x86_64")]
        #[allow(unsafe_code)]
        Simd::Avx512 => unsafe { fma_avx512(iters) },
        #[cfg(target_arch = "x86_64")]
        #[allow(unsafe_code)]
        Simd::Avx2 => unsafe { fma_avx2(iters) },
        _ => fma_scalar(iters),
    };
    std::hint::black_box(s);
    (iters * ACC as u64 * simd.lanes() * 2) as f64
}

/// Runs `iters` iterations of `vpdpbusd`; returns the operations done (two per
/// byte multiply-add).
#[cfg(target_arch = "x86_64")]
fn run_vnni(iters: u64) -> f64 {
    // SAFETY: called only when the CPU reported AVX-512 F and VNNI.
    #[allow(unsafe_code)]
    let s = unsafe { dpbusd_avx512(iters) };
    std::hint::black_box(s);
    (iters * ACC as u64 * 64 * 2) as f64
}

/// The best of three rounds of `work(iters)` on `threads` threads, in G op/s.
fn best_of_three(threads: usize, iters: u64, work: impl Fn(u64) -> f64 + Sync) -> f64 {
    let mut best = 0.0f64;
    for _ in 0..3 {
        let start = Instant::now();
        let ops: f64 = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads).map(|_| s.spawn(|| work(iters))).collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a worker"))
                .sum()
        });
        best = best.max(ops / start.elapsed().as_secs_f64() / 1e9);
    }
    best
}

fn main() {
    let threads: usize = std::env::args()
        .nth(1)
        .map(|t| t.parse().expect("THREADS is a number"))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let simd = Simd::detect();
    let iters: u64 = match simd {
        Simd::Avx512 => 50_000_000,
        Simd::Avx2 => 100_000_000,
        Simd::Scalar => 20_000_000,
    };
    let best = best_of_three(threads, iters, |n| run(n, simd));
    #[cfg(target_arch = "x86_64")]
    let int8 = (is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vnni"))
        .then(|| best_of_three(threads, 25_000_000, run_vnni));
    #[cfg(not(target_arch = "x86_64"))]
    let int8: Option<f64> = None;
    let int8 = int8.map_or(String::new(), |g| {
        format!(", \"int8_simd\": \"avx512 vnni (vpdpbusd)\", \"int8_gops\": {g:.1}")
    });
    println!(
        "{{\"impl\": \"machine\", \"what\": \"fma_peak\", \"threads\": {threads}, \"simd\": \"{}\", \"gflops\": {best:.1}{int8}}}",
        simd.name()
    );
}
