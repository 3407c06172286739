//! Streaming technical indicators: each `update` is O(1) (amortized for
//! Donchian) and returns `None` until the indicator has seen enough data.
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
mod donchian;
mod ema;
mod macd;
mod rsi;
mod sma;

pub use atr::Atr;
pub use bollinger::{Bands, Bollinger};
pub use donchian::{Channel, Donchian};
pub use ema::Ema;
pub use macd::{Macd, MacdValue};
pub use rsi::Rsi;
pub use sma::Sma;

#[cfg(test)]
mod reference;
