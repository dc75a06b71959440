//! A global allocator that keeps large freed blocks for reuse.
//!
//! candle allocates a fresh buffer for every op's output. With glibc, any block
//! of 32 MiB or more (and, until its threshold adapts, above 128 KiB) is a fresh
//! `mmap`: each use faults in and zeroes every page, and `munmap` returns them.
//! A training step makes the same large tensors (logits, activations and their
//! gradients) again and again; measured on the 135M model, a full fine-tuning
//! step took ~400 thousand page faults, a third of its time in the kernel.
//!
//! [`Recycling`] wraps the system allocator: a freed block of at least
//! [`LARGE`] bytes is kept in a free list of its exact size and alignment (the
//! list's links live in the freed blocks themselves, so keeping one allocates
//! nothing), and an allocation of that size takes it back. The lists are off
//! until [`keep_large_blocks`] gives them a budget (the trainer does; a
//! long-running server keeps the default and returns memory as usual); over the
//! budget, the least recently used sizes are given back to the system first.
//!
//! A binary opts in with
//! `#[global_allocator] static A: basis_model::alloc::Recycling = basis_model::alloc::Recycling;`

#![allow(unsafe_code)] // A global allocator; each unsafe block states why it is sound.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Blocks smaller than this go straight to the system allocator. glibc
/// reuses freed blocks below its mmap threshold itself, for any size, and the
/// threshold rises with the blocks it sees freed, to 32 MiB. Keeping smaller
/// blocks here (256 KiB until 2026-12-01) hid those frees from it: with the
/// lengths of a real update (a 1,500-token prompt and 6 answers of 384
/// tokens, `group_memory`), every block whose size did not come back was a
/// fresh `mmap`, and a part ran 1.4x slower; a 4x256-token LoRA step, whose
/// sizes all repeat, ran 10-18% faster (BENCHMARKS.md, "The blocks kept for
/// reuse").
pub const LARGE: usize = 32 << 20;
/// How many distinct block sizes are kept at once.
pub const SIZES: usize = 1024;

/// The budget in bytes (0: nothing is kept).
static BUDGET: AtomicUsize = AtomicUsize::new(0);

/// The free list of one block size.
#[derive(Clone, Copy)]
struct List {
    size: usize,
    align: usize,
    /// The first kept block (its first word points at the next one); 0 when empty.
    head: usize,
    count: usize,
    /// When a block of this size was last kept or taken (for eviction).
    used: u64,
}

const EMPTY: List = List {
    size: 0,
    align: 0,
    head: 0,
    count: 0,
    used: 0,
};

struct Table {
    lists: [List; SIZES],
    bytes: usize,
    clock: u64,
    hits: u64,
    misses: u64,
}

static TABLE: Mutex<Table> = Mutex::new(Table {
    lists: [EMPTY; SIZES],
    bytes: 0,
    clock: 0,
    hits: 0,
    misses: 0,
});

impl Table {
    /// The slot of a size: its list, or where a new one would go: the first
    /// empty list on its probe path, a never-used slot or one whose size has
    /// no block kept (open addressing; a slot never becomes unused again, so
    /// no path is cut; `None` when every list holds blocks).
    fn slot(&self, size: usize, align: usize) -> Option<usize> {
        let start = (size / 64).wrapping_mul(0x9E37_79B9_7F4A_7C15) % SIZES;
        let mut free = None;
        for i in (0..SIZES).map(|i| (start + i) % SIZES) {
            let l = &self.lists[i];
            if l.size == size && l.align == align {
                return Some(i);
            }
            if l.count == 0 && free.is_none() {
                free = Some(i);
            }
            if l.size == 0 {
                break;
            }
        }
        free
    }

