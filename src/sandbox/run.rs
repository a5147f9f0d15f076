//! RunPodSandbox: the record first, then each resource of the pod in turn;
//! any failure releases what was made.

use std::sync::Arc;

use tracing::{debug, error, info, warn};

use super::{
    attachment, cni_ports, files, NamespaceMode, PodNetwork, SandboxEntry, SandboxRecord,
    SandboxSpec, SandboxState, Sandboxes,
};
use crate::errors::Error;
use crate::host::fs::write_atomic;
use crate::process::ProcessRef;

impl Sandboxes {
    /// RunPodSandbox. A call with the metadata of a sandbox still being
    /// created waits for that creation and returns its id.
    pub async fn run(&self, spec: SandboxSpec) -> Result<String, Error> {
        let key = spec.metadata.clone();
        let this = self.arc();
        let result = self
            .registry
            .create_named(key, async move { this.create(spec).await }, |key, id| {
                Error::AlreadyExists(format!(
                    "pod sandbox with name {:?}, namespace {:?}, uid {:?}, attempt {} already exists: {}",
                    key.name, key.namespace, key.uid, key.attempt, id
                ))
            })
            .await;
        if let Ok(id) = &result {
            debug!(sandbox = %id, "sandbox delivered");
        }
        result
    }

    async fn create(&self, spec: SandboxSpec) -> Result<String, Error> {
        let network = self.network_for(&spec)?;
        let draft = self.new_record(spec);
        let id = draft.id.clone();
        // The record exists before any resource does, so a crash at any
        // point leaves something the next start can roll back.
        let entry = self.registry.add(draft.clone()).await?;
        let mut draft = draft;
        if let Err(e) = self.set_up(&entry, &mut draft, network.as_deref()).await {
            warn!(sandbox = %id, "RunPodSandbox failed: {e}; rolling back");
            self.roll_back(&entry, draft).await;
            return Err(e);
        }
        let infra = draft.infra;
        let ready = self
            .registry
            .transition(&entry, |r| {
                *r = draft;
                r.state = SandboxState::Ready;
            })
            .await;
        if let Err(e) = ready {
            let draft = (*entry.snapshot()).clone();
            self.roll_back(&entry, draft).await;
            return Err(e);
        }
        if let Some(p) = infra {
            self.watch_infra(&id, p);
        }
        info!(sandbox = %id, "pod sandbox ready");
        Ok(id)
    }

    /// The network a pod joins: `None` on the host's network; an error
    /// when it needs one and there is none.
    fn network_for(&self, spec: &SandboxSpec) -> Result<Option<Arc<dyn PodNetwork>>, Error> {
        if spec.network != NamespaceMode::Pod {
            return Ok(None);
        }
        match self.network() {
            Ok(Some(n)) => Ok(Some(n)),
            Ok(None) => Err(Error::FailedPrecondition(format!(
                "network plugin not ready: no CNI network config in {} and the default network is off (cni.default_network = false)",
                self.config.cni.conf_dir.display()
            ))),
            Err(e) => Err(Error::FailedPrecondition(format!(
                "network plugin not ready: {e}"
            ))),
        }
    }

    fn new_record(&self, spec: SandboxSpec) -> SandboxRecord {
        let id = crate::ids::new_id();
        SandboxRecord {
            dir: self.config.sandboxes_dir().join(&id),
            netns_path: (spec.network == NamespaceMode::Pod)
                .then(|| self.config.netns_dir().join(&id)),
            shm_path: (spec.ipc != NamespaceMode::Node)
                .then(|| self.config.sandboxes_dir().join(&id).join("shm")),
            cgroup: crate::cgroups::child_path(&spec.cgroup_parent, &id),
            id,
            spec,
            state: SandboxState::Creating,
            created_at: crate::ids::now_nanos(),
            infra: None,
            cni_network: None,
            resources: None,
            ips: vec![],
        }
    }

    /// Makes the pod's resources, recording in `rec` what exists.
    async fn set_up(
        &self,
        entry: &SandboxEntry,
        rec: &mut SandboxRecord,
        network: Option<&dyn PodNetwork>,
    ) -> Result<(), Error> {
        self.write_pod_files(rec)?;
        if let Some(shm) = &rec.shm_path {
            self.deps
                .host
                .mount_tmpfs(shm, self.config.shm_size)
                .map_err(|e| Error::internal("mount /dev/shm tmpfs", e))?;
        }
        self.deps
            .cgroups
            .create(&rec.cgroup)
            .map_err(|e| Error::internal(&format!("create cgroup {}", rec.cgroup), e))?;
        rec.infra = Some(self.start_infra(&rec.spec).await?);
        // Known before anything else can fail: from here on a crash leaves
        // a record by which the next start finds and kills it.
        self.record(entry, rec).await?;
        self.place_infra(rec)?;
        if let Some(net) = network {
            // The network is known before it is attached, so that a crash
            // during ADD is undone by a DEL.
            rec.cni_network = Some(net.name().to_string());
            self.record(entry, rec).await?;
            self.attach_network(rec, net).await?;
        }
        Ok(())
    }

