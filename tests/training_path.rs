//! The training path: every trainable weight receives a gradient (candle's fused
//! kernels would let `backward()` succeed while leaving weights without one), and
//! LoRA adapters behave as PEFT's do.

mod support;

use std::collections::HashMap;

use basis_model::lora::{load_adapter, save_adapter};
use basis_model::transformer::LORA_TARGETS;
use basis_model::{Device, LanguageModel, Logits, LoraConfig, OpMode, Precision, Tensor};
use support::default_model;

fn f32_model() -> LanguageModel {
    LanguageModel::load(default_model(), Precision::F32, &Device::Cpu).unwrap()
}

/// A batch of two sequences; inputs and targets are shifted views of one grid, as a
/// trainer makes them.
fn ids() -> (Tensor, Tensor) {
    let ids: Vec<u32> = vec![
        1604, 3987, 46477, 24, 94, 727, 472, 1620, 14362, 260, //
        504, 2988, 314, 42, 216, 36, 2, 198, 1780, 314,
    ];
    let t = Tensor::from_vec(ids, (2, 10), &Device::Cpu).unwrap();
    (t.narrow(1, 0, 9).unwrap(), t.narrow(1, 1, 9).unwrap())
}

fn loss(lm: &LanguageModel) -> Tensor {
    let (input, target) = ids();
    let logits = lm.model.forward(&input, None, Logits::All).unwrap();
    basis_model::generate::token_logprobs(&logits, &target)
        .unwrap()
        .mean_all()
        .unwrap()
        .neg()
        .unwrap()
}

/// Names of trainable variables whose gradient is missing or all zero.
fn without_gradient(lm: &LanguageModel) -> Vec<String> {
    let grads = loss(lm).backward().unwrap();
    lm.model
        .trainable_vars()
        .iter()
        .filter(|(_, var)| match grads.get(var.as_tensor()) {
            None => true,
            Some(g) => {
                g.abs()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
                    == 0.0
            }
        })
        .map(|(name, _)| name.clone())
        .collect()
}

#[test]
fn every_weight_gets_a_gradient_in_full_fine_tuning() {
    let mut lm = f32_model();
    lm.model.train_all_weights().unwrap();
    let n = lm.model.trainable_vars().len();
    // 30 layers × (2 norms + 7 projections) + final norm + tied embeddings.
    assert_eq!(n, 30 * 9 + 2);
    let missing = without_gradient(&lm);
    assert!(
        missing.is_empty(),
        "no gradient for {} of {n}: {missing:?}",
        missing.len()
    );

    // The same model on candle's fused kernels: backward() succeeds, but the norms
    // get nothing. This is the trap the differentiable path exists for.
    lm.model.set_op_mode(OpMode::Fused);
    let missing = without_gradient(&lm);
    assert!(
        missing
            .iter()
            .any(|n| n.ends_with("input_layernorm.weight")),
        "{missing:?}"
    );
}

#[test]
fn every_lora_matrix_gets_a_gradient() {
    let mut lm = f32_model();
    lm.model
        .add_lora(LoraConfig::new(4, 8.0, &LORA_TARGETS), 1)
        .unwrap();
    // B starts at zero, so A's gradient is zero until B moves: give B values.
    for (name, var) in lm.model.trainable_vars() {
        if name.ends_with("lora_B.weight") {
            var.set(
                &var.as_tensor()
                    .ones_like()
                    .unwrap()
                    .affine(0.01, 0.0)
                    .unwrap(),
            )
            .unwrap();
        }
    }
    assert_eq!(lm.model.trainable_vars().len(), 30 * 7 * 2);
    let missing = without_gradient(&lm);
    assert!(missing.is_empty(), "no gradient for {missing:?}");
}

fn logits(lm: &LanguageModel) -> Vec<f32> {
    let (input, _) = ids();
    lm.model
        .forward(&input, None, Logits::All)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn lora_with_zero_b_is_the_base_model_and_save_load_is_identical() {
    let mut lm = f32_model();
    let base = logits(&lm);
    let cfg = LoraConfig::new(8, 16.0, &["q_proj", "v_proj", "down_proj"]);
    lm.model.add_lora(cfg, 7).unwrap();
    assert_eq!(
        logits(&lm),
        base,
        "B = 0 must leave the outputs exactly unchanged"
    );

    for (i, (name, var)) in lm.model.trainable_vars().iter().enumerate() {
        if name.ends_with("lora_B.weight") {
            let (r, c) = var.as_tensor().dims2().unwrap();
            let vals: Vec<f32> = (0..r * c)
                .map(|k| ((k * 31 + i) % 17) as f32 / 400.0 - 0.02)
                .collect();
            var.set(&Tensor::from_vec(vals, (r, c), &Device::Cpu).unwrap())
                .unwrap();
        }
    }
    let adapted = logits(&lm);
    assert_ne!(adapted, base);

    let dir = tempfile::tempdir().unwrap();
    save_adapter(&lm.model, dir.path()).unwrap();
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["r"], 8);
    let tensors: HashMap<String, Tensor> =
        candle_core::safetensors::load(dir.path().join("adapter_model.safetensors"), &Device::Cpu)
            .unwrap();
    assert!(tensors.contains_key("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"));
    assert_eq!(tensors.len(), 30 * 3 * 2);

    let mut fresh = f32_model();
    load_adapter(&mut fresh.model, dir.path()).unwrap();
    assert_eq!(
        logits(&fresh),
        adapted,
        "save → load must give identical logits"
    );
}

#[test]
fn broken_adapters_are_refused_with_a_reason() {
    let mut lm = f32_model();
    let dir = tempfile::tempdir().unwrap();
    let err = load_adapter(&mut lm.model, dir.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("adapter_config.json"), "{err}");
    std::fs::write(
        dir.path().join("adapter_config.json"),
        r#"{"r": 4, "lora_alpha": 8, "target_modules": ["qkv"], "peft_type": "LORA"}"#,
    )
    .unwrap();
    candle_core::safetensors::save(
        &HashMap::<String, Tensor>::new(),
        dir.path().join("adapter_model.safetensors"),
    )
    .unwrap();
    let err = load_adapter(&mut lm.model, dir.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown target module `qkv`"), "{err}");
}
