//! OCI whiteouts in overlayfs form: `.wh.name` becomes a 0:0 character
//! device, `.wh..wh..opq` the opaque xattr on its directory.

use std::ffi::CStr;

use nix::errno::Errno;
use nix::sys::stat::{makedev, mknodat, Mode, SFlag};

use super::error::{invalid, io_err, resolve_error};
use super::walk::Unpacker;
use super::xattr::fsetxattr;
use super::UnpackError;

pub(super) const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
const OPAQUE_XATTR: &CStr = c"trusted.overlay.opaque";

impl Unpacker {
    /// An entry named `.wh.*`: the opaque marker, other aufs metadata
    /// (skipped), or the whiteout of `hidden`.
    pub(super) fn whiteout_entry(
        &mut self,
        dir: &[u8],
        name: &[u8],
        hidden: &[u8],
        shown: &str,
    ) -> Result<bool, UnpackError> {
        if name == OPAQUE_MARKER {
            return self.opaque(dir, shown).map(|()| true);
        }
        if hidden.starts_with(WHITEOUT_PREFIX) {
            // Other aufs metadata (.wh..wh.plnk and friends) means
            // nothing to overlayfs.
            return Ok(false);
        }
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(invalid(shown, "whiteout names no file"));
        }
        self.whiteout(dir, hidden, shown).map(|()| true)
    }

    /// `dir/.wh.name`: a 0:0 character device hides `name` of lower layers.
    pub(super) fn whiteout(
        &mut self,
        dir: &[u8],
        name: &[u8],
        shown: &str,
    ) -> Result<(), UnpackError> {
        let (parent, _) = self
            .dirs
            .resolve(dir, true, std::mem::take(&mut self.stale))
            .map_err(|e| resolve_error(e, dir, shown))?;
        match mknodat(parent, name, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0)) {
            Ok(()) => {}
            // A whiteout applies to lower layers only; a file of this layer
            // with the same name stays.
            Err(Errno::EEXIST) => return Ok(()),
            Err(e) => return Err(io_err(shown, "creating whiteout device", e)),
        }
        let mut full = dir.to_vec();
        if !full.is_empty() {
            full.push(b'/');
        }
        full.extend_from_slice(name);
        self.whiteouts.insert(full);
        Ok(())
    }

    /// `dir/.wh..wh..opq`: `dir` hides everything below it in lower layers.
    pub(super) fn opaque(&mut self, dir: &[u8], shown: &str) -> Result<(), UnpackError> {
        let (fd, _) = self
            .dirs
            .resolve(dir, true, std::mem::take(&mut self.stale))
            .map_err(|e| resolve_error(e, dir, shown))?;
        fsetxattr(fd, OPAQUE_XATTR, b"y")
            .map_err(|e| io_err(shown, "setting trusted.overlay.opaque", e))
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::io;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    use std::path::PathBuf;

    use crate::image::unpack::test_support::*;

    #[test]
    fn whiteouts_become_overlay_devices() {
        let t = tar_of(&[
            file("etc/.wh.passwd", b""),
            file(".wh.tmp", b""),
            file(".wh..wh.plnk", b""),
            // Same-layer file with a whiteout's name: the file stays.
            file("keep", b"k"),
            file(".wh.keep", b""),
        ]);
        let (l, u) = unpack_ok(&t);
        assert_eq!(u.entries, 4);
        for w in ["etc/passwd", "tmp"] {
            let m = l.meta(w);
            assert!(m.file_type().is_char_device(), "{w}");
            assert_eq!(m.rdev(), 0, "{w}");
        }
        assert!(!l.exists(".wh..wh.plnk"));
        assert!(!l.exists(".wh.plnk"));
        assert!(!l.exists("etc/.wh.passwd"));
        assert_eq!(fs::read(l.p("keep")).unwrap(), b"k");
    }

    #[test]
    fn real_entry_replaces_same_layer_whiteout() {
        let t = tar_of(&[file(".wh.x", b""), file("x", b"real")]);
        let (l, _) = unpack_ok(&t);
        assert_eq!(fs::read(l.p("x")).unwrap(), b"real");
    }

    #[test]
    fn opaque_marker_sets_xattr() {
        let t = tar_of(&[
            dir("var/"),
            dir("var/cache/"),
            file("var/cache/.wh..wh..opq", b""),
            file("var/cache/new", b"n"),
            // Directory not listed before its marker: created.
            file("opt/app/.wh..wh..opq", b""),
        ]);
        let (l, _) = unpack_ok(&t);
        for d in ["var/cache", "opt/app"] {
            assert_eq!(
                xattr(&l.p(d), "trusted.overlay.opaque").as_deref(),
                Some(&b"y"[..]),
                "{d}"
            );
        }
        assert!(xattr(&l.p("var"), "trusted.overlay.opaque").is_none());
        assert!(!l.exists("var/cache/.wh..wh..opq"));
    }

    /// Unmounts on drop, so a failing assertion does not leave the mount.
    struct Mounted(PathBuf);

    impl Drop for Mounted {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }

    #[test]
    fn overlayfs_honours_converted_whiteouts() {
        let lower = tar_of(&[
            dir("a/"),
            file("a/keep", b"keep"),
            file("a/gone", b"gone"),
            dir("o/"),
            file("o/old", b"old"),
            dir("o/sub/"),
            file("o/sub/deep", b"deep"),
            file("top", b"top"),
        ]);
        let upper = tar_of(&[
            file("a/.wh.gone", b""),
            dir("o/"),
            file("o/.wh..wh..opq", b""),
            file("o/new", b"new"),
            file(".wh.top", b""),
        ]);
        let (l1, _) = unpack_ok(&gzip(&lower));
        let (l2, _) = unpack_ok(&zstd(&upper));
        let mnt = tempfile::tempdir().unwrap();
        let opts = format!(
            "lowerdir={}:{}",
            l2.dir.path().display(),
            l1.dir.path().display()
        );
        nix::mount::mount(
            Some("overlay"),
            mnt.path(),
            Some("overlay"),
            nix::mount::MsFlags::MS_RDONLY,
            Some(opts.as_str()),
        )
        .unwrap_or_else(|e| panic!("mount -t overlay -o {opts}: {e} (needs overlayfs)"));
        let _guard = Mounted(mnt.path().to_path_buf());
        let m = |p: &str| mnt.path().join(p);
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(mounts.contains(mnt.path().to_str().unwrap()));

        assert_eq!(fs::read(m("a/keep")).unwrap(), b"keep");
        assert_eq!(
            fs::symlink_metadata(m("a/gone")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            fs::symlink_metadata(m("top")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        let mut names: Vec<_> = fs::read_dir(m("o"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["new"], "opaque dir must hide the lower content");
        let mut root: Vec<_> = fs::read_dir(mnt.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        root.sort();
        assert_eq!(root, ["a", "o"]);
    }
}
