//! `peapod::preflight::check_host` on this machine: every check runs, the
//! WARN and FAIL findings are exactly those the host calls for — each
//! expectation derived here from what the kernel and the tools show
//! (/proc, /sys, statvfs, the plugin files), never hard-coded — and the
//! checks leave nothing behind.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use peapod::cgroups::CgroupDriver;
use peapod::config::{CniConfig, Config, RuntimeHandler};
use peapod::preflight::{check_host, exit_code, render_json, render_text, Finding, Level};

const CHECKS: [&str; 14] = [
    "kernel",
    "overlayfs",
    "idmapped-mounts",
    "pidfd",
    "seccomp",
    "cgroup-layout",
    "cgroup-driver",
    "runtime:crun",
    "runtime:runc",
    "cni",
    "lsm",
    "oom-score-adj",
    "socket-dir",
    "disk-space",
];

/// The pod network the test's config names.
const PLUGINS: [&str; 3] = ["bridge", "host-local", "portmap"];

fn require() {
    common::require_host();
    for (tool, package) in [("runc", "runc"), ("crun", "crun")] {
        assert!(
            common::which(tool),
            "{tool} not found: install the Debian package {package} (hack/install-deps.sh)"
        );
    }
}

fn test_config(dir: &Path, driver: CgroupDriver) -> Config {
    let mut config = Config {
        root_dir: dir.join("root"),
        state_dir: dir.join("state"),
        socket: dir.join("run/peapod.sock"),
        cgroup_driver: driver,
        cni: CniConfig {
            conf_dir: dir.join("net.d"),
            ..CniConfig::default()
        },
        ..Config::default()
    };
    config.runtimes.insert(
        "crun".to_string(),
        RuntimeHandler {
            path: PathBuf::from("crun"),
            root: PathBuf::new(),
        },
    );
    config.validate().expect("valid test config");
    config
}

fn write_network(conf_dir: &Path) {
    std::fs::create_dir_all(conf_dir).unwrap();
    std::fs::write(
        conf_dir.join("10-preflight.conflist"),
        r#"{"cniVersion":"1.0.0","name":"preflight","plugins":[
            {"type":"bridge","bridge":"pf0","ipam":{"type":"host-local","subnet":"10.251.0.0/24"}},
            {"type":"portmap","capabilities":{"portMappings":true}}]}"#,
    )
    .unwrap();
}

// ---- the kernel's view, read independently of peapod's code ----

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn kernel_version() -> (u32, u32) {
    let release = read("/proc/sys/kernel/osrelease");
    let mut parts = release.trim().split(['.', '-']);
    let major = parts.next().unwrap().parse().unwrap();
    let minor = parts.next().unwrap().parse().unwrap();
    (major, minor)
}

/// (v1 hierarchies with controllers, the cgroup2 mount point) per mountinfo.
fn cgroup_mounts() -> (bool, Option<PathBuf>) {
    const CONTROLLERS: [&str; 14] = [
        "cpu",
        "cpuacct",
        "cpuset",
        "memory",
        "devices",
        "freezer",
        "net_cls",
        "net_prio",
        "blkio",
        "perf_event",
        "hugetlb",
        "pids",
        "rdma",
        "misc",
    ];
    let (mut v1, mut v2) = (false, None);
    for line in read("/proc/self/mountinfo").lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let sep = fields.iter().position(|f| *f == "-").unwrap();
        match fields[sep + 1] {
            "cgroup2" => v2 = Some(PathBuf::from(fields[4])),
            "cgroup" => v1 |= fields[sep + 3].split(',').any(|o| CONTROLLERS.contains(&o)),
            _ => {}
        }
    }
    (v1, v2)
}

fn cap_eff_has(bit: u32) -> bool {
    let status = read("/proc/self/status");
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .unwrap()
        .trim();
    u64::from_str_radix(hex, 16).unwrap() & (1 << bit) != 0
}

fn free_bytes(path: &Path) -> u64 {
    let s = nix::sys::statvfs::statvfs(path).unwrap();
    s.blocks_available() * s.fragment_size()
}

fn takes_idmapped_mounts(path: &Path, kernel: (u32, u32)) -> bool {
    use nix::sys::statfs::{
        statfs, BTRFS_SUPER_MAGIC, EXT4_SUPER_MAGIC, TMPFS_MAGIC, XFS_SUPER_MAGIC,
    };
    let fs = statfs(path).unwrap().filesystem_type();
    if fs == TMPFS_MAGIC {
        return kernel >= (6, 3);
    }
    [EXT4_SUPER_MAGIC, XFS_SUPER_MAGIC, BTRFS_SUPER_MAGIC].contains(&fs) && kernel >= (5, 12)
}

fn pidfd_open_works() -> bool {
    // SAFETY: pidfd_open of our own pid; the fd is closed at once.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, std::process::id() as libc::c_int, 0) };
    if fd >= 0 {
        // SAFETY: the fd was just returned to us.
        unsafe { libc::close(fd as i32) };
    }
    fd >= 0
}

