//! Id-mapped mounts: a clone of a mount whose files show, through a user
//! namespace's mappings, with the owners they have on disk as seen from
//! inside that namespace (a file of host uid 0 is uid 0 in a pod whose
//! root is host uid 65536, not `nobody`).
//!
//! The clone is made detached (`open_tree(OPEN_TREE_CLONE)`), given the
//! mapping (`mount_setattr(MOUNT_ATTR_IDMAP)`) and attached at a staging
//! path (`move_mount`); the OCI runtime then bind-mounts that path, and a
//! bind of an id-mapped mount keeps the mapping. overlayfs cannot be
//! id-mapped itself (EINVAL on the 6.x kernels measured), but takes
//! id-mapped lower layers.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::userns::UserNamespaceMaps;

/// Where an id-mapped mount takes its mapping from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Idmap {
    /// An existing user namespace, by path (`/proc/<pid>/ns/user`).
    Namespace(PathBuf),
    /// These mappings (a user namespace is made for them).
    Mappings(UserNamespaceMaps),
}

/// Clones the mount at `source` (with the mounts below it when
/// `recursive`), id-maps it and attaches it at `target`, which is created
/// as an empty file or directory like the source.
pub fn mount_idmapped(
    source: &Path,
    target: &Path,
    idmap: &Idmap,
    recursive: bool,
) -> io::Result<()> {
    let userns = match idmap {
        Idmap::Namespace(path) => open_path(path, OFlag::O_RDONLY)?,
        Idmap::Mappings(maps) => userns_with(maps)?,
    };
    let tree = open_tree(source, recursive)?;
    set_idmap(&tree, &userns, recursive)?;
    create_mount_point(target, source.is_dir())?;
    move_mount(&tree, target)
}

fn open_path(path: &Path, flags: OFlag) -> io::Result<OwnedFd> {
    nix::fcntl::open(path, flags | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| io::Error::other(format!("open {}: {e}", path.display())))
}

fn cstring(path: &Path) -> io::Result<std::ffi::CString> {
    std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))
}

fn open_tree(source: &Path, recursive: bool) -> io::Result<OwnedFd> {
    let path = cstring(source)?;
    let mut flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: a NUL-terminated path that outlives the call.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) };
    if fd < 0 {
        return Err(syscall_error("open_tree", source));
    }
    // SAFETY: the kernel just gave us this descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn set_idmap(tree: &OwnedFd, userns: &OwnedFd, recursive: bool) -> io::Result<()> {
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    let mut flags = libc::AT_EMPTY_PATH;
    if recursive {
        flags |= libc::AT_RECURSIVE;
    }
    // SAFETY: an empty path with AT_EMPTY_PATH, and an attr struct of the
    // size passed, both alive for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn move_mount(tree: &OwnedFd, target: &Path) -> io::Result<()> {
    let path = cstring(target)?;
    // SAFETY: as for open_tree; the detached tree's fd is ours.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(syscall_error("move_mount to", target));
    }
    Ok(())
}

fn syscall_error(call: &str, path: &Path) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{call} {}: {e}", path.display()))
}

fn create_mount_point(target: &Path, dir: bool) -> io::Result<()> {
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match dir {
        true => std::fs::create_dir_all(target),
        false => std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(target)
            .map(drop),
    }
}

/// Whether a directory under `dir` can be id-mapped: what user-namespaced
/// pods need of the filesystems peapod keeps its files on.
pub fn supported_under(dir: &Path) -> io::Result<()> {
    let probe = dir.join(format!("idmap-probe-{}", std::process::id()));
    let (source, target) = (probe.join("source"), probe.join("target"));
    std::fs::create_dir_all(&source)?;
    let maps = UserNamespaceMaps {
        uid: crate::userns::IdMap {
            container_id: 0,
            host_id: 65536,
            length: 65536,
        },
        gid: crate::userns::IdMap {
            container_id: 0,
            host_id: 65536,
            length: 65536,
        },
    };
    let mounted = mount_idmapped(&source, &target, &Idmap::Mappings(maps), false);
    let _ = crate::host::fs::unmount_all(&target);
    let _ = std::fs::remove_dir_all(&probe);
    mounted
}

/// A user namespace with `maps`, held by an open descriptor.
///
/// A child is forked into it and killed once its namespace is open. The
/// daemon is multi-threaded, so the child makes raw system calls only
/// (prctl, close_range, unshare, write, pause, _exit), which are
/// async-signal-safe. It never waits for an end of file: other threads'
/// children may hold copies of its pipe.
pub fn userns_with(maps: &UserNamespaceMaps) -> io::Result<OwnedFd> {
    let (ready_read, ready_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let daemon = nix::unistd::getpid().as_raw();
    // SAFETY: the child only makes async-signal-safe calls until killed.
    let child = match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Child => unsafe {
            detach_from_daemon(daemon, ready_write.as_raw_fd());
            let ok = libc::unshare(libc::CLONE_NEWUSER) == 0;
            libc::write(ready_write.as_raw_fd(), [ok as u8].as_ptr().cast(), 1);
            loop {
                libc::pause();
            }
        },
        nix::unistd::ForkResult::Parent { child } => child,
    };
    drop(ready_write);
    let opened = open_child_userns(child, &ready_read, maps);
    let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
    while let Err(Errno::EINTR) = nix::sys::wait::waitpid(child, None) {}
    opened
}

