//! Market data vocabulary: instruments, ticks, bars, intervals, imports.
//!
//! Numeric types:
//! - Tick and bar prices, sizes and amounts are `f64` (IEEE-754 binary64).
//!   Exchanges and gateways (CTP included) publish them as doubles, so a
//!   double stores every source value exactly as it arrived. Decimal text is
//!   accepted only when it round-trips: at most 15 significant digits, which
//!   every binary64 represents uniquely; longer input is rejected with its
//!   position instead of being rounded silently.
//! - Instrument economics (multiplier, price tick, lot size, margin ratio,
//!   fee rates) are exact decimals ([`Decimal`], strings in JSON): they enter
//!   money arithmetic.
//! - Timestamps are `i64` nanoseconds since the Unix epoch, UTC.

use std::fmt;
use std::str::FromStr;

pub use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use crate::tick_columns::{OPTIONAL_FIELDS, TickColumns};

/// Nanoseconds since the Unix epoch, UTC.
pub type Nanos = i64;

/// What an instrument is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum AssetClass {
    #[default]
    Future,
    Stock,
    Crypto,
    Fx,
}

/// Commission: a rate of notional and/or an amount per lot, with separate
/// open / close / close-today values as Chinese futures exchanges set them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema, Default)]
#[serde(default, deny_unknown_fields)]
pub struct FeeSchedule {
    #[schema(value_type = String)]
    pub open_rate: Decimal,
    #[schema(value_type = String)]
    pub close_rate: Decimal,
    #[schema(value_type = String)]
    pub close_today_rate: Decimal,
    #[schema(value_type = String)]
    pub open_per_lot: Decimal,
    #[schema(value_type = String)]
    pub close_per_lot: Decimal,
    #[schema(value_type = String)]
    pub close_today_per_lot: Decimal,
}

/// A trading session in exchange local time, e.g. `21:00`-`02:30` for a
/// night session crossing midnight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Session {
    pub start: String,
    pub end: String,
}

/// A tradable instrument.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Instrument {
    /// 1 to 32 of `A-Z a-z 0-9 . _ - /`.
    #[schema(pattern = r"^[A-Za-z0-9._/-]{1,32}$")]
    pub symbol: String,
    #[serde(default)]
    pub exchange: String,
    #[serde(default)]
    pub asset_class: AssetClass,
    #[serde(default = "default_currency")]
    pub currency: String,
    /// Contract multiplier (units per lot of price).
    #[serde(default = "one")]
    #[schema(value_type = String)]
    pub multiplier: Decimal,
    #[serde(default = "default_tick")]
    #[schema(value_type = String)]
    pub price_tick: Decimal,
    #[serde(default = "one")]
    #[schema(value_type = String)]
    pub lot_size: Decimal,
    /// Fraction of notional held as margin (1 = fully paid).
    #[serde(default = "one")]
    #[schema(value_type = String)]
    pub margin_ratio: Decimal,
    #[serde(default)]
    pub fees: FeeSchedule,
    /// Exchange time zone of the sessions, e.g. `Asia/Shanghai`.
    #[serde(default = "default_tz")]
    pub timezone: String,
    #[serde(default)]
    pub sessions: Vec<Session>,
}

fn default_currency() -> String {
    "CNY".into()
}
fn one() -> Decimal {
    Decimal::ONE
}
fn default_tick() -> Decimal {
    Decimal::new(1, 2)
}
fn default_tz() -> String {
    "UTC".into()
}

impl Instrument {
    /// An instrument with defaults, as created for unknown symbols in imports.
    pub fn with_defaults(symbol: &str) -> Self {
        Self {
            symbol: symbol.to_string(),
            exchange: String::new(),
            asset_class: AssetClass::default(),
            currency: default_currency(),
            multiplier: one(),
            price_tick: default_tick(),
            lot_size: one(),
            margin_ratio: one(),
            fees: FeeSchedule::default(),
            timezone: default_tz(),
            sessions: Vec::new(),
        }
    }

    /// Checks ranges; the error names the field.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        check_symbol(&self.symbol).map_err(|e| ("symbol", e))?;
        for (field, v) in [
            ("multiplier", self.multiplier),
            ("price_tick", self.price_tick),
            ("lot_size", self.lot_size),
        ] {
            if v <= Decimal::ZERO {
                return Err((field, format!("{v} must be positive")));
            }
        }
        if self.margin_ratio <= Decimal::ZERO || self.margin_ratio > Decimal::ONE {
            return Err((
                "margin_ratio",
                format!("{} must be in (0, 1]", self.margin_ratio),
            ));
        }
        let f = &self.fees;
        for v in [
            f.open_rate,
            f.close_rate,
            f.close_today_rate,
            f.open_per_lot,
            f.close_per_lot,
            f.close_today_per_lot,
        ] {
            if v < Decimal::ZERO {
                return Err(("fees", format!("{v} must not be negative")));
            }
        }
        for s in &self.sessions {
            for t in [&s.start, &s.end] {
                if chrono::NaiveTime::parse_from_str(t, "%H:%M").is_err() {
                    return Err(("sessions", format!("{t:?} is not HH:MM")));
                }
            }
        }
        Ok(())
    }
}

