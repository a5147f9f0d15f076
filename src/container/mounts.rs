//! The host side of a container's CRI mounts and devices: host paths must
//! exist (symlinks are resolved to their targets), propagation needs a
//! host mount that can propagate, devices must be device nodes.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxDeviceType;

use super::error::ContainerError;
use super::runtime_spec::{ResolvedDevice, ResolvedMount};
use super::spec::{DeviceSpec, MountSpec, Propagation};

/// One line of /proc/self/mountinfo, as far as propagation goes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MountPoint {
    path: String,
    shared: bool,
    slave: bool,
}

fn parse_mountinfo(text: &str) -> Vec<MountPoint> {
    text.lines()
        .filter_map(|l| {
            let (pre, _) = l.split_once(" - ")?;
            let fields: Vec<&str> = pre.split(' ').collect();
            let path = crate::host::fs::unescape_mountinfo(fields.get(4)?);
            let optional = fields.get(6..).unwrap_or(&[]);
            Some(MountPoint {
                path,
                shared: optional.iter().any(|f| f.starts_with("shared:")),
                slave: optional.iter().any(|f| f.starts_with("master:")),
            })
        })
        .collect()
}

/// The mount that holds `path` (the last one listed on the longest
/// matching mount point: later mounts cover earlier ones).
fn holding_mount<'a>(mounts: &'a [MountPoint], path: &Path) -> Option<&'a MountPoint> {
    let mut best: Option<&MountPoint> = None;
    for m in mounts {
        let mp = Path::new(&m.path);
        if path.starts_with(mp)
            && best
                .is_none_or(|b| mp.components().count() >= Path::new(&b.path).components().count())
        {
            best = Some(m);
        }
    }
    best
}

/// Checks and resolves the CRI mounts of host paths; image volumes are
/// only checked here and resolved once staged ([`super::image_volumes`]).
/// `rro` says whether the runtime handler supports recursively read-only
/// mounts.
pub fn resolve_mounts(
    mounts: &[MountSpec],
    rro: bool,
) -> Result<Vec<ResolvedMount>, ContainerError> {
    let needs_mountinfo = mounts
        .iter()
        .any(|m| m.image.is_none() && m.propagation != Propagation::Private);
    let table = if needs_mountinfo {
        let text = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| ContainerError::internal("read /proc/self/mountinfo", e))?;
        parse_mountinfo(&text)
    } else {
        Vec::new()
    };
    let mut out = Vec::new();
    for (i, m) in mounts.iter().enumerate() {
        let field = format!("config.mounts[{i}]");
        check_recursive_read_only(m, rro, &field)?;
        if m.image.is_some() {
            continue;
        }
        let source = host_source(m, &field)?;
        if m.propagation != Propagation::Private {
            check_propagation(&table, &source, m.propagation, &field)?;
        }
        out.push(ResolvedMount {
            container_path: m.container_path.clone(),
            source,
            readonly: m.readonly,
            recursive_read_only: m.recursive_read_only,
            propagation: m.propagation,
            id_maps: m.id_maps,
            image_volume: false,
        });
    }
    Ok(out)
}

/// The mount's host path with every symlink resolved; it must exist.
fn host_source(m: &MountSpec, field: &str) -> Result<PathBuf, ContainerError> {
    std::fs::canonicalize(&m.host_path).map_err(|e| {
        ContainerError::invalid(
            &format!("{field}.host_path"),
            if e.kind() == std::io::ErrorKind::NotFound {
                format!("{:?} does not exist on the host", m.host_path)
            } else {
                format!("{:?}: {e}", m.host_path)
            },
        )
    })
}

/// A recursively read-only mount needs the handler's support, `readonly`
/// and private propagation.
fn check_recursive_read_only(m: &MountSpec, rro: bool, field: &str) -> Result<(), ContainerError> {
    if !m.recursive_read_only {
        return Ok(());
    }
    if !rro {
        return Err(ContainerError::invalid(
            &format!("{field}.recursive_read_only"),
            "the runtime handler does not support recursively read-only mounts",
        ));
    }
    if !m.readonly || m.propagation != Propagation::Private {
        return Err(ContainerError::invalid(
            &format!("{field}.recursive_read_only"),
            "needs readonly and private propagation",
        ));
    }
    Ok(())
}

