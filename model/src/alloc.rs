//! Keeping the memory a training process frees, for its next step.
//!
//! candle allocates a fresh buffer for every op's output, and a training step
//! frees gigabytes of activations and gradients that the next part of the
//! step asks for again. By default glibc hands such memory back to the
//! kernel: a block of 32 MiB or more (at first, of 128 KiB or more) is an
//! `mmap` of its own, unmapped when freed, and the top of the heap is trimmed
//! whenever more than its threshold is free there. Every page asked for again
//! is then a fresh page fault that zeroes it, and on the virtual machines we
//! measure on a fault is expensive: the update of one group of long answers
//! spent over half of its time zeroing pages in the kernel (BENCHMARKS.md,
//! "Freed memory kept").
//!
//! [`keep_freed_memory`] tells glibc to serve every block from its heap and
//! never trim it: the pages a training process has touched stay its own, and
//! glibc reuses them for blocks of any size (it merges neighbouring free
//! blocks, which a cache of exact sizes cannot: this module kept freed blocks
//! by size until 2026-12-01, and that cost memory and time wherever sizes did
//! not repeat). The peak is what the process used at once, as before; what
//! it frees is not given back until [`give_back_freed_memory`]. A server
//! does not call it; it caps the arenas instead ([`limit_arenas`]). With
//! another C library these do nothing.
//!
//! What it does not reach: a thread other than the main one allocates from an
//! arena of its own, whose heaps hold at most 64 MiB, so a larger block there
//! is still an `mmap` of its own. The trainer's forward and backward run on the
//! main thread, and a step after the first faults almost nothing in (0.11
//! million page faults against 2.8 million in the first, BENCHMARKS.md).

/// Serves every allocation from glibc's heap (no `mmap` of its own for a
/// large block) and never trims the heap, unless `BASIS_KEEP_FREED=0`.
/// Returns whether it did.
pub fn keep_freed_memory() -> bool {
    if std::env::var("BASIS_KEEP_FREED").is_ok_and(|v| v.trim() == "0") {
        return false;
    }
    glibc::keep()
}

/// Caps glibc's malloc arenas at `n` (unless `MALLOC_ARENA_MAX` is set): a
/// server's threads (tokio's blocking pool parses, runs the model and writes
/// the feedback store) each take an arena of their own, up to eight per core,
/// and an arena keeps what its threads freed for them alone. Under #29's
/// 40,000-message fuzz two arenas instead of sixteen took `basis lsp`'s peak
/// from 1,060-1,118 MB to 732-871 MB (BENCHMARKS.md). Call it before threads
/// start. Returns whether it did.
pub fn limit_arenas(n: u16) -> bool {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return false;
    }
    glibc::limit_arenas(n)
}

/// Hands the heap's free pages back to the kernel (after a training run,
/// before work that needs memory for something else).
pub fn give_back_freed_memory() {
    glibc::give_back();
}

/// Minor page faults of this process so far (Linux's /proc/self/stat), for
/// benchmarks and tests that count what reuse saves; `None` elsewhere.
pub fn page_faults() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; it ends at the last ')'.
    let after_name = stat.get(stat.rfind(')')? + 2..)?;
    after_name.split(' ').nth(7)?.parse().ok()
}

/// Resident memory of this process in kB (Linux's /proc/self/status,
/// `VmRSS`); `None` elsewhere.
pub fn resident_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    #![allow(unsafe_code)] // Two calls into glibc's malloc; each states why it is sound.

    use std::os::raw::c_int;

    extern "C" {
        fn mallopt(param: c_int, value: c_int) -> c_int;
        fn malloc_trim(pad: usize) -> c_int;
    }

    /// mallopt(3): the largest free space at the top of the heap before it is
    /// trimmed; -1 turns trimming off.
    const M_TRIM_THRESHOLD: c_int = -1;
    /// mallopt(3): how many blocks may be their own `mmap` at once; 0 serves
    /// every block from the heap.
    const M_MMAP_MAX: c_int = -4;

    pub fn keep() -> bool {
        // SAFETY: mallopt only sets malloc's parameters, under malloc's own
        // lock; blocks already allocated keep working whatever they are.
        unsafe { mallopt(M_MMAP_MAX, 0) == 1 && mallopt(M_TRIM_THRESHOLD, -1) == 1 }
    }

    pub fn give_back() {
        // SAFETY: malloc_trim releases only free memory, under malloc's lock.
        unsafe { malloc_trim(0) };
    }

    /// mallopt(3): the most arenas malloc makes.
    const M_ARENA_MAX: c_int = -8;

    pub fn limit_arenas(n: u16) -> bool {
        // SAFETY: as in `keep`.
        unsafe { mallopt(M_ARENA_MAX, c_int::from(n)) == 1 }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod glibc {
    pub fn keep() -> bool {
        false
    }

    pub fn give_back() {}

    pub fn limit_arenas(_: u16) -> bool {
        false
    }
}
