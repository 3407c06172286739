//! Streaming technical indicators: each `update` is O(1) (amortized for
//! Donchian) and returns `None` until the indicator has seen enough data
//! (its warm-up: `n` values for SMA, EMA, Bollinger, ATR and Donchian,
//! `n + 1` closes for RSI, `slow + signal - 1` closes for MACD).
//!
//! Accuracy, however long a run (tested over millions of updates against
//! exact rational arithmetic; ε = 2^-52, M = the largest |input| seen):
//! - SMA, the Bollinger middle band and the EMA seed are exact means kept
//!   in integer units of 10^-18 (`exact`): prices are read as the decimals
//!   they are written as, a window's average depends on that window only,
//!   equal means are equal `f64`s (ties stay ties), within 1.5 units in the
//!   last place. Bollinger's deviation comes from the exact variance.
//! - EMA, MACD, RSI and ATR are recurrences whose old errors shrink at
//!   every step: EMA within `(n + 1)·ε·M` of the exact recurrence, RSI
//!   and ATR averages within `2n·ε·M`, MACD within `(slow + signal + 2)·ε·M`.
//! - Donchian is exact (it only compares inputs).
//!
//! [`Crossing`] counts crossings of two series the way the established
//! libraries do (ties are not crossings).
//!
//! Conventions (stated because libraries differ):
//! - EMA uses `alpha = 2 / (n + 1)` and is seeded with the SMA of the first
//!   `n` values (as TA-Lib does).
//! - RSI and ATR use Wilder's smoothing (`avg = (avg * (n - 1) + x) / n`),
//!   seeded with the simple mean of the first `n` changes / true ranges.
//! - Bollinger bands use the population standard deviation of the window
//!   (TA-Lib; pandas' `rolling().std()` uses the sample one).
//! - MACD is `EMA(fast) - EMA(slow)`; its signal line is an EMA of MACD
//!   values, seeded once `signal` MACD values exist.

mod atr;
mod bollinger;
mod cross;
mod donchian;
mod ema;
mod exact;
mod macd;
mod rsi;
mod sma;

pub use atr::Atr;
pub use bollinger::{Bands, Bollinger};
pub use cross::{Cross, Crossing};
pub use donchian::{Channel, Donchian};
pub use ema::Ema;
pub use macd::{Macd, MacdValue};
pub use rsi::Rsi;
pub use sma::Sma;

#[cfg(test)]
mod exactness;
#[cfg(test)]
mod reference;
