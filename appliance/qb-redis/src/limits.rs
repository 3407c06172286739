//! [`RedisRateLimiter`]: request budgets shared by every node, kept in Redis.
//!
//! One Lua script does the whole check atomically (GCRA, the algorithm of
//! the embedded governor limiter, with the same semantics as
//! `Quota::per_second(per_sec).allow_burst(burst)`): key
//! `{prefix}:rl:{zone}:{key}` holds the theoretical arrival time in
//! microseconds of the Redis server clock (`TIME`), so the nodes' clocks do
//! not matter. The key expires once the client is back at its full burst,
//! so idle clients cost nothing and [`RateLimiter::housekeep`] has nothing
//! to do.
//!
//! The state of a client is its key alone, whatever quota the caller
//! passes; callers use one quota per zone.
//!
//! What is lost when Redis restarts: every budget (each client gets its
//! full burst again) and the cached script (reloaded by itself). While
//! Redis is away `check` returns `Backend` errors and the caller decides
//! whether to let requests through.

use std::time::Duration;

use async_trait::async_trait;
use qb_core::{Quota, RateLimiter, StoreResult};
use redis::Script;
use redis::aio::ConnectionManager;

use crate::{backend, client, manager};

/// GCRA. KEYS[1]: the client's key. ARGV[1]: emission interval T (µs, the
/// time one request is worth), ARGV[2]: burst. Returns 0 when allowed
/// (and records it), else the wait in µs (recording nothing).
const GCRA: &str = r"
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local t = tonumber(ARGV[1])
local tau = t * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or now) or now
local earliest = tat - tau
if now < earliest then
  return earliest - now
end
local next_tat = math.max(tat, now) + t
redis.call('SET', KEYS[1], string.format('%.0f', next_tat),
  'PX', string.format('%.0f', math.ceil((next_tat - now) / 1000)))
return 0
";

/// [`RateLimiter`] over Redis. Cheap to clone.
#[derive(Clone)]
pub struct RedisRateLimiter {
    conn: ConnectionManager,
    /// `{prefix}:rl:`
    key_prefix: String,
    script: Script,
}

impl std::fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("key_prefix", &self.key_prefix)
            .finish_non_exhaustive()
    }
}

impl RedisRateLimiter {
    /// Connects to `url`; fails at once (`Backend`) when Redis does not
    /// answer, `Invalid` for a malformed URL. Budgets are shared with every
    /// limiter of the same `prefix` on the same server.
    pub async fn connect(url: &str, prefix: &str) -> StoreResult<RedisRateLimiter> {
        let conn = manager(&client(url)?).await?;
        let script = Script::new(GCRA);
        // Loaded now so the first checks do not all fall back to EVAL.
        script
            .load_async(&mut conn.clone())
            .await
            .map_err(backend)?;
        Ok(Self {
            conn,
            key_prefix: format!("{prefix}:rl:"),
            script,
        })
    }
}

/// The time one request is worth, in µs (at least 1), as governor computes
/// it (`1 s / per_sec`), and the burst (at least 1).
fn gcra_args(quota: Quota) -> (u64, u32) {
    let per_sec = quota.per_sec.max(1);
    let t = (Duration::from_secs(1) / per_sec).as_micros().max(1) as u64;
    (t, quota.burst.max(1))
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn check(&self, zone: &str, key: &str, quota: Quota) -> StoreResult<Option<Duration>> {
        let (t, burst) = gcra_args(quota);
        let wait_us: u64 = self
            .script
            .key(format!("{}{zone}:{key}", self.key_prefix))
            .arg(t)
            .arg(burst)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(backend)?;
        Ok((wait_us > 0).then(|| Duration::from_micros(wait_us)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_follow_governor() {
        assert_eq!(
            gcra_args(Quota {
                per_sec: 20,
                burst: 3
            }),
            (50_000, 3)
        );
        assert_eq!(
            gcra_args(Quota {
                per_sec: 3,
                burst: 1
            }),
            (333_333, 1)
        );
        assert_eq!(
            gcra_args(Quota {
                per_sec: 0,
                burst: 0
            }),
            (1_000_000, 1)
        );
        assert_eq!(
            gcra_args(Quota {
                per_sec: 10_000_000,
                burst: 5
            }),
            (1, 5)
        );
    }
}
