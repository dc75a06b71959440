//! Editor feedback as off-policy episodes: each suggestion the feedback store
//! kept, with its reward from its events (`basis_feedback::reward`), its
//! tokens and the behaviour policy's per-token log-probs. In the update they
//! stand beside the rollouts: their advantage is the reward less the batch's
//! mean, their ratio is against the recorded log-probs and clipped as the
//! surrogate clips, and their loss is weighted against the verifiable tasks.
//!
//! Only records of the model being trained are used: a record of another base
//! model says nothing about this one's probabilities and is refused (counted).
//! Records without a reward (only `shown`), without tokens (privacy level
//! `no_code`, or recorded by an older Basis) or with an empty completion
//! (retrieval's ranking, not the model's) are skipped and counted too.

use std::path::Path;

use basis_feedback::{reward, RewardConfig, Store, Suggestion};

use crate::TrainError;

/// One recorded suggestion, ready for the update.
#[derive(Debug, Clone, PartialEq)]
pub struct OffPolicy {
    pub id: String,
    pub skill: String,
    pub prompt_ids: Vec<u32>,
    pub completion_ids: Vec<u32>,
    pub logprobs: Vec<f32>,
    /// The temperature `logprobs` are at; the update computes the policy's
    /// at the same one, so that the ratio compares like with like.
    pub temperature: f32,
    pub reward: f64,
}

/// The episodes of a store and what was left out.
#[derive(Debug, Default)]
pub struct Loaded {
    pub episodes: Vec<OffPolicy>,
    /// Records of another base model, by name.
    pub other_models: std::collections::BTreeMap<String, usize>,
    pub without_reward: usize,
    pub without_tokens: usize,
}

impl Loaded {
    /// One line on what was used and what was not.
    pub fn describe(&self) -> String {
        let mut s = format!("{} feedback episodes", self.episodes.len());
        if self.without_reward > 0 {
            s.push_str(&format!(
                ", {} records without a decisive event skipped",
                self.without_reward
            ));
        }
        if self.without_tokens > 0 {
            s.push_str(&format!(
                ", {} records without tokens skipped (privacy no_code, an older Basis, or retrieval's ranking)",
                self.without_tokens
            ));
        }
        for (model, n) in &self.other_models {
            s.push_str(&format!(
                ", {n} records of another base model ({model}) refused"
            ));
        }
        s
    }

    fn take(
        &mut self,
        s: Suggestion,
        events: &[basis_feedback::Event],
        model: &str,
        cfg: &RewardConfig,
    ) {
        if s.model_name != model {
            *self.other_models.entry(s.model_name).or_default() += 1;
            return;
        }
        let Some(r) = reward(events, cfg) else {
            self.without_reward += 1;
            return;
        };
        match s.tokens {
            Some(t)
                if !t.completion_ids.is_empty()
                    && t.completion_ids.len() == t.logprobs.len()
                    && !t.prompt_ids.is_empty() =>
            {
                self.episodes.push(OffPolicy {
                    id: s.id,
                    skill: s.skill,
                    prompt_ids: t.prompt_ids,
                    completion_ids: t.completion_ids,
                    logprobs: t.logprobs,
                    temperature: t.temperature,
                    reward: r,
                })
            }
            _ => self.without_tokens += 1,
        }
    }
}

/// The episodes of a feedback store (SQLite) for model `model`.
pub fn from_store(db: &Path, model: &str, cfg: &RewardConfig) -> Result<Loaded, TrainError> {
    let store = Store::open(db)
        .map_err(|e| TrainError::Input(format!("the feedback store {}: {e}", db.display())))?;
    let mut out = Loaded::default();
    store
        .for_each_suggestion(&mut |s, events| {
            out.take(s, &events, model, cfg);
            Ok(())
        })
        .map_err(|e| TrainError::Input(format!("reading {}: {e}", db.display())))?;
    Ok(out)
}

/// The episodes of a `basis.feedback/1` export (JSON lines with `events`).
pub fn from_export(text: &str, model: &str, cfg: &RewardConfig) -> Result<Loaded, TrainError> {
    let mut out = Loaded::default();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| {
            TrainError::Input(format!("line {} of the feedback export: {e}", i + 1))
        })?;
        let s: Suggestion = serde_json::from_value(v.clone()).map_err(|e| {
            TrainError::Input(format!("line {} of the feedback export: {e}", i + 1))
        })?;
        let events: Vec<basis_feedback::Event> = v["events"]
            .as_array()
            .map(|evs| {
                evs.iter()
                    .filter_map(|e| {
                        Some(basis_feedback::Event {
                            suggestion_id: s.id.clone(),
                            time_ms: e["time_ms"].as_i64()?,
                            kind: serde_json::from_value(e.clone()).ok()?,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.take(s, &events, model, cfg);
    }
    Ok(out)
}
