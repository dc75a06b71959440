//! Generation on the real default model: groups sharing one prefill, log-probs that
//! agree with teacher forcing, the prefix cache, streaming, stop strings,
//! cancellation, several requests decoded together; and bad input (broken files, long prompts) answered with errors.

mod support;

use std::cell::Cell;
use std::sync::OnceLock;

use basis_model::generate::completion_logprobs;
use basis_model::transformer::Logits;
use basis_model::{
    Device, Error, FinishReason, Flow, LanguageModel, Message, Precision, Request, SamplingParams,
    Tensor,
};
use support::default_model;

fn lm() -> &'static LanguageModel {
    static LM: OnceLock<LanguageModel> = OnceLock::new();
    LM.get_or_init(|| {
        LanguageModel::load(default_model(), Precision::Quantized, &Device::Cpu).unwrap()
    })
}

fn prompt(text: &str) -> Vec<u32> {
    let lm = lm();
    lm.chat_prompt(&[Message::user(text)], "").unwrap().ids
}

#[test]
fn a_greedy_group_shares_one_prefill_and_equals_single_generation() {
    let ids = prompt("Write a Python function that adds two numbers.");
    let params = SamplingParams {
        temperature: 0.0,
        max_tokens: 12,
        ..Default::default()
    };
    let one = lm()
        .generate(&ids, &params, 1, &mut |_| {}, &|| false)
        .unwrap();
    let four = lm()
        .generate(&ids, &params, 4, &mut |_| {}, &|| false)
        .unwrap();
    assert_eq!(four.completions.len(), 4);
    for c in &four.completions {
        assert_eq!(c.token_ids, one.completions[0].token_ids);
        assert_eq!(c.text, one.completions[0].text);
    }
}

