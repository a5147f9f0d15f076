//! OCI runtime backends behind one trait shaped by what the container
//! lifecycle does to a container — create, start, signal, exec, attach,
//! delete, update, and learn of its exit — not by any runtime's command
//! line. The default backend ([`CliRuntime`]) drives any runtime with
//! runc's command line (runc, crun, youki) under a `peapod-monitor` per
//! container; runtime handlers from the config are instances of it with
//! another binary and state root. An in-process or VM backend implements
//! the same trait; tests use a fake.

mod runc;

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;

use crate::host::terminal::Terminal;

pub use crate::monitor::{AttachSession, ExitStatus, Launched};
pub use runc::CliRuntime;

#[derive(Debug, Clone, thiserror::Error)]
pub enum OciError {
    #[error("cannot run {runtime}: {message}")]
    Spawn { runtime: String, message: String },
    #[error("{runtime} {command} {id}: {message}")]
    Failed {
        runtime: String,
        command: &'static str,
        id: String,
        message: String,
    },
    #[error("{runtime} {command} {id}: no answer within {secs} s")]
    Timeout {
        runtime: String,
        command: &'static str,
        id: String,
        secs: u64,
    },
    /// CRIU could not checkpoint the container (or is not installed): its
    /// own words.
    #[error("CRIU cannot checkpoint container {id} on this host: {reason}")]
    CheckpointRefused { id: String, reason: String },
    /// The runtime refused to create the container: its own words.
    #[error("the OCI runtime {runtime} refused to create the container: {message}")]
    Refused { runtime: String, message: String },
    /// The container's monitor failed (not the runtime).
    #[error("container monitor: {0}")]
    Monitor(String),
    /// An exec'd process could not be started.
    #[error("{runtime} exec failed: {message}")]
    ExecFailed { runtime: String, message: String },
    /// An exec'd process ran past its timeout and was killed.
    #[error("timed out after {elapsed:?}")]
    ExecTimeout { elapsed: Duration },
    #[error("{0}")]
    Io(String),
}

/// What a runtime handler supports, from `<runtime> features`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeFeatures {
    /// The `rro` mount option (recursively read-only bind mounts).
    pub recursive_read_only_mounts: bool,
}

/// A container as a backend finds it: its bundle (with `config.json`), the
/// processes recorded for it, and where its monitor listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerHandle {
    pub id: String,
    /// The bundle directory: `config.json`, and the backend's own files.
    pub bundle: PathBuf,
    /// The monitor's control socket (a unix socket path, under 108 bytes).
    pub socket: PathBuf,
    /// The container's monitor, once created.
    pub monitor: Option<crate::process::ProcessRef>,
    /// The container's init, once created.
    pub init: Option<crate::process::ProcessRef>,
    /// The runtime's state of the exited container is deleted already.
    pub state_deleted: bool,
}

/// Where a container's stdio goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerIo {
    /// The CRI log; `None`: output is read and dropped.
    pub log_path: Option<PathBuf>,
    /// Longer lines become partial log records.
    pub log_max_line: usize,
    pub tty: bool,
    pub stdin: bool,
    pub stdin_once: bool,
    /// The container cgroup's OOM kill counter (`memory.oom_control` or
    /// `memory.events`), read at the exit.
    pub oom_file: Option<PathBuf>,
}

/// The stdio an exec'd process gets: pipes for the streams asked for
/// (the others read from or write to /dev/null), or with `tty` a terminal
/// whose master the caller holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecStdio {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

pub type ExecWriter = Pin<Box<dyn AsyncWrite + Send>>;
pub type ExecReader = Pin<Box<dyn AsyncRead + Send>>;

/// A process exec'd with its stdio connected to the caller, for a
/// streaming session. Dropping it kills the process.
pub struct ExecSession {
    pub stdin: Option<ExecWriter>,
    /// The process's stdout, or with a tty the terminal's output.
    pub stdout: Option<ExecReader>,
    pub stderr: Option<ExecReader>,
    /// The terminal, for its window size.
    pub terminal: Option<Terminal>,
    pub process: Box<dyn ExecProcess>,
}

/// The process of an [`ExecSession`].
#[tonic::async_trait]
pub trait ExecProcess: Send {
    /// Resolves when the process has exited: its exit code (128 + the
    /// signal that killed it), or why it never ran.
    async fn wait(&mut self) -> Result<i32, OciError>;

    /// Kills the process and whatever it left behind.
    async fn kill(&mut self);
}

/// How long an exec'd command's output is still read after it exited:
/// a background child may keep its stdout open for ever.
pub const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(1);

