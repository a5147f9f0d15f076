//! What a cgroup has used (CPU time, memory, swap, processes, OOM kills)
//! and what this host's cgroups can account (OOM kills, hugetlb, swap).
//!
//! The figures are read through libcgroups where its public API allows,
//! with the directory resolved by [`CgroupLayout`] (so bind mounts and the
//! daemon's own cgroup are handled as everywhere else):
//! - cgroup v2: libcgroups' v2 manager, built on the unified hierarchy's
//!   mount point and the checked path, reads cpu, memory, pids, io and
//!   hugetlb in one call.
//! - cgroup v1: libcgroups 0.7 keeps its per-controller readers
//!   (`StatsProvider`) private, and its public v1 manager finds the
//!   hierarchies itself from the caller's mountinfo, ignoring a mount's
//!   root, and fails as a whole on any missing file; so peapod reads each
//!   v1 file with libcgroups' public value parsers (`parse_single_value`,
//!   `pid_stats`) from the directories the layout resolves.
//!
//! Gaps kept in peapod's own code: `memory.stat` and `cpu.stat` are parsed
//! here (libcgroups' flat-keyed parser is crate-private); the OOM kill
//! count is read here (libcgroups reports no `oom_kill`); and when the v2
//! manager fails as a whole (it needs every file of every controller,
//! including `*.pressure`, which kernels without PSI do not have, and
//! `memory.swap.*`, absent without swap accounting), the same per-file
//! reader as v1 reads the v2 files instead.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use libcgroups::common::CgroupManager as _;
use libcgroups::stats::{parse_single_value, pid_stats, Stats};

use super::{CgroupError, CgroupLayout};

/// What a cgroup has used. Values the host does not account are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupStats {
    /// CPU time of all its tasks, in nanoseconds.
    pub cpu_usage_ns: Option<u64>,
    pub memory_usage: Option<u64>,
    /// Usage minus inactive file pages: what kubelet evicts on.
    pub memory_working_set: Option<u64>,
    /// Anonymous memory (and swap cache).
    pub memory_rss: Option<u64>,
    /// Page cache.
    pub memory_cache: Option<u64>,
    pub page_faults: Option<u64>,
    pub major_page_faults: Option<u64>,
    /// The memory limit; `None` when unlimited.
    pub memory_limit: Option<u64>,
    /// Swap in use by the cgroup's tasks.
    pub swap_usage: Option<u64>,
    /// The swap limit; `None` when unlimited or not accounted.
    pub swap_limit: Option<u64>,
    /// Tasks (threads) in the cgroup.
    pub pids: Option<u64>,
    /// Processes the kernel's OOM killer killed in the cgroup.
    pub oom_kills: Option<u64>,
}

impl CgroupStats {
    /// What may still be used before the limit: limit − working set, when
    /// there is a limit.
    pub fn memory_available(&self) -> Option<u64> {
        Some(self.memory_limit?.saturating_sub(self.memory_working_set?))
    }

    /// What swap may still be used before its limit, when there is one.
    pub fn swap_available(&self) -> Option<u64> {
        Some(self.swap_limit?.saturating_sub(self.swap_usage?))
    }

    /// Whether anything could be read (a removed cgroup gives nothing).
    pub fn is_empty(&self) -> bool {
        self.cpu_usage_ns.is_none() && self.memory_usage.is_none()
    }
}

/// The previous CPU reading of each cgroup a caller samples (by the id of
/// its container or pod), so that a rate can be given: CRI's
/// `usage_nano_cores` is the CPU use since the previous stats call.
#[derive(Debug, Default)]
pub struct CpuSamples(Mutex<HashMap<String, (i64, u64)>>);

impl CpuSamples {
    /// Records `usage_ns` read at `timestamp` (ns) for `id` and gives the
    /// use since the previous reading in nanocores (0 for the first).
    pub fn nano_cores(&self, id: &str, timestamp: i64, usage_ns: u64) -> u64 {
        let mut samples = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match samples.insert(id.to_string(), (timestamp, usage_ns)) {
            Some((t, u)) if timestamp > t && usage_ns >= u => {
                ((usage_ns - u) as u128 * 1_000_000_000 / (timestamp - t) as u128) as u64
            }
            _ => 0,
        }
    }

    pub fn forget(&self, id: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }
}

/// cgroup v1 shows "no limit" as the largest page-aligned i64.
const V1_UNLIMITED: u64 = 0x7FFF_FFFF_FFFF_F000;