    /// The pod's directory with its hostname and resolv.conf files.
    fn write_pod_files(&self, rec: &SandboxRecord) -> Result<(), Error> {
        std::fs::create_dir_all(&rec.dir)
            .map_err(|e| Error::internal(&format!("create {}", rec.dir.display()), e))?;
        write_atomic(
            &rec.hostname_path(),
            format!("{}\n", pod_hostname(&rec.spec)).as_bytes(),
            0o644,
        )
        .map_err(|e| Error::internal("write hostname file", e))?;
        let resolv = files::resolv_conf(rec.spec.dns.as_ref())
            .map_err(|e| Error::internal("read host resolv.conf", e))?;
        write_atomic(&rec.resolv_conf_path(), resolv.as_bytes(), 0o644)
            .map_err(|e| Error::internal("write resolv.conf", e))
    }

    /// Stores what exists of a pod being created.
    async fn record(&self, entry: &SandboxEntry, rec: &SandboxRecord) -> Result<(), Error> {
        let known = rec.clone();
        self.registry.transition(entry, |r| *r = known).await
    }

    /// The infra process, holding the pod's new namespaces.
    async fn start_infra(&self, spec: &SandboxSpec) -> Result<ProcessRef, Error> {
        self.deps.infra.start(spec).await.map_err(|e| match e {
            super::InfraError::Sysctl(m) => Error::invalid("config.linux.sysctls", m),
            e => Error::Internal(e.to_string()),
        })
    }

    /// The infra process into the pod's cgroup (from then on the cgroup
    /// names every process of the pod), its network namespace bound to a
    /// file.
    fn place_infra(&self, rec: &SandboxRecord) -> Result<(), Error> {
        let Some(infra) = rec.infra else {
            return Ok(());
        };
        self.deps
            .cgroups
            .add_process(&rec.cgroup, infra.pid)
            .map_err(|e| {
                Error::internal(&format!("move infra process into cgroup {}", rec.cgroup), e)
            })?;
        if let Some(netns) = &rec.netns_path {
            self.deps
                .host
                .bind_netns(infra.pid, netns)
                .map_err(|e| Error::internal("bind-mount network namespace", e))?;
        }
        Ok(())
    }

    async fn attach_network(
        &self,
        rec: &mut SandboxRecord,
        net: &dyn PodNetwork,
    ) -> Result<(), Error> {
        let netns = rec.netns_path.clone().unwrap_or_default();
        let ports = cni_ports(&rec.spec.port_mappings);
        let cidr = self.pod_cidr();
        let ips = net
            .add(&attachment(rec, &netns, &ports, cidr.as_deref()))
            .await
            .map_err(|e| Error::Internal(format!("CNI network {:?}: {e}", net.name())))?;
        rec.ips = ips.iter().map(|ip| ip.to_string()).collect();
        Ok(())
    }

    /// Undoes a failed creation. What cannot be released stays visible,
    /// NOTREADY, so kubelet removes it later instead of it leaking silently.
    async fn roll_back(&self, entry: &SandboxEntry, mut draft: SandboxRecord) {
        match self.release(&mut draft).await {
            Ok(()) => {
                if let Err(e) = self.registry.remove(entry).await {
                    error!(sandbox = %draft.id, "cannot delete record after rollback: {e}");
                }
            }
            Err(e) => {
                error!(sandbox = %draft.id, "rollback incomplete: {e}; keeping the sandbox NOTREADY");
                let kept = self
                    .registry
                    .transition(entry, |r| {
                        *r = draft;
                        r.state = SandboxState::NotReady;
                    })
                    .await;
                if let Err(e) = kept {
                    error!("cannot record the sandbox kept after a failed rollback: {e}");
                }
            }
        }
    }
}

/// The pod's hostname: its own on a network of its own, else the host's.
fn pod_hostname(spec: &SandboxSpec) -> String {
    if spec.network == NamespaceMode::Pod && !spec.hostname.is_empty() {
        return spec.hostname.clone();
    }
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default()
}
