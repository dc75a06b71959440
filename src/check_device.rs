//! `basis check-device`: the trainer's checks on a device (the device against
//! the CPU, a few GRPO steps, the update step's throughput), one JSON line
//! each on stdout; see `basis_trainer::device_check`. Exit code 1 when a check
//! fails.

use anyhow::{bail, Result};
use basis_trainer::device_check::{self, CheckConfig, DEFAULT_SHAPE};
use clap::Args;

#[derive(Args)]
pub struct CheckDeviceArgs {
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, default_value = "auto")]
    device: String,
    /// A tiny model and batch instead of the default model's shape (seconds).
    #[arg(long)]
    small: bool,
    /// Throughput batches as SEQUENCESxTOKENS (default: 4x512,16x512 on a GPU,
    /// 1x256 on the CPU).
    #[arg(long, value_delimiter = ',')]
    batches: Vec<String>,
    /// Timed steps per throughput measurement.
    #[arg(long, default_value_t = 3, value_parser = crate::at_least_one)]
    steps: usize,
    /// The device's peak f32 TFLOP/s, for MFU (e.g. 67 for an H200's FP32 cores).
    #[arg(long)]
    peak_tflops: Option<f64>,
}

pub fn run_check_device(a: CheckDeviceArgs) -> Result<()> {
    use std::io::Write;
    let device = crate::train::device(&a.device)?;
    let gpu = !matches!(device, basis_model::Device::Cpu);
    let shapes: Vec<(usize, usize)> = if !a.batches.is_empty() {
        a.batches
            .iter()
            .map(|b| {
                let (n, t) = b.split_once('x').ok_or_else(|| {
                    anyhow::anyhow!("`{b}`: expected SEQUENCESxTOKENS, e.g. 4x512")
                })?;
                Ok((n.trim().parse()?, t.trim().parse()?))
            })
            .collect::<Result<_>>()?
    } else if a.small {
        vec![(2, 32)]
    } else if gpu {
        vec![(4, 512), (16, 512)]
    } else {
        vec![(1, 256)]
    };
    let cfg = CheckConfig {
        shape: if a.small {
            Default::default()
        } else {
            DEFAULT_SHAPE
        },
        shapes,
        steps: a.steps.max(1),
        peak_flops: a.peak_tflops.map(|t| t * 1e12),
    };
    let mut failed = Vec::new();
    let mut out = std::io::stdout().lock();
    device_check::run(&device, &cfg, &mut |v| {
        if v["ok"] == false {
            failed.push(v["check"].as_str().unwrap_or("?").to_string());
        }
        let _ = writeln!(out, "{v}");
    })?;
    if !failed.is_empty() {
        bail!("failed: {}", failed.join(", "));
    }
    Ok(())
}