fn plugin_installed(name: &str) -> bool {
    CniConfig::default()
        .bin_dirs
        .iter()
        .any(|d| d.join(name).is_file())
}

fn first_line_of(cmd: &str, arg: &str) -> String {
    let out = std::process::Command::new(cmd).arg(arg).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Each check's level as this host's kernel and files call for it.
fn expected_levels(dir: &Path) -> BTreeMap<&'static str, Level> {
    let kernel = kernel_version();
    let (v1, v2) = cgroup_mounts();
    let v2_controllers = v2
        .as_ref()
        .map(|m| std::fs::read_to_string(m.join("cgroup.controllers")).unwrap_or_default())
        .unwrap_or_default();
    let hybrid = v1 && v2.is_some();
    let crun_refuses = hybrid && !v2_controllers.trim().is_empty();
    let systemd_pid1 = read("/proc/1/comm").trim() == "systemd";
    let apparmor = Path::new("/sys/kernel/security/apparmor").exists();
    let apparmor_default = std::fs::read_to_string("/sys/kernel/security/apparmor/profiles")
        .is_ok_and(|p| p.lines().any(|l| l.starts_with("peapod-default ")));
    let selinux = Path::new("/sys/fs/selinux/enforce").exists();
    let own_adj: i64 = read("/proc/self/oom_score_adj").trim().parse().unwrap();
    let free = free_bytes(dir);

    let level = |ok: bool, otherwise: Level| if ok { Level::Ok } else { otherwise };
    BTreeMap::from([
        (
            "kernel",
            match kernel {
                k if k < (5, 3) => Level::Fail,
                k if k < (6, 3) => Level::Warn,
                _ => Level::Ok,
            },
        ),
        ("overlayfs", Level::Ok),
        (
            "idmapped-mounts",
            level(takes_idmapped_mounts(dir, kernel), Level::Warn),
        ),
        ("pidfd", level(pidfd_open_works(), Level::Fail)),
        (
            "seccomp",
            level(
                read("/proc/self/status").contains("\nSeccomp:"),
                Level::Warn,
            ),
        ),
        // v1 and hybrid: kubelet 1.35+ refuses them by default.
        ("cgroup-layout", level(!v1, Level::Warn)),
        // cgroupfs under a systemd PID 1: two cgroup managers.
        ("cgroup-driver", level(!systemd_pid1, Level::Warn)),
        // crun refuses a hybrid host whose v2 tree carries controllers.
        ("runtime:crun", level(!crun_refuses, Level::Warn)),
        ("runtime:runc", Level::Ok),
        (
            "cni",
            level(PLUGINS.iter().all(|p| plugin_installed(p)), Level::Fail),
        ),
        (
            "lsm",
            level(selinux || (apparmor && apparmor_default), Level::Warn),
        ),
        // Without CAP_SYS_RESOURCE (bit 24) containers are clamped to our own
        // score, which matters unless it is already at kubelet's lowest.
        (
            "oom-score-adj",
            level(cap_eff_has(24) || own_adj <= -997, Level::Warn),
        ),
        ("socket-dir", Level::Ok),
        (
            "disk-space",
            match free {
                f if f < 256 << 20 => Level::Fail,
                f if f < 2 << 30 => Level::Warn,
                _ => Level::Ok,
            },
        ),
    ])
}

fn by_check(findings: &[Finding]) -> BTreeMap<&str, &Finding> {
    findings.iter().map(|f| (f.check.as_ref(), f)).collect()
}

/// What the checks may leave: nothing in the dirs, no cgroup.
fn assert_nothing_left(dir: &Path) {
    let mut left: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["net.d"],
        "the checks left files in {}",
        dir.display()
    );
    let ours = format!("-{}-", std::process::id());
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        for e in std::fs::read_dir(h.path()).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(
                !(name.starts_with("peapod-check-") && name.contains(&ours)),
                "cgroup {} left behind",
                e.path().display()
            );
        }
    }
}

