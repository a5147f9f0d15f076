//! The fake host (mounts, processes) and cgroups.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;

use super::World;
use crate::cgroups::{CgroupError, CgroupLimits, CgroupManager, CgroupStats};
use crate::host::{HostOps, Idmap};
use crate::process::ProcessRef;

/// Mounts are recorded, not made; their mount points are real, so the
/// directories the lifecycles remove exist.
pub struct FakeHost(pub World);

impl FakeHost {
    fn mount(&self, op: &str, target: &Path, dir: bool) -> io::Result<()> {
        self.0.step(op)?;
        if dir {
            std::fs::create_dir_all(target)?;
        } else {
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(target, b"")?;
        }
        self.0.lock().mounts.insert(target.to_path_buf());
        Ok(())
    }
}

#[tonic::async_trait]
impl HostOps for FakeHost {
    fn mount_tmpfs(&self, target: &Path, _size: u64) -> io::Result<()> {
        self.mount("mount tmpfs", target, true)
    }

    fn bind_netns(&self, _pid: i32, target: &Path) -> io::Result<()> {
        self.mount("bind netns", target, false)
    }

    fn mount_overlay(
        &self,
        _lower: &[PathBuf],
        upper: &Path,
        work: &Path,
        target: &Path,
    ) -> io::Result<()> {
        std::fs::create_dir_all(upper)?;
        std::fs::create_dir_all(work)?;
        self.mount("mount overlay", target, true)
    }

    fn mount_idmapped(
        &self,
        source: &Path,
        target: &Path,
        _idmap: &Idmap,
        _recursive: bool,
    ) -> io::Result<()> {
        self.mount("mount idmapped", target, source.is_dir())
    }

    fn mount_read_only_layers(&self, _lower: &[PathBuf], target: &Path) -> io::Result<()> {
        self.mount("mount image volume", target, true)
    }

    fn unmount_all(&self, path: &Path) -> io::Result<()> {
        self.0.step("unmount")?;
        self.0.lock().mounts.remove(path);
        Ok(())
    }

    fn unmount_below(&self, dir: &Path) -> io::Result<()> {
        self.0.step("unmount")?;
        self.0.lock().mounts.retain(|m| !m.starts_with(dir));
        Ok(())
    }

    fn remove_mount_point(&self, path: &Path) -> io::Result<()> {
        self.unmount_all(path)?;
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn is_alive(&self, p: ProcessRef) -> bool {
        self.0.is_alive(p.pid)
    }

    async fn kill(&self, p: ProcessRef, _timeout: Duration) -> io::Result<bool> {
        self.0.step("kill")?;
        self.0.end(p.pid, 137);
        Ok(true)
    }

    async fn exited(&self, p: ProcessRef) -> io::Result<()> {
        self.0.exited(p.pid).await;
        Ok(())
    }
}

/// Cgroups as a set of paths; a process added to one dies with it.
pub struct FakeCgroups(pub World);

fn cgroup_error(path: &str, e: io::Error) -> CgroupError {
    CgroupError::Create {
        path: PathBuf::from(path),
        source: e,
    }
}

#[tonic::async_trait]
impl CgroupManager for FakeCgroups {
    fn check_path(&self, path: &str) -> Result<String, CgroupError> {
        match path.starts_with('/') && path.len() > 1 {
            true => Ok(path.to_string()),
            false => Err(CgroupError::InvalidPath {
                path: path.to_string(),
                reason: "not absolute".into(),
            }),
        }
    }

    fn create(&self, path: &str) -> Result<(), CgroupError> {
        self.0
            .step("create cgroup")
            .map_err(|e| cgroup_error(path, e))?;
        self.0.lock().cgroups.insert(path.to_string());
        Ok(())
    }

    fn add_process(&self, path: &str, pid: i32) -> Result<(), CgroupError> {
        self.0
            .step("add to cgroup")
            .map_err(|e| cgroup_error(path, e))?;
        if let Some(p) = self.0.lock().processes.get_mut(&pid) {
            p.cgroup = Some(path.to_string());
        }
        Ok(())
    }

    async fn kill_all(&self, path: &str) -> Result<(), CgroupError> {
        self.signal_all(path, Signal::SIGKILL).map(|_| ())
    }

    fn signal_all(&self, path: &str, _sig: Signal) -> Result<usize, CgroupError> {
        self.0
            .step("kill cgroup")
            .map_err(|e| cgroup_error(path, e))?;
        let pids: Vec<i32> = {
            let s = self.0.lock();
            s.processes
                .iter()
                .filter(|(_, p)| p.cgroup.as_deref() == Some(path) && *p.alive.borrow())
                .map(|(pid, _)| *pid)
                .collect()
        };
        for pid in &pids {
            self.0.end(*pid, 137);
        }
        Ok(pids.len())
    }

    fn remove(&self, path: &str) -> Result<(), CgroupError> {
        self.0
            .step("remove cgroup")
            .map_err(|e| cgroup_error(path, e))?;
        self.0
            .lock()
            .cgroups
            .retain(|c| c != path && !c.starts_with(&format!("{path}/")));
        Ok(())
    }

    fn dirs(&self, _path: &str) -> Vec<PathBuf> {
        Vec::new()
    }

    fn oom_file(&self, _path: &str) -> Option<PathBuf> {
        None
    }

    fn stats(&self, _path: &str) -> Result<CgroupStats, CgroupError> {
        Ok(CgroupStats::default())
    }

    fn set_limits(&self, path: &str, _limits: &CgroupLimits) -> Result<(), CgroupError> {
        self.0
            .step("set cgroup limits")
            .map_err(|e| cgroup_error(path, e))
    }
}
