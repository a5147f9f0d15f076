//! Helpers for container tests: kubelet-shaped container configs, create
//! and start through the CRI client, wait for exits, read CRI logs, and
//! look at a container's process through /proc.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use peapod::api;

use super::registry::Registry;
use super::TestDaemon;

/// kubelet's lists (KUBELET.md), sent with every container.
pub use peapod::container::security::{
    DEFAULT_MASKED_PATHS as MASKED_PATHS, DEFAULT_READONLY_PATHS as READONLY_PATHS,
};

/// A pod that a test runs containers in.
pub struct Pod {
    pub id: String,
    pub config: api::PodSandboxConfig,
}

impl Pod {
    pub fn log_dir(&self) -> PathBuf {
        PathBuf::from(&self.config.log_directory)
    }
    pub fn cgroup_parent(&self) -> String {
        self.config
            .linux
            .as_ref()
            .map(|l| l.cgroup_parent.clone())
            .unwrap_or_default()
    }
}

/// The namespace options of a pod config in kubelet's shape.
pub fn pod_namespace_options(c: &mut api::PodSandboxConfig) -> &mut api::NamespaceOption {
    let sc = c.linux.as_mut().unwrap().security_context.as_mut().unwrap();
    sc.namespace_options.get_or_insert_with(Default::default)
}

/// The security context of a container config in kubelet's shape.
pub fn container_security(c: &mut api::ContainerConfig) -> &mut api::LinuxContainerSecurityContext {
    let linux = c.linux.get_or_insert_with(Default::default);
    linux.security_context.get_or_insert_with(Default::default)
}

/// The namespace options of a container config in kubelet's shape.
pub fn container_namespace_options(c: &mut api::ContainerConfig) -> &mut api::NamespaceOption {
    container_security(c)
        .namespace_options
        .get_or_insert_with(Default::default)
}

/// One CRI log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub time: String,
    pub stream: String,
    pub tag: String,
    pub content: String,
}

/// Parses a CRI log file strictly: every line must have the format.
pub fn read_log(path: &Path) -> Vec<LogLine> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().map(parse_log_line).collect()
}

pub fn parse_log_line(l: &str) -> LogLine {
    let mut parts = l.splitn(4, ' ');
    let time = parts.next().unwrap_or_default().to_string();
    let stream = parts.next().unwrap_or_default().to_string();
    let tag = parts.next().unwrap_or_default().to_string();
    let content = parts.next().unwrap_or_default().to_string();
    // RFC3339Nano in UTC: 2026-11-22T10:37:23.433125851Z
    let ok = time.len() >= 21
        && time.ends_with('Z')
        && time.as_bytes()[4] == b'-'
        && time.as_bytes()[10] == b'T'
        && time.as_bytes()[19] == b'.';
    assert!(ok, "bad timestamp in log line {l:?}");
    assert!(
        stream == "stdout" || stream == "stderr",
        "bad stream in {l:?}"
    );
    assert!(tag == "F" || tag == "P", "bad tag in {l:?}");
    LogLine {
        time,
        stream,
        tag,
        content,
    }
}

