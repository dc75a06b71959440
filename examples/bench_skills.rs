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
//! With REPO, FILE and SYMBOL the skills run on that repository instead (a
//! checkout of real size: prompts of real length): localize and reproduce on an
//! issue naming SYMBOL, edit on the first two lines of SYMBOL's body, testgen
//! on SYMBOL, review on a change to those lines. The sandbox figures stay on
//! the fixtures.
//!
//! Usage: bench_skills MODEL.gguf [RUNS [REPO FILE SYMBOL]]
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

/// One timed request: total, prefill (to the first generated token) and
/// decode milliseconds, and the tokens generated.
struct Timed {
    total: f64,
    prefill: f64,
    tokens: usize,
    prompt_tokens: usize,
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
    let generated = S::generated(&outcome);
    Timed {
        total,
        prefill: first.unwrap_or(total),
        tokens: generated.token_count,
        prompt_tokens: generated.prompt_ids.len(),
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

/// Where the skills run and what they are asked.
struct Target {
    repo: PathBuf,
    file: String,
    symbol: String,
    issue: String,
    /// The lines edit rewrites (and review sees changed), found in `file`.
    selection: String,
    instruction: String,
    intent: String,
    /// `file` after the change review is asked about.
    changed: String,
}

/// The inputs of each skill for one [`Target`].
struct Inputs {
    localize: localize::Input,
    edit: edit::Input,
    testgen: testgen::Input,
    reproduce: reproduce::Input,
    review: review::Input,
}

impl Target {
    /// The Python fixture and its known bug.
    fn fixture() -> Target {
        let repo = fixture("py_shop");
        let text = std::fs::read_to_string(repo.join("shop/pricing.py")).unwrap();
        Target {
            changed: text.replace("quantity > BULK_QUANTITY", "quantity >= BULK_QUANTITY"),
            repo,
            file: "shop/pricing.py".into(),
            symbol: "clamp_quantity".into(),
            issue: ISSUE.into(),
            selection: "    if quantity > BULK_QUANTITY:\n        total = total * 0.9\n".into(),
            instruction: "give the discount from BULK_QUANTITY items on".into(),
            intent: "Give the bulk discount from ten items on".into(),
        }
    }

    /// A repository's function: its first two body lines are edited and
    /// reviewed (a guard added before them), the issue names it.
    fn derived(repo: &Path, file: &str, symbol: &str) -> Target {
        let text = std::fs::read_to_string(repo.join(file))
            .unwrap_or_else(|e| panic!("{}: {e}", repo.join(file).display()));
        let def = [format!("def {symbol}("), format!("fn {symbol}(")]
            .iter()
            .find_map(|d| text.find(d.as_str()))
            .unwrap_or_else(|| panic!("no function {symbol} in {file}"));
        // The body starts on the line after the signature's colon or brace.
        let body = def
            + text[def..]
                .find([':', '{'])
                .and_then(|i| text[def + i..].find('\n').map(|j| i + j + 1))
                .expect("a function body");
        let end = text[body..]
            .match_indices('\n')
            .nth(1)
            .map_or(text.len(), |(i, _)| body + i + 1);
        let selection = text[body..end].to_string();
        let indent: String = selection
            .chars()
            .take_while(|c| c.is_whitespace())
            .collect();
        let guard = format!("{indent}if not args:\n{indent}    return None\n");
        Target {
            repo: repo.to_path_buf(),
            file: file.into(),
            symbol: symbol.into(),
            issue: format!(
                "{symbol} fails with an exception when it is called with empty arguments; \
                 it should return None instead"
            ),
            changed: format!("{}{guard}{}", &text[..body], &text[body..]),
            selection,
            instruction: "return None early when the arguments are empty".into(),
            intent: format!("{symbol} returns None for empty arguments"),
        }
    }

    fn inputs(&self) -> Inputs {
        let stop = AtomicBool::new(false);
        let index = basis_code::WorkspaceIndex::build(
            self.repo.clone(),
            basis_code::Limits::default(),
            &mut |_| {},
            &stop,
        )
        .unwrap();
        let text = std::fs::read_to_string(self.repo.join(&self.file)).unwrap();
        let start = text
            .find(&self.selection)
            .expect("the selection is in the file");
        let read = |p: &str| std::fs::read_to_string(self.repo.join(p)).ok();
        // With the context from other files the server would add.
        let mut edit = edit::Input {
            path: self.file.clone(),
            text: text.clone(),
            start_byte: start,
            end_byte: start + self.selection.len(),
            instruction: self.instruction.clone(),
            related: Vec::new(),
        };
        edit.find_related(&index, &read);
        let mut testgen = testgen::Input {
            path: self.file.clone(),
            text: text.clone(),
            symbol: self.symbol.clone(),
            related: Vec::new(),
        };
        testgen.find_related(&index, &read);
        Inputs {
            localize: localize::Input {
                issue: self.issue.clone(),
                candidates: localize::candidates(&index, &self.issue, localize::CANDIDATES),
                limit: 10,
            },
            edit,
            testgen,
            reproduce: reproduce::input_for(&index, &self.repo, &self.issue, 3, &read),
            review: review::Input {
                intent: self.intent.clone(),
                changes: vec![FileChange {
                    path: self.file.clone(),
                    old: text,
                    new: self.changed.clone(),
                }],
            },
        }
    }
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
    let subject = match args.get(3..6) {
        Some([repo, file, symbol]) => Target::derived(Path::new(repo), file, symbol),
        _ => Target::fixture(),
    };
    let inputs = subject.inputs();

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
            timed::<localize::LocalizeSkill>(&lm, &inputs.localize)
        });
        time("edit", &mut || timed::<edit::EditSkill>(&lm, &inputs.edit));
        time("testgen", &mut || {
            timed::<testgen::TestgenSkill>(&lm, &inputs.testgen)
        });
        time("reproduce", &mut || {
            timed::<reproduce::ReproduceSkill>(&lm, &inputs.reproduce)
        });
        time("review", &mut || {
            timed::<review::ReviewSkill>(&lm, &inputs.review)
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
                "prompt_tokens": f[0].prompt_tokens,
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
        "repository": subject.repo.display().to_string(),
        "file": subject.file,
        "symbol": subject.symbol,
        "isolation": format!("{:?}", sandbox.isolation),
        "skills": skills,
        "sandbox": {
            "python_unittest": {"direct_ms": py_direct, "sandbox_ms": py_sandbox, "ratio": py_sandbox / py_direct},
            "rust_cargo_test": {"direct_ms": rs_direct, "sandbox_ms": rs_sandbox, "ratio": rs_sandbox / rs_direct},
        },
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
}
