//! Model versions: a model's numbered versions (PEFT adapters on its base
//! weights) and the `current` pointer that says which one is served.
//!
//! Layout under a model's directory (`$BASIS_HOME/models/<name>/`):
//!
//! ```text
//! current                 the served version: "base" or "v<N>" (absent means base)
//! versions/v<N>/version.json   {schema, version, parent, created_unix, summary}
//! versions/v<N>/adapter/       the adapter in PEFT's layout
//! ```
//!
//! A version directory is complete before it gets its final name (it is built under
//! a hidden temporary name and renamed), and `current` is replaced by renaming a
//! temporary file over it, so a reader never sees a half-written version or
//! pointer. Readers poll `current` ([`Registry::current`]) and load a version with
//! [`Registry::load_into`].

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::Model;

/// The schema of `version.json`.
pub const VERSION_SCHEMA: &str = "basis.version/1";

/// A version of a model: the base weights, or a numbered adapter on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Version {
    Base,
    Numbered(u32),
}

impl Version {
    /// Reads `"base"` or `"v<N>"` (N ≥ 1).
    pub fn parse(s: &str) -> Option<Version> {
        let s = s.trim();
        if s == "base" {
            return Some(Version::Base);
        }
        let n: u32 = s.strip_prefix('v')?.parse().ok()?;
        (n >= 1).then_some(Version::Numbered(n))
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Version::Base => f.write_str("base"),
            Version::Numbered(n) => write!(f, "v{n}"),
        }
    }
}

/// What `version.json` records about a version.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VersionManifest {
    pub schema: String,
    pub version: String,
    pub parent: String,
    pub created_unix: u64,
    /// A short account of the training run that made it.
    #[serde(default)]
    pub summary: String,
    /// What the publisher records besides (the trainer: its tasks, steps and
    /// the before/after evaluation).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

/// One model's versions.
#[derive(Debug, Clone)]
pub struct Registry {
    dir: PathBuf,
}

