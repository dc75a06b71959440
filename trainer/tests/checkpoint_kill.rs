//! A process killed (SIGKILL) at any moment while it writes checkpoints leaves
//! the last complete one loadable, and `latest` pointing at it. The test runs
//! its own binary as the writer (the same test, which writes checkpoints
//! forever when an environment variable says so) and kills it at random
//! moments, again and again.

use std::path::{Path, PathBuf};
use std::time::Duration;

use basis_model::tiny::{write_random_model, TinySpec};
use basis_model::{Device, LanguageModel, Precision};
use basis_trainer::checkpoint;
use basis_trainer::policy::{Policy, PolicyConfig};
use rand::{Rng, SeedableRng};

const CHILD: &str = "BASIS_TEST_CHECKPOINT_WRITER";

fn policy(model: &Path) -> Policy {
    let lm = LanguageModel::load(model, Precision::F32, &Device::Cpu).unwrap();
    let cfg = PolicyConfig {
        lora: None,
        ..PolicyConfig::default()
    };
    Policy::from_model(lm, cfg, 1).unwrap()
}

fn state(step: usize, optimizer_steps: u64) -> checkpoint::State {
    checkpoint::State {
        schema: "basis.checkpoint/1".into(),
        step,
        optimizer_steps,
        seed: 0,
        config_digest: "test".into(),
    }
}

/// The writer: continues the run from its last checkpoint, one optimizer step
/// and one checkpoint after another, until it is killed.
fn checkpoint_writer(dirs: &str) -> ! {
    let (model, run) = dirs.split_once('\n').unwrap();
    let (model, run) = (PathBuf::from(model), PathBuf::from(run));
    let mut p = policy(&model);
    let mut step = match checkpoint::latest(&run) {
        Some(dir) => checkpoint::load(&dir, &mut p).unwrap().step,
        None => 0,
    };
    loop {
        let logp = p.completion_logprobs(&[1, 2, 3], &[4, 5], 1.0).unwrap();
        let mut acc = p.accumulator();
        p.backward(&logp.sum_all().unwrap(), &mut acc).unwrap();
        p.step(acc).unwrap();
        step += 1;
        checkpoint::save(&run, &p, &state(step, p.moments.t)).unwrap();
    }
}

#[test]
fn a_kill_during_a_checkpoint_save_leaves_the_last_one_loadable() {
    if let Ok(dirs) = std::env::var(CHILD) {
        checkpoint_writer(&dirs);
    }
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    // Wide enough that a save takes a while (the kill lands inside one often).
    let spec = TinySpec {
        hidden: 128,
        intermediate: 384,
        layers: 4,
        ..TinySpec::default()
    };
    write_random_model(&model, &spec, 5).unwrap();
    let run = dir.path().join("run");
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut last_step = 0;
    for round in 0..8 {
        // This test's own binary, run again as the process to kill: no user
        // or generated code.
        #[allow(clippy::disallowed_methods)]
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "a_kill_during_a_checkpoint_save_leaves_the_last_one_loadable",
                "--test-threads",
                "1",
            ])
            .env(CHILD, format!("{}\n{}", model.display(), run.display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("writer.log")).unwrap())
            .spawn()
            .unwrap();
        // Let it write at least one checkpoint past the last round's.
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let step = checkpoint::latest(&run)
                .map(|d| checkpoint::state(&d).unwrap().step)
                .unwrap_or(0);
            if step > last_step {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline && child.try_wait().unwrap().is_none(),
                "round {round}: the writer made no checkpoint: {}",
                std::fs::read_to_string(dir.path().join("writer.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(0..60)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let latest = checkpoint::latest(&run).expect("a checkpoint survives the kill");
        let mut p = policy(&model);
        let st = checkpoint::load(&latest, &mut p).unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert!(
            st.step > last_step,
            "round {round}: step {} after {last_step}",
            st.step
        );
        assert_eq!(st.optimizer_steps, st.step as u64);
        assert_eq!(p.moments.t, st.step as u64);
        assert_eq!(
            latest.file_name().unwrap().to_string_lossy(),
            format!("step-{:06}", st.step)
        );
        last_step = st.step;
    }
}
