//! The daemon's side of the per-container monitor (`peapod-monitor
//! container`): launching it, its exit file, its control socket.
//!
//! Launch protocol (the monitor's stdout, one line each):
//! `monitor <pid>` (the long-lived monitor, already detached: not our
//! child, its own session), then `ok <init pid>` when the runtime's create
//! succeeded, or `error <message>` when it failed (the monitor then exits).
//! After `ok` the monitor keeps running beside the container and writes
//! the exit file once the container's init has exited and its output is
//! drained; then it removes its socket and exits.
//!
//! Control socket: line requests, line replies (`ok` or `error <message>`),
//! several per connection: `reopen` (the CRI log, after a rename) and
//! `resize <width> <height>` (tty containers).

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::process::{PidFd, ProcessRef};

/// The monitor's default for `--log-max-line`.
pub const DEFAULT_LOG_MAX_LINE: usize = 16 * 1024;
/// The monitor's default for `--drain-timeout-ms`.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// Everything the monitor needs to create one container. Paths must be
/// absolute; socket paths must be shorter than 108 bytes (`sun_path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerMonitorArgs {
    pub id: String,
    /// The cwd of the runtime command.
    pub bundle: PathBuf,
    /// Where the runtime writes the init's pid (also in `runtime_argv`).
    pub pid_file: PathBuf,
    pub exit_file: PathBuf,
    /// The control socket the monitor creates.
    pub socket: PathBuf,
    /// The CRI log; None: output is read and discarded.
    pub log_path: Option<PathBuf>,
    pub log_max_line: usize,
    pub tty: bool,
    /// With `tty`: where the monitor listens for the runtime's terminal
    /// master (runc's `--console-socket`, also in `runtime_argv`).
    pub console_socket: Option<PathBuf>,
    pub stdin: bool,
    pub stdin_once: bool,
    /// The container cgroup's `memory.oom_control` (v1) or `memory.events` (v2).
    pub oom_file: Option<PathBuf>,
    /// The runtime's `--log` file, read for the message of a failed create.
    pub runtime_log: Option<PathBuf>,
    pub drain_timeout: Duration,
    /// The whole create command, e.g. `runc --root R --log L --log-format
    /// json create --bundle B --pid-file P ID`.
    pub runtime_argv: Vec<OsString>,
}

impl ContainerMonitorArgs {
    /// The monitor's argv after the binary (starting with the mode).
    pub fn to_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::with_capacity(32 + self.runtime_argv.len());
        let mut push = |flag: &str, value: OsString| {
            args.push(flag.into());
            args.push(value);
        };
        push("--id", self.id.clone().into());
        push("--bundle", self.bundle.clone().into());
        push("--pid-file", self.pid_file.clone().into());
        push("--exit-file", self.exit_file.clone().into());
        push("--socket", self.socket.clone().into());
        if let Some(p) = &self.log_path {
            push("--log-path", p.clone().into());
        }
        push("--log-max-line", self.log_max_line.to_string().into());
        if let Some(p) = &self.console_socket {
            push("--console-socket", p.clone().into());
        }
        if let Some(p) = &self.oom_file {
            push("--oom-file", p.clone().into());
        }
        if let Some(p) = &self.runtime_log {
            push("--runtime-log", p.clone().into());
        }
        push(
            "--drain-timeout-ms",
            self.drain_timeout.as_millis().to_string().into(),
        );
        let mut out: Vec<OsString> = vec!["container".into()];
        out.append(&mut args);
        if self.tty {
            out.push("--tty".into());
        }
        if self.stdin {
            out.push("--stdin".into());
        }
        if self.stdin_once {
            out.push("--stdin-once".into());
        }
        out.push("--".into());
        out.extend(self.runtime_argv.iter().cloned());
        out
    }
}

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

