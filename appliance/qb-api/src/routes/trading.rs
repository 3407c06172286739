//! `/api/v1/trading/*`: manual orders and cancels, open orders, fills,
//! positions, accounts and their grants, the kill switch. Rate limited by
//! the `trading` zone (5 r/s, burst 10 by default). Every call names its
//! account with `?account=` (default: `trading.default_account`) and acts
//! only on an account the caller reaches ([`crate::auth::access`]): 403
//! otherwise, whether or not the account exists.
//!
//! A risk rejection answers 422 `/problems/risk-rejected` with the rule
//! (`rule`) and the numbers (`detail`); the rejected order is kept
//! (`order_id`) and the call is audited with the rule.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use qb_core::model::{AccountGrant, Role};
use std::collections::BTreeMap;

use qb_live::{
    AccountView, Fill, LiveError, Order, OrderRequest, OrderState, PositionView, QuoteView,
    RiskLimits,
};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::auth::guard::AuditNote;
use crate::problem::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, Problem};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(submit_order, list_orders))
        .routes(routes!(get_order, cancel_order))
        .routes(routes!(list_fills))
        .routes(routes!(list_positions))
        .routes(routes!(get_account))
        .routes(routes!(list_accounts, create_account))
        .routes(routes!(list_grants))
        .routes(routes!(grant_account, revoke_grant))
        .routes(routes!(set_limits))
        .routes(routes!(kill))
        .routes(routes!(resume))
        .routes(routes!(quotes))
}

impl From<LiveError> for ApiError {
    fn from(e: LiveError) -> Self {
        match e {
            LiveError::NotFound(what) => ApiError::not_found(what),
            LiveError::Invalid { field, message } => ApiError::invalid(field, message),
            LiveError::Conflict(m) => ApiError::conflict(m),
            LiveError::Failed(m) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "strategy-failed", m)
            }
            LiveError::Store(e) => e.into(),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct AccountParam {
    /// The account (default: the configured default account).
    #[param(pattern = r"^[A-Za-z0-9._/-]{1,32}$")]
    pub account: Option<String>,
}

impl AccountParam {
    fn name(&self, state: &AppState) -> String {
        self.account
            .clone()
            .unwrap_or_else(|| state.config.trading.default_account.clone())
    }
}

#[derive(Debug, Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct OrderListParams {
    #[param(pattern = r"^[A-Za-z0-9._/-]{1,32}$")]
    pub account: Option<String>,
    /// `open` (default) or `all`.
    #[param(pattern = r"^(open|all)$")]
    pub status: Option<String>,
}

/// Submit a manual order.
#[utoipa::path(post, path = "/api/v1/trading/orders", tag = "trading", security(("bearer" = [])),
    params(AccountParam), request_body = OrderRequest,
    responses((status = 201, body = Order, description = "accepted (or filled at once)"),
              (status = 200, body = Order, description = "the client id was used before: that order"),
              (status = 422, body = Problem, description = "invalid, or rejected by a risk rule (`rule`, `order_id`)"),
              (status = 404, body = Problem, description = "No such account")))]
async fn submit_order(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<AccountParam>,
    ApiJson(req): ApiJson<OrderRequest>,
) -> ApiResult<Response> {
    let account = q.name(&state);
    p.require_account(&state, &account, Role::Trader).await?;
    let placed = state.desk()?.submit(&account, None, req).await?;
    let o = placed.order;
    let mut resp = if o.state == OrderState::Rejected {
        let mut e = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "risk-rejected",
            format!(
                "order rejected by {}: {}",
                o.rule.as_deref().unwrap_or("risk"),
                o.reason.as_deref().unwrap_or_default()
            ),
        );
        e.rejection = Some(Box::new((o.rule.clone().unwrap_or_default(), o.id.clone())));
        e.into_response()
    } else {
        let status = if placed.repeat {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        };
        (status, Json(o.clone())).into_response()
    };
    resp.extensions_mut().insert(AuditNote(format!(
        "account={account} order={} client_id={} {:?} {} {} {:?}{}",
        o.id,
        o.client_id,
        o.side,
        o.qty,
        o.symbol,
        o.order_type,
        o.rule
            .as_deref()
            .map(|r| format!(" rejected={r}"))
            .unwrap_or_default()
    )));
    Ok(resp)
}

