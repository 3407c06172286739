//! [`JobQueue`] on PostgreSQL, safe with many nodes sharing one database,
//! plus the node lock that keeps one node name to one running process.
//!
//! Invariants:
//!
//! - **Claims.** A job is claimed by one `UPDATE` whose target row is
//!   picked with `FOR UPDATE SKIP LOCKED`, so concurrent claimers on any
//!   number of nodes never take the same job and never wait on each other.
//!   The claim records the node and the instance (`jobs.node`,
//!   `jobs.claimed_by`) and, in the same statement, refreshes the
//!   instance's heartbeat row in `nodes`, so a claimer is never unknown.
//! - **Liveness.** Heartbeats and the staleness test of
//!   [`recover`](JobQueue::recover) both read the database clock
//!   (`clock_timestamp()`), so clock skew between nodes does not matter;
//!   every other timestamp is taken from the same clock. `recover` takes
//!   back running jobs of earlier instances of this node, of instances
//!   silent for longer than the bound and of unknown claimers, never this
//!   instance's own.
//! - **Fencing.** `progress`, `finish` and `release` only touch a row that
//!   is `running` under this instance's claim; otherwise they fail with
//!   `NotFound` (no such job) or `Conflict` (the claim was lost), so a
//!   stalled instance cannot overwrite the work of the one that took its
//!   job over.
//! - **Wake-ups.** Every statement that makes a job claimable (`enqueue`,
//!   `release`, a re-queue by `recover`, `fire_schedule`) calls
//!   `pg_notify('qb_jobs', queue)` inside its transaction, so listeners
//!   hear of it only once it committed. [`Wakeups`] keeps one dedicated
//!   `LISTEN` connection per process (reconnecting with backoff, waking
//!   every claimer after a reconnect) and wakes the idle claimers of the
//!   queue; claimers also poll every [`POLL`] as a safety net.
//! - **Schedules.** A due instant fires once across nodes: the
//!   `schedule_runs` row is inserted first with `ON CONFLICT DO NOTHING`,
//!   in the transaction that enqueues the job.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use qb_core::model::*;
use qb_core::time::to_utc;
use qb_core::{JobQueue, StoreError, StoreResult};
use tokio::sync::Notify;
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{AsyncMessage, Client, Config, Connection, NoTls, Row, Socket};
use tracing::{info, warn};

use crate::sql::{col, count, exec, opt_row, rows};
use crate::{PgOptions, PgStore, backend, map_pg};

/// Subscribes to the `qb_jobs` channel of [`WAKE`]; the payload is a queue.
const LISTEN: &str = "LISTEN qb_jobs";

/// How often an idle claimer looks again even without a wake-up.
pub const POLL: Duration = Duration::from_secs(2);

/// Now in milliseconds on the database clock.
const NOW: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// Sends the wake-up of the row's queue (a `RETURNING` item): delivered at
/// commit, and once per queue however many rows name it.
const WAKE: &str = "pg_notify('qb_jobs', queue)";

const JOB_COLS: &str = "id, queue, kind, params, state, progress, message, result, error, \
     attempts, max_attempts, cancel_requested, created_by, schedule_id, node, created_at, \
     started_at, finished_at";

const SCHEDULE_COLS: &str =
    "id, name, cron, job, enabled, created_at, last_run_at, last_job_id, disabled_reason";

/// Upserts the heartbeat of instance `$1` of node `$2`, once per row of
/// `from` (`""` for exactly once).
fn beat_sql(from: &str) -> String {
    format!(
        "INSERT INTO nodes (instance, node, started_at, heartbeat_at)
         SELECT $1, $2, {NOW}, {NOW} {from}
         ON CONFLICT (instance) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at"
    )
}

// ---------------------------------------------------------------------------
// Rows and statements

fn json(s: &str) -> StoreResult<serde_json::Value> {
    serde_json::from_str(s).map_err(backend)
}

fn opt_time(ms: Option<i64>) -> Option<DateTime<Utc>> {
    ms.map(to_utc)
}

