//! The Prometheus registry and every metric family quantbox exports.
//!
//! Names follow the alerts the seed defines (request latency p95, 5xx rate,
//! queue backlog) so the shipped alert rules can use them unchanged.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Latency buckets in seconds, dense around the 1 s p95 alert threshold.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0,
];

/// All metric families; cheap to clone (handles are reference counted).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// `http_requests_total{method,route,status}`; `route` is the route template.
    pub http_requests: IntCounterVec,
    /// `http_request_duration_seconds{route}`
    pub http_duration: HistogramVec,
    /// `quantbox_queue_length{queue}`: jobs waiting.
    pub queue_length: IntGaugeVec,
    /// `quantbox_jobs_running{queue}`
    pub jobs_running: IntGaugeVec,
    /// `quantbox_jobs_total{queue,outcome}`: finished jobs.
    pub jobs_total: IntCounterVec,
    /// `quantbox_logins_total{result}`
    pub logins: IntCounterVec,
    /// `quantbox_rate_limited_total{zone}`
    pub rate_limited: IntCounterVec,
    /// `quantbox_workers{queue}`: live worker threads.
    pub workers: IntGaugeVec,
    /// `quantbox_ticks_ingested_total`: ticks stored through the ingest API.
    pub ticks_ingested: prometheus::IntCounter,
    /// `quantbox_plugin_traps_total{plugin,callback,reason}`: strategy calls
    /// the sandbox stopped (trap, timeout, memory, stack, fuel).
    pub plugin_traps: IntCounterVec,
    /// `quantbox_strategies_running`: live strategies in this process.
    pub strategies_running: prometheus::IntGauge,
    /// `quantbox_strategy_pnl{strategy,account}`: a live strategy's PnL.
    pub strategy_pnl: prometheus::GaugeVec,
    /// `quantbox_data_disk_available_bytes` / `_total_bytes`: the file system
    /// holding the data directory (refreshed every few seconds), so the disk
    /// alert needs no node exporter.
    pub data_disk_available: prometheus::IntGauge,
    pub data_disk_total: prometheus::IntGauge,
    /// `quantbox_node_info{node,roles}`: always 1; `roles` comma-separated
    /// (`api,worker,scheduler,trader` on one box). Set by [`Metrics::set_node`].
    pub node_info: IntGaugeVec,
    /// `quantbox_desk_held`: 1 while this trader holds the desk lease.
    pub desk_held: prometheus::IntGauge,
    /// `quantbox_desk_epoch`: the desk lease epoch last held here (grows
    /// at every takeover).
    pub desk_epoch: prometheus::IntGauge,
    /// `quantbox_http_connections`: HTTP connections open (upgraded `/ws`
    /// sockets included).
    pub http_connections: prometheus::IntGauge,
    /// `quantbox_http_connections_refused_total`: connections closed on
    /// arrival because `http.max_connections` were open.
    pub http_connections_refused: prometheus::IntCounter,
}

