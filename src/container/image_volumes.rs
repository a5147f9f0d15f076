//! Image volumes (Kubernetes `ImageVolume`, CRI `Mount.image`): the root
//! filesystem of a pulled image, mounted read-only into a container.
//!
//! The image's unpacked layers are stacked by overlayfs without a writable
//! layer at a staging path in the container's directory,
//! `<dir>/image-volumes/<index>` (`index`: the mount's place in the
//! request); the OCI runtime then bind-mounts that directory, or the sub
//! path asked for inside it, at the mount's container path. The layers are
//! held like the root filesystem's while the container exists, and the
//! staging mounts go with everything mounted below the container's
//! directory: at exit and in `release`.

use std::io;
use std::path::{Path, PathBuf};

use super::create::{layer_dirs, present_image};
use super::idmapped::{self, PodIdmap};
use super::runtime_spec::ResolvedMount;
use super::spec::{ContainerRecord, ImageVolumeRecord, MountSpec};
use super::user::secure_join;
use crate::errors::Error;
use crate::host::HostOps;
use crate::image::Images;

/// The directory of a container's staging mounts.
const STAGING_DIR: &str = "image-volumes";

/// Where the image volume of `config.mounts[index]` is staged.
pub fn staging_path(container_dir: &Path, index: usize) -> PathBuf {
    container_dir.join(STAGING_DIR).join(index.to_string())
}

/// The image volumes `mounts` ask for, each with the layers of its image,
/// which must be in the store already (kubelet pulls it first).
pub(super) fn find(mounts: &[MountSpec], images: &Images) -> Result<Vec<ImageVolumeRecord>, Error> {
    let mut out = Vec::new();
    for (index, m) in mounts.iter().enumerate() {
        let Some(volume) = &m.image else { continue };
        let field = format!("config.mounts[{index}].image");
        let image = present_image(images, &volume.image, &volume.user_specified_image, &field)?;
        out.push(ImageVolumeRecord {
            index,
            image_id: image.id.clone(),
            layers: image.layers.iter().map(|l| l.chain_id.clone()).collect(),
        });
    }
    Ok(out)
}

/// Mounts the image layers `lower` (bottom first) read-only at `target`.
/// The layer directories are a parameter so that id-mapped ones (for
/// pods in a user namespace) can take the place of the store's.
pub fn mount_layers(host: &dyn HostOps, lower: &[PathBuf], target: &Path) -> io::Result<()> {
    host.mount_read_only_layers(lower, target)
}

/// Stages every image volume of `rec`; the mounts that bind them into the
/// container.
/// In a user-namespaced pod (`idmap`), the layers are id-mapped clones.
pub(super) fn stage_all(
    host: &dyn HostOps,
    images: &Images,
    rec: &ContainerRecord,
    idmap: Option<&PodIdmap<'_>>,
) -> Result<Vec<ResolvedMount>, Error> {
    rec.image_volumes
        .iter()
        .map(|v| stage(host, images, rec, v, idmap))
        .collect()
}

fn stage(
    host: &dyn HostOps,
    images: &Images,
    rec: &ContainerRecord,
    volume: &ImageVolumeRecord,
    idmap: Option<&PodIdmap<'_>>,
) -> Result<ResolvedMount, Error> {
    let field = format!("config.mounts[{}]", volume.index);
    let mount = rec.spec.mounts.get(volume.index).ok_or_else(|| {
        Error::Internal(format!("{field}: the record's image volume has no mount"))
    })?;
    let lower = layer_dirs(
        images,
        &volume.layers,
        &volume.image_id,
        &format!("{field}.image"),
    )?;
    let lower = match idmap {
        Some(idmap) => {
            let name = format!("volume-{}", volume.index);
            idmapped::idmapped_layers(host, rec, idmap, &lower, &name)?
        }
        None => lower,
    };
    let target = staging_path(&rec.dir, volume.index);
    mount_layers(host, &lower, &target)
        .map_err(|e| Error::internal(&format!("mount the image volume of {field}"), e))?;
    let sub_path = mount.image.as_ref().map_or("", |i| i.sub_path.as_str());
    let source = sub_directory(&target, sub_path)
        .map_err(|e| sub_path_error(&field, sub_path, &volume.image_id, e))?;
    Ok(ResolvedMount {
        container_path: mount.container_path.clone(),
        source,
        readonly: true,
        recursive_read_only: mount.recursive_read_only,
        propagation: mount.propagation,
        id_maps: None,
        image_volume: true,
    })
}

