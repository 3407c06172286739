//! `quantbox serve`: start-up, the running server, and graceful shutdown.
//!
//! Order: config → logging → data dir and secret → stores (opened by
//! `qb-stores`: the embedded files, or PostgreSQL and Redis in cluster mode,
//! waited for with backoff; migrations run on open) → first admin and
//! default schedules → heartbeat and take-back of dead instances' jobs →
//! HTTP listener → workers → scheduler → READY. `/ready` answers 503 with
//! the missing pieces until the end of that list.
//!
//! Shutdown (SIGTERM / SIGINT): `/ready` turns 503, the scheduler stops, the
//! listener stops accepting and in-flight requests finish, workers finish or
//! hand back their current job step, the metadata store is checkpointed, all
//! within `shutdown_timeout_secs`.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use qb_api::{AppState, Deps};
use qb_core::config::{Config, NodeRole};
use qb_core::metrics::Metrics;
use qb_jobs::handlers::{Checkpoint, MarketImport, MarketRetention, Retention, Sleep};
use qb_jobs::{Registry, Scheduler, WorkerDeps, Workers};
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

use crate::bootstrap;

fn init_logging(level: &str) {
    use std::io::IsTerminal;
    // The scheduler library logs every registration at info; keep it quiet.
    let directives = format!("{},tokio_cron_scheduler=warn", level.to_ascii_lowercase());
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&directives))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

fn notify(state: &[sd_notify::NotifyState<'_>]) {
    // No-op unless started by systemd with Type=notify.
    let _ = sd_notify::notify(false, state);
}

pub fn run(config: Config) -> anyhow::Result<ExitCode> {
    init_logging(&config.log_level);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.workers)
        .thread_name("qb-http")
        // Plugin uploads are checked on blocking threads: room for the
        // WebAssembly stack (plugins.max_wasm_stack_kib) and more.
        .thread_stack_size(qb_jobs::WORKER_STACK_BYTES)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let handle = rt.handle().clone();
    let code = rt.block_on(serve(config, handle))?;
    // Do not wait for detached blocking tasks beyond the shutdown bound.
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(code)
}

