//! What kubelet sends and does around the CRI calls: pod UIDs, timestamps,
//! the pod and container configs of shared/fixtures/kubelet-cri-calls.json,
//! and the directories and files it makes for them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

// Kubelet's default masked and read-only paths (what it sends in every
// CreateContainer, see shared/fixtures/kubelet-cri-calls.json) are peapod's
// own lists.
use peapod::api::security_profile::ProfileType;
use peapod::api::{
    ContainerConfig, ContainerMetadata, DnsConfig, HugepageLimit, IdMapping, ImageSpec, Int64Value,
    LinuxContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, Mount, NamespaceMode, NamespaceOption,
    PodSandboxConfig, PodSandboxMetadata, SecurityProfile, UserNamespace,
};
use peapod::container::security::{
    DEFAULT_MASKED_PATHS as MASKED_PATHS, DEFAULT_READONLY_PATHS as READONLY_PATHS,
};

use crate::args::NetMode;
use crate::cgroups::CgroupTree;
use crate::cri::image::BenchImage;
use crate::error::{io_err, BenchError};
use crate::run::{random_hex, Shared, RUN_LABEL};

/// A kubelet-style pod UID (a v4 UUID).
pub fn pod_uid() -> Result<String, BenchError> {
    let h = random_hex(16)?;
    Ok(format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    ))
}

/// RFC 3339 UTC time, as kubelet writes `kubernetes.io/config.seen`.
pub fn now_rfc3339() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        now.subsec_nanos()
    )
}

/// The ids a user-namespaced pod maps, as kubelet allots them: 65536 from
/// container id 0, at a multiple of 65536.
pub const USERNS_LENGTH: u32 = 1 << 16;

/// The first 65536-block the bench hands out: host ids from 6553600 up,
/// far above the ids of real users and of /etc/subuid's usual ranges
/// (100000 + 65536 per user), so no pod maps a file owner of the host.
const USERNS_FIRST_BLOCK: u32 = 100;

/// Blocks from the first to the last whole one below id 2^32 - 1, which
/// the kernel keeps as "no id".
const USERNS_BLOCKS: u32 = (u32::MAX >> 16) - USERNS_FIRST_BLOCK;

/// The user namespace of the `seq`th pod of a target with `hostUsers:
/// false`, as kubelet 1.32 sends it: mode POD and one mapping of 65536
/// ids, the same for uids and gids, a block of its own per pod. Blocks
/// repeat only after 65435 pods, long after the earlier ones are gone.
pub fn pod_userns(seq: usize) -> UserNamespace {
    let block = USERNS_FIRST_BLOCK + (seq % USERNS_BLOCKS as usize) as u32;
    let ids = IdMapping {
        host_id: block * USERNS_LENGTH,
        container_id: 0,
        length: USERNS_LENGTH,
    };
    UserNamespace {
        mode: NamespaceMode::Pod as i32,
        uids: vec![ids],
        gids: vec![ids],
    }
}

/// A container of a bench pod: its name and the script its `sh -c` runs.
#[derive(Debug, Clone, Copy)]
pub struct ContainerSpec<'a> {
    pub name: &'a str,
    pub script: &'a str,
}

/// Where a pod goes: the run's directory for pods, its cgroup parent and
/// the run id its labels carry.
struct PodPlace<'a> {
    pods_dir: &'a Path,
    cgroup_parent: String,
    run_id: &'a str,
}

pub struct Pod {
    pub uid: String,
    pub log_dir: PathBuf,
    /// Kubelet's per-pod directory (`/var/lib/kubelet/pods/<uid>`): the
    /// files a container bind-mounts (/etc/hosts, its termination log).
    pub kubelet_dir: PathBuf,
    pub config: PodSandboxConfig,
    pub id: Option<String>,
}

impl Pod {
    /// The pod kubelet would send as the `seq`th of this target (see
    /// shared/fixtures/kubelet-cri-calls.json): a burstable pod with its
    /// own cgroup parent, DNS and log directory; with `userns`, a user
    /// namespace of its own (`hostUsers: false`).
    pub fn new(
        shared: &Shared,
        mode: NetMode,
        seq: usize,
        userns: Option<UserNamespace>,
    ) -> Result<Pod, BenchError> {
        let kind = if userns.is_some() { "-userns" } else { "" };
        let meta = PodSandboxMetadata {
            name: format!("bench-{}{kind}-{seq}", mode.label()),
            uid: pod_uid()?,
            namespace: "default".to_string(),
            attempt: 0,
        };
        let cgroup_parent = shared.cgroups.pod_path(&meta.uid);
        let at = PodPlace {
            pods_dir: &shared.pods_dir,
            cgroup_parent,
            run_id: &shared.run_id,
        };
        Ok(Pod::build(meta, at, mode, userns))
    }