/// A prompt prefilled in two parts (a cached prefix, then the rest) gives exactly
/// the logits of one pass into a fresh cache, wherever it is cut: one new token,
/// a few, most of it. (The serving cache holds f16 keys and values, so a pass
/// without a cache, in f32, differs in the last bits.)
#[test]
fn a_prefill_cut_anywhere_gives_the_logits_of_one_pass() {
    let ids = prompt("Name three sorting algorithms.");
    let n = ids.len();
    let model = &lm().model;
    let tensor = |s: &[u32]| Tensor::new(s, &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let logits = |t: Tensor| -> Vec<f32> { t.flatten_all().unwrap().to_vec1().unwrap() };
    let whole = logits(
        model
            .forward(&tensor(&ids), Some(&mut model.new_cache()), Logits::Last)
            .unwrap(),
    );
    for cut in [n - 1, n - 3, n - 8, 8, 1] {
        let mut cache = model.new_cache();
        model
            .forward(&tensor(&ids[..cut]), Some(&mut cache), Logits::Last)
            .unwrap();
        let rest = model
            .forward(&tensor(&ids[cut..]), Some(&mut cache), Logits::Last)
            .unwrap();
        assert!(logits(rest) == whole, "prompt of {n} cut at {cut}");
    }
}

/// The generator prefills a long prompt in chunks (to bound the memory held):
/// its first token and that token's log-prob are those of one whole pass.
#[test]
fn a_long_prompt_prefilled_in_chunks_starts_as_one_pass_does() {
    let ids = prompt(&"Sort these names and explain the order: Ada, Grace, Alan. ".repeat(90));
    assert!(ids.len() > 1024, "{} tokens: not several chunks", ids.len());
    let lm = LanguageModel::load(default_model(), Precision::Quantized, &Device::Cpu).unwrap();
    let whole = lm
        .model
        .forward(
            &Tensor::new(ids.as_slice(), &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap(),
            Some(&mut lm.model.new_cache()),
            Logits::Last,
        )
        .unwrap();
    let whole: Vec<f32> = whole.flatten_all().unwrap().to_vec1().unwrap();
    let best = (0..whole.len())
        .max_by(|&a, &b| whole[a].total_cmp(&whole[b]))
        .unwrap();
    let max = whole[best];
    let log_sum: f32 = whole.iter().map(|x| (x - max).exp()).sum::<f32>().ln();
    let params = SamplingParams {
        max_tokens: 1,
        ..Default::default()
    };
    let g = lm
        .generate(&ids, &params, 1, &mut |_| {}, &|| false)
        .unwrap();
    assert_eq!(g.reused_prompt_tokens, 0);
    let c = &g.completions[0];
    assert_eq!(c.token_ids, [best as u32]);
    assert!(
        (c.logprobs[0] - (-log_sum)).abs() < 1e-5,
        "{} vs {}",
        c.logprobs[0],
        -log_sum
    );
}

#[test]
fn sampled_logprobs_agree_with_teacher_forcing() {
    let ids = prompt("Name three sorting algorithms.");
    let params = SamplingParams {
        temperature: 0.8,
        seed: 11,
        max_tokens: 10,
        ..Default::default()
    };
    let gen = lm()
        .generate(&ids, &params, 3, &mut |_| {}, &|| false)
        .unwrap();
    let texts: Vec<&str> = gen.completions.iter().map(|c| c.text.as_str()).collect();
    assert!(
        texts.iter().any(|t| *t != texts[0]),
        "three samples at T=0.8 should not all be equal: {texts:?}"
    );
    for c in &gen.completions {
        assert_eq!(c.logprobs.len(), c.token_ids.len());
        let forced = completion_logprobs(&lm().model, &ids, &c.token_ids, 0.8).unwrap();
        for (a, b) in c.logprobs.iter().zip(&forced) {
            // On the quantized path activations are rounded to 8 bits per row (as
            // llama.cpp does, whose logits differ from f32 ones by up to ~0.8), so
            // the batched decode and one teacher-forced pass differ somewhat; the
            // f32 check below is the tight one.
            assert!((a - b).abs() < 0.5, "sampled {a} vs teacher-forced {b}");
            assert!(*a <= 0.0);
        }
    }
    // On the f32 path the two agree to float precision.
    let f32_lm = LanguageModel::load(default_model(), Precision::F32, &Device::Cpu).unwrap();
    let gen32 = f32_lm
        .generate(&ids, &params, 2, &mut |_| {}, &|| false)
        .unwrap();
    for c in &gen32.completions {
        let forced = completion_logprobs(&f32_lm.model, &ids, &c.token_ids, 0.8).unwrap();
        for (a, b) in c.logprobs.iter().zip(&forced) {
            assert!(
                (a - b).abs() < 2e-3,
                "sampled {a} vs teacher-forced {b} (f32)"
            );
        }
    }
    // The same seed gives the same samples.
    let again = lm()
        .generate(&ids, &params, 3, &mut |_| {}, &|| false)
        .unwrap();
    assert_eq!(again.completions, gen.completions);
    // Each sample draws from its own stream (seed + i): the group is what single
    // requests give, so callers may batch or split samples freely.
    for (i, c) in gen.completions.iter().enumerate() {
        let alone = SamplingParams {
            seed: params.seed + i as u64,
            ..params.clone()
        };
        let single = lm()
            .generate(&ids, &alone, 1, &mut |_| {}, &|| false)
            .unwrap();
        assert_eq!(&single.completions[0], c, "sample {i}");
    }
}

#[test]
fn a_shared_prefix_is_not_prefilled_twice() {
    let lm = LanguageModel::load(default_model(), Precision::Quantized, &Device::Cpu).unwrap();
    let system = "You are a careful code reviewer. Answer briefly and precisely, in one sentence.";
    let mk = |q: &str| {
        lm.chat_prompt(&[Message::system(system), Message::user(q)], "")
            .unwrap()
            .ids
    };
    let params = SamplingParams {
        temperature: 0.0,
        max_tokens: 6,
        ..Default::default()
    };
    let first = lm
        .generate(
            &mk("What is a race condition?"),
            &params,
            1,
            &mut |_| {},
            &|| false,
        )
        .unwrap();
    assert_eq!(first.reused_prompt_tokens, 0);
    let second_ids = mk("What is a deadlock?");
    let second = lm
        .generate(&second_ids, &params, 1, &mut |_| {}, &|| false)
        .unwrap();
    assert!(
        second.reused_prompt_tokens >= 20,
        "reused {}",
        second.reused_prompt_tokens
    );
    // Reuse changes nothing in the result.
    let fresh = LanguageModel::load(default_model(), Precision::Quantized, &Device::Cpu).unwrap();
    let cold = fresh
        .generate(&second_ids, &params, 1, &mut |_| {}, &|| false)
        .unwrap();
    assert_eq!(cold.reused_prompt_tokens, 0);
    assert_eq!(
        cold.completions[0].token_ids,
        second.completions[0].token_ids
    );
}

#[test]
fn streaming_stop_strings_and_cancellation() {
    let ids = prompt("Count from 1 to 20, separated by commas.");
    let params = SamplingParams {
        temperature: 0.0,
        max_tokens: 40,
        ..Default::default()
    };
    let mut streamed = String::new();
    let full = lm()
        .generate(
            &ids,
            &params,
            1,
            &mut |d| streamed.push_str(d.text),
            &|| false,
        )
        .unwrap();
    assert_eq!(streamed, full.completions[0].text);
    assert!(
        full.completions[0].text.contains('5'),
        "{:?}",
        full.completions[0].text
    );

    let stop = SamplingParams {
        stop: vec!["5".into()],
        ..params.clone()
    };
    let mut streamed = String::new();
    let stopped = lm()
        .generate(&ids, &stop, 1, &mut |d| streamed.push_str(d.text), &|| {
            false
        })
        .unwrap();
    let c = &stopped.completions[0];
    assert_eq!(c.finish_reason, FinishReason::Stop);
    assert!(!c.text.contains('5'));
    assert!(full.completions[0].text.starts_with(&c.text));
    assert_eq!(streamed, c.text);

    let polls = Cell::new(0);
    let cancelled = lm()
        .generate(&ids, &params, 1, &mut |_| {}, &|| {
            polls.set(polls.get() + 1);
            polls.get() > 3
        })
        .unwrap();
    let c = &cancelled.completions[0];
    assert_eq!(c.finish_reason, FinishReason::Cancelled);
    assert_eq!(
        c.token_ids.len(),
        3,
        "a poll after the prefill and one before each next token: three said go on"
    );
    // Cancelled during the prefill: not a single token.
    let cancelled = lm()
        .generate(&ids, &params, 1, &mut |_| {}, &|| true)
        .unwrap();
    let c = &cancelled.completions[0];
    assert_eq!(c.finish_reason, FinishReason::Cancelled);
    assert!(c.token_ids.is_empty(), "{:?}", c.token_ids);
}

#[test]
fn max_tokens_and_end_of_sequence_finish_reasons() {
    let ids = prompt("Say hello.");
    let short = SamplingParams {
        temperature: 0.0,
        max_tokens: 3,
        ..Default::default()
    };
    let g = lm()
        .generate(&ids, &short, 1, &mut |_| {}, &|| false)
        .unwrap();
    assert_eq!(g.completions[0].finish_reason, FinishReason::Length);
    assert_eq!(g.completions[0].token_ids.len(), 3);
    let long = SamplingParams {
        temperature: 0.0,
        max_tokens: 200,
        ..Default::default()
    };
    let g = lm()
        .generate(&ids, &long, 1, &mut |_| {}, &|| false)
        .unwrap();
    assert_eq!(
        g.completions[0].finish_reason,
        FinishReason::Eos,
        "{:?}",
        g.completions[0].text
    );
}

#[test]
fn a_prompt_longer_than_the_context_is_an_error() {
    let ids = vec![1604u32; 9000];
    let err = lm()
        .generate(&ids, &SamplingParams::default(), 1, &mut |_| {}, &|| false)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::PromptTooLong {
                prompt_tokens: 9000,
                context: 8192
            }
        ),
        "{err}"
    );
    let err = lm()
        .generate(
            &[60_000],
            &SamplingParams::default(),
            1,
            &mut |_| {},
            &|| false,
        )
        .unwrap_err();
    assert!(err.to_string().contains("outside the vocabulary"), "{err}");
}

