//! The DuckDB tick store behind [`qb_core::TickStore`].
//!
//! One database file (`market.duckdb`) with two tables:
//! - `ticks(symbol, ts, seq, price, size, volume, turnover, open_interest,
//!   bid, bid_size, ask, ask_size)`: `ts` in nanoseconds UTC, numbers as
//!   DOUBLE (see `qb_core::market` for why), `(symbol, ts, seq)` identifies
//!   a tick;
//! - `bars(symbol, interval_s, ts, open, high, low, close, volume, turnover,
//!   open_interest)` for imported bars, `(symbol, interval_s, ts)` unique.
//!
//! No index: duplicates are filtered with an anti-join restricted to the
//! time range being written, which DuckDB's zone maps keep cheap when data
//! arrives roughly in time order. Writes are serialized on one connection
//! and each is one transaction, committed before the call returns.
//!
//! Other tick stores reuse the parts users see, so nothing differs between
//! them: [`parse_import`] reads and checks a file exactly as an import into
//! this store does (one parser), [`ExportWriter`] writes export files
//! exactly as this store does; every store numbers an append with
//! [`qb_core::market::TickColumns::number`].

mod import;
mod query;
mod store;

pub use import::{ImportedBar, ParsedImport, parse_import};
pub use query::ExportWriter;
pub use store::{DuckOptions, DuckStore};
