//! [`Runner`]: what the backtest engine and the live runner drive. A
//! sandboxed [`Instance`] is the real thing; [`crate::native::Native`]
//! (feature `native`) runs the same strategy source compiled into the
//! host, for side-by-side benchmarks and differential tests.

use crate::{Bars, Env, Instance, LogLine, OrderEvent, Param, PluginError, Ticks};

/// One strategy instance with its environment.
pub trait Runner {
    type Env: Env;
    fn init(&mut self, now: i64, params: &[Param], state: Option<&[u8]>)
    -> Result<(), PluginError>;
    fn on_bars(&mut self, now: i64, bars: &Bars) -> Result<(), PluginError>;
    fn on_ticks(&mut self, now: i64, ticks: &Ticks) -> Result<(), PluginError>;
    fn on_order(&mut self, now: i64, event: &OrderEvent) -> Result<(), PluginError>;
    fn on_timer(&mut self, now: i64) -> Result<(), PluginError>;
    fn snapshot_state(&mut self) -> Result<Vec<u8>, PluginError>;
    fn env(&self) -> &Self::Env;
    fn env_mut(&mut self) -> &mut Self::Env;
    /// Log lines since the last call, and how many the rate limit dropped
    /// in all.
    fn take_logs(&mut self) -> (Vec<LogLine>, u64);
}

impl<E: Env + 'static> Runner for Instance<E> {
    type Env = E;
    fn init(
        &mut self,
        now: i64,
        params: &[Param],
        state: Option<&[u8]>,
    ) -> Result<(), PluginError> {
        Instance::init(self, now, params, state)
    }
    fn on_bars(&mut self, now: i64, bars: &Bars) -> Result<(), PluginError> {
        Instance::on_bars(self, now, bars)
    }
    fn on_ticks(&mut self, now: i64, ticks: &Ticks) -> Result<(), PluginError> {
        Instance::on_ticks(self, now, ticks)
    }
    fn on_order(&mut self, now: i64, event: &OrderEvent) -> Result<(), PluginError> {
        Instance::on_order(self, now, event)
    }
    fn on_timer(&mut self, now: i64) -> Result<(), PluginError> {
        Instance::on_timer(self, now)
    }
    fn snapshot_state(&mut self) -> Result<Vec<u8>, PluginError> {
        Instance::snapshot_state(self)
    }
    fn env(&self) -> &E {
        Instance::env(self)
    }
    fn env_mut(&mut self) -> &mut E {
        Instance::env_mut(self)
    }
    fn take_logs(&mut self) -> (Vec<LogLine>, u64) {
        Instance::take_logs(self)
    }
}
