//! What goes wrong unpacking a layer, and the errors of the steps that
//! name the entry they fail on.

use std::io;

use nix::errno::Errno;

use super::dirs::ResolveError;
use super::paths::lossy;

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The caller's reader failed; the error is passed through untouched so
    /// digest mismatches and truncated downloads keep their own text.
    #[error("reading layer: {0}")]
    Read(#[source] io::Error),
    #[error("decompressing {format} layer: {source}")]
    Decompress {
        format: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("layer directory {path}: {source}")]
    Dest {
        path: String,
        #[source]
        source: io::Error,
    },
    /// The tar stream itself is malformed or ends early. `at` says where:
    /// `at entry "x"` (its data), `after entry "x"` (the next header) or
    /// `at its start`.
    #[error("malformed layer tar {at}: {source}")]
    Tar {
        at: String,
        #[source]
        source: io::Error,
    },
    /// The entry would write outside the layer directory.
    #[error("tar entry {path:?}: refused: {reason}")]
    Unsafe { path: String, reason: String },
    #[error("tar entry {path:?}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("tar entry {path:?}: {op}: {source}")]
    Io {
        path: String,
        op: String,
        #[source]
        source: io::Error,
    },
    #[error("starting layer unpack thread: {0}")]
    Thread(#[source] io::Error),
}

/// The entry is malformed in a way the layer cannot hold.
pub(super) fn invalid(shown: &str, reason: &str) -> UnpackError {
    UnpackError::Invalid {
        path: shown.to_string(),
        reason: reason.to_string(),
    }
}

pub(super) fn io_err(shown: &str, op: &str, e: Errno) -> UnpackError {
    UnpackError::Io {
        path: shown.to_string(),
        op: op.to_string(),
        source: e.into(),
    }
}

pub(super) fn resolve_error(e: ResolveError, dir: &[u8], shown: &str) -> UnpackError {
    match e {
        ResolveError::Symlink(end) => UnpackError::Unsafe {
            path: shown.to_string(),
            reason: format!(
                "{:?} is a symlink; paths are never resolved through symlinks",
                lossy(&dir[..end])
            ),
        },
        ResolveError::NotDir(end) => UnpackError::Invalid {
            path: shown.to_string(),
            reason: format!("{:?} is not a directory", lossy(&dir[..end])),
        },
        ResolveError::Missing(end) => UnpackError::Invalid {
            path: shown.to_string(),
            reason: format!("directory {:?} does not exist", lossy(&dir[..end])),
        },
        ResolveError::Io(end, op, e) => UnpackError::Io {
            path: shown.to_string(),
            op: format!("{op} {:?}", lossy(&dir[..end])),
            source: e.into(),
        },
    }
}