/// One value file; libcgroups gives `max` as `u64::MAX`.
fn read_u64(path: &Path) -> Option<u64> {
    parse_single_value(path).ok()
}

/// `key value` lines (memory.stat, cpu.stat, memory.events) as a lookup.
/// libcgroups 0.7 has this parser but keeps it crate-private.
fn flat_keyed(path: &Path) -> HashMap<String, u64> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// The `oom_kill` line of `memory.oom_control` (v1) or `memory.events`
/// (v2). libcgroups counts limit hits (`failcnt`, the `oom` event), not
/// kills.
fn oom_kills(file: &Path) -> Option<u64> {
    flat_keyed(file).get("oom_kill").copied()
}

fn pids_current(dir: &Path) -> Option<u64> {
    pid_stats(dir).ok().map(|p| p.current)
}

impl CgroupLayout {
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
            return self.unified_controllers().iter().any(|c| c == "hugetlb");
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
            return fs::read_dir(h.mount())
                .map(|r| {
                    r.flatten()
                        .any(|e| e.path().join("memory.swap.max").exists())
                })
                .unwrap_or(false);
        }
        self.v1_with("memory")
            .is_some_and(|h| h.mount().join("memory.memsw.limit_in_bytes").exists())
    }

    /// Reads what `path` has used. Values the files do not give are `None`;
    /// a cgroup that is gone gives an empty [`CgroupStats`].
    pub fn stats(&self, path: &str) -> Result<CgroupStats, CgroupError> {
        let path = self.check_path(path)?;
        let mut s = match self.is_v2() {
            true => self.v2_stats(&path),
            false => self.v1_stats(&path),
        };
        s.oom_kills = self.oom_file(&path).and_then(|f| oom_kills(&f));
        Ok(s)
    }

    fn v2_stats(&self, path: &str) -> CgroupStats {
        let Some(h) = self.unified_hierarchy() else {
            return CgroupStats::default();
        };
        let library = libcgroups::v2::manager::Manager::new(h.mount().to_path_buf(), path.into())
            .and_then(|m| m.stats());
        match library {
            Ok(stats) => from_v2_library(&stats),
            Err(e) => {
                tracing::debug!(
                    path,
                    "libcgroups cannot read the v2 stats ({e}); reading file by file"
                );
                v2_stats_by_file(&h.dir(path))
            }
        }
    }

    fn v1_stats(&self, path: &str) -> CgroupStats {
        let mut s = CgroupStats::default();
        let dir = |controller: &str| self.v1_with(controller).map(|h| h.dir(path));
        if let Some(d) = dir("cpuacct") {
            s.cpu_usage_ns = read_u64(&d.join("cpuacct.usage"));
        }
        if let Some(d) = dir("memory") {
            s.memory_usage = read_u64(&d.join("memory.usage_in_bytes"));
            s.memory_limit =
                read_u64(&d.join("memory.limit_in_bytes")).filter(|&l| l < V1_UNLIMITED);
            // memsw counts memory plus swap; absent without swap accounting.
            s.swap_usage = read_u64(&d.join("memory.memsw.usage_in_bytes"))
                .zip(s.memory_usage)
                .map(|(both, memory)| both.saturating_sub(memory));
            s.swap_limit = read_u64(&d.join("memory.memsw.limit_in_bytes"))
                .filter(|&l| l < V1_UNLIMITED)
                .zip(s.memory_limit)
                .map(|(both, memory)| both.saturating_sub(memory));
            s.apply_memory_stat(&flat_keyed(&d.join("memory.stat")), &V1_MEMORY_STAT);
        }
        if let Some(d) = dir("pids") {
            s.pids = pids_current(&d);
        }
        s
    }
}

/// What libcgroups' v2 manager read, in peapod's terms.
fn from_v2_library(stats: &Stats) -> CgroupStats {
    let memory = &stats.memory;
    let mut s = CgroupStats {
        // v2 accounts CPU time in microseconds (cpu.stat usage_usec).
        cpu_usage_ns: Some(stats.cpu.usage.usage_total.saturating_mul(1000)),
        memory_usage: Some(memory.memory.usage),
        memory_limit: Some(memory.memory.limit).filter(|&l| l != u64::MAX),
        // v2's swap files count swap alone, not memory plus swap.
        swap_usage: Some(memory.memswap.usage),
        swap_limit: Some(memory.memswap.limit).filter(|&l| l != u64::MAX),
        pids: Some(stats.pids.current),
        ..Default::default()
    };
    s.apply_memory_stat(&memory.stats, &V2_MEMORY_STAT);
    s
}

