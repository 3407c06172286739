//! `/api/v1/backtests` and `/reports/{id}.html`: backtests are jobs of kind
//! `backtest.run` on the `backtest` queue (the seed's Celery backtest
//! queue); their id is the job id. Files (fills, equity, trades, report)
//! live under `<data_dir>/backtests/<id>/`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use qb_backtest::export::DOWNLOADS;
use qb_backtest::job::{BacktestSpec, KIND};
use qb_core::model::{Job, JobFilter, JobSpec, JobState, Page, Role};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::PageParams;
use super::market::parse_time;
use crate::auth::Principal;
use crate::problem::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, Problem};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_backtests, create_backtest))
        .routes(routes!(get_backtest))
        .routes(routes!(backtest_fills))
        .routes(routes!(backtest_file))
        .routes(routes!(report))
        .routes(routes!(create_sweep))
        .routes(routes!(get_sweep))
}

/// A backtest to run.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BacktestRequest {
    /// Plugin id (sha256), `name` or `name@version`.
    pub plugin: String,
    #[serde(default)]
    pub params: BTreeMap<String, f64>,
    pub symbols: Vec<String>,
    /// RFC 3339 or Unix nanoseconds (inclusive).
    pub start: Option<String>,
    /// RFC 3339 or Unix nanoseconds (exclusive).
    pub end: Option<String>,
    /// Bar interval, e.g. `1m` (default), `5m`, `1h`, `1d`; `tick` replays
    /// stored ticks with their best bid/ask (tick mode).
    #[schema(pattern = r"^(tick|[0-9]+[smhd])$")]
    pub interval: Option<String>,
    /// Default 1,000,000.
    #[schema(value_type = Option<String>)]
    pub initial_cash: Option<Decimal>,
    /// Fraction of notional, replacing the instruments' rates.
    #[schema(value_type = Option<String>)]
    pub commission_rate: Option<Decimal>,
    #[schema(value_type = Option<String>)]
    pub commission_per_lot: Option<Decimal>,
    #[schema(value_type = Option<String>)]
    pub slippage_bps: Option<Decimal>,
    pub slippage_ticks: Option<u32>,
    /// Seed of the strategy's random numbers (default 0).
    pub seed: Option<u64>,
}

/// A backtest as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Backtest {
    pub id: String,
    /// `queued`, `running`, `succeeded`, `failed`, `cancelled`.
    pub status: JobState,
    pub progress: f64,
    #[schema(value_type = Object)]
    pub settings: serde_json::Value,
    #[schema(value_type = Option<Object>)]
    pub metrics: Option<serde_json::Value>,
    pub final_equity: Option<String>,
    pub result_hash: Option<String>,
    pub error: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
}

fn view(job: Job) -> Backtest {
    let result = job.result.unwrap_or(serde_json::Value::Null);
    let text = |k: &str| result.get(k).and_then(|v| v.as_str()).map(str::to_string);
    Backtest {
        id: job.id,
        status: job.state,
        progress: job.progress,
        settings: job.params,
        metrics: result.get("metrics").cloned(),
        final_equity: text("final_equity"),
        result_hash: text("result_hash"),
        error: job.error,
        created_at: job.created_at,
        finished_at: job.finished_at,
    }
}

async fn backtest_job(state: &AppState, id: &str) -> ApiResult<Job> {
    match state.jobs.get(id).await? {
        Some(job) if job.kind == KIND => Ok(job),
        _ => Err(ApiError::not_found(format!("backtest {id:?} not found"))),
    }
}

/// The spec a request asks for (times parsed, defaults filled); the
/// plugin and its parameters are checked, and the plugin pinned by its
/// hash, by the job kind's own check when the job is prepared
/// (`qb_backtest::job::check_spec`), as for every other way a backtest
/// starts.
fn spec_of(r: BacktestRequest) -> ApiResult<BacktestSpec> {
    let spec = BacktestSpec {
        plugin: r.plugin,
        params: r.params,
        symbols: r.symbols,
        start: r
            .start
            .as_deref()
            .map(|s| parse_time("start", s))
            .transpose()?,
        end: r.end.as_deref().map(|s| parse_time("end", s)).transpose()?,
        interval: r.interval.unwrap_or_else(|| "1m".into()),
        initial_cash: r.initial_cash.unwrap_or(Decimal::from(1_000_000)),
        commission_rate: r.commission_rate,
        commission_per_lot: r.commission_per_lot,
        slippage_bps: r.slippage_bps,
        slippage_ticks: r.slippage_ticks,
        seed: r.seed.unwrap_or(0),
    };
    Ok(spec)
}

