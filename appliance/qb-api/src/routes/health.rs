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

use crate::state::AppState;

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

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "system", responses(
    (status = 200, description = "Prometheus text format", content_type = "text/plain")))]
async fn metrics(State(state): State<AppState>) -> Response {
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
