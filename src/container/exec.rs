//! Commands run inside a running container (its namespaces, cgroup, user,
//! capabilities and environment, from its OCI spec): ExecSync, and the
//! exec and attach of a streaming session.

use std::path::Path;
use std::time::Duration;

use super::{Containers, ExecOutput};
use crate::errors::Error;
use crate::oci::{AttachSession, ExecSession, ExecStdio, OciError};

impl Containers {
    /// ExecSync.
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: Option<Duration>,
    ) -> Result<ExecOutput, Error> {
        let rec = self.running(id)?;
        let runtime = self.runtime(&rec.runtime_handler)?;
        let process = process_json(&rec.bundle(), &cmd, false)?;
        runtime
            .exec(&rec.handle(), &process, timeout)
            .await
            .map_err(|e| match e {
                OciError::ExecTimeout { elapsed } => Error::DeadlineExceeded(format!(
                    "command {:?} timed out after {elapsed:?} (timeout {} s)",
                    cmd.join(" "),
                    timeout.map(|t| t.as_secs()).unwrap_or(0)
                )),
                e => Error::Internal(e.to_string()),
            })
    }
}

impl Containers {
    /// The full id of `id` when it is a running container of a ready pod:
    /// what a streaming session may reach. Checked when the session is
    /// asked for and again when it starts.
    pub fn streamable(&self, id: &str) -> Result<String, Error> {
        let rec = self.running(id)?;
        let pod = self.deps.pods.pod(&rec.spec.sandbox_id)?;
        if !pod.ready {
            return Err(Error::FailedPrecondition(format!(
                "pod sandbox {} of container {} is not ready",
                pod.id, rec.id
            )));
        }
        Ok(rec.id.clone())
    }

    /// Starts `cmd` in the running container with its stdio connected to
    /// the caller.
    pub async fn exec_attached(
        &self,
        id: &str,
        cmd: &[String],
        stdio: ExecStdio,
    ) -> Result<ExecSession, Error> {
        let rec = self.running(id)?;
        let runtime = self.runtime(&rec.runtime_handler)?;
        let process = process_json(&rec.bundle(), cmd, stdio.tty)?;
        runtime
            .exec_attached(&rec.handle(), &process, stdio)
            .await
            .map_err(|e| Error::Internal(e.to_string()))
    }

    /// Attaches to the running container's stdio; its stdin only when
    /// `stdin` is asked for and the container has one.
    pub async fn attach(&self, id: &str, stdin: bool) -> Result<AttachSession, Error> {
        let rec = self.running(id)?;
        let runtime = self.runtime(&rec.runtime_handler)?;
        runtime
            .attach(&rec.handle(), stdin && rec.spec.stdin)
            .await
            .map_err(|e| Error::Internal(e.to_string()))
    }
}

/// The container's process spec with `cmd` as its arguments, with or
/// without a terminal.
fn process_json(bundle: &Path, cmd: &[String], tty: bool) -> Result<Vec<u8>, Error> {
    let path = bundle.join("config.json");
    let bytes = std::fs::read(&path)
        .map_err(|e| Error::internal(&format!("read {}", path.display()), e))?;
    let spec: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| Error::internal(&format!("parse {}", path.display()), e))?;
    let mut process = spec
        .get("process")
        .cloned()
        .ok_or_else(|| Error::Internal(format!("{} has no process", path.display())))?;
    process["args"] = serde_json::json!(cmd);
    process["terminal"] = serde_json::json!(tty);
    if tty {
        with_default_term(&mut process);
    }
    if let Some(p) = process.as_object_mut() {
        p.remove("consoleSize");
    }
    serde_json::to_vec(&process).map_err(|e| Error::internal("encode process", e))
}

/// A terminal gets `TERM=xterm` unless the container sets its own, as
/// other runtimes give it.
fn with_default_term(process: &mut serde_json::Value) {
    let env = process["env"].as_array().cloned().unwrap_or_default();
    if !env
        .iter()
        .any(|e| e.as_str().is_some_and(|e| e.starts_with("TERM=")))
    {
        let mut env = env;
        env.push(serde_json::json!("TERM=xterm"));
        process["env"] = serde_json::json!(env);
    }
}
