//! The open directories of the current path, each opened with
//! `O_NOFOLLOW|O_DIRECTORY` relative to the one above: no path inside the
//! layer is ever resolved through a symlink.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fchmod, fstat, fstatat, mkdirat, Mode};
use nix::unistd::{fchown, Gid, Uid};

/// One open directory of the current path.
pub(super) struct Level {
    name: Vec<u8>,
    fd: OwnedFd,
    /// Set-group-id directory: new entries inherit its group, so they need an
    /// explicit chown even when they should belong to our own gid.
    sgid: bool,
}

/// Open directory fds from the layer root down to the directory of the last
/// entry. Every level was opened with `O_NOFOLLOW` relative to the one above.
pub(super) struct DirStack {
    pub(super) root: OwnedFd,
    pub(super) root_sgid: bool,
    pub(super) levels: Vec<Level>,
    /// Our effective uid/gid: what new entries get without a chown.
    pub(super) ids: (u32, u32),
}

/// Why a directory path inside the layer could not be opened; the offset is
/// where the failing component ends.
pub(super) enum ResolveError {
    Symlink(usize),
    NotDir(usize),
    Missing(usize),
    Io(usize, &'static str, Errno),
}

impl DirStack {
    fn top(&self) -> (BorrowedFd<'_>, bool) {
        match self.levels.last() {
            Some(l) => (l.fd.as_fd(), l.sgid),
            None => (self.root.as_fd(), self.root_sgid),
        }
    }

    /// Opens directory `dir` ("a/b", "" for the root), creating missing
    /// components when `create` is set. `stale` drops all cached levels first
    /// (after a directory was removed or its metadata changed).
    pub(super) fn resolve(
        &mut self,
        dir: &[u8],
        create: bool,
        stale: bool,
    ) -> Result<(BorrowedFd<'_>, bool), ResolveError> {
        if stale {
            self.levels.clear();
            self.root_sgid = is_sgid(
                fstat(self.root.as_fd())
                    .map_err(|e| ResolveError::Io(0, "inspecting layer root", e))?,
            );
        }
        let mut depth = 0;
        let mut start = 0;
        while start < dir.len() {
            let end = dir[start..]
                .iter()
                .position(|b| *b == b'/')
                .map_or(dir.len(), |i| start + i);
            let comp = &dir[start..end];
            start = end + 1;
            if depth < self.levels.len() {
                if self.levels[depth].name == comp {
                    depth += 1;
                    continue;
                }
                self.levels.truncate(depth);
            }
            let (cur, cur_sgid) = self.top();
            let fd = open_dir(cur, comp, create, cur_sgid, self.ids).map_err(|e| match e {
                OpenDirError::Symlink => ResolveError::Symlink(end),
                OpenDirError::NotDir => ResolveError::NotDir(end),
                OpenDirError::Missing => ResolveError::Missing(end),
                OpenDirError::Io(op, e) => ResolveError::Io(end, op, e),
            })?;
            let sgid = is_sgid(
                fstat(fd.as_fd()).map_err(|e| ResolveError::Io(end, "inspecting directory", e))?,
            );
            self.levels.push(Level {
                name: comp.to_vec(),
                fd,
                sgid,
            });
            depth += 1;
        }
        self.levels.truncate(depth);
        Ok(self.top())
    }
}

enum OpenDirError {
    Symlink,
    NotDir,
    Missing,
    Io(&'static str, Errno),
}

pub(super) fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

/// Opens directory `name` inside `parent` without following a symlink there.
/// A missing one is created (when `create`) as a root-owned 0755 directory,
/// the way a parent the tar does not list should look.
fn open_dir(
    parent: BorrowedFd<'_>,
    name: &[u8],
    create: bool,
    parent_sgid: bool,
    ids: (u32, u32),
) -> Result<OwnedFd, OpenDirError> {
    match openat(parent, name, dir_flags(), Mode::empty()) {
        Ok(fd) => return Ok(fd),
        Err(Errno::ENOENT) if create => {}
        Err(Errno::ENOENT) => return Err(OpenDirError::Missing),
        Err(Errno::ELOOP | Errno::ENOTDIR) => return Err(not_dir(parent, name)),
        Err(e) => return Err(OpenDirError::Io("opening directory", e)),
    }
    match mkdirat(parent, name, Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(OpenDirError::Io("creating directory", e)),
    }
    let fd = openat(parent, name, dir_flags(), Mode::empty()).map_err(|e| match e {
        Errno::ELOOP | Errno::ENOTDIR => not_dir(parent, name),
        e => OpenDirError::Io("opening directory", e),
    })?;
    if parent_sgid || ids != (0, 0) {
        fchown(&fd, Some(Uid::from_raw(0)), Some(Gid::from_raw(0)))
            .map_err(|e| OpenDirError::Io("chown of created directory", e))?;
    }
    // The umask and a set-group-id parent both alter the mode mkdir gave.
    fchmod(&fd, Mode::from_bits_truncate(0o755))
        .map_err(|e| OpenDirError::Io("chmod of created directory", e))?;
    Ok(fd)
}

/// Tells a symlink (an escape attempt) from some other non-directory.
fn not_dir(parent: BorrowedFd<'_>, name: &[u8]) -> OpenDirError {
    match fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFLNK => OpenDirError::Symlink,
        _ => OpenDirError::NotDir,
    }
}

pub(super) fn is_sgid(st: nix::sys::stat::FileStat) -> bool {
    st.st_mode & libc::S_ISGID != 0
}

#[cfg(test)]
mod tests {
    use std::fs;

    use crate::image::unpack::test_support::*;

    #[test]
    fn writes_through_symlinks_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        let out = outside.path().to_str().unwrap();
        fs::write(outside.path().join("secret"), b"s").unwrap();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (tar_of(&[symlink("a", out), file("a/evil", b"x")]), "a/evil"),
            (tar_of(&[symlink("a", out), dir("a/evil/")]), "a/evil/"),
            (
                tar_of(&[symlink("a", out), symlink("a/evil", "/x")]),
                "a/evil",
            ),
            (
                tar_of(&[symlink("a", out), file("a/.wh.secret", b"")]),
                "a/.wh.secret",
            ),
            (
                tar_of(&[symlink("a", out), file("a/.wh..wh..opq", b"")]),
                "a/.wh..wh..opq",
            ),
            (
                tar_of(&[
                    dir("d/"),
                    symlink("d/up", "../.."),
                    file("d/up/tmp/evil", b"x"),
                ]),
                "d/up/tmp/evil",
            ),
            (
                tar_of(&[symlink("a", out), hardlink("stolen", "a/secret")]),
                "stolen",
            ),
            (
                tar_of(&[file("f", b"x"), symlink("a", out), hardlink("a/evil", "f")]),
                "a/evil",
            ),
        ];
        for (t, entry) in cases {
            let (l, r) = unpack(&t);
            assert_refused(r, entry);
            let mut names: Vec<_> = fs::read_dir(outside.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            assert_eq!(
                names,
                vec!["secret"],
                "something was written outside the layer"
            );
            assert_eq!(fs::read(outside.path().join("secret")).unwrap(), b"s");
            assert!(!l.exists("stolen"));
            assert!(
                xattr(outside.path(), "trusted.overlay.opaque").is_none(),
                "opaque xattr set through a symlink"
            );
        }
    }
}
