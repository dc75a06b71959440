//! Frozen weights cost no weight-gradient work: with LoRA, a backward pass
//! computes no gradient of any base weight (each dense linear's `dyᵀ·x` is
//! skipped, and counted); with full fine-tuning every linear's is computed.
//! Its own test binary: the counters are process-wide.

use basis_model::stats;
use basis_model::tiny::{write_random_model, TinySpec};
use basis_model::{Device, LanguageModel, LoraConfig, Precision};
use basis_trainer::policy::{Policy, PolicyConfig};

#[test]
fn lora_computes_no_base_weight_gradient_and_full_computes_all() {
    let dir = tempfile::tempdir().unwrap();
    let spec = TinySpec::default();
    write_random_model(dir.path(), &spec, 3).unwrap();
    let load = || LanguageModel::load(dir.path(), Precision::F32, &Device::Cpu).unwrap();
    // Seven projections a layer and the output layer (tied to the embeddings),
    // in two passes: the prompt, then the completions after it.
    let linears = 2 * (7 * spec.layers + 1) as u64;

    // One backward pass of a group's log-probs; the weight-gradient work it did.
    let work_of = |config: PolicyConfig| {
        let policy = Policy::from_model(load(), config, 1).unwrap();
        stats::reset();
        let logps = policy
            .group_logprobs(&[1, 2, 3], &[&[4, 5], &[6]], 1.0)
            .unwrap();
        let loss = (logps[0].sum_all().unwrap() + logps[1].sum_all().unwrap()).unwrap();
        let mut acc = policy.accumulator();
        policy.backward(&loss, &mut acc).unwrap();
        stats::snapshot()
    };

    let work = work_of(PolicyConfig {
        lora: Some(LoraConfig::new(4, 8.0, &["q_proj", "v_proj"])),
        ..PolicyConfig::default()
    });
    assert_eq!(
        work.weight_grads, 0,
        "LoRA computed base-weight gradients: {work:?}"
    );
    // The first layer's q/k/v read the embeddings, which need no gradient at
    // all: their backward does not run (in either pass), except for the two
    // with an adapter (q, v), whose backward computes the adapter's gradient.
    assert_eq!(
        work.frozen_weight_grads_skipped,
        linears - 2 * 3 + 2 * 2,
        "{work:?}"
    );

    let work = work_of(PolicyConfig {
        lora: None,
        ..PolicyConfig::default()
    });
    assert_eq!(work.weight_grads, linears, "{work:?}");
    assert_eq!(work.frozen_weight_grads_skipped, 0, "{work:?}");
}
