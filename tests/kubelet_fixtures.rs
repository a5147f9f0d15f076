//! Replays the requests a real kubelet sent (shared/fixtures/kubelet-cri-calls.json)
//! and checks the answers kubelet depends on.

mod common;

use std::collections::HashMap;

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