/// Start a backtest: 202 with its id; it runs on the `backtest` queue.
#[utoipa::path(post, path = "/api/v1/backtests", tag = "backtests", security(("bearer" = [])),
    request_body = BacktestRequest,
    responses((status = 202, body = Backtest), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn create_backtest(
    State(state): State<AppState>,
    p: Principal,
    ApiJson(r): ApiJson<BacktestRequest>,
) -> ApiResult<(StatusCode, Json<Backtest>)> {
    p.require(Role::Trader)?;
    let spec = spec_of(r)?;
    let job = JobSpec {
        kind: KIND.into(),
        queue: None,
        params: serde_json::to_value(&spec).map_err(ApiError::internal)?,
    };
    let job = super::jobs::submit(&state, &p, &job).await?;
    Ok((StatusCode::ACCEPTED, Json(view(job))))
}

/// Backtests, newest first, with their headline figures.
#[utoipa::path(get, path = "/api/v1/backtests", tag = "backtests", security(("bearer" = [])),
    params(PageParams), responses((status = 200, body = Page<Backtest>)))]
async fn list_backtests(
    State(state): State<AppState>,
    _p: Principal,
    ApiQuery(page): ApiQuery<PageParams>,
) -> ApiResult<Json<Page<Backtest>>> {
    let filter = JobFilter {
        kind: Some(KIND.into()),
        ..JobFilter::default()
    };
    let jobs = state.jobs.list(&filter, page.resolve(&state)?).await?;
    Ok(Json(Page {
        items: jobs.items.into_iter().map(view).collect(),
        page: jobs.page,
        page_size: jobs.page_size,
        total: jobs.total,
    }))
}

/// One backtest: status, settings, metrics, final equity, result hash.
#[utoipa::path(get, path = "/api/v1/backtests/{id}", tag = "backtests", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = Backtest), (status = 404, body = Problem)))]
async fn get_backtest(
    State(state): State<AppState>,
    _p: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Backtest>> {
    Ok(Json(view(backtest_job(&state, &id).await?)))
}

/// A fill as the API lists it.
#[derive(Debug, Serialize, ToSchema)]
pub struct FillOut {
    pub ts: i64,
    pub symbol: String,
    /// `buy` or `sell`.
    pub side: String,
    #[schema(value_type = String)]
    pub qty: Decimal,
    #[schema(value_type = String)]
    pub price: Decimal,
    #[schema(value_type = String)]
    pub commission: Decimal,
}

async fn artifact(state: &AppState, id: &str, name: &str) -> ApiResult<Vec<u8>> {
    let job = backtest_job(state, id).await?;
    if job.state != JobState::Succeeded {
        return Err(ApiError::conflict(format!(
            "backtest {id} is {:?}; its files exist once it succeeded",
            job.state
        )));
    }
    state
        .blobs
        .get(&qb_backtest::job::blob_key(&job.id, name))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("{name} of backtest {id}")))
}

/// The fills of a finished backtest.
#[utoipa::path(get, path = "/api/v1/backtests/{id}/fills", tag = "backtests", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = Vec<FillOut>), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn backtest_fills(
    State(state): State<AppState>,
    _p: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Vec<FillOut>>> {
    let bytes = artifact(&state, &id, "fills.json").await?;
    let fills: Vec<qb_backtest::ledger::Fill> =
        serde_json::from_slice(&bytes).map_err(ApiError::internal)?;
    Ok(Json(
        fills
            .into_iter()
            .map(|f| FillOut {
                ts: f.ts,
                symbol: f.symbol,
                side: if f.qty.is_sign_positive() {
                    "buy"
                } else {
                    "sell"
                }
                .into(),
                qty: f.qty.abs(),
                price: f.price,
                commission: f.commission,
            })
            .collect(),
    ))
}

