//! Where peapod keeps its files: overlayfs and idmapped mounts on those
//! filesystems, the socket's directory, free space.
//!
//! Probes run next to the configured directories (inside them when they
//! exist, else in their nearest existing parent), so a check creates
//! nothing that stays.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{is_root, not_root, Finding};
use crate::host::{Host, HostOps};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
/// Below this under root_dir, pulls and writable layers soon fail.
const SPACE_WARN: u64 = 2 * GIB;
/// Below this, not even one usual image fits.
const SPACE_FAIL: u64 = 256 * MIB;

/// A unix socket path holds at most this many bytes (sun_path, with its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// `path`, or its nearest parent that exists.
pub(super) fn existing_ancestor(path: &Path) -> PathBuf {
    path.ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"))
        .to_path_buf()
}

/// A directory a probe works in, removed (after unmounting whatever the
/// probe left mounted in it) on drop.
pub(super) struct ProbeDir(PathBuf);

impl ProbeDir {
    /// A fresh directory in `near`, or in its nearest existing parent.
    pub(super) fn new(near: &Path, what: &str) -> io::Result<ProbeDir> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = existing_ancestor(near).join(format!(
            ".peapod-check-{what}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir)?;
        Ok(ProbeDir(dir))
    }

    pub(super) fn path(&self) -> &Path {
        &self.0
    }

    /// `name` inside, created as a directory.
    pub(super) fn subdir(&self, name: &str) -> io::Result<PathBuf> {
        let p = self.0.join(name);
        std::fs::create_dir_all(&p)?;
        Ok(p)
    }
}

impl Drop for ProbeDir {
    fn drop(&mut self) {
        match crate::host::fs::unmount_below(&self.0) {
            Ok(()) => {
                let _ = std::fs::remove_dir_all(&self.0);
            }
            // Never walk into a mount that stayed: leave the directory.
            Err(e) => tracing::warn!(
                "cannot unmount what the check mounted under {}: {e}",
                self.0.display()
            ),
        }
    }
}

pub(super) fn overlayfs(root_dir: &Path) -> Finding {
    let listed = overlay_listed();
    let listed_text = if listed {
        "overlay in /proc/filesystems"
    } else {
        "overlay not in /proc/filesystems (yet)"
    };
    if !is_root() {
        return not_root("overlayfs", listed_text);
    }
    let where_ = existing_ancestor(root_dir);
    match try_overlay_mount(root_dir) {
        Ok(()) => Finding::ok(
            "overlayfs",
            format!("{listed_text}; an overlay mounts under {}", where_.display()),
        ),
        Err(e) => Finding::fail(
            "overlayfs",
            format!("{listed_text}; an overlay under {} fails: {e}", where_.display()),
            "load overlayfs (modprobe overlay) and put root_dir on a filesystem overlayfs takes as its upper layer (ext4, xfs with ftype=1, btrfs)",
        ),
    }
}

fn overlay_listed() -> bool {
    std::fs::read_to_string("/proc/filesystems").is_ok_and(|t| {
        t.lines()
            .any(|l| l.split_whitespace().last() == Some("overlay"))
    })
}

/// Mounts (and unmounts) an overlay whose layers are next to root_dir, as
/// a container's root filesystem is.
fn try_overlay_mount(root_dir: &Path) -> io::Result<()> {
    let probe = ProbeDir::new(root_dir, "overlay")?;
    let lower = probe.subdir("lower")?;
    let (upper, work, merged) = (
        probe.subdir("upper")?,
        probe.subdir("work")?,
        probe.subdir("merged")?,
    );
    Host.mount_overlay(&[lower], &upper, &work, &merged)?;
    crate::host::fs::unmount_all(&merged)
}

pub(super) fn idmapped_mounts(state_dir: &Path) -> Finding {
    if !is_root() {
        return not_root("idmapped-mounts", "idmapped mounts");
    }
    let where_ = existing_ancestor(state_dir);
    // In a directory of its own: the daemon probes state_dir itself at
    // start, and two probes must not share (and remove) one directory.
    let tried = ProbeDir::new(state_dir, "idmap")
        .and_then(|probe| crate::host::idmap::supported_under(probe.path()));
    match tried {
        Ok(()) => Finding::ok(
            "idmapped-mounts",
            format!("idmapped mounts work under {}", where_.display()),
        ),
        Err(e) => Finding::warn(
            "idmapped-mounts",
            format!(
                "idmapped mounts fail under {}: {e}; pods with a user namespace are refused",
                where_.display()
            ),
            "put state_dir on a filesystem that takes idmapped mounts (ext4, xfs, btrfs from Linux 5.12; tmpfs from 6.3)",
        ),
    }
}

/// What the socket's directory is like.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SocketDir {
    Exists {
        is_dir: bool,
        uid: u32,
        mode: u32,
    },
    /// Not there yet: the daemon creates it in `parent`.
    Missing {
        parent: PathBuf,
        creatable: bool,
    },
    Unreadable(String),
}

