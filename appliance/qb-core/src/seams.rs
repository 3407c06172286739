//! The seams between quantbox and its storage: one trait per store.
//!
//! | trait        | single box (`qb-store`)         | cluster mode                     |
//! |--------------|---------------------------------|----------------------------------|
//! | [`MetaStore`]  | SQLite (users, keys, grants, audit, instruments, plugins) | PostgreSQL (`qb-pg`) |
//! | [`JobQueue`]   | SQLite (jobs, schedules, nodes) | PostgreSQL, `LISTEN/NOTIFY` wake-ups |
//! | [`KvStore`]    | redb (hot state)                | PostgreSQL (durable batches)     |
//! | [`PubSub`]     | tokio broadcast                 | Redis pub/sub (`qb-redis`)       |
//! | [`RateLimiter`]| governor, in process            | Redis (one GCRA script)          |
//! | [`TickStore`]  | DuckDB (`qb-market`)            | TimescaleDB / PostgreSQL         |
//! | [`BlobStore`]  | files under the data directory  | PostgreSQL (chunked rows)        |
//!
//! Callers hold `Arc<dyn Trait>` and never name an adapter; `qb-stores`
//! opens them from the configuration. Every adapter runs the same
//! conformance suite (`qb-conformance`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::broadcast;

use crate::market::*;
use crate::model::*;

/// Why a store call failed; the kind is what callers branch on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("storage backend error: {0}")]
    Backend(String),
    /// A fenced write refused: the lease it was made under has passed to
    /// another holder (see [`KvStore::write_fenced`]). Nothing was written.
    #[error("{0}")]
    Fenced(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Users, API keys, refresh tokens, account grants and the audit log.
#[async_trait]
pub trait MetaStore: Send + Sync {
    /// Cheap liveness probe of the backend.
    async fn ping(&self) -> StoreResult<()>;
    /// Applied schema version and the version this build expects.
    async fn schema_version(&self) -> StoreResult<(u32, u32)>;

    async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        role: Role,
    ) -> StoreResult<User>;
    async fn user_credentials(&self, username: &str) -> StoreResult<Option<UserCredentials>>;
    async fn user_by_id(&self, id: i64) -> StoreResult<Option<User>>;
    async fn list_users(&self, page: PageRequest) -> StoreResult<Page<User>>;
    async fn update_user(&self, username: &str, update: UserUpdate) -> StoreResult<User>;
    async fn delete_user(&self, username: &str) -> StoreResult<()>;
    async fn count_admins(&self) -> StoreResult<u64>;

    async fn create_api_key(
        &self,
        name: &str,
        prefix: &str,
        key_hash: &str,
        role: Role,
        user_id: i64,
    ) -> StoreResult<ApiKey>;
    /// The active key with this hash and its owner; records the use.
    async fn api_key_by_hash(&self, key_hash: &str) -> StoreResult<Option<(ApiKey, User)>>;
    /// Keys of one owner, or all keys when `owner` is `None`.
    async fn list_api_keys(
        &self,
        owner: Option<i64>,
        page: PageRequest,
    ) -> StoreResult<Page<ApiKey>>;
    /// Revokes a key (of `owner` when given).
    async fn revoke_api_key(&self, id: &str, owner: Option<i64>) -> StoreResult<ApiKey>;

    async fn insert_refresh_token(&self, token: &RefreshToken) -> StoreResult<()>;
    async fn refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshToken>>;
    /// Marks one token used; false when it was already revoked.
    async fn revoke_refresh_token(&self, token_hash: &str) -> StoreResult<bool>;
    async fn revoke_refresh_family(&self, family: &str) -> StoreResult<u64>;
    async fn revoke_user_refresh_tokens(&self, user_id: i64) -> StoreResult<u64>;

    async fn append_audit(&self, entry: NewAuditEntry) -> StoreResult<()>;
    async fn list_audit(
        &self,
        filter: &AuditFilter,
        page: PageRequest,
    ) -> StoreResult<Page<AuditEntry>>;

    /// Deletes audit entries and refresh tokens older than the cut-offs.
    async fn purge(
        &self,
        audit_before: DateTime<Utc>,
        tokens_before: DateTime<Utc>,
    ) -> StoreResult<(u64, u64)>;
    /// Flushes the write-ahead log into the main file (or the backend's analogue).
    async fn checkpoint(&self) -> StoreResult<String>;

    async fn upsert_instrument(&self, instrument: &Instrument) -> StoreResult<Instrument>;
    async fn instrument(&self, symbol: &str) -> StoreResult<Option<Instrument>>;
    async fn list_instruments(&self, page: PageRequest) -> StoreResult<Page<Instrument>>;
    async fn delete_instrument(&self, symbol: &str) -> StoreResult<()>;
    /// Creates the symbols not registered yet with defaults; returns those created.
    async fn ensure_instruments(&self, symbols: &[String]) -> StoreResult<Vec<String>>;

    /// Stores a plugin and its component. `Conflict` when the id, or the
    /// name and version, are taken.
    async fn insert_plugin(&self, info: &PluginInfo, wasm: &[u8]) -> StoreResult<()>;
    async fn plugin(&self, id: &str) -> StoreResult<Option<PluginInfo>>;
    /// The newest upload of `name` (of `version` when given).
    async fn plugin_by_name(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> StoreResult<Option<PluginInfo>>;
    /// The component bytes of a plugin.
    async fn plugin_wasm(&self, id: &str) -> StoreResult<Option<Vec<u8>>>;
    /// Newest first.
    async fn list_plugins(&self, page: PageRequest) -> StoreResult<Page<PluginInfo>>;
    async fn delete_plugin(&self, id: &str) -> StoreResult<()>;

    /// Grants paper account `account` to user `user_id` (`NotFound` when
    /// the user does not exist). Granting again keeps the first grant and
    /// returns it. Deleting the user removes their grants.
    async fn grant_account(
        &self,
        account: &str,
        user_id: i64,
        granted_by: &str,
    ) -> StoreResult<AccountGrant>;
    /// Revokes a grant; `NotFound` when there is none.
    async fn revoke_account(&self, account: &str, user_id: i64) -> StoreResult<()>;
    /// Grants of one account (`account`), of one user (`user_id`), of both
    /// or of all; ordered by account, then user id.
    async fn account_grants(
        &self,
        account: Option<&str>,
        user_id: Option<i64>,
    ) -> StoreResult<Vec<AccountGrant>>;
}

/// Who claims jobs: the configured node name (stable across restarts, e.g.
/// the host or pod name) and this process's instance (new at every start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    pub node: String,
    pub instance: String,
}

