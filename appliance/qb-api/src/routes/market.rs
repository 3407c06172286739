//! `/api/v1/market/*`: live ingest, file imports, symbols, ticks, bars and
//! exports.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use qb_core::market::*;
use qb_core::model::{Job, JobSpec, Role};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::tick_input::{self, TickIn};
use crate::auth::Principal;
use crate::problem::{ApiError, ApiQuery, ApiResult, Problem};
use crate::state::AppState;

pub fn router(state: &AppState) -> OpenApiRouter<AppState> {
    let uploads = OpenApiRouter::new()
        .routes(routes!(create_import))
        .routes(routes!(ingest_ticks, list_ticks))
        .layer(DefaultBodyLimit::max(state.config.limits.upload_bytes));
    OpenApiRouter::new()
        .routes(routes!(symbols))
        .routes(routes!(bars))
        .routes(routes!(export))
        .merge(uploads)
}

/// A time in a query: RFC 3339 or integer nanoseconds since the epoch.
pub fn parse_time(field: &str, s: &str) -> ApiResult<Nanos> {
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .ok_or_else(|| {
            ApiError::invalid(
                field,
                format!("{s:?} is not an RFC 3339 time or integer nanoseconds"),
            )
        })
}

fn opt_time(field: &str, s: &Option<String>) -> ApiResult<Option<Nanos>> {
    s.as_deref().map(|v| parse_time(field, v)).transpose()
}

