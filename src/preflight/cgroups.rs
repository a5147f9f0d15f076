//! The cgroup layout (which versions carry the controllers, where pods
//! would go) and the configured cgroup driver against the host.

use std::path::{Path, PathBuf};

use super::{Finding, Level};
use crate::cgroups::{normalize_parent, CgroupDriver, CgroupLayout, CgroupMode};
use crate::config::Config;

/// Controllers without which kubelet's pod limits cannot be applied.
const REQUIRED_CONTROLLERS: [&str; 3] = ["cpu", "memory", "pids"];

/// systemd creates this directory when it runs as PID 1 (what
/// `sd_booted()` tests).
const SYSTEMD_RUNNING: &str = "/run/systemd/system";

/// What the host's cgroups look like to the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LayoutFacts {
    mode: CgroupMode,
    /// The controllers of the v1 hierarchies, sorted.
    v1_controllers: Vec<String>,
    /// The controllers of the v2 hierarchy's root.
    v2_controllers: Vec<String>,
    /// Where the `name=systemd` v1 hierarchy is mounted.
    systemd_hierarchy: Option<PathBuf>,
    /// Whether hugepage limits can be applied with the version in use.
    hugetlb: bool,
    /// The default cgroup parent resolved for this host, or why it is
    /// refused.
    pods: Result<String, String>,
}

pub(super) fn layout(config: &Config) -> Finding {
    match CgroupLayout::detect() {
        Ok(layout) => judge_layout(&layout_facts(&layout, config)),
        Err(e) => Finding::fail(
            "cgroup-layout",
            e.to_string(),
            "mount cgroup2 on /sys/fs/cgroup (or the v1 hierarchies)",
        ),
    }
}

fn layout_facts(layout: &CgroupLayout, config: &Config) -> LayoutFacts {
    let mut v1_controllers: Vec<String> = layout
        .hierarchies()
        .iter()
        .filter(|h| !h.is_unified())
        .flat_map(|h| h.controllers().iter().cloned())
        .collect();
    v1_controllers.sort();
    v1_controllers.dedup();
    let pods = normalize_parent("", config.cgroup_driver, &config.default_cgroup_parent)
        .and_then(|parent| layout.check_path(&parent))
        .map_err(|e| e.to_string());
    LayoutFacts {
        mode: layout.mode(),
        v1_controllers,
        v2_controllers: layout.unified_controllers(),
        systemd_hierarchy: layout
            .hierarchies()
            .iter()
            .find(|h| h.name() == Some("systemd"))
            .map(|h| h.mount().to_path_buf()),
        hugetlb: layout.has_hugetlb(),
        pods,
    }
}

fn judge_layout(facts: &LayoutFacts) -> Finding {
    let mut problems: Vec<(Level, String)> = Vec::new();
    let in_use = match facts.mode {
        CgroupMode::Unified => &facts.v2_controllers,
        CgroupMode::Hybrid | CgroupMode::Legacy => &facts.v1_controllers,
    };
    let missing: Vec<&str> = REQUIRED_CONTROLLERS
        .into_iter()
        .filter(|c| !in_use.iter().any(|have| have == c))
        .collect();
    if !missing.is_empty() {
        problems.push((
            Level::Fail,
            format!(
                "enable the {} controller(s): kubelet's pod limits need them",
                missing.join(", ")
            ),
        ));
    }
    if facts.mode != CgroupMode::Unified {
        problems.push((
            Level::Warn,
            "boot with cgroup v2 only (systemd.unified_cgroup_hierarchy=1 on the kernel command line): kubelet 1.35 and later refuse cgroup v1 unless failCgroupV1 is false".to_string(),
        ));
    }
    if facts.pods.is_err() {
        problems.push((
            Level::Fail,
            "set default_cgroup_parent to a path outside the cgroups that hold peapod itself"
                .to_string(),
        ));
    }
    let found = describe_layout(facts);
    match problems.iter().map(|(l, _)| *l).max() {
        None => Finding::ok("cgroup-layout", found),
        Some(level) => {
            let fixes: Vec<&str> = problems.iter().map(|(_, f)| f.as_str()).collect();
            Finding::not_ok("cgroup-layout", level, found, fixes.join("; "))
        }
    }
}

/// `hybrid: v1 cpu,memory,…; v2 hugetlb; name=systemd at …; pods under /peapod`.
fn describe_layout(facts: &LayoutFacts) -> String {
    let mode = match facts.mode {
        CgroupMode::Legacy => "v1",
        CgroupMode::Hybrid => "hybrid",
        CgroupMode::Unified => "v2",
    };
    let mut parts = Vec::new();
    if facts.mode != CgroupMode::Unified {
        parts.push(format!("v1 {}", list_or_none(&facts.v1_controllers)));
    }
    if facts.mode != CgroupMode::Legacy {
        parts.push(format!("v2 {}", list_or_none(&facts.v2_controllers)));
    }
    if facts.mode != CgroupMode::Unified {
        parts.push(match &facts.systemd_hierarchy {
            Some(mount) => format!("name=systemd at {}", mount.display()),
            None => "no name=systemd hierarchy".to_string(),
        });
    }
    if !facts.hugetlb {
        parts.push("no hugetlb for the version in use (hugepage limits are not applied)".into());
    }
    parts.push(match &facts.pods {
        Ok(path) => format!("pods under {path}"),
        Err(reason) => format!("pods refused: {reason}"),
    });
    format!("{mode}: {}", parts.join("; "))
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "(no controllers)".to_string()
    } else {
        items.join(",")
    }
}

