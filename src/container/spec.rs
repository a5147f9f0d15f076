//! The container's own types: what a CreateContainer request asks for
//! (`ContainerSpec`, validated by the gRPC layer) and what the runtime
//! records about a container (`ContainerRecord`).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::oci::{ContainerHandle, ExitStatus};
use crate::process::ProcessRef;
use crate::userns::UserNamespaceMaps;

/// The identity kubelet gives a container inside its sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ContainerMetadata {
    pub name: String,
    pub attempt: u32,
}

/// Mount propagation, as CRI's `MountPropagation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Propagation {
    #[default]
    Private,
    /// Host mounts appear in the container (rslave).
    HostToContainer,
    /// Both ways (rshared).
    Bidirectional,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    pub container_path: String,
    /// As the request gave it (reported back verbatim); empty for an image
    /// volume.
    pub host_path: String,
    pub readonly: bool,
    pub recursive_read_only: bool,
    pub selinux_relabel: bool,
    pub propagation: Propagation,
    /// An id-mapped mount with these mappings (a user-namespaced pod's
    /// mounts are id-mapped with the pod's mappings without them).
    #[serde(default)]
    pub id_maps: Option<UserNamespaceMaps>,
    /// Set for an image volume: the image's root filesystem is mounted
    /// instead of a host path.
    #[serde(default)]
    pub image: Option<ImageVolumeSpec>,
}

/// An image mounted as a volume (CRI `Mount.image` and `image_sub_path`),
/// as the request gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageVolumeSpec {
    /// The image as kubelet names it (usually its id).
    pub image: String,
    /// The name the user wrote in the pod spec, if kubelet sent it.
    pub user_specified_image: String,
    /// A directory of the image, relative to its root, mounted instead of
    /// the whole image; empty for the root.
    pub sub_path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSpec {
    pub container_path: String,
    pub host_path: String,
    /// Some of `r`, `w`, `m`.
    pub permissions: String,
}

/// A container's cgroup limits, as CRI's `LinuxContainerResources`: zero
/// and empty mean "not set".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    pub cpu_period: i64,
    pub cpu_quota: i64,
    pub cpu_shares: i64,
    pub memory_limit_in_bytes: i64,
    pub memory_swap_limit_in_bytes: i64,
    pub oom_score_adj: i64,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    /// Page size (`2MB`, `1GB`) → limit in bytes.
    pub hugepage_limits: Vec<(String, u64)>,
    /// cgroup v2 files → values.
    pub unified: BTreeMap<String, String>,
}

impl Resources {
    /// This update laid over `self`: every field the update sets replaces
    /// the one in force, the others stay (kubelet's CPU manager sends only
    /// `cpuset_cpus`). `oom_score_adj` belongs to the process and is not
    /// changed by an update.
    pub fn merged(&self, update: &Resources) -> Resources {
        let pick = |new: i64, old: i64| if new != 0 { new } else { old };
        let pick_s = |new: &String, old: &String| {
            if new.is_empty() {
                old.clone()
            } else {
                new.clone()
            }
        };
        let mut unified = self.unified.clone();
        unified.extend(update.unified.clone());
        Resources {
            cpu_period: pick(update.cpu_period, self.cpu_period),
            cpu_quota: pick(update.cpu_quota, self.cpu_quota),
            cpu_shares: pick(update.cpu_shares, self.cpu_shares),
            memory_limit_in_bytes: pick(update.memory_limit_in_bytes, self.memory_limit_in_bytes),
            memory_swap_limit_in_bytes: pick(
                update.memory_swap_limit_in_bytes,
                self.memory_swap_limit_in_bytes,
            ),
            oom_score_adj: self.oom_score_adj,
            cpuset_cpus: pick_s(&update.cpuset_cpus, &self.cpuset_cpus),
            cpuset_mems: pick_s(&update.cpuset_mems, &self.cpuset_mems),
            hugepage_limits: if update.hugepage_limits.is_empty() {
                self.hugepage_limits.clone()
            } else {
                update.hugepage_limits.clone()
            },
            unified,
        }
    }
}

/// Which PID namespace a container is in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PidMode {
    /// Its own.
    Container,
    /// The pod's (the infra process is its PID 1).
    Pod,
    /// The host's.
    Node,
    /// Another container's (`kubectl debug --target`).
    Target(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeccompSpec {
    Unconfined,
    RuntimeDefault,
    /// An absolute path to a profile file on the host.
    Localhost(String),
}

/// AppArmor as requested: CRI's profile type and the Localhost name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppArmorSpec {
    /// As CRI numbers `SecurityProfile.ProfileType` (see [`AppArmorKind`]);
    /// stored so.
    pub profile_type: i32,
    pub localhost_ref: String,
}

/// The kinds of AppArmor profile CRI defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppArmorKind {
    RuntimeDefault,
    Unconfined,
    Localhost,
}

