//! `/api/v1/backups`: a backup of this box's stores, written by the
//! server (DuckDB and redb lock their files against other processes)
//! under its own data directory, `backups/<name>/`. The caller names no
//! path: the server picks the place and answers with the name.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use qb_core::model::Role;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::problem::{ApiError, ApiResult, Problem};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(create_backup))
}

/// A backup written under the data directory.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BackupSummary {
    /// The directory `backups/<name>` under the server's data directory.
    pub name: String,
    /// When the copy started (RFC 3339, UTC): everything acknowledged
    /// before then is in it.
    pub started_at: String,
    pub took_ms: u64,
    /// Files written and their bytes (the stores' copies, blobs, the
    /// manifest excluded).
    pub files: u64,
    pub bytes: u64,
    /// Store (`sqlite`, `redb`, `duckdb`, `blobs`) → table → rows, as in
    /// the backup's `manifest.json`.
    pub stores: BTreeMap<String, BTreeMap<String, u64>>,
}

/// Writes backups of this node's stores (one box; the binary wires it to
/// `qb_stores::backup`).
pub trait BackupWriter: Send + Sync {
    /// Writes a backup, named by the time it starts (blocking); `Ok(None)`
    /// while another one is being written.
    fn write(&self) -> Result<Option<BackupSummary>, String>;
}

/// Back up the stores (admin): a consistent copy of each store, taken
/// while the server keeps serving and writing; restore it with
/// `quantbox restore`. One at a time.
#[utoipa::path(post, path = "/api/v1/backups", tag = "system", security(("bearer" = [])),
    responses((status = 201, body = BackupSummary), (status = 403, body = Problem),
        (status = 409, description = "A backup is being written, or this node keeps no files (cluster mode)", body = Problem)))]
async fn create_backup(
    State(state): State<AppState>,
    p: Principal,
) -> ApiResult<(StatusCode, Json<BackupSummary>)> {
    p.require(Role::Admin)?;
    let Some(writer) = state.backups.clone() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "backup-unavailable",
            "this node keeps its data in PostgreSQL: back it up with PostgreSQL's tools",
        ));
    };
    let done = tokio::task::spawn_blocking(move || writer.write())
        .await
        .map_err(ApiError::internal)?;
    match done {
        Ok(Some(summary)) => Ok((StatusCode::CREATED, Json(summary))),
        Ok(None) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "backup-running",
            "a backup is being written; try again when it is done",
        )),
        Err(e) => Err(ApiError::internal(format!("backup failed: {e}"))),
    }
}
