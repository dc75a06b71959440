//! The served model and its version.
//!
//! The model is loaded on first use (a server that is only asked for symbols never
//! loads it). A watcher polls the registry's `current` pointer; when it moves, the
//! new version is loaded beside the old one and swapped in between requests:
//! requests hold an `Arc` of the version they started on and finish on it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use basis_model::registry::{ModelSpec, Version};
use basis_model::{LanguageModel, Precision};

/// Turns the `model` setting (a name, a path, or `None` for the default) into a
/// [`ModelSpec`]; the CLI provides it (it owns the store and the downloader).
pub type Resolver = Arc<dyn Fn(Option<&str>) -> anyhow::Result<ModelSpec> + Send + Sync>;

/// A loaded model version.
pub struct Served {
    pub lm: LanguageModel,
    pub name: String,
    pub version: Version,
    /// Where it came from (its registry holds its versions' evaluations).
    pub spec: ModelSpec,
}

/// The model the server serves (see the module docs).
pub struct ModelHost {
    resolver: Resolver,
    setting: Mutex<Option<String>>,
    current: Mutex<Option<Arc<Served>>>,
    load_lock: tokio::sync::Mutex<()>,
    /// The prefix cache's memory limit, for every version loaded.
    prefix_limit: Arc<AtomicUsize>,
}

fn load(spec: &ModelSpec, version: Version, prefix_limit: usize) -> anyhow::Result<Served> {
    let lm = spec.load(
        version,
        Precision::Quantized,
        &basis_model::default_device(),
    )?;
    lm.generator.set_prefix_limit(prefix_limit);
    Ok(Served {
        lm,
        name: spec.name.clone(),
        version,
        spec: spec.clone(),
    })
}

impl ModelHost {
    pub fn new(resolver: Resolver) -> Self {
        Self {
            resolver,
            setting: Mutex::new(None),
            current: Mutex::new(None),
            load_lock: tokio::sync::Mutex::new(()),
            prefix_limit: Arc::new(AtomicUsize::new(
                basis_model::generate::DEFAULT_PREFIX_CACHE_BYTES,
            )),
        }
    }

    /// Sets the prefix cache's memory limit, now and for versions loaded later.
    pub fn set_prefix_limit(&self, bytes: usize) {
        self.prefix_limit.store(bytes, Ordering::Relaxed);
        if let Some(m) = self.loaded() {
            m.lm.generator.set_prefix_limit(bytes);
        }
    }

    /// Changes the `model` setting; the next request loads the new model.
    pub fn set_model(&self, model: Option<String>) {
        let mut setting = self.setting.lock().unwrap();
        if *setting != model {
            *setting = model;
            *self.current.lock().unwrap() = None;
        }
    }

    /// The loaded version, if any.
    pub fn loaded(&self) -> Option<Arc<Served>> {
        self.current.lock().unwrap().clone()
    }

    /// The served model, loading it (off the async threads) if needed.
    pub async fn get(&self) -> anyhow::Result<Arc<Served>> {
        if let Some(m) = self.loaded() {
            return Ok(m);
        }
        let _guard = self.load_lock.lock().await;
        if let Some(m) = self.loaded() {
            return Ok(m);
        }
        let setting = self.setting.lock().unwrap().clone();
        let resolver = self.resolver.clone();
        let limit = self.prefix_limit.load(Ordering::Relaxed);
        let served = tokio::task::spawn_blocking(move || -> anyhow::Result<Served> {
            let spec = resolver(setting.as_deref())?;
            let version = spec.current()?;
            load(&spec, version, limit)
        })
        .await??;
        let served = Arc::new(served);
        tracing::info!("serving model {} {}", served.name, served.version);
        *self.current.lock().unwrap() = Some(served.clone());
        Ok(served)
    }

    /// Checks the registry's pointer; when it names another version than the one
    /// loaded, loads that version and swaps it in. Returns the new version.
    pub async fn poll(&self) -> anyhow::Result<Option<Arc<Served>>> {
        let Some(old) = self.loaded() else {
            return Ok(None);
        };
        let _guard = self.load_lock.lock().await;
        let setting = self.setting.lock().unwrap().clone();
        let resolver = self.resolver.clone();
        let old_version = old.version;
        let limit = self.prefix_limit.load(Ordering::Relaxed);
        let loaded = tokio::task::spawn_blocking(move || -> anyhow::Result<Option<Served>> {
            let spec = resolver(setting.as_deref())?;
            let version = spec.current()?;
            if version == old_version {
                return Ok(None);
            }
            load(&spec, version, limit).map(Some)
        })
        .await??;
        let Some(served) = loaded else {
            return Ok(None);
        };
        let served = Arc::new(served);
        let mut current = self.current.lock().unwrap();
        // A model setting that changed meanwhile wins over this reload.
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, &old)) {
            tracing::info!("model {} moved to {}", served.name, served.version);
            *current = Some(served.clone());
            Ok(Some(served))
        } else {
            Ok(None)
        }
    }
}