impl NodeIdentity {
    /// `node` with a fresh instance id.
    pub fn new(node: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            instance: uuid::Uuid::now_v7().to_string(),
        }
    }
}

/// Persistent named job queues and the cron schedules that feed them.
///
/// An adapter acts for one [`NodeIdentity`]: a claim records its node and
/// instance, and `progress`, `finish` and `release` of a job whose claim
/// this instance no longer holds (taken back by [`JobQueue::recover`]) are
/// refused with `Conflict`, so a stalled node can never overwrite the
/// result of the node that took its job over.
#[async_trait]
pub trait JobQueue: Send + Sync {
    async fn enqueue(&self, job: NewJob) -> StoreResult<Job>;
    /// Takes the oldest queued job of `queue` and marks it running under
    /// this instance's claim; waits up to `wait` for one to arrive (woken
    /// by an enqueue on any node, not only by polling).
    async fn claim(&self, queue: &str, wait: Duration) -> StoreResult<Option<Job>>;
    /// Records progress; returns whether cancellation was requested.
    async fn progress(&self, id: &str, fraction: f64, message: Option<&str>) -> StoreResult<bool>;
    async fn finish(&self, id: &str, outcome: &JobOutcome) -> StoreResult<Job>;
    /// Puts a running job back in its queue (shutdown interrupted it).
    async fn release(&self, id: &str, reason: &str) -> StoreResult<()>;
    /// Records that this instance is alive (call it every few seconds).
    async fn heartbeat(&self) -> StoreResult<()>;
    /// Cancels a queued job at once; asks a running one to stop.
    async fn request_cancel(&self, id: &str) -> StoreResult<Job>;
    async fn get(&self, id: &str) -> StoreResult<Option<Job>>;
    async fn list(&self, filter: &JobFilter, page: PageRequest) -> StoreResult<Page<Job>>;
    async fn stats(&self, queues: &[&str]) -> StoreResult<Vec<QueueStats>>;
    /// Takes back the jobs of dead instances: those claimed by an earlier
    /// instance of this node (it restarted) and those whose instance has not
    /// sent a heartbeat for `stale_after`. Each is re-queued, or failed with
    /// a reason once it used up its attempts. Jobs of live instances are
    /// left alone.
    async fn recover(&self, stale_after: Duration) -> StoreResult<Recovery>;
    async fn purge_finished(&self, before: DateTime<Utc>) -> StoreResult<u64>;

