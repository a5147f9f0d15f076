//! Test helpers shared by the cgroup modules: a mountinfo sample, a fake
//! cgroupfs of plain directories, and a look at this machine's real cgroups.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

use super::placement::{CPUSET_FILES, PROCS_FILE};
use super::CgroupLayout;

/// A hybrid host's mountinfo, with a bind mount of a memory subtree.
pub(super) const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset,clone_children
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/net_cls,net_prio rw,relatime - cgroup cgroup rw,net_cls,net_prio
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,release_agent=/lib/systemd/x,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
50 41 0:32 /docker/abc /mnt/mem\\040copy rw - cgroup cgroup rw,memory
";

// ---- fake tree: plain directories standing in for cgroupfs ----

pub(super) struct FakeTree {
    dir: tempfile::TempDir,
    pub(super) layout: CgroupLayout,
}

impl FakeTree {
    /// cpu,cpuacct + cpuset + memory + name=systemd + unified, and
    /// optionally a hierarchy whose mount point is missing.
    pub(super) fn new(broken_last: bool) -> FakeTree {
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

    pub(super) fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// What the kernel does on rmdir: the control files go with the dir.
    pub(super) fn drop_control_files(&self, path: &str) {
        for d in self.layout.dirs(path) {
            for f in CPUSET_FILES.iter().chain([&PROCS_FILE]) {
                let _ = fs::remove_file(d.join(f));
            }
        }
    }
}

pub(super) fn require_root() {
    if !nix::unistd::geteuid().is_root() {
        panic!("this test needs root: it creates cgroups under /sys/fs/cgroup");
    }
}

/// Hierarchies as /proc/<pid>/cgroup names them, with their paths.
pub(super) fn proc_cgroup(pid: u32) -> Vec<(BTreeSet<String>, String)> {
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
