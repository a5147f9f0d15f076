//! The pod infra process (`peapod-monitor pause`) as the kernel shows it.
//!
//! Needs root (unshare, setns) and util-linux's `nsenter`. The tests take a
//! lock so that "nothing left running" checks see only their own processes.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::{getpid, getsid, Pid};

#[path = "common/monitor_binary.rs"]
mod monitor_binary;
use monitor_binary::monitor_binary;

/// What /proc/<pid>/exe shows for the embedded pause program, exec'd from a memfd.
const PAUSE: &str = "/memfd:peapod-pause";

/// The infra process must stay below this (VmRSS, kB).
const RSS_LIMIT_KB: u64 = 1024;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "tests/infra_process.rs must run as root: it creates namespaces and enters them with nsenter"
    );
}

fn require_tool(tool: &str, package: &str) {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "`{tool}` not found: install the Debian package `{package}`"
    );
}

/// An infra process started by a test; killed on drop if still there.
struct Infra {
    pid: i32,
}

impl Infra {
    fn proc(&self, file: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/{file}", self.pid))
    }

    fn status_field(&self, name: &str) -> String {
        status_field(self.pid, name)
            .unwrap_or_else(|| panic!("no {name} in /proc/{}/status", self.pid))
    }

    fn exe(&self) -> PathBuf {
        std::fs::read_link(self.proc("exe"))
            .unwrap_or_else(|e| panic!("readlink /proc/{}/exe: {e}", self.pid))
    }

    fn ns(&self, kind: &str) -> PathBuf {
        let path = self.proc(&format!("ns/{kind}"));
        std::fs::read_link(&path).unwrap_or_else(|e| panic!("readlink {}: {e}", path.display()))
    }

    fn rss_kb(&self) -> u64 {
        let field = self.status_field("VmRSS");
        field
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("VmRSS {field:?}: {e}"))
    }

    fn nsenter(&self, ns_flag: &str, cmd: &[&str]) -> String {
        let pid = self.pid.to_string();
        let mut args = vec!["-t", pid.as_str(), ns_flag, "--"];
        args.extend_from_slice(cmd);
        run("nsenter", &args)
    }

    /// Sends SIGTERM and waits for the process to end; returns how long.
    fn terminate(self) -> Duration {
        let start = Instant::now();
        kill(Pid::from_raw(self.pid), Signal::SIGTERM).expect("SIGTERM to infra process");
        let ended = wait_until(Duration::from_secs(5), || has_ended(self.pid));
        let took = start.elapsed();
        assert!(
            ended,
            "infra process {} still running 5s after SIGTERM",
            self.pid
        );
        took
    }
}

impl Drop for Infra {
    fn drop(&mut self) {
        // Only a process that is still one of ours (not a reused pid).
        if !has_ended(self.pid) && is_ours(self.pid) {
            let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
        }
    }
}

fn status_field(pid: i32, name: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key == name).then(|| value.trim().to_string())
    })
}

/// Fields of /proc/<pid>/stat after the command name: state, ppid, pgrp,
/// session, ...
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Gone, or a zombie waiting for the host's init to reap it.
fn has_ended(pid: i32) -> bool {
    match stat_fields(pid) {
        None => true,
        Some(fields) => matches!(fields.first().map(String::as_str), Some("Z" | "X")),
    }
}

fn is_ours(pid: i32) -> bool {
    let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) else {
        return false;
    };
    let exe = exe
        .to_string_lossy()
        .trim_end_matches(" (deleted)")
        .to_string();
    Path::new(&exe) == monitor_binary() || exe == PAUSE
}

/// Live (non-zombie) processes running our two binaries.
fn our_processes() -> BTreeSet<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| is_ours(pid) && !has_ended(pid))
        .collect()
}

/// Processes whose parent is `parent`, with their state letter.
fn children_of(parent: i32) -> Vec<(i32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let fields = stat_fields(pid)?;
            let ppid: i32 = fields.get(1)?.parse().ok()?;
            let state = fields.first()?.clone();
            (ppid == parent).then_some((pid, state))
        })
        .collect()
}

fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {cmd} {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

struct MonitorRun {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `peapod-monitor ARGS` as the daemon does (stdout piped) and waits
/// for it to exit. Fails if it does not exit, or if its stdout stays open
/// after it exited (the infra process must not hold the daemon's pipe).
fn monitor(args: &[&str]) -> MonitorRun {
    let binary = monitor_binary();
    let mut child = Command::new(&binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = String::new();
        let mut err = String::new();
        let _ = stdout.read_to_string(&mut out);
        let _ = stderr.read_to_string(&mut err);
        let _ = tx.send((out, err));
    });
    let mut status = None;
    let exited = wait_until(Duration::from_secs(10), || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
        panic!("peapod-monitor {args:?} did not exit within 10s");
    }
    let (stdout, stderr) = rx
        .recv_timeout(Duration::from_secs(5))
        .unwrap_or_else(|_| panic!("stdout of peapod-monitor {args:?} still open after it exited"));
    MonitorRun {
        code: status.and_then(|s| s.code()),
        stdout,
        stderr,
    }
}

/// Starts an infra process and checks the `ok <pid>` answer.
fn start(args: &[&str]) -> Infra {
    let mut full = vec!["pause"];
    full.extend_from_slice(args);
    let out = monitor(&full);
    assert_eq!(
        out.code,
        Some(0),
        "peapod-monitor {full:?}: stdout {:?} stderr {:?}",
        out.stdout,
        out.stderr
    );
    let pid = out
        .stdout
        .strip_prefix("ok ")
        .and_then(|rest| rest.strip_suffix('\n'))
        .and_then(|pid| pid.parse::<i32>().ok())
        .unwrap_or_else(|| panic!("expected \"ok <pid>\\n\", got {:?}", out.stdout));
    let infra = Infra { pid };
    assert!(!has_ended(pid), "infra process {pid} not running after ok");
    infra
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {path}: {e}"))
        .trim()
        .to_string()
}

fn self_ns(kind: &str) -> PathBuf {
    std::fs::read_link(format!("/proc/self/ns/{kind}")).expect("readlink /proc/self/ns")
}

/// Detached from us: not our child, leader of its own session.
fn check_detached(infra: &Infra) {
    let ppid: i32 = infra.status_field("PPid").parse().expect("PPid");
    assert_ne!(
        ppid,
        getpid().as_raw(),
        "infra process is a child of the test"
    );
    let fields = stat_fields(infra.pid).expect("stat");
    let session: i32 = fields[3].parse().expect("session");
    let ours = getsid(None).expect("getsid").as_raw();
    assert_ne!(session, ours, "infra process is in the test's session");
    assert_eq!(
        session, infra.pid,
        "infra process is not its session's leader"
    );
}

/// Stdio on /dev/null, no other fd, cwd /.
fn check_fds_and_cwd(infra: &Infra) {
    let fd_dir = infra.proc("fd");
    let mut fds: Vec<(String, PathBuf)> = std::fs::read_dir(&fd_dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", fd_dir.display()))
        .filter_map(|e| {
            let e = e.ok()?;
            Some((
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read_link(e.path()).ok()?,
            ))
        })
        .collect();
    fds.sort();
    let expected: Vec<(String, PathBuf)> = ["0", "1", "2"]
        .iter()
        .map(|fd| (fd.to_string(), PathBuf::from("/dev/null")))
        .collect();
    assert_eq!(fds, expected, "open fds of the infra process");
    let cwd = std::fs::read_link(infra.proc("cwd")).expect("readlink cwd");
    assert_eq!(cwd, PathBuf::from("/"));
}

/// Orphans created inside the pod's PID namespace are reparented to the
/// infra process, which must reap them all (no zombie left behind).
fn check_reaps_orphans(infra: &Infra) {
    // The shell runs in the pod's PID namespace and exits at once, leaving
    // its background sleeps to the namespace's init.
    infra.nsenter(
        "--pid",
        &[
            "sh",
            "-c",
            // Off our pipes, or waiting for nsenter's output would wait for them.
            "for i in 1 2 3 4 5; do sleep 2 </dev/null >/dev/null 2>&1 & done; exit 0",
        ],
    );
    let orphans = children_of(infra.pid);
    assert_eq!(
        orphans.len(),
        5,
        "expected 5 orphans reparented to the infra process, found {orphans:?}"
    );
    let reaped = wait_until(Duration::from_secs(10), || {
        children_of(infra.pid).is_empty()
    });
    assert!(
        reaped,
        "children of the infra process not reaped: {:?}",
        children_of(infra.pid)
    );
}

#[test]
fn pod_namespaces_hostname_and_sysctls() {
    let _serial = serial();
    require_root();
    require_tool("nsenter", "util-linux");
    require_tool("hostname", "hostname");
    let host_hostname = read_trimmed("/proc/sys/kernel/hostname");
    let host_shmmax = read_trimmed("/proc/sys/kernel/shmmax");
    let host_forward = read_trimmed("/proc/sys/net/ipv4/ip_forward");

    let infra = start(&[
        "--net",
        "--ipc",
        "--uts",
        "--pid",
        "--hostname",
        "h1",
        "--sysctl",
        "net.ipv4.ip_forward=1",
        "--sysctl",
        "kernel.shmmax=123456789",
    ]);

    for kind in ["net", "ipc", "uts", "pid"] {
        assert_ne!(
            infra.ns(kind),
            self_ns(kind),
            "{kind} namespace is the host's"
        );
    }
    assert_eq!(
        infra.ns("mnt"),
        self_ns("mnt"),
        "mount namespace must stay the host's"
    );
    assert_eq!(infra.nsenter("-u", &["hostname"]), "h1");
    assert_eq!(
        infra.nsenter("-n", &["cat", "/proc/sys/net/ipv4/ip_forward"]),
        "1"
    );
    assert_eq!(
        infra.nsenter("-i", &["cat", "/proc/sys/kernel/shmmax"]),
        "123456789"
    );
    assert_eq!(read_trimmed("/proc/sys/kernel/hostname"), host_hostname);
    assert_eq!(read_trimmed("/proc/sys/kernel/shmmax"), host_shmmax);
    assert_eq!(read_trimmed("/proc/sys/net/ipv4/ip_forward"), host_forward);

    check_detached(&infra);
    let nspid = infra.status_field("NSpid");
    assert_eq!(
        nspid.split_whitespace().collect::<Vec<_>>(),
        vec![infra.pid.to_string().as_str(), "1"],
        "NSpid: the infra process must be PID 1 of the pod's PID namespace"
    );
    let exe = infra.exe().to_string_lossy().into_owned();
    assert_eq!(
        exe.trim_end_matches(" (deleted)"),
        PAUSE,
        "infra process did not exec the embedded pause program"
    );
    check_fds_and_cwd(&infra);

    let rss = infra.rss_kb();
    println!("infra process VmRSS: {rss} kB");
    assert!(
        rss < RSS_LIMIT_KB,
        "infra process VmRSS {rss} kB >= {RSS_LIMIT_KB} kB"
    );

    let took = infra.terminate();
    println!("infra process exited {took:?} after SIGTERM");
    assert!(took < Duration::from_secs(2), "SIGTERM took {took:?}");
}

#[test]
fn net_sysctl_applies_to_the_pod_only() {
    let _serial = serial();
    require_root();
    require_tool("nsenter", "util-linux");
    const KEY_PATH: &str = "/proc/sys/net/ipv4/ip_unprivileged_port_start";
    let host_value = read_trimmed(KEY_PATH);
    let pod_value = if host_value == "2222" { "2223" } else { "2222" };
    let infra = start(&[
        "--net",
        "--sysctl",
        &format!("net.ipv4.ip_unprivileged_port_start={pod_value}"),
    ]);
    assert_eq!(infra.nsenter("-n", &["cat", KEY_PATH]), pod_value);
    assert_eq!(read_trimmed(KEY_PATH), host_value, "host's value changed");
    infra.terminate();
}

#[test]
fn no_flags_keep_host_namespaces() {
    let _serial = serial();
    require_root();
    let infra = start(&[]);
    for kind in ["net", "ipc", "uts", "pid", "mnt"] {
        assert_eq!(
            infra.ns(kind),
            self_ns(kind),
            "{kind} namespace differs from the host's"
        );
    }
    let nspid = infra.status_field("NSpid");
    assert_eq!(nspid, infra.pid.to_string(), "NSpid without --pid");
    check_detached(&infra);
    check_fds_and_cwd(&infra);
    let rss = infra.rss_kb();
    println!("infra process (host namespaces) VmRSS: {rss} kB");
    assert!(rss < RSS_LIMIT_KB, "VmRSS {rss} kB");
    infra.terminate();
}

#[test]
fn reaps_orphans_as_pid_1() {
    let _serial = serial();
    require_root();
    require_tool("nsenter", "util-linux");
    let infra = start(&["--pid"]);
    check_reaps_orphans(&infra);
    // Still alive and still PID 1 after reaping.
    assert!(!has_ended(infra.pid));
    infra.terminate();
}

#[test]
fn sigint_also_stops_it() {
    let _serial = serial();
    require_root();
    let infra = start(&["--pid", "--net"]);
    kill(Pid::from_raw(infra.pid), Signal::SIGINT).expect("SIGINT");
    assert!(
        wait_until(Duration::from_secs(2), || has_ended(infra.pid)),
        "infra process ignored SIGINT"
    );
}

#[test]
fn falls_back_to_in_process_loop_without_pause_binary() {
    let _serial = serial();
    require_root();
    require_tool("nsenter", "util-linux");
    let infra = start(&[
        "--pid",
        "--uts",
        "--hostname",
        "fb",
        "--pause-bin",
        "/nonexistent/peapod-pause",
    ]);
    assert_eq!(
        infra.exe(),
        monitor_binary(),
        "fallback should keep running peapod-monitor"
    );
    assert_eq!(infra.nsenter("-u", &["hostname"]), "fb");
    check_detached(&infra);
    check_fds_and_cwd(&infra);
    println!("fallback infra process VmRSS: {} kB", infra.rss_kb());
    check_reaps_orphans(&infra);
    let took = infra.terminate();
    assert!(took < Duration::from_secs(2), "SIGTERM took {took:?}");
}

#[test]
fn bad_input_is_an_error_and_leaves_nothing_running() {
    let _serial = serial();
    require_root();
    let before = our_processes();
    let cases: &[(&[&str], &str)] = &[
        (&["--hostname", "h1"], "--hostname: requires --uts"),
        (
            &["--net", "--sysctl", "net/ipv4/ip_forward=1"],
            "character '/'",
        ),
        (&["--net", "--sysctl", "net.ipv4..ip_forward=1"], "\"..\""),
        (&["--sysctl", "net.ipv4.ip_forward=1"], "needs --net"),
        (
            &[
                "--net",
                "--uts",
                "--pid",
                "--hostname",
                "bad",
                "--sysctl",
                "net.ipv4.no_such_sysctl=1",
            ],
            "sysctl net.ipv4.no_such_sysctl: open /proc/sys/net/ipv4/no_such_sysctl: ENOENT",
        ),
        (
            &["--ipc", "--pid", "--sysctl", "kernel.shmmax=not-a-number"],
            "EINVAL",
        ),
        (&["--uts", "--hostname", &"x".repeat(65)], "1 to 64 bytes"),
        (&["--bogus"], "--bogus: unknown argument"),
    ];
    for (args, expected) in cases {
        let mut full = vec!["pause"];
        full.extend_from_slice(args);
        let out = monitor(&full);
        assert_eq!(out.code, Some(1), "{full:?}: stdout {:?}", out.stdout);
        assert!(
            out.stdout.starts_with("error ") && out.stdout.ends_with('\n'),
            "{full:?}: stdout {:?}",
            out.stdout
        );
        assert_eq!(out.stdout.lines().count(), 1, "{full:?}: {:?}", out.stdout);
        assert!(
            out.stdout.contains(expected),
            "{full:?}: {:?} lacks {expected:?}",
            out.stdout
        );
    }
    let after = our_processes();
    let left: Vec<_> = after.difference(&before).collect();
    assert!(
        left.is_empty(),
        "processes left running after errors: {left:?}"
    );
}

#[test]
fn unknown_mode_is_a_usage_error() {
    let _serial = serial();
    for args in [&[][..], &["bogus"][..], &["--net"][..]] {
        let out = monitor(args);
        assert_eq!(out.code, Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}: stdout {:?}", out.stdout);
        assert!(
            out.stderr.contains("usage: peapod-monitor"),
            "{args:?}: {:?}",
            out.stderr
        );
    }
}
