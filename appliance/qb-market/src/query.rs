//! Reads: coverage, tick ranges, bars at any interval, exports.
//!
//! Bars: bucket start = `ts - ts mod interval` in UTC (so `1d` buckets start
//! at 00:00 UTC), or, with a time zone, buckets on the zone's wall clock
//! (the local bucket rule of `qb_core::market`, above `BarQuery`: daily
//! bars start at local midnight across daylight saving). The label is the
//! bucket start. Open and close are the first
//! and last tick by `(ts, seq)`; volume and turnover are sums; open
//! interest is the last value. When the symbol has no ticks in the range,
//! bars come from imported bars of the largest stored interval that
//! divides the one asked for.

use std::path::Path;

use duckdb::{Connection, params};
use qb_core::market::*;
use qb_core::{StoreError, StoreResult};

use crate::store::{DuckStore, backend};

pub(crate) fn coverage(s: &DuckStore) -> StoreResult<Vec<Coverage>> {
    let c = s.reader()?;
    let mut out: Vec<Coverage> = Vec::new();
    {
        let mut stmt = c
            .prepare("SELECT symbol, count(*), min(ts), max(ts) FROM ticks GROUP BY symbol ORDER BY symbol")
            .map_err(backend)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Coverage {
                    symbol: r.get(0)?,
                    ticks: r.get::<_, i64>(1)? as u64,
                    first_ts: r.get(2)?,
                    last_ts: r.get(3)?,
                    bars: Vec::new(),
                })
            })
            .map_err(backend)?;
        for r in rows {
            out.push(r.map_err(backend)?);
        }
    }
    let mut stmt = c
        .prepare(
            "SELECT symbol, interval_s, count(*), min(ts), max(ts) FROM bars
             GROUP BY symbol, interval_s ORDER BY symbol, interval_s",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i32>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })
        .map_err(backend)?;
    for r in rows {
        let (symbol, secs, n, first, last) = r.map_err(backend)?;
        add_bar_coverage(&mut out, symbol, secs as u32, n as u64, first, last);
    }
    out.sort_by(|a, b| a.symbol.cmp(&b.symbol));
    Ok(out)
}

pub(crate) fn ticks(s: &DuckStore, q: &TickQuery) -> StoreResult<Vec<Tick>> {
    let c = s.reader()?;
    let (lo, hi) = ts_bounds(q.start, q.end);
    let (after_ts, after_seq) = q.after.unwrap_or((i64::MIN, -1));
    let mut stmt = c
        .prepare(&format!(
            "SELECT {} FROM ticks WHERE symbol = ?1 AND ts >= ?2 AND ts < ?3
               AND (ts > ?4 OR (ts = ?4 AND seq > ?5))
             ORDER BY ts, seq LIMIT ?6",
            crate::store::TICK_COLS
        ))
        .map_err(backend)?;
    let rows = stmt
        .query_map(
            params![q.symbol, lo, hi, after_ts, after_seq, q.limit],
            crate::store::tick_row,
        )
        .map_err(backend)?;
    rows.collect::<duckdb::Result<Vec<_>>>().map_err(backend)
}

fn check_tz(c: &Connection, tz: &str) -> StoreResult<()> {
    let known: i64 = c
        .query_row(
            "SELECT count(*) FROM pg_timezone_names() WHERE name = ?1",
            [tz],
            |r| r.get(0),
        )
        .map_err(backend)?;
    if known == 0 {
        return Err(StoreError::Invalid(format!("unknown time zone {tz:?}")));
    }
    Ok(())
}

fn bucket_sql(interval: Interval, tz: Option<&str>) -> String {
    let iv = interval.nanos();
    match tz {
        None => format!("(ts - (((ts % {iv}) + {iv}) % {iv}))"),
        Some(tz) => {
            // The local bucket rule, in microseconds: `u` the tick, `l` its
            // wall-clock time, `b` the local bucket start, `c` the instant
            // of `b` (ICU: the later of two, the earlier offset in a gap).
            let tz = tz.replace('\'', "");
            let w = interval.nanos() / 1000;
            let u = "(ts // 1000)";
            let l = format!("epoch_us(timezone('{tz}', make_timestamptz({u})))");
            let b = format!("({l} - ((({l}) % {w}) + {w}) % {w})");
            let c = format!("epoch_us(timezone('{tz}', make_timestamp({b})))");
            format!("(CASE WHEN {c} <= {u} THEN {c} ELSE {u} - ({l} - {b}) END * 1000)")
        }
    }
}