/// Propagation other than private needs the host mount holding `source`
/// to propagate: shared for bidirectional, shared or slave otherwise.
fn check_propagation(
    table: &[MountPoint],
    source: &Path,
    propagation: Propagation,
    field: &str,
) -> Result<(), ContainerError> {
    let host = holding_mount(table, source).ok_or_else(|| {
        ContainerError::internal(
            "find the mount of a host path",
            format!(
                "{} is on no mount in /proc/self/mountinfo",
                source.display()
            ),
        )
    })?;
    let (ok, want, flag) = match propagation {
        Propagation::Bidirectional => (host.shared, "shared", "--make-rshared"),
        _ => (
            host.shared || host.slave,
            "shared or slave",
            "--make-rshared",
        ),
    };
    if !ok {
        return Err(ContainerError::FailedPrecondition(format!(
            "{field}.propagation: {} is on the mount {:?}, which is not a {want} mount; \
             `mount {flag} {}` on the host first",
            source.display(),
            host.path,
            host.path
        )));
    }
    Ok(())
}

fn device_of(path: &Path, container_path: &str, permissions: &str) -> Option<ResolvedDevice> {
    let m = std::fs::metadata(path).ok()?;
    let ft = m.file_type();
    let kind = if ft.is_char_device() {
        LinuxDeviceType::C
    } else if ft.is_block_device() {
        LinuxDeviceType::B
    } else {
        return None;
    };
    let rdev = m.rdev();
    Some(ResolvedDevice {
        container_path: container_path.to_string(),
        kind,
        major: nix::sys::stat::major(rdev) as i64,
        minor: nix::sys::stat::minor(rdev) as i64,
        mode: m.mode(),
        uid: m.uid(),
        gid: m.gid(),
        permissions: permissions.to_string(),
    })
}

/// Checks and resolves the CRI devices.
pub fn resolve_devices(devices: &[DeviceSpec]) -> Result<Vec<ResolvedDevice>, ContainerError> {
    let mut out = Vec::new();
    for (i, d) in devices.iter().enumerate() {
        let field = format!("config.devices[{i}]");
        let perms = if d.permissions.is_empty() {
            "rwm"
        } else {
            d.permissions.as_str()
        };
        if !perms.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
            return Err(ContainerError::invalid(
                &format!("{field}.permissions"),
                format!("{perms:?} is not made of r, w and m"),
            ));
        }
        let host = Path::new(&d.host_path);
        match std::fs::metadata(host) {
            Err(e) => {
                return Err(ContainerError::invalid(
                    &format!("{field}.host_path"),
                    format!("{:?}: {e}", d.host_path),
                ))
            }
            Ok(m) if m.is_dir() => {
                // Every device below a directory, at the same place under
                // the container path.
                for entry in walk_devices(host) {
                    let rel = entry.strip_prefix(host).unwrap_or(&entry);
                    let cpath = Path::new(&d.container_path).join(rel);
                    if let Some(dev) = device_of(&entry, &cpath.to_string_lossy(), perms) {
                        out.push(dev);
                    }
                }
            }
            Ok(_) => {
                let dev = device_of(host, &d.container_path, perms).ok_or_else(|| {
                    ContainerError::invalid(
                        &format!("{field}.host_path"),
                        format!("{:?} is not a character or block device", d.host_path),
                    )
                })?;
                out.push(dev);
            }
        }
    }
    Ok(out)
}

