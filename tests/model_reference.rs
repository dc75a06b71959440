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
    // Same weights, same math: only float summation order differs.
    assert!(
        worst < 2e-3,
        "largest logit difference from transformers: {worst}"
    );
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
    assert!(
        share >= 0.98,
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
