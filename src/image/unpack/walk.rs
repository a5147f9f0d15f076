//! The writing thread: walks the tar and sends each entry to what applies
//! its kind.

use std::collections::HashSet;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};

use nix::sys::stat::{fstat, futimens, utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;
use sha2::Sha256;

use super::dirs::{is_sgid, DirStack};
use super::error::{invalid, io_err, resolve_error};
use super::meta::read_meta;
use super::paths::{lossy, normalize, split_last};
use super::pipe::ChunkReader;
use super::whiteout::WHITEOUT_PREFIX;
use super::{UnpackError, CHUNK};

/// Runs on the writing thread: parses the tar and applies every entry.
pub(super) fn write_layer(mut reader: ChunkReader, root: OwnedFd) -> Result<Written, UnpackError> {
    let tar_err = |last: &str, e: io::Error| UnpackError::Tar {
        at: if last.is_empty() {
            "at its start".to_string()
        } else {
            format!("after entry {last:?}")
        },
        source: e,
    };
    let mut unpacker = Unpacker::new(root).map_err(|e| UnpackError::Dest {
        path: "(layer root)".into(),
        source: e.into(),
    })?;
    let mut last = String::new();
    {
        let mut archive = tar::Archive::new(&mut reader);
        let entries = archive.entries().map_err(|e| tar_err(&last, e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| tar_err(&last, e))?;
            last = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            if unpacker.apply(&mut entry, &last)? {
                unpacker.entries += 1;
            }
        }
    }
    unpacker.finish()?;
    reader.drain().map_err(|e| tar_err(&last, e))?;
    Ok(Written {
        entries: unpacker.entries,
        hasher: reader.hasher,
        size: reader.size,
    })
}

/// What the writing thread reports back.
pub(super) struct Written {
    pub(super) entries: u64,
    pub(super) hasher: Option<Sha256>,
    pub(super) size: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    File,
    Dir,
    Symlink,
    HardLink,
    Char,
    Block,
    Fifo,
}

/// What a tar entry makes; None for entries that make nothing (global PAX
/// headers silently, types a layer has no use for with a warning).
fn entry_kind(etype: tar::EntryType, raw: &[u8], shown: &str) -> Option<Kind> {
    Some(match etype {
        tar::EntryType::Regular if raw.ends_with(b"/") => Kind::Dir,
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
            Kind::File
        }
        tar::EntryType::Directory => Kind::Dir,
        tar::EntryType::Symlink => Kind::Symlink,
        tar::EntryType::Link => Kind::HardLink,
        tar::EntryType::Char => Kind::Char,
        tar::EntryType::Block => Kind::Block,
        tar::EntryType::Fifo => Kind::Fifo,
        tar::EntryType::XGlobalHeader => return None,
        other => {
            tracing::warn!(path = shown, kind = ?other, "skipping tar entry of unsupported type");
            return None;
        }
    })
}

pub(super) struct Unpacker {
    pub(super) dirs: DirStack,
    /// Set when cached directory fds may be wrong (a directory was removed or
    /// its mode changed); the next lookup starts from the root again.
    pub(super) stale: bool,
    /// Directory mtimes, applied at the end because creating children
    /// changes them. Tar order, later entries for the same path win.
    pub(super) dir_times: Vec<(Vec<u8>, TimeSpec)>,
    /// Paths where a whiteout device was made: not entries of this layer, so
    /// hard links must not point at them.
    pub(super) whiteouts: HashSet<Vec<u8>>,
    pub(super) buf: Vec<u8>,
    pub(super) entries: u64,
}

impl Unpacker {
    fn new(root: OwnedFd) -> nix::Result<Self> {
        let root_sgid = is_sgid(fstat(root.as_fd())?);
        Ok(Unpacker {
            dirs: DirStack {
                root,
                root_sgid,
                levels: Vec::new(),
                ids: (
                    nix::unistd::geteuid().as_raw(),
                    nix::unistd::getegid().as_raw(),
                ),
            },
            stale: false,
            dir_times: Vec::new(),
            whiteouts: HashSet::new(),
            buf: vec![0u8; CHUNK],
            entries: 0,
        })
    }

    /// Applies one entry; false when it was skipped.
    fn apply<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        shown: &str,
    ) -> Result<bool, UnpackError> {
        let etype = entry.header().entry_type();
        let raw = entry.path_bytes();
        let Some(kind) = entry_kind(etype, &raw, shown) else {
            return Ok(false);
        };
        let path = normalize(&raw).map_err(|reason| UnpackError::Unsafe {
            path: shown.to_string(),
            reason: reason.to_string(),
        })?;
        drop(raw);
        let (dir, name) = split_last(&path);

        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            return self.whiteout_entry(dir, name, hidden, shown);
        }
        if kind == Kind::HardLink {
            return self.hard_link_entry(entry, &path, shown);
        }

        let meta = read_meta(entry, shown)?;
        if path.is_empty() {
            if kind != Kind::Dir {
                return Err(invalid(
                    shown,
                    "names the layer root but is not a directory",
                ));
            }
            self.root_meta(&meta, shown)?;
            return Ok(true);
        }
        self.create(entry, kind, &path, &meta, shown)?;
        if !self.whiteouts.is_empty() {
            self.whiteouts.remove(&path);
        }
        Ok(true)
    }

    /// Sets directory mtimes now that nothing will be created in them.
    /// Changing a directory's times does not touch its parent, so order
    /// does not matter; tar order keeps the fd stack warm.
    fn finish(&mut self) -> Result<(), UnpackError> {
        let times = std::mem::take(&mut self.dir_times);
        for (path, ts) in &times {
            let shown = lossy(path);
            if path.is_empty() {
                futimens(self.dirs.root.as_fd(), ts, ts)
                    .map_err(|e| io_err(&shown, "setting mtime", e))?;
                continue;
            }
            let (dir, name) = split_last(path);
            let (parent, _) = self
                .dirs
                .resolve(dir, false, std::mem::take(&mut self.stale))
                .map_err(|e| resolve_error(e, dir, &shown))?;
            utimensat(parent, name, ts, ts, UtimensatFlags::NoFollowSymlink)
                .map_err(|e| io_err(&shown, "setting mtime", e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::MetadataExt;

    use crate::image::unpack::test_support::*;

    #[test]
    fn paths_are_normalised_and_skips_not_counted() {
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([("comment", &b"global"[..])])
            .unwrap();
        // Turn that local PAX header into a global one ('g').
        let mut t = b.into_inner().unwrap();
        t.truncate(t.len() - 1024);
        t[156] = b'g';
        let mut h = tar::Header::from_byte_slice(&t[..512]).clone();
        h.set_cksum();
        t[..512].copy_from_slice(h.as_bytes());
        let mut b = tar::Builder::new(t);
        append(&mut b, &file("./a//b/./c", b"c"));
        append(&mut b, &hardlink("a/b/c", "./a/b/c"));
        append(&mut b, &file("a/.wh..wh.aufs", b""));
        append(
            &mut b,
            &E {
                kind: tar::EntryType::new(b'V'),
                ..e("volume-label")
            },
        );
        let t = b.into_inner().unwrap();
        let (l, u) = unpack_ok(&t);
        assert_eq!(u.entries, 1);
        assert_eq!(fs::read(l.p("a/b/c")).unwrap(), b"c");
        assert_eq!(l.meta("a/b/c").nlink(), 1);
        assert!(!l.exists("volume-label"));
    }
}