/// A file of a finished backtest: fills, equity curve and round trips as
/// CSV or Parquet.
#[utoipa::path(get, path = "/api/v1/backtests/{id}/files/{name}", tag = "backtests", security(("bearer" = [])),
    params(("id" = String, Path), ("name" = String, Path, pattern = r"^(fills|equity|trades)\.(csv|parquet)$",
        description = "fills.csv, equity.csv, trades.csv, fills.parquet, equity.parquet or trades.parquet")),
    responses((status = 200, description = "CSV or Parquet, as an attachment",
                content((String = "text/csv"), (crate::openapi::Binary = "application/vnd.apache.parquet"))),
               (status = 404, body = Problem), (status = 409, body = Problem, description = "The backtest has not succeeded (yet)")))]
async fn backtest_file(
    State(state): State<AppState>,
    _p: Principal,
    ApiPath((id, name)): ApiPath<(String, String)>,
) -> ApiResult<Response> {
    let Some((_, mime)) = DOWNLOADS.iter().find(|(n, _)| *n == name) else {
        let names: Vec<&str> = DOWNLOADS.iter().map(|(n, _)| *n).collect();
        return Err(ApiError::not_found(format!(
            "no file {name:?}; files: {}",
            names.join(", ")
        )));
    };
    let bytes = artifact(&state, &id, &name).await?;
    Ok(download(bytes, mime, &format!("backtest-{id}-{name}")))
}

/// A file as an attachment.
fn download(bytes: Vec<u8>, content_type: &str, filename: &str) -> Response {
    let disposition = format!("attachment; filename=\"{filename}\"");
    (
        [
            (
                header::CONTENT_TYPE,
                if content_type.starts_with("text/") {
                    format!("{content_type}; charset=utf-8")
                } else {
                    content_type.to_string()
                },
            ),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response()
}

/// The self-contained HTML report of a finished backtest, as a download.
#[utoipa::path(get, path = "/reports/{file}", tag = "backtests", security(("bearer" = [])),
    params(("file" = String, Path, pattern = r"\.html$", description = "`<id>.html`")),
    responses((status = 200, description = "HTML report", content_type = "text/html"), (status = 404, body = Problem),
               (status = 409, body = Problem, description = "The backtest has not succeeded (yet)")))]
async fn report(
    State(state): State<AppState>,
    _p: Principal,
    ApiPath(file): ApiPath<String>,
) -> ApiResult<Response> {
    let Some(id) = file.strip_suffix(".html") else {
        return Err(ApiError::not_found("reports are at /reports/<id>.html"));
    };
    let bytes = artifact(&state, id, "report.html").await?;
    Ok(download(bytes, "text/html", &format!("backtest-{id}.html")))
}

// ---------------------------------------------------------------- sweeps

/// A parameter sweep: one backtest per combination of the grid's values.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SweepRequest {
    pub base: BacktestRequest,
    /// Values to try per parameter, e.g. `{"fast": [5, 10], "slow": [20, 40]}`.
    pub grid: BTreeMap<String, Vec<f64>>,
}

/// One run of a sweep.
#[derive(Debug, Serialize, ToSchema)]
pub struct SweepRow {
    pub id: String,
    pub params: BTreeMap<String, f64>,
    pub status: JobState,
    #[schema(value_type = Option<Object>)]
    pub metrics: Option<serde_json::Value>,
    pub final_equity: Option<String>,
    pub error: Option<String>,
}

/// A sweep and its results table.
#[derive(Debug, Serialize, ToSchema)]
pub struct Sweep {
    pub id: String,
    pub status: JobState,
    pub grid: BTreeMap<String, Vec<f64>>,
    /// Runs, sorted by `sort` (descending unless `order=asc`); runs
    /// without the metric last.
    pub rows: Vec<SweepRow>,
    pub done: usize,
    /// The best finished run by the sort metric.
    pub best: Option<String>,
    pub sort: String,
}