/// Orders of an account: open ones (default) or all, oldest first.
#[utoipa::path(get, path = "/api/v1/trading/orders", tag = "trading", security(("bearer" = [])),
    params(OrderListParams), responses((status = 200, body = Vec<Order>), (status = 404, body = Problem, description = "No such account")))]
async fn list_orders(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<OrderListParams>,
) -> ApiResult<Json<Vec<Order>>> {
    let account = AccountParam { account: q.account }.name(&state);
    p.require_account(&state, &account, Role::Viewer).await?;
    let orders = match q.status.as_deref() {
        None | Some("open") => state.desk()?.open_orders(&account).await?,
        Some("all") => state.desk()?.all_orders(&account).await?,
        Some(other) => {
            return Err(ApiError::invalid(
                "status",
                format!("{other:?}: use open or all"),
            ));
        }
    };
    Ok(Json(orders))
}

/// One order.
#[utoipa::path(get, path = "/api/v1/trading/orders/{id}", tag = "trading", security(("bearer" = [])),
    params(("id" = String, Path), AccountParam), responses((status = 200, body = Order), (status = 404, body = Problem)))]
async fn get_order(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<AccountParam>,
) -> ApiResult<Json<Order>> {
    let account = q.name(&state);
    p.require_account(&state, &account, Role::Viewer).await?;
    Ok(Json(state.desk()?.order(&account, &id).await?))
}

/// Cancel an open order (by id or client id). Allowed while HALTED.
#[utoipa::path(delete, path = "/api/v1/trading/orders/{id}", tag = "trading", security(("bearer" = [])),
    params(("id" = String, Path), AccountParam), responses((status = 200, body = Order), (status = 409, body = Problem)))]
async fn cancel_order(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<AccountParam>,
) -> ApiResult<Json<Order>> {
    let account = q.name(&state);
    p.require_account(&state, &account, Role::Trader).await?;
    let reason = format!("cancelled by {}", p.username);
    Ok(Json(state.desk()?.cancel(&account, &id, &reason).await?))
}

/// Fills of an account, oldest first.
#[utoipa::path(get, path = "/api/v1/trading/fills", tag = "trading", security(("bearer" = [])),
    params(AccountParam), responses((status = 200, body = Vec<Fill>), (status = 404, body = Problem, description = "No such account")))]
async fn list_fills(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<AccountParam>,
) -> ApiResult<Json<Vec<Fill>>> {
    let account = q.name(&state);
    p.require_account(&state, &account, Role::Viewer).await?;
    Ok(Json(state.desk()?.fills(&account).await?))
}

/// Positions: the account's net positions (`strategy` null), then each
/// strategy's (manual orders under `manual`).
#[utoipa::path(get, path = "/api/v1/trading/positions", tag = "trading", security(("bearer" = [])),
    params(AccountParam), responses((status = 200, body = Vec<PositionView>), (status = 404, body = Problem, description = "No such account")))]
async fn list_positions(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<AccountParam>,
) -> ApiResult<Json<Vec<PositionView>>> {
    let account = q.name(&state);
    p.require_account(&state, &account, Role::Viewer).await?;
    Ok(Json(state.desk()?.positions(&account).await?))
}

/// Cash, equity, margin, PnL by strategy, HALTED state, limits.
#[utoipa::path(get, path = "/api/v1/trading/account", tag = "trading", security(("bearer" = [])),
    params(AccountParam), responses((status = 200, body = AccountView), (status = 404, body = Problem, description = "No such account")))]
