//! Tar paths made safe: normalised, never absolute, never `..`.

/// Splits a normalised path into its directory and final name.
pub(super) fn split_last(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|b| *b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

/// Normalises a tar path into components joined by single slashes, dropping
/// `.` and empty components. Absolute paths and `..` are refused outright:
/// no legitimate layer needs them. So are paths over PATH_MAX, which also
/// bounds the directory depth (open fds, recursion when replacing a tree).
pub(super) fn normalize(raw: &[u8]) -> Result<Vec<u8>, &'static str> {
    if raw.first() == Some(&b'/') {
        return Err("absolute path");
    }
    if raw.len() > libc::PATH_MAX as usize {
        return Err("path longer than PATH_MAX");
    }
    if raw.contains(&0) {
        return Err("path contains a NUL byte");
    }
    let mut out = Vec::with_capacity(raw.len());
    for comp in raw.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => continue,
            b".." => return Err("path contains a \"..\" component"),
            _ => {}
        }
        if !out.is_empty() {
            out.push(b'/');
        }
        out.extend_from_slice(comp);
    }
    Ok(out)
}

pub(super) fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[cfg(test)]
mod tests {
    use std::io;

    use crate::image::unpack::test_support::*;

    #[test]
    fn escaping_paths_are_refused() {
        for bad in ["/abs", "../x", "a/../../x", "a/b/../c", "./../x", "//etc/x"] {
            let t = tar_of(&[file(bad, b"evil")]);
            let (_, r) = unpack(&t);
            assert_refused(r, bad);
        }
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_entry_type(tar::EntryType::Directory);
        let deep = "d/".repeat(3000);
        b.append_data(&mut h, &deep, io::empty()).unwrap();
        let (_, r) = unpack(&b.into_inner().unwrap());
        assert_refused(r, &deep);
        let t = tar_of(&[hardlink("x", "../outside")]);
        let (_, r) = unpack(&t);
        assert_refused(r, "x");
        let t = tar_of(&[hardlink("x", "/etc/passwd")]);
        let (_, r) = unpack(&t);
        assert_refused(r, "x");
    }
}