/// Symbols: 1 to 32 of `A-Z a-z 0-9 . _ - /`.
pub fn check_symbol(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 32
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a symbol (1 to 32 of A-Z, a-z, 0-9, '.', '_', '-', '/')"
        ))
    }
}

/// The tick times the stores take, in nanoseconds: 1900-01-01 (inclusive)
/// to 2200-01-01 (exclusive), UTC. Stores turn tick times into timestamps
/// (DuckDB's `make_timestamp_ns` in exports and bars), which do not reach
/// the ends of `i64`.
pub const TS_RANGE: std::ops::Range<Nanos> = -2_208_988_800_000_000_000..7_258_118_400_000_000_000;

/// Checks a tick time against [`TS_RANGE`].
pub fn check_ts(ts: Nanos) -> Result<(), String> {
    if TS_RANGE.contains(&ts) {
        Ok(())
    } else {
        Err(format!(
            "{ts} is outside 1900-01-01 to 2200-01-01 (nanoseconds since the epoch)"
        ))
    }
}

/// One market data tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Tick {
    pub symbol: String,
    /// Nanoseconds since the epoch, UTC.
    pub ts: Nanos,
    /// Ordinal among ticks of the same symbol and timestamp in one batch;
    /// `(symbol, ts, seq)` identifies a tick, which makes re-sending a batch
    /// or re-importing a file idempotent.
    #[serde(default)]
    pub seq: i32,
    pub price: f64,
    /// Size traded with this tick.
    pub size: f64,
    /// Cumulative volume as the source reported it.
    pub volume: Option<f64>,
    /// Amount traded with this tick.
    pub turnover: Option<f64>,
    pub open_interest: Option<f64>,
    pub bid: Option<f64>,
    pub bid_size: Option<f64>,
    pub ask: Option<f64>,
    pub ask_size: Option<f64>,
}

impl Tick {
    /// The optional fields, in [`OPTIONAL_FIELDS`] order.
    pub fn optional(&self) -> [Option<f64>; 7] {
        [
            self.volume,
            self.turnover,
            self.open_interest,
            self.bid,
            self.bid_size,
            self.ask,
            self.ask_size,
        ]
    }
}

/// The pub/sub topic ticks are published on, as [`TickBatch`]es: by live
/// ingest (after the commit) and by replay feeds.
pub const TICKS_TOPIC: &str = "ticks";

/// Ticks of one symbol in columnar form: what goes out on [`TICKS_TOPIC`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TickBatch {
    pub symbol: String,
    pub ts: Vec<Nanos>,
    pub price: Vec<f64>,
    pub size: Vec<f64>,
    pub bid: Vec<Option<f64>>,
    pub ask: Vec<Option<f64>>,
}

/// One OHLCV bar; `ts` is the bucket start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Bar {
    pub ts: Nanos,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
    pub turnover: Option<f64>,
    pub open_interest: Option<f64>,
}

/// Bars of one interval built from one symbol's trades as they arrive
/// (live strategies, `/ws` bar channels). A bar is complete when a trade
/// opens a later bucket; trades older than the bar in progress are ignored.
#[derive(Debug, Clone)]
pub struct BarBuilder {
    nanos: Nanos,
    current: Option<Bar>,
}

impl BarBuilder {
    pub fn new(interval: Interval) -> Self {
        Self {
            nanos: interval.nanos(),
            current: None,
        }
    }

    /// Adds a trade; the bar it completed, if it opened a new bucket.
    pub fn push(&mut self, ts: Nanos, price: f64, size: f64) -> Option<Bar> {
        let bucket = ts - ts.rem_euclid(self.nanos);
        match &mut self.current {
            Some(bar) if bar.ts == bucket => {
                bar.high = bar.high.max(price);
                bar.low = bar.low.min(price);
                bar.close = price;
                bar.volume += size;
                None
            }
            Some(bar) if bar.ts > bucket => None,
            slot => slot.replace(Bar {
                ts: bucket,
                open: price,
                high: price,
                low: price,
                close: price,
                volume: size,
                turnover: None,
                open_interest: None,
            }),
        }
    }

