//! The learning loop end to end through the real binary and the default model:
//! a running `basis lsp` records suggestions and what the user did with them;
//! `basis train` learns from the bundled tasks and from those records, writes
//! its metrics, checkpoints and adapter; a run resumed from its first
//! checkpoint ends at the same adapter and, with `--publish`, puts it in the
//! registry, and the running server answers with the new version, without a
//! restart; `basis model publish` refuses it again by the gate; `basis train
//! plot` draws the curves; `basis model use` rolls back; `basis model
//! export-adapter` writes a PEFT folder. Records of another base model are
//! refused. The warm start (`--sft`) fits the reference answers and leaves an
//! adapter. `--eval-every` scores the validation split as the run goes, keeps
//! the best weights, and publishing judges those; without a validation split
//! it is refused before anything is written.

mod support;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use support::lsp::LspClient;

fn tasks() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/shopkit/tasks.jsonl")
}

/// `basis ARGS` with the store in `home`.
fn basis(home: &Path, args: &[&str]) -> std::process::Output {
    support::basis()
        .args(args)
        .env("BASIS_HOME", home)
        .output()
        .unwrap()
}

fn register(home: &Path) {
    let model = support::default_model();
    let out = basis(
        home,
        &["model", "pull", model.to_str().unwrap(), "--name", "m"],
    );
    assert!(out.status.success(), "{}", support::stderr(&out));
}

/// `basis train` of model `m` on `tasks` (the repositories under `root`)
/// into `run`, with `args` besides; its stderr, after checking it succeeded.
fn train_ok(home: &Path, tasks: &Path, root: &Path, run: &Path, args: &[&str]) -> String {
    let mut all = vec![
        "train",
        "--tasks",
        tasks.to_str().unwrap(),
        "--repo-root",
        root.to_str().unwrap(),
        "--model",
        "m",
        "--run",
        run.to_str().unwrap(),
    ];
    all.extend(args);
    let out = basis(home, &all);
    let err = support::stderr(&out);
    assert!(out.status.success(), "{err}");
    err
}

/// The bundled tasks, a JSON value each.
fn task_values() -> Vec<Value> {
    std::fs::read_to_string(tasks())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A temporary folder with a store (`home`) that has the default model as
/// `m`, and the example repository built in `repo`.
fn with_shopkit() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    register(&home);
    support::shopkit(tmp.path(), "repo");
    (tmp, home)
}

/// A run's `metrics.jsonl`, a value a line.
fn metrics(run: &Path) -> Vec<Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `basis eval` of the base weights with `adapter` on the first review task
/// of `split` (the repository under `root`); its report.
fn eval_review_with(home: &Path, root: &Path, split: &str, adapter: &Path) -> Value {
    let report = root.join(format!("eval-{split}"));
    let tasks = tasks();
    let out = basis(
        home,
        &[
            "eval",
            "--tasks",
            tasks.to_str().unwrap(),
            "--repo-root",
            root.to_str().unwrap(),
            "--skills",
            "review",
            "--split",
            split,
            "--limit",
            "1",
            "--model",
            "m",
            "--adapter",
            adapter.to_str().unwrap(),
            "--out",
            report.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", support::stderr(&out));
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("report.json")).unwrap())
            .unwrap();
    assert!(
        r["model"]["version"].as_str().unwrap().starts_with("base+"),
        "{}",
        r["model"]
    );
    // The base weights alone on the same task, and the paired difference.
    let c = &r["comparison"];
    assert_eq!(c["against"]["version"], "base", "{c}");
    let d = &c["per_skill"]["review"];
    assert_eq!(d["tasks"], 1, "{d}");
    assert!(d["ci95"].is_array(), "{d}");
    r
}

const ISSUE: &str = "apply_discount returns a negative price when the discount percent is over 100";

