//! The tick-store conformance suite (`qb_conformance::ticks`) against the
//! PostgreSQL tick store, every case on a fresh database; plus what only
//! this store has: the layout reported, retention dropping partitions,
//! several processes sharing one database, and a COPY throughput figure.
//!
//! TimescaleDB is not installed where these tests run: they exercise the
//! native range partitions (asserted below, so a machine with TimescaleDB
//! says so instead of passing silently on the other layout).

#[path = "../../qb-market/tests/store/parquet.rs"]
mod parquet;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use qb_conformance::ticks::{
    self, Capabilities, DAY, DAY0, HOUR, TickStoreFactory, all_ticks, generated, tick,
};
use qb_core::market::*;
use qb_core::{NodeIdentity, TickStore};
use qb_pg::testing::TestDatabase;
use qb_pg::ticks::{PgTickOptions, PgTicks};
use qb_pg::{PgOptions, PgStore};

fn options(db: &TestDatabase) -> PgOptions {
    let mut opts = PgOptions::new(db.url.clone());
    opts.pool_size = 4;
    opts.read_pool_size = 2;
    opts.connect_timeout = Duration::from_secs(10);
    opts.application_name = "qb-test-ticks".into();
    opts
}

fn tick_options(dir: &tempfile::TempDir) -> PgTickOptions {
    PgTickOptions {
        scratch_dir: dir.path().to_path_buf(),
        ..PgTickOptions::default()
    }
}

async fn open(db: &TestDatabase, dir: &tempfile::TempDir) -> PgTicks {
    let store = PgStore::connect(options(db), NodeIdentity::new("ticks"))
        .await
        .unwrap();
    PgTicks::open(store, tick_options(dir)).await.unwrap()
}

