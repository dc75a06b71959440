//! Benchmark of the skills: time to a shown suggestion (the prompt built, the
//! model's answer generated and parsed) per skill on the Python fixture
//! repository, p50 and p95 over RUNS rounds, for the first request (an empty
//! prefix cache) and for the same request repeated at once (its prompt cached),
//! each split into prefill (to the first generated token) and decode; and the
//! sandbox's overhead for one test run
//! against running the same tests directly (warm runs, median of RUNS each):
//! Python unittest on the Python fixture, and `cargo test` on the Rust fixture
//! after touching its source (as a test run after an edit does; the sandbox's
//! fresh copy rebuilds the crate, so the direct run must too).
//! Prints one JSON object on stdout.
//!
//! Usage: bench_skills MODEL.gguf [RUNS]
#![allow(clippy::print_stdout)] // the report goes to stdout

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use basis_code::Language;
use basis_model::{LanguageModel, Precision};
use basis_skills::diff::FileChange;
use basis_skills::sandbox::Sandbox;
use basis_skills::{edit, localize, reproduce, review, runner, testgen, Skill};
use serde_json::json;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let name = entry.file_name();
        if name == "target" || name == "Cargo.lock" || name == "__pycache__" {
            continue;
        }
        let dst = to.join(&name);
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &dst);
        } else {
            std::fs::copy(entry.path(), &dst).unwrap();
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

const ISSUE: &str = "Buying exactly 10 items should get the 10% bulk discount, but bulk_price(2.0, 10) returns 20.0 instead of 18.0";

/// Runs `argv` in `dir` directly. With `clean`, in the sandbox's environment
/// (nothing but `PATH` of the system directories and `HOME`), so that both run
/// the same interpreter the same way.
#[allow(clippy::disallowed_methods)] // the direct runs are the peer of the sandbox
fn direct(dir: &Path, argv: &[&str], env: &[(&str, &str)], clean: bool) -> Duration {
    let start = Instant::now();
    let mut cmd = std::process::Command::new(argv[0]);
    if clean {
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", dir);
    }
    let out = cmd
        .args(&argv[1..])
        .current_dir(dir)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    start.elapsed()
}

/// Runs skill `S` once on `input` with its default options; the tokens it wrote.
/// One timed request: total, prefill (to the first generated token) and
/// decode milliseconds, and the tokens generated.
struct Timed {
    total: f64,
    prefill: f64,
    tokens: usize,
}

fn timed<S: Skill>(lm: &LanguageModel, input: &S::Input) -> Timed {
    let t = Instant::now();
    let mut first: Option<f64> = None;
    let outcome = S::run(
        lm,
        input,
        &S::default_options(),
        &mut |n| {
            if n > 0 && first.is_none() {
                first = Some(ms(t.elapsed()));
            }
        },
        &|| false,
    )
    .unwrap();
    let total = ms(t.elapsed());
    Timed {
        total,
        prefill: first.unwrap_or(total),
        tokens: S::generated(&outcome).token_count,
    }
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// p50 and p95 of the totals, p50 of prefill and decode, and prefill's share
/// of the total time.
fn summary(runs: &[Timed]) -> serde_json::Value {
    let total: Vec<f64> = runs.iter().map(|r| r.total).collect();
    let prefill: Vec<f64> = runs.iter().map(|r| r.prefill).collect();
    let decode: Vec<f64> = runs.iter().map(|r| r.total - r.prefill).collect();
    let share = prefill.iter().sum::<f64>() / total.iter().sum::<f64>().max(1e-9);
    json!({
        "p50_ms": percentile(total.clone(), 0.5),
        "p95_ms": percentile(total, 0.95),
        "prefill_p50_ms": percentile(prefill, 0.5),
        "decode_p50_ms": percentile(decode, 0.5),
        "prefill_share": share,
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let model = args.get(1).expect("usage: bench_skills MODEL.gguf [RUNS]");
    let runs: usize = args.get(2).map(|r| r.parse().unwrap()).unwrap_or(5);
    basis_model::configure_threads();
    let lm = LanguageModel::load(
        Path::new(model),
        Precision::Quantized,
        &basis_model::default_device(),
    )
    .unwrap();

    // The inputs, one per skill.
    let repo = fixture("py_shop");
    let pricing = std::fs::read_to_string(repo.join("shop/pricing.py")).unwrap();
    let stop = AtomicBool::new(false);
    let index = basis_code::WorkspaceIndex::build(
        repo.clone(),
        basis_code::Limits::default(),
        &mut |_| {},
        &stop,
    )
    .unwrap();
    let localize_input = localize::Input {
        issue: ISSUE.into(),
        candidates: localize::candidates(&index, ISSUE, localize::CANDIDATES),
        limit: 10,
    };
    let sel = "    if quantity > BULK_QUANTITY:\n        total = total * 0.9\n";
    let start = pricing.find(sel).unwrap();
    let read = |p: &str| std::fs::read_to_string(repo.join(p)).ok();
    // With the context from other files the server would add.
    let mut edit_input = edit::Input {
        path: "shop/pricing.py".into(),
        text: pricing.clone(),
        start_byte: start,
        end_byte: start + sel.len(),
        instruction: "give the discount from BULK_QUANTITY items on".into(),
        related: Vec::new(),
    };
    edit_input.find_related(&index, &read);
    let mut testgen_input = testgen::Input {
        path: "shop/pricing.py".into(),
        text: pricing.clone(),
        symbol: "clamp_quantity".into(),
        related: Vec::new(),
    };
    testgen_input.find_related(&index, &read);
    let reproduce_input = reproduce::input_for(&index, &repo, ISSUE, 3, &read);
    let review_input = review::Input {
        intent: "Give the bulk discount from ten items on".into(),
        changes: vec![FileChange {
            path: "shop/pricing.py".into(),
            old: pricing.clone(),
            new: pricing.replace("quantity > BULK_QUANTITY", "quantity >= BULK_QUANTITY"),
        }],
    };

    // Round robin; each request first with an empty prefix cache, then the same
    // request again at once (the user asking twice, review on every save).
    let mut first: HashMap<&str, Vec<Timed>> = HashMap::new();
    let mut repeat: HashMap<&str, Vec<Timed>> = HashMap::new();
    for _ in 0..runs {
        let mut time = |name: &'static str, f: &mut dyn FnMut() -> Timed| {
            lm.generator.clear_prefix();
            first.entry(name).or_default().push(f());
            repeat.entry(name).or_default().push(f());
        };
        time("localize", &mut || {
            timed::<localize::LocalizeSkill>(&lm, &localize_input)
        });
        time("edit", &mut || timed::<edit::EditSkill>(&lm, &edit_input));
        time("testgen", &mut || {
            timed::<testgen::TestgenSkill>(&lm, &testgen_input)
        });
        time("reproduce", &mut || {
            timed::<reproduce::ReproduceSkill>(&lm, &reproduce_input)
        });
        time("review", &mut || {
            timed::<review::ReviewSkill>(&lm, &review_input)
        });
    }
    let mut skills = serde_json::Map::new();
    for name in ["localize", "edit", "testgen", "reproduce", "review"] {
        let (f, r) = (&first[name], &repeat[name]);
        skills.insert(
            name.into(),
            json!({
                "first": summary(f),
                "repeat": summary(r),
                "mean_tokens": f.iter().map(|t| t.tokens as f64).sum::<f64>() / f.len() as f64,
                "repeat_mean_tokens": r.iter().map(|t| t.tokens as f64).sum::<f64>() / r.len() as f64,
            }),
        );
    }

    // Sandbox overhead: the same tests, directly and in the sandbox, warm.
    let sandbox = Sandbox::detect();
    let tmp = tempfile::tempdir().unwrap();
    let py = tmp.path().join("py_shop");
    copy_dir(&fixture("py_shop"), &py);
    let (sb, argv) = runner::prepare(&sandbox, &py, Language::Python, None).unwrap();
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    // The sandbox's copy is fresh each run: no bytecode cache to reuse.
    let py_env = [("PYTHONDONTWRITEBYTECODE", "1")];
    direct(&py, &argv, &py_env, true);
    sb.run(&py, &HashMap::new(), &argv).unwrap();
    let mut d = Vec::new();
    let mut s = Vec::new();
    for _ in 0..runs.max(5) {
        d.push(ms(direct(&py, &argv, &py_env, true)));
        let t = Instant::now();
        let o = sb.run(&py, &HashMap::new(), &argv).unwrap();
        assert!(o.success(), "{}", o.stderr);
        s.push(ms(t.elapsed()));
    }
    let (py_direct, py_sandbox) = (percentile(d, 0.5), percentile(s, 0.5));

    let rs = tmp.path().join("rust_ledger");
    copy_dir(&fixture("rust_ledger"), &rs);
    let target = tmp.path().join("rust-target");
    let target_s = target.display().to_string();
    let rs_env = [("CARGO_TARGET_DIR", target_s.as_str())];
    let (sb, argv) = runner::prepare(&sandbox, &rs, Language::Rust, None).unwrap();
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let touch = || {
        let f = rs.join("src/lib.rs");
        let text = std::fs::read_to_string(&f).unwrap();
        std::fs::write(&f, text).unwrap();
    };
    direct(&rs, &argv, &rs_env, false);
    sb.run(&rs, &HashMap::new(), &argv).unwrap();
    let mut d = Vec::new();
    let mut s = Vec::new();
    for _ in 0..runs.max(5) {
        touch();
        d.push(ms(direct(&rs, &argv, &rs_env, false)));
        let t = Instant::now();
        let o = sb.run(&rs, &HashMap::new(), &argv).unwrap();
        assert!(o.success(), "{}", o.stderr);
        s.push(ms(t.elapsed()));
    }
    let (rs_direct, rs_sandbox) = (percentile(d, 0.5), percentile(s, 0.5));

    let out = json!({
        "runs": runs,
        "isolation": format!("{:?}", sandbox.isolation),
        "skills": skills,
        "sandbox": {
            "python_unittest": {"direct_ms": py_direct, "sandbox_ms": py_sandbox, "ratio": py_sandbox / py_direct},
            "rust_cargo_test": {"direct_ms": rs_direct, "sandbox_ms": rs_sandbox, "ratio": rs_sandbox / rs_direct},
        },
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
}
