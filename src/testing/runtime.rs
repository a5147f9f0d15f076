//! The fake OCI runtime: containers of fake processes, a monitor and an
//! init each, in the cgroup their `config.json` names.

use std::time::Duration;

use oci_spec::runtime::LinuxResources;

use super::{RuntimeContainer, World};
use crate::oci::{
    AttachSession, ContainerHandle, ContainerIo, ExecOutput, ExitStatus, Launched, OciError,
    OciRuntime, RuntimeFeatures,
};

pub struct FakeRuntime(pub World);

fn oci_error(e: std::io::Error) -> OciError {
    OciError::Io(e.to_string())
}

/// The cgroup the container's spec asks for.
fn cgroups_path(c: &ContainerHandle) -> Option<String> {
    let bytes = std::fs::read(c.bundle.join("config.json")).ok()?;
    let spec: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    spec["linux"]["cgroupsPath"].as_str().map(str::to_string)
}

impl FakeRuntime {
    fn container(&self, c: &ContainerHandle) -> Option<RuntimeContainer> {
        self.0.lock().containers.get(&c.id).cloned()
    }
}

#[tonic::async_trait]
impl OciRuntime for FakeRuntime {
    fn name(&self) -> &str {
        "fake"
    }

    async fn features(&self) -> RuntimeFeatures {
        RuntimeFeatures::default()
    }

    async fn create(&self, c: &ContainerHandle, _io: &ContainerIo) -> Result<Launched, OciError> {
        self.0.step("runtime create").map_err(oci_error)?;
        let (monitor, init) = (self.0.spawn(), self.0.spawn());
        let mut s = self.0.lock();
        if let Some(path) = cgroups_path(c) {
            s.cgroups.insert(path.clone());
            if let Some(p) = s.processes.get_mut(&init.pid) {
                p.cgroup = Some(path);
            }
        }
        s.containers.insert(
            c.id.clone(),
            RuntimeContainer {
                monitor: monitor.pid,
                init: init.pid,
                started: false,
                exit_code: None,
            },
        );
        Ok(Launched { monitor, init })
    }

    async fn start(&self, c: &ContainerHandle) -> Result<(), OciError> {
        self.0.step("runtime start").map_err(oci_error)?;
        match self.0.lock().containers.get_mut(&c.id) {
            Some(rc) => {
                rc.started = true;
                Ok(())
            }
            None => Err(OciError::Io(format!("no container {}", c.id))),
        }
    }

    fn signal(&self, c: &ContainerHandle, sig: i32) -> Result<(), OciError> {
        if let Some(rc) = self.container(c) {
            self.0.end(rc.init, 128 + sig);
        }
        Ok(())
    }

    async fn kill(&self, c: &ContainerHandle, _timeout: Duration) -> Result<bool, OciError> {
        self.signal(c, libc::SIGKILL).map(|()| true)
    }

    async fn exec(
        &self,
        _c: &ContainerHandle,
        _process: &[u8],
        _timeout: Option<Duration>,
    ) -> Result<ExecOutput, OciError> {
        Ok(ExecOutput {
            stdout: b"ok".to_vec(),
            stderr: Vec::new(),
            exit_code: 0,
        })
    }

    async fn exec_attached(
        &self,
        c: &ContainerHandle,
        _process: &[u8],
        _stdio: crate::oci::ExecStdio,
    ) -> Result<crate::oci::ExecSession, OciError> {
        Err(OciError::ExecFailed {
            runtime: "fake".into(),
            message: format!("the fake runtime runs no processes ({})", c.id),
        })
    }

    async fn attach(&self, c: &ContainerHandle, _stdin: bool) -> Result<AttachSession, OciError> {
        Err(OciError::Monitor(format!(
            "the fake runtime has no stdio to attach to ({})",
            c.id
        )))
    }

    async fn delete(&self, c: &ContainerHandle, force: bool) -> Result<(), OciError> {
        self.0.step("runtime delete").map_err(oci_error)?;
        let Some(rc) = self.container(c) else {
            return Ok(());
        };
        if force {
            self.0.end(rc.init, 137);
            self.0.end(rc.monitor, 137);
        } else if self.0.is_alive(rc.init) {
            return Err(OciError::Io(format!("container {} is running", c.id)));
        }
        let mut s = self.0.lock();
        s.containers.remove(&c.id);
        if let Some(path) = cgroups_path(c) {
            s.cgroups.remove(&path);
        }
        Ok(())
    }

    async fn update(&self, _c: &ContainerHandle, _r: &LinuxResources) -> Result<(), OciError> {
        self.0.step("runtime update").map_err(oci_error)
    }

    /// Writes a CRIU-like image file and log, or refuses as CRIU would.
    async fn checkpoint(
        &self,
        c: &ContainerHandle,
        images: &std::path::Path,
        work: &std::path::Path,
        _timeout: Duration,
    ) -> Result<(), OciError> {
        self.0
            .step("runtime checkpoint")
            .map_err(|e| OciError::CheckpointRefused {
                id: c.id.clone(),
                reason: e.to_string(),
            })?;
        std::fs::write(images.join("inventory.img"), b"fake").map_err(oci_error)?;
        std::fs::write(work.join("dump.log"), b"Dumping finished successfully\n").map_err(oci_error)
    }

    async fn wait(&self, c: &ContainerHandle) -> Result<(), OciError> {
        if let Some(m) = c.monitor {
            self.0.exited(m.pid).await;
        }
        Ok(())
    }

    fn exit_status(&self, c: &ContainerHandle) -> Result<Option<ExitStatus>, OciError> {
        Ok(self
            .container(c)
            .and_then(|rc| rc.exit_code)
            .map(|code| ExitStatus {
                exit_code: code,
                signal: if code > 128 { code - 128 } else { 0 },
                oom_killed: false,
                finished_at: crate::ids::now_nanos(),
            }))
    }

    fn is_running(&self, c: &ContainerHandle) -> bool {
        c.monitor.is_some_and(|m| self.0.is_alive(m.pid))
    }

    async fn reopen_log(&self, _c: &ContainerHandle) -> Result<(), OciError> {
        Ok(())
    }
}
