//! File imports, parsed by DuckDB's own readers (`read_csv`, `read_parquet`).
//!
//! Every format goes through the same three steps inside one transaction:
//! 1. `raw`: the file as text (CSV) or typed columns (Parquet), with the
//!    line number of every row (line 1 is the header);
//! 2. `typed`: ticks or bars in their final types plus an `error` text per
//!    row saying which field is wrong and why;
//! 3. the good rows are numbered (`seq`) and inserted unless stored already.
//!
//! In strict mode any error rolls the transaction back; in skip mode the
//! good rows are committed and every bad one is reported.

use std::collections::BTreeMap;

use duckdb::Connection;
use qb_core::market::*;
use qb_core::seams::Progress;
use qb_core::{StoreError, StoreResult};

use crate::store::{DuckStore, backend, insert_new_ticks};

/// How many rejections a strict import reports.
const STRICT_REPORT: usize = 20;
/// The CTP "no value" sentinel (DBL_MAX).
const DBL_MAX: &str = "1.7976931348623157e308";
/// China Standard Time, the CTP clock: UTC+8, no daylight saving since 1991.
const CST_OFFSET_NS: i64 = 8 * 3600 * 1_000_000_000;

fn invalid(msg: impl Into<String>) -> StoreError {
    StoreError::Invalid(msg.into())
}

/// A file the reader could not parse at all, said without the file: the
/// reader's first line (what went wrong and on which line), never the
/// lines of the file it quotes after it, nor where the file lies.
fn unreadable(kind: &str, path: &str, e: duckdb::Error) -> StoreError {
    let text = e.to_string();
    let first: String = text
        .lines()
        .next()
        .unwrap_or_default()
        .replace(path, "the file")
        .chars()
        .take(200)
        .collect();
    invalid(format!("cannot read the {kind} file: {first}"))
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

const MACROS: &str = r#"
CREATE OR REPLACE TEMP MACRO qb_sig(x) AS
    rtrim(ltrim(regexp_replace(split_part(lower(trim(x)), 'e', 1), '[^0-9]', '', 'g'), '0'), '0');
CREATE OR REPLACE TEMP MACRO qb_num(x) AS TRY_CAST(trim(x) AS DOUBLE);
CREATE OR REPLACE TEMP MACRO qb_num_error(field, x) AS (
    CASE WHEN x IS NULL OR trim(x) = '' THEN NULL
         WHEN TRY_CAST(trim(x) AS DOUBLE) IS NULL THEN field || ': ' || '"' || x || '" is not a number'
         WHEN NOT isfinite(TRY_CAST(trim(x) AS DOUBLE)) THEN field || ': ' || '"' || x || '" is not finite'
         WHEN length(trim(x)) > 15 AND qb_sig(x) <> qb_sig(CAST(TRY_CAST(trim(x) AS DOUBLE) AS VARCHAR))
              THEN field || ': ' || '"' || x || '" has more digits than a double holds; it would lose precision'
         ELSE NULL END);
"#;

/// Columns of a text table, in order.
fn columns(c: &Connection, table: &str) -> StoreResult<Vec<(String, String)>> {
    let mut stmt = c.prepare(&format!("DESCRIBE {table}")).map_err(backend)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .map_err(backend)?;
    rows.collect::<duckdb::Result<Vec<_>>>().map_err(backend)
}

/// Reads a CSV file as text with line numbers into `raw`.
fn load_csv(c: &Connection, path: &str) -> StoreResult<()> {
    c.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE raw_file AS
         SELECT * FROM read_csv({}, all_varchar = true, header = true, strict_mode = true)",
        quote(path)
    ))
    .map_err(|e| unreadable("CSV", path, e))?;
    // Insertion order is preserved, so rowid is the data row's position in
    // the file: line = rowid + 2 (line 1 is the header).
    // Rows written inside a transaction get transaction-local row ids that
    // start at an offset, hence the subtraction.
    c.execute_batch(
        "CREATE OR REPLACE TEMP VIEW raw AS
         SELECT rowid - (SELECT min(rowid) FROM raw_file) + 2 AS qb_line, * FROM raw_file",
    )
    .map_err(backend)
}

/// Resolves field -> column name, checking required fields exist.
struct Columns {
    have: Vec<String>,
    mapping: BTreeMap<String, String>,
}