impl Metrics {
    pub fn new(version: &str) -> Self {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests served"),
            &["method", "route", "status"],
        )
        .unwrap();
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency from first byte in to response headers out",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )
        .unwrap();
        let queue_length = IntGaugeVec::new(
            Opts::new("quantbox_queue_length", "Jobs waiting in a queue"),
            &["queue"],
        )
        .unwrap();
        let jobs_running = IntGaugeVec::new(
            Opts::new("quantbox_jobs_running", "Jobs running on a queue"),
            &["queue"],
        )
        .unwrap();
        let jobs_total = IntCounterVec::new(
            Opts::new("quantbox_jobs_total", "Jobs finished, by outcome"),
            &["queue", "outcome"],
        )
        .unwrap();
        let logins = IntCounterVec::new(
            Opts::new("quantbox_logins_total", "Login attempts, by result"),
            &["result"],
        )
        .unwrap();
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "quantbox_rate_limited_total",
                "Requests refused by a rate limit",
            ),
            &["zone"],
        )
        .unwrap();
        let workers = IntGaugeVec::new(
            Opts::new("quantbox_workers", "Live worker threads per queue"),
            &["queue"],
        )
        .unwrap();
        let ticks_ingested = prometheus::IntCounter::new(
            "quantbox_ticks_ingested_total",
            "Ticks stored through the ingest API",
        )
        .unwrap();
        let plugin_traps = IntCounterVec::new(
            Opts::new(
                "quantbox_plugin_traps_total",
                "Strategy plugin calls stopped by the sandbox",
            ),
            &["plugin", "callback", "reason"],
        )
        .unwrap();
        let strategies_running = prometheus::IntGauge::new(
            "quantbox_strategies_running",
            "Live strategies running in this process",
        )
        .unwrap();
        let strategy_pnl = prometheus::GaugeVec::new(
            Opts::new(
                "quantbox_strategy_pnl",
                "PnL of a live strategy's sub-book (realized - fees + unrealized)",
            ),
            &["strategy", "account"],
        )
        .unwrap();
        let data_disk_available = prometheus::IntGauge::new(
            "quantbox_data_disk_available_bytes",
            "Bytes available to quantbox on the file system of its data directory",
        )
        .unwrap();
        let data_disk_total = prometheus::IntGauge::new(
            "quantbox_data_disk_total_bytes",
            "Size of the file system holding the data directory",
        )
        .unwrap();
        let build_info = IntGaugeVec::new(
            Opts::new("quantbox_build_info", "Build information; always 1"),
            &["version"],
        )
        .unwrap();
        build_info.with_label_values(&[version]).set(1);
        let node_info = IntGaugeVec::new(
            Opts::new(
                "quantbox_node_info",
                "This node's name and roles (comma-separated); always 1",
            ),
            &["node", "roles"],
        )
        .unwrap();
        let desk_held = prometheus::IntGauge::new(
            "quantbox_desk_held",
            "1 while this trader node holds the desk lease (trades); 0 on standby",
        )
        .unwrap();
        let desk_epoch = prometheus::IntGauge::new(
            "quantbox_desk_epoch",
            "Epoch of the desk lease last held by this node",
        )
        .unwrap();
        let http_connections = prometheus::IntGauge::new(
            "quantbox_http_connections",
            "HTTP connections open, /ws sockets included",
        )
        .unwrap();
        let http_connections_refused = prometheus::IntCounter::new(
            "quantbox_http_connections_refused_total",
            "Connections closed on arrival because http.max_connections were open",
        )
        .unwrap();
        // Series exist from the start (at 0), so rates and alerts see them.
        for zone in ["api", "trading"] {
            rate_limited.with_label_values(&[zone]);
        }
        for result in ["ok", "failure", "locked"] {
            logins.with_label_values(&[result]);
        }

        for c in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_duration.clone()),
            Box::new(queue_length.clone()),
            Box::new(jobs_running.clone()),
            Box::new(jobs_total.clone()),
            Box::new(logins.clone()),
            Box::new(rate_limited.clone()),
            Box::new(workers.clone()),
            Box::new(ticks_ingested.clone()),
            Box::new(plugin_traps.clone()),
            Box::new(strategies_running.clone()),
            Box::new(strategy_pnl.clone()),
            Box::new(data_disk_available.clone()),
            Box::new(data_disk_total.clone()),
            Box::new(build_info),
            Box::new(node_info.clone()),
            Box::new(desk_held.clone()),
            Box::new(desk_epoch.clone()),
            Box::new(http_connections.clone()),
            Box::new(http_connections_refused.clone()),
        ] {
            registry.register(c).unwrap();
        }
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .unwrap();
        Self {
            registry,
            http_requests,
            http_duration,
            queue_length,
            jobs_running,
            jobs_total,
            logins,
            rate_limited,
            workers,
            ticks_ingested,
            plugin_traps,
            strategies_running,
            strategy_pnl,
            data_disk_available,
            data_disk_total,
            node_info,
            desk_held,
            desk_epoch,
            http_connections,
            http_connections_refused,
        }
    }

    /// Records this node's name and roles in `quantbox_node_info`.
    pub fn set_node(&self, node: &str, roles: &[String]) {
        self.node_info.reset();
        self.node_info
            .with_label_values(&[node, &roles.join(",")])
            .set(1);
    }

    /// The Prometheus text exposition of every family.
    pub fn render(&self) -> String {
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}
