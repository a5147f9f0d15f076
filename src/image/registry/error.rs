//! What goes wrong talking to a registry, and the request context that
//! names it.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::StatusCode;

use super::http::{chain, registry_message};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry settings: {0}")]
    InvalidSettings(String),
    #[error("AuthConfig `{field}`: {reason}")]
    InvalidCredentials { field: &'static str, reason: String },
    /// A node file (registries.conf, auth.json) that cannot be used; `key`
    /// is empty when the whole file is at fault.
    #[error("{}{}: {message}", path.display(), if key.is_empty() { String::new() } else { format!(": {key}") })]
    NodeFile {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error(
        "pulling {reference} is blocked: registries.conf {} has blocked = true for prefix {prefix:?}",
        file.display()
    )]
    Blocked {
        reference: String,
        file: PathBuf,
        prefix: String,
    },
    #[error(
        "fetch {what} from {from}: stalled: no bytes for {}s (images.pull_progress_timeout_secs); pull cancelled",
        after.as_secs()
    )]
    Stalled {
        what: String,
        from: String,
        after: Duration,
    },
    #[error("fetch {what} from {from}: invalid reference: {reason}")]
    InvalidReference {
        what: String,
        from: String,
        reason: String,
    },
    #[error("fetch {what} from {from}: unsupported: {reason}")]
    Unsupported {
        what: String,
        from: String,
        reason: String,
    },
    #[error("fetch {what} from {from}: cannot connect: {detail}")]
    Connect {
        what: String,
        from: String,
        detail: String,
    },
    #[error("fetch {what} from {from}: unauthorized: {message}")]
    Unauthorized {
        what: String,
        from: String,
        message: String,
    },
    #[error("fetch {what} from {from}: not found: {message}")]
    NotFound {
        what: String,
        from: String,
        message: String,
    },
    #[error("fetch {what} from {from}: HTTP {status}: {message}")]
    Http {
        what: String,
        from: String,
        status: u16,
        message: String,
    },
    #[error("fetch {what} from {from}: invalid response: {message}")]
    Protocol {
        what: String,
        from: String,
        message: String,
    },
    #[error("fetch {what} from {from}: digest mismatch: got {actual}")]
    DigestMismatch {
        what: String,
        from: String,
        digest: String,
        actual: String,
    },
    #[error("fetch blob {digest} from {from}: size mismatch: {message}")]
    SizeMismatch {
        from: String,
        digest: String,
        message: String,
    },
    #[error(
        "fetch blob {digest} from {from}: truncated: got {got} of {} bytes{detail}",
        expected.map_or_else(|| "?".to_string(), |n| n.to_string())
    )]
    Truncated {
        from: String,
        digest: String,
        got: u64,
        expected: Option<u64>,
        /// Empty, or ": <why the body ended>".
        detail: String,
    },
}

impl RegistryError {
    /// The registry does not have the manifest or blob (gRPC NotFound).
    pub fn is_not_found(&self) -> bool {
        matches!(self, RegistryError::NotFound { .. })
    }

    pub fn is_unauthorized(&self) -> bool {
        matches!(self, RegistryError::Unauthorized { .. })
    }

    /// Errors that make a mirror useless for this request, so the next
    /// endpoint gets a chance.
    pub(super) fn falls_through(&self) -> bool {
        match self {
            RegistryError::Connect { .. }
            | RegistryError::NotFound { .. }
            | RegistryError::Stalled { .. } => true,
            RegistryError::Http { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// What a request is for, to build error messages.
pub(super) struct Ctx<'a> {
    pub(super) what: &'a str,
    pub(super) from: String,
    /// The client's read timeout: a request that times out waited this
    /// long without a byte.
    pub(super) stall_timeout: Option<Duration>,
}

impl Ctx<'_> {
    pub(super) fn connect(&self, detail: String) -> RegistryError {
        RegistryError::Connect {
            what: self.what.to_string(),
            from: self.from.clone(),
            detail,
        }
    }

    /// A failed send or read: stalled when the read timeout expired,
    /// otherwise a connection failure (`context` goes before the cause).
    pub(super) fn transport(&self, e: &reqwest::Error, context: &str) -> RegistryError {
        match self.stall_timeout {
            Some(after) if e.is_timeout() && !e.is_connect() => RegistryError::Stalled {
                what: self.what.to_string(),
                from: self.from.clone(),
                after,
            },
            _ => self.connect(format!("{context}{}", chain(e))),
        }
    }
    pub(super) fn unauthorized(&self, message: String) -> RegistryError {
        RegistryError::Unauthorized {
            what: self.what.to_string(),
            from: self.from.clone(),
            message,
        }
    }
    pub(super) fn protocol(&self, message: String) -> RegistryError {
        RegistryError::Protocol {
            what: self.what.to_string(),
            from: self.from.clone(),
            message,
        }
    }
    pub(super) fn unsupported(&self, reason: String) -> RegistryError {
        RegistryError::Unsupported {
            what: self.what.to_string(),
            from: self.from.clone(),
            reason,
        }
    }

    /// Maps a non-success status to an error carrying the registry's message.
    pub(super) async fn status_error(
        &self,
        resp: reqwest::Response,
        prefix: &str,
    ) -> RegistryError {
        let status = resp.status();
        let message = format!("{prefix}{}", registry_message(resp).await);
        let (what, from) = (self.what.to_string(), self.from.clone());
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => RegistryError::Unauthorized {
                what,
                from,
                message,
            },
            StatusCode::NOT_FOUND => RegistryError::NotFound {
                what,
                from,
                message,
            },
            _ => RegistryError::Http {
                what,
                from,
                status: status.as_u16(),
                message,
            },
        }
    }
}
