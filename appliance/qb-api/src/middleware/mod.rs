//! Cross-cutting HTTP layers: body deadline, client address, rate limits,
//! request metrics and logging, what the node's roles serve.

pub mod body_deadline;
pub mod client_ip;
pub mod http_metrics;
pub mod rate_limit;
pub mod roles;
