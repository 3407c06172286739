//! The sandboxed host for strategy plugins: WebAssembly components built
//! against `plugin-sdk/wit/strategy.wit` (the one interface definition; the
//! bindings below are generated from it).
//!
//! Sandbox:
//! - imports: the strategy `host` interface and the WASI I/O and CLI
//!   interfaces Rust's standard library links (stdout/stderr go nowhere).
//!   A plugin importing anything else (clocks, random, files, sockets, or
//!   another version of the strategy interface) is refused before it runs;
//! - CPU: every call gets a fuel budget; an endless loop runs out of fuel;
//! - memory: a cap on linear memory; a memory bomb fails its allocation;
//! - a trap (panic, bad memory access) stops the call and poisons the
//!   instance; the host and other instances go on.

use wasmtime::component::{Component, HasSelf, Linker, bindgen};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder, Trap};
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

bindgen!({ world: "strategy", path: "../../plugin-sdk/wit" });

// The world's `use` already brings Bars, Info, OrderEvent, Param and Ticks
// into this module.
pub use quantbox::strategy::types::{
    Account, LogLevel, Order, OrderState, OrderType, ParamSpec, ParamType, Position, Side,
};

/// The plugin interface version this host speaks.
pub const INTERFACE: &str = "quantbox:strategy/host@0.1.0";
/// The types interface of the same version (imported by every plugin).
const TYPES: &str = "quantbox:strategy/types@0.1.0";

/// Interfaces a plugin may import besides [`INTERFACE`]: what Rust's and
/// Python's standard libraries link for stdio, none of which reach the
/// outside world here.
const ALLOWED_WASI: &[&str] = &[
    "wasi:io/poll",
    "wasi:io/error",
    "wasi:io/streams",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
];

/// Why a plugin could not be loaded or a call failed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PluginError {
    #[error("not a valid strategy component: {0}")]
    Invalid(String),
    #[error("{0}")]
    Incompatible(String),
    #[error("plugin exceeded its CPU budget ({0} fuel units) and was stopped")]
    OutOfFuel(u64),
    #[error("plugin exceeded its memory limit ({0} bytes) and was stopped")]
    OutOfMemory(usize),
    #[error("plugin trapped: {0}")]
    Trap(String),
    #[error("plugin refused: {0}")]
    Refused(String),
    #[error("plugin instance is unusable after an earlier failure")]
    Poisoned,
}

/// Per-instance limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Fuel per call (roughly, WebAssembly instructions).
    pub fuel_per_call: u64,
    /// Linear memory cap in bytes.
    pub memory_bytes: usize,
    /// Log lines kept per call; the rest are counted as dropped.
    pub log_lines_per_call: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel_per_call: 2_000_000_000,
            memory_bytes: 64 << 20,
            log_lines_per_call: 100,
        }
    }
}

/// What the engine or live runner provides to a strategy.
pub trait Env: Send {
    fn submit_order(&mut self, order: Order) -> Result<(), String>;
    fn cancel_order(&mut self, client_id: &str) -> Result<(), String>;
    fn position(&mut self, symbol: &str) -> Position;
    fn account(&mut self) -> Account;
    fn state_get(&mut self, key: &str) -> Option<Vec<u8>>;
    fn state_set(&mut self, key: &str, value: Vec<u8>);
}

/// The state of one instance's store.
pub struct PluginState<E> {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
    /// The engine's side.
    pub env: E,
    /// Log lines of the current call.
    pub logs: Vec<(LogLevel, String)>,
    /// Log lines dropped by the per-call limit.
    pub logs_dropped: u64,
    log_limit: usize,
    rng: u64,
}

