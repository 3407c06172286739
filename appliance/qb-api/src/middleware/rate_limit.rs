//! Per-client rate limits, the seed's nginx `limit_req` zones built in:
//! `api` on `/api/*` (10 r/s, burst 20) and `trading` on `/api/v1/trading/*`
//! (5 r/s, burst 10). A refused request gets 429 with `Retry-After`.
//!
//! The budgets live behind the `RateLimiter` seam: in process on one box,
//! in Redis in a cluster, so a client's budget holds across every node.
//! When the shared limiter cannot be reached the request is let through
//! (counted in `quantbox_rate_limit_errors_total` and logged): an outage
//! of Redis must not take the API down.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use qb_core::config::RateLimitConfig;
use qb_core::{Quota, RateLimiter};

use crate::middleware::client_ip::ClientIp;
use crate::problem::ApiError;
use crate::state::AppState;

pub struct RateLimits {
    enabled: bool,
    api: Quota,
    trading: Quota,
    limiter: Arc<dyn RateLimiter>,
    /// Unix second of the last "limiter unavailable" warning.
    last_warning: AtomicU64,
}

impl RateLimits {
    pub fn new(c: &RateLimitConfig, limiter: Arc<dyn RateLimiter>) -> Self {
        Self {
            enabled: c.enabled,
            api: Quota {
                per_sec: c.api_per_sec,
                burst: c.api_burst,
            },
            trading: Quota {
                per_sec: c.trading_per_sec,
                burst: c.trading_burst,
            },
            limiter,
            last_warning: AtomicU64::new(0),
        }
    }

    /// The zone a path belongs to, if any.
    pub fn zone(path: &str) -> Option<&'static str> {
        if path.starts_with("/api/v1/trading/") || path == "/api/v1/trading" {
            Some("trading")
        } else if path.starts_with("/api/") {
            Some("api")
        } else {
            None
        }
    }

    /// `Err(seconds to wait)` when the client is over its limit; allowed
    /// when the limiter cannot be asked.
    pub async fn check(&self, zone: &str, ip: IpAddr) -> Result<(), u64> {
        let quota = if zone == "trading" {
            self.trading
        } else {
            self.api
        };
        match self.limiter.check(zone, &ip.to_string(), quota).await {
            Ok(None) => Ok(()),
            Ok(Some(wait)) => Err(wait.as_secs_f64().ceil() as u64),
            Err(e) => {
                let now = qb_core::time::now_ms() as u64 / 1000;
                let last = self.last_warning.load(Ordering::Relaxed);
                if now >= last + 10
                    && self
                        .last_warning
                        .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                {
                    tracing::warn!(error = %e, "rate limiter unavailable: letting requests through");
                }
                Ok(())
            }
        }
    }

    /// Forgets clients that have been idle long enough to be back at full burst.
    pub fn shrink(&self) {
        self.limiter.housekeep();
    }
}

pub async fn rate_limit(
    State(state): State<AppState>,
    ip: ClientIp,
    req: Request,
    next: Next,
) -> Response {
    if state.limits.enabled
        && let Some(zone) = RateLimits::zone(req.uri().path())
        && let Err(wait) = state.limits.check(zone, ip.0).await
    {
        state.metrics.rate_limited.with_label_values(&[zone]).inc();
        return ApiError::too_many(
            format!(
                "rate limit of the {zone} zone exceeded; retry in {} s",
                wait.max(1)
            ),
            wait,
        )
        .into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_follow_the_seed_locations() {
        assert_eq!(RateLimits::zone("/api/v1/trading/orders"), Some("trading"));
        assert_eq!(RateLimits::zone("/api/v1/jobs"), Some("api"));
        assert_eq!(RateLimits::zone("/api/openapi.json"), Some("api"));
        assert_eq!(RateLimits::zone("/health"), None);
        assert_eq!(RateLimits::zone("/metrics"), None);
    }

    #[tokio::test]
    async fn trading_zone_is_stricter_and_separate() {
        let limits = RateLimits::new(
            &RateLimitConfig::default(),
            Arc::new(qb_store::LocalRateLimiter::new()),
        );
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let mut trading_ok = 0;
        for _ in 0..30 {
            trading_ok += limits.check("trading", ip).await.is_ok() as usize;
        }
        assert_eq!(trading_ok, 10, "burst 10");
        let mut api_ok = 0;
        for _ in 0..30 {
            api_ok += limits.check("api", ip).await.is_ok() as usize;
        }
        assert_eq!(api_ok, 20, "burst 20, not shared with the trading zone");
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(
            limits.check("api", other).await.is_ok(),
            "limits are per client"
        );
        let wait = limits.check("trading", ip).await.unwrap_err();
        assert!(wait >= 1);
    }
}