#[test]
fn train_publish_and_the_running_server_switches_to_the_new_version() {
    let (tmp, home) = with_shopkit();
    let repo = tmp.path().join("repo");
    let db = tmp.path().join("feedback.sqlite3");

    // Suggestions in the editor, one accepted and one rejected.
    let mut c = LspClient::start(&[("BASIS_HOME", home.to_str().unwrap())]);
    c.initialize(
        &repo,
        &["utf-16"],
        json!({
            "model": "m",
            "feedback": {"path": db},
            "sampling": {"maxTokens": 24, "temperature": 0.7},
            "localize": {"useModel": "always"},
        }),
    );
    c.wait_indexed();
    let first = c.call("basis/localize", json!({"query": ISSUE}));
    assert_eq!(first["modelVersion"], "base");
    let second = c.call(
        "basis/localize",
        json!({"query": "the cart total ignores the quantity"}),
    );
    for (r, kind) in [(&first, "accepted"), (&second, "rejected")] {
        c.notify(
            "basis/feedback",
            json!({"suggestionId": r["suggestionId"], "kind": kind, "reason": "test"}),
        );
    }
    c.call("basis/feedbackFlush", Value::Null);
    // Each record keeps the temperature its log-probs are at, which the
    // update recomputes them at.
    let store = basis_feedback::Store::open(&db).unwrap();
    for r in [&first, &second] {
        let s = store
            .suggestion(r["suggestionId"].as_str().unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(s.tokens.unwrap().temperature, 0.7);
    }
    drop(store);

    let run = tmp.path().join("run");
    let tasks = tasks();
    let train_args = [
        "train",
        "--tasks",
        tasks.to_str().unwrap(),
        "--repo-root",
        tmp.path().to_str().unwrap(),
        "--skills",
        "localize,review",
        "--steps",
        "2",
        "--group-size",
        "3",
        "--tasks-per-step",
        "2",
        // The first draw only (the draws have a test of their own): two groups a step.
        "--draw-rounds",
        "0",
        "--max-new-tokens",
        "40",
        "--checkpoint-every",
        "1",
        "--seed",
        "3",
        "--model",
        "m",
        "--feedback",
        db.to_str().unwrap(),
        "--run",
        run.to_str().unwrap(),
    ];
    let out = basis(&home, &train_args);
    let err = support::stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("feedback: 2 feedback episodes"), "{err}");
    // stderr is a pipe here, as in a log of an overnight run: the progress and
    // each step's line come out as plain lines.
    assert!(
        err.contains("train: 0/2")
            && err.contains("step 1: reward")
            && err.contains("step 2: reward"),
        "{err}"
    );
    let metrics = metrics(&run);
    assert_eq!(metrics.len(), 2, "{metrics:?}");
    for (i, m) in metrics.iter().enumerate() {
        assert_eq!(m["step"], i + 1);
        assert_eq!(m["groups"], 2, "{m}");
        let per_skill = m["reward_per_skill"].as_object().unwrap();
        assert!(
            per_skill.contains_key("localize") && per_skill.contains_key("review"),
            "{m}"
        );
        assert!(m["rollout_tokens"].as_u64().unwrap() > 0, "{m}");
        // The two records disagree (accepted, rejected): both are used.
        assert_eq!(m["feedback_episodes"], 2, "{m}");
        assert!(m["update_tokens"].as_u64().unwrap() > 0, "{m}");
    }
    assert!(run.join("adapter/adapter_model.safetensors").is_file());
    assert!(run.join("checkpoints/step-000002/state.json").is_file());

    // The run's adapter, evaluated before it is published.
    let r = eval_review_with(&home, tmp.path(), "heldout", &run.join("adapter"));
    assert_eq!(r["per_skill"]["review"]["tasks"], 1);

    // A second run into the same folder must say how to continue it.
    let again = basis(&home, &train_args);
    assert!(!again.status.success());
    assert!(
        support::stderr(&again).contains("--resume"),
        "{}",
        support::stderr(&again)
    );

    // Resumed after step 1, as if killed before step 2's checkpoint (its
    // metrics line already written), the run ends at the adapter of the run
    // that never stopped, byte for byte (fixed seed, CPU).
    let resumed = tmp.path().join("resumed");
    support::copy_dir(&run, &resumed);
    std::fs::remove_dir_all(resumed.join("checkpoints/step-000002")).unwrap();
    std::fs::write(resumed.join("checkpoints/latest"), "step-000001").unwrap();
    std::fs::remove_dir_all(resumed.join("adapter")).unwrap();
    let mut resume_args: Vec<&str> = train_args
        .iter()
        .map(|&a| {
            if a == run.to_str().unwrap() {
                resumed.to_str().unwrap()
            } else {
                a
            }
        })
        .collect();
    // It publishes as it ends (whatever the gate says), and the running
    // server switches to the new version.
    resume_args.extend(["--resume", "--publish", "--force"]);
    let out = basis(&home, &resume_args);
    let err = support::stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("after step 1"), "{err}");
    assert!(
        err.contains("step 2: reward") && !err.contains("step 1: reward"),
        "{err}"
    );
    let adapter = |r: &Path| std::fs::read(r.join("adapter/adapter_model.safetensors")).unwrap();
    assert!(
        adapter(&resumed) == adapter(&run),
        "the resumed run ended elsewhere"
    );
    assert!(err.contains("published m v1"), "{err}");
    let changed = c.wait_for("basis/modelChanged", |_| true);
    assert_eq!(changed["params"], json!({"model": "m", "version": "v1"}));
    let after = c.call("basis/localize", json!({"query": ISSUE}));
    assert_eq!(after["modelVersion"], "v1");

    let plot = basis(&home, &["train", "plot", run.to_str().unwrap()]);
    assert!(plot.status.success(), "{}", support::stderr(&plot));
    let svg = std::fs::read_to_string(run.join("rewards.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("localize") && svg.contains("review"));
    let png = std::fs::read(run.join("rewards.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");

    // The same adapter again, through the gate: against v1, which it equals,
    // the mean cannot improve, so nothing is published.
    let out = basis(
        &home,
        &["model", "publish", run.to_str().unwrap(), "--limit", "1"],
    );
    let err = support::stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("not published: the mean over the skills did not improve beyond noise"),
        "{err}"
    );
    assert!(!home.join("models/m/versions/v2").exists());

    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(home.join("models/m/versions/v1/version.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["parent"], "base");
    assert_eq!(manifest["details"]["steps"], 2);
    assert!(manifest["details"]["tasks"]
        .as_str()
        .unwrap()
        .ends_with("tasks.jsonl"));
    assert!(
        manifest["details"]["table"]
            .as_str()
            .unwrap()
            .contains("| localize |"),
        "{manifest}"
    );

    let versions = basis(&home, &["model", "versions", "m"]);
    let listing = support::stdout(&versions);
    assert!(listing.contains("* v1\tparent base"), "{listing}");

    // Roll back.
    let out = basis(&home, &["model", "use", "m@base"]);
    assert!(out.status.success(), "{}", support::stderr(&out));
    let changed = c.wait_for("basis/modelChanged", |_| true);
    assert_eq!(changed["params"], json!({"model": "m", "version": "base"}));

    let peft = tmp.path().join("peft");
    let out = basis(
        &home,
        &[
            "model",
            "export-adapter",
            "m@v1",
            "--out",
            peft.to_str().unwrap(),
            "--base-model",
            "HuggingFaceTB/SmolLM2-135M-Instruct",
        ],
    );
    assert!(out.status.success(), "{}", support::stderr(&out));
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(peft.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(
        cfg["base_model_name_or_path"],
        "HuggingFaceTB/SmolLM2-135M-Instruct"
    );
    assert!(peft.join("adapter_model.safetensors").is_file());
    assert!(c.shutdown());
}

/// `--sft` alone (`--steps 0`): the warm start fits the training tasks'
/// reference verdicts at its own learning rate and leaves an adapter that
/// `basis eval` loads.
#[test]
fn the_warm_start_fits_the_reference_answers_and_leaves_an_adapter() {
    let (tmp, home) = with_shopkit();
    let run = tmp.path().join("run");
    let tasks = tasks();
    let err = train_ok(
        &home,
        &tasks,
        tmp.path(),
        &run,
        &[
            "--skills",
            "review",
            "--sft",
            "--sft-epochs",
            "3",
            "--sft-lr",
            "1e-3",
            "--steps",
            "0",
        ],
    );
    assert!(err.contains("warm start: epoch 3/3, loss "), "{err}");
    let train_reviews = task_values()
        .into_iter()
        .filter(|t| t["skill"] == "review" && t["meta"]["split"] == "train")
        .count();
    let record: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("warm_start.json")).unwrap())
            .unwrap();
    assert_eq!(record["examples"], train_reviews, "{record}");
    assert_eq!(
        record["per_skill"],
        json!({"review": train_reviews}),
        "{record}"
    );
    assert!(
        err.contains(&format!(
            "warm start: {train_reviews} answers (review {train_reviews})"
        )),
        "{err}"
    );
    assert_eq!(
        (record["epochs"].as_u64(), record["lr"].as_f64()),
        (Some(3), Some(1e-3))
    );
    let losses: Vec<f64> = record["loss_per_epoch"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_f64().unwrap())
        .collect();
    assert!(
        losses.len() == 3 && losses[2] < 0.5 * losses[0],
        "the answers' loss did not fall: {losses:?}"
    );
    let r = eval_review_with(&home, tmp.path(), "train", &run.join("adapter"));
    assert_eq!(r["per_skill"]["review"]["tasks"], 1);
}

#[test]
fn a_run_without_signal_says_so() {
    // Eight new tokens cannot hold an edit: every rollout scores 0, the one
    // group is skipped, and nothing is learned. The run must say that rather
    // than end as if it had trained. (With the binary reward, which a run
    // records as such.)
    let (tmp, home) = with_shopkit();
    let run = tmp.path().join("run");
    let err = train_ok(
        &home,
        &tasks(),
        tmp.path(),
        &run,
        &[
            "--skills",
            "edit",
            "--steps",
            "1",
            "--tasks-per-step",
            "1",
            "--group-size",
            "2",
            "--max-new-tokens",
            "8",
            "--reward",
            "binary",
        ],
    );
    assert!(err.contains("step 1: reward 0.000"), "{err}");
    assert_eq!(metrics(&run)[0]["reward_kind"], "binary");
    assert!(
        err.contains("note: no rollout of edit earned a reward in 1 step(s)"),
        "{err}"
    );
    assert!(err.contains("note: no step updated the model"), "{err}");
}

#[test]
fn tasks_without_any_signal_end_the_run_after_the_bounded_draws() {
    // Two localize tasks whose answer names a file that does not exist: no
    // sample can earn anything, graded or not. Each step draws once more (the
    // one extra round allowed), grows the groups of the tasks never rewarded,
    // and after three such steps the run stops and says why instead of going on.
    let (tmp, home) = with_shopkit();
    let mut loc: Vec<Value> = task_values()
        .into_iter()
        .filter(|t| t["skill"] == "localize" && t["meta"]["split"] == "train")
        .take(2)
        .collect();
    assert_eq!(loc.len(), 2);
    for t in &mut loc {
        t["reference"]["files"] = json!(["nowhere/none.py"]);
    }
    let file = tmp.path().join("tasks.jsonl");
    std::fs::write(&file, format!("{}\n{}\n", loc[0], loc[1])).unwrap();
    let run = tmp.path().join("run");
    let out = basis(
        &home,
        &[
            "train",
            "--tasks",
            file.to_str().unwrap(),
            "--repo-root",
            tmp.path().to_str().unwrap(),
            "--model",
            "m",
            "--run",
            run.to_str().unwrap(),
            "--steps",
            "6",
            "--tasks-per-step",
            "1",
            "--group-size",
            "2",
            "--max-group-size",
            "3",
            "--draw-rounds",
            "1",
            "--max-new-tokens",
            "8",
        ],
    );
    let err = support::stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("3 steps in a row had no task whose samples earned different rewards"),
        "{err}"
    );
    let m = metrics(&run);
    assert_eq!(m.len(), 3, "{m:?}");
    for (i, step) in m.iter().enumerate() {
        assert_eq!(step["signal_groups"], 0, "{step}");
        assert_eq!(step["extra_draws"], 1, "{step}");
        assert_eq!(step["drawn_tasks"], 2, "{step}");
        assert_eq!(step["outcomes"].as_array().unwrap().len(), 2, "{step}");
        // Step 1 knows nothing yet; later both tasks are known unrewarded.
        let grown = if i == 0 { 0 } else { 2 };
        assert_eq!(step["grown_groups"], grown, "{step}");
    }
    assert_eq!(m[1]["outcomes"][0]["samples"], 3, "{}", m[1]);
}

#[test]
fn a_task_that_cannot_be_prepared_is_reported_and_an_answer_is_scored_once() {
    // One good edit task and a copy of it about a file that is not in the
    // repository. The copy must be reported each step, not pass for a group
    // without signal; near-greedy samples of the good one give the same
    // answer twice a step, and both steps, and its tests run once.
    let (tmp, home) = with_shopkit();
    let good: Value = task_values()
        .into_iter()
        .find(|t| t["skill"] == "edit" && t["meta"]["split"] == "train")
        .unwrap();
    let mut gone = good.clone();
    gone["id"] = json!("edit-gone");
    gone["input"]["file"] = json!("shopkit/gone.py");
    let file = tmp.path().join("tasks.jsonl");
    std::fs::write(&file, format!("{good}\n{gone}\n")).unwrap();
    let run = tmp.path().join("run");
    let err = train_ok(
        &home,
        &file,
        tmp.path(),
        &run,
        &[
            "--steps",
            "2",
            "--tasks-per-step",
            "2",
            "--group-size",
            "2",
            "--max-new-tokens",
            "8",
            "--temperature",
            "0.01",
            // Two samples each time: no larger group for the unrewarded task.
            "--max-group-size",
            "2",
        ],
    );
    for step in ["step 1: ", "step 2: "] {
        let line = err.lines().find(|l| l.contains(step)).expect(step);
        assert!(
            line.contains("1 task(s) that could not be prepared, left out"),
            "{err}"
        );
    }
    assert_eq!(err.matches("warning: task edit-gone: ").count(), 2, "{err}");
    let metrics = metrics(&run);
    assert_eq!(metrics.len(), 2);
    for m in &metrics {
        // The graded reward unless told otherwise.
        assert_eq!(m["reward_kind"], "graded", "{m}");
        assert_eq!(m["unready_tasks"], 1, "{m}");
        assert_eq!(m["unscored"], 0, "{m}");
        assert_eq!(m["groups"], 1, "{m}");
        assert!(
            m["errors"][0].as_str().unwrap().contains("edit-gone"),
            "{m}"
        );
    }
    // Two samples a step, three of the four scored from the cache.
    assert_eq!(metrics[0]["cached_scores"], 1, "{}", metrics[0]);
    assert_eq!(metrics[1]["cached_scores"], 2, "{}", metrics[1]);
}

#[test]
fn settings_under_which_grpo_cannot_learn_are_refused() {
    // A group of one has no other sample to be better than, no task a step
    // trains on nothing, an answer of no tokens earns nothing, and greedy
    // samples are all the same: each would run and end as if it had trained.
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let run = tmp.path().join("run");
    let tasks = tasks();
    for (args, says) in [
        (["--group-size", "1"], "--group-size 1 is too small"),
        (["--group-size", "0"], "--group-size 0 is too small"),
        (
            ["--tasks-per-step", "0"],
            "invalid value '0' for '--tasks-per-step",
        ),
        (["--epochs", "0"], "invalid value '0' for '--epochs"),
        (
            ["--minibatches", "0"],
            "invalid value '0' for '--minibatches",
        ),
        (
            ["--max-new-tokens", "0"],
            "--max-new-tokens must be at least 1",
        ),
        (
            ["--temperature", "0"],
            "--temperature 0 is not a sampling temperature",
        ),
    ] {
        let mut all = vec![
            "train",
            "--tasks",
            tasks.to_str().unwrap(),
            "--run",
            run.to_str().unwrap(),
        ];
        all.extend(args);
        let out = basis(&home, &all);
        let err = support::stderr(&out);
        assert!(!out.status.success(), "{args:?} ran: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!run.exists(), "{args:?} made a run folder");
    }
}

#[test]
fn an_unknown_reward_is_refused_with_the_rewards_there_are() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let tasks = tasks();
    let out = basis(
        &tmp.path().join("home"),
        &[
            "train",
            "--tasks",
            tasks.to_str().unwrap(),
            "--run",
            run.to_str().unwrap(),
            "--reward",
            "nonsense",
        ],
    );
    let err = support::stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("invalid value 'nonsense' for '--reward <REWARD>'"),
        "{err}"
    );
    assert!(err.contains("[possible values: binary, graded]"), "{err}");
    assert!(!run.exists(), "a run folder was made");
    assert!(!tmp.path().join("home").exists(), "the store was touched");
}

