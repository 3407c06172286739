//! Why a plugin could not be loaded, or why a call into it was stopped.

use std::fmt;

/// Which way a call was stopped; the `reason` label of
/// `quantbox_plugin_traps_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Ran past the per-call deadline (epoch interruption).
    Timeout,
    /// Used up its instruction budget (deterministic mode).
    OutOfFuel,
    /// Tried to grow memory past its cap.
    OutOfMemory,
    /// Recursed past the WebAssembly stack limit.
    StackOverflow,
    /// Any other trap: a panic, `unreachable`, a bad memory access.
    Trap,
    /// Wrote more state (keys or bytes, or a larger snapshot) than allowed.
    StateLimit,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::OutOfFuel => "out_of_fuel",
            Self::OutOfMemory => "out_of_memory",
            Self::StackOverflow => "stack_overflow",
            Self::Trap => "trap",
            Self::StateLimit => "state_limit",
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A call the host stopped: which plugin, which callback, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    pub plugin: String,
    pub version: String,
    pub callback: &'static str,
    pub reason: StopReason,
    pub detail: String,
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "plugin {} {} was stopped in {}: {} ({})",
            self.plugin, self.version, self.callback, self.reason, self.detail
        )
    }
}

/// Everything that can go wrong with a plugin.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PluginError {
    /// Bigger than the module size cap; nothing was compiled.
    #[error("module is {size} bytes; the limit is {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    /// Not a WebAssembly component, or one wasmtime cannot compile.
    #[error("not a valid strategy component: {0}")]
    Invalid(String),
    /// A component built for another interface, or importing what
    /// strategies may not use.
    #[error("{0}")]
    Incompatible(String),
    /// Compilation did not finish within its time or memory budget.
    #[error("compilation failed: {0}")]
    Compile(String),
    /// A call was stopped; the instance is unusable afterwards.
    #[error("{0}")]
    Stopped(Stop),
    /// `init` refused the parameters or state.
    #[error("plugin refused: {0}")]
    Refused(String),
    /// The instance was stopped by an earlier call.
    #[error("plugin instance was stopped earlier ({0}) and cannot be called again")]
    Poisoned(StopReason),
    /// No instance slot is free (the pooling allocator's limit).
    #[error("no plugin instance slot free: {0}")]
    Busy(String),
    /// The host itself failed (I/O on the artifact cache, say).
    #[error("plugin host error: {0}")]
    Host(String),
}
