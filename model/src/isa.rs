//! Which instruction set the CPU kernels run: the best this CPU has, or a lower
//! one that `BASIS_KERNELS` names (`portable`, `avx2` or `avx512`), so that every
//! path can be measured and checked on one machine.
//!
//! - `portable`: plain Rust, any CPU. The attention kernel's portable path gives
//!   the same bits as its AVX2 one (see [`crate::attention`]).
//! - `avx2`: AVX2 with FMA and F16C, which the build already assumes
//!   (`.cargo/config.toml`): the repacked Q4_1 and Q8_0 matmuls in `vpmaddubsw`
//!   tiles.
//! - `avx512`: AVX-512 F and BW with VNNI: those matmuls in `vpdpbusd` tiles (the
//!   same bits as the AVX2 ones), and attention's loops in sixteen lanes.
//!
//! `BASIS_NO_AVX512=1`, the older switch, still means `avx2`.

use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    Portable,
    Avx2,
    Avx512,
}

impl Isa {
    /// The best set this CPU runs (asked once per process).
    pub fn detected() -> Isa {
        static DETECTED: OnceLock<Isa> = OnceLock::new();
        *DETECTED.get_or_init(Isa::detect)
    }

    fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512f")
                && has!("avx512bw")
                && has!("avx512vnni")
                && has!("fma")
                && has!("f16c")
            {
                return Isa::Avx512;
            }
            if has!("avx2") && has!("fma") && has!("f16c") {
                return Isa::Avx2;
            }
        }
        Isa::Portable
    }

    /// Every set this CPU runs, lowest first: what tests check each path on.
    pub fn available() -> Vec<Isa> {
        [Isa::Portable, Isa::Avx2, Isa::Avx512]
            .into_iter()
            .filter(|&i| i <= Isa::detected())
            .collect()
    }

    /// The set the kernels use in this process: [`Isa::detected`], lowered to
    /// what `BASIS_KERNELS` names. A value that is not a set, or one this CPU
    /// lacks, is said once on stderr and the detected set runs.
    pub fn active() -> Isa {
        static ACTIVE: OnceLock<Isa> = OnceLock::new();
        *ACTIVE.get_or_init(|| {
            let detected = Isa::detected();
            let legacy = std::env::var_os("BASIS_NO_AVX512").map(|_| "avx2".to_string());
            let Some(asked) = std::env::var("BASIS_KERNELS").ok().or(legacy) else {
                return detected;
            };
            match Isa::parse(&asked) {
                Some(isa) if isa <= detected => isa,
                Some(isa) => {
                    eprintln!(
                        "basis: BASIS_KERNELS={asked}: this CPU lacks {isa:?}, running {detected:?}"
                    );
                    detected
                }
                None => {
                    eprintln!(
                        "basis: BASIS_KERNELS={asked} is not one of portable, avx2, avx512; \
                         running {detected:?}"
                    );
                    detected
                }
            }
        })
    }

    pub fn parse(s: &str) -> Option<Isa> {
        match s.trim().to_ascii_lowercase().as_str() {
            "portable" => Some(Isa::Portable),
            "avx2" => Some(Isa::Avx2),
            "avx512" => Some(Isa::Avx512),
            _ => None,
        }
    }
}
