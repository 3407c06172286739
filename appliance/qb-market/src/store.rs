//! The store: connections, schema, appends, retention.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use duckdb::{Connection, params};
use parking_lot::Mutex;
use qb_core::market::*;
use qb_core::seams::Progress;
use qb_core::{StoreError, StoreResult, TickStore};

pub(crate) fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ticks (
    symbol        VARCHAR NOT NULL,
    ts            BIGINT  NOT NULL,
    seq           INTEGER NOT NULL,
    price         DOUBLE  NOT NULL,
    size          DOUBLE  NOT NULL,
    volume        DOUBLE,
    turnover      DOUBLE,
    open_interest DOUBLE,
    bid           DOUBLE,
    bid_size      DOUBLE,
    ask           DOUBLE,
    ask_size      DOUBLE
);
CREATE TABLE IF NOT EXISTS bars (
    symbol        VARCHAR NOT NULL,
    interval_s    INTEGER NOT NULL,
    ts            BIGINT  NOT NULL,
    open          DOUBLE  NOT NULL,
    high          DOUBLE  NOT NULL,
    low           DOUBLE  NOT NULL,
    close         DOUBLE  NOT NULL,
    volume        DOUBLE  NOT NULL,
    turnover      DOUBLE,
    open_interest DOUBLE
);
";

/// Column list of `ticks`, in table order.
pub(crate) const TICK_COLS: &str =
    "symbol, ts, seq, price, size, volume, turnover, open_interest, bid, bid_size, ask, ask_size";

/// A tick from a row selected as [`TICK_COLS`].
pub(crate) fn tick_row(r: &duckdb::Row<'_>) -> duckdb::Result<Tick> {
    Ok(Tick {
        symbol: r.get(0)?,
        ts: r.get(1)?,
        seq: r.get(2)?,
        price: r.get(3)?,
        size: r.get(4)?,
        volume: r.get(5)?,
        turnover: r.get(6)?,
        open_interest: r.get(7)?,
        bid: r.get(8)?,
        bid_size: r.get(9)?,
        ask: r.get(10)?,
        ask_size: r.get(11)?,
    })
}

/// The DuckDB tick store. Cheap to clone.
#[derive(Clone)]
pub struct DuckStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) path: PathBuf,
    /// The one connection that writes.
    pub(crate) writer: Mutex<Connection>,
    /// Readers are cloned from this one.
    base: Mutex<Connection>,
}

/// Settings for the database.
#[derive(Debug, Clone)]
pub struct DuckOptions {
    pub memory_limit: String,
    pub threads: usize,
}

impl Default for DuckOptions {
    fn default() -> Self {
        Self {
            memory_limit: "2GB".into(),
            threads: 2,
        }
    }
}

pub(crate) fn configure(c: &Connection) -> duckdb::Result<()> {
    c.execute_batch("SET TimeZone = 'UTC';")
}

/// The DuckDB configuration of every database the crate opens: nothing
/// downloaded at run time, the memory and thread limits, spill files in
/// `tmp`.
pub(crate) fn config(opts: &DuckOptions, tmp: &Path) -> StoreResult<duckdb::Config> {
    // Extensions the store needs (parquet, json, icu) are built into
    // libduckdb; nothing may be downloaded at run time.
    duckdb::Config::default()
        .enable_autoload_extension(false)
        .and_then(|c| c.with("autoinstall_known_extensions", "false"))
        .and_then(|c| c.max_memory(&opts.memory_limit))
        .and_then(|c| c.threads(opts.threads as i64))
        .and_then(|c| c.with("temp_directory", tmp.to_string_lossy().as_ref()))
        .map_err(backend)
}

/// An in-memory DuckDB database for work on rows another store keeps
/// (parsing imports, writing exports), configured as the store's own.
pub(crate) fn scratch(opts: &DuckOptions, tmp: &Path) -> StoreResult<Connection> {
    let c = Connection::open_in_memory_with_flags(config(opts, tmp)?).map_err(backend)?;
    configure(&c).map_err(backend)?;
    Ok(c)
}