/// Spawns the monitor and returns once the runtime's create has succeeded.
/// On timeout or a protocol error it SIGKILLs the monitor (by ProcessRef)
/// if its pid was reported. On `Runtime` the monitor has exited (or was
/// killed). The caller then cleans the runtime state (`delete --force`).
pub async fn launch(
    binary: &Path,
    args: &ContainerMonitorArgs,
    timeout: Duration,
) -> Result<Launched, MonitorError> {
    let deadline = tokio::time::Instant::now() + timeout;
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
    let mut stderr = child.stderr.take().expect("stderr is piped");
    // EOF comes when the monitor exits or, after `ok`, drops its stderr.
    let stderr_task = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = (&mut stderr).take(STDERR_KEEP).read_to_end(&mut buf).await;
        // Keep reading (and discarding) so the monitor never blocks on it.
        let _ = tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await;
        String::from_utf8_lossy(&buf).trim().to_string()
    });

    let mut monitor: Option<(ProcessRef, PidFd)> = None;
    let answer = tokio::time::timeout_at(deadline, read_answer(stdout, &mut monitor)).await;
    // The first process exits right after its fork; reap it.
    let first = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;

    // The runtime's create (and the container init it made) go with the
    // monitor: killed first, or they would outlive it with nobody to
    // find them by.
    let kill_children = |monitor: &ProcessRef| crate::process::kill_descendants(monitor.pid);
    let fail = |monitor: Option<(ProcessRef, PidFd)>, err: MonitorError| async move {
        if let Some((p, fd)) = monitor {
            kill_children(&p);
            let _ = fd.signal(nix::sys::signal::Signal::SIGKILL);
            let _ = fd.wait_timeout(Duration::from_secs(5)).await;
        }
        Err(err)
    };
    match answer {
        Err(_) => fail(monitor, MonitorError::Timeout(timeout)).await,
        Ok(Err(Answer::Io(e))) => {
            fail(
                monitor,
                MonitorError::Io("read the monitor's answer".into(), e),
            )
            .await
        }
        Ok(Err(Answer::Runtime(msg))) => {
            // The monitor exits right after its error line; wait for that
            // so that nothing of this container is left when we return.
            if let Some((p, fd)) = monitor {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
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
            Err(MonitorError::Runtime(msg))
        }
        Ok(Err(Answer::Protocol(msg))) => {
            let stderr = tokio::time::timeout(Duration::from_secs(2), stderr_task)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            // The first process exits 0 after its fork; anything else
            // (2: a usage error) says why there was no answer.
            let status = match first {
                Ok(Ok(status)) if !status.success() => format!(" (monitor {status})"),
                _ => String::new(),
            };
            let detail = if stderr.is_empty() {
                String::new()
            } else {
                format!(": {stderr}")
            };
            fail(
                monitor,
                MonitorError::Protocol(format!("{msg}{status}{detail}")),
            )
            .await
        }
        Ok(Ok(init_pid)) => {
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
    }
}

enum Answer {
    Runtime(String),
    Protocol(String),
    Io(io::Error),
}

fn parse_pid(line: &str, value: &str) -> Result<i32, Answer> {
    value
        .trim()
        .parse::<i32>()
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| Answer::Protocol(format!("bad pid in {line:?}")))
}

/// Reads the monitor's lines up to `ok` or `error`; records the monitor
/// (pinned by a pidfd) as soon as it is announced.
async fn read_answer(
    stdout: tokio::process::ChildStdout,
    monitor: &mut Option<(ProcessRef, PidFd)>,
) -> Result<i32, Answer> {
    let mut lines = BufReader::new(stdout).lines();
    loop {
        let line = match lines.next_line().await.map_err(Answer::Io)? {
            Some(line) => line,
            None => {
                return Err(Answer::Protocol(
                    "the monitor exited without an answer".into(),
                ))
            }
        };
        if let Some(pid) = line.strip_prefix("monitor ") {
            let pid = parse_pid(&line, pid)?;
            // Gone already: its error line (or EOF) follows.
            if let Some(p) = ProcessRef::of(pid) {
                if let Ok(fd) = p.open() {
                    *monitor = Some((p, fd));
                }
            }
        } else if let Some(pid) = line.strip_prefix("ok ") {
            return parse_pid(&line, pid);
        } else if let Some(msg) = line.strip_prefix("error ") {
            return Err(Answer::Runtime(msg.to_string()));
        } else {
            return Err(Answer::Protocol(format!("unexpected line {line:?}")));
        }
    }
}

