//! Shared state of the HTTP surface.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use axum::http::StatusCode;
use qb_core::config::{Config, NodeRole};
use qb_core::metrics::Metrics;
use qb_core::{
    Backends, JobQueue, KvStore, MetaStore, NodeIdentity, PubSub, RateLimiter, TickStore,
};
use qb_jobs::{Registry, Scheduler};
use qb_plugin_host::registry::PluginRegistry;

use crate::auth::throttle::LoginThrottle;
use crate::auth::tokens::TokenKeys;
use crate::middleware::rate_limit::RateLimits;
use crate::problem::{ApiError, ApiResult};

/// What `/ready` reports on. The binary flips these as start-up proceeds.
#[derive(Default)]
pub struct Readiness {
    pub workers_live: OnceLock<(Arc<AtomicUsize>, usize)>,
    pub scheduler_started: AtomicBool,
    pub shutting_down: AtomicBool,
}

impl Readiness {
    pub fn set_workers(&self, live: Arc<AtomicUsize>, expected: usize) {
        let _ = self.workers_live.set((live, expected));
    }
    pub fn workers(&self) -> Option<(usize, usize)> {
        self.workers_live
            .get()
            .map(|(live, expected)| (live.load(Ordering::Relaxed), *expected))
    }
}

/// Everything handlers reach; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub meta: Arc<dyn MetaStore>,
    pub jobs: Arc<dyn JobQueue>,
    pub kv: Arc<dyn KvStore>,
    pub pubsub: Arc<dyn PubSub>,
    pub ticks: Arc<dyn TickStore>,
    /// Uploads and backtest outputs, readable from any node.
    pub blobs: Arc<dyn qb_core::BlobStore>,
    pub registry: Registry,
    /// Strategy plugins.
    pub plugins: Arc<PluginRegistry>,
    /// Live paper trading (accounts, orders, risk, kill switch, live
    /// strategies): on nodes with the `trader` role, the desk while this
    /// node holds the desk lease (see [`AppState::desk`]).
    pub trading: Option<qb_live::holder::DeskSlot>,
    pub replays: Arc<qb_live::replay::Replays>,
    pub scheduler: Arc<OnceLock<Arc<Scheduler>>>,
    pub metrics: Metrics,
    pub tokens: Arc<TokenKeys>,
    pub limits: Arc<RateLimits>,
    /// Password guesses per (user name, client address).
    pub logins: LoginThrottle,
    pub readiness: Arc<Readiness>,
    /// Which backend serves each store.
    pub backends: Arc<Backends>,
    /// This process in the cluster (node name and instance).
    pub node: NodeIdentity,
    pub started: Instant,
    /// The product version (the binary's, not this crate's).
    pub version: &'static str,
    pub host: Arc<parking_lot::Mutex<sysinfo::System>>,
    /// Open `/ws` connections per user and per client address.
    pub ws_counts: Arc<crate::routes::ws::Counts>,
    /// One box: writes `POST /api/v1/backups` (none in cluster mode).
    pub backups: Option<Arc<dyn crate::routes::backups::BackupWriter>>,
}

/// The stores and services the binary wires in.
pub struct Deps {
    pub config: Arc<Config>,
    pub meta: Arc<dyn MetaStore>,
    pub jobs: Arc<dyn JobQueue>,
    pub kv: Arc<dyn KvStore>,
    pub pubsub: Arc<dyn PubSub>,
    pub ticks: Arc<dyn TickStore>,
    pub blobs: Arc<dyn qb_core::BlobStore>,
    pub limiter: Arc<dyn RateLimiter>,
    pub backends: Backends,
    pub node: NodeIdentity,
    pub registry: Registry,
    pub plugins: Arc<PluginRegistry>,
    /// Where the desk and live strategies are (`trader` role), else None.
    pub trading: Option<qb_live::holder::DeskSlot>,
    pub metrics: Metrics,
    /// Signing secret for access tokens.
    pub secret: Vec<u8>,
    pub version: &'static str,
    pub backups: Option<Arc<dyn crate::routes::backups::BackupWriter>>,
}

impl AppState {
    pub fn new(d: Deps) -> Self {
        let limits = Arc::new(RateLimits::new(&d.config.rate_limit, d.limiter));
        let tokens = Arc::new(TokenKeys::new(
            &d.secret,
            d.config.auth.access_ttl_secs,
            d.config.auth.refresh_ttl_secs,
        ));
        Self {
            logins: LoginThrottle::new(d.kv.clone(), d.config.auth.clone()),
            config: d.config,
            meta: d.meta,
            jobs: d.jobs,
            kv: d.kv,
            pubsub: d.pubsub,
            ticks: d.ticks,
            blobs: d.blobs,
            registry: d.registry,
            plugins: d.plugins,
            trading: d.trading,
            replays: Arc::new(qb_live::replay::Replays::default()),
            scheduler: Arc::new(OnceLock::new()),
            metrics: d.metrics,
            tokens,
            limits,
            readiness: Arc::new(Readiness::default()),
            backends: Arc::new(d.backends),
            node: d.node,
            started: Instant::now(),
            version: d.version,
            host: Arc::new(parking_lot::Mutex::new(sysinfo::System::new())),
            ws_counts: Arc::default(),
            backups: d.backups,
        }
    }

    pub fn scheduler(&self) -> Option<&Arc<Scheduler>> {
        self.scheduler.get()
    }

    /// The trading desk; 503 on a node without the `trader` role, or on a
    /// trader standing by while another holds the desk.
    pub fn desk(&self) -> ApiResult<Arc<qb_live::Desk>> {
        self.held().map(|h| h.desk.clone())
    }

    /// Live strategies, where [`AppState::desk`] is.
    pub fn strategies(&self) -> ApiResult<Arc<qb_live::strategies::Strategies>> {
        self.held().map(|h| h.strategies.clone())
    }

    fn held(&self) -> ApiResult<Arc<qb_live::holder::Held>> {
        let slot = self
            .trading
            .as_ref()
            .ok_or_else(|| self.not_served_here(NodeRole::Trader))?;
        slot.held().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "desk-elsewhere",
                format!(
                    "node {} is a standby trader; the desk is held by {}",
                    self.node.node,
                    slot.holder()
                        .map_or_else(|| "no node yet".into(), |h| format!("node {h}"))
                ),
            )
        })
    }

    /// 503 for a call this node's roles do not serve.
    pub fn not_served_here(&self, role: NodeRole) -> ApiError {
        let roles: Vec<String> = self.config.roles().iter().map(|r| r.to_string()).collect();
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "role-elsewhere",
            format!(
                "this call is served by nodes with the {role} role; node {} runs {}",
                self.node.node,
                roles.join(", ")
            ),
        )
    }
}
