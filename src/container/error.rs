//! The container layer's error is [`crate::errors::Error`]; here is how the
//! errors of the parts it uses become one.

use super::security::SecurityError;
use super::user::UserError;
use crate::errors::Error;
use crate::oci::OciError;

/// The container layer's error.
pub type ContainerError = Error;

impl From<OciError> for Error {
    fn from(e: OciError) -> Self {
        match e {
            e @ OciError::Refused { .. } => Error::FailedPrecondition(e.to_string()),
            e => Error::Internal(e.to_string()),
        }
    }
}

impl From<SecurityError> for Error {
    fn from(e: SecurityError) -> Self {
        match e {
            SecurityError::Invalid { field, message } => Error::InvalidArgument { field, message },
            SecurityError::Unsupported(m) => Error::FailedPrecondition(m),
        }
    }
}

impl From<UserError> for Error {
    fn from(e: UserError) -> Self {
        match e {
            UserError::Invalid { field, message } => Error::InvalidArgument { field, message },
            UserError::Io(m) => Error::Internal(m),
        }
    }
}
