//! The daemon's side of the container monitor (`peapod-monitor
//! container`): launching it, its exit file, its control socket. The
//! protocol itself is defined once, for both sides, in the
//! `peapod-monitor-protocol` crate ([`peapod_monitor_protocol`]).
//!
//! Launch: the daemon writes the container's [`ContainerConfig`] as JSON
//! to `monitor.json` in the container's state directory and runs
//! `peapod-monitor container --id ID --config PATH`. The monitor's stdout,
//! one line each: `monitor <pid>` (the long-lived monitor, already
//! detached: not our child, its own session), then `ok <init pid>` when
//! the runtime's create succeeded, or `error <message>` when it failed
//! (the monitor then exits). After `ok` the monitor keeps running beside
//! the container and writes the exit file (`key=value` lines,
//! [`ExitStatus`]) once the container's init has exited and its output is
//! drained; then it removes its socket and exits.
//!
//! Control socket: line requests, line replies (`ok` or `error
//! <message>`), several per connection: `reopen` (the CRI log, after a
//! rename) and `resize <width> <height>` (tty containers). `attach` (or
//! `attach stdin`) turns the connection into an attach session: after
//! `ok` it carries frames ([`Frame`]): the container's output and an end
//! frame from the monitor; stdin data, stdin close and resizes to it.

mod attach;
mod control;

use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use peapod_monitor_protocol::{Answer, ContainerArgs};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::time::Instant;

use crate::process::{PidFd, ProcessRef};

pub use attach::{attach, AttachInput, AttachOutput, AttachSession};
pub use control::{reopen_log, resize};
pub use peapod_monitor_protocol::container::is_container_monitor;
pub use peapod_monitor_protocol::{
    ContainerConfig, ExitStatus, Frame, DEFAULT_DRAIN_TIMEOUT, DEFAULT_LOG_MAX_LINE,
};

/// A container whose create succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launched {
    /// The monitor: the init's parent, not the daemon's child.
    pub monitor: ProcessRef,
    /// The container's init. Its `start_time` is 0 when it was already
    /// gone when the monitor answered (killed before start): its exit
    /// file follows.
    pub init: ProcessRef,
}

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("cannot run {path}: {source}")]
    Spawn {
        path: String,
        #[source]
        source: io::Error,
    },
    /// The runtime refused: its message.
    #[error("{0}")]
    Runtime(String),
    #[error("container monitor protocol: {0}")]
    Protocol(String),
    #[error("container monitor did not answer within {0:?}")]
    Timeout(Duration),
    /// The monitor answered a control request with `error <message>`.
    #[error("container monitor refused: {0}")]
    Refused(String),
    #[error("{0}: {1}")]
    Io(String, #[source] io::Error),
}

/// How much of the monitor's stderr is kept for error messages.
const STDERR_KEEP: u64 = 4096;

/// A monitor announced by its `monitor <pid>` line, pinned by a pidfd.
type Announced = Option<(ProcessRef, PidFd)>;

/// Spawns the monitor and returns once the runtime's create has succeeded.
/// On timeout or a protocol error it SIGKILLs the monitor (by ProcessRef)
/// if its pid was reported. On `Runtime` the monitor has exited (or was
/// killed). The caller then cleans the runtime state (`delete --force`).
pub async fn launch(
    binary: &Path,
    config: &ContainerConfig,
    timeout: Duration,
) -> Result<Launched, MonitorError> {
    let deadline = Instant::now() + timeout;
    let args = ContainerArgs {
        id: config.id.clone(),
        config: write_config(config)?,
    };
    let mut child = tokio::process::Command::new(binary)
        .args(args.to_args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| MonitorError::Spawn {
            path: binary.display().to_string(),
            source,
        })?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = keep_stderr(child.stderr.take().expect("stderr is piped"));

    let mut monitor: Announced = None;
    let answer = tokio::time::timeout_at(deadline, read_answer(stdout, &mut monitor)).await;
    // The first process exits right after its fork; reap it.
    let first = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
    let outcome = match answer {
        Err(_) => Outcome::Timeout,
        Ok(outcome) => outcome,
    };
    match outcome {
        Outcome::Started(init_pid) => started(monitor, init_pid),
        Outcome::Runtime(msg) => {
            wait_for_exit(monitor, deadline).await;
            Err(MonitorError::Runtime(msg))
        }
        Outcome::Timeout => fail(monitor, MonitorError::Timeout(timeout)).await,
        Outcome::Io(e) => {
            let err = MonitorError::Io("read the monitor's answer".into(), e);
            fail(monitor, err).await
        }
        Outcome::Protocol(msg) => {
            let msg = protocol_detail(msg, first, stderr).await;
            fail(monitor, MonitorError::Protocol(msg)).await
        }
    }
}

/// Writes the config where the monitor is told to find it.
fn write_config(config: &ContainerConfig) -> Result<PathBuf, MonitorError> {
    let path = config.file_path();
    let json = config
        .to_json()
        .map_err(|e| MonitorError::Protocol(format!("encode the monitor's config: {e}")))?;
    crate::host::fs::write_volatile(&path, &json, 0o600)
        .map_err(|e| MonitorError::Io(format!("write {}", path.display()), e))?;
    Ok(path)
}