/// The v2 files read one by one, when libcgroups cannot read them all.
fn v2_stats_by_file(dir: &Path) -> CgroupStats {
    let mut s = CgroupStats {
        cpu_usage_ns: flat_keyed(&dir.join("cpu.stat"))
            .get("usage_usec")
            .map(|us| us.saturating_mul(1000)),
        memory_usage: read_u64(&dir.join("memory.current")),
        memory_limit: read_u64(&dir.join("memory.max")).filter(|&l| l != u64::MAX),
        swap_usage: read_u64(&dir.join("memory.swap.current")),
        swap_limit: read_u64(&dir.join("memory.swap.max")).filter(|&l| l != u64::MAX),
        pids: pids_current(dir),
        ..Default::default()
    };
    s.apply_memory_stat(&flat_keyed(&dir.join("memory.stat")), &V2_MEMORY_STAT);
    s
}

/// The memory.stat keys of the counters `CgroupStats` reports.
struct MemoryStatKeys {
    inactive_file: &'static str,
    rss: &'static str,
    cache: &'static str,
    page_faults: &'static str,
    major_page_faults: &'static str,
}

const V2_MEMORY_STAT: MemoryStatKeys = MemoryStatKeys {
    inactive_file: "inactive_file",
    rss: "anon",
    cache: "file",
    page_faults: "pgfault",
    major_page_faults: "pgmajfault",
};

/// v1's `total_` counters include the cgroup's descendants, as v2's do.
const V1_MEMORY_STAT: MemoryStatKeys = MemoryStatKeys {
    inactive_file: "total_inactive_file",
    rss: "total_rss",
    cache: "total_cache",
    page_faults: "total_pgfault",
    major_page_faults: "total_pgmajfault",
};

