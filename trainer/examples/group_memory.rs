//! The memory of one group's update, as `basis train` runs it: a PROMPT-token
//! prompt, then ROWS completions of LEN tokens in parts of PER rows after it,
//! each part's forward and backward accumulated into one LoRA step (the
//! trainer's default adapter), twice. Prints the resident memory after each
//! part, with its seconds and page faults; run it under `/usr/bin/time -f %M`
//! for the peak. KEEP 0 leaves glibc's defaults; anything else keeps freed
//! memory for reuse, as `basis train` does (`basis_model::alloc`; until
//! 2026-12-01 this was a budget in MiB for blocks kept by size, and 4096 what
//! `basis train` kept).
//!
//! cargo run --release -p basis-trainer --example group_memory -- MODEL.gguf PROMPT ROWS LEN PER KEEP

use basis_model::{Device, LanguageModel, Precision};
use basis_trainer::policy::{Policy, PolicyConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    basis_model::configure_threads();
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 7 {
        return Err("usage: group_memory MODEL PROMPT ROWS LEN PER KEEP".into());
    }
    let n = |i: usize| a[i].parse::<usize>();
    let (prompt, rows, len, per, keep) = (n(2)?, n(3)?, n(4)?, n(5)?.max(1), n(6)?);
    if keep != 0 {
        basis_model::alloc::keep_freed_memory();
    }
    let lm = LanguageModel::load(std::path::Path::new(&a[1]), Precision::F32, &Device::Cpu)?;
    let mut policy = Policy::from_model(lm, PolicyConfig::default(), 0)?;
    let p: Vec<u32> = (0..prompt as u32).map(|i| 100 + i % 3000).collect();
    let completions: Vec<Vec<u32>> = (0..rows as u32)
        .map(|r| (0..len as u32).map(|i| 200 + (i * 7 + r) % 3000).collect())
        .collect();
    for round in 0..2 {
        let mut acc = policy.accumulator();
        for (part, chunk) in completions.chunks(per).enumerate() {
            let start = std::time::Instant::now();
            let faults = basis_model::alloc::page_faults().unwrap_or(0);
            let refs: Vec<&[u32]> = chunk.iter().map(Vec::as_slice).collect();
            let mut loss = None;
            for lp in policy.group_logprobs(&p, &refs, 0.7)? {
                let s = lp.sum_all()?;
                loss = Some(match loss {
                    Some(l) => (l + s)?,
                    None => s,
                });
            }
            if let Some(loss) = loss {
                policy.backward(&loss, &mut acc)?;
            }
            let faults = basis_model::alloc::page_faults().unwrap_or(0) - faults;
            eprintln!(
                "step {round}, part {part}: VmRSS: {} kB, {:.1} s, {faults} page faults",
                basis_model::alloc::resident_kb().unwrap_or(0),
                start.elapsed().as_secs_f64()
            );
        }
        policy.step(acc)?;
    }
    Ok(())
}
