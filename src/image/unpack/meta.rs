//! Ownership, mode and time of an entry, from its header and its PAX
//! records.

use std::ffi::CString;
use std::io::{self, Read};

use nix::sys::stat::Mode;
use nix::sys::time::TimeSpec;

use super::paths::lossy;
use super::UnpackError;

/// Ownership, mode, time and xattrs of one entry.
pub(super) struct Meta {
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) mode: Mode,
    pub(super) mtime: TimeSpec,
    pub(super) xattrs: Vec<(CString, Vec<u8>)>,
}

/// Reads ownership, mode, mtime (with PAX sub-second precision) and the
/// `SCHILY.xattr.*` PAX records of an entry.
pub(super) fn read_meta<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    shown: &str,
) -> Result<Meta, UnpackError> {
    let invalid = |reason: String| UnpackError::Invalid {
        path: shown.to_string(),
        reason,
    };
    let h = entry.header();
    let old = h.as_old();
    let uid = numeric(h.uid(), &old.uid)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| invalid("invalid uid".into()))?;
    let gid = numeric(h.gid(), &old.gid)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| invalid("invalid gid".into()))?;
    let mode = numeric(h.mode().map(u64::from), &old.mode)
        .ok_or_else(|| invalid("invalid mode".into()))?;
    let secs = numeric(h.mtime(), &old.mtime)
        .and_then(|t| i64::try_from(t).ok())
        .ok_or_else(|| invalid("invalid mtime".into()))?;
    let mut meta = Meta {
        uid,
        gid,
        mode: Mode::from_bits_truncate((mode & 0o7777) as libc::mode_t),
        mtime: TimeSpec::new(secs, 0),
        xattrs: Vec::new(),
    };
    let exts = entry.pax_extensions().map_err(|e| UnpackError::Tar {
        at: format!("at entry {shown:?}"),
        source: e,
    })?;
    for ext in exts.into_iter().flatten() {
        let ext = ext.map_err(|e| UnpackError::Tar {
            at: format!("at entry {shown:?}"),
            source: e,
        })?;
        let key = ext.key_bytes();
        if key == b"mtime" {
            meta.mtime = parse_pax_time(ext.value_bytes()).ok_or_else(|| {
                invalid(format!("invalid PAX mtime {:?}", lossy(ext.value_bytes())))
            })?;
        } else if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
            let name = CString::new(name)
                .ok()
                .filter(|n| !n.is_empty())
                .ok_or_else(|| invalid(format!("invalid xattr name {:?}", lossy(name))))?;
            meta.xattrs.push((name, ext.value_bytes().to_vec()));
        } else if key.starts_with(b"GNU.sparse.") {
            // The data would hold a sparse map the tar crate does not decode.
            return Err(invalid(
                "PAX-format GNU sparse files are not supported".into(),
            ));
        }
    }
    Ok(meta)
}

/// A numeric header field; an empty one (all NULs or spaces, as some
/// writers leave unused fields) reads as 0 the way Go's archive/tar does.
fn numeric(parsed: io::Result<u64>, raw: &[u8]) -> Option<u64> {
    match parsed {
        Ok(v) => Some(v),
        Err(_) if raw.iter().all(|b| *b == 0 || *b == b' ') => Some(0),
        Err(_) => None,
    }
}

/// Parses a PAX time: decimal seconds, optionally negative, optionally with
/// a fraction.
fn parse_pax_time(v: &[u8]) -> Option<TimeSpec> {
    let s = std::str::from_utf8(v).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    let mut nanos: i64 = 0;
    for (i, d) in frac.bytes().take(9).enumerate() {
        nanos += i64::from(d - b'0') * 10i64.pow(8 - i as u32);
    }
    Some(if !neg {
        TimeSpec::new(secs, nanos)
    } else if nanos == 0 {
        TimeSpec::new(-secs, 0)
    } else {
        TimeSpec::new(-secs - 1, 1_000_000_000 - nanos)
    })
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;

    use crate::image::unpack::test_support::*;
    use crate::image::unpack::UnpackError;

    #[test]
    fn pax_xattrs_mtime_and_long_names() {
        let long_dir = "d".repeat(120);
        let long_path = format!("{long_dir}/{}", "f".repeat(140));
        let long_target = format!("/{}", "t".repeat(200));
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([
            ("SCHILY.xattr.user.note", &b"hello"[..]),
            ("mtime", &b"1700000000.25"[..]),
        ])
        .unwrap();
        append(&mut b, &file("x", b"data"));
        b.append_pax_extensions([("SCHILY.xattr.trusted.overlay.opaque", &b"y"[..])])
            .unwrap();
        append(&mut b, &dir("sneaky/"));
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o600);
        h.set_size(3);
        b.append_data(&mut h, &long_path, &b"abc"[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "longlink", &long_target).unwrap();
        let t = b.into_inner().unwrap();

        let (l, _) = unpack_ok(&t);
        assert_eq!(
            xattr(&l.p("x"), "user.note").as_deref(),
            Some(&b"hello"[..])
        );
        let m = l.meta("x");
        assert_eq!((m.mtime(), m.mtime_nsec()), (1_700_000_000, 250_000_000));
        assert!(
            xattr(&l.p("sneaky"), "trusted.overlay.opaque").is_none(),
            "overlay xattrs from the tar must be dropped"
        );
        assert_eq!(fs::read(l.p(&long_path)).unwrap(), b"abc");
        assert_eq!(
            fs::read_link(l.p("longlink")).unwrap(),
            Path::new(&long_target)
        );
    }

    #[test]
    fn pax_sparse_files_are_refused() {
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([("GNU.sparse.major", &b"1"[..])])
            .unwrap();
        append(&mut b, &file("GNUSparseFile.0/f", b"map"));
        let (_, r) = unpack(&b.into_inner().unwrap());
        assert!(matches!(r, Err(UnpackError::Invalid { .. })), "{r:?}");
    }
}
