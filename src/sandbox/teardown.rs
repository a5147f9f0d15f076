//! StopPodSandbox, RemovePodSandbox, the infra process's exit, and the one
//! idempotent `release` that serves rollback, removal and recovery alike.

use tracing::{error, info, warn};

use super::{
    attachment, cni_ports, SandboxEntry, SandboxRecord, SandboxState, Sandboxes, KILL_TIMEOUT,
};
use crate::cgroups::remove_blocking;
use crate::errors::{Error, Problems};
use crate::host::fs::remove_dir;
use crate::objects::{operate, operate_removal};
use crate::process::ProcessRef;

impl Sandboxes {
    /// Releases everything a sandbox holds. Idempotent: what is already gone
    /// is skipped, so rollback, Stop, Remove and recovery share it.
    pub(super) async fn release(&self, rec: &mut SandboxRecord) -> Result<(), Error> {
        self.stop_processes_and_network(rec).await?;
        let mut problems = Problems::default();
        if let Some(netns) = &rec.netns_path {
            let removed = self.deps.host.remove_mount_point(netns);
            problems.check(format_args!("remove netns {}", netns.display()), removed);
        }
        if let Some(shm) = &rec.shm_path {
            let unmounted = self.deps.host.unmount_all(shm);
            problems.check(format_args!("unmount {}", shm.display()), unmounted);
        }
        // Only once nothing is mounted in it: never follow a mount into
        // another filesystem.
        if problems.is_empty() {
            problems.check(
                format_args!("remove {}", rec.dir.display()),
                remove_dir(&rec.dir),
            );
        }
        problems.note(remove_blocking(&self.deps.cgroups, &rec.cgroup).await);
        problems.into_result()
    }

    /// Detaches the pod from its network and kills its processes.
    pub(super) async fn stop_processes_and_network(
        &self,
        rec: &mut SandboxRecord,
    ) -> Result<(), Error> {
        if rec.cni_network.is_some() {
            self.detach_network(rec).await?;
        }
        if let Some(p) = rec.infra {
            self.kill_infra(p).await?;
        }
        // Anything else left in the pod's cgroup (e.g. a process that joined
        // the pod's namespaces) goes too.
        self.deps
            .cgroups
            .kill_all(&rec.cgroup)
            .await
            .map_err(|e| Error::internal(&format!("kill processes in cgroup {}", rec.cgroup), e))
    }

    /// CNI DEL from the network the pod was attached to, while the
    /// namespace still exists; it is idempotent. A network no config
    /// defines any more cannot be detached from.
    async fn detach_network(&self, rec: &mut SandboxRecord) -> Result<(), Error> {
        let name = rec.cni_network.clone().unwrap_or_default();
        let net = self
            .deps
            .network
            .network_named(&name)
            .map_err(|e| Error::Internal(format!("CNI config: {e}")))?;
        match net {
            Some(net) => {
                let netns = rec.netns_path.clone().unwrap_or_default();
                let ports = cni_ports(&rec.spec.port_mappings);
                let cidr = self.pod_cidr();
                net.del(&attachment(rec, &netns, &ports, cidr.as_deref()))
                    .await
                    .map_err(|e| Error::Internal(format!("CNI DEL from network {name:?}: {e}")))?;
            }
            None => {
                warn!(sandbox = %rec.id, "CNI network {name:?} has no config any more: cannot detach from it")
            }
        }
        rec.cni_network = None;
        rec.ips.clear();
        Ok(())
    }

    async fn kill_infra(&self, p: ProcessRef) -> Result<(), Error> {
        match self.deps.host.kill(p, KILL_TIMEOUT).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::Internal(format!(
                "infra process {} did not exit after SIGKILL",
                p.pid
            ))),
            Err(e) => Err(Error::Internal(format!(
                "kill infra process {}: {e}",
                p.pid
            ))),
        }
    }

    /// Marks the sandbox NOTREADY when its infra process exits, without
    /// polling.
    pub(super) fn watch_infra(&self, id: &str, p: ProcessRef) {
        let me = self.me.clone();
        let id = id.to_string();
        let host = self.deps.host.clone();
        tokio::spawn(async move {
            if let Err(e) = host.exited(p).await {
                warn!(sandbox = %id, "cannot watch infra process {}: {e}", p.pid);
                return;
            }
            let Some(this) = me.upgrade() else { return };
            this.infra_exited(&id, p).await;
        });
    }

    async fn infra_exited(&self, id: &str, p: ProcessRef) {
        let Ok(entry) = self.registry.lookup(id) else {
            return;
        };
        let is_ready = |r: &SandboxRecord| r.state == SandboxState::Ready && r.infra == Some(p);
        if !is_ready(&entry.snapshot()) {
            return; // stopped by StopPodSandbox, which killed it
        }
        let result = self
            .registry
            .transition(&entry, |r| {
                let was_ready = is_ready(r);
                if was_ready {
                    r.state = SandboxState::NotReady;
                }
                was_ready
            })
            .await;
        match result {
            Ok(true) => warn!(sandbox = %id, "infra process {} exited: sandbox is NOTREADY", p.pid),
            Ok(false) => {}
            Err(e) => error!(sandbox = %id, "cannot persist NOTREADY: {e}"),
        }
    }

    /// StopPodSandbox of the sandbox alone (its containers are stopped
    /// first, by the pod-wide call): kills the pod's processes
    /// and detaches its network; the sandbox stays, NOTREADY. Idempotent.
    pub async fn stop(&self, id: &str) -> Result<(), Error> {
        let entry = self.registry.lookup(id)?;
        let this = self.arc();
        operate(entry, "stop", |entry| async move {
            this.stop_locked(&entry).await
        })
        .await
    }

    async fn stop_locked(&self, entry: &SandboxEntry) -> Result<(), Error> {
        let mut rec = (*entry.snapshot()).clone();
        let stopped = rec.state == SandboxState::NotReady
            && rec.cni_network.is_none()
            && !rec.infra.is_some_and(|p| self.deps.host.is_alive(p));
        if stopped {
            return Ok(());
        }
        // NOTREADY before the kill, so the infra watcher finds nothing to
        // change and only this task stores the new state.
        self.registry
            .transition_unsaved(entry, |r| r.state = SandboxState::NotReady)
            .await;
        rec.state = SandboxState::NotReady;
        let result = self.stop_processes_and_network(&mut rec).await;
        self.registry.transition(entry, |r| *r = rec).await?;
        result
    }

    /// RemovePodSandbox of the sandbox alone (its containers are removed
    /// first, by the pod-wide call): stops the pod if needed
    /// and removes everything of it. An unknown id succeeds (it is already
    /// removed).
    pub async fn remove(&self, id: &str) -> Result<(), Error> {
        let this = self.arc();
        operate_removal(self.registry.lookup_if_known(id)?, |entry| async move {
            let mut rec = this
                .registry
                .transition(&entry, |r| {
                    r.state = SandboxState::Removing;
                    r.clone()
                })
                .await?;
            if let Err(e) = this.release(&mut rec).await {
                let kept = |r: &mut SandboxRecord| {
                    *r = rec;
                    r.state = SandboxState::NotReady;
                };
                this.registry.transition(&entry, kept).await?;
                return Err(e);
            }
            this.registry.remove(&entry).await?;
            this.cpu_samples.forget(&entry.snapshot().id);
            info!(sandbox = %entry.snapshot().id, "pod sandbox removed");
            Ok(())
        })
        .await
    }
}
