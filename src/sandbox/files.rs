//! Host-side files and mounts of a pod: resolv.conf, hostname, the /dev/shm
//! tmpfs and the network namespace bind mount. Every removal here is
//! idempotent: what is already gone is not an error.

use std::io;
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::spec::DnsConfig;

/// The pod's resolv.conf: the DNS config kubelet computed, or the host's.
pub fn resolv_conf(dns: Option<&DnsConfig>) -> io::Result<String> {
    let Some(dns) =
        dns.filter(|d| !(d.servers.is_empty() && d.searches.is_empty() && d.options.is_empty()))
    else {
        return match std::fs::read_to_string("/etc/resolv.conf") {
            Ok(s) => Ok(s),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(e),
        };
    };
    let mut out = String::new();
    if !dns.searches.is_empty() {
        out.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    for s in &dns.servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !dns.options.is_empty() {
        out.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    Ok(out)
}

/// Writes a file atomically (temp file + rename), so a crash never leaves a
/// half-written one for a container to bind-mount.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    write_replacing(path, contents, mode, true)
}

/// [`write_atomic`] without the fsync, for files whose loss in a power
/// failure does not matter (a container's bundle: what they belong to is
/// rolled back or gone after a reboot anyway). Readers still never see a
/// half-written file.
pub fn write_volatile(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    write_replacing(path, contents, mode, false)
}

fn write_replacing(path: &Path, contents: &[u8], mode: u32, sync: bool) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(contents)?;
    if sync {
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// Mounts a tmpfs for the pod's /dev/shm.
pub fn mount_shm(path: &Path, size: u64) -> io::Result<()> {
    std::fs::create_dir_all(path)?;
    let data = format!("mode=1777,size={size}");
    mount(
        Some("shm"),
        path,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(data.as_str()),
    )
    .map_err(io::Error::from)
}

/// Bind-mounts `/proc/<pid>/ns/net` on `target`, so the namespace outlives
/// the process and CNI and containers can join it by path.
pub fn bind_netns(pid: i32, target: &Path) -> io::Result<()> {
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(target)?;
    let source = format!("/proc/{pid}/ns/net");
    mount(
        Some(source.as_str()),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(io::Error::from)
}

/// Unmounts everything mounted on `path` (stacked mounts included).
pub fn unmount_all(path: &Path) -> io::Result<()> {
    loop {
        match umount2(path, MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            // EINVAL: not a mount point (any more). ENOENT: gone.
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(io::Error::from(e)),
        }
    }
}

/// Unmounts and deletes a file or directory mount point.
pub fn remove_mount_point(path: &Path) -> io::Result<()> {
    unmount_all(path)?;
    let r = match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) => Err(e),
    };
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// Removes a directory tree; only the mounts we made are expected inside,
/// and they must already be gone (never follow a mount into a filesystem).
pub fn remove_dir(path: &Path) -> io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_from_dns_config() {
        let dns = DnsConfig {
            servers: vec!["10.0.0.10".into(), "1.1.1.1".into()],
            searches: vec![
                "default.svc.cluster.local".into(),
                "svc.cluster.local".into(),
            ],
            options: vec!["ndots:5".into()],
        };
        assert_eq!(
            resolv_conf(Some(&dns)).unwrap(),
            "search default.svc.cluster.local svc.cluster.local\nnameserver 10.0.0.10\nnameserver 1.1.1.1\noptions ndots:5\n"
        );
    }

    #[test]
    fn resolv_conf_defaults_to_the_hosts() {
        let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        assert_eq!(resolv_conf(None).unwrap(), host);
        assert_eq!(resolv_conf(Some(&DnsConfig::default())).unwrap(), host);
    }

    #[test]
    fn atomic_write_replaces_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_atomic(&p, b"one", 0o644).unwrap();
        write_atomic(&p, b"two", 0o644).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two");
        assert!(!dir.path().join("f.tmp").exists());
    }

    #[test]
    fn removing_what_is_gone_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        remove_mount_point(&dir.path().join("nothing")).unwrap();
        remove_dir(&dir.path().join("nothing")).unwrap();
    }
}
