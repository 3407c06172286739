//! Compiling components, in this process or in a child process with a
//! deadline and resource limits, and the on-disk cache of the results.
//!
//! Uploaded modules are untrusted input to a compiler: a crafted one could
//! make Cranelift run long or allocate much. The server therefore compiles
//! in a child (`quantbox plugin compile-child`), kills it at the deadline,
//! and the child caps its own address space and CPU time. Artifacts are
//! keyed by module sha256 and the engine fingerprint; the cache directory
//! is private to quantbox, so only artifacts it produced itself are ever
//! deserialized. Loaded artifacts are memory-mapped from their files, so a
//! file is only ever replaced (write a temporary file, rename), never
//! rewritten in place.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wasmtime::component::Component;

use crate::engine::PluginEngine;
use crate::error::PluginError;
use crate::limits::Limits;

/// The subcommand of the quantbox binary that compiles one component.
pub const CHILD_SUBCOMMAND: [&str; 2] = ["plugin", "compile-child"];

/// How components get compiled.
#[derive(Debug, Clone)]
pub enum Compiler {
    /// Here, on the calling thread (tests, benchmarks, the CLI).
    InProcess,
    /// In a child process of `exe` (the server).
    Child {
        exe: PathBuf,
        timeout: Duration,
        /// Address-space cap of the child, in bytes.
        memory_bytes: u64,
    },
}

/// What the child is told (as JSON on its command line).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct ChildJob {
    pub input: PathBuf,
    pub output: PathBuf,
    pub limits: Limits,
    pub memory_bytes: u64,
    pub cpu_secs: u64,
}

/// Exit status of the child when the module itself is at fault (as
/// opposed to the child failing).
pub const CHILD_EXIT_INVALID: i32 = 3;

/// The child's side: caps itself, compiles `input`, writes `output`.
/// On failure, the exit status to use and the message for stderr.
pub fn run_child(job: &ChildJob) -> Result<(), (i32, String)> {
    use rlimit::Resource;
    let fail = |e: &dyn std::fmt::Display| (1, e.to_string());
    Resource::AS
        .set(job.memory_bytes, job.memory_bytes)
        .map_err(|e| fail(&format!("cannot cap memory: {e}")))?;
    Resource::CPU
        .set(job.cpu_secs, job.cpu_secs)
        .map_err(|e| fail(&format!("cannot cap CPU time: {e}")))?;
    let bytes = std::fs::read(&job.input).map_err(|e| fail(&e))?;
    let engine = PluginEngine::for_compiling(job.limits.clone()).map_err(|e| fail(&e))?;
    let artifact = engine
        .engine
        .precompile_component(&bytes)
        .map_err(|e| (CHILD_EXIT_INVALID, format!("{e:#}")))?;
    std::fs::write(&job.output, artifact).map_err(|e| fail(&e))
}

impl Compiler {
    /// Compiled bytes of `component` for `engine`.
    fn precompile(&self, engine: &PluginEngine, component: &[u8]) -> Result<Vec<u8>, PluginError> {
        match self {
            Compiler::InProcess => engine
                .engine
                .precompile_component(component)
                .map_err(|e| PluginError::Invalid(format!("{e:#}"))),
            Compiler::Child {
                exe,
                timeout,
                memory_bytes,
            } => {
                let dir = tempfile::tempdir().map_err(|e| PluginError::Host(e.to_string()))?;
                let job = ChildJob {
                    input: dir.path().join("in.wasm"),
                    output: dir.path().join("out.cwasm"),
                    limits: engine.limits.clone(),
                    memory_bytes: *memory_bytes,
                    cpu_secs: timeout.as_secs().max(1) * 2,
                };
                std::fs::write(&job.input, component)
                    .map_err(|e| PluginError::Host(e.to_string()))?;
                let json =
                    serde_json::to_string(&job).map_err(|e| PluginError::Host(e.to_string()))?;
                let mut child = Command::new(exe)
                    .args(CHILD_SUBCOMMAND)
                    .arg(json)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(|e| {
                        PluginError::Host(format!("cannot start {}: {e}", exe.display()))
                    })?;
                let started = Instant::now();
                let status = loop {
                    if let Some(status) = child
                        .try_wait()
                        .map_err(|e| PluginError::Host(e.to_string()))?
                    {
                        break status;
                    }
                    if started.elapsed() > *timeout {
                        let _ = child.kill();
                        let _ = child.wait();
                        return Err(PluginError::Compile(format!(
                            "did not finish within {} s",
                            timeout.as_secs_f64()
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                };
                let mut stderr = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut stderr);
                }
                if !status.success() {
                    let msg = stderr.trim().to_string();
                    return Err(if status.code() == Some(CHILD_EXIT_INVALID) {
                        PluginError::Invalid(msg)
                    } else {
                        PluginError::Compile(format!("compiler process failed ({status}): {msg}"))
                    });
                }
                std::fs::read(&job.output).map_err(|e| PluginError::Host(e.to_string()))
            }
        }
    }
}

/// Compiled artifacts on disk.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
}

impl ArtifactCache {
    /// Creates the directory (mode 0700) if needed.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, PluginError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)
            .map_err(|e| PluginError::Host(format!("{}: {e}", dir.display())))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        }
        Ok(Self { dir })
    }

    pub fn path(&self, engine: &PluginEngine, sha256: &str) -> PathBuf {
        self.dir
            .join(format!("{sha256}-{}.cwasm", engine.fingerprint()))
    }

    /// Removes every artifact of `sha256`.
    pub fn remove(&self, sha256: &str) {
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(sha256) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }

    /// The component for `bytes` (whose hash is `sha256`): from the cache,
    /// else compiled by `compiler` and stored. Returns whether it was a hit.
    pub(crate) fn load(
        &self,
        engine: &PluginEngine,
        compiler: &Compiler,
        sha256: &str,
        bytes: &[u8],
    ) -> Result<(Component, bool), PluginError> {
        let path = self.path(engine, sha256);
        if path.exists() {
            match deserialize(engine, &path) {
                Ok(c) => return Ok((c, true)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "discarding unusable compiled plugin");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let artifact = compiler.precompile(engine, bytes)?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, &artifact)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| PluginError::Host(format!("{}: {e}", path.display())))?;
        Ok((deserialize(engine, &path)?, false))
    }
}

fn deserialize(engine: &PluginEngine, path: &Path) -> Result<Component, PluginError> {
    // SAFETY: wasmtime requires that deserialized bytes come from
    // `precompile_component` of a compatible engine. Files in this private
    // directory are written only by `ArtifactCache::load` from the output of
    // quantbox's own compiler, and wasmtime itself checks the engine
    // compatibility header before using them.
    #[allow(unsafe_code)]
    unsafe { Component::deserialize_file(&engine.engine, path) }.map_err(|e| {
        PluginError::Host(format!(
            "cannot load compiled plugin {}: {e:#}",
            path.display()
        ))
    })
}
