//! RemoveContainer, and the one idempotent `release` that serves rollback,
//! removal and recovery alike.

use std::time::Duration;

use tracing::{info, warn};

use super::{ContainerEntry, ContainerRecord, ContainerState, Containers};
use crate::cgroups::remove_blocking;
use crate::errors::{Error, Problems};
use crate::host::fs::remove_dir;
use crate::objects::operate_removal;

impl Containers {
    /// RemoveContainer: kills it if needed and removes everything of it.
    /// An unknown id succeeds (already removed).
    pub async fn remove(&self, id: &str) -> Result<(), Error> {
        let this = self.arc();
        operate_removal(self.registry.lookup_if_known(id)?, |entry| async move {
            this.remove_locked(&entry).await
        })
        .await
    }

    async fn remove_locked(&self, entry: &ContainerEntry) -> Result<(), Error> {
        let id = entry.snapshot().id.clone();
        if let Err(e) = self.stop_locked(entry, Duration::ZERO).await {
            warn!(container = %id, "removing a container that did not stop: {e}");
        }
        // Waits for the runtime delete the exit started (while Removing is
        // stored) instead of running another.
        let removing = self
            .registry
            .transition(entry, |r| r.state = ContainerState::Removing);
        let deleted = async { *entry.extra.runtime_deleted.lock().await };
        let (removing, deleted) = tokio::join!(removing, deleted);
        removing?;
        let mut rec = (*entry.snapshot()).clone();
        rec.runtime_deleted = deleted;
        if let Err(e) = self.release(&mut rec).await {
            self.registry
                .transition(entry, |r| r.state = ContainerState::Exited)
                .await?;
            return Err(e);
        }
        self.registry.remove(entry).await?;
        self.forget_samples(&id);
        self.release_layers(&rec).await;
        info!(container = %id, "container removed");
        Ok(())
    }

    /// Releases everything a container holds: its processes, the runtime's
    /// state, its cgroup, mounts (root filesystem and image volumes) and
    /// directories. Idempotent.
    pub(super) async fn release(&self, rec: &mut ContainerRecord) -> Result<(), Error> {
        let mut problems = Problems::default();
        match self.runtime(&rec.runtime_handler) {
            Ok(rt) => problems.note(rt.delete(&rec.handle(), true).await),
            Err(e) => problems.add(e.to_string()),
        }
        // Whatever else is in its cgroup (a host-PID container's children).
        let killed = self.deps.cgroups.kill_all(&rec.cgroup).await;
        problems.check(
            format_args!("kill the processes of cgroup {}", rec.cgroup),
            killed,
        );
        // The root filesystem, image volumes and id-mapped clones: all
        // that is mounted below the container's directory, before it is
        // removed.
        let unmounted = self.deps.host.unmount_below(&rec.dir);
        problems.check(
            format_args!("unmount what is below {}", rec.dir.display()),
            unmounted,
        );
        if problems.is_empty() {
            for d in [&rec.dir, &rec.layer_dir] {
                problems.check(format_args!("remove {}", d.display()), remove_dir(d));
            }
        }
        problems.note(remove_blocking(&self.deps.cgroups, &rec.cgroup).await);
        problems.into_result()
    }

    /// Lets the image store delete layers no image or container holds.
    pub(super) async fn release_layers(&self, rec: &ContainerRecord) {
        if let Err(e) = self.deps.images.release_layers(&rec.held_layers()).await {
            warn!(container = %rec.id, "deleting unused layers: {e}");
        }
    }

    fn forget_samples(&self, id: &str) {
        self.samples.forget(id);
    }

    /// Stops every container of a sandbox (StopPodSandbox).
    pub async fn stop_sandbox(&self, sandbox_id: &str) -> Result<(), Error> {
        let mut first = None;
        for id in self.ids_in_sandbox(sandbox_id) {
            if let Err(e) = self.stop(&id, Duration::ZERO).await {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Removes every container of a sandbox (RemovePodSandbox).
    pub async fn remove_sandbox(&self, sandbox_id: &str) -> Result<(), Error> {
        let mut first = None;
        for id in self.ids_in_sandbox(sandbox_id) {
            if let Err(e) = self.remove(&id).await {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }
}
