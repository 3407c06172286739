//! `/api/v1/users`: user management (admin only).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use qb_core::model::{Page, Role, User, UserUpdate};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::PageParams;
use crate::auth::{Principal, password};
use crate::problem::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, Problem};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, update_user, delete_user))
}

/// Usernames: 3 to 64 of `A-Z a-z 0-9 . _ -`.
pub fn check_username(name: &str) -> Result<(), String> {
    let ok_len = (3..=64).contains(&name.len());
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok_len && ok_chars {
        Ok(())
    } else {
        Err("must be 3 to 64 characters of A-Z, a-z, 0-9, '.', '_' or '-'".into())
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// 3 to 64 of `A-Z a-z 0-9 . _ -`.
    #[schema(min_length = 3, max_length = 64, pattern = r"^[A-Za-z0-9._-]{3,64}$")]
    pub username: String,
    /// At least 12 characters, not the username.
    #[schema(min_length = 12)]
    pub password: String,
    pub role: Role,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    /// Sets a new password (and revokes the user's refresh tokens): at
    /// least 12 characters, not the username.
    #[schema(min_length = 12)]
    pub password: Option<String>,
    /// The feed permission: may post live ticks and run replays (they
    /// drive paper fills). Admins have it whatever this says.
    pub feed: Option<bool>,
}

/// List users.
#[utoipa::path(get, path = "/api/v1/users", tag = "users", security(("bearer" = [])),
    params(PageParams), responses((status = 200, body = Page<User>), (status = 403, body = Problem)))]
async fn list_users(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(page): ApiQuery<PageParams>,
) -> ApiResult<Json<Page<User>>> {
    p.require(Role::Admin)?;
    Ok(Json(state.meta.list_users(page.resolve(&state)?).await?))
}

async fn hash_password(username: &str, password: String) -> ApiResult<String> {
    password::check_policy(username, &password).map_err(|e| ApiError::invalid("password", e))?;
    tokio::task::spawn_blocking(move || password::hash(&password))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)
}

/// Create a user.
#[utoipa::path(post, path = "/api/v1/users", tag = "users", security(("bearer" = [])),
    request_body = NewUser,
    responses((status = 201, body = User), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn create_user(
    State(state): State<AppState>,
    p: Principal,
    ApiJson(req): ApiJson<NewUser>,
) -> ApiResult<(StatusCode, Json<User>)> {
    p.require(Role::Admin)?;
    check_username(&req.username).map_err(|e| ApiError::invalid("username", e))?;
    let hash = hash_password(&req.username, req.password).await?;
    let user = state
        .meta
        .create_user(&req.username, &hash, req.role)
        .await?;
    Ok((StatusCode::CREATED, Json(user)))
}

/// Get one user.
#[utoipa::path(get, path = "/api/v1/users/{username}", tag = "users", security(("bearer" = [])),
    params(("username" = String, Path)), responses((status = 200, body = User), (status = 404, body = Problem)))]
async fn get_user(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(username): ApiPath<String>,
) -> ApiResult<Json<User>> {
    p.require(Role::Admin)?;
    let creds = state
        .meta
        .user_credentials(&username)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {username:?} not found")))?;
    Ok(Json(creds.user))
}

/// Change a user's role, status, password or feed permission.
#[utoipa::path(patch, path = "/api/v1/users/{username}", tag = "users", security(("bearer" = [])),
    params(("username" = String, Path)), request_body = UserPatch,
    responses((status = 200, body = User), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn update_user(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(username): ApiPath<String>,
    ApiJson(req): ApiJson<UserPatch>,
) -> ApiResult<Json<User>> {
    p.require(Role::Admin)?;
    let password_hash = match req.password {
        Some(pw) => Some(hash_password(&username, pw).await?),
        None => None,
    };
    // The store ends the user's sessions on a change of role, status or
    // password (token version, refresh tokens); the feed permission is
    // read on every request and ends none.
    let user = state
        .meta
        .update_user(
            &username,
            UserUpdate {
                role: req.role,
                disabled: req.disabled,
                password_hash,
                feed: req.feed,
            },
        )
        .await?;
    Ok(Json(user))
}

/// Delete a user (never the last admin).
#[utoipa::path(delete, path = "/api/v1/users/{username}", tag = "users", security(("bearer" = [])),
    params(("username" = String, Path)),
    responses((status = 204), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn delete_user(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(username): ApiPath<String>,
) -> ApiResult<StatusCode> {
    p.require(Role::Admin)?;
    state.meta.delete_user(&username).await?;
    Ok(StatusCode::NO_CONTENT)
}
