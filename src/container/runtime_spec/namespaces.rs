//! The namespaces: the container's own mount (and PID, by default, and
//! cgroup on v2) namespaces, and the pod's user, network, UTS and IPC ones
//! joined by path, with the user namespace's mappings.

use std::path::PathBuf;

use oci_spec::runtime::{
    LinuxIdMapping, LinuxIdMappingBuilder, LinuxNamespace, LinuxNamespaceType, Spec,
};

use super::base::linux_of;
use super::SpecInputs;
use crate::container::error::ContainerError;
use crate::container::spec::PidMode;
use crate::pod::PodContext;
use crate::userns::IdMap;

fn namespace(typ: LinuxNamespaceType, path: Option<PathBuf>) -> LinuxNamespace {
    let mut ns = LinuxNamespace::default();
    ns.set_typ(typ);
    ns.set_path(path);
    ns
}

fn proc_ns(pid: i32, ns: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/ns/{ns}"))
}

/// The container's namespaces: its own mount (and PID, by default)
/// namespace, the pod's network, IPC and UTS namespaces.
pub fn namespaces(
    pod: &PodContext,
    pid_mode: &PidMode,
    target_pid: Option<i32>,
    cgroup_v2: bool,
    privileged: bool,
) -> Result<Vec<LinuxNamespace>, ContainerError> {
    let pod_ns = pod.namespaces()?;
    let mut out = vec![namespace(LinuxNamespaceType::Mount, None)];
    out.extend(pid_namespace(pod_ns.pid.clone(), pid_mode, target_pid)?);
    let joined = [
        (LinuxNamespaceType::User, &pod_ns.user),
        (LinuxNamespaceType::Network, &pod_ns.network),
        (LinuxNamespaceType::Uts, &pod_ns.uts),
        (LinuxNamespaceType::Ipc, &pod_ns.ipc),
    ];
    for (typ, path) in joined {
        if let Some(path) = path {
            out.push(namespace(typ, Some(path.clone())));
        }
    }
    // A cgroup namespace shows a v2 container only its own subtree, as
    // other runtimes do on v2 hosts; on v1 runtimes leave it shared.
    if cgroup_v2 && !privileged {
        out.push(namespace(LinuxNamespaceType::Cgroup, None));
    }
    Ok(out)
}

/// The PID namespace to create or join; none for the host's.
fn pid_namespace(
    pod_pid: PathBuf,
    pid_mode: &PidMode,
    target_pid: Option<i32>,
) -> Result<Option<LinuxNamespace>, ContainerError> {
    let path = match pid_mode {
        PidMode::Container => None,
        PidMode::Pod => Some(pod_pid),
        PidMode::Node => return Ok(None),
        PidMode::Target(id) => {
            let pid = target_pid.ok_or_else(|| {
                ContainerError::FailedPrecondition(format!("target container {id} is not running"))
            })?;
            Some(proc_ns(pid, "pid"))
        }
    };
    Ok(Some(namespace(LinuxNamespaceType::Pid, path)))
}

/// The pod's user-namespace mappings, which the runtime needs beside the
/// namespace's path (runc derives the container root's host ids from
/// them).
pub fn with_id_mappings(i: &SpecInputs<'_>, spec: &mut Spec) -> Result<(), ContainerError> {
    let Some(maps) = i.pod.userns else {
        return Ok(());
    };
    let linux = linux_of(spec);
    linux.set_uid_mappings(Some(vec![id_mapping(maps.uid)]));
    linux.set_gid_mappings(Some(vec![id_mapping(maps.gid)]));
    Ok(())
}

fn id_mapping(map: IdMap) -> LinuxIdMapping {
    LinuxIdMappingBuilder::default()
        .container_id(map.container_id)
        .host_id(map.host_id)
        .size(map.length)
        .build()
        .expect("every field of an id mapping is set")
}