/// How a container's init ended, as its monitor recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// The exit code, or 128 + the signal that killed it.
    pub exit_code: i32,
    /// The signal that killed it; 0 when it exited by itself.
    pub signal: i32,
    /// Killed by SIGKILL while its cgroup counted an OOM kill.
    pub oom_killed: bool,
    /// When the monitor reaped it, in ns since the epoch.
    pub finished_at: i64,
}

/// Parses an exit file: `key=value` lines; unknown keys are ignored.
pub fn parse_exit_file(text: &str) -> Result<ExitStatus, String> {
    let mut exit_code = None;
    let mut signal = None;
    let mut oom_killed = None;
    let mut finished_at = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("line {line:?} is not key=value"))?;
        let bad = || format!("{key}: bad value {value:?}");
        match key {
            "exit_code" => exit_code = Some(value.parse::<i32>().map_err(|_| bad())?),
            "signal" => {
                signal = Some(
                    value
                        .parse::<i32>()
                        .ok()
                        .filter(|s| (0..=64).contains(s))
                        .ok_or_else(bad)?,
                )
            }
            "oom_killed" => {
                oom_killed = Some(match value {
                    "0" => false,
                    "1" => true,
                    _ => return Err(bad()),
                })
            }
            "finished_at" => finished_at = Some(value.parse::<i64>().map_err(|_| bad())?),
            _ => {}
        }
    }
    let missing = |key: &str| format!("no {key}");
    Ok(ExitStatus {
        exit_code: exit_code.ok_or_else(|| missing("exit_code"))?,
        signal: signal.ok_or_else(|| missing("signal"))?,
        oom_killed: oom_killed.ok_or_else(|| missing("oom_killed"))?,
        finished_at: finished_at.ok_or_else(|| missing("finished_at"))?,
    })
}

/// Reads an exit file; `Ok(None)` when it does not exist (yet).
pub fn read_exit_file(path: &Path) -> io::Result<Option<ExitStatus>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    parse_exit_file(&text).map(Some).map_err(|msg| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {msg}", path.display()),
        )
    })
}

/// Asks the monitor to reopen the CRI log (after the caller renamed it).
/// Returns once the monitor writes to the new file.
pub async fn reopen_log(socket: &Path, timeout: Duration) -> Result<(), MonitorError> {
    request(socket, "reopen\n", timeout).await
}

/// Sets the terminal size of a tty container.
pub async fn resize(
    socket: &Path,
    width: u32,
    height: u32,
    timeout: Duration,
) -> Result<(), MonitorError> {
    let (Ok(w), Ok(h)) = (u16::try_from(width), u16::try_from(height)) else {
        return Err(MonitorError::Refused(format!(
            "terminal size {width}x{height} out of range"
        )));
    };
    request(socket, &format!("resize {w} {h}\n"), timeout).await
}

