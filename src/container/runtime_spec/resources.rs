//! The container's cgroup: its limits (`linux.resources` but the device
//! rules) and its path (`linux.cgroupsPath`).

use std::collections::HashMap;
use std::path::PathBuf;

use oci_spec::runtime::{LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxResources, Spec};

use super::base::{linux_of, resources_of};
use super::{HostFacts, SpecInputs};
use crate::container::error::ContainerError;
use crate::container::spec::{ContainerRecord, Resources};
use crate::pod::PodContext;

/// The OCI `linux.resources` of a container (without device rules).
pub fn resources(r: &Resources, host: &HostFacts) -> Result<LinuxResources, ContainerError> {
    let mut out = LinuxResources::default();
    out.set_devices(None);
    out.set_memory(memory(r, host));
    out.set_cpu(cpu(r));
    out.set_hugepage_limits(hugepage_limits(r, host));
    out.set_unified(unified(r, host)?);
    Ok(out)
}

/// The memory limit and memory plus swap, if either is set.
fn memory(r: &Resources, host: &HostFacts) -> Option<LinuxMemory> {
    let mut memory = LinuxMemory::default();
    let mut any = false;
    if r.memory_limit_in_bytes > 0 {
        memory.set_limit(Some(r.memory_limit_in_bytes));
        any = true;
    }
    // Memory plus swap; equal to the limit means no swap, which is what a
    // memory limit means to kubelet.
    if host.swap {
        let swap = if r.memory_swap_limit_in_bytes > 0 {
            r.memory_swap_limit_in_bytes
        } else {
            r.memory_limit_in_bytes
        };
        if swap > 0 {
            memory.set_swap(Some(swap));
            any = true;
        }
    }
    any.then_some(memory)
}

/// Shares, quota, period and cpusets, if any is set.
fn cpu(r: &Resources) -> Option<LinuxCpu> {
    let mut cpu = LinuxCpu::default();
    let mut any = false;
    if r.cpu_shares > 0 {
        cpu.set_shares(Some(r.cpu_shares as u64));
        any = true;
    }
    if r.cpu_quota != 0 {
        cpu.set_quota(Some(r.cpu_quota));
        any = true;
    }
    if r.cpu_period > 0 {
        cpu.set_period(Some(r.cpu_period as u64));
        any = true;
    }
    if !r.cpuset_cpus.is_empty() {
        cpu.set_cpus(Some(r.cpuset_cpus.clone()));
        any = true;
    }
    if !r.cpuset_mems.is_empty() {
        cpu.set_mems(Some(r.cpuset_mems.clone()));
        any = true;
    }
    any.then_some(cpu)
}

/// kubelet sends limits for every page size, also where the hugetlb
/// controller is missing (as on this kind of hybrid host): skipped then,
/// as other runtimes do.
fn hugepage_limits(r: &Resources, host: &HostFacts) -> Option<Vec<LinuxHugepageLimit>> {
    if !host.hugetlb || r.hugepage_limits.is_empty() {
        return None;
    }
    let limits = r
        .hugepage_limits
        .iter()
        .map(|(size, limit)| {
            let mut l = LinuxHugepageLimit::default();
            l.set_page_size(size.clone());
            l.set_limit(*limit as i64);
            l
        })
        .collect();
    Some(limits)
}

/// The cgroup v2 files to write, which only a v2 host has.
fn unified(
    r: &Resources,
    host: &HostFacts,
) -> Result<Option<HashMap<String, String>>, ContainerError> {
    if r.unified.is_empty() {
        return Ok(None);
    }
    if !host.cgroup_v2 {
        return Err(ContainerError::invalid(
            "config.linux.resources.unified",
            "cgroup v2 settings, but this host runs its controllers on cgroup v1",
        ));
    }
    let files = r.unified.iter().map(|(k, v)| (k.clone(), v.clone()));
    Ok(Some(files.collect()))
}

/// The `cgroupsPath` the runtime gets: the absolute cgroup path, or
/// `slice:prefix:name` for the systemd driver.
pub fn cgroups_path(rec: &ContainerRecord, pod: &PodContext, systemd: bool) -> String {
    if systemd {
        let slice = pod
            .cgroup_parent
            .rsplit('/')
            .find(|s| !s.is_empty())
            .unwrap_or("system.slice");
        return format!("{slice}:peapod:{}", rec.id);
    }
    rec.cgroup.clone()
}

/// The limits in force; the device rules are the devices step's.
pub fn with_resources(i: &SpecInputs<'_>, spec: &mut Spec) -> Result<(), ContainerError> {
    let mut limits = resources(&i.rec.resources, i.host)?;
    let res = resources_of(spec);
    limits.set_devices(res.devices_mut().take());
    *res = limits;
    Ok(())
}

