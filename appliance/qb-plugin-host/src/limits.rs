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
    /// WebAssembly stack per call; threads calling plugins need a native
    /// stack well above it (the job workers have 16 MiB).
    pub max_wasm_stack: usize,
    /// Log lines a strategy may write per simulated second; the rest are
    /// counted and dropped.
    pub log_lines_per_sec: u32,
    /// Instances that may exist at once (pooling allocator slots).
    pub max_instances: u32,
    /// Keys a strategy's state may hold (`state-set`).
    pub state_max_keys: usize,
    /// Bytes a strategy's state may hold (keys and values), and the
    /// largest snapshot it may hand over.
    pub state_max_bytes: usize,
}

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
            state_max_keys: 1024,
            state_max_bytes: 4 << 20,
        }
    }
}

impl From<&qb_core::config::PluginsConfig> for Limits {
    fn from(c: &qb_core::config::PluginsConfig) -> Self {
        Self {
            memory_bytes: (c.memory_mib as usize) << 20,
            call_timeout: Duration::from_millis(c.call_timeout_ms),
            fuel_per_call: (c.fuel_per_call > 0).then_some(c.fuel_per_call),
            max_module_bytes: (c.max_module_mib as usize) << 20,
            max_wasm_stack: (c.max_wasm_stack_kib as usize) << 10,
            log_lines_per_sec: c.log_lines_per_sec,
            max_instances: c.max_instances,
            state_max_keys: c.state_max_keys,
            state_max_bytes: (c.state_max_kib as usize) << 10,
        }
    }
}
