//! A global allocator that keeps large freed blocks for reuse.
//!
//! candle allocates a fresh buffer for every op's output. With glibc, any block
//! above 32 MiB (and, until its threshold adapts, above 128 KiB) is a fresh
//! `mmap`: each use faults in and zeroes every page, and `munmap` returns them.
//! A training step makes the same large tensors (logits, activations and their
//! gradients) again and again; measured on the 135M model, a full fine-tuning
//! step took ~400 thousand page faults, a third of its time in the kernel.
//!
//! [`Recycling`] wraps the system allocator: a freed block of at least
//! [`LARGE`] bytes goes to a small table instead of back to the system, and an
//! allocation of the same size and alignment takes it from there. The table is
//! off until [`keep_large_blocks`] gives it a budget (the trainer does; a
//! long-running server keeps the default and returns memory as usual), holds at
//! most [`SLOTS`] blocks, and evicts the oldest when full or over budget.
//!
//! A binary opts in with
//! `#[global_allocator] static A: basis_model::alloc::Recycling = basis_model::alloc::Recycling;`

#![allow(unsafe_code)] // A global allocator; each unsafe block states why it is sound.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Blocks smaller than this go straight to the system allocator.
pub const LARGE: usize = 256 * 1024;
/// How many freed blocks the table holds.
pub const SLOTS: usize = 4096;

/// The budget in bytes (0: the table is off).
static BUDGET: AtomicUsize = AtomicUsize::new(0);

#[derive(Clone, Copy)]
struct Slot {
    ptr: usize,
    size: usize,
    align: usize,
    /// When it was put back (for eviction: the oldest goes first).
    stamp: u64,
}

struct Table {
    slots: [Option<Slot>; SLOTS],
    bytes: usize,
    clock: u64,
    hits: u64,
    misses: u64,
}

static TABLE: Mutex<Table> = Mutex::new(Table {
    slots: [None; SLOTS],
    bytes: 0,
    clock: 0,
    hits: 0,
    misses: 0,
});

/// Keeps up to `bytes` of freed large blocks for reuse (0 turns it off and
/// frees what is kept).
pub fn keep_large_blocks(bytes: usize) {
    BUDGET.store(bytes, Ordering::Relaxed);
    if bytes == 0 {
        let mut t = TABLE.lock().unwrap_or_else(|e| e.into_inner());
        for s in t.slots.iter_mut() {
            if let Some(slot) = s.take() {
                // SAFETY: the block came from System with this layout.
                unsafe {
                    System.dealloc(
                        slot.ptr as *mut u8,
                        Layout::from_size_align_unchecked(slot.size, slot.align),
                    )
                };
            }
        }
        t.bytes = 0;
    }
}

/// [`keep_large_blocks`] with `default_bytes`, or with the MiB that
/// `BASIS_RECYCLE_MB` says (0 turns reuse off). Returns the budget in bytes.
pub fn configure(default_bytes: usize) -> usize {
    let bytes = std::env::var("BASIS_RECYCLE_MB")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map_or(default_bytes, |mb| mb << 20);
    keep_large_blocks(bytes);
    bytes
}

/// Reuses and fresh allocations of large blocks since the start.
pub fn counts() -> (u64, u64) {
    let t = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    (t.hits, t.misses)
}

/// The recycling allocator (see the module docs).
pub struct Recycling;

impl Recycling {
    fn take(layout: Layout) -> Option<*mut u8> {
        if layout.size() < LARGE || BUDGET.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let mut t = TABLE.lock().unwrap_or_else(|e| e.into_inner());
        let found = t
            .slots
            .iter()
            .position(|s| s.is_some_and(|s| s.size == layout.size() && s.align == layout.align()));
        match found {
            Some(i) => {
                let slot = t.slots[i].take().expect("found");
                t.bytes -= slot.size;
                t.hits += 1;
                Some(slot.ptr as *mut u8)
            }
            None => {
                t.misses += 1;
                None
            }
        }
    }

    /// Keeps a freed block; false when it should go back to the system.
    fn keep(ptr: *mut u8, layout: Layout) -> bool {
        let budget = BUDGET.load(Ordering::Relaxed);
        if layout.size() < LARGE || budget == 0 || layout.size() > budget {
            return false;
        }
        // No allocation in here: evicted blocks wait on the stack.
        let mut evicted = [None::<Slot>; SLOTS];
        let mut n_evicted = 0;
        {
            let mut t = TABLE.lock().unwrap_or_else(|e| e.into_inner());
            // Make room: the oldest blocks go until this one fits.
            loop {
                let full = t.slots.iter().all(Option::is_some);
                if !full && t.bytes + layout.size() <= budget {
                    break;
                }
                let oldest = t
                    .slots
                    .iter()
                    .enumerate()
                    .filter_map(|(i, s)| s.map(|s| (i, s.stamp)))
                    .min_by_key(|&(_, stamp)| stamp)
                    .map(|(i, _)| i);
                let Some(i) = oldest else { break };
                let slot = t.slots[i].take().expect("present");
                t.bytes -= slot.size;
                evicted[n_evicted] = Some(slot);
                n_evicted += 1;
            }
            t.clock += 1;
            let stamp = t.clock;
            let free = t
                .slots
                .iter()
                .position(Option::is_none)
                .expect("room was made");
            t.slots[free] = Some(Slot {
                ptr: ptr as usize,
                size: layout.size(),
                align: layout.align(),
                stamp,
            });
            t.bytes += layout.size();
        }
        for slot in evicted.into_iter().flatten() {
            // SAFETY: the block came from System with this layout.
            unsafe {
                System.dealloc(
                    slot.ptr as *mut u8,
                    Layout::from_size_align_unchecked(slot.size, slot.align),
                )
            };
        }
        true
    }
}

// SAFETY: every block handed out comes from System with the same layout it is
// later freed with; a kept block is handed out at most once (it leaves the table
// under the lock).
unsafe impl GlobalAlloc for Recycling {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match Self::take(layout) {
            Some(p) => p,
            None => System.alloc(layout),
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match Self::take(layout) {
            Some(p) => {
                std::ptr::write_bytes(p, 0, layout.size());
                p
            }
            None => System.alloc_zeroed(layout),
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !Self::keep(ptr, layout) {
            System.dealloc(ptr, layout)
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if BUDGET.load(Ordering::Relaxed) == 0 {
            return System.realloc(ptr, layout, new_size);
        }
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        let new = self.alloc(new_layout);
        if !new.is_null() {
            std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
            self.dealloc(ptr, layout);
        }
        new
    }
}
