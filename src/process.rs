//! Processes identified by pid *and* start time, so that a recycled pid is
//! never mistaken for a process we started, and exit notification through
//! pidfds (no polling).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

/// A process as recorded in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRef {
    pub pid: i32,
    /// Field 22 of `/proc/<pid>/stat`: clock ticks since boot.
    pub start_time: u64,
}

/// Reads a process's start time, or None when it does not exist.
pub fn start_time(pid: i32) -> Option<u64> {
    parse_start_time(&read_stat(pid)?)
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) may contain spaces
/// and parentheses, so fields are counted after its last `)`.
pub fn parse_start_time(stat: &str) -> Option<u64> {
    stat_field(stat, 22)?.parse().ok()
}

/// Field `n` (1-based, as proc(5) numbers them, n ≥ 3) of a
/// `/proc/<pid>/stat` line, counted after the name's last `)`.
fn stat_field(stat: &str, n: usize) -> Option<&str> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(n.checked_sub(3)?)
}

fn read_stat(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()
}

/// Is the process a zombie (state Z or X)?
fn is_zombie(pid: i32) -> bool {
    read_stat(pid)
        .as_deref()
        .and_then(|s| stat_field(s, 3))
        .is_some_and(|st| st == "Z" || st == "X")
}

/// The parent of a process (field 4 of its stat line).
pub fn parent_pid(pid: i32) -> Option<i32> {
    read_stat(pid)
        .as_deref()
        .and_then(|s| stat_field(s, 4)?.parse().ok())
}

/// Every process id /proc lists.
pub fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// A process's arguments (lossy UTF-8); empty for a kernel thread or a
/// process that is gone.
pub fn cmdline(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|c| *c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The processes below `pid` (children, grandchildren, ...), from /proc.
pub fn descendants(pid: i32) -> Vec<i32> {
    let parents: Vec<(i32, i32)> = all_pids()
        .into_iter()
        .filter_map(|p| Some((p, parent_pid(p)?)))
        .collect();
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for (child, parent) in &parents {
            if *parent == p && !out.contains(child) {
                out.push(*child);
                frontier.push(*child);
            }
        }
    }
    out
}

/// SIGKILLs every process below `pid` (before `pid` itself is killed: once
/// it is gone, they are reparented out of reach).
pub fn kill_descendants(pid: i32) {
    for p in descendants(pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

impl ProcessRef {
    /// Looks up a live process by pid.
    pub fn of(pid: i32) -> Option<ProcessRef> {
        start_time(pid).map(|start_time| ProcessRef { pid, start_time })
    }

    /// True while this very process exists and has not exited.
    pub fn is_alive(&self) -> bool {
        self.pid > 0 && start_time(self.pid) == Some(self.start_time) && !is_zombie(self.pid)
    }

    /// Opens a pidfd, checking afterwards that the pid still names this
    /// process (the pidfd then pins it: it can no longer be recycled under us).
    pub fn open(&self) -> io::Result<PidFd> {
        let fd = PidFd::open(self.pid)?;
        if start_time(self.pid) != Some(self.start_time) {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        Ok(fd)
    }
}

/// A pidfd (Linux ≥ 5.3). nix has no pidfd calls, so the two system calls
/// are made here, each with its safety argument.
#[derive(Debug)]
pub struct PidFd(OwnedFd);

impl PidFd {
    pub fn open(pid: i32) -> io::Result<PidFd> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this fd to us and nobody else owns it.
        Ok(PidFd(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }))
    }

    /// Sends a signal through the pidfd (never to a recycled pid).
    pub fn signal(&self, sig: Signal) -> io::Result<()> {
        self.signal_raw(sig as i32)
    }

    /// [`PidFd::signal`] by number, for signals without a name in nix
    /// (real-time ones).
    pub fn signal_raw(&self, sig: i32) -> io::Result<()> {
        // SAFETY: pidfd_send_signal with a valid fd, a signal number, no info.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if r < 0 {
            let err = io::Error::last_os_error();
            // The process is already gone: nothing to signal.
            if err.raw_os_error() == Some(libc::ESRCH) {
                return Ok(());
            }
            return Err(err);
        }
        Ok(())
    }

    /// Resolves when the process has exited (the pidfd becomes readable).
    pub async fn exited(self) -> io::Result<()> {
        // SAFETY: the AsyncFd takes ownership of the OwnedFd, so the fd stays
        // open and the same for the AsyncFd's whole life.
        let afd = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(self.0, tokio::io::Interest::READABLE)
        }?;
        let _ready = afd.readable().await?;
        Ok(())
    }

    /// Waits up to `timeout` for the exit; true when it exited.
    pub async fn wait_timeout(self, timeout: std::time::Duration) -> io::Result<bool> {
        match tokio::time::timeout(timeout, self.exited()).await {
            Ok(r) => r.map(|_| true),
            Err(_) => Ok(false),
        }
    }
}

/// Kills a recorded process with SIGKILL and waits until it is gone.
/// A process that is already gone (or was recycled) is left alone.
pub async fn kill_and_wait(p: ProcessRef, timeout: std::time::Duration) -> io::Result<bool> {
    let fd = match p.open() {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(true),
        Err(e) => return Err(e),
    };
    fd.signal(Signal::SIGKILL)?;
    fd.wait_timeout(timeout).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_start_time_with_odd_names() {
        let stat =
            "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(parse_start_time("garbage"), None);
        assert_eq!(stat_field(stat, 4), Some("1"));
        assert_eq!(stat_field(stat, 3), Some("S"));
    }

    #[test]
    fn parent_of_a_child_is_us() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        assert_eq!(
            parent_pid(child.id() as i32),
            Some(std::process::id() as i32)
        );
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn own_process_is_alive_and_a_wrong_start_time_is_not() {
        let me = ProcessRef::of(std::process::id() as i32).expect("own /proc entry");
        assert!(me.is_alive());
        let other = ProcessRef {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!other.is_alive());
        assert!(other.open().is_err());
    }

    #[tokio::test]
    async fn pidfd_reports_exit_of_a_killed_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let p = ProcessRef::of(child.id() as i32).unwrap();
        let fd = p.open().unwrap();
        fd.signal(Signal::SIGKILL).unwrap();
        // A child becomes readable on exit even before it is reaped.
        assert!(fd
            .wait_timeout(std::time::Duration::from_secs(5))
            .await
            .unwrap());
        child.wait().unwrap();
        assert!(!p.is_alive());
    }
}
