//! The sandbox's own types: what a pod asks for (`SandboxSpec`) and what the
//! runtime records about it (`SandboxRecord`). The gRPC layer converts CRI
//! messages into these after validating them.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::cgroups::CgroupLimits;
use crate::process::ProcessRef;
use crate::userns::UserNamespaceMaps;

/// How a namespace is provided, as CRI's `NamespaceMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NamespaceMode {
    /// One namespace for the whole pod.
    Pod,
    /// One per container (PID only).
    Container,
    /// The host's namespace.
    Node,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsConfig {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    pub container_port: i32,
    pub host_port: i32,
    pub host_ip: String,
}

/// The identity kubelet gives a sandbox; two live sandboxes never share it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SandboxMetadata {
    pub name: String,
    pub uid: String,
    pub namespace: String,
    pub attempt: u32,
}

/// A validated RunPodSandbox request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxSpec {
    pub metadata: SandboxMetadata,
    pub hostname: String,
    pub log_directory: String,
    pub dns: Option<DnsConfig>,
    pub port_mappings: Vec<PortMapping>,
    pub labels: HashMap<String, String>,
    pub annotations: HashMap<String, String>,
    /// Absolute cgroup path of the pod (already normalised).
    pub cgroup_parent: String,
    pub network: NamespaceMode,
    pub pid: NamespaceMode,
    pub ipc: NamespaceMode,
    /// A user namespace of the pod's own, owning its other namespaces;
    /// `None`: the host's.
    #[serde(default)]
    pub userns: Option<UserNamespaceMaps>,
    /// Namespaced sysctls, keys in dotted form.
    pub sysctls: BTreeMap<String, String>,
    /// The handler name as requested (empty = default).
    pub runtime_handler: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxState {
    /// Resources are being set up; a record left in this state by a crash is
    /// rolled back on the next start.
    Creating,
    Ready,
    NotReady,
    /// Resources are being released; finished on the next start if a crash
    /// interrupts it.
    Removing,
}

/// What the store keeps about a sandbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub id: String,
    pub spec: SandboxSpec,
    pub state: SandboxState,
    pub created_at: i64,
    /// The infra process holding the pod's namespaces.
    pub infra: Option<ProcessRef>,
    /// `<state>/sandboxes/<id>`: resolv.conf, hostname, shm.
    pub dir: PathBuf,
    /// The bind-mounted network namespace (pod network only).
    pub netns_path: Option<PathBuf>,
    /// The tmpfs mounted for the pod's /dev/shm (pod IPC only).
    pub shm_path: Option<PathBuf>,
    /// `<cgroup_parent>/<id>`, the infra process's cgroup.
    pub cgroup: String,
    /// The CNI network the pod was (or is being) attached to; DEL is due
    /// while this is set.
    pub cni_network: Option<String>,
    /// Pod IPs, primary first.
    pub ips: Vec<String>,
    /// The pod-level resources of kubelet's last UpdatePodSandboxResources.
    #[serde(default)]
    pub resources: Option<PodResources>,
}

/// What kubelet sends for a whole pod on an in-place resize: the pod's
/// overhead and its resources (what it gave the pod's cgroup).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodResources {
    pub overhead: CgroupLimits,
    pub resources: CgroupLimits,
}

impl SandboxRecord {
    pub fn resolv_conf_path(&self) -> PathBuf {
        self.dir.join("resolv.conf")
    }
    pub fn hostname_path(&self) -> PathBuf {
        self.dir.join("hostname")
    }
}
