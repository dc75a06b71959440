//! GRPO's advantages, ratios, clipped loss, k3 KL, clip fraction and the
//! gradient of the loss equal what PyTorch computes with TRL's formulas on the
//! same fixed inputs (`reference/grpo_reference.py` made `reference/grpo.json`):
//! given log-probs (f64), and from logits at a sampling temperature through the
//! trainer's own log-softmax op (f32), the gradient then the logits'.

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
    close_within(a, b, 1e-9, what)
}

fn close_within(a: f64, b: f64, tol: f64, what: &str) {
    assert!(
        (a - b).abs() <= tol + tol * b.abs(),
        "{what}: {a} vs PyTorch {b}"
    );
}

#[test]
fn grpo_matches_pytorch_with_trls_formulas() {
    let r = reference();
    let cases = r["cases"].as_array().unwrap();
    assert!(cases.iter().any(|c| c.get("logits").is_some()));
    for case in cases {
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
        let (old, refs) = (rows("old"), rows("ref"));
        let d = Device::Cpu;
        // The policy's log-probs: given (f64), or from logits as the trainer
        // takes them (f32, the fused log-softmax op, at the temperature).
        let logits = case.get("logits");
        let tol = if logits.is_some() { 2e-5 } else { 1e-9 };
        let dtype = if logits.is_some() {
            DType::F32
        } else {
            DType::F64
        };
        let mut vars = Vec::new();
        let mut logps = Vec::new();
        for i in 0..old.len() {
            match logits {
                None => {
                    let v = Var::from_slice(&rows("logp")[i], old[i].len(), &d).unwrap();
                    logps.push(v.as_tensor().clone());
                    vars.push(v);
                }
                Some(l) => {
                    let l: Vec<Vec<f64>> = l[i].as_array().unwrap().iter().map(floats).collect();
                    let (n, vocab) = (l.len(), l[0].len());
                    let flat: Vec<f32> = l.iter().flatten().map(|&x| x as f32).collect();
                    let v = Var::from_slice(&flat, (1, n, vocab), &d).unwrap();
                    let targets: Vec<u32> = floats(&case["targets"][i])
                        .iter()
                        .map(|&t| t as u32)
                        .collect();
                    let targets = Tensor::from_slice(&targets, (1, n), &d).unwrap();
                    let t = case["temperature"].as_f64().unwrap();
                    let scaled = (v.as_tensor() / t).unwrap();
                    let logp = basis_model::generate::token_logprobs(&scaled, &targets)
                        .unwrap()
                        .squeeze(0)
                        .unwrap();
                    for (k, (a, b)) in logp
                        .to_dtype(DType::F64)
                        .unwrap()
                        .to_vec1::<f64>()
                        .unwrap()
                        .iter()
                        .zip(floats(&case["logp"][i]))
                        .enumerate()
                    {
                        close_within(*a, b, 2e-6, &format!("logp[{i}][{k}] from logits"));
                    }
                    logps.push(logp);
                    vars.push(v);
                }
            }
        }
        let total: usize = logps.iter().map(|l| l.dim(0).unwrap()).sum();
        let mut sum = Tensor::zeros((), dtype, &d).unwrap();
        let mut parts = Vec::new();
        for (i, logp) in logps.iter().enumerate() {
            let o = Tensor::from_slice(&old[i], old[i].len(), &d)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let rf = Tensor::from_slice(&refs[i], refs[i].len(), &d)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let (l, p) = sequence_loss(logp, &o, Some(&rf), adv[i], &clip).unwrap();
            sum = (sum + l).unwrap();
            parts.push(p);
        }
        let loss = (sum / total as f64).unwrap();
        close_within(
            loss.to_dtype(DType::F64)
                .unwrap()
                .to_scalar::<f64>()
                .unwrap(),
            case["loss"].as_f64().unwrap(),
            tol,
            "loss",
        );
        let all = combine(&parts);
        close(
            all.clip_fraction,
            case["clip_fraction"].as_f64().unwrap(),
            "clip fraction",
        );
        // The ratio and KL are averaged in f32 (the metrics' precision).
        close_within(all.ratio, case["ratio"].as_f64().unwrap(), 1e-6, "ratio");
        close_within(all.kl, case["kl"].as_f64().unwrap(), tol.max(1e-7), "kl");
        let gs = loss.backward().unwrap();
        let grads = if logits.is_some() {
            "grad_logits"
        } else {
            "grad_logp"
        };
        for (i, v) in vars.iter().enumerate() {
            let got: Vec<f64> = gs
                .get(v.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_dtype(DType::F64)
                .unwrap()
                .to_vec1()
                .unwrap();
            let want: Vec<f64> = match case[grads][i].as_array().unwrap().first() {
                Some(Value::Array(_)) => case[grads][i]
                    .as_array()
                    .unwrap()
                    .iter()
                    .flat_map(floats)
                    .collect(),
                _ => floats(&case[grads][i]),
            };
            assert_eq!(got.len(), want.len());
            for (t, (a, b)) in got.iter().zip(&want).enumerate() {
                close_within(*a, *b, tol, &format!("d loss / d {grads}[{i}][{t}]"));
            }
        }
    }
}
