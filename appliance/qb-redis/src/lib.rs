//! Cluster adapters on Redis for the two things nodes share that may be
//! lost: nothing here is durable, and Redis is expected to keep nothing on
//! disk.
//!
//! - [`RedisPubSub`] ([`qb_core::PubSub`], `pubsub.rs`): event fan-out
//!   across nodes over Redis pub/sub, channels `{prefix}:ev:{topic}`.
//!   A Redis restart loses the events in flight (and those published while
//!   it is down); subscribers keep their local channels and resume once
//!   the subscriber connection is back.
//! - [`RedisRateLimiter`] ([`qb_core::RateLimiter`], `limits.rs`): shared
//!   request budgets, one GCRA Lua script over keys `{prefix}:rl:{zone}:{key}`
//!   timed by the Redis clock. A Redis restart forgets every budget: each
//!   client starts again with its full burst.
//!
//! The prefix (`cluster.redis_prefix`) is what separates deployments on
//! one server (pub/sub ignores database numbers). Connections speak RESP2;
//! `connect` fails fast (the caller retries with backoff), afterwards the
//! adapters reconnect by themselves.

mod limits;
mod pubsub;

pub use limits::RedisRateLimiter;
pub use pubsub::RedisPubSub;

use std::time::Duration;

use qb_core::{StoreError, StoreResult};
use redis::aio::ConnectionManagerConfig;

/// How long one attempt to open a TCP connection (and its handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one command may wait for its answer.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("Redis: {e}"))
}

/// A client for `url`; `Invalid` (not retried by the caller) when malformed.
fn client(url: &str) -> StoreResult<redis::Client> {
    redis::Client::open(url).map_err(|e| StoreError::Invalid(format!("Redis URL: {e}")))
}

/// A multiplexed connection that reconnects by itself, opened now: an
/// unreachable server is an error at once. Later, a command issued while
/// the server is away fails after at most one quick reconnection attempt
/// instead of waiting for it to come back.
async fn manager(client: &redis::Client) -> StoreResult<redis::aio::ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500));
    let mut conn = client
        .get_connection_manager_with_config(config)
        .await
        .map_err(backend)?;
    let _: String = redis::cmd("PING")
        .query_async(&mut conn)
        .await
        .map_err(backend)?;
    Ok(conn)
}

/// `s` with Redis glob characters escaped, for `PSUBSCRIBE` and `SCAN MATCH`.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Deletes every key of `prefix` (`SCAN` + `DEL` of `{prefix}:*`); returns
/// how many. For tests and for wiping a deployment's budgets by hand.
pub async fn delete_prefix(url: &str, prefix: &str) -> StoreResult<u64> {
    let mut conn = client(url)?
        .get_multiplexed_async_connection()
        .await
        .map_err(backend)?;
    let pattern = format!("{}:*", glob_escape(prefix));
    let mut cursor: u64 = 0;
    let mut deleted = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .map_err(backend)?;
        if !keys.is_empty() {
            let n: u64 = redis::cmd("DEL")
                .arg(&keys)
                .query_async(&mut conn)
                .await
                .map_err(backend)?;
            deleted += n;
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}
