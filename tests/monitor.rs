//! `peapod-monitor container`, driven through `peapod::monitor::launch`
//! with real `runc create` / `start` / `kill` on busybox bundles, checked
//! against what the kernel and the files show.
//!
//! Needs root, Debian's `runc` and `busybox-static`. Every container runs
//! in a cgroup below a test cgroup of its own (`/peapod-monitor-test-*`,
//! absolute, never under this process's cgroup); guards delete the
//! containers and remove the cgroups even when a test fails.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use peapod::monitor::{
    self, AttachOutput, AttachSession, ContainerConfig, ExitStatus, Frame, Launched, MonitorError,
};
use peapod::process::{parent_pid, ProcessRef};
use serde_json::{json, Value};

#[path = "common/monitor_binary.rs"]
mod monitor_binary;
use monitor_binary::monitor_binary;

const LAUNCH_TIMEOUT: Duration = Duration::from_secs(20);
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const BUSYBOX: &str = "/bin/busybox";

/// The memory test takes it for writing, so that no other monitor shares
/// (and halves) its pages while it measures; everything else reads.
static SERIAL: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

fn require_host() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "tests/monitor.rs must run as root: runc creates namespaces and cgroups"
    );
    let runc = Command::new("runc")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        matches!(runc, Ok(s) if s.success()),
        "`runc` not found: install the Debian package `runc`"
    );
    assert!(
        is_static_elf(Path::new(BUSYBOX)),
        "{BUSYBOX} missing or not statically linked: install the Debian package `busybox-static`"
    );
}

/// An ELF file without a PT_INTERP program header (no dynamic loader).
fn is_static_elf(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(bytes[0x20..0x28].try_into().unwrap()) as usize;
    let (entsize, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).all(|i| {
        let at = phoff + i * entsize;
        bytes
            .get(at..at + 4)
            .is_some_and(|t| u32::from_le_bytes(t.try_into().unwrap()) != 3)
    })
}

fn rand_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n.div_ceil(2)];
    getrandom::fill(&mut bytes).expect("getrandom");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    hex[..n].to_string()
}

/// A cgroup of this test's own, `/peapod-monitor-test-<random>`, in
/// every hierarchy (v1 controllers, name=systemd, unified). runc creates
/// the containers' cgroups below it; dropping it kills anything left in
/// it and removes the whole tree.
struct TestCgroup {
    name: String,
}

impl TestCgroup {
    fn new() -> TestCgroup {
        TestCgroup {
            name: format!("/peapod-monitor-test-{}", rand_hex(12)),
        }
    }

    /// The absolute cgroupsPath of a container.
    fn path(&self, container: &str) -> String {
        format!("{}/{container}", self.name)
    }

    fn hierarchies() -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default();
        dirs.sort();
        dirs
    }
}

