//! The files a finished backtest leaves in its directory: fills, equity
//! curve and round trips as CSV and Parquet, fills as JSON (what the API
//! serves as `/fills`), and the HTML report.
//!
//! Parquet files are written by DuckDB from the CSV files (no hand-written
//! Parquet). Money columns are exact: `DECIMAL(38, s)` with `s` the
//! largest scale in the column, so every value round-trips; equity is an
//! f64 series (see [`crate::engine::RunResult`]) and stays `DOUBLE`.

use std::path::Path;

use rust_decimal::Decimal;

use crate::job::Outcome;

/// The downloadable files and their media types.
pub const DOWNLOADS: [(&str, &str); 6] = [
    ("fills.csv", "text/csv"),
    ("equity.csv", "text/csv"),
    ("trades.csv", "text/csv"),
    ("fills.parquet", "application/vnd.apache.parquet"),
    ("equity.parquet", "application/vnd.apache.parquet"),
    ("trades.parquet", "application/vnd.apache.parquet"),
];

/// A CSV file: a header and rows, quoted where a field needs it (the csv
/// crate's rules), lines ending in `\n`.
fn csv_of(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> Result<Vec<u8>, String> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    w.write_record(header).map_err(|e| e.to_string())?;
    for row in rows {
        w.write_record(&row).map_err(|e| e.to_string())?;
    }
    w.into_inner().map_err(|e| e.to_string())
}

/// Writes every file of `o` into `dir` (created if missing).
pub fn write_files(dir: &Path, o: &Outcome, report_html: &str) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let write = |name: &str, body: &[u8]| {
        std::fs::write(dir.join(name), body).map_err(|e| format!("{name}: {e}"))
    };
    let fills = &o.result.fills;
    write(
        "fills.json",
        &serde_json::to_vec(fills).map_err(|e| e.to_string())?,
    )?;
    write(
        "fills.csv",
        &csv_of(
            &[
                "ts",
                "symbol",
                "side",
                "qty",
                "price",
                "commission",
                "realized",
            ],
            fills.iter().map(|f| {
                let side = if f.qty.is_sign_positive() {
                    "buy"
                } else {
                    "sell"
                };
                vec![
                    f.ts.to_string(),
                    f.symbol.clone(),
                    side.into(),
                    f.qty.abs().to_string(),
                    f.price.to_string(),
                    f.commission.to_string(),
                    f.realized.to_string(),
                ]
            }),
        )?,
    )?;
    write(
        "equity.csv",
        &csv_of(
            &["ts", "equity"],
            o.result
                .equity
                .iter()
                .map(|(ts, e)| vec![ts.to_string(), e.to_string()]),
        )?,
    )?;
    write(
        "trades.csv",
        &csv_of(
            &["symbol", "direction", "entry_ts", "exit_ts", "pnl"],
            o.trips.iter().map(|t| {
                vec![
                    t.symbol.clone(),
                    if t.direction > 0 { "long" } else { "short" }.into(),
                    t.entry_ts.to_string(),
                    t.exit_ts.to_string(),
                    t.pnl.to_string(),
                ]
            }),
        )?,
    )?;
    write("report.html", report_html.as_bytes())?;

    let scale = |it: &mut dyn Iterator<Item = Decimal>| it.map(|d| d.scale()).max().unwrap_or(0);
    let money = |s: u32| format!("DECIMAL(38,{s})");
    let fill_cols = [
        ("ts", "BIGINT".to_string()),
        ("symbol", "VARCHAR".into()),
        ("side", "VARCHAR".into()),
        ("qty", money(scale(&mut fills.iter().map(|f| f.qty)))),
        ("price", money(scale(&mut fills.iter().map(|f| f.price)))),
        (
            "commission",
            money(scale(&mut fills.iter().map(|f| f.commission))),
        ),
        (
            "realized",
            money(scale(&mut fills.iter().map(|f| f.realized))),
        ),
    ];
    let equity_cols = [("ts", "BIGINT".to_string()), ("equity", "DOUBLE".into())];
    let trade_cols = [
        ("symbol", "VARCHAR".to_string()),
        ("direction", "VARCHAR".into()),
        ("entry_ts", "BIGINT".into()),
        ("exit_ts", "BIGINT".into()),
        ("pnl", money(scale(&mut o.trips.iter().map(|t| t.pnl)))),
    ];
    let db = duckdb::Connection::open_in_memory().map_err(|e| format!("duckdb: {e}"))?;
    for (name, cols) in [
        ("fills", &fill_cols[..]),
        ("equity", &equity_cols[..]),
        ("trades", &trade_cols[..]),
    ] {
        to_parquet(&db, dir, name, cols)?;
    }
    Ok(())
}

/// `<dir>/<name>.csv` → `<dir>/<name>.parquet` with the given column types.
fn to_parquet(
    db: &duckdb::Connection,
    dir: &Path,
    name: &str,
    cols: &[(&str, String)],
) -> Result<(), String> {
    let quote = |p: &Path| p.display().to_string().replace('\'', "''");
    let columns: Vec<String> = cols.iter().map(|(c, t)| format!("'{c}': '{t}'")).collect();
    let tmp = dir.join(format!("{name}.parquet.tmp"));
    let sql = format!(
        "COPY (SELECT * FROM read_csv('{csv}', header = true, auto_detect = false, columns = {{{cols}}})) \
         TO '{out}' (FORMAT parquet, COMPRESSION zstd)",
        csv = quote(&dir.join(format!("{name}.csv"))),
        cols = columns.join(", "),
        out = quote(&tmp),
    );
    db.execute_batch(&sql)
        .map_err(|e| format!("{name}.parquet: {e}"))?;
    std::fs::rename(&tmp, dir.join(format!("{name}.parquet")))
        .map_err(|e| format!("{name}.parquet: {e}"))
}
