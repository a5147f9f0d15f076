//! Replays the requests a real kubelet sent (shared/fixtures/kubelet-cri-calls.json)
//! and checks the answers kubelet depends on.

mod common;

use std::collections::HashMap;

use common::containers::Pod;
use common::*;
use peapod::api;
use serde_json::Value;
use tonic::Code;

fn fixtures() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/kubelet-cri-calls.json"
    );
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e} (the shared/ dir must sit beside the checkout)"));
    serde_json::from_str(&text).unwrap()
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or("").to_string()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(s).collect())
        .unwrap_or_default()
}

fn map(v: &Value) -> HashMap<String, String> {
    v.as_object()
        .map(|o| o.iter().map(|(k, v)| (k.clone(), s(v))).collect())
        .unwrap_or_default()
}

fn i(v: &Value) -> i32 {
    v.as_i64().unwrap_or(0) as i32
}

/// The fixture's JSON (proto field names, enums as numbers, zero values
/// omitted) as the generated message.
fn pod_config(c: &Value) -> api::PodSandboxConfig {
    let md = &c["metadata"];
    let linux = &c["linux"];
    let sc = &linux["security_context"];
    let ns = &sc["namespace_options"];
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: s(&md["name"]),
            uid: s(&md["uid"]),
            namespace: s(&md["namespace"]),
            attempt: md["attempt"].as_u64().unwrap_or(0) as u32,
        }),
        hostname: s(&c["hostname"]),
        log_directory: s(&c["log_directory"]),
        dns_config: c.get("dns_config").map(|d| api::DnsConfig {
            servers: strings(&d["servers"]),
            searches: strings(&d["searches"]),
            options: strings(&d["options"]),
        }),
        port_mappings: c["port_mappings"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|p| api::PortMapping {
                        protocol: i(&p["protocol"]),
                        container_port: i(&p["container_port"]),
                        host_port: i(&p["host_port"]),
                        host_ip: s(&p["host_ip"]),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        labels: map(&c["labels"]),
        annotations: map(&c["annotations"]),
        linux: Some(api::LinuxPodSandboxConfig {
            cgroup_parent: s(&linux["cgroup_parent"]),
            security_context: Some(api::LinuxSandboxSecurityContext {
                namespace_options: Some(api::NamespaceOption {
                    network: i(&ns["network"]),
                    pid: i(&ns["pid"]),
                    ipc: i(&ns["ipc"]),
                    target_id: s(&ns["target_id"]),
                    userns_options: None,
                }),
                run_as_user: sc.get("run_as_user").map(|v| api::Int64Value {
                    value: v["value"].as_i64().unwrap_or(0),
                }),
                run_as_group: sc.get("run_as_group").map(|v| api::Int64Value {
                    value: v["value"].as_i64().unwrap_or(0),
                }),
                supplemental_groups: sc["supplemental_groups"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_i64).collect())
                    .unwrap_or_default(),
                seccomp: sc.get("seccomp").map(|v| api::SecurityProfile {
                    profile_type: i(&v["profile_type"]),
                    localhost_ref: s(&v["localhost_ref"]),
                }),
                ..Default::default()
            }),
            sysctls: map(&linux["sysctls"]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Moves the pod's cgroup and log directory under the test's own places.
fn localise(d: &TestDaemon, mut c: api::PodSandboxConfig) -> api::PodSandboxConfig {
    let linux = c.linux.as_mut().unwrap();
    linux.cgroup_parent = format!("{}{}", d.cgroup_parent, linux.cgroup_parent);
    c.log_directory = format!("{}{}", d.dir.path().display(), c.log_directory);
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn kubelet_run_pod_sandbox_requests() {
    let f = fixtures();
    let d = TestDaemon::start();
    let mut rt = d.runtime().await;

    // Startup sequence: Version, RuntimeConfig, Version{0.1.0}, Status.
    let v = rt
        .version(api::VersionRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.version, "0.1.0");
    let rc = rt
        .runtime_config(api::RuntimeConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        rc.linux.unwrap().cgroup_driver,
        1,
        "a cgroupfs runtime must say CGROUPFS explicitly"
    );
    let st = rt
        .status(api::StatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    let conds = st.status.unwrap().conditions;
    for want in ["RuntimeReady", "NetworkReady"] {
        assert!(
            conds.iter().any(|c| c.r#type == want && c.status),
            "{want} not true: {conds:?}"
        );
    }

    let mut ids = Vec::new();
    for name in [
        "RunPodSandbox_burstable_static",
        "RunPodSandbox_guaranteed_api",
        "RunPodSandbox_besteffort_sysctls_securitycontext",
        "RunPodSandbox_hostnetwork_hostpid",
    ] {
        let req = &f[name]["req"];
        let config = localise(&d, pod_config(&req["config"]));
        let id = rt
            .run_pod_sandbox(api::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: s(&req["runtime_handler"]),
            })
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}\n{}", d.log_text()))
            .into_inner()
            .pod_sandbox_id;
        // Labels and annotations come back verbatim, in Status and List.
        let st = d.status(&id).await;
        let status = st.status.unwrap();
        assert_eq!(status.metadata, config.metadata, "{name}");
        assert_eq!(status.labels, config.labels, "{name}");
        assert_eq!(status.annotations, config.annotations, "{name}");
        assert_eq!(
            status.state,
            api::PodSandboxState::SandboxReady as i32,
            "{name}"
        );
        let ns = status.linux.unwrap().namespaces.unwrap().options.unwrap();
        assert_eq!(
            ns,
            config
                .linux
                .as_ref()
                .unwrap()
                .security_context
                .as_ref()
                .unwrap()
                .namespace_options
                .clone()
                .unwrap(),
            "{name}"
        );
        let pid = st.info["pid"].clone();
        let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let want = format!("{}/{}", config.linux.as_ref().unwrap().cgroup_parent, id);
        assert!(
            cg.lines().any(|l| l.ends_with(&format!(":{want}"))),
            "{name}: {cg}"
        );
        if name.contains("hostnetwork") {
            assert!(status.network.is_none(), "{name}");
            assert_eq!(ns_link(&pid, "net"), ns_link("self", "net"));
            assert_eq!(ns_link(&pid, "pid"), ns_link("self", "pid"));
        } else {
            let ip = status.network.unwrap().ip;
            assert!(!ip.is_empty(), "{name} has no IP");
            assert_ne!(ns_link(&pid, "net"), ns_link("self", "net"));
        }
        if name.contains("sysctls") {
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
        }
        ids.push(id);
    }

    // PLEG's relist: `{state: {}}` is READY only.
    let list = rt
        .list_pod_sandbox(api::ListPodSandboxRequest {
            filter: Some(api::PodSandboxFilter {
                state: Some(api::PodSandboxStateValue::default()),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.items.len(), 4);
    for p in &list.items {
        assert!(!p.labels.is_empty() && p.metadata.is_some());
    }

    // RuntimeClass naming a handler that is not configured.
    let req = &f["RunPodSandbox_runtimeclass_crun_failed"]["req"];
    let e = rt
        .run_pod_sandbox(api::RunPodSandboxRequest {
            config: Some(localise(&d, pod_config(&req["config"]))),
            runtime_handler: s(&req["runtime_handler"]),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("runtime_handler") && e.message().contains("crun"),
        "{}",
        e.message()
    );

    // Delete as kubelet does: stop, remove, then GC stops and removes again.
    for id in &ids {
        rt.stop_pod_sandbox(api::StopPodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .unwrap();
        rt.remove_pod_sandbox(api::RemovePodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .unwrap();
        rt.remove_pod_sandbox(api::RemovePodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .unwrap();
    }
    let all = rt
        .list_pod_sandbox(api::ListPodSandboxRequest { filter: None })
        .await
        .unwrap()
        .into_inner();
    assert!(all.items.is_empty());
}

/// kubelet's image calls for a static pod of `docker.io/library/busybox:1.36`,
/// with docker.io mirrored to the test registry: ImageStatus (absent), the
/// PullImage request as kubelet sent it, ImageStatus again, ListImages and
/// ImageFsInfo, compared field by field with what kubelet got from
/// containerd.
#[tokio::test(flavor = "multi_thread")]
async fn kubelet_image_requests() {
    let f = fixtures();
    let reg = common::registry::Registry::start(None, &["busybox"]);
    reg.copy("busybox:latest", "library/busybox:1.36");
    let d = TestDaemon::start_with(Options {
        cni: false,
        extra_args: vec![
            "--registry-mirror".into(),
            format!("docker.io={}", reg.addr),
        ],
        ..Default::default()
    });
    let mut images = d.images().await;
    let image_spec = |v: &Value| api::ImageSpec {
        image: s(&v["image"]),
        annotations: map(&v["annotations"]),
        ..Default::default()
    };

    let st = &f["ImageStatus"]["req"];
    let name = s(&st["image"]["image"]);
    assert_eq!(name, "docker.io/library/busybox:1.36");
    let absent = images
        .image_status(api::ImageStatusRequest {
            image: Some(image_spec(&st["image"])),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(absent.image.is_none(), "absent before the pull");

    let pr = &f["PullImage"]["req"];
    let image_ref = images
        .pull_image(api::PullImageRequest {
            image: Some(image_spec(&pr["image"])),
            auth: None,
            sandbox_config: Some(pod_config(&pr["sandbox_config"])),
        })
        .await
        .unwrap()
        .into_inner()
        .image_ref;
    // kubelet's reply had the shape sha256:<config digest>.
    let want = s(&f["PullImage"]["resp"]["image_ref"]);
    assert_eq!(image_ref.len(), want.len());
    assert!(image_ref.starts_with("sha256:"));

    let got = images
        .image_status(api::ImageStatusRequest {
            image: Some(image_spec(&st["image"])),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .image
        .expect("pulled");
    let theirs = &f["ImageStatus"]["resp"]["image"];
    assert_eq!(got.id, image_ref);
    assert_eq!(got.repo_tags, strings(&theirs["repo_tags"]));
    assert_eq!(got.repo_digests.len(), 1);
    let their_digest = s(&theirs["repo_digests"][0]);
    let (their_repo, _) = their_digest.split_once('@').unwrap();
    assert_eq!(
        got.repo_digests[0],
        format!("{their_repo}@{}", reg.digest("busybox:latest"))
    );
    assert!(got.size > 0);

    let list = images
        .list_images(api::ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images;
    assert_eq!(list, vec![got]);

    let fs = images
        .image_fs_info(api::ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fs.image_filesystems.len(), 1);
    let u = &fs.image_filesystems[0];
    assert!(u.used_bytes.as_ref().unwrap().value > 1_000_000);
    assert!(u.inodes_used.as_ref().unwrap().value > 2);
    assert!(u.timestamp > 0);
    assert!(!u.fs_id.as_ref().unwrap().mountpoint.is_empty());
}

fn int64(v: &Value) -> Option<api::Int64Value> {
    v.as_object().map(|o| api::Int64Value {
        value: o.get("value").and_then(Value::as_i64).unwrap_or(0),
    })
}

/// The fixture's container config as the generated message.
fn container_config(c: &Value) -> api::ContainerConfig {
    let r = &c["linux"]["resources"];
    let sc = &c["linux"]["security_context"];
    let ns = &sc["namespace_options"];
    let caps = &sc["capabilities"];
    api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: s(&c["metadata"]["name"]),
            attempt: c["metadata"]["attempt"].as_u64().unwrap_or(0) as u32,
        }),
        image: Some(api::ImageSpec {
            image: s(&c["image"]["image"]),
            user_specified_image: s(&c["image"]["user_specified_image"]),
            ..Default::default()
        }),
        command: strings(&c["command"]),
        args: strings(&c["args"]),
        working_dir: s(&c["working_dir"]),
        envs: c["envs"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|kv| api::KeyValue {
                        key: s(&kv["key"]),
                        value: s(&kv["value"]),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        mounts: c["mounts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|m| api::Mount {
                        container_path: s(&m["container_path"]),
                        host_path: s(&m["host_path"]),
                        readonly: m["readonly"].as_bool().unwrap_or(false),
                        selinux_relabel: m["selinux_relabel"].as_bool().unwrap_or(false),
                        propagation: i(&m["propagation"]),
                        ..Default::default()
                    })
                    .collect()
            })
            .unwrap_or_default(),
        labels: map(&c["labels"]),
        annotations: map(&c["annotations"]),
        log_path: s(&c["log_path"]),
        stdin: c["stdin"].as_bool().unwrap_or(false),
        tty: c["tty"].as_bool().unwrap_or(false),
        linux: Some(api::LinuxContainerConfig {
            resources: Some(api::LinuxContainerResources {
                cpu_period: r["cpu_period"].as_i64().unwrap_or(0),
                cpu_quota: r["cpu_quota"].as_i64().unwrap_or(0),
                cpu_shares: r["cpu_shares"].as_i64().unwrap_or(0),
                memory_limit_in_bytes: r["memory_limit_in_bytes"].as_i64().unwrap_or(0),
                oom_score_adj: r["oom_score_adj"].as_i64().unwrap_or(0),
                memory_swap_limit_in_bytes: r["memory_swap_limit_in_bytes"].as_i64().unwrap_or(0),
                hugepage_limits: r["hugepage_limits"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|h| api::HugepageLimit {
                                page_size: s(&h["page_size"]),
                                limit: h["limit"].as_u64().unwrap_or(0),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                ..Default::default()
            }),
            security_context: Some(api::LinuxContainerSecurityContext {
                capabilities: caps.as_object().map(|_| api::Capability {
                    add_capabilities: strings(&caps["add_capabilities"]),
                    drop_capabilities: strings(&caps["drop_capabilities"]),
                    ..Default::default()
                }),
                privileged: sc["privileged"].as_bool().unwrap_or(false),
                namespace_options: Some(api::NamespaceOption {
                    network: i(&ns["network"]),
                    pid: i(&ns["pid"]),
                    ipc: i(&ns["ipc"]),
                    target_id: s(&ns["target_id"]),
                    userns_options: None,
                }),
                run_as_user: int64(&sc["run_as_user"]),
                run_as_group: int64(&sc["run_as_group"]),
                run_as_username: s(&sc["run_as_username"]),
                readonly_rootfs: sc["readonly_rootfs"].as_bool().unwrap_or(false),
                supplemental_groups: sc["supplemental_groups"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_i64).collect())
                    .unwrap_or_default(),
                no_new_privs: sc["no_new_privs"].as_bool().unwrap_or(false),
                masked_paths: strings(&sc["masked_paths"]),
                readonly_paths: strings(&sc["readonly_paths"]),
                seccomp: sc.get("seccomp").map(|v| api::SecurityProfile {
                    profile_type: i(&v["profile_type"]),
                    localhost_ref: s(&v["localhost_ref"]),
                }),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

/// kubelet's host paths (`/var/lib/kubelet/pods/...`) made under the test
/// dir: files for /etc/hosts and the termination log, directories
/// (writable by anyone, as an emptyDir is for a non-root pod) otherwise.
fn localise_mounts(d: &TestDaemon, c: &mut api::ContainerConfig) {
    for m in &mut c.mounts {
        let local = format!("{}{}", d.dir.path().display(), m.host_path);
        let p = std::path::Path::new(&local);
        if m.container_path == "/etc/hosts" || m.container_path == "/dev/termination-log" {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            if m.container_path == "/etc/hosts" {
                std::fs::write(p, "127.0.0.1\tlocalhost\n10.89.0.17\tkitchen-sink\n").unwrap();
            } else {
                std::fs::write(p, "").unwrap();
            }
        } else {
            std::fs::create_dir_all(p).unwrap();
            std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o777))
                .unwrap();
            if m.container_path == "/config" {
                std::fs::write(p.join("greeting"), "hello-from-configmap").unwrap();
            }
        }
        m.host_path = local;
    }
}

type Sandboxes = HashMap<String, (String, api::PodSandboxConfig)>;

/// The fixture's CreateContainer request, localised: its sandbox (run once
/// per fixture pod), and its config with our image id and host paths.
async fn fixture_container(
    d: &TestDaemon,
    f: &Value,
    sandboxes: &mut Sandboxes,
    name: &str,
    image_id: &str,
) -> (String, api::PodSandboxConfig, api::ContainerConfig) {
    let req = &f[name]["req"];
    let theirs = s(&req["pod_sandbox_id"]);
    if !sandboxes.contains_key(&theirs) {
        let pod = localise(d, pod_config(&req["sandbox_config"]));
        let id = d.run_pod(pod.clone()).await;
        sandboxes.insert(theirs.clone(), (id, pod));
    }
    let (sandbox, pod) = sandboxes[&theirs].clone();
    let mut config = container_config(&req["config"]);
    config.image.as_mut().unwrap().image = image_id.to_string();
    localise_mounts(d, &mut config);
    (sandbox, pod, config)
}

/// kubelet's container calls, replayed: CreateContainer for a static pod
/// with hooks and probes, an API pod with a service-account token, an init
/// container followed by a locked-down container, and an ephemeral debug
/// container targeting another's PID namespace; then StartContainer,
/// ExecSync as probes and hooks send it, ContainerStatus, ListContainers,
/// ListContainerStats, StopContainer with the pre-stop grace and
/// RemoveContainer, with the answers kubelet relies on.
#[tokio::test(flavor = "multi_thread")]
async fn kubelet_container_requests() {
    let f = fixtures();
    let reg = common::registry::Registry::start(None, &["busybox"]);
    reg.copy("busybox:latest", "library/busybox:1.36");
    let d = TestDaemon::start_with(Options {
        extra_args: vec![
            "--registry-mirror".into(),
            format!("docker.io={}", reg.addr),
        ],
        ..Default::default()
    });
    let mut rt = d.runtime().await;
    let image_id = d
        .images()
        .await
        .pull_image(api::PullImageRequest {
            image: Some(api::ImageSpec {
                image: "docker.io/library/busybox:1.36".into(),
                ..Default::default()
            }),
            auth: None,
            sandbox_config: None,
        })
        .await
        .unwrap()
        .into_inner()
        .image_ref;

    // One sandbox per fixture pod, as kubelet ran it.
    let mut sandboxes = Sandboxes::new();
    // The static pod: runs, hooks and probes by ExecSync.
    let (sb, pod, config) = fixture_container(
        &d,
        &f,
        &mut sandboxes,
        "CreateContainer_static_hooks_probe",
        &image_id,
    )
    .await;
    let bb = d
        .create(
            &Pod {
                id: sb.clone(),
                config: pod.clone().clone(),
            },
            config.clone().clone(),
        )
        .await;
    d.start_c(&bb).await;
    let exec = |cmd: &Value, timeout: &Value| api::ExecSyncRequest {
        container_id: bb.clone(),
        cmd: strings(cmd),
        timeout: timeout.as_i64().unwrap_or(0),
    };
    let hook = &f["ExecSync_poststart_hook"]["req"];
    let r = rt
        .exec_sync(exec(&hook["cmd"], &hook["timeout"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.exit_code, 0);
    let probe = &f["ExecSync_probe_ok"]["req"];
    let mut ok = false;
    for _ in 0..50 {
        let r = rt
            .exec_sync(exec(&probe["cmd"], &probe["timeout"]))
            .await
            .unwrap()
            .into_inner();
        if r.exit_code == 0 {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ok, "the liveness probe never passed");
    // A failing probe is a successful reply with a non-zero exit code.
    let failed = &f["ExecSync_probe_failed"]["req"];
    let r = rt
        .exec_sync(exec(&failed["cmd"], &failed["timeout"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.exit_code,
        i(&f["ExecSync_probe_failed"]["resp"]["exit_code"])
    );

    // ContainerStatus as kubelet read it from containerd.
    let theirs = &f["ContainerStatus_running"]["resp"]["status"];
    let st = rt
        .container_status(api::ContainerStatusRequest {
            container_id: bb.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(st.state, i(&theirs["state"]));
    assert_eq!(
        st.metadata.as_ref().unwrap().name,
        s(&theirs["metadata"]["name"])
    );
    assert_eq!(st.labels, map(&theirs["labels"]));
    assert_eq!(st.annotations, map(&theirs["annotations"]));
    assert_eq!(
        st.image.as_ref().unwrap().image,
        s(&theirs["image"]["image"])
    );
    assert_eq!(st.image_id, image_id);
    assert!(
        st.image_ref
            .starts_with("docker.io/library/busybox@sha256:"),
        "{}",
        st.image_ref
    );
    assert_eq!(st.log_path, format!("{}/bb/0.log", pod.log_directory));
    assert_eq!(st.mounts.len(), theirs["mounts"].as_array().unwrap().len());
    let r = st.resources.unwrap().linux.unwrap();
    let want = &theirs["resources"]["linux"];
    assert_eq!(r.cpu_shares, want["cpu_shares"].as_i64().unwrap());
    assert_eq!(r.cpu_quota, want["cpu_quota"].as_i64().unwrap());
    assert_eq!(
        r.memory_limit_in_bytes,
        want["memory_limit_in_bytes"].as_i64().unwrap()
    );
    assert_eq!(r.oom_score_adj, want["oom_score_adj"].as_i64().unwrap());
    // No hugetlb controller here: as containerd, no hugepage limits in force.
    assert!(r.hugepage_limits.is_empty());
    // And the kernel holds what the status says.
    let pid = d.cpid(&bb).await;
    let cg = common::containers::proc_cgroup(pid, "cpu");
    let file = |c: &str, f: &str| common::containers::cgroup_v1_file(c, &cg, f);
    assert_eq!(file("cpu", "cpu.shares"), r.cpu_shares.to_string());
    assert_eq!(file("cpu", "cpu.cfs_quota_us"), r.cpu_quota.to_string());
    assert_eq!(
        file("memory", "memory.limit_in_bytes"),
        r.memory_limit_in_bytes.to_string()
    );
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))
            .unwrap()
            .trim(),
        r.oom_score_adj.to_string()
    );

    // An API pod (Guaranteed, oom_score_adj -997) with a token mount.
    let (sb2, pod2, config) = fixture_container(
        &d,
        &f,
        &mut sandboxes,
        "CreateContainer_api_guaranteed_sa_token",
        &image_id,
    )
    .await;
    let httpd = d
        .create(
            &Pod {
                id: sb2.clone(),
                config: pod2.clone(),
            },
            config.clone(),
        )
        .await;
    d.start_c(&httpd).await;

    // The init container, then the locked-down main container that reads
    // what it wrote (user 1000:3000, read-only rootfs, drop ALL).
    let (sb3, pod3, init_cfg) =
        fixture_container(&d, &f, &mut sandboxes, "CreateContainer_init", &image_id).await;
    let init = d
        .create(
            &Pod {
                id: sb3.clone(),
                config: pod3.clone().clone(),
            },
            init_cfg.clone(),
        )
        .await;
    d.start_c(&init).await;
    let st = d.wait_exit(&init, std::time::Duration::from_secs(20)).await;
    assert_eq!((st.exit_code, st.reason.as_str()), (0, "Completed"));
    let (_, _, main_cfg) = fixture_container(
        &d,
        &f,
        &mut sandboxes,
        "CreateContainer_securitycontext_volumes_env",
        &image_id,
    )
    .await;
    let main = d
        .create(
            &Pod {
                id: sb3.clone(),
                config: pod3.clone().clone(),
            },
            main_cfg.clone(),
        )
        .await;
    d.start_c(&main).await;
    let log = std::path::PathBuf::from(&pod3.log_directory).join("main/0.log");
    eventually("the main container's output", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("10.89.0.17 vm"))
    })
    .await;
    let text =
        common::containers::log_text(&common::containers::read_log(&log), "stdout").join("\n");
    assert!(text.contains("uid=1000 gid=3000"), "{text}");
    assert!(text.contains("init-ran"), "{text}");
    assert!(text.contains("hello-from-configmap"), "{text}");
    let pid = d.cpid(&main).await;
    let status = common::containers::proc_status(pid);
    assert_eq!(
        status["CapEff"], "0000000000000000",
        "a non-root user keeps no capabilities"
    );
    assert_eq!(status["CapBnd"], "0000000000000400");
    assert_eq!(status["Seccomp"], "2");
    assert_eq!(status["NoNewPrivs"], "1");

    // The ephemeral debug container, targeting a running container of its pod.
    let (sb4, pod4, mut dbg_cfg) = fixture_container(
        &d,
        &f,
        &mut sandboxes,
        "CreateContainer_ephemeral_target_pidns",
        &image_id,
    )
    .await;
    let mut target_cfg = dbg_cfg.clone();
    target_cfg.metadata.as_mut().unwrap().name = "httpd".into();
    target_cfg.command = vec!["sleep".into(), "3601".into()];
    let tns = target_cfg
        .linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap();
    *tns.namespace_options.as_mut().unwrap() = api::NamespaceOption {
        pid: api::NamespaceMode::Container as i32,
        ..Default::default()
    };
    let target = d
        .create(
            &Pod {
                id: sb4.clone(),
                config: pod4.clone().clone(),
            },
            target_cfg.clone(),
        )
        .await;
    d.start_c(&target).await;
    let sc = dbg_cfg
        .linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap();
    sc.namespace_options.as_mut().unwrap().target_id = target.clone();
    let dbg = d
        .create(
            &Pod {
                id: sb4.clone(),
                config: pod4.clone(),
            },
            dbg_cfg.clone(),
        )
        .await;
    d.start_c(&dbg).await;
    let (pt, pd) = (d.cpid(&target).await, d.cpid(&dbg).await);
    assert_eq!(
        ns_link(&pt.to_string(), "pid"),
        ns_link(&pd.to_string(), "pid")
    );

    // PLEG's relist of running containers and kubelet's stats call.
    let lr = &f["ListContainers_running"]["req"];
    let running = rt
        .list_containers(api::ListContainersRequest {
            filter: Some(api::ContainerFilter {
                state: Some(api::ContainerStateValue {
                    state: i(&lr["filter"]["state"]["state"]),
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .containers;
    let mut ids: Vec<&str> = running.iter().map(|c| c.id.as_str()).collect();
    ids.sort();
    let mut want: Vec<&str> = [&bb, &httpd, &main, &target, &dbg]
        .iter()
        .map(|s| s.as_str())
        .collect();
    want.sort();
    // httpd may have exited already (its document root is not in busybox).
    ids.retain(|i| *i != httpd.as_str());
    want.retain(|i| *i != httpd.as_str());
    assert_eq!(ids, want);
    let stats = rt
        .list_container_stats(api::ListContainerStatsRequest {
            filter: Some(api::ContainerStatsFilter::default()),
        })
        .await
        .unwrap()
        .into_inner()
        .stats;
    let theirs = &f["ListContainerStats"]["resp"]["stats"][0]["attributes"];
    let ours = stats
        .iter()
        .find(|s| s.attributes.as_ref().unwrap().id == bb)
        .expect("stats of the static pod's container");
    assert_eq!(
        ours.attributes.as_ref().unwrap().labels,
        map(&theirs["labels"])
    );
    assert_eq!(
        ours.attributes.as_ref().unwrap().annotations,
        map(&theirs["annotations"])
    );
    assert!(ours.cpu.as_ref().unwrap().usage_core_nano_seconds.is_some());
    assert!(
        ours.memory
            .as_ref()
            .unwrap()
            .working_set_bytes
            .as_ref()
            .unwrap()
            .value
            > 0
    );

    // Delete: the preStop hook (its output goes to the container's own
    // stdout), StopContainer with the rest of the grace period, remove.
    let pre = &f["ExecSync_prestop_hook"]["req"];
    let r = rt
        .exec_sync(exec(&pre["cmd"], &pre["timeout"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.exit_code, 0);
    let bb_log = std::path::PathBuf::from(&pod.log_directory).join("bb/0.log");
    eventually("preStop output in the log", || {
        std::fs::read_to_string(&bb_log).is_ok_and(|t| t.contains("stdout F prestop-ran"))
    })
    .await;
    let stop = &f["StopContainer_prestop_grace"]["req"];
    let t = std::time::Instant::now();
    rt.stop_container(api::StopContainerRequest {
        container_id: bb.clone(),
        timeout: stop["timeout"].as_i64().unwrap(),
    })
    .await
    .unwrap();
    // The shell loop is PID 1 and ignores SIGTERM: killed after the grace.
    assert!(t.elapsed() >= std::time::Duration::from_secs(9));
    let st = d.cstatus(&bb).await;
    let theirs = &f["ContainerStatus_exited"]["resp"]["status"];
    assert_eq!(st.state, i(&theirs["state"]));
    assert_eq!(st.exit_code, i(&theirs["exit_code"]));
    assert_eq!(st.reason, s(&theirs["reason"]));
    rt.remove_container(api::RemoveContainerRequest {
        container_id: bb.clone(),
    })
    .await
    .unwrap();
    let e = rt
        .container_status(api::ContainerStatusRequest {
            container_id: bb.clone(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code().to_string(), Code::NotFound.to_string());
    assert_eq!(s(&f["ContainerStatus_notfound"]["code"]), "NotFound");
    d.remove_all().await;
    d.assert_no_containers_left();
}

/// A `hostUsers: false` pod as kubelet 1.32 sends it: the fixture's
/// locked-down pod and container with the user-namespace options kubelet
/// adds to both (one mapping of 65536 ids at a 65536-aligned host id, for
/// uids and gids alike). The configmap, emptyDir, /etc/hosts and
/// termination-log mounts come through id-mapped, so the non-root user
/// reads and writes them as on a pod in the host's user namespace.
#[tokio::test(flavor = "multi_thread")]
async fn kubelet_host_users_false_pod() {
    const HOST_ID: u32 = 65536 * 9;
    let f = fixtures();
    let d = TestDaemon::start();
    let image_id = d.pull("busybox:latest").await;
    let mapping = api::IdMapping {
        host_id: HOST_ID,
        container_id: 0,
        length: 65536,
    };
    let userns = Some(api::UserNamespace {
        mode: api::NamespaceMode::Pod as i32,
        uids: vec![mapping],
        gids: vec![mapping],
    });
    let req = &f["CreateContainer_securitycontext_volumes_env"]["req"];
    let mut pod = localise(&d, pod_config(&req["sandbox_config"]));
    common::containers::pod_namespace_options(&mut pod).userns_options = userns.clone();
    let sandbox = d.run_pod(pod.clone()).await;
    let reported = d.status(&sandbox).await.status.unwrap().linux.unwrap();
    let options = reported.namespaces.unwrap().options.unwrap();
    assert_eq!(options.userns_options, userns);

    let mut config = container_config(&req["config"]);
    config.image.as_mut().unwrap().image = image_id;
    localise_mounts(&d, &mut config);
    common::containers::container_namespace_options(&mut config).userns_options = userns.clone();
    // What the init container would have left in the emptyDir.
    let work_dir = config
        .mounts
        .iter()
        .find(|m| m.container_path == "/work")
        .map(|m| m.host_path.clone())
        .unwrap();
    std::fs::write(
        std::path::Path::new(&work_dir).join("init.txt"),
        "init-ran\n",
    )
    .unwrap();
    let pod = Pod {
        id: sandbox,
        config: pod,
    };
    let main = d.run(&pod, config).await;
    let log = std::path::PathBuf::from(&pod.config.log_directory).join("main/0.log");
    eventually("the main container's output", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("hello-from-configmap"))
    })
    .await;
    let text =
        common::containers::log_text(&common::containers::read_log(&log), "stdout").join("\n");
    assert!(text.contains("uid=1000 gid=3000"), "{text}");
    assert!(text.contains("init-ran"), "{text}");
    // The kernel's view: the container's uid 1000 is host uid HOST_ID + 1000,
    // through exactly the mapping kubelet sent.
    let pid = d.cpid(&main).await;
    let status = common::containers::proc_status(pid);
    let host_uid = (HOST_ID + 1000).to_string();
    assert_eq!(
        status["Uid"].split_whitespace().next(),
        Some(host_uid.as_str())
    );
    let uid_map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
    assert_eq!(
        uid_map.split_whitespace().collect::<Vec<_>>(),
        ["0", &HOST_ID.to_string(), "65536"]
    );
    assert_eq!(
        d.exec_ok(
            &main,
            &["stat", "-c", "%u:%g", "/etc/hosts", "/config/greeting"]
        )
        .await,
        "0:0\n0:0\n"
    );
    // Written through the id-mapped emptyDir: uid 1000 on the host too.
    d.exec_ok(&main, &["sh", "-c", "echo x > /work/by-main"])
        .await;
    let written = std::path::Path::new(&work_dir).join("by-main");
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(written).unwrap());
    assert_eq!(owner, 1000);
    d.remove_all().await;
    d.assert_no_containers_left();
}
