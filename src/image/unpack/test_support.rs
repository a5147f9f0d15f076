//! Tars written entry by entry, and the checks the layer unpack tests share.

use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{unpack_layer, UnpackError, UnpackedLayer};

pub(super) fn need_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "layer unpack tests must run as root (chown, mknod, trusted.* xattrs, overlay mounts)"
    );
}

/// A tar entry written field by field, so paths the tar crate's builder
/// would refuse (absolute, `..`) can be made.
pub(super) struct E<'a> {
    pub(super) path: &'a [u8],
    pub(super) kind: tar::EntryType,
    pub(super) link: &'a [u8],
    pub(super) data: &'a [u8],
    pub(super) mode: u32,
    pub(super) uid: u64,
    pub(super) gid: u64,
    pub(super) mtime: u64,
    pub(super) dev: (u32, u32),
}

pub(super) fn e(path: &str) -> E<'_> {
    E {
        path: path.as_bytes(),
        kind: tar::EntryType::Regular,
        link: b"",
        data: b"",
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: 1_600_000_000,
        dev: (0, 0),
    }
}

pub(super) fn file<'a>(path: &'a str, data: &'a [u8]) -> E<'a> {
    E { data, ..e(path) }
}

pub(super) fn dir(path: &str) -> E<'_> {
    E {
        kind: tar::EntryType::Directory,
        mode: 0o755,
        ..e(path)
    }
}

pub(super) fn symlink<'a>(path: &'a str, target: &'a str) -> E<'a> {
    E {
        kind: tar::EntryType::Symlink,
        link: target.as_bytes(),
        mode: 0o777,
        ..e(path)
    }
}

pub(super) fn hardlink<'a>(path: &'a str, target: &'a str) -> E<'a> {
    E {
        kind: tar::EntryType::Link,
        link: target.as_bytes(),
        ..e(path)
    }
}

pub(super) fn append(b: &mut tar::Builder<Vec<u8>>, x: &E<'_>) {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..x.path.len()].copy_from_slice(x.path);
    h.set_link_name_literal(x.link).unwrap();
    h.set_entry_type(x.kind);
    h.set_size(x.data.len() as u64);
    h.set_mode(x.mode);
    h.set_uid(x.uid);
    h.set_gid(x.gid);
    h.set_mtime(x.mtime);
    h.set_device_major(x.dev.0).unwrap();
    h.set_device_minor(x.dev.1).unwrap();
    h.set_cksum();
    b.append(&h, x.data).unwrap();
}

pub(super) fn tar_of(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for x in entries {
        append(&mut b, x);
    }
    b.into_inner().unwrap()
}

pub(super) fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

pub(super) fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).unwrap()
}

pub(super) fn sha256(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

pub(super) struct Layer {
    pub(super) dir: tempfile::TempDir,
}

impl Layer {
    pub(super) fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
    pub(super) fn meta(&self, rel: &str) -> fs::Metadata {
        fs::symlink_metadata(self.p(rel)).unwrap_or_else(|e| panic!("{rel} in unpacked layer: {e}"))
    }
    pub(super) fn exists(&self, rel: &str) -> bool {
        fs::symlink_metadata(self.p(rel)).is_ok()
    }
}

pub(super) fn unpack(input: &[u8]) -> (Layer, Result<UnpackedLayer, UnpackError>) {
    need_root();
    let dir = tempfile::tempdir().unwrap();
    let r = unpack_layer(input, dir.path());
    (Layer { dir }, r)
}

pub(super) fn unpack_ok(input: &[u8]) -> (Layer, UnpackedLayer) {
    let (l, r) = unpack(input);
    let u = r.unwrap_or_else(|e| panic!("unpack failed: {e}"));
    (l, u)
}

pub(super) fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid C strings and a buffer of the given length.
    let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return None;
    }
    buf.truncate(r as usize);
    Some(buf)
}

/// Asserts the unpack was refused as unsafe, naming `entry`.
pub(super) fn assert_refused(r: Result<UnpackedLayer, UnpackError>, entry: &str) {
    match r {
        Err(UnpackError::Unsafe { ref path, .. }) if path == entry => {}
        other => panic!("expected entry {entry:?} to be refused, got {other:?}"),
    }
}
