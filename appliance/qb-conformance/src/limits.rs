//! The [`RateLimiter`] suite: GCRA budgets with the semantics of governor's
//! `Quota::per_second(per_sec).allow_burst(burst)` — from idle a client
//! gets exactly `burst` requests at once, then one per `1/per_sec`.
//! Quotas are small so every wait stays well under a second.

use std::sync::Arc;
use std::time::Duration;

use qb_core::{Quota, RateLimiter};

/// 20 r/s (one per 50 ms), burst 3.
const QUOTA: Quota = Quota {
    per_sec: 20,
    burst: 3,
};
const PERIOD: Duration = Duration::from_millis(50);
/// Rounding of the adapters' clocks (the Redis one counts microseconds).
const SLACK: Duration = Duration::from_millis(2);

async fn check(rl: &dyn RateLimiter, zone: &str, key: &str, quota: Quota) -> Option<Duration> {
    rl.check(zone, key, quota)
        .await
        .unwrap_or_else(|e| panic!("check {zone}/{key}: {e}"))
}

/// Spends `n` requests at once; how many were allowed.
async fn spend(rl: &dyn RateLimiter, zone: &str, key: &str, n: u32) -> u32 {
    let mut allowed = 0;
    for _ in 0..n {
        if check(rl, zone, key, QUOTA).await.is_none() {
            allowed += 1;
        }
    }
    allowed
}

/// A refusal with a wait in `(0, max]`; returns the wait.
fn refused(wait: Option<Duration>, max: Duration, what: &str) -> Duration {
    let wait = wait.unwrap_or_else(|| panic!("{what}: allowed, expected a refusal"));
    assert!(wait > Duration::ZERO, "{what}: refused with a zero wait");
    assert!(wait <= max + SLACK, "{what}: wait {wait:?} > {max:?}");
    wait
}

pub async fn suite(rl: Arc<dyn RateLimiter>) {
    let rl = &*rl;

    // From idle: exactly `burst` at once, then refused with a wait of at
    // most one period.
    assert_eq!(spend(rl, "api", "client-1", 3).await, 3, "the burst");
    let wait = refused(
        check(rl, "api", "client-1", QUOTA).await,
        PERIOD,
        "past the burst",
    );
    // Refusals cost nothing: the wait does not grow.
    let again = refused(
        check(rl, "api", "client-1", QUOTA).await,
        PERIOD,
        "refused again",
    );
    assert!(
        again <= wait,
        "a refusal spent budget: {again:?} > {wait:?}"
    );

    // Budgets are per client and per zone.
    assert_eq!(spend(rl, "api", "client-2", 5).await, 3, "another client");
    assert_eq!(spend(rl, "trading", "client-1", 5).await, 3, "another zone");

    // The budget comes back with time: one request per period...
    tokio::time::sleep(again + Duration::from_millis(5)).await;
    assert_eq!(
        check(rl, "api", "client-1", QUOTA).await,
        None,
        "after waiting as told"
    );
    // ...and the whole burst after `burst` periods of rest.
    tokio::time::sleep(PERIOD * 3 + Duration::from_millis(20)).await;
    assert_eq!(spend(rl, "api", "client-1", 3).await, 3, "burst after rest");
    refused(
        check(rl, "api", "client-1", QUOTA).await,
        PERIOD,
        "past the burst after rest",
    );

    // Burst 1: one request, then one per period (here 500 ms).
    let slow = Quota {
        per_sec: 2,
        burst: 1,
    };
    assert_eq!(check(rl, "slow", "client-1", slow).await, None);
    refused(
        check(rl, "slow", "client-1", slow).await,
        Duration::from_millis(500),
        "burst 1",
    );

    // Forgetting idle clients never makes a client lose budget.
    rl.housekeep();
    assert_eq!(
        spend(rl, "api", "client-3", 3).await,
        3,
        "after housekeeping"
    );
}

/// Two limiters over one backend (two nodes) spend one budget. For an
/// in-process limiter pass the same instance twice.
pub async fn shared(a: Arc<dyn RateLimiter>, b: Arc<dyn RateLimiter>) {
    let (a, b) = (&*a, &*b);
    assert_eq!(check(a, "shared", "client", QUOTA).await, None);
    assert_eq!(check(b, "shared", "client", QUOTA).await, None);
    assert_eq!(check(a, "shared", "client", QUOTA).await, None);
    let wait = refused(
        check(b, "shared", "client", QUOTA).await,
        PERIOD,
        "burst spent on the other node",
    );
    refused(
        check(a, "shared", "client", QUOTA).await,
        PERIOD,
        "burst spent on both nodes",
    );
    // Budget returning is seen by both.
    tokio::time::sleep(wait + Duration::from_millis(5)).await;
    assert_eq!(check(b, "shared", "client", QUOTA).await, None);
    refused(
        check(a, "shared", "client", QUOTA).await,
        PERIOD,
        "the returned request was spent on the other node",
    );
}