fn rfc3339(ns: Nanos) -> String {
    DateTime::<Utc>::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

// ---------------------------------------------------------------- ingest

#[derive(Serialize, ToSchema)]
pub struct IngestResult {
    /// Ticks stored now.
    pub stored: u64,
    /// Ticks already stored by an earlier request (a retry).
    pub duplicates: u64,
}

/// Ingest live ticks: a JSON array, NDJSON (`application/x-ndjson`) or CSV
/// (`text/csv`). Answers after the ticks are committed; a bad row rejects
/// the whole request, naming its index or line, and stores nothing.
/// Needs the feed permission (the ticks drive paper fills); history is
/// imported through `/api/v1/market/imports` by any trader.
#[utoipa::path(post, path = "/api/v1/market/ticks", tag = "market", security(("bearer" = [])),
    request_body(content = Vec<TickIn>, description = "JSON array; NDJSON and CSV with the same fields are accepted too"),
    responses((status = 200, body = IngestResult), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn ingest_ticks(
    State(state): State<AppState>,
    p: Principal,
    headers: axum::http::HeaderMap,
    body: Body,
) -> ApiResult<Json<IngestResult>> {
    // Live ticks drive the paper broker's fills: trusted input.
    p.require_feed()?;
    let format = tick_input::format_of(headers.get(header::CONTENT_TYPE))?;
    let caps = tick_input::Caps {
        rows: state.config.market.max_ingest_rows,
        bytes: state.config.limits.upload_bytes,
    };
    let ticks = tick_input::read(body, format, caps).await?;
    let report =
        qb_core::seams::ingest_ticks(state.ticks.as_ref(), state.pubsub.as_ref(), ticks).await?;
    state.metrics.ticks_ingested.inc_by(report.stored);
    Ok(Json(IngestResult {
        stored: report.stored,
        duplicates: report.duplicates,
    }))
}

// ---------------------------------------------------------------- imports

/// Multipart fields of an upload.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ImportUpload {
    /// The file (up to the upload limit, 50 MB by default).
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    format: ImportFormat,
    mode: Option<ImportMode>,
    timezone: Option<String>,
    /// JSON object: field -> column.
    mapping: Option<String>,
    symbol: Option<String>,
    interval: Option<String>,
    ts_unit: Option<String>,
}

fn sanitize(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("upload");
    let clean: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    if clean.is_empty() {
        "upload".into()
    } else {
        clean
    }
}

/// An upload received: how to read it, the name it was sent as, and the
/// blob holding it (`uploads/<uuid>-<name>`).
struct Upload {
    options: ImportOptions,
    original: String,
    blob: String,
}

/// Where an upload is written while it arrives: its blob's own file on one
/// box, else a scratch file stored as the blob once complete.
fn upload_target(state: &AppState, key: &str) -> std::path::PathBuf {
    state.blobs.local_path(key).unwrap_or_else(|| {
        state
            .config
            .data_dir
            .join("scratch")
            .join(key.replace('/', "-"))
    })
}

/// An upload's file on disk, removed when the request ends without the
/// upload being accepted (a bad field, a second file, a broken stream, a
/// failed write): nothing is left behind by a refused upload.
struct Received(Option<std::path::PathBuf>);

impl Received {
    /// The upload is accepted: its file stays.
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for Received {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

async fn receive_upload(state: &AppState, mut mp: Multipart) -> ApiResult<Upload> {
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    let mut file: Option<(std::path::PathBuf, String, String)> = None;
    let mut received = Received(None);
    let bad = |e: axum::extract::multipart::MultipartError| {
        ApiError::new(
            e.status(),
            "bad-upload",
            format!("cannot read the upload: {}", e.body_text()),
        )
    };
    while let Some(mut field) = mp.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or_default().to_string();
        if name == "file" {
            if file.is_some() {
                return Err(ApiError::invalid(
                    "file",
                    "one file per upload: a second `file` field",
                ));
            }
            let original = sanitize(field.file_name().unwrap_or("upload"));
            let key = format!("uploads/{}-{original}", uuid::Uuid::now_v7());
            let path = upload_target(state, &key);
            if let Some(dir) = path.parent() {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(ApiError::internal)?;
            }
            received = Received(Some(path.clone()));
            let mut out = tokio::fs::File::create(&path)
                .await
                .map_err(ApiError::internal)?;
            while let Some(chunk) = field.chunk().await.map_err(bad)? {
                out.write_all(&chunk).await.map_err(ApiError::internal)?;
            }
            out.sync_all().await.map_err(ApiError::internal)?;
            file = Some((path, original, key));
        } else {
            let text = field.text().await.map_err(bad)?;
            fields.insert(name, text);
        }
    }
    let (path, original, blob) = file
        .ok_or_else(|| ApiError::invalid("file", "missing: attach the file as the `file` field"))?;
    let mut req = serde_json::json!({});
    for (k, v) in &fields {
        let text = serde_json::Value::String(v.trim().to_string());
        match k.as_str() {
            "format" => {
                serde_json::from_value::<ImportFormat>(text.clone())
                    .map_err(|e| ApiError::invalid("format", e.to_string()))?;
                req[k] = text;
            }
            "mode" => {
                serde_json::from_value::<ImportMode>(text.clone())
                    .map_err(|e| ApiError::invalid("mode", e.to_string()))?;
                req[k] = text;
            }
            "timezone" | "symbol" | "interval" | "ts_unit" => {
                req[k] = text;
            }
            "mapping" => {
                let m: BTreeMap<String, String> = serde_json::from_str(v).map_err(|e| {
                    ApiError::invalid("mapping", format!("not a JSON object of strings: {e}"))
                })?;
                req["mapping"] = serde_json::json!(m);
            }
            other => {
                return Err(ApiError::invalid(other, "unknown field"));
            }
        }
    }
    if req.get("format").is_none() {
        return Err(ApiError::invalid(
            "format",
            "missing: csv, ctp, bars_csv or parquet",
        ));
    }
    let options: ImportOptions =
        serde_json::from_value(req).map_err(|e| ApiError::invalid("body", e.to_string()))?;
    options
        .validate()
        .map_err(|(field, msg)| ApiError::invalid(field, msg))?;
    // Stored where every node can read it (a no-op on one box, where the
    // file is the blob and stays; elsewhere the scratch copy goes).
    state.blobs.put_file(&blob, &path).await?;
    if state.blobs.local_path(&blob).is_some() {
        received.keep();
    }
    Ok(Upload {
        options,
        original,
        blob,
    })
}

/// Import an uploaded file as a job on the `data` queue (any trader). The
/// file travels in the request: nobody names a file on the server (on the
/// box itself, `quantbox import FILE` does that).
#[utoipa::path(post, path = "/api/v1/market/imports", tag = "market", security(("bearer" = [])),
    request_body(content((ImportUpload = "multipart/form-data"))),
    responses((status = 202, body = Job), (status = 403, body = Problem), (status = 415, body = Problem),
        (status = 422, body = Problem)))]
