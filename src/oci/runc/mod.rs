//! A runtime with runc's command line (runc, crun, youki), each container
//! under a `peapod-monitor`.
//!
//! `create` is special: the container's init must be the child of its
//! monitor, never of the daemon, so the monitor runs the runtime's
//! `create` (see [`crate::monitor`]). Every other command the daemon runs
//! itself, as a short-lived child. The runtime's command lines stay in
//! this module.

mod checkpoint;
mod cleanup;
mod command;
mod create;
mod exec;
mod exec_attached;

use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_spec::runtime::LinuxResources;
use tokio::sync::OnceCell;

use super::{
    AttachSession, ContainerHandle, ContainerIo, ExecOutput, ExecSession, ExecStdio, ExitStatus,
    Launched, OciError, OciRuntime, RuntimeFeatures,
};
use crate::host::fs::write_volatile;

/// How long the monitor may take to answer a control request.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

pub struct CliRuntime {
    name: String,
    path: PathBuf,
    root: PathBuf,
    systemd_cgroup: bool,
    /// The `peapod-monitor` binary.
    monitor: PathBuf,
    features: OnceCell<RuntimeFeatures>,
}

/// The files of a container's bundle this backend writes and reads
/// besides `config.json`.
struct BundleFiles<'a>(&'a ContainerHandle);

impl BundleFiles<'_> {
    fn pid_file(&self) -> PathBuf {
        self.0.bundle.join("init.pid")
    }
    fn exit_file(&self) -> PathBuf {
        self.0.bundle.join("exit")
    }
    /// The runtime's own log (JSON lines), read for its error messages.
    fn runtime_log(&self) -> PathBuf {
        self.0.bundle.join("runtime.log")
    }
    fn resources(&self) -> PathBuf {
        self.0.bundle.join("resources.json")
    }
    /// Where the runtime sends a terminal's pty master.
    fn console_socket(&self) -> PathBuf {
        self.0.socket.with_extension("console")
    }
}

impl CliRuntime {
    /// `path` is the binary, `root` its `--root` state directory, `monitor`
    /// the `peapod-monitor` binary.
    pub fn new(
        name: &str,
        path: &Path,
        root: &Path,
        systemd_cgroup: bool,
        monitor: &Path,
    ) -> CliRuntime {
        CliRuntime {
            name: name.to_string(),
            path: path.to_path_buf(),
            root: root.to_path_buf(),
            systemd_cgroup,
            monitor: monitor.to_path_buf(),
            features: OnceCell::new(),
        }
    }
}

#[tonic::async_trait]
impl OciRuntime for CliRuntime {
    fn name(&self) -> &str {
        &self.name
    }

    async fn features(&self) -> RuntimeFeatures {
        self.features
            .get_or_init(|| self.read_features())
            .await
            .clone()
    }

    async fn create(&self, c: &ContainerHandle, io: &ContainerIo) -> Result<Launched, OciError> {
        self.create_under_monitor(c, io).await
    }

    async fn start(&self, c: &ContainerHandle) -> Result<(), OciError> {
        self.run("start", &c.id, &[c.id.as_str().into()])
            .await?
            .map(|_| ())
            .map_err(|m| self.failed("start", &c.id, m))
    }

    fn signal(&self, c: &ContainerHandle, sig: i32) -> Result<(), OciError> {
        let Some(fd) = c.init.and_then(|p| p.open().ok()) else {
            return Ok(()); // gone already
        };
        fd.signal_raw(sig)
            .map_err(|e| OciError::Io(format!("signal {sig} to container {}: {e}", c.id)))
    }

    async fn kill(&self, c: &ContainerHandle, timeout: Duration) -> Result<bool, OciError> {
        let Some(init) = c.init else { return Ok(true) };
        crate::process::kill_and_wait(init, timeout)
            .await
            .map_err(|e| OciError::Io(format!("kill the init of {}: {e}", c.id)))
    }

