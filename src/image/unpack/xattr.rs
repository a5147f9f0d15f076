//! Extended attributes from the tar, set on the entry without following
//! symlinks.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;

use super::error::io_err;
use super::UnpackError;

pub(super) enum XattrTarget<'a> {
    Fd(BorrowedFd<'a>),
    /// An entry that is not open: a directory, symlink or device node.
    Name(BorrowedFd<'a>, &'a [u8]),
}

/// Sets one xattr from the tar.
///
/// Policy: `trusted.overlay.*` from a tar is dropped with a warning, since it
/// would steer overlayfs and only our whiteout conversion may do that.
/// `security.*` xattrs the filesystem or LSM does not support (EOPNOTSUPP)
/// are dropped with a warning, as such labels are host policy. Any other
/// failure, including every `user.*` one, fails the entry.
pub(super) fn set_xattr(
    target: XattrTarget<'_>,
    key: &CStr,
    value: &[u8],
    shown: &str,
) -> Result<(), UnpackError> {
    let k = key.to_bytes();
    if k.starts_with(b"trusted.overlay.") {
        tracing::warn!(path = shown, xattr = %key.to_string_lossy(), "ignoring overlayfs xattr in layer tar");
        return Ok(());
    }
    let res = match target {
        XattrTarget::Fd(fd) => fsetxattr(fd, key, value),
        XattrTarget::Name(parent, name) => {
            // No lsetxattr relative to a dir fd before Linux 6.13: go through
            // the fd's /proc link, which names the verified directory; the
            // final name is not followed.
            let mut p = format!("/proc/self/fd/{}/", parent.as_raw_fd()).into_bytes();
            p.extend_from_slice(name);
            match CString::new(p) {
                Ok(p) => lsetxattr(&p, key, value),
                Err(_) => Err(Errno::EINVAL),
            }
        }
    };
    match res {
        Ok(()) => Ok(()),
        Err(Errno::EOPNOTSUPP) if k.starts_with(b"security.") => {
            tracing::warn!(path = shown, xattr = %key.to_string_lossy(), "filesystem does not support xattr; dropped");
            Ok(())
        }
        Err(e) => Err(io_err(
            shown,
            &format!("setting xattr {}", key.to_string_lossy()),
            e,
        )),
    }
}

pub(super) fn fsetxattr(fd: BorrowedFd<'_>, key: &CStr, value: &[u8]) -> nix::Result<()> {
    // SAFETY: valid fd, NUL-terminated name, value pointer and length from
    // one slice.
    let r = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            key.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    Errno::result(r).map(drop)
}

fn lsetxattr(path: &CStr, key: &CStr, value: &[u8]) -> nix::Result<()> {
    // SAFETY: NUL-terminated path and name, value pointer and length from
    // one slice.
    let r = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            key.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    Errno::result(r).map(drop)
}
