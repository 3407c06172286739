//! Opens the stores a configuration selects, for every command: the
//! embedded files of one box (SQLite, redb, DuckDB, in-process fan-out and
//! rate limits) or, when `DATABASE_URL` is set, the cluster backends
//! (PostgreSQL for everything durable, Redis for events and rate limits).
//! This crate and the adapters are the only code that names a backend;
//! everything else holds the `qb-core` traits.
//!
//! [`open_box`] and [`open_cluster`] open the durable stores of either
//! side of `quantbox cluster import`.

pub mod backup;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use qb_core::backoff::retry;
use qb_core::config::Config;
use qb_core::records::RecordStore;
use qb_core::{
    Backends, BlobStore, JobQueue, KvStore, MetaStore, NodeIdentity, PubSub, RateLimiter, TickStore,
};

/// What `config` selects for each store, without connecting to anything.
pub fn backends(config: &Config) -> Backends {
    let ticks = format!("duckdb ({})", duckdb_path(config).display());
    if config.cluster_mode() {
        let pg = if config.database_read_url.is_some() {
            "postgresql (reads that tolerate lag: replica)"
        } else {
            "postgresql"
        };
        Backends {
            mode: "cluster".into(),
            meta: pg.into(),
            jobs: "postgresql (LISTEN/NOTIFY wake-ups)".into(),
            kv: "postgresql".into(),
            pubsub: "redis".into(),
            rate_limits: "redis".into(),
            // The layout (TimescaleDB or native partitions) is detected at
            // start; `Stores::open` fills it in.
            ticks: "postgresql".into(),
            blobs: "postgresql (chunked rows)".into(),
        }
    } else {
        Backends {
            mode: "embedded".into(),
            meta: format!("sqlite ({})", sqlite_path(config).display()),
            jobs: "sqlite".into(),
            kv: format!("redb ({})", redb_path(config).display()),
            pubsub: "in-process".into(),
            rate_limits: "in-process".into(),
            ticks,
            blobs: format!("files ({})", config.data_dir.display()),
        }
    }
}

pub fn sqlite_path(c: &Config) -> PathBuf {
    c.data_dir.join("quantbox.sqlite")
}

pub fn redb_path(c: &Config) -> PathBuf {
    c.data_dir.join("state.redb")
}

pub fn duckdb_path(c: &Config) -> PathBuf {
    c.data_dir.join("market.duckdb")
}

/// Everything `serve` uses, opened for one node.
pub struct Stores {
    pub meta: Arc<dyn MetaStore>,
    pub jobs: Arc<dyn JobQueue>,
    pub kv: Arc<dyn KvStore>,
    pub pubsub: Arc<dyn PubSub>,
    pub limits: Arc<dyn RateLimiter>,
    pub ticks: Arc<dyn TickStore>,
    pub blobs: Arc<dyn BlobStore>,
    pub backends: Backends,
    pub node: NodeIdentity,
    /// One box: the stores as `quantbox backup` copies them (none in
    /// cluster mode: PostgreSQL has its own backup tools).
    pub backup: Option<backup::BoxBackup>,
    /// Cluster mode: holds this node's name for the process's lifetime.
    _node_lock: Option<qb_pg::jobs::NodeLock>,
}

fn pg_options(c: &Config, application: &str) -> Option<qb_pg::PgOptions> {
    let url = c.database_url.as_ref()?;
    let mut o = qb_pg::PgOptions::new(url.expose());
    o.read_url = c.database_read_url.as_ref().map(|u| u.expose().to_string());
    o.pool_size = c.cluster.db_pool_size;
    o.read_pool_size = c.cluster.db_read_pool_size;
    o.connect_timeout = Duration::from_secs(c.cluster.connect_timeout_secs);
    o.application_name = application.to_string();
    Some(o)
}

fn redis_url(c: &Config) -> anyhow::Result<&str> {
    c.redis_url
        .as_ref()
        .map(|u| u.expose())
        .context("cluster mode needs REDIS_URL")
}