/// The SQL selecting bars for `q` (columns ts, open, high, low, close,
/// volume, turnover, open_interest), or None when there is no data.
fn bars_sql(c: &Connection, q: &BarQuery) -> StoreResult<Option<String>> {
    if let Some(tz) = &q.timezone {
        check_tz(c, tz)?;
    }
    check_symbol(&q.symbol).map_err(StoreError::Invalid)?;
    let (lo, hi) = ts_bounds(q.start, q.end);
    let bucket = bucket_sql(q.interval, q.timezone.as_deref());
    let sym = q.symbol.replace('\'', "''");
    let has_ticks: bool = c
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM ticks WHERE symbol = ?1 AND ts >= ?2 AND ts < ?3)",
            params![q.symbol, lo, hi],
            |r| r.get(0),
        )
        .map_err(backend)?;
    if has_ticks {
        return Ok(Some(format!(
            "SELECT {bucket} AS bts,
                    arg_min(price, ts::HUGEINT * 1000000 + seq) AS open, max(price) AS high,
                    min(price) AS low, arg_max(price, ts::HUGEINT * 1000000 + seq) AS close,
                    sum(size) AS volume, sum(turnover) AS turnover,
                    arg_max(open_interest, ts::HUGEINT * 1000000 + seq) AS open_interest
             FROM ticks WHERE symbol = '{sym}' AND ts >= {lo} AND ts < {hi}
             GROUP BY bts ORDER BY bts"
        )));
    }
    let source: Option<i32> = c
        .query_row(
            "SELECT max(interval_s) FROM bars WHERE symbol = ?1 AND ?2 % interval_s = 0 AND ts >= ?3 AND ts < ?4",
            params![q.symbol, q.interval.secs(), lo, hi],
            |r| r.get(0),
        )
        .map_err(backend)?;
    Ok(source.map(|secs| {
        format!(
            "SELECT {bucket} AS bts, arg_min(open, ts) AS open, max(high) AS high, min(low) AS low,
                    arg_max(close, ts) AS close, sum(volume) AS volume, sum(turnover) AS turnover,
                    arg_max(open_interest, ts) AS open_interest
             FROM bars WHERE symbol = '{sym}' AND interval_s = {secs} AND ts >= {lo} AND ts < {hi}
             GROUP BY bts ORDER BY bts"
        )
    }))
}

/// A bar from a row `ts, open, high, low, close, volume, turnover, open_interest`.
fn bar_row(r: &duckdb::Row<'_>) -> duckdb::Result<Bar> {
    Ok(Bar {
        ts: r.get(0)?,
        open: r.get(1)?,
        high: r.get(2)?,
        low: r.get(3)?,
        close: r.get(4)?,
        volume: r.get(5)?,
        turnover: r.get(6)?,
        open_interest: r.get(7)?,
    })
}

pub(crate) fn bars(s: &DuckStore, q: &BarQuery) -> StoreResult<Vec<Bar>> {
    let c = s.reader()?;
    let Some(sql) = bars_sql(&c, q)? else {
        return Ok(Vec::new());
    };
    let mut stmt = c.prepare(&sql).map_err(backend)?;
    let rows = stmt.query_map([], bar_row).map_err(backend)?;
    rows.collect::<duckdb::Result<Vec<_>>>().map_err(backend)
}

pub(crate) fn imported_bars(
    s: &DuckStore,
    symbol: &str,
    interval_s: u32,
    after: Option<Nanos>,
    limit: u32,
) -> StoreResult<Vec<Bar>> {
    let c = s.reader()?;
    let mut stmt = c
        .prepare(
            "SELECT ts, open, high, low, close, volume, turnover, open_interest FROM bars
             WHERE symbol = ?1 AND interval_s = ?2 AND ts > ?3 ORDER BY ts LIMIT ?4",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map(
            params![symbol, interval_s, after.unwrap_or(i64::MIN), limit],
            bar_row,
        )
        .map_err(backend)?;
    rows.collect::<duckdb::Result<Vec<_>>>().map_err(backend)
}

pub(crate) fn export(
    s: &DuckStore,
    q: &ExportQuery,
    format: ExportFormat,
    dest: &Path,
) -> StoreResult<u64> {
    let c = s.reader()?;
    let select = match q {
        ExportQuery::Ticks { symbol, start, end } => ticks_export_select(symbol, *start, *end)?,
        ExportQuery::Bars(bq) => bars_export_select(&bq.symbol, bars_sql(&c, bq)?),
    };
    copy_to(&c, &select, format, dest)
}

/// The rows of a tick export, from the `ticks` table.
fn ticks_export_select(
    symbol: &str,
    start: Option<Nanos>,
    end: Option<Nanos>,
) -> StoreResult<String> {
    check_symbol(symbol).map_err(StoreError::Invalid)?;
    let (lo, hi) = ts_bounds(start, end);
    Ok(format!(
        "SELECT symbol, make_timestamp_ns(ts) AS time, ts AS ts_ns, seq, price, size, volume,
                turnover, open_interest, bid, bid_size, ask, ask_size
         FROM ticks WHERE symbol = '{}' AND ts >= {lo} AND ts < {hi} ORDER BY ts, seq",
        symbol.replace('\'', "''")
    ))
}

