//! Simulated execution against bars or quotes.
//!
//! Bar mode. An order decided on the bar at `ts` can only fill on a later
//! bar of its symbol (the first with a greater timestamp, or one after it):
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
//! Tick mode. An order decided on the tick at `ts` can only fill on a
//! later quote of its symbol (best bid and ask; where a tick carries no
//! quote, its trade price stands for both):
//! - market: buy at the ask, sell at the bid, plus slippage against the
//!   trader;
//! - limit buy at L: when the ask ≤ L. On the first quote after the
//!   decision (a marketable order) at the ask; later (a resting order that
//!   the market came to) at L. Limit sell: bid ≥ L, at the bid, then at L.
//!   No slippage;
//! - stop buy at S: when the ask ≥ S, at that ask plus slippage; stop sell:
//!   bid ≤ S, at the bid minus slippage;
//! - several orders on one quote: stops first, then submission order, as
//!   with bars.
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

/// One quote's best prices, as decimals.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuotePx {
    pub bid: Decimal,
    pub ask: Decimal,
}

/// What an order is tried against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Px {
    Bar(BarPx),
    /// A quote; `rested` when the order was already tried on an earlier
    /// quote without filling.
    Quote {
        quote: QuotePx,
        rested: bool,
    },
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

/// The fill price of an order of `kind` (buy when `buy`) on `px`, if it
/// fills there.
pub fn fill_price(
    kind: Kind,
    buy: bool,
    px: Px,
    slippage: Slippage,
    tick: Decimal,
) -> Option<Decimal> {
    let (raw, slipped) = match px {
        Px::Bar(bar) => on_bar(kind, buy, bar)?,
        Px::Quote { quote, rested } => on_quote(kind, buy, quote, rested)?,
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

/// The raw price on a bar, and whether slippage applies.
fn on_bar(kind: Kind, buy: bool, bar: BarPx) -> Option<(Decimal, bool)> {
    match kind {
        Kind::Market => Some((bar.open, true)),
        Kind::Limit(l) if buy => (bar.low <= l).then(|| (bar.open.min(l), false)),
        Kind::Limit(l) => (bar.high >= l).then(|| (bar.open.max(l), false)),
        Kind::Stop(s) if buy => (bar.high >= s).then(|| (bar.open.max(s), true)),
        Kind::Stop(s) => (bar.low <= s).then(|| (bar.open.min(s), true)),
    }
}

/// The raw price on a quote, and whether slippage applies.
fn on_quote(kind: Kind, buy: bool, q: QuotePx, rested: bool) -> Option<(Decimal, bool)> {
    let limit_at = |l: Decimal, touched: Decimal| if rested { l } else { touched };
    match kind {
        Kind::Market if buy => Some((q.ask, true)),
        Kind::Market => Some((q.bid, true)),
        Kind::Limit(l) if buy => (q.ask <= l).then(|| (limit_at(l, q.ask), false)),
        Kind::Limit(l) => (q.bid >= l).then(|| (limit_at(l, q.bid), false)),
        Kind::Stop(s) if buy => (q.ask >= s).then_some((q.ask, true)),
        Kind::Stop(s) => (q.bid <= s).then_some((q.bid, true)),
    }
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