/// The tests look for the cgroups the runtimes' trial containers leave:
/// one at a time, so neither sees the other's in flight.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn every_check_runs_and_flags_exactly_what_this_host_lacks() {
    require();
    let _serial = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path(), CgroupDriver::Cgroupfs);
    write_network(&config.cni.conf_dir);

    let findings = check_host(&config).await;
    let text = render_text(&findings);
    println!("{text}");

    let ids: Vec<&str> = findings.iter().map(|f| f.check.as_ref()).collect();
    assert_eq!(ids, CHECKS, "every check, once, in order");
    let got: BTreeMap<&str, Level> = findings
        .iter()
        .map(|f| (f.check.as_ref(), f.level))
        .collect();
    assert_eq!(
        got,
        expected_levels(dir.path()),
        "levels differ from the host's:\n{text}"
    );

    for f in &findings {
        assert!(!f.found.is_empty(), "{f:?}");
        assert_eq!(f.fix.is_some(), f.level != Level::Ok, "{f:?}");
        assert!(!f.fix.as_deref().unwrap_or("").contains('\n'), "{f:?}");
    }
    let by = by_check(&findings);
    let (v1, v2) = cgroup_mounts();
    let mode = match (v1, v2.is_some()) {
        (true, true) => "hybrid:",
        (true, false) => "v1:",
        _ => "v2:",
    };
    assert!(by["cgroup-layout"].found.starts_with(mode), "{text}");
    assert!(
        by["cgroup-layout"].found.contains("pods under /peapod"),
        "{text}"
    );
    let release = read("/proc/sys/kernel/osrelease");
    assert_eq!(by["kernel"].found, release.trim());
    for runtime in ["runc", "crun"] {
        let version = first_line_of(runtime, "--version");
        let found = &by[format!("runtime:{runtime}").as_str()].found;
        assert!(found.starts_with(&version), "{version:?} vs {found:?}");
    }
    if by["runtime:crun"].level == Level::Warn {
        // crun's own words, not ours.
        assert!(
            by["runtime:crun"]
                .found
                .contains("hybrid mode not supported"),
            "{text}"
        );
    }
    assert!(by["cni"].found.contains("10-preflight.conflist"), "{text}");
    assert!(
        by["disk-space"]
            .found
            .contains(&dir.path().display().to_string()),
        "{text}"
    );

    let failing = findings.iter().any(|f| f.level == Level::Fail);
    assert_eq!(exit_code(&findings), u8::from(failing));
    let fixes = findings.iter().filter(|f| f.fix.is_some()).count();
    assert_eq!(text.lines().count(), findings.len() + fixes);
    let json: serde_json::Value = serde_json::from_str(&render_json(&findings)).unwrap();
    assert_eq!(json.as_array().unwrap().len(), findings.len());

    assert_nothing_left(dir.path());
}

#[tokio::test]
async fn the_systemd_driver_fails_without_systemd_as_pid_1() {
    require();
    let _serial = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path(), CgroupDriver::Systemd);
    write_network(&config.cni.conf_dir);

    let findings = check_host(&config).await;
    println!("{}", render_text(&findings));
    let driver = by_check(&findings)["cgroup-driver"].clone();
    let systemd_pid1 = read("/proc/1/comm").trim() == "systemd";
    if systemd_pid1 {
        assert_eq!(driver.level, Level::Ok, "{driver:?}");
    } else {
        assert_eq!(driver.level, Level::Fail, "{driver:?}");
        assert!(driver.fix.unwrap().contains("cgroupfs"));
        assert_eq!(exit_code(&findings), 1);
    }
    assert_nothing_left(dir.path());
}

/// `peapod check --json` prints what the library finds for the same config,
/// with the exit status it implies; `peapod serve` logs the WARN and FAIL
/// lines at start.
#[tokio::test]
async fn the_command_and_the_daemon_report_the_same_findings() {
    require();
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path(), CgroupDriver::Cgroupfs);
    let expected = check_host(&config).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_peapod"))
        .args(["check", "--json"])
        .args(["--root", &config.root_dir.to_string_lossy()])
        .args(["--state", &config.state_dir.to_string_lossy()])
        .args(["--socket", &config.socket.to_string_lossy()])
        .args(["--cni-conf-dir", &config.cni.conf_dir.to_string_lossy()])
        .env_remove("PEAPOD_CONFIG")
        .output()
        .unwrap();
    let printed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    // The command's config has runc only (no crun handler).
    let wanted: Vec<&Finding> = expected
        .iter()
        .filter(|f| f.check != "runtime:crun")
        .collect();
    let checks: Vec<&str> = printed
        .iter()
        .map(|f| f["check"].as_str().unwrap())
        .collect();
    let wanted_checks: Vec<&str> = wanted.iter().map(|f| &*f.check).collect();
    assert_eq!(checks, wanted_checks);
    for (p, f) in printed.iter().zip(&wanted) {
        let level = serde_json::to_value(f.level).unwrap();
        assert_eq!(p["level"], level, "{}", f.check);
    }
    let fails = printed.iter().any(|f| f["level"] == "fail");
    assert_eq!(out.status.code(), Some(i32::from(fails)));

    let d = common::TestDaemon::start_with(common::Options {
        cni: false,
        ..Default::default()
    });
    let not_ok: Vec<&&Finding> = wanted
        .iter()
        .filter(|f| {
            f.level != Level::Ok && !f.check.starts_with("runtime") && f.check != "socket-dir"
        })
        .collect();
    assert!(!not_ok.is_empty() || wanted.iter().all(|f| f.level == Level::Ok));
    for f in not_ok {
        let line = format!("host check {}", f.check);
        common::eventually(&line, || d.log_text().contains(&line)).await;
    }
}
