//! The runtime's create command: started as the monitor's child, watched
//! until it exits, and its words when it fails.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
use nix::unistd::ForkResult;
use peapod_monitor_protocol::ContainerConfig;

use super::exit::Exit;
use super::Monitor;
use crate::sys;

/// Bytes of the runtime's stderr kept for the error message.
const STDERR_TAIL: usize = 4096;
/// Bytes read from the end of the runtime's log for the error message.
const RUNTIME_LOG_TAIL: u64 = 64 * 1024;
/// Exit code of the forked runtime child when exec fails (as a shell's).
const EXIT_EXEC_FAILED: i32 = 127;

/// What only exists while the runtime's create runs.
pub(super) struct Creating {
    pub pid: i32,
    pub exit: Option<Exit>,
    pub console_listener: Option<OwnedFd>,
    pub console_conn: Option<OwnedFd>,
    /// tty mode: the runtime's own stdout and stderr.
    pub runtime_out: Option<OwnedFd>,
    /// The last bytes the runtime wrote on stderr.
    pub stderr_tail: Vec<u8>,
}

impl Creating {
    pub fn new(
        pid: i32,
        console_listener: Option<OwnedFd>,
        runtime_out: Option<OwnedFd>,
    ) -> Creating {
        Creating {
            pid,
            exit: None,
            console_listener,
            console_conn: None,
            runtime_out,
            stderr_tail: Vec::new(),
        }
    }
}

/// Keeps the last STDERR_TAIL bytes.
pub(super) fn push_tail(tail: &mut Vec<u8>, data: &[u8]) {
    let data = &data[data.len().saturating_sub(STDERR_TAIL)..];
    let excess = (tail.len() + data.len()).saturating_sub(STDERR_TAIL);
    tail.drain(..excess);
    tail.extend_from_slice(data);
}

/// The text of a file from `offset` on (at most its last 64 KiB).
fn read_from(path: &Path, offset: u64) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let start = offset.max(len.saturating_sub(RUNTIME_LOG_TAIL)).min(len);
    file.seek(SeekFrom::Start(start)).ok()?;
    let mut bytes = Vec::new();
    file.take(RUNTIME_LOG_TAIL).read_to_end(&mut bytes).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// The runtime's command, prepared before the fork.
struct Command {
    argv: Vec<CString>,
    bundle: CString,
}

impl Command {
    fn new(config: &ContainerConfig) -> Result<Command, Errno> {
        let cstring = |bytes: &[u8]| CString::new(bytes).map_err(|_| Errno::EINVAL);
        let argv = config
            .runtime_argv
            .iter()
            .map(|a| cstring(a.as_bytes()))
            .collect::<Result<_, _>>()?;
        let bundle = cstring(config.bundle.as_os_str().as_bytes())?;
        Ok(Command { argv, bundle })
    }
}

/// Forks the runtime with `stdio` as its 0, 1 and 2 and the bundle as its
/// cwd; returns its pid.
pub(super) fn spawn(config: &ContainerConfig, stdio: &[OwnedFd; 3]) -> Result<i32, Errno> {
    let command = Command::new(config)?;
    // SAFETY: single-threaded, so the child may run ordinary code.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Parent { child } => Ok(child.as_raw()),
        ForkResult::Child => exec_runtime(&command, stdio),
    }
}

/// Reports a failed step of the forked child on its stderr and exits.
fn child_fail(step: &[u8], errno: Errno) -> ! {
    let mut msg = Vec::with_capacity(128);
    msg.extend_from_slice(step);
    msg.extend_from_slice(b": ");
    msg.extend_from_slice(errno.desc().as_bytes());
    msg.push(b'\n');
    let _ = sys::write_all(std::io::stderr().as_fd(), &msg);
    // SAFETY: leave without running the parent's exit handlers.
    unsafe { libc::_exit(EXIT_EXEC_FAILED) }
}

