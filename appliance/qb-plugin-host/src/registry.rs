//! The plugin registry: validates uploads, keeps components in the
//! [`MetaStore`], and hands compiled plugins to whoever runs them.
//!
//! Upload checks, in order: size cap, component header, compilation (in a
//! child process in the server), imports (the strategy world of this
//! version only), instantiation and `describe`, and the description itself
//! (name, version, parameter ranges). A plugin's id is the sha256 of its
//! bytes; uploading the same bytes twice is one plugin.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::Utc;
use parking_lot::Mutex;
use qb_core::model::{Page, PageRequest, PluginInfo, PluginParam};
use qb_core::{MetaStore, StoreError};

use crate::compile::{ArtifactCache, Compiler};
use crate::engine::PluginEngine;
use crate::error::PluginError;
use crate::instance::Inert;
use crate::plugin::{INTERFACE, Plugin, check_claim, claimed_name, precheck, sha256_hex};
use crate::{Info, ParamType};

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `describe` returned something unusable.
    #[error("plugin description is invalid: {0}")]
    Description(String),
    /// The plugin is in use and cannot be deleted.
    #[error("{0}")]
    InUse(String),
}

/// Holds a plugin in use; the plugin cannot be deleted while one exists.
pub struct Lease {
    id: String,
    leases: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut l = self.leases.lock();
        if let Some(n) = l.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                l.remove(&self.id);
            }
        }
    }
}

/// The registry; cheap to share behind an `Arc`.
pub struct PluginRegistry {
    meta: Arc<dyn MetaStore>,
    engine: PluginEngine,
    cache: ArtifactCache,
    compiler: Compiler,
    loaded: Mutex<HashMap<String, Arc<Plugin>>>,
    leases: Arc<Mutex<HashMap<String, usize>>>,
    /// Uploads being checked (each compiles) at once.
    compiles: Arc<tokio::sync::Semaphore>,
    max_compiles: usize,
    /// Components compiled (not found in the artifact cache).
    compiled: AtomicU64,
}

/// Room to check one upload: taken before its body is read.
pub struct CompileSlot(#[allow(dead_code)] tokio::sync::OwnedSemaphorePermit);

fn param_kind(t: ParamType) -> &'static str {
    match t {
        ParamType::Integer => "integer",
        ParamType::Float => "float",
        ParamType::Boolean => "boolean",
    }
}

/// Checks a description and turns it into registry metadata.
fn metadata(
    info: &Info,
    id: &str,
    size: usize,
    by: Option<String>,
) -> Result<PluginInfo, RegistryError> {
    let bad = |m: String| Err(RegistryError::Description(m));
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    if !name_ok(&info.name) {
        return bad(format!(
            "name {:?} must be 1-64 characters of letters, digits, '-', '_' or '.'",
            info.name
        ));
    }
    if !name_ok(&info.version) {
        return bad(format!("version {:?} must be like 1.2.3", info.version));
    }
    let mut params = Vec::with_capacity(info.params.len());
    for p in &info.params {
        if !name_ok(&p.name) {
            return bad(format!(
                "parameter name {:?} is not a plain identifier",
                p.name
            ));
        }
        if params.iter().any(|q: &PluginParam| q.name == p.name) {
            return bad(format!("parameter {:?} is declared twice", p.name));
        }
        if !p.default.is_finite()
            || p.min.is_some_and(|m| !m.is_finite() || p.default < m)
            || p.max.is_some_and(|m| !m.is_finite() || p.default > m)
        {
            return bad(format!(
                "parameter {:?}: default {} is outside [{:?}, {:?}]",
                p.name, p.default, p.min, p.max
            ));
        }
        params.push(PluginParam {
            name: p.name.clone(),
            kind: param_kind(p.type_).into(),
            default: p.default,
            min: p.min,
            max: p.max,
            description: p.description.clone(),
        });
    }
    Ok(PluginInfo {
        id: id.into(),
        name: info.name.clone(),
        version: info.version.clone(),
        description: info.description.clone(),
        interface: INTERFACE.into(),
        params,
        symbols: info.symbols,
        intervals: info.intervals.clone(),
        size_bytes: size as u64,
        uploaded_by: by,
        uploaded_at: Utc::now(),
    })
}

