//! The `peapod` command line as an operator meets it: help, version, usage
//! errors and their exit status, the documented default configuration,
//! `config check`, and JSON logs from a real `serve`.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use peapod::api;
use peapod::api::runtime_service_client::RuntimeServiceClient;

/// Runs `peapod ARGS` without RUST_BACKTRACE (this machine sets it for
/// everything) or PEAPOD_CONFIG; killed after 20 s, as a command that
/// should fail at once might start a daemon instead.
fn peapod(args: &[&str]) -> Output {
    peapod_with(args, |_| {})
}

fn peapod_with(args: &[&str], env: impl FnOnce(&mut Command)) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_peapod"));
    cmd.args(args)
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .env_remove("PEAPOD_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    env(&mut cmd);
    let mut child = cmd.spawn().expect("run peapod");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "peapod {args:?} still ran after 20s:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const CONFIG_FLAGS: &[&str] = &[
    "--config",
    "--socket",
    "--root",
    "--state",
    "--log-level",
    "--cgroup-driver",
    "--monitor-path",
    "--cni-conf-dir",
    "--cni-bin-dir",
    "--streaming-address",
    "--streaming-port",
    "--metrics-address",
    "--insecure-registry",
    "--registry-mirror",
];

#[test]
fn every_help_exits_0_and_names_every_flag() {
    let serve_flags: Vec<&str> = CONFIG_FLAGS
        .iter()
        .copied()
        .chain(["--log-format", "text", "json"])
        .collect();
    let cases: Vec<(&[&str], Vec<&str>)> = vec![
        (&["--help"], vec!["serve", "version", "config", "--version"]),
        (&["help"], vec!["serve", "version", "config"]),
        (&["serve", "--help"], serve_flags.clone()),
        (&["help", "serve"], serve_flags),
        (&["version", "--help"], vec![]),
        (&["config", "--help"], vec!["default", "show", "check"]),
        (&["config", "default", "--help"], vec![]),
        (&["config", "show", "--help"], CONFIG_FLAGS.to_vec()),
        (
            &["config", "check", "--help"],
            vec!["[FILE]", "/etc/peapod/config.toml"],
        ),
    ];
    for (args, names) in cases {
        let out = peapod(args);
        assert!(out.status.success(), "peapod {args:?}: {}", stderr(&out));
        let help = stdout(&out);
        assert!(help.contains("Usage: peapod"), "peapod {args:?}:\n{help}");
        for name in names {
            assert!(help.contains(name), "peapod {args:?} lacks {name}:\n{help}");
        }
    }
    // Each flag that sets a key says which.
    let help = stdout(&peapod(&["serve", "--help"]));
    for key in [
        "[key: socket]",
        "[key: cni.bin_dirs]",
        "[key: images.mirrors]",
    ] {
        assert!(help.contains(key), "{key} missing:\n{help}");
    }
}

#[test]
fn version_prints_the_version() {
    let out = peapod(&["--version"]);
    assert!(out.status.success());
    assert_eq!(stdout(&out).trim(), "peapod 0.1.0");
    let out = peapod(&["version"]);
    assert!(out.status.success());
    assert!(
        stdout(&out).starts_with("peapod 0.1.0 (CRI runtime API v1, version "),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_bad_flag_or_value_is_one_line_and_exit_2() {
    let cases: &[(&[&str], &[&str])] = &[
        (&["serve", "--bogus"], &["--bogus"]),
        (
            &["serve", "--cgroup-driver", "nope"],
            &["--cgroup-driver", "nope"],
        ),
        (
            &["serve", "--streaming-port", "x"],
            &["--streaming-port", "'x'"],
        ),
        (
            &["serve", "--streaming-port", "70000"],
            &["--streaming-port", "70000"],
        ),
        (
            &["serve", "--registry-mirror", "docker.io"],
            &["--registry-mirror", "REGISTRY=URL"],
        ),
        (&["serve", "--root", "relative"], &["--root", "relative"]),
        (
            &["serve", "--streaming-address", "nowhere"],
            &["--streaming-address", "nowhere"],
        ),
        (
            &["config", "show", "--log-level", "a=b=c"],
            &["--log-level"],
        ),
        (
            &["config", "show", "--cni-bin-dir", "/a:rel"],
            &["--cni-bin-dir", "rel"],
        ),
        (&["serve", "--socket"], &["--socket"]),
        (&["nope"], &["nope"]),
        (&["config", "nope"], &["nope"]),
    ];
    for (args, names) in cases {
        let out = peapod(args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "peapod {args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "peapod {args:?}:\n{err}");
        assert!(err.starts_with("peapod: "), "{err}");
        for name in *names {
            assert!(
                err.contains(name),
                "peapod {args:?} does not name {name}: {err}"
            );
        }
        assert!(!err.contains("backtrace"), "{err}");
        assert!(stdout(&out).is_empty(), "peapod {args:?}: {}", stdout(&out));
    }
}

#[test]
fn a_run_time_error_is_one_line_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let missing = missing.to_str().unwrap();
    let out = peapod(&["serve", "--config", missing]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!("peapod: cannot read config file {missing}: ")),
        "{err}"
    );
    assert_eq!(
        err.matches("No such file").count(),
        1,
        "the cause once: {err}"
    );

    // The file's problem names the file, line and key.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[streaming]\nport = 1\naddress = \"x\"\n").unwrap();
    let out = peapod(&["serve", "--config", bad.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err.trim_end(),
        format!(
            "peapod: config file {}:3:1: streaming.address: \"x\" is not an IP address",
            bad.display()
        )
    );

    // A backtrace when one was asked for.
    let out = peapod_with(&["serve", "--config", missing], |cmd| {
        cmd.env("RUST_BACKTRACE", "1");
    });
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).lines().count() > 1, "{}", stderr(&out));
}

