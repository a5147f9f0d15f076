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
use crate::containers::{CONTAINER_NAME, CONTAINER_SCRIPT};
use crate::cri::image::BenchImage;
use crate::cri::runtime::TargetBench;
use crate::error::{io_err, BenchError};
use crate::run::{random_hex, RUN_LABEL};

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

pub struct Pod {
    pub uid: String,
    pub log_dir: PathBuf,
    /// Kubelet's per-pod directory (`/var/lib/kubelet/pods/<uid>`): the
    /// files a container bind-mounts (/etc/hosts, its termination log).
    pub kubelet_dir: PathBuf,
    pub config: PodSandboxConfig,
    pub id: Option<String>,
}

impl TargetBench<'_> {
    /// The shapes kubelet sends (see shared/fixtures/kubelet-cri-calls.json):
    /// a burstable pod with its own cgroup parent, DNS and log directory.
    pub fn pod_config(&mut self, mode: NetMode) -> Result<(Pod, PodSandboxConfig), BenchError> {
        self.seq += 1;
        let uid = pod_uid()?;
        let name = format!("bench-{}-{}", mode.label(), self.seq);
        let namespace = "default".to_string();
        let log_dir = self
            .shared
            .pods_dir
            .join(format!("{namespace}_{name}_{uid}"));
        let labels = HashMap::from([
            ("app".to_string(), "peapod-bench".to_string()),
            ("io.kubernetes.pod.name".to_string(), name.clone()),
            ("io.kubernetes.pod.namespace".to_string(), namespace.clone()),
            ("io.kubernetes.pod.uid".to_string(), uid.clone()),
            (RUN_LABEL.to_string(), self.shared.run_id.clone()),
        ]);
        let annotations = HashMap::from([
            ("kubernetes.io/config.seen".to_string(), now_rfc3339()),
            ("kubernetes.io/config.source".to_string(), "api".to_string()),
        ]);
        let network = match mode {
            NetMode::Host => NamespaceMode::Node,
            NetMode::Pod => NamespaceMode::Pod,
        };
        let config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.clone(),
                uid: uid.clone(),
                namespace,
                attempt: 0,
            }),
            // Kubelet leaves the hostname empty for host-network pods.
            hostname: if mode == NetMode::Pod {
                name.clone()
            } else {
                String::new()
            },
            log_directory: log_dir.to_string_lossy().into_owned(),
            dns_config: Some(DnsConfig {
                servers: vec!["127.0.0.1".into()],
                searches: vec![
                    "default.svc.cluster.local".into(),
                    "svc.cluster.local".into(),
                    "cluster.local".into(),
                ],
                options: vec!["ndots:5".into()],
            }),
            port_mappings: Vec::new(),
            labels,
            annotations,
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: self.shared.cgroups.pod_path(&uid),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: network as i32,
                        pid: NamespaceMode::Container as i32,
                        ipc: NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
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
            }),
            windows: None,
        };
        let kubelet_dir = self.shared.pods_dir.join(format!("kubelet-{uid}"));
        Ok((
            Pod {
                uid,
                log_dir,
                kubelet_dir,
                config: config.clone(),
                id: None,
            },
            config,
        ))
    }

    /// Kubelet's part before RunPodSandbox: the pod cgroup and log directory.
    pub fn prepare(&self, pod: &Pod) -> Result<(), BenchError> {
        self.shared
            .cgroups
            .create(&self.shared.cgroups.pod_path(&pod.uid))?;
        std::fs::create_dir_all(&pod.log_dir).map_err(io_err(&pod.log_dir))
    }

    /// Kubelet's part after RemovePodSandbox. A cgroup the runtime left
    /// behind stays for the final sweep, which reports it.
    pub fn release(&self, pod: &Pod) {
        let _ = self
            .shared
            .cgroups
            .remove(&self.shared.cgroups.pod_path(&pod.uid));
        let _ = std::fs::remove_dir_all(&pod.log_dir);
        let _ = std::fs::remove_dir_all(&pod.kubelet_dir);
    }

    /// Kubelet's part before CreateContainer: the container's log
    /// directory, the pod's hosts file and the container's termination log.
    /// Returns the hosts file and the termination log.
    pub fn prepare_container(&self, pod: &Pod) -> Result<(PathBuf, PathBuf), BenchError> {
        let logs = pod.log_dir.join(CONTAINER_NAME);
        std::fs::create_dir_all(&logs).map_err(io_err(&logs))?;
        let term_dir = pod.kubelet_dir.join("containers").join(CONTAINER_NAME);
        std::fs::create_dir_all(&term_dir).map_err(io_err(&term_dir))?;
        let hosts = pod.kubelet_dir.join("etc-hosts");
        std::fs::write(&hosts, "127.0.0.1\tlocalhost\n::1\tlocalhost\n").map_err(io_err(&hosts))?;
        let term = term_dir.join("0b3c6d1e");
        std::fs::write(&term, "").map_err(io_err(&term))?;
        Ok((hosts, term))
    }

    /// What kubelet sends for a BestEffort container running as root with
    /// seccomp Unconfined (see shared/fixtures/kubelet-cri-calls.json).
    pub fn container_config(
        &self,
        pod: &Pod,
        mode: NetMode,
        img: &BenchImage,
        hosts: &Path,
        term: &Path,
    ) -> ContainerConfig {
        let meta = pod.config.metadata.clone().unwrap_or_default();
        let labels = HashMap::from([
            (
                "io.kubernetes.container.name".to_string(),
                CONTAINER_NAME.to_string(),
            ),
            ("io.kubernetes.pod.name".to_string(), meta.name),
            ("io.kubernetes.pod.namespace".to_string(), meta.namespace),
            ("io.kubernetes.pod.uid".to_string(), meta.uid),
            (RUN_LABEL.to_string(), self.shared.run_id.clone()),
        ]);
        let annotations = HashMap::from([
            (
                "io.kubernetes.container.hash".to_string(),
                "0b3c6d1e".to_string(),
            ),
            (
                "io.kubernetes.container.restartCount".to_string(),
                "0".to_string(),
            ),
            (
                "io.kubernetes.container.terminationMessagePath".to_string(),
                "/dev/termination-log".to_string(),
            ),
            (
                "io.kubernetes.container.terminationMessagePolicy".to_string(),
                "File".to_string(),
            ),
            (
                "io.kubernetes.pod.terminationGracePeriod".to_string(),
                "30".to_string(),
            ),
        ]);
        let network = match mode {
            NetMode::Host => NamespaceMode::Node,
            NetMode::Pod => NamespaceMode::Pod,
        };
        let bind = |container_path: &str, host: &Path| Mount {
            container_path: container_path.to_string(),
            host_path: host.to_string_lossy().into_owned(),
            ..Default::default()
        };
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: CONTAINER_NAME.to_string(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: img.id.clone(),
                user_specified_image: img.name.clone(),
                ..Default::default()
            }),
            command: strings(&["sh", "-c", CONTAINER_SCRIPT]),
            mounts: vec![
                bind("/etc/hosts", hosts),
                bind("/dev/termination-log", term),
            ],
            labels,
            annotations,
            log_path: format!("{CONTAINER_NAME}/0.log"),
            linux: Some(LinuxContainerConfig {
                resources: Some(LinuxContainerResources {
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
                }),
                security_context: Some(LinuxContainerSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: network as i32,
                        pid: NamespaceMode::Container as i32,
                        ipc: NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    run_as_user: Some(Int64Value { value: 0 }),
                    masked_paths: strings(&MASKED_PATHS),
                    readonly_paths: strings(&READONLY_PATHS),
                    seccomp: Some(SecurityProfile {
                        profile_type: ProfileType::Unconfined as i32,
                        localhost_ref: String::new(),
                    }),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
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
