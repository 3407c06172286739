//! The HTTP surface of quantbox. Only this crate knows about HTTP and JSON
//! wire formats: handlers translate between requests and the `qb-core`
//! seams, and every error leaves as `application/problem+json`.
//!
//! Layers, outermost first: request metrics and log, CORS, compression,
//! security headers, body deadline, body limit, client address, rate limit; then per route
//! group the auth guard (authentication, viewer rule, audit).

pub mod auth;
pub mod middleware;
pub mod openapi;
pub mod problem;
pub mod routes;
pub mod server;
pub mod state;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::from_fn_with_state;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

pub use state::{AppState, Deps, Readiness};

pub use qb_core::market::TICKS_TOPIC;

use crate::problem::ApiError;

/// Content-Security-Policy for everything served, the dashboard included:
/// nothing from other origins, no inline scripts. `connect-src 'self'`
/// covers the page's own `/ws` (CSP 3 matches `ws:`/`wss:` of the same
/// host and port) and nothing else.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; \
     frame-ancestors 'none'; base-uri 'self'; form-action 'self'; object-src 'none'";

/// Every route with its OpenAPI description.
fn api_routes(state: &AppState) -> OpenApiRouter<AppState> {
    let protected = OpenApiRouter::new()
        .merge(auth::routes::protected())
        .merge(routes::users::router())
        .merge(routes::keys::router())
        .merge(routes::jobs::router())
        .merge(routes::schedules::router())
        .merge(routes::audit::router())
        .merge(routes::system::router())
        .merge(routes::backups::router())
        .merge(routes::instruments::router())
        .merge(routes::market::router(state))
        .merge(routes::plugins::router(state))
        .merge(routes::backtests::router())
        .merge(routes::trading::router())
        .merge(routes::strategies::router())
        .layer(from_fn_with_state(state.clone(), auth::guard::guard));
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(routes::health::router())
        .merge(auth::routes::public())
        .merge(protected)
}

/// The API's routes and their finished OpenAPI document.
fn api(state: &AppState) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = api_routes(state).split_for_parts();
    openapi::finish(&mut doc, state.config.max_page_size);
    (router, doc)
}

/// The OpenAPI document, as served at `/api/openapi.json`.
pub fn openapi_document(state: &AppState) -> utoipa::openapi::OpenApi {
    api(state).1
}

fn cors(origins: &[String]) -> CorsLayer {
    let base = CorsLayer::new()
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("x-api-key"),
        ])
        .max_age(Duration::from_secs(600));
    if origins.iter().any(|o| o == "*") {
        // A wildcard never goes with credentials.
        return base.allow_origin(AllowOrigin::any());
    }
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    base.allow_origin(AllowOrigin::list(list))
        .allow_credentials(true)
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "this route does not accept that method",
    )
}

/// The whole application.
pub fn app(state: AppState) -> Router {
    let (router, api) = api(&state);
    let c = &state.config;
    let mut router = router
        .merge(SwaggerUi::new("/api/docs").url("/api/openapi.json", api))
        .route("/ws", axum::routing::get(routes::ws::handler))
        .fallback(routes::dashboard::serve)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn_with_state(
            state.clone(),
            middleware::roles::role_gate,
        ))
        .layer(from_fn_with_state(
            state.clone(),
            middleware::rate_limit::rate_limit,
        ))
        .layer(from_fn_with_state(
            state.clone(),
            middleware::client_ip::client_ip,
        ))
        .layer(DefaultBodyLimit::max(c.limits.json_bytes))
        .layer(from_fn_with_state(
            state.clone(),
            middleware::body_deadline::body_deadline,
        ));
    let headers: [(&str, &str); 5] = [
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "strict-origin-when-cross-origin"),
        ("cross-origin-opener-policy", "same-origin"),
        ("content-security-policy", CSP),
    ];
    for (name, value) in headers {
        router = router.layer(SetResponseHeaderLayer::if_not_present(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        ));
    }
    if c.behind_tls {
        router = router.layer(SetResponseHeaderLayer::if_not_present(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        ));
    }
    router
        .layer(CompressionLayer::new())
        .layer(cors(&c.cors_origins))
        .layer(from_fn_with_state(
            state.clone(),
            middleware::http_metrics::track,
        ))
        .with_state(state)
}

/// What `metrics.listen` serves: `/metrics` alone.
pub fn metrics_app(state: AppState) -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(routes::health::metrics))
        .layer(axum::Extension(routes::health::MetricsListener))
        .with_state(state)
}

/// Periodic upkeep: strategy and data-disk gauges every 5 s, rate-limiter
/// buckets every minute.
pub fn spawn_housekeeping(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        for n in 0u64.. {
            tick.tick().await;
            if let Some(s) = state.trading.as_ref().and_then(|t| t.strategies()) {
                s.refresh_metrics().await;
            }
            let dir = state.config.data_dir.clone();
            if let Ok((total, available)) =
                tokio::task::spawn_blocking(move || routes::system::data_disk(&dir)).await
            {
                state.metrics.data_disk_total.set(total as i64);
                state.metrics.data_disk_available.set(available as i64);
            }
            if n % 12 == 0 {
                state.limits.shrink();
            }
        }
    })
}
