//! The error of the pod sandbox and container layers: what kind of failure
//! it is, in the classes the CRI API reports (containerd calls them
//! errdefs), mapped once to a gRPC status by `server`.

use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    /// A request field is wrong; `field` is its path in the request.
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

impl Error {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field: field.to_string(),
            message: message.into(),
        }
    }

    /// An internal failure of `what`.
    pub fn internal(what: &str, e: impl std::fmt::Display) -> Self {
        Error::Internal(format!("{what}: {e}"))
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::Internal(e.to_string())
    }
}

/// The failures of a release that tries every step even after one failed:
/// the result names each of them.
#[derive(Debug, Default)]
pub struct Problems(Vec<String>);

impl Problems {
    pub fn add(&mut self, problem: impl Into<String>) {
        self.0.push(problem.into());
    }

    /// Notes the failure of the step `what`, if it failed.
    pub fn check<E: std::fmt::Display>(&mut self, what: impl std::fmt::Display, r: Result<(), E>) {
        if let Err(e) = r {
            self.0.push(format!("{what}: {e}"));
        }
    }

    /// Notes a failure whose message says what failed.
    pub fn note<E: std::fmt::Display>(&mut self, r: Result<(), E>) {
        if let Err(e) = r {
            self.0.push(e.to_string());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_result(self) -> Result<(), Error> {
        match self.0.is_empty() {
            true => Ok(()),
            false => Err(Error::Internal(self.0.join("; "))),
        }
    }
}
