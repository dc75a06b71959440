//! Counters of work, for tests and benchmarks: how many weight gradients the
//! backward passes computed, how many frozen weights' gradients they skipped
//! ([`crate::ops::linear`]), and the CPU attention kernel's arithmetic and time
//! ([`crate::attention`]). Process-wide.

use std::sync::atomic::{AtomicU64, Ordering};

static WEIGHT_GRADS: AtomicU64 = AtomicU64::new(0);
static FROZEN_SKIPPED: AtomicU64 = AtomicU64::new(0);
static ATTENTION_FLOPS: AtomicU64 = AtomicU64::new(0);
static ATTENTION_NANOS: AtomicU64 = AtomicU64::new(0);

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Work {
    /// Dense weight gradients computed (`dyᵀ·x`, one per trainable linear per backward).
    pub weight_grads: u64,
    /// Frozen dense weights whose gradient was not computed.
    pub frozen_weight_grads_skipped: u64,
    /// Floating-point operations of the CPU attention kernel (a multiply-add
    /// counts two; the softmax is not counted).
    pub attention_flops: u64,
    /// Wall time spent in it, in nanoseconds.
    pub attention_nanos: u64,
}

impl Work {
    /// What was counted between `earlier` and this snapshot (0 for a counter
    /// that [`reset`] cleared in between).
    pub fn since(&self, earlier: &Work) -> Work {
        Work {
            weight_grads: self.weight_grads.saturating_sub(earlier.weight_grads),
            frozen_weight_grads_skipped: self
                .frozen_weight_grads_skipped
                .saturating_sub(earlier.frozen_weight_grads_skipped),
            attention_flops: self.attention_flops.saturating_sub(earlier.attention_flops),
            attention_nanos: self.attention_nanos.saturating_sub(earlier.attention_nanos),
        }
    }
}

pub(crate) fn count_weight_grad() {
    WEIGHT_GRADS.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn count_frozen_skip() {
    FROZEN_SKIPPED.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn count_attention(flops: u64, nanos: u64) {
    ATTENTION_FLOPS.fetch_add(flops, Ordering::Relaxed);
    ATTENTION_NANOS.fetch_add(nanos, Ordering::Relaxed);
}

pub fn snapshot() -> Work {
    Work {
        weight_grads: WEIGHT_GRADS.load(Ordering::Relaxed),
        frozen_weight_grads_skipped: FROZEN_SKIPPED.load(Ordering::Relaxed),
        attention_flops: ATTENTION_FLOPS.load(Ordering::Relaxed),
        attention_nanos: ATTENTION_NANOS.load(Ordering::Relaxed),
    }
}

pub fn reset() {
    WEIGHT_GRADS.store(0, Ordering::Relaxed);
    FROZEN_SKIPPED.store(0, Ordering::Relaxed);
    ATTENTION_FLOPS.store(0, Ordering::Relaxed);
    ATTENTION_NANOS.store(0, Ordering::Relaxed);
}
