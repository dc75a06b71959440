//! Checkpoints of a training run: the trainable weights (a PEFT adapter, or
//! the full weights), the optimizer's moments and the step, under
//! `RUN_DIR/checkpoints/step-NNNNNN/`, with `RUN_DIR/checkpoints/latest` naming
//! the newest.
//!
//! A checkpoint is written into a hidden temporary folder, synced and renamed
//! into place, and only then does `latest` move (a temporary file renamed over
//! it): a process killed at any moment leaves the previous checkpoint whole and
//! `latest` pointing at a complete one. The newest [`KEEP`] checkpoints are
//! kept. Randomness in a run is derived from the
//! seed and the step, so a run resumed from a checkpoint continues to the same
//! weights as one that never stopped.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::policy::{Moments, Policy};
use crate::TrainError;

const WEIGHTS: &str = "trainable.safetensors";
const MOMENTS: &str = "optimizer.safetensors";
const STATE: &str = "state.json";

/// What a checkpoint says about the run besides the tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub schema: String,
    /// Rollout steps done.
    pub step: usize,
    /// Optimizer steps done.
    pub optimizer_steps: u64,
    pub seed: u64,
    /// A digest of the run's settings: resuming with other settings is refused.
    pub config_digest: String,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

/// Writes a checkpoint of `policy` after `state.step` steps (see the module docs);
/// returns its folder.
pub fn save(run: &Path, policy: &Policy, state: &State) -> Result<PathBuf, TrainError> {
    let root = run.join("checkpoints");
    std::fs::create_dir_all(&root).map_err(io(&root))?;
    remove_leftovers(&root);
    let name = format!("step-{:06}", state.step);
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .tempdir_in(&root)
        .map_err(io(&root))?;
    candle_core::safetensors::save(&policy.tensors(), tmp.path().join(WEIGHTS))?;
    let mut moments: HashMap<String, Tensor> = HashMap::new();
    for (i, (name, _)) in policy.vars().iter().enumerate() {
        if let (Some(m), Some(v)) = (policy.moments.m.get(i), policy.moments.v.get(i)) {
            moments.insert(
                format!("{name}.m"),
                Tensor::from_slice(m, m.len(), &Device::Cpu)?,
            );
            moments.insert(
                format!("{name}.v"),
                Tensor::from_slice(v, v.len(), &Device::Cpu)?,
            );
        }
    }
    candle_core::safetensors::save(&moments, tmp.path().join(MOMENTS))?;
    let state_path = tmp.path().join(STATE);
    let mut f = std::fs::File::create(&state_path).map_err(io(&state_path))?;
    f.write_all(
        serde_json::to_string_pretty(state)
            .expect("state serialises")
            .as_bytes(),
    )
    .map_err(io(&state_path))?;
    for file in [WEIGHTS, MOMENTS, STATE] {
        let p = tmp.path().join(file);
        std::fs::File::open(&p)
            .and_then(|f| f.sync_all())
            .map_err(io(&p))?;
    }
    let dest = root.join(&name);
    if dest.exists() {
        std::fs::remove_dir_all(&dest).map_err(io(&dest))?;
    }
    let kept = tmp.keep();
    std::fs::rename(&kept, &dest).map_err(io(&dest))?;
    sync_dir(&root);
    let pointer = root.join("latest");
    let tmp_pointer = root.join(format!(".latest.{}", std::process::id()));
    std::fs::write(&tmp_pointer, format!("{name}\n")).map_err(io(&tmp_pointer))?;
    std::fs::File::open(&tmp_pointer)
        .and_then(|f| f.sync_all())
        .map_err(io(&tmp_pointer))?;
    std::fs::rename(&tmp_pointer, &pointer).map_err(io(&pointer))?;
    sync_dir(&root);
    remove_old(&root, KEEP);
    Ok(dest)
}

/// Checkpoints kept per run (the newest; older ones are removed after a save).
pub const KEEP: usize = 3;

/// Removes all but the newest `keep` checkpoints.
fn remove_old(root: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    let mut steps: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("step-"))
        })
        .collect();
    steps.sort();
    let n = steps.len().saturating_sub(keep);
    for old in &steps[..n] {
        let _ = std::fs::remove_dir_all(old);
    }
}

/// Removes what a process killed while saving left behind (hidden temporary
/// folders and pointer files); a run has one writer, so none is in use.
fn remove_leftovers(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(".step-") {
            let _ = std::fs::remove_dir_all(e.path());
        } else if name.starts_with(".latest.") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// The newest complete checkpoint of a run, if any.
pub fn latest(run: &Path) -> Option<PathBuf> {
    let root = run.join("checkpoints");
    let name = std::fs::read_to_string(root.join("latest")).ok()?;
    let dir = root.join(name.trim());
    dir.join(STATE).is_file().then_some(dir)
}

/// Reads a checkpoint's state.
pub fn state(dir: &Path) -> Result<State, TrainError> {
    let p = dir.join(STATE);
    let text = std::fs::read_to_string(&p).map_err(io(&p))?;
    serde_json::from_str(&text).map_err(|e| TrainError::Checkpoint(format!("{}: {e}", p.display())))
}

/// Puts a checkpoint's weights and optimizer moments into `policy`; returns its
/// state.
pub fn load(dir: &Path, policy: &mut Policy) -> Result<State, TrainError> {
    let st = state(dir)?;
    let device = policy.lm.model.device().clone();
    let weights = candle_core::safetensors::load(dir.join(WEIGHTS), &device)
        .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", dir.join(WEIGHTS).display())))?;
    policy.restore(&weights)?;
    let moments = candle_core::safetensors::load(dir.join(MOMENTS), &Device::Cpu)
        .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", dir.join(MOMENTS).display())))?;
    // The fresh optimizer's zeros go first, so the loaded moments can take
    // their place (see `Policy::reset_optimizer`).
    policy.moments = Moments::default();
    let mut m = Vec::new();
    let mut v = Vec::new();
    if !moments.is_empty() {
        for (name, _) in policy.vars() {
            let get = |k: String| -> Result<Vec<f32>, TrainError> {
                Ok(moments
                    .get(&k)
                    .ok_or_else(|| {
                        TrainError::Checkpoint(format!("the optimizer state has no `{k}`"))
                    })?
                    .to_vec1()?)
            };
            m.push(get(format!("{name}.m"))?);
            v.push(get(format!("{name}.v"))?);
        }
    }
    policy.moments = Moments {
        m,
        v,
        t: st.optimizer_steps,
    };
    Ok(st)
}
