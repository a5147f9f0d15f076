//! Container lifecycle through the CRI socket: create, start, status,
//! list, stop, remove, exit codes and reasons, the CRI log, ExecSync,
//! bad input, rollback and daemon restarts. What is checked is what the
//! kernel and the files show: /proc, cgroups, mounts, the log file.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::containers::*;
use common::registry::Registry;
use common::*;
use peapod::api;
use tonic::Code;

fn no_cni() -> Options {
    Options {
        cni: false,
        ..Default::default()
    }
}

fn sc(c: &mut api::ContainerConfig) -> &mut api::LinuxContainerSecurityContext {
    c.linux.as_mut().unwrap().security_context.as_mut().unwrap()
}

fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

#[tokio::test(flavor = "multi_thread")]
async fn lifecycle_status_list_logs_and_the_kernels_view() {
    let d = TestDaemon::start();
    let image = d.pull("busybox:latest").await;
    let pod = d.pod("life").await;
    let mut cfg = d.container_config("app", &image, &[]);
    cfg.command = sh("echo out; echo err >&2; exec sleep 1000");
    cfg.labels.insert("tier".into(), "web".into());
    let id = d.create(&pod, cfg.clone()).await;

    let st = d.cstatus(&id).await;
    assert_eq!(st.state, api::ContainerState::ContainerCreated as i32);
    assert!(st.created_at > 0);
    assert_eq!(st.started_at, 0);
    assert_eq!(st.labels, cfg.labels);
    assert_eq!(st.annotations, cfg.annotations);
    assert_eq!(st.metadata.as_ref().unwrap().name, "app");
    let reg = Registry::shared();
    assert_eq!(
        st.image.as_ref().unwrap().image,
        reg.image("busybox:latest")
    );
    assert_eq!(st.image_id, image);
    assert_eq!(
        st.image_ref,
        format!("{}@{}", reg.image("busybox"), reg.digest("busybox:latest"))
    );
    let log_path = pod.log_dir().join("app/0.log");
    assert_eq!(st.log_path, log_path.to_string_lossy());

    // CREATED is what a present state filter with the zero value means.
    let created = d
        .list_containers(Some(api::ContainerFilter {
            state: Some(api::ContainerStateValue { state: 0 }),
            ..Default::default()
        }))
        .await;
    assert_eq!(created.iter().map(|c| &c.id).collect::<Vec<_>>(), [&id]);

    d.start_c(&id).await;
    let st = d.cstatus(&id).await;
    assert_eq!(st.state, api::ContainerState::ContainerRunning as i32);
    assert!(st.started_at >= st.created_at);

    // Filters.
    let running = d
        .list_containers(Some(api::ContainerFilter {
            state: Some(api::ContainerStateValue { state: 1 }),
            ..Default::default()
        }))
        .await;
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].pod_sandbox_id, pod.id);
    assert_eq!(running[0].labels, cfg.labels);
    assert_eq!(running[0].image_id, image);
    for f in [
        api::ContainerFilter {
            id: id[..12].to_string(),
            ..Default::default()
        },
        api::ContainerFilter {
            pod_sandbox_id: pod.id.clone(),
            ..Default::default()
        },
        api::ContainerFilter {
            label_selector: HashMap::from([("tier".to_string(), "web".to_string())]),
            ..Default::default()
        },
    ] {
        assert_eq!(d.list_containers(Some(f.clone())).await.len(), 1, "{f:?}");
    }
    for f in [
        api::ContainerFilter {
            state: Some(api::ContainerStateValue { state: 2 }),
            ..Default::default()
        },
        api::ContainerFilter {
            label_selector: HashMap::from([("tier".to_string(), "db".to_string())]),
            ..Default::default()
        },
        api::ContainerFilter {
            pod_sandbox_id: "ffff".into(),
            ..Default::default()
        },
    ] {
        assert!(d.list_containers(Some(f.clone())).await.is_empty(), "{f:?}");
    }

    // The kernel's view: the init is in the container's cgroup under the
    // pod's parent, a child of its monitor (not of the daemon), in the
    // pod's network/IPC/UTS namespaces and in PID and mount namespaces of
    // its own.
    let pid = d.cpid(&id).await;
    let cg = proc_cgroup(pid, "memory");
    assert_eq!(cg, format!("{}/{id}", pod.cgroup_parent()));
    let parent = peapod::process::parent_pid(pid).unwrap();
    assert_ne!(parent, d.pid());
    let monitor = d.cinfo(&id).await["monitorPid"].as_i64().unwrap() as i32;
    assert_eq!(parent, monitor);
    assert_ne!(peapod::process::parent_pid(monitor), Some(d.pid()));
    let infra = d.infra_pid(&pod.id).await;
    let (p, i) = (pid.to_string(), infra.to_string());
    for ns in ["net", "ipc", "uts"] {
        assert_eq!(ns_link(&p, ns), ns_link(&i, ns), "{ns}");
    }
    for ns in ["pid", "mnt"] {
        assert_ne!(ns_link(&p, ns), ns_link(&i, ns), "{ns}");
    }
    assert_eq!(
        std::fs::read_link(format!("/proc/{pid}/exe"))
            .unwrap()
            .file_name()
            .unwrap(),
        "busybox"
    );

    // The log, in the CRI format.
    eventually("both lines logged", || read_log(&log_path).len() >= 2).await;
    let lines = read_log(&log_path);
    assert_eq!(log_text(&lines, "stdout"), ["out"]);
    assert_eq!(log_text(&lines, "stderr"), ["err"]);

    // The root filesystem is an overlay mount while it runs.
    assert!(d.rootfs_mounted(&id), "no overlay rootfs mounted");

    // A stop whose process dies of the signal: as PID 1, sleep ignores
    // SIGTERM, so the timeout passes and SIGKILL follows.
    let t = Instant::now();
    d.stop_container(&id, 1).await;
    assert!(t.elapsed() >= Duration::from_secs(1), "{:?}", t.elapsed());
    let st = d.cstatus(&id).await;
    assert_eq!(st.state, api::ContainerState::ContainerExited as i32);
    assert_eq!(st.exit_code, 137);
    assert_eq!(st.reason, "Error");
    assert!(st.finished_at >= st.started_at);
    assert!(!process_exists(pid));
    // Idempotent.
    d.stop_container(&id, 1).await;
    // Exited, it keeps no mount and no runtime state (as containerd and
    // CRI-O), though it is listed until removed.
    eventually("the root filesystem unmounted at the exit", || {
        !d.rootfs_mounted(&id)
    })
    .await;
    eventually("runc's state deleted at the exit", || !d.runc_knows(&id)).await;
    assert_eq!(d.list_containers(None).await.len(), 1);

    d.remove_container(&id).await;
    d.remove_container(&id).await;
    // A stop of the removed (now unknown) container succeeds, as the CRI
    // spec says.
    d.stop_container(&id, 1).await;
    let e = d
        .runtime()
        .await
        .container_status(api::ContainerStatusRequest {
            container_id: id.clone(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(d.list_containers(None).await.is_empty());
    for dir in TestDaemon::cgroup_dirs(&format!("{}/{id}", pod.cgroup_parent())) {
        assert!(!dir.exists(), "{} left", dir.display());
    }
    d.assert_no_containers_left();
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_reasons_and_stop_signals() {
    let d = TestDaemon::start_with(no_cni());
    let image = d.pull("busybox:latest").await;
    let pod = d.host_pod("exits").await;

    let run = |name: &str, script: &str| {
        let mut c = d.container_config(name, &image, &[]);
        c.command = sh(script);
        c
    };
    let ok = d.run(&pod, run("ok", "true")).await;
    let three = d.run(&pod, run("three", "exit 3")).await;
    let st = d.wait_exit(&ok, Duration::from_secs(10)).await;
    assert_eq!((st.exit_code, st.reason.as_str()), (0, "Completed"));
    let st = d.wait_exit(&three, Duration::from_secs(10)).await;
    assert_eq!((st.exit_code, st.reason.as_str()), (3, "Error"));
    assert!(st.finished_at >= st.started_at && st.started_at > 0);

    // A process that exits on SIGTERM: stopped well before the timeout.
    let polite = d
        .run(
            &pod,
            run(
                "polite",
                "trap 'exit 0' TERM; while true; do sleep 0.05; done",
            ),
        )
        .await;
    let pid = d.cpid(&polite).await;
    let t = Instant::now();
    d.stop_container(&polite, 30).await;
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let st = d.cstatus(&polite).await;
    assert_eq!((st.exit_code, st.reason.as_str()), (0, "Completed"));
    assert!(!process_exists(pid));

    // One that ignores it: killed when the timeout has passed.
    let stubborn = d
        .run(
            &pod,
            run("stubborn", "trap '' TERM; while true; do sleep 0.05; done"),
        )
        .await;
    d.cpid(&stubborn).await;
    let t = Instant::now();
    d.stop_container(&stubborn, 2).await;
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "{took:?}"
    );
    assert_eq!(d.cstatus(&stubborn).await.exit_code, 137);

    // The image's stop signal (SIGINT for busybox-config) is what a stop
    // sends first; the config's stop_signal overrides it.
    let cfg_image = d.pull("busybox-config:latest").await;
    let mut c = d.container_config("int", &cfg_image, &[]);
    c.command = sh("trap 'exit 42' INT; trap 'exit 43' TERM; while true; do sleep 0.05; done");
    let int = d.run(&pod, c).await;
    assert_eq!(
        d.cstatus(&int).await.stop_signal,
        api::Signal::Sigint as i32
    );
    d.cpid(&int).await;
    d.stop_container(&int, 10).await;
    assert_eq!(d.cstatus(&int).await.exit_code, 42);
    let mut c = d.container_config("usr1", &cfg_image, &[]);
    c.command = sh("trap 'exit 44' USR1; while true; do sleep 0.05; done");
    c.stop_signal = api::Signal::Sigusr1 as i32;
    let usr1 = d.run(&pod, c).await;
    d.cpid(&usr1).await;
    d.stop_container(&usr1, 10).await;
    assert_eq!(d.cstatus(&usr1).await.exit_code, 44);

    // A created container that is never started can be stopped and removed.
    let idle = d.create(&pod, run("idle", "true")).await;
    d.stop_container(&idle, 0).await;
    assert_eq!(
        d.cstatus(&idle).await.state,
        api::ContainerState::ContainerExited as i32
    );

    // Exited containers cannot be started again.
    let e = d
        .runtime()
        .await
        .start_container(api::StartContainerRequest {
            container_id: ok.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");

    d.remove_all().await;
    d.assert_no_containers_left();
}

#[tokio::test(flavor = "multi_thread")]
async fn image_config_entrypoint_env_workdir_and_volumes() {
    let d = TestDaemon::start_with(no_cni());
    let image = d.pull("busybox-config:latest").await;
    let pod = d.host_pod("cfg").await;
    // No command: the image's entrypoint + cmd.
    let c = d.container_config("plain", &image, &[]);
    let plain = d.run(&pod, c).await;
    d.wait_exit(&plain, Duration::from_secs(10)).await;
    let lines = read_log(&pod.log_dir().join("plain/0.log"));
    assert_eq!(log_text(&lines, "stdout"), ["hello from config"]);

    // args replace the image's cmd and keep its entrypoint.
    let mut c = d.container_config("args", &image, &[]);
    c.args =
        vec!["echo $GREETING-$EMPTY-$EXTRA; pwd; test -d /data && echo vol; exec sleep 100".into()];
    c.envs = vec![api::KeyValue {
        key: "EXTRA".into(),
        value: "x".into(),
    }];
    let args = d.run(&pod, c).await;
    eventually("args output", || {
        read_log(&pod.log_dir().join("args/0.log")).len() >= 3
    })
    .await;
    let lines = read_log(&pod.log_dir().join("args/0.log"));
    assert_eq!(log_text(&lines, "stdout"), ["hi--x", "/work", "vol"]);
    let env = d.exec_ok(&args, &["env"]).await;
    assert!(env.lines().any(|l| l == "GREETING=hi"), "{env}");
    // HOSTNAME is the UTS name the container sees (the node's, in a
    // host-network pod).
    let uts = d.exec_ok(&args, &["hostname"]).await;
    let want = format!("HOSTNAME={}", uts.trim());
    assert!(env.lines().any(|l| l == want), "{want} not in {env}");
    assert!(
        env.lines().any(|l| l.starts_with("PATH=/usr/local/sbin")),
        "{env}"
    );
    d.remove_all().await;
    d.assert_no_containers_left();
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_sync_output_exit_codes_and_timeouts() {
    let d = TestDaemon::start_with(no_cni());
    let image = d.pull("busybox:latest").await;
    let pod = d.host_pod("exec").await;
    let id = d
        .run(&pod, d.container_config("app", &image, &["sleep", "1000"]))
        .await;
    let init = proc_status(d.cpid(&id).await);
    assert_eq!(init["SigIgn"], "0000000000000000");
    // An exec'd command starts with no signal ignored or blocked, like
    // the container's init (the runtime's caller must not pass its own on).
    let status = d.exec_ok(&id, &["cat", "/proc/self/status"]).await;
    for field in ["SigIgn:", "SigBlk:"] {
        let line = status.lines().find(|l| l.starts_with(field)).unwrap();
        assert_eq!(
            line.split_whitespace().nth(1),
            Some("0000000000000000"),
            "{line}"
        );
    }
    d.cpid(&id).await;

    let r = d
        .exec(&id, &["sh", "-c", "echo out; echo err >&2; exit 3"], 10)
        .await
        .unwrap();
    assert_eq!(r.stdout, b"out\n");
    assert_eq!(r.stderr, b"err\n");
    assert_eq!(r.exit_code, 3);

    // Runs in the container: its PID namespace and root.
    assert_eq!(
        d.exec_ok(&id, &["cat", "/proc/1/cmdline"]).await,
        "sleep\x001000\x00"
    );
    assert!(d
        .exec_ok(&id, &["ls", "/bin/busybox"])
        .await
        .contains("busybox"));

    // A timeout: DeadlineExceeded on time, and the process is killed.
    let t = Instant::now();
    let e = d.exec(&id, &["sleep", "30"], 1).await.unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let ps = d.exec_ok(&id, &["ps", "-o", "args"]).await;
    assert!(!ps.contains("sleep 30"), "{ps}");

    // A background child holding stdout does not hold the answer.
    let t = Instant::now();
    let r = d
        .exec(&id, &["sh", "-c", "sleep 30 & echo started"], 10)
        .await
        .unwrap();
    assert_eq!(r.stdout, b"started\n");
    assert_eq!(r.exit_code, 0);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());

    // No timeout (lifecycle hooks) works too.
    let r = d.exec(&id, &["echo", "hook"], 0).await.unwrap();
    assert_eq!(r.stdout, b"hook\n");

    // Large output arrives whole.
    let r = d
        .exec(
            &id,
            &["sh", "-c", "head -c 300000 /dev/zero | tr '\\0' x"],
            10,
        )
        .await
        .unwrap();
    assert_eq!(r.stdout.len(), 300000);

    // Errors.
    let e = d.exec(&id, &["/no/such/binary"], 10).await.unwrap_err();
    assert_ne!(e.code(), Code::Ok);
    assert!(e.message().contains("/no/such/binary"), "{e:?}");
    let e = d.exec(&id, &[], 10).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = d.exec("0123456789abcdef", &["true"], 10).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    d.stop_container(&id, 0).await;
    let e = d.exec(&id, &["true"], 10).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    d.remove_all().await;
    d.assert_no_containers_left();
}

#[tokio::test(flavor = "multi_thread")]
async fn log_rotation_loses_and_repeats_nothing_and_long_lines_split() {
    let d = TestDaemon::start_with(no_cni());
    let image = d.pull("busybox:latest").await;
    let pod = d.host_pod("logs").await;
    let mut c = d.container_config("counter", &image, &[]);
    // About two seconds of output, so the rotation falls in the middle.
    c.command = sh("i=0; while [ $i -lt 20000 ]; do echo line $i; i=$((i+1)); [ $((i % 100)) = 0 ] && sleep 0.01; done; exec sleep 1000");
    let id = d.run(&pod, c).await;
    let log = pod.log_dir().join("counter/0.log");
    eventually("some lines", || {
        std::fs::metadata(&log)
            .map(|m| m.len() > 2000)
            .unwrap_or(false)
    })
    .await;
    // kubelet's rotation: rename, then ask the runtime to reopen.
    let rotated = log.with_extension("log.20261203-100000");
    std::fs::rename(&log, &rotated).unwrap();
    d.runtime()
        .await
        .reopen_container_log(api::ReopenContainerLogRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
    assert!(log.exists(), "reopen created a new file");
    let done = || {
        read_log(&log)
            .last()
            .is_some_and(|l| l.content == "line 19999")
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "the counter did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let old = read_log(&rotated);
    let new = read_log(&log);
    assert!(!old.is_empty() && !new.is_empty());
    let all: Vec<String> = log_text(&old, "stdout")
        .into_iter()
        .chain(log_text(&new, "stdout"))
        .collect();
    assert_eq!(all.len(), 20000);
    for (n, l) in all.iter().enumerate() {
        assert_eq!(l, &format!("line {n}"));
    }

    // A line longer than the maximum (16 KiB) is split into partial
    // records, the last one full.
    let mut c = d.container_config("long", &image, &[]);
    c.command = sh("head -c 40000 /dev/zero | tr '\\0' a; echo; echo short");
    let long = d.run(&pod, c).await;
    d.wait_exit(&long, Duration::from_secs(10)).await;
    let lines = read_log(&pod.log_dir().join("long/0.log"));
    let tags: Vec<(&str, usize)> = lines
        .iter()
        .map(|l| (l.tag.as_str(), l.content.len()))
        .collect();
    assert_eq!(tags, [("P", 16384), ("P", 16384), ("F", 7232), ("F", 5)]);
    assert_eq!(log_text(&lines, "stdout")[0], "a".repeat(40000));

    // Reopen of a container that is not running.
    let e = d
        .runtime()
        .await
        .reopen_container_log(api::ReopenContainerLogRequest {
            container_id: long.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    d.remove_all().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn daemon_kill9_keeps_containers_and_learns_exits_that_happened_meanwhile() {
    let mut d = TestDaemon::start_with(no_cni());
    let image = d.pull("busybox:latest").await;
    let pod = d.host_pod("restart").await;
    let long = d
        .run(&pod, d.container_config("long", &image, &["sleep", "1000"]))
        .await;
    let mut c = d.container_config("short", &image, &[]);
    c.command = sh("sleep 2; echo bye; exit 7");
    let short = d.run(&pod, c).await;
    let pid = d.cpid(&long).await;
    let start_time = peapod::process::ProcessRef::of(pid).unwrap().start_time;

    d.kill9();
    // The short container exits while the daemon is down.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(process_exists(pid), "the container died with the daemon");
    d.spawn();

    let st = d.cstatus(&long).await;
    assert_eq!(st.state, api::ContainerState::ContainerRunning as i32);
    assert_eq!(d.cpid(&long).await, pid);
    assert_eq!(
        peapod::process::ProcessRef::of(pid).unwrap().start_time,
        start_time
    );
    let st = d.cstatus(&short).await;
    assert_eq!(st.state, api::ContainerState::ContainerExited as i32);
    assert_eq!((st.exit_code, st.reason.as_str()), (7, "Error"));
    let lines = read_log(&pod.log_dir().join("short/0.log"));
    assert_eq!(log_text(&lines, "stdout"), ["bye"]);
    // Cleaned up as an exit seen while running is.
    assert!(d.rootfs_mounted(&long));
    eventually("the exited container's rootfs unmounted", || {
        !d.rootfs_mounted(&short)
    })
    .await;
    eventually("runc's state of the exited container deleted", || {
        !d.runc_knows(&short)
    })
    .await;

    // The running one is still fully managed: exec, then its exit (after
    // another restart, while the daemon runs) is seen without polling.
    assert_eq!(
        d.exec_ok(&long, &["echo", "still here"]).await,
        "still here\n"
    );
    d.kill9();
    d.spawn();
    let t = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let st = d.wait_exit(&long, Duration::from_secs(10)).await;
    assert_eq!(st.exit_code, 137);
    assert!(t.elapsed() < Duration::from_secs(5));
    d.remove_all().await;
    d.assert_no_containers_left();
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_clear_errors_and_leaves_nothing() {
    let d = TestDaemon::start_with(no_cni());
    let image = d.pull("busybox:latest").await;
    let pod = d.host_pod("bad").await;
    let good = d.container_config("app", &image, &["sleep", "100"]);

    let check = |r: Result<String, tonic::Status>, code: Code, needle: &str| {
        let e = r.expect_err("request should fail");
        assert_eq!(e.code(), code, "{e:?}");
        assert!(
            e.message().contains(needle),
            "{needle:?} not in {:?}",
            e.message()
        );
    };
    // Unknown sandbox.
    let mut other = Pod {
        id: "0".repeat(64),
        config: pod.config.clone(),
    };
    check(d.try_create(&other, good.clone()).await, Code::NotFound, "");
    other.id = pod.id.clone();
    // Image not pulled.
    let mut c = good.clone();
    c.image = Some(api::ImageSpec {
        image: format!("sha256:{}", "e".repeat(64)),
        ..Default::default()
    });
    check(
        d.try_create(&pod, c).await,
        Code::NotFound,
        "config.image.image",
    );
    // Log path leaving the log directory.
    for bad in ["../escape.log", "/abs/0.log", "a/../../b.log"] {
        let mut c = good.clone();
        c.log_path = bad.into();
        check(
            d.try_create(&pod, c).await,
            Code::InvalidArgument,
            "config.log_path",
        );
    }
    // Mounts: relative container path, missing host path.
    let mut c = good.clone();
    c.mounts = vec![api::Mount {
        container_path: "data".into(),
        host_path: "/tmp".into(),
        ..Default::default()
    }];
    check(
        d.try_create(&pod, c).await,
        Code::InvalidArgument,
        "config.mounts[0].container_path",
    );
    let mut c = good.clone();
    c.mounts = vec![api::Mount {
        container_path: "/data".into(),
        host_path: "/nonexistent/peapod-test".into(),
        ..Default::default()
    }];
    check(
        d.try_create(&pod, c).await,
        Code::InvalidArgument,
        "config.mounts[0].host_path",
    );
    // Capabilities, seccomp, users.
    let mut c = good.clone();
    sc(&mut c).capabilities = Some(api::Capability {
        add_capabilities: vec!["NOT_A_CAPABILITY".into()],
        ..Default::default()
    });
    check(
        d.try_create(&pod, c).await,
        Code::InvalidArgument,
        "add_capabilities[0]",
    );
    let bad_profile = d.dir.path().join("bad-seccomp.json");
    std::fs::write(&bad_profile, "{not json").unwrap();
    for r in [
        bad_profile.to_string_lossy().into_owned(),
        "/nonexistent/p.json".into(),
    ] {
        let mut c = good.clone();
        sc(&mut c).seccomp = Some(api::SecurityProfile {
            profile_type: api::security_profile::ProfileType::Localhost as i32,
            localhost_ref: r,
        });
        check(
            d.try_create(&pod, c).await,
            Code::InvalidArgument,
            "seccomp",
        );
    }
    let mut c = good.clone();
    sc(&mut c).run_as_user = None;
    sc(&mut c).run_as_group = Some(api::Int64Value { value: 10 });
    check(
        d.try_create(&pod, c).await,
        Code::InvalidArgument,
        "run_as_group",
    );
    let mut c = good.clone();
    sc(&mut c).run_as_username = "nosuchuser".into();
    check(
        d.try_create(&pod, c).await,
        Code::InvalidArgument,
        "nosuchuser",
    );
    // A command the image does not have: the runtime's refusal, rolled back.
    let mut c = good.clone();
    c.command = vec!["/no/such/program".into()];
    check(
        d.try_create(&pod, c).await,
        Code::FailedPrecondition,
        "/no/such/program",
    );
    // Nothing of the failed creations is left.
    d.assert_no_containers_left();
    for dir in TestDaemon::cgroup_dirs(&pod.cgroup_parent()) {
        let children: Vec<_> = std::fs::read_dir(&dir)
            .map(|r| {
                r.flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.file_name())
                    .collect()
            })
            .unwrap_or_default();
        assert!(
            children.len() <= 1,
            "cgroups left in {}: {children:?}",
            dir.display()
        );
    }

    // A duplicate name: AlreadyExists with the existing id.
    let id = d.create(&pod, good.clone()).await;
    check(
        d.try_create(&pod, good.clone()).await,
        Code::AlreadyExists,
        &id,
    );
    // Another attempt of the same name is fine (a restart).
    let mut again = good.clone();
    again.metadata.as_mut().unwrap().attempt = 1;
    let id2 = d.create(&pod, again).await;
    assert_ne!(id, id2);

    // A sandbox that is not ready.
    d.runtime()
        .await
        .stop_pod_sandbox(api::StopPodSandboxRequest {
            pod_sandbox_id: pod.id.clone(),
        })
        .await
        .unwrap();
    // Its containers were stopped with it.
    for cid in [&id, &id2] {
        assert_eq!(
            d.cstatus(cid).await.state,
            api::ContainerState::ContainerExited as i32
        );
    }
    let mut c = good.clone();
    c.metadata.as_mut().unwrap().name = "late".into();
    check(
        d.try_create(&pod, c).await,
        Code::FailedPrecondition,
        "not ready",
    );
    d.remove_all().await;
    d.assert_no_containers_left();
}

#[tokio::test(flavor = "multi_thread")]
async fn remove_pod_sandbox_removes_running_containers() {
    let d = TestDaemon::start();
    let image = d.pull("busybox:latest").await;
    let pod = d.pod("rmpod").await;
    let a = d
        .run(&pod, d.container_config("a", &image, &["sleep", "1000"]))
        .await;
    // Created with a prefix of the pod's id, as crictl allows: still the
    // pod's container.
    let short = Pod {
        id: pod.id[..12].to_string(),
        config: pod.config.clone(),
    };
    let b = d
        .run(&short, d.container_config("b", &image, &["sleep", "1000"]))
        .await;
    let (pa, pb) = (d.cpid(&a).await, d.cpid(&b).await);
    d.runtime()
        .await
        .remove_pod_sandbox(api::RemovePodSandboxRequest {
            pod_sandbox_id: pod.id.clone(),
        })
        .await
        .unwrap();
    assert!(!process_exists(pa) && !process_exists(pb));
    assert!(d.list_containers(None).await.is_empty());
    d.assert_no_containers_left();
    d.assert_nothing_left(&pod.cgroup_parent());
}