/// In a forked child: dies with the daemon (a daemon killed while the
/// child lives would otherwise leave it behind), and closes every
/// descriptor but `keep`, so it never holds the daemon's CRI socket or
/// files open.
///
/// # Safety
/// Only in a child of `fork`: it makes raw system calls alone.
unsafe fn detach_from_daemon(daemon: libc::pid_t, keep: std::os::fd::RawFd) {
    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    if libc::getppid() != daemon {
        libc::_exit(1);
    }
    let keep = keep as libc::c_uint;
    if keep > 0 {
        libc::syscall(libc::SYS_close_range, 0, keep - 1, 0);
    }
    libc::syscall(libc::SYS_close_range, keep + 1, libc::c_uint::MAX, 0);
}

fn open_child_userns(
    child: nix::unistd::Pid,
    ready: &OwnedFd,
    maps: &UserNamespaceMaps,
) -> io::Result<OwnedFd> {
    let mut unshared = [0u8; 1];
    let n = loop {
        match nix::unistd::read(ready, &mut unshared) {
            Err(Errno::EINTR) => {}
            other => break other?,
        }
    };
    if n != 1 || unshared[0] != 1 {
        return Err(io::Error::other(
            "unshare(CLONE_NEWUSER) failed in the child",
        ));
    }
    for (file, map) in [("uid_map", maps.uid), ("gid_map", maps.gid)] {
        let path = format!("/proc/{child}/{file}");
        std::fs::write(&path, map.map_line())
            .map_err(|e| io::Error::other(format!("write {path}: {e}")))?;
    }
    open_path(
        Path::new(&format!("/proc/{child}/ns/user")),
        OFlag::O_RDONLY,
    )
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;
    use crate::userns::IdMap;

    fn maps(host: u32) -> UserNamespaceMaps {
        let m = IdMap {
            container_id: 0,
            host_id: host,
            length: 65536,
        };
        UserNamespaceMaps { uid: m, gid: m }
    }

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn a_userns_made_for_mappings_has_them() {
        assert!(is_root(), "needs root (run the tests as root)");
        let fd = userns_with(&maps(300000)).unwrap();
        // The namespace outlives its only process while the fd is open.
        let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
        assert!(link.to_string_lossy().starts_with("user:["), "{link:?}");
    }

    /// What the kernel shows a detached child: its death signal and
    /// whether a descriptor the daemon had open is still open in it.
    #[test]
    fn a_detached_child_dies_with_the_daemon_and_holds_none_of_its_files() {
        // One below the descriptor the child keeps, one above it.
        let below = std::fs::File::open("/proc/self/status").unwrap();
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        let above = std::fs::File::open("/proc/self/status").unwrap();
        let daemon = nix::unistd::getpid().as_raw();
        // SAFETY: the child makes raw system calls only, then exits.
        let child = match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => unsafe {
                detach_from_daemon(daemon, write.as_raw_fd());
                let mut signal: libc::c_int = 0;
                libc::prctl(libc::PR_GET_PDEATHSIG, &mut signal);
                let open = |fd: &std::fs::File| libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) != -1;
                let report = [signal as u8, open(&below) as u8 | open(&above) as u8];
                libc::write(write.as_raw_fd(), report.as_ptr().cast(), 2);
                libc::_exit(0);
            },
            nix::unistd::ForkResult::Parent { child } => child,
        };
        drop(write);
        let mut report = [0u8; 2];
        assert_eq!(nix::unistd::read(&read, &mut report).unwrap(), 2);
        nix::sys::wait::waitpid(child, None).unwrap();
        assert_eq!(report[0] as libc::c_int, libc::SIGKILL, "death signal");
        assert_eq!(report[1], 0, "a daemon's file is still open in the child");
    }

    #[test]
    fn files_of_an_idmapped_directory_show_mapped_owners() {
        assert!(is_root(), "needs root (run the tests as root)");
        let d = tempfile::tempdir().unwrap();
        let (src, dst) = (d.path().join("src"), d.path().join("dst"));
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("f"), b"x").unwrap();
        std::os::unix::fs::chown(src.join("f"), Some(7), Some(8)).unwrap();
        mount_idmapped(&src, &dst, &Idmap::Mappings(maps(300000)), false).unwrap();
        let m = std::fs::metadata(dst.join("f"));
        crate::host::fs::unmount_all(&dst).unwrap();
        let m = m.unwrap();
        // On disk 7:8, seen from the host through the mount: 300007:300008.
        assert_eq!((m.uid(), m.gid()), (300007, 300008));
        assert_eq!(std::fs::metadata(src.join("f")).unwrap().uid(), 7);
    }

    #[test]
    fn this_hosts_temporary_directory_can_be_idmapped() {
        assert!(is_root(), "needs root (run the tests as root)");
        let d = tempfile::tempdir().unwrap();
        supported_under(d.path()).unwrap();
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_missing_source_names_itself() {
        assert!(is_root(), "needs root (run the tests as root)");
        let e = mount_idmapped(
            Path::new("/nonexistent/peapod"),
            Path::new("/tmp/peapod-never"),
            &Idmap::Mappings(maps(300000)),
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("/nonexistent/peapod"), "{e}");
        assert!(!Path::new("/tmp/peapod-never").exists());
    }
}