/// Waits, until `until` at most, for the readers of an exec'd command's
/// output to reach its end, and aborts those still reading; false when
/// some were cut off.
pub async fn drain_output(readers: Vec<JoinHandle<()>>, until: Instant) -> bool {
    let mut whole = true;
    for r in readers {
        let abort = r.abort_handle();
        if tokio::time::timeout_at(until.into(), r).await.is_err() {
            abort.abort();
            whole = false;
        }
    }
    whole
}

/// What an exec'd command printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

#[tonic::async_trait]
pub trait OciRuntime: Send + Sync {
    /// The handler's name, for messages.
    fn name(&self) -> &str;

    /// What the runtime supports.
    async fn features(&self) -> RuntimeFeatures;

    /// Creates the container from its bundle. Its init is never the
    /// daemon's child: it runs under a monitor that outlives the daemon.
    async fn create(&self, c: &ContainerHandle, io: &ContainerIo) -> Result<Launched, OciError>;

    /// Starts the created container's process.
    async fn start(&self, c: &ContainerHandle) -> Result<(), OciError>;

    /// Sends signal `sig` to the container's init; an init that is gone
    /// is not an error.
    fn signal(&self, c: &ContainerHandle, sig: i32) -> Result<(), OciError>;

    /// SIGKILLs the container's init and waits up to `timeout` until it is
    /// gone; true when it is.
    async fn kill(&self, c: &ContainerHandle, timeout: Duration) -> Result<bool, OciError>;

    /// Runs a process (OCI process JSON) inside the running container
    /// with output collected, for at most `timeout`.
    async fn exec(
        &self,
        c: &ContainerHandle,
        process: &[u8],
        timeout: Option<Duration>,
    ) -> Result<ExecOutput, OciError>;

    /// Starts a process (OCI process JSON; with `stdio.tty` it asks for a
    /// terminal) inside the running container, its stdio connected to the
    /// caller.
    async fn exec_attached(
        &self,
        c: &ContainerHandle,
        process: &[u8],
        stdio: ExecStdio,
    ) -> Result<ExecSession, OciError>;

    /// Attaches to the container's stdio: its output from now on and, with
    /// `stdin`, its input (refused when it was created without stdin), and
    /// its terminal size.
    async fn attach(&self, c: &ContainerHandle, stdin: bool) -> Result<AttachSession, OciError>;

    /// Deletes the runtime's state of the container. With `force`, first
    /// kills whatever of it still runs, including the monitor of a
    /// creation a crash cut short. A container the runtime does not know
    /// is not an error.
    async fn delete(&self, c: &ContainerHandle, force: bool) -> Result<(), OciError>;

    /// Applies new cgroup limits to a created or running container.
    async fn update(&self, c: &ContainerHandle, resources: &LinuxResources)
        -> Result<(), OciError>;

    /// Checkpoints the running container with CRIU and leaves it running:
    /// CRIU's image files go to `images`, its log and work files to
    /// `work`; the runtime is killed after `timeout`.
    async fn checkpoint(
        &self,
        c: &ContainerHandle,
        images: &Path,
        work: &Path,
        timeout: Duration,
    ) -> Result<(), OciError>;

    /// Resolves once the container has exited and its exit is recorded
    /// (or can no longer be), without polling.
    async fn wait(&self, c: &ContainerHandle) -> Result<(), OciError>;

    /// The exit recorded for the container; `None` while it runs.
    fn exit_status(&self, c: &ContainerHandle) -> Result<Option<ExitStatus>, OciError>;

    /// Whether whatever watches the container (its monitor) still runs.
    fn is_running(&self, c: &ContainerHandle) -> bool;

    /// Reopens the container's CRI log (after kubelet renamed it).
    async fn reopen_log(&self, c: &ContainerHandle) -> Result<(), OciError>;
}

/// The message of the last error a runtime wrote to its JSON log
/// (`{"level":"error","msg":"..."}` lines), if any.
pub fn last_error_in_log(text: &str) -> Option<String> {
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| matches!(v["level"].as_str(), Some("error") | Some("fatal")))
        .find_map(|v| v["msg"].as_str().map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_last_error_of_a_runtime_log() {
        let log = r#"{"level":"info","msg":"x","time":"t"}
{"level":"error","msg":"first","time":"t"}
not json
{"level":"error","msg":"runc create failed: unable to start container process: exec: \"nope\": executable file not found in $PATH","time":"t"}
{"level":"warning","msg":"w","time":"t"}"#;
        assert_eq!(
            last_error_in_log(log).unwrap(),
            "runc create failed: unable to start container process: exec: \"nope\": executable file not found in $PATH"
        );
        assert_eq!(
            last_error_in_log("{\"level\":\"info\",\"msg\":\"x\"}"),
            None
        );
    }
}