impl PluginRegistry {
    pub fn new(
        meta: Arc<dyn MetaStore>,
        engine: PluginEngine,
        cache: ArtifactCache,
        compiler: Compiler,
    ) -> Self {
        Self {
            meta,
            engine,
            cache,
            compiler,
            loaded: Mutex::new(HashMap::new()),
            leases: Arc::new(Mutex::new(HashMap::new())),
            compiles: Arc::new(tokio::sync::Semaphore::new(2)),
            max_compiles: 2,
            compiled: AtomicU64::new(0),
        }
    }

    /// At most `n` uploads checked at once (default 2).
    pub fn with_max_compiles(mut self, n: usize) -> Self {
        self.compiles = Arc::new(tokio::sync::Semaphore::new(n.max(1)));
        self.max_compiles = n.max(1);
        self
    }

    /// A slot to check an upload in, or `Busy` while `max_compiles` uploads
    /// are being checked.
    pub fn compile_slot(&self) -> Result<CompileSlot, PluginError> {
        self.compiles
            .clone()
            .try_acquire_owned()
            .map(CompileSlot)
            .map_err(|_| {
                PluginError::Busy(format!(
                    "{} plugin uploads are being checked; try again shortly",
                    self.max_compiles
                ))
            })
    }

    pub fn engine(&self) -> &PluginEngine {
        &self.engine
    }

    /// Compiles (or loads from the cache) and checks the bytes of plugin
    /// `id`; blocking.
    fn compile_blocking(&self, bytes: &[u8], id: String) -> Result<Plugin, PluginError> {
        let plugin = Plugin::load_hashed(&self.engine, &self.cache, &self.compiler, bytes, id)?;
        self.compiled
            .fetch_add(u64::from(!plugin.was_cached()), Ordering::Relaxed);
        Ok(plugin)
    }

    /// Components this registry has compiled (artifact cache misses).
    pub fn compiled(&self) -> u64 {
        self.compiled.load(Ordering::Relaxed)
    }

    /// Validates and stores an upload, in a [`CompileSlot`]. Returns the
    /// metadata and whether the plugin is new (the same bytes uploaded
    /// again are not). A refused upload leaves no compiled artifact behind.
    ///
    /// A plugin built with the SDK carries its name and version in a
    /// custom section ([`claimed_name`]): a clash with a stored plugin is
    /// refused before compiling, and a `describe` that disagrees with the
    /// claim afterwards. One without the section is compiled first and its
    /// `describe` decides; either way a clash stores and keeps nothing.
    pub async fn upload(
        self: &Arc<Self>,
        bytes: Vec<u8>,
        uploaded_by: Option<String>,
        _slot: CompileSlot,
    ) -> Result<(PluginInfo, bool), RegistryError> {
        let id = sha256_hex(&bytes);
        if let Some(existing) = self.meta.plugin(&id).await? {
            return Ok((existing, false));
        }
        // Size and format first: a core module or a file too large is
        // refused for what it is, whatever it claims.
        precheck(&self.engine, &bytes)?;
        let claim = claimed_name(&bytes);
        if let Some((name, version)) = &claim
            && self
                .meta
                .plugin_by_name(name, Some(version))
                .await?
                .is_some()
        {
            return Err(StoreError::Conflict(format!(
                "plugin {name} {version} is already registered (other bytes; refused before compiling)"
            ))
            .into());
        }
        let outcome = self.check_and_store(&id, bytes, claim, uploaded_by).await;
        if outcome.is_err() && self.meta.plugin(&id).await.ok().flatten().is_none() {
            self.loaded.lock().remove(&id);
            self.cache.remove(&id);
        }
        outcome
    }

