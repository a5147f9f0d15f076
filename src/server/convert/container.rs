//! Container messages: CreateContainer's config validated into a
//! [`ContainerSpec`], and containers back as CRI `Container` and status
//! (stats are in `server::stats`). The security context and the resources have files of their own.

use std::path::{Component, Path};

use crate::api;
use crate::container::{
    signals, ContainerError, ContainerFilter, ContainerMetadata, ContainerRecord, ContainerSpec,
    ContainerState, DeviceSpec, ImageVolumeSpec, MountSpec, Propagation,
};

pub use super::resources::{resources_from, resources_to_api};
use super::security::security_from;
use super::userns::{id_mapping_to_api, mount_maps_from};

fn invalid(field: &str, message: impl Into<String>) -> ContainerError {
    ContainerError::invalid(field, message)
}

/// An absolute path without `..` components.
pub(super) fn check_absolute(p: &str, field: &str) -> Result<(), ContainerError> {
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

/// Validates a CreateContainer request and turns it into a spec. Nothing
/// is created before this has passed.
pub fn spec_from_request(
    req: api::CreateContainerRequest,
) -> Result<ContainerSpec, ContainerError> {
    if req.pod_sandbox_id.is_empty() {
        return Err(invalid("pod_sandbox_id", "must not be empty"));
    }
    let c = req.config.ok_or_else(|| invalid("config", "must be set"))?;
    let metadata = metadata_from(c.metadata)?;
    let image = c.image.unwrap_or_default();
    if image.image.is_empty() && image.user_specified_image.is_empty() {
        return Err(invalid("config.image.image", "must not be empty"));
    }
    let mounts = mounts_from(c.mounts)?;
    let devices = devices_from(c.devices)?;
    let envs = envs_from(c.envs)?;
    if !c.working_dir.is_empty() {
        check_absolute(&c.working_dir, "config.working_dir")?;
    }
    if !c.cdi_devices.is_empty() {
        return Err(invalid(
            "config.CDI_devices",
            "CDI devices are not supported by peapod yet",
        ));
    }
    let stop_signal = stop_signal_from(c.stop_signal)?;
    let linux = c.linux.unwrap_or_default();
    Ok(ContainerSpec {
        sandbox_id: req.pod_sandbox_id,
        metadata,
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

/// The name ends up in paths and in the name kubelet reserves.
fn metadata_from(md: Option<api::ContainerMetadata>) -> Result<ContainerMetadata, ContainerError> {
    let md = md.ok_or_else(|| invalid("config.metadata", "must be set"))?;
    if md.name.is_empty() {
        return Err(invalid("config.metadata.name", "must not be empty"));
    }
    if md.name.contains(['/', '\0']) || md.name.len() > 253 {
        return Err(invalid(
            "config.metadata.name",
            format!("{:?} is not a valid name", md.name),
        ));
    }
    Ok(ContainerMetadata {
        name: md.name,
        attempt: md.attempt,
    })
}

fn mounts_from(mounts: Vec<api::Mount>) -> Result<Vec<MountSpec>, ContainerError> {
    mounts
        .into_iter()
        .enumerate()
        .map(|(i, m)| mount_from(&format!("config.mounts[{i}]"), m))
        .collect()
}

/// A bind mount of a host path, or an image volume; id-mapped mounts are
/// refused rather than ignored.
fn mount_from(field: &str, m: api::Mount) -> Result<MountSpec, ContainerError> {
    check_absolute(&m.container_path, &format!("{field}.container_path"))?;
    let image = image_volume_from(field, &m)?;
    if image.is_none() {
        check_absolute(&m.host_path, &format!("{field}.host_path"))?;
    }
    let id_maps = mount_maps_from(&m.uid_mappings, &m.gid_mappings, field)?;
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
    Ok(MountSpec {
        container_path: m.container_path,
        host_path: m.host_path,
        readonly: m.readonly,
        recursive_read_only: m.recursive_read_only,
        selinux_relabel: m.selinux_relabel,
        propagation,
        id_maps,
        image,
    })
}

/// The image a mount names (an image volume), if any: it replaces the
/// host path, and only it has a sub path.
fn image_volume_from(
    field: &str,
    m: &api::Mount,
) -> Result<Option<ImageVolumeSpec>, ContainerError> {
    let Some(image) = m
        .image
        .as_ref()
        .filter(|i| !i.image.is_empty() || !i.user_specified_image.is_empty())
    else {
        if !m.image_sub_path.is_empty() {
            return Err(invalid(
                &format!("{field}.image_sub_path"),
                "set, but the mount names no image",
            ));
        }
        return Ok(None);
    };
    if !m.host_path.is_empty() {
        return Err(invalid(
            &format!("{field}.host_path"),
            "must be empty for an image volume (image is set)",
        ));
    }
    check_sub_path(&m.image_sub_path, &format!("{field}.image_sub_path"))?;
    Ok(Some(ImageVolumeSpec {
        image: image.image.clone(),
        user_specified_image: image.user_specified_image.clone(),
        sub_path: m.image_sub_path.clone(),
    }))
}

/// A relative path that stays inside the image (its symlinks are resolved
/// inside it when it is mounted); empty for the image's root.
fn check_sub_path(p: &str, field: &str) -> Result<(), ContainerError> {
    let path = Path::new(p);
    if p.contains('\0') {
        return Err(invalid(field, format!("{p:?} must not contain NUL")));
    }
    if path.is_absolute() {
        return Err(invalid(
            field,
            format!("{p:?} must be a path relative to the image's root"),
        ));
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(invalid(field, format!("{p:?} must not contain '..'")));
    }
    Ok(())
}

fn devices_from(devices: Vec<api::Device>) -> Result<Vec<DeviceSpec>, ContainerError> {
    let mut out = Vec::new();
    for (i, d) in devices.into_iter().enumerate() {
        let field = format!("config.devices[{i}]");
        check_absolute(&d.container_path, &format!("{field}.container_path"))?;
        check_absolute(&d.host_path, &format!("{field}.host_path"))?;
        out.push(DeviceSpec {
            container_path: d.container_path,
            host_path: d.host_path,
            permissions: d.permissions,
        });
    }
    Ok(out)
}

/// Environment variables as (key, value); a key cannot hold `=` and
/// neither can hold a NUL.
fn envs_from(envs: Vec<api::KeyValue>) -> Result<Vec<(String, String)>, ContainerError> {
    let mut out = Vec::new();
    for (i, kv) in envs.into_iter().enumerate() {
        if kv.key.is_empty() || kv.key.contains(['=', '\0']) || kv.value.contains('\0') {
            return Err(invalid(
                &format!("config.envs[{i}].key"),
                format!("{:?} is not a valid variable name", kv.key),
            ));
        }
        out.push((kv.key, kv.value));
    }
    Ok(out)
}

/// The configured stop signal; 0 leaves it to the image, then SIGTERM.
fn stop_signal_from(signal: i32) -> Result<i32, ContainerError> {
    if signal == 0 {
        return Ok(0);
    }
    signals::from_cri(signal)
        .ok_or_else(|| invalid("config.stop_signal", format!("unknown signal {signal}")))
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

pub(in crate::server) fn metadata(md: &ContainerMetadata) -> api::ContainerMetadata {
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

/// A mount as the request gave it (an image volume with its image, as
/// containerd reports it).
fn mount_to_api(m: &MountSpec) -> api::Mount {
    let propagation = match m.propagation {
        Propagation::Private => api::MountPropagation::PropagationPrivate,
        Propagation::HostToContainer => api::MountPropagation::PropagationHostToContainer,
        Propagation::Bidirectional => api::MountPropagation::PropagationBidirectional,
    };
    api::Mount {
        container_path: m.container_path.clone(),
        host_path: m.host_path.clone(),
        readonly: m.readonly,
        selinux_relabel: m.selinux_relabel,
        propagation: propagation as i32,
        recursive_read_only: m.recursive_read_only,
        image: m.image.as_ref().map(|i| api::ImageSpec {
            image: i.image.clone(),
            user_specified_image: i.user_specified_image.clone(),
            ..Default::default()
        }),
        image_sub_path: m
            .image
            .as_ref()
            .map(|i| i.sub_path.clone())
            .unwrap_or_default(),
        uid_mappings: m
            .id_maps
            .iter()
            .map(|maps| id_mapping_to_api(maps.uid))
            .collect(),
        gid_mappings: m
            .id_maps
            .iter()
            .map(|maps| id_mapping_to_api(maps.gid))
            .collect(),
    }
}

pub fn to_status(r: &ContainerRecord) -> api::ContainerStatus {
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
        mounts: r.spec.mounts.iter().map(mount_to_api).collect(),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A change that makes a valid request invalid.
    type Spoil = Box<dyn FnOnce(&mut api::ContainerConfig)>;

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

    fn error_of(spoil: impl FnOnce(&mut api::ContainerConfig)) -> String {
        let mut req = request(Default::default());
        spoil(req.config.as_mut().expect("config"));
        spec_from_request(req)
            .expect_err("request must be refused")
            .to_string()
    }

    fn security_of(c: &mut api::ContainerConfig) -> &mut api::LinuxContainerSecurityContext {
        c.linux
            .as_mut()
            .expect("linux")
            .security_context
            .get_or_insert_with(Default::default)
    }

    #[test]
    fn a_full_request_converts() {
        let mut req = request(api::LinuxContainerSecurityContext {
            run_as_user: Some(api::Int64Value { value: 1000 }),
            masked_paths: vec!["/proc/kcore".into()],
            ..Default::default()
        });
        let c = req.config.as_mut().expect("config");
        c.mounts = vec![api::Mount {
            container_path: "/data".into(),
            host_path: "/srv/data".into(),
            readonly: true,
            propagation: api::MountPropagation::PropagationHostToContainer as i32,
            ..Default::default()
        }];
        c.devices = vec![api::Device {
            container_path: "/dev/fuse".into(),
            host_path: "/dev/fuse".into(),
            permissions: "rwm".into(),
        }];
        c.envs = vec![api::KeyValue {
            key: "A".into(),
            value: "b=c".into(),
        }];
        c.working_dir = "/work".into();
        c.stop_signal = 13; // SIGKILL in CRI's enum
        let spec = spec_from_request(req).expect("valid request");
        assert_eq!(spec.sandbox_id, "p");
        assert_eq!(spec.metadata.name, "c");
        assert_eq!(spec.image, "busybox");
        assert_eq!(spec.mounts[0].propagation, Propagation::HostToContainer);
        assert!(spec.mounts[0].readonly);
        assert_eq!(spec.devices[0].permissions, "rwm");
        assert_eq!(spec.envs, [("A".to_string(), "b=c".to_string())]);
        assert_eq!(spec.working_dir, "/work");
        assert_eq!(spec.stop_signal, 9);
        assert_eq!(spec.security.run_as_user, Some(1000));
        assert_eq!(spec.security.masked_paths, ["/proc/kcore"]);
    }

    fn image_volume(sub_path: &str) -> api::Mount {
        api::Mount {
            container_path: "/models".into(),
            readonly: true,
            image: Some(api::ImageSpec {
                image: "sha256:ab".into(),
                user_specified_image: "registry.lan/models:v1".into(),
                ..Default::default()
            }),
            image_sub_path: sub_path.into(),
            ..Default::default()
        }
    }

    #[test]
    fn an_image_volume_converts_and_is_reported_as_given() {
        let mut req = request(Default::default());
        req.config.as_mut().expect("config").mounts = vec![image_volume("data/v1")];
        let spec = spec_from_request(req).expect("valid request");
        let m = &spec.mounts[0];
        assert_eq!(m.host_path, "");
        assert_eq!(
            m.image,
            Some(ImageVolumeSpec {
                image: "sha256:ab".into(),
                user_specified_image: "registry.lan/models:v1".into(),
                sub_path: "data/v1".into(),
            })
        );
        assert_eq!(mount_to_api(m), image_volume("data/v1"));
        // A bind mount reports no image.
        let mut bind = m.clone();
        bind.image = None;
        bind.host_path = "/srv".into();
        let reported = mount_to_api(&bind);
        assert_eq!(
            (reported.image, reported.image_sub_path),
            (None, String::new())
        );
    }

    #[test]
    fn image_sub_paths_stay_inside_the_image() {
        for ok in ["", "data", "./data/v1/", "a/./b"] {
            check_sub_path(ok, "f").unwrap_or_else(|e| panic!("{ok:?}: {e}"));
        }
        for (bad, why) in [
            (
                "/data",
                "\"/data\" must be a path relative to the image's root",
            ),
            ("../x", "\"../x\" must not contain '..'"),
            ("data/../../x", "\"data/../../x\" must not contain '..'"),
            ("a/..", "\"a/..\" must not contain '..'"),
            ("da\0ta", "\"da\\0ta\" must not contain NUL"),
        ] {
            assert_eq!(
                check_sub_path(bad, "config.mounts[1].image_sub_path").unwrap_err(),
                invalid("config.mounts[1].image_sub_path", why),
                "{bad:?}"
            );
        }
        let mut req = request(Default::default());
        let c = req.config.as_mut().expect("config");
        c.mounts = vec![image_volume(""), image_volume("../etc")];
        let e = spec_from_request(req).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("config.mounts[1].image_sub_path:"),
            "{e}"
        );
    }

    #[test]
    fn refusals_name_the_field() {
        const SC: &str = "config.linux.security_context";
        let mount = |m: api::Mount| {
            move |c: &mut api::ContainerConfig| {
                c.mounts = vec![api::Mount {
                    container_path: "/data".into(),
                    host_path: "/srv".into(),
                    ..m
                }]
            }
        };
        let cases: Vec<(Spoil, String)> = vec![
            (
                Box::new(|c| c.metadata.as_mut().expect("metadata").name = "a/b".into()),
                "config.metadata.name: \"a/b\" is not a valid name".into(),
            ),
            (
                Box::new(|c| c.image = None),
                "config.image.image: must not be empty".into(),
            ),
            (
                Box::new(mount(api::Mount {
                    image: Some(api::ImageSpec {
                        image: "busybox".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                })),
                "config.mounts[0].host_path: must be empty for an image volume (image is set)"
                    .into(),
            ),
            (
                Box::new(mount(api::Mount {
                    image_sub_path: "data".into(),
                    ..Default::default()
                })),
                "config.mounts[0].image_sub_path: set, but the mount names no image".into(),
            ),
            (
                Box::new(mount(api::Mount {
                    propagation: 9,
                    ..Default::default()
                })),
                "config.mounts[0].propagation: unknown propagation 9".into(),
            ),
            (
                Box::new(|c| {
                    c.devices = vec![api::Device {
                        container_path: "/dev/null".into(),
                        host_path: "dev/null".into(),
                        permissions: String::new(),
                    }]
                }),
                "config.devices[0].host_path: \"dev/null\" must be an absolute path".into(),
            ),
            (
                Box::new(|c| {
                    c.envs = vec![api::KeyValue {
                        key: "A=B".into(),
                        value: String::new(),
                    }]
                }),
                "config.envs[0].key: \"A=B\" is not a valid variable name".into(),
            ),
            (
                Box::new(|c| c.working_dir = "/a/../b".into()),
                "config.working_dir: \"/a/../b\" must not contain '..'".into(),
            ),
            (
                Box::new(|c| {
                    c.cdi_devices = vec![api::CdiDevice {
                        name: "vendor.com/gpu=0".into(),
                    }]
                }),
                "config.CDI_devices: CDI devices are not supported by peapod yet".into(),
            ),
            (
                Box::new(|c| c.stop_signal = 999),
                "config.stop_signal: unknown signal 999".into(),
            ),
            (
                Box::new(|c| {
                    c.linux.as_mut().expect("linux").resources =
                        Some(api::LinuxContainerResources {
                            hugepage_limits: vec![api::HugepageLimit {
                                page_size: "2XB".into(),
                                limit: 0,
                            }],
                            ..Default::default()
                        })
                }),
                "config.linux.resources.hugepage_limits[0].page_size: \"2XB\" is not a page size like 2MB".into(),
            ),
            (
                Box::new(|c| {
                    security_of(c).capabilities = Some(api::Capability {
                        add_ambient_capabilities: vec!["NET_BIND_SERVICE".into()],
                        ..Default::default()
                    })
                }),
                format!("{SC}.capabilities.add_ambient_capabilities: ambient capabilities are not supported by peapod yet"),
            ),
            (
                Box::new(|c| security_of(c).supplemental_groups = vec![5, -1]),
                format!("{SC}.supplemental_groups[1]: -1 is not a valid group id"),
            ),
            (
                Box::new(|c| {
                    security_of(c).run_as_user = Some(api::Int64Value {
                        value: u32::MAX as i64,
                    })
                }),
                format!("{SC}.run_as_user: 4294967295 is not a valid id"),
            ),
            (
                Box::new(|c| security_of(c).readonly_paths = vec!["proc".into()]),
                format!("{SC}.readonly_paths[0]: \"proc\" must be an absolute path"),
            ),
            (
                Box::new(|c| {
                    security_of(c).namespace_options = Some(api::NamespaceOption {
                        pid: 9,
                        ..Default::default()
                    })
                }),
                format!("{SC}.namespace_options.pid: unknown namespace mode 9"),
            ),
            (
                Box::new(|c| {
                    security_of(c).apparmor = Some(api::SecurityProfile {
                        profile_type: 2,
                        localhost_ref: String::new(),
                    })
                }),
                format!("{SC}.apparmor.localhost_ref: a Localhost profile needs a name"),
            ),
            // The first fault found is the one reported: resources are
            // checked before the security context.
            (
                Box::new(|c| {
                    let linux = c.linux.as_mut().expect("linux");
                    linux.resources = Some(api::LinuxContainerResources {
                        cpu_shares: -1,
                        ..Default::default()
                    });
                    security_of(c).supplemental_groups = vec![-1];
                }),
                "config.linux.resources.cpu_shares: must not be negative".into(),
            ),
        ];
        for (spoil, expected) in cases {
            assert_eq!(error_of(spoil), expected);
        }
    }
}
