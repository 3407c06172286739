//! quantbox core: the vocabulary every other crate shares.
//!
//! - [`config`]: the one typed configuration, layered defaults < TOML < environment.
//! - [`model`]: users, roles, jobs, schedules, audit entries, pages.
//! - [`seams`]: one trait per store (metadata, job queue, key-value, pub/sub).
//!   Single-box adapters live in `qb-store`; cluster adapters slot in behind
//!   the same traits without touching callers.
//! - [`metrics`]: the Prometheus registry and the metric families quantbox exports.
//! - [`records`]: the metadata and job tables as plain rows, for copying one store into another.
//!
//! This crate knows nothing about HTTP, SQLite, redb or wasmtime.

pub mod backoff;
pub mod config;
pub mod market;
pub mod metrics;
pub mod model;
pub mod records;
pub mod seams;
pub mod tick_columns;
pub mod tick_parse;
pub mod time;

pub use seams::{
    Backends, BlobInfo, BlobStore, Fenced, JobQueue, KvEntry, KvStore, KvWrite, Lease, LeaseState,
    MetaStore, NodeIdentity, PubSub, Quota, RateLimiter, StoreError, StoreResult, TickStore,
};