impl DuckStore {
    /// Opens or creates `path`; spill files go next to it.
    pub fn open(path: impl AsRef<Path>) -> StoreResult<Self> {
        Self::open_with(path, &DuckOptions::default())
    }

    pub fn open_with(path: impl AsRef<Path>, opts: &DuckOptions) -> StoreResult<Self> {
        let path = path.as_ref().to_path_buf();
        let tmp = path.with_extension("tmp");
        let config = config(opts, &tmp)?;
        let writer = Connection::open_with_flags(&path, config)
            .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", path.display())))?;
        writer.execute_batch(SCHEMA).map_err(backend)?;
        configure(&writer).map_err(backend)?;
        let base = writer.try_clone().map_err(backend)?;
        configure(&base).map_err(backend)?;
        Ok(Self {
            inner: Arc::new(Inner {
                path,
                writer: Mutex::new(writer),
                base: Mutex::new(base),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Copies `ticks` and `bars`, as one transaction sees them, into the
    /// new DuckDB file `dest` (`quantbox backup`: the running server makes
    /// the copy, as DuckDB locks its file against other processes; the
    /// writer carries on meanwhile). Returns the rows copied per table.
    /// Blocking.
    pub fn backup_into(&self, dest: &Path) -> StoreResult<Vec<(String, u64)>> {
        if dest.exists() {
            return Err(StoreError::Conflict(format!("{} exists", dest.display())));
        }
        {
            let out = Connection::open(dest).map_err(backend)?;
            out.execute_batch(SCHEMA).map_err(backend)?;
        }
        let quoted = dest.to_string_lossy().replace('\'', "''");
        let c = self.reader()?;
        // A table this build does not know would be left out of the copy.
        let unknown: Vec<String> = c
            .prepare(
                "SELECT table_name FROM duckdb_tables() \
                 WHERE database_name = current_database() AND NOT temporary \
                 AND table_name NOT IN ('ticks', 'bars') ORDER BY table_name",
            )
            .and_then(|mut st| {
                st.query_map([], |r| r.get(0))?
                    .collect::<duckdb::Result<Vec<String>>>()
            })
            .map_err(backend)?;
        if !unknown.is_empty() {
            return Err(StoreError::Backend(format!(
                "the tick store holds tables this build does not know: {}",
                unknown.join(", ")
            )));
        }
        c.execute_batch(&format!("ATTACH '{quoted}' AS qb_backup"))
            .map_err(backend)?;
        let copied = (|| -> duckdb::Result<Vec<(String, u64)>> {
            c.execute_batch("BEGIN TRANSACTION")?;
            let mut counts = Vec::new();
            for t in ["ticks", "bars"] {
                let n = c.execute(
                    &format!("INSERT INTO qb_backup.{t} BY NAME SELECT * FROM {t}"),
                    [],
                )?;
                counts.push((t.to_string(), n as u64));
            }
            c.execute_batch("COMMIT")?;
            c.execute_batch("CHECKPOINT qb_backup")?;
            Ok(counts)
        })();
        if copied.is_err() {
            let _ = c.execute_batch("ROLLBACK");
        }
        let detached = c.execute_batch("DETACH qb_backup");
        let counts = copied.map_err(backend)?;
        detached.map_err(backend)?;
        Ok(counts)
    }

    /// Rows per table (the counts `backup_into` reports). Blocking.
    pub fn table_counts(&self) -> StoreResult<Vec<(String, u64)>> {
        let c = self.reader()?;
        let mut counts = Vec::new();
        for t in ["ticks", "bars"] {
            let n: i64 = c
                .query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
                .map_err(backend)?;
            counts.push((t.to_string(), n as u64));
        }
        Ok(counts)
    }

    /// A fresh connection for one read.
    pub(crate) fn reader(&self) -> StoreResult<Connection> {
        let c = self.inner.base.lock().try_clone().map_err(backend)?;
        configure(&c).map_err(backend)?;
        Ok(c)
    }

    pub(crate) async fn blocking<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&DuckStore) -> StoreResult<T> + Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(&this))
            .await
            .map_err(backend)?
    }

    /// Appends ticks in one transaction (blocking).
    pub fn append_blocking(&self, mut ticks: TickColumns) -> StoreResult<AppendReport> {
        ticks.number();
        let n = ticks.len();
        let new = self.store_blocking(&ticks)?;
        ticks.keep(&new);
        Ok(AppendReport::of(n, ticks))
    }

    /// Stores numbered ticks in one transaction, skipping identities
    /// already stored; the positions of those stored (blocking).
    fn store_blocking(&self, ticks: &TickColumns) -> StoreResult<Vec<u32>> {
        let Some((lo, hi)) = ticks.ts_range() else {
            return Ok(Vec::new());
        };
        let all = || (0..ticks.len() as u32).collect::<Vec<u32>>();
        let mut symbols: Vec<&str> = ticks.names().iter().map(String::as_str).collect();
        symbols.sort_unstable();
        let mut conn = self.inner.writer.lock();
        let tx = conn.transaction().map_err(backend)?;
        let list = symbols
            .iter()
            .map(|s| format!("'{}'", s.replace('\'', "''")))
            .collect::<Vec<_>>()
            .join(", ");
        if !overlaps(&tx, &list, lo, hi)? {
            // Nothing stored for these symbols in this range: append straight
            // into the table, no staging, no anti-join.
            append_rows(&tx, "ticks", "main", ticks)?;
            tx.commit().map_err(backend)?;
            return Ok(all());
        }
        tx.execute_batch(&format!(
            "CREATE OR REPLACE TEMP TABLE stage_ticks AS SELECT {TICK_COLS} FROM ticks LIMIT 0"
        ))
        .map_err(backend)?;
        append_rows(&tx, "stage_ticks", "temp", ticks)?;
        // Which are stored already: the writer lock and the transaction
        // keep this true until the insert below.
        let stored: HashSet<(String, i64, i32)> = {
            let mut stmt = tx
                .prepare(
                    "SELECT s.symbol, s.ts, s.seq FROM stage_ticks s WHERE EXISTS (
                         SELECT 1 FROM ticks t WHERE t.ts BETWEEN ?1 AND ?2
                           AND t.symbol = s.symbol AND t.ts = s.ts AND t.seq = s.seq)",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![lo, hi], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(backend)?;
            rows.collect::<duckdb::Result<_>>().map_err(backend)?
        };
        let inserted = insert_new_ticks(&tx, "stage_ticks", lo, hi)?;
        tx.execute_batch("DROP TABLE temp.stage_ticks")
            .map_err(backend)?;
        tx.commit().map_err(backend)?;
        let new = ticks.positions(&stored, false);
        debug_assert_eq!(new.len() as u64, inserted);
        Ok(new)
    }

    /// Stores imported bars of one symbol and interval in one transaction,
    /// skipping bars already stored (blocking).
    fn store_bars_blocking(&self, symbol: &str, interval_s: u32, bars: &[Bar]) -> StoreResult<u64> {
        let Some((lo, hi)) = bars.iter().map(|b| b.ts).fold(None, |acc, ts| match acc {
            None => Some((ts, ts)),
            Some((lo, hi)) => Some((ts.min(lo), ts.max(hi))),
        }) else {
            return Ok(0);
        };
        let mut conn = self.inner.writer.lock();
        let tx = conn.transaction().map_err(backend)?;
        tx.execute_batch("CREATE OR REPLACE TEMP TABLE stage_bars AS SELECT * FROM bars LIMIT 0")
            .map_err(backend)?;
        {
            let mut app = tx
                .appender_to_catalog_and_db("stage_bars", "temp", "main")
                .map_err(backend)?;
            for b in bars {
                app.append_row(params![
                    symbol,
                    interval_s,
                    b.ts,
                    b.open,
                    b.high,
                    b.low,
                    b.close,
                    b.volume,
                    b.turnover,
                    b.open_interest
                ])
                .map_err(backend)?;
            }
            app.flush().map_err(backend)?;
        }
        let stored = tx
            .execute(
                "INSERT INTO bars SELECT s.* FROM stage_bars s
                 WHERE NOT EXISTS (SELECT 1 FROM bars b WHERE b.ts BETWEEN ?1 AND ?2
                       AND b.symbol = s.symbol AND b.interval_s = s.interval_s AND b.ts = s.ts)",
                params![lo, hi],
            )
            .map_err(backend)? as u64;
        tx.execute_batch("DROP TABLE temp.stage_bars")
            .map_err(backend)?;
        tx.commit().map_err(backend)?;
        Ok(stored)
    }
}

/// Whether any tick of the symbols in `symbols` (a SQL list or subquery)
/// is stored in `[lo, hi]`.
fn overlaps(c: &Connection, symbols: &str, lo: i64, hi: i64) -> StoreResult<bool> {
    c.query_row(
        &format!(
            "SELECT EXISTS (SELECT 1 FROM ticks WHERE ts BETWEEN ?1 AND ?2 AND symbol IN ({symbols}))"
        ),
        params![lo, hi],
        |r| r.get(0),
    )
    .map_err(backend)
}

/// Appends to `table` of the database (`catalog` "main") or of the
/// connection's temporary objects (`catalog` "temp"), column by column
/// through Arrow (one call per column chunk, not per value).
pub(crate) fn append_rows(
    c: &Connection,
    table: &str,
    catalog: &str,
    ticks: &TickColumns,
) -> StoreResult<()> {
    let mut app = if catalog == "temp" {
        c.appender_to_catalog_and_db(table, "temp", "main")
    } else {
        c.appender(table)
    }
    .map_err(backend)?;
    // In slices: the Arrow copy of a batch never exceeds one slice.
    for start in (0..ticks.len()).step_by(APPEND_SLICE) {
        let rows = start..(start + APPEND_SLICE).min(ticks.len());
        app.append_record_batch(record_batch(ticks, rows)?)
            .map_err(backend)?;
    }
    app.flush().map_err(backend)
}

/// Ticks handed to DuckDB per Arrow batch.
const APPEND_SLICE: usize = 65_536;

fn record_batch(
    ticks: &TickColumns,
    rows: std::ops::Range<usize>,
) -> StoreResult<duckdb::arrow::record_batch::RecordBatch> {
    use duckdb::arrow::array::{ArrayRef, Float64Array, Int32Array, Int64Array, StringArray};
    use duckdb::arrow::datatypes::{DataType, Field, Schema};
    use duckdb::arrow::record_batch::RecordBatch;

    let f64s = |v: &[f64]| -> ArrayRef { Arc::new(Float64Array::from(v[rows.clone()].to_vec())) };
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.clone().map(|i| ticks.symbol(i)),
        )),
        Arc::new(Int64Array::from(ticks.ts()[rows.clone()].to_vec())),
        Arc::new(Int32Array::from(ticks.seq()[rows.clone()].to_vec())),
        f64s(ticks.price()),
        f64s(ticks.size()),
    ];
    let field = |name: &str, dt: DataType, nullable: bool| Field::new(name, dt, nullable);
    let mut fields = vec![
        field("symbol", DataType::Utf8, false),
        field("ts", DataType::Int64, false),
        field("seq", DataType::Int32, false),
        field("price", DataType::Float64, false),
        field("size", DataType::Float64, false),
    ];
    for (k, name) in OPTIONAL_FIELDS.iter().enumerate() {
        columns.push(Arc::new(Float64Array::from_iter(
            ticks.optional_values(k, rows.clone()),
        )));
        fields.push(field(name, DataType::Float64, true));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(backend)
}

