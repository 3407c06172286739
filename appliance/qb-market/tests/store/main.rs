//! The DuckDB tick store against real DuckDB files in a temp dir.

mod bars;
mod ctp;
mod files;
mod ingest;

use std::path::PathBuf;

use qb_core::market::*;
use qb_market::DuckStore;

pub fn store() -> (tempfile::TempDir, DuckStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = DuckStore::open(dir.path().join("market.duckdb")).unwrap();
    (dir, s)
}

pub fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let p: PathBuf = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

pub fn req(path: &str, format: ImportFormat) -> ImportRequest {
    ImportRequest {
        path: path.to_string(),
        format,
        mode: ImportMode::Strict,
        timezone: None,
        mapping: Default::default(),
        symbol: None,
        interval: None,
        ts_unit: None,
    }
}

/// Every stored tick of `symbol`, in order.
pub async fn all_ticks(s: &DuckStore, symbol: &str) -> Vec<Tick> {
    use qb_core::TickStore;
    s.ticks(TickQuery {
        symbol: symbol.into(),
        start: None,
        end: None,
        after: None,
        limit: 10_000,
    })
    .await
    .unwrap()
}

pub fn no_progress(_: f64, _: &str) {}

pub fn tick(symbol: &str, ts: i64, price: f64, size: f64) -> Tick {
    Tick {
        symbol: symbol.into(),
        ts,
        seq: 0,
        price,
        size,
        volume: None,
        turnover: None,
        open_interest: None,
        bid: None,
        bid_size: None,
        ask: None,
        ask_size: None,
    }
}

pub const S: i64 = 1_000_000_000;
/// 2024-01-02T00:00:00Z in nanoseconds.
pub const DAY0: i64 = 1_704_153_600 * S;