pub(super) fn socket_dir(socket: &Path) -> Finding {
    let dir = socket.parent().unwrap_or(Path::new("/"));
    let state = match std::fs::metadata(dir) {
        Ok(m) => SocketDir::Exists {
            is_dir: m.is_dir(),
            uid: m.uid(),
            mode: m.mode() & 0o7777,
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let parent = existing_ancestor(dir);
            let creatable = nix::unistd::access(
                &parent,
                nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
            )
            .is_ok();
            SocketDir::Missing { parent, creatable }
        }
        Err(e) => SocketDir::Unreadable(e.to_string()),
    };
    judge_socket_dir(socket, &state)
}

fn judge_socket_dir(socket: &Path, state: &SocketDir) -> Finding {
    const ID: &str = "socket-dir";
    let dir = socket.parent().unwrap_or(Path::new("/")).display();
    let length = socket.as_os_str().len();
    if length > MAX_SOCKET_PATH {
        return Finding::fail(
            ID,
            format!("{} is {length} bytes long", socket.display()),
            format!("choose a socket path of at most {MAX_SOCKET_PATH} bytes (a unix socket address holds no more)"),
        );
    }
    match state {
        SocketDir::Exists { is_dir: false, .. } => Finding::fail(
            ID,
            format!("{dir} is not a directory"),
            "remove it or choose another socket path",
        ),
        SocketDir::Exists { uid, mode, .. } if *uid != 0 => Finding::fail(
            ID,
            format!("{dir} is owned by uid {uid} (mode {mode:04o})"),
            format!("chown root {dir}: its owner can replace the CRI socket kubelet talks to"),
        ),
        SocketDir::Exists { mode, .. } if mode & 0o002 != 0 => Finding::fail(
            ID,
            format!("{dir} is writable by others (mode {mode:04o})"),
            format!("chmod o-w {dir}: anyone could replace the CRI socket kubelet talks to"),
        ),
        SocketDir::Exists { mode, .. } => {
            Finding::ok(ID, format!("{dir}: owned by root, mode {mode:04o}"))
        }
        SocketDir::Missing {
            parent,
            creatable: true,
        } => Finding::ok(
            ID,
            format!(
                "{dir} does not exist yet; peapod creates it in {}",
                parent.display()
            ),
        ),
        SocketDir::Missing {
            parent,
            creatable: false,
        } => Finding::fail(
            ID,
            format!(
                "{dir} does not exist and {} is not writable here",
                parent.display()
            ),
            format!("create {dir} (owned by root, mode 0755) or choose another socket path"),
        ),
        SocketDir::Unreadable(e) => Finding::fail(
            ID,
            format!("cannot inspect {dir}: {e}"),
            "make the socket's directory readable by root, or choose another socket path",
        ),
    }
}

pub(super) fn disk_space(root_dir: &Path) -> Finding {
    let where_ = existing_ancestor(root_dir);
    match nix::sys::statvfs::statvfs(&where_) {
        Ok(s) => judge_space(
            &where_,
            s.blocks_available().saturating_mul(s.fragment_size()),
        ),
        Err(e) => Finding::fail(
            "disk-space",
            format!("statvfs {}: {e}", where_.display()),
            "make root_dir's filesystem reachable",
        ),
    }
}