impl Columns {
    fn new(have: Vec<(String, String)>, mapping: &BTreeMap<String, String>) -> Self {
        Self {
            have: have.into_iter().map(|(n, _)| n).collect(),
            mapping: mapping.clone(),
        }
    }
    /// The SQL expression for a field, or NULL when the file lacks it.
    fn get(&self, field: &str) -> Option<String> {
        let name = self.mapping.get(field).map(String::as_str).unwrap_or(field);
        self.have
            .iter()
            .find(|h| h.eq_ignore_ascii_case(name))
            .map(|h| ident(h))
    }
    fn require(&self, field: &str) -> StoreResult<String> {
        self.get(field).ok_or_else(|| {
            let name = self.mapping.get(field).map(String::as_str).unwrap_or(field);
            invalid(format!(
                "line 1: missing column {name:?} (columns: {})",
                self.have.join(", ")
            ))
        })
    }
    fn or_null(&self, field: &str) -> String {
        self.get(field)
            .unwrap_or_else(|| "CAST(NULL AS VARCHAR)".into())
    }
}

/// The symbol column as SQL: the request's fixed symbol, or the file's
/// `symbol` column passed through `convert` (trim for text, a cast for Parquet).
fn symbol_sql(
    req: &ImportRequest,
    cols: &Columns,
    convert: impl Fn(&str) -> String,
) -> StoreResult<String> {
    Ok(match &req.symbol {
        Some(s) => quote(s),
        None => convert(&cols.require("symbol")?),
    })
}

/// SQL turning a text timestamp into nanoseconds UTC: integers in `unit`,
/// RFC 3339 with an offset, or local time in `tz`.
fn ts_sql(col: &str, tz: &str, unit_mult: i64) -> String {
    let local = if tz.eq_ignore_ascii_case("UTC") {
        format!("epoch_ns(TRY_CAST({col} AS TIMESTAMP_NS))")
    } else {
        // Keep the nanoseconds of the text; shift by the zone's offset at that time.
        format!(
            "epoch_ns(TRY_CAST({col} AS TIMESTAMP_NS)) + (epoch_ns(timezone({tz}, TRY_CAST({col} AS TIMESTAMP))) - epoch_ns(TRY_CAST({col} AS TIMESTAMP)))",
            tz = quote(tz)
        )
    };
    format!(
        "CASE WHEN TRY_CAST(trim({col}) AS BIGINT) IS NOT NULL THEN TRY_CAST(trim({col}) AS BIGINT) * {unit_mult}
              WHEN regexp_matches(trim({col}), '(Z|z|[+-][0-9]{{2}}(:?[0-9]{{2}})?)$') THEN epoch_ns(TRY_CAST(trim({col}) AS TIMESTAMPTZ))
              ELSE {local} END"
    )
}

fn symbol_error(sym: &str) -> String {
    format!(
        "CASE WHEN {sym} IS NULL OR {sym} = '' THEN 'symbol: missing'
              WHEN NOT regexp_full_match({sym}, '[A-Za-z0-9._/-]{{1,32}}') THEN 'symbol: \"' || {sym} || '\" is not a symbol' END"
    )
}

/// Builds `typed` from `raw` for generic tick CSV.
fn typed_from_csv(c: &Connection, req: &ImportRequest) -> StoreResult<()> {
    let cols = Columns::new(columns(c, "raw")?, &req.mapping);
    let symbol = symbol_sql(req, &cols, |c| format!("trim({c})"))?;
    let ts_col = cols.require("ts")?;
    let price = cols.require("price")?;
    let size = cols.or_null("size");
    let tz = req.timezone.as_deref().unwrap_or("UTC");
    let ts = ts_sql(&ts_col, tz, req.ts_multiplier());
    let optional = OPTIONAL_FIELDS;
    let mut select = vec![
        "qb_line AS line".to_string(),
        format!("{symbol} AS symbol"),
        format!("{ts} AS ts"),
        format!("qb_num({price}) AS price"),
        format!("COALESCE(qb_num({size}), 0) AS size"),
    ];
    for f in optional {
        select.push(format!("qb_num({}) AS {f}", cols.or_null(f)));
    }
    let mut errors = vec![
        symbol_error(&symbol),
        format!(
            "CASE WHEN {ts_col} IS NULL OR trim({ts_col}) = '' THEN 'ts: missing'
                  WHEN ({ts}) IS NULL THEN 'ts: \"' || {ts_col} || '\" is not a time (RFC 3339, local time in {tz}, or integer)' END",
            tz = tz.replace('\'', "")
        ),
        format!("CASE WHEN {price} IS NULL OR trim({price}) = '' THEN 'price: missing' END"),
        format!("qb_num_error('price', {price})"),
        format!("qb_num_error('size', {size})"),
        format!("CASE WHEN qb_num({size}) < 0 THEN 'size: negative' END"),
    ];
    for f in optional {
        errors.push(format!("qb_num_error('{f}', {})", cols.or_null(f)));
    }
    select.push(format!("COALESCE({}) AS error", errors.join(", ")));
    c.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE typed AS SELECT {} FROM raw",
        select.join(",\n ")
    ))
    .map_err(backend)
}

