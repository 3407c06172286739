//! Simulated execution against bars.
//!
//! An order decided on the bar at `ts` can only fill on a later bar of its
//! symbol (the first with a greater timestamp, or one after it):
//! - market: at that bar's open, plus slippage against the trader;
//! - limit buy at L: on the first bar whose low ≤ L, at min(open, L) (a gap
//!   down through L fills at the better open); limit sell: high ≥ L, at
//!   max(open, L). No slippage: the price is the trader's;
//! - stop buy at S: on the first bar whose high ≥ S, at max(open, S) (a gap
//!   through S fills at the worse open), plus slippage; stop sell: low ≤ S,
//!   at min(open, S), minus slippage;
//! - when one bar could trigger several orders of a symbol, stops fill
//!   before limits (the conservative reading of a bar that touched both a
//!   stop-loss and a target), then in submission order.
//!
//! Prices are rounded to the instrument's tick: buys up, sells down.

use rust_decimal::{Decimal, RoundingStrategy};

/// The order kinds a strategy can submit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Market,
    Limit(Decimal),
    Stop(Decimal),
}

/// One bar's prices, as decimals.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BarPx {
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
}

/// Slippage applied to market and stop fills.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Slippage {
    None,
    /// Whole price ticks.
    Ticks(u32),
    /// Basis points of the price.
    Bps(Decimal),
}

/// The fill price of an order of `kind` (buy when `buy`) on `bar`, if it
/// fills there.
pub fn fill_price(
    kind: Kind,
    buy: bool,
    bar: BarPx,
    slippage: Slippage,
    tick: Decimal,
) -> Option<Decimal> {
    let (raw, slipped) = match kind {
        Kind::Market => (bar.open, true),
        Kind::Limit(l) if buy => (bar.low <= l)
            .then(|| bar.open.min(l))
            .map(|p| (p, false))?,
        Kind::Limit(l) => (bar.high >= l)
            .then(|| bar.open.max(l))
            .map(|p| (p, false))?,
        Kind::Stop(s) if buy => (bar.high >= s)
            .then(|| bar.open.max(s))
            .map(|p| (p, true))?,
        Kind::Stop(s) => (bar.low <= s).then(|| bar.open.min(s)).map(|p| (p, true))?,
    };
    let slip = if slipped {
        match slippage {
            Slippage::None => Decimal::ZERO,
            Slippage::Ticks(n) => tick * Decimal::from(n),
            Slippage::Bps(bps) => raw * bps / Decimal::from(10_000),
        }
    } else {
        Decimal::ZERO
    };
    let price = if buy { raw + slip } else { raw - slip };
    Some(round_to_tick(price, tick, buy))
}

/// Rounds to a multiple of `tick`: up for buys, down for sells (the
/// simulated market never rounds in the trader's favour).
pub fn round_to_tick(price: Decimal, tick: Decimal, buy: bool) -> Decimal {
    if tick <= Decimal::ZERO {
        return price.normalize();
    }
    let steps = price / tick;
    let strategy = if buy {
        RoundingStrategy::ToPositiveInfinity
    } else {
        RoundingStrategy::ToNegativeInfinity
    };
    // Normalized: 3917 rather than 3917.00, so results serialize the same
    // whatever the tick's scale.
    (steps.round_dp_with_strategy(0, strategy) * tick).normalize()
}

/// Order in which pending orders are tried on a bar: stops first.
pub fn priority(kind: Kind) -> u8 {
    match kind {
        Kind::Stop(_) => 0,
        Kind::Market => 1,
        Kind::Limit(_) => 2,
    }
}
