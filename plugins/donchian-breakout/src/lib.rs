//! Donchian breakout (turtle style), long only: buy when the close breaks
//! above the highest high of the previous `entry` bars; sell when it breaks
//! below the lowest low of the previous `exit` bars.

use quantbox_sdk::indicators::{Channel, Donchian};
use quantbox_sdk::*;

pub struct Breakout {
    entry: Donchian,
    exit: Donchian,
    size: f64,
    orders: u64,
    /// Channels up to the previous bar: a breakout is against those.
    prev: (Option<Channel>, Option<Channel>),
}

impl Strategy for Breakout {
    fn describe() -> Info {
        info(
            "donchian-breakout",
            env!("CARGO_PKG_VERSION"),
            "Buy breakouts above the entry channel; exit below the shorter exit channel",
            vec![
                param(
                    "entry",
                    ParamType::Integer,
                    20.0,
                    Some(2.0),
                    Some(1000.0),
                    "entry channel length (bars)",
                ),
                param(
                    "exit",
                    ParamType::Integer,
                    10.0,
                    Some(1.0),
                    Some(1000.0),
                    "exit channel length (bars)",
                ),
                param(
                    "size",
                    ParamType::Float,
                    1.0,
                    Some(0.0),
                    None,
                    "quantity per entry",
                ),
            ],
        )
    }

    fn init(params: &Params, _state: Option<Vec<u8>>) -> Result<Self, String> {
        let (entry, exit) = (params.int("entry") as usize, params.int("exit") as usize);
        if exit > entry {
            return Err(format!(
                "exit ({exit}) must not be longer than entry ({entry})"
            ));
        }
        let size = params.get("size");
        if size <= 0.0 {
            return Err("size must be positive".into());
        }
        Ok(Self {
            entry: Donchian::new(entry),
            exit: Donchian::new(exit),
            size,
            orders: 0,
            prev: (None, None),
        })
    }

    fn on_bars(&mut self, ctx: &mut dyn Ctx, _now: i64, bars: &Bars) {
        for i in 0..bars.close.len() {
            let close = bars.close[i];
            let held = ctx.position(&bars.symbol).quantity;
            let trade = match self.prev {
                (Some(entry), _) if held == 0.0 && close > entry.upper => {
                    Some((Side::Buy, self.size))
                }
                (_, Some(exit)) if held > 0.0 && close < exit.lower => Some((Side::Sell, held)),
                _ => None,
            };
            if let Some((side, quantity)) = trade {
                self.orders += 1;
                let _ = ctx.market(
                    bars.ts[i],
                    format!("dc-{}", self.orders),
                    &bars.symbol,
                    side,
                    quantity,
                );
            }
            self.prev = (
                self.entry.update(bars.high[i], bars.low[i]),
                self.exit.update(bars.high[i], bars.low[i]),
            );
        }
    }
}

export_strategy!(Breakout);
