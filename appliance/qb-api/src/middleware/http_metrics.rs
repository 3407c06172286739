//! Request counting, latency histograms and one log line per request. The
//! `route` label is the route template (`/api/v1/jobs/{id}`), never the raw
//! path, so label cardinality stays bounded. Query strings and headers are
//! never logged: they may carry credentials.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::state::AppState;

pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let resp = next.run(req).await;
    let elapsed = start.elapsed();
    let status = resp.status().as_u16();
    state
        .metrics
        .http_requests
        .with_label_values(&[method.as_str(), &route, &status.to_string()])
        .inc();
    state
        .metrics
        .http_duration
        .with_label_values(&[&route])
        .observe(elapsed.as_secs_f64());
    tracing::debug!(
        method = %method, route = %route, status,
        micros = elapsed.as_micros() as u64, "request"
    );
    resp
}