    /// The pod of `meta` in `at`, in network mode `mode` and user
    /// namespace `userns`: its config and directories, nothing made yet.
    fn build(
        meta: PodSandboxMetadata,
        at: PodPlace<'_>,
        mode: NetMode,
        userns: Option<UserNamespace>,
    ) -> Pod {
        let log_dir = at
            .pods_dir
            .join(format!("{}_{}_{}", meta.namespace, meta.name, meta.uid));
        let config = PodSandboxConfig {
            // Kubelet leaves the hostname empty for host-network pods.
            hostname: if mode == NetMode::Pod {
                meta.name.clone()
            } else {
                String::new()
            },
            log_directory: log_dir.to_string_lossy().into_owned(),
            dns_config: Some(cluster_dns()),
            port_mappings: Vec::new(),
            labels: pod_labels(&meta, at.run_id),
            annotations: string_map(&[
                ("kubernetes.io/config.seen", &now_rfc3339()),
                ("kubernetes.io/config.source", "api"),
            ]),
            linux: Some(burstable_pod(at.cgroup_parent, namespaces(mode, userns))),
            windows: None,
            metadata: Some(meta.clone()),
        };
        Pod {
            kubelet_dir: at.pods_dir.join(format!("kubelet-{}", meta.uid)),
            uid: meta.uid,
            log_dir,
            config,
            id: None,
        }
    }

    /// Kubelet's part before RunPodSandbox: the pod cgroup and log directory.
    pub fn prepare(&self, cgroups: &CgroupTree) -> Result<(), BenchError> {
        cgroups.create(&cgroups.pod_path(&self.uid))?;
        std::fs::create_dir_all(&self.log_dir).map_err(io_err(&self.log_dir))
    }

    /// Kubelet's part after RemovePodSandbox. A cgroup the runtime left
    /// behind stays for the final sweep, which reports it.
    pub fn release(&self, cgroups: &CgroupTree) {
        let _ = cgroups.remove(&cgroups.pod_path(&self.uid));
        let _ = std::fs::remove_dir_all(&self.log_dir);
        let _ = std::fs::remove_dir_all(&self.kubelet_dir);
    }

    /// Kubelet's part before CreateContainer of container `name`: its log
    /// directory, the pod's hosts file and the container's termination log.
    /// Returns the hosts file and the termination log.
    pub fn prepare_container(&self, name: &str) -> Result<(PathBuf, PathBuf), BenchError> {
        let logs = self.log_dir.join(name);
        std::fs::create_dir_all(&logs).map_err(io_err(&logs))?;
        let term_dir = self.kubelet_dir.join("containers").join(name);
        std::fs::create_dir_all(&term_dir).map_err(io_err(&term_dir))?;
        let hosts = self.kubelet_dir.join("etc-hosts");
        std::fs::write(&hosts, "127.0.0.1\tlocalhost\n::1\tlocalhost\n").map_err(io_err(&hosts))?;
        let term = term_dir.join("0b3c6d1e");
        std::fs::write(&term, "").map_err(io_err(&term))?;
        Ok((hosts, term))
    }

