//! The OpenAPI 3.1 document's frame: info, tags and the bearer scheme. Paths
//! and schemas come from the handlers' annotations.

use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "quantbox",
        description = "Self-hosted quant trading backend. Errors are RFC 9457 problem documents \
                       (application/problem+json). List endpoints take page and page_size.",
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Log in, refresh, log out"),
        (name = "users", description = "User management (admin)"),
        (name = "api-keys", description = "Keys for programs"),
        (name = "jobs", description = "Job queues"),
        (name = "schedules", description = "Cron schedules"),
        (name = "audit", description = "Audit log (admin)"),
        (name = "market", description = "Market data: ingest, imports, ticks, bars, exports"),
        (name = "plugins", description = "Strategy plugins: upload, list, inspect, delete"),
        (name = "backtests", description = "Backtests on the backtest queue: start, follow, results, reports"),
        (name = "instruments", description = "Instrument registry"),
        (name = "system", description = "Health, readiness, metrics, host figures"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT or qbk_ API key")
                    .description(Some("Access token from /api/v1/auth/login, or an API key"))
                    .build(),
            ),
        );
    }
}
