//! `/api/v1/plugins`: the strategy plugin registry. Uploads (traders and
//! admins) are validated by `qb-plugin-host` before anything is stored;
//! each upload's audit record carries the component's sha256.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use qb_core::model::{Page, PluginInfo, Role};
use qb_plugin_host::registry::RegistryError;
use qb_plugin_host::{PluginError, sha256_hex};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::PageParams;
use crate::auth::{AuditNote, Principal};
use crate::problem::{ApiBytes, ApiError, ApiPath, ApiQuery, ApiResult, Problem};
use crate::state::AppState;

/// Multipart framing allowed on top of the module size cap.
const MULTIPART_SLACK: usize = 64 << 10;

pub fn router(state: &AppState) -> OpenApiRouter<AppState> {
    let limit = state.plugins.engine().limits().max_module_bytes + MULTIPART_SLACK;
    OpenApiRouter::new()
        .routes(routes!(list_plugins, upload_plugin))
        .routes(routes!(get_plugin, delete_plugin))
        .layer(DefaultBodyLimit::max(limit))
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Store(s) => s.into(),
            RegistryError::InUse(m) => ApiError::conflict(m),
            RegistryError::Description(m) => ApiError::invalid("describe", m),
            RegistryError::Plugin(p) => match p {
                PluginError::TooLarge { .. } => {
                    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too-large", p.to_string())
                }
                PluginError::Busy(_) => {
                    let mut e =
                        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", p.to_string());
                    e.retry_after = Some(5);
                    e
                }
                PluginError::Host(m) => ApiError::internal(m),
                PluginError::Invalid(_) => ApiError::invalid("file", p.to_string()),
                PluginError::Incompatible(_) => ApiError::invalid("imports", p.to_string()),
                PluginError::Compile(_) => ApiError::invalid("file", p.to_string()),
                PluginError::Stopped(_) | PluginError::Refused(_) | PluginError::Poisoned(_) => {
                    ApiError::invalid("describe", format!("describe failed: {p}"))
                }
            },
        }
    }
}

/// A plugin upload as multipart form data.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct PluginUpload {
    /// The WebAssembly component.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// The component bytes: the `file` field of a multipart form, or the raw
/// body (`application/wasm`, `application/octet-stream`).
async fn body_bytes(state: &AppState, req: Request) -> ApiResult<Bytes> {
    let limit = state.plugins.engine().limits().max_module_bytes;
    let too_large = |e: &dyn std::fmt::Display| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            format!("upload exceeds the plugin size limit of {limit} bytes ({e})"),
        )
    };
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if !multipart {
        return match ApiBytes::from_request(req, state).await {
            Ok(ApiBytes(bytes)) => Ok(bytes),
            Err(e) if e.status == StatusCode::PAYLOAD_TOO_LARGE => Err(too_large(&e.detail)),
            Err(e) => Err(e),
        };
    }
    let mut mp = Multipart::from_request(req, state)
        .await
        .map_err(|e| ApiError::bad_request(format!("not a multipart body: {}", e.body_text())))?;
    let read_error = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large(&e.body_text())
        } else {
            ApiError::bad_request(format!("cannot read the upload: {}", e.body_text()))
        }
    };
    // The whole form is read (within the size limit) before answering, so
    // the client is not cut off mid-send.
    let (mut file, mut files) = (None, 0);
    while let Some(field) = mp.next_field().await.map_err(read_error)? {
        if field.name() == Some("file") {
            files += 1;
            let bytes = field.bytes().await.map_err(read_error)?;
            file.get_or_insert(bytes);
        }
    }
    if files > 1 {
        return Err(ApiError::invalid(
            "file",
            format!("one component per upload: the form has {files} `file` fields"),
        ));
    }
    file.ok_or_else(|| ApiError::invalid("file", "the form has no `file` field"))
}

/// Upload a strategy plugin (a WebAssembly component). Validated before it
/// is stored: size, format, imports, instantiation and `describe`. The
/// same bytes uploaded again answer 200 with the stored plugin.
#[utoipa::path(post, path = "/api/v1/plugins", tag = "plugins", security(("bearer" = [])),
    request_body(content(
        (PluginUpload = "multipart/form-data"),
        (crate::openapi::Binary = "application/wasm"),
        (crate::openapi::Binary = "application/octet-stream"),
    )),
    responses(
        (status = 201, body = PluginInfo, description = "Stored"),
        (status = 200, body = PluginInfo, description = "Already stored"),
        (status = 409, body = Problem, description = "Name and version taken by other bytes"),
        (status = 413, body = Problem), (status = 422, body = Problem),
        (status = 503, body = Problem, description = "plugins.max_compiles uploads are being checked; see Retry-After")))]
async fn upload_plugin(State(state): State<AppState>, p: Principal, req: Request) -> Response {
    // A slot to check the upload in (`plugins.max_compiles`), taken before
    // its body is read: uploads beyond it cost neither memory nor a
    // compiler.
    let slot = p.require(Role::Trader).and_then(|()| {
        state
            .plugins
            .compile_slot()
            .map_err(|e| ApiError::from(RegistryError::Plugin(e)))
    });
    let slot = match slot {
        Ok(slot) => slot,
        // Refused before the body is read (the body deadline layer closes
        // the connection after the answer).
        Err(e) => return e.into_response(),
    };
    let bytes = match body_bytes(&state, req).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let sha = sha256_hex(&bytes);
    let size = bytes.len();
    let mut resp = match state
        .plugins
        .upload(bytes.to_vec(), Some(p.actor()), slot)
        .await
    {
        Ok((info, created)) => {
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (status, Json(info)).into_response()
        }
        Err(e) => {
            tracing::info!(sha256 = %sha, error = %e, "plugin upload refused");
            ApiError::from(e).into_response()
        }
    };
    resp.extensions_mut()
        .insert(AuditNote(format!("sha256={sha} size={size}")));
    resp
}

/// List plugins, newest first.
#[utoipa::path(get, path = "/api/v1/plugins", tag = "plugins", security(("bearer" = [])),
    params(PageParams), responses((status = 200, body = Page<PluginInfo>)))]
async fn list_plugins(
    State(state): State<AppState>,
    _p: Principal,
    ApiQuery(page): ApiQuery<PageParams>,
) -> ApiResult<Json<Page<PluginInfo>>> {
    Ok(Json(state.plugins.list(page.resolve(&state)?).await?))
}

/// One plugin: by id (sha256) or `name` / `name@version`.
#[utoipa::path(get, path = "/api/v1/plugins/{id}", tag = "plugins", security(("bearer" = [])),
    params(("id" = String, Path, description = "sha256, name or name@version")),
    responses((status = 200, body = PluginInfo), (status = 404, body = Problem)))]
async fn get_plugin(
    State(state): State<AppState>,
    _p: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<PluginInfo>> {
    Ok(Json(state.plugins.resolve(&id).await?))
}

/// Delete a plugin (409 while a running strategy uses it). Only its
/// uploader or an admin may.
#[utoipa::path(delete, path = "/api/v1/plugins/{id}", tag = "plugins", security(("bearer" = [])),
    params(("id" = String, Path, description = "sha256, name or name@version")),
    responses((status = 204), (status = 404, body = Problem), (status = 409, body = Problem)))]
async fn delete_plugin(
    State(state): State<AppState>,
    p: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    p.require(Role::Trader)?;
    let info = state.plugins.resolve(&id).await?;
    p.require_owner(
        info.uploaded_by.as_deref(),
        &format!("plugin {}@{}", info.name, info.version),
    )?;
    state.plugins.delete(&info.id).await?;
    Ok(StatusCode::NO_CONTENT)
}
