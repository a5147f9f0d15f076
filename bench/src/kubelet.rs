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
    ContainerConfig, ContainerMetadata, DnsConfig, HugepageLimit, ImageSpec, Int64Value,
    LinuxContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, Mount, NamespaceMode, NamespaceOption,
    PodSandboxConfig, PodSandboxMetadata, SecurityProfile,
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

/// A container of a bench pod: its name and the script its `sh -c` runs.
#[derive(Debug, Clone, Copy)]
pub struct ContainerSpec<'a> {
    pub name: &'a str,
    pub script: &'a str,
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
    /// own cgroup parent, DNS and log directory.
    pub fn new(shared: &Shared, mode: NetMode, seq: usize) -> Result<Pod, BenchError> {
        let meta = PodSandboxMetadata {
            name: format!("bench-{}-{seq}", mode.label()),
            uid: pod_uid()?,
            namespace: "default".to_string(),
            attempt: 0,
        };
        let log_dir = shared
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
            labels: pod_labels(&meta, &shared.run_id),
            annotations: string_map(&[
                ("kubernetes.io/config.seen", &now_rfc3339()),
                ("kubernetes.io/config.source", "api"),
            ]),
            linux: Some(burstable_pod(shared.cgroups.pod_path(&meta.uid), mode)),
            windows: None,
            metadata: Some(meta.clone()),
        };
        Ok(Pod {
            kubelet_dir: shared.pods_dir.join(format!("kubelet-{}", meta.uid)),
            uid: meta.uid,
            log_dir,
            config,
            id: None,
        })
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

    /// What kubelet sends for a BestEffort container running as root with
    /// seccomp Unconfined (see shared/fixtures/kubelet-cri-calls.json),
    /// running `sh -c` with the script of `spec`.
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
                security_context: Some(root_unconfined(mode)),
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
fn burstable_pod(cgroup_parent: String, mode: NetMode) -> LinuxPodSandboxConfig {
    LinuxPodSandboxConfig {
        cgroup_parent,
        security_context: Some(LinuxSandboxSecurityContext {
            namespace_options: Some(namespaces(mode)),
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
/// a PID namespace per container, the pod's IPC.
fn namespaces(mode: NetMode) -> NamespaceOption {
    let network = match mode {
        NetMode::Host => NamespaceMode::Node,
        NetMode::Pod => NamespaceMode::Pod,
    };
    NamespaceOption {
        network: network as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
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
fn root_unconfined(mode: NetMode) -> LinuxContainerSecurityContext {
    LinuxContainerSecurityContext {
        namespace_options: Some(namespaces(mode)),
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
}
