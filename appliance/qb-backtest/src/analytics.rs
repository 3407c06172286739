//! Performance figures of a run. Definitions (returns are per timestamp of
//! the equity curve, `r_t = E_t / E_(t-1) - 1`, with `E_0` the initial
//! cash):
//! - periods per year: the number of returns divided by the calendar years
//!   between the first and last timestamp. This follows the bar interval
//!   and the market's sessions (a 1-minute series of a market open 6 hours
//!   a day annualizes with its own bar count, not 525,600);
//! - total return `E_n / E_0 - 1`; CAGR `(E_n / E_0)^(1 / years) - 1`;
//! - volatility: sample standard deviation of returns × √(periods/year);
//! - Sharpe: mean return / standard deviation × √(periods/year), risk-free
//!   rate 0; Sortino: mean return / downside deviation × √(periods/year),
//!   downside deviation = √(mean of min(r, 0)²) over all returns;
//! - max drawdown: the largest `1 - E_t / max(E_0..E_t)`; its duration is
//!   the longest time from a peak until equity regains it (or the end);
//! - Calmar: CAGR / max drawdown;
//! - round trips: per symbol, from a flat position to flat again (a
//!   reversal closes one and opens the next); PnL = realized PnL − fees of
//!   its fills; win rate, profit factor (gross wins / gross losses), average
//!   win and loss over round trips;
//! - exposure: share of timestamps with any position open;
//! - turnover: traded notional / initial cash.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use crate::ledger::Fill;

const NANOS_PER_YEAR: f64 = 365.25 * 86_400.0 * 1e9;

/// A round trip: flat to flat in one symbol.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RoundTrip {
    pub symbol: String,
    pub entry_ts: i64,
    pub exit_ts: i64,
    /// +1 long, -1 short.
    pub direction: i8,
    pub pnl: Decimal,
}

/// Per-symbol figures.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct SymbolStats {
    pub fills: u64,
    pub round_trips: u64,
    pub realized: Decimal,
    pub fees: Decimal,
}

/// The headline figures.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Metrics {
    pub total_return: f64,
    pub cagr: f64,
    pub volatility: f64,
    pub sharpe: f64,
    pub sortino: f64,
    pub max_drawdown: f64,
    /// Seconds.
    pub max_drawdown_duration: f64,
    pub calmar: f64,
    pub win_rate: f64,
    pub profit_factor: f64,
    pub avg_win: f64,
    pub avg_loss: f64,
    pub round_trips: u64,
    pub exposure: f64,
    pub turnover: f64,
    pub total_fees: f64,
    pub periods_per_year: f64,
}

/// Round trips from fills (in time order).
pub fn round_trips(fills: &[Fill]) -> Vec<RoundTrip> {
    let mut open: BTreeMap<&str, (Decimal, i64, i8, Decimal)> = BTreeMap::new();
    let mut out = Vec::new();
    for f in fills {
        let (qty, entry, dir, pnl) =
            open.entry(&f.symbol)
                .or_insert((Decimal::ZERO, f.ts, 0, Decimal::ZERO));
        if qty.is_zero() {
            *entry = f.ts;
            *dir = if f.qty > Decimal::ZERO { 1 } else { -1 };
            *pnl = Decimal::ZERO;
        }
        *pnl += f.realized - f.commission;
        let before = *qty;
        *qty += f.qty;
        let flipped = !before.is_zero()
            && !qty.is_zero()
            && before.is_sign_positive() != qty.is_sign_positive();
        if qty.is_zero() || flipped {
            // The fees of a reversing fill stay with the trade it closes.
            out.push(RoundTrip {
                symbol: f.symbol.clone(),
                entry_ts: *entry,
                exit_ts: f.ts,
                direction: *dir,
                pnl: *pnl,
            });
            if flipped {
                *entry = f.ts;
                *dir = -*dir;
                *pnl = Decimal::ZERO;
            }
        }
    }
    out
}

fn f(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(f64::NAN)
}