fn job_row(r: &Row) -> StoreResult<Job> {
    let state: String = col(r, 4)?;
    Ok(Job {
        id: col(r, 0)?,
        queue: col(r, 1)?,
        kind: col(r, 2)?,
        params: json(col(r, 3)?)?,
        state: state.parse().map_err(StoreError::Backend)?,
        progress: col(r, 5)?,
        message: col(r, 6)?,
        result: col::<Option<&str>>(r, 7)?.map(json).transpose()?,
        error: col(r, 8)?,
        attempts: col::<i32>(r, 9)?.max(0) as u32,
        max_attempts: col::<i32>(r, 10)?.max(0) as u32,
        cancel_requested: col(r, 11)?,
        created_by: col(r, 12)?,
        schedule_id: col(r, 13)?,
        node: col(r, 14)?,
        created_at: to_utc(col(r, 15)?),
        started_at: opt_time(col(r, 16)?),
        finished_at: opt_time(col(r, 17)?),
    })
}

fn schedule_row(r: &Row) -> StoreResult<Schedule> {
    Ok(Schedule {
        id: col(r, 0)?,
        name: col(r, 1)?,
        cron: col(r, 2)?,
        job: serde_json::from_str(col(r, 3)?).map_err(backend)?,
        enabled: col(r, 4)?,
        created_at: to_utc(col(r, 5)?),
        last_run_at: opt_time(col(r, 6)?),
        last_job_id: col(r, 7)?,
        disabled_reason: col(r, 8)?,
        next_run_at: None,
    })
}

async fn get_job(c: &impl GenericClient, id: &str) -> StoreResult<Option<Job>> {
    let sql = format!("SELECT {JOB_COLS} FROM jobs WHERE id = $1");
    opt_row(c, &sql, &[&id])
        .await?
        .as_ref()
        .map(job_row)
        .transpose()
}

async fn get_schedule(c: &impl GenericClient, id: &str) -> StoreResult<Option<Schedule>> {
    let sql = format!("SELECT {SCHEDULE_COLS} FROM schedules WHERE id = $1");
    opt_row(c, &sql, &[&id])
        .await?
        .as_ref()
        .map(schedule_row)
        .transpose()
}

/// Inserts a queued job with id `id` and sends its queue's wake-up.
async fn insert_job(c: &impl GenericClient, id: &str, job: &NewJob) -> StoreResult<Job> {
    let sql = format!(
        "INSERT INTO jobs (id, queue, kind, params, state, max_attempts, created_by, schedule_id, created_at)
         VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7, {NOW})
         RETURNING {JOB_COLS}, {WAKE}"
    );
    let max_attempts = i32::try_from(job.max_attempts).unwrap_or(i32::MAX);
    let r = opt_row(
        c,
        &sql,
        &[
            &id,
            &job.queue,
            &job.kind,
            &job.params.to_string(),
            &max_attempts,
            &job.created_by,
            &job.schedule_id,
        ],
    )
    .await?
    .ok_or_else(|| backend("INSERT ... RETURNING returned no row"))?;
    job_row(&r)
}

/// Why an update by the claimer matched nothing: no such job, or the
/// claim is not (or no longer) this instance's.
async fn claim_lost(c: &impl GenericClient, id: &str) -> StoreResult<StoreError> {
    Ok(match get_job(c, id).await? {
        None => StoreError::NotFound(format!("job {id}")),
        Some(job) if job.state == JobState::Running => StoreError::Conflict(format!(
            "job {id} is no longer held by this process (taken back after it was presumed dead; now on node {})",
            job.node.as_deref().unwrap_or("?")
        )),
        Some(job) => StoreError::Conflict(format!(
            "job {id} is {}, not running under this process's claim",
            job.state.as_str()
        )),
    })
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Milliseconds, capped so that SQL arithmetic on them cannot overflow.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis())
        .unwrap_or(i64::MAX)
        .min(i64::MAX / 16)
}

