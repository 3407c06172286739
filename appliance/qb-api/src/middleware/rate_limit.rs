//! Per-client rate limits, the seed's nginx `limit_req` zones built in:
//! `api` on `/api/*` (10 r/s, burst 20) and `trading` on `/api/v1/trading/*`
//! (5 r/s, burst 10). A refused request gets 429 with `Retry-After`.

use std::net::IpAddr;
use std::num::NonZeroU32;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use qb_core::config::RateLimitConfig;

use crate::middleware::client_ip::ClientIp;
use crate::problem::ApiError;
use crate::state::AppState;

pub struct RateLimits {
    enabled: bool,
    api: DefaultKeyedRateLimiter<IpAddr>,
    trading: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
}

fn quota(per_sec: u32, burst: u32) -> Quota {
    let nz = |n: u32| NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(nz(per_sec)).allow_burst(nz(burst))
}

impl RateLimits {
    pub fn new(c: &RateLimitConfig) -> Self {
        Self {
            enabled: c.enabled,
            api: RateLimiter::keyed(quota(c.api_per_sec, c.api_burst)),
            trading: RateLimiter::keyed(quota(c.trading_per_sec, c.trading_burst)),
            clock: DefaultClock::default(),
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

    /// `Err(seconds to wait)` when the client is over its limit.
    pub fn check(&self, zone: &str, ip: IpAddr) -> Result<(), u64> {
        let limiter = if zone == "trading" {
            &self.trading
        } else {
            &self.api
        };
        limiter.check_key(&ip).map_err(|not_until| {
            not_until
                .wait_time_from(self.clock.now())
                .as_secs_f64()
                .ceil() as u64
        })
    }

    /// Forgets clients that have been idle long enough to be back at full burst.
    pub fn shrink(&self) {
        self.api.retain_recent();
        self.trading.retain_recent();
        self.api.shrink_to_fit();
        self.trading.shrink_to_fit();
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
        && let Err(wait) = state.limits.check(zone, ip.0)
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

    #[test]
    fn trading_zone_is_stricter_and_separate() {
        let limits = RateLimits::new(&RateLimitConfig::default());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let trading_ok = (0..30)
            .filter(|_| limits.check("trading", ip).is_ok())
            .count();
        assert_eq!(trading_ok, 10, "burst 10");
        let api_ok = (0..30).filter(|_| limits.check("api", ip).is_ok()).count();
        assert_eq!(api_ok, 20, "burst 20, not shared with the trading zone");
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(limits.check("api", other).is_ok(), "limits are per client");
        let wait = limits.check("trading", ip).unwrap_err();
        assert!(wait >= 1);
    }
}