/// The rows of a bar export from `bars` (columns bts, open, high, low,
/// close, volume, turnover, open_interest, in order), None when there is
/// no data.
fn bars_export_select(symbol: &str, bars: Option<String>) -> String {
    match bars {
        Some(sql) => format!(
            "SELECT '{sym}' AS symbol, make_timestamp_ns(bts) AS time, bts AS ts_ns, open, high, low,
                    close, volume, turnover, open_interest FROM ({sql})",
            sym = symbol.replace('\'', "''")
        ),
        None => "SELECT NULL::VARCHAR AS symbol, NULL::TIMESTAMP_NS AS time, NULL::BIGINT AS ts_ns,
                 NULL::DOUBLE AS open, NULL::DOUBLE AS high, NULL::DOUBLE AS low, NULL::DOUBLE AS close,
                 NULL::DOUBLE AS volume, NULL::DOUBLE AS turnover, NULL::DOUBLE AS open_interest
                 WHERE false"
            .to_string(),
    }
}

fn copy_to(c: &Connection, select: &str, format: ExportFormat, dest: &Path) -> StoreResult<u64> {
    let fmt = match format {
        ExportFormat::Csv => "FORMAT csv, HEADER true",
        ExportFormat::Parquet => "FORMAT parquet, COMPRESSION zstd",
    };
    let path = dest.to_string_lossy().replace('\'', "''");
    let n = c
        .execute(&format!("COPY ({select}) TO '{path}' ({fmt})"), [])
        .map_err(backend)?;
    Ok(n as u64)
}

/// Writes export files of rows another tick store read, exactly as
/// [`DuckStore`]'s `export` writes them (same columns, types, order and
/// formatting: the same SQL runs over a scratch in-memory DuckDB
/// database). Blocking.
pub struct ExportWriter {
    conn: Connection,
}

impl ExportWriter {
    /// A scratch database; `scratch_dir` takes DuckDB's spill files when
    /// the rows do not fit in `opts.memory_limit`.
    pub fn new(opts: &crate::DuckOptions, scratch_dir: &Path) -> StoreResult<Self> {
        let conn = crate::store::scratch(opts, scratch_dir)?;
        conn.execute_batch(crate::store::SCHEMA).map_err(backend)?;
        Ok(Self { conn })
    }

    /// Adds ticks (`seq` as stored) for [`ExportWriter::write_ticks`].
    pub fn append_ticks(&self, ticks: &[Tick]) -> StoreResult<()> {
        if ticks.is_empty() {
            return Ok(());
        }
        let columns = ticks.iter().cloned().collect();
        crate::store::append_rows(&self.conn, "ticks", "main", &columns)
    }

    /// Writes the added ticks of `symbol` in `[start, end)` to `dest`;
    /// returns rows written.
    pub fn write_ticks(
        &self,
        symbol: &str,
        start: Option<Nanos>,
        end: Option<Nanos>,
        format: ExportFormat,
        dest: &Path,
    ) -> StoreResult<u64> {
        let select = ticks_export_select(symbol, start, end)?;
        copy_to(&self.conn, &select, format, dest)
    }

    /// Writes `bars` (in time order) of `symbol` to `dest` as a bar
    /// export; returns rows written.
    pub fn write_bars(
        &self,
        symbol: &str,
        bars: &[Bar],
        format: ExportFormat,
        dest: &Path,
    ) -> StoreResult<u64> {
        check_symbol(symbol).map_err(StoreError::Invalid)?;
        if bars.is_empty() {
            return copy_to(&self.conn, &bars_export_select(symbol, None), format, dest);
        }
        self.conn
            .execute_batch(
                "CREATE OR REPLACE TEMP TABLE qb_bars_out (bts BIGINT, open DOUBLE, high DOUBLE,
                    low DOUBLE, close DOUBLE, volume DOUBLE, turnover DOUBLE, open_interest DOUBLE)",
            )
            .map_err(backend)?;
        {
            let mut app = self
                .conn
                .appender_to_catalog_and_db("qb_bars_out", "temp", "main")
                .map_err(backend)?;
            for b in bars {
                app.append_row(params![
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
        let inner = "SELECT * FROM qb_bars_out ORDER BY bts".to_string();
        copy_to(
            &self.conn,
            &bars_export_select(symbol, Some(inner)),
            format,
            dest,
        )
    }
}
