//! The rules a simulated market follows, shared by the backtest engine
//! (`qb-backtest`) and the live paper broker (`qb-live`): how an order
//! fills against a bar or a quote ([`execution`]) and how a fill is booked
//! ([`ledger`]). One copy, so a strategy meets the same market in a
//! backtest and in paper trading.
//!
//! Money and quantities are [`rust_decimal::Decimal`] in the ledger: cash,
//! fees, average prices and realized PnL add up exactly over millions of
//! fills (28 significant digits; an overflow is an error, never a silent
//! rounding). Prices and quantities arrive as `f64` (stored ticks, plugin
//! orders) and enter the ledger as the shortest decimal that round-trips to
//! that `f64` ([`dec`]), so `3900.1` is 3900.1, not its binary expansion.

pub mod execution;
pub mod ledger;

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