    /// Pops a block of this size, if one is kept.
    fn pop(&mut self, size: usize, align: usize) -> Option<*mut u8> {
        let i = self.slot(size, align)?;
        let l = &mut self.lists[i];
        if l.size != size || l.head == 0 {
            return None;
        }
        let block = l.head as *mut u8;
        // SAFETY: a kept block is at least LARGE bytes, owned by the list, and
        // its first word was written by `push` (unaligned: an f32 buffer's
        // alignment is 4).
        l.head = unsafe { (block as *const usize).read_unaligned() };
        l.count -= 1;
        self.clock += 1;
        l.used = self.clock;
        self.bytes -= size;
        Some(block)
    }

    /// Keeps a freed block; false when it cannot be kept.
    fn push(&mut self, block: *mut u8, size: usize, align: usize) -> bool {
        let Some(i) = self.slot(size, align) else {
            return false;
        };
        self.clock += 1;
        let clock = self.clock;
        let l = &mut self.lists[i];
        if l.size != size || l.align != align {
            *l = List {
                size,
                align,
                ..EMPTY
            };
        }
        // SAFETY: the block is ours (just freed by its owner) and large enough
        // to hold a word, written unaligned whatever the block's alignment.
        unsafe { (block as *mut usize).write_unaligned(l.head) };
        l.head = block as usize;
        l.count += 1;
        l.used = clock;
        self.bytes += size;
        true
    }

    /// The blocks of the least recently used size, taken out of the table.
    fn evict_one(&mut self) -> Option<List> {
        let i = (0..SIZES)
            .filter(|&i| self.lists[i].count > 0)
            .min_by_key(|&i| self.lists[i].used)?;
        let l = self.lists[i];
        self.lists[i].head = 0;
        self.lists[i].count = 0;
        self.bytes -= l.size * l.count;
        Some(l)
    }
}

/// Gives every block of a list back to the system.
fn release(l: List) {
    let mut p = l.head;
    while p != 0 {
        // SAFETY: the list owns these blocks, each allocated by System with this
        // size and alignment; the next link is read before the block is freed.
        unsafe {
            let next = (p as *const usize).read_unaligned();
            System.dealloc(
                p as *mut u8,
                Layout::from_size_align_unchecked(l.size, l.align),
            );
            p = next;
        }
    }
}

/// Keeps up to `bytes` of freed large blocks for reuse (0 turns it off and
/// gives back what is kept).
pub fn keep_large_blocks(bytes: usize) {
    BUDGET.store(bytes, Ordering::Relaxed);
    loop {
        let evicted = {
            let mut t = TABLE.lock().unwrap_or_else(|e| e.into_inner());
            if t.bytes <= bytes {
                break;
            }
            t.evict_one()
        };
        match evicted {
            Some(l) => release(l),
            None => break,
        }
    }
}

/// Keeps nothing while it lives (what was kept is given back); dropping it
/// restores the budget it found. For work whose large blocks do not repeat in
/// size: decoding grows attention's buffers by a token at every step, so each
/// block it frees would be kept under a size that is never asked for again,
/// up to the whole budget (measured when blocks were kept from 256 KiB: a
/// group of 16 samples peaked at 7.5 GB with the trainer's budget, 2.4 GB
/// without).
#[must_use = "the budget comes back when the guard drops"]
pub struct Paused {
    budget: usize,
}

/// See [`Paused`].
pub fn pause() -> Paused {
    let budget = BUDGET.load(Ordering::Relaxed);
    keep_large_blocks(0);
    Paused { budget }
}

impl Drop for Paused {
    fn drop(&mut self) {
        keep_large_blocks(self.budget);
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
        let got = t.pop(layout.size(), layout.align());
        if got.is_some() {
            t.hits += 1;
        } else {
            t.misses += 1;
        }
        got
    }