    async fn exec(
        &self,
        c: &ContainerHandle,
        process: &[u8],
        timeout: Option<Duration>,
    ) -> Result<ExecOutput, OciError> {
        self.exec_detached(c, process, timeout).await
    }

    async fn exec_attached(
        &self,
        c: &ContainerHandle,
        process: &[u8],
        stdio: ExecStdio,
    ) -> Result<ExecSession, OciError> {
        self.exec_with_stdio(c, process, stdio).await
    }

    async fn attach(&self, c: &ContainerHandle, stdin: bool) -> Result<AttachSession, OciError> {
        crate::monitor::attach(&c.socket, stdin, CONTROL_TIMEOUT)
            .await
            .map_err(|e| OciError::Monitor(e.to_string()))
    }

    async fn delete(&self, c: &ContainerHandle, force: bool) -> Result<(), OciError> {
        if !force {
            return match c.state_deleted {
                true => Ok(()),
                false => self.delete_state(&c.id, false).await,
            };
        }
        self.kill_interrupted_creation(c).await;
        // Each step is tried even when one before failed.
        let mut problems = Vec::new();
        if !c.state_deleted {
            if let Err(e) = self.delete_state(&c.id, true).await {
                problems.push(e.to_string());
            }
        }
        problems.extend(self.kill_processes(c).await);
        problems.extend(remove_sockets(c));
        match problems.is_empty() {
            true => Ok(()),
            false => Err(OciError::Io(problems.join("; "))),
        }
    }

    async fn update(
        &self,
        c: &ContainerHandle,
        resources: &LinuxResources,
    ) -> Result<(), OciError> {
        let json = serde_json::to_vec(resources)
            .map_err(|e| OciError::Io(format!("encode resources: {e}")))?;
        let file = BundleFiles(c).resources();
        write_volatile(&file, &json, 0o600)
            .map_err(|e| OciError::Io(format!("write resources.json: {e}")))?;
        let args = vec![
            "--resources".into(),
            file.clone().into(),
            c.id.as_str().into(),
        ];
        let applied = self.run("update", &c.id, &args).await;
        let _ = std::fs::remove_file(&file);
        applied?
            .map(|_| ())
            .map_err(|m| self.failed("update", &c.id, m))
    }

    async fn checkpoint(
        &self,
        c: &ContainerHandle,
        images: &Path,
        work: &Path,
        timeout: Duration,
    ) -> Result<(), OciError> {
        self.checkpoint_leaving_running(c, images, work, timeout)
            .await
    }

    async fn wait(&self, c: &ContainerHandle) -> Result<(), OciError> {
        let Some(m) = c.monitor else { return Ok(()) };
        match m.open() {
            Ok(fd) => fd
                .exited()
                .await
                .map_err(|e| OciError::Io(format!("wait for monitor {}: {e}", m.pid))),
            // Already gone between the check and the open.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            Err(e) => Err(OciError::Io(format!("watch monitor {}: {e}", m.pid))),
        }
    }

    fn exit_status(&self, c: &ContainerHandle) -> Result<Option<ExitStatus>, OciError> {
        crate::monitor::read_exit_file(&BundleFiles(c).exit_file())
            .map_err(|e| OciError::Io(e.to_string()))
    }

    fn is_running(&self, c: &ContainerHandle) -> bool {
        c.monitor.is_some_and(|m| m.is_alive())
    }

    async fn reopen_log(&self, c: &ContainerHandle) -> Result<(), OciError> {
        crate::monitor::reopen_log(&c.socket, CONTROL_TIMEOUT)
            .await
            .map_err(|e| OciError::Monitor(e.to_string()))
    }
}

/// Removes the monitor's control and console sockets; what failed.
fn remove_sockets(c: &ContainerHandle) -> Vec<String> {
    [c.socket.clone(), BundleFiles(c).console_socket()]
        .into_iter()
        .filter_map(|sock| match std::fs::remove_file(&sock) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Some(format!("remove {}: {e}", sock.display()))
            }
            _ => None,
        })
        .collect()
}
