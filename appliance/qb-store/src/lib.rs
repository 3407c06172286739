//! Single-box storage adapters behind the `qb-core` seams:
//!
//! - [`sqlite::Sqlite`]: [`qb_core::MetaStore`] and [`qb_core::JobQueue`] in
//!   one SQLite file (`quantbox.sqlite`), WAL mode, `synchronous=FULL`;
//!   also [`qb_core::records::RecordStore`] (`sqlite_records`).
//! - [`redb_kv::RedbKv`]: [`qb_core::KvStore`] in one redb file (`state.redb`).
//! - [`local_pubsub::LocalPubSub`]: [`qb_core::PubSub`] over tokio broadcast.
//! - [`local_limits::LocalRateLimiter`]: [`qb_core::RateLimiter`] over governor.
//!
//! Blocking database calls run on tokio's blocking pool, never on the async
//! worker threads.

pub mod file_blobs;
pub mod local_limits;
pub mod local_pubsub;
pub mod migrations;
pub mod redb_kv;
pub mod sqlite;
mod sqlite_records;

pub use file_blobs::FileBlobs;
pub use local_limits::LocalRateLimiter;
pub use local_pubsub::LocalPubSub;
pub use redb_kv::RedbKv;
pub use sqlite::Sqlite;