    async fn create_schedule(&self, schedule: NewSchedule) -> StoreResult<Schedule>;
    async fn list_schedules(&self, page: PageRequest) -> StoreResult<Page<Schedule>>;
    async fn all_schedules(&self) -> StoreResult<Vec<Schedule>>;
    async fn get_schedule(&self, id: &str) -> StoreResult<Option<Schedule>>;
    async fn update_schedule(&self, id: &str, update: ScheduleUpdate) -> StoreResult<Schedule>;
    async fn delete_schedule(&self, id: &str) -> StoreResult<()>;
    /// Enqueues the run of `schedule_id` due at `due_at` exactly once: a
    /// second call for the same instant returns `None`.
    async fn fire_schedule(
        &self,
        schedule_id: &str,
        due_at: DateTime<Utc>,
        job: NewJob,
    ) -> StoreResult<Option<Job>>;
}

/// Progress callback of long store operations: fraction done, message.
pub type Progress<'a> = &'a dyn Fn(f64, &str);

/// Ticks and bars. Writes return after they are committed.
#[async_trait]
pub trait TickStore: Send + Sync {
    async fn ping(&self) -> StoreResult<()>;
    /// Appends ticks; `seq` is assigned per `(symbol, ts)` in batch order
    /// ([`TickColumns::number`]). Ticks already stored (same
    /// `(symbol, ts, seq)`) are skipped; the report says which of the batch
    /// were stored ([`AppendReport::new`]).
    async fn append(&self, ticks: TickColumns) -> StoreResult<AppendReport>;
    /// Reads a file into the store. In strict mode a bad row stores nothing
    /// and is returned as `Ok` with `rows_stored == 0` and the rejections.
    /// Blocking: call it from a worker thread.
    fn import(&self, request: &ImportRequest, progress: Progress<'_>) -> StoreResult<ImportReport>;
    async fn coverage(&self) -> StoreResult<Vec<Coverage>>;
    async fn ticks(&self, query: TickQuery) -> StoreResult<Vec<Tick>>;
    async fn bars(&self, query: BarQuery) -> StoreResult<Vec<Bar>>;
    /// Writes the selection to `dest`; returns rows written.
    async fn export(
        &self,
        query: ExportQuery,
        format: ExportFormat,
        dest: &std::path::Path,
    ) -> StoreResult<u64>;
    /// Deletes ticks and bars older than `before`; returns rows deleted.
    async fn retain(&self, before: Nanos) -> StoreResult<u64>;
    /// Folds the write-ahead log into the database file.
    async fn checkpoint(&self) -> StoreResult<()>;

    /// Stores ticks exactly as given, `seq` included (a copy from another
    /// tick store), in one transaction; ticks whose `(symbol, ts, seq)` is
    /// stored already are skipped. Returns how many were stored.
    async fn restore_ticks(&self, ticks: Vec<Tick>) -> StoreResult<u64>;
    /// Imported bars of `symbol` at `interval_s` with `ts` after `after`,
    /// in time order, at most `limit` (bars computed from ticks are not
    /// stored and not listed).
    async fn imported_bars(
        &self,
        symbol: &str,
        interval_s: u32,
        after: Option<Nanos>,
        limit: u32,
    ) -> StoreResult<Vec<Bar>>;
    /// Stores imported bars exactly as given (a copy), in one transaction;
    /// bars whose `(symbol, interval_s, ts)` is stored already are skipped.
    /// Returns how many were stored.
    async fn restore_bars(&self, symbol: &str, interval_s: u32, bars: Vec<Bar>)
    -> StoreResult<u64>;
}

/// One write of a [`KvStore::write`] batch.
#[derive(Debug, Clone, PartialEq)]
pub enum KvWrite {
    Put {
        ns: String,
        key: String,
        value: Vec<u8>,
    },
    Delete {
        ns: String,
        key: String,
    },
}

/// Every tick of `symbol` in `[start, end)` in `(ts, seq)` order, read
/// from `store` in pages of `page` ticks; `each` gets every page.
pub async fn tick_pages(
    store: &dyn TickStore,
    symbol: &str,
    start: Option<Nanos>,
    end: Option<Nanos>,
    page: u32,
    mut each: impl FnMut(Vec<Tick>),
) -> StoreResult<()> {
    let mut after = None;
    loop {
        let ticks = store
            .ticks(TickQuery {
                symbol: symbol.to_string(),
                start,
                end,
                after,
                limit: page,
            })
            .await?;
        let full = ticks.len() == page as usize;
        after = ticks.last().map(|t| (t.ts, t.seq));
        each(ticks);
        if !full {
            return Ok(());
        }
    }
}

/// Ticks per published event of a large ingest.
const PUBLISH_SLICE: usize = 10_000;

/// Live ingest: stores `ticks`, then publishes the ticks this call stored,
/// in batch order, on [`TICKS_TOPIC`] (grouped per symbol). A retried
/// request stores nothing twice and publishes nothing twice, so the desk
/// and live strategies never see one price twice.
pub async fn ingest_ticks(
    store: &dyn TickStore,
    pubsub: &dyn PubSub,
    ticks: TickColumns,
) -> StoreResult<AppendReport> {
    // `append` numbers same-time ticks in batch order and hands back the
    // ones it stored, in that order (their seq is not part of the event).
    // Published in slices, so a large request never holds its whole
    // batch as JSON at once.
    let mut report = store.append(ticks).await?;
    let fresh = std::mem::take(&mut report.new);
    for start in (0..fresh.len()).step_by(PUBLISH_SLICE) {
        let rows = start..(start + PUBLISH_SLICE).min(fresh.len());
        for batch in fresh.group(rows) {
            pubsub.publish(TICKS_TOPIC, serde_json::to_value(batch).unwrap_or_default());
        }
    }
    Ok(report)
}

/// Hot state: small values read and written often, optionally expiring.
#[async_trait]
pub trait KvStore: Send + Sync {
    async fn ping(&self) -> StoreResult<()>;
    async fn get(&self, ns: &str, key: &str) -> StoreResult<Option<Vec<u8>>>;
    async fn put(
        &self,
        ns: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> StoreResult<()>;
    async fn delete(&self, ns: &str, key: &str) -> StoreResult<bool>;
    /// Applies every write, or none of them, in one durable commit.
    async fn write(&self, batch: Vec<KvWrite>) -> StoreResult<()>;
    /// Live entries of `ns` whose key starts with `prefix`, in key order.
    async fn scan(&self, ns: &str, prefix: &str) -> StoreResult<Vec<(String, Vec<u8>)>>;
    /// Drops expired entries; returns how many.
    async fn purge_expired(&self) -> StoreResult<u64>;
    /// Durable entries (those put without an expiry) of every namespace
    /// after `after` (namespace, key), in (namespace, key) byte order, at
    /// most `limit`: how a store is copied into another. Leases are not
    /// entries.
    async fn entries(&self, after: Option<(&str, &str)>, limit: u32) -> StoreResult<Vec<KvEntry>>;

    /// Takes the lease `name` for `holder` for `ttl` when it is free,
    /// expired, or already `holder`'s (a restart of the same node, which
    /// the node-name lock or the embedded store's file lock makes the only
    /// live one). Every acquisition raises the lease's epoch. `None`: a
    /// live lease of another holder. Expiry follows the store's clock (the
    /// database server's in a cluster), never the callers'.
    async fn lease_acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> StoreResult<Option<Lease>>;
    /// Extends `lease` by `ttl` from now; `false` when its epoch is no
    /// longer the current one (another holder took over). An expired lease
    /// nobody took is still this epoch's, and renewing it is safe.
    async fn lease_renew(&self, lease: &Lease, ttl: Duration) -> StoreResult<bool>;
    /// Lets `lease` expire now (if still current), so a standby can take
    /// it at once.
    async fn lease_release(&self, lease: &Lease) -> StoreResult<()>;
    /// Who holds `name`, if anyone ever did.
    async fn lease_state(&self, name: &str) -> StoreResult<Option<LeaseState>>;
    /// [`KvStore::write`] under a lease: in the same transaction, checks
    /// that `lease`'s epoch is still the current one, and writes nothing
    /// (`StoreError::Fenced`) otherwise. A holder that was paused or cut
    /// off while another took over can never write after it.
    async fn write_fenced(&self, lease: &Lease, batch: Vec<KvWrite>) -> StoreResult<()>;
}

/// One durable entry of a [`KvStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    pub ns: String,
    pub key: String,
    pub value: Vec<u8>,
}

/// A lease held: its fencing token is `epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub name: String,
    pub holder: String,
    pub epoch: i64,
}