/// Collects the start of the monitor's stderr, for error messages. EOF
/// comes when the monitor exits or, after `ok`, drops its stderr.
fn keep_stderr(mut stderr: tokio::process::ChildStderr) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = (&mut stderr).take(STDERR_KEEP).read_to_end(&mut buf).await;
        // Keep reading (and discarding) so the monitor never blocks on it.
        let _ = tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await;
        String::from_utf8_lossy(&buf).trim().to_string()
    })
}

fn started(monitor: Announced, init_pid: i32) -> Result<Launched, MonitorError> {
    let Some((monitor, _fd)) = monitor else {
        return Err(MonitorError::Protocol(format!(
            "ok {init_pid} without a `monitor <pid>` line first"
        )));
    };
    let init = ProcessRef::of(init_pid).unwrap_or(ProcessRef {
        pid: init_pid,
        start_time: 0,
    });
    Ok(Launched { monitor, init })
}

/// The runtime's create (and the container init it made) go with the
/// monitor: killed first, or they would outlive it with nobody to find
/// them by.
fn kill_children(monitor: &ProcessRef) {
    crate::process::kill_descendants(monitor.pid);
}

/// Kills an announced monitor and everything under it.
async fn fail(monitor: Announced, err: MonitorError) -> Result<Launched, MonitorError> {
    if let Some((p, fd)) = monitor {
        kill_children(&p);
        let _ = fd.signal(nix::sys::signal::Signal::SIGKILL);
        let _ = fd.wait_timeout(Duration::from_secs(5)).await;
    }
    Err(err)
}

/// The monitor exits right after its error line; waits for that so that
/// nothing of this container is left when we return.
async fn wait_for_exit(monitor: Announced, deadline: Instant) {
    let Some((p, fd)) = monitor else { return };
    let left = deadline.saturating_duration_since(Instant::now());
    if !matches!(
        fd.wait_timeout(left.max(Duration::from_secs(1))).await,
        Ok(true)
    ) {
        kill_children(&p);
        if let Ok(fd) = p.open() {
            let _ = fd.signal(nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// A protocol error with what the monitor's exit status and stderr add.
async fn protocol_detail(
    msg: String,
    first: Result<io::Result<std::process::ExitStatus>, tokio::time::error::Elapsed>,
    stderr: tokio::task::JoinHandle<String>,
) -> String {
    let stderr = tokio::time::timeout(Duration::from_secs(2), stderr)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    // The first process exits 0 after its fork; anything else (2: a usage
    // error) says why there was no answer.
    let status = match first {
        Ok(Ok(status)) if !status.success() => format!(" (monitor {status})"),
        _ => String::new(),
    };
    let detail = if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    };
    format!("{msg}{status}{detail}")
}

/// How the monitor's answer ended.
enum Outcome {
    /// `ok <init pid>`.
    Started(i32),
    /// `error <message>`: the runtime's (or a setup step's) message.
    Runtime(String),
    Protocol(String),
    Io(io::Error),
    Timeout,
}

/// Reads the monitor's lines up to `ok` or `error`; records the monitor
/// (pinned by a pidfd) as soon as it is announced.
async fn read_answer(stdout: tokio::process::ChildStdout, monitor: &mut Announced) -> Outcome {
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let line = match lines.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => return Outcome::Protocol("the monitor exited without an answer".into()),
            Err(e) => return Outcome::Io(e),
        };
        match Answer::parse(&line) {
            Ok(Answer::Monitor(pid)) => {
                // Gone already: its error line (or EOF) follows.
                if let Some(p) = ProcessRef::of(pid) {
                    if let Ok(fd) = p.open() {
                        *monitor = Some((p, fd));
                    }
                }
            }
            Ok(Answer::Ok(pid)) => return Outcome::Started(pid),
            Ok(Answer::Error(msg)) => return Outcome::Runtime(msg),
            Err(msg) => return Outcome::Protocol(msg),
        }
    }
}

/// Reads an exit file; `Ok(None)` when it does not exist (yet).
pub fn read_exit_file(path: &Path) -> io::Result<Option<ExitStatus>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    ExitStatus::parse(&text).map(Some).map_err(|msg| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {msg}", path.display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_file_absent_or_present() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exit");
        assert_eq!(read_exit_file(&path).unwrap(), None);
        std::fs::write(
            &path,
            "exit_code=3\nsignal=0\noom_killed=0\nfinished_at=5\n",
        )
        .unwrap();
        assert_eq!(read_exit_file(&path).unwrap().unwrap().exit_code, 3);
        std::fs::write(&path, "exit_code=3\n").unwrap();
        let err = read_exit_file(&path).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    fn config(dir: &Path) -> ContainerConfig {
        ContainerConfig {
            id: "c1".into(),
            bundle: dir.into(),
            pid_file: dir.join("pid"),
            exit_file: dir.join("exit"),
            socket: dir.join("sock"),
            log_path: None,
            log_max_line: DEFAULT_LOG_MAX_LINE,
            tty: false,
            console_socket: None,
            stdin: false,
            stdin_once: false,
            oom_file: None,
            runtime_log: None,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            runtime_argv: vec!["runc".into(), "create".into(), "c1".into()],
        }
    }

    #[test]
    fn config_is_written_for_the_monitor() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path());
        let path = write_config(&c).unwrap();
        assert_eq!(path, dir.path().join("monitor.json"));
        assert_eq!(
            ContainerConfig::from_json(&std::fs::read(&path).unwrap()),
            Ok(c)
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