/// The content of a log's full lines (partial records joined).
pub fn log_text(lines: &[LogLine], stream: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for l in lines.iter().filter(|l| l.stream == stream) {
        cur.push_str(&l.content);
        if l.tag == "F" {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The process's status lines from /proc (`Uid`, `CapEff`, ...).
pub fn proc_status(pid: i32) -> HashMap<String, String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"))
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// The value of a cgroup v1 file of `path` in the hierarchy holding
/// `controller`, e.g. ("memory", "memory.limit_in_bytes").
pub fn cgroup_v1_file(controller: &str, path: &str, file: &str) -> String {
    let mounts = super::cgroup_mounts();
    let mount = mounts
        .iter()
        .find(|m| {
            m.file_name()
                .map(|n| n.to_string_lossy().split(',').any(|c| c == controller))
                .unwrap_or(false)
        })
        .unwrap_or_else(|| panic!("no {controller} hierarchy in {mounts:?}"));
    let p = mount.join(path.trim_start_matches('/')).join(file);
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

/// The cgroup of `pid` in the hierarchy naming `controller`.
pub fn proc_cgroup(pid: i32, controller: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap()
        .lines()
        .find_map(|l| {
            let mut p = l.splitn(3, ':');
            let _ = p.next();
            let names = p.next()?;
            let path = p.next()?;
            names
                .split(',')
                .any(|n| n == controller)
                .then(|| path.to_string())
        })
        .unwrap_or_else(|| panic!("pid {pid} has no {controller} cgroup"))
}

impl TestDaemon {
    /// Pulls `name` (e.g. `busybox:latest`) from the shared test registry;
    /// returns the image id.
    pub async fn pull(&self, name: &str) -> String {
        let image = Registry::shared().image(name);
        self.images()
            .await
            .pull_image(api::PullImageRequest {
                image: Some(api::ImageSpec {
                    image: image.clone(),
                    ..Default::default()
                }),
                auth: None,
                sandbox_config: None,
            })
            .await
            .unwrap_or_else(|e| panic!("PullImage {image}: {e:?}"))
            .into_inner()
            .image_ref
    }

    /// Runs a pod; `pid_mode` is the pod's PID namespace mode.
    pub async fn pod(&self, name: &str) -> Pod {
        let config = self.pod_config(name);
        let id = self.run_pod(config.clone()).await;
        Pod { id, config }
    }

    /// A pod on the host network (no CNI needed), for tests about
    /// processes rather than networking.
    pub async fn host_pod(&self, name: &str) -> Pod {
        let mut c = self.pod_config(name);
        pod_namespace_options(&mut c).network = api::NamespaceMode::Node as i32;
        self.pod_with(c).await
    }

    pub async fn pod_with(&self, config: api::PodSandboxConfig) -> Pod {
        let id = self.run_pod(config.clone()).await;
        Pod { id, config }
    }

    /// A container config as kubelet sends it for a BestEffort container
    /// without a security context: run_as_user 0, seccomp Unconfined,
    /// kubelet's masked and read-only paths, its own PID namespace.
    pub fn container_config(
        &self,
        name: &str,
        image_id: &str,
        cmd: &[&str],
    ) -> api::ContainerConfig {
        api::ContainerConfig {
            metadata: Some(api::ContainerMetadata {
                name: name.to_string(),
                attempt: 0,
            }),
            image: Some(api::ImageSpec {
                image: image_id.to_string(),
                user_specified_image: Registry::shared().image("busybox:latest"),
                ..Default::default()
            }),
            command: cmd.iter().map(|s| s.to_string()).collect(),
            labels: HashMap::from([
                ("io.kubernetes.container.name".to_string(), name.to_string()),
                ("io.kubernetes.pod.name".to_string(), "test".to_string()),
            ]),
            annotations: HashMap::from([
                (
                    "io.kubernetes.container.hash".to_string(),
                    "4d89c986".to_string(),
                ),
                (
                    "io.kubernetes.container.restartCount".to_string(),
                    "0".to_string(),
                ),
            ]),
            log_path: format!("{name}/0.log"),
            linux: Some(api::LinuxContainerConfig {
                resources: Some(api::LinuxContainerResources {
                    cpu_period: 100000,
                    cpu_shares: 2,
                    oom_score_adj: 1000,
                    hugepage_limits: vec![
                        api::HugepageLimit {
                            page_size: "2MB".into(),
                            limit: 0,
                        },
                        api::HugepageLimit {
                            page_size: "1GB".into(),
                            limit: 0,
                        },
                    ],
                    ..Default::default()
                }),
                security_context: Some(api::LinuxContainerSecurityContext {
                    namespace_options: Some(api::NamespaceOption {
                        pid: api::NamespaceMode::Container as i32,
                        ..Default::default()
                    }),
                    run_as_user: Some(api::Int64Value { value: 0 }),
                    masked_paths: MASKED_PATHS.iter().map(|s| s.to_string()).collect(),
                    readonly_paths: READONLY_PATHS.iter().map(|s| s.to_string()).collect(),
                    seccomp: Some(api::SecurityProfile {
                        profile_type: api::security_profile::ProfileType::Unconfined as i32,
                        localhost_ref: String::new(),
                    }),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }

    pub async fn try_create(
        &self,
        pod: &Pod,
        config: api::ContainerConfig,
    ) -> Result<String, tonic::Status> {
        self.runtime()
            .await
            .create_container(api::CreateContainerRequest {
                pod_sandbox_id: pod.id.clone(),
                config: Some(config),
                sandbox_config: Some(pod.config.clone()),
            })
            .await
            .map(|r| r.into_inner().container_id)
    }

    pub async fn create(&self, pod: &Pod, config: api::ContainerConfig) -> String {
        self.try_create(pod, config)
            .await
            .unwrap_or_else(|e| panic!("CreateContainer: {e:?}\n{}", self.log_text()))
    }

    pub async fn start_c(&self, id: &str) {
        self.runtime()
            .await
            .start_container(api::StartContainerRequest {
                container_id: id.to_string(),
            })
            .await
            .unwrap_or_else(|e| panic!("StartContainer: {e:?}\n{}", self.log_text()));
    }

    /// Create + start.
    pub async fn run(&self, pod: &Pod, config: api::ContainerConfig) -> String {
        let id = self.create(pod, config).await;
        self.start_c(&id).await;
        id
    }

    pub async fn cstatus(&self, id: &str) -> api::ContainerStatus {
        self.runtime()
            .await
            .container_status(api::ContainerStatusRequest {
                container_id: id.to_string(),
                verbose: false,
            })
            .await
            .unwrap_or_else(|e| panic!("ContainerStatus: {e:?}"))
            .into_inner()
            .status
            .unwrap()
    }

    /// The verbose `info` of ContainerStatus.
    pub async fn cinfo(&self, id: &str) -> serde_json::Value {
        let r = self
            .runtime()
            .await
            .container_status(api::ContainerStatusRequest {
                container_id: id.to_string(),
                verbose: true,
            })
            .await
            .unwrap()
            .into_inner();
        serde_json::from_str(&r.info["info"]).unwrap()
    }

    /// The container's init pid, from verbose status, checked against the
    /// kernel: it must exist and sit in the container's cgroup.
    pub async fn cpid(&self, id: &str) -> i32 {
        let info = self.cinfo(id).await;
        let pid = info["pid"].as_i64().expect("pid in verbose info") as i32;
        assert!(
            super::process_exists(pid),
            "container init {pid} is not running"
        );
        let cg = proc_cgroup(pid, "memory");
        assert!(
            cg.ends_with(&format!("/{id}")),
            "pid {pid} is in cgroup {cg}, not the container's"
        );
        pid
    }

    /// Waits until the container has exited; returns its status.
    pub async fn wait_exit(&self, id: &str, timeout: Duration) -> api::ContainerStatus {
        let deadline = Instant::now() + timeout;
        loop {
            let st = self.cstatus(id).await;
            if st.state == api::ContainerState::ContainerExited as i32 {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "container {id} still {} after {timeout:?}\n{}",
                st.state,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn exec(
        &self,
        id: &str,
        cmd: &[&str],
        timeout: i64,
    ) -> Result<api::ExecSyncResponse, tonic::Status> {
        self.runtime()
            .await
            .exec_sync(api::ExecSyncRequest {
                container_id: id.to_string(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                timeout,
            })
            .await
            .map(|r| r.into_inner())
    }

    /// stdout of a command run in the container; panics unless it exits 0.
    pub async fn exec_ok(&self, id: &str, cmd: &[&str]) -> String {
        let r = self
            .exec(id, cmd, 30)
            .await
            .unwrap_or_else(|e| panic!("ExecSync {cmd:?}: {e:?}"));
        assert_eq!(
            r.exit_code,
            0,
            "{cmd:?} exited {}: {}",
            r.exit_code,
            String::from_utf8_lossy(&r.stderr)
        );
        String::from_utf8_lossy(&r.stdout).into_owned()
    }

    pub async fn stop_container(&self, id: &str, timeout: i64) {
        self.runtime()
            .await
            .stop_container(api::StopContainerRequest {
                container_id: id.to_string(),
                timeout,
            })
            .await
            .unwrap_or_else(|e| panic!("StopContainer: {e:?}\n{}", self.log_text()));
    }

    pub async fn remove_container(&self, id: &str) {
        self.runtime()
            .await
            .remove_container(api::RemoveContainerRequest {
                container_id: id.to_string(),
            })
            .await
            .unwrap_or_else(|e| panic!("RemoveContainer: {e:?}\n{}", self.log_text()));
    }

    pub async fn list_containers(
        &self,
        filter: Option<api::ContainerFilter>,
    ) -> Vec<api::Container> {
        self.runtime()
            .await
            .list_containers(api::ListContainersRequest { filter })
            .await
            .unwrap()
            .into_inner()
            .containers
    }

    /// Asserts that no container of this daemon left anything: no state
    /// or writable-layer directory, no overlay mount, no runc state.
    /// Whether the container's overlay rootfs is mounted (mountinfo).
    pub fn rootfs_mounted(&self, id: &str) -> bool {
        let rootfs = self.state.join("containers").join(id).join("rootfs");
        let rootfs = rootfs.to_string_lossy();
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        info.lines()
            .any(|l| l.split(' ').nth(4) == Some(rootfs.as_ref()) && l.contains(" - overlay "))
    }

    /// The runtime roots peapod gave its handlers (`<state>/runtimes/<name>`).
    fn runtime_roots(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.state.join("runtimes"))
            .map(|r| r.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }

    /// Whether an OCI runtime still has state of the container under
    /// peapod's roots.
    pub fn runc_knows(&self, id: &str) -> bool {
        self.runtime_roots().iter().any(|r| r.join(id).exists())
    }

    pub fn assert_no_containers_left(&self) {
        for dir in [self.state.join("containers"), self.root.join("containers")] {
            let left: Vec<_> = std::fs::read_dir(&dir)
                .map(|r| r.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            assert!(left.is_empty(), "left in {}: {left:?}", dir.display());
        }
        let left: Vec<_> = self
            .runtime_roots()
            .iter()
            .flat_map(|root| {
                std::fs::read_dir(root)
                    .map(|r| r.flatten().map(|e| e.path()).collect::<Vec<_>>())
                    .unwrap_or_default()
            })
            .collect();
        assert!(left.is_empty(), "an OCI runtime still knows {left:?}");
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let dir = self.state.join("containers").to_string_lossy().to_string();
        assert!(
            !mounts.lines().any(|l| l.contains(&dir)),
            "mounts left under {dir}"
        );
    }
}