/// A lease as the store sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeaseState {
    pub holder: String,
    pub epoch: i64,
    /// Milliseconds until it expires (zero or less: expired).
    pub expires_in_ms: i64,
}

/// A [`KvStore`] whose every write is fenced by `lease`: what a lease
/// holder hands to code that must stop writing the moment the lease is
/// lost (the trading desk, live strategies). Reads pass through.
pub struct Fenced {
    inner: Arc<dyn KvStore>,
    lease: Lease,
}

impl Fenced {
    pub fn new(inner: Arc<dyn KvStore>, lease: Lease) -> Self {
        Self { inner, lease }
    }

    pub fn lease(&self) -> &Lease {
        &self.lease
    }
}

#[async_trait]
impl KvStore for Fenced {
    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }
    async fn get(&self, ns: &str, key: &str) -> StoreResult<Option<Vec<u8>>> {
        self.inner.get(ns, key).await
    }
    async fn put(
        &self,
        ns: &str,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> StoreResult<()> {
        if ttl.is_some() {
            return Err(StoreError::Invalid(
                "fenced writes are durable: they take no expiry".into(),
            ));
        }
        let put = KvWrite::Put {
            ns: ns.into(),
            key: key.into(),
            value: value.to_vec(),
        };
        self.inner.write_fenced(&self.lease, vec![put]).await
    }
    async fn delete(&self, ns: &str, key: &str) -> StoreResult<bool> {
        let existed = self.inner.get(ns, key).await?.is_some();
        let delete = KvWrite::Delete {
            ns: ns.into(),
            key: key.into(),
        };
        self.inner.write_fenced(&self.lease, vec![delete]).await?;
        Ok(existed)
    }
    async fn write(&self, batch: Vec<KvWrite>) -> StoreResult<()> {
        self.inner.write_fenced(&self.lease, batch).await
    }
    async fn scan(&self, ns: &str, prefix: &str) -> StoreResult<Vec<(String, Vec<u8>)>> {
        self.inner.scan(ns, prefix).await
    }
    async fn purge_expired(&self) -> StoreResult<u64> {
        self.inner.purge_expired().await
    }
    async fn entries(&self, after: Option<(&str, &str)>, limit: u32) -> StoreResult<Vec<KvEntry>> {
        self.inner.entries(after, limit).await
    }
    async fn lease_acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> StoreResult<Option<Lease>> {
        self.inner.lease_acquire(name, holder, ttl).await
    }
    async fn lease_renew(&self, lease: &Lease, ttl: Duration) -> StoreResult<bool> {
        self.inner.lease_renew(lease, ttl).await
    }
    async fn lease_release(&self, lease: &Lease) -> StoreResult<()> {
        self.inner.lease_release(lease).await
    }
    async fn lease_state(&self, name: &str) -> StoreResult<Option<LeaseState>> {
        self.inner.lease_state(name).await
    }
    async fn write_fenced(&self, lease: &Lease, batch: Vec<KvWrite>) -> StoreResult<()> {
        self.inner.write_fenced(lease, batch).await
    }
}

