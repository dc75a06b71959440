//! A LoRA adapter written by Basis, loaded by PEFT (Python), gives the same logits as
//! Basis computes with it. The adapter is committed in
//! model/tests/reference/peft_adapter/ and PEFT's logits in peft_logits.json, both
//! made by model/tests/reference/peft_roundtrip.py (after this test writes the
//! adapter with BASIS_WRITE_FIXTURES=1).

mod support;

use basis_model::lora::{load_adapter, save_adapter};
use basis_model::{Device, LanguageModel, LoraConfig, Precision, Tensor};
use support::{default_model, ids, logits_all, reference, reference_dir};

/// The fixture adapter: seeded A, and B filled by a fixed formula so it is non-zero.
fn make_adapter(lm: &mut LanguageModel) {
    lm.model
        .add_lora(LoraConfig::new(4, 8.0, &["q_proj", "v_proj"]), 3)
        .unwrap();
    for (i, (name, var)) in lm.model.trainable_vars().iter().enumerate() {
        if name.ends_with("lora_B.weight") {
            let (r, c) = var.as_tensor().dims2().unwrap();
            let vals: Vec<f32> = (0..r * c)
                .map(|k| (((k * 7919 + i * 104729) % 1000) as f32 / 1000.0 - 0.5) * 0.08)
                .collect();
            var.set(&Tensor::from_vec(vals, (r, c), &Device::Cpu).unwrap())
                .unwrap();
        }
    }
}

#[test]
fn peft_loads_our_adapter_and_computes_the_same_logits() {
    let mut lm = LanguageModel::load(default_model(), Precision::F32, &Device::Cpu).unwrap();
    make_adapter(&mut lm);
    let fixture = reference_dir().join("peft_adapter");
    if std::env::var_os("BASIS_WRITE_FIXTURES").is_some() {
        save_adapter(&lm.model, &fixture).unwrap();
    }
    // The committed adapter is exactly what this code writes.
    let written = tempfile::tempdir().unwrap();
    save_adapter(&lm.model, written.path()).unwrap();
    let load = |dir: &std::path::Path| {
        candle_core::safetensors::load(dir.join("adapter_model.safetensors"), &Device::Cpu).unwrap()
    };
    let (ours, committed) = (load(written.path()), load(&fixture));
    assert_eq!(ours.len(), committed.len());
    for (name, t) in &ours {
        let c = &committed[name];
        let diff = (t - c)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(diff, 0.0, "{name} differs from the committed fixture");
    }

    // Load the committed adapter into a fresh model and compare with PEFT's logits.
    let mut fresh = LanguageModel::load(default_model(), Precision::F32, &Device::Cpu).unwrap();
    load_adapter(&mut fresh.model, &fixture).unwrap();
    let r = reference("peft_logits.json");
    let prompt = ids(&r["ids"]);
    let logits = logits_all(&fresh.model, &prompt);
    let probe = ids(&r["probe_ids"]);
    let mut worst = 0f32;
    for (pos, want) in r["logits"].as_array().unwrap().iter().enumerate() {
        for (&id, w) in probe.iter().zip(want.as_array().unwrap()) {
            worst = worst.max((logits[pos][id as usize] - w.as_f64().unwrap() as f32).abs());
        }
    }
    assert!(worst < 2e-3, "largest difference from PEFT: {worst}");
    // And the adapter really changes the model.
    let base = LanguageModel::load(default_model(), Precision::F32, &Device::Cpu).unwrap();
    let base_logits = logits_all(&base.model, &prompt);
    let moved = logits
        .iter()
        .flatten()
        .zip(base_logits.iter().flatten())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        moved > 0.05,
        "the adapter barely changes the logits ({moved})"
    );
}
