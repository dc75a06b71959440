//! The model against independent references (committed in model/tests/reference,
//! with the script that made them): llama.cpp's tokenizer, transformers' f32
//! logits, llama.cpp's quantized top-1 tokens and greedy continuations.

mod support;

use basis_model::{Device, LanguageModel, Precision, SamplingParams};
use support::{default_model, ids, logits_all, reference};

fn load(precision: Precision) -> LanguageModel {
    LanguageModel::load(default_model(), precision, &Device::Cpu).expect("the default model loads")
}

fn argmax(xs: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best as u32
}

#[test]
fn tokenizer_ids_equal_llama_cpp() {
    let tok = basis_model::load_tokenizer(default_model()).unwrap();
    let r = reference("tokenizer.json");
    let cases = r["cases"].as_array().unwrap();
    assert!(cases.len() >= 25);
    let mut wrong = Vec::new();
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let got = tok.encode(text).unwrap();
        if got != ids(&case["ids"]) {
            wrong.push(format!(
                "{text:?}: got {got:?}, llama.cpp {:?}",
                ids(&case["ids"])
            ));
        }
        // Decoding gives the text back (byte-level BPE is lossless).
        assert_eq!(tok.decode(&got).unwrap(), text);
    }
    assert!(
        wrong.is_empty(),
        "{} of {} differ:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}

#[test]
fn f32_path_matches_transformers_logits() {
    let lm = load(Precision::F32);
    let r = reference("logits_f32.json");
    let prompt = ids(&r["ids"]);
    assert_eq!(
        lm.tokenizer.encode(r["text"].as_str().unwrap()).unwrap(),
        prompt
    );
    let logits = logits_all(&lm.model, &prompt);
    let mut worst = 0f32;
    for pos in r["positions"].as_array().unwrap() {
        let row = &logits[pos["pos"].as_u64().unwrap() as usize];
        let top_ids = ids(&pos["top10_ids"]);
        for (k, (&id, want)) in top_ids
            .iter()
            .zip(pos["top10_logits"].as_array().unwrap())
            .enumerate()
        {
            let diff = (row[id as usize] - want.as_f64().unwrap() as f32).abs();
            worst = worst.max(diff);
            if k == 0 {
                assert_eq!(argmax(row), id, "top-1 at position {}", pos["pos"]);
            }
        }
        for (id, want) in pos["first32"].as_array().unwrap().iter().enumerate() {
            worst = worst.max((row[id] - want.as_f64().unwrap() as f32).abs());
        }
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let lse = max + row.iter().map(|x| (x - max).exp()).sum::<f32>().ln();
        worst = worst.max((lse - pos["logsumexp"].as_f64().unwrap() as f32).abs());
    }
    eprintln!("largest logit difference from transformers: {worst}");
    // Same weights, same math: only float summation order differs.
    assert!(
        worst < 2e-3,
        "largest logit difference from transformers: {worst}"
    );
}

/// The largest difference of `row` from a reference position's logits (its
/// top 10, the first 32 ids and the logsumexp), after checking its top-1.
fn logit_difference(row: &[f32], pos: &serde_json::Value) -> f32 {
    let mut worst = 0f32;
    let top_ids = ids(&pos["top10_ids"]);
    assert_eq!(argmax(row), top_ids[0], "top-1 at position {}", pos["pos"]);
    for (&id, want) in top_ids.iter().zip(pos["top10_logits"].as_array().unwrap()) {
        worst = worst.max((row[id as usize] - want.as_f64().unwrap() as f32).abs());
    }
    for (id, want) in pos["first32"].as_array().unwrap().iter().enumerate() {
        worst = worst.max((row[id] - want.as_f64().unwrap() as f32).abs());
    }
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = max + row.iter().map(|x| (x - max).exp()).sum::<f32>().ln();
    worst.max((lse - pos["logsumexp"].as_f64().unwrap() as f32).abs())
}

/// Attention at prompt lengths 1, 17, 1,500 and 4,096 against transformers
/// (the last position's logits): cold prefills, a prefill after cached
/// positions, and a decoding step over a cache of 4,095. With `BASIS_KERNELS` this checks one kernel path;
/// `every_kernel_path_matches_the_long_reference` runs it on each.
#[test]
fn long_prompts_match_transformers_logits() {
    let lm = load(Precision::F32);
    let r = reference("logits_long_f32.json");
    let prompt = ids(&r["ids"]);
    let text = lm.tokenizer.encode(r["text"].as_str().unwrap()).unwrap();
    assert_eq!(&text[..prompt.len()], &prompt[..]);
    let last = |ids: &[u32], cache: Option<&mut basis_model::kv_cache::KvCache>| -> Vec<f32> {
        let t = basis_model::Tensor::new(ids, lm.model.device())
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        lm.model
            .forward(&t, cache, basis_model::Logits::Last)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    };
    let positions = r["positions"].as_array().unwrap();
    let at = |p: usize| {
        positions
            .iter()
            .find(|x| x["pos"].as_u64() == Some(p as u64))
            .unwrap()
    };
    let mut worst = 0f32;
    let mut check = |what: String, row: Vec<f32>, p: usize| {
        let d = logit_difference(&row, at(p));
        eprintln!("{what}: largest logit difference {d}");
        worst = worst.max(d);
    };
    // Cold prefills of 1 and 17 tokens.
    for n in [1, 17] {
        check(format!("{n} tokens"), last(&prompt[..n], None), n - 1);
    }
    // 1,500 tokens into a cache, the next 2,595 after them (a prefill over
    // cached positions), then the 4,096th as a decoding step.
    let end = prompt.len() - 1;
    let mut cache = lm.model.new_cache();
    check(
        "1500 tokens".into(),
        last(&prompt[..1500], Some(&mut cache)),
        1499,
    );
    last(&prompt[1500..end], Some(&mut cache));
    let step = last(&prompt[end..], Some(&mut cache));
    check(format!("a decoding step after {end} tokens"), step, end);
    assert!(
        worst < 2e-3,
        "largest logit difference from transformers: {worst}"
    );
}

/// Runs the test `name` of this binary once per kernel path this CPU has, each in
/// its own process (the path is chosen once per process), and returns each path's
/// stderr. Every run must pass and print `ran`.
fn on_every_kernel_path(name: &str, ran: &str) -> Vec<(basis_model::isa::Isa, String)> {
    let mut runs = Vec::new();
    for isa in basis_model::isa::Isa::available() {
        let kernels = format!("{isa:?}").to_lowercase();
        #[allow(clippy::disallowed_methods)] // this test binary itself, on one path
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--nocapture"])
            .env("BASIS_KERNELS", &kernels)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        eprintln!("BASIS_KERNELS={kernels}:\n{text}");
        assert!(out.status.success(), "BASIS_KERNELS={kernels} failed");
        assert!(
            text.contains(ran),
            "BASIS_KERNELS={kernels}: the test did not run"
        );
        runs.push((isa, text));
    }
    runs
}

/// [`long_prompts_match_transformers_logits`] on every kernel path this CPU runs.
#[test]
fn every_kernel_path_matches_the_long_reference() {
    on_every_kernel_path(
        "long_prompts_match_transformers_logits",
        "a decoding step after 4095 tokens",
    );
}

/// [`quantized_path_agrees_with_llama_cpp_top1`] on every kernel path this CPU
/// runs. The AVX2 and AVX-512 paths compute the same integer sums and the same
/// float steps after them (`cpu_quant.rs`, attention.rs), so their logits are
/// the same bits; the portable path is candle's own kernels and only agrees.
#[test]
fn every_kernel_path_agrees_with_llama_cpp() {
    let runs = on_every_kernel_path(
        "quantized_path_agrees_with_llama_cpp_top1",
        "top-1 agreement with llama.cpp",
    );
    let digest = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("logits digest: "))
            .expect("the test prints its logits' digest")
            .to_string()
    };
    let simd: Vec<_> = runs
        .iter()
        .filter(|(isa, _)| *isa >= basis_model::isa::Isa::Avx2)
        .map(|(isa, text)| (isa, digest(text)))
        .collect();
    for pair in simd.windows(2) {
        assert_eq!(
            pair[0].1, pair[1].1,
            "{:?} and {:?} differ",
            pair[0].0, pair[1].0
        );
    }
}

