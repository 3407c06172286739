//! `/api/v1/system`: host figures (sysinfo) and process facts for the dashboard.

use axum::Json;
use axum::extract::State;
use qb_core::model::QueueStats;
use serde::Serialize;
use sysinfo::{CpuRefreshKind, Disks, MemoryRefreshKind, RefreshKind};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Principal;
use crate::problem::ApiResult;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(system))
}

#[derive(Serialize, ToSchema)]
pub struct HostInfo {
    /// Average CPU use since the previous call, percent.
    pub cpu_percent: f32,
    pub cpus: usize,
    pub memory_total_bytes: u64,
    pub memory_used_bytes: u64,
    /// The disk holding the data directory.
    pub disk_total_bytes: u64,
    pub disk_available_bytes: u64,
}

#[derive(Serialize, ToSchema)]
pub struct SystemInfo {
    pub version: String,
    pub env: String,
    pub uptime_seconds: u64,
    pub host: HostInfo,
    pub queues: Vec<QueueStats>,
    /// Ticks stored by live ingest since start-up; the dashboard
    /// shows the ingest rate from two readings.
    pub ticks_ingested_total: u64,
}

/// Host and process figures.
#[utoipa::path(get, path = "/api/v1/system", tag = "system", security(("bearer" = [])),
    responses((status = 200, body = SystemInfo)))]
async fn system(State(state): State<AppState>, _p: Principal) -> ApiResult<Json<SystemInfo>> {
    let host = {
        let mut sys = state.host.lock();
        sys.refresh_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing().with_cpu_usage())
                .with_memory(MemoryRefreshKind::nothing().with_ram()),
        );
        // The data disk as housekeeping last measured it (every 5 s, the
        // gauges behind the disk alert); no file-system scan per request.
        let m = &state.metrics;
        HostInfo {
            cpu_percent: sys.global_cpu_usage(),
            cpus: sys.cpus().len(),
            memory_total_bytes: sys.total_memory(),
            memory_used_bytes: sys.used_memory(),
            disk_total_bytes: u64::try_from(m.data_disk_total.get()).unwrap_or(0),
            disk_available_bytes: u64::try_from(m.data_disk_available.get()).unwrap_or(0),
        }
    };
    Ok(Json(SystemInfo {
        version: state.version.into(),
        env: format!("{:?}", state.config.env).to_lowercase(),
        uptime_seconds: state.started.elapsed().as_secs(),
        host,
        queues: state.jobs.stats(qb_jobs::QUEUES).await?,
        ticks_ingested_total: state.metrics.ticks_ingested.get(),
    }))
}

/// `(total, available)` bytes of the file system holding `dir` (the longest
/// mount point containing it); zeros if none is found.
pub fn data_disk(dir: &std::path::Path) -> (u64, u64) {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let disks = Disks::new_with_refreshed_list();
    disks
        .list()
        .iter()
        .filter(|d| dir.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().as_os_str().len())
        .map_or((0, 0), |d| (d.total_space(), d.available_space()))
}
