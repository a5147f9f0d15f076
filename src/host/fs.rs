//! File-system helpers shared by the pod sandbox, container and image
//! stores: replacing a file whole, removing what may already be gone,
//! unmounting, measuring a directory tree. Every removal here is
//! idempotent: what is already gone is not an error.

use std::io;
use std::path::Path;

use nix::mount::{umount2, MntFlags};

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

/// Unmounts every mount at or below `dir`, deepest first, so that nothing
/// a later removal of `dir` walks into is another filesystem.
pub fn unmount_below(dir: &Path) -> io::Result<()> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mut points: Vec<std::path::PathBuf> = mount_points(&mountinfo)
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    for p in points {
        unmount_all(&p)?;
    }
    Ok(())
}

/// The mount points of a mountinfo text (its fifth field, unescaped).
fn mount_points(mountinfo: &str) -> impl Iterator<Item = std::path::PathBuf> + '_ {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|field| std::path::PathBuf::from(unescape_mountinfo(field)))
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
pub fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                let value = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
                out.push(value as u8);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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

/// Bytes (allocated, as `du`) and inodes below `dir`, not crossing into
/// other filesystems; a missing directory uses nothing.
pub fn usage(dir: &Path) -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let root = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(e),
    };
    let (mut bytes, mut inodes) = (0u64, 0u64);
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = match std::fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if m.dev() != root.dev() || !seen.insert(m.ino()) {
            continue;
        }
        inodes += 1;
        bytes += m.blocks() * 512;
        if m.is_dir() {
            match std::fs::read_dir(&p) {
                Ok(entries) => {
                    for e in entries.flatten() {
                        stack.push(e.path());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok((bytes, inodes))
}

/// The binary `path` names: the path itself when it has a directory, else
/// the first executable of that name in the daemon's PATH.
pub fn find_executable(path: &Path) -> Option<std::path::PathBuf> {
    if path.components().count() > 1 {
        return is_executable(path).then(|| path.to_path_buf());
    }
    std::env::split_paths(&search_path())
        .map(|dir| dir.join(path))
        .find(|p| is_executable(p))
}

/// The PATH the daemon runs other programs with: its own, or the default.
pub fn search_path() -> String {
    std::env::var("PATH").unwrap_or_else(|_| super::DEFAULT_PATH.to_string())
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn mount_points_are_unescaped() {
        let text = "36 35 98:0 / /mnt/a\\040b rw - ext3 /dev/root rw\n\
                    37 36 98:0 / /mnt/c\\134d rw - ext3 /dev/root rw\n";
        let points: Vec<_> = mount_points(text).collect();
        assert_eq!(
            points,
            [
                std::path::PathBuf::from("/mnt/a b"),
                std::path::PathBuf::from("/mnt/c\\d")
            ]
        );
    }

    #[test]
    fn unmounts_everything_below_a_directory_deepest_first() {
        assert!(nix::unistd::geteuid().is_root(), "needs root");
        let d = tempfile::tempdir().unwrap();
        let outer = d.path().join("a");
        let inner = outer.join("b");
        std::fs::create_dir_all(&outer).unwrap();
        let tmpfs = |p: &Path| {
            nix::mount::mount(
                Some("tmpfs"),
                p,
                Some("tmpfs"),
                nix::mount::MsFlags::empty(),
                None::<&str>,
            )
            .unwrap()
        };
        tmpfs(&outer);
        std::fs::create_dir(&inner).unwrap();
        tmpfs(&inner);
        unmount_below(d.path()).unwrap();
        let left = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!left.contains(&*d.path().to_string_lossy()), "{left}");
    }

    #[test]
    fn usage_of_a_tree() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("f"), vec![0u8; 5000]).unwrap();
        let (b, i) = usage(d.path()).unwrap();
        assert_eq!(i, 2);
        assert!(b >= 4096);
        assert_eq!(usage(&d.path().join("missing")).unwrap(), (0, 0));
    }
}
