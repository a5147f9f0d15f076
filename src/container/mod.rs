//! Containers: lifecycle, the CRI → OCI spec conversion, security context,
//! mounts and the root filesystem.
//!
//! A container lives in a pod, which it sees through a [`PodContext`]; its
//! processes are the OCI runtime backend's ([`OciRuntime`]), which learns
//! of their exit without polling. Mutating operations run in tasks of their
//! own, so a client that gives up never interrupts them; Status and List
//! read the registry's index.

mod checkpoint;
mod create;
mod error;
mod exec;
mod exits;
mod idmapped;
mod image_volumes;
pub mod mounts;
mod recover;
mod remove;
pub mod rootfs;
pub mod runtime_spec;
pub mod security;
pub mod signals;
mod spec;
mod start_stop;
mod stats;
#[cfg(test)]
mod tests;
mod update;
pub mod user;

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use tracing::{info, warn};

pub use checkpoint::CheckpointRequest;
pub use error::ContainerError;
pub use spec::*;
pub use stats::ContainerStatsView;

use crate::cgroups::{CgroupLayout, CgroupManager};
use crate::config::{Config, OomScoreAdjRestriction};
use crate::errors::Error;
use crate::host::HostOps;
use crate::image::Images;
use crate::objects::{Entry, Record, Registry};
use crate::oci::{CliRuntime, OciRuntime, RuntimeFeatures};
use crate::pod::PodLookup;
use crate::store::{Store, Table};
use runtime_spec::HostFacts;

pub use crate::oci::ExecOutput;

/// A name in a sandbox: kubelet's identity of a container.
pub type NameKey = (String, ContainerMetadata);

/// What a container's entry holds besides its record.
#[derive(Default)]
pub struct ExitCleanup {
    /// Held while an exited container's runtime state is deleted and its
    /// root filesystem unmounted in the background; true once the
    /// runtime's delete succeeded.
    runtime_deleted: tokio::sync::Mutex<bool>,
}

impl Record for ContainerRecord {
    type State = ContainerState;
    type Name = NameKey;
    type Extra = ExitCleanup;
    const TABLE: Table = Table::Containers;
    const KIND: &'static str = "container";
    const ID_FIELD: &'static str = "container_id";
    const CREATING: ContainerState = ContainerState::Creating;

    fn id(&self) -> &str {
        &self.id
    }
    fn name(&self) -> NameKey {
        (self.spec.sandbox_id.clone(), self.spec.metadata.clone())
    }
    fn state(&self) -> ContainerState {
        self.state
    }
}

type ContainerEntry = Entry<ContainerRecord>;

/// Filter of ListContainers; `None` fields match everything.
#[derive(Debug, Default, Clone)]
pub struct ContainerFilter {
    pub id: Option<String>,
    pub state: Option<ContainerState>,
    pub sandbox_id: Option<String>,
    pub labels: HashMap<String, String>,
}

/// What the container lifecycle works with.
#[derive(Clone)]
pub struct ContainerDeps {
    pub pods: Arc<dyn PodLookup>,
    pub images: Arc<Images>,
    pub cgroups: Arc<dyn CgroupManager>,
    pub host: Arc<dyn HostOps>,
    /// The runtime handlers by name.
    pub runtimes: HashMap<String, Arc<dyn OciRuntime>>,
    pub facts: HostFacts,
}

/// All containers of the daemon.
pub struct Containers {
    config: Arc<Config>,
    registry: Registry<ContainerRecord>,
    deps: ContainerDeps,
    /// The previous CPU sample and the writable layer usage of each
    /// container, for its stats.
    samples: stats::StatsSamples,
    me: Weak<Containers>,
}

/// The chain ids every stored container stacks, in its root filesystem
/// and its image volumes, once per use: what the image store must keep
/// (see [`Images::open`]).
pub fn held_layers(store: &Store) -> Result<Vec<String>, Error> {
    let records: Vec<(String, ContainerRecord)> = store.load_all(Table::Containers)?;
    Ok(records.iter().flat_map(|(_, r)| r.held_layers()).collect())
}

/// The runtime handlers of the config.
pub fn runtimes(config: &Config) -> HashMap<String, Arc<dyn OciRuntime>> {
    let systemd = config.cgroup_driver == crate::cgroups::CgroupDriver::Systemd;
    let monitor = config.monitor_binary();
    config
        .runtimes
        .iter()
        .map(|(name, h)| {
            let r: Arc<dyn OciRuntime> = Arc::new(CliRuntime::new(
                name,
                &h.path,
                &config.runtime_root(name),
                systemd,
                &monitor,
            ));
            (name.clone(), r)
        })
        .collect()
}

/// Whether this process may lower an `oom_score_adj` (CAP_SYS_RESOURCE in
/// its effective set).
pub(crate) fn has_cap_sys_resource() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    security::own_capability_mask("CapEff").is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}

/// Whether containers' `oom_score_adj` is raised to at least the daemon's
/// own, per `restrict_oom_score_adj` and whether the daemon may lower one.
pub(crate) fn restricts_oom_score_adj(
    restriction: OomScoreAdjRestriction,
    has_cap_sys_resource: bool,
) -> bool {
    match restriction {
        OomScoreAdjRestriction::Always => true,
        OomScoreAdjRestriction::Never => false,
        OomScoreAdjRestriction::Auto => !has_cap_sys_resource,
    }
}

