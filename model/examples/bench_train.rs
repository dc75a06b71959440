//! Training-path throughput: forward + backward + AdamW on the f32 model, full
//! fine-tuning, on random token ids. Prints one JSON line. Used by
//! bench/run_benchmarks.sh beside the same step in PyTorch.
//!
//! cargo run --release -p basis-model --example bench_train -- MODEL.gguf BATCH SEQ STEPS

use basis_model::{Device, LanguageModel, Logits, Precision, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    basis_model::configure_threads();
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        return Err("usage: bench_train MODEL BATCH SEQ STEPS".into());
    }
    let (batch, seq, steps): (usize, usize, usize) =
        (args[2].parse()?, args[3].parse()?, args[4].parse()?);
    let device = Device::Cpu;
    let mut lm = LanguageModel::load(std::path::Path::new(&args[1]), Precision::F32, &device)?;
    lm.model.train_all_weights()?;
    let vars = lm
        .model
        .trainable_vars()
        .iter()
        .map(|(_, v)| v.clone())
        .collect();
    let mut opt = AdamW::new(
        vars,
        ParamsAdamW {
            lr: 1e-5,
            ..Default::default()
        },
    )?;
    let vocab = lm.model.config().vocab_size as u32;
    let ids: Vec<u32> = (0..batch * (seq + 1))
        .map(|i| (i as u32).wrapping_mul(2654435761) % vocab)
        .collect();
    let all = Tensor::from_vec(ids, (batch, seq + 1), &device)?;
    let input = all.narrow(1, 0, seq)?;
    let target = all.narrow(1, 1, seq)?;
    let mut times = Vec::new();
    for step in 0..=steps {
        let start = std::time::Instant::now();
        let logits = lm.model.forward(&input, None, Logits::All)?;
        let loss = basis_model::generate::token_logprobs(&logits, &target)?
            .mean_all()?
            .neg()?;
        opt.backward_step(&loss)?;
        let secs = start.elapsed().as_secs_f64();
        eprintln!(
            "step {step}: loss {:.4}, {secs:.2}s",
            loss.to_scalar::<f32>()?
        );
        // The first step warms allocators and caches; it is not counted.
        if step > 0 {
            times.push(secs);
        }
    }
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    #[allow(clippy::print_stdout)]
    {
        println!(
            "{{\"impl\": \"basis\", \"batch\": {batch}, \"seq\": {seq}, \"steps\": {steps}, \"secs_per_step\": {mean:.4}, \"tok_per_s\": {:.2}}}",
            (batch * seq) as f64 / mean
        );
    }
    Ok(())
}
