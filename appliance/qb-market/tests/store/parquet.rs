//! Parquet fixtures for the tick-store suite, written and read with DuckDB
//! (the suite itself has no Parquet library). Also compiled into the
//! PostgreSQL store's test (`#[path]`), so both stores are checked against
//! the same files.

use std::path::Path;
use std::sync::Arc;

use duckdb::{Connection, params};
use qb_conformance::ticks::ParquetFixtures;
use qb_core::market::Tick;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn sql_path(p: &Path) -> String {
    p.to_string_lossy().replace('\'', "''")
}

/// Ticks to a Parquet file: `symbol`, `ts` (BIGINT as given), the doubles.
pub fn write_ticks(path: &Path, ticks: &[Tick]) -> Result<(), String> {
    let c = Connection::open_in_memory().map_err(err)?;
    c.execute_batch(
        "CREATE TABLE t (symbol VARCHAR, ts BIGINT, price DOUBLE, size DOUBLE, volume DOUBLE,
            turnover DOUBLE, open_interest DOUBLE, bid DOUBLE, bid_size DOUBLE, ask DOUBLE, ask_size DOUBLE)",
    )
    .map_err(err)?;
    {
        let mut app = c.appender("t").map_err(err)?;
        for t in ticks {
            app.append_row(params![
                t.symbol,
                t.ts,
                t.price,
                t.size,
                t.volume,
                t.turnover,
                t.open_interest,
                t.bid,
                t.bid_size,
                t.ask,
                t.ask_size
            ])
            .map_err(err)?;
        }
        app.flush().map_err(err)?;
    }
    c.execute_batch(&format!(
        "COPY (SELECT * FROM t) TO '{}' (FORMAT parquet)",
        sql_path(path)
    ))
    .map_err(err)
}

/// A Parquet file's rows as CSV text, as the stores write CSV exports.
pub fn to_csv(path: &Path) -> Result<String, String> {
    let dir = tempfile::tempdir().map_err(err)?;
    let out = dir.path().join("out.csv");
    let c = Connection::open_in_memory().map_err(err)?;
    c.execute_batch(&format!(
        "COPY (SELECT * FROM read_parquet('{}')) TO '{}' (FORMAT csv, HEADER true)",
        sql_path(path),
        sql_path(&out)
    ))
    .map_err(err)?;
    std::fs::read_to_string(&out).map_err(err)
}

pub fn fixtures() -> ParquetFixtures {
    ParquetFixtures {
        write: Arc::new(write_ticks),
        to_csv: Arc::new(to_csv),
    }
}