impl Stores {
    /// Opens every store for this process as `config.node_name()`; in
    /// cluster mode waits (with backoff, up to
    /// `cluster.connect_timeout_secs`) for PostgreSQL and Redis, applies
    /// migrations under the migration lock and takes the node's lock.
    pub async fn open(config: &Config) -> anyhow::Result<Stores> {
        let node = NodeIdentity::new(config.node_name());
        let mut backends = backends(config);
        let Some(opts) = pg_options(config, &format!("quantbox:{}", node.node)) else {
            let duck = duck_store(config)?;
            let path = sqlite_path(config);
            let sqlite = qb_store::Sqlite::open_as(&path, node.clone())
                .with_context(|| format!("opening metadata store {}", path.display()))?;
            let redb = redb_path(config);
            let kv = qb_store::RedbKv::open(&redb).with_context(|| {
                format!(
                    "opening hot-state store {} (is another quantbox using this data directory?)",
                    redb.display()
                )
            })?;
            let backup =
                backup::BoxBackup::new(&config.data_dir, sqlite.clone(), kv.clone(), duck.clone());
            return Ok(Stores {
                meta: Arc::new(sqlite.clone()),
                jobs: Arc::new(sqlite),
                kv: Arc::new(kv),
                pubsub: Arc::new(qb_store::LocalPubSub::new()),
                limits: Arc::new(qb_store::LocalRateLimiter::new()),
                ticks: Arc::new(duck),
                blobs: Arc::new(qb_store::FileBlobs::new(&config.data_dir)),
                backends,
                node,
                backup: Some(backup),
                _node_lock: None,
            });
        };
        let timeout = opts.connect_timeout;
        let pg = qb_pg::PgStore::connect(opts, node.clone())
            .await
            .context("connecting to PostgreSQL (DATABASE_URL)")?;
        let node_lock = pg
            .hold_node_lock(timeout)
            .await
            .context("claiming this node's name in the cluster")?;
        let ticks = open_pg_ticks(config, pg.clone()).await?;
        backends.ticks = format!("postgresql ({})", ticks.layout());
        let url = redis_url(config)?;
        let prefix = config.cluster.redis_prefix.as_str();
        let pubsub = retry("Redis", timeout, || {
            qb_redis::RedisPubSub::connect(url, prefix)
        })
        .await
        .context("connecting to Redis (REDIS_URL)")?;
        let limits = retry("Redis", timeout, || {
            qb_redis::RedisRateLimiter::connect(url, prefix)
        })
        .await
        .context("connecting to Redis (REDIS_URL)")?;
        Ok(Stores {
            meta: Arc::new(pg.clone()),
            jobs: Arc::new(pg.clone()),
            kv: Arc::new(pg.clone()),
            pubsub: Arc::new(pubsub),
            limits: Arc::new(limits),
            ticks: Arc::new(ticks),
            blobs: Arc::new(pg.clone()),
            backends,
            node,
            backup: None,
            _node_lock: Some(node_lock),
        })
    }
}

/// The metadata store alone (the `users`, `import` and `backtest` commands,
/// which may run beside a server).
pub async fn open_meta(config: &Config) -> anyhow::Result<Arc<dyn MetaStore>> {
    match pg_options(config, "quantbox:cli") {
        Some(opts) => Ok(Arc::new(
            qb_pg::PgStore::connect(opts, NodeIdentity::new("cli"))
                .await
                .context("connecting to PostgreSQL (DATABASE_URL)")?,
        )),
        None => {
            let path = sqlite_path(config);
            Ok(Arc::new(qb_store::Sqlite::open(&path).with_context(
                || format!("opening metadata store {}", path.display()),
            )?))
        }
    }
}

/// The metadata and tick stores (the `import` and `backtest` commands),
/// over one connection pool in cluster mode, where imports need a
/// multi-threaded runtime.
pub async fn open_meta_and_ticks(
    config: &Config,
) -> anyhow::Result<(Arc<dyn MetaStore>, Arc<dyn TickStore>)> {
    match pg_options(config, "quantbox:cli") {
        Some(opts) => {
            let pg = qb_pg::PgStore::connect(opts, NodeIdentity::new("cli"))
                .await
                .context("connecting to PostgreSQL (DATABASE_URL)")?;
            let ticks = open_pg_ticks(config, pg.clone()).await?;
            Ok((Arc::new(pg), Arc::new(ticks)))
        }
        None => Ok((open_meta(config).await?, open_duck(config)?)),
    }
}

/// PostgreSQL ticks; imports and exports parse and write files with a
/// scratch DuckDB sized by `[market]`, spilling under the data directory.
async fn open_pg_ticks(
    config: &Config,
    pg: qb_pg::PgStore,
) -> anyhow::Result<qb_pg::ticks::PgTicks> {
    let opts = qb_pg::ticks::PgTickOptions {
        duck: qb_market::DuckOptions {
            memory_limit: config.market.memory_limit.clone(),
            threads: config.market.threads,
        },
        scratch_dir: config.data_dir.join("scratch"),
        ..Default::default()
    };
    qb_pg::ticks::PgTicks::open(pg, opts)
        .await
        .context("opening the PostgreSQL tick store")
}

/// The DuckDB tick store of this node's data directory.
fn open_duck(config: &Config) -> anyhow::Result<Arc<dyn TickStore>> {
    Ok(Arc::new(duck_store(config)?))
}

