//! The daemon as a process: restart and crash recovery, retries that join
//! work in flight, graceful shutdown, the socket, and the config file.

mod common;

use std::time::Duration;

use common::gate::Gate;
use common::*;
use peapod::api;
use tonic::Code;

/// The client's deadline passed: tonic reports its own timer as Cancelled,
/// a server-side expiry as DeadlineExceeded.
fn gave_up(e: &tonic::Status) -> bool {
    matches!(e.code(), Code::DeadlineExceeded | Code::Cancelled)
}

fn start_time(pid: i32) -> u64 {
    peapod::process::start_time(pid).expect("process exists")
}

#[tokio::test(flavor = "multi_thread")]
async fn kill9_and_restart_keeps_pods_and_notices_dead_ones() {
    let mut d = TestDaemon::start();
    let id = d.run_pod(d.pod_config("survivor")).await;
    let other = d.run_pod(d.pod_config("victim")).await;
    let pid = d.infra_pid(&id).await;
    let other_pid = d.infra_pid(&other).await;
    let started = start_time(pid);
    let ip = d.status(&id).await.status.unwrap().network.unwrap().ip;

    d.kill9();
    assert!(d.socket.exists(), "kill -9 leaves the socket file behind");
    assert!(process_exists(pid), "the pod must outlive the daemon");
    // While the daemon is down, one pod's infra process dies.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(other_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    eventually("victim infra exits", || !process_exists(other_pid)).await;

    d.spawn(); // replaces the stale socket
    let st = d.status(&id).await;
    let status = st.status.unwrap();
    assert_eq!(status.state, api::PodSandboxState::SandboxReady as i32);
    assert_eq!(status.network.unwrap().ip, ip);
    assert_eq!(st.info["pid"].parse::<i32>().unwrap(), pid);
    assert_eq!(start_time(pid), started, "same process, not a new one");
    let st = d.status(&other).await.status.unwrap();
    assert_eq!(st.state, api::PodSandboxState::SandboxNotready as i32);

    // An infra process dying while the daemon runs is noticed without a call.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ids = d.list_ids().await;
        if ids
            .iter()
            .any(|(i, s)| i == &id && *s == api::PodSandboxState::SandboxNotready as i32)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "pod never became NOTREADY: {ids:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    d.remove_all().await;
    assert!(d.list_ids().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_exits_cleanly_and_pods_keep_running() {
    let mut d = TestDaemon::start();
    let id = d.run_pod(d.pod_config("stays")).await;
    let pid = d.infra_pid(&id).await;
    let status = d.terminate();
    assert!(status.success(), "exit status {status}");
    assert!(!d.socket.exists(), "socket removed on clean exit");
    assert!(process_exists(pid));
    d.spawn();
    assert_eq!(
        d.status(&id).await.status.unwrap().state,
        api::PodSandboxState::SandboxReady as i32
    );
    d.remove_all().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_daemon_on_the_same_socket_is_refused() {
    let d = TestDaemon::start_with(Options {
        cni: false,
        ..Default::default()
    });
    let other_root = d.dir.path().join("root2");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_peapod"))
        .args(["serve", "--socket"])
        .arg(&d.socket)
        .arg("--root")
        .arg(&other_root)
        .arg("--state")
        .arg(d.dir.path().join("state2"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already serving"), "{err}");
    // The first one still answers.
    let v = d
        .runtime()
        .await
        .version(api::VersionRequest::default())
        .await
        .unwrap();
    assert_eq!(v.into_inner().version, "0.1.0");
}

#[test]
fn config_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("config.toml");
    std::fs::write(
        &bad,
        "socket = \"/tmp/x.sock\"\nsandbox_image = \"pause\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_peapod"))
        .args(["serve", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sandbox_image"), "{err}");

    std::fs::write(&bad, "[cni]\nplugin_timeout_secs = -1\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_peapod"))
        .args(["config", "show", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("plugin_timeout_secs"));

    // `peapod config show` prints the effective config, which parses back.
    std::fs::write(&bad, "state_dir = \"/tmp/elsewhere\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_peapod"))
        .args(["config", "show", "--config"])
        .arg(&bad)
        .args(["--socket", "/tmp/flag.sock"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let v: toml::Value = toml::from_str(&text).unwrap();
    assert_eq!(v["state_dir"].as_str(), Some("/tmp/elsewhere"));
    assert_eq!(v["socket"].as_str(), Some("/tmp/flag.sock"));
    assert_eq!(v["root_dir"].as_str(), Some("/var/lib/peapod"));
}

/// Kubelet retries RunPodSandbox with the same metadata when its deadline
/// passes; the retry must get the sandbox being created, not an error.
#[tokio::test(flavor = "multi_thread")]
async fn a_retry_after_a_deadline_joins_the_creation_in_flight() {
    let gate_base = tempfile::tempdir().unwrap();
    let gate = Gate::install(gate_base.path());
    let d = TestDaemon::start_with(Options {
        cni_bin_dir: Some(gate.bin_dirs()),
        ..Default::default()
    });
    Gate::add_to_network(&d.cni_conf_dir);
    let config = d.pod_config("slow");

    let mut req = tonic::Request::new(api::RunPodSandboxRequest {
        config: Some(config.clone()),
        runtime_handler: String::new(),
    });
    req.set_timeout(Duration::from_millis(300));
    let e = d.runtime().await.run_pod_sandbox(req).await.unwrap_err();
    assert!(gave_up(&e), "{e:?}");
    eventually("CNI ADD reached the gate", || gate.started()).await;

    // Lists and status calls are answered while the creation is stuck.
    assert!(
        d.list_ids().await.is_empty(),
        "a sandbox in creation is not listed"
    );
    let mut rt = d.runtime().await;
    rt.status(api::StatusRequest::default()).await.unwrap();

    // The retry waits for the same creation.
    let retry = {
        let mut rt = d.runtime().await;
        let config = config.clone();
        tokio::spawn(async move {
            rt.run_pod_sandbox(api::RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            })
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !retry.is_finished(),
        "the retry must wait for the creation in flight"
    );
    gate.open();
    let id = retry
        .await
        .unwrap()
        .expect("retry gets the sandbox")
        .into_inner()
        .pod_sandbox_id;
    let ids = d.list_ids().await;
    assert_eq!(
        ids,
        vec![(id.clone(), api::PodSandboxState::SandboxReady as i32)]
    );

    // Once delivered, the same metadata again is AlreadyExists.
    let e = rt
        .run_pod_sandbox(api::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    assert!(e.message().contains(&id));

    // A creation that finishes after its caller gave up, with no retry
    // waiting, is handed to the next retry.
    gate.close();
    let config = d.pod_config("late");
    let mut req = tonic::Request::new(api::RunPodSandboxRequest {
        config: Some(config.clone()),
        runtime_handler: String::new(),
    });
    req.set_timeout(Duration::from_millis(300));
    let e = rt.run_pod_sandbox(req).await.unwrap_err();
    assert!(gave_up(&e), "{e:?}");
    eventually("CNI ADD reached the gate", || gate.started()).await;
    gate.open();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while d.list_ids().await.len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "late sandbox never appeared"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let late = d
        .list_ids()
        .await
        .into_iter()
        .find(|(i, _)| *i != id)
        .unwrap()
        .0;
    let got = rt
        .run_pod_sandbox(api::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    assert_eq!(got, late);
    d.remove_all().await;
}

/// `kill -9` of the daemon in the middle of RunPodSandbox: the next start
/// rolls the half-made sandbox back (CNI DEL, process, mounts, cgroup).
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_during_creation_is_rolled_back_on_restart() {
    let gate_base = tempfile::tempdir().unwrap();
    let gate = Gate::install(gate_base.path());
    let mut d = TestDaemon::start_with(Options {
        cni_bin_dir: Some(gate.bin_dirs()),
        ..Default::default()
    });
    Gate::add_to_network(&d.cni_conf_dir);
    let config = d.pod_config("crash");
    let parent = config.linux.as_ref().unwrap().cgroup_parent.clone();
    let pending = {
        let mut rt = d.runtime().await;
        tokio::spawn(async move {
            rt.run_pod_sandbox(api::RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            })
            .await
        })
    };
    eventually("CNI ADD reached the gate", || gate.started()).await;
    // The infra process exists now: find it through its cgroup.
    let pod_cgroups: Vec<_> = std::fs::read_dir(
        TestDaemon::cgroup_dirs(&parent)
            .into_iter()
            .find(|p| p.to_string_lossy().contains("/memory/"))
            .unwrap(),
    )
    .unwrap()
    .flatten()
    .filter(|e| e.path().is_dir())
    .collect();
    assert_eq!(pod_cgroups.len(), 1);
    let procs = std::fs::read_to_string(pod_cgroups[0].path().join("cgroup.procs")).unwrap();
    let infra: i32 = procs
        .lines()
        .next()
        .expect("infra in its cgroup")
        .parse()
        .unwrap();
    d.kill9();
    let _ = pending.await;
    // The plugin finishes ADD on its own after the daemon died: an IP is
    // allocated that only a DEL frees.
    gate.open();
    tokio::time::sleep(Duration::from_millis(300)).await;

    d.spawn();
    assert!(
        d.list_ids().await.is_empty(),
        "a half-made sandbox must not survive"
    );
    assert!(!process_exists(infra), "infra process leaked");
    d.assert_nothing_left(&parent);
}