/// Builds `typed` from `raw` for CTP depth-market-data rows.
fn typed_from_ctp(c: &Connection) -> StoreResult<()> {
    let cols = Columns::new(columns(c, "raw")?, &BTreeMap::new());
    for f in [
        "TradingDay",
        "UpdateTime",
        "UpdateMillisec",
        "InstrumentID",
        "LastPrice",
        "Volume",
    ] {
        cols.require(f)?;
    }
    let get = |f: &str| cols.or_null(f);
    let num = |f: &str| {
        format!(
            "CASE WHEN qb_num({c}) >= {DBL_MAX} THEN NULL ELSE qb_num({c}) END",
            c = get(f)
        )
    };
    let (td, ad, ut, ms) = (
        get("TradingDay"),
        get("ActionDay"),
        get("UpdateTime"),
        get("UpdateMillisec"),
    );
    // Calendar date of the tick: ActionDay when it differs from TradingDay
    // (SHFE/INE report the real day); otherwise, for night-session times,
    // the weekday before the trading day (and the day after that once past
    // midnight); otherwise the trading day.
    c.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE ctp AS SELECT qb_line,
            trim({sym}) AS symbol,
            trim({td}) AS trading_day,
            TRY_STRPTIME(trim({td}), '%Y%m%d')::DATE AS td,
            TRY_STRPTIME(trim({ad}), '%Y%m%d')::DATE AS ad,
            TRY_CAST(trim({ut}) AS TIME) AS t,
            TRY_CAST(trim({ms}) AS INTEGER) AS ms,
            {ut} AS ut_raw, {td} AS td_raw, {ms} AS ms_raw,
            {price} AS price, {vol} AS volume, {turn} AS turnover, {oi} AS open_interest,
            {bid} AS bid, {bsz} AS bid_size, {ask} AS ask, {asz} AS ask_size,
            COALESCE(qb_num_error('LastPrice', {lp}), qb_num_error('Volume', {v}),
                     qb_num_error('Turnover', {tu}), qb_num_error('OpenInterest', {o}),
                     qb_num_error('BidPrice1', {b}), qb_num_error('AskPrice1', {a}),
                     qb_num_error('BidVolume1', {bv}), qb_num_error('AskVolume1', {av})) AS num_error
         FROM raw",
        sym = get("InstrumentID"),
        price = num("LastPrice"),
        vol = num("Volume"),
        turn = num("Turnover"),
        oi = num("OpenInterest"),
        bid = num("BidPrice1"),
        bsz = num("BidVolume1"),
        ask = num("AskPrice1"),
        asz = num("AskVolume1"),
        lp = get("LastPrice"),
        v = get("Volume"),
        tu = get("Turnover"),
        o = get("OpenInterest"),
        b = get("BidPrice1"),
        a = get("AskPrice1"),
        bv = get("BidVolume1"),
        av = get("AskVolume1"),
    ))
    .map_err(backend)?;
    c.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE ctp_ts AS SELECT *,
            CASE WHEN ad IS NOT NULL AND ad <> td THEN ad
                 WHEN hour(t) >= 18 THEN td - CASE WHEN dayofweek(td) = 1 THEN 3 ELSE 1 END
                 WHEN hour(t) < 4 THEN td - CASE WHEN dayofweek(td) = 1 THEN 2 ELSE 0 END
                 ELSE td END AS day
         FROM ctp;
         CREATE OR REPLACE TEMP TABLE ctp_ns AS SELECT *,
            epoch_ns(CAST((day + t) AS TIMESTAMP_NS)) + ms::BIGINT * 1000000 - {CST_OFFSET_NS} AS ts
         FROM ctp_ts;"
    ))
    .map_err(backend)?;
    // Cumulative Volume / Turnover become per-tick size / turnover within
    // one (symbol, trading day); the first row of a day carries the day's
    // total so far, and a drop (a reset) starts counting again.
    c.execute_batch(
        "CREATE OR REPLACE TEMP TABLE typed AS SELECT qb_line AS line, symbol, ts, price,
            CASE WHEN prev_vol IS NULL OR volume < prev_vol THEN volume ELSE volume - prev_vol END AS size,
            volume,
            CASE WHEN prev_turn IS NULL OR turnover < prev_turn THEN turnover ELSE turnover - prev_turn END AS turnover,
            open_interest, bid, bid_size, ask, ask_size,
            COALESCE(
              CASE WHEN symbol IS NULL OR symbol = '' THEN 'InstrumentID: missing'
                   WHEN NOT regexp_full_match(symbol, '[A-Za-z0-9._/-]{1,32}') THEN 'InstrumentID: \"' || symbol || '\" is not a symbol' END,
              CASE WHEN td IS NULL THEN 'TradingDay: \"' || COALESCE(td_raw, '') || '\" is not YYYYMMDD' END,
              CASE WHEN t IS NULL THEN 'UpdateTime: \"' || COALESCE(ut_raw, '') || '\" is not HH:MM:SS' END,
              CASE WHEN ms IS NULL OR ms < 0 OR ms > 999 THEN 'UpdateMillisec: \"' || COALESCE(ms_raw, '') || '\" is not 0-999' END,
              num_error,
              CASE WHEN price IS NULL THEN 'LastPrice: missing' END,
              CASE WHEN volume IS NULL THEN 'Volume: missing' END) AS error
         FROM (SELECT *,
                 lag(volume) OVER w AS prev_vol,
                 lag(turnover) OVER w AS prev_turn
               FROM ctp_ns
               WINDOW w AS (PARTITION BY symbol, trading_day ORDER BY ts, qb_line))",
    )
    .map_err(backend)
}