/// Rewrites the default model's GGUF with changed metadata.
fn rewrite_gguf(
    dst: &std::path::Path,
    edit: impl Fn(&mut Vec<(String, candle_core::quantized::gguf_file::Value)>),
) {
    use candle_core::quantized::gguf_file;
    let mut f = std::fs::File::open(default_model()).unwrap();
    let content = gguf_file::Content::read(&mut f).unwrap();
    let mut meta: Vec<(String, gguf_file::Value)> = content.metadata.clone().into_iter().collect();
    edit(&mut meta);
    let names: Vec<String> = content.tensor_infos.keys().cloned().collect();
    let tensors: Vec<_> = names
        .iter()
        .map(|n| content.tensor(&mut f, n, &Device::Cpu).unwrap())
        .collect();
    let meta_refs: Vec<(&str, &gguf_file::Value)> =
        meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &candle_core::quantized::QTensor)> = names
        .iter()
        .map(String::as_str)
        .zip(tensors.iter())
        .collect();
    let mut out = std::fs::File::create(dst).unwrap();
    gguf_file::write(&mut out, &meta_refs, &tensor_refs).unwrap();
}

#[test]
fn broken_model_files_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let load = |p: &std::path::Path| {
        LanguageModel::load(p, Precision::Quantized, &Device::Cpu)
            .err()
            .expect("loading must fail")
            .to_string()
    };
    // Truncated: the first 5 MB of the real file.
    let bytes = std::fs::read(default_model()).unwrap();
    let truncated = dir.path().join("truncated.gguf");
    std::fs::write(&truncated, &bytes[..5 << 20]).unwrap();
    let err = load(&truncated);
    assert!(err.contains("truncated"), "{err}");
    // Corrupt: random bytes after a valid magic.
    let corrupt = dir.path().join("corrupt.gguf");
    let mut junk = b"GGUF\x03\0\0\0".to_vec();
    junk.extend((0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
    std::fs::write(&corrupt, &junk).unwrap();
    let err = load(&corrupt);
    assert!(err.contains("not a usable model file"), "{err}");
    // Not a GGUF at all.
    let text = dir.path().join("notes.gguf");
    std::fs::write(&text, "just some text that is long enough").unwrap();
    assert!(load(&text).contains("magic"));
    // A missing file.
    assert!(load(&dir.path().join("absent.gguf")).contains("no such file"));

    use candle_core::quantized::gguf_file::Value;
    let unknown = dir.path().join("unknown-arch.gguf");
    rewrite_gguf(&unknown, |meta| {
        for (k, v) in meta.iter_mut() {
            if k == "general.architecture" {
                *v = Value::String("mamba".into());
            }
        }
    });
    let err = load(&unknown);
    assert!(
        err.contains("unsupported model architecture `mamba`"),
        "{err}"
    );

    let no_tokenizer = dir.path().join("no-tokenizer.gguf");
    rewrite_gguf(&no_tokenizer, |meta| {
        meta.retain(|(k, _)| !k.starts_with("tokenizer."))
    });
    let err = load(&no_tokenizer);
    assert!(err.contains("no tokenizer data"), "{err}");
}

/// Requests of different lengths, sizes and sampling decoded together give what
/// each gives alone, bit for bit, whether the budget lets them all in at once
/// or admits them as others finish; a bad request fails alone.
#[test]
fn requests_decoded_together_equal_each_alone() {
    let lm = lm();
    let greedy = SamplingParams {
        max_tokens: 24,
        ..Default::default()
    };
    let sampled = SamplingParams {
        temperature: 0.8,
        seed: 5,
        max_tokens: 16,
        ..Default::default()
    };
    let stopped = SamplingParams {
        temperature: 0.7,
        seed: 9,
        max_tokens: 30,
        stop: vec!["\n".into()],
        ..Default::default()
    };
    let long = prompt(&"Explain what this list is for: apples, pears, plums. ".repeat(12));
    let asks: Vec<(Vec<u32>, &SamplingParams, usize)> = vec![
        (
            prompt("Write a Python function that adds two numbers."),
            &greedy,
            1,
        ),
        (long, &sampled, 3),
        (prompt("Name a prime number."), &stopped, 2),
        (Vec::new(), &greedy, 1),
        (prompt("Say hello."), &sampled, 1),
    ];
    let alone: Vec<_> = asks
        .iter()
        .map(|(ids, params, n)| {
            lm.generate_controlled(ids, params, *n, &mut |_| Flow::Continue, &|| false)
                .map(|g| g.completions)
        })
        .collect();
    assert!(alone[3].is_err(), "an empty prompt is refused");
    // Everything at once, then a budget that holds about one request at a time.
    for budget in [1 << 20, 600] {
        let mut streamed = vec![String::new(); asks.len()];
        let mut hearers: Vec<_> = streamed
            .iter_mut()
            .map(|s| {
                move |d: basis_model::TextDelta<'_>| {
                    if d.index == 0 {
                        s.push_str(d.text);
                    }
                    Flow::Continue
                }
            })
            .collect();
        let requests = asks
            .iter()
            .zip(hearers.iter_mut())
            .map(|((ids, params, n), hear)| Request {
                prompt: ids,
                params,
                n: *n,
                on_text: hear,
            })
            .collect();
        let mut done = Vec::new();
        lm.generate_many(requests, budget, &|| false, &mut |i, r| {
            done.push((i, r.map(|g| g.completions)))
        });
        drop(hearers);
        done.sort_by_key(|(i, _)| *i);
        assert_eq!(done.len(), asks.len(), "budget {budget}: each request once");
        for ((i, got), want) in done.into_iter().zip(&alone) {
            match (got, want) {
                (Ok(got), Ok(want)) => {
                    assert_eq!(&got, want, "budget {budget}, request {i}");
                    assert_eq!(streamed[i], got[0].text, "budget {budget}, request {i}");
                }
                (Err(_), Err(_)) => {}
                (got, want) => panic!("budget {budget}, request {i}: {got:?} vs {want:?}"),
            }
        }
    }
}