async fn create_import(
    State(state): State<AppState>,
    p: Principal,
    req: Request,
) -> ApiResult<(StatusCode, Json<Job>)> {
    p.require(Role::Trader)?;
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if !multipart {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "send the file as multipart/form-data (field `file`, and `format`)",
        ));
    }
    let mp = Multipart::from_request(req, &state)
        .await
        .map_err(|e| ApiError::bad_request(format!("not a multipart body: {}", e.body_text())))?;
    let u = receive_upload(&state, mp).await?;
    let uploaded = u.blob.clone();
    let enqueued = async {
        let params = serde_json::to_value(qb_jobs::handlers::ImportParams {
            upload: u.blob.trim_start_matches("uploads/").to_string(),
            options: u.options,
            original_name: Some(u.original),
        })
        .map_err(ApiError::internal)?;
        let spec = JobSpec {
            kind: "market.import".into(),
            queue: None,
            params,
        };
        super::jobs::submit(&state, &p, &spec).await
    }
    .await;
    match enqueued {
        Ok(job) => Ok((StatusCode::ACCEPTED, Json(job))),
        Err(e) => {
            // No job will ever read the upload: it goes now.
            let _ = state.blobs.delete_prefix(&uploaded).await;
            Err(e)
        }
    }
}

// ---------------------------------------------------------------- queries

/// Symbols with what the store holds for each.
#[utoipa::path(get, path = "/api/v1/market/symbols", tag = "market", security(("bearer" = [])),
    responses((status = 200, body = Vec<Coverage>)))]
async fn symbols(State(state): State<AppState>, _p: Principal) -> ApiResult<Json<Vec<Coverage>>> {
    Ok(Json(state.ticks.coverage().await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TickParams {
    #[param(pattern = r"^[A-Za-z0-9._/-]{1,32}$")]
    pub symbol: String,
    /// Inclusive; RFC 3339 or integer nanoseconds.
    pub start: Option<String>,
    /// Exclusive.
    pub end: Option<String>,
    /// Cursor from the previous page (`next`).
    #[param(pattern = "^-?[0-9]+:-?[0-9]+$")]
    pub after: Option<String>,
    /// Ticks per page (default 1000, at most 10000).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct TickPage {
    pub items: Vec<Tick>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<String>,
}

/// Ticks of one symbol in time order, keyset-paginated.
#[utoipa::path(get, path = "/api/v1/market/ticks", tag = "market", security(("bearer" = [])),
    params(TickParams), responses((status = 200, body = TickPage), (status = 422, body = Problem)))]
async fn list_ticks(
    State(state): State<AppState>,
    _p: Principal,
    ApiQuery(q): ApiQuery<TickParams>,
) -> ApiResult<Json<TickPage>> {
    check_symbol(&q.symbol).map_err(|e| ApiError::invalid("symbol", e))?;
    let limit = q.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("{limit} is not between 1 and 10000"),
        ));
    }
    let after = match &q.after {
        None => None,
        Some(c) => {
            let parsed = c
                .split_once(':')
                .and_then(|(a, b)| Some((a.parse::<i64>().ok()?, b.parse::<i32>().ok()?)));
            Some(parsed.ok_or_else(|| ApiError::invalid("after", "not a cursor from `next`"))?)
        }
    };
    let items = state
        .ticks
        .ticks(TickQuery {
            symbol: q.symbol,
            start: opt_time("start", &q.start)?,
            end: opt_time("end", &q.end)?,
            after,
            limit,
        })
        .await?;
    let next = (items.len() == limit as usize)
        .then(|| items.last().map(|t| format!("{}:{}", t.ts, t.seq)))
        .flatten();
    Ok(Json(TickPage { items, next }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BarParams {
    #[param(pattern = r"^[A-Za-z0-9._/-]{1,32}$")]
    pub symbol: String,
    /// `1s` to `1d`, dividing a day: `1m`, `5m`, `1h`, `1d`, ...
    #[param(pattern = r"^[0-9]+[smhd]$")]
    pub interval: String,
    pub start: Option<String>,
    pub end: Option<String>,
    /// Align buckets to local midnight of this zone (e.g. `Asia/Shanghai`).
    pub tz: Option<String>,
}

/// One bar as the API shows it.
#[derive(Serialize, ToSchema)]
pub struct BarOut {
    /// Bucket start, RFC 3339 UTC.
    pub ts: String,
    /// Bucket start, nanoseconds.
    pub ts_ns: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub turnover: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_interest: Option<f64>,
}

fn bar_query(q: &BarParams) -> ApiResult<BarQuery> {
    check_symbol(&q.symbol).map_err(|e| ApiError::invalid("symbol", e))?;
    Ok(BarQuery {
        symbol: q.symbol.clone(),
        interval: q
            .interval
            .parse()
            .map_err(|e| ApiError::invalid("interval", e))?,
        start: opt_time("start", &q.start)?,
        end: opt_time("end", &q.end)?,
        timezone: q.tz.clone(),
    })
}

/// Bars at any interval, from ticks (or from imported bars).
#[utoipa::path(get, path = "/api/v1/market/bars", tag = "market", security(("bearer" = [])),
    params(BarParams), responses((status = 200, body = Vec<BarOut>), (status = 422, body = Problem)))]