/// Reads a Parquet file into `typed`.
fn typed_from_parquet(c: &Connection, req: &ImportRequest) -> StoreResult<()> {
    c.execute_batch(&format!(
        "CREATE OR REPLACE TEMP VIEW raw AS SELECT file_row_number + 1 AS qb_line, * EXCLUDE (file_row_number)
         FROM read_parquet({}, file_row_number = true)",
        quote(&req.path)
    ))
    .map_err(|e| unreadable("Parquet", &req.path, e))?;
    let have = columns(c, "raw")?;
    let cols = Columns::new(have.clone(), &req.mapping);
    let symbol = symbol_sql(req, &cols, |c| format!("CAST({c} AS VARCHAR)"))?;
    let ts_col = cols.require("ts")?;
    let ts_type = have
        .iter()
        .find(|(n, _)| ident(n) == ts_col)
        .map(|(_, t)| t.to_uppercase())
        .unwrap_or_default();
    let ts = if ts_type.starts_with("TIMESTAMP") {
        format!("epoch_ns({ts_col})")
    } else {
        format!("TRY_CAST({ts_col} AS BIGINT) * {}", req.ts_multiplier())
    };
    let price = cols.require("price")?;
    let num = |f: &str| match cols.get(f) {
        Some(col) => format!("TRY_CAST({col} AS DOUBLE)"),
        None => "CAST(NULL AS DOUBLE)".into(),
    };
    c.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE typed AS SELECT qb_line AS line, {symbol} AS symbol, {ts} AS ts,
            TRY_CAST({price} AS DOUBLE) AS price, COALESCE({size}, 0) AS size,
            {volume} AS volume, {turnover} AS turnover, {oi} AS open_interest,
            {bid} AS bid, {bid_size} AS bid_size, {ask} AS ask, {ask_size} AS ask_size,
            COALESCE({sym_err},
                     CASE WHEN {ts} IS NULL THEN 'ts: missing' END,
                     CASE WHEN {price} IS NULL THEN 'price: missing'
                          WHEN NOT isfinite(TRY_CAST({price} AS DOUBLE)) THEN 'price: not finite' END,
                     CASE WHEN {size} < 0 THEN 'size: negative' END) AS error
         FROM raw",
        size = num("size"),
        volume = num("volume"),
        turnover = num("turnover"),
        oi = num("open_interest"),
        bid = num("bid"),
        bid_size = num("bid_size"),
        ask = num("ask"),
        ask_size = num("ask_size"),
        sym_err = symbol_error(&symbol),
    ))
    .map_err(backend)
}

