//! Bollinger mean reversion: buy when the close falls below the lower band,
//! sell it back when the close returns to the middle band. With `short` set,
//! also sell short above the upper band and cover at the middle.

use quantbox_sdk::indicators::Bollinger;
use quantbox_sdk::*;

pub struct Reversion {
    bands: Bollinger,
    size: f64,
    short: bool,
    orders: u64,
}

impl Strategy for Reversion {
    fn describe() -> Info {
        info(
            "bollinger-reversion",
            env!("CARGO_PKG_VERSION"),
            "Fade moves outside the Bollinger bands; exit at the middle band",
            vec![
                param(
                    "period",
                    ParamType::Integer,
                    20.0,
                    Some(2.0),
                    Some(1000.0),
                    "SMA period (bars)",
                ),
                param(
                    "width",
                    ParamType::Float,
                    2.0,
                    Some(0.1),
                    Some(10.0),
                    "band width in standard deviations",
                ),
                param(
                    "size",
                    ParamType::Float,
                    1.0,
                    Some(0.0),
                    None,
                    "quantity per entry",
                ),
                param(
                    "short",
                    ParamType::Boolean,
                    0.0,
                    Some(0.0),
                    Some(1.0),
                    "also trade the upper band short",
                ),
            ],
        )
    }

    fn init(params: &Params, _state: Option<Vec<u8>>) -> Result<Self, String> {
        let size = params.get("size");
        if size <= 0.0 {
            return Err("size must be positive".into());
        }
        Ok(Self {
            bands: Bollinger::new(params.int("period") as usize, params.get("width")),
            size,
            short: params.get("short") == 1.0,
            orders: 0,
        })
    }

    fn on_bars(&mut self, ctx: &mut dyn Ctx, _now: i64, bars: &Bars) {
        for (&ts, &close) in bars.ts.iter().zip(&bars.close) {
            let Some(b) = self.bands.update(close) else {
                continue;
            };
            let held = ctx.position(&bars.symbol).quantity;
            let trade = if held == 0.0 && close < b.lower {
                Some((Side::Buy, self.size))
            } else if held == 0.0 && self.short && close > b.upper {
                Some((Side::Sell, self.size))
            } else if held > 0.0 && close >= b.middle {
                Some((Side::Sell, held))
            } else if held < 0.0 && close <= b.middle {
                Some((Side::Buy, -held))
            } else {
                None
            };
            if let Some((side, quantity)) = trade {
                self.orders += 1;
                let _ = ctx.market(
                    ts,
                    format!("bb-{}", self.orders),
                    &bars.symbol,
                    side,
                    quantity,
                );
            }
        }
    }
}

export_strategy!(Reversion);
