//! The mounts of a container in a user-namespaced pod, id-mapped so that
//! files keep the owners the image and the host give them, seen through
//! the pod's mappings (a root-owned file is root's inside, not `nobody`'s).
//!
//! The OCI runtime may not id-map mounts itself (runc 1.1 cannot), so
//! peapod makes id-mapped clones under `<container dir>/idmapped/` and
//! hands the runtime those: the image's layers as overlayfs lower
//! directories, and every bind source of the spec. The release of the
//! container unmounts them with everything else below its directory.

use std::io;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Mount, Spec};

use super::error::ContainerError;
use super::runtime_spec::ResolvedMount;
use super::spec::ContainerRecord;
use crate::errors::Error;
use crate::host::{HostOps, Idmap};
use crate::pod::PodContext;
use crate::userns::UserNamespaceMaps;

/// A pod's user namespace as id-mapped mounts need it.
pub struct PodIdmap<'a> {
    /// `/proc/<infra pid>/ns/user`.
    pub namespace: &'a Path,
    pub maps: UserNamespaceMaps,
}

impl<'a> PodIdmap<'a> {
    /// The pod's user namespace; `None` for a pod in the host's.
    pub fn of(pod: &'a PodContext) -> Result<Option<PodIdmap<'a>>, Error> {
        let Some(maps) = pod.userns else {
            return Ok(None);
        };
        let namespace = pod.namespaces()?.user.as_deref().ok_or_else(|| {
            Error::FailedPrecondition(format!("pod sandbox {} has no user namespace", pod.id))
        })?;
        Ok(Some(PodIdmap { namespace, maps }))
    }

    /// The mapping for a mount with `own` mappings: the pod's namespace
    /// itself when they are the pod's (or none were given).
    fn for_mount(&self, own: Option<UserNamespaceMaps>) -> Idmap {
        match own {
            Some(maps) if maps != self.maps => Idmap::Mappings(maps),
            _ => Idmap::Namespace(self.namespace.to_path_buf()),
        }
    }
}

/// Where a container's id-mapped clones live.
fn staging_dir(rec: &ContainerRecord) -> PathBuf {
    rec.dir.join("idmapped")
}

/// Id-mapped clones of image layers (bottom first), to stack under the
/// container's writable layer or as an image volume; `name` tells one
/// stack's clones from another's.
pub fn idmapped_layers(
    host: &dyn HostOps,
    rec: &ContainerRecord,
    idmap: &PodIdmap<'_>,
    layers: &[PathBuf],
    name: &str,
) -> Result<Vec<PathBuf>, ContainerError> {
    let dir = staging_dir(rec);
    let mapping = Idmap::Namespace(idmap.namespace.to_path_buf());
    layers
        .iter()
        .enumerate()
        .map(|(i, layer)| {
            let target = dir.join(format!("{name}-layer-{i}"));
            host.mount_idmapped(layer, &target, &mapping, false)
                .map_err(|e| idmap_error(layer, e))?;
            Ok(target)
        })
        .collect()
}

/// Replaces the source of every bind mount in `spec` by an id-mapped
/// clone of it. A CRI mount's own `uidMappings`/`gidMappings` are used
/// for it; every other bind gets the pod's. Image volumes are left as
/// they are: overlayfs cannot be id-mapped, so they were stacked from
/// id-mapped layers already.
pub fn idmap_bind_sources(
    host: &dyn HostOps,
    rec: &ContainerRecord,
    idmap: &PodIdmap<'_>,
    cri_mounts: &[ResolvedMount],
    spec: &mut Spec,
) -> Result<(), ContainerError> {
    let dir = staging_dir(rec);
    let Some(mounts) = spec.mounts_mut() else {
        return Ok(());
    };
    for (i, mount) in mounts.iter_mut().enumerate() {
        let Some(recursive) = bind_kind(mount) else {
            continue;
        };
        let Some(source) = mount.source().clone() else {
            continue;
        };
        let cri_mount = cri_mounts
            .iter()
            .find(|m| Path::new(&m.container_path) == mount.destination());
        if cri_mount.is_some_and(|m| m.image_volume) {
            continue;
        }
        let own = cri_mount.and_then(|m| m.id_maps);
        let target = dir.join(format!("mount-{i}"));
        host.mount_idmapped(&source, &target, &idmap.for_mount(own), recursive)
            .map_err(|e| idmap_error(&source, e))?;
        mount.set_source(Some(target));
    }
    Ok(())
}

/// Whether a mount is a bind (`Some(true)` for a recursive one).
fn bind_kind(mount: &Mount) -> Option<bool> {
    let options = mount.options().as_deref().unwrap_or_default();
    if options.iter().any(|o| o == "rbind") {
        return Some(true);
    }
    let bind = options.iter().any(|o| o == "bind") || mount.typ().as_deref() == Some("bind");
    bind.then_some(false)
}

/// A filesystem that cannot be id-mapped is the host's condition, not
/// a fault of the request or of peapod.
fn idmap_error(path: &Path, e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::EINVAL | libc::EPERM | libc::EOPNOTSUPP) => Error::FailedPrecondition(format!(
            "{} cannot be id-mapped for the pod's user namespace (its filesystem does not \
             support idmapped mounts): {e}",
            path.display()
        )),
        _ => Error::internal(&format!("id-map {}", path.display()), e),
    }
}

/// Gives what the daemon creates in a user-namespaced container's
/// writable layer to the pod's root, so the container's root owns it.
pub fn give_to_pod_root(path: &Path, maps: &UserNamespaceMaps) -> Result<(), ContainerError> {
    let Some((uid, gid)) = maps.host_root() else {
        return Ok(());
    };
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .map_err(|e| Error::internal(&format!("chown {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(typ: Option<&str>, options: &[&str]) -> Mount {
        let mut m = Mount::default();
        m.set_typ(typ.map(String::from));
        m.set_options(Some(options.iter().map(|o| o.to_string()).collect()));
        m
    }

    #[test]
    fn binds_are_told_apart_from_other_mounts() {
        assert_eq!(
            bind_kind(&mount(Some("bind"), &["rbind", "ro"])),
            Some(true)
        );
        assert_eq!(bind_kind(&mount(Some("bind"), &["ro"])), Some(false));
        assert_eq!(bind_kind(&mount(None, &["bind"])), Some(false));
        assert_eq!(bind_kind(&mount(Some("proc"), &["nosuid"])), None);
        assert_eq!(bind_kind(&mount(Some("tmpfs"), &["mode=755"])), None);
    }

    #[test]
    fn a_filesystem_without_idmap_support_is_the_hosts_condition() {
        let e = idmap_error(
            Path::new("/srv/x"),
            io::Error::from_raw_os_error(libc::EINVAL),
        );
        assert!(
            matches!(e, Error::FailedPrecondition(ref m) if m.contains("/srv/x")),
            "{e:?}"
        );
        let e = idmap_error(
            Path::new("/srv/x"),
            io::Error::from_raw_os_error(libc::ENOMEM),
        );
        assert!(matches!(e, Error::Internal(_)), "{e:?}");
    }
}
