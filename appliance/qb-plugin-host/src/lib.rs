//! The sandboxed host for strategy plugins: WebAssembly components built
//! against `plugin-sdk/wit/strategy.wit` (the one interface definition; the
//! bindings below are generated from it).
//!
//! Sandbox:
//! - imports: the `quantbox:strategy` host interface of this version and
//!   nothing else; the linker holds no WASI at all, and a component
//!   importing anything more is refused before it runs ([`Plugin`]);
//! - CPU: every call has a wall-clock deadline (epoch interruption, one
//!   ticker thread per engine) and optionally an instruction budget (fuel,
//!   the deterministic mode);
//! - memory: a cap per instance, instances from a pooling allocator, a
//!   WebAssembly stack limit far below the native stack of worker threads;
//! - a stopped call is reported with plugin, version, callback and reason,
//!   counted in `quantbox_plugin_traps_total`, and leaves the instance
//!   unusable; the host and other instances go on;
//! - compilation of uploaded modules runs in a child process with a
//!   deadline and memory cap; artifacts are cached by module hash and
//!   engine fingerprint ([`compile`]).

mod componentize;
mod engine;
mod error;
mod instance;
mod limits;
mod plugin;
mod runner;

#[cfg(feature = "native")]
pub mod native;

pub mod compile;
pub mod registry;

use wasmtime::component::bindgen;

bindgen!({ world: "strategy", path: "../../plugin-sdk/wit" });

// The world's `use` brings Bars, Info, OrderEvent, Param and Ticks into
// this module.
pub use quantbox::strategy::types::{
    Account, LogLevel, Order, OrderState, OrderType, ParamSpec, ParamType, Position, Side,
};

pub use compile::{ArtifactCache, Compiler};
pub use componentize::{WasmKind, componentize, kind};
pub use engine::{EPOCH_TICK, PluginEngine};
pub use error::{PluginError, Stop, StopReason};
pub use instance::{Env, Inert, Instance, LogLine, PluginState};
pub use limits::Limits;
pub use plugin::{CLAIM_SECTION, INTERFACE, Plugin, TYPES, check_claim, claimed_name, sha256_hex};
pub use runner::Runner;
