//! UpdateContainerResources and ReopenContainerLog.

use tracing::info;

use super::{live, runtime_spec, ContainerState, Containers, Resources};
use crate::errors::Error;

impl Containers {
    /// UpdateContainerResources: the update is merged into the limits in
    /// force and applied to the container's cgroup.
    pub async fn update_resources(&self, id: &str, update: Resources) -> Result<(), Error> {
        let entry = self.registry.lookup(id)?;
        let this = self.arc();
        tokio::spawn(async move {
            let _op = entry.lock().await;
            let rec = entry.snapshot();
            if !live(rec.state) {
                return Err(Error::FailedPrecondition(format!(
                    "container {} is not running",
                    rec.id
                )));
            }
            let merged = this.in_force(&rec.resources.merged(&update));
            let oci = runtime_spec::resources(&merged, &this.deps.facts)?;
            let runtime = this.runtime(&rec.runtime_handler)?;
            runtime
                .update(&rec.handle(), &oci)
                .await
                .map_err(|e| Error::FailedPrecondition(e.to_string()))?;
            this.registry
                .transition(&entry, |r| r.resources = merged)
                .await?;
            info!(container = %rec.id, "resources updated");
            Ok(())
        })
        .await
        .map_err(|e| Error::Internal(format!("update task: {e}")))?
    }

    /// ReopenContainerLog.
    pub async fn reopen_log(&self, id: &str) -> Result<(), Error> {
        let rec = self.registry.lookup(id)?.snapshot();
        if rec.state != ContainerState::Running {
            return Err(Error::FailedPrecondition(format!(
                "container {} is not running",
                rec.id
            )));
        }
        let runtime = self.runtime(&rec.runtime_handler)?;
        runtime
            .reopen_log(&rec.handle())
            .await
            .map_err(|e| Error::Internal(format!("reopen the log of {}: {e}", rec.id)))
    }
}