    /// The pod's user namespace options, which kubelet repeats in every
    /// CreateContainer of the pod (None: the host's).
    pub fn userns(&self) -> Option<UserNamespace> {
        self.config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref())
            .and_then(|n| n.userns_options.clone())
    }

    /// What kubelet sends for a BestEffort container running as root with
    /// seccomp Unconfined (see shared/fixtures/kubelet-cri-calls.json),
    /// running `sh -c` with the script of `spec`, in the pod's user
    /// namespace if it has one.
    pub fn container_config(
        &self,
        run_id: &str,
        mode: NetMode,
        img: &BenchImage,
        spec: ContainerSpec<'_>,
        hosts: &Path,
        term: &Path,
    ) -> ContainerConfig {
        let bind = |container_path: &str, host: &Path| Mount {
            container_path: container_path.to_string(),
            host_path: host.to_string_lossy().into_owned(),
            ..Default::default()
        };
        ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: spec.name.to_string(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: img.id.clone(),
                user_specified_image: img.name.clone(),
                ..Default::default()
            }),
            command: strings(&["sh", "-c", spec.script]),
            mounts: vec![
                bind("/etc/hosts", hosts),
                bind("/dev/termination-log", term),
            ],
            labels: self.container_labels(run_id, spec.name),
            annotations: container_annotations(),
            log_path: format!("{}/0.log", spec.name),
            linux: Some(LinuxContainerConfig {
                resources: Some(best_effort_container()),
                security_context: Some(root_unconfined(namespaces(mode, self.userns()))),
            }),
            ..Default::default()
        }
    }

    fn container_labels(&self, run_id: &str, name: &str) -> HashMap<String, String> {
        let meta = self.config.metadata.clone().unwrap_or_default();
        string_map(&[
            ("io.kubernetes.container.name", name),
            ("io.kubernetes.pod.name", &meta.name),
            ("io.kubernetes.pod.namespace", &meta.namespace),
            ("io.kubernetes.pod.uid", &meta.uid),
            (RUN_LABEL, run_id),
        ])
    }
}

fn string_map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn pod_labels(meta: &PodSandboxMetadata, run_id: &str) -> HashMap<String, String> {
    string_map(&[
        ("app", "peapod-bench"),
        ("io.kubernetes.pod.name", &meta.name),
        ("io.kubernetes.pod.namespace", &meta.namespace),
        ("io.kubernetes.pod.uid", &meta.uid),
        (RUN_LABEL, run_id),
    ])
}

/// A cluster's DNS as kubelet hands it to a pod in namespace `default`.
fn cluster_dns() -> DnsConfig {
    DnsConfig {
        servers: vec!["127.0.0.1".into()],
        searches: strings(&[
            "default.svc.cluster.local",
            "svc.cluster.local",
            "cluster.local",
        ]),
        options: vec!["ndots:5".into()],
    }
}

/// A burstable pod's Linux part: its cgroup parent, namespaces, seccomp
/// RuntimeDefault and its limits.
fn burstable_pod(cgroup_parent: String, namespaces: NamespaceOption) -> LinuxPodSandboxConfig {
    LinuxPodSandboxConfig {
        cgroup_parent,
        security_context: Some(LinuxSandboxSecurityContext {
            namespace_options: Some(namespaces),
            seccomp: Some(SecurityProfile {
                profile_type: ProfileType::RuntimeDefault as i32,
                localhost_ref: String::new(),
            }),
            ..Default::default()
        }),
        sysctls: HashMap::new(),
        overhead: Some(LinuxContainerResources::default()),
        resources: Some(LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: 50_000,
            cpu_shares: 256,
            memory_limit_in_bytes: 128 << 20,
            ..Default::default()
        }),
    }
}

/// The namespaces of a pod and of its containers: the network of `mode`,
/// a PID namespace per container, the pod's IPC, and the user namespace of
/// `userns` (None: the host's, and no options, as kubelet sends it).
fn namespaces(mode: NetMode, userns: Option<UserNamespace>) -> NamespaceOption {
    let network = match mode {
        NetMode::Host => NamespaceMode::Node,
        NetMode::Pod => NamespaceMode::Pod,
    };
    NamespaceOption {
        network: network as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
        userns_options: userns,
        ..Default::default()
    }
}

fn container_annotations() -> HashMap<String, String> {
    string_map(&[
        ("io.kubernetes.container.hash", "0b3c6d1e"),
        ("io.kubernetes.container.restartCount", "0"),
        (
            "io.kubernetes.container.terminationMessagePath",
            "/dev/termination-log",
        ),
        ("io.kubernetes.container.terminationMessagePolicy", "File"),
        ("io.kubernetes.pod.terminationGracePeriod", "30"),
    ])
}

/// A BestEffort container's resources: the least cpu shares, the OOM
/// killer's first pick, no huge pages.
fn best_effort_container() -> LinuxContainerResources {
    LinuxContainerResources {
        cpu_period: 100_000,
        cpu_shares: 2,
        oom_score_adj: 1000,
        hugepage_limits: ["2MB", "1GB"]
            .iter()
            .map(|size| HugepageLimit {
                page_size: size.to_string(),
                limit: 0,
            })
            .collect(),
        ..Default::default()
    }
}

