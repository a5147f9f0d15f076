//! The CRI container config, the pod and the image config turned into an
//! OCI runtime spec (`config.json` of the container's bundle).
//!
//! The spec is built field by field from empty values ([`base`]): the
//! `oci-spec` defaults describe another runtime's container (hostname,
//! rlimits, namespaces), none of which a CRI container may inherit by
//! accident. Each [`Step`] fills one part of it from the [`SpecInputs`]:
//! the process's arguments, its user, the default mounts, the namespaces,
//! the seccomp profile, and so on; [`build`] runs [`STEPS`] in order.
//!
//! Adding a step (user namespaces, say: uid/gid mappings and idmapped
//! mounts):
//! - write `fn with_something(i: &SpecInputs, spec: &mut Spec) ->
//!   Result<(), ContainerError>` in the file of its concern (or a new
//!   one). It reads what it needs from the inputs (add a field to
//!   [`SpecInputs`] if they lack it) and reaches its part of the spec
//!   through [`base`]'s accessors, which make a missing part empty;
//!   lists are added to, not replaced, so another step's entries stay.
//! - put it in [`STEPS`]: a step that adjusts what another one wrote
//!   (idmapping the user mounts) runs after it; a step that can fail runs
//!   where its error should win over the others' (the request's own
//!   mistakes are reported in the order of the fields).
//! - give it unit tests of what it sets and, with
//!   `test_support::assert_changes_only`, of what it leaves alone. The
//!   snapshots in `testdata/` hold the whole spec of a few containers.

mod annotations;
mod base;
mod devices;
mod mounts;
mod namespaces;
mod process;
mod resources;
mod security;

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDeviceType, Spec};

use super::error::ContainerError;
use super::spec::{ContainerRecord, Propagation};
use super::user::ResolvedUser;
use crate::image::manifest::RunConfig;
use crate::pod::PodContext;
use crate::userns::UserNamespaceMaps;

pub use namespaces::namespaces;
pub use process::{command_line, environment, oom_score_adj};
pub use resources::{cgroups_path, resources};

/// What the host offers, found once at start.
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    /// Controllers live on cgroup v2 (a unified host).
    pub cgroup_v2: bool,
    /// The hugetlb controller is there for the cgroup version in use.
    pub hugetlb: bool,
    /// Swap accounting is there (`memory.memsw.*` on v1, `memory.swap.max`
    /// on v2).
    pub swap: bool,
    /// The lowest `oom_score_adj` a container may get, when restricted.
    pub oom_score_adj_min: Option<i64>,
    /// The systemd cgroup driver is in use.
    pub systemd_cgroup: bool,
    /// Directories under the state directory can be id-mapped, so pods
    /// may have user namespaces.
    pub idmapped_mounts: bool,
}

/// A CRI mount whose host side has been checked and resolved.
#[derive(Debug, Clone)]
pub struct ResolvedMount {
    pub container_path: String,
    /// The host path with symlinks resolved.
    pub source: PathBuf,
    pub readonly: bool,
    pub recursive_read_only: bool,
    pub propagation: Propagation,
    /// The mount's own id mappings, if the request set them.
    pub id_maps: Option<UserNamespaceMaps>,
    /// The staged root filesystem of an image: also nosuid and nodev.
    pub image_volume: bool,
}

/// A host device to expose, from a CRI `Device` or (privileged) /dev.
#[derive(Debug, Clone)]
pub struct ResolvedDevice {
    pub container_path: String,
    pub kind: LinuxDeviceType,
    pub major: i64,
    pub minor: i64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub permissions: String,
}

/// Everything the spec is made from.
pub struct SpecInputs<'a> {
    pub rec: &'a ContainerRecord,
    pub pod: &'a PodContext,
    pub image: &'a RunConfig,
    pub user: &'a ResolvedUser,
    pub mounts: &'a [ResolvedMount],
    pub devices: &'a [ResolvedDevice],
    /// The /etc/hosts to bind when no CRI mount provides one.
    pub hosts_file: &'a Path,
    /// The init pid of the container whose PID namespace `Target` joins.
    pub target_pid: Option<i32>,
    pub host: &'a HostFacts,
}

/// One step of the build: fills its part of the spec from the inputs.
pub type Step = fn(&SpecInputs<'_>, &mut Spec) -> Result<(), ContainerError>;

/// The steps of [`build`], in order. Their order sets the order of the
/// mounts in the spec and which error a request with several mistakes
/// gets.
pub const STEPS: &[Step] = &[
    process::with_args,
    process::with_env,
    process::with_cwd,
    process::with_terminal,
    process::with_user,
    process::with_capabilities,
    process::with_no_new_privileges,
    process::with_apparmor,
    process::with_oom_score_adj,
    process::with_selinux,
    mounts::with_root,
    mounts::with_default_mounts,
    mounts::with_pod_files,
    mounts::with_user_mounts,
    resources::with_resources,
    resources::with_cgroups_path,
    devices::with_device_rules,
    devices::with_device_nodes,
    security::with_seccomp,
    namespaces::with_namespaces,
    namespaces::with_id_mappings,
    security::with_masked_paths,
    annotations::with_annotations,
];

/// The whole spec: every step of [`STEPS`] on an empty one.
pub fn build(i: &SpecInputs<'_>) -> Result<Spec, ContainerError> {
    let mut spec = base::empty_spec();
    for step in STEPS {
        step(i, &mut spec)?;
    }
    Ok(spec)
}

#[cfg(test)]
mod snapshots;
#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;
