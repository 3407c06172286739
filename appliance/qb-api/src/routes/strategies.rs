//! `/api/v1/strategies`: live strategies (start, list, get, stop, restart,
//! hot swap, logs) and `/api/v1/trading/replays` (replay feeds of stored
//! ticks).
//!
//! A strategy belongs to its account: it is seen by those who reach the
//! account and changed by traders who do (admins: all). A replay publishes
//! on the live feed, which drives every account's paper fills, so starting
//! and stopping one needs the feed permission.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use qb_core::model::Role;
use qb_live::replay::{ReplaySpec, ReplayStatus};
use qb_live::strategies::{StrategyDoc, StrategySpec};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::problem::{ApiError, ApiJson, ApiPath, ApiResult, Problem};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_strategies, start_strategy))
        .routes(routes!(get_strategy))
        .routes(routes!(stop_strategy))
        .routes(routes!(restart_strategy))
        .routes(routes!(swap_strategy))
        .routes(routes!(strategy_logs))
        .routes(routes!(list_replays, start_replay))
        .routes(routes!(stop_replay))
}

/// Start a plugin as a live strategy on an account.
#[utoipa::path(post, path = "/api/v1/strategies", tag = "strategies", security(("bearer" = [])),
    request_body = StrategySpec,
    responses((status = 201, body = StrategyDoc), (status = 404, body = Problem), (status = 422, body = Problem)))]
async fn start_strategy(
    State(state): State<AppState>,
    p: Principal,
    ApiJson(spec): ApiJson<StrategySpec>,
) -> ApiResult<(StatusCode, Json<StrategyDoc>)> {
    let account = spec
        .account
        .clone()
        .unwrap_or_else(|| state.config.trading.default_account.clone());
    p.require_account(&state, &account, Role::Trader).await?;
    let doc = state.strategies()?.start(spec).await?;
    Ok((StatusCode::CREATED, Json(doc)))
}

/// Every strategy, running or not, on the accounts the caller reaches.
#[utoipa::path(get, path = "/api/v1/strategies", tag = "strategies", security(("bearer" = [])),
    responses((status = 200, body = Vec<StrategyDoc>)))]
async fn list_strategies(
    State(state): State<AppState>,
    p: Principal,
) -> ApiResult<Json<Vec<StrategyDoc>>> {
    let reach = p.reach(&state).await?;
    let mut all = state.strategies()?.list();
    all.retain(|d| reach.allows(&d.account));
    Ok(Json(all))
}

/// The strategy `id` if the caller may act on its account with `role`.
async fn strategy_for(
    state: &AppState,
    p: &Principal,
    id: &str,
    role: Role,
) -> ApiResult<StrategyDoc> {
    let doc = state.strategies()?.get(id)?;
    p.require_account(state, &doc.account, role).await?;
    Ok(doc)
}

#[utoipa::path(get, path = "/api/v1/strategies/{id}", tag = "strategies", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = StrategyDoc), (status = 404, body = Problem)))]
async fn get_strategy(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<StrategyDoc>> {
    Ok(Json(strategy_for(&state, &p, &id, Role::Viewer).await?))
}

/// Stop a strategy (its state snapshot is kept for a restart).
#[utoipa::path(post, path = "/api/v1/strategies/{id}/stop", tag = "strategies", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = StrategyDoc), (status = 404, body = Problem)))]
async fn stop_strategy(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<StrategyDoc>> {
    strategy_for(&state, &p, &id, Role::Trader).await?;
    let reason = format!("stopped by {}", p.username);
    Ok(Json(state.strategies()?.stop(&id, Some(reason)).await?))
}

/// Start a stopped or failed strategy again from its last snapshot.
#[utoipa::path(post, path = "/api/v1/strategies/{id}/restart", tag = "strategies", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = StrategyDoc), (status = 409, body = Problem)))]
async fn restart_strategy(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<StrategyDoc>> {
    strategy_for(&state, &p, &id, Role::Trader).await?;
    Ok(Json(state.strategies()?.restart(&id).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SwapRequest {
    /// The new plugin: id, name or name@version.
    pub plugin: String,
}

/// Hot swap: the running instance's snapshot goes to the new plugin's
/// `init`; if that fails the old version keeps trading (422).
#[utoipa::path(post, path = "/api/v1/strategies/{id}/swap", tag = "strategies", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = SwapRequest,
    responses((status = 200, body = StrategyDoc), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn swap_strategy(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(r): ApiJson<SwapRequest>,
) -> ApiResult<Json<StrategyDoc>> {
    strategy_for(&state, &p, &id, Role::Trader).await?;
    Ok(Json(state.strategies()?.swap(&id, &r.plugin).await?))
}

/// The strategy's last log lines (also streamed on `/ws`).
#[utoipa::path(get, path = "/api/v1/strategies/{id}/logs", tag = "strategies", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = Vec<serde_json::Value>)))]
async fn strategy_logs(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<Vec<serde_json::Value>>> {
    strategy_for(&state, &p, &id, Role::Viewer).await?;
    Ok(Json(state.strategies()?.logs(&id)?))
}

/// Replay stored ticks on the live feed at a chosen speed (feed
/// permission: the replayed quotes fill every account's resting orders).
#[utoipa::path(post, path = "/api/v1/trading/replays", tag = "trading", security(("bearer" = [])),
    request_body = ReplaySpec, responses((status = 201, body = ReplayStatus), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn start_replay(
    State(state): State<AppState>,
    p: Principal,
    ApiJson(spec): ApiJson<ReplaySpec>,
) -> ApiResult<(StatusCode, Json<ReplayStatus>)> {
    p.require_feed()?;
    let r = state
        .replays
        .start(spec, state.ticks.clone(), state.pubsub.clone())
        .map_err(|(f, m)| ApiError::invalid(f, m))?;
    Ok((StatusCode::CREATED, Json(r)))
}

#[utoipa::path(get, path = "/api/v1/trading/replays", tag = "trading", security(("bearer" = [])),
    responses((status = 200, body = Vec<ReplayStatus>)))]
async fn list_replays(State(state): State<AppState>, _p: Principal) -> Json<Vec<ReplayStatus>> {
    Json(state.replays.list())
}

#[utoipa::path(delete, path = "/api/v1/trading/replays/{id}", tag = "trading", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = ReplayStatus), (status = 404, body = Problem)))]
async fn stop_replay(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ReplayStatus>> {
    p.require_feed()?;
    if !state.replays.stop(&id) {
        return Err(ApiError::not_found(format!("replay {id}")));
    }
    state
        .replays
        .get(&id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("replay {id}")))
}