/// Builds `typed_bars` from `raw` for bar CSV files.
fn typed_bars(c: &Connection, req: &ImportRequest) -> StoreResult<()> {
    let cols = Columns::new(columns(c, "raw")?, &req.mapping);
    // Present and valid: `ImportRequest::validate` ran first.
    let interval: Interval = req
        .interval
        .as_deref()
        .unwrap_or_default()
        .parse()
        .map_err(invalid)?;
    let symbol = symbol_sql(req, &cols, |c| format!("trim({c})"))?;
    let ts_col = cols.require("ts")?;
    let tz = req.timezone.as_deref().unwrap_or("UTC");
    let ts = ts_sql(&ts_col, tz, req.ts_multiplier());
    let [o, h, l, cl, v] = ["open", "high", "low", "close", "volume"].map(|f| cols.require(f));
    let (o, h, l, cl, v) = (o?, h?, l?, cl?, v?);
    let (tu, oi) = (cols.or_null("turnover"), cols.or_null("open_interest"));
    let mut errors = vec![
        symbol_error(&symbol),
        format!(
            "CASE WHEN ({ts}) IS NULL THEN 'ts: \"' || COALESCE({ts_col}, '') || '\" is not a time' END"
        ),
    ];
    for (name, col) in [
        ("open", &o),
        ("high", &h),
        ("low", &l),
        ("close", &cl),
        ("volume", &v),
    ] {
        errors.push(format!(
            "CASE WHEN {col} IS NULL OR trim({col}) = '' THEN '{name}: missing' END"
        ));
        errors.push(format!("qb_num_error('{name}', {col})"));
    }
    errors.push(format!("qb_num_error('turnover', {tu})"));
    errors.push(format!("qb_num_error('open_interest', {oi})"));
    errors.push(format!(
        "CASE WHEN qb_num({h}) < greatest(qb_num({o}), qb_num({cl}), qb_num({l}))
                OR qb_num({l}) > least(qb_num({o}), qb_num({cl})) THEN 'high/low: bar is inconsistent (low <= open, close <= high)' END"
    ));
    errors.push(format!(
        "CASE WHEN ({ts}) % {iv} <> 0 THEN 'ts: not aligned to the {interval} interval' END",
        iv = interval.nanos()
    ));
    c.execute_batch(&format!(
        "CREATE OR REPLACE TEMP TABLE typed AS SELECT qb_line AS line, {symbol} AS symbol,
            {secs} AS interval_s, {ts} AS ts,
            qb_num({o}) AS open, qb_num({h}) AS high, qb_num({l}) AS low, qb_num({cl}) AS close,
            qb_num({v}) AS volume, qb_num({tu}) AS turnover, qb_num({oi}) AS open_interest,
            COALESCE({errs}) AS error
         FROM raw",
        secs = interval.secs(),
        errs = errors.join(", ")
    ))
    .map_err(backend)
}

