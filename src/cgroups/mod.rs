//! Cgroups: where a pod's or container's cgroup lives in every mounted
//! hierarchy (`layout`, `paths`), creating it, moving processes into it,
//! signalling them and removing it (`placement`), and what it has used
//! (`stats`). Containers' limits are not written here: runc applies them
//! from the OCI spec; only the cgroups peapod fills itself (a sandbox's
//! infra cgroup) get theirs from `limits`.
//!
//! Paths handled here are always absolute from each hierarchy's root (the
//! form kubelet's cgroupfs driver sends, e.g. `/kubepods/burstable/pod<uid>`)
//! and are resolved under the hierarchy's mount point, never under the
//! daemon's own cgroup. Statistics are read through libcgroups (its v2
//! manager and its public value parsers, on the directories resolved here;
//! `stats` says which parts and why). Placement is peapod's own: libcgroups
//! 0.7's v1 manager covers only the resource controllers (not the
//! `name=systemd` and unified hierarchies runc and kubelet also use), kills
//! processes on remove, and resolves an empty path to the caller's own
//! cgroup.

mod layout;
mod limits;
mod paths;
mod placement;
mod stats;
#[cfg(test)]
mod test_tree;

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

pub use layout::{CgroupLayout, Hierarchy};
pub use limits::{shares_to_weight, CgroupLimits};
pub use paths::{child_path, normalize_parent};
pub use stats::{CgroupStats, CpuSamples};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("invalid cgroup_parent {parent:?}: {reason}")]
    InvalidParent { parent: String, reason: String },
    #[error("invalid cgroup path {path:?}: {reason}")]
    InvalidPath { path: String, reason: String },
    #[error(
        "refusing cgroup path {path:?}: it is inside {protected:?}, the top-level cgroup that \
         holds this process, which belongs to whoever started it"
    )]
    Protected { path: String, protected: String },
    #[error("cannot add pid {pid} to cgroup {path:?}: not a process id")]
    InvalidPid { path: String, pid: i32 },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path} line {line}: {reason}")]
    Parse {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("no cgroup or cgroup2 filesystem is mounted (per {path})")]
    NoHierarchy { path: PathBuf },
    #[error("cannot create cgroup {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot write {value:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        source: io::Error,
    },
    #[error("cgroup {path} is still busy after {waited:?} (pids {pids:?})")]
    Busy {
        path: PathBuf,
        waited: Duration,
        pids: Vec<i32>,
    },
    #[error("cannot remove cgroup {path}: {source}")]
    Remove { path: PathBuf, source: io::Error },
    #[error("cannot send {signal} to pid {pid} of cgroup {path:?}: {source}")]
    Signal {
        path: String,
        pid: i32,
        signal: Signal,
        source: Errno,
    },
}

impl CgroupError {
    /// For `map_err` on an io error from reading `path`.
    fn read(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
        move |source| CgroupError::Read {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// How cgroup parents are named: kubelet's `--cgroup-driver`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupDriver {
    /// Parents are paths (`/kubepods/burstable/pod<uid>`).
    #[default]
    Cgroupfs,
    /// Parents are slice names (`kubepods-burstable-pod<uid>.slice`).
    Systemd,
}

/// Which cgroup versions carry the controllers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupMode {
    /// v1 only.
    Legacy,
    /// v1 controllers plus a (mostly empty) v2 tree, e.g. `/sys/fs/cgroup/unified`.
    Hybrid,
    /// v2 only.
    Unified,
}

/// The cgroup operations the pod and container lifecycles use, so that
/// their rollback and recovery can be tested over a fake. The real one is
/// [`CgroupLayout`]; see its methods.
#[tonic::async_trait]
pub trait CgroupManager: Send + Sync {
    fn check_path(&self, path: &str) -> Result<String, CgroupError>;
    fn create(&self, path: &str) -> Result<(), CgroupError>;
    fn add_process(&self, path: &str, pid: i32) -> Result<(), CgroupError>;
    async fn kill_all(&self, path: &str) -> Result<(), CgroupError>;
    fn signal_all(&self, path: &str, sig: Signal) -> Result<usize, CgroupError>;
    /// Blocks while a busy cgroup is retried: call it off the async workers.
    fn remove(&self, path: &str) -> Result<(), CgroupError>;
    fn dirs(&self, path: &str) -> Vec<PathBuf>;
    fn oom_file(&self, path: &str) -> Option<PathBuf>;
    fn stats(&self, path: &str) -> Result<CgroupStats, CgroupError>;
    fn set_limits(&self, path: &str, limits: &CgroupLimits) -> Result<(), CgroupError>;
}

#[tonic::async_trait]
impl CgroupManager for CgroupLayout {
    fn check_path(&self, path: &str) -> Result<String, CgroupError> {
        CgroupLayout::check_path(self, path)
    }
    fn create(&self, path: &str) -> Result<(), CgroupError> {
        CgroupLayout::create(self, path)
    }
    fn add_process(&self, path: &str, pid: i32) -> Result<(), CgroupError> {
        CgroupLayout::add_process(self, path, pid)
    }
    async fn kill_all(&self, path: &str) -> Result<(), CgroupError> {
        CgroupLayout::kill_all(self, path).await
    }
    fn signal_all(&self, path: &str, sig: Signal) -> Result<usize, CgroupError> {
        CgroupLayout::signal_all(self, path, sig)
    }
    fn remove(&self, path: &str) -> Result<(), CgroupError> {
        CgroupLayout::remove(self, path)
    }
    fn dirs(&self, path: &str) -> Vec<PathBuf> {
        CgroupLayout::dirs(self, path)
    }
    fn oom_file(&self, path: &str) -> Option<PathBuf> {
        CgroupLayout::oom_file(self, path)
    }
    fn stats(&self, path: &str) -> Result<CgroupStats, CgroupError> {
        CgroupLayout::stats(self, path)
    }
    fn set_limits(&self, path: &str, limits: &CgroupLimits) -> Result<(), CgroupError> {
        CgroupLayout::set_limits(self, path, limits)
    }
}

/// Removes `path` off the async workers (removal retries a busy cgroup
/// for up to a second).
pub async fn remove_blocking(
    cgroups: &std::sync::Arc<dyn CgroupManager>,
    path: &str,
) -> Result<(), String> {
    let (cgroups, owned) = (cgroups.clone(), path.to_string());
    match tokio::task::spawn_blocking(move || cgroups.remove(&owned)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("remove cgroup {path}: {e}")),
        // A bug, not a failure to report.
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(format!("remove cgroup {path}: {e}")),
    }
}