/// Files any node may read: uploads waiting for their import, a
/// backtest's outputs (CSV, Parquet, fills, the HTML report). Keys are
/// `/`-separated paths of letters, digits and `._-` (no empty, `.` or `..`
/// segment). A blob is written whole (a reader sees the old one or the
/// new one, never a part) and is durable when `put_file` returns.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Stores the file at `path` under `key`, replacing any blob there;
    /// returns its size.
    async fn put_file(&self, key: &str, path: &std::path::Path) -> StoreResult<u64>;
    /// The blob's bytes, if it exists.
    async fn get(&self, key: &str) -> StoreResult<Option<Vec<u8>>>;
    /// Writes the blob to `path`; `false` if there is none.
    async fn get_file(&self, key: &str, path: &std::path::Path) -> StoreResult<bool>;
    /// Blobs whose key starts with `prefix`, in key order.
    async fn list(&self, prefix: &str) -> StoreResult<Vec<BlobInfo>>;
    /// Deletes the blobs whose key starts with `prefix`; how many.
    async fn delete_prefix(&self, prefix: &str) -> StoreResult<u64>;
    /// Where the blob `key` lives as a file of this machine, when the store
    /// keeps blobs as files (one box): callers write and read there
    /// directly instead of copying.
    fn local_path(&self, _key: &str) -> Option<std::path::PathBuf> {
        None
    }
}