/// Fresh databases, kept (and their scratch dirs) until the factory goes.
fn factory() -> TickStoreFactory {
    type Kept = (TestDatabase, tempfile::TempDir);
    let kept: Arc<Mutex<Vec<Kept>>> = Arc::default();
    Arc::new(move || {
        let kept = kept.clone();
        Box::pin(async move {
            let db = TestDatabase::create().await.unwrap();
            let dir = tempfile::tempdir().unwrap();
            let s: Arc<dyn TickStore> = Arc::new(open(&db, &dir).await);
            kept.lock().unwrap().push((db, dir));
            s
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_tick_store_conformance() {
    let caps = Capabilities {
        parquet_import: true,
        concurrent_appends: true,
        parquet: Some(parquet::fixtures()),
    };
    let skipped = ticks::suite(factory(), &caps).await;
    assert!(skipped.is_empty(), "PostgreSQL skips nothing: {skipped:?}");
}

/// Partitions of `parent`, by name.
async fn partitions(db: &TestDatabase, parent: &str) -> Vec<String> {
    let (c, conn) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut names: Vec<String> = c
        .query(
            "SELECT c.relname::TEXT FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = $1::TEXT::regclass",
            &[&parent],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layout_is_native_partitions_here() {
    let db = TestDatabase::create().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = open(&db, &dir).await;
    assert_eq!(
        s.layout(),
        "native range partitions (timescaledb not installed)",
        "{}",
        s.layout_reason()
    );
    // Partitions appear with the first rows, one per UTC day / month.
    assert!(partitions(&db, "ticks").await.is_empty());
    s.append(vec![tick("a", DAY0 - 1, 1.0, 1.0), tick("a", DAY0, 1.0, 1.0)].into())
        .await
        .unwrap();
    assert_eq!(
        partitions(&db, "ticks").await,
        vec!["ticks_d20240101", "ticks_d20240102"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_whole_partitions() {
    let db = TestDatabase::create().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = open(&db, &dir).await;
    // Ten days, 100 ticks a day (00:00 to 01:39); daily bars from
    // 2023-11-23 to 2024-01-31.
    let mut t = Vec::new();
    for d in 0..10 {
        for i in 0..100 {
            t.push(tick("r", DAY0 + d * DAY + i * 60_000_000_000, 1.0, 1.0));
        }
    }
    s.append(t.into()).await.unwrap();
    let mut csv = String::from("symbol,ts,open,high,low,close,volume\n");
    for d in 0..70 {
        csv.push_str(&format!("r,{},1,1,1,1,1\n", DAY0 - 40 * DAY + d * DAY));
    }
    let path = dir.path().join("bars.csv");
    std::fs::write(&path, csv).unwrap();
    let mut req = ticks::request(&path, ImportFormat::BarsCsv);
    req.interval = Some("1d".into());
    let s: Arc<dyn TickStore> = Arc::new(s);
    assert_eq!(ticks::import(&s, &req).await.unwrap().rows_stored, 70);
    assert_eq!(partitions(&db, "ticks").await.len(), 10);
    assert_eq!(
        partitions(&db, "tick_bars").await,
        vec![
            "tick_bars_m202311",
            "tick_bars_m202312",
            "tick_bars_m202401"
        ]
    );

    // Cut in the middle of day 4: days 0-3 are dropped whole, day 4 keeps
    // its partition and loses the ticks before the cut (its first 60
    // minutes); bar months before January go, January keeps its rows from
    // the cut's day on.
    let cut = DAY0 + 4 * DAY + HOUR;
    // Bars before the cut: 8 in November, 31 in December, January 1-6.
    let n = s.retain(cut).await.unwrap();
    assert_eq!(n, 4 * 100 + 60 + (8 + 31 + 6));
    let left = partitions(&db, "ticks").await;
    assert_eq!(left.len(), 6);
    assert_eq!(left[0], "ticks_d20240106");
    assert_eq!(
        partitions(&db, "tick_bars").await,
        vec!["tick_bars_m202401"]
    );
    let cov = s.coverage().await.unwrap();
    assert_eq!((cov[0].ticks, cov[0].first_ts), (6 * 100 - 60, Some(cut)));
    assert_eq!(all_ticks(&s, "r").await.len(), 540);
    // A backfill into a dropped day recreates its partition.
    assert_eq!(
        s.append(vec![tick("r", DAY0, 1.0, 1.0)].into())
            .await
            .unwrap()
            .stored,
        1
    );
    assert_eq!(partitions(&db, "ticks").await.len(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_share_one_database() {
    let db = TestDatabase::create().await.unwrap();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open(&db, &d1).await;
    let b = open(&db, &d2).await;
    // Each creates partitions the other does not know of; both write the
    // same new days at once.
    let batch = generated("p", DAY0 + 20 * DAY, 3_000, 9);
    let (ra, rb) = tokio::join!(
        a.append(batch.clone().into()),
        b.append(batch.clone().into())
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.stored + rb.stored, 3_000);
    // A partition dropped by one is recreated by the other's next write.
    assert_eq!(a.retain(DAY0 + 100 * DAY).await.unwrap(), 3_000);
    let r = b.append(batch.into()).await.unwrap();
    assert_eq!((r.stored, r.duplicates), (3_000, 0));
    let a: Arc<dyn TickStore> = Arc::new(a);
    assert_eq!(all_ticks(&a, "p").await.len(), 3_000);
}

/// Not a benchmark (the machine is shared): an order of magnitude, printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_throughput() {
    let db = TestDatabase::create().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = open(&db, &dir).await;
    let n = 200_000;
    let batch = generated("tp", DAY0, n, 1);
    let t = Instant::now();
    let r = s.append(batch.clone().into()).await.unwrap();
    let first = t.elapsed();
    assert_eq!(r.stored, n as u64);
    let t = Instant::now();
    let r = s.append(batch.into()).await.unwrap();
    let again = t.elapsed();
    assert_eq!(r.duplicates, n as u64);
    let q = BarQuery {
        symbol: "tp".into(),
        interval: "1m".parse().unwrap(),
        start: None,
        end: None,
        timezone: None,
    };
    let t = Instant::now();
    let bars = s.bars(q.clone()).await.unwrap();
    let bar_time = t.elapsed();
    let t = Instant::now();
    let days = s
        .bars(BarQuery {
            interval: "1d".parse().unwrap(),
            ..q
        })
        .await
        .unwrap();
    let day_time = t.elapsed();
    let t = Instant::now();
    let rows = s
        .export(
            ExportQuery::Ticks {
                symbol: "tp".into(),
                start: None,
                end: None,
            },
            ExportFormat::Parquet,
            &dir.path().join("tp.parquet"),
        )
        .await
        .unwrap();
    let export_time = t.elapsed();
    assert_eq!(rows, n as u64);
    let rate = |d: Duration| (n as f64 / d.as_secs_f64()) as u64;
    eprintln!(
        "PostgreSQL tick store, {n} ticks: append {first:?} ({} ticks/s), re-append (all duplicates) {again:?} ({} ticks/s), {} 1m bars {bar_time:?}, {} 1d bars {day_time:?}, Parquet export {export_time:?} ({} ticks/s)",
        rate(first),
        rate(again),
        bars.len(),
        days.len(),
        rate(export_time)
    );
}
