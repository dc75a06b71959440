//! The server's settings, from `initializationOptions` and
//! `workspace/didChangeConfiguration`: one struct, deserialised once per change.
//! Clients may send the object itself or nest it under a `basis` key (VS Code's
//! `settings.basis`). Unknown keys are ignored; a malformed value is reported and
//! the previous settings stay.

use std::path::PathBuf;

use basis_feedback::{Privacy, PrivacyLevel};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Settings {
    /// A model name from the store or a path; `None` means the default model.
    pub model: Option<String>,
    pub sampling: Sampling,
    pub feedback: FeedbackSettings,
    pub localize: LocalizeSettings,
    pub review: ReviewSettings,
    pub prefix_cache: PrefixCacheSettings,
}

/// The KV caches of recent prompts the model keeps for reuse.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct PrefixCacheSettings {
    /// Its memory limit (0: keep none).
    pub max_megabytes: usize,
}

impl Default for PrefixCacheSettings {
    fn default() -> Self {
        Self {
            max_megabytes: basis_model::generate::DEFAULT_PREFIX_CACHE_BYTES >> 20,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Sampling {
    pub temperature: f32,
    pub max_tokens: usize,
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            max_tokens: 64,
            seed: 0,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct FeedbackSettings {
    pub enabled: bool,
    /// `full` or `no_code` (hashes and lengths instead of text).
    pub level: PrivacyLevel,
    /// Workspace-relative globs whose suggestions are never recorded.
    pub exclude_globs: Vec<String>,
    /// Where the store lives (default `$BASIS_HOME/feedback/feedback.sqlite3`).
    pub path: Option<PathBuf>,
    /// An accepted edit whose text is gone within this many seconds was undone.
    pub undo_window_seconds: f64,
    /// When to measure how much of an accepted edit is still there.
    pub retained_after_minutes: f64,
}

impl Default for FeedbackSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            level: PrivacyLevel::Full,
            exclude_globs: Vec::new(),
            path: None,
            undo_window_seconds: 30.0,
            retained_after_minutes: 10.0,
        }
    }
}

impl FeedbackSettings {
    pub fn privacy(&self) -> Privacy {
        Privacy {
            enabled: self.enabled,
            level: self.level,
            exclude_globs: self.exclude_globs.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct LocalizeSettings {
    /// How many retrieval candidates the model chooses from.
    pub candidates: usize,
    /// Whether the model reorders retrieval's ranking: `auto` only where an
    /// evaluation (`basis eval`) of the served version on this repository showed
    /// it better than retrieval alone; `always`; `never`.
    pub use_model: UseModel,
}

/// See [`LocalizeSettings::use_model`].
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UseModel {
    #[default]
    Auto,
    Always,
    Never,
}

impl Default for LocalizeSettings {
    fn default() -> Self {
        Self {
            candidates: 8,
            use_model: UseModel::Auto,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct ReviewSettings {
    /// Review the uncommitted changes whenever a file is saved.
    pub on_save: bool,
}

fn merge(base: &mut serde_json::Value, change: &serde_json::Value) {
    match (base, change) {
        (serde_json::Value::Object(b), serde_json::Value::Object(c)) => {
            for (k, v) in c {
                merge(b.entry(k.clone()).or_insert(serde_json::Value::Null), v);
            }
        }
        (b, c) => *b = c.clone(),
    }
}

impl Settings {
    /// Reads settings from a client's JSON (`null` gives the defaults).
    pub fn from_json(value: Option<&serde_json::Value>) -> Result<Settings, String> {
        Settings::default().changed(value)
    }

    /// These settings with the keys `value` names replaced.
    pub fn changed(&self, value: Option<&serde_json::Value>) -> Result<Settings, String> {
        let Some(value) = value.filter(|v| !v.is_null()) else {
            return Ok(self.clone());
        };
        let inner = value.get("basis").unwrap_or(value);
        let mut merged = serde_json::to_value(self).expect("settings serialize");
        merge(&mut merged, inner);
        serde_json::from_value(merged).map_err(|e| format!("invalid Basis settings: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn settings_read_flat_nested_and_partial() {
        assert_eq!(Settings::from_json(None).unwrap(), Settings::default());
        let s =
            Settings::from_json(Some(&json!({"basis": {"sampling": {"maxTokens": 9}}}))).unwrap();
        assert_eq!(s.sampling.max_tokens, 9);
        assert_eq!(s.sampling.temperature, 0.0);
        let s = Settings::from_json(Some(&json!({
            "model": "m", "feedback": {"level": "no_code", "excludeGlobs": ["secret/**"]}
        })))
        .unwrap();
        assert_eq!(s.model.as_deref(), Some("m"));
        assert_eq!(s.feedback.privacy().level, PrivacyLevel::NoCode);
        let err =
            Settings::from_json(Some(&json!({"sampling": {"maxTokens": "many"}}))).unwrap_err();
        assert!(err.contains("invalid Basis settings"), "{err}");
    }
}
