//! Two-symbol spread mean reversion. The legs are the two symbols the
//! strategy is given, alphabetically: A and B. The spread is
//! `ln(A) - hedge * ln(B)`; when its z-score over `period` bars exceeds
//! `entry`, sell the spread (sell A, buy B); below `-entry`, buy it; close
//! both legs when |z| falls under `exit`. Bars of the two symbols are
//! matched by timestamp, so it works however the host batches them. The
//! z-score is `(spread - mean) / sd` over the last `period` spreads,
//! population deviation: the SDK's `Bollinger` middle band and `sd`.

use std::collections::BTreeMap;

use quantbox_sdk::indicators::Bollinger;
use quantbox_sdk::*;

pub struct Spread {
    window: Bollinger,
    hedge: f64,
    entry: f64,
    exit: f64,
    size: f64,
    /// Closes by timestamp until both legs have one.
    pending: BTreeMap<i64, [Option<f64>; 2]>,
    legs: Vec<String>,
    /// The newest bar time seen per leg.
    latest: [i64; 2],
    /// +1 long the spread, -1 short, 0 flat.
    side: i8,
    orders: u64,
}

impl Strategy for Spread {
    fn describe() -> Info {
        let mut i = info(
            "pairs-spread",
            env!("CARGO_PKG_VERSION"),
            "Mean reversion of the log-price spread of two symbols",
            vec![
                param(
                    "period",
                    ParamType::Integer,
                    60.0,
                    Some(5.0),
                    Some(5000.0),
                    "z-score window (bars)",
                ),
                param(
                    "hedge",
                    ParamType::Float,
                    1.0,
                    Some(0.0),
                    Some(100.0),
                    "hedge ratio of B per unit of A in log terms",
                ),
                param(
                    "entry",
                    ParamType::Float,
                    2.0,
                    Some(0.1),
                    Some(10.0),
                    "z-score to open at",
                ),
                param(
                    "exit",
                    ParamType::Float,
                    0.5,
                    Some(0.0),
                    Some(10.0),
                    "z-score to close at",
                ),
                param(
                    "size",
                    ParamType::Float,
                    1.0,
                    Some(0.0),
                    None,
                    "quantity of A per entry (B: size * hedge)",
                ),
            ],
        );
        i.symbols = 2;
        i
    }

    fn init(params: &Params, _state: Option<Vec<u8>>) -> Result<Self, String> {
        let (entry, exit) = (params.get("entry"), params.get("exit"));
        if exit >= entry {
            return Err(format!("exit ({exit}) must be below entry ({entry})"));
        }
        let size = params.get("size");
        if size <= 0.0 {
            return Err("size must be positive".into());
        }
        Ok(Self {
            window: Bollinger::new(params.int("period") as usize, 1.0),
            hedge: params.get("hedge"),
            entry,
            exit,
            size,
            pending: BTreeMap::new(),
            legs: Vec::new(),
            latest: [i64::MIN; 2],
            side: 0,
            orders: 0,
        })
    }

    fn on_bars(&mut self, ctx: &mut dyn Ctx, _now: i64, bars: &Bars) {
        if !self.legs.contains(&bars.symbol) {
            if self.legs.len() == 2 {
                ctx.log(
                    LogLevel::Warn,
                    &format!("ignoring a third symbol {}", bars.symbol),
                );
                return;
            }
            self.legs.push(bars.symbol.clone());
            self.legs.sort();
            // Closes seen before the order of the legs was known.
            if self.legs[0] == bars.symbol {
                for v in self.pending.values_mut() {
                    v.swap(0, 1);
                }
                self.latest.swap(0, 1);
            }
        }
        let leg = usize::from(self.legs[0] != bars.symbol);
        for (&ts, &close) in bars.ts.iter().zip(&bars.close) {
            self.pending.entry(ts).or_default()[leg] = Some(close);
        }
        // Process every timestamp both legs have, oldest first.
        while let Some((&ts, &[Some(a), Some(b)])) = self.pending.first_key_value() {
            self.pending.remove(&ts);
            self.step(ctx, ts, a, b);
        }
        // Each leg's bars come in time order, so a close whose other leg
        // has already moved past its time never pairs up: drop it.
        self.latest[leg] = self.latest[leg].max(bars.ts.last().copied().unwrap_or(i64::MIN));
        let latest = self.latest;
        self.pending.retain(|&ts, legs| {
            legs.iter()
                .zip(latest)
                .all(|(close, seen)| close.is_some() || seen < ts)
        });
    }
}

impl Spread {
    fn step(&mut self, ctx: &mut dyn Ctx, ts: i64, a: f64, b: f64) {
        if a <= 0.0 || b <= 0.0 {
            return;
        }
        let spread = a.ln() - self.hedge * b.ln();
        let Some(bands) = self.window.update(spread) else {
            return;
        };
        if bands.sd == 0.0 {
            return;
        }
        let z = (spread - bands.middle) / bands.sd;
        let target = match self.side {
            0 if z > self.entry => -1,
            0 if z < -self.entry => 1,
            s if s != 0 && z.abs() < self.exit => 0,
            s => s,
        };
        if target == self.side {
            return;
        }
        // Move each leg from its current position to the target.
        for (i, per_unit) in [(0, 1.0), (1, -self.hedge)] {
            let symbol = self.legs[i].clone();
            let want = f64::from(target) * self.size * per_unit;
            let delta = want - ctx.position(&symbol).quantity;
            if delta != 0.0 {
                self.orders += 1;
                let side = if delta > 0.0 { Side::Buy } else { Side::Sell };
                let _ = ctx.market(
                    ts,
                    format!("pair-{}", self.orders),
                    &symbol,
                    side,
                    delta.abs(),
                );
            }
        }
        self.side = target;
    }
}

export_strategy!(Spread);
