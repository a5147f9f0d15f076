//! Which cgroup hierarchies this host mounts (from /proc/self/mountinfo),
//! where a cgroup path lives in each, and which top-level cgroups hold this
//! process (from /proc/self/cgroup) and so are never ours to change.

use std::fs;
use std::path::{Path, PathBuf};

use super::paths::{clean_components, is_within};
use super::{CgroupError, CgroupMode};
use crate::host::fs::unescape_mountinfo;

const MOUNTINFO: &str = "/proc/self/mountinfo";
const SELF_CGROUP: &str = "/proc/self/cgroup";

/// One mounted cgroup hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hierarchy {
    controllers: Vec<String>,
    name: Option<String>,
    unified: bool,
    mount: PathBuf,
    /// Path inside the hierarchy that the mount shows (mountinfo's 4th
    /// field); kept only to prefer a mount of the whole tree over a bind
    /// mount of a subtree.
    mount_root: String,
}

impl Hierarchy {
    /// v1 controllers bound to this hierarchy, sorted (`["cpu", "cpuacct"]`);
    /// empty for a named v1 hierarchy and for the unified one.
    pub fn controllers(&self) -> &[String] {
        &self.controllers
    }

    /// The `name=` of a named v1 hierarchy (`systemd`).
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Whether this is the cgroup v2 (unified) hierarchy.
    pub fn is_unified(&self) -> bool {
        self.unified
    }

    pub fn mount(&self) -> &Path {
        &self.mount
    }

    /// `cpu,cpuacct`, `name=systemd` or `unified`: how /proc/<pid>/cgroup
    /// names the hierarchy (with `unified` for its empty name).
    pub fn label(&self) -> String {
        if self.unified {
            return "unified".to_string();
        }
        let mut parts = self.controllers.clone();
        if let Some(name) = &self.name {
            parts.push(format!("name={name}"));
        }
        parts.join(",")
    }

    pub fn has_controller(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }

    /// The directory of `path` (already checked: absolute, normalised, not
    /// the root) in this hierarchy.
    pub(super) fn dir(&self, path: &str) -> PathBuf {
        self.mount.join(path.trim_start_matches('/'))
    }
}

/// Every cgroup hierarchy mounted on this host, and the cgroups this process
/// must never write under.
#[derive(Clone, Debug)]
pub struct CgroupLayout {
    /// v1 hierarchies in mountinfo order, then the unified one.
    hierarchies: Vec<Hierarchy>,
    /// Top-level cgroups (`/process_api`) holding this process in some
    /// hierarchy: they belong to whoever started us.
    protected: Vec<String>,
}

impl CgroupLayout {
    /// Reads /proc/self/mountinfo and /proc/self/cgroup.
    pub fn detect() -> Result<Self, CgroupError> {
        let read = |p: &str| fs::read_to_string(p).map_err(CgroupError::read(Path::new(p)));
        Self::parse(&read(MOUNTINFO)?, Path::new(MOUNTINFO), &read(SELF_CGROUP)?)
    }

    /// Builds a layout from the text of a mountinfo file and of a
    /// /proc/<pid>/cgroup file (for tests over a fake tree).
    pub fn from_mountinfo(mountinfo: &str, self_cgroup: &str) -> Result<Self, CgroupError> {
        Self::parse(mountinfo, Path::new("mountinfo"), self_cgroup)
    }

    fn parse(mountinfo: &str, source: &Path, self_cgroup: &str) -> Result<Self, CgroupError> {
        let mut v1: Vec<Hierarchy> = Vec::new();
        let mut unified: Option<Hierarchy> = None;
        for (index, line) in mountinfo.lines().enumerate() {
            let parse_err = |reason: &str| CgroupError::Parse {
                path: source.to_path_buf(),
                line: index + 1,
                reason: reason.to_string(),
            };
            if let Some(h) = parse_mount_line(line).map_err(parse_err)? {
                add_mount(&mut v1, &mut unified, h);
            }
        }
        v1.extend(unified);
        if v1.is_empty() {
            return Err(CgroupError::NoHierarchy {
                path: source.to_path_buf(),
            });
        }
        Ok(CgroupLayout {
            hierarchies: v1,
            protected: protected_tops(self_cgroup),
        })
    }

    pub fn hierarchies(&self) -> &[Hierarchy] {
        &self.hierarchies
    }

    pub fn mode(&self) -> CgroupMode {
        let v1_controllers = self
            .hierarchies
            .iter()
            .any(|h| !h.unified && !h.controllers.is_empty());
        let v2 = self.hierarchies.iter().any(|h| h.unified);
        match (v1_controllers, v2) {
            (true, true) => CgroupMode::Hybrid,
            (false, true) => CgroupMode::Unified,
            _ => CgroupMode::Legacy,
        }
    }

    /// Whether the v2 hierarchy carries the controllers (a unified host).
    pub fn is_v2(&self) -> bool {
        self.mode() == CgroupMode::Unified
    }

