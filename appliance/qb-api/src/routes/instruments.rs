//! `/api/v1/instruments`: the instrument registry (changes: trader or admin).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use qb_core::market::Instrument;
use qb_core::model::{Page, Role};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::PageParams;
use crate::auth::Principal;
use crate::problem::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, Problem};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_instruments, create_instrument))
        .routes(routes!(get_instrument, put_instrument, delete_instrument))
}

fn check(i: &Instrument) -> ApiResult<()> {
    i.validate()
        .map_err(|(field, msg)| ApiError::invalid(field, msg))
}

/// List instruments.
#[utoipa::path(get, path = "/api/v1/instruments", tag = "instruments", security(("bearer" = [])),
    params(PageParams), responses((status = 200, body = Page<Instrument>)))]
async fn list_instruments(
    State(state): State<AppState>,
    _p: Principal,
    ApiQuery(page): ApiQuery<PageParams>,
) -> ApiResult<Json<Page<Instrument>>> {
    Ok(Json(
        state.meta.list_instruments(page.resolve(&state)?).await?,
    ))
}

/// Register an instrument (409 if the symbol exists; use PUT to replace).
#[utoipa::path(post, path = "/api/v1/instruments", tag = "instruments", security(("bearer" = [])),
    request_body = Instrument,
    responses((status = 201, body = Instrument), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn create_instrument(
    State(state): State<AppState>,
    p: Principal,
    ApiJson(i): ApiJson<Instrument>,
) -> ApiResult<(StatusCode, Json<Instrument>)> {
    p.require(Role::Trader)?;
    check(&i)?;
    if state.meta.instrument(&i.symbol).await?.is_some() {
        return Err(ApiError::conflict(format!(
            "instrument {:?} exists",
            i.symbol
        )));
    }
    Ok((
        StatusCode::CREATED,
        Json(state.meta.upsert_instrument(&i).await?),
    ))
}

/// One instrument.
#[utoipa::path(get, path = "/api/v1/instruments/{symbol}", tag = "instruments", security(("bearer" = [])),
    params(("symbol" = String, Path)), responses((status = 200, body = Instrument), (status = 404, body = Problem)))]
async fn get_instrument(
    State(state): State<AppState>,
    _p: Principal,
    ApiPath(symbol): ApiPath<String>,
) -> ApiResult<Json<Instrument>> {
    state
        .meta
        .instrument(&symbol)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("instrument {symbol:?} not found")))
}

/// Create or replace an instrument.
#[utoipa::path(put, path = "/api/v1/instruments/{symbol}", tag = "instruments", security(("bearer" = [])),
    params(("symbol" = String, Path)), request_body = Instrument,
    responses((status = 200, body = Instrument), (status = 422, body = Problem)))]
async fn put_instrument(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(symbol): ApiPath<String>,
    ApiJson(i): ApiJson<Instrument>,
) -> ApiResult<Json<Instrument>> {
    p.require(Role::Trader)?;
    if i.symbol != symbol {
        return Err(ApiError::invalid(
            "symbol",
            format!("{:?} does not match the path ({symbol:?})", i.symbol),
        ));
    }
    check(&i)?;
    Ok(Json(state.meta.upsert_instrument(&i).await?))
}

/// Remove an instrument from the registry (its market data stays).
#[utoipa::path(delete, path = "/api/v1/instruments/{symbol}", tag = "instruments", security(("bearer" = [])),
    params(("symbol" = String, Path)), responses((status = 204), (status = 404, body = Problem)))]
async fn delete_instrument(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(symbol): ApiPath<String>,
) -> ApiResult<StatusCode> {
    p.require(Role::Trader)?;
    state.meta.delete_instrument(&symbol).await?;
    Ok(StatusCode::NO_CONTENT)
}