fn judge_space(path: &Path, available: u64) -> Finding {
    let found = format!(
        "{} free under {} (WARN below {}, FAIL below {})",
        bytes(available),
        path.display(),
        bytes(SPACE_WARN),
        bytes(SPACE_FAIL)
    );
    let fix = "free space on root_dir's filesystem or move root_dir: images and containers' writable layers live there";
    if available < SPACE_FAIL {
        Finding::fail("disk-space", found, fix)
    } else if available < SPACE_WARN {
        Finding::warn("disk-space", found, fix)
    } else {
        Finding::ok("disk-space", found)
    }
}

/// `51.2 GiB`, `300 MiB`.
fn bytes(n: u64) -> String {
    if n >= GIB {
        format!("{:.1} GiB", n as f64 / GIB as f64)
    } else {
        format!("{} MiB", n / MIB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preflight::Level;

    #[test]
    fn space_thresholds() {
        let p = Path::new("/var/lib/peapod");
        assert_eq!(judge_space(p, 0).level, Level::Fail);
        assert_eq!(judge_space(p, SPACE_FAIL - 1).level, Level::Fail);
        assert_eq!(judge_space(p, SPACE_FAIL).level, Level::Warn);
        assert_eq!(judge_space(p, SPACE_WARN - 1).level, Level::Warn);
        assert_eq!(judge_space(p, SPACE_WARN).level, Level::Ok);
        let f = judge_space(p, 300 * MIB);
        assert_eq!(
            f.found,
            "300 MiB free under /var/lib/peapod (WARN below 2.0 GiB, FAIL below 256 MiB)"
        );
        assert!(f.fix.is_some());
        assert!(judge_space(p, 50 * GIB).found.starts_with("50.0 GiB free"));
        assert_eq!(judge_space(p, 50 * GIB).fix, None);
    }

    #[test]
    fn socket_dir_decisions() {
        let s = Path::new("/run/peapod/peapod.sock");
        let exists = |uid, mode| SocketDir::Exists {
            is_dir: true,
            uid,
            mode,
        };
        assert_eq!(judge_socket_dir(s, &exists(0, 0o755)).level, Level::Ok);
        assert_eq!(judge_socket_dir(s, &exists(0, 0o770)).level, Level::Ok);
        let f = judge_socket_dir(s, &exists(0, 0o1777));
        assert_eq!(f.level, Level::Fail);
        assert!(f.found.contains("1777"), "{f:?}");
        assert_eq!(judge_socket_dir(s, &exists(1000, 0o755)).level, Level::Fail);
        let not_dir = SocketDir::Exists {
            is_dir: false,
            uid: 0,
            mode: 0o644,
        };
        assert_eq!(judge_socket_dir(s, &not_dir).level, Level::Fail);
        let missing = |creatable| SocketDir::Missing {
            parent: PathBuf::from("/run"),
            creatable,
        };
        assert_eq!(judge_socket_dir(s, &missing(true)).level, Level::Ok);
        assert_eq!(judge_socket_dir(s, &missing(false)).level, Level::Fail);
        let long = PathBuf::from(format!("/run/{}/p.sock", "x".repeat(100)));
        let f = judge_socket_dir(&long, &exists(0, 0o755));
        assert_eq!(f.level, Level::Fail);
        assert!(f.found.contains("bytes long"), "{f:?}");
    }

    #[test]
    fn probe_dirs_are_made_next_to_missing_paths_and_removed() {
        let d = tempfile::tempdir().unwrap();
        let wanted = d.path().join("not/yet");
        let probe = ProbeDir::new(&wanted, "t").unwrap();
        assert_eq!(probe.path().parent(), Some(d.path()));
        let inner = probe.subdir("a/b").unwrap();
        assert!(inner.is_dir());
        let path = probe.path().to_path_buf();
        drop(probe);
        assert!(!path.exists());
        assert!(!wanted.exists());
    }
}
