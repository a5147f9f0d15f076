//! Container RPCs: request validation and conversion between CRI messages
//! and the container domain types.

use std::collections::BTreeMap;
use std::path::{Component, Path};

use crate::api;
use crate::container::{
    security, signals, AppArmorSpec, ContainerError, ContainerFilter, ContainerMetadata,
    ContainerRecord, ContainerSpec, ContainerState, ContainerStatsView, DeviceSpec, MountSpec,
    PidMode, Propagation, Resources, SeccompSpec, SecuritySpec, SelinuxSpec,
};

fn invalid(field: &str, message: impl Into<String>) -> ContainerError {
    ContainerError::invalid(field, message)
}

/// An absolute path without `..` components.
fn check_absolute(p: &str, field: &str) -> Result<(), ContainerError> {
    let path = Path::new(p);
    if p.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if !path.is_absolute() {
        return Err(invalid(field, format!("{p:?} must be an absolute path")));
    }
    if p.contains('\0') || path.components().any(|c| c == Component::ParentDir) {
        return Err(invalid(field, format!("{p:?} must not contain '..'")));
    }
    Ok(())
}

/// CRI `LinuxContainerResources` as the domain's `Resources`, checked.
pub fn resources_from(
    r: Option<api::LinuxContainerResources>,
    field: &str,
) -> Result<Resources, ContainerError> {
    let r = r.unwrap_or_default();
    let f = |name: &str| format!("{field}.{name}");
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
    let mut hugepages = Vec::new();
    for (i, h) in r.hugepage_limits.iter().enumerate() {
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
    for k in r.unified.keys() {
        if k.contains('/') || k.starts_with('.') || k.is_empty() {
            return Err(invalid(
                &f("unified"),
                format!("{k:?} is not a cgroup file name"),
            ));
        }
    }
    Ok(Resources {
        cpu_period: r.cpu_period,
        cpu_quota: r.cpu_quota,
        cpu_shares: r.cpu_shares,
        memory_limit_in_bytes: r.memory_limit_in_bytes,
        memory_swap_limit_in_bytes: r.memory_swap_limit_in_bytes,
        oom_score_adj: r.oom_score_adj,
        cpuset_cpus: r.cpuset_cpus,
        cpuset_mems: r.cpuset_mems,
        hugepage_limits: hugepages,
        unified: r.unified.into_iter().collect::<BTreeMap<_, _>>(),
    })
}

const SC: &str = "config.linux.security_context";

#[allow(deprecated)] // older clients still send the string fields
fn seccomp_from(sc: &api::LinuxContainerSecurityContext) -> Result<SeccompSpec, ContainerError> {
    if let Some(p) = &sc.seccomp {
        return match api::security_profile::ProfileType::try_from(p.profile_type) {
            Ok(api::security_profile::ProfileType::RuntimeDefault) => {
                Ok(SeccompSpec::RuntimeDefault)
            }
            Ok(api::security_profile::ProfileType::Unconfined) => Ok(SeccompSpec::Unconfined),
            Ok(api::security_profile::ProfileType::Localhost) => {
                let field = format!("{SC}.seccomp.localhost_ref");
                check_absolute(&p.localhost_ref, &field)?;
                Ok(SeccompSpec::Localhost(p.localhost_ref.clone()))
            }
            Err(_) => Err(invalid(
                &format!("{SC}.seccomp.profile_type"),
                format!("unknown profile type {}", p.profile_type),
            )),
        };
    }
    // The field before `seccomp`; unset means unconfined, as in other
    // runtimes.
    let old = sc.seccomp_profile_path.as_str();
    match old {
        "" | "unconfined" => Ok(SeccompSpec::Unconfined),
        "runtime/default" | "docker/default" => Ok(SeccompSpec::RuntimeDefault),
        _ => match old.strip_prefix("localhost/") {
            Some(path) => {
                check_absolute(path, &format!("{SC}.seccomp_profile_path"))?;
                Ok(SeccompSpec::Localhost(path.to_string()))
            }
            None => Err(invalid(
                &format!("{SC}.seccomp_profile_path"),
                format!("{old:?} is not runtime/default, unconfined or localhost/<path>"),
            )),
        },
    }
}

#[allow(deprecated)]
fn apparmor_from(sc: &api::LinuxContainerSecurityContext) -> Result<AppArmorSpec, ContainerError> {
    if let Some(p) = &sc.apparmor {
        if api::security_profile::ProfileType::try_from(p.profile_type).is_err() {
            return Err(invalid(
                &format!("{SC}.apparmor.profile_type"),
                format!("unknown profile type {}", p.profile_type),
            ));
        }
        if p.profile_type == 2 && p.localhost_ref.is_empty() {
            return Err(invalid(
                &format!("{SC}.apparmor.localhost_ref"),
                "a Localhost profile needs a name",
            ));
        }
        return Ok(AppArmorSpec {
            profile_type: p.profile_type,
            localhost_ref: p.localhost_ref.clone(),
        });
    }
    let old = sc.apparmor_profile.as_str();
    let (profile_type, localhost_ref) = match old {
        "" | "runtime/default" => (0, String::new()),
        "unconfined" => (1, String::new()),
        _ => match old.strip_prefix("localhost/") {
            Some(name) if !name.is_empty() => (2, name.to_string()),
            _ => {
                return Err(invalid(
                    &format!("{SC}.apparmor_profile"),
                    format!("{old:?} is not runtime/default, unconfined or localhost/<name>"),
                ))
            }
        },
    };
    Ok(AppArmorSpec {
        profile_type,
        localhost_ref,
    })
}

fn security_from(
    sc: Option<api::LinuxContainerSecurityContext>,
) -> Result<SecuritySpec, ContainerError> {
    let sc = sc.unwrap_or_default();
    let ns = sc.namespace_options.clone().unwrap_or_default();
    let pid = match api::NamespaceMode::try_from(ns.pid) {
        Ok(api::NamespaceMode::Container) => PidMode::Container,
        Ok(api::NamespaceMode::Pod) => PidMode::Pod,
        Ok(api::NamespaceMode::Node) => PidMode::Node,
        Ok(api::NamespaceMode::Target) => {
            if ns.target_id.is_empty() {
                return Err(invalid(
                    &format!("{SC}.namespace_options.target_id"),
                    "pid mode TARGET needs a target container id",
                ));
            }
            PidMode::Target(ns.target_id.clone())
        }
        Err(_) => {
            return Err(invalid(
                &format!("{SC}.namespace_options.pid"),
                format!("unknown namespace mode {}", ns.pid),
            ))
        }
    };
    if let Some(u) = &ns.userns_options {
        if u.mode != api::NamespaceMode::Node as i32 {
            return Err(invalid(
                &format!("{SC}.namespace_options.userns_options"),
                "user namespaces are not supported by peapod yet; use mode NODE",
            ));
        }
    }
    let run_as_user = sc.run_as_user.map(|v| v.value);
    let run_as_group = sc.run_as_group.map(|v| v.value);
    if run_as_group.is_some() && run_as_user.is_none() && sc.run_as_username.is_empty() {
        return Err(invalid(
            &format!("{SC}.run_as_group"),
            "run_as_group requires run_as_user or run_as_username",
        ));
    }
    for (name, v) in [("run_as_user", run_as_user), ("run_as_group", run_as_group)] {
        if let Some(v) = v {
            if !(0..=u32::MAX as i64 - 1).contains(&v) {
                return Err(invalid(
                    &format!("{SC}.{name}"),
                    format!("{v} is not a valid id"),
                ));
            }
        }
    }
    for (i, g) in sc.supplemental_groups.iter().enumerate() {
        if !(0..=u32::MAX as i64 - 1).contains(g) {
            return Err(invalid(
                &format!("{SC}.supplemental_groups[{i}]"),
                format!("{g} is not a valid group id"),
            ));
        }
    }
    let caps = sc.capabilities.clone().unwrap_or_default();
    if !caps.add_ambient_capabilities.is_empty() {
        return Err(invalid(
            &format!("{SC}.capabilities.add_ambient_capabilities"),
            "ambient capabilities are not supported by peapod yet",
        ));
    }
    // Checked now, so that an unknown name fails before anything is made.
    security::capability_set(
        &caps.add_capabilities,
        &caps.drop_capabilities,
        sc.privileged,
    )?;
    for (name, list) in [
        ("masked_paths", &sc.masked_paths),
        ("readonly_paths", &sc.readonly_paths),
    ] {
        for (i, p) in list.iter().enumerate() {
            check_absolute(p, &format!("{SC}.{name}[{i}]"))?;
        }
    }
    let selinux = sc.selinux_options.as_ref().and_then(|s| {
        (!(s.user.is_empty() && s.role.is_empty() && s.r#type.is_empty() && s.level.is_empty()))
            .then(|| SelinuxSpec {
                user: s.user.clone(),
                role: s.role.clone(),
                r#type: s.r#type.clone(),
                level: s.level.clone(),
            })
    });
    Ok(SecuritySpec {
        privileged: sc.privileged,
        pid,
        run_as_user,
        run_as_group,
        run_as_username: sc.run_as_username.clone(),
        supplemental_groups: sc.supplemental_groups.clone(),
        supplemental_groups_strict: sc.supplemental_groups_policy
            == api::SupplementalGroupsPolicy::Strict as i32,
        readonly_rootfs: sc.readonly_rootfs,
        add_capabilities: caps.add_capabilities,
        drop_capabilities: caps.drop_capabilities,
        no_new_privs: sc.no_new_privs,
        masked_paths: sc.masked_paths.clone(),
        readonly_paths: sc.readonly_paths.clone(),
        seccomp: seccomp_from(&sc)?,
        apparmor: apparmor_from(&sc)?,
        selinux,
    })
}

/// Validates a CreateContainer request and turns it into a spec. Nothing
/// is created before this has passed.
pub fn spec_from_request(
    req: api::CreateContainerRequest,
) -> Result<ContainerSpec, ContainerError> {
    if req.pod_sandbox_id.is_empty() {
        return Err(invalid("pod_sandbox_id", "must not be empty"));
    }
    let c = req.config.ok_or_else(|| invalid("config", "must be set"))?;
    let md = c
        .metadata
        .ok_or_else(|| invalid("config.metadata", "must be set"))?;
    if md.name.is_empty() {
        return Err(invalid("config.metadata.name", "must not be empty"));
    }
    if md.name.contains(['/', '\0']) || md.name.len() > 253 {
        return Err(invalid(
            "config.metadata.name",
            format!("{:?} is not a valid name", md.name),
        ));
    }
    let image = c.image.unwrap_or_default();
    if image.image.is_empty() && image.user_specified_image.is_empty() {
        return Err(invalid("config.image.image", "must not be empty"));
    }
    let mut mounts = Vec::new();
    for (i, m) in c.mounts.into_iter().enumerate() {
        let field = format!("config.mounts[{i}]");
        check_absolute(&m.container_path, &format!("{field}.container_path"))?;
        if m.image.as_ref().is_some_and(|s| !s.image.is_empty()) {
            return Err(invalid(
                &format!("{field}.image"),
                "image volume mounts are not supported by peapod yet",
            ));
        }
        check_absolute(&m.host_path, &format!("{field}.host_path"))?;
        if !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty() {
            return Err(invalid(
                &format!("{field}.uidMappings"),
                "id-mapped mounts are not supported by peapod yet",
            ));
        }
        let propagation = match api::MountPropagation::try_from(m.propagation) {
            Ok(api::MountPropagation::PropagationPrivate) => Propagation::Private,
            Ok(api::MountPropagation::PropagationHostToContainer) => Propagation::HostToContainer,
            Ok(api::MountPropagation::PropagationBidirectional) => Propagation::Bidirectional,
            Err(_) => {
                return Err(invalid(
                    &format!("{field}.propagation"),
                    format!("unknown propagation {}", m.propagation),
                ))
            }
        };
        mounts.push(MountSpec {
            container_path: m.container_path,
            host_path: m.host_path,
            readonly: m.readonly,
            recursive_read_only: m.recursive_read_only,
            selinux_relabel: m.selinux_relabel,
            propagation,
        });
    }
    let mut devices = Vec::new();
    for (i, d) in c.devices.into_iter().enumerate() {
        let field = format!("config.devices[{i}]");
        check_absolute(&d.container_path, &format!("{field}.container_path"))?;
        check_absolute(&d.host_path, &format!("{field}.host_path"))?;
        devices.push(DeviceSpec {
            container_path: d.container_path,
            host_path: d.host_path,
            permissions: d.permissions,
        });
    }
    let mut envs = Vec::new();
    for (i, kv) in c.envs.into_iter().enumerate() {
        if kv.key.is_empty() || kv.key.contains(['=', '\0']) || kv.value.contains('\0') {
            return Err(invalid(
                &format!("config.envs[{i}].key"),
                format!("{:?} is not a valid variable name", kv.key),
            ));
        }
        envs.push((kv.key, kv.value));
    }
    if !c.working_dir.is_empty() {
        check_absolute(&c.working_dir, "config.working_dir")?;
    }
    if !c.cdi_devices.is_empty() {
        return Err(invalid(
            "config.CDI_devices",
            "CDI devices are not supported by peapod yet",
        ));
    }
    let stop_signal = if c.stop_signal == 0 {
        0
    } else {
        signals::from_cri(c.stop_signal).ok_or_else(|| {
            invalid(
                "config.stop_signal",
                format!("unknown signal {}", c.stop_signal),
            )
        })?
    };
    let linux = c.linux.unwrap_or_default();
    Ok(ContainerSpec {
        sandbox_id: req.pod_sandbox_id,
        metadata: ContainerMetadata {
            name: md.name,
            attempt: md.attempt,
        },
        image: image.image,
        user_specified_image: image.user_specified_image,
        command: c.command,
        args: c.args,
        working_dir: c.working_dir,
        envs,
        mounts,
        devices,
        labels: c.labels,
        annotations: c.annotations,
        log_path: c.log_path,
        stdin: c.stdin,
        stdin_once: c.stdin_once,
        tty: c.tty,
        resources: resources_from(linux.resources, "config.linux.resources")?,
        security: security_from(linux.security_context)?,
        stop_signal,
    })
}

pub fn state_to_api(s: ContainerState) -> i32 {
    match crate::container::visible_state(s) {
        ContainerState::Created | ContainerState::Creating => {
            api::ContainerState::ContainerCreated as i32
        }
        ContainerState::Running => api::ContainerState::ContainerRunning as i32,
        ContainerState::Exited | ContainerState::Removing => {
            api::ContainerState::ContainerExited as i32
        }
    }
}

pub fn filter_from_request(f: Option<api::ContainerFilter>) -> ContainerFilter {
    let Some(f) = f else {
        return ContainerFilter::default();
    };
    ContainerFilter {
        id: (!f.id.is_empty()).then_some(f.id),
        // Presence of the state message turns the filter on, also for its
        // zero value (CREATED). UNKNOWN matches nothing peapod reports.
        state: f
            .state
            .map(|s| match api::ContainerState::try_from(s.state) {
                Ok(api::ContainerState::ContainerCreated) => Some(ContainerState::Created),
                Ok(api::ContainerState::ContainerRunning) => Some(ContainerState::Running),
                Ok(api::ContainerState::ContainerExited) => Some(ContainerState::Exited),
                _ => None,
            })
            .map(|s| s.unwrap_or(ContainerState::Creating)),
        sandbox_id: (!f.pod_sandbox_id.is_empty()).then_some(f.pod_sandbox_id),
        labels: f.label_selector,
    }
}

pub fn stats_filter(f: Option<api::ContainerStatsFilter>) -> ContainerFilter {
    let f = f.unwrap_or_default();
    ContainerFilter {
        id: (!f.id.is_empty()).then_some(f.id),
        state: None,
        sandbox_id: (!f.pod_sandbox_id.is_empty()).then_some(f.pod_sandbox_id),
        labels: f.label_selector,
    }
}

fn metadata(md: &ContainerMetadata) -> api::ContainerMetadata {
    api::ContainerMetadata {
        name: md.name.clone(),
        attempt: md.attempt,
    }
}

fn image_spec(r: &ContainerRecord) -> api::ImageSpec {
    api::ImageSpec {
        image: r.image_name.clone(),
        user_specified_image: r.spec.user_specified_image.clone(),
        ..Default::default()
    }
}

pub fn to_container(r: &ContainerRecord) -> api::Container {
    api::Container {
        id: r.id.clone(),
        pod_sandbox_id: r.spec.sandbox_id.clone(),
        metadata: Some(metadata(&r.spec.metadata)),
        image: Some(image_spec(r)),
        image_ref: r.image_ref.clone(),
        state: state_to_api(r.state),
        created_at: r.created_at,
        labels: r.spec.labels.clone(),
        annotations: r.spec.annotations.clone(),
        image_id: r.image_id.clone(),
    }
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

pub fn to_status(r: &ContainerRecord) -> api::ContainerStatus {
    let propagation = |p: Propagation| match p {
        Propagation::Private => api::MountPropagation::PropagationPrivate as i32,
        Propagation::HostToContainer => api::MountPropagation::PropagationHostToContainer as i32,
        Propagation::Bidirectional => api::MountPropagation::PropagationBidirectional as i32,
    };
    api::ContainerStatus {
        id: r.id.clone(),
        metadata: Some(metadata(&r.spec.metadata)),
        state: state_to_api(r.state),
        created_at: r.created_at,
        started_at: r.started_at,
        finished_at: r.finished_at,
        exit_code: r.exit_code,
        image: Some(image_spec(r)),
        image_ref: r.image_ref.clone(),
        reason: r.reason.clone(),
        message: r.message.clone(),
        labels: r.spec.labels.clone(),
        annotations: r.spec.annotations.clone(),
        mounts: r
            .spec
            .mounts
            .iter()
            .map(|m| api::Mount {
                container_path: m.container_path.clone(),
                host_path: m.host_path.clone(),
                readonly: m.readonly,
                selinux_relabel: m.selinux_relabel,
                propagation: propagation(m.propagation),
                recursive_read_only: m.recursive_read_only,
                ..Default::default()
            })
            .collect(),
        log_path: r
            .log_path
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default(),
        resources: Some(api::ContainerResources {
            linux: Some(resources_to_api(&r.resources)),
            windows: None,
        }),
        image_id: r.image_id.clone(),
        user: r.user.as_ref().map(|u| api::ContainerUser {
            linux: Some(api::LinuxContainerUser {
                uid: u.uid as i64,
                gid: u.gid as i64,
                supplemental_groups: std::iter::once(u.gid as i64)
                    .chain(u.additional_gids.iter().map(|g| *g as i64))
                    .collect(),
            }),
        }),
        stop_signal: signals::to_cri(r.stop_signal),
    }
}

pub fn to_stats(s: &ContainerStatsView) -> api::ContainerStats {
    let u = |v: Option<u64>| v.map(|value| api::UInt64Value { value });
    let r = &s.record;
    let c = &s.cgroup;
    let available = match (c.memory_limit, c.memory_working_set) {
        (Some(limit), Some(ws)) => Some(limit.saturating_sub(ws)),
        _ => Some(0),
    };
    api::ContainerStats {
        attributes: Some(api::ContainerAttributes {
            id: r.id.clone(),
            metadata: Some(metadata(&r.spec.metadata)),
            labels: r.spec.labels.clone(),
            annotations: r.spec.annotations.clone(),
        }),
        cpu: Some(api::CpuUsage {
            timestamp: s.timestamp,
            usage_core_nano_seconds: u(c.cpu_usage_ns),
            usage_nano_cores: u(s.usage_nano_cores),
            psi: None,
        }),
        memory: Some(api::MemoryUsage {
            timestamp: s.timestamp,
            working_set_bytes: u(c.memory_working_set),
            available_bytes: u(available),
            usage_bytes: u(c.memory_usage),
            rss_bytes: u(c.memory_rss),
            page_faults: u(c.page_faults),
            major_page_faults: u(c.major_page_faults),
            psi: None,
        }),
        writable_layer: Some(api::FilesystemUsage {
            timestamp: s.timestamp,
            fs_id: Some(api::FilesystemIdentifier {
                mountpoint: s.layers_mountpoint.clone(),
            }),
            used_bytes: u(Some(s.writable_bytes)),
            inodes_used: u(Some(s.writable_inodes)),
        }),
        swap: None,
        io: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(sc: api::LinuxContainerSecurityContext) -> api::CreateContainerRequest {
        api::CreateContainerRequest {
            pod_sandbox_id: "p".into(),
            config: Some(api::ContainerConfig {
                metadata: Some(api::ContainerMetadata {
                    name: "c".into(),
                    attempt: 0,
                }),
                image: Some(api::ImageSpec {
                    image: "busybox".into(),
                    ..Default::default()
                }),
                linux: Some(api::LinuxContainerConfig {
                    resources: None,
                    security_context: Some(sc),
                }),
                ..Default::default()
            }),
            sandbox_config: None,
        }
    }

    #[test]
    fn run_as_group_alone_is_refused() {
        let e = spec_from_request(request(api::LinuxContainerSecurityContext {
            run_as_group: Some(api::Int64Value { value: 5 }),
            ..Default::default()
        }))
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("config.linux.security_context.run_as_group:"),
            "{e}"
        );
    }

    #[test]
    fn seccomp_as_kubelet_sends_it() {
        let unset = api::LinuxContainerSecurityContext {
            seccomp: Some(api::SecurityProfile {
                profile_type: 1,
                localhost_ref: String::new(),
            }),
            ..Default::default()
        };
        assert_eq!(seccomp_from(&unset).unwrap(), SeccompSpec::Unconfined);
        let default = api::LinuxContainerSecurityContext {
            seccomp: Some(api::SecurityProfile::default()),
            ..Default::default()
        };
        assert_eq!(seccomp_from(&default).unwrap(), SeccompSpec::RuntimeDefault);
        let local = api::LinuxContainerSecurityContext {
            seccomp: Some(api::SecurityProfile {
                profile_type: 2,
                localhost_ref: "relative.json".into(),
            }),
            ..Default::default()
        };
        let e = seccomp_from(&local).unwrap_err();
        assert!(e.to_string().contains("seccomp.localhost_ref"), "{e}");
        assert_eq!(
            seccomp_from(&api::LinuxContainerSecurityContext::default()).unwrap(),
            SeccompSpec::Unconfined
        );
    }

    #[test]
    fn unknown_capability_names_the_field() {
        let e = spec_from_request(request(api::LinuxContainerSecurityContext {
            capabilities: Some(api::Capability {
                add_capabilities: vec!["NET_ADMIN".into(), "NOT_A_CAP".into()],
                ..Default::default()
            }),
            ..Default::default()
        }))
        .unwrap_err();
        assert!(e.to_string().contains("add_capabilities[1]"), "{e}");
    }

    #[test]
    fn relative_mount_path_is_refused() {
        let mut req = request(Default::default());
        req.config.as_mut().unwrap().mounts = vec![api::Mount {
            container_path: "data".into(),
            host_path: "/tmp".into(),
            ..Default::default()
        }];
        let e = spec_from_request(req).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("config.mounts[0].container_path:"),
            "{e}"
        );
    }

    #[test]
    fn target_pid_needs_a_target() {
        let e = spec_from_request(request(api::LinuxContainerSecurityContext {
            namespace_options: Some(api::NamespaceOption {
                pid: api::NamespaceMode::Target as i32,
                ..Default::default()
            }),
            ..Default::default()
        }))
        .unwrap_err();
        assert!(e.to_string().contains("target_id"), "{e}");
    }

    #[test]
    fn state_filter_presence_counts() {
        let f = filter_from_request(Some(api::ContainerFilter {
            state: Some(api::ContainerStateValue { state: 0 }),
            ..Default::default()
        }));
        assert_eq!(f.state, Some(ContainerState::Created));
        let f = filter_from_request(Some(api::ContainerFilter {
            state: Some(api::ContainerStateValue { state: 1 }),
            ..Default::default()
        }));
        assert_eq!(f.state, Some(ContainerState::Running));
        assert_eq!(filter_from_request(None).state, None);
    }

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
