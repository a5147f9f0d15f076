//! Whole specs against snapshots in `testdata/`: a change to what `build`
//! writes for the same inputs shows here, field by field.
//!
//! Values that depend on the host rather than on the inputs (the
//! capabilities a privileged container gets, the RuntimeDefault seccomp
//! profile, the RuntimeDefault AppArmor profile, the host's name) are
//! checked against the security module's answer for the same inputs and
//! then replaced by `"<host>"`, so the snapshots hold on any host.
//!
//! The capability sets are sets (`HashSet`s in `oci-spec`, written in no
//! particular order): they are compared sorted.
//!
//! A missing snapshot is written from the current code and the test fails,
//! so that a new snapshot is looked at before it is committed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxDeviceType;
use serde_json::Value;

use super::{build, HostFacts, ResolvedDevice, ResolvedMount, SpecInputs};
use crate::container::security;
use crate::container::spec::*;
use crate::container::user::ResolvedUser;
use crate::image::manifest::RunConfig;
use crate::pod::{PodContext, PodFiles, PodNamespaces};

const HOST: &str = "<host>";

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/container/runtime_spec/testdata")
        .join(name)
}

fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| s.to_string()).collect()
}

/// Compares `actual` with the snapshot `name`, writing it when missing.
fn assert_snapshot(name: &str, actual: &Value) {
    let path = testdata(name);
    let pretty = serde_json::to_string_pretty(actual).unwrap() + "\n";
    let Ok(text) = std::fs::read_to_string(&path) else {
        std::fs::write(&path, &pretty).unwrap();
        panic!(
            "snapshot {} written: review it and run again",
            path.display()
        );
    };
    let expected: Value = serde_json::from_str(&text).unwrap();
    assert!(
        *actual == expected,
        "spec differs from {}; built:\n{pretty}",
        path.display()
    );
}

/// Checks the value at `pointer` against what the host gives (`None`:
/// absent) and puts the placeholder in its place.
fn host_dependent(spec: &mut Value, pointer: &str, expected: Option<Value>) {
    assert_eq!(spec.pointer(pointer), expected.as_ref(), "{pointer}");
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let object = spec.pointer_mut(parent).unwrap().as_object_mut().unwrap();
    object.insert(key.to_string(), Value::String(HOST.to_string()));
}

/// Sorts the capability sets of `capabilities` (a `process.capabilities`).
fn sort_capability_sets(capabilities: &mut Value) {
    let Some(sets) = capabilities.as_object_mut() else {
        return;
    };
    for set in sets.values_mut() {
        if let Some(names) = set.as_array_mut() {
            names.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
        }
    }
}

fn built(i: &SpecInputs<'_>) -> Value {
    let mut spec = serde_json::to_value(build(i).unwrap()).unwrap();
    if let Some(caps) = spec.pointer_mut("/process/capabilities") {
        sort_capability_sets(caps);
    }
    spec
}

fn pod(host_network: bool) -> PodContext {
    let ns = |name: &str| PathBuf::from(format!("/proc/4242/ns/{name}"));
    PodContext {
        id: "sb0123".into(),
        ready: true,
        runtime_handler: String::new(),
        cgroup_parent: "/kubepods/burstable/podu".into(),
        log_directory: "/var/log/pods/u".into(),
        hostname: "web-0".into(),
        ips: vec!["10.1.0.2".into()],
        host_network,
        namespaces: Some(PodNamespaces {
            network: (!host_network).then(|| PathBuf::from("/run/peapod/netns/sb0123")),
            uts: (!host_network).then(|| ns("uts")),
            ipc: (!host_network).then(|| ns("ipc")),
            pid: ns("pid"),
        }),
        files: PodFiles {
            hostname: PathBuf::from("/run/peapod/sandboxes/sb0123/hostname"),
            resolv_conf: PathBuf::from("/run/peapod/sandboxes/sb0123/resolv.conf"),
            shm: (!host_network).then(|| PathBuf::from("/run/peapod/sandboxes/sb0123/shm")),
        },
    }
}