/// Inserts the rows of `stage` (ticks columns) that are not stored yet;
/// returns how many were inserted.
pub(crate) fn insert_new_ticks(c: &Connection, stage: &str, lo: i64, hi: i64) -> StoreResult<u64> {
    // Nothing stored for these symbols in this time range: no duplicates
    // are possible, skip the anti-join.
    let overlap = overlaps(c, &format!("SELECT DISTINCT symbol FROM {stage}"), lo, hi)?;
    if !overlap {
        let n = c
            .execute(
                &format!("INSERT INTO ticks SELECT {TICK_COLS} FROM {stage}"),
                [],
            )
            .map_err(backend)?;
        return Ok(n as u64);
    }
    let n = c
        .execute(
            &format!(
                "INSERT INTO ticks SELECT {cols} FROM {stage} s WHERE NOT EXISTS (
                     SELECT 1 FROM ticks t WHERE t.ts BETWEEN ?1 AND ?2
                       AND t.symbol = s.symbol AND t.ts = s.ts AND t.seq = s.seq)",
                cols = TICK_COLS
                    .split(", ")
                    .map(|c| format!("s.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            params![lo, hi],
        )
        .map_err(backend)?;
    Ok(n as u64)
}

#[async_trait]
impl TickStore for DuckStore {
    async fn ping(&self) -> StoreResult<()> {
        self.blocking(|s| {
            s.reader()?
                .query_row("SELECT 1", [], |_| Ok(()))
                .map_err(backend)
        })
        .await
    }

    async fn append(&self, ticks: TickColumns) -> StoreResult<AppendReport> {
        self.blocking(move |s| s.append_blocking(ticks)).await
    }

    fn import(&self, request: &ImportRequest, progress: Progress<'_>) -> StoreResult<ImportReport> {
        crate::import::run(self, request, progress)
    }

    async fn coverage(&self) -> StoreResult<Vec<Coverage>> {
        self.blocking(crate::query::coverage).await
    }

    async fn ticks(&self, q: TickQuery) -> StoreResult<Vec<Tick>> {
        self.blocking(move |s| crate::query::ticks(s, &q)).await
    }

    async fn bars(&self, q: BarQuery) -> StoreResult<Vec<Bar>> {
        self.blocking(move |s| crate::query::bars(s, &q)).await
    }

    async fn export(&self, q: ExportQuery, format: ExportFormat, dest: &Path) -> StoreResult<u64> {
        let dest = dest.to_path_buf();
        self.blocking(move |s| crate::query::export(s, &q, format, &dest))
            .await
    }

    async fn retain(&self, before: Nanos) -> StoreResult<u64> {
        self.blocking(move |s| {
            let conn = s.inner.writer.lock();
            let a = conn
                .execute("DELETE FROM ticks WHERE ts < ?1", [before])
                .map_err(backend)?;
            let b = conn
                .execute("DELETE FROM bars WHERE ts < ?1", [before])
                .map_err(backend)?;
            conn.execute_batch("CHECKPOINT").map_err(backend)?;
            Ok((a + b) as u64)
        })
        .await
    }

    async fn restore_ticks(&self, ticks: Vec<Tick>) -> StoreResult<u64> {
        self.blocking(move |s| Ok(s.store_blocking(&TickColumns::from(ticks))?.len() as u64))
            .await
    }

    async fn imported_bars(
        &self,
        symbol: &str,
        interval_s: u32,
        after: Option<Nanos>,
        limit: u32,
    ) -> StoreResult<Vec<Bar>> {
        let symbol = symbol.to_string();
        self.blocking(move |s| crate::query::imported_bars(s, &symbol, interval_s, after, limit))
            .await
    }

    async fn restore_bars(
        &self,
        symbol: &str,
        interval_s: u32,
        bars: Vec<Bar>,
    ) -> StoreResult<u64> {
        let symbol = symbol.to_string();
        self.blocking(move |s| s.store_bars_blocking(&symbol, interval_s, &bars))
            .await
    }

    async fn checkpoint(&self) -> StoreResult<()> {
        self.blocking(|s| {
            s.inner
                .writer
                .lock()
                .execute_batch("CHECKPOINT")
                .map_err(backend)
        })
        .await
    }
}
