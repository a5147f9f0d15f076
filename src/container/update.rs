//! UpdateContainerResources and ReopenContainerLog.

use tracing::info;

use super::{live, runtime_spec, ContainerEntry, Containers, Resources};
use crate::errors::Error;
use crate::objects::operate;

impl Containers {
    /// UpdateContainerResources: the update is merged into the limits in
    /// force and applied to the container's cgroup.
    pub async fn update_resources(&self, id: &str, update: Resources) -> Result<(), Error> {
        let entry = self.registry.lookup(id)?;
        let this = self.arc();
        operate(entry, "update", |entry| async move {
            this.update_locked(&entry, update).await
        })
        .await
    }

    async fn update_locked(&self, entry: &ContainerEntry, update: Resources) -> Result<(), Error> {
        let rec = entry.snapshot();
        if !live(rec.state) {
            return Err(Error::FailedPrecondition(format!(
                "container {} is not running",
                rec.id
            )));
        }
        let merged = self.in_force(&rec.resources.merged(&update));
        let oci = runtime_spec::resources(&merged, &self.deps.facts)?;
        let runtime = self.runtime(&rec.runtime_handler)?;
        runtime
            .update(&rec.handle(), &oci)
            .await
            .map_err(|e| Error::FailedPrecondition(e.to_string()))?;
        self.registry
            .transition(entry, |r| r.resources = merged)
            .await?;
        info!(container = %rec.id, "resources updated");
        Ok(())
    }

    /// ReopenContainerLog.
    pub async fn reopen_log(&self, id: &str) -> Result<(), Error> {
        let rec = self.running(id)?;
        let runtime = self.runtime(&rec.runtime_handler)?;
        runtime
            .reopen_log(&rec.handle())
            .await
            .map_err(|e| Error::Internal(format!("reopen the log of {}: {e}", rec.id)))
    }
}
