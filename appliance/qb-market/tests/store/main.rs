//! The DuckDB tick store: the tick-store conformance suite
//! (`qb_conformance::ticks`) on fresh DuckDB files in temp dirs, and what
//! only a file-backed store has (`duck.rs`). The Parquet fixtures the
//! suite borrows are written and read with DuckDB itself (`parquet.rs`,
//! shared with the PostgreSQL store's run of the suite).

mod duck;
pub mod parquet;

use std::sync::Arc;

use parking_lot::Mutex;
use qb_conformance::ticks::{self, Capabilities, TickStoreFactory};
use qb_core::TickStore;
use qb_market::DuckStore;

pub fn store() -> (tempfile::TempDir, DuckStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = DuckStore::open(dir.path().join("market.duckdb")).unwrap();
    (dir, s)
}

/// Fresh stores, each in a temp dir kept until the factory goes.
fn factory() -> TickStoreFactory {
    let dirs: Arc<Mutex<Vec<tempfile::TempDir>>> = Arc::default();
    Arc::new(move || {
        let (dir, s) = store();
        dirs.lock().push(dir);
        let s: Arc<dyn TickStore> = Arc::new(s);
        Box::pin(async move { s })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_tick_store_conformance() {
    let caps = Capabilities {
        parquet_import: true,
        concurrent_appends: true,
        parquet: Some(parquet::fixtures()),
    };
    let skipped = ticks::suite(factory(), &caps).await;
    assert!(skipped.is_empty(), "DuckDB skips nothing: {skipped:?}");
}