/// The forked child: the runtime starts as from a shell, with default
/// signal handling and nothing of the monitor's open.
fn exec_runtime(command: &Command, stdio: &[OwnedFd; 3]) -> ! {
    // All three are ≥ 3 (0-2 were open when they were made), so no dup2
    // below overwrites a source still to be copied.
    let [stdin, stdout, stderr] = stdio;
    let redirected = nix::unistd::dup2_stdin(stdin)
        .and_then(|()| nix::unistd::dup2_stdout(stdout))
        .and_then(|()| nix::unistd::dup2_stderr(stderr));
    if let Err(e) = redirected {
        child_fail(b"dup2 runtime stdio", e);
    }
    sys::close_fds(3, u32::MAX);
    sys::reset_signal_dispositions();
    if let Err(e) = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None) {
        child_fail(b"clear signal mask", e);
    }
    if let Err(e) = nix::unistd::chdir(command.bundle.as_c_str()) {
        let mut step = b"chdir ".to_vec();
        step.extend_from_slice(command.bundle.as_bytes());
        child_fail(&step, e);
    }
    let err = nix::unistd::execvp(&command.argv[0], &command.argv).unwrap_err();
    let mut step = b"exec ".to_vec();
    step.extend_from_slice(command.argv[0].as_bytes());
    child_fail(&step, err)
}

impl Monitor {
    /// The error line for a failed create: the runtime's last logged
    /// error, else what it wrote on stderr, else how it ended.
    pub(super) fn create_error(&self, c: &Creating, exit: &Exit, log_start: u64) -> String {
        if let Some(path) = &self.config.runtime_log {
            if let Some(msg) = read_from(path, log_start)
                .as_deref()
                .and_then(crate::runtime_log::last_error)
            {
                if !msg.trim().is_empty() {
                    return msg;
                }
            }
        }
        let stderr = String::from_utf8_lossy(&c.stderr_tail);
        let stderr = stderr.trim();
        if !stderr.is_empty() {
            return stderr.to_string();
        }
        let argv0 = self.config.runtime_argv[0].to_string_lossy();
        format!("{argv0} create failed: {}", exit.describe())
    }

    /// Reads whatever the runtime's stderr still holds, without waiting.
    pub(super) fn drain_runtime_stderr(&mut self, c: &mut Creating) {
        let Monitor {
            outputs, read_buf, ..
        } = self;
        // tty mode: the runtime's own pipe; else the container's stderr,
        // which the runtime shares until it execs the init.
        let fd = match &c.runtime_out {
            Some(fd) => fd,
            None => match outputs.get(1).and_then(|o| o.fd.as_ref()) {
                Some(fd) => fd,
                None => return,
            },
        };
        for _ in 0..64 {
            match sys::read_into(fd, read_buf) {
                Ok(data) if !data.is_empty() => push_tail(&mut c.stderr_tail, data),
                _ => return,
            }
        }
    }

    /// Reads what the runtime wrote on its own stdout and stderr (tty
    /// mode), keeping the end for the error message.
    pub(super) fn read_runtime_out(&mut self, c: &mut Creating) {
        let Some(fd) = &c.runtime_out else { return };
        match sys::read_into(fd, &mut self.read_buf) {
            Ok(data) if !data.is_empty() => push_tail(&mut c.stderr_tail, data),
            Err(Errno::EAGAIN) => {}
            _ => c.runtime_out = None,
        }
    }

    /// Accepts runc's connection on the console socket and receives the
    /// master, as far as that is possible without waiting.
    pub(super) fn service_console(&mut self, c: &mut Creating) {
        if self.pty.is_some() {
            return;
        }
        if c.console_conn.is_none() {
            if let Some(listener) = &c.console_listener {
                if let Ok(Some(conn)) = sys::accept(listener) {
                    c.console_conn = Some(conn);
                }
            }
        }
        if let Some(conn) = &c.console_conn {
            match sys::recv_fd(conn) {
                Ok(Some(fd)) => {
                    self.pty = Some(fd);
                    c.console_conn = None;
                }
                Ok(None) => {}
                // The runtime hung up without a descriptor: wait for
                // another connection.
                Err(_) => c.console_conn = None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_tail_keeps_the_end() {
        let mut tail = Vec::new();
        push_tail(&mut tail, &[b'a'; STDERR_TAIL]);
        push_tail(&mut tail, b"bc");
        assert_eq!(tail.len(), STDERR_TAIL);
        assert!(tail.ends_with(b"abc"));
        push_tail(&mut tail, &vec![b'z'; STDERR_TAIL * 2]);
        assert_eq!(tail, vec![b'z'; STDERR_TAIL]);
    }
}
