//! Cluster adapters on PostgreSQL behind the `qb-core` seams, so several
//! quantbox processes share one state:
//!
//! - [`MetaStore`](qb_core::MetaStore) (`meta.rs`): users, keys, tokens,
//!   audit, instruments, plugins.
//! - [`JobQueue`](qb_core::JobQueue) (`jobs.rs`): claims with
//!   `FOR UPDATE SKIP LOCKED` recording node and instance, heartbeats,
//!   take-back of dead instances' jobs only, fencing of stale claims,
//!   wake-ups on every node through `LISTEN/NOTIFY` (sent in the enqueuing
//!   transaction, so delivered only after it committed).
//! - [`KvStore`](qb_core::KvStore) (`kv.rs`): hot state; a batch is one
//!   transaction, durable when it returns (`synchronous_commit` on).
//! - [`RecordStore`](qb_core::records::RecordStore) (`records.rs`): the
//!   metadata and job tables row by row, for `quantbox cluster import`.
//!
//! Schema changes are in [`migrations`], applied under an advisory lock.
//! SQL is written by hand, as in the SQLite adapter; times are integer
//! milliseconds UTC.

pub mod blobs;
pub mod jobs;
pub mod kv;
pub mod meta;
pub mod migrations;
pub mod records;
mod sql;
pub mod testing;
pub mod ticks;

use std::sync::Arc;
use std::time::Duration;

use qb_core::backoff::retry;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use qb_core::{NodeIdentity, StoreError, StoreResult};
use tokio_postgres::NoTls;

/// How to reach PostgreSQL.
#[derive(Clone)]
pub struct PgOptions {
    /// `postgres://user@host:port/db` (the seed's `DATABASE_URL`).
    pub url: String,
    /// A streaming replica for reads that tolerate lag; `url` when absent.
    pub read_url: Option<String>,
    pub pool_size: usize,
    pub read_pool_size: usize,
    /// How long [`PgStore::connect`] retries while the server does not answer.
    pub connect_timeout: Duration,
    /// Shown in `pg_stat_activity`.
    pub application_name: String,
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("url", &"[redacted]")
            .field("pool_size", &self.pool_size)
            .field("read_pool_size", &self.read_pool_size)
            .finish()
    }
}

impl PgOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            read_url: None,
            pool_size: 8,
            read_pool_size: 4,
            connect_timeout: Duration::from_secs(60),
            application_name: "quantbox".into(),
        }
    }
}

/// The PostgreSQL stores of one process. Cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    read: Pool,
    node: NodeIdentity,
    opts: PgOptions,
    wakeups: Arc<jobs::Wakeups>,
}

pub(crate) fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Unique violations become `Conflict`; everything else `Backend`, with
/// the server's message (`tokio_postgres::Error` alone says "db error").
pub(crate) fn map_pg(e: tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error()
        && (db.code() == &tokio_postgres::error::SqlState::UNIQUE_VIOLATION
            || db.code() == &tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION)
    {
        return StoreError::Conflict(db.message().to_string());
    }
    match std::error::Error::source(&e) {
        Some(cause) => backend(format!("{e}: {cause}")),
        None => backend(e),
    }
}

fn config_of(url: &str, app: &str) -> StoreResult<tokio_postgres::Config> {
    let mut c: tokio_postgres::Config = url
        .parse()
        .map_err(|e| StoreError::Invalid(format!("database_url: {e}")))?;
    c.application_name(app);
    c.connect_timeout(Duration::from_secs(5));
    c.keepalives(true);
    c.keepalives_idle(Duration::from_secs(30));
    Ok(c)
}

fn pool_of(url: &str, app: &str, size: usize) -> StoreResult<Pool> {
    let mgr = Manager::from_config(
        config_of(url, app)?,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(mgr)
        .max_size(size.max(1))
        .wait_timeout(Some(Duration::from_secs(10)))
        .create_timeout(Some(Duration::from_secs(10)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(backend)
}

impl PgStore {
    /// Connects (retrying while the server comes up), applies migrations
    /// under the migration lock and starts the job wake-up listener.
    /// `node` is who this process claims jobs as.
    pub async fn connect(opts: PgOptions, node: NodeIdentity) -> StoreResult<Self> {
        let pg = config_of(&opts.url, &opts.application_name)?;
        let mut client = retry("PostgreSQL", opts.connect_timeout, || async {
            let (client, conn) = pg.connect(NoTls).await.map_err(backend)?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(client)
        })
        .await?;
        migrations::run(&mut client).await?;
        drop(client);
        let pool = pool_of(&opts.url, &opts.application_name, opts.pool_size)?;
        let read = match &opts.read_url {
            Some(url) => {
                let read = pool_of(url, &opts.application_name, opts.read_pool_size)?;
                retry(
                    "the PostgreSQL read replica",
                    opts.connect_timeout,
                    || async {
                        drop(read.get().await.map_err(backend)?);
                        Ok(())
                    },
                )
                .await?;
                read
            }
            None => pool.clone(),
        };
        let wakeups = jobs::Wakeups::listen(&opts).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                read,
                node,
                opts,
                wakeups,
            }),
        })
    }

    /// Applies migrations only (`quantbox migrate`): (before, after).
    pub async fn migrate(opts: &PgOptions) -> StoreResult<(u32, u32)> {
        let pg = config_of(&opts.url, &opts.application_name)?;
        let mut client = retry("PostgreSQL", opts.connect_timeout, || async {
            let (client, conn) = pg.connect(NoTls).await.map_err(backend)?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(client)
        })
        .await?;
        migrations::run(&mut client).await
    }

    pub fn node(&self) -> &NodeIdentity {
        &self.inner.node
    }

    /// A pooled connection for writes and reads that must see them.
    pub(crate) async fn conn(&self) -> StoreResult<deadpool_postgres::Object> {
        self.inner.pool.get().await.map_err(backend)
    }

    /// A pooled connection to the read replica (the primary without one).
    pub(crate) async fn read_conn(&self) -> StoreResult<deadpool_postgres::Object> {
        self.inner.read.get().await.map_err(backend)
    }

    pub(crate) fn opts(&self) -> &PgOptions {
        &self.inner.opts
    }

    pub(crate) fn wakeups(&self) -> &Arc<jobs::Wakeups> {
        &self.inner.wakeups
    }

    /// Whether a read replica is configured.
    pub fn has_read_replica(&self) -> bool {
        self.inner.opts.read_url.is_some()
    }
}
