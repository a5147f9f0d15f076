//! OCI runtime backends behind one trait. The default backend drives any
//! runtime with runc's command line (runc, crun, youki): runtime handlers
//! from the config are instances of it with another binary and state root.
//!
//! `create` is special: the container's init must be the child of its
//! monitor, never of the daemon, so the daemon only builds the create
//! command ([`OciRuntime::create_argv`]) and the monitor runs it. Every
//! other command the daemon runs itself, as a short-lived child.

mod runc;

use std::ffi::OsString;
use std::path::Path;

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
}

/// What `<runtime> state` says of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeState {
    /// `creating`, `created`, `running`, `paused` or `stopped`.
    pub status: String,
    pub pid: i32,
}

/// What a runtime handler supports, from `<runtime> features`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeFeatures {
    /// The `rro` mount option (recursively read-only bind mounts).
    pub recursive_read_only_mounts: bool,
}

/// The paths a create command uses.
pub struct CreatePaths<'a> {
    pub bundle: &'a Path,
    pub pid_file: &'a Path,
    /// The runtime's own log (JSON lines), read for its error messages.
    pub log: &'a Path,
    /// Set for a terminal: the runtime sends the pty master here.
    pub console_socket: Option<&'a Path>,
}

#[tonic::async_trait]
pub trait OciRuntime: Send + Sync {
    /// The handler's name, for messages.
    fn name(&self) -> &str;

    /// The command line that creates container `id` from its bundle; the
    /// container's monitor runs it.
    fn create_argv(&self, id: &str, paths: &CreatePaths<'_>) -> Vec<OsString>;

    /// Starts the created container's process.
    async fn start(&self, id: &str) -> Result<(), OciError>;

    /// The runtime's view of a container; `None` when it does not know it.
    async fn state(&self, id: &str) -> Result<Option<RuntimeState>, OciError>;

    /// Sends `signal` to the container's init, or with `all` to every
    /// process of the container. A container that is not running is not an
    /// error.
    async fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), OciError>;

    /// Deletes the runtime's state and cgroup of the container; `force`
    /// kills it first. A container the runtime does not know is not an
    /// error.
    async fn delete(&self, id: &str, force: bool) -> Result<(), OciError>;

    /// The command line that starts a process inside a running container,
    /// described by an OCI process JSON file, detached: the command exits
    /// once the process runs, its pid (in the host's PID namespace) in
    /// `pid_file` and the runtime's own errors in `log` (JSON lines). The
    /// process inherits the command's stdio. (Attached, a runtime waits for
    /// every process the command leaves behind; `peapod-monitor exec` waits
    /// for this one.)
    fn exec_argv(
        &self,
        id: &str,
        process_json: &Path,
        pid_file: &Path,
        log: &Path,
    ) -> Vec<OsString>;

    /// Applies new cgroup limits (an OCI `linux.resources` JSON file) to a
    /// created or running container.
    async fn update(&self, id: &str, resources_json: &Path) -> Result<(), OciError>;

    /// What the runtime supports.
    async fn features(&self) -> RuntimeFeatures;
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