/// This process's `oom_score_adj`: the floor for containers when
/// restricted.
pub(crate) fn own_oom_score_adj() -> i64 {
    std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// What the host offers containers, found once at start.
pub fn host_facts(config: &Config, cgroups: &CgroupLayout) -> HostFacts {
    let restrict = restricts_oom_score_adj(config.restrict_oom_score_adj, has_cap_sys_resource());
    let floor = restrict.then(own_oom_score_adj);
    if let Some(f) = floor {
        info!(
            floor = f,
            "containers get an oom_score_adj of at least {f}, this daemon's own: it cannot set lower ones (no CAP_SYS_RESOURCE, or restrict_oom_score_adj = \"always\")"
        );
    }
    let facts = HostFacts {
        cgroup_v2: cgroups.is_v2(),
        hugetlb: cgroups.has_hugetlb(),
        swap: cgroups.has_swap(),
        oom_score_adj_min: floor,
        systemd_cgroup: config.cgroup_driver == crate::cgroups::CgroupDriver::Systemd,
        idmapped_mounts: idmapped_mounts_work(&config.state_dir),
    };
    if !facts.hugetlb {
        info!(
            "no hugetlb controller for the cgroup version in use: hugepage limits are not applied"
        );
    }
    facts
}

fn idmapped_mounts_work(state_dir: &std::path::Path) -> bool {
    match crate::host::idmap::supported_under(state_dir) {
        Ok(()) => true,
        Err(e) => {
            warn!(
                "idmapped mounts do not work under {}: pods with a user namespace are refused ({e})",
                state_dir.display()
            );
            false
        }
    }
}

fn now() -> i64 {
    crate::ids::now_nanos()
}

impl Containers {
    fn arc(&self) -> Arc<Containers> {
        self.me.upgrade().expect("Containers used after drop")
    }

    fn runtime(&self, handler: &str) -> Result<Arc<dyn OciRuntime>, Error> {
        let name = if handler.is_empty() {
            self.config.default_runtime.as_str()
        } else {
            handler
        };
        self.deps.runtimes.get(name).cloned().ok_or_else(|| {
            Error::FailedPrecondition(format!("runtime handler {name:?} is not configured"))
        })
    }

    /// Whether pods may have user namespaces (the filesystems the
    /// containers' mounts are staged on can be id-mapped).
    pub fn user_namespaces(&self) -> bool {
        self.deps.facts.idmapped_mounts
    }

    /// The runtime handlers and what each supports, for Status.
    pub async fn handler_features(&self) -> Vec<(String, RuntimeFeatures)> {
        let mut out = Vec::new();
        for (name, r) in &self.deps.runtimes {
            out.push((name.clone(), r.features().await));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Every change of a container, from now on.
    pub fn subscribe(
        &self,
    ) -> tokio::sync::broadcast::Receiver<crate::objects::Event<ContainerRecord>> {
        self.registry.subscribe()
    }

    pub fn status(&self, id: &str) -> Result<Arc<ContainerRecord>, Error> {
        Ok(self.registry.lookup(id)?.snapshot())
    }

    /// The record of a running container; an error for any other.
    fn running(&self, id: &str) -> Result<Arc<ContainerRecord>, Error> {
        let rec = self.status(id)?;
        if rec.state != ContainerState::Running {
            return Err(Error::FailedPrecondition(format!(
                "container {} is not running",
                rec.id
            )));
        }
        Ok(rec)
    }

    pub fn list(&self, filter: &ContainerFilter) -> Vec<Arc<ContainerRecord>> {
        let records = match &filter.id {
            Some(id) if !id.is_empty() => self
                .registry
                .lookup(id)
                .map(|e| e.snapshot())
                .into_iter()
                .collect(),
            _ => self.registry.records(),
        };
        let mut out: Vec<Arc<ContainerRecord>> = records
            .into_iter()
            .filter(|r| filter.state.is_none_or(|s| visible_state(r.state) == s))
            .filter(|r| {
                filter
                    .sandbox_id
                    .as_ref()
                    .is_none_or(|s| r.spec.sandbox_id.starts_with(s.as_str()))
            })
            .filter(|r| {
                filter
                    .labels
                    .iter()
                    .all(|(k, v)| r.spec.labels.get(k) == Some(v))
            })
            .collect();
        out.sort_by_key(|r| std::cmp::Reverse(r.created_at));
        out
    }

    /// The ids of a sandbox's containers.
    pub fn ids_in_sandbox(&self, sandbox_id: &str) -> Vec<String> {
        self.registry
            .records()
            .into_iter()
            .filter(|r| r.spec.sandbox_id == sandbox_id)
            .map(|r| r.id.clone())
            .collect()
    }

    /// The OCI spec the container was created with (`config.json`).
    pub fn runtime_spec(&self, rec: &ContainerRecord) -> Option<serde_json::Value> {
        let bytes = std::fs::read(rec.dir.join("config.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// Whether a container has (or may still have) a running process.
pub(crate) fn live(s: ContainerState) -> bool {
    matches!(s, ContainerState::Created | ContainerState::Running)
}

/// The state CRI reports: the transitional ones are shown as what they
/// lead from.
pub fn visible_state(s: ContainerState) -> ContainerState {
    match s {
        ContainerState::Creating => ContainerState::Created,
        ContainerState::Removing => ContainerState::Exited,
        s => s,
    }
}
