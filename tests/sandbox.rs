//! Pod sandboxes through the CRI socket, checked against what the kernel
//! shows: namespaces, hostname, resolv.conf, cgroups, the pod IP, sysctls,
//! mounts, and that nothing is left after removal.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use common::*;
use peapod::api;
use tonic::Code;

fn verbose_info(st: &api::PodSandboxStatusResponse) -> serde_json::Value {
    serde_json::from_str(st.info.get("info").expect("verbose info")).unwrap()
}

/// A daemon without any pod network: no CNI config and the default
/// network off (its config file lives in the returned dir).
fn start_without_pod_network() -> (tempfile::TempDir, TestDaemon) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "[cni]\ndefault_network = false\n").unwrap();
    let d = TestDaemon::start_with(Options {
        cni: false,
        extra_args: vec!["--config".into(), config.to_string_lossy().into_owned()],
        ..Default::default()
    });
    (dir, d)
}

#[tokio::test(flavor = "multi_thread")]
async fn version_status_and_runtime_config() {
    let (_config, d) = start_without_pod_network();
    let mut rt = d.runtime().await;
    let v = rt
        .version(api::VersionRequest {
            version: "0.1.0".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.version, "0.1.0");
    assert_eq!(v.runtime_name, "peapod");
    assert_eq!(v.runtime_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(v.runtime_api_version, "v1");

    let cond = |s: &api::StatusResponse, t: &str| {
        s.status
            .as_ref()
            .unwrap()
            .conditions
            .iter()
            .find(|c| c.r#type == t)
            .cloned()
            .unwrap()
    };
    let s = rt
        .status(api::StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner();
    assert!(cond(&s, "RuntimeReady").status);
    let net = cond(&s, "NetworkReady");
    assert!(!net.status);
    assert_eq!(net.reason, "NetworkPluginNotReady");
    assert!(
        net.message
            .contains(&d.cni_conf_dir.to_string_lossy().to_string()),
        "{}",
        net.message
    );
    let cfg: serde_json::Value = serde_json::from_str(&s.info["config"]).unwrap();
    assert_eq!(cfg["socket"], d.socket.to_string_lossy().as_ref());
    assert!(s.runtime_handlers.iter().any(|h| h.name == "runc"));

    // A network config appearing makes the network ready, without restart.
    let mut d = d;
    d.write_network();
    let s = rt
        .status(api::StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    assert!(cond(&s, "NetworkReady").status);

    let rc = rt
        .runtime_config(api::RuntimeConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        rc.linux.unwrap().cgroup_driver,
        api::CgroupDriver::Cgroupfs as i32
    );

    // The socket is root's, 0660.
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let m = std::fs::metadata(&d.socket).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o660);
    assert_eq!((m.uid(), m.gid()), (0, 0));

    // Image side, before pulls exist: an unknown image is null, and the
    // image filesystem is measured.
    let mut im = d.images().await;
    let st = im
        .image_status(api::ImageStatusRequest {
            image: Some(api::ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(st.image.is_none());
    let fs = im
        .image_fs_info(api::ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    let usage = &fs.image_filesystems[0];
    assert!(usage.inodes_used.unwrap().value >= 1);
    assert!(!usage.fs_id.as_ref().unwrap().mountpoint.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_network_namespaces_hostname_dns_sysctls_and_cgroup() {
    let d = TestDaemon::start();
    let mut config = d.pod_config("web");
    config.port_mappings = vec![api::PortMapping {
        protocol: api::Protocol::Tcp as i32,
        container_port: 8080,
        host_port: 0,
        host_ip: String::new(),
    }];
    let linux = config.linux.as_mut().unwrap();
    linux.sysctls = HashMap::from([
        (
            "net.ipv4.ping_group_range".to_string(),
            "0 2147483647".to_string(),
        ),
        ("kernel.shmmni".to_string(), "1234".to_string()),
    ]);
    linux
        .security_context
        .as_mut()
        .unwrap()
        .namespace_options
        .as_mut()
        .unwrap()
        .pid = api::NamespaceMode::Pod as i32;
    let cgroup_parent = linux.cgroup_parent.clone();
    let id = d.run_pod(config.clone()).await;

    let st = d.status(&id).await;
    let status = st.status.clone().unwrap();
    assert_eq!(status.state, api::PodSandboxState::SandboxReady as i32);
    assert_eq!(status.metadata, config.metadata);
    assert_eq!(status.labels, config.labels);
    assert_eq!(status.annotations, config.annotations);
    let opts = status.linux.unwrap().namespaces.unwrap().options.unwrap();
    assert_eq!(opts.pid, api::NamespaceMode::Pod as i32);
    let ip = status.network.unwrap().ip;
    let net = d.network.as_ref().unwrap();
    assert!(
        ip.starts_with(&format!("{}.", net.subnet_prefix)),
        "pod ip {ip}"
    );

    let info = verbose_info(&st);
    let pid = info["pid"].as_i64().unwrap().to_string();
    let netns = info["netns"].as_str().unwrap().to_string();

    // Namespaces: its own net, ipc, uts, pid.
    for ns in ["net", "ipc", "uts", "pid"] {
        assert_ne!(
            ns_link(&pid, ns),
            ns_link("self", ns),
            "{ns} namespace is the host's"
        );
    }
    // The bind-mounted netns file is that same namespace.
    let via_file = sh(
        "nsenter",
        &[&format!("--net={netns}"), "readlink", "/proc/self/ns/net"],
    );
    assert_eq!(via_file.trim(), ns_link(&pid, "net"));
    // It is PID 1 of the pod's PID namespace.
    let status_file = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let nspid = status_file
        .lines()
        .find(|l| l.starts_with("NSpid:"))
        .unwrap();
    assert!(
        nspid.trim_end().ends_with("\t1") || nspid.trim_end().ends_with(" 1"),
        "{nspid}"
    );
    // Not the daemon's child.
    let ppid = status_file
        .lines()
        .find(|l| l.starts_with("PPid:"))
        .unwrap();
    assert_ne!(ppid.split_whitespace().nth(1).unwrap(), d.pid().to_string());

    // The pod IP is on eth0 in the pod's namespace, and the host reaches it.
    let addrs = sh(
        "nsenter",
        &[
            &format!("--net={netns}"),
            "ip",
            "-o",
            "-4",
            "addr",
            "show",
            "eth0",
        ],
    );
    assert!(addrs.contains(&format!("{ip}/24")), "{addrs}");
    let lo = sh(
        "nsenter",
        &[&format!("--net={netns}"), "ip", "-o", "link", "show", "lo"],
    );
    assert!(lo.contains("UP"), "{lo}");
    sh("ping", &["-c", "1", "-W", "2", &ip]);

    // Hostname inside the pod's UTS namespace, and the files containers will get.
    let hostname = sh("nsenter", &["-t", &pid, "-u", "hostname"]);
    assert_eq!(hostname.trim(), "web");
    let hostname_file = std::fs::read_to_string(info["hostnameFile"].as_str().unwrap()).unwrap();
    assert_eq!(hostname_file, "web\n");
    let resolv = std::fs::read_to_string(info["resolvConf"].as_str().unwrap()).unwrap();
    assert_eq!(
        resolv,
        "search default.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
    );

    // Sysctls inside the pod's namespaces, not on the host.
    let v = sh(
        "nsenter",
        &[
            "-t",
            &pid,
            "-n",
            "cat",
            "/proc/sys/net/ipv4/ping_group_range",
        ],
    );
    assert_eq!(
        v.split_whitespace().collect::<Vec<_>>(),
        ["0", "2147483647"]
    );
    let v = sh(
        "nsenter",
        &["-t", &pid, "-i", "cat", "/proc/sys/kernel/shmmni"],
    );
    assert_eq!(v.trim(), "1234");
    let host = std::fs::read_to_string("/proc/sys/kernel/shmmni").unwrap();
    assert_ne!(host.trim(), "1234");

    // /dev/shm for the pod is a tmpfs mount.
    let shm = PathBuf::from(info["shm"].as_str().unwrap());
    assert!(is_mounted(&shm), "{} is not mounted", shm.display());

    // The infra process is in <cgroup_parent>/<id> in every hierarchy.
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let want = format!("{cgroup_parent}/{id}");
    let lines: Vec<&str> = cg.lines().collect();
    assert!(!lines.is_empty());
    for line in &lines {
        let path = line.splitn(3, ':').nth(2).unwrap();
        assert_eq!(path, want, "cgroup line {line}");
    }
    for dir in TestDaemon::cgroup_dirs(&want) {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap();
        assert!(
            procs.lines().any(|l| l == pid),
            "{} lacks {pid}",
            dir.display()
        );
    }

    // A second pod has namespaces of its own.
    let id2 = d.run_pod(d.pod_config("other")).await;
    let pid2 = d.infra_pid(&id2).await.to_string();
    for ns in ["net", "ipc", "uts"] {
        assert_ne!(
            ns_link(&pid, ns),
            ns_link(&pid2, ns),
            "{ns} shared between pods"
        );
    }
    d.remove_all().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn host_namespaces_are_the_hosts() {
    let (_config, d) = start_without_pod_network();
    let mut config = d.pod_config("hostnet");
    config.hostname = String::new();
    config.linux.as_mut().unwrap().security_context = Some(api::LinuxSandboxSecurityContext {
        namespace_options: Some(api::NamespaceOption {
            network: api::NamespaceMode::Node as i32,
            pid: api::NamespaceMode::Node as i32,
            ipc: api::NamespaceMode::Node as i32,
            ..Default::default()
        }),
        ..Default::default()
    });
    // No CNI config is needed for a host-network pod.
    let id = d.run_pod(config).await;
    let st = d.status(&id).await;
    let info = verbose_info(&st);
    let pid = info["pid"].as_i64().unwrap().to_string();
    for ns in ["net", "ipc", "uts", "pid"] {
        assert_eq!(
            ns_link(&pid, ns),
            ns_link("self", ns),
            "{ns} namespace is not the host's"
        );
    }
    assert!(st.status.unwrap().network.is_none());
    assert!(info["netns"].is_null());
    let hostname_file = std::fs::read_to_string(info["hostnameFile"].as_str().unwrap()).unwrap();
    assert_eq!(
        hostname_file.trim(),
        nix::unistd::gethostname().unwrap().to_string_lossy()
    );

    // A pod network without a CNI config (and the default network off) is
    // refused, naming the cause.
    let err = d
        .runtime()
        .await
        .run_pod_sandbox(api::RunPodSandboxRequest {
            config: Some(d.pod_config("podnet")),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("CNI"), "{}", err.message());
    d.remove_all().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_and_remove_are_idempotent_and_leave_nothing() {
    let d = TestDaemon::start();
    let config = d.pod_config("gone");
    let cgroup_parent = config.linux.as_ref().unwrap().cgroup_parent.clone();
    let id = d.run_pod(config).await;
    let st = d.status(&id).await;
    let info = verbose_info(&st);
    let pid: i32 = info["pid"].as_i64().unwrap() as i32;
    let ip = st.status.unwrap().network.unwrap().ip;
    let netns = PathBuf::from(info["netns"].as_str().unwrap());
    let shm = PathBuf::from(info["shm"].as_str().unwrap());
    let dir = PathBuf::from(info["sandboxDir"].as_str().unwrap());
    let bridge = d.network.as_ref().unwrap().bridge.clone();
    let ipam_file = d.ipam_dir().join("peapod-test").join(&ip);
    assert!(
        ipam_file.exists(),
        "host-local should hold {}",
        ipam_file.display()
    );
    let veths_before = sh("ip", &["-o", "link", "show", "master", &bridge]);
    assert_eq!(veths_before.lines().count(), 1, "{veths_before}");

    // Another process of the pod: it joined the pod's cgroup, as a
    // container's process would. Stop must kill it as well.
    let mut joined = std::process::Command::new("sleep")
        .arg("300")
        .spawn()
        .unwrap();
    for dir in TestDaemon::cgroup_dirs(&format!("{cgroup_parent}/{id}")) {
        std::fs::write(dir.join("cgroup.procs"), joined.id().to_string()).unwrap();
    }

    let mut rt = d.runtime().await;
    for _ in 0..2 {
        rt.stop_pod_sandbox(api::StopPodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .unwrap();
    }
    assert!(!process_exists(pid), "infra process survives stop");
    let joined_pid = joined.id() as i32;
    assert!(
        !process_exists(joined_pid),
        "a process in the pod's cgroup survives stop"
    );
    joined.wait().unwrap();
    assert!(!ipam_file.exists(), "IP still allocated after stop");
    let st = d.status(&id).await.status.unwrap();
    assert_eq!(st.state, api::PodSandboxState::SandboxNotready as i32);
    assert!(d
        .list_ids()
        .await
        .contains(&(id.clone(), api::PodSandboxState::SandboxNotready as i32)));

    for _ in 0..2 {
        rt.remove_pod_sandbox(api::RemovePodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .unwrap();
    }
    let err = rt
        .pod_sandbox_status(api::PodSandboxStatusRequest {
            pod_sandbox_id: id.clone(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(!netns.exists() && !is_mounted(&netns), "netns file left");
    assert!(!is_mounted(&shm), "shm left mounted");
    assert!(!dir.exists(), "sandbox dir left");
    for cg in TestDaemon::cgroup_dirs(&format!("{cgroup_parent}/{id}")) {
        assert!(!cg.exists(), "cgroup {} left", cg.display());
    }
    let veths_after = sh("ip", &["-o", "link", "show", "master", &bridge]);
    assert_eq!(veths_after.lines().count(), 0, "veth left: {veths_after}");
    assert!(d.list_ids().await.is_empty());

    // Remove of a pod that was never stopped does everything at once.
    let id = d.run_pod(d.pod_config("direct")).await;
    let pid = d.infra_pid(&id).await;
    rt.remove_pod_sandbox(api::RemovePodSandboxRequest {
        pod_sandbox_id: id.clone(),
    })
    .await
    .unwrap();
    assert!(!process_exists(pid));
    assert!(d.allocated_ips().is_empty(), "{:?}", d.allocated_ips());
    // Stop and remove of an id peapod does not know succeed, as the CRI
    // spec says (kubelet retries them after restarts); an empty id is
    // the request's mistake.
    for unknown in [id.clone(), "f".repeat(64)] {
        rt.stop_pod_sandbox(api::StopPodSandboxRequest {
            pod_sandbox_id: unknown.clone(),
        })
        .await
        .unwrap();
        rt.remove_pod_sandbox(api::RemovePodSandboxRequest {
            pod_sandbox_id: unknown,
        })
        .await
        .unwrap();
    }
    let err = rt
        .stop_pod_sandbox(api::StopPodSandboxRequest {
            pod_sandbox_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("pod_sandbox_id"), "{err:?}");
    assert!(d.list_ids().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn list_filters() {
    let d = TestDaemon::start();
    let mut a = d.pod_config("a");
    a.labels.insert("tier".into(), "front".into());
    let mut b = d.pod_config("b");
    b.labels.insert("tier".into(), "back".into());
    let ida = d.run_pod(a).await;
    let idb = d.run_pod(b).await;
    let mut rt = d.runtime().await;
    rt.stop_pod_sandbox(api::StopPodSandboxRequest {
        pod_sandbox_id: idb.clone(),
    })
    .await
    .unwrap();
    let list = |filter: api::PodSandboxFilter| {
        let mut rt = rt.clone();
        async move {
            let mut ids: Vec<String> = rt
                .list_pod_sandbox(api::ListPodSandboxRequest {
                    filter: Some(filter),
                })
                .await
                .unwrap()
                .into_inner()
                .items
                .into_iter()
                .map(|p| p.id)
                .collect();
            ids.sort();
            ids
        }
    };
    let mut both = vec![ida.clone(), idb.clone()];
    both.sort();
    assert_eq!(list(Default::default()).await, both);
    // Present-but-empty state means READY (kubelet's proto3 trap).
    assert_eq!(
        list(api::PodSandboxFilter {
            state: Some(api::PodSandboxStateValue { state: 0 }),
            ..Default::default()
        })
        .await,
        vec![ida.clone()]
    );
    assert_eq!(
        list(api::PodSandboxFilter {
            state: Some(api::PodSandboxStateValue { state: 1 }),
            ..Default::default()
        })
        .await,
        vec![idb.clone()]
    );
    assert_eq!(
        list(api::PodSandboxFilter {
            label_selector: HashMap::from([("tier".to_string(), "back".to_string())]),
            ..Default::default()
        })
        .await,
        vec![idb.clone()]
    );
    assert_eq!(
        list(api::PodSandboxFilter {
            id: ida[..12].to_string(),
            ..Default::default()
        })
        .await,
        vec![ida.clone()]
    );
    assert_eq!(
        list(api::PodSandboxFilter {
            id: "nope".into(),
            ..Default::default()
        })
        .await,
        Vec::<String>::new()
    );
    // Status by unique prefix, as crictl users type it.
    assert_eq!(d.status(&ida[..12]).await.status.unwrap().id, ida);
    d.remove_all().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_names_the_field_and_leaves_nothing() {
    let d = TestDaemon::start();
    let mut rt = d.runtime().await;
    let shared = rt.clone();
    let run = |config: Option<api::PodSandboxConfig>, handler: &str| {
        let mut rt = shared.clone();
        let handler = handler.to_string();
        async move {
            rt.run_pod_sandbox(api::RunPodSandboxRequest {
                config,
                runtime_handler: handler,
            })
            .await
            .unwrap_err()
        }
    };
    let e = run(None, "").await;
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("config"), "{}", e.message());

    let mut c = d.pod_config("x");
    c.metadata = None;
    let e = run(Some(c), "").await;
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("config.metadata"), "{}", e.message());

    let mut c = d.pod_config("x");
    c.metadata.as_mut().unwrap().name = String::new();
    let e = run(Some(c), "").await;
    assert!(
        e.message().contains("config.metadata.name"),
        "{}",
        e.message()
    );

    let mut c = d.pod_config("x");
    c.log_directory = "/var/log/pods/../../../etc".into();
    let e = run(Some(c), "").await;
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("config.log_directory"),
        "{}",
        e.message()
    );

    let mut c = d.pod_config("x");
    c.linux.as_mut().unwrap().sysctls =
        HashMap::from([("kernel.hostname".to_string(), "evil".to_string())]);
    let e = run(Some(c), "").await;
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("kernel.hostname"), "{}", e.message());

    let mut c = d.pod_config("x");
    c.linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .namespace_options
        .as_mut()
        .unwrap()
        .network = api::NamespaceMode::Target as i32;
    let e = run(Some(c), "").await;
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("namespace_options.network"),
        "{}",
        e.message()
    );

    let mut c = d.pod_config("x");
    c.linux.as_mut().unwrap().cgroup_parent = "/kubepods/../../escape".into();
    let e = run(Some(c), "").await;
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("cgroup_parent"), "{}", e.message());

    let e = run(Some(d.pod_config("x")), "kata").await;
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("runtime_handler"), "{}", e.message());

    for (code, e) in [
        (
            Code::NotFound,
            rt.pod_sandbox_status(api::PodSandboxStatusRequest {
                pod_sandbox_id: "abc".into(),
                verbose: false,
            })
            .await
            .unwrap_err(),
        ),
        (
            Code::InvalidArgument,
            rt.stop_pod_sandbox(api::StopPodSandboxRequest {
                pod_sandbox_id: String::new(),
            })
            .await
            .unwrap_err(),
        ),
    ] {
        assert_eq!(e.code(), code, "{e:?}");
        assert!(
            e.message().contains("pod_sandbox_id") || e.message().contains("abc"),
            "{}",
            e.message()
        );
    }

    // A failure half-way (the kernel refuses a sysctl that passed
    // validation) is rolled back: no record, process, mount or cgroup.
    let mut c = d.pod_config("halfway");
    let parent = c.linux.as_ref().unwrap().cgroup_parent.clone();
    c.linux.as_mut().unwrap().sysctls =
        HashMap::from([("net.ipv4.no_such_sysctl".to_string(), "1".to_string())]);
    let e = run(Some(c), "").await;
    assert_ne!(e.code(), Code::Ok);
    assert!(e.message().contains("no_such_sysctl"), "{}", e.message());
    assert!(d.list_ids().await.is_empty());
    d.assert_nothing_left(&parent);
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_metadata_is_already_exists_naming_the_id() {
    let d = TestDaemon::start();
    let config = d.pod_config("dup");
    let id = d.run_pod(config.clone()).await;
    let e = d
        .runtime()
        .await
        .run_pod_sandbox(api::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    assert!(e.message().contains(&id), "{}", e.message());
    // A new attempt is a new sandbox.
    let mut next = config;
    next.metadata.as_mut().unwrap().attempt = 1;
    let id2 = d.run_pod(next).await;
    assert_ne!(id, id2);
    d.remove_all().await;
}

/// A CNI plugin failing after the bridge plugin attached the pod: the
/// rollback detaches it (DEL) and removes everything else.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_cni_add_is_rolled_back() {
    let gate_base = tempfile::tempdir().unwrap();
    let gate = common::gate::Gate::install(gate_base.path());
    let d = TestDaemon::start_with(Options {
        cni_bin_dir: Some(gate.bin_dirs()),
        ..Default::default()
    });
    common::gate::Gate::append_plugin(&d.cni_conf_dir, "fail");
    let config = d.pod_config("cnifail");
    let parent = config.linux.as_ref().unwrap().cgroup_parent.clone();
    let e = d
        .runtime()
        .await
        .run_pod_sandbox(api::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert!(
        e.message().contains("injected failure") && e.message().contains("fail"),
        "{}",
        e.message()
    );
    assert!(d.list_ids().await.is_empty());
    let bridge = &d.network.as_ref().unwrap().bridge;
    // The bridge itself may stay (the plugin created it); no veth remains.
    let veths = std::process::Command::new("ip")
        .args(["-o", "link", "show", "master", bridge])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&veths.stdout).lines().count(), 0);
    d.assert_nothing_left(&parent);
}

/// The pod CIDR kubelet sets with UpdateRuntimeConfig reaches the CNI
/// plugins (`ipRanges` runtime config) and survives a daemon restart.
#[tokio::test(flavor = "multi_thread")]
async fn pod_cidr_from_update_runtime_config_reaches_cni() {
    let mut d = TestDaemon::start();
    // host-local without ranges of its own: only runtimeConfig.ipRanges can
    // give it a subnet.
    let path = d.cni_conf_dir.join("10-test.conflist");
    let mut conf: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    conf["plugins"][0]["capabilities"] = serde_json::json!({"ipRanges": true});
    conf["plugins"][0]["ipam"]
        .as_object_mut()
        .unwrap()
        .remove("ranges");
    std::fs::write(&path, serde_json::to_vec(&conf).unwrap()).unwrap();
    let prefix = d.network.as_ref().unwrap().subnet_prefix.clone();

    let mut rt = d.runtime().await;
    let e = rt
        .update_runtime_config(api::UpdateRuntimeConfigRequest {
            runtime_config: Some(api::RuntimeConfig {
                network_config: Some(api::NetworkConfig {
                    pod_cidr: "not-a-cidr".into(),
                }),
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("pod_cidr"), "{}", e.message());
    rt.update_runtime_config(api::UpdateRuntimeConfigRequest {
        runtime_config: Some(api::RuntimeConfig {
            network_config: Some(api::NetworkConfig {
                pod_cidr: format!("{prefix}.0/24"),
            }),
        }),
    })
    .await
    .unwrap();

    d.kill9();
    d.spawn();
    let id = d.run_pod(d.pod_config("cidr")).await;
    let ip = d.status(&id).await.status.unwrap().network.unwrap().ip;
    assert!(
        ip.starts_with(&format!("{prefix}.")),
        "pod ip {ip} not in {prefix}.0/24"
    );
    d.remove_all().await;
    assert!(d.allocated_ips().is_empty());
}