pub fn with_cgroups_path(i: &SpecInputs<'_>, spec: &mut Spec) -> Result<(), ContainerError> {
    let path = cgroups_path(i.rec, i.pod, i.host.systemd_cgroup);
    linux_of(spec).set_cgroups_path(Some(PathBuf::from(path)));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::runtime_spec::devices::with_device_rules;
    use crate::container::runtime_spec::test_support::*;

    #[test]
    fn resources_as_kubelet_sends_them() {
        let host = HostFacts {
            swap: true,
            ..Default::default()
        };
        let r = Resources {
            cpu_period: 100000,
            cpu_quota: 50000,
            cpu_shares: 256,
            memory_limit_in_bytes: 134217728,
            hugepage_limits: vec![("2MB".into(), 0), ("1GB".into(), 0)],
            ..Default::default()
        };
        let out = resources(&r, &host).unwrap();
        let json = serde_json::to_value(&out).unwrap();
        assert_eq!(json["cpu"]["shares"], 256);
        assert_eq!(json["cpu"]["quota"], 50000);
        assert_eq!(json["cpu"]["period"], 100000);
        assert_eq!(json["memory"]["limit"], 134217728);
        assert_eq!(json["memory"]["swap"], 134217728);
        // No hugetlb controller: the zero limits are left out.
        assert!(json.get("hugepageLimits").is_none(), "{json}");
        // BestEffort: shares 2, nothing else.
        let be = resources(
            &Resources {
                cpu_shares: 2,
                cpu_period: 100000,
                ..Default::default()
            },
            &host,
        )
        .unwrap();
        let json = serde_json::to_value(&be).unwrap();
        assert!(json.get("memory").is_none(), "{json}");
        // unified needs cgroup v2.
        let e = resources(
            &Resources {
                unified: [("memory.high".to_string(), "1".to_string())].into(),
                ..Default::default()
            },
            &host,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("config.linux.resources.unified"),
            "{e}"
        );
        let v2 = HostFacts {
            cgroup_v2: true,
            hugetlb: true,
            ..Default::default()
        };
        let out = resources(
            &Resources {
                unified: [("memory.high".to_string(), "1".to_string())].into(),
                hugepage_limits: vec![("2MB".into(), 4194304)],
                ..Default::default()
            },
            &v2,
        )
        .unwrap();
        let json = serde_json::to_value(&out).unwrap();
        assert_eq!(json["unified"]["memory.high"], "1");
        assert_eq!(json["hugepageLimits"][0]["pageSize"], "2MB");
        assert_eq!(json["hugepageLimits"][0]["limit"], 4194304);
    }

    #[test]
    fn with_resources_sets_the_limits_and_keeps_the_device_rules() {
        let mut f = Fixture::plain();
        f.rec.resources.cpu_shares = 256;
        f.rec.resources.memory_limit_in_bytes = 1 << 20;
        let mut spec = crate::container::runtime_spec::base::empty_spec();
        with_device_rules(&f.inputs(), &mut spec).unwrap();
        with_resources(&f.inputs(), &mut spec).unwrap();
        let j = serde_json::to_value(&spec).unwrap();
        assert_eq!(
            j["linux"]["resources"]["cpu"],
            serde_json::json!({"shares": 256})
        );
        assert_eq!(j["linux"]["resources"]["memory"]["limit"], 1 << 20);
        assert_eq!(j["linux"]["resources"]["devices"][0]["allow"], false);
        let every = Fixture::every_feature();
        let built = crate::container::runtime_spec::build(&every.inputs()).unwrap();
        let rules = serde_json::to_value(&built).unwrap()["linux"]["resources"]["devices"].clone();
        assert_changes_only(
            with_resources,
            &f.inputs(),
            &[
                "/linux/resources/cpu",
                "/linux/resources/memory",
                "/linux/resources/hugepageLimits",
                "/linux/resources/unified",
            ],
        );
        let mut spec = built;
        with_resources(&f.inputs(), &mut spec).unwrap();
        assert_eq!(
            serde_json::to_value(&spec).unwrap()["linux"]["resources"]["devices"],
            rules
        );
    }

    #[test]
    fn with_resources_refuses_unified_on_cgroup_v1() {
        let mut f = Fixture::plain();
        f.rec.resources.unified = [("memory.high".to_string(), "1".to_string())].into();
        let mut spec = crate::container::runtime_spec::base::empty_spec();
        let e = with_resources(&f.inputs(), &mut spec).unwrap_err();
        assert!(
            e.to_string().contains("config.linux.resources.unified"),
            "{e}"
        );
    }

    #[test]
    fn with_cgroups_path_names_the_cgroup_for_the_driver() {
        let mut f = Fixture::plain();
        let j = run(with_cgroups_path, &f.inputs());
        assert_eq!(j["linux"]["cgroupsPath"], "/kubepods/burstable/podu/c1d2");
        f.host.systemd_cgroup = true;
        f.pod.cgroup_parent = "/kubepods.slice/kubepods-pod1.slice".into();
        let j = run(with_cgroups_path, &f.inputs());
        assert_eq!(j["linux"]["cgroupsPath"], "kubepods-pod1.slice:peapod:c1d2");
        f.pod.cgroup_parent = "/".into();
        let j = run(with_cgroups_path, &f.inputs());
        assert_eq!(j["linux"]["cgroupsPath"], "system.slice:peapod:c1d2");
        assert_changes_only(with_cgroups_path, &f.inputs(), &["/linux/cgroupsPath"]);
    }
}
