//! A container's root filesystem: the image's unpacked layers stacked by
//! overlayfs under a writable layer of its own, the image's volumes, and
//! the generated /etc/hosts.

use std::io;
use std::path::Path;

use super::user::secure_join;

/// Creates the image's volume directories that no CRI mount covers, as
/// empty directories in the writable layer, owned by `owner` (host uid and
/// gid) when given.
pub fn create_volumes(
    rootfs: &Path,
    volumes: &[String],
    mounted: &[String],
    owner: Option<(u32, u32)>,
) -> io::Result<()> {
    for v in volumes {
        let clean = v.trim_end_matches('/');
        if clean.is_empty() || mounted.iter().any(|m| m.trim_end_matches('/') == clean) {
            continue;
        }
        let dir = secure_join(rootfs, clean)?;
        match std::fs::symlink_metadata(&dir) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                create_owned_dirs(rootfs, &dir, owner)?
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `dir` and its missing parents below `rootfs`, each given to `owner`.
fn create_owned_dirs(rootfs: &Path, dir: &Path, owner: Option<(u32, u32)>) -> io::Result<()> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|d| *d != rootfs && !d.exists())
        .collect();
    std::fs::create_dir_all(dir)?;
    if let Some((uid, gid)) = owner {
        for d in missing {
            std::os::unix::fs::lchown(d, Some(uid), Some(gid))?;
        }
    }
    Ok(())
}

/// An /etc/hosts for a container whose kubelet mounts none.
pub fn hosts_file(hostname: &str, ips: &[String]) -> String {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    if !hostname.is_empty() {
        for ip in ips {
            out.push_str(&format!("{ip}\t{hostname}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_are_created_inside_the_rootfs_only() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        // A symlink pointing out of the rootfs must resolve inside it.
        std::os::unix::fs::symlink("/", root.join("escape")).unwrap();
        create_volumes(
            &root,
            &[
                "/data".into(),
                "/escape/outside-vol".into(),
                "/mnt/x".into(),
            ],
            &["/mnt/x".into()],
            None,
        )
        .unwrap();
        assert!(root.join("data").is_dir());
        assert!(root.join("outside-vol").is_dir());
        assert!(!Path::new("/outside-vol").exists());
        assert!(!root.join("mnt/x").exists());
    }

    #[test]
    fn volumes_of_a_user_namespaced_pod_belong_to_its_root() {
        use std::os::unix::fs::MetadataExt;
        assert!(nix::unistd::geteuid().is_root(), "needs root");
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("var")).unwrap();
        create_volumes(&root, &["/var/a/b".into()], &[], Some((100000, 100001))).unwrap();
        for dir in ["var/a", "var/a/b"] {
            let m = std::fs::metadata(root.join(dir)).unwrap();
            assert_eq!((m.uid(), m.gid()), (100000, 100001), "{dir}");
        }
        // What was there before keeps its owner.
        assert_eq!(std::fs::metadata(root.join("var")).unwrap().uid(), 0);
    }

    #[test]
    fn hosts_has_localhost_and_the_pod() {
        let h = hosts_file("web", &["10.1.0.5".into()]);
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.ends_with("10.1.0.5\tweb\n"));
    }
}
