//! The trainer's update step, timed: forward, backward and the trainer's AdamW
//! (`basis_trainer::policy::Policy`) on the f32 model, over BATCH sequences of
//! SEQ pseudo-random tokens, the loss the mean negative log-likelihood of every
//! next token. MODE is `full` (every weight) or `lora` (rank 8, alpha 16, on
//! q/k/v/o, the trainer's default). Prints one JSON line; used by
//! bench/run_benchmarks.sh beside the same step in PyTorch (and PEFT for LoRA).
//!
//! cargo run --release -p basis-trainer --example bench_update -- MODE MODEL.gguf BATCH SEQ STEPS

use basis_model::{Device, LanguageModel, Logits, Precision, Tensor};
use basis_trainer::policy::{Policy, PolicyConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    basis_model::configure_threads();
    // As `basis train` does (BASIS_KEEP_FREED=0 leaves glibc's defaults).
    basis_model::alloc::keep_freed_memory();
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 || !matches!(args[1].as_str(), "full" | "lora") {
        return Err("usage: bench_update full|lora MODEL BATCH SEQ STEPS".into());
    }
    let mode = args[1].as_str();
    let (batch, seq, steps): (usize, usize, usize) =
        (args[3].parse()?, args[4].parse()?, args[5].parse()?);
    let device = Device::Cpu;
    let lm = LanguageModel::load(std::path::Path::new(&args[2]), Precision::F32, &device)?;
    let cfg = PolicyConfig {
        lora: if mode == "full" {
            None
        } else {
            PolicyConfig::default().lora
        },
        lr: 1e-5,
        warmup_steps: 0,
        total_steps: 1_000_000,
        // PyTorch's AdamW defaults, with no clipping (the peer does not clip).
        weight_decay: 0.01,
        max_grad_norm: f64::INFINITY,
        ..PolicyConfig::default()
    };
    let mut policy = Policy::from_model(lm, cfg, 0)?;
    let vocab = policy.lm.model.config().vocab_size as u32;
    let ids: Vec<u32> = (0..batch * (seq + 1))
        .map(|i| (i as u32).wrapping_mul(2654435761) % vocab)
        .collect();
    let all = Tensor::from_vec(ids, (batch, seq + 1), &device)?;
    let input = all.narrow(1, 0, seq)?;
    let target = all.narrow(1, 1, seq)?;
    let mut times = Vec::new();
    // Seconds in the forward, backward and optimizer, over the counted steps.
    let mut parts = [0f64; 3];
    let mut first_loss = None;
    basis_model::stats::reset();
    for step in 0..=steps {
        let start = std::time::Instant::now();
        let faults = basis_model::alloc::page_faults();
        let logits = policy.lm.model.forward(&input, None, Logits::All)?;
        let loss = basis_model::generate::token_logprobs(&logits, &target)?
            .mean_all()?
            .neg()?;
        let t_fwd = start.elapsed().as_secs_f64();
        let mut acc = policy.accumulator();
        policy.backward(&loss, &mut acc)?;
        let t_bwd = start.elapsed().as_secs_f64();
        policy.step(acc)?;
        let secs = start.elapsed().as_secs_f64();
        if step > 0 {
            parts[0] += t_fwd;
            parts[1] += t_bwd - t_fwd;
            parts[2] += secs - t_bwd;
        }
        let value = loss.to_scalar::<f32>()?;
        first_loss.get_or_insert(value);
        let faults = basis_model::alloc::page_faults()
            .zip(faults)
            .map_or(String::new(), |(now, then)| {
                format!(", {} page faults", now - then)
            });
        eprintln!("step {step}: loss {value:.4}, {secs:.2}s{faults}");
        // The first step warms allocators and caches; it is not counted.
        if step > 0 {
            times.push(secs);
        }
    }
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    let work = basis_model::stats::snapshot();
    #[allow(clippy::print_stdout)]
    {
        println!(
            "{{\"impl\": \"basis\", \"what\": \"train\", \"mode\": \"{mode}\", \"batch\": {batch}, \"seq\": {seq}, \"steps\": {steps}, \
             \"secs_per_step\": {mean:.4}, \"tok_per_s\": {:.2}, \"first_loss\": {:.4}, \"trainable\": {}, \
             \"weight_grads\": {}, \"frozen_weight_grads_skipped\": {}, \"secs_forward\": {:.4}, \"secs_backward\": {:.4}, \"secs_optimizer\": {:.4}}}",
            (batch * seq) as f64 / mean,
            first_loss.unwrap_or(f32::NAN),
            policy.trainable_parameters(),
            work.weight_grads,
            work.frozen_weight_grads_skipped,
            parts[0] / steps as f64,
            parts[1] / steps as f64,
            parts[2] / steps as f64,
        );
    }
    Ok(())
}
