//! Cgroup placement: where a pod's or container's cgroup lives in every
//! mounted hierarchy, creating it, moving processes into it, signalling them
//! and removing it.
//!
//! Paths handled here are always absolute from each hierarchy's root (the
//! form kubelet's cgroupfs driver sends, e.g. `/kubepods/burstable/pod<uid>`)
//! and are resolved under the hierarchy's mount point, never under the
//! daemon's own cgroup. That is also why create/add/remove are plain file
//! operations instead of libcgroups: libcgroups 0.7's v1 manager covers only
//! the resource controllers (not the `name=systemd` and unified hierarchies
//! runc and kubelet also use), kills processes on remove, and resolves an
//! empty path to the caller's own cgroup. Resources and stats can later go
//! through libcgroups with a path from [`CgroupLayout::check_path`].

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

const MOUNTINFO: &str = "/proc/self/mountinfo";
const SELF_CGROUP: &str = "/proc/self/cgroup";
const PROCS_FILE: &str = "cgroup.procs";
const CPUSET_FILES: [&str; 2] = ["cpuset.cpus", "cpuset.mems"];
/// How long `remove` keeps retrying a busy cgroup: processes that were just
/// killed leave their cgroup only once the kernel has finished their exit.
const REMOVE_BUSY_TIMEOUT: Duration = Duration::from_secs(1);
const REMOVE_BUSY_SLEEP: Duration = Duration::from_millis(20);

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("invalid cgroup_parent {parent:?}: {reason}")]
    InvalidParent { parent: String, reason: String },
    #[error("invalid cgroup path {path:?}: {reason}")]
    InvalidPath { path: String, reason: String },
    #[error(
        "refusing cgroup path {path:?}: it is inside {protected:?}, the top-level cgroup that \
         holds this process, which belongs to whoever started it"
    )]
    Protected { path: String, protected: String },
    #[error("cannot add pid {pid} to cgroup {path:?}: not a process id")]
    InvalidPid { path: String, pid: i32 },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path} line {line}: {reason}")]
    Parse {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("no cgroup or cgroup2 filesystem is mounted (per {path})")]
    NoHierarchy { path: PathBuf },
    #[error("cannot create cgroup {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot write {value:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        source: io::Error,
    },
    #[error("cgroup {path} is still busy after {waited:?} (pids {pids:?})")]
    Busy {
        path: PathBuf,
        waited: Duration,
        pids: Vec<i32>,
    },
    #[error("cannot remove cgroup {path}: {source}")]
    Remove { path: PathBuf, source: io::Error },
    #[error("cannot send {signal} to pid {pid} of cgroup {path:?}: {source}")]
    Signal {
        path: String,
        pid: i32,
        signal: Signal,
        source: Errno,
    },
}

/// How cgroup parents are named: kubelet's `--cgroup-driver`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupDriver {
    /// Parents are paths (`/kubepods/burstable/pod<uid>`).
    #[default]
    Cgroupfs,
    /// Parents are slice names (`kubepods-burstable-pod<uid>.slice`).
    Systemd,
}