async fn request(socket: &Path, line: &str, timeout: Duration) -> Result<(), MonitorError> {
    let exchange = async {
        let io_err = |what: &str| {
            let what = format!("{what} {}", socket.display());
            move |e| MonitorError::Io(what, e)
        };
        let mut stream = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(io_err("connect to"))?;
        stream
            .write_all(line.as_bytes())
            .await
            .map_err(io_err("write to"))?;
        let mut reply = String::new();
        BufReader::new(stream)
            .read_line(&mut reply)
            .await
            .map_err(io_err("read from"))?;
        let reply = reply.trim_end_matches(['\n', '\r']);
        if reply == "ok" {
            Ok(())
        } else if let Some(msg) = reply.strip_prefix("error ") {
            Err(MonitorError::Refused(msg.to_string()))
        } else if reply.is_empty() {
            Err(MonitorError::Protocol(
                "the monitor closed the connection without a reply".into(),
            ))
        } else {
            Err(MonitorError::Protocol(format!(
                "unexpected reply {reply:?}"
            )))
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| MonitorError::Timeout(timeout))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ContainerMonitorArgs {
        ContainerMonitorArgs {
            id: "c1".into(),
            bundle: "/b".into(),
            pid_file: "/s/pid".into(),
            exit_file: "/s/exit".into(),
            socket: "/s/sock".into(),
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

    fn strings(v: Vec<OsString>) -> Vec<String> {
        v.into_iter().map(|s| s.into_string().unwrap()).collect()
    }

    #[test]
    fn minimal_argv() {
        assert_eq!(
            strings(args().to_args()),
            [
                "container",
                "--id",
                "c1",
                "--bundle",
                "/b",
                "--pid-file",
                "/s/pid",
                "--exit-file",
                "/s/exit",
                "--socket",
                "/s/sock",
                "--log-max-line",
                "16384",
                "--drain-timeout-ms",
                "1000",
                "--",
                "runc",
                "create",
                "c1"
            ]
        );
    }

    #[test]
    fn full_argv() {
        let a = ContainerMonitorArgs {
            log_path: Some("/l/0.log".into()),
            tty: true,
            console_socket: Some("/s/console".into()),
            stdin: true,
            stdin_once: true,
            oom_file: Some("/cg/memory.oom_control".into()),
            runtime_log: Some("/s/runc.log".into()),
            drain_timeout: Duration::from_millis(250),
            ..args()
        };
        let v = strings(a.to_args());
        let pos = |s: &str| {
            v.iter()
                .position(|x| x == s)
                .unwrap_or_else(|| panic!("{s}"))
        };
        assert_eq!(v[pos("--log-path") + 1], "/l/0.log");
        assert_eq!(v[pos("--console-socket") + 1], "/s/console");
        assert_eq!(v[pos("--oom-file") + 1], "/cg/memory.oom_control");
        assert_eq!(v[pos("--runtime-log") + 1], "/s/runc.log");
        assert_eq!(v[pos("--drain-timeout-ms") + 1], "250");
        for flag in ["--tty", "--stdin", "--stdin-once"] {
            assert!(pos(flag) < pos("--"));
        }
        assert_eq!(&v[pos("--") + 1..], ["runc", "create", "c1"]);
    }

    #[test]
    fn exit_file_parses() {
        let s = parse_exit_file(
            "exit_code=137\nsignal=9\noom_killed=1\nfinished_at=1795343901812437500\nfuture=x\n",
        )
        .unwrap();
        assert_eq!(
            s,
            ExitStatus {
                exit_code: 137,
                signal: 9,
                oom_killed: true,
                finished_at: 1_795_343_901_812_437_500
            }
        );
        assert!(parse_exit_file("exit_code=0\nsignal=0\noom_killed=0\n")
            .unwrap_err()
            .contains("no finished_at"));
        assert!(
            parse_exit_file("exit_code=x\nsignal=0\noom_killed=0\nfinished_at=1")
                .unwrap_err()
                .contains("exit_code")
        );
        assert!(
            parse_exit_file("exit_code=0\nsignal=0\noom_killed=2\nfinished_at=1")
                .unwrap_err()
                .contains("oom_killed")
        );
        assert!(parse_exit_file("garbage").is_err());
    }

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

    #[tokio::test]
    async fn control_request_replies() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("sock");
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        let server = tokio::spawn(async move {
            for reply in ["ok\n", "error not a terminal\n", "garbage\n", ""] {
                let (stream, _) = listener.accept().await.unwrap();
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                reader.read_line(&mut line).await.unwrap();
                reader.get_mut().write_all(reply.as_bytes()).await.unwrap();
            }
        });
        let t = Duration::from_secs(5);
        reopen_log(&sock, t).await.unwrap();
        assert!(
            matches!(resize(&sock, 80, 24, t).await, Err(MonitorError::Refused(m)) if m == "not a terminal")
        );
        assert!(matches!(
            reopen_log(&sock, t).await,
            Err(MonitorError::Protocol(_))
        ));
        assert!(matches!(
            reopen_log(&sock, t).await,
            Err(MonitorError::Protocol(_))
        ));
        server.await.unwrap();
        assert!(matches!(
            resize(&sock, 70_000, 24, t).await,
            Err(MonitorError::Refused(_))
        ));
        assert!(matches!(
            reopen_log(&dir.path().join("none"), t).await,
            Err(MonitorError::Io(..))
        ));
    }
}
