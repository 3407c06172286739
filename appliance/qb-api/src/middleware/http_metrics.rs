//! Request counting, latency histograms and one log line per request. The
//! `route` label is the route template (`/api/v1/jobs/{id}`), never the raw
//! path, and `method` one of the standard methods or `OTHER`, so label
//! cardinality stays bounded whatever clients send. Query strings and headers are
//! never logged: they may carry credentials.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use crate::state::AppState;

/// The `method` label: the standard methods by name, anything else (a
/// client can invent any token) as `OTHER`, so no caller can add series.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "OTHER",
    }
}

pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = method_label(req.method());
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
        .with_label_values(&[method, &route, &status.to_string()])
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
