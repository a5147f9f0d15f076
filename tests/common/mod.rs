//! Test harness: a real `peapod serve` on a temporary socket, root and state
//! dir, driven only through the generated CRI client.
#![allow(dead_code)]

pub mod containers;
pub mod gate;
mod monitor_binary;
pub mod proxy;
pub mod registry;
pub mod streaming;

pub use monitor_binary::Binaries;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use peapod::api;
use peapod::api::image_service_client::ImageServiceClient;
use peapod::api::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

pub const CNI_BIN_DIR: &str = "/usr/lib/cni";

/// Fails (never skips) when the machine lacks what the tests need.
pub fn require_host() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "these integration tests need root (namespaces, mounts, cgroups): run them as root"
    );
    for plugin in ["bridge", "host-local", "loopback", "portmap"] {
        assert!(
            Path::new(CNI_BIN_DIR).join(plugin).exists(),
            "CNI plugin {plugin} missing in {CNI_BIN_DIR}: install containernetworking-plugins (hack/install-deps.sh)"
        );
    }
    for tool in ["ip", "nsenter"] {
        assert!(
            which(tool),
            "{tool} not found: install iproute2 and util-linux (hack/install-deps.sh)"
        );
    }
}

pub fn which(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).exists()))
        .unwrap_or(false)
}

pub fn rand_hex(n: usize) -> String {
    peapod::ids::new_id()[..n].to_string()
}

/// A CNI network for one test: its own bridge and subnet.
pub struct TestNetwork {
    pub bridge: String,
    pub subnet_prefix: String,
}

pub struct TestDaemon {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub root: PathBuf,
    pub state: PathBuf,
    pub cni_conf_dir: PathBuf,
    pub cni_bin_dir: String,
    pub cgroup_parent: String,
    pub network: Option<TestNetwork>,
    pub extra_args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// The daemon and monitor this harness runs.
    pub binaries: Binaries,
    child: Option<Child>,
    log: PathBuf,
}

pub struct Options {
    pub cni: bool,
    pub extra_args: Vec<String>,
    /// Replaces the CNI bin dir (for fault-injecting plugins).
    pub cni_bin_dir: Option<String>,
    /// Another version's binaries (the upgrade test).
    pub binaries: Option<Binaries>,
    /// Environment variables of the daemon's own.
    pub env: Vec<(String, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            cni: true,
            extra_args: vec![],
            cni_bin_dir: None,
            binaries: None,
            env: vec![],
        }
    }
}

impl TestDaemon {
    pub fn start() -> TestDaemon {
        Self::start_with(Options::default())
    }

    pub fn start_with(opts: Options) -> TestDaemon {
        require_host();
        let dir = tempfile::Builder::new()
            .prefix("peapod-test-")
            .tempdir()
            .unwrap();
        let cni_conf_dir = dir.path().join("net.d");
        std::fs::create_dir_all(&cni_conf_dir).unwrap();
        let mut d = TestDaemon {
            socket: dir.path().join("peapod.sock"),
            root: dir.path().join("root"),
            state: dir.path().join("state"),
            cni_conf_dir,
            cni_bin_dir: opts.cni_bin_dir.unwrap_or_else(|| CNI_BIN_DIR.to_string()),
            cgroup_parent: format!("/peapod-test-{}", rand_hex(8)),
            network: None,
            extra_args: opts.extra_args,
            env: opts.env,
            binaries: opts.binaries.unwrap_or_else(Binaries::current),
            child: None,
            log: dir.path().join("daemon.log"),
            dir,
        };
        if opts.cni {
            d.write_network();
        }
        d.spawn();
        d
    }

