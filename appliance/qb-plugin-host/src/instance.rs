//! One running strategy: its store (reused for the whole run), the host
//! functions it may call, and the guard around every call into it.

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Store, StoreLimits, StoreLimitsBuilder, Trap};

use crate::error::{PluginError, Stop, StopReason};
use crate::plugin::Plugin;
use crate::{Account, Bars, Info, LogLevel, Order, OrderEvent, Param, Position, Strategy, Ticks};

/// What the engine or the live runner provides to a strategy.
pub trait Env: Send {
    fn submit_order(&mut self, order: Order) -> Result<(), String>;
    fn cancel_order(&mut self, client_id: &str) -> Result<(), String>;
    fn position(&mut self, symbol: &str) -> Position;
    fn account(&mut self) -> Account;
    fn state_get(&mut self, key: &str) -> Option<Vec<u8>>;
    fn state_set(&mut self, key: &str, value: Vec<u8>);
    /// The state earlier instances left (key and value size), counted
    /// against this instance's bounds; none by default.
    fn state_sizes(&mut self) -> Vec<(String, usize)> {
        Vec::new()
    }
}

/// What a strategy's state holds, against `Limits::state_max_keys` and
/// `Limits::state_max_bytes`: a write past either is dropped and the call
/// stopped (`state_limit`), so neither the engine's map nor the hot-state
/// store grows with a guest that writes without end.
struct StateUsage {
    sizes: std::collections::HashMap<String, usize>,
    bytes: usize,
    max_keys: usize,
    max_bytes: usize,
    /// Why the last write was dropped, until the call returns.
    over: Option<String>,
}

impl StateUsage {
    fn new(existing: Vec<(String, usize)>, max_keys: usize, max_bytes: usize) -> Self {
        let bytes = existing.iter().map(|(k, v)| k.len() + v).sum();
        Self {
            sizes: existing.into_iter().collect(),
            bytes,
            max_keys,
            max_bytes,
            over: None,
        }
    }

    /// Whether `key` may now hold `len` bytes; records it if so.
    fn admit(&mut self, key: &str, len: usize) -> bool {
        let old = self.sizes.get(key).map(|v| key.len() + v);
        let keys = self.sizes.len() + usize::from(old.is_none());
        let bytes = self.bytes - old.unwrap_or(0) + key.len() + len;
        if keys > self.max_keys || bytes > self.max_bytes {
            self.over = Some(format!(
                "state-set {key:?} ({len} bytes) would hold {keys} keys and {bytes} bytes; \
                 the limits are {} keys and {} bytes",
                self.max_keys, self.max_bytes
            ));
            return false;
        }
        self.sizes.insert(key.to_string(), len);
        self.bytes = bytes;
        true
    }
}

/// An environment that refuses every order and holds nothing: what
/// `describe` runs against when a plugin is checked.
pub struct Inert;

impl Env for Inert {
    fn submit_order(&mut self, _: Order) -> Result<(), String> {
        Err("no orders while checking a plugin".into())
    }
    fn cancel_order(&mut self, _: &str) -> Result<(), String> {
        Err("no orders while checking a plugin".into())
    }
    fn position(&mut self, symbol: &str) -> Position {
        Position {
            symbol: symbol.into(),
            quantity: 0.0,
            average_price: 0.0,
        }
    }
    fn account(&mut self) -> Account {
        Account {
            cash: 0.0,
            equity: 0.0,
            margin_used: 0.0,
        }
    }
    fn state_get(&mut self, _: &str) -> Option<Vec<u8>> {
        None
    }
    fn state_set(&mut self, _: &str, _: Vec<u8>) {}
}

/// A log line a strategy wrote, stamped with simulation time.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub ts: i64,
    pub level: LogLevel,
    pub message: String,
}

/// Log lines held between two [`Instance::take_logs`] calls at most.
const PENDING_LOG_LINES: usize = 1000;
/// Longest log line kept, in characters.
const LOG_LINE_CHARS: usize = 1000;
const NANOS_PER_SEC: i64 = 1_000_000_000;

/// The data of one instance's store.
pub struct PluginState<E> {
    limits: StoreLimits,
    /// The engine's side.
    pub env: E,
    logs: Vec<LogLine>,
    logs_dropped: u64,
    log_limit: u32,
    log_second: i64,
    log_in_second: u32,
    now: i64,
    rng: u64,
    state: StateUsage,
}

impl<E: Env> crate::quantbox::strategy::types::Host for PluginState<E> {}

