//! Counters of training-path work, for tests and benchmarks: how many weight
//! gradients the backward passes computed, and how many frozen weights'
//! gradients they skipped ([`crate::ops::linear`]). Process-wide.

use std::sync::atomic::{AtomicU64, Ordering};

static WEIGHT_GRADS: AtomicU64 = AtomicU64::new(0);
static FROZEN_SKIPPED: AtomicU64 = AtomicU64::new(0);

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Work {
    /// Dense weight gradients computed (`dyᵀ·x`, one per trainable linear per backward).
    pub weight_grads: u64,
    /// Frozen dense weights whose gradient was not computed.
    pub frozen_weight_grads_skipped: u64,
}

pub(crate) fn count_weight_grad() {
    WEIGHT_GRADS.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn count_frozen_skip() {
    FROZEN_SKIPPED.fetch_add(1, Ordering::Relaxed);
}

pub fn snapshot() -> Work {
    Work {
        weight_grads: WEIGHT_GRADS.load(Ordering::Relaxed),
        frozen_weight_grads_skipped: FROZEN_SKIPPED.load(Ordering::Relaxed),
    }
}

pub fn reset() {
    WEIGHT_GRADS.store(0, Ordering::Relaxed);
    FROZEN_SKIPPED.store(0, Ordering::Relaxed);
}