async fn get_account(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<AccountParam>,
) -> ApiResult<Json<AccountView>> {
    let account = q.name(&state);
    p.require_account(&state, &account, Role::Viewer).await?;
    Ok(Json(state.desk()?.account(&account).await?))
}

/// The accounts the caller reaches (an admin: every account).
#[utoipa::path(get, path = "/api/v1/trading/accounts", tag = "trading", security(("bearer" = [])),
    responses((status = 200, body = Vec<AccountView>)))]
async fn list_accounts(
    State(state): State<AppState>,
    p: Principal,
) -> ApiResult<Json<Vec<AccountView>>> {
    let reach = p.reach(&state).await?;
    let mut all = state.desk()?.accounts().await;
    all.retain(|a| reach.allows(&a.name));
    Ok(Json(all))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    /// 1 to 32 of `A-Z a-z 0-9 . _ - /`.
    #[schema(pattern = r"^[A-Za-z0-9._/-]{1,32}$")]
    pub name: String,
    #[schema(value_type = String)]
    pub initial_cash: Decimal,
    #[serde(default)]
    pub limits: RiskLimits,
}

/// Open a paper account (traders and admins); it is granted to its
/// creator. Its risk limits are set by the creator now and by admins
/// afterwards.
#[utoipa::path(post, path = "/api/v1/trading/accounts", tag = "trading", security(("bearer" = [])),
    request_body = NewAccount, responses((status = 201, body = AccountView), (status = 409, body = Problem)))]