    /// The controllers the v2 hierarchy offers (its root's
    /// `cgroup.controllers`); none without one.
    pub fn unified_controllers(&self) -> Vec<String> {
        self.unified_hierarchy()
            .and_then(|h| fs::read_to_string(h.mount().join("cgroup.controllers")).ok())
            .map(|text| text.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// The v1 hierarchy that carries `controller`.
    pub(super) fn v1_with(&self, controller: &str) -> Option<&Hierarchy> {
        self.hierarchies
            .iter()
            .find(|h| !h.unified && h.has_controller(controller))
    }

    pub(super) fn unified_hierarchy(&self) -> Option<&Hierarchy> {
        self.hierarchies.iter().find(|h| h.unified)
    }

    /// Normalises an absolute cgroup path and refuses the root and anything
    /// under this process's own top-level cgroups. Every other method goes
    /// through it; callers that hand paths to another library should too.
    pub fn check_path(&self, path: &str) -> Result<String, CgroupError> {
        let invalid = |reason: &str| CgroupError::InvalidPath {
            path: path.to_string(),
            reason: reason.to_string(),
        };
        if !path.starts_with('/') {
            return Err(invalid(
                "not absolute (normalise cgroup_parent with normalize_parent first)",
            ));
        }
        let clean = clean_components(path).map_err(invalid)?;
        if clean == "/" {
            return Err(invalid("the root cgroup is not ours to change"));
        }
        if let Some(top) = self.protected.iter().find(|top| is_within(&clean, top)) {
            return Err(CgroupError::Protected {
                path: path.to_string(),
                protected: top.clone(),
            });
        }
        Ok(clean)
    }

    /// The directory of `path` in every hierarchy, whether it exists or not;
    /// none for a path [`Self::check_path`] refuses.
    pub fn dirs(&self, path: &str) -> Vec<PathBuf> {
        match self.check_path(path) {
            Ok(path) => self.hierarchies.iter().map(|h| h.dir(&path)).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Whether `path` exists in at least one hierarchy (so a partly created
    /// or partly removed cgroup still counts as there to clean up).
    pub fn exists(&self, path: &str) -> bool {
        self.dirs(path).iter().any(|d| d.is_dir())
    }
}

/// Adds a mounted hierarchy to the v1 ones or as the unified one. The same
/// hierarchy mounted twice keeps the mount that shows its root, the one
/// paths from kubelet are relative to.
fn add_mount(v1: &mut Vec<Hierarchy>, unified: &mut Option<Hierarchy>, h: Hierarchy) {
    let slot = if h.unified {
        unified.as_mut()
    } else {
        v1.iter_mut()
            .find(|o| o.controllers == h.controllers && o.name == h.name)
    };
    match slot {
        Some(existing) => {
            if existing.mount_root != "/" && h.mount_root == "/" {
                *existing = h;
            }
        }
        None if h.unified => *unified = Some(h),
        None => v1.push(h),
    }
}

/// The first component of every non-root cgroup in /proc/<pid>/cgroup text.
fn protected_tops(self_cgroup: &str) -> Vec<String> {
    let mut tops: Vec<String> = self_cgroup
        .lines()
        .filter_map(|line| line.splitn(3, ':').nth(2))
        .filter_map(|path| path.split('/').find(|p| !p.is_empty()))
        .map(|top| format!("/{top}"))
        .collect();
    tops.sort();
    tops.dedup();
    tops
}

/// Options the kernel prints for a v1 cgroup mount that are not controllers
/// (`cgroup1_show_options`, plus the generic rw/ro).
const V1_MOUNT_FLAGS: [&str; 9] = [
    "rw",
    "ro",
    "none",
    "all",
    "noprefix",
    "xattr",
    "clone_children",
    "cpuset_v2_mode",
    "favordynmods",
];

/// A cgroup hierarchy from one mountinfo line; `None` for other filesystems.
fn parse_mount_line(line: &str) -> Result<Option<Hierarchy>, &'static str> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    let fields: Vec<&str> = line.split(' ').collect();
    // id parent dev root mountpoint options [optional...] - fstype source superoptions
    let sep = fields
        .iter()
        .skip(6)
        .position(|f| *f == "-")
        .map(|i| i + 6)
        .ok_or("no ` - ` separator")?;
    let (Some(root), Some(mount)) = (fields.get(3), fields.get(4)) else {
        return Err("fewer than 5 fields");
    };
    let fstype = fields.get(sep + 1).ok_or("no filesystem type")?;
    let super_opts = fields.get(sep + 3).copied().unwrap_or("");
    let unified = match *fstype {
        "cgroup2" => true,
        "cgroup" => false,
        _ => return Ok(None),
    };
    let (controllers, name) = if unified {
        (Vec::new(), None)
    } else {
        v1_controllers_and_name(super_opts)
    };
    if !unified && controllers.is_empty() && name.is_none() {
        return Ok(None);
    }
    Ok(Some(Hierarchy {
        controllers,
        name,
        unified,
        mount: PathBuf::from(unescape_mountinfo(mount)),
        mount_root: unescape_mountinfo(root),
    }))
}

/// The sorted controllers and the `name=` of a v1 mount's super options.
fn v1_controllers_and_name(super_opts: &str) -> (Vec<String>, Option<String>) {
    let mut controllers = Vec::new();
    let mut name = None;
    for opt in super_opts.split(',') {
        if let Some(n) = opt.strip_prefix("name=") {
            name = Some(n.to_string());
        } else if !opt.is_empty() && !opt.contains('=') && !V1_MOUNT_FLAGS.contains(&opt) {
            controllers.push(opt.to_string());
        }
    }
    controllers.sort();
    (controllers, name)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::cgroups::test_tree::{proc_cgroup, require_root, HYBRID};

    #[test]
    fn parses_hybrid_mountinfo() {
        let l = CgroupLayout::from_mountinfo(HYBRID, "4:memory:/\n0::/\n").unwrap();
        assert_eq!(l.mode(), CgroupMode::Hybrid);
        let labels: Vec<String> = l.hierarchies().iter().map(Hierarchy::label).collect();
        assert_eq!(
            labels,
            [
                "cpu,cpuacct",
                "cpuset",
                "memory",
                "net_cls,net_prio",
                "name=systemd",
                "unified"
            ]
        );
        // The bind mount of a subtree does not replace the whole-tree mount.
        assert_eq!(
            l.hierarchies()[2].mount(),
            Path::new("/sys/fs/cgroup/memory")
        );
        assert_eq!(
            l.dirs("/kubepods/pod1/abc")[4],
            PathBuf::from("/sys/fs/cgroup/systemd/kubepods/pod1/abc")
        );
    }

    #[test]
    fn parses_mount_point_escapes_and_v2_only() {
        let text = "1 0 0:1 / /a\\040b\\134c rw - cgroup2 cgroup2 rw\n";
        let l = CgroupLayout::from_mountinfo(text, "0::/\n").unwrap();
        assert_eq!(l.mode(), CgroupMode::Unified);
        assert_eq!(l.hierarchies()[0].mount(), Path::new("/a b\\c"));

        let v1 = "1 0 0:1 / /m rw - cgroup cgroup rw,memory\n";
        let l = CgroupLayout::from_mountinfo(v1, "").unwrap();
        assert_eq!(l.mode(), CgroupMode::Legacy);

        let none = "1 0 0:1 / / rw - ext4 /dev/sda rw\n";
        assert!(matches!(
            CgroupLayout::from_mountinfo(none, ""),
            Err(CgroupError::NoHierarchy { .. })
        ));
        assert!(matches!(
            CgroupLayout::from_mountinfo("1 0 0:1 / /x rw cgroup", ""),
            Err(CgroupError::Parse { line: 1, .. })
        ));
    }

    #[test]
    fn check_path_refuses_relative_dotdot_root_and_own_cgroup() {
        let own = "4:memory:/process_api/e670\n3:cpuset:/\n0::/\n";
        let l = CgroupLayout::from_mountinfo(HYBRID, own).unwrap();
        assert_eq!(l.check_path("/a//b/").unwrap(), "/a/b");
        for bad in ["a/b", "/a/../b", "/", "//", "/a\0"] {
            assert!(
                matches!(l.check_path(bad), Err(CgroupError::InvalidPath { .. })),
                "{bad:?}"
            );
        }
        for bad in ["/process_api", "/process_api/x", "//process_api/./x"] {
            assert!(
                matches!(l.check_path(bad), Err(CgroupError::Protected { .. })),
                "{bad:?}"
            );
        }
        assert!(l.check_path("/process_api_other/x").is_ok());
        assert!(l.dirs("/process_api/x").is_empty());
        assert!(l.dirs("relative").is_empty());
        assert!(matches!(
            l.create("/process_api/x"),
            Err(CgroupError::Protected { .. })
        ));
    }

    // ---- this machine's real cgroups (root) ----

    fn label_set(h: &Hierarchy) -> BTreeSet<String> {
        if h.is_unified() {
            return BTreeSet::new();
        }
        h.label().split(',').map(str::to_string).collect()
    }

    #[test]
    fn real_layout_covers_every_hierarchy_the_kernel_lists() {
        require_root();
        let l = CgroupLayout::detect().unwrap();
        let kernel = proc_cgroup(std::process::id());
        let ours: BTreeSet<_> = l.hierarchies().iter().map(label_set).collect();
        let theirs: BTreeSet<_> = kernel.iter().map(|(n, _)| n.clone()).collect();
        assert_eq!(ours, theirs);
        if fs::metadata("/sys/fs/cgroup/unified/cgroup.procs").is_ok() {
            assert_eq!(l.mode(), CgroupMode::Hybrid);
        }
        // Our own non-root cgroup (memory:/process_api/... here) is refused
        // before anything touches the filesystem.
        for (_, path) in kernel.iter().filter(|(_, p)| p != "/") {
            let inside = format!("{path}/peapod-never");
            assert!(
                matches!(l.check_path(&inside), Err(CgroupError::Protected { .. })),
                "{inside}"
            );
        }
    }
}
