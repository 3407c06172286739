//! Test plugin for execution rules: on the first bar or tick it sees,
//! submits the
//! orders its parameters describe (on side `side`: 0 buy, 1 sell), one lot
//! each unless `market` gives the market order's size:
//! `market` (0 = none), `limit` and `stop` prices (0 = none). With
//! `cancel_limit` set, it cancels the limit order on the next call.

use quantbox_sdk::*;

pub struct OrderScript {
    side: Side,
    market: f64,
    limit: f64,
    stop: f64,
    cancel_limit: bool,
    calls: u64,
}

impl Strategy for OrderScript {
    fn describe() -> Info {
        info(
            "order-script",
            env!("CARGO_PKG_VERSION"),
            "Submits scripted orders (engine tests)",
            vec![
                param(
                    "side",
                    ParamType::Integer,
                    0.0,
                    Some(0.0),
                    Some(1.0),
                    "0 buy, 1 sell",
                ),
                param(
                    "market",
                    ParamType::Float,
                    0.0,
                    Some(0.0),
                    None,
                    "market order size",
                ),
                param(
                    "limit",
                    ParamType::Float,
                    0.0,
                    Some(0.0),
                    None,
                    "limit price",
                ),
                param("stop", ParamType::Float, 0.0, Some(0.0), None, "stop price"),
                param(
                    "cancel_limit",
                    ParamType::Boolean,
                    0.0,
                    Some(0.0),
                    Some(1.0),
                    "cancel the limit on the next call",
                ),
            ],
        )
    }

    fn init(params: &Params, _: Option<Vec<u8>>) -> Result<Self, String> {
        Ok(Self {
            side: if params.int("side") == 1 {
                Side::Sell
            } else {
                Side::Buy
            },
            market: params.get("market"),
            limit: params.get("limit"),
            stop: params.get("stop"),
            cancel_limit: params.get("cancel_limit") == 1.0,
            calls: 0,
        })
    }

    fn on_bars(&mut self, ctx: &mut dyn Ctx, _now: i64, bars: &Bars) {
        self.script(ctx, &bars.symbol, bars.ts[0]);
    }

    fn on_ticks(&mut self, ctx: &mut dyn Ctx, _now: i64, ticks: &Ticks) {
        self.script(ctx, &ticks.symbol, ticks.ts[0]);
    }
}

impl OrderScript {
    fn script(&mut self, ctx: &mut dyn Ctx, symbol: &str, ts: i64) {
        self.calls += 1;
        if self.calls == 2 && self.cancel_limit {
            let _ = ctx.cancel_order("limit");
        }
        if self.calls > 1 {
            return;
        }
        let mut submit = |id: &str, quantity: f64, type_: OrderType| {
            let order = Order {
                client_id: id.into(),
                symbol: symbol.to_string(),
                side: self.side,
                quantity,
                type_,
                ts,
            };
            if let Err(e) = ctx.submit_order(order) {
                ctx.log(LogLevel::Warn, &format!("{id} refused: {e}"));
            }
        };
        if self.market > 0.0 {
            submit("market", self.market, OrderType::Market);
        }
        if self.stop > 0.0 {
            submit("stop", 1.0, OrderType::Stop(self.stop));
        }
        if self.limit > 0.0 {
            submit("limit", 1.0, OrderType::Limit(self.limit));
        }
    }
}

export_strategy!(OrderScript);