fn duck_store(config: &Config) -> anyhow::Result<qb_market::DuckStore> {
    let path = duckdb_path(config);
    let store = qb_market::DuckStore::open_with(
        &path,
        &qb_market::DuckOptions {
            memory_limit: config.market.memory_limit.clone(),
            threads: config.market.threads,
        },
    )
    .with_context(|| {
        format!(
            "opening the tick store {} (is another quantbox using this data directory?)",
            path.display()
        )
    })?;
    Ok(store)
}

/// The stores of the stopped box at `config.data_dir`, opened for a
/// backup taken without a server (`quantbox backup` when none runs).
/// Fails while a server uses the directory: redb and DuckDB lock their
/// files.
pub fn open_box_backup(config: &Config) -> anyhow::Result<backup::BoxBackup> {
    let sqlite = sqlite_path(config);
    anyhow::ensure!(
        sqlite.is_file(),
        "{} holds no quantbox data ({} is missing)",
        config.data_dir.display(),
        sqlite.display()
    );
    let redb = redb_path(config);
    let kv =
        qb_store::RedbKv::open(&redb).with_context(|| format!("opening {}", redb.display()))?;
    let duck = duck_store(config)?;
    let sqlite = qb_store::Sqlite::open(&sqlite)
        .with_context(|| format!("opening metadata store {}", sqlite.display()))?;
    Ok(backup::BoxBackup::new(&config.data_dir, sqlite, kv, duck))
}

/// Every durable store of one deployment, as a copy reads or writes them
/// (`quantbox cluster import`).
pub struct CopyStores {
    pub records: Arc<dyn RecordStore>,
    pub kv: Arc<dyn KvStore>,
    pub ticks: Arc<dyn TickStore>,
    pub blobs: Arc<dyn BlobStore>,
    /// Where they are, for messages.
    pub describe: String,
}

/// The embedded stores of the box whose data directory is `data_dir`
/// (migrated to this build's schema, as `serve` would). Fails while a
/// server uses the directory: redb and DuckDB lock their files.
pub fn open_box(config: &Config, data_dir: &std::path::Path) -> anyhow::Result<CopyStores> {
    let mut c = config.clone();
    c.data_dir = data_dir.to_path_buf();
    let sqlite = sqlite_path(&c);
    anyhow::ensure!(
        sqlite.is_file(),
        "{} holds no quantbox data ({} is missing)",
        data_dir.display(),
        sqlite.display()
    );
    let redb = redb_path(&c);
    let kv = qb_store::RedbKv::open(&redb).with_context(|| {
        format!(
            "opening {} (stop the quantbox using this data directory first)",
            redb.display()
        )
    })?;
    let ticks = open_duck(&c)?;
    let records = qb_store::Sqlite::open(&sqlite)
        .with_context(|| format!("opening metadata store {}", sqlite.display()))?;
    Ok(CopyStores {
        records: Arc::new(records),
        kv: Arc::new(kv),
        ticks,
        blobs: Arc::new(qb_store::FileBlobs::new(data_dir)),
        describe: format!("the box at {}", data_dir.display()),
    })
}

/// The cluster stores `config` selects (PostgreSQL; migrated), read from
/// the primary only: a copy checks what it just wrote.
pub async fn open_cluster(config: &Config) -> anyhow::Result<CopyStores> {
    let mut opts = pg_options(config, "quantbox:cluster-import")
        .context("the cluster is chosen by DATABASE_URL, which is not set")?;
    opts.read_url = None;
    let url = opts.url.clone();
    let pg = qb_pg::PgStore::connect(opts, NodeIdentity::new("cluster-import"))
        .await
        .context("connecting to PostgreSQL (DATABASE_URL)")?;
    let ticks = open_pg_ticks(config, pg.clone()).await?;
    let describe = format!("the cluster at {} ({})", redact_url(&url), ticks.layout());
    Ok(CopyStores {
        records: Arc::new(pg.clone()),
        kv: Arc::new(pg.clone()),
        ticks: Arc::new(ticks),
        blobs: Arc::new(pg),
        describe,
    })
}

/// `url` without its password.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}@{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

/// `quantbox migrate`: applies the metadata schema; (version before, after).
pub async fn migrate(config: &Config) -> anyhow::Result<(u32, u32)> {
    match pg_options(config, "quantbox:migrate") {
        Some(opts) => Ok(qb_pg::PgStore::migrate(&opts).await?),
        None => {
            let path = sqlite_path(config);
            qb_store::Sqlite::migrate(&path)
                .with_context(|| format!("migrating {}", path.display()))
        }
    }
}
