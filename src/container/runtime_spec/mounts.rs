//! The filesystem: the root, the mounts every container has, the pod's
//! files, and the CRI mounts with their propagation.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{Mount, Root, Spec};

use super::base::{linux_of, mounts_of};
use super::{ResolvedMount, SpecInputs};
use crate::container::error::ContainerError;
use crate::container::spec::Propagation;

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(dest));
    m.set_typ(Some(typ.to_string()));
    m.set_source(Some(PathBuf::from(source)));
    m.set_options(Some(options.iter().map(|s| s.to_string()).collect()));
    m
}

fn bind(dest: &str, source: &Path, options: Vec<String>) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(dest));
    m.set_typ(Some("bind".to_string()));
    m.set_source(Some(source.to_path_buf()));
    m.set_options(Some(options));
    m
}

/// Whether a CRI mount is at `container_path` (and replaces ours there).
fn mounted_at(i: &SpecInputs<'_>, container_path: &str) -> bool {
    i.mounts.iter().any(|m| m.container_path == container_path)
}

/// The container's root filesystem, read-only when asked.
pub fn with_root(i: &SpecInputs<'_>, spec: &mut Spec) -> Result<(), ContainerError> {
    let mut root = Root::default();
    root.set_path(i.rec.rootfs());
    root.set_readonly(Some(i.rec.spec.security.readonly_rootfs));
    spec.set_root(Some(root));
    Ok(())
}

/// /proc, /dev, /dev/pts, /dev/mqueue, /sys and /sys/fs/cgroup; /sys
/// read-only unless privileged.
pub fn with_default_mounts(i: &SpecInputs<'_>, spec: &mut Spec) -> Result<(), ContainerError> {
    let sys = if i.rec.spec.security.privileged {
        "rw"
    } else {
        "ro"
    };
    let dev_pts = [
        "nosuid",
        "noexec",
        "newinstance",
        "ptmxmode=0666",
        "mode=0620",
        "gid=5",
    ];
    let dev = ["nosuid", "strictatime", "mode=755", "size=65536k"];
    let kernel_fs = ["nosuid", "noexec", "nodev"];
    mounts_of(spec).extend([
        mount("/proc", "proc", "proc", &kernel_fs),
        mount("/dev", "tmpfs", "tmpfs", &dev),
        mount("/dev/pts", "devpts", "devpts", &dev_pts),
        mount("/dev/mqueue", "mqueue", "mqueue", &kernel_fs),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", sys],
        ),
    ]);
    Ok(())
}

/// The pod's /dev/shm (the host's when the pod shares the host's IPC),
/// hostname and resolv.conf, and the container's /etc/hosts, each unless
/// a CRI mount takes its place.
pub fn with_pod_files(i: &SpecInputs<'_>, spec: &mut Spec) -> Result<(), ContainerError> {
    let files = &i.pod.files;
    let mut out = Vec::new();
    if !mounted_at(i, "/dev/shm") {
        let shm = files
            .shm
            .clone()
            .unwrap_or_else(|| PathBuf::from("/dev/shm"));
        let options = ["rbind", "nosuid", "nodev", "noexec"].map(String::from);
        out.push(bind("/dev/shm", &shm, options.to_vec()));
    }
    let access = if i.rec.spec.security.readonly_rootfs {
        "ro"
    } else {
        "rw"
    };
    let file_options = || ["rbind", "rprivate", access].map(String::from).to_vec();
    let pod_files = [
        ("/etc/hostname", files.hostname.as_path()),
        ("/etc/resolv.conf", files.resolv_conf.as_path()),
        ("/etc/hosts", i.hosts_file),
    ];
    for (dest, source) in pod_files {
        if !mounted_at(i, dest) {
            out.push(bind(dest, source, file_options()));
        }
    }
    mounts_of(spec).extend(out);
    Ok(())
}

