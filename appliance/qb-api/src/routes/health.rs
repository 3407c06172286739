//! Liveness, readiness and metrics.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::sync::atomic::Ordering;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use qb_core::config::NodeRole;

use crate::problem::{ApiError, Problem};
use crate::state::AppState;
use sha2::Digest;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(ready))
        .routes(routes!(metrics))
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub version: String,
}

/// Liveness: the process answers. Checks no dependency.
#[utoipa::path(get, path = "/health", tag = "system", responses((status = 200, body = Health)))]
async fn health(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: state.version.into(),
    })
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: String,
    /// What is not ready yet; empty when ready.
    pub reasons: Vec<String>,
    /// This node's name (`cluster.node_id`, else the host name).
    pub node: String,
    /// The roles this node runs (`api`, `worker`, `scheduler`, `trader`);
    /// readiness checks only what they need.
    pub roles: Vec<String>,
    /// Which backend serves each store.
    pub backends: qb_core::Backends,
    /// On trader nodes: `held` (this node trades) or `standby` (another
    /// trader holds the desk lease; this one takes over if it goes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desk: Option<String>,
    /// On trader nodes: the node holding the desk, as last seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desk_holder: Option<String>,
}

/// Readiness: stores open and migrated, not shutting down, and what the
/// node's roles run: job workers (`worker`, and the `trader`'s trading
/// queue), the scheduler (`scheduler`), the trading desk (`trader`). 503
/// with reasons otherwise.
#[utoipa::path(get, path = "/ready", tag = "system", responses(
    (status = 200, body = Readiness), (status = 503, body = Readiness)))]
async fn ready(State(state): State<AppState>) -> Response {
    let mut reasons = Vec::new();
    let r = &state.readiness;
    if r.shutting_down.load(Ordering::Relaxed) {
        reasons.push("shutting down".to_string());
    }
    match state.meta.schema_version().await {
        Ok((applied, expected)) if applied == expected => {}
        Ok((applied, expected)) => reasons.push(format!(
            "metadata schema at version {applied}, this build needs {expected}"
        )),
        Err(e) => reasons.push(format!("metadata store unavailable: {e}")),
    }
    if let Err(e) = state.ticks.ping().await {
        reasons.push(format!("tick store unavailable: {e}"));
    }
    if let Err(e) = state.kv.ping().await {
        reasons.push(format!("hot-state store unavailable: {e}"));
    }
    if let Err(e) = state.pubsub.status() {
        reasons.push(format!("event fan-out unavailable: {e}"));
    }
    match r.workers() {
        None => reasons.push("job workers not started".into()),
        Some((live, expected)) if live < expected => {
            reasons.push(format!("{live} of {expected} job workers running"))
        }
        Some(_) => {}
    }
    let c = &state.config;
    if c.runs(NodeRole::Scheduler) && !r.scheduler_started.load(Ordering::Relaxed) {
        reasons.push("scheduler not started".into());
    }
    // A standby trader is ready: ready to take over.
    let desk = state.trading.as_ref().map(|t| {
        if t.held().is_some() {
            "held"
        } else {
            "standby"
        }
        .to_string()
    });
    let desk_holder = state.trading.as_ref().and_then(|t| t.holder());
    let (status, code) = if reasons.is_empty() {
        ("ready", StatusCode::OK)
    } else {
        ("not_ready", StatusCode::SERVICE_UNAVAILABLE)
    };
    (
        code,
        Json(Readiness {
            status: status.into(),
            reasons,
            node: state.node.node.clone(),
            roles: c.roles().iter().map(|r| r.to_string()).collect(),
            backends: (*state.backends).clone(),
            desk,
            desk_holder,
        }),
    )
        .into_response()
}

/// Marks requests that came in on `metrics.listen`, the listener serving
/// only `/metrics`.
#[derive(Clone, Copy)]
pub struct MetricsListener;

/// Whether this request may read the metrics: on `metrics.listen` when it
/// is set (and nowhere else), with `Authorization: Bearer <metrics.token>`
/// when a token is set.
fn metrics_allowed(state: &AppState, req: &axum::http::request::Parts) -> Result<(), ApiError> {
    let m = &state.config.metrics;
    if m.listen.is_some() && req.extensions.get::<MetricsListener>().is_none() {
        return Err(ApiError::not_found(
            "/metrics is served on metrics.listen only",
        ));
    }
    if let Some(token) = &m.token {
        let given = req
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        // Compared as digests: equal-length inputs, no early exit on a
        // matching prefix.
        let digest = |s: &str| sha2::Sha256::digest(s.as_bytes());
        if digest(given) != digest(token.expose()) {
            return Err(ApiError::unauthorized(
                "/metrics needs Authorization: Bearer <metrics.token>",
            ));
        }
    }
    Ok(())
}

/// Prometheus text exposition. Where `metrics.listen` is set it is served
/// there only; with `metrics.token` it needs that bearer token.
#[utoipa::path(get, path = "/metrics", tag = "system", responses(
    (status = 200, description = "Prometheus text format", content_type = "text/plain"),
    (status = 401, description = "metrics.token is set and was not given", body = Problem),
    (status = 404, description = "Served on metrics.listen only", body = Problem)))]
pub(crate) async fn metrics(
    State(state): State<AppState>,
    parts: axum::http::request::Parts,
) -> Response {
    if let Err(e) = metrics_allowed(&state, &parts) {
        return e.into_response();
    }
    if let Ok(stats) = state.jobs.stats(qb_jobs::QUEUES).await {
        for s in stats {
            state
                .metrics
                .queue_length
                .with_label_values(&[&s.queue])
                .set(s.queued as i64);
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}
