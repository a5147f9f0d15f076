//! Regular files, directories, symlinks, devices and FIFOs: each created
//! with `*at` calls on its final name in a directory opened without
//! following symlinks, then given its owner, mode, xattrs and time.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstatat, futimens, makedev, mkdirat, mknodat, utimensat, FchmodatFlags, Mode,
    SFlag, UtimensatFlags,
};
use nix::unistd::{fchown, fchownat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

use super::error::{invalid, io_err, resolve_error};
use super::meta::Meta;
use super::paths::split_last;
use super::replace::{clear, forget_dir_times};
use super::walk::{Kind, Unpacker};
use super::xattr::{set_xattr, XattrTarget};
use super::UnpackError;

impl Unpacker {
    /// Creates a file, directory, symlink, device or FIFO entry at `path`.
    pub(super) fn create<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        kind: Kind,
        path: &[u8],
        meta: &Meta,
        shown: &str,
    ) -> Result<(), UnpackError> {
        let (dir, name) = split_last(path);
        match kind {
            Kind::File => self.file(entry, dir, name, meta, shown)?,
            Kind::Dir => self.dir(path, meta, shown)?,
            Kind::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| invalid(shown, "symlink without a target"))?
                    .into_owned();
                self.node(dir, name, Node::Symlink(&target), meta, shown)?;
            }
            Kind::Char | Kind::Block => {
                let node = device_node(entry.header(), kind, shown)?;
                self.node(dir, name, node, meta, shown)?;
            }
            Kind::Fifo => self.node(dir, name, Node::Device(SFlag::S_IFIFO, 0), meta, shown)?,
            // Hard links are not created here.
            Kind::HardLink => {}
        }
        Ok(())
    }

    pub(super) fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        dir: &[u8],
        name: &[u8],
        meta: &Meta,
        shown: &str,
    ) -> Result<(), UnpackError> {
        let (parent, sgid) = self
            .dirs
            .resolve(dir, true, std::mem::take(&mut self.stale))
            .map_err(|e| resolve_error(e, dir, shown))?;
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let create = || openat(parent, name, flags, Mode::from_bits_truncate(0o600));
        let fd = match create() {
            Err(Errno::EEXIST) => {
                if clear(parent, name).map_err(|e| io_err(shown, "replacing earlier entry", e))? {
                    self.stale = true;
                    forget_dir_times(&mut self.dir_times, dir, name);
                }
                create()
            }
            r => r,
        }
        .map_err(|e| io_err(shown, "creating file", e))?;
        let mut file = File::from(fd);

        let expected = entry.size();
        let mut written = 0u64;
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(UnpackError::Tar {
                        at: format!("at entry {shown:?}"),
                        source: e,
                    })
                }
            };
            file.write_all(&self.buf[..n])
                .map_err(|e| UnpackError::Io {
                    path: shown.to_string(),
                    op: "writing file".into(),
                    source: e,
                })?;
            written += n as u64;
        }
        if written != expected {
            return Err(UnpackError::Tar {
                at: format!("at entry {shown:?}"),
                source: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("file data ends after {written} of {expected} bytes"),
                ),
            });
        }

        // chown drops set-id bits and file capabilities, so: chown, chmod,
        // xattrs, then the time (which none of them touch).
        if sgid || (meta.uid, meta.gid) != self.dirs.ids {
            fchown(
                &file,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
            )
            .map_err(|e| io_err(shown, "chown", e))?;
        }
        fchmod(&file, meta.mode).map_err(|e| io_err(shown, "chmod", e))?;
        for (key, value) in &meta.xattrs {
            set_xattr(XattrTarget::Fd(file.as_fd()), key, value, shown)?;
        }
        futimens(&file, &meta.mtime, &meta.mtime).map_err(|e| io_err(shown, "setting mtime", e))?;
        Ok(())
    }

    pub(super) fn dir(&mut self, path: &[u8], meta: &Meta, shown: &str) -> Result<(), UnpackError> {
        let (dir, name) = split_last(path);
        let ids = self.dirs.ids;
        let (parent, sgid) = self
            .dirs
            .resolve(dir, true, std::mem::take(&mut self.stale))
            .map_err(|e| resolve_error(e, dir, shown))?;
        let mkdir = || mkdirat(parent, name, Mode::from_bits_truncate(0o700));
        let existed = match mkdir() {
            Ok(()) => false,
            Err(Errno::EEXIST) => {
                let st = fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(|e| io_err(shown, "inspecting earlier entry", e))?;
                if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                    // Same directory listed again: merge, take the new
                    // metadata. Cached fds may carry its old set-gid bit.
                    self.stale = true;
                    true
                } else {
                    unlinkat(parent, name, UnlinkatFlags::NoRemoveDir)
                        .map_err(|e| io_err(shown, "replacing earlier entry", e))?;
                    mkdir().map_err(|e| io_err(shown, "creating directory", e))?;
                    false
                }
            }
            Err(e) => return Err(io_err(shown, "creating directory", e)),
        };
        if existed || sgid || (meta.uid, meta.gid) != ids {
            fchownat(
                parent,
                name,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| io_err(shown, "chown", e))?;
        }
        // Following is fine: `name` was just made or checked to be a
        // directory in a directory we hold open.
        fchmodat(parent, name, meta.mode, FchmodatFlags::FollowSymlink)
            .map_err(|e| io_err(shown, "chmod", e))?;
        for (key, value) in &meta.xattrs {
            set_xattr(XattrTarget::Name(parent, name), key, value, shown)?;
        }
        self.dir_times.push((path.to_vec(), meta.mtime));
        Ok(())
    }

    pub(super) fn root_meta(&mut self, meta: &Meta, shown: &str) -> Result<(), UnpackError> {
        let root = self.dirs.root.as_fd();
        fchown(
            root,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
        )
        .map_err(|e| io_err(shown, "chown", e))?;
        fchmod(root, meta.mode).map_err(|e| io_err(shown, "chmod", e))?;
        for (key, value) in &meta.xattrs {
            set_xattr(XattrTarget::Fd(root), key, value, shown)?;
        }
        self.dir_times.push((Vec::new(), meta.mtime));
        self.stale = true;
        Ok(())
    }

    /// Symlinks, devices and FIFOs.
    pub(super) fn node(
        &mut self,
        dir: &[u8],
        name: &[u8],
        node: Node<'_>,
        meta: &Meta,
        shown: &str,
    ) -> Result<(), UnpackError> {
        let ids = self.dirs.ids;
        let (parent, sgid) = self
            .dirs
            .resolve(dir, true, std::mem::take(&mut self.stale))
            .map_err(|e| resolve_error(e, dir, shown))?;
        let make = || match node {
            // The target is stored as is; it is never followed here.
            Node::Symlink(target) => symlinkat(target, parent, name),
            Node::Device(kind, dev) => {
                mknodat(parent, name, kind, Mode::from_bits_truncate(0o600), dev)
            }
        };
        let op = match node {
            Node::Symlink(_) => "creating symlink",
            Node::Device(..) => "creating device node",
        };
        match make() {
            Err(Errno::EEXIST) => {
                if clear(parent, name).map_err(|e| io_err(shown, "replacing earlier entry", e))? {
                    self.stale = true;
                    forget_dir_times(&mut self.dir_times, dir, name);
                }
                make()
            }
            r => r,
        }
        .map_err(|e| io_err(shown, op, e))?;

        if sgid || (meta.uid, meta.gid) != ids {
            fchownat(
                parent,
                name,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| io_err(shown, "chown", e))?;
        }
        if let Node::Device(..) = node {
            // Just created as a device or FIFO, so following cannot happen.
            fchmodat(parent, name, meta.mode, FchmodatFlags::FollowSymlink)
                .map_err(|e| io_err(shown, "chmod", e))?;
        }
        for (key, value) in &meta.xattrs {
            set_xattr(XattrTarget::Name(parent, name), key, value, shown)?;
        }
        utimensat(
            parent,
            name,
            &meta.mtime,
            &meta.mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| io_err(shown, "setting mtime", e))?;
        Ok(())
    }
}

