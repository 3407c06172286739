//! Tick bodies parsed as they are read: a JSON array, NDJSON or CSV,
//! straight into [`TickColumns`], each row checked before the next is
//! read and the row cap enforced while parsing. Pure `std::io::Read` in,
//! columns or the failure (with the row or line it is at) out: the ingest
//! route reads its body through it, and the fuzz targets drive it.

use std::io::{BufRead, Read};

use chrono::DateTime;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use utoipa::ToSchema;

use crate::market::{OPTIONAL_FIELDS, TickColumns, check_symbol, check_ts, fits_f64};

/// A time in a tick: RFC 3339 text or integer nanoseconds, from 1900-01-01
/// to 2200-01-01 UTC.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum TimeIn {
    Nanos(i64),
    Text(String),
}

/// One tick as sent to the ingest endpoint.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TickIn {
    #[schema(pattern = r"^[A-Za-z0-9._/-]{1,32}$")]
    pub symbol: String,
    pub ts: TimeIn,
    pub price: f64,
    #[schema(minimum = 0)]
    pub size: f64,
    pub bid: Option<f64>,
    pub bid_size: Option<f64>,
    pub ask: Option<f64>,
    pub ask_size: Option<f64>,
    /// Cumulative volume as the source reports it.
    pub volume: Option<f64>,
    /// Amount traded with this tick.
    pub turnover: Option<f64>,
    pub open_interest: Option<f64>,
}

/// A tick's time as read: integer nanoseconds or RFC 3339 text.
enum TimeRef<'a> {
    Nanos(i64),
    Text(&'a str),
}

impl TickIn {
    fn push_into(self, out: &mut TickColumns) -> Result<(), String> {
        let ts = match &self.ts {
            TimeIn::Nanos(n) => TimeRef::Nanos(*n),
            TimeIn::Text(s) => TimeRef::Text(s),
        };
        push_checked(
            out,
            &self.symbol,
            ts,
            self.price,
            self.size,
            [
                self.volume,
                self.turnover,
                self.open_interest,
                self.bid,
                self.bid_size,
                self.ask,
                self.ask_size,
            ],
        )
    }
}

/// Checks one tick and appends it to `out`; the optional fields in
/// [`OPTIONAL_FIELDS`] order.
fn push_checked(
    out: &mut TickColumns,
    symbol: &str,
    ts: TimeRef<'_>,
    price: f64,
    size: f64,
    optional: [Option<f64>; 7],
) -> Result<(), String> {
    check_symbol(symbol)?;
    let ts = match ts {
        TimeRef::Nanos(n) => n,
        TimeRef::Text(s) => DateTime::parse_from_rfc3339(s)
            .ok()
            .and_then(|t| t.timestamp_nanos_opt())
            .ok_or_else(|| format!("ts: {s:?} is not an RFC 3339 time"))?,
    };
    check_ts(ts).map_err(|e| format!("ts: {e}"))?;
    if !price.is_finite() {
        return Err("price: not finite".into());
    }
    if !size.is_finite() || size < 0.0 {
        return Err("size: must be a finite number >= 0".into());
    }
    for (name, v) in OPTIONAL_FIELDS.iter().zip(optional) {
        if v.is_some_and(|v| !v.is_finite()) {
            return Err(format!("{name}: not finite"));
        }
    }
    out.push(symbol, ts, price, size, optional);
    Ok(())
}

/// How a body of ticks is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickFormat {
    JsonArray,
    Ndjson,
    Csv,
}

/// Where a bad row is: a JSON array's element or a line of NDJSON or CSV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowAt {
    Index(usize),
    Line(usize),
}

/// Why a body was refused.
#[derive(Debug)]
pub enum ParseFailure {
    /// A bad row, and what is wrong with it.
    Row(RowAt, String),
    /// Not a JSON array at all.
    Malformed(String),
    /// More rows than the cap.
    TooMany,
    /// The reader failed (a byte cap passed, a broken stream).
    Io(std::io::Error),
}

impl From<std::io::Error> for ParseFailure {
    fn from(e: std::io::Error) -> Self {
        ParseFailure::Io(e)
    }
}

/// Parses `reader` as `format` into `out`, at most `max_rows` ticks.
pub fn parse_ticks(
    reader: impl BufRead,
    format: TickFormat,
    max_rows: usize,
    out: TickColumns,
) -> Result<TickColumns, ParseFailure> {
    match format {
        TickFormat::JsonArray => json_array(reader, max_rows, out),
        TickFormat::Ndjson => ndjson(reader, max_rows, out),
        TickFormat::Csv => csv_rows(reader, max_rows, out),
    }
}

