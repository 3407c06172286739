//! Password guesses, throttled per (user name, client address).
//!
//! After `auth.lockout_threshold` wrong passwords in a row for one name
//! from one address, that pair waits `auth.lockout_base_secs`, doubling
//! with each further failure up to `auth.lockout_max_secs`. Nobody can lock
//! an owner out from elsewhere: a guesser only slows down its own address,
//! and the owner signs in from theirs. Names that do not exist are
//! throttled exactly like names that do, so the answers tell nothing
//! apart. A count is forgotten after `auth.lockout_max_secs` without a
//! failure, and at a successful sign-in from that address.
//!
//! The counts live in the hot-state store (namespace `login-throttle`), so
//! every API node of a cluster sees them. An attempt is counted before
//! the password is checked, under a lock per (name, address) in this
//! process: parallel guesses each take their own count. (Across API nodes
//! the read and the write are not one step: parallel guesses spread over
//! N nodes may count once each per node, still bounded by the per-address
//! rate limit.)

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use qb_core::config::AuthConfig;
use qb_core::seams::{KvStore, lockout_until};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::problem::{ApiError, ApiResult};

const NS: &str = "login-throttle";
const STRIPES: usize = 64;

#[derive(Serialize, Deserialize, Default)]
struct Count {
    failures: u32,
    /// Unix milliseconds before which the pair may not try again.
    #[serde(default)]
    until_ms: Option<i64>,
}

/// The throttle of one process (cheap to clone).
#[derive(Clone)]
pub struct LoginThrottle {
    kv: Arc<dyn KvStore>,
    config: AuthConfig,
    stripes: Arc<Vec<Mutex<()>>>,
}

/// A counted attempt: call [`Attempt::succeeded`] when the password was
/// right; dropped otherwise, the failure stays counted.
pub struct Attempt {
    throttle: LoginThrottle,
    key: String,
    /// Failures in a row for the pair, this attempt included.
    pub failures: u32,
}

impl LoginThrottle {
    pub fn new(kv: Arc<dyn KvStore>, config: AuthConfig) -> Self {
        Self {
            kv,
            config,
            stripes: Arc::new((0..STRIPES).map(|_| Mutex::new(())).collect()),
        }
    }

    /// Counts an attempt to sign in as `username` from `ip`, or answers 429
    /// with `Retry-After` while the pair must wait.
    pub async fn attempt(&self, username: &str, ip: IpAddr) -> ApiResult<Attempt> {
        // Names match without regard to case (as the stores find them).
        let key = format!("{ip} {}", username.to_lowercase());
        let mut h = DefaultHasher::new();
        key.hash(&mut h);
        let _turn = self.stripes[(h.finish() as usize) % STRIPES].lock().await;
        let now = Utc::now();
        let mut count: Count = self
            .kv
            .get(NS, &key)
            .await?
            .and_then(|v| serde_json::from_slice(&v).ok())
            .unwrap_or_default();
        if let Some(until) = count.until_ms.and_then(DateTime::from_timestamp_millis)
            && until > now
        {
            let wait = (until - now).num_seconds().max(1) as u64;
            return Err(ApiError::too_many(
                format!("too many failed sign-ins from this address; try again in {wait} s"),
                wait,
            ));
        }
        let c = &self.config;
        count.failures = count.failures.saturating_add(1);
        let until = lockout_until(
            count.failures,
            c.lockout_threshold,
            Duration::from_secs(c.lockout_base_secs),
            Duration::from_secs(c.lockout_max_secs),
            now,
        );
        count.until_ms = until.map(|t| t.timestamp_millis());
        let keep = until
            .map(|t| (t - now).to_std().unwrap_or_default())
            .unwrap_or_default()
            .max(Duration::from_secs(c.lockout_max_secs.max(1)));
        let bytes = serde_json::to_vec(&count).map_err(ApiError::internal)?;
        self.kv.put(NS, &key, &bytes, Some(keep)).await?;
        Ok(Attempt {
            throttle: self.clone(),
            key,
            failures: count.failures,
        })
    }
}

impl Attempt {
    /// The password was right: the pair starts again from zero.
    pub async fn succeeded(self) -> ApiResult<()> {
        self.throttle.kv.delete(NS, &self.key).await?;
        Ok(())
    }
}