/// A container running as root with kubelet's default masked and read-only
/// paths and seccomp Unconfined.
fn root_unconfined(namespaces: NamespaceOption) -> LinuxContainerSecurityContext {
    LinuxContainerSecurityContext {
        namespace_options: Some(namespaces),
        run_as_user: Some(Int64Value { value: 0 }),
        masked_paths: strings(&MASKED_PATHS),
        readonly_paths: strings(&READONLY_PATHS),
        seccomp: Some(SecurityProfile {
            profile_type: ProfileType::Unconfined as i32,
            localhost_ref: String::new(),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_and_timestamp_shapes() {
        let uid = pod_uid().unwrap();
        let parts: Vec<usize> = uid.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12]);
        let t = now_rfc3339();
        assert_eq!(t.len(), "2026-11-22T10:35:26.707041724Z".len());
        assert!(t.starts_with("20") && t.ends_with('Z'), "{t}");
    }

    /// A pod of `mode` and `userns` under /run/bench-test, and the config
    /// of its bench container.
    fn pod_and_container(
        mode: NetMode,
        userns: Option<UserNamespace>,
    ) -> (PodSandboxConfig, ContainerConfig) {
        let meta = PodSandboxMetadata {
            name: "bench-pod-net-userns-1".into(),
            uid: pod_uid().unwrap(),
            namespace: "default".into(),
            attempt: 0,
        };
        let at = PodPlace {
            pods_dir: Path::new("/run/bench-test"),
            cgroup_parent: "/peapod-bench/podx".into(),
            run_id: "r",
        };
        let pod = Pod::build(meta, at, mode, userns);
        let img = BenchImage {
            name: "busybox:latest".into(),
            id: "sha256:0".into(),
        };
        let spec = ContainerSpec {
            name: "bench",
            script: "true",
        };
        let (hosts, term) = (Path::new("/h"), Path::new("/t"));
        let container = pod.container_config("r", mode, &img, spec, hosts, term);
        (pod.config, container)
    }

    fn pod_userns_of(c: &PodSandboxConfig) -> Option<UserNamespace> {
        c.linux
            .as_ref()?
            .security_context
            .as_ref()?
            .namespace_options
            .as_ref()?
            .userns_options
            .clone()
    }

    fn container_userns_of(c: &ContainerConfig) -> Option<UserNamespace> {
        c.linux
            .as_ref()?
            .security_context
            .as_ref()?
            .namespace_options
            .as_ref()?
            .userns_options
            .clone()
    }

    #[test]
    fn userns_options_go_to_the_pod_and_its_container() {
        let userns = pod_userns(3);
        let (pod, container) = pod_and_container(NetMode::Pod, Some(userns.clone()));
        assert_eq!(pod_userns_of(&pod), Some(userns.clone()));
        assert_eq!(container_userns_of(&container), Some(userns.clone()));
        assert_eq!(userns.mode, NamespaceMode::Pod as i32);
        let ids = IdMapping {
            host_id: 103 * 65536,
            container_id: 0,
            length: 65536,
        };
        assert_eq!((userns.uids, userns.gids), (vec![ids], vec![ids]));
        // The plain pod carries no options at all, as before.
        let (pod, container) = pod_and_container(NetMode::Pod, None);
        assert_eq!(pod_userns_of(&pod), None);
        assert_eq!(container_userns_of(&container), None);
        assert_eq!(pod.hostname, "bench-pod-net-userns-1");
    }

    #[test]
    fn pods_get_aligned_ranges_that_do_not_overlap() {
        let range = |seq: usize| {
            let m = pod_userns(seq).uids[0];
            assert_eq!(m.host_id % USERNS_LENGTH, 0, "pod {seq}");
            assert!(m.host_id >= USERNS_FIRST_BLOCK * USERNS_LENGTH, "pod {seq}");
            // The last id stays below 2^32 - 1, the kernel's "no id".
            assert!(u64::from(m.host_id) + u64::from(m.length) <= u64::from(u32::MAX));
            u64::from(m.host_id)..u64::from(m.host_id) + u64::from(m.length)
        };
        // Every block once before they repeat: sorted, each range ends
        // before the next begins.
        let blocks = USERNS_BLOCKS as usize;
        let ranges: Vec<_> = (0..blocks + 1).map(range).collect();
        let mut sorted = ranges[..blocks].to_vec();
        sorted.sort_by_key(|r| r.start);
        for w in sorted.windows(2) {
            assert!(w[0].end <= w[1].start, "{:?} overlaps {:?}", w[0], w[1]);
        }
        // After the last block the first comes again.
        assert_eq!(ranges[blocks], ranges[0]);
    }
}