#[test]
fn quantized_path_agrees_with_llama_cpp_top1() {
    let lm = load(Precision::Quantized);
    let r = &reference("llamacpp.json")["teacher_forced"];
    let text_ids = ids(&r["ids"]);
    assert_eq!(
        lm.tokenizer.encode(r["text"].as_str().unwrap()).unwrap(),
        text_ids
    );
    let logits = logits_all(&lm.model, &text_ids);
    // FNV-1a over every logit's bits, for `every_kernel_path_agrees_with_llama_cpp`.
    let digest = logits
        .iter()
        .flatten()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, v| {
            (h ^ u64::from(v.to_bits())).wrapping_mul(0x100_0000_01b3)
        });
    eprintln!("logits digest: {digest:016x}");
    let want = ids(&r["top1"]);
    let same = logits
        .iter()
        .zip(&want)
        .filter(|(row, &w)| argmax(row) == w)
        .count();
    let share = same as f64 / want.len() as f64;
    eprintln!(
        "top-1 agreement with llama.cpp: {same}/{} = {share:.3}",
        want.len()
    );
    // Where the two differ, llama.cpp itself saw a near tie: the 8-bit
    // activations of both quantized paths turn a last-bit difference upstream
    // into a different pick between tokens a tenth of a logit apart. (The f32
    // transformers model agrees with llama.cpp's top-1 at 97.7% of these
    // positions, by the same token.)
    let margins = r["top1_margins"].as_array().unwrap();
    for (p, (row, &w)) in logits.iter().zip(&want).enumerate() {
        let margin = margins[p].as_f64().unwrap();
        assert!(
            argmax(row) == w || margin < 0.2,
            "position {p}: top-1 {} here, {w} in llama.cpp, whose margin is {margin}",
            argmax(row)
        );
    }
    assert!(
        share >= 0.97,
        "top-1 agreement with llama.cpp: {same}/{} = {share:.3}",
        want.len()
    );
}