impl Registry {
    /// The registry of the model stored in `model_dir`.
    pub fn new(model_dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: model_dir.into(),
        }
    }

    fn pointer(&self) -> PathBuf {
        self.dir.join("current")
    }

    fn versions_dir(&self) -> PathBuf {
        self.dir.join("versions")
    }

    /// The directory of a numbered version.
    pub fn version_dir(&self, v: Version) -> Option<PathBuf> {
        match v {
            Version::Base => None,
            Version::Numbered(_) => Some(self.versions_dir().join(v.to_string())),
        }
    }

    /// The served version. A missing pointer means the base weights; an unreadable
    /// or malformed one is an error (a server keeps its version and logs it).
    pub fn current(&self) -> Result<Version> {
        let path = self.pointer();
        match std::fs::read_to_string(&path) {
            Ok(text) => Version::parse(&text).ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "{} says `{}`; expected `base` or `v<N>`",
                    path.display(),
                    text.trim()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Version::Base),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// The numbered versions present, oldest first.
    pub fn versions(&self) -> Result<Vec<Version>> {
        let dir = self.versions_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(dir, e)),
        };
        let mut out: Vec<Version> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| Version::parse(&e.file_name().to_string_lossy()))
            .collect();
        out.sort();
        Ok(out)
    }

    /// The manifest of a numbered version.
    pub fn manifest(&self, v: Version) -> Result<Option<VersionManifest>> {
        let Some(dir) = self.version_dir(v) else {
            return Ok(None);
        };
        let path = dir.join("version.json");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::bad_file(&path, e))
    }

    /// Publishes the adapter in `adapter_dir` (PEFT layout) as the next version and
    /// makes it current, its manifest holding `summary` and `details`. Returns
    /// the new version.
    pub fn publish(
        &self,
        adapter_dir: &Path,
        summary: &str,
        details: serde_json::Value,
    ) -> Result<Version> {
        let parent = self.current()?;
        let next = match self.versions()?.last() {
            Some(Version::Numbered(n)) => Version::Numbered(n + 1),
            _ => Version::Numbered(1),
        };
        let versions = self.versions_dir();
        std::fs::create_dir_all(&versions).map_err(|e| Error::io(&versions, e))?;
        let tmp = versions.join(format!(".{next}.tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let adapter = tmp.join("adapter");
        std::fs::create_dir_all(&adapter).map_err(|e| Error::io(&adapter, e))?;
        for entry in std::fs::read_dir(adapter_dir).map_err(|e| Error::io(adapter_dir, e))? {
            let entry = entry.map_err(|e| Error::io(adapter_dir, e))?;
            if entry.path().is_file() {
                let dst = adapter.join(entry.file_name());
                std::fs::copy(entry.path(), &dst).map_err(|e| Error::io(&dst, e))?;
            }
        }
        let manifest = VersionManifest {
            schema: VERSION_SCHEMA.into(),
            version: next.to_string(),
            parent: parent.to_string(),
            created_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            summary: summary.into(),
            details,
        };
        let json = serde_json::to_string_pretty(&manifest)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let mpath = tmp.join("version.json");
        std::fs::write(&mpath, json).map_err(|e| Error::io(&mpath, e))?;
        let dst = self
            .version_dir(next)
            .expect("a numbered version has a directory");
        std::fs::rename(&tmp, &dst).map_err(|e| Error::io(&dst, e))?;
        self.set_current(next)?;
        Ok(next)
    }

    /// Points `current` at `v` (which must exist), atomically.
    pub fn set_current(&self, v: Version) -> Result<()> {
        if let Some(dir) = self.version_dir(v) {
            if !dir.is_dir() {
                return Err(Error::InvalidArgument(format!(
                    "version {v} does not exist ({} is missing)",
                    dir.display()
                )));
            }
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let tmp = self
            .dir
            .join(format!(".current.tmp-{}", std::process::id()));
        std::fs::write(&tmp, format!("{v}\n")).map_err(|e| Error::io(&tmp, e))?;
        let dst = self.pointer();
        std::fs::rename(&tmp, &dst).map_err(|e| Error::io(&dst, e))
    }

    /// Where a version's evaluation figures are kept.
    fn evals_path(&self, v: Version) -> PathBuf {
        self.dir.join("evals").join(format!("{v}.json"))
    }

    /// The evaluation figures kept for version `v` (an empty object when none
    /// are): `{<what>: {<key>: <figures>}}`, written by `basis eval`.
    pub fn evals(&self, v: Version) -> serde_json::Value {
        std::fs::read_to_string(self.evals_path(v))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_else(|| serde_json::json!({}))
    }

    /// Keeps `figures` as version `v`'s evaluation of `what` on `key` (e.g.
    /// localization on a repository), replacing the file atomically.
    pub fn record_eval(
        &self,
        v: Version,
        what: &str,
        key: &str,
        figures: serde_json::Value,
    ) -> Result<()> {
        let mut all = self.evals(v);
        if !all.is_object() {
            all = serde_json::json!({});
        }
        all[what][key] = figures;
        let path = self.evals_path(v);
        let dir = path.parent().expect("the evals file has a folder");
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let tmp = dir.join(format!(".{v}.json.tmp-{}", std::process::id()));
        let text = serde_json::to_string_pretty(&all)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
    }

    /// Applies version `v` to a freshly loaded base model: nothing for the base,
    /// the version's adapter otherwise.
    pub fn load_into(&self, model: &mut Model, v: Version) -> Result<()> {
        match self.version_dir(v) {
            None => Ok(()),
            Some(dir) => crate::lora::load_adapter(model, &dir.join("adapter")),
        }
    }
}

/// A model as the store holds it: where its base weights are and, for a model
/// in the store, the directory of its versions. The server's model swap, the
/// CLI and the trainer's publish all name a model by this one description.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    pub name: String,
    pub weights: PathBuf,
    /// The model's directory in the store; `None` for a model used straight from
    /// a path, which has only its base version.
    pub model_dir: Option<PathBuf>,
}

impl ModelSpec {
    /// Its versions, when it has any.
    pub fn registry(&self) -> Option<Registry> {
        self.model_dir.as_ref().map(Registry::new)
    }

    /// The version the registry serves (the base for a model from a path).
    pub fn current(&self) -> Result<Version> {
        match self.registry() {
            Some(r) => r.current(),
            None => Ok(Version::Base),
        }
    }

    /// Loads the model at `version`: the base weights, and the version's adapter.
    pub fn load(
        &self,
        version: Version,
        precision: crate::Precision,
        device: &crate::Device,
    ) -> Result<crate::LanguageModel> {
        let mut lm = crate::LanguageModel::load(&self.weights, precision, device)?;
        match self.registry() {
            Some(r) => r.load_into(&mut lm.model, version)?,
            None if version != Version::Base => {
                return Err(Error::InvalidArgument(format!(
                    "{} is a model from a path: it has no version {version}, only base",
                    self.name
                )))
            }
            None => {}
        }
        Ok(lm)
    }
}

/// `NAME@VERSION` (`VERSION` is `base`, `v<N>` or `current`) or just `NAME`.
pub fn split_version(spec: &str) -> Result<(&str, Option<Version>)> {
    match spec.rsplit_once('@') {
        None => Ok((spec, None)),
        Some((name, "current")) => Ok((name, None)),
        Some((name, v)) => Version::parse(v).map(|v| (name, Some(v))).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "`{v}` is not a version: use base, v<N> or current (e.g. {name}@v2)"
            ))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_versions() {
        assert_eq!(split_version("m").unwrap(), ("m", None));
        assert_eq!(
            split_version("m@v3").unwrap(),
            ("m", Some(Version::Numbered(3)))
        );
        assert_eq!(split_version("m@base").unwrap(), ("m", Some(Version::Base)));
        assert_eq!(split_version("m@current").unwrap(), ("m", None));
        assert!(split_version("m@latest")
            .unwrap_err()
            .to_string()
            .contains("not a version"));
        assert_eq!(
            split_version("/path/to/model.gguf").unwrap().0,
            "/path/to/model.gguf"
        );
    }

    #[test]
    fn versions_parse_and_print() {
        assert_eq!(Version::parse("base"), Some(Version::Base));
        assert_eq!(Version::parse(" v12\n"), Some(Version::Numbered(12)));
        assert_eq!(Version::parse("v0"), None);
        assert_eq!(Version::parse("12"), None);
        assert_eq!(Version::Numbered(3).to_string(), "v3");
    }

    #[test]
    fn publish_numbers_versions_and_moves_the_pointer() {
        let dir = tempfile::tempdir().unwrap();
        let reg = Registry::new(dir.path().join("m"));
        assert_eq!(reg.current().unwrap(), Version::Base);
        let adapter = dir.path().join("a");
        std::fs::create_dir_all(&adapter).unwrap();
        std::fs::write(adapter.join("adapter_config.json"), "{}").unwrap();
        let v1 = reg
            .publish(&adapter, "first", serde_json::Value::Null)
            .unwrap();
        let v2 = reg
            .publish(&adapter, "second", serde_json::Value::Null)
            .unwrap();
        assert_eq!((v1, v2), (Version::Numbered(1), Version::Numbered(2)));
        assert_eq!(reg.current().unwrap(), v2);
        assert_eq!(reg.versions().unwrap(), vec![v1, v2]);
        let m = reg.manifest(v2).unwrap().unwrap();
        assert_eq!((m.parent.as_str(), m.summary.as_str()), ("v1", "second"));
        assert!(reg
            .version_dir(v2)
            .unwrap()
            .join("adapter/adapter_config.json")
            .is_file());
        reg.set_current(Version::Base).unwrap();
        assert_eq!(reg.current().unwrap(), Version::Base);
        assert!(reg.set_current(Version::Numbered(9)).is_err());
        std::fs::write(dir.path().join("m/current"), "garbage").unwrap();
        let err = reg.current().unwrap_err().to_string();
        assert!(err.contains("garbage"), "{err}");
    }
}
