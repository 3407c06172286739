//! The one wasmtime engine of a process: its configuration, the epoch
//! ticker behind per-call deadlines, and the key compiled artifacts are
//! cached under.

use std::hash::{Hash, Hasher};
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::error::PluginError;
use crate::limits::Limits;

/// How often the epoch advances; deadlines are whole ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The shared engine, the limits every instance gets, and where traps are
/// counted.
#[derive(Clone)]
pub struct PluginEngine {
    pub(crate) engine: Engine,
    pub(crate) limits: Limits,
    pub(crate) traps: Option<prometheus::IntCounterVec>,
}

/// The wasmtime configuration for `limits`. Compilation (which may happen
/// in a child process) and execution must use the same one; `pooling` only
/// changes how instances are allocated, not the compiled code.
pub(crate) fn config(limits: &Limits, pooling: bool) -> Config {
    let mut c = Config::new();
    c.epoch_interruption(true)
        .consume_fuel(limits.fuel_per_call.is_some())
        .max_wasm_stack(limits.max_wasm_stack)
        .wasm_component_model(true)
        .parallel_compilation(true);
    if pooling {
        let n = limits.max_instances.max(1);
        let mut p = PoolingAllocationConfig::default();
        // A Rust strategy is one core instance with one memory; a Python
        // one (componentize-py) links a dozen core modules around CPython.
        p.total_component_instances(n)
            .total_core_instances(n * 32)
            .total_memories(n * 2)
            .total_tables(n * 32)
            .max_core_instances_per_component(64)
            .max_memories_per_component(4)
            .max_tables_per_component(64)
            .table_elements(100_000)
            .max_memory_size(limits.memory_bytes)
            .max_unused_warm_slots(n.min(8));
        c.allocation_strategy(InstanceAllocationStrategy::Pooling(p));
    }
    c
}

impl PluginEngine {
    /// An engine with a pooling allocator sized by `limits`, and a ticker
    /// thread that lives as long as the engine.
    pub fn new(limits: Limits) -> Result<Self, PluginError> {
        Self::build(limits, true)
    }

    /// The same compiler settings without instance pools: what the compile
    /// child process uses (it never instantiates anything).
    pub fn for_compiling(limits: Limits) -> Result<Self, PluginError> {
        Self::build(limits, false)
    }

    fn build(limits: Limits, pooling: bool) -> Result<Self, PluginError> {
        let engine = Engine::new(&config(&limits, pooling))
            .map_err(|e| PluginError::Host(format!("cannot create the wasmtime engine: {e:#}")))?;
        if pooling {
            let weak = engine.weak();
            std::thread::Builder::new()
                .name("wasm-epoch".into())
                .spawn(move || {
                    while let Some(engine) = weak.upgrade() {
                        engine.increment_epoch();
                        drop(engine);
                        std::thread::sleep(EPOCH_TICK);
                    }
                })
                .map_err(|e| PluginError::Host(format!("cannot start the epoch ticker: {e}")))?;
        }
        Ok(Self {
            engine,
            limits,
            traps: None,
        })
    }

    /// Counts stopped calls in `quantbox_plugin_traps_total{plugin,callback,reason}`.
    pub fn with_trap_counter(mut self, traps: prometheus::IntCounterVec) -> Self {
        self.traps = Some(traps);
        self
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Ticks of [`EPOCH_TICK`] a call may run.
    pub(crate) fn deadline_ticks(&self) -> u64 {
        let tick = EPOCH_TICK.as_millis().max(1);
        (self.limits.call_timeout.as_millis().div_ceil(tick) as u64).max(1)
    }

    /// A short fingerprint of everything that makes a compiled artifact
    /// loadable by this engine: wasmtime version, compiler settings, target.
    pub fn fingerprint(&self) -> String {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        format!("{:016x}", h.finish())
    }

    pub fn wasmtime(&self) -> &Engine {
        &self.engine
    }
}
