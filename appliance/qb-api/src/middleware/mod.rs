//! Cross-cutting HTTP layers: client address, rate limits, request metrics
//! and logging.

pub mod client_ip;
pub mod http_metrics;
pub mod rate_limit;