#[derive(Clone, Copy)]
pub(super) enum Node<'a> {
    Symlink(&'a [u8]),
    Device(SFlag, libc::dev_t),
}

/// A character or block device with the header's major and minor numbers.
fn device_node(h: &tar::Header, kind: Kind, shown: &str) -> Result<Node<'static>, UnpackError> {
    let dev = match (h.device_major(), h.device_minor()) {
        (Ok(Some(major)), Ok(Some(minor))) => makedev(major.into(), minor.into()),
        _ => return Err(invalid(shown, "device without valid major/minor numbers")),
    };
    let kind = if kind == Kind::Char {
        SFlag::S_IFCHR
    } else {
        SFlag::S_IFBLK
    };
    Ok(Node::Device(kind, dev))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    use std::path::Path;

    use nix::sys::stat::makedev;

    use crate::image::unpack::test_support::*;

    #[test]
    fn regular_file_content_mode_owner_mtime() {
        let t = tar_of(&[
            E {
                mode: 0o640,
                uid: 1234,
                gid: 5678,
                mtime: 1_234_567_890,
                ..file("etc/conf", b"hello layer\n")
            },
            E {
                mode: 0o4755,
                uid: 1000,
                gid: 1000,
                ..file("bin/su", b"\x7fELF")
            },
            E {
                mode: 0o2711,
                ..file("bin/sg", b"x")
            },
        ]);
        let (l, u) = unpack_ok(&gzip(&t));
        assert_eq!(u.entries, 3);
        // Before reading: relatime would move the atime.
        let m = l.meta("etc/conf");
        assert_eq!(fs::read(l.p("etc/conf")).unwrap(), b"hello layer\n");
        assert!(m.file_type().is_file());
        assert_eq!(m.mode() & 0o7777, 0o640);
        assert_eq!((m.uid(), m.gid()), (1234, 5678));
        assert_eq!((m.mtime(), m.mtime_nsec()), (1_234_567_890, 0));
        assert_eq!(m.atime(), 1_234_567_890);
        let su = l.meta("bin/su");
        assert_eq!(
            su.mode() & 0o7777,
            0o4755,
            "setuid bit must survive the chown"
        );
        assert_eq!((su.uid(), su.gid()), (1000, 1000));
        assert_eq!(l.meta("bin/sg").mode() & 0o7777, 0o2711);
        // Parents the tar does not list: root-owned 0755.
        let etc = l.meta("etc");
        assert!(etc.is_dir());
        assert_eq!((etc.mode() & 0o7777, etc.uid(), etc.gid()), (0o755, 0, 0));
    }

    #[test]
    fn directory_mode_owner_and_mtime_after_children() {
        let t = tar_of(&[
            E {
                mode: 0o750,
                uid: 7,
                gid: 8,
                mtime: 1_000_000,
                ..dir("d/")
            },
            E {
                mtime: 2_000_000,
                ..dir("d/sub/")
            },
            file("d/sub/f", b"x"),
            file("d/f", b"y"),
            file("d/.wh.lower", b""),
            E {
                mode: 0o700,
                mtime: 3_000_000,
                ..dir("./")
            },
        ]);
        let (l, _) = unpack_ok(&t);
        let d = l.meta("d");
        assert_eq!((d.mode() & 0o7777, d.uid(), d.gid()), (0o750, 7, 8));
        assert_eq!(d.mtime(), 1_000_000);
        assert_eq!(l.meta("d/sub").mtime(), 2_000_000);
        let root = fs::symlink_metadata(l.dir.path()).unwrap();
        assert_eq!((root.mode() & 0o7777, root.mtime()), (0o700, 3_000_000));
    }

    #[test]
    fn setgid_parent_does_not_leak_its_group() {
        // New entries in a set-gid directory inherit its group; the tar's gid
        // (0 here) must still win.
        let t = tar_of(&[
            E {
                mode: 0o2775,
                gid: 50,
                ..dir("g/")
            },
            file("g/f", b"x"),
            dir("g/sub/"),
            symlink("g/l", "f"),
        ]);
        let (l, _) = unpack_ok(&t);
        assert_eq!(l.meta("g").gid(), 50);
        assert_eq!(l.meta("g").mode() & 0o7777, 0o2775);
        assert_eq!(l.meta("g/f").gid(), 0);
        assert_eq!(l.meta("g/sub").gid(), 0);
        assert_eq!(l.meta("g/sub").mode() & 0o7777, 0o755);
        assert_eq!(l.meta("g/l").gid(), 0);
    }

    #[test]
    fn symlink_target_owner_and_mtime() {
        let t = tar_of(&[
            E {
                uid: 3,
                gid: 4,
                mtime: 1_111_111,
                ..symlink("bin/sh", "/bin/busybox")
            },
            symlink("rel", "../../../etc/shadow"),
        ]);
        let (l, _) = unpack_ok(&t);
        let m = l.meta("bin/sh");
        assert!(m.file_type().is_symlink());
        assert_eq!(
            fs::read_link(l.p("bin/sh")).unwrap(),
            Path::new("/bin/busybox")
        );
        assert_eq!((m.uid(), m.gid(), m.mtime()), (3, 4, 1_111_111));
        assert_eq!(
            fs::read_link(l.p("rel")).unwrap(),
            Path::new("../../../etc/shadow")
        );
    }

    #[test]
    fn fifo_and_devices() {
        let t = tar_of(&[
            E {
                kind: tar::EntryType::Fifo,
                mode: 0o620,
                ..e("run/fifo")
            },
            E {
                kind: tar::EntryType::Char,
                mode: 0o666,
                dev: (1, 3),
                uid: 5,
                ..e("dev/null")
            },
            E {
                kind: tar::EntryType::Block,
                mode: 0o660,
                dev: (7, 0),
                ..e("dev/loop0")
            },
        ]);
        let (l, _) = unpack_ok(&t);
        let f = l.meta("run/fifo");
        assert!(f.file_type().is_fifo());
        assert_eq!(f.mode() & 0o7777, 0o620);
        let n = l.meta("dev/null");
        assert!(n.file_type().is_char_device());
        assert_eq!(n.rdev(), makedev(1, 3));
        assert_eq!((n.mode() & 0o7777, n.uid()), (0o666, 5));
        let b = l.meta("dev/loop0");
        assert!(b.file_type().is_block_device());
        assert_eq!(b.rdev(), makedev(7, 0));
    }
}
