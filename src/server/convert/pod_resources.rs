//! UpdatePodSandboxResources' `overhead` and `resources` (CRI
//! `LinuxContainerResources`, checked as a container's are) to the limits
//! a pod records.

use super::resources::resources_from;
use crate::api;
use crate::cgroups::CgroupLimits;
use crate::container::{ContainerError, Resources};
use crate::sandbox::PodResources;

/// The pod's overhead and resources, checked; errors name the field.
pub fn pod_resources_from(
    overhead: Option<api::LinuxContainerResources>,
    resources: Option<api::LinuxContainerResources>,
) -> Result<PodResources, ContainerError> {
    Ok(PodResources {
        overhead: limits(resources_from(overhead, "overhead")?),
        resources: limits(resources_from(resources, "resources")?),
    })
}

/// What of the checked resources a pod-level cgroup takes: CPU, memory and
/// cpuset (kubelet sizes pods by CPU and memory only).
fn limits(r: Resources) -> CgroupLimits {
    CgroupLimits {
        cpu_period: r.cpu_period.max(0) as u64,
        cpu_quota: r.cpu_quota,
        cpu_shares: r.cpu_shares.max(0) as u64,
        memory_limit_in_bytes: r.memory_limit_in_bytes,
        cpuset_cpus: r.cpuset_cpus,
        cpuset_mems: r.cpuset_mems,
    }
}
