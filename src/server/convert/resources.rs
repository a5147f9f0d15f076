//! CRI `LinuxContainerResources` to the domain's [`Resources`] (checked)
//! and back.

use std::collections::BTreeMap;

use crate::api;
use crate::container::{ContainerError, Resources};

fn invalid(field: &str, message: impl Into<String>) -> ContainerError {
    ContainerError::invalid(field, message)
}

/// CRI `LinuxContainerResources` as the domain's `Resources`, checked;
/// errors name `field` and the member.
pub fn resources_from(
    r: Option<api::LinuxContainerResources>,
    field: &str,
) -> Result<Resources, ContainerError> {
    let r = r.unwrap_or_default();
    let f = |name: &str| format!("{field}.{name}");
    check_cpu_and_memory(&r, &f)?;
    check_cpusets(&r, &f)?;
    let hugepage_limits = hugepage_limits_from(&r.hugepage_limits, &f)?;
    check_unified(&r, &f)?;
    Ok(Resources {
        cpu_period: r.cpu_period,
        cpu_quota: r.cpu_quota,
        cpu_shares: r.cpu_shares,
        memory_limit_in_bytes: r.memory_limit_in_bytes,
        memory_swap_limit_in_bytes: r.memory_swap_limit_in_bytes,
        oom_score_adj: r.oom_score_adj,
        cpuset_cpus: r.cpuset_cpus,
        cpuset_mems: r.cpuset_mems,
        hugepage_limits,
        unified: r.unified.into_iter().collect::<BTreeMap<_, _>>(),
    })
}

fn check_cpu_and_memory(
    r: &api::LinuxContainerResources,
    f: &dyn Fn(&str) -> String,
) -> Result<(), ContainerError> {
    if r.cpu_shares < 0 {
        return Err(invalid(&f("cpu_shares"), "must not be negative"));
    }
    if r.cpu_period < 0 {
        return Err(invalid(&f("cpu_period"), "must not be negative"));
    }
    if r.memory_limit_in_bytes < 0 {
        return Err(invalid(&f("memory_limit_in_bytes"), "must not be negative"));
    }
    if r.memory_swap_limit_in_bytes < 0 && r.memory_swap_limit_in_bytes != -1 {
        return Err(invalid(
            &f("memory_swap_limit_in_bytes"),
            "must be positive, or -1 for unlimited swap",
        ));
    }
    if !(-1000..=1000).contains(&r.oom_score_adj) {
        return Err(invalid(
            &f("oom_score_adj"),
            "must be between -1000 and 1000",
        ));
    }
    Ok(())
}

/// CPU and memory node lists go to cgroup files as they are.
fn check_cpusets(
    r: &api::LinuxContainerResources,
    f: &dyn Fn(&str) -> String,
) -> Result<(), ContainerError> {
    for (name, v) in [
        ("cpuset_cpus", &r.cpuset_cpus),
        ("cpuset_mems", &r.cpuset_mems),
    ] {
        if !v
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ',' | '-'))
        {
            return Err(invalid(
                &f(name),
                format!("{v:?} is not a CPU/node list like 0-3,5"),
            ));
        }
    }
    Ok(())
}

/// A page size ends up in a cgroup file name (`hugetlb.2MB.max`): only `<n>KB|MB|GB`.
fn hugepage_limits_from(
    limits: &[api::HugepageLimit],
    f: &dyn Fn(&str) -> String,
) -> Result<Vec<(String, u64)>, ContainerError> {
    let mut hugepages = Vec::new();
    for (i, h) in limits.iter().enumerate() {
        let ok = h
            .page_size
            .strip_suffix("KB")
            .or_else(|| h.page_size.strip_suffix("MB"))
            .or_else(|| h.page_size.strip_suffix("GB"))
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        if !ok {
            return Err(invalid(
                &f(&format!("hugepage_limits[{i}].page_size")),
                format!("{:?} is not a page size like 2MB", h.page_size),
            ));
        }
        hugepages.push((h.page_size.clone(), h.limit));
    }
    Ok(hugepages)
}

/// Unified keys are file names in the container's cgroup directory.
fn check_unified(
    r: &api::LinuxContainerResources,
    f: &dyn Fn(&str) -> String,
) -> Result<(), ContainerError> {
    for k in r.unified.keys() {
        if k.contains('/') || k.starts_with('.') || k.is_empty() {
            return Err(invalid(
                &f("unified"),
                format!("{k:?} is not a cgroup file name"),
            ));
        }
    }
    Ok(())
}

pub fn resources_to_api(r: &Resources) -> api::LinuxContainerResources {
    api::LinuxContainerResources {
        cpu_period: r.cpu_period,
        cpu_quota: r.cpu_quota,
        cpu_shares: r.cpu_shares,
        memory_limit_in_bytes: r.memory_limit_in_bytes,
        oom_score_adj: r.oom_score_adj,
        cpuset_cpus: r.cpuset_cpus.clone(),
        cpuset_mems: r.cpuset_mems.clone(),
        hugepage_limits: r
            .hugepage_limits
            .iter()
            .map(|(page_size, limit)| api::HugepageLimit {
                page_size: page_size.clone(),
                limit: *limit,
            })
            .collect(),
        unified: r.unified.clone().into_iter().collect(),
        memory_swap_limit_in_bytes: r.memory_swap_limit_in_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_update_keeps_other_limits() {
        let old = Resources {
            cpu_shares: 256,
            cpu_quota: 50000,
            cpu_period: 100000,
            memory_limit_in_bytes: 1 << 27,
            oom_score_adj: 998,
            ..Default::default()
        };
        let upd = resources_from(
            Some(api::LinuxContainerResources {
                cpuset_cpus: "0".into(),
                ..Default::default()
            }),
            "linux",
        )
        .unwrap();
        let m = old.merged(&upd);
        assert_eq!(m.cpuset_cpus, "0");
        assert_eq!(m.cpu_shares, 256);
        assert_eq!(m.memory_limit_in_bytes, 1 << 27);
        assert_eq!(m.oom_score_adj, 998);
    }
}
