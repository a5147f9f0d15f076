//! Faults injected around containers: the daemon killed in the middle of a
//! CreateContainer, a runtime whose `start` fails, a monitor killed under
//! a running container, a runtime handler that refuses this host. Each
//! must leave nothing behind (process, mount, cgroup, runtime state,
//! record) or, where the container stays, report exactly what happened.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::containers::*;
use common::*;
use peapod::api;
use tonic::Code;

/// A runtime handler wrapping runc: `script` runs first with the
/// subcommand in `$cmd`, then runc gets the same arguments.
fn wrapper(dir: &Path, name: &str, script: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\ncmd=\nfor a in \"$@\"; do case $a in create|start|exec|kill|delete|state|update) cmd=${{cmd:-$a}};; esac; done\n{script}\nexec runc \"$@\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

/// A daemon with extra runtime handlers (name → binary), no CNI. The
/// config's directory comes first so that it outlives the daemon (whose
/// drop restarts it once to clean up).
fn daemon_with(handlers: &[(&str, &Path)]) -> (tempfile::TempDir, TestDaemon) {
    let cfg_dir = tempfile::tempdir().unwrap();
    let mut toml = String::new();
    for (name, path) in handlers {
        toml.push_str(&format!(
            "[runtimes.{name}]\npath = \"{}\"\n",
            path.display()
        ));
    }
    let cfg = cfg_dir.path().join("config.toml");
    std::fs::write(&cfg, toml).unwrap();
    let d = TestDaemon::start_with(Options {
        cni: false,
        extra_args: vec!["--config".into(), cfg.to_string_lossy().into_owned()],
        ..Default::default()
    });
    (cfg_dir, d)
}

async fn pod_on(d: &TestDaemon, name: &str, handler: &str) -> Pod {
    let mut c = d.pod_config(name);
    c.linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .namespace_options
        .as_mut()
        .unwrap()
        .network = api::NamespaceMode::Node as i32;
    let id = d
        .runtime()
        .await
        .run_pod_sandbox(api::RunPodSandboxRequest {
            config: Some(c.clone()),
            runtime_handler: handler.to_string(),
        })
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e:?}\n{}", d.log_text()))
        .into_inner()
        .pod_sandbox_id;
    Pod { id, config: c }
}

/// Processes running `peapod-monitor container` for this daemon's state dir.
fn monitors_of(d: &TestDaemon) -> Vec<i32> {
    let state = d.state.to_string_lossy().to_string();
    peapod::process::all_pids()
        .into_iter()
        .filter(|&p| {
            let argv = peapod::process::cmdline(p);
            argv.first().is_some_and(|a| a.ends_with("peapod-monitor"))
                && argv.get(1).is_some_and(|a| a == "container")
                && argv.iter().any(|a| a.contains(&state))
        })
        .collect()
}

/// The container cgroups left under a pod's parent (the sandbox's own
/// cgroup is there too).
fn child_cgroups(pod: &Pod, sandbox: &str) -> Vec<String> {
    let mut left = Vec::new();
    for dir in TestDaemon::cgroup_dirs(&pod.cgroup_parent()) {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().is_dir() && name != sandbox {
                left.push(e.path().display().to_string());
            }
        }
    }
    left
}

