//! `/api/v1/auth/*`: login, refresh, logout, who-am-i, change password.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use qb_core::model::{NewAuditEntry, RefreshToken, User, UserUpdate};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::guard::{Credential, Principal};
use super::password;
use super::tokens::{DENY_NS, REFRESH_PREFIX, random_token, session_key, token_hash};
use crate::middleware::client_ip::ClientIp;
use crate::problem::{ApiBytes, ApiError, ApiJson, ApiResult, Problem};
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub refresh_token: String,
    /// Always `bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct LogoutRequest {
    /// Also revoke this refresh token.
    #[serde(default)]
    pub refresh_token: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current_password: String,
    /// At least 12 characters, not the username.
    #[schema(min_length = 12)]
    pub new_password: String,
}

/// Routes that need no authentication.
pub fn public() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(refresh))
}

/// Routes behind the guard.
pub fn protected() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(change_password))
}

async fn audit_login(state: &AppState, who: &str, result: &str, ip: &ClientIp, detail: &str) {
    state.metrics.logins.with_label_values(&[result]).inc();
    let entry = NewAuditEntry {
        actor: who.to_string(),
        action: "auth.login".into(),
        target: Some(who.to_string()),
        result: if result == "ok" { "ok" } else { "denied" }.into(),
        status: None,
        client_ip: Some(ip.0.to_string()),
        detail: Some(detail.into()),
    };
    if let Err(e) = state.meta.append_audit(entry).await {
        tracing::error!(error = %e, "cannot write audit record");
    }
}

async fn verify_blocking(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || password::verify(&password, &hash))
        .await
        .unwrap_or(false)
}

async fn issue_pair(state: &AppState, user: &User, family: &str) -> ApiResult<TokenResponse> {
    let (access, _) = state
        .tokens
        .issue(user, family)
        .map_err(ApiError::internal)?;
    let refresh = random_token(REFRESH_PREFIX);
    state
        .meta
        .insert_refresh_token(&RefreshToken {
            token_hash: token_hash(&refresh),
            user_id: user.id,
            family: family.to_string(),
            expires_at: Utc::now() + chrono::Duration::seconds(state.tokens.refresh_ttl),
            revoked: false,
            rotated_at: None,
        })
        .await?;
    Ok(TokenResponse {
        access_token: access,
        refresh_token: refresh,
        token_type: "bearer".into(),
        expires_in: state.tokens.access_ttl,
    })
}

/// Log in with a username and password.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Tokens", body = TokenResponse),
        (status = 401, description = "Wrong username or password", body = Problem),
        (status = 429, description = "Too many wrong passwords for this name from this address; see Retry-After", body = Problem),
    ))]
async fn login(
    State(state): State<AppState>,
    ip: ClientIp,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Json<TokenResponse>> {
    const WRONG: &str = "invalid username or password";
    let attempt = match state.logins.attempt(&req.username, ip.0).await {
        Ok(a) => a,
        Err(waiting) => {
            audit_login(&state, &req.username, "locked", &ip, "throttled").await;
            return Err(waiting);
        }
    };
    let creds = state.meta.user_credentials(&req.username).await?;
    let Some(creds) = creds else {
        // Spend the same time as a real check so names cannot be probed.
        verify_blocking(req.password, password::dummy_hash().to_string()).await;
        audit_login(
            &state,
            &req.username,
            "failure",
            &ip,
            &format!(
                "unknown user ({} in a row from this address)",
                attempt.failures
            ),
        )
        .await;
        return Err(ApiError::unauthorized(WRONG));
    };
    if !verify_blocking(req.password, creds.password_hash.clone()).await {
        audit_login(
            &state,
            &creds.user.username,
            "failure",
            &ip,
            &format!(
                "wrong password ({} in a row from this address)",
                attempt.failures
            ),
        )
        .await;
        return Err(ApiError::unauthorized(WRONG));
    }
    attempt.succeeded().await?;
    if creds.user.disabled {
        audit_login(
            &state,
            &creds.user.username,
            "failure",
            &ip,
            "user disabled",
        )
        .await;
        return Err(ApiError::unauthorized("user disabled"));
    }
    let family = uuid::Uuid::new_v4().to_string();
    let pair = issue_pair(&state, &creds.user, &family).await?;
    audit_login(&state, &creds.user.username, "ok", &ip, "logged in").await;
    Ok(Json(pair))
}

/// Trade a refresh token for a new token pair (the old refresh token is
/// spent). Presenting a spent token revokes the whole session, except within
/// `auth.refresh_reuse_grace_secs` of its rotation while the session is
/// still alive.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens", body = TokenResponse),
        (status = 401, description = "Unknown, expired or reused refresh token", body = Problem),
    ))]
