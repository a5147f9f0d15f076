//! The bench's one error type.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::args::USAGE;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}\n\n{USAGE}")]
    Usage(String),
    #[error("{target}: connecting to {endpoint}: {source}")]
    Connect {
        target: String,
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("{target}: {call}: {code:?}: {message}")]
    Rpc {
        target: String,
        call: &'static str,
        code: tonic::Code,
        message: String,
    },
    #[error("{target}: {call} did not answer within {} s", limit.as_secs())]
    Timeout {
        target: String,
        call: &'static str,
        limit: Duration,
    },
    #[error("{target}: {call}: {what}")]
    Unexpected {
        target: String,
        call: &'static str,
        what: String,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("running {cmd}: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{cmd} failed ({status}): {stderr}")]
    Command {
        cmd: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("{cmd} did not finish within {} s", limit.as_secs())]
    CommandTimeout { cmd: String, limit: Duration },
    #[error("manifest of {image}: {what}")]
    Manifest { image: String, what: String },
    #[error("reading random bytes: {0}")]
    Random(getrandom::Error),
    /// Something the bench needs is missing; the text says what to run.
    #[error("{0}")]
    Setup(String),
    #[error("interrupted by a signal")]
    Interrupted,
}

pub fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BenchError + '_ {
    move |source| BenchError::Io {
        path: path.to_path_buf(),
        source,
    }
}