fn rejections(c: &Connection, limit: Option<usize>) -> StoreResult<(u64, Vec<Rejection>)> {
    let total: i64 = c
        .query_row(
            "SELECT count(*) FROM typed WHERE error IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .map_err(backend)?;
    let sql = match limit {
        Some(n) => {
            format!("SELECT line, error FROM typed WHERE error IS NOT NULL ORDER BY line LIMIT {n}")
        }
        None => "SELECT line, error FROM typed WHERE error IS NOT NULL ORDER BY line".into(),
    };
    let mut stmt = c.prepare(&sql).map_err(backend)?;
    let rows = stmt
        .query_map([], |r| {
            Ok(Rejection {
                line: r.get::<_, i64>(0)? as u64,
                reason: r.get(1)?,
            })
        })
        .map_err(backend)?;
    Ok((
        total as u64,
        rows.collect::<duckdb::Result<Vec<_>>>().map_err(backend)?,
    ))
}

fn symbols_of(c: &Connection) -> StoreResult<Vec<String>> {
    let mut stmt = c
        .prepare("SELECT DISTINCT symbol FROM typed WHERE error IS NULL ORDER BY symbol")
        .map_err(backend)?;
    let rows = stmt.query_map([], |r| r.get(0)).map_err(backend)?;
    rows.collect::<duckdb::Result<Vec<String>>>()
        .map_err(backend)
}

/// What reading and checking a file (steps 1 and 2, and the numbering of
/// step 3) left behind: the views `good` (ticks with `seq`) or `good_bars`
/// (the first row of every bar) in the connection's temporary schema.
struct Staged {
    /// Rows read, rejected, the rejections and, unless nothing is to be
    /// stored, the symbols; nothing stored yet.
    report: ImportReport,
    bars: bool,
    /// Smallest and largest `ts` of the good rows.
    range: Option<(i64, i64)>,
    /// Good rows (to be stored, or duplicates).
    good: u64,
    /// Strict mode found bad rows: store nothing.
    store_nothing: bool,
}

/// What can be checked before the file is read.
fn check_request(req: &ImportRequest) -> StoreResult<()> {
    req.validate()
        .map_err(|(field, msg)| invalid(format!("{field}: {msg}")))?;
    if !std::path::Path::new(&req.path).is_file() {
        return Err(invalid(format!("{} is not a readable file", req.path)));
    }
    Ok(())
}

/// Reads and checks the file into temporary tables of `c` and prepares
/// the rows to store (the `good` or `good_bars` view).
fn stage(
    c: &Connection,
    req: &ImportRequest,
    progress: Progress<'_>,
    step: &dyn Fn(&str),
) -> StoreResult<Staged> {
    c.execute_batch(MACROS).map_err(backend)?;
    progress(0.05, "reading the file");
    let bars = req.format == ImportFormat::BarsCsv;
    match req.format {
        ImportFormat::Csv => {
            load_csv(c, &req.path)?;
            typed_from_csv(c, req)?;
        }
        ImportFormat::Ctp => {
            load_csv(c, &req.path)?;
            typed_from_ctp(c)?;
        }
        ImportFormat::BarsCsv => {
            load_csv(c, &req.path)?;
            typed_bars(c, req)?;
        }
        ImportFormat::Parquet => typed_from_parquet(c, req)?,
    }
    step("typed");
    progress(0.5, "rows read and checked");
    let rows_read: i64 = c
        .query_row("SELECT count(*) FROM typed", [], |r| r.get(0))
        .map_err(backend)?;
    let strict = req.mode == ImportMode::Strict;
    let (rejected, rejections) = rejections(c, strict.then_some(STRICT_REPORT))?;
    let mut staged = Staged {
        report: ImportReport {
            rows_read: rows_read as u64,
            rows_rejected: rejected,
            rejections,
            ..Default::default()
        },
        bars,
        range: None,
        good: rows_read as u64 - rejected,
        store_nothing: strict && rejected > 0,
    };
    if staged.store_nothing {
        return Ok(staged);
    }
    step("rejections counted");
    staged.report.symbols = symbols_of(c)?;
    let (lo, hi): (Option<i64>, Option<i64>) = c
        .query_row(
            "SELECT min(ts), max(ts) FROM typed WHERE error IS NULL",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(backend)?;
    staged.range = lo.zip(hi);
    if staged.range.is_none() {
        return Ok(staged);
    }
    if bars {
        // Within one file the first row of a bar wins.
        c.execute_batch(
            "CREATE OR REPLACE TEMP VIEW good_bars AS
             SELECT symbol, interval_s, ts, open, high, low, close, volume, turnover, open_interest
             FROM (SELECT *, row_number() OVER (PARTITION BY symbol, interval_s, ts ORDER BY line) AS n
                   FROM typed WHERE error IS NULL) s
             WHERE n = 1",
        )
        .map_err(backend)?;
        return Ok(staged);
    }
    // seq numbers ticks sharing (symbol, ts); most ticks share with
    // none, so only the shared keys are ranked.
    c.execute_batch(
        "CREATE OR REPLACE TEMP TABLE dup_seq AS
         SELECT line, (row_number() OVER (PARTITION BY symbol, ts ORDER BY line) - 1)::INTEGER AS seq
         FROM typed t SEMI JOIN (SELECT symbol, ts FROM typed WHERE error IS NULL
                                 GROUP BY symbol, ts HAVING count(*) > 1) d USING (symbol, ts)
         WHERE t.error IS NULL",
    )
    .map_err(backend)?;
    let dups: i64 = c
        .query_row("SELECT count(*) FROM dup_seq", [], |r| r.get(0))
        .map_err(backend)?;
    let seq = if dups == 0 {
        "0::INTEGER"
    } else {
        "COALESCE(d.seq, 0)"
    };
    let join = if dups == 0 {
        ""
    } else {
        "LEFT JOIN dup_seq d ON d.line = s.line"
    };
    c.execute_batch(&format!(
        "CREATE OR REPLACE TEMP VIEW good AS SELECT s.symbol, s.ts, {seq} AS seq, s.price, s.size,
            s.volume, s.turnover, s.open_interest, s.bid, s.bid_size, s.ask, s.ask_size
         FROM typed s {join} WHERE s.error IS NULL"
    ))
    .map_err(backend)?;
    step("seq");
    Ok(staged)
}

/// Runs one import (blocking).
pub(crate) fn run(
    store: &DuckStore,
    req: &ImportRequest,
    progress: Progress<'_>,
) -> StoreResult<ImportReport> {
    check_request(req)?;
    let mut conn = store.inner.writer.lock();
    let tx = conn.transaction().map_err(backend)?;
    let clock = std::time::Instant::now();
    let step = |what: &str| {
        tracing::debug!(
            step = what,
            ms = clock.elapsed().as_millis() as u64,
            "import"
        )
    };
    let staged = stage(&tx, req, progress, &step)?;
    let mut report = staged.report;
    if staged.store_nothing {
        // Nothing is stored: the transaction is dropped, i.e. rolled back.
        return Ok(report);
    }
    let stored = match staged.range {
        Some((lo, hi)) if staged.bars => tx
            .execute(
                "INSERT INTO bars SELECT s.symbol, s.interval_s, s.ts, s.open, s.high, s.low, s.close,
                        s.volume, s.turnover, s.open_interest
                 FROM good_bars s
                 WHERE NOT EXISTS (SELECT 1 FROM bars b WHERE b.ts BETWEEN ?1 AND ?2
                       AND b.symbol = s.symbol AND b.interval_s = s.interval_s AND b.ts = s.ts)",
                [lo, hi],
            )
            .map_err(backend)? as u64,
        Some((lo, hi)) => {
            progress(0.7, "storing");
            insert_new_ticks(&tx, "good", lo, hi)?
        }
        None => 0,
    };
    report.rows_stored = stored;
    report.rows_duplicate = staged.good - stored;
    tx.execute_batch(DROP_STAGED).map_err(backend)?;
    step("inserted");
    tx.commit().map_err(backend)?;
    step("committed");
    progress(1.0, "committed");
    Ok(report)
}

const DROP_STAGED: &str = "DROP VIEW IF EXISTS temp.good; DROP VIEW IF EXISTS temp.good_bars;
     DROP VIEW IF EXISTS temp.raw; DROP TABLE IF EXISTS temp.raw_file;
     DROP TABLE IF EXISTS temp.typed; DROP TABLE IF EXISTS temp.dup_seq;
     DROP TABLE IF EXISTS temp.ctp; DROP TABLE IF EXISTS temp.ctp_ts; DROP TABLE IF EXISTS temp.ctp_ns;";

/// One bar of a bar file, as read.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedBar {
    pub symbol: String,
    pub interval_s: u32,
    pub bar: Bar,
}

/// A file read and checked by the DuckDB store's readers, in a scratch
/// in-memory DuckDB database, not stored anywhere yet: how another tick
/// store imports with the very same parsing, validation, rejections (and
/// their lines) and `seq` numbering as [`DuckStore`]. Nothing is stored
/// when [`ParsedImport::store_nothing`] says so (strict mode, bad rows).
pub struct ParsedImport {
    conn: Connection,
    staged: Staged,
}

/// Reads and checks `req`'s file (blocking). `scratch_dir` takes DuckDB's
/// spill files when the file does not fit in `opts.memory_limit`.
/// Progress goes to 0.5 ("rows read and checked"); the caller reports
/// storing and the commit.
pub fn parse_import(
    req: &ImportRequest,
    opts: &crate::DuckOptions,
    scratch_dir: &std::path::Path,
    progress: Progress<'_>,
) -> StoreResult<ParsedImport> {
    check_request(req)?;
    let conn = crate::store::scratch(opts, scratch_dir)?;
    let staged = stage(&conn, req, progress, &|what| {
        tracing::debug!(step = what, "import parse")
    })?;
    Ok(ParsedImport { conn, staged })
}

impl ParsedImport {
    /// Rows read and rejected, the rejections and the symbols; the store
    /// fills in what it stored with [`ParsedImport::finish`].
    pub fn report(&self) -> &ImportReport {
        &self.staged.report
    }
    /// Strict mode found bad rows: the import must store nothing.
    pub fn store_nothing(&self) -> bool {
        self.staged.store_nothing
    }
    /// A bar file (`bars_csv`) rather than ticks.
    pub fn is_bars(&self) -> bool {
        self.staged.bars
    }
    /// Smallest and largest timestamp of the good rows.
    pub fn range(&self) -> Option<(Nanos, Nanos)> {
        self.staged.range
    }
    /// Good rows: stored or duplicates.
    pub fn good_rows(&self) -> u64 {
        self.staged.good
    }

    /// The good ticks with their `seq`, in chunks of at most `chunk`.
    pub fn ticks(
        &self,
        chunk: usize,
        each: impl FnMut(Vec<Tick>) -> StoreResult<()>,
    ) -> StoreResult<()> {
        if self.staged.bars || self.staged.range.is_none() || self.staged.store_nothing {
            return Ok(());
        }
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {} FROM good", crate::store::TICK_COLS))
            .map_err(backend)?;
        let rows = stmt
            .query_map([], crate::store::tick_row)
            .map_err(backend)?;
        in_chunks(rows, chunk, each)
    }

    /// The good bars (the first row of each bar in the file), in chunks
    /// of at most `chunk`.
    pub fn bars(
        &self,
        chunk: usize,
        each: impl FnMut(Vec<ImportedBar>) -> StoreResult<()>,
    ) -> StoreResult<()> {
        if !self.staged.bars || self.staged.range.is_none() || self.staged.store_nothing {
            return Ok(());
        }
        let mut stmt = self
            .conn
            .prepare(
                "SELECT symbol, interval_s, ts, open, high, low, close, volume, turnover, open_interest
                 FROM good_bars",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(ImportedBar {
                    symbol: r.get(0)?,
                    interval_s: r.get::<_, i32>(1)? as u32,
                    bar: Bar {
                        ts: r.get(2)?,
                        open: r.get(3)?,
                        high: r.get(4)?,
                        low: r.get(5)?,
                        close: r.get(6)?,
                        volume: r.get(7)?,
                        turnover: r.get(8)?,
                        open_interest: r.get(9)?,
                    },
                })
            })
            .map_err(backend)?;
        in_chunks(rows, chunk, each)
    }

    /// The import's report once `stored` of the good rows were stored (the
    /// others were duplicates).
    pub fn finish(self, stored: u64) -> ImportReport {
        let mut report = self.staged.report;
        report.rows_stored = stored;
        report.rows_duplicate = self.staged.good - stored;
        report
    }
}

/// Hands `rows` to `each` in vectors of at most `chunk`.
fn in_chunks<T>(
    rows: impl Iterator<Item = duckdb::Result<T>>,
    chunk: usize,
    mut each: impl FnMut(Vec<T>) -> StoreResult<()>,
) -> StoreResult<()> {
    let chunk = chunk.max(1);
    let mut buf = Vec::with_capacity(chunk);
    for r in rows {
        buf.push(r.map_err(backend)?);
        if buf.len() == chunk {
            each(std::mem::replace(&mut buf, Vec::with_capacity(chunk)))?;
        }
    }
    if !buf.is_empty() {
        each(buf)?;
    }
    Ok(())
}
