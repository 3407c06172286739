//! `/api/v1/api-keys`: keys for programs. The key is shown once.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use qb_core::model::{ApiKey, Page, Role};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::PageParams;
use crate::auth::Principal;
use crate::auth::guard::Credential;
use crate::auth::tokens::{API_KEY_PREFIX, random_token, token_hash};
use crate::problem::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, Problem};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_keys, create_key))
        .routes(routes!(revoke_key))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    /// 1 to 100 characters (surrounding spaces trimmed).
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// At most your own role (the default).
    pub role: Option<Role>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedKey {
    /// The key. Shown only in this response; store it now.
    pub key: String,
    pub api_key: ApiKey,
}

#[derive(Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct KeyListParams {
    /// 1-based page number (default 1).
    #[param(minimum = 1)]
    pub page: Option<u32>,
    /// Items per page (default `DEFAULT_PAGE_SIZE`, at most `MAX_PAGE_SIZE`).
    #[param(minimum = 1)]
    pub page_size: Option<u32>,
    /// Admins: list every user's keys.
    pub all: Option<bool>,
}

/// List my API keys (admins: `?all=true` for everyone's).
#[utoipa::path(get, path = "/api/v1/api-keys", tag = "api-keys", security(("bearer" = [])),
    params(KeyListParams), responses((status = 200, body = Page<ApiKey>)))]
async fn list_keys(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<KeyListParams>,
) -> ApiResult<Json<Page<ApiKey>>> {
    let page = PageParams {
        page: q.page,
        page_size: q.page_size,
    }
    .resolve(&state)?;
    let owner = if q.all == Some(true) {
        p.require(Role::Admin)?;
        None
    } else {
        Some(p.user_id)
    };
    Ok(Json(state.meta.list_api_keys(owner, page).await?))
}

/// Create an API key.
#[utoipa::path(post, path = "/api/v1/api-keys", tag = "api-keys", security(("bearer" = [])),
    request_body = NewKey,
    responses((status = 201, body = CreatedKey), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn create_key(
    State(state): State<AppState>,
    p: Principal,
    ApiJson(req): ApiJson<NewKey>,
) -> ApiResult<(StatusCode, Json<CreatedKey>)> {
    if matches!(p.credential, Credential::ApiKey { .. }) {
        return Err(ApiError::forbidden(
            "API keys cannot create API keys; log in with a password",
        ));
    }
    let name = req.name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(ApiError::invalid("name", "must be 1 to 100 characters"));
    }
    let role = req.role.unwrap_or(p.role);
    if role > p.role {
        return Err(ApiError::invalid(
            "role",
            format!("{role} is above your own role ({})", p.role),
        ));
    }
    let key = random_token(API_KEY_PREFIX);
    let prefix: String = key.chars().take(API_KEY_PREFIX.len() + 6).collect();
    let api_key = state
        .meta
        .create_api_key(name, &prefix, &token_hash(&key), role, p.user_id)
        .await?;
    Ok((StatusCode::CREATED, Json(CreatedKey { key, api_key })))
}

/// Revoke an API key (yours; admins: anyone's).
#[utoipa::path(delete, path = "/api/v1/api-keys/{id}", tag = "api-keys", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = ApiKey), (status = 404, body = Problem)))]
async fn revoke_key(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ApiKey>> {
    let owner = (p.role != Role::Admin).then_some(p.user_id);
    Ok(Json(state.meta.revoke_api_key(&id, owner).await?))
}
