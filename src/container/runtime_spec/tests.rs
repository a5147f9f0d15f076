//! The whole spec of a pod container and of a privileged one on the
//! host's network.

use std::path::{Path, PathBuf};

use super::*;
use crate::container::spec::{PidMode, SeccompSpec};

fn image(entrypoint: &[&str], cmd: &[&str]) -> RunConfig {
    RunConfig {
        entrypoint: entrypoint.iter().map(|s| s.to_string()).collect(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn v(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| s.to_string()).collect()
}

/// The pod `sb`: its infra process 4242, on a network of its own or the
/// host's.
fn sandbox(host_network: bool) -> PodContext {
    use crate::pod::{PodFiles, PodNamespaces};
    let ns = |name: &str| PathBuf::from(format!("/proc/4242/ns/{name}"));
    PodContext {
        id: "sb".into(),
        ready: true,
        runtime_handler: String::new(),
        cgroup_parent: "/kubepods/burstable/podu".into(),
        log_directory: "/logs".into(),
        hostname: "pod-host".into(),
        ips: vec!["10.1.0.2".into()],
        host_network,
        userns: None,
        namespaces: Some(PodNamespaces {
            network: (!host_network).then(|| PathBuf::from("/run/peapod/netns/sb")),
            uts: (!host_network).then(|| ns("uts")),
            ipc: Some(ns("ipc")),
            user: None,
            pid: ns("pid"),
        }),
        files: PodFiles {
            hostname: PathBuf::from("/run/peapod/sandboxes/sb/hostname"),
            resolv_conf: PathBuf::from("/run/peapod/sandboxes/sb/resolv.conf"),
            shm: Some(PathBuf::from("/run/peapod/sandboxes/sb/shm")),
        },
    }
}

fn record(security: crate::container::spec::SecuritySpec) -> ContainerRecord {
    use crate::container::spec::*;
    ContainerRecord {
        id: "c1".into(),
        spec: ContainerSpec {
            sandbox_id: "sb".into(),
            metadata: ContainerMetadata {
                name: "app".into(),
                attempt: 0,
            },
            image: "sha256:x".into(),
            user_specified_image: String::new(),
            command: v(&["sleep", "1"]),
            args: vec![],
            working_dir: String::new(),
            envs: vec![("A".into(), "1".into())],
            mounts: vec![],
            devices: vec![],
            labels: Default::default(),
            annotations: Default::default(),
            log_path: String::new(),
            stdin: false,
            stdin_once: false,
            tty: false,
            resources: Resources::default(),
            security,
            stop_signal: 0,
        },
        state: ContainerState::Creating,
        created_at: 0,
        started_at: 0,
        finished_at: 0,
        exit_code: 0,
        reason: String::new(),
        message: String::new(),
        image_id: "sha256:x".into(),
        image_name: "busybox".into(),
        image_ref: String::new(),
        layers: vec![],
        image_volumes: vec![],
        log_path: None,
        dir: PathBuf::from("/run/peapod/containers/c1"),
        layer_dir: PathBuf::from("/var/lib/peapod/containers/c1"),
        socket: PathBuf::from("/run/peapod/sockets/c1.sock"),
        cgroup: "/kubepods/burstable/podu/c1".into(),
        runtime_handler: String::new(),
        monitor: None,
        init: None,
        own_pid_namespace: true,
        stop_signal: 15,
        resources: Resources {
            cpu_shares: 256,
            oom_score_adj: -997,
            ..Default::default()
        },
        user: None,
        runtime_deleted: false,
    }
}

fn security() -> crate::container::spec::SecuritySpec {
    use crate::container::spec::*;
    SecuritySpec {
        run_as_user: Some(0),
        apparmor: AppArmorSpec {
            profile_type: 1,
            localhost_ref: String::new(),
        },
        ..super::test_support::security_spec()
    }
}

fn built(rec: &ContainerRecord, sb: &PodContext, mounts: &[ResolvedMount]) -> serde_json::Value {
    let user = ResolvedUser {
        uid: 1000,
        gid: 3000,
        additional_gids: vec![2000],
        username: None,
        home: None,
    };
    let host = HostFacts {
        oom_score_adj_min: Some(0),
        ..Default::default()
    };
    let spec = build(&SpecInputs {
        rec,
        pod: sb,
        image: &image(&[], &["sh"]),
        user: &user,
        mounts,
        devices: &[],
        hosts_file: Path::new("/run/peapod/containers/c1/hosts"),
        target_pid: None,
        host: &host,
    })
    .unwrap();
    serde_json::to_value(&spec).unwrap()
}

#[test]
fn a_pod_container_spec() {
    let sb = sandbox(false);
    let rec = record(security());
    let mounts = [ResolvedMount {
        container_path: "/etc/hosts".into(),
        source: PathBuf::from("/var/lib/kubelet/pods/u/etc-hosts"),
        readonly: false,
        recursive_read_only: false,
        propagation: Propagation::HostToContainer,
        id_maps: None,
        image_volume: false,
    }];
    let j = built(&rec, &sb, &mounts);
    assert!(j.get("hostname").is_none(), "{j}");
    assert_pod_container_process(&j);
    assert_pod_container_linux(&j);
    assert_pod_container_mounts(&j);
}

fn assert_pod_container_process(j: &serde_json::Value) {
    assert_eq!(j["process"]["args"], serde_json::json!(["sleep", "1"]));
    assert_eq!(j["process"]["user"]["uid"], 1000);
    assert_eq!(j["process"]["user"]["gid"], 3000);
    assert_eq!(
        j["process"]["user"]["additionalGids"],
        serde_json::json!([2000])
    );
    assert_eq!(j["process"]["oomScoreAdj"], 0);
    assert!(j["process"].get("rlimits").is_none(), "{j}");
    let env: Vec<&str> = j["process"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(
        env.contains(&"HOSTNAME=pod-host") && env.contains(&"A=1"),
        "{env:?}"
    );
}

fn assert_pod_container_linux(j: &serde_json::Value) {
    let ns = &j["linux"]["namespaces"];
    let find = |t: &str| {
        ns.as_array()
            .unwrap()
            .iter()
            .find(|n| n["type"] == t)
            .cloned()
    };
    assert_eq!(find("network").unwrap()["path"], "/run/peapod/netns/sb");
    assert_eq!(find("ipc").unwrap()["path"], "/proc/4242/ns/ipc");
    assert_eq!(find("uts").unwrap()["path"], "/proc/4242/ns/uts");
    assert!(find("pid").unwrap().get("path").is_none());
    assert!(find("mount").is_some());
    assert_eq!(j["linux"]["cgroupsPath"], "/kubepods/burstable/podu/c1");
    assert_eq!(j["linux"]["resources"]["cpu"]["shares"], 256);
    assert_eq!(j["linux"]["resources"]["devices"][0]["allow"], false);
    assert_eq!(j["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
    assert_eq!(j["linux"]["maskedPaths"].as_array().unwrap().len(), 12);
    assert_eq!(j["linux"]["rootfsPropagation"], "rslave");
}

fn assert_pod_container_mounts(j: &serde_json::Value) {
    let dests: Vec<&str> = j["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["destination"].as_str().unwrap())
        .collect();
    // kubelet's /etc/hosts replaces the generated one.
    assert_eq!(dests.iter().filter(|d| **d == "/etc/hosts").count(), 1);
    let hosts = j["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == "/etc/hosts")
        .unwrap();
    assert_eq!(hosts["source"], "/var/lib/kubelet/pods/u/etc-hosts");
    assert_eq!(
        hosts["options"],
        serde_json::json!(["rbind", "rslave", "rw"])
    );
    for d in [
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        "/etc/hostname",
        "/etc/resolv.conf",
    ] {
        assert!(dests.contains(&d), "{d} missing: {dests:?}");
    }
    let shm = j["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == "/dev/shm")
        .unwrap();
    assert_eq!(shm["source"], "/run/peapod/sandboxes/sb/shm");
}

#[test]
fn host_network_and_privileged() {
    let sb = sandbox(true);
    let mut sec = security();
    sec.privileged = true;
    sec.pid = crate::container::spec::PidMode::Node;
    let j = built(&record(sec), &sb, &[]);
    let types: Vec<&str> = j["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["mount", "ipc"]);
    assert!(j["linux"].get("seccomp").is_none());
    assert!(j["linux"].get("maskedPaths").is_none());
    assert_eq!(j["linux"]["resources"]["devices"][0]["allow"], true);
    let caps = j["process"]["capabilities"]["bounding"].as_array().unwrap();
    assert!(caps.len() >= 38, "{caps:?}");
    let sys = j["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == "/sys")
        .unwrap();
    assert!(sys["options"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("rw")));
}

/// A request with several mistakes gets the error of the first field the
/// steps look at, as before they were steps.
#[test]
fn the_first_mistake_in_step_order_is_reported() {
    use super::test_support::Fixture;
    let mut f = Fixture::plain();
    f.rec.spec.security.pid = PidMode::Target("gone".into());
    f.rec.spec.security.seccomp = SeccompSpec::Localhost("/nonexistent.json".into());
    f.rec.resources.unified = [("memory.high".to_string(), "1".to_string())].into();
    f.rec.spec.working_dir = "relative".into();
    let error = |f: &Fixture| build(&f.inputs()).unwrap_err().to_string();
    assert!(
        error(&f).starts_with("config.working_dir:"),
        "{}",
        error(&f)
    );
    f.rec.spec.working_dir.clear();
    assert!(error(&f).contains("resources.unified"), "{}", error(&f));
    f.rec.resources.unified.clear();
    assert!(error(&f).contains("seccomp.localhost_ref"), "{}", error(&f));
    f.rec.spec.security.seccomp = SeccompSpec::Unconfined;
    assert!(error(&f).contains("gone is not running"), "{}", error(&f));
}
