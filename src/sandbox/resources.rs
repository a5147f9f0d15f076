//! UpdatePodSandboxResources: the pod-level resources kubelet sends on an
//! in-place resize.
//!
//! kubelet sizes the pod's cgroup (the cgroup parent) itself, and the
//! containers get theirs through UpdateContainerResources; neither is
//! written here. What peapod owns of the pod is the sandbox cgroup
//! (`<cgroup parent>/<sandbox id>`) holding the infra process: a ready pod's
//! sandbox cgroup gets the pod's new CPU, memory and cpuset limits, so that
//! nothing in it can use more than the pod may. The request is recorded in
//! the sandbox record either way, for verbose PodSandboxStatus and across
//! restarts; a stopped pod's (whose infra process is gone) is only
//! recorded, as other runtimes accept it too.

use tracing::info;

use super::{PodResources, SandboxEntry, SandboxState, Sandboxes};
use crate::errors::Error;
use crate::objects::operate;

impl Sandboxes {
    pub async fn update_resources(&self, id: &str, update: PodResources) -> Result<(), Error> {
        let entry = self.registry.lookup(id)?;
        let this = self.arc();
        operate(entry, "update pod resources", |entry| async move {
            this.update_resources_locked(&entry, update).await
        })
        .await
    }

    async fn update_resources_locked(
        &self,
        entry: &SandboxEntry,
        update: PodResources,
    ) -> Result<(), Error> {
        let rec = entry.snapshot();
        let applied = rec.state == SandboxState::Ready && !update.resources.is_empty();
        if applied {
            self.deps
                .cgroups
                .set_limits(&rec.cgroup, &update.resources)
                .map_err(|e| {
                    Error::FailedPrecondition(format!(
                        "resources: the sandbox cgroup {} refused the pod's limits: {e}",
                        rec.cgroup
                    ))
                })?;
        }
        self.registry
            .transition(entry, |r| r.resources = Some(update))
            .await?;
        info!(sandbox = %rec.id, applied, "pod resources updated");
        Ok(())
    }
}