async fn bars(
    State(state): State<AppState>,
    _p: Principal,
    ApiQuery(q): ApiQuery<BarParams>,
) -> ApiResult<Json<Vec<BarOut>>> {
    let bq = bar_query(&q)?;
    let bars = state.ticks.bars(bq).await.map_err(|e| match e {
        qb_core::StoreError::Invalid(m) => ApiError::invalid("tz", m),
        other => other.into(),
    })?;
    Ok(Json(
        bars.into_iter()
            .map(|b| BarOut {
                ts: rfc3339(b.ts),
                ts_ns: b.ts,
                open: b.open,
                high: b.high,
                low: b.low,
                close: b.close,
                volume: b.volume,
                turnover: b.turnover,
                open_interest: b.open_interest,
            })
            .collect(),
    ))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// `ticks` or `bars`.
    #[param(pattern = r"^(ticks|bars)$")]
    pub kind: String,
    #[param(inline)]
    pub format: ExportFormat,
    #[param(pattern = r"^[A-Za-z0-9._/-]{1,32}$")]
    pub symbol: String,
    pub start: Option<String>,
    pub end: Option<String>,
    /// For bars (`1s` to `1d`, dividing a day).
    #[param(pattern = r"^[0-9]+[smhd]$")]
    pub interval: Option<String>,
    pub tz: Option<String>,
}

/// Download ticks or bars as CSV or Parquet.
#[utoipa::path(get, path = "/api/v1/market/export", tag = "market", security(("bearer" = [])),
    params(ExportParams),
    responses((status = 200, description = "The file, as an attachment",
                content((String = "text/csv"), (crate::openapi::Binary = "application/vnd.apache.parquet"))),
               (status = 422, body = Problem)))]
async fn export(
    State(state): State<AppState>,
    _p: Principal,
    ApiQuery(q): ApiQuery<ExportParams>,
) -> ApiResult<Response> {
    let query = match q.kind.as_str() {
        "ticks" => {
            check_symbol(&q.symbol).map_err(|e| ApiError::invalid("symbol", e))?;
            ExportQuery::Ticks {
                symbol: q.symbol.clone(),
                start: opt_time("start", &q.start)?,
                end: opt_time("end", &q.end)?,
            }
        }
        "bars" => ExportQuery::Bars(bar_query(&BarParams {
            symbol: q.symbol.clone(),
            interval: q
                .interval
                .clone()
                .ok_or_else(|| ApiError::invalid("interval", "bars exports need an interval"))?,
            start: q.start.clone(),
            end: q.end.clone(),
            tz: q.tz.clone(),
        })?),
        other => {
            return Err(ApiError::invalid(
                "kind",
                format!("{other:?} is not ticks or bars"),
            ));
        }
    };
    let (ext, mime) = match q.format {
        ExportFormat::Csv => ("csv", "text/csv; charset=utf-8"),
        ExportFormat::Parquet => ("parquet", "application/vnd.apache.parquet"),
    };
    let dir = state.config.data_dir.join("exports");
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(ApiError::internal)?;
    let path = dir.join(format!("{}.{ext}", uuid::Uuid::now_v7()));
    let result = state.ticks.export(query, q.format, &path).await;
    let file = tokio::fs::File::open(&path).await;
    // The open handle keeps the data readable; the name goes at once.
    let _ = tokio::fs::remove_file(&path).await;
    result?;
    let file = file.map_err(ApiError::internal)?;
    let name = format!("{}-{}.{ext}", q.symbol.replace('/', "_"), q.kind);
    Ok((
        [
            (header::CONTENT_TYPE, mime.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        Body::from_stream(tokio_util::io::ReaderStream::new(file)),
    )
        .into_response())
}
