//! The parsers on real answers of the default model (see `answers/README.md`):
//! what they read from each, and that no prefix of any answer (a truncated
//! generation) makes them panic.

use std::path::Path;

use basis_code::Language;
use basis_skills::diff::FileChange;
use basis_skills::{edit, reproduce, review, testgen};
use serde_json::Value;

fn answers(skill: &str) -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/answers/smollm2-135m.jsonl");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["skill"] == skill)
        .map(|v| v["answer"].as_str().unwrap().to_string())
        .collect()
}

fn pricing() -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/py_shop/shop/pricing.py");
    std::fs::read_to_string(p).unwrap()
}

fn prefixes(answer: &str) -> impl Iterator<Item = &str> {
    answer.char_indices().map(move |(i, _)| &answer[..i])
}

#[test]
fn edit_answers_become_indented_replacements() {
    let text = pricing();
    let sel = "    if quantity > BULK_QUANTITY:\n        total = total * 0.9\n";
    let start = text.find(sel).unwrap();
    let input = edit::Input {
        path: "shop/pricing.py".into(),
        text: text.clone(),
        start_byte: start,
        end_byte: start + sel.len(),
        instruction: "give the discount from BULK_QUANTITY items on".into(),
        related: Vec::new(),
    };
    let all = answers("edit");
    assert_eq!(all.len(), 4);
    for answer in &all {
        let r = edit::parse(answer, &input).expect("every one of these answers holds code");
        // Indented like the selection, ending in a newline like it.
        assert!(
            r.lines().all(|l| l.is_empty() || l.starts_with("    ")),
            "{r}"
        );
        assert!(r.ends_with('\n'));
        assert!(!r.contains("```"), "{r}");
        for p in prefixes(answer) {
            let _ = edit::parse(p, &input);
        }
    }
    // The one from the final prompt: a one-function answer, re-indented.
    assert!(edit::parse(&all[3], &input)
        .unwrap()
        .starts_with("    def bulk_price(quantity, quantity):\n"));
}

#[test]
fn testgen_answers_become_runnable_test_files() {
    let text = pricing();
    let input = testgen::Input {
        path: "shop/pricing.py".into(),
        text: text.clone(),
        symbol: "clamp_quantity".into(),
        related: Vec::new(),
    };
    let f = testgen::find_function(Language::Python, &text, "clamp_quantity").unwrap();
    for answer in answers("testgen") {
        let t = testgen::parse(&answer, Language::Python, &input, &f).unwrap();
        // The model forgot the import: it is added.
        assert!(
            t.starts_with("from shop.pricing import clamp_quantity\n"),
            "{t}"
        );
        assert!(t.contains("class TestPricing(unittest.TestCase)"));
        for p in prefixes(&answer) {
            let _ = testgen::parse(p, Language::Python, &input, &f);
        }
    }
}

#[test]
fn reproduce_answers_become_test_files() {
    for answer in answers("reproduce") {
        let t = reproduce::parse(&answer, Language::Python).unwrap();
        assert!(t.starts_with("import unittest\n"), "{t}");
        assert!(!t.contains("```"));
        for p in prefixes(&answer) {
            let _ = reproduce::parse(p, Language::Python);
            let _ = reproduce::parse(p, Language::Rust);
        }
    }
}

#[test]
fn review_answers_give_verdicts_and_summaries() {
    let text = pricing();
    let input = review::Input {
        intent: "Give the bulk discount from ten items on".into(),
        changes: vec![FileChange {
            path: "shop/pricing.py".into(),
            old: text.clone(),
            new: text.replace("quantity > BULK_QUANTITY", "quantity >= BULK_QUANTITY"),
        }],
    };
    let all = answers("review");
    assert_eq!(all.len(), 4);
    // The first prompt did not start the answer with the verdict: none was given.
    let first = review::parse(&all[0], &input);
    assert_eq!(first.verdict, None);
    assert!(first.summary.starts_with("The code is not correct."));
    for answer in &all[1..] {
        let r = review::parse(answer, &input);
        assert_eq!(r.verdict, Some(true), "{answer}");
        assert!(r.comments.is_empty());
        // A rambling answer is summarised with each sentence once.
        assert!(
            r.summary
                .matches("The total is 10 * 10 = 100 items.")
                .count()
                <= 1
        );
    }
    for answer in &all {
        for p in prefixes(answer) {
            let _ = review::parse(p, &input);
        }
    }
}