impl CgroupStats {
    /// Fills the counters memory.stat gives; the working set needs
    /// `memory_usage` set first.
    fn apply_memory_stat(&mut self, stat: &HashMap<String, u64>, keys: &MemoryStatKeys) {
        let get = |key: &str| stat.get(key).copied();
        let inactive_file = get(keys.inactive_file).unwrap_or(0);
        self.memory_working_set = self.memory_usage.map(|u| u.saturating_sub(inactive_file));
        self.memory_rss = get(keys.rss);
        self.memory_cache = get(keys.cache);
        self.page_faults = get(keys.page_faults);
        self.major_page_faults = get(keys.major_page_faults);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// A layout over plain directories standing in for cgroupfs, from
    /// `(dir, fstype, super options)` mounts.
    fn fake_layout(root: &Path, mounts: &[(&str, &str, &str)]) -> CgroupLayout {
        let mut text = String::new();
        for (i, (name, fstype, opts)) in mounts.iter().enumerate() {
            fs::create_dir_all(root.join(name)).unwrap();
            text.push_str(&format!(
                "{} 1 0:{i} / {} rw - {fstype} {fstype} {opts}\n",
                30 + i,
                root.join(name).display()
            ));
        }
        CgroupLayout::from_mountinfo(&text, "0::/\n").unwrap()
    }

    fn write(dir: &Path, files: &[(&str, &str)]) {
        fs::create_dir_all(dir).unwrap();
        for (name, text) in files {
            fs::write(dir.join(name), text).unwrap();
        }
    }

    #[test]
    fn stats_from_v1_files() {
        let t = tempfile::tempdir().unwrap();
        let l = fake_layout(
            t.path(),
            &[
                ("cpu,cpuacct", "cgroup", "rw,cpu,cpuacct"),
                ("memory", "cgroup", "rw,memory"),
                ("pids", "cgroup", "rw,pids"),
                ("unified", "cgroup2", "rw"),
            ],
        );
        write(
            &t.path().join("cpu,cpuacct/p/c1"),
            &[("cpuacct.usage", "13646703\n")],
        );
        let mem = t.path().join("memory/p/c1");
        write(
            &mem,
            &[
                ("memory.usage_in_bytes", "585728\n"),
                ("memory.limit_in_bytes", "134217728\n"),
                ("memory.memsw.usage_in_bytes", "589824\n"),
                ("memory.memsw.limit_in_bytes", "134250496\n"),
                (
                    "memory.oom_control",
                    "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
                ),
                (
                    "memory.stat",
                    "cache 4096\nrss 110592\ninactive_file 1\ntotal_cache 8192\ntotal_rss 110592\n\
                     total_inactive_file 4096\ntotal_pgfault 983\ntotal_pgmajfault 0\n",
                ),
            ],
        );
        write(
            &t.path().join("pids/p/c1"),
            &[("pids.current", "3\n"), ("pids.max", "max\n")],
        );
        let s = l.stats("/p/c1").unwrap();
        assert_eq!(
            s,
            CgroupStats {
                cpu_usage_ns: Some(13646703),
                memory_usage: Some(585728),
                memory_working_set: Some(581632),
                memory_rss: Some(110592),
                memory_cache: Some(8192),
                page_faults: Some(983),
                major_page_faults: Some(0),
                memory_limit: Some(134217728),
                swap_usage: Some(4096),
                swap_limit: Some(32768),
                pids: Some(3),
                oom_kills: Some(2),
            }
        );
        assert_eq!(s.memory_available(), Some(134217728 - 581632));
        assert_eq!(s.swap_available(), Some(32768 - 4096));
        fs::write(mem.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        fs::remove_file(mem.join("memory.memsw.usage_in_bytes")).unwrap();
        let s = l.stats("/p/c1").unwrap();
        assert_eq!((s.memory_limit, s.memory_available()), (None, None));
        assert_eq!(s.swap_usage, None, "no memsw: swap is not accounted");
        assert_eq!(l.oom_file("/p/c1").unwrap(), mem.join("memory.oom_control"));
        assert!(!l.has_hugetlb());
        // A removed cgroup reads as nothing.
        assert!(l.stats("/p/gone").unwrap().is_empty());
    }

    /// Every file libcgroups' v2 manager reads, for a container using
    /// 10000 bytes (2000 of them inactive file pages) and 1.5 ms of CPU.
    fn v2_cgroup(dir: &Path) {
        let psi = "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n\
                   full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        write(
            dir,
            &[
                (
                    "cpu.stat",
                    "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 0\n\
                     nr_throttled 0\nthrottled_usec 0\n",
                ),
                ("cpu.pressure", psi),
                (
                    "io.stat",
                    "8:0 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n",
                ),
                ("io.pressure", psi),
                ("memory.current", "10000\n"),
                ("memory.max", "max\n"),
                ("memory.events", "low 0\nhigh 0\nmax 0\noom 1\noom_kill 1\n"),
                ("memory.swap.current", "512\n"),
                ("memory.swap.max", "max\n"),
                ("memory.swap.events", "max 0\nfail 0\n"),
                ("memory.pressure", psi),
                (
                    "memory.stat",
                    "anon 3000\nfile 5000\ninactive_file 2000\npgfault 7\npgmajfault 1\n",
                ),
                ("pids.current", "2\n"),
                ("pids.max", "max\n"),
            ],
        );
        // hugetlb files for the page sizes this host offers, as the
        // kernel shows them in every cgroup.
        for size in libcgroups::stats::supported_page_sizes().unwrap_or_default() {
            let current = format!("hugetlb.{size}.current");
            let events = format!("hugetlb.{size}.events");
            write(dir, &[(&current, "0\n"), (&events, "max 0\n")]);
        }
    }

    fn v2_expected() -> CgroupStats {
        CgroupStats {
            cpu_usage_ns: Some(1_500_000),
            memory_usage: Some(10000),
            memory_working_set: Some(8000),
            memory_rss: Some(3000),
            memory_cache: Some(5000),
            page_faults: Some(7),
            major_page_faults: Some(1),
            memory_limit: None,
            swap_usage: Some(512),
            swap_limit: None,
            pids: Some(2),
            oom_kills: Some(1),
        }
    }

    #[test]
    fn stats_from_v2_files_through_libcgroups_and_file_by_file() {
        let t = tempfile::tempdir().unwrap();
        let l = fake_layout(t.path(), &[("cg2", "cgroup2", "rw")]);
        let root = t.path().join("cg2");
        write(
            &root,
            &[("cgroup.controllers", "cpuset cpu io memory hugetlb pids\n")],
        );
        write(&root.join("p"), &[("memory.swap.max", "max\n")]);
        v2_cgroup(&root.join("p/c1"));
        assert!(l.is_v2());
        let library = libcgroups::v2::manager::Manager::new(root.clone(), "/p/c1".into())
            .unwrap()
            .stats();
        assert!(
            library.is_ok(),
            "libcgroups reads the fake tree: {library:?}"
        );
        assert_eq!(l.stats("/p/c1").unwrap(), v2_expected());

        // Without PSI libcgroups fails as a whole; the file-by-file reader
        // gives the same figures.
        fs::remove_file(root.join("p/c1/memory.pressure")).unwrap();
        let library = libcgroups::v2::manager::Manager::new(root.clone(), "/p/c1".into())
            .unwrap()
            .stats();
        assert!(library.is_err());
        assert_eq!(l.stats("/p/c1").unwrap(), v2_expected());

        fs::write(root.join("p/c1/memory.max"), "20000\n").unwrap();
        let s = l.stats("/p/c1").unwrap();
        assert_eq!(
            (s.memory_limit, s.memory_available()),
            (Some(20000), Some(12000))
        );
        assert_eq!(
            l.oom_file("/p/c1").unwrap(),
            root.join("p/c1/memory.events")
        );
        assert!(l.has_hugetlb());
        assert!(l.has_swap());
    }

    /// The v2 reader over this host's real cgroup2 tree: the CPU time the
    /// kernel's `cpu.stat` shows (bracketed by reads before and after). On
    /// a hybrid host (`/sys/fs/cgroup/unified`, no controllers enabled)
    /// libcgroups' v2 manager fails on it as a whole and the file-by-file
    /// reader gives what the tree has.
    #[test]
    fn v2_reader_over_this_hosts_real_cgroup2_tree() {
        crate::cgroups::test_tree::require_root();
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let Some(line) = mountinfo.lines().find(|l| l.contains(" - cgroup2 ")) else {
            panic!("this test needs a mounted cgroup2 tree (none in /proc/self/mountinfo)");
        };
        let l = CgroupLayout::from_mountinfo(line, "0::/\n").unwrap();
        assert!(l.is_v2());
        let mount = l.unified_hierarchy().unwrap().mount().to_path_buf();
        let path = format!("/peapod-stats-test-{}", std::process::id());
        let dir = mount.join(path.trim_start_matches('/'));
        fs::create_dir(&dir).unwrap();
        let mut busy = std::process::Command::new("sh")
            .args(["-c", "read x; while :; do :; done"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The loop starts once in the cgroup, and is killed before any
        // assertion.
        let moved = fs::write(dir.join("cgroup.procs"), busy.id().to_string());
        if moved.is_ok() {
            let _ = busy.stdin.take().unwrap().write_all(b"go\n");
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        let kernel = || flat_keyed(&dir.join("cpu.stat"))["usage_usec"] * 1000;
        let (before, s, after) = (kernel(), l.stats(&path), kernel());
        let _ = busy.kill();
        let _ = busy.wait();
        moved.unwrap();
        let s = s.unwrap();
        let enabled = fs::read_to_string(mount.join("cgroup.subtree_control")).unwrap_or_default();
        let library = libcgroups::v2::manager::Manager::new(mount, path.clone().into())
            .unwrap()
            .stats();
        let _ = fs::remove_dir(&dir);
        let cpu = s.cpu_usage_ns.unwrap();
        assert!(
            before <= cpu && cpu <= after,
            "{before} <= {cpu} <= {after}"
        );
        assert!(cpu >= 100_000_000, "a busy loop for 300 ms used {cpu} ns");
        if enabled.trim().is_empty() {
            assert!(
                library.is_err(),
                "no controllers: libcgroups cannot read it all"
            );
            assert_eq!(s.memory_usage, None, "no memory controller on this tree");
        } else if enabled.split_whitespace().any(|c| c == "memory") {
            assert!(s.memory_usage.is_some());
        }
    }

    #[test]
    fn cpu_rate_from_the_previous_sample() {
        let samples = CpuSamples::default();
        assert_eq!(samples.nano_cores("a", 1_000_000_000, 5_000), 0);
        // Half a core over two seconds.
        assert_eq!(
            samples.nano_cores("a", 3_000_000_000, 1_000_005_000),
            500_000_000
        );
        assert_eq!(samples.nano_cores("b", 3_000_000_000, 7), 0, "per id");
        samples.forget("a");
        assert_eq!(samples.nano_cores("a", 4_000_000_000, 2_000_000_000), 0);
    }
}