#[test]
fn the_default_configuration_checks_and_shows_as_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let out = peapod(&["config", "default"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let template = stdout(&out);
    assert!(template.contains("# Default: "), "{template}");
    let file = dir.path().join("config.toml");
    std::fs::write(&file, &template).unwrap();
    let file = file.to_str().unwrap();

    let out = peapod(&["config", "check", file]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{file}: OK\n"));

    // An empty file is the defaults, whatever /etc/peapod holds.
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    let defaults = peapod(&["config", "show", "--config", empty.to_str().unwrap()]);
    assert!(defaults.status.success(), "{}", stderr(&defaults));
    let shown = peapod(&["config", "show", "--config", file]);
    assert!(shown.status.success(), "{}", stderr(&shown));
    assert_eq!(stdout(&shown), stdout(&defaults));
    if !Path::new("/etc/peapod/config.toml").exists() {
        assert_eq!(stdout(&peapod(&["config", "show"])), stdout(&defaults));
    }

    // Flags override the file.
    let shown = peapod(&[
        "config",
        "show",
        "--config",
        file,
        "--streaming-port",
        "10010",
        "--registry-mirror",
        "docker.io=https://mirror.lan",
    ]);
    let v: toml::Value = toml::from_str(&stdout(&shown)).unwrap();
    assert_eq!(v["streaming"]["port"].as_integer(), Some(10010));
    assert_eq!(
        v["images"]["mirrors"]["docker.io"][0].as_str(),
        Some("https://mirror.lan")
    );
}

#[test]
fn config_check_names_each_problem_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    let check = |text: &str| {
        std::fs::write(&file, text).unwrap();
        let out = peapod(&["config", "check", file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{text}: {}", stderr(&out));
        assert!(stdout(&out).is_empty());
        stderr(&out)
    };
    let path = file.display();

    let err = check("[cni]\nbogus = 1\n");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!("{path}:2:1: cni.bogus: unknown field `bogus`")),
        "{err}"
    );

    let err = check("[cni]\nplugin_timeout_secs = -1\n");
    assert!(
        err.starts_with(&format!("{path}:2:23: cni.plugin_timeout_secs: ")),
        "{err}"
    );

    let err = check("log_level = \"debug\"\n[images]\nmax_concurrent_downloads = 0\n");
    assert_eq!(
        err,
        format!("{path}:3:1: images.max_concurrent_downloads: must be at least 1\n")
    );

    let err = check("socket = \"rel.sock\"\nbogus = true\n[streaming]\naddress = \"x\"\n");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(
        lines[0].starts_with(&format!("{path}:1:1: socket: ")),
        "{err}"
    );
    assert!(
        lines[1].starts_with(&format!("{path}:2:1: bogus: ")),
        "{err}"
    );
    assert!(
        lines[2].starts_with(&format!("{path}:4:1: streaming.address: ")),
        "{err}"
    );

    // PEAPOD_CONFIG names the default file.
    std::fs::write(&file, "[cni]\nconf_dir = \"/etc/cni/net.d\"\n").unwrap();
    let out = peapod_with(&["config", "check"], |cmd| {
        cmd.env("PEAPOD_CONFIG", &file);
    });
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{path}: OK\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_logs_json_lines_to_stderr() {
    common::require_host();
    let binaries = common::Binaries::current();
    let dir = tempfile::Builder::new()
        .prefix("peapod-test-")
        .tempdir()
        .unwrap();
    let socket = dir.path().join("peapod.sock");
    let net_d = dir.path().join("net.d");
    std::fs::create_dir_all(&net_d).unwrap();
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut daemon = Command::new(&binaries.daemon)
        .arg("serve")
        .args(["--log-format", "json", "--log-level", "peapod=debug"])
        .arg("--socket")
        .arg(&socket)
        .arg("--root")
        .arg(dir.path().join("root"))
        .arg("--state")
        .arg(dir.path().join("state"))
        .arg("--cni-conf-dir")
        .arg(&net_d)
        .arg("--cni-bin-dir")
        .arg(common::CNI_BIN_DIR)
        .arg("--monitor-path")
        .arg(&binaries.monitor)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let log = || std::fs::read_to_string(&err_path).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        if let Some(status) = daemon.try_wait().unwrap() {
            panic!("peapod exited at start ({status}):\n{}", log());
        }
        assert!(
            Instant::now() < deadline,
            "no socket within 30s:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let channel = peapod_cri_client::connect(&socket).await.unwrap();
    let version = RuntimeServiceClient::new(channel)
        .version(api::VersionRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(version.runtime_name, "peapod");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = daemon.wait().unwrap();
    assert!(status.success(), "{status}:\n{}", log());

    let log = log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: not JSON: {l}")))
        .collect();
    let serving = lines
        .iter()
        .find(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("serving CRI on"))
        })
        .unwrap_or_else(|| panic!("no \"serving CRI on\" line:\n{log}"));
    assert_eq!(serving["level"], "INFO", "{serving}");
    assert!(serving["timestamp"].is_string(), "{serving}");
    assert_eq!(std::fs::read_to_string(&out_path).unwrap(), "", "stdout");
}
