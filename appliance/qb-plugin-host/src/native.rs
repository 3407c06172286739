//! A strategy compiled into the host instead of loaded as a component
//! (feature `native`): the same source as a plugin, without the sandbox.
//! For benchmarks (WebAssembly against native, side by side) and
//! differential tests; the server never runs strategies this way.
//!
//! The SDK's types are generated from the same WIT as the host's, so the
//! conversions below are field-by-field copies.

use quantbox_sdk as sdk;

use crate::{
    Account, Bars, Env, LogLevel, LogLine, Order, OrderEvent, OrderState, OrderType, Param,
    PluginError, Position, Side, Ticks, runner::Runner,
};

/// The SDK's context over any host environment.
pub struct NativeCtx<'a, E> {
    pub env: &'a mut E,
    pub now: i64,
    pub logs: &'a mut Vec<LogLine>,
    pub rng: &'a mut u64,
}

impl<E: Env> sdk::Ctx for NativeCtx<'_, E> {
    fn submit_order(&mut self, o: sdk::Order) -> Result<(), String> {
        self.env.submit_order(Order {
            client_id: o.client_id,
            symbol: o.symbol,
            side: match o.side {
                sdk::Side::Buy => Side::Buy,
                sdk::Side::Sell => Side::Sell,
            },
            quantity: o.quantity,
            type_: match o.type_ {
                sdk::OrderType::Market => OrderType::Market,
                sdk::OrderType::Limit(p) => OrderType::Limit(p),
                sdk::OrderType::Stop(p) => OrderType::Stop(p),
            },
            ts: o.ts,
        })
    }
    fn cancel_order(&mut self, id: &str) -> Result<(), String> {
        self.env.cancel_order(id)
    }
    fn position(&mut self, s: &str) -> sdk::Position {
        let Position {
            symbol,
            quantity,
            average_price,
        } = self.env.position(s);
        sdk::Position {
            symbol,
            quantity,
            average_price,
        }
    }
    fn account(&mut self) -> sdk::Account {
        let Account {
            cash,
            equity,
            margin_used,
        } = self.env.account();
        sdk::Account {
            cash,
            equity,
            margin_used,
        }
    }
    fn log(&mut self, level: sdk::LogLevel, message: &str) {
        self.logs.push(LogLine {
            ts: self.now,
            level: match level {
                sdk::LogLevel::Debug => LogLevel::Debug,
                sdk::LogLevel::Info => LogLevel::Info,
                sdk::LogLevel::Warn => LogLevel::Warn,
                sdk::LogLevel::Error => LogLevel::Error,
            },
            message: message.into(),
        });
    }
    fn state_get(&mut self, k: &str) -> Option<Vec<u8>> {
        self.env.state_get(k)
    }
    fn state_set(&mut self, k: &str, v: &[u8]) {
        self.env.state_set(k, v.to_vec())
    }
    fn random_u64(&mut self) -> u64 {
        crate::instance::splitmix(self.rng)
    }
}

/// A native strategy `S` acting on `E`.
pub struct Native<S, E> {
    strategy: Option<S>,
    env: E,
    logs: Vec<LogLine>,
    rng: u64,
}

impl<S: sdk::Strategy, E: Env> Native<S, E> {
    pub fn new(env: E, seed: u64) -> Self {
        Self {
            strategy: None,
            env,
            logs: Vec::new(),
            rng: seed,
        }
    }

    fn with(&mut self, now: i64, f: impl FnOnce(&mut S, &mut NativeCtx<'_, E>)) {
        if let Some(s) = self.strategy.as_mut() {
            let mut ctx = NativeCtx {
                env: &mut self.env,
                now,
                logs: &mut self.logs,
                rng: &mut self.rng,
            };
            f(s, &mut ctx);
        }
    }
}

impl<S: sdk::Strategy, E: Env> Runner for Native<S, E> {
    type Env = E;

    fn init(
        &mut self,
        _now: i64,
        params: &[Param],
        state: Option<&[u8]>,
    ) -> Result<(), PluginError> {
        let given: Vec<sdk::Param> = params
            .iter()
            .map(|p| sdk::Param {
                name: p.name.clone(),
                value: p.value,
            })
            .collect();
        let resolved =
            sdk::Params::resolve(&S::describe().params, &given).map_err(PluginError::Refused)?;
        self.strategy =
            Some(S::init(&resolved, state.map(<[u8]>::to_vec)).map_err(PluginError::Refused)?);
        Ok(())
    }

    fn on_bars(&mut self, now: i64, b: &Bars) -> Result<(), PluginError> {
        let bars = sdk::Bars {
            symbol: b.symbol.clone(),
            ts: b.ts.clone(),
            open: b.open.clone(),
            high: b.high.clone(),
            low: b.low.clone(),
            close: b.close.clone(),
            volume: b.volume.clone(),
        };
        self.with(now, |s, ctx| s.on_bars(ctx, now, &bars));
        Ok(())
    }

    fn on_ticks(&mut self, now: i64, t: &Ticks) -> Result<(), PluginError> {
        let ticks = sdk::Ticks {
            symbol: t.symbol.clone(),
            ts: t.ts.clone(),
            price: t.price.clone(),
            size: t.size.clone(),
            bid: t.bid.clone(),
            ask: t.ask.clone(),
        };
        self.with(now, |s, ctx| s.on_ticks(ctx, now, &ticks));
        Ok(())
    }

    fn on_order(&mut self, now: i64, e: &OrderEvent) -> Result<(), PluginError> {
        let event = sdk::OrderEvent {
            client_id: e.client_id.clone(),
            symbol: e.symbol.clone(),
            state: match e.state {
                OrderState::Accepted => sdk::OrderState::Accepted,
                OrderState::PartiallyFilled => sdk::OrderState::PartiallyFilled,
                OrderState::Filled => sdk::OrderState::Filled,
                OrderState::Rejected => sdk::OrderState::Rejected,
                OrderState::Cancelled => sdk::OrderState::Cancelled,
            },
            fill_quantity: e.fill_quantity,
            fill_price: e.fill_price,
            reason: e.reason.clone(),
        };
        self.with(now, |s, ctx| s.on_order(ctx, now, &event));
        Ok(())
    }

    fn on_timer(&mut self, now: i64) -> Result<(), PluginError> {
        self.with(now, |s, ctx| s.on_timer(ctx, now));
        Ok(())
    }

    fn snapshot_state(&mut self) -> Result<Vec<u8>, PluginError> {
        Ok(self
            .strategy
            .as_ref()
            .map(sdk::Strategy::snapshot)
            .unwrap_or_default())
    }

    fn env(&self) -> &E {
        &self.env
    }

    fn env_mut(&mut self) -> &mut E {
        &mut self.env
    }

    fn take_logs(&mut self) -> (Vec<LogLine>, u64) {
        (std::mem::take(&mut self.logs), 0)
    }
}