impl<E: Env> crate::quantbox::strategy::host::Host for PluginState<E> {
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
        // A budget per simulated second, so a backtest logs the same lines
        // however fast it runs.
        let second = self.now.div_euclid(NANOS_PER_SEC);
        if second != self.log_second {
            self.log_second = second;
            self.log_in_second = 0;
        }
        if self.log_in_second >= self.log_limit || self.logs.len() >= PENDING_LOG_LINES {
            self.logs_dropped += 1;
            return;
        }
        self.log_in_second += 1;
        self.logs.push(LogLine {
            ts: self.now,
            level,
            message: message.chars().take(LOG_LINE_CHARS).collect(),
        });
    }
    fn state_get(&mut self, key: String) -> Option<Vec<u8>> {
        self.env.state_get(&key)
    }
    fn state_set(&mut self, key: String, value: Vec<u8>) {
        if self.state.over.is_none() && self.state.admit(&key, value.len()) {
            self.env.state_set(&key, value)
        }
    }
    fn random_u64(&mut self) -> u64 {
        splitmix(&mut self.rng)
    }
}

/// splitmix64: the same sequence for the same seed.
pub(crate) fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One running strategy.
pub struct Instance<E: 'static> {
    store: Store<PluginState<E>>,
    bindings: Strategy,
    info: Info,
    deadline_ticks: u64,
    fuel: Option<u64>,
    memory_bytes: usize,
    traps: Option<prometheus::IntCounterVec>,
    stopped: Option<StopReason>,
}

impl Plugin {
    /// A fresh instance with its own memory, limits and environment; calls
    /// `describe` once so failures can name the plugin.
    pub fn instantiate<E: Env + 'static>(
        &self,
        env: E,
        seed: u64,
    ) -> Result<Instance<E>, PluginError> {
        let limits = &self.engine.limits;
        let mut linker: Linker<PluginState<E>> = Linker::new(&self.engine.engine);
        Strategy::add_to_linker::<PluginState<E>, HasSelf<PluginState<E>>>(&mut linker, |s| s)
            .map_err(|e| PluginError::Host(format!("{e:#}")))?;
        let mut env = env;
        let usage = StateUsage::new(
            env.state_sizes(),
            limits.state_max_keys,
            limits.state_max_bytes,
        );
        let state = PluginState {
            state: usage,
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .trap_on_grow_failure(true)
                .build(),
            env,
            logs: Vec::new(),
            logs_dropped: 0,
            log_limit: limits.log_lines_per_sec,
            log_second: i64::MIN,
            log_in_second: 0,
            now: 0,
            rng: seed,
        };
        let mut store = Store::new(&self.engine.engine, state);
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(self.engine.deadline_ticks());
        if let Some(fuel) = limits.fuel_per_call {
            store
                .set_fuel(fuel)
                .map_err(|e| PluginError::Host(format!("{e:#}")))?;
        }
        let bindings =
            Strategy::instantiate(&mut store, &self.component, &linker).map_err(|e| {
                let msg = format!("{e:#}");
                if msg.contains("maximum concurrent") || msg.contains("pooling") {
                    PluginError::Busy(msg)
                } else {
                    PluginError::Incompatible(format!("cannot instantiate: {msg}"))
                }
            })?;
        let mut instance = Instance {
            store,
            bindings,
            info: Info {
                name: format!("sha256:{}", &self.sha256()[..12]),
                version: String::new(),
                description: String::new(),
                params: Vec::new(),
                symbols: 0,
                intervals: Vec::new(),
            },
            deadline_ticks: self.engine.deadline_ticks(),
            fuel: limits.fuel_per_call,
            memory_bytes: limits.memory_bytes,
            traps: self.engine.traps.clone(),
            stopped: None,
        };
        instance.info = instance.call("describe", 0, |b, s| b.call_describe(s))?;
        Ok(instance)
    }
}