impl PgStore {
    /// One claim attempt: the oldest queued job of `queue`, or `None`.
    async fn try_claim(&self, queue: &str) -> StoreResult<Option<Job>> {
        let sql = format!(
            "WITH claimed AS (
                 UPDATE jobs SET state = 'running', attempts = attempts + 1,
                        started_at = {NOW}, message = NULL, node = $2, claimed_by = $1
                 WHERE seq = (SELECT seq FROM jobs WHERE queue = $3 AND state = 'queued'
                              ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED)
                 RETURNING {JOB_COLS}
             ), beat AS ({})
             SELECT * FROM claimed",
            beat_sql("FROM claimed")
        );
        let me = self.node();
        let c = self.conn().await?;
        opt_row(&c, &sql, &[&me.instance, &me.node, &queue])
            .await?
            .as_ref()
            .map(job_row)
            .transpose()
    }
}

#[async_trait]
impl JobQueue for PgStore {
    async fn enqueue(&self, job: NewJob) -> StoreResult<Job> {
        let c = self.conn().await?;
        let job = insert_job(&c, &new_id(), &job).await?;
        self.wakeups().wake(&job.queue);
        Ok(job)
    }

    async fn claim(&self, queue: &str, wait: Duration) -> StoreResult<Option<Job>> {
        let deadline = Instant::now() + wait;
        let notify = self.wakeups().queue(queue);
        loop {
            // Armed before the attempt, so an enqueue committed between
            // the attempt and the wait is not missed.
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(job) = self.try_claim(queue).await? {
                return Ok(Some(job));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let _ = tokio::time::timeout(left.min(POLL), notified).await;
        }
    }

    async fn progress(&self, id: &str, fraction: f64, message: Option<&str>) -> StoreResult<bool> {
        let fraction = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let c = self.conn().await?;
        let r = opt_row(
            &c,
            "UPDATE jobs SET progress = $2, message = COALESCE($3::text, message)
             WHERE id = $1 AND state = 'running' AND claimed_by = $4
             RETURNING cancel_requested",
            &[&id, &fraction, &message, &self.node().instance],
        )
        .await?;
        match r {
            Some(r) => col(&r, 0),
            None => Err(claim_lost(&c, id).await?),
        }
    }

    async fn finish(&self, id: &str, outcome: &JobOutcome) -> StoreResult<Job> {
        let (state, result, error) = match outcome {
            JobOutcome::Succeeded(v) => ("succeeded", Some(v.to_string()), None),
            JobOutcome::Failed(e, detail) => (
                "failed",
                detail.as_ref().map(|v| v.to_string()),
                Some(e.clone()),
            ),
            JobOutcome::Cancelled => ("cancelled", None, Some("cancelled on request".into())),
        };
        let sql = format!(
            "UPDATE jobs SET state = $2::text, result = $3, error = $4, finished_at = {NOW},
                    progress = CASE WHEN $2::text = 'succeeded' THEN 1.0 ELSE progress END
             WHERE id = $1 AND state = 'running' AND claimed_by = $5
             RETURNING {JOB_COLS}"
        );
        let c = self.conn().await?;
        let r = opt_row(
            &c,
            &sql,
            &[&id, &state, &result, &error, &self.node().instance],
        )
        .await?;
        match r {
            Some(r) => job_row(&r),
            None => Err(claim_lost(&c, id).await?),
        }
    }

    async fn release(&self, id: &str, reason: &str) -> StoreResult<()> {
        let sql = format!(
            "UPDATE jobs SET state = 'queued', attempts = GREATEST(attempts - 1, 0),
                    started_at = NULL, message = $2, claimed_by = NULL
             WHERE id = $1 AND state = 'running' AND claimed_by = $3
             RETURNING queue, {WAKE}"
        );
        let c = self.conn().await?;
        match opt_row(&c, &sql, &[&id, &reason, &self.node().instance]).await? {
            Some(r) => {
                self.wakeups().wake(&col::<String>(&r, 0)?);
                Ok(())
            }
            None => Err(claim_lost(&c, id).await?),
        }
    }

    async fn heartbeat(&self) -> StoreResult<()> {
        let me = self.node();
        let c = self.conn().await?;
        exec(&c, &beat_sql(""), &[&me.instance, &me.node]).await?;
        Ok(())
    }

    async fn request_cancel(&self, id: &str) -> StoreResult<Job> {
        let sql = format!(
            "UPDATE jobs SET cancel_requested = TRUE,
                    finished_at = CASE WHEN state = 'queued' THEN {NOW} ELSE finished_at END,
                    error = CASE WHEN state = 'queued' THEN 'cancelled before it started' ELSE error END,
                    state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END
             WHERE id = $1 AND state IN ('queued', 'running')
             RETURNING {JOB_COLS}"
        );
        let c = self.conn().await?;
        if let Some(r) = opt_row(&c, &sql, &[&id]).await? {
            return job_row(&r);
        }
        Err(match get_job(&c, id).await? {
            None => StoreError::NotFound(format!("job {id}")),
            Some(job) => StoreError::Conflict(format!("job {id} already {}", job.state.as_str())),
        })
    }

    async fn get(&self, id: &str) -> StoreResult<Option<Job>> {
        let c = self.conn().await?;
        get_job(&c, id).await
    }

    async fn list(&self, filter: &JobFilter, page: PageRequest) -> StoreResult<Page<Job>> {
        let cond = "($1::text IS NULL OR queue = $1) AND ($2::text IS NULL OR state = $2) \
                    AND ($3::text IS NULL OR kind = $3) \
                    AND ($4::text IS NULL OR created_by = $4 OR starts_with(created_by, $4 || '/'))";
        let state = filter.state.map(|s| s.as_str());
        let c = self.conn().await?;
        let total = count(
            &c,
            &format!("SELECT COUNT(*) FROM jobs WHERE {cond}"),
            &[&filter.queue, &state, &filter.kind, &filter.created_by],
        )
        .await?;
        let items = rows(
            &c,
            &format!(
                "SELECT {JOB_COLS} FROM jobs WHERE {cond} ORDER BY seq DESC LIMIT $5 OFFSET $6"
            ),
            &[
                &filter.queue,
                &state,
                &filter.kind,
                &filter.created_by,
                &i64::from(page.page_size),
                &(page.offset() as i64),
            ],
        )
        .await?
        .iter()
        .map(job_row)
        .collect::<StoreResult<_>>()?;
        Ok(Page::of(items, page, total))
    }

    async fn stats(&self, queues: &[&str]) -> StoreResult<Vec<QueueStats>> {
        let c = self.conn().await?;
        let counts = rows(
            &c,
            "SELECT queue, state, COUNT(*) FROM jobs WHERE state IN ('queued', 'running')
             GROUP BY queue, state ORDER BY queue, state",
            &[],
        )
        .await?;
        let mut out: Vec<QueueStats> = queues
            .iter()
            .map(|q| QueueStats {
                queue: q.to_string(),
                ..Default::default()
            })
            .collect();
        for r in &counts {
            let (queue, state, n): (String, &str, i64) = (col(r, 0)?, col(r, 1)?, col(r, 2)?);
            let i = match out.iter().position(|s| s.queue == queue) {
                Some(i) => i,
                None => {
                    out.push(QueueStats {
                        queue,
                        ..Default::default()
                    });
                    out.len() - 1
                }
            };
            if state == "queued" {
                out[i].queued = n as u64;
            } else {
                out[i].running = n as u64;
            }
        }
        Ok(out)
    }

    async fn recover(&self, stale_after: Duration) -> StoreResult<Recovery> {
        let me = self.node();
        let stale = millis(stale_after);
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(map_pg)?;
        // Running jobs whose claimer is not this instance and is dead: an
        // earlier instance of this node, silent past the bound, or unknown.
        // Rows locked right now (their holder is reporting) wait for the
        // next round.
        let dead = rows(
            &tx,
            &format!(
                "SELECT j.id, j.attempts, j.max_attempts FROM jobs j
                 LEFT JOIN nodes n ON n.instance = j.claimed_by
                 WHERE j.state = 'running' AND j.claimed_by IS DISTINCT FROM $1
                   AND (n.instance IS NULL OR n.node = $2 OR n.heartbeat_at < {NOW} - $3::bigint)
                 ORDER BY j.seq
                 FOR UPDATE OF j SKIP LOCKED"
            ),
            &[&me.instance, &me.node, &stale],
        )
        .await?;
        let requeue = format!(
            "UPDATE jobs SET state = 'queued', started_at = NULL, claimed_by = NULL, message = $2
             WHERE id = $1 RETURNING queue, {WAKE}"
        );
        let fail = format!(
            "UPDATE jobs SET state = 'failed', finished_at = {NOW}, claimed_by = NULL, error = $2
             WHERE id = $1"
        );
        let mut out = Recovery::default();
        let mut queues = Vec::new();
        for r in &dead {
            let id: String = col(r, 0)?;
            let (attempts, max) = (
                col::<i32>(r, 1)?.max(0) as u32,
                col::<i32>(r, 2)?.max(0) as u32,
            );
            if attempts < max {
                let q = opt_row(&tx, &requeue, &[&id, &requeue_message(attempts, max)]).await?;
                if let Some(q) = q {
                    queues.push(col::<String>(&q, 0)?);
                }
                out.requeued.push(id);
            } else {
                exec(&tx, &fail, &[&id, &interrupted_message(attempts, max)]).await?;
                out.failed.push(id);
            }
        }
        // Earlier instances of this node, and instances silent for ten
        // bounds, are forgotten.
        exec(
            &tx,
            &format!(
                "DELETE FROM nodes WHERE instance <> $1
                 AND (node = $2 OR heartbeat_at < {NOW} - 10 * $3::bigint)"
            ),
            &[&me.instance, &me.node, &stale],
        )
        .await?;
        tx.commit().await.map_err(map_pg)?;
        for q in &queues {
            self.wakeups().wake(q);
        }
        Ok(out)
    }

    async fn purge_finished(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let c = self.conn().await?;
        exec(
            &c,
            "WITH runs AS (DELETE FROM schedule_runs WHERE due_at < $1)
             DELETE FROM jobs WHERE state IN ('succeeded', 'failed', 'cancelled')
             AND finished_at < $1",
            &[&before.timestamp_millis()],
        )
        .await
    }

    async fn create_schedule(&self, s: NewSchedule) -> StoreResult<Schedule> {
        let sql = format!(
            "INSERT INTO schedules (id, name, cron, job, enabled, created_at)
             VALUES ($1, $2, $3, $4, $5, {NOW}) RETURNING {SCHEDULE_COLS}"
        );
        let job = serde_json::to_string(&s.job).map_err(backend)?;
        let c = self.conn().await?;
        let r = opt_row(&c, &sql, &[&new_id(), &s.name, &s.cron, &job, &s.enabled])
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => {
                    StoreError::Conflict(format!("a schedule named {:?} already exists", s.name))
                }
                other => other,
            })?
            .ok_or_else(|| backend("INSERT ... RETURNING returned no row"))?;
        schedule_row(&r)
    }

    async fn list_schedules(&self, page: PageRequest) -> StoreResult<Page<Schedule>> {
        let c = self.conn().await?;
        let total = count(&c, "SELECT COUNT(*) FROM schedules", &[]).await?;
        let items = rows(
            &c,
            &format!("SELECT {SCHEDULE_COLS} FROM schedules ORDER BY name LIMIT $1 OFFSET $2"),
            &[&i64::from(page.page_size), &(page.offset() as i64)],
        )
        .await?
        .iter()
        .map(schedule_row)
        .collect::<StoreResult<_>>()?;
        Ok(Page::of(items, page, total))
    }

    async fn all_schedules(&self) -> StoreResult<Vec<Schedule>> {
        let c = self.conn().await?;
        rows(
            &c,
            &format!("SELECT {SCHEDULE_COLS} FROM schedules ORDER BY name"),
            &[],
        )
        .await?
        .iter()
        .map(schedule_row)
        .collect()
    }

    async fn get_schedule(&self, id: &str) -> StoreResult<Option<Schedule>> {
        let c = self.conn().await?;
        get_schedule(&c, id).await
    }

    async fn update_schedule(&self, id: &str, u: ScheduleUpdate) -> StoreResult<Schedule> {
        let job = u
            .job
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(backend)?;
        let sql = format!(
            "UPDATE schedules SET cron = COALESCE($2::text, cron), job = COALESCE($3::text, job),
                    enabled = COALESCE($4::boolean, enabled),
                    disabled_reason = CASE WHEN $5::text IS NOT NULL THEN $5::text
                                           WHEN $4::boolean THEN NULL
                                           ELSE disabled_reason END
             WHERE id = $1 RETURNING {SCHEDULE_COLS}"
        );
        let c = self.conn().await?;
        opt_row(
            &c,
            &sql,
            &[&id, &u.cron, &job, &u.enabled, &u.disabled_reason],
        )
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("schedule {id}")))
        .and_then(|r| schedule_row(&r))
    }

    async fn delete_schedule(&self, id: &str) -> StoreResult<()> {
        let c = self.conn().await?;
        match exec(&c, "DELETE FROM schedules WHERE id = $1", &[&id]).await? {
            0 => Err(StoreError::NotFound(format!("schedule {id}"))),
            _ => Ok(()),
        }
    }

    async fn fire_schedule(
        &self,
        schedule_id: &str,
        due_at: DateTime<Utc>,
        job: NewJob,
    ) -> StoreResult<Option<Job>> {
        let due = due_at.timestamp_millis();
        let id = new_id();
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(map_pg)?;
        // The run is recorded first: a concurrent firing of the same
        // instant waits on it here and then inserts nothing.
        let won = exec(
            &tx,
            "INSERT INTO schedule_runs (schedule_id, due_at, job_id) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
            &[&schedule_id, &due, &id],
        )
        .await?;
        if won == 0 {
            return Ok(None);
        }
        let job = insert_job(&tx, &id, &job).await?;
        exec(
            &tx,
            "UPDATE schedules SET last_run_at = $2, last_job_id = $3 WHERE id = $1",
            &[&schedule_id, &due, &id],
        )
        .await?;
        tx.commit().await.map_err(map_pg)?;
        self.wakeups().wake(&job.queue);
        Ok(Some(job))
    }
}

