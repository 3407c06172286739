//! The embedded dashboard (`qb_web::Assets`) at `/`: files by path with
//! their MIME type and an ETag; hashed bundles under `/assets/` cached for
//! a year, everything else revalidated. Any other GET that is not an API,
//! report or WebSocket path and does not name a file gets `index.html`, so
//! client-side routes (`/backtests/<id>`) survive a reload.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use qb_web::{Assets, INDEX, is_immutable};

use crate::problem::ApiError;

/// First path segments the dashboard never answers for: they belong to
/// the server, and a wrong path there must stay a problem+json 404.
const SERVER_SEGMENTS: [&str; 6] = ["api", "ws", "reports", "metrics", "health", "ready"];

/// The fallback for every route the API does not know.
pub async fn serve(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path().trim_start_matches('/');
    if method != Method::GET && method != Method::HEAD {
        return ApiError::not_found(format!("no route for {}", uri.path())).into_response();
    }
    let path = if path.is_empty() { INDEX } else { path };
    if let Some(file) = Assets::get(path) {
        return file_response(path, file, &headers, method == Method::HEAD);
    }
    let first = path.split('/').next().unwrap_or_default();
    let last = path.rsplit('/').next().unwrap_or_default();
    if SERVER_SEGMENTS.contains(&first) || last.contains('.') {
        return ApiError::not_found(format!("no route for {}", uri.path())).into_response();
    }
    match Assets::get(INDEX) {
        Some(index) => file_response(INDEX, index, &headers, method == Method::HEAD),
        None => ApiError::not_found("the dashboard is not built into this binary").into_response(),
    }
}

fn file_response(
    path: &str,
    file: rust_embed::EmbeddedFile,
    headers: &HeaderMap,
    head: bool,
) -> Response {
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..16]));
    let cache = if is_immutable(path) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut builder = Response::builder()
        .header(header::ETAG, &etag)
        .header(header::CACHE_CONTROL, cache);
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matches {
        return builder
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .unwrap_or_default();
    }
    let mime = file.metadata.mimetype();
    let mime = if mime.starts_with("text/") || mime == "application/javascript" {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_string()
    };
    builder = builder
        .header(
            header::CONTENT_TYPE,
            HeaderValue::from_str(&mime)
                .unwrap_or(HeaderValue::from_static("application/octet-stream")),
        )
        .header(header::CONTENT_LENGTH, file.data.len());
    let body = if head {
        Body::empty()
    } else {
        Body::from(file.data.into_owned())
    };
    builder.body(body).unwrap_or_default()
}
