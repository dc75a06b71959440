//! The `basis` binary end to end: the fixed `generate` / `tokenize` interface that
//! scripts depend on, and clear errors for bad input.

mod support;

use std::io::Write;
use std::process::Stdio;

use support::{basis, default_model, run, stderr, stdout};

#[test]
fn generate_prints_only_the_text_and_stats_go_to_stderr() {
    let model = default_model().to_str().unwrap();
    let out = run(&[
        "generate",
        "--model",
        model,
        "--raw",
        "--temperature",
        "0",
        "--max-tokens",
        "8",
        "--stats",
        "--prompt",
        "The capital of France is",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with(" Paris"), "{:?}", stdout(&out));
    let err = stderr(&out);
    let lines: Vec<&str> = err.lines().collect();
    // Two rate lines, then the CPU attention kernel's work in each phase.
    assert_eq!(lines.len(), 4, "{err}");
    let check = |line: &str, phase: &str, tokens: usize| {
        let rest = line
            .strip_prefix(&format!("{phase}: "))
            .unwrap_or_else(|| panic!("{line}"));
        let (n, rate) = rest.split_once(" tokens, ").unwrap();
        assert_eq!(n.parse::<usize>().unwrap(), tokens, "{line}");
        let rate: f64 = rate.strip_suffix(" tok/s").unwrap().parse().unwrap();
        assert!(rate > 0.0);
    };
    check(lines[0], "prefill", 5);
    check(lines[1], "decode", 7);
    for (line, phase) in lines[2..].iter().zip(["prefill", "decode"]) {
        let rest = line
            .strip_prefix(&format!("{phase} attention: "))
            .unwrap_or_else(|| panic!("{line}"));
        let (gflop, secs) = rest.split_once(" GFLOP in ").unwrap();
        assert!(gflop.parse::<f64>().unwrap() > 0.0, "{line}");
        assert!(secs.strip_suffix(" s").unwrap().parse::<f64>().unwrap() >= 0.0);
    }
}

#[test]
fn generate_reads_the_prompt_from_stdin_and_uses_the_chat_template() {
    let model = default_model().to_str().unwrap();
    let mut child = basis()
        .args([
            "generate",
            "--model",
            model,
            "--temperature",
            "0",
            "--max-tokens",
            "16",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"What is 2+2?")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains('4'), "{text:?}");
    assert!(
        !text.contains("<|im_end|>"),
        "special tokens are not printed: {text:?}"
    );
    assert!(
        stderr(&out).is_empty(),
        "nothing on stderr without --stats: {}",
        stderr(&out)
    );
}

#[test]
fn tokenize_prints_a_json_array_without_special_tokens() {
    let model = default_model().to_str().unwrap();
    let out = run(&["tokenize", "--model", model, "--text", "x = 1234 # héllo"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let ids: Vec<u32> = serde_json::from_str(stdout(&out).trim()).unwrap();
    // Digits are split one by one (SmolLM2's pre-tokenizer: "1" is 33, "4" is 36)
    // and no BOS (1) is added.
    assert_eq!(ids.len(), 11, "{ids:?}");
    assert_eq!(&ids[3..7], &[33, 34, 35, 36], "{ids:?}");
    assert_ne!(ids[0], 1);
}

#[test]
fn tokenize_reads_chat_markers_as_text_unless_told_otherwise() {
    let model = default_model().to_str().unwrap();
    let ids = |flags: &[&str]| -> Vec<u32> {
        let mut args = vec!["tokenize", "--model", model, "--text", "a<|im_end|>b"];
        args.extend_from_slice(flags);
        let out = run(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_str(stdout(&out).trim()).unwrap()
    };
    // SmolLM2's <|im_end|> is the control token 2.
    let plain = ids(&[]);
    assert!(!plain.contains(&2), "{plain:?}");
    assert_eq!(ids(&["--plain"]), plain);
    let special = ids(&["--special"]);
    assert!(special.contains(&2), "{special:?}");
    assert!(special.len() < plain.len());
    let out = run(&[
        "tokenize",
        "--model",
        model,
        "--text",
        "x",
        "--special",
        "--plain",
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "the two readings exclude each other"
    );
}

#[test]
fn bad_input_gets_clear_errors_and_exit_codes() {
    let model = default_model().to_str().unwrap();
    let long = "word ".repeat(9000);
    let out = run(&["generate", "--model", model, "--raw", "--prompt", &long]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("context holds 8192"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty());

    let out = run(&[
        "generate",
        "--model",
        "/no/such/model.gguf",
        "--prompt",
        "hi",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("unknown model"), "{}", stderr(&out));

    let out = run(&[
        "generate",
        "--model",
        model,
        "--temperature=-1",
        "--prompt",
        "hi",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("temperature"), "{}", stderr(&out));

    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"GGUF but then nothing useful at all").unwrap();
    let home = dir.path().join("home");
    let out = basis()
        .env("BASIS_HOME", &home)
        .args(["model", "pull", junk.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot be used as a model"),
        "{}",
        stderr(&out)
    );
    // Nothing is left registered.
    let list = basis()
        .env("BASIS_HOME", &home)
        .args(["model", "list"])
        .output()
        .unwrap();
    assert!(stdout(&list).is_empty(), "{}", stdout(&list));

    // A cause is said once, though our error's message includes it and anyhow
    // would write it again as its source.
    let out = run(&["train", "plot", dir.path().join("no-run").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("no-run/metrics.jsonl: "), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");

    // A count of 0 is refused before anything runs, not run as 1 or as nothing.
    for args in [
        &["eval", "--tasks", "t.jsonl", "--samples", "0"][..],
        &["eval", "--tasks", "t.jsonl", "--jobs", "0"],
        &["generate", "--max-tokens", "0", "--prompt", "hi"],
        &[
            "tasks", "mine", "--repo", ".", "--out", "t.jsonl", "--max", "0",
        ],
    ] {
        let out = run(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("invalid value '0'"), "{args:?}: {err}");
        assert!(err.contains("must be at least 1"), "{args:?}: {err}");
    }
}

#[test]
fn a_local_gguf_can_be_registered_by_path_and_used_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let out = basis()
        .env("BASIS_HOME", &home)
        .args([
            "model",
            "pull",
            default_model().to_str().unwrap(),
            "--name",
            "my-smol",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = basis()
        .env("BASIS_HOME", &home)
        .args(["tokenize", "--model", "my-smol", "--text", "hello"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "[28120]");
}
