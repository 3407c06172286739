//! The backtest engine: replay of stored bars or ticks into a strategy,
//! analytics, reports, the `backtest.run` and `backtest.sweep` jobs. The
//! fill rules and the ledger are `qb-trading`'s (shared with live paper
//! trading) and re-exported here.

pub mod analytics;
pub mod engine;
pub mod export;
pub mod job;
pub mod report;
pub mod sweep;

pub use qb_trading::{dec, execution, ledger};
