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
    /// Uploads that queued or running import jobs still need.
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
            paths.extend(
                page.items
                    .iter()
                    .filter_map(|j| ImportParams::parse(&j.params).ok())
                    .map(|p| p.blob()),
            );
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

/// Parameters of `market.import`: which upload, and how to read it. An
/// upload, never a path: callers do not name files on the server.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImportParams {
    /// The upload's id (`POST /api/v1/market/imports` stores the file as
    /// the blob `uploads/<id>`, fetched by whichever node runs the import
    /// and deleted after it).
    pub upload: String,
    pub options: qb_core::market::ImportOptions,
    /// The name the file was uploaded as.
    #[serde(default)]
    pub original_name: Option<String>,
}

impl ImportParams {
    /// The blob holding the upload.
    pub fn blob(&self) -> String {
        format!("uploads/{}", self.upload)
    }

    /// The one check of an import's parameters, whoever enqueues it.
    pub fn parse(params: &serde_json::Value) -> Result<Self, crate::registry::FieldError> {
        let p: ImportParams = serde_json::from_value(params.clone())
            .map_err(|e| ("params".to_string(), e.to_string()))?;
        let ok = !p.upload.is_empty()
            && p.upload.len() <= 160
            && p.upload
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            && !p.upload.starts_with('.');
        if !ok {
            return Err((
                "params.upload".into(),
                "not an upload id (letters, digits, '.', '_' and '-')".into(),
            ));
        }
        p.options
            .validate()
            .map_err(|(field, msg)| (format!("params.options.{field}"), msg))?;
        Ok(p)
    }
}

/// `market.import`: reads an uploaded CSV, CTP, bar CSV or Parquet file
/// into the tick store; unknown symbols are registered with default
/// instrument settings. The upload is deleted when the job ends.
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
        "Import an uploaded market data file (the upload endpoint enqueues these)"
    }
    async fn check(
        &self,
        params: serde_json::Value,
    ) -> Result<serde_json::Value, crate::registry::FieldError> {
        ImportParams::parse(&params)?;
        Ok(params)
    }
    fn run(
        &self,
        ctx: &JobContext<'_>,
        params: &serde_json::Value,
    ) -> Result<serde_json::Value, JobError> {
        let p =
            ImportParams::parse(params).map_err(|(f, m)| JobError::Failed(format!("{f}: {m}")))?;
        let key = p.blob();
        let mut _copy = None;
        let path = match self.blobs.local_path(&key) {
            Some(path) => path,
            None => {
                std::fs::create_dir_all(&self.scratch).map_err(JobError::failed)?;
                let path = self.scratch.join(format!("import-{}", ctx.job().id));
                _copy = Some(RemoveOnDrop(path.clone()));
                path
            }
        };
        let present = match &_copy {
            Some(_) => ctx
                .block_on(self.blobs.get_file(&key, &path))
                .map_err(JobError::failed)?,
            None => path.is_file(),
        };
        if !present {
            return Err(JobError::Failed(format!(
                "upload {} is gone (imported or expired already)",
                p.upload
            )));
        }
        let request = qb_core::market::ImportRequest {
            path: path.to_string_lossy().into_owned(),
            options: p.options.clone(),
        };
        let outcome = self.import(ctx, &request, p.original_name);
        let _ = ctx.block_on(self.blobs.delete_prefix(&key));
        outcome
    }
}

impl MarketImport {
    fn import(
        &self,
        ctx: &JobContext<'_>,
        request: &qb_core::market::ImportRequest,
        original_name: Option<String>,
    ) -> Result<serde_json::Value, JobError> {
        // Progress from inside the store is recorded but cannot stop the
        // import half-way: an import is one transaction, all or nothing.
        let progress = |f: f64, msg: &str| {
            let _ = ctx.progress(f * 0.95, msg);
        };
        let report = self
            .ticks
            .import(request, &progress)
            .map_err(|e| JobError::Failed(format!("import failed: {e}")))?;
        let mut result = serde_json::to_value(&report).map_err(JobError::failed)?;
        if report.rows_stored == 0
            && report.rows_rejected > 0
            && request.mode == qb_core::market::ImportMode::Strict
        {
            // Where and which field, not the values: the error is a line
            // of text for logs and lists, never a window onto the file
            // (each row's full reason is in the result's `rejections`).
            let first: Vec<String> = report
                .rejections
                .iter()
                .take(5)
                .map(|r| {
                    let field = r.reason.split(':').next().unwrap_or_default();
                    format!("line {}: {field}", r.line)
                })
                .collect();
            return Err(JobError::FailedWith(
                format!(
                    "file rejected, nothing stored: {} bad row(s) ({}); see the result's rejections",
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
        if let Some(name) = original_name {
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