/// Cancelling [`LanguageModel::generate_many`] reports every request once: those
/// under way finish as cancelled, those not started have no tokens at all.
#[test]
fn cancelled_requests_are_each_reported() {
    let lm = lm();
    let params = SamplingParams {
        max_tokens: 40,
        ..Default::default()
    };
    let ids: Vec<Vec<u32>> = [
        "Count to ten.",
        "Name a colour.",
        "Say hello.",
        "Spell cat.",
    ]
    .iter()
    .map(|q| prompt(q))
    .collect();
    let heard = Cell::new(0usize);
    let mut hearers: Vec<_> = ids
        .iter()
        .map(|_| {
            |_: basis_model::TextDelta<'_>| {
                heard.set(heard.get() + 1);
                Flow::Continue
            }
        })
        .collect();
    let requests = ids
        .iter()
        .zip(hearers.iter_mut())
        .map(|(ids, hear)| Request {
            prompt: ids,
            params: &params,
            n: 1,
            on_text: hear,
        })
        .collect();
    let mut done = Vec::new();
    // Room for one request at a time: the later ones have not started when the
    // caller gives up.
    lm.generate_many(requests, 1, &|| heard.get() >= 3, &mut |i, r| {
        done.push((i, r.unwrap()))
    });
    done.sort_by_key(|(i, _)| *i);
    assert_eq!(
        done.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    let (_, first) = &done[0];
    assert_eq!(first.completions[0].finish_reason, FinishReason::Cancelled);
    assert!(!first.completions[0].token_ids.is_empty());
    for (i, g) in &done[1..] {
        assert_eq!(g.completions.len(), 1);
        assert_eq!(
            g.completions[0].finish_reason,
            FinishReason::Cancelled,
            "request {i}"
        );
        assert!(g.completions[0].token_ids.is_empty(), "request {i}");
    }
}