fn subdirs_depth_first(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                subdirs_depth_first(&e.path(), out);
            }
        }
    }
    out.push(dir.to_path_buf());
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let rel = self.name.trim_start_matches('/');
        for attempt in 0..50 {
            let mut left = Vec::new();
            for h in Self::hierarchies() {
                let top = h.join(rel);
                if !top.exists() {
                    continue;
                }
                let mut dirs = Vec::new();
                subdirs_depth_first(&top, &mut dirs);
                for d in dirs {
                    // Processes still here are this test's containers.
                    if let Ok(procs) = std::fs::read_to_string(d.join("cgroup.procs")) {
                        for pid in procs.lines().filter_map(|l| l.trim().parse().ok()) {
                            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
                        }
                    }
                    if std::fs::remove_dir(&d).is_err() {
                        left.push(d);
                    }
                }
            }
            if left.is_empty() {
                return;
            }
            if attempt == 49 {
                eprintln!("could not remove test cgroups: {left:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// How a test container is made.
struct Spec {
    args: Vec<String>,
    tty: bool,
    /// A PID namespace of its own (runc's default). Without one, the init
    /// is not a namespace init (SIGTERM kills it) and orphans of the
    /// container are reparented to the monitor.
    pid_ns: bool,
    memory_limit: Option<i64>,
    oom_file: bool,
    log_max_line: usize,
    drain_timeout: Duration,
    readonly_root: bool,
    stdin: bool,
    stdin_once: bool,
}

impl Spec {
    fn new(args: &[&str]) -> Spec {
        Spec {
            args: args.iter().map(|s| s.to_string()).collect(),
            tty: false,
            pid_ns: true,
            memory_limit: None,
            oom_file: false,
            log_max_line: monitor::DEFAULT_LOG_MAX_LINE,
            drain_timeout: monitor::DEFAULT_DRAIN_TIMEOUT,
            readonly_root: true,
            stdin: false,
            stdin_once: false,
        }
    }

    fn sh(script: &str) -> Spec {
        Spec::new(&["sh", "-c", script])
    }
}

/// One container's bundle, state files and runc root in a tempdir.
/// Dropping it runs `runc delete --force` and kills a monitor left over.
struct Container {
    dir: tempfile::TempDir,
    id: String,
    cgroup_path: String,
    config: ContainerConfig,
    launched: Option<Launched>,
}

impl Container {
    fn new(cg: &TestCgroup, spec: Spec) -> Container {
        let dir = tempfile::Builder::new()
            .prefix("pmt")
            .tempdir()
            .expect("tempdir");
        let id = format!("pmt-{}", rand_hex(10));
        let cgroup_path = cg.path(&id);
        let bundle = dir.path().join("bundle");
        make_rootfs(&bundle.join("rootfs"));
        write_config(&bundle, &spec, &cgroup_path);

        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap();
        let pid_file = state.join("pid");
        let runtime_log = state.join("runc.log");
        let console_socket = spec.tty.then(|| state.join("console.sock"));
        let root = dir.path().join("runc");
        let mut argv: Vec<std::ffi::OsString> = vec![
            "runc".into(),
            "--root".into(),
            root.into(),
            "--log".into(),
            runtime_log.clone().into(),
            "--log-format".into(),
            "json".into(),
            "create".into(),
            "--bundle".into(),
            bundle.clone().into(),
            "--pid-file".into(),
            pid_file.clone().into(),
        ];
        if let Some(cs) = &console_socket {
            argv.push("--console-socket".into());
            argv.push(cs.clone().into());
        }
        argv.push(id.clone().into());
        let oom_file = spec.oom_file.then(|| {
            PathBuf::from("/sys/fs/cgroup/memory")
                .join(cgroup_path.trim_start_matches('/'))
                .join("memory.oom_control")
        });
        let config = ContainerConfig {
            id: id.clone(),
            bundle,
            pid_file,
            exit_file: state.join("exit"),
            socket: state.join("monitor.sock"),
            log_path: Some(dir.path().join("logs/ctr/0.log")),
            log_max_line: spec.log_max_line,
            tty: spec.tty,
            console_socket,
            stdin: spec.stdin,
            stdin_once: spec.stdin_once,
            oom_file,
            runtime_log: Some(runtime_log),
            drain_timeout: spec.drain_timeout,
            runtime_argv: argv,
        };
        Container {
            dir,
            id,
            cgroup_path,
            config,
            launched: None,
        }
    }

    async fn launch(&mut self) -> Result<Launched, MonitorError> {
        let r = monitor::launch(&monitor_binary(), &self.config, LAUNCH_TIMEOUT).await;
        if let Ok(l) = &r {
            self.launched = Some(*l);
        }
        r
    }

    async fn launch_ok(&mut self) -> Launched {
        self.launch()
            .await
            .unwrap_or_else(|e| panic!("launch {}: {e}", self.id))
    }

    fn runc(&self, args: &[&str]) -> std::process::Output {
        let root = self.dir.path().join("runc");
        Command::new("runc")
            .arg("--root")
            .arg(&root)
            .args(args)
            .output()
            .expect("run runc")
    }

    fn runc_ok(&self, args: &[&str]) {
        let out = self.runc(args);
        assert!(
            out.status.success(),
            "runc {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start(&self) {
        self.runc_ok(&["start", &self.id]);
    }

    fn kill(&self, signal: &str) {
        self.runc_ok(&["kill", &self.id, signal]);
    }

    fn state(&self) -> Value {
        let out = self.runc(&["state", &self.id]);
        assert!(out.status.success(), "runc state {}", self.id);
        serde_json::from_slice(&out.stdout).expect("runc state JSON")
    }

    fn log_path(&self) -> PathBuf {
        self.config.log_path.clone().unwrap()
    }

    fn rootfs(&self) -> PathBuf {
        self.config.bundle.join("rootfs")
    }

    /// The container's v1 memory cgroup directory.
    fn memory_cgroup(&self) -> PathBuf {
        PathBuf::from("/sys/fs/cgroup/memory").join(self.cgroup_path.trim_start_matches('/'))
    }

    async fn wait_exit(&self) -> ExitStatus {
        let start = Instant::now();
        loop {
            match monitor::read_exit_file(&self.config.exit_file) {
                Ok(Some(status)) => return status,
                Ok(None) => {}
                Err(e) => panic!("exit file of {}: {e}", self.id),
            }
            assert!(
                start.elapsed() < EXIT_TIMEOUT,
                "no exit file for {} after {EXIT_TIMEOUT:?}; log:\n{}",
                self.id,
                std::fs::read_to_string(self.log_path()).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until the monitor process is gone (exited; a zombie counts
    /// as gone, its parent is not ours to wait for).
    async fn wait_monitor_gone(&self) {
        let m = self.launched.expect("launched").monitor;
        eventually("monitor exits", Duration::from_secs(10), || !m.is_alive()).await;
    }

    fn log_entries(&self) -> Vec<Entry> {
        read_log(&self.log_path())
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.runc(&["delete", "--force", &self.id]);
        if let Some(l) = self.launched {
            if let Ok(fd) = l.monitor.open() {
                let _ = fd.signal(Signal::SIGKILL);
            }
        }
    }
}

fn make_rootfs(rootfs: &Path) {
    let bin = rootfs.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for d in ["proc", "sys", "dev", "tmp", "etc"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy(BUSYBOX, bin.join("busybox")).expect("copy busybox");
    let out = Command::new(BUSYBOX)
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "busybox" || applet.contains('/') {
            continue;
        }
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
}

/// config.json from `runc spec`, edited for the test.
fn write_config(bundle: &Path, spec: &Spec, cgroup_path: &str) {
    let out = Command::new("runc")
        .args(["spec", "--bundle"])
        .arg(bundle)
        .output()
        .expect("runc spec");
    assert!(out.status.success(), "runc spec failed");
    let path = bundle.join("config.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["process"]["terminal"] = json!(spec.tty);
    config["process"]["args"] = json!(spec.args);
    config["root"] = json!({"path": "rootfs", "readonly": spec.readonly_root});
    config["linux"]["cgroupsPath"] = json!(cgroup_path);
    if !spec.pid_ns {
        let ns = config["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "pid");
    }
    if let Some(limit) = spec.memory_limit {
        // Swap limited too, so the limit is reached on a host with swap.
        config["linux"]["resources"]["memory"] = json!({"limit": limit, "swap": limit});
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
}

async fn eventually(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One CRI log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    time_ns: i64,
    stream: String,
    tag: char,
    content: String,
}

impl Entry {
    fn short(&self) -> (String, char, String) {
        (self.stream.clone(), self.tag, self.content.clone())
    }
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` strictly.
fn parse_timestamp(ts: &str) -> Option<i64> {
    let b = ts.as_bytes();
    if b.len() != 30 {
        return None;
    }
    for (i, &c) in b.iter().enumerate() {
        let want = match i {
            4 | 7 => b'-',
            10 => b'T',
            13 | 16 => b':',
            19 => b'.',
            29 => b'Z',
            _ => 0,
        };
        if want == 0 && !c.is_ascii_digit() || want != 0 && c != want {
            return None;
        }
    }
    let n = |r: std::ops::Range<usize>| ts[r].parse::<i64>().unwrap();
    let days = days_from_civil(n(0..4), n(5..7), n(8..10));
    let secs = days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19);
    Some(secs * 1_000_000_000 + n(20..29))
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// Reads a CRI log, checking every line's format and that its timestamp
/// is within a minute of now.
fn read_log(path: &Path) -> Vec<Entry> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read log {}: {e}", path.display()));
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "log ends mid-line: {text:?}"
    );
    let now = now_ns();
    text.lines()
        .map(|line| {
            let mut parts = line.splitn(4, ' ');
            let (ts, stream, tag, content) = (
                parts.next().unwrap(),
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
                parts.next(),
            );
            let time_ns = parse_timestamp(ts).unwrap_or_else(|| panic!("bad timestamp: {line:?}"));
            assert!(
                (now - time_ns).abs() < 60_000_000_000,
                "timestamp far from now: {line:?}"
            );
            assert!(
                stream == "stdout" || stream == "stderr",
                "bad stream: {line:?}"
            );
            assert!(tag == "F" || tag == "P", "bad tag: {line:?}");
            Entry {
                time_ns,
                stream: stream.to_string(),
                tag: tag.chars().next().unwrap(),
                content: content.expect("content field").to_string(),
            }
        })
        .collect()
}

fn entries_of<'a>(entries: &'a [Entry], stream: &str) -> Vec<(char, &'a str)> {
    entries
        .iter()
        .filter(|e| e.stream == stream)
        .map(|e| (e.tag, e.content.as_str()))
        .collect()
}

fn fd_target(pid: i32, fd: i32) -> String {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// Processes (not zombies) whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<(i32, String)> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) && ProcessRef::of(pid).is_some_and(|p| p.is_alive()) {
            found.push((pid, cmdline));
        }
    }
    found
}

/// Sends raw request lines on the control socket; returns the replies.
fn raw_requests(socket: &Path, requests: &str, replies: usize) -> Vec<String> {
    let mut stream = std::os::unix::net::UnixStream::connect(socket).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(requests.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    (0..replies)
        .map(|_| {
            let mut line = String::new();
            reader.read_line(&mut line).expect("reply");
            line.trim_end().to_string()
        })
        .collect()
}

#[tokio::test]
async fn stdout_stderr_exit_code_and_process_tree() {
    require_host();
    let _serial = SERIAL.read().await;
    let cg = TestCgroup::new();
    let mut c = Container::new(
        &cg,
        Spec::sh("echo out1; echo err1 >&2; echo out2; echo err2 >&2; printf partial; exit 3"),
    );
    let before = now_ns();
    let l = c.launch_ok().await;
    let me = std::process::id() as i32;

    // The monitor is detached: not our child, its own session, and the
    // daemon's pipes are gone from its stdio.
    assert!(l.monitor.is_alive());
    assert_ne!(parent_pid(l.monitor.pid), Some(me), "monitor is our child");
    let sid = nix::unistd::getsid(Some(Pid::from_raw(l.monitor.pid))).unwrap();
    assert_eq!(
        sid.as_raw(),
        l.monitor.pid,
        "monitor has no session of its own"
    );
    // It writes `ok` and then lets go of the daemon's pipe: a moment.
    for fd in 0..=2 {
        for _ in 0..100 {
            if fd_target(l.monitor.pid, fd) == "/dev/null" {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(fd_target(l.monitor.pid, fd), "/dev/null", "monitor fd {fd}");
    }
    // The init waits for `runc start` as the monitor's child.
    assert!(l.init.is_alive());
    assert_eq!(parent_pid(l.init.pid), Some(l.monitor.pid));
    let state = c.state();
    assert_eq!(state["status"], "created");
    assert_eq!(state["pid"], l.init.pid);
    // The container's stdout/stderr are the monitor's pipes.
    assert!(fd_target(l.init.pid, 1).starts_with("pipe:"));
    assert!(fd_target(l.init.pid, 2).starts_with("pipe:"));
    assert_ne!(fd_target(l.init.pid, 1), fd_target(l.init.pid, 2));
    assert_eq!(fd_target(l.init.pid, 0), "/dev/null");
    let mode = std::fs::metadata(&c.config.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "control socket mode");

    c.start();
    let exit = c.wait_exit().await;
    let after = now_ns();
    assert_eq!(
        (exit.exit_code, exit.signal, exit.oom_killed),
        (3, 0, false),
        "{exit:?}"
    );
    assert!(
        before < exit.finished_at && exit.finished_at <= after,
        "finished_at {exit:?}"
    );
    c.wait_monitor_gone().await;
    assert!(!c.config.socket.exists(), "control socket left behind");
    assert!(!c.config.exit_file.with_extension("tmp").exists());

    let entries = c.log_entries();
    assert_eq!(
        entries_of(&entries, "stdout"),
        [('F', "out1"), ('F', "out2"), ('P', "partial")],
        "{entries:#?}"
    );
    assert_eq!(
        entries_of(&entries, "stderr"),
        [('F', "err1"), ('F', "err2")]
    );
    let mut times: Vec<i64> = entries.iter().map(|e| e.time_ns).collect();
    assert!(times.iter().all(|&t| before < t && t <= after));
    times.sort();
    let text = std::fs::read_to_string(c.log_path()).unwrap();
    print!("log:\n{text}");
    let log_mode = std::fs::metadata(c.log_path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(log_mode & 0o777 & !0o640, 0, "log mode {log_mode:o}");
}

#[tokio::test]
async fn long_lines_are_split_and_crlf_dropped() {
    require_host();
    let _serial = SERIAL.read().await;
    let cg = TestCgroup::new();
    let mut c = Container::new(
        &cg,
        Spec::sh(
            "head -c 40000 /dev/zero | tr '\\0' a; echo; printf 'x\\r\\ny\\r\\rz\\n'; \
             head -c 16384 /dev/zero | tr '\\0' b; echo",
        ),
    );
    c.launch_ok().await;
    c.start();
    let exit = c.wait_exit().await;
    assert_eq!((exit.exit_code, exit.signal), (0, 0));
    let entries = c.log_entries();
    let got: Vec<(char, usize, String)> = entries
        .iter()
        .map(|e| {
            assert_eq!(e.stream, "stdout");
            let first = e
                .content
                .chars()
                .next()
                .map(String::from)
                .unwrap_or_default();
            (e.tag, e.content.len(), first)
        })
        .collect();
    assert_eq!(
        got,
        [
            ('P', 16384, "a".to_string()),
            ('P', 16384, "a".to_string()),
            ('F', 40000 - 2 * 16384, "a".to_string()),
            ('F', 1, "x".to_string()),
            ('F', 4, "y".to_string()),
            ('F', 16384, "b".to_string()),
        ]
    );
    assert_eq!(entries[4].content, "y\r\rz");
    assert!(entries[..3]
        .iter()
        .all(|e| e.content.bytes().all(|b| b == b'a')));
}

#[tokio::test]
async fn runc_kill_term_gives_143() {
    require_host();
    let _serial = SERIAL.read().await;
    let cg = TestCgroup::new();
    // No PID namespace: a namespace's init ignores SIGTERM without a handler.
    let mut c = Container::new(
        &cg,
        Spec {
            pid_ns: false,
            stdin: true,
            stdin_once: true,
            ..Spec::new(&["sleep", "1000"])
        },
    );
    let l = c.launch_ok().await;
    // --stdin: the container reads a pipe whose write end the monitor
    // holds open (for attach).
    let stdin = fd_target(l.init.pid, 0);
    assert!(stdin.starts_with("pipe:"), "container stdin {stdin}");
    let monitor_fds: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", l.monitor.pid))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_link(e.path()).unwrap().display().to_string())
        .collect();
    assert!(
        monitor_fds.contains(&stdin),
        "monitor does not hold {stdin}: {monitor_fds:?}"
    );
    c.start();
    assert_eq!(c.state()["status"], "running");
    c.kill("TERM");
    let exit = c.wait_exit().await;
    assert_eq!(
        (exit.exit_code, exit.signal, exit.oom_killed),
        (143, 15, false)
    );
    c.wait_monitor_gone().await;
}

#[tokio::test]
async fn sigkill_without_oom_is_not_oom_killed() {
    require_host();
    let _serial = SERIAL.read().await;
    let cg = TestCgroup::new();
    let mut c = Container::new(
        &cg,
        Spec {
            oom_file: true,
            ..Spec::new(&["sleep", "1000"])
        },
    );
    c.launch_ok().await;
    c.start();
    c.kill("KILL");
    let exit = c.wait_exit().await;
    assert_eq!(
        (exit.exit_code, exit.signal, exit.oom_killed),
        (137, 9, false)
    );
    assert_eq!(oom_kills(&c), 0);
}

#[tokio::test]
async fn oom_kill_is_reported() {
    require_host();
    let _serial = SERIAL.read().await;
    let cg = TestCgroup::new();
    let mut c = Container::new(
        &cg,
        Spec {
            memory_limit: Some(32 << 20),
            oom_file: true,
            ..Spec::new(&["tail", "/dev/zero"])
        },
    );
    c.launch_ok().await;
    let limit = std::fs::read_to_string(c.memory_cgroup().join("memory.limit_in_bytes")).unwrap();
    assert_eq!(limit.trim(), (32u64 << 20).to_string());
    c.start();
    let exit = c.wait_exit().await;
    assert_eq!(
        (exit.exit_code, exit.signal, exit.oom_killed),
        (137, 9, true),
        "{exit:?}"
    );
    // The kernel's own count agrees.
    assert!(oom_kills(&c) >= 1);
}

/// `oom_kill` of the container cgroup's `memory.oom_control` (v1).
fn oom_kills(c: &Container) -> u64 {
    let oom = std::fs::read_to_string(c.memory_cgroup().join("memory.oom_control")).unwrap();
    oom.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .unwrap_or_else(|| panic!("no oom_kill in memory.oom_control:\n{oom}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn reopen_after_rename_loses_no_line() {
    require_host();
    let _serial = SERIAL.read().await;
    let cg = TestCgroup::new();
    let mut c = Container::new(
        &cg,
        Spec::sh("i=0; while [ $i -lt 300 ]; do echo line$i; i=$((i+1)); usleep 3000; done"),
    );
    c.launch_ok().await;
    let socket = c.config.socket.clone();

    // Requests before the container even starts: several on one
    // connection, each answered in order.
    assert_eq!(
        raw_requests(&socket, "bogus\nresize 80 24\nreopen\n", 3),
        ["error unknown request", "error not a terminal", "ok"]
    );
    match monitor::resize(&socket, 80, 24, REQUEST_TIMEOUT).await {
        Err(MonitorError::Refused(msg)) => assert_eq!(msg, "not a terminal"),
        other => panic!("resize without a tty: {other:?}"),
    }

    c.start();
    let log = c.log_path();
    eventually("40 lines logged", Duration::from_secs(10), || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.lines().count() >= 40)
    })
    .await;
    let rotated = log.with_extension("log.1");
    std::fs::rename(&log, &rotated).unwrap();
    monitor::reopen_log(&socket, REQUEST_TIMEOUT)
        .await
        .expect("reopen");
    assert!(log.exists(), "reopen created the new file");
    let exit = c.wait_exit().await;
    assert_eq!(exit.exit_code, 0);

    let old = read_log(&rotated);
    let new = read_log(&log);
    println!("{} lines before the reopen, {} after", old.len(), new.len());
    assert!(old.len() >= 40, "old file: {}", old.len());
    assert!(!new.is_empty(), "nothing written after the reopen");
    let all: Vec<String> = old.iter().chain(&new).map(|e| e.short().2).collect();
    let want: Vec<String> = (0..300).map(|i| format!("line{i}")).collect();
    assert_eq!(all, want, "lines lost or duplicated around the reopen");
    assert!(old
        .iter()
        .chain(&new)
        .all(|e| e.tag == 'F' && e.stream == "stdout"));
    // Old lines are all older than the new ones.
    assert!(old.last().unwrap().time_ns <= new[0].time_ns);
}

#[tokio::test]
async fn tty_output_is_stdout_and_resize_works() {
    require_host();
    let _serial = SERIAL.read().await;
    let cg = TestCgroup::new();
    let mut c = Container::new(
        &cg,
        Spec {
            tty: true,
            readonly_root: false,
            ..Spec::sh(
                "stty size; echo to-stderr >&2; tty; \
                 while [ ! -e /go ]; do usleep 10000; done; stty size; echo done",
            )
        },
    );
    let l = c.launch_ok().await;
    assert!(
        !c.config.console_socket.as_ref().unwrap().exists(),
        "console socket left after create"
    );
    // The terminal exists from create on: size it before the start.
    let socket = c.config.socket.clone();
    monitor::resize(&socket, 120, 40, REQUEST_TIMEOUT)
        .await
        .expect("resize before start");
    assert!(fd_target(l.init.pid, 0).starts_with("/dev/pts/"));
    c.start();
    let log = c.log_path();
    eventually("first stty size", Duration::from_secs(10), || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.lines().count() >= 3)
    })
    .await;
    monitor::resize(&socket, 100, 30, REQUEST_TIMEOUT)
        .await
        .expect("resize while running");
    std::fs::write(c.rootfs().join("go"), "").unwrap();
    let exit = c.wait_exit().await;
    assert_eq!((exit.exit_code, exit.signal), (0, 0));
    let entries = c.log_entries();
    let got: Vec<(String, char, String)> = entries.iter().map(Entry::short).collect();
    print!("{}", std::fs::read_to_string(&log).unwrap());
    assert_eq!(got.len(), 5, "{got:?}");
    assert!(
        got.iter().all(|(s, t, _)| s == "stdout" && *t == 'F'),
        "{got:?}"
    );
    assert_eq!(got[0].2, "40 120");
    assert_eq!(got[1].2, "to-stderr");
    assert!(got[2].2.starts_with("/dev/pts/"), "{got:?}");
    assert_eq!(got[3].2, "30 100");
    assert_eq!(got[4].2, "done");
    c.wait_monitor_gone().await;
}

#[tokio::test]
async fn failing_create_reports_runc_message_and_leaves_nothing() {
    require_host();
    let _serial = SERIAL.read().await;
    let cg = TestCgroup::new();
    let mut c = Container::new(&cg, Spec::new(&["/nonexistent-binary"]));
    let err = c.launch().await.expect_err("create must fail");
    println!("launch error: {err}");
    match &err {
        MonitorError::Runtime(msg) => {
            assert!(msg.contains("/nonexistent-binary"), "{msg}");
            assert!(!msg.contains('\n'));
        }
        other => panic!("expected MonitorError::Runtime, got {other:?}"),
    }
    // No monitor (nor anything else of this container) is left running.
    let left = processes_mentioning(&c.id);
    assert!(left.is_empty(), "processes left: {left:?}");
    assert!(!c.config.socket.exists(), "control socket left behind");
    assert!(monitor::read_exit_file(&c.config.exit_file)
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn failing_create_message_from_stderr_and_in_tty_mode() {
    require_host();
    let _serial = SERIAL.read().await;
    let cg = TestCgroup::new();
    // Without --runtime-log the message is what runc wrote on stderr.
    let mut plain = Container::new(&cg, Spec::new(&["/nonexistent-plain"]));
    plain.config.runtime_log = None;
    // In tty mode the runtime's own output has a pipe of its own.
    let mut tty = Container::new(
        &cg,
        Spec {
            tty: true,
            ..Spec::new(&["/nonexistent-tty"])
        },
    );
    let mut tty_no_log = Container::new(
        &cg,
        Spec {
            tty: true,
            ..Spec::new(&["/nonexistent-tty-stderr"])
        },
    );
    tty_no_log.config.runtime_log = None;
    for (c, name) in [
        (&mut plain, "/nonexistent-plain"),
        (&mut tty, "/nonexistent-tty"),
        (&mut tty_no_log, "/nonexistent-tty-stderr"),
    ] {
        match c.launch().await {
            Err(MonitorError::Runtime(msg)) => {
                println!("{name}: {msg}");
                assert!(msg.contains(name), "{msg}");
                assert!(msg.contains("no such file or directory"), "{msg}");
            }
            other => panic!("{name}: expected MonitorError::Runtime, got {other:?}"),
        }
        assert!(processes_mentioning(&c.id).is_empty());
        assert!(!c.config.socket.exists());
        if let Some(cs) = &c.config.console_socket {
            assert!(!cs.exists(), "console socket left behind");
        }
    }
}

/// The monitor config for a stand-in runtime: a /bin/sh script.
fn fake_runtime_config(dir: &Path, script: &str) -> ContainerConfig {
    ContainerConfig {
        id: "fake".into(),
        bundle: dir.into(),
        pid_file: dir.join("pid"),
        exit_file: dir.join("exit"),
        socket: dir.join("sock"),
        log_path: Some(dir.join("log")),
        log_max_line: 100,
        tty: false,
        console_socket: None,
        stdin: false,
        stdin_once: false,
        oom_file: None,
        runtime_log: None,
        drain_timeout: Duration::from_secs(1),
        runtime_argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
    }
}

#[tokio::test]
async fn init_that_exits_before_the_pid_file_is_read() {
    let _serial = SERIAL.read().await;
    let dir = tempfile::tempdir().unwrap();
    // The "init" exits 7 while the "runtime" still runs: it stays a zombie
    // of the runtime (exec'd into sleep, which never waits), is
    // reparented to the monitor when the runtime exits and reaped there,
    // before the monitor has read the pid file.
    let config = fake_runtime_config(
        dir.path(),
        "sh -c 'echo from-init; exit 7' & echo $! > pid; exec sleep 0.3",
    );
    let l = monitor::launch(&monitor_binary(), &config, LAUNCH_TIMEOUT)
        .await
        .expect("launch");
    assert_eq!(l.init.start_time, 0, "the init was already gone");
    let start = Instant::now();
    let exit = loop {
        if let Some(exit) = monitor::read_exit_file(&config.exit_file).unwrap() {
            break exit;
        }
        assert!(start.elapsed() < EXIT_TIMEOUT, "no exit file");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!((exit.exit_code, exit.signal), (7, 0));
    let entries = read_log(&config.log_path.clone().unwrap());
    assert_eq!(entries_of(&entries, "stdout"), [('F', "from-init")]);
    eventually("monitor exits", Duration::from_secs(10), || {
        !l.monitor.is_alive()
    })
    .await;
}

#[tokio::test]
async fn create_error_fallbacks() {
    let _serial = SERIAL.read().await;
    let dir = tempfile::tempdir().unwrap();
    for (script, want) in [
        // Nothing on stderr, no runtime log: the exit status.
        ("exit 5", "/bin/sh create failed: exit status 5"),
        ("kill -9 $$", "/bin/sh create failed: killed by signal 9"),
        // Stderr, in one line.
        (
            "echo 'bad bundle' >&2; echo 'second line' >&2; exit 1",
            "bad bundle second line",
        ),
        // Exit 0 without a pid file.
        ("exit 0", "read pid file"),
        ("echo 0 > pid", "not a pid"),
        // Not a child of the monitor.
        ("echo 1 > pid", "is not a child of the monitor"),
    ] {
        let config = fake_runtime_config(dir.path(), script);
        let _ = std::fs::remove_file(&config.pid_file);
        match monitor::launch(&monitor_binary(), &config, LAUNCH_TIMEOUT).await {
            Err(MonitorError::Runtime(msg)) => {
                assert!(msg.contains(want), "{script}: {msg}")
            }
            other => panic!("{script}: expected MonitorError::Runtime, got {other:?}"),
        }
        assert!(!config.socket.exists(), "{script}: socket left behind");
    }
    let mut config = fake_runtime_config(dir.path(), "");
    config.runtime_argv = vec!["/nonexistent/runtime".into()];
    match monitor::launch(&monitor_binary(), &config, LAUNCH_TIMEOUT).await {
        Err(MonitorError::Runtime(msg)) => {
            assert_eq!(msg, "exec /nonexistent/runtime: No such file or directory")
        }
        other => panic!("expected MonitorError::Runtime, got {other:?}"),
    }
}

#[tokio::test]
async fn launch_timeout_kills_the_monitor() {
    let _serial = SERIAL.read().await;
    let dir = tempfile::tempdir().unwrap();
    let config = fake_runtime_config(dir.path(), "echo $$ > runtime.pid; exec sleep 60");
    let timeout = Duration::from_millis(500);
    let started = Instant::now();
    match monitor::launch(&monitor_binary(), &config, timeout).await {
        Err(MonitorError::Timeout(t)) => assert_eq!(t, timeout),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    // The monitor (its argv names the tempdir) is gone ...
    let needle = dir.path().display().to_string();
    eventually("monitor killed", Duration::from_secs(5), || {
        processes_mentioning(&needle).is_empty()
    })
    .await;
    // ... and the hanging runtime is the caller's to clean up.
    let pid: i32 = std::fs::read_to_string(dir.path().join("runtime.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    if let Some(p) = ProcessRef::of(pid) {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmdline.starts_with(b"sleep\0") {
            if let Ok(fd) = p.open() {
                let _ = fd.signal(Signal::SIGKILL);
            }
        }
    }
}

#[tokio::test]
async fn usage_error_is_a_protocol_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = ContainerConfig {
        id: "x".into(),
        bundle: dir.path().into(),
        pid_file: dir.path().join("pid"),
        exit_file: dir.path().join("exit"),
        socket: dir.path().join("sock"),
        log_path: None,
        log_max_line: 100,
        // --tty needs --console-socket.
        tty: true,
        console_socket: None,
        stdin: false,
        stdin_once: false,
        oom_file: None,
        runtime_log: None,
        drain_timeout: Duration::ZERO,
        runtime_argv: vec!["true".into()],
    };
    match monitor::launch(&monitor_binary(), &config, LAUNCH_TIMEOUT).await {
        Err(MonitorError::Protocol(msg)) => {
            assert!(msg.contains("tty and console_socket go together"), "{msg}");
            assert!(msg.contains("exit status: 2"), "{msg}");
        }
        other => panic!("expected a protocol error, got {other:?}"),
    }
    match monitor::launch(Path::new("/nonexistent/monitor"), &config, LAUNCH_TIMEOUT).await {
        Err(MonitorError::Spawn { .. }) => {}
        other => panic!("expected a spawn error, got {other:?}"),
    }
}

#[tokio::test]
async fn drain_timeout_when_an_orphan_holds_the_output() {
    require_host();
    let _serial = SERIAL.read().await;
    let cg = TestCgroup::new();
    // Without a PID namespace the background sleep outlives the init,
    // holding its stdout, and is reparented to the monitor (subreaper).
    let drain = Duration::from_millis(1500);
    let mut c = Container::new(
        &cg,
        Spec {
            pid_ns: false,
            drain_timeout: drain,
            ..Spec::sh("sleep 1000 & echo bye; echo \"orphan $!\"")
        },
    );
    let l = c.launch_ok().await;
    c.start();
    let log = c.log_path();
    eventually("orphan pid logged", Duration::from_secs(10), || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("orphan "))
    })
    .await;
    let entries = c.log_entries();
    let orphan: i32 = entries
        .iter()
        .find_map(|e| e.content.strip_prefix("orphan "))
        .unwrap()
        .parse()
        .unwrap();
    // Still draining: the init is gone, the orphan is the monitor's child.
    eventually("orphan reparented", Duration::from_secs(5), || {
        parent_pid(orphan) == Some(l.monitor.pid)
    })
    .await;
    let t0 = Instant::now();
    let exit = c.wait_exit().await;
    let waited = t0.elapsed();
    assert_eq!(exit.exit_code, 0);
    let since_finish = Duration::from_nanos((now_ns() - exit.finished_at) as u64);
    assert!(
        since_finish >= drain - Duration::from_millis(50),
        "exit file written {since_finish:?} after the init exited, drain is {drain:?}"
    );
    assert!(waited < drain + Duration::from_secs(2), "{waited:?}");
    assert!(ProcessRef::of(orphan).is_some_and(|p| p.is_alive()));
    assert_eq!(
        entries_of(&c.log_entries(), "stdout")[0],
        ('F', "bye"),
        "output before the drain"
    );
    c.wait_monitor_gone().await;
}

#[tokio::test]
async fn zero_drain_still_logs_what_is_buffered() {
    require_host();
    let _serial = SERIAL.read().await;
    let cg = TestCgroup::new();
    // The orphan keeps the pipes open, so no EOF comes. The monitor is
    // stopped while the init writes ~48 kB (more than one read) and
    // exits: when it resumes, the exit and the full pipe are there at
    // once, and every line must still reach the log.
    let mut c = Container::new(
        &cg,
        Spec {
            pid_ns: false,
            drain_timeout: Duration::ZERO,
            readonly_root: false,
            ..Spec::sh("sleep 1000 & while [ ! -e /go ]; do usleep 5000; done; seq 1 10000")
        },
    );
    let l = c.launch_ok().await;
    c.start();
    let monitor_pid = Pid::from_raw(l.monitor.pid);
    nix::sys::signal::kill(monitor_pid, Signal::SIGSTOP).unwrap();
    std::fs::write(c.rootfs().join("go"), "").unwrap();
    let init = l.init.pid;
    let zombie = || {
        std::fs::read_to_string(format!("/proc/{init}/stat")).is_ok_and(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
    };
    let waited = tokio::time::timeout(
        Duration::from_secs(10),
        eventually("init exits", Duration::from_secs(10), zombie),
    )
    .await;
    nix::sys::signal::kill(monitor_pid, Signal::SIGCONT).unwrap();
    waited.unwrap();
    assert_eq!(c.wait_exit().await.exit_code, 0);
    let lines: Vec<String> = c.log_entries().iter().map(|e| e.content.clone()).collect();
    let want: Vec<String> = (1..=10000).map(|i| i.to_string()).collect();
    assert_eq!(lines.len(), want.len(), "lines logged");
    assert_eq!(lines, want);
    c.wait_monitor_gone().await;
}

/// A small tmpfs of the test's own; lazily unmounted on drop.
struct TmpfsMount {
    path: PathBuf,
}

impl TmpfsMount {
    fn new(path: &Path, size: &str) -> TmpfsMount {
        std::fs::create_dir_all(path).unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some(format!("size={size},mode=0755").as_str()),
        )
        .unwrap_or_else(|e| panic!("mount tmpfs on {}: {e}", path.display()));
        TmpfsMount {
            path: path.to_path_buf(),
        }
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[tokio::test]
async fn full_disk_drops_lines_but_keeps_reading() {
    require_host();
    let _serial = SERIAL.read().await;
    let cg = TestCgroup::new();
    // ~300 kB of output into a 32 kB file system; then, once the test has
    // made room, one more line.
    let mut c = Container::new(
        &cg,
        Spec {
            readonly_root: false,
            ..Spec::sh(
                "i=0; while [ $i -lt 3000 ]; do \
                 echo \"line$i xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"; \
                 i=$((i+1)); done; touch /written; \
                 while [ ! -e /go ]; do usleep 5000; done; echo after",
            )
        },
    );
    let logs = c
        .log_path()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let _tmpfs = TmpfsMount::new(&logs, "32k");
    c.launch_ok().await;
    c.start();
    // The monitor kept reading: the container got through all its output
    // (a full pipe would have blocked it at 64 kB).
    let written = c.rootfs().join("written");
    eventually(
        "container wrote everything",
        Duration::from_secs(20),
        || written.exists(),
    )
    .await;
    // ... and the monitor has consumed all of it: the pipe is empty (then
    // a moment for the last read's entries to be written or dropped).
    let init = c.launched.unwrap().init.pid;
    let pipe = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(format!("/proc/{init}/fd/1"))
        .expect("open the container's stdout pipe");
    eventually("monitor drained the pipe", Duration::from_secs(20), || {
        let mut unread: libc::c_int = 0;
        // SAFETY: FIONREAD writes an int into a live variable.
        let r = unsafe { libc::ioctl(pipe.as_raw_fd(), libc::FIONREAD, &mut unread) };
        r == 0 && unread == 0
    })
    .await;
    drop(pipe);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let full = std::fs::metadata(c.log_path()).unwrap().len();
    assert!(full <= 32 * 1024, "log size {full}");
    let before = read_log(&c.log_path());
    assert!(
        !before.is_empty() && before.len() < 3000,
        "{} lines",
        before.len()
    );
    // Make room; the monitor's descriptor keeps appending to the same file.
    std::fs::OpenOptions::new()
        .write(true)
        .open(c.log_path())
        .unwrap()
        .set_len(0)
        .unwrap();
    std::fs::write(c.rootfs().join("go"), "").unwrap();
    let exit = c.wait_exit().await;
    assert_eq!(exit.exit_code, 0);
    // Only whole entries (read_log checks each line), in order.
    let after = read_log(&c.log_path());
    assert_eq!(after.last().map(|e| e.content.as_str()), Some("after"));
    let numbers: Vec<usize> = before
        .iter()
        .chain(&after[..after.len() - 1])
        .map(|e| {
            e.content
                .strip_prefix("line")
                .and_then(|r| r.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("torn entry {e:?}"))
        })
        .collect();
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "order: {numbers:?}"
    );
    println!(
        "{} of 3000 lines fit before the disk was full",
        before.len()
    );
}

fn smaps_kb(pid: i32) -> Vec<(String, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((
                k.to_string(),
                v.trim().trim_end_matches(" kB").parse().ok()?,
            ))
        })
        .collect()
}

#[tokio::test]
async fn memory_of_an_idle_monitor() {
    require_host();
    // Alone: no other monitor shares its pages while it is measured.
    let _serial = SERIAL.write().await;
    let cg = TestCgroup::new();
    let mut c = Container::new(&cg, Spec::new(&["sleep", "1000"]));
    let l = c.launch_ok().await;
    c.start();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let smaps = smaps_kb(l.monitor.pid);
    let get = |k: &str| smaps.iter().find(|(n, _)| n == k).map_or(0, |(_, v)| *v);
    let (rss, pss) = (get("Rss"), get("Pss"));
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!(
        "idle monitor, {profile} build ({}): Rss {rss} kB, Pss {pss} kB \
         (Pss_Anon {} kB, Pss_File {} kB)",
        monitor_binary().display(),
        get("Pss_Anon"),
        get("Pss_File")
    );
    assert!(rss > 0 && pss > 0);
    assert!(rss < 2048, "monitor RSS {rss} kB is not under 2 MB");
    // Most of the PSS is the monitor's own text, which a debug build has
    // much more of (~0.9 MB PSS here against ~0.58 MB for release). The
    // bounds leave room for page-cache state; the numbers are printed.
    let pss_bound = if cfg!(debug_assertions) { 1280 } else { 700 };
    assert!(pss < pss_bound, "monitor PSS {pss} kB ({profile} build)");
    c.kill("KILL");
    assert_eq!(c.wait_exit().await.exit_code, 137);
}

/// What an attach session brought.
#[derive(Debug, Default)]
struct Attached {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// The monitor's end frame came.
    ended: bool,
    /// The connection closed.
    closed: bool,
}

impl Attached {
    fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Reads an attach session's frames into `got` until `enough` holds or
/// the session is over.
async fn read_until(
    output: &mut AttachOutput,
    got: &mut Attached,
    enough: impl Fn(&Attached) -> bool,
) {
    let deadline = Instant::now() + EXIT_TIMEOUT;
    while !enough(got) && !got.closed {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = tokio::time::timeout(left, output.next())
            .await
            .unwrap_or_else(|_| panic!("attach session: nothing more after {got:?}"))
            .expect("read the attach session");
        match frame {
            Some(Frame::Stdout(data)) => got.stdout.extend(data),
            Some(Frame::Stderr(data)) => got.stderr.extend(data),
            Some(Frame::End) => got.ended = true,
            Some(other) => panic!("the monitor sent {other:?}"),
            None => got.closed = true,
        }
    }
}

/// Reads an attach session to its end.
async fn read_to_end(output: &mut AttachOutput) -> Attached {
    let mut got = Attached::default();
    read_until(output, &mut got, |_| false).await;
    got
}

async fn attach(c: &Container, stdin: bool) -> AttachSession {
    monitor::attach(&c.config.socket, stdin, REQUEST_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("attach to {}: {e}", c.id))
}

#[tokio::test]
async fn attach_gets_the_output_while_the_log_is_written() {
    require_host();
    let _serial = SERIAL.read().await;
    let cg = TestCgroup::new();
    let mut c = Container::new(
        &cg,
        Spec {
            readonly_root: false,
            ..Spec::sh(
                "echo before; while [ ! -e /go ]; do usleep 10000; done; \
                 echo out1; echo err1 >&2; echo out2",
            )
        },
    );
    c.launch_ok().await;
    c.start();
    let log = c.log_path();
    eventually("first line logged", Duration::from_secs(10), || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("before"))
    })
    .await;
    // Output from the moment of the attach on, not before.
    let mut session = attach(&c, false).await;
    std::fs::write(c.rootfs().join("go"), "").unwrap();
    let got = read_to_end(&mut session.output).await;
    assert!(got.ended && got.closed, "{got:?}");
    assert_eq!(got.stdout_text(), "out1\nout2\n");
    assert_eq!(got.stderr, b"err1\n");
    let exit = c.wait_exit().await;
    assert_eq!(exit.exit_code, 0);
    let entries = c.log_entries();
    assert_eq!(
        entries_of(&entries, "stdout"),
        [('F', "before"), ('F', "out1"), ('F', "out2")]
    );
    assert_eq!(entries_of(&entries, "stderr"), [('F', "err1")]);
    c.wait_monitor_gone().await;
}

#[tokio::test]
async fn attach_writes_stdin_to_cat() {
    require_host();
    let _serial = SERIAL.read().await;
    let cg = TestCgroup::new();
    let mut c = Container::new(
        &cg,
        Spec {
            stdin: true,
            ..Spec::new(&["cat"])
        },
    );
    c.launch_ok().await;
    c.start();
    let AttachSession {
        mut output,
        mut input,
    } = attach(&c, true).await;
    input.stdin(b"hello\n").await.unwrap();
    let mut got = Attached::default();
    read_until(&mut output, &mut got, |g| g.stdout.ends_with(b"\n")).await;
    assert_eq!(got.stdout_text(), "hello\n");
    // Without stdin_once the container's stdin outlives the session.
    drop((output, input));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(c.state()["status"], "running");
    let AttachSession {
        mut output,
        mut input,
    } = attach(&c, true).await;
    input.stdin(b"again\n").await.unwrap();
    let mut got = Attached::default();
    read_until(&mut output, &mut got, |g| g.stdout.ends_with(b"\n")).await;
    assert_eq!(got.stdout_text(), "again\n");
    c.kill("KILL");
    let got = read_to_end(&mut output).await;
    assert!(got.ended, "{got:?}");
    assert_eq!(c.wait_exit().await.exit_code, 137);
    let entries = c.log_entries();
    assert_eq!(
        entries_of(&entries, "stdout"),
        [('F', "hello"), ('F', "again")]
    );
}

#[tokio::test]
async fn stdin_once_closes_stdin_after_the_session() {
    require_host();
    let _serial = SERIAL.read().await;
    let cg = TestCgroup::new();
    // Ended by the client's stdin close, and by the client going away.
    for close in [true, false] {
        let mut c = Container::new(
            &cg,
            Spec {
                stdin: true,
                stdin_once: true,
                ..Spec::sh("cat; echo cat-done; sleep 1000")
            },
        );
        c.launch_ok().await;
        c.start();
        let AttachSession {
            mut output,
            mut input,
        } = attach(&c, true).await;
        input.stdin(b"one\n").await.unwrap();
        let mut got = Attached::default();
        read_until(&mut output, &mut got, |g| g.stdout.ends_with(b"\n")).await;
        assert_eq!(got.stdout_text(), "one\n");
        if close {
            input.close_stdin().await.unwrap();
            read_until(&mut output, &mut got, |g| {
                g.stdout_text().contains("cat-done")
            })
            .await;
        } else {
            drop((output, input));
            let log = c.log_path();
            eventually("cat ends", Duration::from_secs(10), || {
                std::fs::read_to_string(&log).is_ok_and(|t| t.contains("cat-done"))
            })
            .await;
        }
        // Closed for good: no later session writes it.
        match monitor::attach(&c.config.socket, true, REQUEST_TIMEOUT).await {
            Err(MonitorError::Refused(msg)) => {
                assert_eq!(msg, "the container's stdin is closed")
            }
            Err(e) => panic!("attach after stdin_once: {e}"),
            Ok(_) => panic!("attach with stdin accepted after stdin_once"),
        }
        c.kill("KILL");
        assert_eq!(c.wait_exit().await.exit_code, 137);
        let entries = c.log_entries();
        assert_eq!(
            entries_of(&entries, "stdout"),
            [('F', "one"), ('F', "cat-done")]
        );
    }
}

#[tokio::test]
async fn attach_resizes_a_tty_and_gets_its_output() {
    require_host();
    let _serial = SERIAL.read().await;
    let cg = TestCgroup::new();
    let mut c = Container::new(
        &cg,
        Spec {
            tty: true,
            stdin: true,
            readonly_root: false,
            ..Spec::sh(
                "stty size; echo to-stderr >&2; \
                 while [ ! -e /go ]; do usleep 10000; done; stty size; echo done",
            )
        },
    );
    c.launch_ok().await;
    monitor::resize(&c.config.socket, 120, 40, REQUEST_TIMEOUT)
        .await
        .expect("resize before start");
    let AttachSession {
        mut output,
        mut input,
    } = attach(&c, true).await;
    c.start();
    let mut got = Attached::default();
    read_until(&mut output, &mut got, |g| {
        g.stdout_text().contains("to-stderr")
    })
    .await;
    input.resize(100, 30).await.unwrap();
    // The frame is applied as soon as the monitor reads it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    std::fs::write(c.rootfs().join("go"), "").unwrap();
    read_until(&mut output, &mut got, |_| false).await;
    assert!(got.ended, "{got:?}");
    // A terminal has one output: everything comes as stdout.
    assert!(got.stderr.is_empty(), "{got:?}");
    assert_eq!(
        got.stdout_text(),
        "40 120\r\nto-stderr\r\n30 100\r\ndone\r\n"
    );
    assert_eq!(c.wait_exit().await.exit_code, 0);
    let entries = c.log_entries();
    let lines: Vec<&str> = entries.iter().map(|e| e.content.as_str()).collect();
    assert_eq!(lines, ["40 120", "to-stderr", "30 100", "done"]);
}

/// Sends `attach` on a raw connection and reads the reply, without ever
/// reading the session's frames.
fn attach_and_stop_reading(socket: &Path) -> std::os::unix::net::UnixStream {
    use std::io::Read;
    let mut stream = std::os::unix::net::UnixStream::connect(socket).expect("connect");
    stream.write_all(b"attach\n").unwrap();
    let mut reply = Vec::new();
    let mut byte = [0u8];
    while !reply.ends_with(b"\n") {
        stream.read_exact(&mut byte).expect("reply");
        reply.push(byte[0]);
    }
    assert_eq!(reply, b"ok\n");
    stream
}

#[tokio::test]
async fn a_stuck_attach_client_does_not_block_the_log() {
    require_host();
    let _serial = SERIAL.read().await;
    let cg = TestCgroup::new();
    let lines = 300_000;
    let mut c = Container::new(&cg, Spec::new(&["seq", "1", &lines.to_string()]));
    c.launch_ok().await;
    let stuck = attach_and_stop_reading(&c.config.socket);
    c.start();
    let exit = c.wait_exit().await;
    assert_eq!(exit.exit_code, 0);
    c.wait_monitor_gone().await;
    let logged: Vec<String> = c.log_entries().into_iter().map(|e| e.content).collect();
    let want: Vec<String> = (1..=lines).map(|i| i.to_string()).collect();
    assert!(logged == want, "{} of {lines} lines logged", logged.len());
    // The client was cut off: some output, then the end of the
    // connection without an end frame.
    let mut bytes = Vec::new();
    use std::io::Read;
    (&stuck)
        .read_to_end(&mut bytes)
        .expect("read the stuck session");
    let mut decoder = peapod_monitor_protocol::FrameDecoder::new();
    decoder.feed(&bytes);
    let mut stdout = Vec::new();
    while let Some(frame) = decoder.next_frame().expect("frames") {
        match frame {
            Frame::Stdout(data) => stdout.extend(data),
            other => panic!("the stuck client got {other:?}"),
        }
    }
    let all: String = want.iter().map(|l| format!("{l}\n")).collect();
    println!(
        "the stuck client got {} of {} bytes",
        stdout.len(),
        all.len()
    );
    assert!(!stdout.is_empty() && stdout.len() < all.len());
    assert!(all.as_bytes().starts_with(&stdout));
}

#[tokio::test]
async fn attach_with_stdin_is_refused_without_stdin() {
    require_host();
    let _serial = SERIAL.read().await;
    let cg = TestCgroup::new();
    let mut c = Container::new(&cg, Spec::new(&["sleep", "1000"]));
    c.launch_ok().await;
    match monitor::attach(&c.config.socket, true, REQUEST_TIMEOUT).await {
        Err(MonitorError::Refused(msg)) => assert_eq!(msg, "the container has no stdin"),
        Err(e) => panic!("attach with stdin: {e}"),
        Ok(_) => panic!("attach with stdin accepted without stdin"),
    }
    // Output only is fine.
    let mut session = attach(&c, false).await;
    c.start();
    c.kill("KILL");
    let got = read_to_end(&mut session.output).await;
    assert!(got.ended && got.stdout.is_empty(), "{got:?}");
    assert_eq!(c.wait_exit().await.exit_code, 137);
}
