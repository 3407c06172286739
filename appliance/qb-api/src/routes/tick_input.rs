//! The body of `POST /api/v1/market/ticks`, parsed as it arrives: a JSON
//! array, NDJSON or CSV read through a small buffer straight into ticks,
//! with the row cap (`market.max_ingest_rows`) and the byte cap
//! (`limits.upload_bytes`) enforced while reading. A request costs its
//! ticks (about 170 bytes each) and a 64 KiB buffer, never a copy of its
//! body or a tree of JSON values; one over a cap is refused at the row or
//! byte that passes it, without reading the rest.

use std::io::{BufRead, BufReader, Read};

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode};
use chrono::DateTime;
use futures_util::TryStreamExt;
use qb_core::market::{Tick, check_symbol, check_ts, fits_f64};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use utoipa::ToSchema;

use crate::problem::{ApiError, ApiResult, FieldError};

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

impl TickIn {
    fn into_tick(self) -> Result<Tick, String> {
        check_symbol(&self.symbol)?;
        let ts = match self.ts {
            TimeIn::Nanos(n) => n,
            TimeIn::Text(s) => DateTime::parse_from_rfc3339(&s)
                .ok()
                .and_then(|t| t.timestamp_nanos_opt())
                .ok_or_else(|| format!("ts: {s:?} is not an RFC 3339 time"))?,
        };
        check_ts(ts).map_err(|e| format!("ts: {e}"))?;
        if !self.price.is_finite() {
            return Err("price: not finite".into());
        }
        if !self.size.is_finite() || self.size < 0.0 {
            return Err("size: must be a finite number >= 0".into());
        }
        for (name, v) in [
            ("bid", self.bid),
            ("bid_size", self.bid_size),
            ("ask", self.ask),
            ("ask_size", self.ask_size),
            ("volume", self.volume),
            ("turnover", self.turnover),
            ("open_interest", self.open_interest),
        ] {
            if v.is_some_and(|v| !v.is_finite()) {
                return Err(format!("{name}: not finite"));
            }
        }
        Ok(Tick {
            symbol: self.symbol,
            ts,
            seq: 0,
            price: self.price,
            size: self.size,
            volume: self.volume,
            turnover: self.turnover,
            open_interest: self.open_interest,
            bid: self.bid,
            bid_size: self.bid_size,
            ask: self.ask,
            ask_size: self.ask_size,
        })
    }
}

/// How the body is written.
#[derive(Debug, Clone, Copy)]
pub enum Format {
    JsonArray,
    Ndjson,
    Csv,
}

impl Format {
    /// From the `Content-Type` (JSON when absent); 415 for anything else.
    pub fn of(content_type: Option<&HeaderValue>) -> ApiResult<Format> {
        let ct = content_type
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json")
            .to_ascii_lowercase();
        if ct.starts_with("application/x-ndjson") || ct.starts_with("application/jsonl") {
            Ok(Format::Ndjson)
        } else if ct.starts_with("text/csv") {
            Ok(Format::Csv)
        } else if ct.starts_with("application/json") {
            Ok(Format::JsonArray)
        } else {
            Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                format!("{ct} is not application/json, application/x-ndjson or text/csv"),
            ))
        }
    }
}

/// The caps a body is read under.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    pub rows: usize,
    pub bytes: usize,
}

/// Reads and parses `body` on a blocking thread as it arrives.
pub async fn read(body: Body, format: Format, caps: Caps) -> ApiResult<Vec<Tick>> {
    use http_body::Body as _;
    // Room for as many ticks as the body could hold (a row is at least 16
    // bytes), reserved once: the vector never grows by copying itself, and
    // pages it does not fill are never touched (not resident).
    let room = body
        .size_hint()
        .upper()
        .map_or(caps.rows, |bytes| (bytes as usize / 16).min(caps.rows));
    // The byte cap as http-body-util's limit; passing it reads as an I/O
    // error of kind `FileTooLarge`.
    let stream = Body::new(http_body_util::Limited::new(body, caps.bytes))
        .into_data_stream()
        .map_err(|e| {
            let e = e.into_inner();
            if e.is::<http_body_util::LengthLimitError>() {
                std::io::Error::new(std::io::ErrorKind::FileTooLarge, e)
            } else {
                std::io::Error::other(e)
            }
        });
    let bridge = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream));
    tokio::task::spawn_blocking(move || {
        let reader = BufReader::with_capacity(64 << 10, bridge);
        let out = Vec::with_capacity(room);
        let parsed = match format {
            Format::JsonArray => json_array(reader, caps.rows, out),
            Format::Ndjson => ndjson(reader, caps.rows, out),
            Format::Csv => csv_rows(reader, caps.rows, out),
        };
        parsed.map_err(|e| match e {
            Failure::Row(e) => e,
            // Refused before the rest of the body was read: the body
            // deadline layer closes the connection after the answer.
            Failure::TooMany => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                format!(
                    "more than {} ticks in one request (market.max_ingest_rows); nothing was stored",
                    caps.rows
                ),
            ),
            Failure::Io(e) if e.kind() == std::io::ErrorKind::FileTooLarge => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                format!(
                    "the body is larger than {} bytes (limits.upload_bytes); nothing was stored",
                    caps.bytes
                ),
            ),
            Failure::Io(e) => ApiError::bad_request(format!("cannot read the body: {e}")),
        })
    })
    .await
    .map_err(ApiError::internal)?
}

