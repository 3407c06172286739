//! Job kinds that ship with the platform: store maintenance and a queue probe.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use qb_core::config::RetentionConfig;
use qb_core::{JobQueue, KvStore, MetaStore};
use serde::Deserialize;

use crate::context::{JobContext, JobError};
use crate::registry::JobHandler;

/// `maintenance.checkpoint`: folds SQLite's write-ahead log into the main
/// file and drops expired hot-state entries.
pub struct Checkpoint {
    pub meta: Arc<dyn MetaStore>,
    pub kv: Arc<dyn KvStore>,
}

#[async_trait::async_trait]
impl JobHandler for Checkpoint {
    fn kind(&self) -> &'static str {
        "maintenance.checkpoint"
    }
    fn queue(&self) -> &'static str {
        crate::QUEUE_DATA
    }
    fn description(&self) -> &'static str {
        "Checkpoint the metadata store's write-ahead log and purge expired hot state"
    }
    fn run(
        &self,
        ctx: &JobContext<'_>,
        _: &serde_json::Value,
    ) -> Result<serde_json::Value, JobError> {
        let meta = ctx
            .block_on(self.meta.checkpoint())
            .map_err(JobError::failed)?;
        ctx.progress(0.5, "metadata store checkpointed")?;
        let expired = ctx
            .block_on(self.kv.purge_expired())
            .map_err(JobError::failed)?;
        Ok(serde_json::json!({ "metadata": meta, "kv_expired_removed": expired }))
    }
}

/// `maintenance.retention`: deletes audit entries, finished jobs and expired
/// refresh tokens older than the configured retention, and files left in
/// the upload and export folders (an upload whose import job was cancelled
/// before it ran, an export interrupted by a crash).
pub struct Retention {
    pub meta: Arc<dyn MetaStore>,
    pub queue: Arc<dyn JobQueue>,
    pub retention: RetentionConfig,
    /// Folders of local leftovers (`data/exports`; `data/uploads`, where
    /// earlier versions kept uploads).
    pub scratch_dirs: Vec<std::path::PathBuf>,
    /// Uploads waiting for their import are the blobs `uploads/…`.
    pub blobs: Arc<dyn qb_core::BlobStore>,
}

/// Files untouched for this long are leftovers unless a pending job names them.
const SCRATCH_AGE: Duration = Duration::from_secs(3600);

impl Retention {
    /// Paths that queued or running import jobs still need.
    fn pending_paths(&self, ctx: &JobContext<'_>) -> Result<Vec<String>, JobError> {
        use qb_core::model::{JobFilter, JobState, PageRequest};
        let mut paths = Vec::new();
        for state in [JobState::Queued, JobState::Running] {
            let filter = JobFilter {
                state: Some(state),
                kind: Some("market.import".into()),
                ..Default::default()
            };
            let page = ctx
                .block_on(self.queue.list(
                    &filter,
                    PageRequest {
                        page: 1,
                        page_size: 10_000,
                    },
                ))
                .map_err(JobError::failed)?;
            paths.extend(page.items.iter().flat_map(|j| {
                ["path", "blob"]
                    .into_iter()
                    .filter_map(|k| j.params[k].as_str().map(String::from))
            }));
        }
        Ok(paths)
    }

    /// Uploads no queued or running import names, older than an hour.
    fn sweep_uploads(&self, ctx: &JobContext<'_>, pending: &[String]) -> u64 {
        let Ok(uploads) = ctx.block_on(self.blobs.list("uploads/")) else {
            return 0;
        };
        let cut = Utc::now().timestamp_millis() - SCRATCH_AGE.as_millis() as i64;
        let mut removed = 0;
        for b in uploads {
            if b.created_ms < cut && !pending.contains(&b.key) {
                removed += ctx.block_on(self.blobs.delete_prefix(&b.key)).unwrap_or(0);
            }
        }
        removed
    }

    fn sweep_scratch(&self, pending: &[String]) -> u64 {
        let mut removed = 0;
        for dir in &self.scratch_dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age >= SCRATCH_AGE);
                let needed = pending.iter().any(|p| std::path::Path::new(p) == path);
                if old && !needed && std::fs::remove_file(&path).is_ok() {
                    removed += 1;
                }
            }
        }
        removed
    }
}

