//! What a pod sandbox hands its containers: the [`PodContext`], a narrow
//! and explicit view (namespaces to join, the pod's files, addresses,
//! cgroup parent, runtime handler) instead of the sandbox's own record.

use std::path::PathBuf;

use crate::errors::Error;
use crate::userns::UserNamespaceMaps;

/// The namespaces of a pod that its containers join, by path. `None`: the
/// pod uses the host's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNamespaces {
    pub network: Option<PathBuf>,
    pub uts: Option<PathBuf>,
    pub ipc: Option<PathBuf>,
    /// The pod's user namespace, which owns the others.
    pub user: Option<PathBuf>,
    /// The pod's PID namespace, for containers that share it.
    pub pid: PathBuf,
}

/// The files a pod's containers bind-mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFiles {
    pub hostname: PathBuf,
    pub resolv_conf: PathBuf,
    /// The pod's /dev/shm tmpfs; `None`: the host's IPC, so the host's
    /// /dev/shm.
    pub shm: Option<PathBuf>,
}

/// One pod sandbox as its containers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodContext {
    /// The sandbox's full id.
    pub id: String,
    /// Whether containers may be created in it.
    pub ready: bool,
    /// The runtime handler (RuntimeClass) as requested; empty: the default.
    pub runtime_handler: String,
    /// The pod's cgroup (absolute); containers' cgroups go below it.
    pub cgroup_parent: String,
    /// Where kubelet wants the containers' logs; empty: nowhere.
    pub log_directory: String,
    /// The hostname the pod asked for (may be empty).
    pub hostname: String,
    /// The pod's IPs, primary first.
    pub ips: Vec<String>,
    /// The pod is on the host's network, so in the host's UTS namespace
    /// with the host's hostname.
    pub host_network: bool,
    /// The id mappings of the pod's user namespace; `None`: the host's.
    pub userns: Option<UserNamespaceMaps>,
    /// `None` when the infra process that holds them is gone.
    pub namespaces: Option<PodNamespaces>,
    pub files: PodFiles,
}

impl PodContext {
    /// The hostname a container of the pod has: the pod's, or the host's
    /// for a pod on the host's network (which keeps the host's UTS
    /// namespace).
    pub fn container_hostname(&self) -> String {
        if !self.host_network {
            return self.hostname.clone();
        }
        nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The namespaces to join; an error when the pod has lost them.
    pub fn namespaces(&self) -> Result<&PodNamespaces, Error> {
        self.namespaces.as_ref().ok_or_else(|| {
            Error::FailedPrecondition(format!("pod sandbox {} has no infra process", self.id))
        })
    }
}

/// Where containers find their pods: the sandboxes (and fakes in tests).
pub trait PodLookup: Send + Sync {
    /// The pod with `id` (or a unique id prefix).
    fn pod(&self, id: &str) -> Result<PodContext, Error>;
}
