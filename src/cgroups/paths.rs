//! Cgroup path text: a CRI `cgroup_parent` (a path, or a systemd slice name)
//! turned into an absolute, normalised path, and children joined below it.

use super::{CgroupDriver, CgroupError};

/// `<parent>/<id>`.
pub fn child_path(parent: &str, id: &str) -> String {
    format!("{}/{}", parent.trim_end_matches('/'), id)
}

/// Turns a CRI `cgroup_parent` into an absolute, normalised cgroup path.
///
/// Empty means `default_parent`. Under the systemd driver a slice name
/// (`kubepods-burstable-pod1.slice`) expands to its slice path
/// (`/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice`).
/// Anything else relative (`test.slice` under cgroupfs) is taken from the
/// root (`/test.slice`), never from the daemon's own cgroup.
pub fn normalize_parent(
    parent: &str,
    driver: CgroupDriver,
    default_parent: &str,
) -> Result<String, CgroupError> {
    let (raw, what) = if parent.is_empty() {
        (default_parent, "the default cgroup parent")
    } else {
        (parent, "")
    };
    let invalid = |reason: &str| CgroupError::InvalidParent {
        parent: raw.to_string(),
        reason: if what.is_empty() {
            reason.to_string()
        } else {
            format!("{reason} (it is {what})")
        },
    };
    if raw.is_empty() {
        return Err(invalid("empty, and no default is configured"));
    }
    if driver == CgroupDriver::Systemd && !raw.contains('/') && raw.ends_with(".slice") {
        return expand_slice(raw).map_err(invalid);
    }
    let absolute = if raw.starts_with('/') {
        raw.to_string()
    } else {
        format!("/{raw}")
    };
    clean_components(&absolute).map_err(invalid)
}

/// `a-b-c.slice` → `/a.slice/a-b.slice/a-b-c.slice`; `-.slice` is the root.
fn expand_slice(slice: &str) -> Result<String, &'static str> {
    if slice.chars().any(char::is_control) {
        return Err("contains a control character");
    }
    let Some(stem) = slice.strip_suffix(".slice") else {
        return Err("not a slice name");
    };
    if stem == "-" {
        return Ok("/".to_string());
    }
    let parts: Vec<&str> = stem.split('-').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err("a systemd slice name has no empty parts between dashes");
    }
    let mut out = String::new();
    for n in 1..=parts.len() {
        out.push('/');
        out.push_str(&parts[..n].join("-"));
        out.push_str(".slice");
    }
    Ok(out)
}

/// Collapses `//` and `.`, strips a trailing `/`, refuses `..` and control
/// characters (NUL, newline: they would corrupt /proc/<pid>/cgroup too).
pub(super) fn clean_components(path: &str) -> Result<String, &'static str> {
    if path.contains('\0') {
        return Err("contains a NUL byte");
    }
    if path.chars().any(char::is_control) {
        return Err("contains a control character");
    }
    let mut out = String::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("contains a `..` component"),
            _ => {
                out.push('/');
                out.push_str(part);
            }
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// Whether `path` is `top` or below it (both clean and absolute).
pub(super) fn is_within(path: &str, top: &str) -> bool {
    path == top
        || path
            .strip_prefix(top)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_parent_cgroupfs() {
        let n = |p: &str| normalize_parent(p, CgroupDriver::Cgroupfs, "/peapod");
        assert_eq!(
            n("/kubepods/burstable/pod123").unwrap(),
            "/kubepods/burstable/pod123"
        );
        assert_eq!(n("/kubepods//pod1/./").unwrap(), "/kubepods/pod1");
        assert_eq!(n("test.slice").unwrap(), "/test.slice");
        assert_eq!(n("/test.slice").unwrap(), "/test.slice");
        assert_eq!(
            n("kubepods-burstable-pod123.slice").unwrap(),
            "/kubepods-burstable-pod123.slice"
        );
        assert_eq!(n("a/b").unwrap(), "/a/b");
        assert_eq!(n("").unwrap(), "/peapod");
        assert_eq!(n("/").unwrap(), "/");
        for bad in ["/a/../b", "..", "../x", "/a/..", "/a\0b", "/a\nb"] {
            let err = n(bad).unwrap_err();
            assert!(matches!(err, CgroupError::InvalidParent { .. }), "{bad:?}");
            assert!(err.to_string().contains("cgroup_parent"), "{err}");
        }
        let err = normalize_parent("", CgroupDriver::Cgroupfs, "").unwrap_err();
        assert!(err.to_string().contains("cgroup_parent"), "{err}");
        let err = normalize_parent("", CgroupDriver::Cgroupfs, "/x/../y").unwrap_err();
        assert!(err.to_string().contains("default"), "{err}");
    }

    #[test]
    fn normalize_parent_systemd() {
        let n = |p: &str| normalize_parent(p, CgroupDriver::Systemd, "/peapod");
        assert_eq!(
            n("kubepods-burstable-pod123.slice").unwrap(),
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod123.slice"
        );
        assert_eq!(n("kubepods.slice").unwrap(), "/kubepods.slice");
        assert_eq!(n("-.slice").unwrap(), "/");
        assert_eq!(n("/kubepods.slice/x").unwrap(), "/kubepods.slice/x");
        assert_eq!(n("").unwrap(), "/peapod");
        for bad in ["a--b.slice", "-a.slice", "a-.slice", "/a/../b"] {
            assert!(
                matches!(n(bad), Err(CgroupError::InvalidParent { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn child_path_joins() {
        assert_eq!(child_path("/kubepods/pod1", "abc"), "/kubepods/pod1/abc");
        assert_eq!(child_path("/", "abc"), "/abc");
        assert_eq!(child_path("/a/", "abc"), "/a/abc");
    }
}
