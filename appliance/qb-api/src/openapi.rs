//! The OpenAPI 3.1 document: its frame (info, tags, the bearer scheme) and,
//! once the handlers' annotations have added paths and schemas, the
//! answers every operation shares ([`finish`]).
//!
//! The document is the API's contract, checked against the running server
//! by schemathesis in the integration tests (`tests/it/openapi_contract.rs`):
//! every status an operation can answer is declared, problem documents as
//! `application/problem+json`.

use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{Object, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr};

use crate::problem::PROBLEM_JSON;

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

/// Bytes of a file (a body or a download that is not JSON or text).
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
pub struct Binary(Vec<u8>);

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

/// The answers that come from the layers and extractors around the
/// handlers rather than from one handler: `(status, component name, when)`.
const SHARED: [(&str, &str, &str); 10] = [
    (
        "400",
        "BadRequest",
        "Malformed: a query string, path segment or body that does not parse",
    ),
    (
        "401",
        "Unauthorized",
        "No credential, or one that is unknown, expired or revoked",
    ),
    (
        "403",
        "Forbidden",
        "The caller's role or account grants do not allow this",
    ),
    (
        "404",
        "NotFound",
        "Nothing of that name or id (or a file not there)",
    ),
    (
        "408",
        "RequestTimeout",
        "The body did not arrive within http.body_timeout_secs of the headers",
    ),
    (
        "413",
        "PayloadTooLarge",
        "The body is over the size limit (limits.json_bytes, limits.upload_bytes, the plugin size limit, market.max_ingest_rows)",
    ),
    (
        "415",
        "UnsupportedMediaType",
        "The body's Content-Type is not one the operation reads",
    ),
    (
        "422",
        "Unprocessable",
        "A value out of range or of the wrong kind; `errors` names the field",
    ),
    (
        "429",
        "TooManyRequests",
        "Over the client's rate limit (for login: too many wrong passwords for this name from this address; for jobs: too many queued); see Retry-After",
    ),
    (
        "503",
        "Unavailable",
        "This node does not serve the call (another node's role, a standby trader, a busy plugin engine); try another node",
    ),
];

fn problem_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}

/// Whether a response is a problem document: content whose schema is the
/// `Problem` component.
fn is_problem(r: &Response) -> bool {
    r.content.values().any(|c| {
        matches!(&c.schema, Some(RefOr::Ref(r)) if r.ref_location.ends_with("/schemas/Problem"))
    })
}

/// Which of the shared answers `op` on `path` can give.
fn shared_statuses(path: &str, op: &Operation) -> Vec<&'static str> {
    let params = op.parameters.as_deref().unwrap_or_default();
    let has_query = params
        .iter()
        .any(|p| matches!(p.parameter_in, ParameterIn::Query));
    let has_path = params
        .iter()
        .any(|p| matches!(p.parameter_in, ParameterIn::Path));
    let has_body = op.request_body.is_some();
    let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let mut out = Vec::new();
    if has_query || has_path || has_body {
        // A query, path segment or body that does not parse.
        out.push("400");
    }
    if has_query || has_body {
        out.push("422");
    }
    if secured {
        // The guard: authentication, then "viewers never mutate".
        out.extend(["401", "403"]);
    }
    if has_path {
        out.push("404");
    }
    if has_body {
        // The body deadline, the body limits, the content type.
        out.extend(["408", "413", "415"]);
    }
    // The rate limiter covers everything under /api/ (login included).
    if path.starts_with("/api/") {
        out.push("429");
    }
    // The role gate: every node answers the probes; the rest may be
    // another node's.
    if !matches!(path, "/health" | "/ready" | "/metrics") {
        out.push("503");
    }
    out
}

/// Completes the document the routes produced:
/// - problem answers declared by the handlers (`body = Problem`) are
///   `application/problem+json`, as [`crate::problem::ApiError`] sends them;
/// - every operation declares the answers of the layers around it (the
///   guard's 401/403, the rate limiter's 429, the body deadline's 408 and
///   the body limit's 413, the
///   extractors' 400/415/422, the role gate's 503, 404 for a path naming
///   nothing), as shared response components;
/// - `page_size` says the configured maximum.
pub fn finish(doc: &mut utoipa::openapi::OpenApi, max_page_size: u32) {
    let components = doc.components.get_or_insert_with(Default::default);
    for (_, name, description) in SHARED {
        let mut r = problem_response(description);
        if name == "TooManyRequests" {
            r.headers.insert(
                "Retry-After".into(),
                utoipa::openapi::HeaderBuilder::new()
                    .schema(Object::with_type(Type::Integer))
                    .description(Some("Seconds to wait"))
                    .build(),
            );
        }
        if name == "Unauthorized" {
            r.headers.insert(
                "WWW-Authenticate".into(),
                utoipa::openapi::HeaderBuilder::new()
                    .schema(Object::with_type(Type::String))
                    .build(),
            );
        }
        components.responses.insert(name.into(), RefOr::T(r));
    }
    for (path, item) in doc.paths.paths.iter_mut() {
        let ops = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for op in ops.into_iter().flatten() {
            for response in op.responses.responses.values_mut() {
                if let RefOr::T(r) = response
                    && is_problem(r)
                    && let Some(content) = r.content.shift_remove("application/json")
                {
                    r.content.insert(PROBLEM_JSON.into(), content);
                }
            }
            for status in shared_statuses(path, op) {
                let (_, name, _) = SHARED.iter().find(|(s, ..)| *s == status).unwrap();
                // A handler's own problem answer without words of its own
                // says what the shared one says.
                let replace = match op.responses.responses.get(status) {
                    None => true,
                    Some(RefOr::T(r)) => r.description.is_empty() && is_problem(r),
                    Some(RefOr::Ref(_)) => false,
                };
                if replace {
                    op.responses
                        .responses
                        .insert(status.into(), RefOr::Ref(Ref::from_response_name(*name)));
                }
            }
            for p in op.parameters.iter_mut().flatten() {
                if p.name == "page_size"
                    && let Some(RefOr::T(Schema::Object(o))) = &mut p.schema
                {
                    o.maximum = Some(utoipa::Number::UInt(max_page_size as usize));
                }
            }
        }
    }
}