    /// Keeps a freed block; false when it should go back to the system.
    fn keep(ptr: *mut u8, layout: Layout) -> bool {
        let budget = BUDGET.load(Ordering::Relaxed);
        if layout.size() < LARGE || layout.size() > budget {
            return false;
        }
        loop {
            let evicted = {
                let mut t = TABLE.lock().unwrap_or_else(|e| e.into_inner());
                if t.bytes + layout.size() <= budget {
                    return t.push(ptr, layout.size(), layout.align());
                }
                t.evict_one()
            };
            match evicted {
                // Freed outside the lock: System.dealloc may take its own locks.
                Some(l) => release(l),
                None => return false,
            }
        }
    }
}

// SAFETY: every block handed out comes from System with the same layout it is
// later freed with; a kept block is handed out at most once (it leaves its list
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

#[cfg(test)]
mod tests {
    use super::*;

    fn empty_table() -> Table {
        Table {
            lists: [EMPTY; SIZES],
            bytes: 0,
            clock: 0,
            hits: 0,
            misses: 0,
        }
    }

    #[test]
    fn kept_blocks_are_reused_by_size_and_evicted_over_budget() {
        // The table is process-wide; this test drives it through its own
        // functions only, on blocks it allocates from System.
        let mut t = empty_table();
        let layout = |n| Layout::from_size_align(n, 64).unwrap();
        // SAFETY: blocks from System, freed below with the same layouts.
        let (a, b, c) = unsafe {
            (
                System.alloc(layout(LARGE)),
                System.alloc(layout(LARGE)),
                System.alloc(layout(2 * LARGE)),
            )
        };
        assert!(t.push(a, LARGE, 64) && t.push(b, LARGE, 64) && t.push(c, 2 * LARGE, 64));
        assert_eq!(t.bytes, 4 * LARGE);
        assert_eq!(t.pop(LARGE, 64), Some(b));
        assert_eq!(t.pop(3 * LARGE, 64), None);
        assert_eq!(t.pop(LARGE, 32), None);
        // The least recently used size goes first: `a`'s was just used.
        let lru = t.evict_one().unwrap();
        assert_eq!((lru.size, lru.count), (2 * LARGE, 1));
        release(lru);
        assert_eq!(t.pop(LARGE, 64), Some(a));
        assert_eq!(t.bytes, 0);
        // SAFETY: a and b came from System with these layouts.
        unsafe {
            System.dealloc(a, layout(LARGE));
            System.dealloc(b, layout(LARGE));
        }
    }

    #[test]
    fn sizes_given_back_free_their_slots_for_new_sizes() {
        // A long run meets more distinct sizes than the table has slots (every
        // update part has lengths of its own); once a size's blocks are given
        // back, its slot must take a new size, or nothing is kept again.
        let mut t = empty_table();
        let layout = |n| Layout::from_size_align(n, 8).unwrap();
        let size = |k: usize| LARGE + 64 * k;
        for k in 0..2 * SIZES {
            // SAFETY: freed by `release` with the same layout.
            let block = unsafe { System.alloc(layout(size(k))) };
            assert!(t.push(block, size(k), 8), "size {k} was not kept");
            if k >= 4 {
                release(t.evict_one().unwrap());
            }
        }
        // The four newest sizes are kept, each once, and come back.
        assert_eq!(t.bytes, (2 * SIZES - 4..2 * SIZES).map(size).sum::<usize>());
        for k in 2 * SIZES - 4..2 * SIZES {
            let block = t.pop(size(k), 8).expect("kept");
            assert_eq!(t.pop(size(k), 8), None);
            // SAFETY: allocated above with this layout.
            unsafe { System.dealloc(block, layout(size(k))) };
        }
        assert_eq!(t.bytes, 0);
    }

    #[test]
    fn a_pause_keeps_nothing_and_restores_the_budget() {
        keep_large_blocks(64 * LARGE);
        {
            let _p = pause();
            assert_eq!(BUDGET.load(Ordering::Relaxed), 0);
            assert!(Recycling::take(Layout::from_size_align(LARGE, 8).unwrap()).is_none());
        }
        assert_eq!(BUDGET.load(Ordering::Relaxed), 64 * LARGE);
        keep_large_blocks(0);
    }
}