    async fn check_and_store(
        self: &Arc<Self>,
        id: &str,
        bytes: Vec<u8>,
        claim: Option<(String, String)>,
        uploaded_by: Option<String>,
    ) -> Result<(PluginInfo, bool), RegistryError> {
        let id = id.to_string();
        let this = self.clone();
        let key = id.clone();
        let (plugin, bytes, info) = tokio::task::spawn_blocking(move || {
            let plugin = this.compile_blocking(&bytes, key)?;
            let info = plugin.instantiate(Inert, 0)?.info().clone();
            Ok::<_, PluginError>((plugin, bytes, info))
        })
        .await
        .map_err(|e| PluginError::Host(e.to_string()))??;
        check_claim(claim.as_ref(), &info)?;
        let meta = metadata(&info, &id, bytes.len(), uploaded_by)?;
        self.meta.insert_plugin(&meta, &bytes).await?;
        self.loaded.lock().insert(id, Arc::new(plugin));
        Ok((meta, true))
    }

    pub async fn get(&self, id: &str) -> Result<Option<PluginInfo>, RegistryError> {
        Ok(self.meta.plugin(id).await?)
    }

    pub async fn list(&self, page: PageRequest) -> Result<Page<PluginInfo>, RegistryError> {
        Ok(self.meta.list_plugins(page).await?)
    }

    /// A plugin by id (64 hex digits) or `name[@version]` (newest upload
    /// of that name when no version is given).
    pub async fn resolve(&self, reference: &str) -> Result<PluginInfo, RegistryError> {
        let found = if reference.len() == 64 && reference.bytes().all(|b| b.is_ascii_hexdigit()) {
            self.meta.plugin(&reference.to_ascii_lowercase()).await?
        } else {
            let (name, version) = match reference.split_once('@') {
                Some((n, v)) => (n, Some(v)),
                None => (reference, None),
            };
            self.meta.plugin_by_name(name, version).await?
        };
        found.ok_or_else(|| StoreError::NotFound(format!("plugin {reference:?}")).into())
    }

    /// The compiled plugin, ready to instantiate (from memory, the
    /// artifact cache, or compiled now); blocking on a miss.
    pub async fn load(self: &Arc<Self>, id: &str) -> Result<Arc<Plugin>, RegistryError> {
        if let Some(p) = self.loaded.lock().get(id) {
            return Ok(p.clone());
        }
        let bytes = self
            .meta
            .plugin_wasm(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("plugin {id}")))?;
        let this = self.clone();
        let key = id.to_string();
        let plugin = tokio::task::spawn_blocking(move || this.compile_blocking(&bytes, key))
            .await
            .map_err(|e| PluginError::Host(e.to_string()))??;
        let plugin = Arc::new(plugin);
        self.loaded.lock().insert(id.to_string(), plugin.clone());
        Ok(plugin)
    }

    /// Marks a plugin in use until the lease is dropped.
    pub fn lease(&self, id: &str) -> Lease {
        *self.leases.lock().entry(id.to_string()).or_default() += 1;
        Lease {
            id: id.to_string(),
            leases: self.leases.clone(),
        }
    }

    /// How many runs hold the plugin.
    pub fn in_use(&self, id: &str) -> usize {
        self.leases.lock().get(id).copied().unwrap_or(0)
    }

    /// Deletes a plugin no run is using, with its compiled artifacts.
    pub async fn delete(&self, id: &str) -> Result<PluginInfo, RegistryError> {
        let info = self
            .meta
            .plugin(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("plugin {id}")))?;
        let users = self.in_use(id);
        if users > 0 {
            return Err(RegistryError::InUse(format!(
                "plugin {} {} is used by {users} running strateg{}; stop {} first",
                info.name,
                info.version,
                if users == 1 { "y" } else { "ies" },
                if users == 1 { "it" } else { "them" }
            )));
        }
        self.meta.delete_plugin(id).await?;
        self.loaded.lock().remove(id);
        self.cache.remove(id);
        Ok(info)
    }
}
