//! This machine's f32 arithmetic peak, measured: every thread runs a loop of
//! independent fused multiply-adds (AVX2 + FMA where the CPU has them, 8 lanes
//! each; plain f32 otherwise) with enough accumulators to keep both FMA units
//! busy, and the best of three rounds is reported as GFLOP/s (an FMA counts as
//! two operations). `bench/run_benchmarks.sh` prints prefill's achieved GFLOP/s
//! beside it, so the distance to the limit is visible.
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
fn run(iters: u64, simd: bool) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if simd {
        // SAFETY: `simd` is true only when the CPU reported AVX2 and FMA.
        #[allow(unsafe_code)]
        let s = unsafe { fma_avx2(iters) };
        std::hint::black_box(s);
        return (iters * ACC as u64 * 8 * 2) as f64;
    }
    let _ = simd;
    std::hint::black_box(fma_scalar(iters));
    (iters * ACC as u64 * 2) as f64
}

fn main() {
    let threads: usize = std::env::args()
        .nth(1)
        .map(|t| t.parse().expect("THREADS is a number"))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    #[cfg(target_arch = "x86_64")]
    let simd = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    let simd = false;
    let iters: u64 = if simd { 100_000_000 } else { 20_000_000 };
    let mut best = 0.0f64;
    for _ in 0..3 {
        let start = Instant::now();
        let flops: f64 = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads).map(|_| s.spawn(|| run(iters, simd))).collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a worker"))
                .sum()
        });
        best = best.max(flops / start.elapsed().as_secs_f64() / 1e9);
    }
    println!(
        "{{\"impl\": \"machine\", \"what\": \"fma_peak\", \"threads\": {threads}, \"simd\": \"{}\", \"gflops\": {best:.1}}}",
        if simd { "avx2+fma, 8 f32 lanes" } else { "scalar f32" }
    );
}