async fn refresh(
    State(state): State<AppState>,
    ip: ClientIp,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> ApiResult<Json<TokenResponse>> {
    let hash = token_hash(&req.refresh_token);
    let token = state
        .meta
        .refresh_token(&hash)
        .await?
        .ok_or_else(|| ApiError::unauthorized("unknown refresh token"))?;
    let fresh = !token.revoked && state.meta.revoke_refresh_token(&hash).await?;
    // A spent token presented again within seconds of its rotation, while
    // its session is alive: a client that lost the answer to its refresh
    // (a page reloaded mid-request). It gets a new pair of the same family.
    let grace = i64::try_from(state.config.auth.refresh_reuse_grace_secs).unwrap_or(i64::MAX);
    let lost_answer = !fresh
        && grace > 0
        && state
            .meta
            .refresh_token(&hash)
            .await?
            .and_then(|t| t.rotated_at)
            .is_some_and(|at| Utc::now() - at <= chrono::Duration::seconds(grace));
    if !fresh && !lost_answer {
        // A spent token came back: someone else may hold the newer one.
        state.meta.revoke_refresh_family(&token.family).await?;
        let _ = state
            .meta
            .append_audit(NewAuditEntry {
                actor: format!("user#{}", token.user_id),
                action: "auth.refresh".into(),
                result: "denied".into(),
                client_ip: Some(ip.0.to_string()),
                detail: Some("refresh token reuse; session family revoked".into()),
                ..Default::default()
            })
            .await;
        return Err(ApiError::unauthorized(
            "refresh token already used; this session was revoked, log in again",
        ));
    }
    if token.expires_at <= Utc::now() {
        return Err(ApiError::unauthorized("refresh token expired"));
    }
    let user = state
        .meta
        .user_by_id(token.user_id)
        .await?
        .filter(|u| !u.disabled)
        .ok_or_else(|| ApiError::unauthorized("user disabled or removed"))?;
    Ok(Json(issue_pair(&state, &user, &token.family).await?))
}

/// End the current session: its access tokens and its refresh tokens
/// (the refresh token need not be sent; one of another session of mine,
/// if sent, is revoked too).
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    request_body(content = LogoutRequest, description = "Optional"),
    security(("bearer" = [])),
    responses((status = 204, description = "Logged out")))]
async fn logout(
    State(state): State<AppState>,
    principal: Principal,
    ApiBytes(body): ApiBytes,
) -> ApiResult<StatusCode> {
    let req: LogoutRequest = if body.iter().all(u8::is_ascii_whitespace) {
        LogoutRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::invalid("body", format!("not a logout request: {e}")))?
    };
    if let Credential::Token { jti, exp, sid } = &principal.credential {
        let ttl = (*exp - Utc::now().timestamp()).max(1) as u64 + 10;
        state
            .kv
            .put(DENY_NS, jti, b"1", Some(Duration::from_secs(ttl)))
            .await?;
        // Every access token of the session, for as long as one can live.
        let session_ttl = state.tokens.access_ttl.max(1) as u64 + 10;
        state
            .kv
            .put(
                DENY_NS,
                &session_key(sid),
                b"1",
                Some(Duration::from_secs(session_ttl)),
            )
            .await?;
        state.meta.revoke_refresh_family(sid).await?;
    }
    if let Some(t) = req.refresh_token {
        let hash = token_hash(&t);
        if let Some(rt) = state.meta.refresh_token(&hash).await?
            && rt.user_id == principal.user_id
        {
            state.meta.revoke_refresh_family(&rt.family).await?;
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct Me {
    #[serde(flatten)]
    pub user: User,
    /// `token` or `api_key`.
    pub auth: String,
}

/// Who am I.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Me)))]
async fn me(State(state): State<AppState>, principal: Principal) -> ApiResult<Json<Me>> {
    let mut user = state
        .meta
        .user_by_id(principal.user_id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("user no longer exists"))?;
    user.role = principal.role;
    let auth = match principal.credential {
        Credential::Token { .. } => "token",
        Credential::ApiKey { .. } => "api_key",
    };
    Ok(Json(Me {
        user,
        auth: auth.into(),
    }))
}

/// Change my password; every session of mine ends (log in again).
#[utoipa::path(post, path = "/api/v1/auth/password", tag = "auth", security(("bearer" = [])),
    request_body = PasswordChange,
    responses((status = 204, description = "Changed"), (status = 422, body = Problem),
        (status = 429, description = "Too many wrong current passwords from this address; see Retry-After", body = Problem)))]
async fn change_password(
    State(state): State<AppState>,
    principal: Principal,
    ip: ClientIp,
    ApiJson(req): ApiJson<PasswordChange>,
) -> ApiResult<StatusCode> {
    // A stolen session must not become a way to guess the password.
    let attempt = state.logins.attempt(&principal.username, ip.0).await?;
    let creds = state
        .meta
        .user_credentials(&principal.username)
        .await?
        .ok_or_else(|| ApiError::unauthorized("user no longer exists"))?;
    if !verify_blocking(req.current_password, creds.password_hash).await {
        return Err(ApiError::invalid("current_password", "does not match"));
    }
    attempt.succeeded().await?;
    password::check_policy(&principal.username, &req.new_password)
        .map_err(|e| ApiError::invalid("new_password", e))?;
    let new = req.new_password;
    let hash = tokio::task::spawn_blocking(move || password::hash(&new))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    // Ends every session of mine, this one included (the store moves the
    // token version and revokes the refresh tokens).
    state
        .meta
        .update_user(
            &principal.username,
            UserUpdate {
                password_hash: Some(hash),
                ..Default::default()
            },
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