pub(super) fn driver(driver: CgroupDriver) -> Finding {
    judge_driver(driver, Path::new(SYSTEMD_RUNNING).is_dir())
}

fn judge_driver(driver: CgroupDriver, systemd_running: bool) -> Finding {
    const ID: &str = "cgroup-driver";
    match (driver, systemd_running) {
        (CgroupDriver::Systemd, true) => Finding::ok(ID, "systemd, and systemd runs as PID 1"),
        (CgroupDriver::Systemd, false) => Finding::fail(
            ID,
            format!("systemd, but systemd is not PID 1 here ({SYSTEMD_RUNNING} is absent)"),
            "set cgroup_driver = \"cgroupfs\" (and kubelet's --cgroup-driver=cgroupfs)",
        ),
        (CgroupDriver::Cgroupfs, false) => {
            Finding::ok(ID, "cgroupfs, and systemd is not PID 1 here")
        }
        (CgroupDriver::Cgroupfs, true) => Finding::warn(
            ID,
            "cgroupfs, but systemd runs as PID 1 and manages cgroups too",
            "set cgroup_driver = \"systemd\" and kubelet's --cgroup-driver=systemd: one cgroup manager per host, as Kubernetes recommends",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn hybrid() -> LayoutFacts {
        LayoutFacts {
            mode: CgroupMode::Hybrid,
            v1_controllers: strings(&["blkio", "cpu", "cpuacct", "cpuset", "memory", "pids"]),
            v2_controllers: strings(&["hugetlb"]),
            systemd_hierarchy: Some(PathBuf::from("/sys/fs/cgroup/systemd")),
            hugetlb: false,
            pods: Ok("/peapod".to_string()),
        }
    }

    #[test]
    fn hybrid_is_a_warning_that_says_what_it_found() {
        let f = judge_layout(&hybrid());
        assert_eq!(f.level, Level::Warn);
        assert_eq!(
            f.found,
            "hybrid: v1 blkio,cpu,cpuacct,cpuset,memory,pids; v2 hugetlb; \
             name=systemd at /sys/fs/cgroup/systemd; \
             no hugetlb for the version in use (hugepage limits are not applied); pods under /peapod"
        );
        assert!(f.fix.unwrap().contains("failCgroupV1"));
    }

    #[test]
    fn v2_with_the_controllers_is_ok() {
        let facts = LayoutFacts {
            mode: CgroupMode::Unified,
            v1_controllers: vec![],
            v2_controllers: strings(&["cpuset", "cpu", "io", "memory", "hugetlb", "pids"]),
            systemd_hierarchy: None,
            hugetlb: true,
            pods: Ok("/kubepods".to_string()),
        };
        let f = judge_layout(&facts);
        assert_eq!(f.level, Level::Ok, "{f:?}");
        assert_eq!(
            f.found,
            "v2: v2 cpuset,cpu,io,memory,hugetlb,pids; pods under /kubepods"
        );
        assert_eq!(f.fix, None);
    }

    #[test]
    fn missing_controllers_and_protected_parents_fail() {
        let mut facts = hybrid();
        facts.v1_controllers = strings(&["cpu", "cpuacct"]);
        let f = judge_layout(&facts);
        assert_eq!(f.level, Level::Fail);
        assert!(f.fix.as_ref().unwrap().contains("memory, pids"), "{f:?}");
        assert!(
            f.fix.unwrap().contains("failCgroupV1"),
            "both fixes are given"
        );

        let mut facts = hybrid();
        facts.pods = Err("refusing cgroup path \"/process_api/x\"".to_string());
        let f = judge_layout(&facts);
        assert_eq!(f.level, Level::Fail);
        assert!(f.found.contains("pods refused: refusing"), "{f:?}");
        assert!(f.fix.unwrap().contains("default_cgroup_parent"));
    }

    #[test]
    fn driver_against_host() {
        let level = |d, running| judge_driver(d, running).level;
        assert_eq!(level(CgroupDriver::Systemd, true), Level::Ok);
        assert_eq!(level(CgroupDriver::Systemd, false), Level::Fail);
        assert_eq!(level(CgroupDriver::Cgroupfs, false), Level::Ok);
        assert_eq!(level(CgroupDriver::Cgroupfs, true), Level::Warn);
        let f = judge_driver(CgroupDriver::Systemd, false);
        assert!(f.found.contains(SYSTEMD_RUNNING), "{f:?}");
        assert!(f.fix.unwrap().contains("cgroupfs"));
    }

    #[test]
    fn pods_go_outside_this_process_cgroups() {
        let mountinfo = "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        let layout =
            CgroupLayout::from_mountinfo(mountinfo, "4:memory:/process_api/abc\n").unwrap();
        let mut config = Config {
            default_cgroup_parent: "/process_api/pods".to_string(),
            ..Config::default()
        };
        let facts = layout_facts(&layout, &config);
        assert!(facts.pods.is_err(), "{facts:?}");
        config.default_cgroup_parent = "/peapod".to_string();
        assert_eq!(
            layout_facts(&layout, &config).pods,
            Ok("/peapod".to_string())
        );
    }
}