async fn create_account(
    State(state): State<AppState>,
    p: Principal,
    ApiJson(a): ApiJson<NewAccount>,
) -> ApiResult<(StatusCode, Json<AccountView>)> {
    p.require(Role::Trader)?;
    let view = state
        .desk()?
        .create_account(&a.name, a.initial_cash, a.limits)
        .await?;
    state
        .meta
        .grant_account(&view.name, p.user_id, &p.actor())
        .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Who an account is granted to (admin).
#[utoipa::path(get, path = "/api/v1/trading/accounts/{name}/grants", tag = "trading", security(("bearer" = [])),
    params(("name" = String, Path)),
    responses((status = 200, body = Vec<AccountGrant>), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn list_grants(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<Vec<AccountGrant>>> {
    p.require(Role::Admin)?;
    state.desk()?.account(&name).await?;
    Ok(Json(state.meta.account_grants(Some(&name), None).await?))
}

async fn user_id_of(state: &AppState, username: &str) -> ApiResult<i64> {
    Ok(state
        .meta
        .user_credentials(username)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {username:?} not found")))?
        .user
        .id)
}

/// Grant an account to a user (admin). Granting again changes nothing.
/// The user acts on it within their role: viewers read it, traders trade
/// it; their API keys likewise.
#[utoipa::path(put, path = "/api/v1/trading/accounts/{name}/grants/{username}", tag = "trading", security(("bearer" = [])),
    params(("name" = String, Path), ("username" = String, Path)),
    responses((status = 200, body = AccountGrant), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn grant_account(
    State(state): State<AppState>,
    p: Principal,
    ApiPath((name, username)): ApiPath<(String, String)>,
) -> ApiResult<Json<AccountGrant>> {
    p.require(Role::Admin)?;
    state.desk()?.account(&name).await?;
    let user = user_id_of(&state, &username).await?;
    Ok(Json(
        state.meta.grant_account(&name, user, &p.actor()).await?,
    ))
}

/// Revoke a user's grant of an account (admin). Their running strategies
/// on it keep running; an admin stops them or kills the account.
#[utoipa::path(delete, path = "/api/v1/trading/accounts/{name}/grants/{username}", tag = "trading", security(("bearer" = [])),
    params(("name" = String, Path), ("username" = String, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn revoke_grant(
    State(state): State<AppState>,
    p: Principal,
    ApiPath((name, username)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    p.require(Role::Admin)?;
    let user = user_id_of(&state, &username).await?;
    state.meta.revoke_account(&name, user).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsUpdate {
    /// Limits of one strategy in the account instead of the account's.
    pub strategy: Option<String>,
    pub limits: RiskLimits,
}

/// Set an account's (or one strategy's) risk limits (admin).
#[utoipa::path(put, path = "/api/v1/trading/accounts/{name}/limits", tag = "trading", security(("bearer" = [])),
    params(("name" = String, Path)), request_body = LimitsUpdate,
    responses((status = 200, body = AccountView), (status = 404, body = Problem)))]
async fn set_limits(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(name): ApiPath<String>,
    ApiJson(u): ApiJson<LimitsUpdate>,
) -> ApiResult<Json<AccountView>> {
    p.require(Role::Admin)?;
    state
        .desk()?
        .set_limits(&name, u.strategy.as_deref(), u.limits)
        .await?;
    Ok(Json(state.desk()?.account(&name).await?))
}

#[derive(Debug, Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct KillParams {
    #[param(pattern = r"^[A-Za-z0-9._/-]{1,32}$")]
    pub account: Option<String>,
    /// Kept with the HALTED state and in the audit log.
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KillReport {
    pub account: String,
    pub halted: bool,
    /// Orders cancelled by the kill.
    pub cancelled: Vec<String>,
    /// Strategies stopped by the kill.
    pub stopped_strategies: Vec<String>,
}

/// The kill switch: cancel every open order and halt the account (only
/// cancels pass until an admin resumes it). Any trader the account is
/// granted to may press it.
#[utoipa::path(post, path = "/api/v1/trading/kill", tag = "trading", security(("bearer" = [])),
    params(KillParams), responses((status = 200, body = KillReport), (status = 404, body = Problem, description = "No such account")))]
async fn kill(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<KillParams>,
) -> ApiResult<Response> {
    let account = AccountParam { account: q.account }.name(&state);
    p.require_account(&state, &account, Role::Trader).await?;
    let reason = q
        .reason
        .unwrap_or_else(|| format!("kill switch pressed by {}", p.username));
    // Orders first (the desk refuses new ones from now on), then the
    // strategies' threads.
    let cancelled = state.desk()?.kill(&account, &reason).await?;
    let stopped = state
        .strategies()?
        .stop_account(&account, &format!("kill switch: {reason}"))
        .await;
    let report = KillReport {
        account: account.clone(),
        halted: true,
        cancelled: cancelled.iter().map(|o| o.id.clone()).collect(),
        stopped_strategies: stopped.clone(),
    };
    let mut resp = Json(report).into_response();
    resp.extensions_mut().insert(AuditNote(format!(
        "account={account} halted cancelled={} strategies_stopped={} reason={reason}",
        cancelled.len(),
        stopped.len()
    )));
    Ok(resp)
}

/// Lift HALTED (admin).
#[utoipa::path(post, path = "/api/v1/trading/resume", tag = "trading", security(("bearer" = [])),
    params(AccountParam), responses((status = 200, body = AccountView), (status = 403, body = Problem), (status = 404, body = Problem, description = "No such account")))]
async fn resume(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<AccountParam>,
) -> ApiResult<Json<AccountView>> {
    p.require(Role::Admin)?;
    let account = q.name(&state);
    state.desk()?.resume(&account).await?;
    Ok(Json(state.desk()?.account(&account).await?))
}

/// The latest quote of every symbol the paper broker has seen.
#[utoipa::path(get, path = "/api/v1/trading/quotes", tag = "trading", security(("bearer" = [])),
    responses((status = 200, body = BTreeMap<String, QuoteView>)))]
async fn quotes(
    State(state): State<AppState>,
    _p: Principal,
) -> ApiResult<Json<BTreeMap<String, QuoteView>>> {
    Ok(Json(state.desk()?.quotes().await))
}
