//! The bench's cgroup parent tree, made in every hierarchy as kubelet makes
//! a pod's cgroup, and removed at the end.

use std::path::{Path, PathBuf};

use crate::error::{io_err, BenchError};

#[derive(Debug)]
struct Hierarchy {
    mount: PathBuf,
    /// v1 cpuset: a new cgroup has no cpus/mems until someone copies them.
    cpuset_v1: bool,
}

#[derive(Debug)]
pub struct CgroupTree {
    pub parent: String,
    hierarchies: Vec<Hierarchy>,
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let digits = std::str::from_utf8(&b[i + 1..i + 4]).ok();
            if let Some(v) = digits.and_then(|d| u8::from_str_radix(d, 8).ok()) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl CgroupTree {
    pub fn discover(parent: &str) -> Result<Self, BenchError> {
        let path = Path::new("/proc/self/mountinfo");
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        let mut hierarchies = Vec::new();
        for line in text.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let mut r = right.split(' ');
            let fstype = r.next().unwrap_or("");
            let _source = r.next();
            let opts = r.next().unwrap_or("");
            if fstype != "cgroup" && fstype != "cgroup2" {
                continue;
            }
            let Some(mount) = left.split(' ').nth(4) else {
                continue;
            };
            hierarchies.push(Hierarchy {
                mount: PathBuf::from(unescape_mount(mount)),
                cpuset_v1: fstype == "cgroup" && opts.split(',').any(|o| o == "cpuset"),
            });
        }
        if hierarchies.is_empty() {
            return Err(BenchError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::other("no cgroup or cgroup2 mount found"),
            });
        }
        Ok(Self {
            parent: parent.to_string(),
            hierarchies,
        })
    }

    /// Creates `rel` (an absolute cgroup path) in every hierarchy.
    pub fn create(&self, rel: &str) -> Result<(), BenchError> {
        for h in &self.hierarchies {
            let mut cur = h.mount.clone();
            for comp in rel.split('/').filter(|c| !c.is_empty()) {
                let parent = cur.clone();
                cur.push(comp);
                match std::fs::create_dir(&cur) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io_err(&cur)(e)),
                }
                if h.cpuset_v1 {
                    for f in ["cpuset.cpus", "cpuset.mems"] {
                        let own = cur.join(f);
                        let cur_val = std::fs::read_to_string(&own).map_err(io_err(&own))?;
                        if cur_val.trim().is_empty() {
                            let from = parent.join(f);
                            let v = std::fs::read_to_string(&from).map_err(io_err(&from))?;
                            std::fs::write(&own, v.trim()).map_err(io_err(&own))?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Removes `rel` and everything below it in every hierarchy, leaves first.
    /// Returns the directories that could not be removed.
    pub fn remove(&self, rel: &str) -> Vec<String> {
        let mut left = Vec::new();
        for h in &self.hierarchies {
            let p = h.mount.join(rel.trim_start_matches('/'));
            rmdir_tree(&p, &mut left);
        }
        left
    }

    pub fn pod_path(&self, uid: &str) -> String {
        format!("{}/pod{}", self.parent, uid)
    }
}

fn rmdir_tree(dir: &Path, left: &mut Vec<String>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            left.push(format!("{}: {e}", dir.display()));
            return;
        }
    };
    for entry in entries.flatten() {
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            rmdir_tree(&entry.path(), left);
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => left.push(format!("{}: {e}", dir.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mount("/a\\040b/c"), "/a b/c");
        assert_eq!(unescape_mount("/plain"), "/plain");
        assert_eq!(unescape_mount("/end\\04"), "/end\\04");
    }
}
