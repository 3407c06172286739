//! Cross-cutting HTTP layers: client address, rate limits, request metrics
//! and logging, what the node's roles serve.

pub mod client_ip;
pub mod http_metrics;
pub mod rate_limit;
pub mod roles;