// ---------------------------------------------------------------------------
// Wake-ups

type Session = (Client, Connection<Socket, NoTlsStream>);

/// A connection of its own (not from the pool), as `opts` describes it.
async fn dedicated(config: &Config) -> StoreResult<Session> {
    config.connect(NoTls).await.map_err(backend)
}

/// The idle claimers of each queue.
#[derive(Default)]
struct Hub {
    queues: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Hub {
    fn queues(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Notify>>> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn queue(&self, queue: &str) -> Arc<Notify> {
        self.queues().entry(queue.to_string()).or_default().clone()
    }

    fn wake(&self, queue: &str) {
        if let Some(n) = self.queues().get(queue) {
            n.notify_waiters();
        }
    }

    fn wake_all(&self) {
        for n in self.queues().values() {
            n.notify_waiters();
        }
    }
}

/// Wake-ups of idle claimers, fed by `LISTEN qb_jobs` on a dedicated
/// connection of this process (and by this process's own commits).
pub struct Wakeups {
    hub: Arc<Hub>,
    listener: tokio::task::AbortHandle,
}

impl Drop for Wakeups {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl Wakeups {
    /// Opens the listening connection (retrying while the server does not
    /// answer) and keeps it up in a task of its own until dropped.
    pub(crate) async fn listen(opts: &PgOptions) -> StoreResult<Arc<Wakeups>> {
        let config = crate::config_of(&opts.url, &opts.application_name)?;
        let hub = Arc::new(Hub::default());
        let session =
            qb_core::backoff::retry("the PostgreSQL job listener", opts.connect_timeout, || {
                subscribe(&config, &hub)
            })
            .await?;
        let listener = tokio::spawn(keep_listening(config, hub.clone(), session)).abort_handle();
        Ok(Arc::new(Wakeups { hub, listener }))
    }

    /// What the idle claimers of `queue` wait on.
    pub(crate) fn queue(&self, queue: &str) -> Arc<Notify> {
        self.hub.queue(queue)
    }

    /// Wakes the idle claimers of `queue` in this process.
    pub(crate) fn wake(&self, queue: &str) {
        self.hub.wake(queue)
    }
}

/// Polls the connection, waking the claimers of each notified queue, until
/// it ends; returns why.
async fn drive(conn: &mut Connection<Socket, NoTlsStream>, hub: &Hub) -> String {
    loop {
        match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
            Some(Ok(AsyncMessage::Notification(n))) => hub.wake(n.payload()),
            Some(Ok(_)) => {}
            Some(Err(e)) => return e.to_string(),
            None => return "closed".into(),
        }
    }
}

/// Connects and runs `LISTEN`, driving the connection meanwhile.
async fn subscribe(config: &Config, hub: &Hub) -> StoreResult<Session> {
    let (client, mut conn) = dedicated(config).await?;
    tokio::select! {
        r = client.batch_execute(LISTEN) => r.map_err(backend)?,
        why = drive(&mut conn, hub) => {
            return Err(backend(format!("the listening connection ended: {why}")));
        }
    }
    Ok((client, conn))
}

/// Drives `session`; when it drops, reconnects with backoff and wakes every
/// claimer, since notifications may have been missed meanwhile.
async fn keep_listening(config: Config, hub: Arc<Hub>, mut session: Session) {
    loop {
        let (client, mut conn) = session;
        let why = drive(&mut conn, &hub).await;
        drop(client);
        warn!(reason = %why, "job wake-up listener lost its connection; reconnecting");
        let mut pause = Duration::from_millis(250);
        session = loop {
            match subscribe(&config, &hub).await {
                Ok(s) => break s,
                Err(e) => {
                    warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "job wake-up listener cannot reconnect");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(10));
                }
            }
        };
        info!("job wake-up listener reconnected");
        hub.wake_all();
    }
}

