//! A checked, compiled plugin: from bytes to something that can be
//! instantiated many times.

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use crate::compile::{ArtifactCache, Compiler};
use crate::componentize::{WasmKind, kind};
use crate::engine::PluginEngine;
use crate::error::PluginError;

/// The plugin interface version this host speaks.
pub const INTERFACE: &str = "quantbox:strategy/host@0.1.0";
/// The types interface of the same version.
pub const TYPES: &str = "quantbox:strategy/types@0.1.0";

/// A compiled plugin that passed the import check.
pub struct Plugin {
    pub(crate) engine: PluginEngine,
    pub(crate) component: Component,
    sha256: String,
    size: usize,
    cached: bool,
}

/// Lowercase hex sha256 of `bytes`: a plugin's identity.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The custom section in which a plugin built with the SDK carries its
/// package's `name@version` (written by `export_strategy!`).
pub const CLAIM_SECTION: &str = "quantbox:plugin";

/// The name and version a component claims in its [`CLAIM_SECTION`],
/// read without compiling it (the section may sit in a core module nested
/// in the component). `None` when it carries none (componentize-py
/// plugins, components built by hand) or cannot be parsed that far.
pub fn claimed_name(bytes: &[u8]) -> Option<(String, String)> {
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        match payload {
            Ok(wasmparser::Payload::CustomSection(c)) if c.name() == CLAIM_SECTION => {
                let (name, version) = std::str::from_utf8(c.data()).ok()?.split_once('@')?;
                return Some((name.to_string(), version.to_string()));
            }
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

/// Refuses a `describe` whose name or version disagrees with the claim
/// the plugin was built with.
pub fn check_claim(
    claim: Option<&(String, String)>,
    info: &crate::Info,
) -> Result<(), PluginError> {
    match claim {
        Some((name, version)) if *name != info.name || *version != info.version => {
            Err(PluginError::Invalid(format!(
                "describe says {} {} but the plugin was built as {name} {version} \
                 (its package name and version): make them agree",
                info.name, info.version
            )))
        }
        _ => Ok(()),
    }
}

/// Checks size and format before anything is compiled.
pub(crate) fn precheck(engine: &PluginEngine, bytes: &[u8]) -> Result<(), PluginError> {
    let limit = engine.limits.max_module_bytes;
    if bytes.len() > limit {
        return Err(PluginError::TooLarge {
            size: bytes.len(),
            limit,
        });
    }
    match kind(bytes) {
        WasmKind::Component => Ok(()),
        WasmKind::CoreModule => Err(PluginError::Invalid(
            "this is a core WebAssembly module, not a component; build strategies with \
             `quantbox plugin build` (Rust) or componentize-py (Python)"
                .into(),
        )),
        WasmKind::NotWasm => Err(PluginError::Invalid(
            "not WebAssembly (the file does not start with the \\0asm header)".into(),
        )),
    }
}

/// Refuses components importing anything but the strategy interface of
/// this version: no WASI, no other interface, no other version.
fn check_imports(engine: &PluginEngine, component: &Component) -> Result<(), PluginError> {
    let ty = component.component_type();
    for (name, _) in ty.imports(&engine.engine) {
        if name == INTERFACE || name == TYPES {
            continue;
        }
        let unversioned = name.split('@').next().unwrap_or(name);
        if unversioned.starts_with("quantbox:strategy/") {
            return Err(PluginError::Incompatible(format!(
                "plugin was built for {name}; this quantbox speaks {INTERFACE}: rebuild it with a matching quantbox-sdk"
            )));
        }
        let what = if unversioned.starts_with("wasi:") {
            "a WASI interface; strategies run without WASI (no clock, files, network or \
             randomness: time and a seeded random number come from the host). Rust: build \
             with `quantbox plugin build`; Python: componentize-py --stub-wasi"
        } else {
            "an interface outside the quantbox:strategy world"
        };
        return Err(PluginError::Incompatible(format!(
            "plugin imports {name}, {what}"
        )));
    }
    Ok(())
}

impl Plugin {
    /// Compiles here, without a cache (tests, benchmarks, one-off tools).
    pub fn compile(engine: &PluginEngine, bytes: &[u8]) -> Result<Self, PluginError> {
        precheck(engine, bytes)?;
        let component = Component::new(&engine.engine, bytes)
            .map_err(|e| PluginError::Invalid(format!("{e:#}")))?;
        Self::checked(engine, component, sha256_hex(bytes), bytes.len(), false)
    }

    /// Loads from the artifact cache, compiling with `compiler` on a miss.
    pub fn load(
        engine: &PluginEngine,
        cache: &ArtifactCache,
        compiler: &Compiler,
        bytes: &[u8],
    ) -> Result<Self, PluginError> {
        Self::load_hashed(engine, cache, compiler, bytes, sha256_hex(bytes))
    }

    /// [`Plugin::load`] for bytes whose hash the caller has just computed
    /// (the registry keys everything by it; a large component is not
    /// hashed twice).
    pub(crate) fn load_hashed(
        engine: &PluginEngine,
        cache: &ArtifactCache,
        compiler: &Compiler,
        bytes: &[u8],
        sha256: String,
    ) -> Result<Self, PluginError> {
        precheck(engine, bytes)?;
        let (component, cached) = cache.load(engine, compiler, &sha256, bytes)?;
        Self::checked(engine, component, sha256, bytes.len(), cached)
    }

    fn checked(
        engine: &PluginEngine,
        component: Component,
        sha256: String,
        size: usize,
        cached: bool,
    ) -> Result<Self, PluginError> {
        check_imports(engine, &component)?;
        Ok(Self {
            engine: engine.clone(),
            component,
            sha256,
            size,
            cached,
        })
    }

    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// Whether [`Plugin::load`] found a compiled artifact.
    pub fn was_cached(&self) -> bool {
        self.cached
    }
}