    /// The bar in progress.
    pub fn current(&self) -> Option<&Bar> {
        self.current.as_ref()
    }
}

/// A bar interval in whole seconds, from 1 s to 1 d, dividing a day so
/// that buckets align to midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Interval(u32);

impl Interval {
    pub const DAY: u32 = 86_400;

    pub fn from_secs(secs: u32) -> Result<Self, String> {
        if secs == 0 || secs > Self::DAY || Self::DAY % secs != 0 {
            return Err(format!(
                "{secs} s is not an interval from 1 s to 1 d that divides a day"
            ));
        }
        Ok(Self(secs))
    }
    pub fn secs(self) -> u32 {
        self.0
    }
    pub fn nanos(self) -> i64 {
        i64::from(self.0) * 1_000_000_000
    }
}

impl FromStr for Interval {
    type Err = String;
    /// `30s`, `1m`, `5m`, `1h`, `4h`, `1d`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not an interval like 1s, 5m, 1h or 1d");
        let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let (n, unit) = s.split_at(split);
        let n: u32 = n.parse().map_err(|_| bad())?;
        let mult = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(bad()),
        };
        Self::from_secs(n.checked_mul(mult).ok_or_else(bad)?)
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        if s.is_multiple_of(86_400) {
            write!(f, "{}d", s / 86_400)
        } else if s.is_multiple_of(3600) {
            write!(f, "{}h", s / 3600)
        } else if s.is_multiple_of(60) {
            write!(f, "{}m", s / 60)
        } else {
            write!(f, "{s}s")
        }
    }
}

/// What a symbol's stored data covers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Coverage {
    pub symbol: String,
    pub ticks: u64,
    pub first_ts: Option<Nanos>,
    pub last_ts: Option<Nanos>,
    /// Imported bar intervals with their counts.
    pub bars: Vec<BarCoverage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BarCoverage {
    pub interval: String,
    pub count: u64,
    pub first_ts: Nanos,
    pub last_ts: Nanos,
}

/// `[start, end)` of an optional range as bounds a query can use: open
/// ends become the extremes of `i64`.
pub fn ts_bounds(start: Option<Nanos>, end: Option<Nanos>) -> (Nanos, Nanos) {
    (start.unwrap_or(i64::MIN), end.unwrap_or(i64::MAX))
}

/// Adds imported bars of one `(symbol, interval_s)` to the coverage list
/// `out`, under the symbol's entry (created without ticks when absent).
/// Every tick store reports coverage through this, so they agree.
pub fn add_bar_coverage(
    out: &mut Vec<Coverage>,
    symbol: String,
    interval_s: u32,
    count: u64,
    first_ts: Nanos,
    last_ts: Nanos,
) {
    let interval = Interval::from_secs(interval_s)
        .map(|i| i.to_string())
        .unwrap_or_else(|_| format!("{interval_s}s"));
    let bar = BarCoverage {
        interval,
        count,
        first_ts,
        last_ts,
    };
    match out.iter_mut().find(|c| c.symbol == symbol) {
        Some(c) => c.bars.push(bar),
        None => out.push(Coverage {
            symbol,
            ticks: 0,
            first_ts: None,
            last_ts: None,
            bars: vec![bar],
        }),
    }
}

/// File formats the importer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImportFormat {
    /// Ticks, one per row, columns named as [`Tick`] fields (or mapped).
    Csv,
    /// CTP depth-market-data rows (TradingDay, UpdateTime, InstrumentID, ...).
    Ctp,
    /// Bars: symbol, ts, open, high, low, close, volume[, turnover, open_interest].
    BarsCsv,
    /// Ticks in Parquet, columns as for `csv`.
    Parquet,
}

/// What happens to bad rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum ImportMode {
    /// Any bad row rejects the file: nothing is stored.
    #[default]
    Strict,
    /// Good rows are stored, every bad row is reported.
    Skip,
}

/// An import to run: a file the server holds (an upload, or a path given
/// to the CLI on the box; never a path from an API caller) and how to read
/// it.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportRequest {
    pub path: String,
    pub options: ImportOptions,
}

impl std::ops::Deref for ImportRequest {
    type Target = ImportOptions;
    fn deref(&self) -> &ImportOptions {
        &self.options
    }
}

impl std::ops::DerefMut for ImportRequest {
    fn deref_mut(&mut self) -> &mut ImportOptions {
        &mut self.options
    }
}

