//! The one error type of live trading (desk, strategies); the API maps
//! each kind to its HTTP status.

use qb_core::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("{0}")]
    NotFound(String),
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("{0}")]
    Conflict(String),
    /// A strategy could not be started or swapped (plugin refused, trapped,
    /// did not answer).
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> LiveError {
    LiveError::Invalid {
        field,
        message: message.into(),
    }
}
