//! Timestamps. Persisted as integer milliseconds since the Unix epoch (UTC);
//! exposed in the API as RFC 3339 strings.

use chrono::{DateTime, TimeZone, Utc};

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

/// The current wall-clock time in milliseconds. Only the platform reads the
/// clock; backtests never do.
pub fn now_ms() -> Millis {
    Utc::now().timestamp_millis()
}

/// A duration in whole milliseconds, saturating (a TTL or lease term).
pub fn duration_ms(d: std::time::Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}

/// Converts milliseconds to a UTC date-time (saturating at the epoch for
/// values chrono cannot represent).
pub fn to_utc(ms: Millis) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}
