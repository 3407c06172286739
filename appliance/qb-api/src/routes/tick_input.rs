//! The body of `POST /api/v1/market/ticks`, read as it arrives: the
//! stream bridged to a blocking thread and parsed there by
//! [`qb_core::tick_parse`] (JSON array, NDJSON or CSV straight into
//! [`TickColumns`]), with the row cap (`market.max_ingest_rows`) and the
//! byte cap (`limits.upload_bytes`) enforced while reading. A request
//! costs its ticks in columns (28 bytes a tick plus 8 for each optional
//! field sent) and a 64 KiB buffer, never a copy of its body, a row
//! struct per tick or a tree of JSON values; one over a cap is refused at
//! the row or byte that passes it, without reading the rest.

use std::io::BufReader;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode};
use futures_util::TryStreamExt;
use qb_core::market::TickColumns;
pub use qb_core::tick_parse::TickIn;
use qb_core::tick_parse::{ParseFailure, RowAt, TickFormat, parse_ticks};

use crate::problem::{ApiError, ApiResult, FieldError};

/// How the body is written, from its `Content-Type` (JSON when absent);
/// 415 for anything else.
pub fn format_of(content_type: Option<&HeaderValue>) -> ApiResult<TickFormat> {
    let ct = content_type
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_ascii_lowercase();
    if ct.starts_with("application/x-ndjson") || ct.starts_with("application/jsonl") {
        Ok(TickFormat::Ndjson)
    } else if ct.starts_with("text/csv") {
        Ok(TickFormat::Csv)
    } else if ct.starts_with("application/json") {
        Ok(TickFormat::JsonArray)
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            format!("{ct} is not application/json, application/x-ndjson or text/csv"),
        ))
    }
}

/// The caps a body is read under.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    pub rows: usize,
    pub bytes: usize,
}

/// Reads and parses `body` on a blocking thread as it arrives.
pub async fn read(body: Body, format: TickFormat, caps: Caps) -> ApiResult<TickColumns> {
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
        let out = TickColumns::with_capacity(room);
        parse_ticks(reader, format, caps.rows, out).map_err(|e| match e {
            ParseFailure::Row(at, msg) => row_error(at, msg),
            ParseFailure::Malformed(msg) => {
                ApiError::new(StatusCode::BAD_REQUEST, "malformed-json", msg)
            }
            // Refused before the rest of the body was read: the body
            // deadline layer closes the connection after the answer.
            ParseFailure::TooMany => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                format!(
                    "more than {} ticks in one request (market.max_ingest_rows); nothing was stored",
                    caps.rows
                ),
            ),
            ParseFailure::Io(e) if e.kind() == std::io::ErrorKind::FileTooLarge => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                format!(
                    "the body is larger than {} bytes (limits.upload_bytes); nothing was stored",
                    caps.bytes
                ),
            ),
            ParseFailure::Io(e) => ApiError::bad_request(format!("cannot read the body: {e}")),
        })
    })
    .await
    .map_err(ApiError::internal)?
}

fn row_error(at: RowAt, msg: String) -> ApiError {
    let (field, detail) = match at {
        RowAt::Index(i) => (format!("[{i}]"), format!("tick at index {i}: {msg}")),
        RowAt::Line(n) => (format!("line {n}"), format!("line {n}: {msg}")),
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
