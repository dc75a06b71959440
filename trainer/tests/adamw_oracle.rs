//! The trainer's optimizer step (gradient-norm clipping, AdamW, the warmup +
//! cosine schedule) equals PyTorch's `clip_grad_norm_`, `torch.optim.AdamW`
//! and `LambdaLR` on the same parameters and gradients, step after step
//! (`reference/adamw_reference.py` made `reference/adamw.json`).

use std::collections::HashMap;

use basis_model::tiny::{write_random_model, TinySpec};
use basis_model::{Device, LanguageModel, LoraConfig, Precision, Tensor};
use basis_trainer::policy::{Accumulated, Policy, PolicyConfig};
use serde_json::Value;

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn the_optimizer_step_matches_pytorch() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/adamw.json");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let c = &r["config"];
    let dir = tempfile::tempdir().unwrap();
    write_random_model(dir.path(), &TinySpec::default(), 1).unwrap();
    let lm = LanguageModel::load(dir.path(), Precision::F32, &Device::Cpu).unwrap();
    let cfg = PolicyConfig {
        lora: Some(LoraConfig::new(1, 2.0, &["q_proj"])),
        lr: c["lr"].as_f64().unwrap(),
        weight_decay: c["weight_decay"].as_f64().unwrap(),
        betas: (
            c["betas"][0].as_f64().unwrap(),
            c["betas"][1].as_f64().unwrap(),
        ),
        eps: c["eps"].as_f64().unwrap(),
        max_grad_norm: c["max_grad_norm"].as_f64().unwrap(),
        warmup_steps: c["warmup_steps"].as_u64().unwrap() as usize,
        total_steps: c["total_steps"].as_u64().unwrap() as usize,
    };
    let mut policy = Policy::from_model(lm, cfg, 0).unwrap();
    let names: Vec<String> = r["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    let shapes: Vec<Vec<usize>> = r["shapes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s.as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect()
        })
        .collect();
    assert_eq!(
        policy
            .vars()
            .iter()
            .map(|(n, _)| n.clone())
            .collect::<Vec<_>>(),
        names
    );
    let tensor = |v: &Value, i: usize| {
        Tensor::from_vec(floats(v), shapes[i].as_slice(), &Device::Cpu).unwrap()
    };
    let initial: HashMap<String, Tensor> = (0..names.len())
        .map(|i| (names[i].clone(), tensor(&r["initial"][i], i)))
        .collect();
    policy.restore(&initial).unwrap();

    for (step, want) in r["steps"].as_array().unwrap().iter().enumerate() {
        let grads = (0..names.len())
            .map(|i| Some(tensor(&want["grads"][i], i)))
            .collect();
        let report = policy.step(Accumulated::with_gradients(grads)).unwrap();
        assert!(!report.skipped_non_finite);
        let lr = want["lr"].as_f64().unwrap();
        assert!(
            (report.lr - lr).abs() < 1e-12,
            "step {step}: lr {} vs PyTorch {lr}",
            report.lr
        );
        let norm = want["grad_norm"].as_f64().unwrap();
        assert!(
            (report.grad_norm - norm).abs() < 1e-4 * norm,
            "step {step}: norm {} vs {norm}",
            report.grad_norm
        );
        for (i, (name, var)) in policy.vars().iter().enumerate() {
            let got: Vec<f32> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            let exp = floats(&want["params"][i]);
            let worst = got
                .iter()
                .zip(&exp)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 2e-6, "step {step}, {name}: off by {worst}");
        }
    }
}