/// The figures of an equity curve and its fills. `multiplier` gives each
/// symbol's contract multiplier (for turnover).
pub fn metrics(
    initial: Decimal,
    equity: &[(i64, f64)],
    fills: &[Fill],
    multiplier: impl Fn(&str) -> Decimal,
) -> (Metrics, Vec<RoundTrip>, BTreeMap<String, SymbolStats>) {
    let e0 = f(initial);
    let mut m = Metrics::default();
    let trips = round_trips(fills);
    let mut per_symbol: BTreeMap<String, SymbolStats> = BTreeMap::new();
    for fl in fills {
        let s = per_symbol.entry(fl.symbol.clone()).or_default();
        s.fills += 1;
        s.realized += fl.realized;
        s.fees += fl.commission;
    }
    for t in &trips {
        per_symbol.entry(t.symbol.clone()).or_default().round_trips += 1;
    }
    m.total_fees = f(fills.iter().map(|x| x.commission).sum());
    m.turnover = f(fills
        .iter()
        .map(|x| (x.qty * x.price * multiplier(&x.symbol)).abs())
        .sum::<Decimal>())
        / e0;
    m.round_trips = trips.len() as u64;
    let wins: Vec<f64> = trips
        .iter()
        .map(|t| f(t.pnl))
        .filter(|p| *p > 0.0)
        .collect();
    let losses: Vec<f64> = trips
        .iter()
        .map(|t| f(t.pnl))
        .filter(|p| *p < 0.0)
        .collect();
    if !trips.is_empty() {
        m.win_rate = wins.len() as f64 / trips.len() as f64;
    }
    let gross_win: f64 = wins.iter().sum();
    let gross_loss: f64 = -losses.iter().sum::<f64>();
    m.profit_factor = if gross_loss > 0.0 {
        gross_win / gross_loss
    } else if gross_win > 0.0 {
        f64::INFINITY
    } else {
        0.0
    };
    m.avg_win = if wins.is_empty() {
        0.0
    } else {
        gross_win / wins.len() as f64
    };
    m.avg_loss = if losses.is_empty() {
        0.0
    } else {
        -gross_loss / losses.len() as f64
    };

    let Some(&(first_ts, _)) = equity.first() else {
        return (m, trips, per_symbol);
    };
    let (last_ts, last) = *equity.last().unwrap_or(&(first_ts, e0));
    let years = (last_ts - first_ts) as f64 / NANOS_PER_YEAR;
    let mut returns = Vec::with_capacity(equity.len());
    let mut prev = e0;
    for &(_, e) in equity {
        returns.push(if prev != 0.0 { e / prev - 1.0 } else { 0.0 });
        prev = e;
    }
    m.total_return = last / e0 - 1.0;
    m.periods_per_year = if years > 0.0 {
        returns.len() as f64 / years
    } else {
        0.0
    };
    m.cagr = if years > 0.0 && last > 0.0 {
        (last / e0).powf(1.0 / years) - 1.0
    } else {
        0.0
    };
    let n = returns.len() as f64;
    let mean = returns.iter().sum::<f64>() / n;
    let sd = if returns.len() > 1 {
        (returns.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    let downside = (returns.iter().map(|r| r.min(0.0).powi(2)).sum::<f64>() / n).sqrt();
    let ann = m.periods_per_year.sqrt();
    m.volatility = sd * ann;
    m.sharpe = if sd > 0.0 { mean / sd * ann } else { 0.0 };
    m.sortino = if downside > 0.0 {
        mean / downside * ann
    } else {
        0.0
    };

    // Drawdowns, counting the initial cash as the first peak.
    let (mut peak, mut peak_ts) = (e0, first_ts);
    let mut longest: i64 = 0;
    for &(ts, e) in equity {
        if e >= peak {
            longest = longest.max(ts - peak_ts);
            peak = e;
            peak_ts = ts;
        } else {
            m.max_drawdown = m.max_drawdown.max(1.0 - e / peak);
        }
    }
    if last < peak {
        longest = longest.max(last_ts - peak_ts);
    }
    m.max_drawdown_duration = longest as f64 / 1e9;
    m.calmar = if m.max_drawdown > 0.0 {
        m.cagr / m.max_drawdown
    } else {
        0.0
    };
    let open_at = exposure_flags(equity, fills);
    m.exposure = open_at.iter().filter(|o| **o).count() as f64 / equity.len() as f64;
    (m, trips, per_symbol)
}

/// For each equity timestamp, whether any position was open after it.
fn exposure_flags(equity: &[(i64, f64)], fills: &[Fill]) -> Vec<bool> {
    let mut pos: BTreeMap<&str, Decimal> = BTreeMap::new();
    let mut open_count = 0usize;
    let mut k = 0;
    equity
        .iter()
        .map(|&(ts, _)| {
            while k < fills.len() && fills[k].ts <= ts {
                let p = pos.entry(&fills[k].symbol).or_default();
                let was = !p.is_zero();
                *p += fills[k].qty;
                match (was, !p.is_zero()) {
                    (false, true) => open_count += 1,
                    (true, false) => open_count -= 1,
                    _ => {}
                }
                k += 1;
            }
            open_count > 0
        })
        .collect()
}