/// How to read a file of market data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportOptions {
    pub format: ImportFormat,
    #[serde(default)]
    pub mode: ImportMode,
    /// Time zone of timestamps without an offset (`UTC` by default; CTP
    /// files are always `Asia/Shanghai`).
    #[serde(default)]
    pub timezone: Option<String>,
    /// Field name -> column name in the file.
    #[serde(default)]
    pub mapping: std::collections::BTreeMap<String, String>,
    /// Symbol for files without a symbol column.
    #[serde(default)]
    #[schema(pattern = r"^[A-Za-z0-9._/-]{1,32}$")]
    pub symbol: Option<String>,
    /// Bar interval for `bars_csv` files (e.g. `1m`).
    #[serde(default)]
    #[schema(pattern = r"^[0-9]+[smhd]$")]
    pub interval: Option<String>,
    /// Unit of integer timestamps: `ns` (default), `us`, `ms` or `s`.
    #[serde(default)]
    #[schema(pattern = "^(ns|us|ms|s)$")]
    pub ts_unit: Option<String>,
}

impl ImportOptions {
    /// Checks what can be checked without the file; the error names the field.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if let Some(s) = &self.symbol {
            check_symbol(s).map_err(|e| ("symbol", e))?;
        }
        match (&self.interval, self.format) {
            (Some(i), _) => {
                i.parse::<Interval>().map_err(|e| ("interval", e))?;
            }
            (None, ImportFormat::BarsCsv) => {
                return Err((
                    "interval",
                    "bars_csv imports need an interval, e.g. 1m".into(),
                ));
            }
            (None, _) => {}
        }
        if let Some(u) = &self.ts_unit
            && !["ns", "us", "ms", "s"].contains(&u.as_str())
        {
            return Err(("ts_unit", format!("{u:?} is not ns, us, ms or s")));
        }
        Ok(())
    }

    /// Nanoseconds per unit of integer timestamps (`ts_unit`, default ns).
    pub fn ts_multiplier(&self) -> i64 {
        match self.ts_unit.as_deref() {
            Some("us") => 1_000,
            Some("ms") => 1_000_000,
            Some("s") => 1_000_000_000,
            _ => 1,
        }
    }
}

/// One rejected row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Rejection {
    /// Line in the file (1 = header) or, for Parquet, row number (1-based).
    pub line: u64,
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema, Default)]
pub struct ImportReport {
    pub rows_read: u64,
    pub rows_stored: u64,
    /// Rows already stored before (re-import).
    pub rows_duplicate: u64,
    pub rows_rejected: u64,
    pub rejections: Vec<Rejection>,
    pub symbols: Vec<String>,
}

/// Result of appending ticks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema, Default)]
pub struct AppendReport {
    pub stored: u64,
    pub duplicates: u64,
    /// The ticks this call stored, numbered, in batch order (the others
    /// were stored already): what may be published as new. The batch
    /// itself, with the others dropped, not a copy.
    #[serde(skip)]
    #[schema(ignore)]
    pub new: TickColumns,
}

impl AppendReport {
    /// The report of a batch of `n` ticks of which `stored` (the batch
    /// kept to those) were new.
    pub fn of(n: usize, stored: TickColumns) -> Self {
        Self {
            stored: stored.len() as u64,
            duplicates: (n - stored.len()) as u64,
            new: stored,
        }
    }
}

/// A range of ticks, keyset-paginated by `(ts, seq)`.
#[derive(Debug, Clone, PartialEq)]
pub struct TickQuery {
    pub symbol: String,
    pub start: Option<Nanos>,
    pub end: Option<Nanos>,
    /// Only ticks after this `(ts, seq)`.
    pub after: Option<(Nanos, i32)>,
    pub limit: u32,
}

/// A range of bars.
#[derive(Debug, Clone, PartialEq)]
pub struct BarQuery {
    pub symbol: String,
    pub interval: Interval,
    pub start: Option<Nanos>,
    pub end: Option<Nanos>,
    /// Buckets on the wall clock of this zone instead of UTC (the local
    /// bucket rule below).
    pub timezone: Option<String>,
}

// The local bucket rule, which every tick store implements in its own SQL
// and the conformance suite checks against a reference across daylight
// saving: with a zone, a tick at `u` (its time truncated to microseconds)
// with local wall-clock time `l` falls in the bucket starting at local time
// `b = l - l mod interval` (intervals divide a day, so buckets align to
// every local midnight, whatever the offset that day). The bar's label is
// the instant `c` whose local time is `b` (for a local time that occurs
// twice, the later instant; for one skipped by a clock change, the offset
// in force before it, so the transition itself), unless `c` is after the
// tick, which happens only in the first of two repeated hours: then the
// earlier instant, `u - (l - b)`. So daily bars start at local midnight
// all year, a bar never starts after its first tick, and the hour repeated
// when clocks go back gives two hourly bars, not one.

