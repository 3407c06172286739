//! SMA crossover, long only: buy `size` when the fast average crosses above
//! the slow one while flat; sell the position when it crosses below. On
//! bars the averages are of closes; on ticks, of trade prices (periods in
//! ticks). A crossing is the SDK's [`Crossing`]: equal averages (common on
//! a tick grid) are not a crossing either way.

use std::collections::VecDeque;

use quantbox_sdk::indicators::{Cross, Crossing, Sma};
use quantbox_sdk::*;

/// The strategy's state.
pub struct SmaCrossover {
    fast: Sma,
    slow: Sma,
    size: f64,
    cross: Crossing,
    orders: u64,
    /// The last `slow` closes: the state handed to a successor.
    history: VecDeque<f64>,
    /// Closes restored from a predecessor's state, logged on the first
    /// event (init has no context to log through).
    restored: Option<usize>,
}

impl Strategy for SmaCrossover {
    fn describe() -> Info {
        info(
            "sma-crossover",
            env!("CARGO_PKG_VERSION"),
            "Long-only SMA crossover: buy when the fast SMA crosses above the slow one, exit when it crosses below",
            vec![
                param(
                    "fast",
                    ParamType::Integer,
                    10.0,
                    Some(1.0),
                    Some(500.0),
                    "fast SMA period (bars)",
                ),
                param(
                    "slow",
                    ParamType::Integer,
                    30.0,
                    Some(2.0),
                    Some(2000.0),
                    "slow SMA period (bars)",
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

    fn init(params: &Params, state: Option<Vec<u8>>) -> Result<Self, String> {
        let (fast, slow) = (params.int("fast") as usize, params.int("slow") as usize);
        if fast >= slow {
            return Err(format!("fast ({fast}) must be shorter than slow ({slow})"));
        }
        let size = params.get("size");
        if size <= 0.0 {
            return Err("size must be positive".into());
        }
        let mut s = Self {
            fast: Sma::new(fast),
            slow: Sma::new(slow),
            size,
            cross: Crossing::new(),
            orders: 0,
            history: VecDeque::with_capacity(slow + 1),
            restored: None,
        };
        // Restored state: the closes the previous instance had seen.
        if let Some(bytes) = state {
            for chunk in bytes.chunks_exact(8) {
                let close = f64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
                s.step(close);
            }
            s.restored = Some(bytes.len() / 8);
        }
        Ok(s)
    }

    fn on_bars(&mut self, ctx: &mut dyn Ctx, _now: i64, bars: &Bars) {
        for (&ts, &close) in bars.ts.iter().zip(&bars.close) {
            self.observe(ctx, &bars.symbol, ts, close);
        }
    }

    fn on_ticks(&mut self, ctx: &mut dyn Ctx, _now: i64, ticks: &Ticks) {
        for (&ts, &price) in ticks.ts.iter().zip(&ticks.price) {
            self.observe(ctx, &ticks.symbol, ts, price);
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        // Enough history to rebuild both averages.
        self.history.iter().flat_map(|c| c.to_le_bytes()).collect()
    }
}

impl SmaCrossover {
    /// One price observed at `ts`: trades on a crossing.
    fn observe(&mut self, ctx: &mut dyn Ctx, symbol: &str, ts: i64, price: f64) {
        if let Some(n) = self.restored.take() {
            ctx.log(
                LogLevel::Info,
                &format!("resumed with {n} closes of history"),
            );
        }
        let Some(cross) = self.step(price) else {
            return;
        };
        let held = ctx.position(symbol).quantity;
        let side = match cross {
            Cross::Up if held == 0.0 => Side::Buy,
            Cross::Down if held > 0.0 => Side::Sell,
            _ => return,
        };
        let quantity = if side == Side::Buy { self.size } else { held };
        self.orders += 1;
        let _ = ctx.market(ts, format!("sma-{}", self.orders), symbol, side, quantity);
    }

    /// Feeds one close; the crossing it caused, if any.
    pub fn step(&mut self, close: f64) -> Option<Cross> {
        self.history.push_back(close);
        if self.history.len() > self.slow.period() {
            self.history.pop_front();
        }
        let f = self.fast.update(close);
        let s = self.slow.update(close);
        self.cross.update(f?, s?)
    }
}

export_strategy!(SmaCrossover);