#[async_trait::async_trait]
impl JobHandler for Retention {
    fn kind(&self) -> &'static str {
        "maintenance.retention"
    }
    fn queue(&self) -> &'static str {
        crate::QUEUE_DATA
    }
    fn description(&self) -> &'static str {
        "Delete audit entries, finished jobs and expired tokens past their retention"
    }
    fn run(
        &self,
        ctx: &JobContext<'_>,
        _: &serde_json::Value,
    ) -> Result<serde_json::Value, JobError> {
        let now = Utc::now();
        let audit_cut = now - chrono::Duration::days(i64::from(self.retention.audit_days));
        let jobs_cut = now - chrono::Duration::days(i64::from(self.retention.jobs_days));
        let (audit, tokens) = ctx
            .block_on(self.meta.purge(audit_cut, now))
            .map_err(JobError::failed)?;
        ctx.progress(0.5, "audit log and tokens purged")?;
        let jobs = ctx
            .block_on(self.queue.purge_finished(jobs_cut))
            .map_err(JobError::failed)?;
        let pending = self.pending_paths(ctx)?;
        let files = self.sweep_scratch(&pending) + self.sweep_uploads(ctx, &pending);
        Ok(serde_json::json!({
            "audit_entries_removed": audit,
            "refresh_tokens_removed": tokens,
            "jobs_removed": jobs,
            "scratch_files_removed": files,
        }))
    }
}

/// `diag.sleep`: a queue probe. Sleeps in steps, reporting progress and
/// honouring cancellation; optionally fails at the end. Operators use it to
/// check that a queue drains and to measure queue latency.
pub struct Sleep;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SleepParams {
    #[serde(default)]
    seconds: f64,
    #[serde(default = "ten")]
    steps: u32,
    #[serde(default)]
    fail_with: Option<String>,
}

fn ten() -> u32 {
    10
}

fn sleep_params(v: &serde_json::Value) -> Result<SleepParams, String> {
    let p: SleepParams = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    if !(0.0..=3600.0).contains(&p.seconds) {
        return Err(format!("seconds: {} is not between 0 and 3600", p.seconds));
    }
    if !(1..=10_000).contains(&p.steps) {
        return Err(format!("steps: {} is not between 1 and 10000", p.steps));
    }
    Ok(p)
}

#[async_trait::async_trait]
impl JobHandler for Sleep {
    fn kind(&self) -> &'static str {
        "diag.sleep"
    }
    fn queue(&self) -> &'static str {
        crate::QUEUE_DATA
    }
    fn description(&self) -> &'static str {
        "Queue probe: sleep `seconds` in `steps` with progress; fail with `fail_with` if set"
    }
    fn trader_may_enqueue(&self) -> bool {
        true
    }
    async fn check(
        &self,
        params: serde_json::Value,
    ) -> Result<serde_json::Value, crate::registry::FieldError> {
        sleep_params(&params).map_err(|e| ("params".into(), e))?;
        Ok(params)
    }
    fn run(
        &self,
        ctx: &JobContext<'_>,
        params: &serde_json::Value,
    ) -> Result<serde_json::Value, JobError> {
        let p = sleep_params(params).map_err(JobError::Failed)?;
        let step = Duration::from_secs_f64(p.seconds / f64::from(p.steps));
        for i in 0..p.steps {
            ctx.sleep(step)?;
            ctx.progress(
                f64::from(i + 1) / f64::from(p.steps),
                &format!("step {} of {}", i + 1, p.steps),
            )?;
        }
        if let Some(msg) = p.fail_with {
            return Err(JobError::Failed(msg));
        }
        Ok(serde_json::json!({ "slept_seconds": p.seconds, "steps": p.steps }))
    }
}

/// Parameters of `market.import`: the import plus upload bookkeeping.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct ImportParams {
    #[serde(flatten)]
    pub request: qb_core::market::ImportRequest,
    /// Delete the file afterwards (uploads).
    #[serde(default)]
    pub delete_after: bool,
    /// The name the file was uploaded as.
    #[serde(default)]
    pub original_name: Option<String>,
    /// An upload: the blob holding the file (`uploads/…`), fetched by
    /// whichever node runs the import.
    #[serde(default)]
    pub blob: Option<String>,
}

/// `market.import`: reads a CSV, CTP, bar CSV or Parquet file into the tick
/// store; unknown symbols are registered with default instrument settings.
pub struct MarketImport {
    pub ticks: Arc<dyn qb_core::TickStore>,
    pub meta: Arc<dyn MetaStore>,
    pub blobs: Arc<dyn qb_core::BlobStore>,
    /// Where an upload is copied for the import when the blob store does
    /// not keep it as a local file.
    pub scratch: std::path::PathBuf,
}