/// One blob as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub key: String,
    pub size: u64,
    /// When it was written (ms UTC).
    pub created_ms: i64,
}

/// Checks a blob key (see [`BlobStore`]).
pub fn check_blob_key(key: &str) -> StoreResult<()> {
    let ok = !key.is_empty()
        && key.len() <= 512
        && key.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        });
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "{key:?} is not a blob key: /-separated names of letters, digits and ._-"
        )))
    }
}

/// One published message.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub topic: String,
    pub data: serde_json::Value,
}

/// Fire-and-forget fan-out. Publishing never blocks on slow subscribers: a
/// subscriber that falls behind loses the oldest messages and is told so by
/// `RecvError::Lagged`. Delivery may be asynchronous (through a broker, in
/// cluster mode): an event reaches subscribers of every process shortly
/// after `publish`, in publish order per publisher, and events published
/// while the broker is unreachable are lost (`status` says so meanwhile).
/// Nothing acknowledged may depend on an event arriving.
pub trait PubSub: Send + Sync {
    fn publish(&self, topic: &str, data: serde_json::Value);
    fn subscribe(&self, topic: &str) -> broadcast::Receiver<Arc<Event>>;
    /// `Err(why)` while events cannot flow (e.g. reconnecting to a broker).
    fn status(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Which backend serves each store (`/ready`, `quantbox config check`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Backends {
    /// `embedded` or `cluster`.
    pub mode: String,
    pub meta: String,
    pub jobs: String,
    pub kv: String,
    pub pubsub: String,
    pub rate_limits: String,
    pub ticks: String,
    pub blobs: String,
}

/// A request budget: `per_sec` sustained, `burst` at once (GCRA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub per_sec: u32,
    pub burst: u32,
}

/// Request budgets per (zone, client), shared by every process using the
/// same backend.
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Spends one request of `key` in `zone`: `Ok(None)` when allowed,
    /// `Ok(Some(wait))` when over budget.
    async fn check(&self, zone: &str, key: &str, quota: Quota) -> StoreResult<Option<Duration>>;
    /// Forgets idle clients (called by housekeeping).
    fn housekeep(&self) {}
}

/// The lock-out instant after `failures` failed logins in a row: none below
/// `threshold`, then `base` doubling per further failure, capped at `max`.
pub fn lockout_until(
    failures: u32,
    threshold: u32,
    base: Duration,
    max: Duration,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if failures < threshold {
        return None;
    }
    let doublings = (failures - threshold).min(20);
    let secs = base
        .as_secs()
        .saturating_mul(1u64 << doublings)
        .min(max.as_secs());
    Some(now + chrono::Duration::seconds(secs as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockout_doubles_and_caps() {
        let now = DateTime::<Utc>::UNIX_EPOCH;
        let b = Duration::from_secs(30);
        let m = Duration::from_secs(900);
        let secs = |f| lockout_until(f, 5, b, m, now).map(|t| (t - now).num_seconds());
        assert_eq!(secs(4), None);
        assert_eq!(secs(5), Some(30));
        assert_eq!(secs(6), Some(60));
        assert_eq!(secs(9), Some(480));
        assert_eq!(secs(10), Some(900));
        assert_eq!(secs(60), Some(900));
    }
}