#[test]
fn feedback_of_another_base_model_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    register(&home);
    let db = tmp.path().join("other.sqlite3");
    let mut store = basis_feedback::Store::open(&db).unwrap();
    store
        .insert_suggestion(&basis_feedback::Suggestion {
            id: "s1".into(),
            created_ms: 1,
            skill: "review".into(),
            model_name: "someone-elses-model".into(),
            model_version: "base".into(),
            workspace: None,
            file: None,
            language: None,
            prompt: "p".into(),
            completion: " YES".into(),
            logprob_sum: -0.5,
            token_count: 1,
            latency_ms: 1,
            tokens: Some(basis_feedback::Tokens {
                prompt_ids: vec![1, 2, 3],
                completion_ids: vec![4],
                logprobs: vec![-0.5],
                temperature: 1.0,
            }),
        })
        .unwrap();
    store
        .insert_event(&basis_feedback::Event {
            suggestion_id: "s1".into(),
            time_ms: 2,
            kind: basis_feedback::EventKind::Accepted,
        })
        .unwrap();
    drop(store);
    let out = basis(
        &home,
        &[
            "train",
            "--tasks",
            tasks().to_str().unwrap(),
            "--model",
            "m",
            "--feedback",
            db.to_str().unwrap(),
            "--run",
            tmp.path().join("run").to_str().unwrap(),
        ],
    );
    let err = support::stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("1 records of another base model (someone-elses-model) refused"),
        "{err}"
    );
    assert!(err.contains("this run trains m"), "{err}");
    assert!(!tmp.path().join("run/metrics.jsonl").exists());

    // `--feedback` alone reads the store `basis feedback` reads; one that is
    // not there is an error, not an empty store.
    for (store, says) in [
        (
            db.clone(),
            "1 records of another base model (someone-elses-model) refused",
        ),
        (tmp.path().join("typo.sqlite3"), "no feedback store at "),
    ] {
        let out = support::basis()
            .env("BASIS_HOME", &home)
            .env("BASIS_FEEDBACK_DB", &store)
            .args(["train", "--tasks", tasks().to_str().unwrap()])
            .args(["--model", "m", "--feedback", "--run"])
            .arg(tmp.path().join("run"))
            .output()
            .unwrap();
        let err = support::stderr(&out);
        assert!(!out.status.success(), "{err}");
        assert!(err.contains(says), "{err}");
    }
    assert!(!tmp.path().join("typo.sqlite3").exists());
}

