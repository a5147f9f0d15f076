//! The operator's first hour, as the README gives it: the first command
//! (`hack/run.sh`) brings up a daemon that answers, the install script puts
//! exactly its files in place and the uninstall script takes exactly those
//! away, the service file is one systemd accepts, and the daemon tells the
//! service manager when it is ready.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use peapod::api;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The scripts' release builds go to a target directory of their own: the
/// test's `cargo test` holds the lock of the usual one while it runs.
fn scripts_target_dir() -> PathBuf {
    repo().join("target").join("first-hour")
}

fn script(name: &str) -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("hack").join(name))
        .env("CARGO_TARGET_DIR", scripts_target_dir())
        .env_remove("RUST_LOG");
    cmd
}

/// Waits until `child` serves CRI on `socket` (a release build may come
/// first), or fails with its output.
fn wait_for_socket(child: &mut Child, socket: &Path, log: &Path, limit: Duration) {
    let deadline = Instant::now() + limit;
    while std::os::unix::net::UnixStream::connect(socket).is_err() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "hack/run.sh ended ({status}) before serving:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "no socket after {limit:?}:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

async fn version_of(socket: &Path) -> api::VersionResponse {
    let channel = peapod_cri_client::connect(socket).await.expect("connect");
    api::runtime_service_client::RuntimeServiceClient::new(channel)
        .version(api::VersionRequest::default())
        .await
        .expect("Version")
        .into_inner()
}

fn stop(child: &mut Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    child.wait().unwrap();
}

/// One `hack/run.sh` with a private socket and directories; returns the
/// mtime of the binary it ran.
async fn run_once(dir: &Path) -> std::time::SystemTime {
    let socket = dir.join("peapod.sock");
    let log = dir.join("run.log");
    let mut child = script("run.sh")
        .args(["--socket", &socket.to_string_lossy()])
        .args(["--root", &dir.join("root").to_string_lossy()])
        .args(["--state", &dir.join("state").to_string_lossy()])
        .args(["--cni-conf-dir", &dir.join("net.d").to_string_lossy()])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(dir.join("run.err")).unwrap())
        .spawn()
        .expect("bash");
    wait_for_socket(
        &mut child,
        &socket,
        &dir.join("run.err"),
        Duration::from_secs(1800),
    );
    let v = version_of(&socket).await;
    assert_eq!(v.runtime_name, "peapod");
    assert_eq!(v.runtime_api_version, "v1");
    stop(&mut child);
    std::fs::metadata(scripts_target_dir().join("release/peapod"))
        .unwrap()
        .modified()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_command_brings_up_a_daemon_and_a_second_run_builds_nothing() {
    require_host();
    let dir = tempfile::tempdir().unwrap();
    let first = run_once(dir.path()).await;
    let second = run_once(dir.path()).await;
    assert_eq!(first, second, "the second run rebuilt the daemon");
}

/// Every path below `root` that is a file.
fn files_below(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

fn run_script(name: &str, root: &Path) {
    let out = script(name)
        .env("PEAPOD_INSTALL_ROOT", root)
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "hack/{name} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn install_puts_its_files_in_place_and_uninstall_takes_just_those() {
    require_host();
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    // The operator's own crictl.yaml is kept.
    std::fs::create_dir_all(r.join("etc")).unwrap();
    std::fs::write(r.join("etc/crictl.yaml"), "runtime-endpoint: mine\n").unwrap();
    run_script("install.sh", r);
    let installed = files_below(r);
    for f in [
        "etc/crictl.yaml",
        "etc/peapod/config.toml",
        "etc/systemd/system/peapod.service",
        "usr/local/bin/peapod",
        "usr/local/bin/peapod-monitor",
        "usr/local/share/peapod/installed",
    ] {
        assert!(
            installed.contains(&PathBuf::from(f)),
            "{f} missing: {installed:?}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(r.join("etc/crictl.yaml")).unwrap(),
        "runtime-endpoint: mine\n"
    );
    // The config is the documented default, which the daemon accepts.
    let check = Command::new(r.join("usr/local/bin/peapod"))
        .args(["config", "check"])
        .arg(r.join("etc/peapod/config.toml"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    // Something of the operator's beside them stays.
    std::fs::write(r.join("usr/local/bin/other-tool"), "x").unwrap();
    run_script("uninstall.sh", r);
    assert_eq!(
        files_below(r),
        [
            PathBuf::from("etc/crictl.yaml"),
            PathBuf::from("usr/local/bin/other-tool")
        ]
    );
}

#[test]
fn the_service_file_is_one_systemd_accepts() {
    require_host();
    assert!(
        which("systemd-analyze"),
        "systemd-analyze is missing: install Debian's systemd package (hack/install-deps.sh does)"
    );
    let unit = std::fs::read_to_string(repo().join("hack/peapod.service")).unwrap();
    let settings: Vec<&str> = unit.lines().map(str::trim).collect();
    for want in [
        "Type=notify",
        "KillMode=process",
        "Delegate=yes",
        "Restart=always",
        "OOMScoreAdjust=-999",
        "ExecStart=/usr/local/bin/peapod serve",
    ] {
        assert!(settings.contains(&want), "{want} missing from the unit");
    }
    // systemd checks the binary it would start: point it at this build's.
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("peapod.service");
    let daemon = env!("CARGO_BIN_EXE_peapod");
    std::fs::write(&local, unit.replace("/usr/local/bin/peapod", daemon)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&local)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_says_ready_once_its_socket_answers() {
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify");
    let manager = UnixDatagram::bind(&notify).unwrap();
    manager
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let d = TestDaemon::start_with(Options {
        cni: false,
        env: vec![(
            "NOTIFY_SOCKET".to_string(),
            notify.to_string_lossy().into_owned(),
        )],
        ..Default::default()
    });
    let mut buf = [0u8; 512];
    let n = manager.recv(&mut buf).expect("no READY=1 from the daemon");
    let message = String::from_utf8_lossy(&buf[..n]).into_owned();
    let lines: Vec<&str> = message.lines().collect();
    assert_eq!(lines[0], "READY=1");
    assert!(
        lines.contains(&&*format!("MAINPID={}", d.pid())),
        "{message}"
    );
    // Ready means answering.
    assert_eq!(version_of(&d.socket).await.runtime_name, "peapod");
}
