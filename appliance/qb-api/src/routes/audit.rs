//! `/api/v1/audit`: the audit log (admin only).

use axum::Json;
use axum::extract::State;
use qb_core::model::{AuditEntry, AuditFilter, Page, Role};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::PageParams;
use crate::auth::Principal;
use crate::problem::{ApiQuery, ApiResult, Problem};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_audit))
}

#[derive(Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// 1-based page number (default 1).
    #[param(minimum = 1)]
    pub page: Option<u32>,
    /// Items per page (default `DEFAULT_PAGE_SIZE`, at most `MAX_PAGE_SIZE`).
    #[param(minimum = 1)]
    pub page_size: Option<u32>,
    /// Exact actor.
    pub actor: Option<String>,
    /// Action prefix, e.g. `auth.` or `POST /api/v1/users`.
    pub action: Option<String>,
}

/// Audit records, newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", security(("bearer" = [])),
    params(AuditParams), responses((status = 200, body = Page<AuditEntry>), (status = 403, body = Problem)))]
async fn list_audit(
    State(state): State<AppState>,
    p: Principal,
    ApiQuery(q): ApiQuery<AuditParams>,
) -> ApiResult<Json<Page<AuditEntry>>> {
    p.require(Role::Admin)?;
    let page = PageParams {
        page: q.page,
        page_size: q.page_size,
    }
    .resolve(&state)?;
    let filter = AuditFilter {
        actor: q.actor,
        action_prefix: q.action,
    };
    Ok(Json(state.meta.list_audit(&filter, page).await?))
}