fn walk_devices(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_char_device() || ft.is_block_device() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// Every device node of the host's /dev, for a privileged container
/// (without the pseudo-terminals and the filesystems a container has of
/// its own).
pub fn host_devices() -> Vec<ResolvedDevice> {
    let skip = [
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/dev/.lxc",
        "/dev/.udev",
    ];
    walk_devices(Path::new("/dev"))
        .into_iter()
        .filter(|p| !skip.iter().any(|s| p.starts_with(s)))
        .filter(|p| p != Path::new("/dev/console") && p != Path::new("/dev/ptmx"))
        .filter_map(|p| device_of(&p, &p.to_string_lossy(), "rwm"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:25 / /mnt/shared rw shared:7 - tmpfs tmpfs rw
31 22 0:26 / /mnt/slave rw master:7 - tmpfs tmpfs rw
32 22 0:27 / /mnt/private rw - tmpfs tmpfs rw
33 22 0:28 / /mnt/with\\040space rw - tmpfs tmpfs rw
";

    #[test]
    fn mountinfo_propagation() {
        let t = parse_mountinfo(MOUNTINFO);
        assert_eq!(t.len(), 5);
        let m = holding_mount(&t, Path::new("/mnt/shared/a/b")).unwrap();
        assert_eq!(m.path, "/mnt/shared");
        assert!(m.shared);
        assert!(holding_mount(&t, Path::new("/mnt/slave/x")).unwrap().slave);
        let p = holding_mount(&t, Path::new("/mnt/private")).unwrap();
        assert!(!p.shared && !p.slave);
        assert_eq!(holding_mount(&t, Path::new("/etc")).unwrap().path, "/");
        assert_eq!(t[4].path, "/mnt/with space");
        // /mnt/sharedX is not under /mnt/shared.
        assert_eq!(
            holding_mount(&t, Path::new("/mnt/sharedX")).unwrap().path,
            "/"
        );
    }

    fn spec(host: &str, prop: Propagation) -> MountSpec {
        MountSpec {
            container_path: "/c".into(),
            host_path: host.into(),
            readonly: false,
            recursive_read_only: false,
            selinux_relabel: false,
            propagation: prop,
            id_maps: None,
            image: None,
        }
    }

    #[test]
    fn missing_host_path_names_the_mount() {
        let e = resolve_mounts(
            &[
                spec("/tmp", Propagation::Private),
                spec("/nonexistent/x", Propagation::Private),
            ],
            true,
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with("config.mounts[1].host_path:"),
            "{e}"
        );
    }

    #[test]
    fn symlinked_host_paths_resolve_to_their_target() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("real")).unwrap();
        std::os::unix::fs::symlink(d.path().join("real"), d.path().join("link")).unwrap();
        let r = resolve_mounts(
            &[spec(
                &d.path().join("link").to_string_lossy(),
                Propagation::Private,
            )],
            true,
        )
        .unwrap();
        assert_eq!(r[0].source, d.path().join("real").canonicalize().unwrap());
    }

    #[test]
    fn image_volumes_are_left_for_staging() {
        let mut volume = spec("", Propagation::HostToContainer);
        volume.image = Some(crate::container::spec::ImageVolumeSpec {
            image: "sha256:ab".into(),
            user_specified_image: String::new(),
            sub_path: String::new(),
        });
        let r =
            resolve_mounts(&[volume.clone(), spec("/tmp", Propagation::Private)], true).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].source, Path::new("/tmp").canonicalize().unwrap());
        // Whether the runtime handler can make it recursively read-only
        // is checked for an image volume too.
        volume.recursive_read_only = true;
        let e = resolve_mounts(&[volume], false).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("config.mounts[0].recursive_read_only:"),
            "{e}"
        );
    }

    #[test]
    fn rro_needs_support_readonly_and_private() {
        let mut m = spec("/tmp", Propagation::Private);
        m.recursive_read_only = true;
        m.readonly = true;
        assert!(resolve_mounts(std::slice::from_ref(&m), true).is_ok());
        let e = resolve_mounts(std::slice::from_ref(&m), false).unwrap_err();
        assert!(e.to_string().contains("recursive_read_only"), "{e}");
        m.readonly = false;
        assert!(resolve_mounts(&[m], true).is_err());
    }

    #[test]
    fn devices() {
        let r = resolve_devices(&[DeviceSpec {
            container_path: "/dev/mynull".into(),
            host_path: "/dev/null".into(),
            permissions: "rw".into(),
        }])
        .unwrap();
        assert_eq!((r[0].major, r[0].minor), (1, 3));
        assert!(matches!(r[0].kind, LinuxDeviceType::C));
        let e = resolve_devices(&[DeviceSpec {
            container_path: "/dev/x".into(),
            host_path: "/etc/hostname".into(),
            permissions: String::new(),
        }])
        .unwrap_err();
        assert!(e.to_string().contains("config.devices[0].host_path"), "{e}");
        let e = resolve_devices(&[DeviceSpec {
            container_path: "/dev/x".into(),
            host_path: "/dev/null".into(),
            permissions: "rwx".into(),
        }])
        .unwrap_err();
        assert!(e.to_string().contains("permissions"), "{e}");
        assert!(host_devices()
            .iter()
            .any(|d| d.container_path == "/dev/null"));
    }
}
