//! Authentication and authorisation: password hashing, access / refresh
//! tokens, API keys, the request guard and the `/auth` routes.

pub mod access;
pub mod guard;
pub mod password;
pub mod routes;
pub mod throttle;
pub mod tokens;

pub use access::Reach;
pub use guard::{AuditNote, Principal};