/// The CRI mounts, a parent directory before what is mounted inside it,
/// and the root's propagation they need.
pub fn with_user_mounts(i: &SpecInputs<'_>, spec: &mut Spec) -> Result<(), ContainerError> {
    let mut ordered: Vec<&ResolvedMount> = i.mounts.iter().collect();
    ordered.sort_by_key(|m| depth(&m.container_path));
    mounts_of(spec).extend(ordered.into_iter().map(user_mount));
    if let Some(p) = rootfs_propagation(i.mounts) {
        linux_of(spec).set_rootfs_propagation(Some(p.to_string()));
    }
    Ok(())
}

/// The number of components of a path, to sort mounts so that a parent
/// directory is mounted before what is mounted inside it.
fn depth(path: &str) -> usize {
    Path::new(path).components().count()
}

fn user_mount(m: &ResolvedMount) -> Mount {
    let access = if m.recursive_read_only {
        "rro"
    } else if m.readonly {
        "ro"
    } else {
        "rw"
    };
    let mut options = vec!["rbind", propagation(m.propagation), access];
    if m.image_volume {
        // The image's files are data mounted into the container: its
        // set-uid programs and device nodes grant nothing.
        options.extend(["nosuid", "nodev"]);
    }
    bind(
        &m.container_path,
        &m.source,
        options.into_iter().map(String::from).collect(),
    )
}

fn propagation(p: Propagation) -> &'static str {
    match p {
        Propagation::Private => "rprivate",
        Propagation::HostToContainer => "rslave",
        Propagation::Bidirectional => "rshared",
    }
}