    /// Writes a bridge + host-local + loopback + portmap conflist with a
    /// bridge name and /24 subnet of its own.
    pub fn write_network(&mut self) {
        let r = rand_hex(6);
        let bridge = format!("ppt{r}");
        let n = u32::from_str_radix(&r[..4], 16).unwrap();
        let subnet_prefix = format!("10.{}.{}", 200 + (n >> 8) % 50, n & 0xff);
        let conf = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "peapod-test",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": bridge,
                    "isGateway": true,
                    "ipMasq": false,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": format!("{subnet_prefix}.0/24")}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": self.dir.path().join("ipam").to_string_lossy(),
                    }
                },
                {"type": "portmap", "capabilities": {"portMappings": true}},
                {"type": "loopback"}
            ]
        });
        std::fs::write(
            self.cni_conf_dir.join("10-test.conflist"),
            serde_json::to_vec_pretty(&conf).unwrap(),
        )
        .unwrap();
        self.network = Some(TestNetwork {
            bridge,
            subnet_prefix,
        });
    }

    pub fn ipam_dir(&self) -> PathBuf {
        self.dir.path().join("ipam")
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.binaries.daemon);
        cmd.arg("serve")
            .arg("--socket")
            .arg(&self.socket)
            .arg("--root")
            .arg(&self.root)
            .arg("--state")
            .arg(&self.state)
            .arg("--cni-conf-dir")
            .arg(&self.cni_conf_dir)
            .arg("--cni-bin-dir")
            .arg(&self.cni_bin_dir)
            .arg("--monitor-path")
            .arg(&self.binaries.monitor)
            .arg("--log-level")
            .arg("peapod=debug")
            .args(&self.extra_args)
            .envs(self.env.iter().cloned())
            .env_remove("RUST_LOG");
        cmd
    }

    /// Starts the daemon and waits until it answers Version.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = self
            .command()
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start peapod");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("peapod exited at start ({status}):\n{}", self.log_text());
            }
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "peapod did not listen within 30s:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("daemon running").id() as i32
    }

    /// `kill -9` of the daemon.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("daemon running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("peapod did not exit within 30s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub async fn runtime(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(
            peapod_cri_client::connect(&self.socket)
                .await
                .expect("connect"),
        )
    }

    /// The runtime's Status.
    pub async fn runtime_status(&self, verbose: bool) -> api::StatusResponse {
        self.runtime()
            .await
            .status(api::StatusRequest { verbose })
            .await
            .expect("Status")
            .into_inner()
    }

    /// ImageStatus of `image`: the image, `None` when it is not there.
    pub async fn image_status(&self, image: &str) -> Option<api::Image> {
        self.images()
            .await
            .image_status(api::ImageStatusRequest {
                image: Some(api::ImageSpec {
                    image: image.to_string(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await
            .unwrap_or_else(|e| panic!("ImageStatus {image}: {e}"))
            .into_inner()
            .image
    }

    /// RemoveImage of `image`, which must succeed.
    pub async fn remove_image(&self, image: &str) {
        self.images()
            .await
            .remove_image(api::RemoveImageRequest {
                image: Some(api::ImageSpec {
                    image: image.to_string(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap_or_else(|e| panic!("RemoveImage {image}: {e}"));
    }

    /// PullImage of `image` with a user name and password in the request.
    pub async fn pull_as(
        &self,
        image: &str,
        username: &str,
        password: &str,
    ) -> Result<String, tonic::Status> {
        let auth = api::AuthConfig {
            username: username.into(),
            password: password.into(),
            ..Default::default()
        };
        self.pull_with(image, Some(auth)).await
    }

    /// PullImage of `image` with the request's own credentials; the image
    /// reference, or the call's error.
    pub async fn pull_with(
        &self,
        image: &str,
        auth: Option<api::AuthConfig>,
    ) -> Result<String, tonic::Status> {
        self.images()
            .await
            .pull_image(api::PullImageRequest {
                image: Some(api::ImageSpec {
                    image: image.to_string(),
                    ..Default::default()
                }),
                auth,
                sandbox_config: None,
            })
            .await
            .map(|r| r.into_inner().image_ref)
    }

    pub async fn images(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(
            peapod_cri_client::connect(&self.socket)
                .await
                .expect("connect"),
        )
    }

    /// A pod config in kubelet's shape, under this daemon's cgroup parent.
    pub fn pod_config(&self, name: &str) -> api::PodSandboxConfig {
        let uid = format!("{}-{}", name, rand_hex(8));
        api::PodSandboxConfig {
            metadata: Some(api::PodSandboxMetadata {
                name: name.to_string(),
                uid: uid.clone(),
                namespace: "default".to_string(),
                attempt: 0,
            }),
            hostname: name.to_string(),
            log_directory: self
                .dir
                .path()
                .join("logs")
                .join(&uid)
                .to_string_lossy()
                .into_owned(),
            dns_config: Some(api::DnsConfig {
                servers: vec!["10.96.0.10".into()],
                searches: vec![
                    "default.svc.cluster.local".into(),
                    "svc.cluster.local".into(),
                ],
                options: vec!["ndots:5".into()],
            }),
            labels: HashMap::from([
                ("io.kubernetes.pod.name".to_string(), name.to_string()),
                (
                    "io.kubernetes.pod.namespace".to_string(),
                    "default".to_string(),
                ),
                ("io.kubernetes.pod.uid".to_string(), uid.clone()),
            ]),
            annotations: HashMap::from([(
                "kubernetes.io/config.source".to_string(),
                "api".to_string(),
            )]),
            linux: Some(api::LinuxPodSandboxConfig {
                cgroup_parent: format!("{}/pod{}", self.cgroup_parent, uid),
                security_context: Some(api::LinuxSandboxSecurityContext {
                    namespace_options: Some(api::NamespaceOption {
                        pid: api::NamespaceMode::Container as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    pub async fn run_pod(&self, config: api::PodSandboxConfig) -> String {
        self.runtime()
            .await
            .run_pod_sandbox(api::RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            })
            .await
            .unwrap_or_else(|e| panic!("RunPodSandbox: {e:?}\n{}", self.log_text()))
            .into_inner()
            .pod_sandbox_id
    }

    pub async fn status(&self, id: &str) -> api::PodSandboxStatusResponse {
        self.runtime()
            .await
            .pod_sandbox_status(api::PodSandboxStatusRequest {
                pod_sandbox_id: id.to_string(),
                verbose: true,
            })
            .await
            .unwrap_or_else(|e| panic!("PodSandboxStatus: {e:?}"))
            .into_inner()
    }

    /// The infra pid as verbose status reports it.
    pub async fn infra_pid(&self, id: &str) -> i32 {
        let st = self.status(id).await;
        st.info
            .get("pid")
            .expect("verbose info has pid")
            .parse()
            .unwrap()
    }

    /// Every sandbox the daemon lists, as (id, state).
    pub async fn list_ids(&self) -> Vec<(String, i32)> {
        self.runtime()
            .await
            .list_pod_sandbox(api::ListPodSandboxRequest { filter: None })
            .await
            .unwrap()
            .into_inner()
            .items
            .into_iter()
            .map(|p| (p.id, p.state))
            .collect()
    }

    pub async fn remove_all(&self) {
        let mut rt = self.runtime().await;
        for (id, _) in self.list_ids().await {
            let _ = rt
                .remove_pod_sandbox(api::RemovePodSandboxRequest { pod_sandbox_id: id })
                .await;
        }
    }

    /// Every directory of a cgroup path in every mounted hierarchy.
    pub fn cgroup_dirs(path: &str) -> Vec<PathBuf> {
        cgroup_mounts()
            .into_iter()
            .map(|m| m.join(path.trim_start_matches('/')))
            .collect()
    }
}

/// Mount points of every cgroup hierarchy, from mountinfo.
pub fn cgroup_mounts() -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let fstype = post.split(' ').next()?;
            let mount = PathBuf::from(pre.split(' ').nth(4)?);
            (fstype == "cgroup" || fstype == "cgroup2").then_some(mount)
        })
        .collect()
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        // Best effort, so that a failed test leaks nothing on the host: a
        // creation still in flight (a test that failed half-way) is not
        // listed, so the daemon is killed and started again, which rolls
        // such creations back; then every listed pod is removed.
        self.kill9();
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.spawn()));
        if self.child.is_some() {
            let socket = self.socket.clone();
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let Ok(ch) = peapod_cri_client::connect(&socket).await else {
                        return;
                    };
                    let mut c = RuntimeServiceClient::new(ch);
                    if let Ok(list) = c
                        .list_pod_sandbox(api::ListPodSandboxRequest { filter: None })
                        .await
                    {
                        for p in list.into_inner().items {
                            let _ = c
                                .remove_pod_sandbox(api::RemovePodSandboxRequest {
                                    pod_sandbox_id: p.id,
                                })
                                .await;
                        }
                    }
                });
            })
            .join();
            self.kill9();
        }
        for d in Self::cgroup_dirs(&self.cgroup_parent) {
            remove_cgroup_tree(&d);
        }
        if let Some(n) = &self.network {
            let _ = Command::new("ip")
                .args(["link", "del", &n.bridge])
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// Runs a command, returns stdout; panics with stderr on failure.
pub fn sh(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The inode a namespace link points to (`net:[4026531840]`).
pub fn ns_link(pid: &str, ns: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/ns/{ns}: {e}"))
        .to_string_lossy()
        .into_owned()
}

pub fn process_exists(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let state = s
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next().map(str::to_string));
            !matches!(state.as_deref(), Some("Z") | Some("X"))
        }
        Err(_) => false,
    }
}

pub fn is_mounted(path: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let p = path.to_string_lossy();
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(p.as_ref()))
}

/// Waits until `f` holds, up to 10 s.
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl TestDaemon {
    /// IP addresses host-local still holds for this daemon's test network.
    pub fn allocated_ips(&self) -> Vec<String> {
        std::fs::read_dir(self.ipam_dir().join("peapod-test"))
            .map(|r| {
                r.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Asserts that no pod of this daemon left anything on the host: no
    /// child cgroup under `cgroup_parent`, netns file, pod directory, mount
    /// under the state dir or IP allocation.
    pub fn assert_nothing_left(&self, cgroup_parent: &str) {
        for cg in Self::cgroup_dirs(cgroup_parent) {
            let children: Vec<_> = std::fs::read_dir(&cg)
                .map(|r| r.flatten().filter(|e| e.path().is_dir()).collect())
                .unwrap_or_default();
            assert!(children.is_empty(), "cgroup left under {}", cg.display());
        }
        for dir in ["netns", "sandboxes"] {
            let left: Vec<_> = std::fs::read_dir(self.state.join(dir))
                .map(|r| r.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            assert!(left.is_empty(), "left in {dir}: {left:?}");
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let state = self.state.to_string_lossy().to_string();
        assert!(!mounts.contains(&state), "mounts left under {state}");
        let ips = self.allocated_ips();
        assert!(ips.is_empty(), "IP addresses left allocated: {ips:?}");
    }
}