pub fn with_namespaces(i: &SpecInputs<'_>, spec: &mut Spec) -> Result<(), ContainerError> {
    let sec = &i.rec.spec.security;
    let list = namespaces(
        i.pod,
        &sec.pid,
        i.target_pid,
        i.host.cgroup_v2,
        sec.privileged,
    )?;
    let linux = linux_of(spec);
    linux
        .namespaces_mut()
        .get_or_insert_with(Vec::new)
        .extend(list);
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::container::runtime_spec::test_support::*;

    fn built(f: &Fixture) -> Value {
        run(with_namespaces, &f.inputs())["linux"]["namespaces"].clone()
    }

    #[test]
    fn with_namespaces_joins_the_pods_and_makes_its_own() {
        let mut f = Fixture::plain();
        assert_eq!(
            built(&f),
            json!([
                {"type": "mount"},
                {"type": "pid"},
                {"type": "network", "path": "/run/peapod/netns/sb0123"},
                {"type": "uts", "path": "/proc/4242/ns/uts"},
                {"type": "ipc", "path": "/proc/4242/ns/ipc"},
            ])
        );
        assert_changes_only(with_namespaces, &f.inputs(), &["/linux/namespaces"]);
        f.host.cgroup_v2 = true;
        assert_eq!(built(&f)[5], json!({"type": "cgroup"}));
        f.rec.spec.security.privileged = true;
        assert_eq!(built(&f).as_array().unwrap().len(), 5);
    }

    #[test]
    fn with_namespaces_follows_the_pid_mode() {
        let mut f = Fixture::plain();
        f.rec.spec.security.pid = PidMode::Pod;
        assert_eq!(
            built(&f)[1],
            json!({"type": "pid", "path": "/proc/4242/ns/pid"})
        );
        f.rec.spec.security.pid = PidMode::Target("c0".into());
        f.target_pid = Some(77);
        assert_eq!(
            built(&f)[1],
            json!({"type": "pid", "path": "/proc/77/ns/pid"})
        );
        f.target_pid = None;
        let e = with_namespaces(
            &f.inputs(),
            &mut crate::container::runtime_spec::base::empty_spec(),
        )
        .unwrap_err();
        assert!(matches!(e, ContainerError::FailedPrecondition(_)), "{e}");
        f.rec.spec.security.pid = PidMode::Node;
        f.pod = pod(true);
        let types: Vec<Value> = built(&f)
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].clone())
            .collect();
        assert_eq!(types, [json!("mount")]);
    }

    #[test]
    fn a_user_namespaced_pod_is_joined_with_its_mappings() {
        use crate::userns::{IdMap, UserNamespaceMaps};
        let mut f = Fixture::plain();
        let map = |host_id| IdMap {
            container_id: 0,
            host_id,
            length: 65536,
        };
        f.pod.userns = Some(UserNamespaceMaps {
            uid: map(131072),
            gid: map(196608),
        });
        f.pod.namespaces.as_mut().unwrap().user = Some(PathBuf::from("/proc/4242/ns/user"));
        assert_eq!(
            built(&f)[2],
            json!({"type": "user", "path": "/proc/4242/ns/user"})
        );
        let linux = run(with_id_mappings, &f.inputs())["linux"].clone();
        assert_eq!(
            linux["uidMappings"],
            json!([{"containerID": 0, "hostID": 131072, "size": 65536}])
        );
        assert_eq!(
            linux["gidMappings"],
            json!([{"containerID": 0, "hostID": 196608, "size": 65536}])
        );
        assert_changes_only(
            with_id_mappings,
            &f.inputs(),
            &["/linux/uidMappings", "/linux/gidMappings"],
        );
        // A pod in the host's user namespace gets no mappings.
        f.pod.userns = None;
        assert_changes_only(with_id_mappings, &Fixture::plain().inputs(), &[]);
    }

    #[test]
    fn with_namespaces_needs_the_pods_namespaces() {
        let mut f = Fixture::plain();
        f.pod.namespaces = None;
        let e = with_namespaces(
            &f.inputs(),
            &mut crate::container::runtime_spec::base::empty_spec(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("no infra process"), "{e}");
    }
}
