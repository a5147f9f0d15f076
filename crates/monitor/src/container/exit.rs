//! How the container's init ended, and the exit file that says so.

use std::path::{Path, PathBuf};

use peapod_monitor_protocol::ExitStatus;

use super::Monitor;
use crate::sys;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Exit {
    /// The exit code, or 128 + the signal.
    pub code: i32,
    /// The signal that killed it, 0 when it exited.
    pub signal: i32,
    /// When it was reaped, in ns since the epoch.
    pub finished_at: i64,
}

impl Exit {
    pub fn from_wait_status(status: libc::c_int, finished_at: i64) -> Exit {
        if libc::WIFSIGNALED(status) {
            let signal = libc::WTERMSIG(status);
            Exit {
                code: 128 + signal,
                signal,
                finished_at,
            }
        } else {
            Exit {
                code: libc::WEXITSTATUS(status),
                signal: 0,
                finished_at,
            }
        }
    }

    pub fn describe(&self) -> String {
        if self.signal != 0 {
            format!("killed by signal {}", self.signal)
        } else {
            format!("exit status {}", self.code)
        }
    }

    fn status(&self, oom_killed: bool) -> ExitStatus {
        ExitStatus {
            exit_code: self.code,
            signal: self.signal,
            oom_killed,
            finished_at: self.finished_at,
        }
    }
}

/// The `oom_kill N` counter of a `memory.oom_control` (v1) or
/// `memory.events` (v2) file.
fn parse_oom_kills(text: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == "oom_kill").then(|| value.trim().parse().ok())?
    })
}

/// Writes `text` to `<path>.tmp` and renames it over `path`.
fn write_atomically(path: &Path, text: &str) -> Result<(), String> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text).map_err(|e| format!("write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("rename {} to {}: {e}", tmp.display(), path.display())
    })
}

impl Monitor {
    /// After the main loop: logs what is left, removes the socket, writes
    /// the exit file, ends the attach sessions. Returns the exit code of
    /// the monitor.
    pub(super) fn finish(mut self) -> i32 {
        self.log_the_rest();
        // The control socket goes whatever happens below.
        sys::unlink(&self.config.socket);
        let code = self.write_exit_file();
        self.end_sessions();
        code
    }

    fn write_exit_file(&self) -> i32 {
        let Some(exit) = self.exit else {
            return 1;
        };
        // Killed by SIGKILL while the cgroup counted an OOM kill.
        let oom_kills = self
            .config
            .oom_file
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| parse_oom_kills(&t))
            .unwrap_or(0);
        let oom_killed = oom_kills > 0 && exit.signal == libc::SIGKILL;
        match write_atomically(&self.config.exit_file, &exit.status(oom_killed).encode()) {
            Ok(()) => 0,
            Err(_) => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses() {
        // Encoded as the kernel reports them to waitpid.
        let exited = |code: i32| code << 8;
        let signaled = |sig: i32| sig;
        assert_eq!(
            Exit::from_wait_status(exited(3), 7),
            Exit {
                code: 3,
                signal: 0,
                finished_at: 7
            }
        );
        assert_eq!(Exit::from_wait_status(exited(0), 7).code, 0);
        let killed = Exit::from_wait_status(signaled(9), 7);
        assert_eq!((killed.code, killed.signal), (137, 9));
        let rt = Exit::from_wait_status(signaled(libc::SIGRTMIN() + 3), 7);
        assert_eq!(rt.code, 128 + libc::SIGRTMIN() + 3);
        assert_eq!(killed.describe(), "killed by signal 9");
    }

    #[test]
    fn exit_file_text() {
        let exit = Exit {
            code: 137,
            signal: 9,
            finished_at: 1_795_343_901_812_437_500,
        };
        let text = exit.status(true).encode();
        assert_eq!(
            text,
            "exit_code=137\nsignal=9\noom_killed=1\nfinished_at=1795343901812437500\n"
        );
        assert_eq!(ExitStatus::parse(&text), Ok(exit.status(true)));
    }

    #[test]
    fn exit_file_is_replaced_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exit");
        write_atomically(&path, "a=1\n").unwrap();
        write_atomically(&path, "b=2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "b=2\n");
        assert!(!dir.path().join("exit.tmp").exists());
        let missing = dir.path().join("no/such/dir/exit");
        assert!(write_atomically(&missing, "x").is_err());
    }

    #[test]
    fn oom_counters() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        assert_eq!(parse_oom_kills(v1), Some(2));
        let v2 = "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(parse_oom_kills(v2), Some(1));
        assert_eq!(parse_oom_kills("oom_kill_disable 0\n"), None);
    }
}