/// The bundled tasks with each task's split changed by `split`, written to
/// `dir/tasks.jsonl`.
fn resplit(dir: &Path, split: impl Fn(&Value) -> &'static str) -> PathBuf {
    let file = dir.join("tasks.jsonl");
    let lines: Vec<String> = task_values()
        .into_iter()
        .map(|mut t| {
            t["meta"]["split"] = json!(split(&t));
            t.to_string()
        })
        .collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    file
}

#[test]
fn eval_every_without_validation_tasks_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let run = tmp.path().join("run");
    let refused = |tasks: &Path, skills: &str, every: &str, says: &str| {
        let out = basis(
            &home,
            &[
                "train",
                "--tasks",
                tasks.to_str().unwrap(),
                "--skills",
                skills,
                "--eval-every",
                every,
                "--run",
                run.to_str().unwrap(),
            ],
        );
        let err = support::stderr(&out);
        assert!(!out.status.success(), "{err}");
        assert!(err.contains(says), "{err}");
        assert!(!run.exists(), "a run folder was made");
        assert!(!home.exists(), "the store was touched");
    };
    // A file mined before the validation split: train and heldout only.
    let two = resplit(tmp.path(), |t| {
        if t["meta"]["split"] == "heldout" {
            "heldout"
        } else {
            "train"
        }
    });
    refused(
        &two,
        "review",
        "1",
        "has no validation split (its tasks are heldout, train): mine the repository again",
    );
    // Validation tasks, but none of the skills trained.
    let review_only = resplit(tmp.path(), |t| match t["meta"]["split"].as_str() {
        Some("validation") if t["skill"] != "review" => "train",
        Some("heldout") => "heldout",
        Some("validation") => "validation",
        _ => "train",
    });
    refused(
        &review_only,
        "edit,localize",
        "1",
        "has no task of the skills trained (edit, localize), only of review",
    );
    // --eval-every 0 would never score anything.
    refused(
        &tasks(),
        "review",
        "0",
        "invalid value '0' for '--eval-every <N>'",
    );
}

