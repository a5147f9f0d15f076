//! Small file-system measurements shared by the image and container stores.

use std::io;
use std::path::Path;

/// Bytes (allocated, as `du`) and inodes below `dir`, not crossing into
/// other filesystems; a missing directory uses nothing.
pub fn usage(dir: &Path) -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let root = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(e),
    };
    let (mut bytes, mut inodes) = (0u64, 0u64);
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = match std::fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if m.dev() != root.dev() || !seen.insert(m.ino()) {
            continue;
        }
        inodes += 1;
        bytes += m.blocks() * 512;
        if m.is_dir() {
            match std::fs::read_dir(&p) {
                Ok(entries) => {
                    for e in entries.flatten() {
                        stack.push(e.path());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok((bytes, inodes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_of_a_tree() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("f"), vec![0u8; 5000]).unwrap();
        let (b, i) = usage(d.path()).unwrap();
        assert_eq!(i, 2);
        assert!(b >= 4096);
        assert_eq!(usage(&d.path().join("missing")).unwrap(), (0, 0));
    }
}