/// Start a parameter sweep: 202 with its id.
#[utoipa::path(post, path = "/api/v1/sweeps", tag = "backtests", security(("bearer" = [])),
    request_body = SweepRequest,
    responses((status = 202, body = Sweep), (status = 422, body = Problem)))]
async fn create_sweep(
    State(state): State<AppState>,
    p: Principal,
    ApiJson(r): ApiJson<SweepRequest>,
) -> ApiResult<(StatusCode, Json<Sweep>)> {
    p.require(Role::Trader)?;
    let spec = qb_backtest::sweep::SweepSpec {
        base: spec_of(r.base)?,
        grid: r.grid,
    };
    let job = JobSpec {
        kind: qb_backtest::sweep::SWEEP_KIND.into(),
        queue: None,
        params: serde_json::to_value(&spec).map_err(ApiError::internal)?,
    };
    let job = super::jobs::submit(&state, &p, &job).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Sweep {
            id: job.id,
            status: job.state,
            grid: spec.grid,
            rows: Vec::new(),
            done: 0,
            best: None,
            sort: "sharpe".into(),
        }),
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SweepQuery {
    /// A metric name, e.g. `sharpe` (default), `total_return`, `max_drawdown`.
    pub sort: Option<String>,
    /// `desc` (default) or `asc`.
    #[param(pattern = r"^(asc|desc)$")]
    pub order: Option<String>,
}

/// A sweep's results table, sorted by any metric, best run marked.
#[utoipa::path(get, path = "/api/v1/sweeps/{id}", tag = "backtests", security(("bearer" = [])),
    params(("id" = String, Path), SweepQuery),
    responses((status = 200, body = Sweep), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn get_sweep(
    State(state): State<AppState>,
    _p: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<SweepQuery>,
) -> ApiResult<Json<Sweep>> {
    let job = match state.jobs.get(&id).await? {
        Some(j) if j.kind == qb_backtest::sweep::SWEEP_KIND => j,
        _ => return Err(ApiError::not_found(format!("sweep {id:?} not found"))),
    };
    let spec: qb_backtest::sweep::SweepSpec =
        serde_json::from_value(job.params.clone()).map_err(ApiError::internal)?;
    let sort = q.sort.unwrap_or_else(|| "sharpe".into());
    let known = serde_json::to_value(qb_backtest::analytics::Metrics::default())
        .map_err(ApiError::internal)?;
    if known.get(&sort).is_none() {
        let names: Vec<&String> = known
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        return Err(ApiError::invalid(
            "sort",
            format!("{sort:?} is not a metric; metrics: {names:?}"),
        ));
    }
    let ascending = match q.order.as_deref() {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(o) => {
            return Err(ApiError::invalid(
                "order",
                format!("{o:?} is not asc or desc"),
            ));
        }
    };
    let children: Vec<String> = job
        .result
        .as_ref()
        .and_then(|r| r.get("children"))
        .and_then(|c| serde_json::from_value(c.clone()).ok())
        .unwrap_or_default();
    let mut rows = Vec::with_capacity(children.len());
    for child in children {
        if let Some(c) = state.jobs.get(&child).await? {
            let b = view(c);
            let params =
                serde_json::from_value(b.settings.get("params").cloned().unwrap_or_default())
                    .unwrap_or_default();
            rows.push(SweepRow {
                id: b.id,
                params,
                status: b.status,
                metrics: b.metrics,
                final_equity: b.final_equity,
                error: b.error,
            });
        }
    }
    let key = |r: &SweepRow| {
        r.metrics
            .as_ref()
            .and_then(|m| m.get(&sort))
            .and_then(|v| v.as_f64())
    };
    rows.sort_by(|a, b| match (key(a), key(b)) {
        (Some(x), Some(y)) => {
            let o = x.total_cmp(&y);
            if ascending { o } else { o.reverse() }
        }
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    let done = rows
        .iter()
        .filter(|r| r.status == JobState::Succeeded)
        .count();
    let best = rows.iter().find(|r| key(r).is_some()).map(|r| r.id.clone());
    Ok(Json(Sweep {
        id: job.id,
        status: job.state,
        grid: spec.grid,
        rows,
        done,
        best,
        sort,
    }))
}