#[tokio::test(flavor = "multi_thread")]
async fn kill9_in_the_middle_of_create_is_rolled_back_by_the_next_start() {
    let gates = tempfile::tempdir().unwrap();
    let gate = gates.path().join("open");
    let slow = wrapper(
        gates.path(),
        "slow-runc",
        &format!(
            "if [ \"$cmd\" = create ]; then while [ ! -e {} ]; do sleep 0.05; done; fi",
            gate.display()
        ),
    );
    let (_cfg, mut d) = daemon_with(&[("slow", &slow)]);
    let image = d.pull("busybox:latest").await;
    let pod = pod_on(&d, "crash", "slow").await;
    let config = d.container_config("c", &image, &["sleep", "1000"]);
    let socket = d.socket.clone();
    let sandbox = pod.id.clone();
    let pod_config = pod.config.clone();
    let pending = tokio::spawn(async move {
        let ch = peapod_cri_client::connect(&socket).await.unwrap();
        peapod::api::runtime_service_client::RuntimeServiceClient::new(ch)
            .create_container(api::CreateContainerRequest {
                pod_sandbox_id: sandbox,
                config: Some(config),
                sandbox_config: Some(pod_config),
            })
            .await
    });
    eventually("the monitor runs the (held) create", || {
        !monitors_of(&d).is_empty()
    })
    .await;
    d.kill9();
    assert!(pending.await.unwrap().is_err());
    // The monitor is detached and lives on; let its create finish, so the
    // next start finds a created container nobody asked for.
    std::fs::write(&gate, "").unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    d.spawn();
    assert!(d.list_containers(None).await.is_empty());
    assert!(
        monitors_of(&d).is_empty(),
        "monitor left: {:?}",
        monitors_of(&d)
    );
    d.assert_no_containers_left();
    let left = child_cgroups(&pod, &pod.id);
    assert!(left.is_empty(), "cgroups left: {left:?}");
    // The same name can be created again.
    let id = d
        .create(&pod, d.container_config("c", &image, &["sleep", "1000"]))
        .await;
    d.start_c(&id).await;
    d.cpid(&id).await;
    d.remove_all().await;
    d.assert_no_containers_left();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_start_is_reported_and_leaves_no_process() {
    let dir = tempfile::tempdir().unwrap();
    let bad = wrapper(
        dir.path(),
        "nostart-runc",
        "if [ \"$cmd\" = start ]; then echo 'injected start failure' >&2; exit 1; fi",
    );
    let (_cfg, d) = daemon_with(&[("nostart", &bad)]);
    let image = d.pull("busybox:latest").await;
    let pod = pod_on(&d, "nostart", "nostart").await;
    let id = d
        .create(&pod, d.container_config("c", &image, &["sleep", "1000"]))
        .await;
    let init = d.cinfo(&id).await["pid"].as_i64().unwrap() as i32;
    assert!(process_exists(init));
    let e = d
        .runtime()
        .await
        .start_container(api::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert!(e.message().contains("injected start failure"), "{e:?}");
    let st = d.cstatus(&id).await;
    assert_eq!(st.state, api::ContainerState::ContainerExited as i32);
    assert_eq!(
        (st.exit_code, st.reason.as_str()),
        (128, "ContainerCannotRun")
    );
    assert!(
        st.message.contains("injected start failure"),
        "{}",
        st.message
    );
    eventually("the created init is gone", || !process_exists(init)).await;
    eventually("its monitor is gone", || monitors_of(&d).is_empty()).await;
    d.remove_container(&id).await;
    d.assert_no_containers_left();
    assert!(child_cgroups(&pod, &pod.id).is_empty());
    d.remove_all().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_monitor_ends_its_container_visibly() {
    let d = TestDaemon::start_with(Options {
        cni: false,
        ..Default::default()
    });
    let image = d.pull("busybox:latest").await;
    let pod = d.host_pod("monkill").await;
    let id = d
        .run(&pod, d.container_config("c", &image, &["sleep", "1000"]))
        .await;
    let init = d.cpid(&id).await;
    let monitor = d.cinfo(&id).await["monitorPid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitor),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let st = d.wait_exit(&id, Duration::from_secs(20)).await;
    assert_eq!(st.exit_code, 255);
    assert!(st.message.contains("monitor"), "{}", st.message);
    assert!(!process_exists(init), "the container outlived its monitor");
    d.remove_all().await;
    d.assert_no_containers_left();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runtime_handler_that_refuses_this_host_says_why() {
    // Debian's crun refuses a hybrid cgroup host like this one; on other
    // hosts it may work, and then the container simply runs.
    assert!(
        which("crun"),
        "crun not found: install the Debian package crun (hack/install-deps.sh)"
    );
    let crun = PathBuf::from("/usr/bin/crun");
    let (_cfg, d) = daemon_with(&[("crun", &crun)]);
    let image = d.pull("busybox:latest").await;
    let pod = pod_on(&d, "crun", "crun").await;
    match d
        .try_create(&pod, d.container_config("c", &image, &["sleep", "1000"]))
        .await
    {
        Ok(id) => {
            d.start_c(&id).await;
            d.cpid(&id).await;
        }
        Err(e) => {
            eprintln!("crun refused: {}", e.message());
            assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
            assert!(e.message().contains("crun"), "{e:?}");
            assert!(e.message().len() > 40, "no reason given: {e:?}");
            d.assert_no_containers_left();
            assert!(child_cgroups(&pod, &pod.id).is_empty());
        }
    }
    let st = d.runtime_status(false).await;
    let names: Vec<&str> = st
        .runtime_handlers
        .iter()
        .map(|h| h.name.as_str())
        .collect();
    assert!(
        names.contains(&"crun") && names.contains(&"runc"),
        "{names:?}"
    );
    let runc = st
        .runtime_handlers
        .iter()
        .find(|h| h.name == "runc")
        .unwrap();
    assert!(runc.features.unwrap().recursive_read_only_mounts);
    d.remove_all().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn create_retried_after_a_client_deadline_gets_the_same_container() {
    let gates = tempfile::tempdir().unwrap();
    let gate = gates.path().join("open");
    let slow = wrapper(
        gates.path(),
        "slow-runc",
        &format!(
            "if [ \"$cmd\" = create ]; then while [ ! -e {} ]; do sleep 0.05; done; fi",
            gate.display()
        ),
    );
    let (_cfg, d) = daemon_with(&[("slow", &slow)]);
    let image = d.pull("busybox:latest").await;
    let pod = pod_on(&d, "retry", "slow").await;
    let config = d.container_config("c", &image, &["sleep", "1000"]);
    let request = || api::CreateContainerRequest {
        pod_sandbox_id: pod.id.clone(),
        config: Some(config.clone()),
        sandbox_config: Some(pod.config.clone()),
    };
    // kubelet's deadline passes while the runtime is still creating.
    let mut req = tonic::Request::new(request());
    req.set_timeout(Duration::from_millis(500));
    let e = d.runtime().await.create_container(req).await.unwrap_err();
    assert!(
        matches!(e.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{e:?}"
    );
    // Lists answer meanwhile, and show no half-made container.
    assert!(d.list_containers(None).await.is_empty());
    // The retry joins the creation in flight.
    let retry = {
        let socket = d.socket.clone();
        let r = request();
        tokio::spawn(async move {
            let ch = peapod_cri_client::connect(&socket).await.unwrap();
            peapod::api::runtime_service_client::RuntimeServiceClient::new(ch)
                .create_container(r)
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::write(&gate, "").unwrap();
    let id = retry.await.unwrap().unwrap().into_inner().container_id;
    let all = d.list_containers(None).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].id, id);
    // After that, the name is taken.
    let e = d.try_create(&pod, config.clone()).await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    assert!(e.message().contains(&id));
    assert_eq!(monitors_of(&d).len(), 1);
    d.remove_all().await;
    d.assert_no_containers_left();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_removed_under_a_container_keeps_its_layers_until_the_container_goes() {
    let d = TestDaemon::start_with(Options {
        cni: false,
        ..Default::default()
    });
    let image = d.pull("busybox:latest").await;
    let st = d
        .images()
        .await
        .image_status(api::ImageStatusRequest {
            image: Some(api::ImageSpec {
                image: image.clone(),
                ..Default::default()
            }),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(&st.info["info"]).unwrap();
    let layer = PathBuf::from(info["layers"][0]["dir"].as_str().unwrap());
    assert!(layer.is_dir());
    let pod = d.host_pod("rmi").await;
    let id = d
        .run(&pod, d.container_config("c", &image, &["sleep", "1000"]))
        .await;
    d.images()
        .await
        .remove_image(api::RemoveImageRequest {
            image: Some(api::ImageSpec {
                image: image.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    assert!(layer.is_dir(), "a layer in use was deleted");
    assert_eq!(
        d.exec_ok(&id, &["cat", "/etc/passwd"]).await.lines().next(),
        Some("root:x:0:0:root:/root:/bin/sh")
    );
    // Still kept across a restart of the daemon.
    let mut d = d;
    d.kill9();
    d.spawn();
    assert!(layer.is_dir(), "a layer in use was collected at start");
    d.stop_container(&id, 0).await;
    d.remove_container(&id).await;
    assert!(!layer.exists(), "the unused layer stayed");
    d.remove_all().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exit_is_in_the_store_when_stop_container_returns() {
    let mut d = TestDaemon::start_with(Options {
        cni: false,
        ..Default::default()
    });
    let image = d.pull("busybox:latest").await;
    let pod = d.host_pod("durable").await;
    let mut c = d.container_config("c", &image, &[]);
    c.command = vec![
        "sh".into(),
        "-c".into(),
        "trap 'exit 9' TERM; sleep 3600 & wait".into(),
    ];
    let id = d.run(&pod, c).await;
    d.cpid(&id).await;
    // Give the shell time to set its trap.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let exit_file = PathBuf::from(d.cinfo(&id).await["bundle"].as_str().unwrap()).join("exit");
    d.stop_container(&id, 10).await;
    // The daemon dies at once and the monitor's file is lost: what the
    // reply said must come from the store.
    d.kill9();
    std::fs::remove_file(&exit_file).unwrap();
    d.spawn();
    let st = d.cstatus(&id).await;
    assert_eq!(st.state, api::ContainerState::ContainerExited as i32);
    assert_eq!((st.exit_code, st.reason.as_str()), (9, "Error"));
    d.remove_all().await;
    d.assert_no_containers_left();
}