impl<E: Env + 'static> Instance<E> {
    fn call<T>(
        &mut self,
        callback: &'static str,
        now: i64,
        f: impl FnOnce(&Strategy, &mut Store<PluginState<E>>) -> wasmtime::Result<T>,
    ) -> Result<T, PluginError> {
        if let Some(reason) = self.stopped {
            return Err(PluginError::Poisoned(reason));
        }
        self.store.data_mut().now = now;
        self.store.set_epoch_deadline(self.deadline_ticks);
        if let Some(fuel) = self.fuel {
            self.store
                .set_fuel(fuel)
                .map_err(|e| PluginError::Host(format!("{e:#}")))?;
        }
        let out = f(&self.bindings, &mut self.store).map_err(|e| self.stop(callback, &e))?;
        if let Some(detail) = self.store.data_mut().state.over.take() {
            return Err(self.stopped_for(callback, StopReason::StateLimit, detail));
        }
        Ok(out)
    }

    fn stop(&mut self, callback: &'static str, e: &wasmtime::Error) -> PluginError {
        let debug = format!("{e:?}");
        let (reason, detail) = match e.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => (StopReason::Timeout, "ran past its per-call deadline".into()),
            Some(Trap::OutOfFuel) => (
                StopReason::OutOfFuel,
                format!(
                    "used up its budget of {} instructions",
                    self.fuel.unwrap_or(0)
                ),
            ),
            Some(Trap::StackOverflow) => (StopReason::StackOverflow, "call stack exhausted".into()),
            Some(Trap::AllocationTooLarge) => (StopReason::OutOfMemory, self.memory_detail()),
            _ if debug.contains("grow") && debug.contains("memory") => {
                (StopReason::OutOfMemory, self.memory_detail())
            }
            _ => (StopReason::Trap, format!("{e:#}")),
        };
        self.stopped_for(callback, reason, detail)
    }

    fn stopped_for(
        &mut self,
        callback: &'static str,
        reason: StopReason,
        detail: String,
    ) -> PluginError {
        self.stopped = Some(reason);
        if let Some(traps) = &self.traps {
            traps
                .with_label_values(&[self.info.name.as_str(), callback, reason.as_str()])
                .inc();
        }
        let stop = Stop {
            plugin: self.info.name.clone(),
            version: self.info.version.clone(),
            callback,
            reason,
            detail,
        };
        tracing::warn!(plugin = %stop.plugin, version = %stop.version, callback, reason = %reason, detail = %stop.detail, "plugin call stopped");
        PluginError::Stopped(stop)
    }

    fn memory_detail(&self) -> String {
        format!(
            "tried to grow memory past its limit of {} bytes",
            self.memory_bytes
        )
    }

    /// What `describe` returned when the instance was created.
    pub fn info(&self) -> &Info {
        &self.info
    }

    /// Why the instance was stopped, if it was.
    pub fn stopped(&self) -> Option<StopReason> {
        self.stopped
    }

    pub fn describe(&mut self) -> Result<Info, PluginError> {
        self.call("describe", self.store.data().now, |b, s| b.call_describe(s))
    }

    pub fn init(
        &mut self,
        now: i64,
        params: &[Param],
        state: Option<&[u8]>,
    ) -> Result<(), PluginError> {
        self.call("init", now, |b, s| b.call_init(s, params, state))?
            .map_err(PluginError::Refused)
    }

    pub fn on_bars(&mut self, now: i64, bars: &Bars) -> Result<(), PluginError> {
        self.call("on_bars", now, |b, s| b.call_on_bars(s, now, bars))
    }

    pub fn on_ticks(&mut self, now: i64, ticks: &Ticks) -> Result<(), PluginError> {
        self.call("on_ticks", now, |b, s| b.call_on_ticks(s, now, ticks))
    }

    pub fn on_order(&mut self, now: i64, event: &OrderEvent) -> Result<(), PluginError> {
        self.call("on_order", now, |b, s| b.call_on_order(s, now, event))
    }

    pub fn on_timer(&mut self, now: i64) -> Result<(), PluginError> {
        self.call("on_timer", now, |b, s| b.call_on_timer(s, now))
    }

    /// The state the strategy hands to its next instance, at most
    /// `Limits::state_max_bytes`.
    pub fn snapshot_state(&mut self) -> Result<Vec<u8>, PluginError> {
        let snapshot = self.call("snapshot_state", self.store.data().now, |b, s| {
            b.call_snapshot_state(s)
        })?;
        let max = self.store.data().state.max_bytes;
        if snapshot.len() > max {
            return Err(self.stopped_for(
                "snapshot_state",
                StopReason::StateLimit,
                format!(
                    "a snapshot of {} bytes; the limit is {max} bytes",
                    snapshot.len()
                ),
            ));
        }
        Ok(snapshot)
    }

    /// The engine's side of the sandbox.
    pub fn env(&self) -> &E {
        &self.store.data().env
    }

    pub fn env_mut(&mut self) -> &mut E {
        &mut self.store.data_mut().env
    }

    /// Log lines written since the last call of this, and how many were
    /// dropped by the rate limit in all.
    pub fn take_logs(&mut self) -> (Vec<LogLine>, u64) {
        let s = self.store.data_mut();
        (std::mem::take(&mut s.logs), s.logs_dropped)
    }
}
