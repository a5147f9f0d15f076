//! The host as the pod and container lifecycles touch it: mounts and
//! processes behind [`HostOps`] (so their rollback and recovery can be
//! tested with a fake host), and file helpers ([`fs`]) both share.

pub mod fs;
pub mod idmap;
mod mounts;
pub mod terminal;

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::process::{self, ProcessRef};
pub use idmap::Idmap;

/// The search path a process gets when neither its image nor its config
/// sets one (containers, CNI plugins).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The mounts and process operations of the lifecycles.
#[tonic::async_trait]
pub trait HostOps: Send + Sync {
    /// Mounts a tmpfs of `size` bytes on `target` (a pod's /dev/shm),
    /// creating the directory.
    fn mount_tmpfs(&self, target: &Path, size: u64) -> io::Result<()>;

    /// Bind-mounts the network namespace of `pid` on the file `target`, so
    /// the namespace outlives the process and others join it by path.
    fn bind_netns(&self, pid: i32, target: &Path) -> io::Result<()>;

    /// Mounts `lower` (bottom first) under the writable `upper` at `target`.
    fn mount_overlay(
        &self,
        lower: &[PathBuf],
        upper: &Path,
        work: &Path,
        target: &Path,
    ) -> io::Result<()>;

    /// Attaches an id-mapped clone of the mount at `source` (and of those
    /// below it when `recursive`) at `target`, created like the source.
    fn mount_idmapped(
        &self,
        source: &Path,
        target: &Path,
        idmap: &Idmap,
        recursive: bool,
    ) -> io::Result<()>;

    /// Mounts `lower` (bottom first) read-only at `target`, without a
    /// writable layer (an image volume), creating the directory.
    fn mount_read_only_layers(&self, lower: &[PathBuf], target: &Path) -> io::Result<()>;

    /// Unmounts everything on `path`; nothing mounted is not an error.
    fn unmount_all(&self, path: &Path) -> io::Result<()>;

    /// Unmounts every mount at or below `dir`, deepest first.
    fn unmount_below(&self, dir: &Path) -> io::Result<()>;

    /// Unmounts and deletes a file or directory mount point.
    fn remove_mount_point(&self, path: &Path) -> io::Result<()>;

    /// Whether a recorded process still runs.
    fn is_alive(&self, p: ProcessRef) -> bool;

    /// SIGKILLs a recorded process and waits up to `timeout` until it is
    /// gone; true when it is. One already gone is left alone.
    async fn kill(&self, p: ProcessRef, timeout: Duration) -> io::Result<bool>;

    /// Resolves when a recorded process has exited (at once when it is
    /// gone already), without polling.
    async fn exited(&self, p: ProcessRef) -> io::Result<()>;
}

/// The real host.
pub struct Host;

#[tonic::async_trait]
impl HostOps for Host {
    fn mount_tmpfs(&self, target: &Path, size: u64) -> io::Result<()> {
        mounts::mount_shm(target, size)
    }

    fn bind_netns(&self, pid: i32, target: &Path) -> io::Result<()> {
        mounts::bind_netns(pid, target)
    }

    fn mount_overlay(
        &self,
        lower: &[PathBuf],
        upper: &Path,
        work: &Path,
        target: &Path,
    ) -> io::Result<()> {
        mounts::mount_overlay(lower, upper, work, target)
    }

    fn mount_idmapped(
        &self,
        source: &Path,
        target: &Path,
        idmap: &Idmap,
        recursive: bool,
    ) -> io::Result<()> {
        idmap::mount_idmapped(source, target, idmap, recursive)
    }

    fn mount_read_only_layers(&self, lower: &[PathBuf], target: &Path) -> io::Result<()> {
        mounts::mount_read_only_overlay(lower, target)
    }

    fn unmount_all(&self, path: &Path) -> io::Result<()> {
        fs::unmount_all(path)
    }

    fn unmount_below(&self, dir: &Path) -> io::Result<()> {
        fs::unmount_below(dir)
    }

    fn remove_mount_point(&self, path: &Path) -> io::Result<()> {
        fs::remove_mount_point(path)
    }

    fn is_alive(&self, p: ProcessRef) -> bool {
        p.is_alive()
    }

    async fn kill(&self, p: ProcessRef, timeout: Duration) -> io::Result<bool> {
        process::kill_and_wait(p, timeout).await
    }

    async fn exited(&self, p: ProcessRef) -> io::Result<()> {
        match p.open() {
            Ok(fd) => fd.exited().await,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