/// Which cgroup versions carry the controllers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupMode {
    /// v1 only.
    Legacy,
    /// v1 controllers plus a (mostly empty) v2 tree, e.g. `/sys/fs/cgroup/unified`.
    Hybrid,
    /// v2 only.
    Unified,
}

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
    fn dir(&self, path: &str) -> PathBuf {
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
        let read = |p: &str| {
            fs::read_to_string(p).map_err(|source| CgroupError::Read {
                path: PathBuf::from(p),
                source,
            })
        };
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
            let Some(h) = parse_mount_line(line).map_err(parse_err)? else {
                continue;
            };
            let slot = if h.unified {
                unified.as_mut()
            } else {
                v1.iter_mut()
                    .find(|o| o.controllers == h.controllers && o.name == h.name)
            };
            match slot {
                // The same hierarchy mounted twice: keep the mount that shows
                // its root, the one paths from kubelet are relative to.
                Some(existing) => {
                    if existing.mount_root != "/" && h.mount_root == "/" {
                        *existing = h;
                    }
                }
                None if h.unified => unified = Some(h),
                None => v1.push(h),
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

    /// Creates `path` in every hierarchy, with any missing parents
    /// (`mkdir -p`). In a v1 cpuset hierarchy every level on the way gets
    /// cpuset.cpus/mems copied from its nearest configured ancestor if empty,
    /// or no task could join. On failure, the directories this call created
    /// are removed again.
    pub fn create(&self, path: &str) -> Result<(), CgroupError> {
        let path = self.check_path(path)?;
        let mut created = Vec::new();
        let result = self
            .hierarchies
            .iter()
            .try_for_each(|h| create_in(h, &path, &mut created));
        if result.is_err() {
            for dir in created.iter().rev() {
                if let Err(e) = fs::remove_dir(dir) {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot undo cgroup creation");
                }
            }
        }
        result
    }

    /// Moves process `pid` (all its threads) into `path` in every hierarchy.
    pub fn add_process(&self, path: &str, pid: i32) -> Result<(), CgroupError> {
        let path = self.check_path(path)?;
        if pid <= 0 {
            return Err(CgroupError::InvalidPid { path, pid });
        }
        for h in &self.hierarchies {
            write_file(&h.dir(&path).join(PROCS_FILE), &pid.to_string())?;
        }
        Ok(())
    }

    /// Pids in `path` and its descendants, in any hierarchy (the union, so
    /// a process moved out of one hierarchy by someone else is still found).
    /// A cgroup that does not exist has none.
    pub fn pids(&self, path: &str) -> Result<Vec<i32>, CgroupError> {
        let path = self.check_path(path)?;
        let mut pids = BTreeSet::new();
        for h in &self.hierarchies {
            collect_pids(&h.dir(&path), &mut pids)?;
        }
        Ok(pids.into_iter().collect())
    }

    /// SIGKILLs whatever is in cgroup `path` until it is empty (processes
    /// forking meanwhile are caught by the next round), for at most a
    /// second. A cgroup that does not exist is empty.
    pub async fn kill_all(&self, path: &str) -> Result<(), CgroupError> {
        if !self.exists(path) {
            return Ok(());
        }
        for _ in 0..50 {
            if self.signal_all(path, Signal::SIGKILL)? == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Sends `sig` to every process in `path` (see [`Self::pids`]); returns
    /// how many were signalled. Processes that exit meanwhile are skipped.
    /// A process forking during the call can escape one round: to kill a
    /// whole cgroup, repeat until `pids` is empty.
    pub fn signal_all(&self, path: &str, sig: Signal) -> Result<usize, CgroupError> {
        let pids = self.pids(path)?;
        let own = std::process::id() as i32;
        let mut sent = 0;
        let mut first_error = None;
        // pid 0 or negative would signal process groups; ourselves, never.
        for pid in pids.into_iter().filter(|&p| p > 0 && p != own) {
            match kill(Pid::from_raw(pid), sig) {
                Ok(()) => sent += 1,
                Err(Errno::ESRCH) => {}
                Err(source) => {
                    first_error.get_or_insert(CgroupError::Signal {
                        path: path.to_string(),
                        pid,
                        signal: sig,
                        source,
                    });
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(sent),
        }
    }

    /// Removes `path` (and any child cgroups below it) from every hierarchy.
    /// Already gone is fine. Its processes must have been killed: while some
    /// remain the kernel answers EBUSY, retried for about a second. Parents
    /// of `path` are never removed.
    pub fn remove(&self, path: &str) -> Result<(), CgroupError> {
        let path = self.check_path(path)?;
        let deadline = Instant::now() + REMOVE_BUSY_TIMEOUT;
        let mut first_error = None;
        // Every hierarchy is attempted even after a failure, so one stuck
        // hierarchy does not leave the others behind.
        for h in &self.hierarchies {
            if let Err(e) = remove_tree(&h.dir(&path), deadline) {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

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
fn clean_components(path: &str) -> Result<String, &'static str> {
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
fn is_within(path: &str, top: &str) -> bool {
    path == top
        || path
            .strip_prefix(top)
            .is_some_and(|rest| rest.starts_with('/'))
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
    let mut controllers = Vec::new();
    let mut name = None;
    if !unified {
        for opt in super_opts.split(',') {
            if let Some(n) = opt.strip_prefix("name=") {
                name = Some(n.to_string());
            } else if !opt.is_empty() && !opt.contains('=') && !V1_MOUNT_FLAGS.contains(&opt) {
                controllers.push(opt.to_string());
            }
        }
        controllers.sort();
        if controllers.is_empty() && name.is_none() {
            return Ok(None);
        }
    }
    Ok(Some(Hierarchy {
        controllers,
        name,
        unified,
        mount: PathBuf::from(unescape_mountinfo(mount)),
        mount_root: unescape_mountinfo(root),
    }))
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
pub(crate) fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                let value = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
                out.push(value as u8);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn create_in(h: &Hierarchy, path: &str, created: &mut Vec<PathBuf>) -> Result<(), CgroupError> {
    let cpuset = !h.unified && h.has_controller("cpuset");
    let mut dir = h.mount.clone();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        dir.push(part);
        match fs::create_dir(&dir) {
            Ok(()) => created.push(dir.clone()),
            // Another sandbox of the same pod may have made it just now.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => return Err(CgroupError::Create { path: dir, source }),
        }
        if cpuset {
            init_cpuset(&h.mount, &dir)?;
        }
    }
    Ok(())
}

/// Fills an empty cpuset.cpus / cpuset.mems of `dir` from its nearest
/// ancestor (up to `mount`) that has a value. Values already set are left.
fn init_cpuset(mount: &Path, dir: &Path) -> Result<(), CgroupError> {
    for file in CPUSET_FILES {
        if !read_trimmed(&dir.join(file))?.is_empty() {
            continue;
        }
        let mut value = String::new();
        for ancestor in dir.ancestors().skip(1) {
            value = read_trimmed(&ancestor.join(file))?;
            if !value.is_empty() || ancestor == mount {
                break;
            }
        }
        if !value.is_empty() {
            write_file(&dir.join(file), &value)?;
        }
    }
    Ok(())
}

/// A cgroup file's content without surrounding whitespace; missing is empty.
fn read_trimmed(path: &Path) -> Result<String, CgroupError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(s.trim().to_string()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(CgroupError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(|source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    })
}

/// Adds the pids of `dir` and its sub-cgroups; a missing `dir` adds none.
fn collect_pids(dir: &Path, pids: &mut BTreeSet<i32>) -> Result<(), CgroupError> {
    let procs = dir.join(PROCS_FILE);
    match fs::read_to_string(&procs) {
        Ok(text) => {
            for (index, line) in text.lines().enumerate() {
                let pid = line.trim().parse().map_err(|_| CgroupError::Parse {
                    path: procs.clone(),
                    line: index + 1,
                    reason: format!("{line:?} is not a pid"),
                })?;
                pids.insert(pid);
            }
        }
        // Vanished between listing and reading: sub_cgroups finds none.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(CgroupError::Read {
                path: procs,
                source,
            })
        }
    }
    for child in sub_cgroups(dir)? {
        collect_pids(&child, pids)?;
    }
    Ok(())
}

/// Sub-directories of a cgroup directory (its child cgroups).
fn sub_cgroups(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(CgroupError::Read {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut children = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| CgroupError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            children.push(entry.path());
        }
    }
    Ok(children)
}

/// Removes `dir`'s child cgroups, then `dir`, retrying EBUSY until `deadline`.
fn remove_tree(dir: &Path, deadline: Instant) -> Result<(), CgroupError> {
    for child in sub_cgroups(dir)? {
        remove_tree(&child, deadline)?;
    }
    let start = Instant::now();
    loop {
        let source = match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => e,
        };
        if source.raw_os_error() != Some(libc::EBUSY) {
            return Err(CgroupError::Remove {
                path: dir.to_path_buf(),
                source,
            });
        }
        if Instant::now() >= deadline {
            let mut pids = BTreeSet::new();
            // Best effort: the pids only make the error more useful.
            let _ = collect_pids(dir, &mut pids);
            return Err(CgroupError::Busy {
                path: dir.to_path_buf(),
                waited: start.elapsed(),
                pids: pids.into_iter().collect(),
            });
        }
        std::thread::sleep(REMOVE_BUSY_SLEEP);
    }
}

/// What a container's cgroup has used, as ContainerStats reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupStats {
    /// CPU time of all its tasks, in nanoseconds.
    pub cpu_usage_ns: Option<u64>,
    pub memory_usage: Option<u64>,
    /// Usage minus inactive file pages: what kubelet evicts on.
    pub memory_working_set: Option<u64>,
    pub memory_rss: Option<u64>,
    pub page_faults: Option<u64>,
    pub major_page_faults: Option<u64>,
    /// The memory limit; `None` when unlimited.
    pub memory_limit: Option<u64>,
}

/// cgroup v1 shows "no limit" as the largest page-aligned i64.
const V1_UNLIMITED: u64 = 0x7FFF_FFFF_FFFF_F000;

fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// `key value` lines (memory.stat, cpu.stat) as a lookup.
fn flat_keyed(path: &Path) -> std::collections::HashMap<String, u64> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

impl CgroupLayout {
    fn v1_with(&self, controller: &str) -> Option<&Hierarchy> {
        self.hierarchies
            .iter()
            .find(|h| !h.unified && h.has_controller(controller))
    }

    fn unified_hierarchy(&self) -> Option<&Hierarchy> {
        self.hierarchies.iter().find(|h| h.unified)
    }

    /// Whether the v2 hierarchy carries the controllers (a unified host).
    pub fn is_v2(&self) -> bool {
        self.mode() == CgroupMode::Unified
    }

    /// The file that counts the OOM kills of `path`: `memory.oom_control`
    /// (v1) or `memory.events` (v2); both hold a line `oom_kill N`.
    pub fn oom_file(&self, path: &str) -> Option<PathBuf> {
        let path = self.check_path(path).ok()?;
        if self.is_v2() {
            return Some(self.unified_hierarchy()?.dir(&path).join("memory.events"));
        }
        Some(
            self.v1_with("memory")?
                .dir(&path)
                .join("memory.oom_control"),
        )
    }

    /// Whether the hugetlb controller is available for the cgroup version
    /// in use (on a hybrid host it may sit on the v2 tree, where runtimes
    /// running v1 cannot use it).
    pub fn has_hugetlb(&self) -> bool {
        if self.is_v2() {
            return self.unified_hierarchy().is_some_and(|h| {
                fs::read_to_string(h.mount.join("cgroup.controllers"))
                    .unwrap_or_default()
                    .split_whitespace()
                    .any(|c| c == "hugetlb")
            });
        }
        self.v1_with("hugetlb").is_some()
    }

    /// Whether swap is accounted, so a memory+swap limit can be set.
    pub fn has_swap(&self) -> bool {
        if self.is_v2() {
            let Some(h) = self.unified_hierarchy() else {
                return false;
            };
            // The root has no memory.swap.max; any child shows it.
            return fs::read_dir(&h.mount)
                .map(|r| {
                    r.flatten()
                        .any(|e| e.path().join("memory.swap.max").exists())
                })
                .unwrap_or(false);
        }
        self.v1_with("memory")
            .is_some_and(|h| h.mount.join("memory.memsw.limit_in_bytes").exists())
    }

    /// Reads what `path` has used. Values a file does not give are `None`.
    pub fn stats(&self, path: &str) -> Result<CgroupStats, CgroupError> {
        let path = self.check_path(path)?;
        let mut s = CgroupStats::default();
        if self.is_v2() {
            let Some(h) = self.unified_hierarchy() else {
                return Ok(s);
            };
            let dir = h.dir(&path);
            s.cpu_usage_ns = flat_keyed(&dir.join("cpu.stat"))
                .get("usage_usec")
                .map(|us| us.saturating_mul(1000));
            s.memory_usage = read_u64(&dir.join("memory.current"));
            s.memory_limit = read_u64(&dir.join("memory.max"));
            let stat = flat_keyed(&dir.join("memory.stat"));
            s.memory_working_set = s
                .memory_usage
                .map(|u| u.saturating_sub(stat.get("inactive_file").copied().unwrap_or(0)));
            s.memory_rss = stat.get("anon").copied();
            s.page_faults = stat.get("pgfault").copied();
            s.major_page_faults = stat.get("pgmajfault").copied();
            return Ok(s);
        }
        if let Some(h) = self.v1_with("cpuacct") {
            s.cpu_usage_ns = read_u64(&h.dir(&path).join("cpuacct.usage"));
        }
        if let Some(h) = self.v1_with("memory") {
            let dir = h.dir(&path);
            s.memory_usage = read_u64(&dir.join("memory.usage_in_bytes"));
            s.memory_limit =
                read_u64(&dir.join("memory.limit_in_bytes")).filter(|&l| l < V1_UNLIMITED);
            let stat = flat_keyed(&dir.join("memory.stat"));
            s.memory_working_set = s
                .memory_usage
                .map(|u| u.saturating_sub(stat.get("total_inactive_file").copied().unwrap_or(0)));
            s.memory_rss = stat.get("total_rss").copied();
            s.page_faults = stat.get("total_pgfault").copied();
            s.major_page_faults = stat.get("total_pgmajfault").copied();
        }
        Ok(s)
    }
}

/// The cgroup operations the pod and container lifecycles use, so that
/// their rollback and recovery can be tested over a fake. The real one is
/// [`CgroupLayout`]; see its methods.
#[tonic::async_trait]
pub trait CgroupManager: Send + Sync {
    fn check_path(&self, path: &str) -> Result<String, CgroupError>;
    fn create(&self, path: &str) -> Result<(), CgroupError>;
    fn add_process(&self, path: &str, pid: i32) -> Result<(), CgroupError>;
    async fn kill_all(&self, path: &str) -> Result<(), CgroupError>;
    fn signal_all(&self, path: &str, sig: Signal) -> Result<usize, CgroupError>;
    /// Blocks while a busy cgroup is retried: call it off the async workers.
    fn remove(&self, path: &str) -> Result<(), CgroupError>;
    fn dirs(&self, path: &str) -> Vec<PathBuf>;
    fn oom_file(&self, path: &str) -> Option<PathBuf>;
    fn stats(&self, path: &str) -> Result<CgroupStats, CgroupError>;
}

#[tonic::async_trait]
impl CgroupManager for CgroupLayout {
    fn check_path(&self, path: &str) -> Result<String, CgroupError> {
        CgroupLayout::check_path(self, path)
    }
    fn create(&self, path: &str) -> Result<(), CgroupError> {
        CgroupLayout::create(self, path)
    }
    fn add_process(&self, path: &str, pid: i32) -> Result<(), CgroupError> {
        CgroupLayout::add_process(self, path, pid)
    }
    async fn kill_all(&self, path: &str) -> Result<(), CgroupError> {
        CgroupLayout::kill_all(self, path).await
    }
    fn signal_all(&self, path: &str, sig: Signal) -> Result<usize, CgroupError> {
        CgroupLayout::signal_all(self, path, sig)
    }
    fn remove(&self, path: &str) -> Result<(), CgroupError> {
        CgroupLayout::remove(self, path)
    }
    fn dirs(&self, path: &str) -> Vec<PathBuf> {
        CgroupLayout::dirs(self, path)
    }
    fn oom_file(&self, path: &str) -> Option<PathBuf> {
        CgroupLayout::oom_file(self, path)
    }
    fn stats(&self, path: &str) -> Result<CgroupStats, CgroupError> {
        CgroupLayout::stats(self, path)
    }
}

/// Removes `path` off the async workers (removal retries a busy cgroup
/// for up to a second).
pub async fn remove_blocking(
    cgroups: &std::sync::Arc<dyn CgroupManager>,
    path: &str,
) -> Result<(), String> {
    let (cgroups, owned) = (cgroups.clone(), path.to_string());
    match tokio::task::spawn_blocking(move || cgroups.remove(&owned)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("remove cgroup {path}: {e}")),
        // A bug, not a failure to report.
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(format!("remove cgroup {path}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // ---- pure logic ----

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

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset,clone_children
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/net_cls,net_prio rw,relatime - cgroup cgroup rw,net_cls,net_prio
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,release_agent=/lib/systemd/x,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
50 41 0:32 /docker/abc /mnt/mem\\040copy rw - cgroup cgroup rw,memory
";

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

    // ---- fake tree: plain directories standing in for cgroupfs ----

    struct FakeTree {
        dir: tempfile::TempDir,
        layout: CgroupLayout,
    }

    impl FakeTree {
        /// cpu,cpuacct + cpuset + memory + name=systemd + unified, and
        /// optionally a hierarchy whose mount point is missing.
        fn new(broken_last: bool) -> FakeTree {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path();
            let mut text = String::new();
            let mounts = [
                ("cpu,cpuacct", "cgroup", "rw,cpu,cpuacct"),
                ("cpuset", "cgroup", "rw,cpuset"),
                ("memory", "cgroup", "rw,memory"),
                ("systemd", "cgroup", "rw,xattr,name=systemd"),
                ("unified", "cgroup2", "rw,nsdelegate"),
            ];
            for (i, (name, fstype, opts)) in mounts.iter().enumerate() {
                fs::create_dir(root.join(name)).unwrap();
                text.push_str(&format!(
                    "{} 1 0:{i} / {} rw,relatime - {fstype} {fstype} {opts}\n",
                    30 + i,
                    root.join(name).display()
                ));
            }
            if broken_last {
                text.push_str(&format!(
                    "99 1 0:99 / {} rw - cgroup cgroup rw,pids\n",
                    root.join("missing").display()
                ));
            }
            fs::write(root.join("cpuset/cpuset.cpus"), "0-3\n").unwrap();
            fs::write(root.join("cpuset/cpuset.mems"), "0\n").unwrap();
            let layout = CgroupLayout::from_mountinfo(&text, "0::/\n").unwrap();
            FakeTree { dir, layout }
        }

        fn path(&self, rel: &str) -> PathBuf {
            self.dir.path().join(rel)
        }

        /// What the kernel does on rmdir: the control files go with the dir.
        fn drop_control_files(&self, path: &str) {
            for d in self.layout.dirs(path) {
                for f in CPUSET_FILES.iter().chain([&PROCS_FILE]) {
                    let _ = fs::remove_file(d.join(f));
                }
            }
        }
    }

    #[test]
    fn create_makes_path_in_every_hierarchy() {
        let t = FakeTree::new(false);
        t.layout.create("/kubepods/pod1/abc").unwrap();
        let dirs = t.layout.dirs("/kubepods/pod1/abc");
        assert_eq!(dirs.len(), 5);
        for name in ["cpu,cpuacct", "cpuset", "memory", "systemd", "unified"] {
            let d = t.path(name).join("kubepods/pod1/abc");
            assert!(d.is_dir(), "{}", d.display());
            assert!(dirs.contains(&d));
        }
        assert!(t.layout.exists("/kubepods/pod1/abc"));
        // Idempotent, like mkdir -p.
        t.layout.create("/kubepods/pod1/abc").unwrap();
    }

    #[test]
    fn create_initialises_cpuset_at_every_level() {
        let t = FakeTree::new(false);
        // An existing parent with its own value keeps it; one left empty by
        // someone else is filled from its nearest configured ancestor.
        fs::create_dir_all(t.path("cpuset/kubepods/pod1")).unwrap();
        fs::write(t.path("cpuset/kubepods/cpuset.cpus"), "1\n").unwrap();
        fs::write(t.path("cpuset/kubepods/pod1/cpuset.cpus"), "\n").unwrap();
        t.layout.create("/kubepods/pod1/new/abc").unwrap();
        let read = |p: &str| fs::read_to_string(t.path(p)).unwrap();
        assert_eq!(read("cpuset/kubepods/cpuset.cpus").trim(), "1");
        assert_eq!(read("cpuset/kubepods/pod1/cpuset.cpus"), "1");
        assert_eq!(read("cpuset/kubepods/pod1/new/cpuset.cpus"), "1");
        assert_eq!(read("cpuset/kubepods/pod1/new/abc/cpuset.cpus"), "1");
        for level in ["kubepods", "kubepods/pod1", "kubepods/pod1/new/abc"] {
            assert_eq!(read(&format!("cpuset/{level}/cpuset.mems")), "0");
        }
        // Only the cpuset hierarchy gets cpuset files.
        assert!(!t.path("memory/kubepods/cpuset.cpus").exists());
    }

    #[test]
    fn create_failure_removes_what_it_created() {
        let t = FakeTree::new(true);
        fs::create_dir(t.path("memory/kept")).unwrap();
        let err = t.layout.create("/kept/abc").unwrap_err();
        assert!(matches!(err, CgroupError::Create { .. }), "{err}");
        assert!(err.to_string().contains("missing"), "{err}");
        // Not cpuset: a plain directory holding the cpuset files written into
        // it cannot be rmdir'ed, the kernel's cgroup directory can.
        for name in ["cpu,cpuacct", "memory", "systemd", "unified"] {
            assert!(!t.path(name).join("kept/abc").exists(), "{name}");
        }
        // Only what this call made is undone.
        assert!(!t.path("cpu,cpuacct/kept").exists());
        assert!(t.path("memory/kept").is_dir());
    }

    #[test]
    fn remove_is_idempotent_and_keeps_parents() {
        let t = FakeTree::new(false);
        t.layout.create("/kubepods/pod1/abc").unwrap();
        fs::create_dir(t.path("memory/kubepods/pod1/abc/sub")).unwrap();
        t.drop_control_files("/kubepods/pod1/abc");
        t.layout.remove("/kubepods/pod1/abc").unwrap();
        for d in t.layout.dirs("/kubepods/pod1/abc") {
            assert!(!d.exists(), "{}", d.display());
            assert!(d.parent().unwrap().is_dir(), "{}", d.display());
        }
        assert!(!t.layout.exists("/kubepods/pod1/abc"));
        t.layout.remove("/kubepods/pod1/abc").unwrap();
        t.layout.remove("/never/created").unwrap();
    }

    #[test]
    fn pids_unions_hierarchies_and_sub_cgroups() {
        let t = FakeTree::new(false);
        t.layout.create("/p/abc").unwrap();
        fs::write(t.path("memory/p/abc/cgroup.procs"), "10\n11\n").unwrap();
        fs::write(t.path("systemd/p/abc/cgroup.procs"), "11\n12\n").unwrap();
        fs::create_dir(t.path("unified/p/abc/sub")).unwrap();
        fs::write(t.path("unified/p/abc/sub/cgroup.procs"), "13\n").unwrap();
        assert_eq!(t.layout.pids("/p/abc").unwrap(), [10, 11, 12, 13]);
        assert_eq!(t.layout.pids("/p/none").unwrap(), Vec::<i32>::new());
        fs::write(t.path("memory/p/abc/cgroup.procs"), "x\n").unwrap();
        assert!(matches!(
            t.layout.pids("/p/abc"),
            Err(CgroupError::Parse { .. })
        ));
    }

    #[test]
    fn add_process_writes_pid_everywhere() {
        let t = FakeTree::new(false);
        t.layout.create("/p/abc").unwrap();
        t.layout.add_process("/p/abc", 4242).unwrap();
        for d in t.layout.dirs("/p/abc") {
            assert_eq!(fs::read_to_string(d.join(PROCS_FILE)).unwrap(), "4242");
        }
        assert!(matches!(
            t.layout.add_process("/p/abc", 0),
            Err(CgroupError::InvalidPid { pid: 0, .. })
        ));
        // Not created: the kernel would say ENOENT, and so does the fake.
        assert!(matches!(
            t.layout.add_process("/p/none", 4242),
            Err(CgroupError::Write { .. })
        ));
    }

    #[test]
    fn stats_from_v1_files() {
        let t = FakeTree::new(false);
        t.layout.create("/p/c1").unwrap();
        fs::write(t.path("cpu,cpuacct/p/c1/cpuacct.usage"), "13646703\n").unwrap();
        fs::write(t.path("memory/p/c1/memory.usage_in_bytes"), "585728\n").unwrap();
        fs::write(t.path("memory/p/c1/memory.limit_in_bytes"), "134217728\n").unwrap();
        fs::write(
            t.path("memory/p/c1/memory.stat"),
            "cache 4096\nrss 110592\ninactive_file 1\ntotal_rss 110592\ntotal_inactive_file 4096\ntotal_pgfault 983\ntotal_pgmajfault 0\n",
        )
        .unwrap();
        let s = t.layout.stats("/p/c1").unwrap();
        assert_eq!(s.cpu_usage_ns, Some(13646703));
        assert_eq!(s.memory_usage, Some(585728));
        assert_eq!(s.memory_working_set, Some(581632));
        assert_eq!(s.memory_rss, Some(110592));
        assert_eq!(s.page_faults, Some(983));
        assert_eq!(s.major_page_faults, Some(0));
        assert_eq!(s.memory_limit, Some(134217728));
        fs::write(
            t.path("memory/p/c1/memory.limit_in_bytes"),
            "9223372036854771712\n",
        )
        .unwrap();
        assert_eq!(t.layout.stats("/p/c1").unwrap().memory_limit, None);
        assert_eq!(
            t.layout.oom_file("/p/c1").unwrap(),
            t.path("memory/p/c1/memory.oom_control")
        );
        assert!(!t.layout.has_hugetlb());
    }

    #[test]
    fn stats_from_v2_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cg2");
        fs::create_dir_all(root.join("p/c1")).unwrap();
        fs::write(
            root.join("cgroup.controllers"),
            "cpuset cpu io memory hugetlb pids\n",
        )
        .unwrap();
        fs::write(root.join("p/memory.swap.max"), "max\n").unwrap();
        fs::write(
            root.join("p/c1/cpu.stat"),
            "usage_usec 1500\nuser_usec 1000\n",
        )
        .unwrap();
        fs::write(root.join("p/c1/memory.current"), "10000\n").unwrap();
        fs::write(root.join("p/c1/memory.max"), "max\n").unwrap();
        fs::write(
            root.join("p/c1/memory.stat"),
            "anon 3000\nfile 5000\ninactive_file 2000\npgfault 7\npgmajfault 1\n",
        )
        .unwrap();
        let mi = format!("30 1 0:1 / {} rw - cgroup2 cgroup2 rw\n", root.display());
        let l = CgroupLayout::from_mountinfo(&mi, "0::/\n").unwrap();
        assert!(l.is_v2());
        let s = l.stats("/p/c1").unwrap();
        assert_eq!(s.cpu_usage_ns, Some(1_500_000));
        assert_eq!(s.memory_working_set, Some(8000));
        assert_eq!(s.memory_rss, Some(3000));
        assert_eq!(s.page_faults, Some(7));
        assert_eq!(s.memory_limit, None);
        assert_eq!(
            l.oom_file("/p/c1").unwrap(),
            root.join("p/c1/memory.events")
        );
        assert!(l.has_hugetlb());
        assert!(l.has_swap());
    }

    // ---- this machine's real cgroups (root) ----

    fn require_root() {
        if !nix::unistd::geteuid().is_root() {
            panic!("this test needs root: it creates cgroups under /sys/fs/cgroup");
        }
    }

    fn unique(prefix: &str) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        format!("/{prefix}-{:x}{:x}", std::process::id(), nanos)
    }

    /// Kills our child by pid and removes the test's directories in every
    /// hierarchy, whatever the test's outcome.
    struct RealCleanup {
        child: Option<std::process::Child>,
        dirs: Vec<PathBuf>,
    }

    impl Drop for RealCleanup {
        fn drop(&mut self) {
            if let Some(child) = &mut self.child {
                let _ = child.kill();
                let _ = child.wait();
            }
            for d in &self.dirs {
                let _ = fs::remove_dir(d);
            }
        }
    }

    /// Hierarchies as /proc/<pid>/cgroup names them, with their paths.
    fn proc_cgroup(pid: u32) -> Vec<(BTreeSet<String>, String)> {
        fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .unwrap()
            .lines()
            .map(|l| {
                let mut parts = l.splitn(3, ':');
                let _id = parts.next();
                let names = parts
                    .next()
                    .unwrap()
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
                (names, parts.next().unwrap().to_string())
            })
            .collect()
    }

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

    #[test]
    fn real_create_add_signal_remove() {
        require_root();
        let l = CgroupLayout::detect().unwrap();
        let parent = unique("peapod-test");
        let path = child_path(&parent, "0123abcd");
        let mut cleanup = RealCleanup {
            child: None,
            dirs: Vec::new(),
        };
        let leaf_dirs = l.dirs(&path);
        cleanup.dirs.extend(leaf_dirs.iter().cloned());
        cleanup.dirs.extend(l.dirs(&parent));

        l.create(&path).unwrap();
        for d in &leaf_dirs {
            assert!(d.join(PROCS_FILE).is_file(), "{} not a cgroup", d.display());
        }
        let cpuset = l
            .hierarchies()
            .iter()
            .position(|h| h.has_controller("cpuset"));
        if let Some(i) = cpuset {
            let root = &l.hierarchies()[i].mount;
            for f in CPUSET_FILES {
                let want = fs::read_to_string(root.join(f)).unwrap();
                assert_eq!(fs::read_to_string(leaf_dirs[i].join(f)).unwrap(), want);
            }
        }

        let child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .expect("`sleep` (Debian package coreutils) is needed");
        let pid = child.id();
        cleanup.child = Some(child);
        l.add_process(&path, pid as i32).unwrap();
        let kernel = proc_cgroup(pid);
        assert_eq!(kernel.len(), l.hierarchies().len());
        for (names, p) in &kernel {
            assert_eq!(p, &path, "hierarchy {names:?}");
        }
        assert!(kernel.iter().any(|(n, _)| n.contains("name=systemd")));
        assert!(kernel.iter().any(|(n, _)| n.is_empty()), "no unified line");
        assert_eq!(l.pids(&path).unwrap(), [pid as i32]);
        assert_eq!(l.pids(&parent).unwrap(), [pid as i32]);

        // Busy while the process lives: an error naming the path, after ~1 s.
        let start = Instant::now();
        let err = l.remove(&path).unwrap_err();
        assert!(matches!(err, CgroupError::Busy { .. }), "{err}");
        assert!(err.to_string().contains(&path), "{err}");
        assert!(start.elapsed() >= REMOVE_BUSY_TIMEOUT);
        assert!(start.elapsed() < Duration::from_secs(3));
        for d in &leaf_dirs {
            assert!(d.is_dir(), "{}", d.display());
        }

        // Killed but not reaped yet: remove must still succeed.
        assert_eq!(l.signal_all(&path, Signal::SIGKILL).unwrap(), 1);
        let start = Instant::now();
        while !l.pids(&path).unwrap().is_empty() {
            assert!(
                start.elapsed() < Duration::from_secs(1),
                "killed pid stays listed"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            fs::metadata(format!("/proc/{pid}")).is_ok(),
            "the unreaped child should still exist as a zombie"
        );
        l.remove(&path).unwrap();
        let status = cleanup.child.as_mut().unwrap().wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
        for d in &leaf_dirs {
            assert!(!d.exists(), "{} still there", d.display());
            assert!(
                d.parent().unwrap().is_dir(),
                "parent of {} removed",
                d.display()
            );
        }
        assert!(!l.exists(&path));
        l.remove(&path).unwrap();
        assert_eq!(l.signal_all(&path, Signal::SIGKILL).unwrap(), 0);

        l.remove(&parent).unwrap();
        for d in l.dirs(&parent) {
            assert!(!d.exists(), "{} still there", d.display());
        }
    }
}
