//! Sandbox limits. The defaults are safe for a shared box; the server
//! takes them from the `[plugins]` section of its configuration.

use std::time::Duration;

/// Limits of the engine and of every instance it runs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Linear memory per instance, in bytes (Python plugins need ≥ 16 MiB).
    pub memory_bytes: usize,
    /// Wall-clock budget of one call, enforced by epoch interruption.
    pub call_timeout: Duration,
    /// Deterministic mode: an instruction budget per call (fuel) instead of
    /// (as well as) the deadline. `None` turns fuel metering off, which makes
    /// calls faster.
    pub fuel_per_call: Option<u64>,
    /// Largest module accepted, checked before anything is compiled.
    pub max_module_bytes: usize,
    /// WebAssembly stack per call; worker threads run with much larger
    /// native stacks (see [`WORKER_STACK_BYTES`]).
    pub max_wasm_stack: usize,
    /// Log lines a strategy may write per simulated second; the rest are
    /// counted and dropped.
    pub log_lines_per_sec: u32,
    /// Instances that may exist at once (pooling allocator slots).
    pub max_instances: u32,
}

/// Native stack of threads that call into plugins: far above
/// [`Limits::max_wasm_stack`], so a runaway recursion hits the WebAssembly
/// limit (a clean trap) long before the thread's own guard page.
pub const WORKER_STACK_BYTES: usize = 16 << 20;

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            call_timeout: Duration::from_secs(2),
            fuel_per_call: None,
            max_module_bytes: 64 << 20,
            max_wasm_stack: 1 << 20,
            log_lines_per_sec: 20,
            max_instances: 64,
        }
    }
}
