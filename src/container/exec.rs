//! ExecSync: a command run inside a running container (its namespaces,
//! cgroup, user, capabilities and environment, from its OCI spec).

use std::path::Path;
use std::time::Duration;

use super::{Containers, ExecOutput};
use crate::errors::Error;
use crate::oci::OciError;

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
        let process = process_json(&rec.bundle(), &cmd)?;
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

/// The container's process spec with `cmd` as its arguments.
fn process_json(bundle: &Path, cmd: &[String]) -> Result<Vec<u8>, Error> {
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
    process["terminal"] = serde_json::json!(false);
    if let Some(p) = process.as_object_mut() {
        p.remove("consoleSize");
    }
    serde_json::to_vec(&process).map_err(|e| Error::internal("encode process", e))
}