enum Failure {
    /// A bad row: 422 naming it.
    Row(ApiError),
    TooMany,
    Io(std::io::Error),
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Io(e)
    }
}

fn row_error(kind: &str, at: usize, msg: String) -> ApiError {
    let (field, detail) = match kind {
        "index" => (format!("[{at}]"), format!("tick at index {at}: {msg}")),
        _ => (format!("line {at}"), format!("line {at}: {msg}")),
    };
    let mut e = ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
        format!("{detail}; nothing was stored"),
    );
    e.errors.push(FieldError {
        field,
        message: msg,
    });
    e
}

/// A JSON array, element by element: each is read into a [`TickIn`] and
/// checked before the next is read.
fn json_array(reader: impl Read, max: usize, mut out: Vec<Tick>) -> Result<Vec<Tick>, Failure> {
    struct Ticks<'a> {
        max: usize,
        out: &'a mut Vec<Tick>,
        failure: &'a mut Option<Failure>,
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
                    *self.failure = Some(Failure::TooMany);
                    return Err(de::Error::custom("too many ticks"));
                }
                match item.into_tick() {
                    Ok(t) => self.out.push(t),
                    Err(msg) => {
                        *self.failure = Some(Failure::Row(row_error("index", i, msg.clone())));
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
        (Err(e), None, _) if e.is_io() => Err(Failure::Io(e.into())),
        (Err(e), None, Some(i)) => Err(Failure::Row(row_error("index", i, e.to_string()))),
        (Err(e), None, None) => Err(Failure::Row(ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed-json",
            format!("body is not a JSON array of ticks: {e}"),
        ))),
    }
}

fn ndjson(mut reader: impl BufRead, max: usize, mut out: Vec<Tick>) -> Result<Vec<Tick>, Failure> {
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
            return Err(Failure::TooMany);
        }
        let tick = serde_json::from_str::<TickIn>(&line)
            .map_err(|e| e.to_string())
            .and_then(TickIn::into_tick)
            .map_err(|e| Failure::Row(row_error("line", n, e)))?;
        out.push(tick);
    }
    Ok(out)
}

fn csv_rows(reader: impl Read, max: usize, mut out: Vec<Tick>) -> Result<Vec<Tick>, Failure> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(reader);
    let csv_failure = |line: usize, e: csv::Error| {
        if !matches!(e.kind(), csv::ErrorKind::Io(_)) {
            return Failure::Row(row_error("line", line, e.to_string()));
        }
        match e.into_kind() {
            csv::ErrorKind::Io(e) => Failure::Io(e),
            other => Failure::Row(row_error("line", line, format!("{other:?}"))),
        }
    };
    let headers = reader.headers().map_err(|e| csv_failure(1, e))?.clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    for required in ["symbol", "ts", "price", "size"] {
        if col(required).is_none() {
            return Err(Failure::Row(row_error(
                "line",
                1,
                format!("missing column {required:?}"),
            )));
        }
    }
    let mut record = csv::StringRecord::new();
    for line in 2.. {
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(csv_failure(line, e)),
        }
        if out.len() == max {
            return Err(Failure::TooMany);
        }
        let get = |name: &str| {
            col(name)
                .and_then(|c| record.get(c))
                .filter(|s| !s.is_empty())
        };
        let num = |name: &str| -> Result<Option<f64>, String> {
            match get(name) {
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
        let tick = (|| -> Result<Tick, String> {
            let ts_text = get("ts").ok_or("ts: missing")?;
            let ts = match ts_text.parse::<i64>() {
                Ok(n) => TimeIn::Nanos(n),
                Err(_) => TimeIn::Text(ts_text.to_string()),
            };
            TickIn {
                symbol: get("symbol").ok_or("symbol: missing")?.to_string(),
                ts,
                price: num("price")?.ok_or("price: missing")?,
                size: num("size")?.ok_or("size: missing")?,
                bid: num("bid")?,
                bid_size: num("bid_size")?,
                ask: num("ask")?,
                ask_size: num("ask_size")?,
                volume: num("volume")?,
                turnover: num("turnover")?,
                open_interest: num("open_interest")?,
            }
            .into_tick()
        })()
        .map_err(|e| Failure::Row(row_error("line", line, e)))?;
        out.push(tick);
    }
    Ok(out)
}
