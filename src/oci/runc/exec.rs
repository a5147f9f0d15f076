//! `exec`: a process run inside a running container through the runtime's
//! detached `exec` under `peapod-monitor exec`, with its output collected
//! and a deadline that covers the process and the reading of its output.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use peapod_monitor_protocol::exec::{ExecArgs, EXIT_RUNTIME};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Child;
use tokio::task::JoinHandle;
use tracing::warn;

use super::{CliRuntime, ContainerHandle, ExecOutput, ExecStdio, OciError};
use crate::host::fs::write_volatile;
use crate::oci::last_error_in_log;
use crate::oci::{drain_output, DRAIN_AFTER_EXIT};

/// Output kept per stream; the rest is read and dropped, so a chatty
/// command never blocks on a full pipe. kubelet keeps far less of a probe.
pub const OUTPUT_LIMIT: usize = 4 * 1024 * 1024;

/// ExecSync's stdio: output collected, no input.
const COLLECTED: ExecStdio = ExecStdio {
    stdin: false,
    stdout: true,
    stderr: true,
    tty: false,
};

/// The files of one exec, removed when it ends: in the bundle, and the
/// console socket of a terminal beside the monitor's socket (a unix
/// socket path must stay short).
pub(super) struct ExecFiles {
    pub(super) process: PathBuf,
    pub(super) pid: PathBuf,
    pub(super) log: PathBuf,
    pub(super) console: PathBuf,
}

impl ExecFiles {
    pub(super) fn new(c: &ContainerHandle) -> ExecFiles {
        let tag = &crate::ids::new_id()[..16];
        ExecFiles {
            process: c.bundle.join(format!("exec-{tag}.json")),
            pid: c.bundle.join(format!("exec-{tag}.pid")),
            log: c.bundle.join(format!("exec-{tag}.log")),
            console: c.socket.with_file_name(format!("exec-{tag}.console")),
        }
    }
}

impl Drop for ExecFiles {
    fn drop(&mut self) {
        for f in [&self.process, &self.pid, &self.log, &self.console] {
            let _ = std::fs::remove_file(f);
        }
    }
}

type Buffer = Arc<Mutex<Vec<u8>>>;

/// The readers of the command's stdout and stderr.
struct Output {
    stdout: Buffer,
    stderr: Buffer,
    readers: Vec<JoinHandle<()>>,
}

impl Output {
    fn collect(child: &mut Child) -> Output {
        let (stdout, stderr) = (Buffer::default(), Buffer::default());
        let mut readers = Vec::new();
        if let Some(s) = child.stdout.take() {
            readers.push(tokio::spawn(collect(s, stdout.clone())));
        }
        if let Some(s) = child.stderr.take() {
            readers.push(tokio::spawn(collect(s, stderr.clone())));
        }
        Output {
            stdout,
            stderr,
            readers,
        }
    }

    /// Waits for the output's end: EOF, or a little after the exit when a
    /// background child still holds the pipes (never past the deadline).
    async fn drain(&mut self, deadline: Option<Instant>, id: &str) {
        let mut until = Instant::now() + DRAIN_AFTER_EXIT;
        if let Some(d) = deadline {
            until = until.min(d);
        }
        if !drain_output(std::mem::take(&mut self.readers), until).await {
            warn!(container = %id, "exec output still open after the command exited; returning what was read");
        }
    }

    fn abort(&self) {
        for r in &self.readers {
            r.abort();
        }
    }

