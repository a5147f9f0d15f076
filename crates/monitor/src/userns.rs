//! Moving this process into a new user namespace with given mappings.
//!
//! A process cannot write a mapping for itself that names host ids other
//! than its own: the writer needs CAP_SETUID/CAP_SETGID in the *parent*
//! namespace. So a helper forked before the unshare (still in the host's
//! namespace, still root) writes our `uid_map` and `gid_map` once we have
//! unshared, and exits. `setgroups` stays allowed, because containers set
//! their supplemental groups.
//!
//! Afterwards this process becomes the namespace's root (uid and gid 0
//! inside, the mapped ids outside) with every capability in it, so the
//! namespaces it creates next are owned by the new user namespace.

use std::os::fd::OwnedFd;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{
    fork, getpid, pipe2, setgroups, setresgid, setresuid, ForkResult, Gid, Pid, Uid,
};
use peapod_monitor_protocol::UserNamespaceMaps;

#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    #[error("user namespace: {step}: {errno}")]
    Sys { step: &'static str, errno: Errno },
    #[error("user namespace: {0}")]
    Mapping(String),
}

fn sys(step: &'static str) -> impl FnOnce(Errno) -> UsernsError {
    move |errno| UsernsError::Sys { step, errno }
}

/// Unshares a user namespace with `maps` and becomes its root.
pub fn enter(maps: &UserNamespaceMaps) -> Result<(), UsernsError> {
    let (go_read, go_write) = pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe"))?;
    let (result_read, result_write) = pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe"))?;
    let target = getpid();
    // SAFETY: the monitor is single-threaded, so the child may do anything
    // the parent could.
    match unsafe { fork() }.map_err(sys("fork the mapping writer"))? {
        ForkResult::Child => {
            drop((go_write, result_read));
            mapping_writer(go_read, result_write, target, maps)
        }
        ForkResult::Parent { child } => {
            drop((go_read, result_write));
            let unshared = unshare(CloneFlags::CLONE_NEWUSER);
            // The writer writes the maps on a byte, and exits at once on
            // EOF (our unshare failed).
            if unshared.is_ok() {
                let _ = nix::unistd::write(&go_write, b"g");
            }
            drop(go_write);
            let report = read_all(&result_read);
            let status = wait_for(child);
            unshared.map_err(sys("unshare(CLONE_NEWUSER)"))?;
            check_writer(report, status)?;
            become_root()
        }
    }
}

/// The helper's side: waits for the go, writes the maps, reports any
/// failure as text on `result`, exits.
fn mapping_writer(go: OwnedFd, result: OwnedFd, target: Pid, maps: &UserNamespaceMaps) -> ! {
    let mut byte = [0u8; 1];
    let outcome = match nix::unistd::read(&go, &mut byte) {
        Ok(1) => write_maps(target, maps),
        _ => Ok(()),
    };
    let code = match outcome {
        Ok(()) => 0,
        Err(message) => {
            let _ = nix::unistd::write(&result, message.as_bytes());
            1
        }
    };
    // SAFETY: leaves without running anything inherited from the parent.
    unsafe { libc::_exit(code) }
}

fn write_maps(target: Pid, maps: &UserNamespaceMaps) -> Result<(), String> {
    for (file, map) in [("uid_map", maps.uid), ("gid_map", maps.gid)] {
        let path = format!("/proc/{target}/{file}");
        std::fs::write(&path, map.map_line())
            .map_err(|e| format!("write {:?} to {path}: {e}", map.map_line().trim_end()))?;
    }
    Ok(())
}

fn read_all(fd: &OwnedFd) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(Errno::EINTR) => {}
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn wait_for(child: Pid) -> Result<WaitStatus, Errno> {
    loop {
        match waitpid(child, None) {
            Err(Errno::EINTR) => {}
            other => return other,
        }
    }
}

fn check_writer(report: String, status: Result<WaitStatus, Errno>) -> Result<(), UsernsError> {
    if !report.is_empty() {
        return Err(UsernsError::Mapping(report));
    }
    match status.map_err(sys("wait for the mapping writer"))? {
        WaitStatus::Exited(_, 0) => Ok(()),
        other => Err(UsernsError::Mapping(format!(
            "the mapping writer ended with {other:?}"
        ))),
    }
}

/// uid and gid 0 of the new namespace, no supplemental groups (the
/// host's would show as unmapped ones).
fn become_root() -> Result<(), UsernsError> {
    let root_gid = Gid::from_raw(0);
    setresgid(root_gid, root_gid, root_gid).map_err(sys("setresgid(0)"))?;
    setgroups(&[]).map_err(sys("setgroups([])"))?;
    let root_uid = Uid::from_raw(0);
    setresuid(root_uid, root_uid, root_uid).map_err(sys("setresuid(0)"))
}