impl AppArmorKind {
    /// The kind CRI's profile type `n` names, if any.
    pub fn of(n: i32) -> Option<AppArmorKind> {
        match n {
            0 => Some(AppArmorKind::RuntimeDefault),
            1 => Some(AppArmorKind::Unconfined),
            2 => Some(AppArmorKind::Localhost),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelinuxSpec {
    pub user: String,
    pub role: String,
    pub r#type: String,
    pub level: String,
}

/// The user namespace a CreateContainer request names. Kubelet repeats the
/// pod's; a container cannot have another one than its pod.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum UsernsRequest {
    /// No options: whatever the pod has.
    #[default]
    AsPod,
    /// The host's (`NODE`).
    Host,
    /// The pod's, with these mappings (`POD`).
    Pod(UserNamespaceMaps),
}

impl UsernsRequest {
    /// Whether a pod with `pod` (its user namespace's mappings, if any)
    /// gives what this asks for.
    pub fn matches(&self, pod: Option<&UserNamespaceMaps>) -> bool {
        match self {
            UsernsRequest::AsPod => true,
            UsernsRequest::Host => pod.is_none(),
            UsernsRequest::Pod(maps) => pod == Some(maps),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecuritySpec {
    pub privileged: bool,
    pub pid: PidMode,
    #[serde(default)]
    pub userns: UsernsRequest,
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub run_as_username: String,
    pub supplemental_groups: Vec<i64>,
    /// `Strict`: only the primary and the listed groups, none from the
    /// image's /etc/group.
    pub supplemental_groups_strict: bool,
    pub readonly_rootfs: bool,
    pub add_capabilities: Vec<String>,
    pub drop_capabilities: Vec<String>,
    pub no_new_privs: bool,
    /// Empty means the runtime's defaults.
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    pub seccomp: SeccompSpec,
    pub apparmor: AppArmorSpec,
    pub selinux: Option<SelinuxSpec>,
}

/// A validated CreateContainer request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    pub sandbox_id: String,
    pub metadata: ContainerMetadata,
    /// The image as kubelet names it (`config.image.image`: usually the id).
    pub image: String,
    /// The name the user wrote in the pod spec, if kubelet sent it.
    pub user_specified_image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub working_dir: String,
    pub envs: Vec<(String, String)>,
    pub mounts: Vec<MountSpec>,
    pub devices: Vec<DeviceSpec>,
    pub labels: HashMap<String, String>,
    pub annotations: HashMap<String, String>,
    /// Relative to the sandbox's log directory; empty = no log.
    pub log_path: String,
    pub stdin: bool,
    pub stdin_once: bool,
    pub tty: bool,
    pub resources: Resources,
    pub security: SecuritySpec,
    /// The signal that stops the container (CRI `stop_signal`); 0 = the
    /// image's, else SIGTERM.
    pub stop_signal: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerState {
    /// Resources are being set up; rolled back on the next start if a
    /// crash interrupts it.
    Creating,
    Created,
    Running,
    Exited,
    /// Resources are being released; finished on the next start.
    Removing,
}

/// What the store keeps about a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub spec: ContainerSpec,
    pub state: ContainerState,
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    /// `sha256:<config digest>`.
    pub image_id: String,
    /// The name ContainerStatus reports (`image.image`).
    pub image_name: String,
    /// The repo digest ContainerStatus reports (`image_ref`).
    pub image_ref: String,
    /// Chain ids of the image layers the rootfs stacks, bottom first.
    pub layers: Vec<String>,
    /// The images mounted as volumes, whose layers are held like `layers`.
    #[serde(default)]
    pub image_volumes: Vec<ImageVolumeRecord>,
    /// Absolute log file, if any.
    pub log_path: Option<PathBuf>,
    /// `<state>/containers/<id>`: bundle, rootfs mount point, exit file.
    pub dir: PathBuf,
    /// `<root>/containers/<id>`: the writable layer.
    pub layer_dir: PathBuf,
    /// The monitor's control socket, `<state>/sockets/<short id>.sock`: a
    /// unix socket path must stay under 108 bytes, which one in `dir`
    /// (with the 64-character id) would not on every state dir.
    pub socket: PathBuf,
    /// `<cgroup_parent>/<id>`.
    pub cgroup: String,
    pub runtime_handler: String,
    pub monitor: Option<ProcessRef>,
    pub init: Option<ProcessRef>,
    /// Whether the container has a PID namespace of its own (its init's
    /// exit then ends every process of it).
    pub own_pid_namespace: bool,
    /// The signal StopContainer sends first.
    pub stop_signal: i32,
    /// The limits in force.
    pub resources: Resources,
    /// uid, gid and groups the process runs with.
    pub user: Option<crate::container::user::ResolvedUser>,
    /// The runtime has deleted its state of the exited container (known
    /// only to this run of the daemon: after a restart, delete again).
    #[serde(skip)]
    pub runtime_deleted: bool,
}

/// An image volume of a container: what its staging mount stacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageVolumeRecord {
    /// Its mount in the request: `spec.mounts[index]`, staged at
    /// `<dir>/image-volumes/<index>`.
    pub index: usize,
    /// `sha256:<config digest>` of the image mounted.
    pub image_id: String,
    /// Chain ids of the image's layers, bottom first.
    pub layers: Vec<String>,
}

impl ContainerRecord {
    /// Every layer the container holds: its root filesystem's and its
    /// image volumes', once per use, for the image store's counts.
    pub fn held_layers(&self) -> Vec<String> {
        let volumes = self.image_volumes.iter().flat_map(|v| &v.layers);
        self.layers.iter().chain(volumes).cloned().collect()
    }

    pub fn bundle(&self) -> PathBuf {
        self.dir.clone()
    }
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
    pub fn upper_dir(&self) -> PathBuf {
        self.layer_dir.join("upper")
    }
    pub fn work_dir(&self) -> PathBuf {
        self.layer_dir.join("work")
    }

    /// The container as its runtime backend finds it.
    pub fn handle(&self) -> ContainerHandle {
        ContainerHandle {
            id: self.id.clone(),
            bundle: self.bundle(),
            socket: self.socket.clone(),
            monitor: self.monitor,
            init: self.init,
            state_deleted: self.runtime_deleted,
        }
    }

    /// Records an exit the monitor reported.
    pub fn set_exited(&mut self, exit: &ExitStatus) {
        self.state = ContainerState::Exited;
        self.finished_at = exit.finished_at;
        self.exit_code = exit.exit_code;
        self.reason = if exit.oom_killed {
            "OOMKilled".to_string()
        } else if exit.exit_code == 0 {
            "Completed".to_string()
        } else {
            "Error".to_string()
        };
    }
}