#[async_trait::async_trait]
impl JobHandler for MarketImport {
    fn kind(&self) -> &'static str {
        "market.import"
    }
    fn queue(&self) -> &'static str {
        crate::QUEUE_DATA
    }
    fn description(&self) -> &'static str {
        "Import market data from a server-side file (the upload endpoint enqueues these)"
    }
    async fn check(
        &self,
        params: serde_json::Value,
    ) -> Result<serde_json::Value, crate::registry::FieldError> {
        serde_json::from_value::<ImportParams>(params.clone())
            .map_err(|e| ("params".to_string(), e.to_string()))?;
        Ok(params)
    }
    fn run(
        &self,
        ctx: &JobContext<'_>,
        params: &serde_json::Value,
    ) -> Result<serde_json::Value, JobError> {
        let mut p: ImportParams =
            serde_json::from_value(params.clone()).map_err(JobError::failed)?;
        let mut _copy = None;
        if let Some(key) = &p.blob {
            let path = match self.blobs.local_path(key) {
                Some(path) => path,
                None => {
                    std::fs::create_dir_all(&self.scratch).map_err(JobError::failed)?;
                    let path = self.scratch.join(format!("import-{}", ctx.job().id));
                    _copy = Some(RemoveOnDrop(path.clone()));
                    if !ctx
                        .block_on(self.blobs.get_file(key, &path))
                        .map_err(JobError::failed)?
                    {
                        return Err(JobError::Failed(format!(
                            "the uploaded file {key} is gone (imported or expired already)"
                        )));
                    }
                    path
                }
            };
            p.request.path = path.to_string_lossy().into_owned();
        }
        let outcome = self.import(ctx, p.clone());
        if p.delete_after {
            match &p.blob {
                Some(key) => {
                    let _ = ctx.block_on(self.blobs.delete_prefix(key));
                }
                None => {
                    let _ = std::fs::remove_file(&p.request.path);
                }
            }
        }
        outcome
    }
}

impl MarketImport {
    fn import(&self, ctx: &JobContext<'_>, p: ImportParams) -> Result<serde_json::Value, JobError> {
        // Progress from inside the store is recorded but cannot stop the
        // import half-way: an import is one transaction, all or nothing.
        let progress = |f: f64, msg: &str| {
            let _ = ctx.progress(f * 0.95, msg);
        };
        let report = self
            .ticks
            .import(&p.request, &progress)
            .map_err(|e| JobError::Failed(format!("import failed: {e}")))?;
        let mut result = serde_json::to_value(&report).map_err(JobError::failed)?;
        if report.rows_stored == 0
            && report.rows_rejected > 0
            && p.request.mode == qb_core::market::ImportMode::Strict
        {
            let first: Vec<String> = report
                .rejections
                .iter()
                .take(5)
                .map(|r| format!("line {}: {}", r.line, r.reason))
                .collect();
            return Err(JobError::FailedWith(
                format!(
                    "file rejected, nothing stored: {} bad row(s); {}",
                    report.rows_rejected,
                    first.join("; ")
                ),
                result,
            ));
        }
        let created = ctx
            .block_on(self.meta.ensure_instruments(&report.symbols))
            .map_err(JobError::failed)?;
        result["symbols_created"] = serde_json::json!(created);
        if let Some(name) = p.original_name {
            result["file"] = serde_json::json!(name);
        }
        Ok(result)
    }
}

struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `market.retention`: deletes ticks and bars older than the configured
/// number of days (nothing when it is 0) and checkpoints the store.
pub struct MarketRetention {
    pub ticks: Arc<dyn qb_core::TickStore>,
    pub retention_days: u32,
}

#[async_trait::async_trait]
impl JobHandler for MarketRetention {
    fn kind(&self) -> &'static str {
        "market.retention"
    }
    fn queue(&self) -> &'static str {
        crate::QUEUE_DATA
    }
    fn description(&self) -> &'static str {
        "Delete market data past market.retention_days and compact the tick store"
    }
    fn run(
        &self,
        ctx: &JobContext<'_>,
        _: &serde_json::Value,
    ) -> Result<serde_json::Value, JobError> {
        let deleted = match crate::retention_cut(self.retention_days) {
            None => 0,
            Some(cut) => {
                let cut_ns = cut.timestamp_nanos_opt().unwrap_or(i64::MIN);
                ctx.block_on(self.ticks.retain(cut_ns))
                    .map_err(JobError::failed)?
            }
        };
        ctx.progress(0.8, "old rows deleted")?;
        ctx.block_on(self.ticks.checkpoint())
            .map_err(JobError::failed)?;
        Ok(serde_json::json!({ "rows_deleted": deleted, "retention_days": self.retention_days }))
    }
}
