//! [`LocalRateLimiter`]: the in-process [`RateLimiter`] of a single box,
//! over governor (GCRA): one keyed limiter per (zone, quota), created on
//! first use, keyed by client. Budgets live in memory only: a restart
//! gives every client its full burst again.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota as GovernorQuota};
use parking_lot::Mutex;
use qb_core::{Quota, RateLimiter, StoreResult};

type Limiter = DefaultKeyedRateLimiter<String>;

/// Zone, requests per second, burst.
type LimiterKey = (String, u32, u32);

/// [`RateLimiter`] in process memory. Cheap to clone (clones share budgets).
#[derive(Default, Clone)]
pub struct LocalRateLimiter {
    limiters: Arc<Mutex<HashMap<LimiterKey, Arc<Limiter>>>>,
}

impl LocalRateLimiter {
    pub fn new() -> Self {
        Self::default()
    }

    fn limiter(&self, zone: &str, quota: Quota) -> Arc<Limiter> {
        let nz = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        let (per_sec, burst) = (nz(quota.per_sec), nz(quota.burst));
        self.limiters
            .lock()
            .entry((zone.to_string(), per_sec.get(), burst.get()))
            .or_insert_with(|| {
                Arc::new(Limiter::keyed(
                    GovernorQuota::per_second(per_sec).allow_burst(burst),
                ))
            })
            .clone()
    }
}

#[async_trait]
impl RateLimiter for LocalRateLimiter {
    async fn check(&self, zone: &str, key: &str, quota: Quota) -> StoreResult<Option<Duration>> {
        let limiter = self.limiter(zone, quota);
        // Taken before the check, so a refusal's wait is never zero.
        let now = limiter.clock().now();
        Ok(match limiter.check_key(&key.to_string()) {
            Ok(()) => None,
            Err(not_until) => Some(not_until.wait_time_from(now).max(Duration::from_nanos(1))),
        })
    }

    /// Forgets clients back at their full burst, and limiters left empty
    /// (unless a check is using one right now).
    fn housekeep(&self) {
        self.limiters.lock().retain(|_, limiter| {
            limiter.retain_recent();
            limiter.shrink_to_fit();
            !limiter.is_empty() || Arc::strong_count(limiter) > 1
        });
    }
}