/// The root must be a slave for host mounts to reach a HostToContainer
/// mount, and shared for a Bidirectional one to propagate back.
fn rootfs_propagation(mounts: &[ResolvedMount]) -> Option<&'static str> {
    let any = |p: Propagation| mounts.iter().any(|m| m.propagation == p);
    if any(Propagation::Bidirectional) {
        Some("rshared")
    } else if any(Propagation::HostToContainer) {
        Some("rslave")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::container::runtime_spec::test_support::*;

    fn destinations(j: &Value) -> Vec<&str> {
        j["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect()
    }

    fn at<'a>(j: &'a Value, dest: &str) -> &'a Value {
        let mounts = j["mounts"].as_array().unwrap();
        mounts.iter().find(|m| m["destination"] == dest).unwrap()
    }

    #[test]
    fn with_root_sets_the_rootfs_and_its_access_only() {
        let mut f = Fixture::plain();
        let j = run(with_root, &f.inputs());
        assert_eq!(
            j["root"],
            json!({"path": "/run/peapod/containers/c1d2/rootfs", "readonly": false})
        );
        f.rec.spec.security.readonly_rootfs = true;
        assert_eq!(run(with_root, &f.inputs())["root"]["readonly"], true);
        assert_changes_only(with_root, &f.inputs(), &["/root"]);
    }

    #[test]
    fn with_default_mounts_adds_the_kernel_filesystems() {
        let mut f = Fixture::plain();
        let j = run(with_default_mounts, &f.inputs());
        assert_eq!(
            destinations(&j),
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/mqueue",
                "/sys",
                "/sys/fs/cgroup"
            ]
        );
        assert_eq!(at(&j, "/sys")["options"][3], "ro");
        assert_eq!(at(&j, "/sys/fs/cgroup")["options"][4], "ro");
        f.rec.spec.security.privileged = true;
        let j = run(with_default_mounts, &f.inputs());
        assert_eq!(at(&j, "/sys")["options"][3], "rw");
        assert_eq!(at(&j, "/sys/fs/cgroup")["options"][4], "rw");
        assert_changes_only(with_default_mounts, &f.inputs(), &["/mounts"]);
    }

    #[test]
    fn with_pod_files_binds_the_pods_files_unless_mounted_over() {
        let mut f = Fixture::plain();
        let j = run(with_pod_files, &f.inputs());
        assert_eq!(
            destinations(&j),
            [
                "/dev/shm",
                "/etc/hostname",
                "/etc/resolv.conf",
                "/etc/hosts"
            ]
        );
        assert_eq!(
            at(&j, "/dev/shm")["source"],
            "/run/peapod/sandboxes/sb0123/shm"
        );
        assert_eq!(
            at(&j, "/etc/hosts")["source"],
            "/run/peapod/containers/c1d2/hosts"
        );
        assert_eq!(
            at(&j, "/etc/hostname")["options"],
            json!(["rbind", "rprivate", "rw"])
        );
        f.rec.spec.security.readonly_rootfs = true;
        f.pod.files.shm = None;
        f.mounts = vec![cri_mount("/etc/hosts", "/h", Propagation::Private)];
        let j = run(with_pod_files, &f.inputs());
        assert_eq!(
            destinations(&j),
            ["/dev/shm", "/etc/hostname", "/etc/resolv.conf"]
        );
        assert_eq!(at(&j, "/dev/shm")["source"], "/dev/shm");
        assert_eq!(at(&j, "/etc/resolv.conf")["options"][2], "ro");
        assert!(j["linux"].is_null(), "{j}");
        assert_changes_only(with_pod_files, &f.inputs(), &["/mounts"]);
    }

    #[test]
    fn with_user_mounts_orders_parents_first_and_sets_propagation() {
        let mut f = Fixture::plain();
        let j = run(with_user_mounts, &f.inputs());
        assert_eq!(j["mounts"], json!([]));
        assert!(j.get("linux").is_none(), "{j}");
        let mut ro = cri_mount("/a", "/src/a", Propagation::HostToContainer);
        ro.readonly = true;
        f.mounts = vec![cri_mount("/a/b/c", "/src/c", Propagation::Private), ro];
        let j = run(with_user_mounts, &f.inputs());
        assert_eq!(destinations(&j), ["/a", "/a/b/c"]);
        assert_eq!(at(&j, "/a")["options"], json!(["rbind", "rslave", "ro"]));
        assert_eq!(
            at(&j, "/a/b/c")["options"],
            json!(["rbind", "rprivate", "rw"])
        );
        assert_eq!(at(&j, "/a")["type"], "bind");
        assert_eq!(j["linux"]["rootfsPropagation"], "rslave");
        let mut rro = cri_mount("/b", "/src/b", Propagation::Bidirectional);
        rro.recursive_read_only = true;
        f.mounts.push(rro);
        let j = run(with_user_mounts, &f.inputs());
        assert_eq!(at(&j, "/b")["options"], json!(["rbind", "rshared", "rro"]));
        assert_eq!(j["linux"]["rootfsPropagation"], "rshared");
        assert_changes_only(
            with_user_mounts,
            &f.inputs(),
            &["/mounts", "/linux/rootfsPropagation"],
        );
    }

    #[test]
    fn an_image_volume_is_bound_read_only_nosuid_nodev() {
        let mut f = Fixture::plain();
        let mut volume = cri_mount(
            "/models",
            "/run/peapod/containers/c1d2/image-volumes/0/data",
            Propagation::HostToContainer,
        );
        volume.readonly = true;
        volume.image_volume = true;
        f.mounts = vec![volume];
        let j = run(with_user_mounts, &f.inputs());
        assert_eq!(
            at(&j, "/models")["options"],
            json!(["rbind", "rslave", "ro", "nosuid", "nodev"])
        );
        assert_eq!(
            at(&j, "/models")["source"],
            "/run/peapod/containers/c1d2/image-volumes/0/data"
        );
        assert_eq!(j["linux"]["rootfsPropagation"], "rslave");
    }

    #[test]
    fn mount_steps_add_to_the_list() {
        let f = Fixture::plain();
        let mut spec = crate::container::runtime_spec::base::empty_spec();
        with_pod_files(&f.inputs(), &mut spec).unwrap();
        with_default_mounts(&f.inputs(), &mut spec).unwrap();
        let j = serde_json::to_value(&spec).unwrap();
        assert_eq!(destinations(&j).len(), 10);
        assert_eq!(destinations(&j)[0], "/dev/shm");
    }
}
