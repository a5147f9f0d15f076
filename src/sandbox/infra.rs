//! The pod's infra process: `peapod-monitor pause` creates the namespaces,
//! sets the hostname and sysctls, forks the process that holds them and
//! reports its pid. The infra process is never the daemon's child.

use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use peapod_monitor_protocol::pause::{PauseConfig, Sysctl};
use peapod_monitor_protocol::Answer;

use super::spec::{NamespaceMode, SandboxSpec};
use crate::process::ProcessRef;
use crate::userns::UserNamespaceMaps;

#[derive(Debug, thiserror::Error)]
pub enum InfraError {
    #[error("cannot run {path}: {source}")]
    Spawn {
        path: String,
        source: std::io::Error,
    },
    #[error("infra process setup failed: {0}")]
    Setup(String),
    /// The kernel refused a sysctl (unknown, or a value out of range): the
    /// request's fault, not ours.
    #[error("{0}")]
    Sysctl(String),
    #[error("peapod-monitor did not answer within {0:?}")]
    Timeout(Duration),
}

/// What the infra process of a pod is made with.
pub fn pause_config(spec: &SandboxSpec) -> PauseConfig {
    let own_net = spec.network == NamespaceMode::Pod;
    PauseConfig {
        userns: spec.userns,
        net: own_net,
        ipc: spec.ipc != NamespaceMode::Node,
        // A host-network pod keeps the host's UTS namespace (and
        // hostname), as kubelet and other runtimes expect.
        uts: own_net,
        hostname: (own_net && !spec.hostname.is_empty()).then(|| spec.hostname.clone()),
        // The infra process gets a PID namespace of its own unless the pod
        // uses the host's: when the pod shares one, it is that namespace's
        // init.
        pid: spec.pid != NamespaceMode::Node,
        sysctls: spec
            .sysctls
            .iter()
            .map(|(key, value)| Sysctl {
                key: key.clone(),
                value: fit_to_userns(key, value, spec.userns.as_ref()),
            })
            .collect(),
        pause_bin: None,
    }
}

/// `net.ipv4.ping_group_range` names groups, which the kernel takes only
/// when they are mapped in the user namespace of the writer. Inside a
/// pod's own user namespace the range asked for ("every group", as kubelet
/// writes it: `0 2147483647`) is narrowed to the groups the pod maps.
fn fit_to_userns(key: &str, value: &str, userns: Option<&UserNamespaceMaps>) -> String {
    let Some(gid) = userns.map(|maps| maps.gid) else {
        return value.to_string();
    };
    if key != "net.ipv4.ping_group_range" {
        return value.to_string();
    }
    let bounds: Vec<u64> = value
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    let [low, high] = bounds[..] else {
        return value.to_string();
    };
    let first = u64::from(gid.container_id);
    let last = first + u64::from(gid.length) - 1;
    format!("{} {}", low.clamp(first, last), high.clamp(first, last))
}

/// The monitor's arguments for a pod.
pub fn pause_args(spec: &SandboxSpec) -> Vec<OsString> {
    pause_config(spec).to_args()
}

/// Starts the infra process and returns it once its namespaces exist.
pub async fn start(
    monitor: &Path,
    spec: &SandboxSpec,
    timeout: Duration,
) -> Result<ProcessRef, InfraError> {
    let child = tokio::process::Command::new(monitor)
        .args(pause_args(spec))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| InfraError::Spawn {
            path: monitor.display().to_string(),
            source,
        })?;
    let monitor_pid = child.id().map(|p| p as i32);
    let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(out) => out,
        Err(_) => {
            // The monitor (dropped, so killed) may already have forked the
            // infra process, which is in no cgroup yet: kill it too.
            if let Some(pid) = monitor_pid {
                kill_children_of(pid);
            }
            return Err(InfraError::Timeout(timeout));
        }
    }
    .map_err(|source| InfraError::Spawn {
        path: monitor.display().to_string(),
        source,
    })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().next().unwrap_or("").trim();
    let msg = match Answer::parse(line) {
        Ok(Answer::Ok(pid)) => {
            // The monitor has exited, so the infra process is now init's
            // child; its start time pins its identity from here on.
            return ProcessRef::of(pid)
                .ok_or_else(|| InfraError::Setup(format!("infra process {pid} exited at once")));
        }
        Ok(Answer::Error(msg)) => msg,
        _ if line.starts_with("ok ") => {
            return Err(InfraError::Setup(format!("unexpected answer {line:?}")))
        }
        _ => line.to_string(),
    };
    // The monitor names the failed step first: `sysctl KEY: ...`.
    if msg.starts_with("sysctl ") {
        return Err(InfraError::Sysctl(msg.to_string()));
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let detail = if msg.is_empty() { stderr.trim() } else { &msg };
    Err(InfraError::Setup(format!(
        "{detail} (monitor exit status {})",
        out.status
    )))
}