// ---------------------------------------------------------------------------
// Node lock

/// Exclusive use of a node name, held by a session advisory lock on a
/// connection of its own: released when dropped, or by PostgreSQL when
/// the process dies and its connection ends.
pub struct NodeLock {
    node: String,
    client: Client,
    conn: tokio::task::JoinHandle<()>,
}

impl NodeLock {
    pub fn node(&self) -> &str {
        &self.node
    }

    /// False once the lock's connection ended (the lock is then lost).
    pub fn is_held(&self) -> bool {
        !self.client.is_closed() && !self.conn.is_finished()
    }
}

impl Drop for NodeLock {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

impl std::fmt::Debug for NodeLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeLock")
            .field("node", &self.node)
            .finish()
    }
}

impl PgStore {
    /// Takes the lock on this process's node name, trying again until
    /// `wait` passes; `Conflict` when another running process holds it.
    /// (Node names are hashed to the 32-bit lock key.)
    pub async fn hold_node_lock(&self, wait: Duration) -> StoreResult<NodeLock> {
        let node = self.node().node.clone();
        let config = crate::config_of(&self.opts().url, &self.opts().application_name)?;
        let (client, conn) = dedicated(&config).await?;
        let conn = tokio::spawn(async move {
            let _ = conn.await;
        });
        let lock = NodeLock { node, client, conn };
        let deadline = Instant::now() + wait;
        loop {
            let got: bool = lock
                .client
                .query_one(
                    "SELECT pg_try_advisory_lock(hashtext('qb-node:' || $1::text))",
                    &[&lock.node],
                )
                .await
                .map_err(map_pg)?
                .try_get(0)
                .map_err(backend)?;
            if got {
                return Ok(lock);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(StoreError::Conflict(format!(
                    "node id {} is in use by a running quantbox; give each process its own cluster.node_id",
                    lock.node
                )));
            }
            tokio::time::sleep(left.min(Duration::from_millis(250))).await;
        }
    }
}
