//! The instant a process exits, seen through its pidfd.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// A pidfd for `pid` (not our child): it turns readable when the process
/// has exited.
fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(std::io::Error::other)?;
    // SAFETY: the kernel just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// When a process exits: a thread of its own blocks in poll(2) on the
/// process's pidfd and notes the instant it wakes, so the time does not
/// depend on what the bench's event loop is busy with.
pub struct ExitWatch {
    rx: tokio::sync::oneshot::Receiver<Option<Instant>>,
}

impl ExitWatch {
    /// Longest wait; a process that has not exited by then gives None.
    const LIMIT: Duration = Duration::from_secs(30);

    pub fn start(pid: i32) -> std::io::Result<ExitWatch> {
        let fd = pidfd_open(pid)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(format!("exit-{pid}"))
            .spawn(move || {
                let deadline = Instant::now() + Self::LIMIT;
                let exited = loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let mut p = libc::pollfd {
                        fd: fd.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
                    // SAFETY: one valid pollfd, owned by this thread.
                    let n = unsafe { libc::poll(&mut p, 1, ms) };
                    let now = Instant::now();
                    if n > 0 {
                        break Some(now);
                    }
                    let interrupted = n < 0
                        && std::io::Error::last_os_error().kind()
                            == std::io::ErrorKind::Interrupted;
                    if !interrupted || left.is_zero() {
                        break None;
                    }
                };
                let _ = tx.send(exited);
            })?;
        Ok(ExitWatch { rx })
    }

    /// The instant of the exit, or None when it did not come in time.
    pub async fn exited(self) -> Option<Instant> {
        tokio::time::timeout(Self::LIMIT + Duration::from_secs(1), self.rx)
            .await
            .ok()?
            .ok()?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_watch_sees_a_process_exit() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut child = std::process::Command::new("sleep")
                .arg("0.2")
                .spawn()
                .unwrap();
            let pid = i32::try_from(child.id()).unwrap();
            let start = Instant::now();
            let watch = ExitWatch::start(pid).unwrap();
            let exited = watch.exited().await.expect("exit seen");
            assert!(exited.duration_since(start) >= Duration::from_millis(150));
            child.wait().unwrap();
        });
    }
}
