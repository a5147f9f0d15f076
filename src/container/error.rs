//! The container layer's error, mapped once to a gRPC status by `server`.

use super::security::SecurityError;
use super::user::UserError;
use crate::oci::OciError;
use crate::store::StoreError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ContainerError {
    #[error("{0}")]
    NotFound(String),
    #[error("{field}: {message}")]
    InvalidArgument { field: String, message: String },
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{0}")]
    Internal(String),
}

impl ContainerError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ContainerError::InvalidArgument {
            field: field.to_string(),
            message: message.into(),
        }
    }

    pub fn internal(what: &str, e: impl std::fmt::Display) -> Self {
        ContainerError::Internal(format!("{what}: {e}"))
    }
}

impl From<StoreError> for ContainerError {
    fn from(e: StoreError) -> Self {
        ContainerError::Internal(e.to_string())
    }
}

impl From<OciError> for ContainerError {
    fn from(e: OciError) -> Self {
        ContainerError::Internal(e.to_string())
    }
}

impl From<SecurityError> for ContainerError {
    fn from(e: SecurityError) -> Self {
        match e {
            SecurityError::Invalid { field, message } => {
                ContainerError::InvalidArgument { field, message }
            }
            SecurityError::Unsupported(m) => ContainerError::FailedPrecondition(m),
        }
    }
}

impl From<UserError> for ContainerError {
    fn from(e: UserError) -> Self {
        match e {
            UserError::Invalid { field, message } => {
                ContainerError::InvalidArgument { field, message }
            }
            UserError::Io(m) => ContainerError::Internal(m),
        }
    }
}
