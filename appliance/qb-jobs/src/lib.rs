//! The Celery + Beat replacement: named queues served by OS worker threads,
//! a registry of job kinds, the cron scheduler, and the maintenance jobs.
//!
//! Job state lives behind [`qb_core::JobQueue`]; this crate only decides what
//! runs where and when. Worker threads are plain OS threads, never the async
//! runtime's: a CPU-heavy backtest must not stall HTTP.

pub mod context;
pub mod handlers;
pub mod registry;
pub mod scheduler;
pub mod workers;

pub use context::{JobContext, JobError};
pub use registry::{FieldError, JobHandler, KindInfo, Registry};
pub use scheduler::{Scheduler, normalize_cron};
pub use workers::{WORKER_STACK_BYTES, WorkerDeps, Workers};

/// The queues quantbox runs, as the seed's Celery workers do: `backtest`
/// and `data` on nodes with the `worker` role (`queues.*` threads each),
/// `trading` (jobs that act on the trading desk) on nodes with the
/// `trader` role, one thread.
pub const QUEUE_BACKTEST: &str = "backtest";
pub const QUEUE_DATA: &str = "data";
pub const QUEUE_TRADING: &str = "trading";
pub const QUEUES: &[&str] = &[QUEUE_BACKTEST, QUEUE_DATA, QUEUE_TRADING];

/// Worker threads a process with `config`'s roles runs for `queue`.
pub fn threads(config: &qb_core::config::Config, queue: &str) -> usize {
    use qb_core::config::NodeRole;
    match queue {
        QUEUE_BACKTEST if config.runs(NodeRole::Worker) => config.queues.backtest,
        QUEUE_DATA if config.runs(NodeRole::Worker) => config.queues.data,
        QUEUE_TRADING if config.runs(NodeRole::Trader) => 1,
        _ => 0,
    }
}

/// Where a retention of `days` days cuts from now; `None` for 0, which
/// keeps everything (`market.retention_days`, `trading.order_retention_days`).
pub fn retention_cut(days: u32) -> Option<chrono::DateTime<chrono::Utc>> {
    (days > 0).then(|| chrono::Utc::now() - chrono::Duration::days(i64::from(days)))
}

/// The pub/sub topic job state changes are published on.
pub const JOBS_TOPIC: &str = "jobs";
