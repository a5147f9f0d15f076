//! Pod sandboxes: the namespaces a pod's containers share, held by an infra
//! process, with the pod's network (CNI), DNS and hostname files, /dev/shm
//! and cgroup. Containers see a pod through its [`PodContext`].
//!
//! Every mutating operation runs in a task of its own, so a client whose
//! deadline passes (tonic then drops the handler) never interrupts it half
//! way; a retry of RunPodSandbox with the same metadata joins the work in
//! flight. Status and List read the registry's index and never wait for an
//! operation on another sandbox.

pub(crate) mod files;
mod infra;
pub mod network;
mod recover;
mod resources;
mod run;
mod spec;
mod stats;
mod teardown;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

pub use infra::{InfraError, PauseMonitor, PodInfra};
pub use network::{CniPlugins, NetworkPlugin, PodNetwork};
pub use spec::*;
pub use stats::{InterfaceStats, NetworkStats, SandboxStatsView, DEFAULT_INTERFACE};

use crate::cgroups::{CgroupManager, CpuSamples};
use crate::config::Config;
use crate::errors::Error;
use crate::host::HostOps;
use crate::objects::{Entry, Record, Registry};
use crate::pod::{PodContext, PodFiles, PodLookup, PodNamespaces};
use crate::store::{Store, Table};

/// The sandbox layer's error: [`crate::errors::Error`].
pub type SandboxError = Error;

/// How long the infra process may take to set up its namespaces.
pub const INFRA_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a killed process may take to disappear.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);
const POD_CIDR_KEY: &str = "pod_cidr";

impl Record for SandboxRecord {
    type State = SandboxState;
    type Name = SandboxMetadata;
    type Extra = ();
    const TABLE: Table = Table::Sandboxes;
    const KIND: &'static str = "pod sandbox";
    const ID_FIELD: &'static str = "pod_sandbox_id";
    const CREATING: SandboxState = SandboxState::Creating;

    fn id(&self) -> &str {
        &self.id
    }
    fn name(&self) -> SandboxMetadata {
        self.spec.metadata.clone()
    }
    fn state(&self) -> SandboxState {
        self.state
    }
}

/// Filter of ListPodSandbox; `None` fields match everything.
#[derive(Debug, Default, Clone)]
pub struct SandboxFilter {
    pub id: Option<String>,
    pub ready: Option<bool>,
    pub labels: HashMap<String, String>,
}

/// A sandbox as Status and List report it.
#[derive(Debug, Clone)]
pub struct SandboxView {
    pub record: Arc<SandboxRecord>,
    pub ready: bool,
}

/// What the sandbox lifecycle works with on the host.
#[derive(Clone)]
pub struct SandboxDeps {
    pub cgroups: Arc<dyn CgroupManager>,
    pub host: Arc<dyn HostOps>,
    pub network: Arc<dyn NetworkPlugin>,
    pub infra: Arc<dyn PodInfra>,
}

/// All pod sandboxes of the daemon.
pub struct Sandboxes {
    config: Arc<Config>,
    store: Arc<Store>,
    registry: Registry<SandboxRecord>,
    deps: SandboxDeps,
    pod_cidr: RwLock<Option<String>>,
    /// The previous CPU sample of each pod, for its stats.
    cpu_samples: CpuSamples,
    me: Weak<Sandboxes>,
}

type SandboxEntry = Entry<SandboxRecord>;

impl Sandboxes {
    fn new(config: Arc<Config>, store: Arc<Store>, deps: SandboxDeps) -> Result<Arc<Self>, Error> {
        let pod_cidr = store.get::<String>(Table::Meta, POD_CIDR_KEY)?;
        Ok(Arc::new_cyclic(|me| Sandboxes {
            config,
            registry: Registry::new(store.clone()),
            store,
            deps,
            pod_cidr: RwLock::new(pod_cidr),
            cpu_samples: CpuSamples::default(),
            me: me.clone(),
        }))
    }

    fn arc(&self) -> Arc<Sandboxes> {
        self.me.upgrade().expect("Sandboxes used after drop")
    }

    /// Every change of a sandbox, from now on.
    pub fn subscribe(
        &self,
    ) -> tokio::sync::broadcast::Receiver<crate::objects::Event<SandboxRecord>> {
        self.registry.subscribe()
    }

