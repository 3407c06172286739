//! The backtest engine.
//!
//! Money and quantities are [`rust_decimal::Decimal`] in the ledger: cash,
//! fees, average prices and realized PnL add up exactly over millions of
//! fills (28 significant digits; an overflow is an error, never a silent
//! rounding). Prices and quantities arrive as `f64` (stored ticks, plugin
//! orders) and enter the ledger as the shortest decimal that round-trips to
//! that `f64` ([`dec`]), so `3900.1` is 3900.1, not its binary expansion.
//! Equity curves handed to analytics are `f64` (derived figures).

pub mod analytics;
pub mod engine;
pub mod execution;
pub mod export;
pub mod job;
pub mod ledger;
pub mod report;
pub mod sweep;

use rust_decimal::Decimal;

/// The shortest decimal that round-trips to `x`; `None` for NaN/infinity
/// or values beyond `Decimal`'s range.
pub fn dec(x: f64) -> Option<Decimal> {
    if !x.is_finite() {
        return None;
    }
    // `{}` prints the shortest representation that parses back to `x`.
    format!("{x}").parse().ok()
}