/// A JSON array, element by element: each is read into a [`TickIn`] and
/// checked before the next is read.
fn json_array(
    reader: impl Read,
    max: usize,
    mut out: TickColumns,
) -> Result<TickColumns, ParseFailure> {
    struct Ticks<'a> {
        max: usize,
        out: &'a mut TickColumns,
        failure: &'a mut Option<ParseFailure>,
        /// The element a parse error stopped at.
        at: &'a mut Option<usize>,
    }
    impl<'de> DeserializeSeed<'de> for Ticks<'_> {
        type Value = ();
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_seq(self)
        }
    }
    impl<'de> Visitor<'de> for Ticks<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON array of ticks")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            loop {
                let i = self.out.len();
                let item = match seq.next_element::<TickIn>() {
                    Ok(Some(item)) => item,
                    Ok(None) => return Ok(()),
                    Err(e) => {
                        // A bad element, or the body failing under it (its
                        // cap, a broken stream): told apart below.
                        *self.at = Some(i);
                        return Err(e);
                    }
                };
                if i == self.max {
                    *self.failure = Some(ParseFailure::TooMany);
                    return Err(de::Error::custom("too many ticks"));
                }
                match item.push_into(self.out) {
                    Ok(()) => {}
                    Err(msg) => {
                        *self.failure = Some(ParseFailure::Row(RowAt::Index(i), msg.clone()));
                        return Err(de::Error::custom(msg));
                    }
                }
            }
        }
    }
    let (mut failure, mut at) = (None, None);
    let mut d = serde_json::Deserializer::from_reader(reader);
    let parsed = Ticks {
        max,
        out: &mut out,
        failure: &mut failure,
        at: &mut at,
    }
    .deserialize(&mut d)
    .and_then(|()| d.end());
    match (parsed, failure, at) {
        (Ok(()), ..) => Ok(out),
        (Err(_), Some(f), _) => Err(f),
        (Err(e), None, _) if e.is_io() => Err(ParseFailure::Io(e.into())),
        (Err(e), None, Some(i)) => Err(ParseFailure::Row(RowAt::Index(i), e.to_string())),
        (Err(e), None, None) => Err(ParseFailure::Malformed(format!(
            "body is not a JSON array of ticks: {e}"
        ))),
    }
}

fn ndjson(
    mut reader: impl BufRead,
    max: usize,
    mut out: TickColumns,
) -> Result<TickColumns, ParseFailure> {
    let mut line = String::new();
    for n in 1.. {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        if line.trim().is_empty() {
            continue;
        }
        if out.len() == max {
            return Err(ParseFailure::TooMany);
        }
        serde_json::from_str::<TickIn>(&line)
            .map_err(|e| e.to_string())
            .and_then(|t| t.push_into(&mut out))
            .map_err(|e| ParseFailure::Row(RowAt::Line(n), e))?;
    }
    Ok(out)
}

fn csv_rows(
    reader: impl Read,
    max: usize,
    mut out: TickColumns,
) -> Result<TickColumns, ParseFailure> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(reader);
    let csv_failure = |line: usize, e: csv::Error| {
        if !matches!(e.kind(), csv::ErrorKind::Io(_)) {
            return ParseFailure::Row(RowAt::Line(line), e.to_string());
        }
        match e.into_kind() {
            csv::ErrorKind::Io(e) => ParseFailure::Io(e),
            other => ParseFailure::Row(RowAt::Line(line), format!("{other:?}")),
        }
    };
    let headers = reader.headers().map_err(|e| csv_failure(1, e))?.clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let mut required = [0; 4];
    for (at, name) in required.iter_mut().zip(["symbol", "ts", "price", "size"]) {
        *at = col(name)
            .ok_or_else(|| ParseFailure::Row(RowAt::Line(1), format!("missing column {name:?}")))?;
    }
    let [c_symbol, c_ts, c_price, c_size] = required;
    let c_optional = OPTIONAL_FIELDS.map(col);
    let mut record = csv::StringRecord::new();
    for line in 2.. {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(csv_failure(line, e)),
        }
        if out.len() == max {
            return Err(ParseFailure::TooMany);
        }
        let get = |c: usize| record.get(c).filter(|s| !s.is_empty());
        let num = |name: &str, c: usize| -> Result<Option<f64>, String> {
            match get(c) {
                None => Ok(None),
                Some(s) if !fits_f64(s) => Err(format!(
                    "{name}: {s:?} is not a number a double holds exactly"
                )),
                Some(s) => s
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("{name}: {s:?} is not a number")),
            }
        };
        (|| -> Result<(), String> {
            let ts_text = get(c_ts).ok_or("ts: missing")?;
            let ts = match ts_text.parse::<i64>() {
                Ok(n) => TimeRef::Nanos(n),
                Err(_) => TimeRef::Text(ts_text),
            };
            let mut optional = [None; 7];
            for ((value, name), c) in optional.iter_mut().zip(OPTIONAL_FIELDS).zip(c_optional) {
                if let Some(c) = c {
                    *value = num(name, c)?;
                }
            }
            push_checked(
                &mut out,
                get(c_symbol).ok_or("symbol: missing")?,
                ts,
                num("price", c_price)?.ok_or("price: missing")?,
                num("size", c_size)?.ok_or("size: missing")?,
                optional,
            )
        })()
        .map_err(|e| ParseFailure::Row(RowAt::Line(line), e))?;
    }
    Ok(out)
}