/// What to export.
#[derive(Debug, Clone, PartialEq)]
pub enum ExportQuery {
    Ticks {
        symbol: String,
        start: Option<Nanos>,
        end: Option<Nanos>,
    },
    Bars(BarQuery),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    Csv,
    Parquet,
}

/// The significant digits of a decimal number's text (no sign, point,
/// exponent, leading or trailing zeros).
fn significant_digits(text: &str) -> String {
    let mantissa = text.trim().split(['e', 'E']).next().unwrap_or("");
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    digits
        .trim_start_matches('0')
        .trim_end_matches('0')
        .to_string()
}

/// Whether decimal text survives being stored as a binary64: parsing it
/// and printing the double back (shortest round-trip form) gives the same
/// number. True for every decimal of up to 15 significant digits and for
/// every double printed in shortest form (as exchange feeds do).
pub fn fits_f64(text: &str) -> bool {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => significant_digits(text) == significant_digits(&format!("{v:e}")),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_builder_completes_a_bar_when_the_next_bucket_opens() {
        let mut b = BarBuilder::new(Interval::from_secs(60).unwrap());
        let s = 1_000_000_000i64;
        assert_eq!(b.push(60 * s, 10.0, 1.0), None);
        assert_eq!(b.push(70 * s, 12.0, 2.0), None);
        assert_eq!(b.push(80 * s, 9.0, 1.0), None);
        assert_eq!(b.push(30 * s, 99.0, 1.0), None, "a late trade is ignored");
        let done = b.push(125 * s, 11.0, 5.0).unwrap();
        assert_eq!(
            (
                done.ts,
                done.open,
                done.high,
                done.low,
                done.close,
                done.volume
            ),
            (60 * s, 10.0, 12.0, 9.0, 9.0, 4.0)
        );
        let now = b.current().unwrap();
        assert_eq!((now.ts, now.open, now.volume), (120 * s, 11.0, 5.0));
    }

    #[test]
    fn intervals_parse_and_align() {
        assert_eq!("1m".parse::<Interval>().unwrap().secs(), 60);
        assert_eq!("4h".parse::<Interval>().unwrap().secs(), 14_400);
        assert_eq!("1d".parse::<Interval>().unwrap().to_string(), "1d");
        assert_eq!("90s".parse::<Interval>().unwrap().to_string(), "90s");
        assert!("7m".parse::<Interval>().is_err(), "does not divide a day");
        assert!("2d".parse::<Interval>().is_err());
        assert!("0s".parse::<Interval>().is_err());
        assert!("m".parse::<Interval>().is_err());
        assert!("5x".parse::<Interval>().is_err());
    }

    #[test]
    fn fifteen_significant_digits_round_trip() {
        for s in [
            "3912.5",
            "0.000123456789012",
            "123456789012345",
            "1e-7",
            "-42.10",
        ] {
            assert!(fits_f64(s), "{s}");
            let f: f64 = s.parse().unwrap();
            let back: f64 = format!("{f}").parse().unwrap();
            assert_eq!(f, back);
        }
        assert!(!fits_f64("3912.50000000000001"));
        assert!(
            !fits_f64("12345678901234567"),
            "above 2^53, not representable"
        );
        assert!(fits_f64("1234567890123456"), "below 2^53, exact");
        assert!(
            fits_f64("1.7976931348623157e308"),
            "a double in shortest form"
        );
        assert!(fits_f64("0.30000000000000004"));
        assert!(!fits_f64("0.30000000000000001"));
        assert!(!fits_f64("abc"));
        // Every 15-digit decimal survives text -> f64 -> shortest text.
        for i in 0..1000u64 {
            let s = format!(
                "{}.{:06}",
                123_456_789 + i * 7919,
                (i * 104_729) % 1_000_000
            );
            let f: f64 = s.parse().unwrap();
            let shown = format!("{f}");
            let trimmed = s.trim_end_matches('0').trim_end_matches('.');
            assert_eq!(shown, trimmed, "{s}");
        }
    }

    #[test]
    fn instruments_validate() {
        let mut i = Instrument::with_defaults("rb2410");
        assert!(i.validate().is_ok());
        i.margin_ratio = Decimal::new(15, 1);
        assert_eq!(i.validate().unwrap_err().0, "margin_ratio");
        let mut i = Instrument::with_defaults("bad symbol");
        assert_eq!(i.validate().unwrap_err().0, "symbol");
        i.symbol = "IF2409".into();
        i.sessions.push(Session {
            start: "21:00".into(),
            end: "25:00".into(),
        });
        assert_eq!(i.validate().unwrap_err().0, "sessions");
    }
}