async fn serve(config: Config, handle: tokio::runtime::Handle) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let config = Arc::new(config);
    info!(version = env!("CARGO_PKG_VERSION"), env = ?config.env, data_dir = %config.data_dir.display(), "quantbox starting");
    bootstrap::ensure_data_dir(&config.data_dir)?;
    let secret = bootstrap::signing_secret(&config)?;

    let stores = qb_stores::Stores::open(&config).await?;
    info!(node = %stores.node.node, instance = %stores.node.instance, backends = ?stores.backends, "stores open");
    let (meta, jobs, kv, pubsub, ticks) = (
        stores.meta.clone(),
        stores.jobs.clone(),
        stores.kv.clone(),
        stores.pubsub.clone(),
        stores.ticks.clone(),
    );

    bootstrap::first_admin(&config, meta.as_ref()).await?;
    bootstrap::default_schedules(jobs.as_ref()).await?;
    jobs.heartbeat().await?;
    let node_timeout = Duration::from_secs(config.cluster.node_timeout_secs);
    log_recovery(&jobs.recover(node_timeout).await?);
    let liveness = spawn_liveness(jobs.clone(), &config);

    let metrics = Metrics::new(env!("CARGO_PKG_VERSION"));
    let role_names: Vec<String> = config.roles().iter().map(|r| r.to_string()).collect();
    metrics.set_node(&stores.node.node, &role_names);
    let plugins = Arc::new(bootstrap::plugin_registry(&config, meta.clone(), &metrics)?);
    let roles = config.roles();
    info!(roles = ?roles, "roles");
    let trader = config.runs(NodeRole::Trader);
    // The trading desk only on trader nodes, and on one of them at a time:
    // the one holding the desk lease (see qb_live::holder).
    let trading = trader.then(qb_live::holder::DeskSlot::default);
    let mut registry = Registry::new();
    registry
        .register(Checkpoint {
            meta: meta.clone(),
            kv: kv.clone(),
        })
        .register(Retention {
            meta: meta.clone(),
            queue: jobs.clone(),
            retention: config.retention.clone(),
            // Uploads of earlier versions were plain files there.
            scratch_dirs: vec![
                config.data_dir.join("uploads"),
                config.data_dir.join("exports"),
            ],
            blobs: stores.blobs.clone(),
        })
        .register(Sleep)
        .register(MarketImport {
            ticks: ticks.clone(),
            meta: meta.clone(),
            blobs: stores.blobs.clone(),
            scratch: config.data_dir.join("scratch"),
        })
        .register(qb_backtest::job::BacktestRun {
            plugins: plugins.clone(),
            ticks: ticks.clone(),
            meta: meta.clone(),
            blobs: stores.blobs.clone(),
            scratch: config.data_dir.join("scratch"),
        })
        .register(qb_backtest::sweep::BacktestSweep {
            plugins: plugins.clone(),
            queue: jobs.clone(),
            max_attempts: config.queues.max_attempts,
        })
        .register(MarketRetention {
            ticks: ticks.clone(),
            retention_days: config.market.retention_days,
        })
        .register(qb_live::retention::TradingRetention {
            desk: trading.clone(),
            retention_days: config.trading.order_retention_days,
        });

    let (desk_stop, desk_stop_rx) = tokio::sync::watch::channel(false);
    let keeper = trading.clone().map(|slot| {
        let (ttl, renew, poll) = config.cluster.desk_lease();
        let open = DeskParts {
            config: config.clone(),
            meta: meta.clone(),
            pubsub: pubsub.clone(),
            plugins: plugins.clone(),
            handle: handle.clone(),
            metrics: metrics.clone(),
        }
        .opener();
        tokio::spawn(qb_live::holder::keep(
            kv.clone(),
            pubsub.clone(),
            stores.node.node.clone(),
            qb_live::holder::Timing { ttl, renew, poll },
            slot,
            open,
            Arc::new(DeskGauges(metrics.clone())),
            desk_stop_rx,
        ))
    });
    if let Some(slot) = &trading {
        // One box: the lease is free (or ours from a previous run); wait
        // for the desk so the first request finds it open.
        let until = Instant::now() + Duration::from_secs(5);
        while slot.holder().is_none() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    let state = AppState::new(Deps {
        config: config.clone(),
        meta: meta.clone(),
        jobs: jobs.clone(),
        kv: kv.clone(),
        pubsub: pubsub.clone(),
        ticks: ticks.clone(),
        blobs: stores.blobs.clone(),
        limiter: stores.limits.clone(),
        backends: stores.backends.clone(),
        node: stores.node.clone(),
        registry: registry.clone(),
        plugins,
        trading,
        metrics: metrics.clone(),
        secret,
        version: env!("CARGO_PKG_VERSION"),
        backups: stores.backup.clone().map(|b| {
            Arc::new(crate::backup::ServerBackups(b))
                as Arc<dyn qb_api::routes::backups::BackupWriter>
        }),
    });

    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .with_context(|| format!("cannot listen on {}", config.bind))?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };
    let bounds = qb_api::server::Bounds::from_config(&config.http);
    let gauges: Arc<dyn qb_api::server::ConnectionGauges> =
        Arc::new(ConnectionGauges(metrics.clone()));
    let metrics_server = match config.metrics.listen {
        Some(at) => {
            let l = tokio::net::TcpListener::bind(at)
                .await
                .with_context(|| format!("cannot listen on {at} (metrics.listen)"))?;
            info!("metrics on http://{}/metrics", l.local_addr()?);
            Some(tokio::spawn(qb_api::server::serve(
                l,
                qb_api::metrics_app(state.clone()),
                bounds,
                gauges.clone(),
                stopped(),
            )))
        }
        None => None,
    };
    let server = tokio::spawn(qb_api::server::serve(
        listener,
        qb_api::app(state.clone()),
        bounds,
        gauges,
        stopped(),
    ));
    info!("listening on http://{addr}");
    let housekeeping = qb_api::spawn_housekeeping(state.clone());

    // Workers take the queues of this node's roles.
    let queues: Vec<(&str, usize)> = qb_jobs::QUEUES
        .iter()
        .map(|q| (*q, qb_jobs::threads(&config, q)))
        .collect();
    let workers = Workers::start(
        WorkerDeps {
            queue: jobs.clone(),
            pubsub: pubsub.clone(),
            registry: registry.clone(),
            metrics: metrics.clone(),
            rt: handle.clone(),
            // Desk jobs run where the desk is: a standby trader leaves
            // them to the holder.
            takes: {
                let trading = state.trading.clone();
                Arc::new(move |queue: &str| {
                    queue != qb_jobs::QUEUE_TRADING
                        || trading.as_ref().is_some_and(|t| t.held().is_some())
                })
            },
        },
        &queues,
    )
    .context("starting job workers")?;
    state
        .readiness
        .set_workers(workers.live_counter(), workers.expected());

    let scheduler = if config.runs(NodeRole::Scheduler) {
        let s = Scheduler::start(jobs.clone(), registry.clone(), config.queues.max_attempts)
            .await
            .map_err(anyhow::Error::msg)
            .context("starting the scheduler")?;
        let _ = state.scheduler.set(s.clone());
        // Edits made through any node reach this scheduler.
        let _follow = s.follow(pubsub.as_ref());
        state
            .readiness
            .scheduler_started
            .store(true, Ordering::SeqCst);
        Some(s)
    } else {
        None
    };
    notify(&[sd_notify::NotifyState::Ready]);
    info!(elapsed_ms = started.elapsed().as_millis() as u64, "ready");

    shutdown_signal().await;
    let deadline = Instant::now() + Duration::from_secs(config.shutdown_timeout_secs);
    info!(bound_secs = config.shutdown_timeout_secs, "shutting down");
    notify(&[sd_notify::NotifyState::Stopping]);
    state.readiness.shutting_down.store(true, Ordering::SeqCst);
    if let Some(s) = &scheduler {
        s.shutdown().await;
    }
    // The desk keeper stops the strategies after a final snapshot and
    // releases the lease, so a standby trader takes over at once.
    let _ = desk_stop.send(true);
    if let Some(k) = keeper {
        let _ = k.await;
    }
    housekeeping.abort();
    liveness.abort();
    let _ = stop_tx.send(true);

    let left = deadline.saturating_duration_since(Instant::now());
    let workers_done = tokio::task::spawn_blocking(move || workers.shutdown(left));
    match tokio::time::timeout(left, server).await {
        Ok(Ok(())) => info!("HTTP server drained"),
        Ok(Err(e)) => error!(error = %e, "HTTP server task failed"),
        Err(_) => warn!("in-flight requests did not finish within the bound; closing"),
    }
    if let Some(m) = metrics_server {
        m.abort();
    }
    match workers_done.await {
        Ok(0) => info!("job workers stopped"),
        Ok(n) => warn!(
            busy = n,
            "job workers still busy at the bound; their jobs will be recovered at the next start"
        ),
        Err(e) => error!(error = %e, "worker shutdown failed"),
    }
    match meta.checkpoint().await {
        Ok(msg) => info!(%msg, "metadata store flushed"),
        Err(e) => warn!(error = %e, "final checkpoint failed"),
    }
    match ticks.checkpoint().await {
        Ok(()) => info!("stores flushed"),
        Err(e) => warn!(error = %e, "tick store checkpoint failed"),
    }
    info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Open and refused HTTP connections as metrics.
