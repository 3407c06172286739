//! Errors at the HTTP edge, rendered as RFC 9457 `application/problem+json`.
//! Every error says what was wrong and, where it can, where (`errors[].field`
//! as a JSON pointer-like path, or a line/column in the body).

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderValue, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use qb_core::StoreError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// One problem with one field.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq)]
pub struct FieldError {
    /// Where: a field path such as `params.seconds`, or `body` / `query`.
    pub field: String,
    pub message: String,
}

/// A problem details document (RFC 9457).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A stable identifier of the problem kind, e.g. `/problems/validation`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Trading: the pre-trade risk rule that rejected an order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Trading: the id of the rejected order (it is kept, as rejected).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
}

/// The one error type handlers return.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub errors: Vec<FieldError>,
    pub retry_after: Option<u64>,
    pub www_authenticate: bool,
    /// For risk rejections: the rule and the rejected order's id (boxed:
    /// errors stay small on every other path).
    pub rejection: Option<Box<(String, String)>>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
            www_authenticate: false,
            rejection: None,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", detail)
    }
    /// A validation error on one field.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        let mut e = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            format!("{field}: {message}"),
        );
        e.errors.push(FieldError {
            field: field.into(),
            message,
        });
        e
    }
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail);
        e.www_authenticate = true;
        e
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", detail)
    }
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", detail)
    }
    pub fn too_many(detail: impl Into<String>, retry_after_secs: u64) -> Self {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", detail);
        e.retry_after = Some(retry_after_secs.max(1));
        e
    }
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        // The cause goes to the log, not to the client.
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }

    fn title(&self) -> &'static str {
        self.status.canonical_reason().unwrap_or("Error")
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            StoreError::Conflict(m) => ApiError::conflict(m),
            StoreError::Invalid(m) => ApiError::bad_request(m),
            StoreError::Backend(m) => ApiError::internal(m),
            // The desk lease moved to another trader while this call ran:
            // nothing was written; the caller retries on the new holder.
            StoreError::Fenced(m) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "desk-elsewhere", m)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = Problem {
            kind: format!("/problems/{}", self.code),
            title: self.title().to_string(),
            status: self.status.as_u16(),
            detail: self.detail,
            errors: self.errors,
            rule: self.rejection.as_ref().map(|r| r.0.clone()),
            order_id: self.rejection.as_ref().map(|r| r.1.clone()),
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut resp = (self.status, body).into_response();
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            h.insert(header::RETRY_AFTER, v);
        }
        if self.www_authenticate {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"quantbox\""),
            );
        }
        resp
    }
}

/// `Json<T>` whose rejections are problem documents naming the field and the
/// position in the body.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    let status = r.status();
    let text = r.body_text();
    match r {
        JsonRejection::JsonDataError(_) => {
            // "Failed to deserialize the JSON body into the target type: field: reason at line 1 column 9"
            let inner = text
                .split_once("target type: ")
                .map(|(_, rest)| rest.to_string())
                .unwrap_or(text.clone());
            let (field, message) = match inner.split_once(": ") {
                Some((f, m)) if !f.contains(' ') => (f.to_string(), m.to_string()),
                _ => ("body".to_string(), inner.clone()),
            };
            let mut e = ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                format!("invalid request body: {inner}"),
            );
            e.errors.push(FieldError { field, message });
            e
        }
        JsonRejection::JsonSyntaxError(_) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed-json",
            format!("request body is not valid JSON: {text}"),
        ),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "expected a request body with Content-Type: application/json",
        ),
        _ if status == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            status,
            "payload-too-large",
            format!("request body too large: {text}"),
        ),
        _ => ApiError::new(status, "bad-request", text),
    }
}

/// The raw body, whose rejections (over the body limit, a broken stream)
/// are problem documents.
pub struct ApiBytes(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state)
            .await
            .map(ApiBytes)
            .map_err(|r| {
                let status = r.status();
                let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
                    "payload-too-large"
                } else {
                    "bad-request"
                };
                ApiError::new(
                    status,
                    code,
                    format!("cannot read the body: {}", r.body_text()),
                )
            })
    }
}

/// `Path<T>` whose rejections (a segment that is not UTF-8 once decoded)
/// are problem documents.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(r) => Err(ApiError::new(
                r.status(),
                "bad-path",
                format!("invalid path: {}", r.body_text()),
            )),
        }
    }
}

/// `Query<T>` whose rejections are problem documents.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(r) => Err(query_rejection(r)),
        }
    }
}

fn query_rejection(r: QueryRejection) -> ApiError {
    let text = r.body_text();
    let inner = text
        .split_once("query string: ")
        .map(|(_, rest)| rest.to_string())
        .unwrap_or(text.clone());
    let mut e = ApiError::new(
        StatusCode::BAD_REQUEST,
        "bad-query",
        format!("invalid query string: {inner}"),
    );
    e.errors.push(FieldError {
        field: "query".into(),
        message: inner,
    });
    e
}
