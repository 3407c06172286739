//! The conformance suites of the storage seams, one module per trait. Each
//! suite takes the adapter (or a factory opening more instances over one
//! backend) and asserts the behaviour the trait documents. Each adapter
//! crate runs every suite of the traits it implements from its
//! `tests/conformance.rs` — `qb-store` (SQLite, redb, in-process), `qb-pg`
//! (PostgreSQL), `qb-redis` (Redis) — each on a fresh database, file or key
//! prefix. A new adapter joins by calling the same suites, unchanged.

pub mod blobs;
pub mod jobs;
pub mod kv;
pub mod limits;
pub mod meta;
pub mod pubsub;
pub mod records;
pub mod ticks;

use std::sync::Arc;

use futures_util::future::BoxFuture;
use qb_core::{JobQueue, NodeIdentity};

/// Opens another instance of one job-queue backend acting as `node`
/// (a second process of a cluster, or the same node after a restart).
pub type JobQueueFactory =
    Arc<dyn Fn(NodeIdentity) -> BoxFuture<'static, Arc<dyn JobQueue>> + Send + Sync>;