struct ConnectionGauges(Metrics);

impl qb_api::server::ConnectionGauges for ConnectionGauges {
    fn opened(&self) {
        self.0.http_connections.inc();
    }
    fn closed(&self) {
        self.0.http_connections.dec();
    }
    fn refused(&self) {
        self.0.http_connections_refused.inc();
    }
}

/// The desk lease as metrics.
struct DeskGauges(Metrics);

impl qb_live::holder::LeaseGauges for DeskGauges {
    fn held(&self, held: bool, epoch: i64) {
        self.0.desk_held.set(i64::from(held));
        self.0.desk_epoch.set(epoch);
    }
}

/// What opening the desk needs besides the store it writes through.
#[derive(Clone)]
struct DeskParts {
    config: Arc<Config>,
    meta: Arc<dyn qb_core::MetaStore>,
    pubsub: Arc<dyn qb_core::PubSub>,
    plugins: Arc<qb_plugin_host::registry::PluginRegistry>,
    handle: tokio::runtime::Handle,
    metrics: Metrics,
}

impl DeskParts {
    /// Opens the desk and resumes the live strategies over `kv`, the store
    /// the lease holder writes through (fenced by the lease).
    async fn open(
        self,
        kv: Arc<dyn qb_core::KvStore>,
    ) -> Result<(Arc<qb_live::Desk>, Arc<qb_live::strategies::Strategies>), qb_live::LiveError>
    {
        let c = &self.config;
        let desk = Arc::new(
            qb_live::Desk::open(
                kv.clone(),
                self.meta,
                self.pubsub.clone(),
                Box::new(qb_live::PaperBroker::new(c.trading.slippage_ticks)),
                &c.trading.default_account,
                c.trading.initial_cash,
            )
            .await?,
        );
        let strategies = qb_live::strategies::Strategies::open(
            desk.clone(),
            self.plugins,
            kv,
            self.pubsub,
            self.handle,
            &c.trading.default_account,
            self.metrics.strategies_running.clone(),
            self.metrics.strategy_pnl.clone(),
        )
        .await?;
        Ok((desk, strategies))
    }

    fn opener(self) -> qb_live::holder::Opener {
        Box::new(move |kv| Box::pin(self.clone().open(kv)))
    }
}

fn log_recovery(r: &qb_core::model::Recovery) {
    if !r.requeued.is_empty() || !r.failed.is_empty() {
        warn!(requeued = ?r.requeued, failed = ?r.failed, "took back jobs of stopped processes");
    }
}

/// Every `cluster.heartbeat_secs`: records that this process is alive and
/// takes back the jobs of processes silent for `cluster.node_timeout_secs`
/// (on one box: none after start-up; in a cluster: a dead node's).
fn spawn_liveness(
    jobs: Arc<dyn qb_core::JobQueue>,
    config: &Config,
) -> tokio::task::JoinHandle<()> {
    let every = Duration::from_secs(config.cluster.heartbeat_secs);
    let timeout = Duration::from_secs(config.cluster.node_timeout_secs);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = jobs.heartbeat().await {
                warn!(error = %e, "heartbeat failed");
                continue;
            }
            match jobs.recover(timeout).await {
                Ok(r) => log_recovery(&r),
                Err(e) => warn!(error = %e, "taking back dead processes' jobs failed"),
            }
        }
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = int.recv() => info!("SIGINT received"),
    }
}
