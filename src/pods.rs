//! Operations on a whole pod: its sandbox and its containers together, in
//! the order kubelet expects (containers first).

use std::sync::Arc;

use crate::container::Containers;
use crate::errors::Error;
use crate::sandbox::Sandboxes;

pub struct Pods {
    sandboxes: Arc<Sandboxes>,
    containers: Arc<Containers>,
}

impl Pods {
    pub fn new(sandboxes: Arc<Sandboxes>, containers: Arc<Containers>) -> Pods {
        Pods {
            sandboxes,
            containers,
        }
    }

    /// StopPodSandbox: the pod's containers, then the sandbox, in a task of
    /// its own, so a client that gives up does not stop it half way. An
    /// unknown pod succeeds (already stopped and removed).
    pub async fn stop(&self, id: &str) -> Result<(), Error> {
        let (sandboxes, containers) = (self.sandboxes.clone(), self.containers.clone());
        let id = id.to_string();
        tokio::spawn(async move {
            let full = match sandboxes.full_id(&id) {
                Ok(full) => full,
                Err(Error::NotFound(_)) => return Ok(()),
                Err(e) => return Err(e),
            };
            containers.stop_sandbox(&full).await?;
            sandboxes.stop(&full).await
        })
        .await
        .map_err(|e| Error::Internal(format!("stop task: {e}")))?
    }

    /// RemovePodSandbox: the pod's containers, then the sandbox. An unknown
    /// pod succeeds (it is already removed).
    pub async fn remove(&self, id: &str) -> Result<(), Error> {
        let (sandboxes, containers) = (self.sandboxes.clone(), self.containers.clone());
        let id = id.to_string();
        tokio::spawn(async move {
            let full = match sandboxes.full_id(&id) {
                Ok(full) => full,
                Err(Error::NotFound(_)) => return Ok(()),
                Err(e) => return Err(e),
            };
            containers.remove_sandbox(&full).await?;
            sandboxes.remove(&full).await
        })
        .await
        .map_err(|e| Error::Internal(format!("remove task: {e}")))?
    }
}
