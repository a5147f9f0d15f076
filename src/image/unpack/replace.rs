//! A later entry of a layer takes the place of an earlier one with the same
//! path: whatever is there is removed first, never following symlinks.

use std::os::fd::{AsFd, BorrowedFd};

use nix::errno::Errno;
use nix::fcntl::openat;
use nix::sys::stat::Mode;
use nix::sys::time::TimeSpec;
use nix::unistd::{unlinkat, UnlinkatFlags};

use super::dirs::dir_flags;

/// Removes whatever an earlier entry left at `name` so a later entry with
/// the same path can take its place. Returns true when a directory tree was
/// removed.
pub(super) fn clear(parent: BorrowedFd<'_>, name: &[u8]) -> nix::Result<bool> {
    match unlinkat(parent, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) => Ok(false),
        Err(Errno::EISDIR) => {
            remove_tree(parent, name)?;
            Ok(true)
        }
        Err(e) => Err(e),
    }
}

/// Removes directory `name` and everything in it, never following symlinks.
fn remove_tree(parent: BorrowedFd<'_>, name: &[u8]) -> nix::Result<()> {
    let fd = openat(parent, name, dir_flags(), Mode::empty())?;
    let mut dir = nix::dir::Dir::from_fd(fd)?;
    let mut children = Vec::new();
    for ent in dir.iter() {
        let ent = ent?;
        let n = ent.file_name().to_bytes();
        if n != b"." && n != b".." {
            children.push((ent.file_name().to_owned(), ent.file_type()));
        }
    }
    for (child, ty) in children {
        let child = child.as_bytes();
        if ty == Some(nix::dir::Type::Directory) {
            remove_tree(dir.as_fd(), child)?;
        } else {
            match unlinkat(dir.as_fd(), child, UnlinkatFlags::NoRemoveDir) {
                Err(Errno::EISDIR) => remove_tree(dir.as_fd(), child)?,
                r => r?,
            }
        }
    }
    unlinkat(parent, name, UnlinkatFlags::RemoveDir)
}

/// Drops recorded mtimes of a removed directory tree `dir/name`.
pub(super) fn forget_dir_times(times: &mut Vec<(Vec<u8>, TimeSpec)>, dir: &[u8], name: &[u8]) {
    let mut gone = dir.to_vec();
    if !gone.is_empty() {
        gone.push(b'/');
    }
    gone.extend_from_slice(name);
    times.retain(|(p, _)| {
        !(p.starts_with(&gone) && (p.len() == gone.len() || p[gone.len()] == b'/'))
    });
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::MetadataExt;

    use crate::image::unpack::test_support::*;

    #[test]
    fn later_entries_replace_earlier_ones() {
        let t = tar_of(&[
            file("f", b"one"),
            hardlink("f2", "f"),
            file("f", b"two"),
            dir("d/"),
            dir("d/deep/"),
            file("d/deep/x", b"x"),
            file("d", b"now a file"),
            file("g", b"file"),
            E {
                mode: 0o711,
                ..dir("g/")
            },
            symlink("s", "/etc"),
            file("s", b"not a link"),
            E {
                mode: 0o700,
                uid: 9,
                ..dir("m/")
            },
            file("m/kept", b"k"),
            E {
                mode: 0o755,
                uid: 10,
                ..dir("m/")
            },
        ]);
        let (l, _) = unpack_ok(&t);
        assert_eq!(fs::read(l.p("f")).unwrap(), b"two");
        // The old inode lives on in the hard link, untouched.
        assert_eq!(fs::read(l.p("f2")).unwrap(), b"one");
        assert_eq!(fs::read(l.p("d")).unwrap(), b"now a file");
        assert!(l.meta("g").is_dir());
        assert_eq!(l.meta("g").mode() & 0o7777, 0o711);
        assert!(l.meta("s").is_file());
        let m = l.meta("m");
        assert_eq!((m.mode() & 0o7777, m.uid()), (0o755, 10));
        assert!(l.exists("m/kept"));
    }
}
