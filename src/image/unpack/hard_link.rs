//! Hard links to earlier entries of the same layer.

use std::io::Read;
use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::unistd::linkat;

use super::dirs::ResolveError;
use super::error::{invalid, io_err, resolve_error};
use super::paths::{normalize, split_last};
use super::replace::{clear, forget_dir_times};
use super::walk::Unpacker;
use super::UnpackError;

impl Unpacker {
    /// A hard link entry; its target is made safe the same way as any path.
    pub(super) fn hard_link_entry<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        path: &[u8],
        shown: &str,
    ) -> Result<bool, UnpackError> {
        let target = entry
            .link_name_bytes()
            .ok_or_else(|| invalid(shown, "hard link without a target"))?;
        let target = normalize(&target).map_err(|reason| UnpackError::Unsafe {
            path: shown.to_string(),
            reason: format!("hard link target: {reason}"),
        })?;
        self.hard_link(path, &target, shown)
    }

    /// A hard link to an earlier entry of this layer. Both ends are looked
    /// up the same symlink-free way as any entry path.
    fn hard_link(&mut self, path: &[u8], target: &[u8], shown: &str) -> Result<bool, UnpackError> {
        let invalid = |reason: &str| UnpackError::Invalid {
            path: shown.to_string(),
            reason: reason.to_string(),
        };
        if target.is_empty() {
            return Err(invalid("hard link to the layer root"));
        }
        if path.is_empty() {
            return Err(invalid("hard link names the layer root"));
        }
        if target == path {
            return Ok(false);
        }
        if self.whiteouts.contains(target) {
            return Err(invalid(
                "hard link target is a whiteout, not a file of this layer",
            ));
        }
        let (tdir, tname) = split_last(target);
        let (dir, name) = split_last(path);
        let stale = std::mem::take(&mut self.stale);
        let missing = |e: ResolveError| match e {
            ResolveError::Missing(_) => {
                invalid("hard link target is not an earlier entry of this layer")
            }
            e => resolve_error(e, tdir, shown),
        };
        // Keep the target's directory open while the stack moves to the
        // link's directory (only needed when they differ).
        let tparent_owned = if tdir != dir {
            let (fd, _) = self.dirs.resolve(tdir, false, stale).map_err(missing)?;
            Some(fd.try_clone_to_owned().map_err(|e| UnpackError::Io {
                path: shown.to_string(),
                op: "duplicating directory fd".into(),
                source: e,
            })?)
        } else {
            None
        };
        let (parent, _) = self
            .dirs
            .resolve(dir, true, stale && tparent_owned.is_none())
            .map_err(|e| resolve_error(e, dir, shown))?;
        let tparent = match &tparent_owned {
            Some(fd) => fd.as_fd(),
            None => parent,
        };
        // No AT_SYMLINK_FOLLOW: a symlink target is linked itself.
        let link = || linkat(tparent, tname, parent, name, AtFlags::empty());
        match link() {
            Err(Errno::EEXIST) => {
                if clear(parent, name).map_err(|e| io_err(shown, "replacing earlier entry", e))? {
                    self.stale = true;
                    forget_dir_times(&mut self.dir_times, dir, name);
                }
                link()
            }
            r => r,
        }
        .map_err(|e| match e {
            Errno::ENOENT => invalid("hard link target is not an earlier entry of this layer"),
            Errno::EPERM => invalid("hard link target is a directory"),
            e => io_err(shown, "creating hard link", e),
        })?;
        if !self.whiteouts.is_empty() {
            self.whiteouts.remove(path);
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use crate::image::unpack::test_support::*;
    use crate::image::unpack::UnpackError;

    #[test]
    fn hard_links_share_the_inode() {
        let t = tar_of(&[
            file("bin/busybox", b"bb"),
            hardlink("bin/ls", "bin/busybox"),
            hardlink("usr/bin/env", "./bin/busybox"),
            symlink("s", "bin/busybox"),
            hardlink("s2", "s"),
        ]);
        let (l, u) = unpack_ok(&t);
        assert_eq!(u.entries, 5);
        let a = l.meta("bin/busybox");
        let b = l.meta("bin/ls");
        assert_eq!(a.ino(), b.ino());
        assert_eq!(a.nlink(), 3);
        assert_eq!(l.meta("usr/bin/env").ino(), a.ino());
        // A hard link to a symlink links the symlink itself.
        assert_eq!(l.meta("s2").ino(), l.meta("s").ino());
        assert!(l.meta("s2").file_type().is_symlink());
    }

    #[test]
    fn hard_link_to_missing_target_fails() {
        let t = tar_of(&[hardlink("a", "nothere")]);
        let (_, r) = unpack(&t);
        assert!(
            matches!(r, Err(UnpackError::Invalid { ref path, .. }) if path == "a"),
            "{r:?}"
        );
    }

    #[test]
    fn hard_link_to_whiteout_fails() {
        let t = tar_of(&[file(".wh.x", b""), hardlink("y", "x")]);
        let (l, r) = unpack(&t);
        assert!(matches!(r, Err(UnpackError::Invalid { .. })), "{r:?}");
        assert!(!l.exists("y"));
    }
}
