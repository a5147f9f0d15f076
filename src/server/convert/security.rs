//! CRI `LinuxContainerSecurityContext` to the domain's [`SecuritySpec`]:
//! namespaces, user and group ids, capabilities, masked and read-only
//! paths, SELinux, seccomp and AppArmor, each checked before anything is
//! created.

use crate::api;
use crate::container::{
    security, AppArmorSpec, ContainerError, PidMode, SeccompSpec, SecuritySpec, SelinuxSpec,
    UsernsRequest,
};

use super::container::check_absolute;
use super::userns::userns_from;

/// Where a CreateContainer request holds its security context.
const SC: &str = "config.linux.security_context";

fn invalid(field: &str, message: impl Into<String>) -> ContainerError {
    ContainerError::invalid(field, message)
}

pub(super) fn security_from(
    sc: Option<api::LinuxContainerSecurityContext>,
) -> Result<SecuritySpec, ContainerError> {
    let sc = sc.unwrap_or_default();
    let ns = sc.namespace_options.clone().unwrap_or_default();
    let pid = pid_mode_from(&ns)?;
    let userns = userns_request_from(&ns)?;
    let run_as_user = sc.run_as_user.map(|v| v.value);
    let run_as_group = sc.run_as_group.map(|v| v.value);
    check_ids(&sc, run_as_user, run_as_group)?;
    let caps = sc.capabilities.clone().unwrap_or_default();
    check_capabilities(&caps, sc.privileged)?;
    check_path_lists(&sc)?;
    Ok(SecuritySpec {
        privileged: sc.privileged,
        pid,
        userns,
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
        selinux: selinux_from(sc.selinux_options.as_ref()),
    })
}

fn pid_mode_from(ns: &api::NamespaceOption) -> Result<PidMode, ContainerError> {
    match api::NamespaceMode::try_from(ns.pid) {
        Ok(api::NamespaceMode::Container) => Ok(PidMode::Container),
        Ok(api::NamespaceMode::Pod) => Ok(PidMode::Pod),
        Ok(api::NamespaceMode::Node) => Ok(PidMode::Node),
        Ok(api::NamespaceMode::Target) => {
            if ns.target_id.is_empty() {
                return Err(invalid(
                    &format!("{SC}.namespace_options.target_id"),
                    "pid mode TARGET needs a target container id",
                ));
            }
            Ok(PidMode::Target(ns.target_id.clone()))
        }
        Err(_) => Err(invalid(
            &format!("{SC}.namespace_options.pid"),
            format!("unknown namespace mode {}", ns.pid),
        )),
    }
}

fn userns_request_from(ns: &api::NamespaceOption) -> Result<UsernsRequest, ContainerError> {
    let Some(options) = &ns.userns_options else {
        return Ok(UsernsRequest::AsPod);
    };
    let field = format!("{SC}.namespace_options.userns_options");
    Ok(match userns_from(Some(options), &field)? {
        Some(maps) => UsernsRequest::Pod(maps),
        None => UsernsRequest::Host,
    })
}

/// User, group and supplemental group ids: each a valid id (not -1 as a
/// u32), and a group only with a user.
fn check_ids(
    sc: &api::LinuxContainerSecurityContext,
    run_as_user: Option<i64>,
    run_as_group: Option<i64>,
) -> Result<(), ContainerError> {
    if run_as_group.is_some() && run_as_user.is_none() && sc.run_as_username.is_empty() {
        return Err(invalid(
            &format!("{SC}.run_as_group"),
            "run_as_group requires run_as_user or run_as_username",
        ));
    }
    let valid = |id: &i64| (0..=u32::MAX as i64 - 1).contains(id);
    for (name, v) in [("run_as_user", run_as_user), ("run_as_group", run_as_group)] {
        if let Some(v) = v.filter(|v| !valid(v)) {
            return Err(invalid(
                &format!("{SC}.{name}"),
                format!("{v} is not a valid id"),
            ));
        }
    }
    for (i, g) in sc.supplemental_groups.iter().enumerate() {
        if !valid(g) {
            return Err(invalid(
                &format!("{SC}.supplemental_groups[{i}]"),
                format!("{g} is not a valid group id"),
            ));
        }
    }
    Ok(())
}

fn check_capabilities(caps: &api::Capability, privileged: bool) -> Result<(), ContainerError> {
    if !caps.add_ambient_capabilities.is_empty() {
        return Err(invalid(
            &format!("{SC}.capabilities.add_ambient_capabilities"),
            "ambient capabilities are not supported by peapod yet",
        ));
    }
    // Checked now, so that an unknown name fails before anything is made.
    security::capability_set(&caps.add_capabilities, &caps.drop_capabilities, privileged)?;
    Ok(())
}

fn check_path_lists(sc: &api::LinuxContainerSecurityContext) -> Result<(), ContainerError> {
    for (name, list) in [
        ("masked_paths", &sc.masked_paths),
        ("readonly_paths", &sc.readonly_paths),
    ] {
        for (i, p) in list.iter().enumerate() {
            check_absolute(p, &format!("{SC}.{name}[{i}]"))?;
        }
    }
    Ok(())
}

/// Options that are all empty mean none.
fn selinux_from(s: Option<&api::SeLinuxOption>) -> Option<SelinuxSpec> {
    s.and_then(|s| {
        (!(s.user.is_empty() && s.role.is_empty() && s.r#type.is_empty() && s.level.is_empty()))
            .then(|| SelinuxSpec {
                user: s.user.clone(),
                role: s.role.clone(),
                r#type: s.r#type.clone(),
                level: s.level.clone(),
            })
    })
}

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