/// Starts a pod's infra process: the real one runs `peapod-monitor pause`,
/// tests use a fake.
#[tonic::async_trait]
pub trait PodInfra: Send + Sync {
    /// The infra process of a new pod, once its namespaces exist.
    async fn start(&self, spec: &SandboxSpec) -> Result<ProcessRef, InfraError>;
}

/// The infra process made by `peapod-monitor pause`.
pub struct PauseMonitor {
    pub binary: std::path::PathBuf,
    pub timeout: Duration,
}

#[tonic::async_trait]
impl PodInfra for PauseMonitor {
    async fn start(&self, spec: &SandboxSpec) -> Result<ProcessRef, InfraError> {
        start(&self.binary, spec, self.timeout).await
    }
}

/// SIGKILLs every process whose parent is `parent` (from /proc).
fn kill_children_of(parent: i32) {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if crate::process::parent_pid(pid) == Some(parent) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::spec::SandboxMetadata;

    fn spec(network: NamespaceMode, pid: NamespaceMode, ipc: NamespaceMode) -> SandboxSpec {
        SandboxSpec {
            metadata: SandboxMetadata {
                name: "n".into(),
                uid: "u".into(),
                namespace: "ns".into(),
                attempt: 0,
            },
            hostname: "h".into(),
            log_directory: String::new(),
            dns: None,
            port_mappings: vec![],
            labels: Default::default(),
            annotations: Default::default(),
            cgroup_parent: "/x".into(),
            network,
            pid,
            ipc,
            userns: None,
            sysctls: [("net.ipv4.ip_forward".to_string(), "1".to_string())].into(),
            runtime_handler: String::new(),
        }
    }

    #[test]
    fn pod_namespaces() {
        let a = pause_args(&spec(
            NamespaceMode::Pod,
            NamespaceMode::Pod,
            NamespaceMode::Pod,
        ));
        assert_eq!(
            a,
            [
                "pause",
                "--net",
                "--ipc",
                "--uts",
                "--hostname",
                "h",
                "--pid",
                "--sysctl",
                "net.ipv4.ip_forward=1"
            ]
        );
    }

    #[test]
    fn kills_the_children_of_a_process() {
        // sh forks a sleeping child; killing sh's children must reach it.
        let mut sh = std::process::Command::new("sh")
            .args(["-c", "sleep 60 & wait"])
            .spawn()
            .unwrap();
        let sh_pid = sh.id() as i32;
        let child = loop {
            let kids = std::fs::read_to_string(format!("/proc/{sh_pid}/task/{sh_pid}/children"))
                .unwrap_or_default();
            if let Some(k) = kids.split_whitespace().next() {
                break k.parse::<i32>().unwrap();
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        kill_children_of(sh_pid);
        // Dead (a zombie, or reaped by sh) well before its 60 s are up.
        let gone = (0..500).any(|_| {
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            let dead = stat.is_empty() || stat.contains(") Z");
            if !dead {
                std::thread::sleep(Duration::from_millis(10));
            }
            dead
        });
        let _ = sh.kill();
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child),
            nix::sys::signal::Signal::SIGKILL,
        );
        sh.wait().unwrap();
        assert!(gone, "child {child} of {sh_pid} survived");
    }

    #[test]
    fn ping_group_range_is_narrowed_to_the_pods_groups() {
        let maps = UserNamespaceMaps {
            uid: crate::userns::IdMap::parse("0:65536:65536").unwrap(),
            gid: crate::userns::IdMap::parse("0:131072:65536").unwrap(),
        };
        let key = "net.ipv4.ping_group_range";
        assert_eq!(fit_to_userns(key, "0 2147483647", Some(&maps)), "0 65535");
        assert_eq!(fit_to_userns(key, "100\t200", Some(&maps)), "100 200");
        assert_eq!(fit_to_userns(key, "0 2147483647", None), "0 2147483647");
        assert_eq!(fit_to_userns("net.ipv4.ip_forward", "1", Some(&maps)), "1");
        // Not two numbers: left for the kernel to refuse.
        assert_eq!(fit_to_userns(key, "x", Some(&maps)), "x");
    }

    #[test]
    fn host_namespaces() {
        let a = pause_args(&spec(
            NamespaceMode::Node,
            NamespaceMode::Node,
            NamespaceMode::Node,
        ));
        assert_eq!(a, ["pause", "--sysctl", "net.ipv4.ip_forward=1"]);
    }
}