impl<E: Send> WasiView for PluginState<E> {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl<E: Env> quantbox::strategy::types::Host for PluginState<E> {}

impl<E: Env> quantbox::strategy::host::Host for PluginState<E> {
    fn submit_order(&mut self, order: Order) -> Result<(), String> {
        self.env.submit_order(order)
    }
    fn cancel_order(&mut self, client_id: String) -> Result<(), String> {
        self.env.cancel_order(&client_id)
    }
    fn get_position(&mut self, symbol: String) -> Position {
        self.env.position(&symbol)
    }
    fn get_account(&mut self) -> Account {
        self.env.account()
    }
    fn log(&mut self, level: LogLevel, message: String) {
        if self.logs.len() < self.log_limit {
            self.logs
                .push((level, message.chars().take(1000).collect()));
        } else {
            self.logs_dropped += 1;
        }
    }
    fn state_get(&mut self, key: String) -> Option<Vec<u8>> {
        self.env.state_get(&key)
    }
    fn state_set(&mut self, key: String, value: Vec<u8>) {
        self.env.state_set(&key, value)
    }
    fn random_u64(&mut self) -> u64 {
        // splitmix64: deterministic per seed.
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A compiled plugin, ready to instantiate many times.
pub struct Plugin {
    engine: Engine,
    component: Component,
}

/// The engine shared by all plugins of a process.
pub fn engine() -> Result<Engine, PluginError> {
    let mut config = Config::new();
    config.consume_fuel(true);
    Engine::new(&config).map_err(|e| PluginError::Invalid(e.to_string()))
}

impl Plugin {
    /// Compiles and checks a component.
    pub fn load(engine: &Engine, bytes: &[u8]) -> Result<Self, PluginError> {
        let component =
            Component::new(engine, bytes).map_err(|e| PluginError::Invalid(format!("{e:#}")))?;
        let ty = component.component_type();
        for (name, _) in ty.imports(engine) {
            let unversioned = name.split('@').next().unwrap_or(name);
            if name == INTERFACE || name == TYPES || ALLOWED_WASI.contains(&unversioned) {
                continue;
            }
            if unversioned.starts_with("quantbox:strategy/") {
                return Err(PluginError::Incompatible(format!(
                    "plugin was built for {name}; this quantbox speaks {INTERFACE}: rebuild it with a matching quantbox-sdk"
                )));
            }
            return Err(PluginError::Incompatible(format!(
                "plugin imports {name}, which strategies may not use (no clocks, randomness, files or network: time and a seeded random number come from the host)"
            )));
        }
        Ok(Self {
            engine: engine.clone(),
            component,
        })
    }

    /// A fresh instance with its own memory, limits and environment.
    pub fn instantiate<E: Env + 'static>(
        &self,
        env: E,
        limits: Limits,
        seed: u64,
    ) -> Result<Instance<E>, PluginError> {
        let mut linker: Linker<PluginState<E>> = Linker::new(&self.engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| PluginError::Invalid(e.to_string()))?;
        Strategy::add_to_linker::<PluginState<E>, HasSelf<PluginState<E>>>(&mut linker, |s| s)
            .map_err(|e| PluginError::Invalid(e.to_string()))?;
        let state = PluginState {
            wasi: WasiCtxBuilder::new().build(),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .instances(16)
                .trap_on_grow_failure(true)
                .build(),
            env,
            logs: Vec::new(),
            logs_dropped: 0,
            log_limit: limits.log_lines_per_call,
            rng: seed,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        store
            .set_fuel(limits.fuel_per_call)
            .map_err(|e| PluginError::Invalid(e.to_string()))?;
        let bindings = Strategy::instantiate(&mut store, &self.component, &linker)
            .map_err(|e| PluginError::Incompatible(format!("cannot instantiate: {e:#}")))?;
        Ok(Instance {
            store,
            bindings,
            limits,
            poisoned: false,
        })
    }
}

/// One running strategy.
pub struct Instance<E: 'static> {
    store: Store<PluginState<E>>,
    bindings: Strategy,
    limits: Limits,
    poisoned: bool,
}

impl<E: Env + 'static> Instance<E> {
    fn call<T>(
        &mut self,
        f: impl FnOnce(&Strategy, &mut Store<PluginState<E>>) -> wasmtime::Result<T>,
    ) -> Result<T, PluginError> {
        if self.poisoned {
            return Err(PluginError::Poisoned);
        }
        self.store.data_mut().logs.clear();
        self.store
            .set_fuel(self.limits.fuel_per_call)
            .map_err(|e| PluginError::Trap(e.to_string()))?;
        let result = f(&self.bindings, &mut self.store);
        result.map_err(|e| {
            self.poisoned = true;
            match e.downcast_ref::<Trap>() {
                Some(Trap::OutOfFuel) => PluginError::OutOfFuel(self.limits.fuel_per_call),
                Some(Trap::AllocationTooLarge) => {
                    PluginError::OutOfMemory(self.limits.memory_bytes)
                }
                _ if format!("{e:?}").contains("memory") && format!("{e:?}").contains("grow") => {
                    PluginError::OutOfMemory(self.limits.memory_bytes)
                }
                _ => PluginError::Trap(format!("{e:#}")),
            }
        })
    }

    pub fn describe(&mut self) -> Result<Info, PluginError> {
        self.call(|b, s| b.call_describe(s))
    }

    pub fn init(&mut self, params: &[Param], state: Option<&[u8]>) -> Result<(), PluginError> {
        self.call(|b, s| b.call_init(s, params, state))?
            .map_err(PluginError::Refused)
    }

    pub fn on_bars(&mut self, now: i64, bars: &Bars) -> Result<(), PluginError> {
        self.call(|b, s| b.call_on_bars(s, now, bars))
    }

    pub fn on_ticks(&mut self, now: i64, ticks: &Ticks) -> Result<(), PluginError> {
        self.call(|b, s| b.call_on_ticks(s, now, ticks))
    }

    pub fn on_order(&mut self, now: i64, event: &OrderEvent) -> Result<(), PluginError> {
        self.call(|b, s| b.call_on_order(s, now, event))
    }

    pub fn on_timer(&mut self, now: i64) -> Result<(), PluginError> {
        self.call(|b, s| b.call_on_timer(s, now))
    }

    pub fn snapshot_state(&mut self) -> Result<Vec<u8>, PluginError> {
        self.call(|b, s| b.call_snapshot_state(s))
    }

    /// The environment and logs.
    pub fn state(&self) -> &PluginState<E> {
        self.store.data()
    }

    pub fn state_mut(&mut self) -> &mut PluginState<E> {
        self.store.data_mut()
    }
}