    pub fn pod_cidr(&self) -> Option<String> {
        self.pod_cidr
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records the pod CIDR kubelet assigns to the node (passed to CNI).
    pub async fn set_pod_cidr(&self, cidr: String) -> Result<(), Error> {
        self.store
            .put_async(Table::Meta, POD_CIDR_KEY.to_string(), cidr.clone())
            .await?;
        *self.pod_cidr.write().unwrap_or_else(|e| e.into_inner()) = Some(cidr);
        Ok(())
    }

    /// The pod network in force, if a config exists.
    pub fn network(&self) -> Result<Option<Arc<dyn PodNetwork>>, network::CniError> {
        self.deps.network.network()
    }

    /// The full id of the sandbox `id` names (a unique prefix will do).
    pub fn full_id(&self, id: &str) -> Result<String, Error> {
        Ok(self.registry.lookup(id)?.snapshot().id.clone())
    }

    pub fn status(&self, id: &str) -> Result<SandboxView, Error> {
        Ok(view(self.registry.lookup(id)?.snapshot()))
    }

    pub fn list(&self, filter: &SandboxFilter) -> Vec<SandboxView> {
        // An id filter matches the sandbox with that id or unique prefix.
        let records = match &filter.id {
            Some(id) if !id.is_empty() => self
                .registry
                .lookup(id)
                .map(|e| e.snapshot())
                .into_iter()
                .collect(),
            _ => self.registry.records(),
        };
        let mut out: Vec<SandboxView> = records
            .into_iter()
            .map(view)
            .filter(|v| filter.ready.is_none_or(|r| v.ready == r))
            .filter(|v| {
                filter
                    .labels
                    .iter()
                    .all(|(k, val)| v.record.spec.labels.get(k) == Some(val))
            })
            .collect();
        out.sort_by_key(|v| std::cmp::Reverse(v.record.created_at));
        out
    }

    /// Paths that verbose status reports.
    pub fn cgroup_dirs(&self, rec: &SandboxRecord) -> Vec<PathBuf> {
        self.deps.cgroups.dirs(&rec.cgroup)
    }
}

impl PodLookup for Sandboxes {
    fn pod(&self, id: &str) -> Result<PodContext, Error> {
        Ok(pod_context(&self.registry.lookup(id)?.snapshot()))
    }
}

/// What containers see of a sandbox.
fn pod_context(rec: &SandboxRecord) -> PodContext {
    let spec = &rec.spec;
    let host_network = spec.network != NamespaceMode::Pod;
    PodContext {
        id: rec.id.clone(),
        ready: rec.state == SandboxState::Ready,
        runtime_handler: spec.runtime_handler.clone(),
        cgroup_parent: spec.cgroup_parent.clone(),
        log_directory: spec.log_directory.clone(),
        hostname: spec.hostname.clone(),
        ips: rec.ips.clone(),
        host_network,
        userns: spec.userns,
        namespaces: rec.infra.map(|infra| {
            let ns = |name: &str| PathBuf::from(format!("/proc/{}/ns/{name}", infra.pid));
            PodNamespaces {
                network: (!host_network)
                    .then(|| rec.netns_path.clone().unwrap_or_else(|| ns("net"))),
                uts: (!host_network).then(|| ns("uts")),
                ipc: (spec.ipc != NamespaceMode::Node).then(|| ns("ipc")),
                user: spec.userns.is_some().then(|| ns("user")),
                pid: ns("pid"),
            }
        }),
        files: PodFiles {
            hostname: rec.hostname_path(),
            resolv_conf: rec.resolv_conf_path(),
            shm: rec.shm_path.clone(),
        },
    }
}

/// A sandbox as Status and List report it.
pub fn view(record: Arc<SandboxRecord>) -> SandboxView {
    let ready = record.state == SandboxState::Ready;
    SandboxView { record, ready }
}

fn cni_ports(ports: &[PortMapping]) -> Vec<network::PortMapping> {
    ports
        .iter()
        .filter(|p| p.host_port > 0)
        .map(|p| network::PortMapping {
            protocol: p.protocol.clone(),
            container_port: p.container_port,
            host_port: p.host_port,
            host_ip: p.host_ip.clone(),
        })
        .collect()
}

fn attachment<'a>(
    rec: &'a SandboxRecord,
    netns: &'a Path,
    ports: &'a [network::PortMapping],
    cidr: Option<&'a str>,
) -> network::Attachment<'a> {
    network::Attachment {
        container_id: &rec.id,
        netns,
        ifname: "eth0",
        pod_name: &rec.spec.metadata.name,
        pod_namespace: &rec.spec.metadata.namespace,
        pod_uid: &rec.spec.metadata.uid,
        port_mappings: ports,
        pod_cidr: cidr,
    }
}