/// The directory `sub_path` of the image mounted at `root` (the root
/// itself for an empty one), with its symlinks resolved inside the image:
/// the OCI runtime resolves a bind source on the host, where an absolute
/// symlink of the image would lead out of it.
fn sub_directory(root: &Path, sub_path: &str) -> io::Result<PathBuf> {
    if sub_path.is_empty() {
        return Ok(root.to_path_buf());
    }
    let dir = secure_join(root, sub_path)?;
    if !std::fs::symlink_metadata(&dir)?.is_dir() {
        return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
    }
    Ok(dir)
}

/// A sub path that is not there is NotFound, like an image that is not;
/// one that is no directory is the request's mistake.
fn sub_path_error(field: &str, sub_path: &str, image_id: &str, e: io::Error) -> Error {
    let field = format!("{field}.image_sub_path");
    match e.raw_os_error() {
        Some(libc::ENOENT) => Error::NotFound(format!(
            "{field}: {sub_path:?} does not exist in image {image_id}"
        )),
        Some(libc::ENOTDIR) => Error::invalid(
            &field,
            format!("{sub_path:?} is not a directory in image {image_id}"),
        ),
        Some(libc::ELOOP) => Error::invalid(
            &field,
            format!("{sub_path:?} has too many symbolic links in image {image_id}"),
        ),
        _ => Error::internal(&format!("{field}: resolve {sub_path:?}"), e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_root() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("data/sub")).unwrap();
        std::fs::write(root.join("data/file"), b"x").unwrap();
        std::os::unix::fs::symlink("/data/sub", root.join("absolute")).unwrap();
        std::os::unix::fs::symlink("/", root.join("escape")).unwrap();
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        d
    }

    #[test]
    fn sub_directories_resolve_inside_the_image() {
        let d = image_root();
        let root = d.path();
        assert_eq!(sub_directory(root, "").unwrap(), root);
        assert_eq!(sub_directory(root, "data").unwrap(), root.join("data"));
        assert_eq!(
            sub_directory(root, "./data//sub/").unwrap(),
            root.join("data/sub")
        );
        // An absolute symlink of the image points into the image, not to
        // the host's directory of that name.
        assert_eq!(
            sub_directory(root, "absolute").unwrap(),
            root.join("data/sub")
        );
        assert_eq!(
            sub_directory(root, "escape/data").unwrap(),
            root.join("data")
        );
    }

    #[test]
    fn sub_path_errors_name_the_field() {
        let d = image_root();
        let root = d.path();
        let error = |sub: &str| {
            let e = sub_directory(root, sub).unwrap_err();
            sub_path_error("config.mounts[3]", sub, "sha256:ab", e)
        };
        assert_eq!(
            error("missing"),
            Error::NotFound(
                "config.mounts[3].image_sub_path: \"missing\" does not exist in image sha256:ab"
                    .into()
            )
        );
        let invalid = |message: &str| Error::invalid("config.mounts[3].image_sub_path", message);
        assert_eq!(
            error("data/file"),
            invalid("\"data/file\" is not a directory in image sha256:ab")
        );
        assert_eq!(
            error("data/file/below"),
            invalid("\"data/file/below\" is not a directory in image sha256:ab")
        );
        assert_eq!(
            error("loop"),
            invalid("\"loop\" has too many symbolic links in image sha256:ab")
        );
    }

    #[test]
    fn staging_paths_are_per_mount_under_the_container() {
        assert_eq!(
            staging_path(Path::new("/run/peapod/containers/c1"), 2),
            Path::new("/run/peapod/containers/c1/image-volumes/2")
        );
    }
}