    fn take(b: &Buffer) -> Vec<u8> {
        std::mem::take(&mut *b.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Reads a stream to its end, keeping at most [`OUTPUT_LIMIT`] bytes.
async fn collect(mut r: impl AsyncRead + Unpin, out: Buffer) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
                let room = OUTPUT_LIMIT.saturating_sub(o.len());
                o.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(255)
}

impl CliRuntime {
    pub(super) async fn exec_detached(
        &self,
        c: &ContainerHandle,
        process: &[u8],
        timeout: Option<Duration>,
    ) -> Result<ExecOutput, OciError> {
        let started = Instant::now();
        let deadline = timeout.map(|t| started + t);
        let files = ExecFiles::new(c);
        write_volatile(&files.process, process, 0o600)
            .map_err(|e| OciError::Io(format!("write the exec process: {e}")))?;
        let mut child = self.spawn_exec(c, &files, COLLECTED)?;
        let mut output = Output::collect(&mut child);
        let waited = match deadline {
            Some(d) => tokio::time::timeout_at(d.into(), child.wait()).await.ok(),
            None => Some(child.wait().await),
        };
        let status = match waited {
            Some(Ok(status)) => status,
            Some(Err(e)) => return Err(OciError::Io(format!("wait for the exec process: {e}"))),
            None => {
                kill_exec(&files, &mut child).await;
                output.abort();
                return Err(OciError::ExecTimeout {
                    elapsed: started.elapsed(),
                });
            }
        };
        output.drain(deadline, &c.id).await;
        self.exec_result(&files, status, &output)
    }

    /// `peapod-monitor exec` around the runtime's detached exec, with
    /// pipes for the streams of `stdio` (or a terminal through the console
    /// socket).
    pub(super) fn spawn_exec(
        &self,
        c: &ContainerHandle,
        files: &ExecFiles,
        stdio: ExecStdio,
    ) -> Result<Child, OciError> {
        let exec = ExecArgs {
            pid_file: files.pid.clone(),
            runtime_argv: self.exec_argv(&c.id, files, stdio.tty),
        };
        let pipe = |wanted: bool| {
            if wanted && !stdio.tty {
                Stdio::piped()
            } else {
                Stdio::null()
            }
        };
        tokio::process::Command::new(&self.monitor)
            .args(exec.to_args())
            .stdin(pipe(stdio.stdin))
            .stdout(pipe(stdio.stdout))
            .stderr(pipe(stdio.stderr))
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| OciError::Io(format!("run {}: {e}", self.monitor.display())))
    }

    /// The runtime's command that starts the process detached: it exits
    /// once the process runs, its pid (in the host's PID namespace) in the
    /// pid file and the runtime's own errors in the log. (Attached, a
    /// runtime waits for every process the command leaves behind;
    /// `peapod-monitor exec` waits for this one.) With `tty`, the runtime
    /// sends the terminal's master to the console socket.
    fn exec_argv(&self, id: &str, files: &ExecFiles, tty: bool) -> Vec<std::ffi::OsString> {
        let mut argv = self.logged_argv(&files.log);
        argv.extend([
            "exec".into(),
            "--detach".into(),
            "--process".into(),
            files.process.as_os_str().to_owned(),
            "--pid-file".into(),
            files.pid.as_os_str().to_owned(),
        ]);
        if tty {
            argv.extend(["--console-socket".into(), files.console.as_os_str().into()]);
        }
        argv.push(id.into());
        argv
    }

    /// The command's output, or the runtime's error when the process never
    /// started.
    fn exec_result(
        &self,
        files: &ExecFiles,
        status: ExitStatus,
        output: &Output,
    ) -> Result<ExecOutput, OciError> {
        Ok(ExecOutput {
            exit_code: exit_of(&self.name, files, status)?,
            stdout: Output::take(&output.stdout),
            stderr: Output::take(&output.stderr),
        })
    }
}

/// How an exec'd process ended, from its wrapper's exit: its code, or the
/// runtime's error when it never started.
pub(super) fn exit_of(
    runtime: &str,
    files: &ExecFiles,
    status: ExitStatus,
) -> Result<i32, OciError> {
    let log = std::fs::read_to_string(&files.log).unwrap_or_default();
    let started = files.pid.exists();
    let runtime_error = last_error_in_log(&log);
    if !started || (status.code() == Some(i32::from(EXIT_RUNTIME)) && runtime_error.is_some()) {
        return Err(OciError::ExecFailed {
            runtime: runtime.to_string(),
            message: runtime_error
                .unwrap_or_else(|| format!("the process did not start ({status})")),
        });
    }
    Ok(exit_code(status))
}

/// The exec'd process, from the pid file the runtime wrote, while it
/// runs.
pub(super) fn exec_process(files: &ExecFiles) -> Option<crate::process::ProcessRef> {
    let pid = std::fs::read_to_string(&files.pid).ok()?;
    crate::process::ProcessRef::of(pid.trim().parse().ok()?)
}

/// Kills a command past its deadline: the process, not just the runtime's
/// exec command (killing only the latter would leave the former running in
/// the container), then the wrapper and anything left under it (it is a
/// subreaper).
pub(super) async fn kill_exec(files: &ExecFiles, child: &mut Child) {
    if let Some(p) = exec_process(files) {
        let _ = crate::process::kill_and_wait(p, Duration::from_secs(5)).await;
    }
    if let Some(pid) = child.id() {
        crate::process::kill_descendants(pid as i32);
    }
    let _ = child.kill().await;
}
