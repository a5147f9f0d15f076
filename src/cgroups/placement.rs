//! Placing processes in a cgroup: creating it in every hierarchy (with the
//! v1 cpuset files filled in), moving processes in, listing and signalling
//! them, and removing it once they are gone.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{CgroupError, CgroupLayout, Hierarchy};

pub(super) const PROCS_FILE: &str = "cgroup.procs";
pub(super) const CPUSET_FILES: [&str; 2] = ["cpuset.cpus", "cpuset.mems"];
/// How long `remove` keeps retrying a busy cgroup: processes that were just
/// killed leave their cgroup only once the kernel has finished their exit.
const REMOVE_BUSY_TIMEOUT: Duration = Duration::from_secs(1);
const REMOVE_BUSY_SLEEP: Duration = Duration::from_millis(20);

impl CgroupLayout {
    /// Creates `path` in every hierarchy, with any missing parents
    /// (`mkdir -p`). In a v1 cpuset hierarchy every level on the way gets
    /// cpuset.cpus/mems copied from its nearest configured ancestor if empty,
    /// or no task could join. On failure, the directories this call created
    /// are removed again.
    pub fn create(&self, path: &str) -> Result<(), CgroupError> {
        let path = self.check_path(path)?;
        let mut created = Vec::new();
        let result = self
            .hierarchies()
            .iter()
            .try_for_each(|h| create_in(h, &path, &mut created));
        if result.is_err() {
            remove_created(&created);
        }
        result
    }

    /// Moves process `pid` (all its threads) into `path` in every hierarchy.
    pub fn add_process(&self, path: &str, pid: i32) -> Result<(), CgroupError> {
        let path = self.check_path(path)?;
        if pid <= 0 {
            return Err(CgroupError::InvalidPid { path, pid });
        }
        for h in self.hierarchies() {
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
        for h in self.hierarchies() {
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
        let own = std::process::id() as i32;
        // pid 0 or negative would signal process groups; ourselves, never.
        let pids = self.pids(path)?.into_iter().filter(|&p| p > 0 && p != own);
        let sent = each_then_first_error(pids.map(|pid| signal_one(path, pid, sig)))?;
        Ok(sent.into_iter().filter(|&alive| alive).count())
    }

    /// Removes `path` (and any child cgroups below it) from every hierarchy.
    /// Already gone is fine. Its processes must have been killed: while some
    /// remain the kernel answers EBUSY, retried for about a second. Parents
    /// of `path` are never removed.
    pub fn remove(&self, path: &str) -> Result<(), CgroupError> {
        let path = self.check_path(path)?;
        let deadline = Instant::now() + REMOVE_BUSY_TIMEOUT;
        // One stuck hierarchy must not leave the others behind.
        let removals = self.hierarchies().iter();
        each_then_first_error(removals.map(|h| remove_tree(&h.dir(&path), deadline)))?;
        Ok(())
    }
}

/// Runs every step, even after one has failed, and returns the first error
/// or else every step's result.
fn each_then_first_error<T>(
    steps: impl Iterator<Item = Result<T, CgroupError>>,
) -> Result<Vec<T>, CgroupError> {
    let mut done = Vec::new();
    let mut first_error = None;
    for step in steps {
        match step {
            Ok(value) => done.push(value),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(done), Err)
}

/// Sends `sig` to `pid` of cgroup `path`; false when it has exited already.
fn signal_one(path: &str, pid: i32, sig: Signal) -> Result<bool, CgroupError> {
    match kill(Pid::from_raw(pid), sig) {
        Ok(()) => Ok(true),
        Err(Errno::ESRCH) => Ok(false),
        Err(source) => Err(CgroupError::Signal {
            path: path.to_string(),
            pid,
            signal: sig,
            source,
        }),
    }
}

/// Undoes a failed `create`: its directories, deepest first.
fn remove_created(created: &[PathBuf]) {
    for dir in created.iter().rev() {
        if let Err(e) = fs::remove_dir(dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot undo cgroup creation");
        }
    }
}

fn create_in(h: &Hierarchy, path: &str, created: &mut Vec<PathBuf>) -> Result<(), CgroupError> {
    let cpuset = !h.is_unified() && h.has_controller("cpuset");
    let mut dir = h.mount().to_path_buf();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        dir.push(part);
        match fs::create_dir(&dir) {
            Ok(()) => created.push(dir.clone()),
            // Another sandbox of the same pod may have made it just now.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => return Err(CgroupError::Create { path: dir, source }),
        }
        if cpuset {
            init_cpuset(h.mount(), &dir)?;
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

/// `None` for a file or directory that is not there: a cgroup that does not
/// exist (or has just gone) holds nothing and needs no removal.
fn missing_is_none<T>(result: io::Result<T>) -> io::Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// A cgroup file's content; `None` when it is not there.
fn read_if_there(path: &Path) -> Result<Option<String>, CgroupError> {
    missing_is_none(fs::read_to_string(path)).map_err(CgroupError::read(path))
}

/// A cgroup file's content without surrounding whitespace; missing is empty.
fn read_trimmed(path: &Path) -> Result<String, CgroupError> {
    let text = read_if_there(path)?;
    Ok(text.map(|s| s.trim().to_string()).unwrap_or_default())
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
    // Vanished between listing and reading: sub_cgroups finds none.
    if let Some(text) = read_if_there(&procs)? {
        add_pids(&procs, &text, pids)?;
    }
    for child in sub_cgroups(dir)? {
        collect_pids(&child, pids)?;
    }
    Ok(())
}

/// Adds the pids of a cgroup.procs file's `text`, one a line.
fn add_pids(procs: &Path, text: &str, pids: &mut BTreeSet<i32>) -> Result<(), CgroupError> {
    for (index, line) in text.lines().enumerate() {
        let pid = line.trim().parse().map_err(|_| CgroupError::Parse {
            path: procs.to_path_buf(),
            line: index + 1,
            reason: format!("{line:?} is not a pid"),
        })?;
        pids.insert(pid);
    }
    Ok(())
}

/// Sub-directories of a cgroup directory (its child cgroups).
fn sub_cgroups(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let Some(entries) = missing_is_none(fs::read_dir(dir)).map_err(CgroupError::read(dir))? else {
        return Ok(Vec::new());
    };
    let mut children = Vec::new();
    for entry in entries {
        let entry = entry.map_err(CgroupError::read(dir))?;
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
        let Err(source) = missing_is_none(fs::remove_dir(dir)) else {
            return Ok(());
        };
        if source.raw_os_error() != Some(libc::EBUSY) {
            return Err(CgroupError::Remove {
                path: dir.to_path_buf(),
                source,
            });
        }
        if Instant::now() >= deadline {
            return Err(busy(dir, start.elapsed()));
        }
        std::thread::sleep(REMOVE_BUSY_SLEEP);
    }
}

/// The error for a cgroup still busy after `waited`, with the pids left in it.
fn busy(dir: &Path, waited: Duration) -> CgroupError {
    let mut pids = BTreeSet::new();
    // Best effort: the pids only make the error more useful.
    let _ = collect_pids(dir, &mut pids);
    CgroupError::Busy {
        path: dir.to_path_buf(),
        waited,
        pids: pids.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::child_path;
    use crate::cgroups::test_tree::{proc_cgroup, require_root, FakeTree};

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

    // ---- this machine's real cgroups (root) ----

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
            let root = l.hierarchies()[i].mount();
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
