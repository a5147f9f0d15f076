//! Inputs for the tests of the steps and the snapshots, and a check of
//! what a step leaves alone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDeviceType, Spec};
use serde_json::Value;

use super::{build, HostFacts, ResolvedDevice, ResolvedMount, SpecInputs, Step};
use crate::container::spec::*;
use crate::container::user::ResolvedUser;
use crate::image::manifest::RunConfig;
use crate::pod::{PodContext, PodFiles, PodNamespaces};

pub fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/container/runtime_spec/testdata")
        .join(name)
}

pub fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| s.to_string()).collect()
}

pub fn pod(host_network: bool) -> PodContext {
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
        userns: None,
        namespaces: Some(PodNamespaces {
            network: (!host_network).then(|| PathBuf::from("/run/peapod/netns/sb0123")),
            uts: (!host_network).then(|| ns("uts")),
            ipc: (!host_network).then(|| ns("ipc")),
            user: None,
            pid: ns("pid"),
        }),
        files: PodFiles {
            hostname: PathBuf::from("/run/peapod/sandboxes/sb0123/hostname"),
            resolv_conf: PathBuf::from("/run/peapod/sandboxes/sb0123/resolv.conf"),
            shm: (!host_network).then(|| PathBuf::from("/run/peapod/sandboxes/sb0123/shm")),
        },
    }
}

pub fn security_spec() -> SecuritySpec {
    SecuritySpec {
        privileged: false,
        pid: PidMode::Container,
        userns: Default::default(),
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

pub fn record(name: &str, security: SecuritySpec, resources: Resources) -> ContainerRecord {
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
        image_volumes: vec![],
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

pub fn image() -> RunConfig {
    RunConfig {
        env: strings(&["PATH=/img/bin:/bin", "IMG=1", "A=image"]),
        entrypoint: strings(&["/entry"]),
        cmd: strings(&["serve", "--port=80"]),
        working_dir: "/srv".into(),
        ..Default::default()
    }
}

pub fn user(additional_gids: Vec<u32>) -> ResolvedUser {
    ResolvedUser {
        uid: 1000,
        gid: 3000,
        additional_gids,
        username: None,
        home: None,
    }
}

pub fn cri_mount(container_path: &str, source: &str, propagation: Propagation) -> ResolvedMount {
    ResolvedMount {
        container_path: container_path.into(),
        source: PathBuf::from(source),
        readonly: false,
        recursive_read_only: false,
        propagation,
        id_maps: None,
        image_volume: false,
    }
}

pub fn device(
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
pub fn every_feature_inputs() -> (ContainerRecord, Vec<ResolvedMount>, Vec<ResolvedDevice>) {
    let mut rec = record("app", every_security_feature(), every_limit());
    rec.spec.command = strings(&["/bin/app"]);
    rec.spec.args = strings(&["--flag", "x"]);
    rec.spec.envs = vec![
        ("A".into(), "1".into()),
        ("PATH".into(), "/custom/bin".into()),
        ("EMPTY".into(), String::new()),
    ];
    rec.spec.tty = true;
    let devices = vec![
        device("/dev/fuse", LinuxDeviceType::C, 10, 229, "rwm"),
        device("/dev/xvdb", LinuxDeviceType::B, 202, 16, "r"),
    ];
    (rec, mounts_of_every_kind(), devices)
}

fn every_security_feature() -> SecuritySpec {
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
    sec
}

fn every_limit() -> Resources {
    Resources {
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
    }
}

/// Nested mounts out of order, of every propagation and access.
fn mounts_of_every_kind() -> Vec<ResolvedMount> {
    let pods = "/var/lib/kubelet/pods/u";
    let mut ro = cri_mount(
        "/data",
        &format!("{pods}/volumes/data"),
        Propagation::HostToContainer,
    );
    ro.readonly = true;
    let mut rro = cri_mount(
        "/config",
        &format!("{pods}/volumes/config"),
        Propagation::Private,
    );
    rro.readonly = true;
    rro.recursive_read_only = true;
    vec![
        cri_mount(
            "/data/cache/tmp",
            &format!("{pods}/volumes/tmp"),
            Propagation::Private,
        ),
        ro,
        cri_mount(
            "/etc/hosts",
            &format!("{pods}/etc-hosts"),
            Propagation::HostToContainer,
        ),
        cri_mount(
            "/mnt/shared",
            "/mnt/host-shared",
            Propagation::Bidirectional,
        ),
        rro,
        cri_mount(
            "/data/cache",
            &format!("{pods}/volumes/cache"),
            Propagation::Private,
        ),
    ]
}

/// The inputs of one container, owned.
pub struct Fixture {
    pub rec: ContainerRecord,
    pub pod: PodContext,
    pub image: RunConfig,
    pub user: ResolvedUser,
    pub mounts: Vec<ResolvedMount>,
    pub devices: Vec<ResolvedDevice>,
    pub hosts_file: PathBuf,
    pub target_pid: Option<i32>,
    pub host: HostFacts,
}

impl Fixture {
    /// A container of a pod with its own network, asking for nothing
    /// special, on a cgroup v1 host.
    pub fn plain() -> Self {
        Fixture {
            rec: record("app", security_spec(), Resources::default()),
            pod: pod(false),
            image: image(),
            user: user(vec![]),
            mounts: vec![],
            devices: vec![],
            hosts_file: PathBuf::from("/run/peapod/containers/c1d2/hosts"),
            target_pid: None,
            host: HostFacts::default(),
        }
    }

    /// The container of [`every_feature_inputs`] on a cgroup v2 host with
    /// hugetlb and swap.
    pub fn every_feature() -> Self {
        let (rec, mounts, devices) = every_feature_inputs();
        Fixture {
            rec,
            mounts,
            devices,
            user: user(vec![2000, 2001]),
            host: HostFacts {
                cgroup_v2: true,
                hugetlb: true,
                swap: true,
                oom_score_adj_min: Some(-500),
                systemd_cgroup: false,
                idmapped_mounts: true,
            },
            ..Fixture::plain()
        }
    }

    pub fn inputs(&self) -> SpecInputs<'_> {
        SpecInputs {
            rec: &self.rec,
            pod: &self.pod,
            image: &self.image,
            user: &self.user,
            mounts: &self.mounts,
            devices: &self.devices,
            hosts_file: &self.hosts_file,
            target_pid: self.target_pid,
            host: &self.host,
        }
    }
}

/// `step` on an empty spec, as JSON.
pub fn run(step: Step, i: &SpecInputs<'_>) -> Value {
    let mut spec = super::base::empty_spec();
    step(i, &mut spec).unwrap();
    serde_json::to_value(&spec).unwrap()
}

fn without(mut spec: Value, parts: &[&str]) -> Value {
    for part in parts {
        let (parent, key) = part.rsplit_once('/').unwrap();
        if let Some(Value::Object(o)) = spec.pointer_mut(parent) {
            o.remove(key);
        }
    }
    spec
}

/// Runs `step` on a spec that has every part filled (from other inputs)
/// and checks that nothing changed but `parts` (JSON pointers).
pub fn assert_changes_only(step: Step, i: &SpecInputs<'_>, parts: &[&str]) {
    let mut spec: Spec = build(&Fixture::every_feature().inputs()).unwrap();
    let before = serde_json::to_value(&spec).unwrap();
    step(i, &mut spec).unwrap();
    let after = serde_json::to_value(&spec).unwrap();
    assert_eq!(without(before, parts), without(after, parts));
}
