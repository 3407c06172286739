//! The node's roles decide what it serves over HTTP: `/health`, `/ready`
//! and `/metrics` everywhere; trading (`/api/v1/trading/...`,
//! `/api/v1/strategies/...`) on nodes with the `trader` role; everything
//! else (the rest of the API, `/ws`, the dashboard) on nodes with the `api`
//! role. Anything else answers 503 `role-elsewhere`, naming the role that
//! serves it, so a proxy can try the next node (the shipped nginx config
//! does). One box runs every role and serves everything.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use qb_core::config::NodeRole;

use crate::state::AppState;

/// The role that serves `path`, or None for the probes every node answers.
pub fn role_for(path: &str) -> Option<NodeRole> {
    let under = |prefix: &str| {
        path == prefix
            || path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    if matches!(path, "/health" | "/ready" | "/metrics") {
        None
    } else if under("/api/v1/trading") || under("/api/v1/strategies") {
        Some(NodeRole::Trader)
    } else {
        Some(NodeRole::Api)
    }
}

pub async fn role_gate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match role_for(req.uri().path()) {
        Some(role) if !state.config.runs(role) => state.not_served_here(role).into_response(),
        _ => next.run(req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_roles() {
        assert_eq!(role_for("/health"), None);
        assert_eq!(role_for("/metrics"), None);
        assert_eq!(role_for("/api/v1/trading/orders"), Some(NodeRole::Trader));
        assert_eq!(role_for("/api/v1/trading"), Some(NodeRole::Trader));
        assert_eq!(
            role_for("/api/v1/strategies/x/stop"),
            Some(NodeRole::Trader)
        );
        assert_eq!(role_for("/api/v1/tradingx"), Some(NodeRole::Api));
        assert_eq!(role_for("/api/v1/backtests"), Some(NodeRole::Api));
        assert_eq!(role_for("/ws"), Some(NodeRole::Api));
        assert_eq!(role_for("/"), Some(NodeRole::Api));
    }
}