#[test]
fn greedy_continuations_equal_llama_cpp_where_confident() {
    let lm = load(Precision::Quantized);
    let r = reference("llamacpp.json");
    let eos = r["eos_id"].as_u64().unwrap() as u32;
    let params = SamplingParams {
        temperature: 0.0,
        max_tokens: 24,
        ..Default::default()
    };
    let mut compared = 0;
    for case in r["greedy"].as_array().unwrap() {
        let prompt = ids(&case["prompt_ids"]);
        let want = ids(&case["greedy_ids"]);
        // Compare up to the first near-tie (where summation order may flip the
        // choice) and up to the end of sequence.
        let margins: Vec<f64> = case["margins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_f64().unwrap())
            .collect();
        // (0.3: the AVX2 path with one-pass attention flips "The capital of France
        // is"'s sixth token, where llama.cpp's margin is 0.27 — within what 8-bit
        // activations and an f16 KV cache on llama.cpp's side move a logit.)
        let confident = margins.iter().position(|&m| m < 0.3).unwrap_or(want.len());
        let upto = match case["first_eos_index"].as_u64() {
            Some(e) => confident.min(e as usize + 1),
            None => confident,
        };
        let gen = lm
            .generate(&prompt, &params, 1, &mut |_| {}, &|| false)
            .unwrap();
        let got = &gen.completions[0].token_ids;
        assert_eq!(
            &got[..upto.min(got.len())],
            &want[..upto],
            "prompt {:?}",
            case["prompt"]
        );
        if want[..upto].contains(&eos) {
            assert_eq!(
                got.len(),
                upto,
                "generation stops at the end-of-sequence token"
            );
        }
        compared += upto;
    }
    assert!(compared >= 40, "only {compared} confident tokens compared");
}