fn security_spec() -> SecuritySpec {
    SecuritySpec {
        privileged: false,
        pid: PidMode::Container,
        run_as_user: None,
        run_as_group: None,
        run_as_username: String::new(),
        supplemental_groups: vec![],
        supplemental_groups_strict: false,
        readonly_rootfs: false,
        add_capabilities: vec![],
        drop_capabilities: vec![],
        no_new_privs: false,
        masked_paths: vec![],
        readonly_paths: vec![],
        seccomp: SeccompSpec::RuntimeDefault,
        apparmor: AppArmorSpec {
            profile_type: 0,
            localhost_ref: String::new(),
        },
        selinux: None,
    }
}

fn record(name: &str, security: SecuritySpec, resources: Resources) -> ContainerRecord {
    ContainerRecord {
        id: "c1d2".into(),
        spec: ContainerSpec {
            sandbox_id: "sb0123".into(),
            metadata: ContainerMetadata {
                name: name.into(),
                attempt: 1,
            },
            image: "sha256:abc".into(),
            user_specified_image: String::new(),
            command: vec![],
            args: vec![],
            working_dir: String::new(),
            envs: vec![],
            mounts: vec![],
            devices: vec![],
            labels: Default::default(),
            annotations: Default::default(),
            log_path: String::new(),
            stdin: false,
            stdin_once: false,
            tty: false,
            resources: resources.clone(),
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
        image_id: "sha256:abc".into(),
        image_name: "docker.io/library/busybox:1.36".into(),
        image_ref: String::new(),
        layers: vec![],
        log_path: None,
        dir: PathBuf::from("/run/peapod/containers/c1d2"),
        layer_dir: PathBuf::from("/var/lib/peapod/containers/c1d2"),
        socket: PathBuf::from("/run/peapod/sockets/c1d2.sock"),
        cgroup: "/kubepods/burstable/podu/c1d2".into(),
        runtime_handler: String::new(),
        monitor: None,
        init: None,
        own_pid_namespace: true,
        stop_signal: 15,
        resources,
        user: None,
        runtime_deleted: false,
    }
}

fn image() -> RunConfig {
    RunConfig {
        env: strings(&["PATH=/img/bin:/bin", "IMG=1", "A=image"]),
        entrypoint: strings(&["/entry"]),
        cmd: strings(&["serve", "--port=80"]),
        working_dir: "/srv".into(),
        ..Default::default()
    }
}

fn user(additional_gids: Vec<u32>) -> ResolvedUser {
    ResolvedUser {
        uid: 1000,
        gid: 3000,
        additional_gids,
        username: None,
        home: None,
    }
}

fn bind(container_path: &str, source: &str, propagation: Propagation) -> ResolvedMount {
    ResolvedMount {
        container_path: container_path.into(),
        source: PathBuf::from(source),
        readonly: false,
        recursive_read_only: false,
        propagation,
    }
}

fn device(
    path: &str,
    kind: LinuxDeviceType,
    major: i64,
    minor: i64,
    perms: &str,
) -> ResolvedDevice {
    ResolvedDevice {
        container_path: path.into(),
        kind,
        major,
        minor,
        mode: if kind == LinuxDeviceType::B {
            0o60660
        } else {
            0o20666
        },
        uid: 0,
        gid: 6,
        permissions: perms.into(),
    }
}

/// A pod container with everything set: command and args, env over the
/// image's, tty, read-only rootfs, capabilities added and dropped, a
/// Localhost seccomp file, custom masked and read-only paths, SELinux,
/// limits on a cgroup v2 host with hugetlb and swap, the pod's PID
/// namespace, mounts of every propagation (one replacing /etc/hosts) and
/// devices.
fn every_feature_inputs() -> (ContainerRecord, Vec<ResolvedMount>, Vec<ResolvedDevice>) {
    let mut sec = security_spec();
    sec.pid = PidMode::Pod;
    sec.readonly_rootfs = true;
    sec.add_capabilities = strings(&["NET_ADMIN", "SYS_PTRACE"]);
    sec.drop_capabilities = strings(&["CHOWN", "MKNOD"]);
    sec.no_new_privs = true;
    sec.masked_paths = strings(&["/proc/kcore", "/proc/secret"]);
    sec.readonly_paths = strings(&["/proc/sys", "/proc/ro"]);
    let profile = testdata("seccomp-localhost.json");
    sec.seccomp = SeccompSpec::Localhost(profile.display().to_string());
    sec.apparmor.profile_type = 1;
    sec.selinux = Some(SelinuxSpec {
        user: "system_u".into(),
        role: "system_r".into(),
        r#type: "container_t".into(),
        level: "s0:c1,c2".into(),
    });
    let resources = Resources {
        cpu_period: 100000,
        cpu_quota: 50000,
        cpu_shares: 512,
        memory_limit_in_bytes: 268435456,
        memory_swap_limit_in_bytes: 536870912,
        oom_score_adj: -997,
        cpuset_cpus: "0-1".into(),
        cpuset_mems: "0".into(),
        hugepage_limits: vec![("2MB".into(), 4194304), ("1GB".into(), 0)],
        unified: BTreeMap::from([
            ("memory.high".to_string(), "200000000".to_string()),
            ("pids.max".to_string(), "100".to_string()),
        ]),
    };
    let mut rec = record("app", sec, resources);
    rec.spec.command = strings(&["/bin/app"]);
    rec.spec.args = strings(&["--flag", "x"]);
    rec.spec.envs = vec![
        ("A".into(), "1".into()),
        ("PATH".into(), "/custom/bin".into()),
        ("EMPTY".into(), String::new()),
    ];
    rec.spec.tty = true;
    let pods = "/var/lib/kubelet/pods/u";
    let mut ro = bind(
        "/data",
        &format!("{pods}/volumes/data"),
        Propagation::HostToContainer,
    );
    ro.readonly = true;
    let mut rro = bind(
        "/config",
        &format!("{pods}/volumes/config"),
        Propagation::Private,
    );
    rro.readonly = true;
    rro.recursive_read_only = true;
    let mounts = vec![
        bind(
            "/data/cache/tmp",
            &format!("{pods}/volumes/tmp"),
            Propagation::Private,
        ),
        ro,
        bind(
            "/etc/hosts",
            &format!("{pods}/etc-hosts"),
            Propagation::HostToContainer,
        ),
        bind(
            "/mnt/shared",
            "/mnt/host-shared",
            Propagation::Bidirectional,
        ),
        rro,
        bind(
            "/data/cache",
            &format!("{pods}/volumes/cache"),
            Propagation::Private,
        ),
    ];
    let devices = vec![
        device("/dev/fuse", LinuxDeviceType::C, 10, 229, "rwm"),
        device("/dev/xvdb", LinuxDeviceType::B, 202, 16, "r"),
    ];
    (rec, mounts, devices)
}

#[test]
fn snapshot_pod_container_with_every_feature() {
    let (rec, mounts, devices) = every_feature_inputs();
    let pod = pod(false);
    let host = HostFacts {
        cgroup_v2: true,
        hugetlb: true,
        swap: true,
        oom_score_adj_min: Some(-500),
        systemd_cgroup: false,
    };
    let spec = built(&SpecInputs {
        rec: &rec,
        pod: &pod,
        image: &image(),
        user: &user(vec![2000, 2001]),
        mounts: &mounts,
        devices: &devices,
        hosts_file: Path::new("/run/peapod/containers/c1d2/hosts"),
        target_pid: None,
        host: &host,
    });
    assert_snapshot("every-feature.json", &spec);
}

/// A privileged container of a pod on the host's network and IPC, in the
/// host's PID namespace, with the systemd driver on a cgroup v1 host, its
/// own /dev/shm and /etc/resolv.conf mounts and the host's devices.
#[test]
fn snapshot_host_network_privileged() {
    let mut sec = security_spec();
    sec.privileged = true;
    sec.pid = PidMode::Node;
    sec.add_capabilities = strings(&["NET_ADMIN"]);
    let resources = Resources {
        cpu_shares: 2,
        cpu_period: 100000,
        oom_score_adj: 1000,
        ..Default::default()
    };
    let mut rec = record("agent", sec.clone(), resources);
    rec.spec.args = strings(&["--once"]);
    let mut pod = pod(true);
    pod.cgroup_parent =
        "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podu.slice".into();
    let host = HostFacts {
        cgroup_v2: false,
        hugetlb: false,
        swap: false,
        oom_score_adj_min: None,
        systemd_cgroup: true,
    };
    let mounts = vec![
        bind("/etc/resolv.conf", "/etc/resolv.conf", Propagation::Private),
        bind("/dev/shm", "/dev/shm", Propagation::Private),
        bind(
            "/var/lib/agent",
            "/var/lib/agent",
            Propagation::Bidirectional,
        ),
    ];
    let devices = vec![
        device("/dev/null", LinuxDeviceType::C, 1, 3, "rwm"),
        device("/dev/sda", LinuxDeviceType::B, 8, 0, "rwm"),
    ];
    let mut spec = built(&SpecInputs {
        rec: &rec,
        pod: &pod,
        image: &image(),
        user: &user(vec![]),
        mounts: &mounts,
        devices: &devices,
        hosts_file: Path::new("/run/peapod/containers/c1d2/hosts"),
        target_pid: None,
        host: &host,
    });
    let caps = security::capability_set(&sec.add_capabilities, &[], true).unwrap();
    let mut oci_caps = serde_json::to_value(security::to_oci_capabilities(&caps)).unwrap();
    sort_capability_sets(&mut oci_caps);
    host_dependent(&mut spec, "/process/capabilities", Some(oci_caps));
    let apparmor = security::apparmor_profile(0, "", true).unwrap();
    host_dependent(
        &mut spec,
        "/process/apparmorProfile",
        apparmor.map(Value::String),
    );
    let hostname = pod.container_hostname();
    let env = spec
        .pointer_mut("/process/env")
        .unwrap()
        .as_array_mut()
        .unwrap();
    let slot = env
        .iter_mut()
        .find(|e| *e == &Value::String(format!("HOSTNAME={hostname}")))
        .expect("HOSTNAME is the host's");
    *slot = Value::String(format!("HOSTNAME={HOST}"));
    assert_snapshot("host-network-privileged.json", &spec);
}

/// A debug container in the PID namespace of another container, with the
/// runtime's default seccomp profile, masked paths and AppArmor.
#[test]
fn snapshot_target_pid_namespace() {
    let mut sec = security_spec();
    sec.pid = PidMode::Target("c0ffee".into());
    sec.run_as_user = Some(0);
    let mut rec = record("debugger", sec.clone(), Resources::default());
    rec.spec.working_dir = "/work".into();
    rec.spec.args = strings(&["sh"]);
    let pod = pod(false);
    let host = HostFacts {
        cgroup_v2: true,
        oom_score_adj_min: Some(0),
        ..Default::default()
    };
    let mut spec = built(&SpecInputs {
        rec: &rec,
        pod: &pod,
        image: &image(),
        user: &user(vec![]),
        mounts: &[],
        devices: &[],
        hosts_file: Path::new("/run/peapod/containers/c1d2/hosts"),
        target_pid: Some(777),
        host: &host,
    });
    let caps = security::capability_set(&[], &[], false).unwrap();
    let seccomp = serde_json::to_value(security::default_seccomp(&caps)).unwrap();
    host_dependent(&mut spec, "/linux/seccomp", Some(seccomp));
    let apparmor = security::apparmor_profile(0, "", false).unwrap();
    host_dependent(
        &mut spec,
        "/process/apparmorProfile",
        apparmor.map(Value::String),
    );
    assert_snapshot("target-pid.json", &spec);
}
