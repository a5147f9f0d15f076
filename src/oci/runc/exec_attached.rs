//! An exec for a streaming session: the same detached exec under
//! `peapod-monitor exec` as ExecSync's, with the process's stdio handed
//! to the caller instead of collected: the wrapper's pipes, which the
//! runtime and the process inherit, or a terminal whose master the
//! runtime sends to a console socket.

use std::time::Duration;

use tokio::net::UnixListener;
use tokio::process::Child;

use super::exec::{exec_process, exit_of, kill_exec, ExecFiles};
use super::{CliRuntime, ContainerHandle, OciError};
use crate::host::fs::write_volatile;
use crate::host::terminal::{receive_master, Terminal};
use crate::oci::{ExecProcess, ExecSession, ExecStdio};

/// How long the runtime may take to send a terminal's master.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a terminal is still looked for once the process has exited.
const LATE_TERMINAL: Duration = Duration::from_millis(200);

impl CliRuntime {
    pub(super) async fn exec_with_stdio(
        &self,
        c: &ContainerHandle,
        process: &[u8],
        stdio: ExecStdio,
    ) -> Result<ExecSession, OciError> {
        let files = ExecFiles::new(c);
        write_volatile(&files.process, process, 0o600)
            .map_err(|e| OciError::Io(format!("write the exec process: {e}")))?;
        let console = match stdio.tty {
            true => Some(
                UnixListener::bind(&files.console)
                    .map_err(|e| OciError::Io(format!("bind the console socket: {e}")))?,
            ),
            false => None,
        };
        let mut child = self.spawn_exec(c, &files, stdio)?;
        let terminal = match console {
            Some(listener) => match self.receive_terminal(&listener, &files, &mut child).await {
                Ok(t) => Some(t),
                Err(e) => {
                    kill_exec(&files, &mut child).await;
                    return Err(e);
                }
            },
            None => None,
        };
        Ok(session(&self.name, child, files, terminal))
    }

    /// The terminal the runtime sends to the console socket, or the
    /// runtime's error when it exits without sending one.
    async fn receive_terminal(
        &self,
        listener: &UnixListener,
        files: &ExecFiles,
        child: &mut Child,
    ) -> Result<Terminal, OciError> {
        let accepted = tokio::select! {
            biased;
            accepted = tokio::time::timeout(CONSOLE_TIMEOUT, listener.accept()) => accepted,
            status = child.wait() => {
                let status = status.map_err(|e| OciError::Io(format!("wait for the exec process: {e}")))?;
                // A short command may be over already, its terminal still
                // waiting to be accepted; else the runtime failed.
                match tokio::time::timeout(LATE_TERMINAL, listener.accept()).await {
                    Ok(accepted) => Ok(accepted),
                    Err(_) => {
                        exit_of(&self.name, files, status)?;
                        return Err(self.exec_failed("the runtime exited without sending the terminal".into()));
                    }
                }
            }
        };
        let (conn, _) = accepted
            .map_err(|_| self.exec_failed("no terminal from the runtime in time".into()))?
            .map_err(|e| OciError::Io(format!("accept on the console socket: {e}")))?;
        let conn = conn
            .into_std()
            .map_err(|e| OciError::Io(format!("the console connection: {e}")))?;
        let master = tokio::task::spawn_blocking(move || receive_master(conn, CONSOLE_TIMEOUT))
            .await
            .map_err(|e| OciError::Io(e.to_string()))?
            .map_err(|e| self.exec_failed(format!("receive the terminal: {e}")))?;
        Terminal::new(master).map_err(|e| OciError::Io(format!("the terminal: {e}")))
    }

    fn exec_failed(&self, message: String) -> OciError {
        OciError::ExecFailed {
            runtime: self.name.clone(),
            message,
        }
    }
}

/// The session of a started process: its stdio (the terminal for both
/// directions when it has one).
fn session(
    runtime: &str,
    mut child: Child,
    files: ExecFiles,
    terminal: Option<Terminal>,
) -> ExecSession {
    let (stdin, stdout, stderr): (
        Option<crate::oci::ExecWriter>,
        Option<crate::oci::ExecReader>,
        _,
    ) = match &terminal {
        Some(t) => (Some(Box::pin(t.clone())), Some(Box::pin(t.clone())), None),
        None => (
            child.stdin.take().map(|s| Box::pin(s) as _),
            child.stdout.take().map(|s| Box::pin(s) as _),
            child.stderr.take().map(|s| Box::pin(s) as _),
        ),
    };
    ExecSession {
        stdin,
        stdout,
        stderr,
        terminal,
        process: Box::new(AttachedProcess {
            runtime: runtime.to_string(),
            child,
            files,
            exited: false,
        }),
    }
}

/// The exec'd process, through its wrapper.
struct AttachedProcess {
    runtime: String,
    child: Child,
    files: ExecFiles,
    exited: bool,
}

#[tonic::async_trait]
impl ExecProcess for AttachedProcess {
    async fn wait(&mut self) -> Result<i32, OciError> {
        let status = self
            .child
            .wait()
            .await
            .map_err(|e| OciError::Io(format!("wait for the exec process: {e}")))?;
        self.exited = true;
        exit_of(&self.runtime, &self.files, status)
    }

    async fn kill(&mut self) {
        if !self.exited {
            kill_exec(&self.files, &mut self.child).await;
            self.exited = true;
        }
    }
}

impl Drop for AttachedProcess {
    /// A session dropped without `kill` (its task was cancelled): the
    /// process must not stay behind.
    fn drop(&mut self) {
        if self.exited {
            return;
        }
        // Through a pidfd: the pid cannot name another process by then.
        if let Some(fd) = exec_process(&self.files).and_then(|p| p.open().ok()) {
            let _ = fd.signal(nix::sys::signal::Signal::SIGKILL);
        }
        if let Some(pid) = self.child.id() {
            crate::process::kill_descendants(pid as i32);
        }
    }
}
