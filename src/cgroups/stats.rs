//! What a cgroup has used (CPU time, memory, page faults) and what this
//! host's cgroups can account (OOM kills, hugetlb, swap).

use std::fs;
use std::path::{Path, PathBuf};

use super::{CgroupError, CgroupLayout};

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

    /// Reads what `path` has used. Values a file does not give are `None`.
    pub fn stats(&self, path: &str) -> Result<CgroupStats, CgroupError> {
        let path = self.check_path(path)?;
        if self.is_v2() {
            return Ok(self.v2_stats(&path));
        }
        Ok(self.v1_stats(&path))
    }

    fn v2_stats(&self, path: &str) -> CgroupStats {
        let mut s = CgroupStats::default();
        let Some(h) = self.unified_hierarchy() else {
            return s;
        };
        let dir = h.dir(path);
        s.cpu_usage_ns = flat_keyed(&dir.join("cpu.stat"))
            .get("usage_usec")
            .map(|us| us.saturating_mul(1000));
        s.memory_usage = read_u64(&dir.join("memory.current"));
        s.memory_limit = read_u64(&dir.join("memory.max"));
        s.read_memory_stat(&dir.join("memory.stat"), &V2_MEMORY_STAT);
        s
    }

    fn v1_stats(&self, path: &str) -> CgroupStats {
        let mut s = CgroupStats::default();
        if let Some(h) = self.v1_with("cpuacct") {
            s.cpu_usage_ns = read_u64(&h.dir(path).join("cpuacct.usage"));
        }
        if let Some(h) = self.v1_with("memory") {
            let dir = h.dir(path);
            s.memory_usage = read_u64(&dir.join("memory.usage_in_bytes"));
            s.memory_limit =
                read_u64(&dir.join("memory.limit_in_bytes")).filter(|&l| l < V1_UNLIMITED);
            s.read_memory_stat(&dir.join("memory.stat"), &V1_MEMORY_STAT);
        }
        s
    }
}

/// The memory.stat keys of the counters `CgroupStats` reports.
struct MemoryStatKeys {
    inactive_file: &'static str,
    rss: &'static str,
    page_faults: &'static str,
    major_page_faults: &'static str,
}

const V2_MEMORY_STAT: MemoryStatKeys = MemoryStatKeys {
    inactive_file: "inactive_file",
    rss: "anon",
    page_faults: "pgfault",
    major_page_faults: "pgmajfault",
};

/// v1's `total_` counters include the cgroup's descendants, as v2's do.
const V1_MEMORY_STAT: MemoryStatKeys = MemoryStatKeys {
    inactive_file: "total_inactive_file",
    rss: "total_rss",
    page_faults: "total_pgfault",
    major_page_faults: "total_pgmajfault",
};

impl CgroupStats {
    /// Fills the counters memory.stat gives; the working set needs
    /// `memory_usage` read first.
    fn read_memory_stat(&mut self, file: &Path, keys: &MemoryStatKeys) {
        let stat = flat_keyed(file);
        let get = |key: &str| stat.get(key).copied();
        let inactive_file = get(keys.inactive_file).unwrap_or(0);
        self.memory_working_set = self.memory_usage.map(|u| u.saturating_sub(inactive_file));
        self.memory_rss = get(keys.rss);
        self.page_faults = get(keys.page_faults);
        self.major_page_faults = get(keys.major_page_faults);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::test_tree::FakeTree;

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
}
