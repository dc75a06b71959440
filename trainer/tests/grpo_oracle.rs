//! GRPO's advantages, ratios, clipped loss, k3 KL, clip fraction and the
//! gradient of the loss equal what PyTorch computes with TRL's formulas on the
//! same fixed inputs (`reference/grpo_reference.py` made `reference/grpo.json`).

use basis_trainer::grpo::{advantages, combine, sequence_loss, Clip};
use candle_core::{DType, Device, Tensor, Var};
use serde_json::Value;

fn reference() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/grpo.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn close(a: f64, b: f64, what: &str) {
    assert!(
        (a - b).abs() <= 1e-9 + 1e-9 * b.abs(),
        "{what}: {a} vs PyTorch {b}"
    );
}

#[test]
fn grpo_matches_pytorch_with_trls_formulas() {
    let r = reference();
    for case in r["cases"].as_array().unwrap() {
        let g = case["group_size"].as_u64().unwrap() as usize;
        let scale = case["scale_by_std"].as_bool().unwrap();
        let clip = Clip {
            eps_low: case["eps_low"].as_f64().unwrap(),
            eps_high: case["eps_high"].as_f64().unwrap(),
            beta: case["beta"].as_f64().unwrap(),
        };
        let rewards = floats(&case["rewards"]);
        let adv: Vec<f64> = rewards
            .chunks(g)
            .flat_map(|group| advantages(group, scale))
            .collect();
        for (i, (a, b)) in adv.iter().zip(floats(&case["advantages"])).enumerate() {
            close(*a, b, &format!("advantage {i} (scale {scale})"));
        }
        let rows =
            |k: &str| -> Vec<Vec<f64>> { case[k].as_array().unwrap().iter().map(floats).collect() };
        let (old, logp, refs, grads) = (rows("old"), rows("logp"), rows("ref"), rows("grad_logp"));
        let total: usize = logp.iter().map(Vec::len).sum();
        let d = Device::Cpu;
        let mut sum = Tensor::zeros((), DType::F64, &d).unwrap();
        let mut vars = Vec::new();
        let mut parts = Vec::new();
        for i in 0..logp.len() {
            let v = Var::from_slice(&logp[i], logp[i].len(), &d).unwrap();
            let o = Tensor::from_slice(&old[i], old[i].len(), &d).unwrap();
            let rf = Tensor::from_slice(&refs[i], refs[i].len(), &d).unwrap();
            let (l, p) = sequence_loss(v.as_tensor(), &o, Some(&rf), adv[i], &clip).unwrap();
            sum = (sum + l).unwrap();
            parts.push(p);
            vars.push(v);
        }
        let loss = (sum / total as f64).unwrap();
        close(
            loss.to_scalar::<f64>().unwrap(),
            case["loss"].as_f64().unwrap(),
            "loss",
        );
        let all = combine(&parts);
        close(
            all.clip_fraction,
            case["clip_fraction"].as_f64().unwrap(),
            "clip fraction",
        );
        close(all.kl, case["kl"].as_f64().unwrap(), "kl");
        let gs = loss.backward().unwrap();
        for (i, v) in vars.iter().enumerate() {
            let got: Vec<f64> = gs.get(v.as_tensor()).unwrap().to_vec1().unwrap();
            for (t, (a, b)) in got.iter().zip(&grads[i]).enumerate() {
                close(*a, *b, &format!("d loss / d logp[{i}][{t}]"));
            }
        }
    }
}