#[test]
fn eval_every_draws_the_validation_curve_and_publishing_judges_the_best_weights() {
    // Two steps at a learning rate of 0: the weights never move, so the
    // validation score is the same at steps 0 and 2 and the best stays the
    // start's (a later step must score higher). Its adapter is the fresh one,
    // which changes nothing: the gate refuses it.
    let (tmp, home) = with_shopkit();
    let run = tmp.path().join("run");
    let err = train_ok(
        &home,
        &tasks(),
        tmp.path(),
        &run,
        &[
            "--skills",
            "review",
            "--steps",
            "2",
            "--eval-every",
            "2",
            "--tasks-per-step",
            "1",
            "--group-size",
            "2",
            "--max-new-tokens",
            "4",
            "--lr",
            "0",
        ],
    );
    let validation_reviews = task_values()
        .into_iter()
        .filter(|t| t["skill"] == "review" && t["meta"]["split"] == "validation")
        .count();
    assert!(validation_reviews >= 2, "{validation_reviews}");
    let first = err
        .lines()
        .find(|l| l.contains("validation after step 0: score "))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(
        first.contains(&format!("on {validation_reviews} tasks"))
            && first.ends_with("the best so far (kept)"),
        "{first}"
    );
    let lines = metrics(&run);
    let validations: Vec<&Value> = lines.iter().filter(|l| l["kind"] == "validation").collect();
    let steps: Vec<u64> = validations
        .iter()
        .map(|v| v["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, vec![0, 2], "{validations:?}");
    for v in &validations {
        assert_eq!(v["tasks"], validation_reviews, "{v}");
        assert_eq!(v["samples"], 1, "{v}");
        assert!(v["per_skill"]["review"].is_number(), "{v}");
    }
    assert_eq!(validations[0]["score"], validations[1]["score"]);
    assert_eq!(
        (&validations[0]["best"], &validations[1]["best"]),
        (&json!(true), &json!(false))
    );
    // The step lines are still one a step.
    assert_eq!(lines.iter().filter(|l| l.get("kind").is_none()).count(), 2);
    let best: Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("best/best.json")).unwrap())
            .unwrap();
    assert_eq!(best["step"], 0);
    assert!(run.join("best/adapter/adapter_model.safetensors").is_file());
    assert!(
        err.contains("was after step 0: its weights are in "),
        "{err}"
    );

    let plot = basis(&home, &["train", "plot", run.to_str().unwrap()]);
    assert!(plot.status.success(), "{}", support::stderr(&plot));
    let svg = std::fs::read_to_string(run.join("rewards.svg")).unwrap();
    assert!(
        svg.contains("validation") && svg.contains("review"),
        "{svg}"
    );

    let out = basis(
        &home,
        &["model", "publish", run.to_str().unwrap(), "--limit", "1"],
    );
    let err = support::stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("judging the run's best validation checkpoint: after step 0"),
        "{err}"
    );
    assert!(
        err.contains("not published: the mean over the skills did not improve beyond noise"),
        "{err}"
    );
    assert!(!home.join("models/m/versions/v1").exists());
    let report = std::fs::read_to_string(run.join("publish.md")).unwrap();
    assert!(
        report.contains("The run's best checkpoint on validation (step 0)"),
        "{report}"
    );
}

#[test]
fn check_device_runs_its_checks_on_the_cpu() {
    let out = support::basis()
        .args(["check-device", "--device", "cpu", "--small"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", support::stderr(&out));
    let lines: Vec<Value> = support::stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let check = |name: &str| lines.iter().find(|l| l["check"] == name).cloned().unwrap();
    assert_eq!(check("logits")["ok"], true);
    assert_eq!(check("grpo")["ok"], true);
    let throughput: Vec<&Value> = lines
        .iter()
        .filter(|l| l["check"] == "throughput")
        .collect();
    assert_eq!(throughput.len(), 2, "{lines:?}");
    assert!(throughput
        .iter()
        .all(|t| t["tok_per_s"].as_f64().unwrap() > 0.0));
    let bad = support::basis()
        .args(["check-device", "--device", "tpu"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(support::stderr(&bad).contains("unknown device `tpu`"));
}
