//! `basis_model::alloc::keep_freed_memory`: memory freed in a training
//! process is reused without being faulted in again, and given back on
//! request. A test of its own (no harness): it counts this process's page
//! faults and changes malloc's parameters, so it runs alone, on the main
//! thread (whose allocations come from glibc's main heap, as the trainer's do).

use basis_model::alloc::{give_back_freed_memory, keep_freed_memory, page_faults, resident_kb};

fn minor_faults() -> u64 {
    page_faults().expect("/proc/self/stat")
}

fn resident() -> u64 {
    resident_kb().expect("/proc/self/status")
}

/// Allocates, fills and frees `n` blocks of about 64 MiB, one at a time,
/// each a page bigger than the last (sizes that never repeat, as a
/// training step's do); returns the page faults it took.
fn churn(n: usize) -> u64 {
    let before = minor_faults();
    for i in 0..n {
        let block = vec![1u8; (64 << 20) + 4096 * i];
        std::hint::black_box(&block);
    }
    minor_faults() - before
}

const PAGES: u64 = (64 << 20) / 4096;

fn main() {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        eprintln!("keep_freed: glibc only, skipped");
        return;
    }
    // glibc's defaults: a block this large is its own mmap, unmapped when
    // freed, so every one faults all its pages in again.
    let fresh = churn(8);
    assert!(
        fresh >= 8 * PAGES,
        "{fresh} faults for 8 blocks with glibc's defaults"
    );

    assert!(keep_freed_memory(), "mallopt refused the parameters");
    churn(1);
    // Kept: the first block's pages are reused by every later one, whatever
    // its size; only the page each one adds is new.
    let kept = churn(8);
    assert!(
        kept < PAGES / 4,
        "{kept} faults for 8 blocks with freed memory kept"
    );

    // And handed back on request: the free 64 MiB leave the process.
    let before = resident();
    give_back_freed_memory();
    let after = resident();
    assert!(
        before - after.min(before) >= 60 << 10,
        "resident {before} kB before giving back, {after} kB after"
    );
    eprintln!("keep_freed: ok ({fresh} faults with glibc's defaults, {kept} kept; resident {before} -> {after} kB)");
}
