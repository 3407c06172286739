//! The guard in front of every `/api/v1` route except login and refresh:
//! authenticates the caller, enforces "viewers never mutate", and writes an
//! audit record for every mutating call, allowed or not.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use qb_core::model::{NewAuditEntry, Role};

use crate::auth::tokens::{API_KEY_PREFIX, DENY_NS, session_key, token_hash};
use crate::middleware::client_ip::ClientIp;
use crate::problem::{ApiError, ApiResult};
use crate::state::AppState;

/// How the caller proved who they are.
#[derive(Debug, Clone, PartialEq)]
pub enum Credential {
    /// An access token with its id, expiry (Unix seconds) and session.
    Token { jti: String, exp: i64, sid: String },
    /// An API key with its id and name.
    ApiKey { id: String, name: String },
}

/// The authenticated caller, available to handlers as an extension.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: i64,
    pub username: String,
    /// Effective role: the user's, or the API key's (never above the user's).
    pub role: Role,
    /// The user's own role: what an API key reaches (accounts, the feed)
    /// is its owner's, within the key's `role`.
    pub user_role: Role,
    /// The user's feed permission ([`qb_core::model::User::feed`]).
    pub feed: bool,
    pub credential: Credential,
}

impl Principal {
    /// 403 unless the caller has at least `role`.
    pub fn require(&self, role: Role) -> ApiResult<()> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this action needs the {role} role; you have {}",
                self.role
            )))
        }
    }

    /// 403 unless the caller is an admin or `owner` (as [`Principal::actor`]
    /// recorded it: a username, or `user/apikey:name`, which any credential
    /// of that user owns; `None` for objects the system made, which only
    /// admins may change).
    /// Research objects are read by the whole team; this guards cancelling,
    /// deleting and changing them (`SECURITY.md`).
    pub fn require_owner(&self, owner: Option<&str>, what: &str) -> ApiResult<()> {
        self.require(Role::Trader)?;
        let user_of = |o: &str| o.split("/apikey:").next().unwrap_or(o).to_string();
        if self.role == Role::Admin
            || owner.is_some_and(|o| user_of(o).eq_ignore_ascii_case(&self.username))
        {
            return Ok(());
        }
        Err(ApiError::forbidden(match owner {
            Some(o) => format!("{what} belongs to {o}; only its owner or an admin may change it"),
            None => format!("{what} was made by the system; only an admin may change it"),
        }))
    }

    /// How the audit log names the caller.
    pub fn actor(&self) -> String {
        match &self.credential {
            Credential::Token { .. } => self.username.clone(),
            Credential::ApiKey { name, .. } => format!("{}/apikey:{name}", self.username),
        }
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Principal {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("authentication required"))
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(v.trim());
    }
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Resolves a bearer credential into a principal.
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> ApiResult<Principal> {
    let token = bearer(headers).ok_or_else(|| {
        ApiError::unauthorized("authentication required: send Authorization: Bearer <token>")
    })?;
    if token.starts_with(API_KEY_PREFIX) {
        let (key, user) = state
            .meta
            .api_key_by_hash(&token_hash(token))
            .await?
            .ok_or_else(|| ApiError::unauthorized("API key unknown or revoked"))?;
        if user.disabled {
            return Err(ApiError::unauthorized("the key's owner is disabled"));
        }
        return Ok(Principal {
            user_id: user.id,
            username: user.username,
            role: key.role.min(user.role),
            user_role: user.role,
            feed: user.feed,
            credential: Credential::ApiKey {
                id: key.id,
                name: key.name,
            },
        });
    }
    let claims = state.tokens.verify(token).map_err(ApiError::unauthorized)?;
    if state.kv.get(DENY_NS, &claims.jti).await?.is_some()
        || state
            .kv
            .get(DENY_NS, &session_key(&claims.sid))
            .await?
            .is_some()
    {
        return Err(ApiError::unauthorized("token revoked (logged out)"));
    }
    let user_id: i64 = claims
        .sub
        .parse()
        .map_err(|_| ApiError::unauthorized("token invalid"))?;
    let user = state
        .meta
        .user_by_id(user_id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("user no longer exists"))?;
    if user.disabled {
        return Err(ApiError::unauthorized("user disabled"));
    }
    if claims.tv != user.token_version {
        return Err(ApiError::unauthorized(
            "session ended: the user's role, status or password changed; log in again",
        ));
    }
    Ok(Principal {
        user_id,
        username: user.username,
        role: user.role,
        user_role: user.role,
        feed: user.feed,
        credential: Credential::Token {
            jti: claims.jti,
            exp: claims.exp,
            sid: claims.sid,
        },
    })
}

fn is_mutating(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Routes a viewer may call with a mutating method: its own session.
fn viewer_may_mutate(route: &str) -> bool {
    matches!(route, "/api/v1/auth/logout" | "/api/v1/auth/password")
}

/// Put into a response's extensions by a handler: a detail for the audit
/// record of the request (e.g. the hash of an uploaded plugin).
#[derive(Debug, Clone)]
pub struct AuditNote(pub String);

/// Middleware: authenticate, check the viewer rule, audit mutations.
pub async fn guard(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| req.uri().path().to_string());
    let path = req.uri().path().to_string();
    let ip = req.extensions().get::<ClientIp>().map(|c| c.0.to_string());

    let principal = match authenticate(&state, req.headers()).await {
        Ok(p) => p,
        Err(e) => {
            if is_mutating(&method) {
                audit(
                    &state,
                    "anonymous".into(),
                    &method,
                    &route,
                    &path,
                    401,
                    ip,
                    Some(e.detail.clone()),
                )
                .await;
            }
            return e.into_response();
        }
    };
    if is_mutating(&method) && principal.role == Role::Viewer && !viewer_may_mutate(&route) {
        let e = ApiError::forbidden("viewers cannot change anything");
        audit(
            &state,
            principal.actor(),
            &method,
            &route,
            &path,
            403,
            ip,
            Some(e.detail.clone()),
        )
        .await;
        return e.into_response();
    }
    let actor = principal.actor();
    req.extensions_mut().insert(principal);
    let resp = next.run(req).await;
    if is_mutating(&method) {
        let note = resp.extensions().get::<AuditNote>().map(|n| n.0.clone());
        audit(
            &state,
            actor,
            &method,
            &route,
            &path,
            resp.status().as_u16(),
            ip,
            note,
        )
        .await;
    }
    resp
}

#[allow(clippy::too_many_arguments)]
async fn audit(
    state: &AppState,
    actor: String,
    method: &Method,
    route: &str,
    path: &str,
    status: u16,
    ip: Option<String>,
    detail: Option<String>,
) {
    let result = match status {
        200..=399 => "ok",
        401 | 403 => "denied",
        _ => "error",
    };
    let entry = NewAuditEntry {
        actor,
        action: format!("{method} {route}"),
        target: Some(path.to_string()),
        result: result.into(),
        status: Some(status),
        client_ip: ip,
        detail,
    };
    if let Err(e) = state.meta.append_audit(entry).await {
        tracing::error!(error = %e, "cannot write audit record");
    }
}
