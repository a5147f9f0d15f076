//! peapod-bench: drives one or more CRI endpoints through the same pod sandbox
//! calls and prints per-call latency and memory side by side.
//!
//! Each target is measured in turn (never concurrently, so they do not
//! disturb each other). Every sandbox the bench creates carries a label with
//! this run's id; on exit, error or SIGINT/SIGTERM the bench stops and removes
//! all of them, then removes the cgroup parent tree it created.
//!
//! The pull workload times cold CRI PullImage calls (RemoveImage before
//! each) and, optionally, the same pull by `skopeo copy` + `umoci unpack`.
//!
//! The container workload runs one busybox container per pod through
//! CreateContainer, StartContainer, StopContainer and RemoveContainer, and
//! can time `runc create` + `runc start` of a similar bundle as the floor.
//! Containers carry the run label too, and so are found and removed on exit;
//! the floor's runc containers are deleted with `runc delete --force`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::future::Future;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

// Kubelet's default masked and read-only paths (what it sends in every
// CreateContainer, see shared/fixtures/kubelet-cri-calls.json) and the
// default capabilities are peapod's own lists.
use peapod::api::image_service_client::ImageServiceClient;
use peapod::api::runtime_service_client::RuntimeServiceClient;
use peapod::api::security_profile::ProfileType;
use peapod::api::{
    ContainerConfig, ContainerFilter, ContainerMetadata, ContainerState, ContainerStatusRequest,
    ContainerStatusResponse, CreateContainerRequest, DnsConfig, HugepageLimit, Image, ImageSpec,
    ImageStatusRequest, Int64Value, LinuxContainerConfig, LinuxContainerResources,
    LinuxContainerSecurityContext, LinuxPodSandboxConfig, LinuxSandboxSecurityContext,
    ListContainersRequest, ListPodSandboxRequest, Mount, NamespaceMode, NamespaceOption,
    PodSandboxConfig, PodSandboxFilter, PodSandboxMetadata, PodSandboxState, PodSandboxStateValue,
    PodSandboxStatusRequest, PodSandboxStatusResponse, PullImageRequest, RemoveContainerRequest,
    RemoveImageRequest, RemovePodSandboxRequest, RunPodSandboxRequest, SecurityProfile,
    StartContainerRequest, StopContainerRequest, StopPodSandboxRequest, VersionRequest,
};
use peapod::container::security::{
    DEFAULT_CAPABILITIES as DEFAULT_CAPS, DEFAULT_MASKED_PATHS as MASKED_PATHS,
    DEFAULT_READONLY_PATHS as READONLY_PATHS,
};
use tonic::transport::Channel;

/// Kubelet's deadline for RunPodSandbox; every other call gets 2 minutes.
const RUN_LIMIT: Duration = Duration::from_secs(240);
const CALL_LIMIT: Duration = Duration::from_secs(120);
/// Kubelet puts no deadline on PullImage; this only ends a stuck run.
const PULL_LIMIT: Duration = Duration::from_secs(600);
/// The pull peer that is not a CRI endpoint.
const SKOPEO_UMOCI: &str = "skopeo+umoci";
/// Label on every sandbox and container this bench creates; its value is
/// the run id.
const RUN_LABEL: &str = "peapod-bench/run";
/// The floor of the container workload, not a CRI endpoint.
const RUNC: &str = "runc";
/// The container workload's container: its name, its command (a shell that
/// exits at once on SIGTERM: a bare `sleep` as PID 1 ignores it) and the
/// StopContainer timeout.
const CONTAINER_NAME: &str = "bench";
const CONTAINER_SCRIPT: &str = "trap 'exit 0' TERM; sleep 3600 & wait";
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a started container may take to install its SIGTERM trap.
const TRAP_LIMIT: Duration = Duration::from_secs(10);
const USAGE: &str = "\
usage: peapod-bench [OPTIONS]

Targets (at least one; each is measured in turn):
  --endpoint unix:///PATH.sock   a CRI endpoint, named after the socket's file stem
  --target NAME=unix:///PATH.sock  a named CRI endpoint (repeatable)

Workloads:
  --no-cni            host-network pods (namespace_options.network = NODE)
  --cni               pod-network pods (needs a CNI config in the runtime's conf dir)
                      --no-cni and --cni pick the network modes of the sandbox and the
                      container workloads; with neither, --no-cni applies (unless only
                      --pull is asked for)
  --no-sandbox-workload
                      skip the sandbox lifecycle, ListPodSandbox and per-pod memory
                      workloads (the network modes still apply to --containers)
  --containers IMAGE  container workload in each network mode: IMAGE (a busybox) is
                      pulled by CRI PullImage unless present, then per run a pod,
                      CreateContainer + StartContainer of a shell that obeys SIGTERM
                      (sh -c \"trap 'exit 0' TERM; sleep 3600 & wait\"), StopContainer (timeout
                      10 s; also timed: the call to the init's exit, seen by a pidfd,
                      and that exit to the reply), RemoveContainer, StopPodSandbox and
                      RemovePodSandbox; then memory with --running-containers pods of
                      one running container each. An image the bench pulled is removed
                      at the end
  --running-containers N
                      pods with a running container for the memory figures (default 50)
  --runc-floor        with --containers: also time `runc create` + `runc start` of a
                      busybox bundle (rootfs from --busybox, config from `runc spec`
                      made like the CRI containers), --runs times plus a warm-up, each
                      followed by `runc delete --force`, as a target named runc
  --runc PATH         the runc of --runc-floor (default: runc from PATH)
  --busybox PATH      a static busybox for the floor's rootfs (default /bin/busybox)
  --pull IMAGE        cold image pulls (repeatable): per target and run, RemoveImage,
                      then a timed PullImage, then ImageStatus. IMAGE is removed from
                      every target before and after. Throughput is the compressed
                      size (the sum of the manifest's layer sizes, read with
                      `skopeo inspect --raw`, plain HTTP allowed) over the pull time.
  --pull-runs N       timed pulls per image and target (default 5)
  --pull-peer skopeo+umoci
                      also time `skopeo copy docker://IMAGE oci:DIR` + `umoci unpack`
                      into a fresh directory per run, as a target of that name
  --runs N            lifecycle runs per workload (default 50)
  --list-pods N       READY pods present while timing ListPodSandbox (default 100)
  --list-calls N      ListPodSandbox calls per variant (default max(50, runs))

Environment:
  --cgroup-parent PATH  pods go under PATH/pod<uid> (default /peapod-bench); PATH is
                        created in every cgroup hierarchy and removed afterwards
  --pid-of NAME=PID     the daemon pid of target NAME, for RSS/PSS (default: the
                        process listening on the target's socket)
  --log-root DIR        where pod log directories and the skopeo+umoci copies go
                        (default: the temp dir)
  --store-of NAME=DIR   the image store of target NAME: its disk use is read around
                        every pull, and a pull that adds less than half the image's
                        compressed size is reported as a likely cache hit

The p90 column is the slow end: the 90th percentile of ms and KiB, the 10th of
MB/s. Ratios are the target named peapod (else the first target) over containerd
(else the last target) and over skopeo+umoci and runc: below 1 is better for ms
and KiB, above 1 for MB/s.
";

#[derive(Debug, thiserror::Error)]
enum BenchError {
    #[error("{0}\n\n{USAGE}")]
    Usage(String),
    #[error("{target}: connecting to {endpoint}: {source}")]
    Connect {
        target: String,
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("{target}: {call}: {code:?}: {message}")]
    Rpc {
        target: String,
        call: &'static str,
        code: tonic::Code,
        message: String,
    },
    #[error("{target}: {call} did not answer within {} s", limit.as_secs())]
    Timeout {
        target: String,
        call: &'static str,
        limit: Duration,
    },
    #[error("{target}: {call}: {what}")]
    Unexpected {
        target: String,
        call: &'static str,
        what: String,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("running {cmd}: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{cmd} failed ({status}): {stderr}")]
    Command {
        cmd: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("{cmd} did not finish within {} s", limit.as_secs())]
    CommandTimeout { cmd: String, limit: Duration },
    #[error("manifest of {image}: {what}")]
    Manifest { image: String, what: String },
    #[error("reading random bytes: {0}")]
    Random(getrandom::Error),
    #[error("interrupted by a signal")]
    Interrupted,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BenchError + '_ {
    move |source| BenchError::Io {
        path: path.to_path_buf(),
        source,
    }
}

// ---------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Target {
    name: String,
    endpoint: String,
    socket: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NetMode {
    Host,
    Pod,
}

impl NetMode {
    fn label(self) -> &'static str {
        match self {
            NetMode::Host => "host-net",
            NetMode::Pod => "pod-net",
        }
    }
}

#[derive(Debug)]
struct Options {
    targets: Vec<Target>,
    runs: usize,
    modes: Vec<NetMode>,
    list_pods: usize,
    list_calls: usize,
    pulls: Vec<String>,
    pull_runs: usize,
    /// Non-CRI pull targets (only skopeo+umoci exists).
    pull_peers: Vec<String>,
    /// The sandbox lifecycle, list and per-pod memory workloads.
    sandbox_workload: bool,
    /// `--containers`: the image of the container workload.
    containers: Option<String>,
    running_containers: usize,
    runc_floor: bool,
    runc: PathBuf,
    busybox: PathBuf,
    cgroup_parent: String,
    pids: HashMap<String, i32>,
    stores: HashMap<String, PathBuf>,
    log_root: PathBuf,
}

fn parse_endpoint(name: String, endpoint: &str) -> Result<Target, BenchError> {
    let Some(rest) = endpoint.strip_prefix("unix://") else {
        return Err(BenchError::Usage(format!(
            "endpoint '{endpoint}' must be unix:///path"
        )));
    };
    if !rest.starts_with('/') {
        return Err(BenchError::Usage(format!(
            "endpoint '{endpoint}' must name an absolute socket path"
        )));
    }
    Ok(Target {
        name,
        endpoint: endpoint.to_string(),
        socket: peapod_cri_client::socket_path(endpoint),
    })
}

fn parse_number(flag: &str, value: &str) -> Result<usize, BenchError> {
    value
        .parse::<usize>()
        .map_err(|_| BenchError::Usage(format!("{flag} wants a number, got '{value}'")))
}

fn parse_args(args: Vec<String>) -> Result<Options, BenchError> {
    let mut targets: Vec<Target> = Vec::new();
    let mut runs = 50;
    let mut host = false;
    let mut pod = false;
    let mut list_pods = 100;
    let mut list_calls = None;
    let mut pulls = Vec::new();
    let mut pull_runs = 5;
    let mut pull_peers: Vec<String> = Vec::new();
    let mut sandbox_workload = true;
    let mut containers = None;
    let mut running_containers = 50;
    let mut runc_floor = false;
    let mut runc = PathBuf::from("runc");
    let mut busybox = PathBuf::from("/bin/busybox");
    let mut cgroup_parent = "/peapod-bench".to_string();
    let mut pids = HashMap::new();
    let mut stores = HashMap::new();
    let mut log_root = std::env::temp_dir();

    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        let mut value = |flag: &str| {
            it.next()
                .ok_or_else(|| BenchError::Usage(format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "-h" | "--help" => return Err(BenchError::Usage("help".into())),
            "--endpoint" => {
                let v = value(&flag)?;
                let stem = Path::new(v.trim_start_matches("unix://"))
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "target".into());
                targets.push(parse_endpoint(stem, &v)?);
            }
            "--target" => {
                let v = value(&flag)?;
                let Some((name, ep)) = v.split_once('=') else {
                    return Err(BenchError::Usage(format!(
                        "--target wants NAME=unix:///path, got '{v}'"
                    )));
                };
                targets.push(parse_endpoint(name.to_string(), ep)?);
            }
            "--runs" => runs = parse_number(&flag, &value(&flag)?)?,
            "--cni" => pod = true,
            "--no-cni" => host = true,
            "--list-pods" => list_pods = parse_number(&flag, &value(&flag)?)?,
            "--list-calls" => list_calls = Some(parse_number(&flag, &value(&flag)?)?),
            "--pull" => {
                let v = value(&flag)?;
                if v.is_empty() || v.contains(char::is_whitespace) {
                    return Err(BenchError::Usage(format!(
                        "--pull wants an image reference, got '{v}'"
                    )));
                }
                pulls.push(v);
            }
            "--pull-runs" => pull_runs = parse_number(&flag, &value(&flag)?)?,
            "--no-sandbox-workload" => sandbox_workload = false,
            "--containers" => {
                let v = value(&flag)?;
                if v.is_empty() || v.contains(char::is_whitespace) {
                    return Err(BenchError::Usage(format!(
                        "--containers wants an image reference, got '{v}'"
                    )));
                }
                containers = Some(v);
            }
            "--running-containers" => {
                running_containers = parse_number(&flag, &value(&flag)?)?;
            }
            "--runc-floor" => runc_floor = true,
            "--runc" => runc = PathBuf::from(value(&flag)?),
            "--busybox" => busybox = PathBuf::from(value(&flag)?),
            "--pull-peer" => {
                let v = value(&flag)?;
                if v != SKOPEO_UMOCI {
                    return Err(BenchError::Usage(format!(
                        "--pull-peer knows only {SKOPEO_UMOCI}, got '{v}'"
                    )));
                }
                if !pull_peers.contains(&v) {
                    pull_peers.push(v);
                }
            }
            "--store-of" => {
                let v = value(&flag)?;
                let Some((name, dir)) = v
                    .split_once('=')
                    .filter(|(n, d)| !n.is_empty() && d.starts_with('/'))
                else {
                    return Err(BenchError::Usage(format!(
                        "--store-of wants NAME=/absolute/dir, got '{v}'"
                    )));
                };
                stores.insert(name.to_string(), PathBuf::from(dir));
            }
            "--cgroup-parent" => cgroup_parent = value(&flag)?,
            "--log-root" => log_root = PathBuf::from(value(&flag)?),
            "--pid-of" => {
                let v = value(&flag)?;
                let parsed = v
                    .split_once('=')
                    .and_then(|(n, p)| p.parse::<i32>().ok().map(|p| (n.to_string(), p)));
                let Some((name, pid)) = parsed else {
                    return Err(BenchError::Usage(format!(
                        "--pid-of wants NAME=PID, got '{v}'"
                    )));
                };
                pids.insert(name, pid);
            }
            other => return Err(BenchError::Usage(format!("unknown option '{other}'"))),
        }
    }
    if targets.is_empty() && pull_peers.is_empty() {
        return Err(BenchError::Usage(
            "give at least one --endpoint or --target".into(),
        ));
    }
    if !pull_peers.is_empty() && pulls.is_empty() {
        return Err(BenchError::Usage("--pull-peer needs --pull IMAGE".into()));
    }
    // Socket stems can repeat (two "containerd.sock"): keep names unique.
    let mut seen: HashMap<String, usize> = HashMap::new();
    for t in &mut targets {
        let n = seen.entry(t.name.clone()).or_insert(0);
        *n += 1;
        if *n > 1 {
            t.name = format!("{}-{}", t.name, n);
        }
    }
    for (flag, names) in [
        ("--pid-of", pids.keys().collect::<Vec<_>>()),
        ("--store-of", stores.keys().collect()),
    ] {
        for name in names {
            if !targets.iter().any(|t| &t.name == name) {
                return Err(BenchError::Usage(format!(
                    "{flag} names '{name}', which is no target"
                )));
            }
        }
    }
    if let Some(t) = targets.iter().find(|t| t.name == SKOPEO_UMOCI) {
        return Err(BenchError::Usage(format!(
            "target name '{}' is taken by --pull-peer",
            t.name
        )));
    }
    if let Some(t) = targets.iter().find(|t| t.name == RUNC) {
        return Err(BenchError::Usage(format!(
            "target name '{}' is taken by --runc-floor",
            t.name
        )));
    }
    if runc_floor && containers.is_none() {
        return Err(BenchError::Usage(
            "--runc-floor needs --containers IMAGE".into(),
        ));
    }
    if containers.is_some() && targets.is_empty() {
        return Err(BenchError::Usage(
            "--containers needs an --endpoint or --target".into(),
        ));
    }
    let cgroup_parent = format!("/{}", cgroup_parent.trim_matches('/'));
    if cgroup_parent == "/" || cgroup_parent.split('/').any(|c| c == "..") {
        return Err(BenchError::Usage(format!(
            "--cgroup-parent '{cgroup_parent}' must be a sub-tree of the cgroup root"
        )));
    }
    if runs == 0 {
        return Err(BenchError::Usage("--runs must be at least 1".into()));
    }
    if pull_runs == 0 {
        return Err(BenchError::Usage("--pull-runs must be at least 1".into()));
    }
    let mut modes = Vec::new();
    if host || (!pod && (pulls.is_empty() || containers.is_some())) {
        modes.push(NetMode::Host);
    }
    if pod {
        modes.push(NetMode::Pod);
    }
    Ok(Options {
        targets,
        runs,
        modes,
        list_pods,
        list_calls: list_calls.unwrap_or(runs.max(50)),
        pulls,
        pull_runs,
        pull_peers,
        sandbox_workload,
        containers,
        running_containers,
        runc_floor,
        runc,
        busybox,
        cgroup_parent,
        pids,
        stores,
        log_root,
    })
}

// ---------------------------------------------------------------------------
// Cgroups: the bench's parent tree in every hierarchy
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct Hierarchy {
    mount: PathBuf,
    /// v1 cpuset: a new cgroup has no cpus/mems until someone copies them.
    cpuset_v1: bool,
}

#[derive(Debug)]
struct CgroupTree {
    parent: String,
    hierarchies: Vec<Hierarchy>,
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let digits = std::str::from_utf8(&b[i + 1..i + 4]).ok();
            if let Some(v) = digits.and_then(|d| u8::from_str_radix(d, 8).ok()) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl CgroupTree {
    fn discover(parent: &str) -> Result<Self, BenchError> {
        let path = Path::new("/proc/self/mountinfo");
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        let mut hierarchies = Vec::new();
        for line in text.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let mut r = right.split(' ');
            let fstype = r.next().unwrap_or("");
            let _source = r.next();
            let opts = r.next().unwrap_or("");
            if fstype != "cgroup" && fstype != "cgroup2" {
                continue;
            }
            let Some(mount) = left.split(' ').nth(4) else {
                continue;
            };
            hierarchies.push(Hierarchy {
                mount: PathBuf::from(unescape_mount(mount)),
                cpuset_v1: fstype == "cgroup" && opts.split(',').any(|o| o == "cpuset"),
            });
        }
        if hierarchies.is_empty() {
            return Err(BenchError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::other("no cgroup or cgroup2 mount found"),
            });
        }
        Ok(Self {
            parent: parent.to_string(),
            hierarchies,
        })
    }

    /// Creates `rel` (an absolute cgroup path) in every hierarchy.
    fn create(&self, rel: &str) -> Result<(), BenchError> {
        for h in &self.hierarchies {
            let mut cur = h.mount.clone();
            for comp in rel.split('/').filter(|c| !c.is_empty()) {
                let parent = cur.clone();
                cur.push(comp);
                match std::fs::create_dir(&cur) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io_err(&cur)(e)),
                }
                if h.cpuset_v1 {
                    for f in ["cpuset.cpus", "cpuset.mems"] {
                        let own = cur.join(f);
                        let cur_val = std::fs::read_to_string(&own).map_err(io_err(&own))?;
                        if cur_val.trim().is_empty() {
                            let from = parent.join(f);
                            let v = std::fs::read_to_string(&from).map_err(io_err(&from))?;
                            std::fs::write(&own, v.trim()).map_err(io_err(&own))?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Removes `rel` and everything below it in every hierarchy, leaves first.
    /// Returns the directories that could not be removed.
    fn remove(&self, rel: &str) -> Vec<String> {
        let mut left = Vec::new();
        for h in &self.hierarchies {
            let p = h.mount.join(rel.trim_start_matches('/'));
            rmdir_tree(&p, &mut left);
        }
        left
    }

    fn pod_path(&self, uid: &str) -> String {
        format!("{}/pod{}", self.parent, uid)
    }
}

fn rmdir_tree(dir: &Path, left: &mut Vec<String>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            left.push(format!("{}: {e}", dir.display()));
            return;
        }
    };
    for entry in entries.flatten() {
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            rmdir_tree(&entry.path(), left);
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => left.push(format!("{}: {e}", dir.display())),
    }
}

// ---------------------------------------------------------------------------
// /proc helpers
// ---------------------------------------------------------------------------

/// A "Key:   123 kB" field of a /proc file, in KiB.
fn proc_kib(path: &str, key: &str) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
}

fn rss_kib(pid: i32) -> Option<f64> {
    proc_kib(&format!("/proc/{pid}/status"), "VmRSS:")
}

fn pss_kib(pid: i32) -> Option<f64> {
    proc_kib(&format!("/proc/{pid}/smaps_rollup"), "Pss:")
}

fn ppid_of(pid: i32) -> Option<i32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The process's name: the file name of its argv[0] (comm is cut at 15
/// bytes, and a binary run from a memfd has none), else its comm.
fn process_name(pid: i32) -> Option<String> {
    let argv0 = std::fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .and_then(|c| {
            let first = c.split(|b| *b == 0).next()?.to_vec();
            let first = String::from_utf8_lossy(&first).into_owned();
            let name = first.rsplit('/').next()?.to_string();
            (!name.is_empty()).then_some(name)
        });
    argv0.or_else(|| {
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .ok()
            .map(|c| c.trim().to_string())
    })
}

/// A hex signal mask of /proc/PID/status (`SigCgt:` is the caught set).
fn signal_mask(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

fn has_child(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
        Ok(c) => !c.trim().is_empty(),
        // A kernel without CONFIG_PROC_CHILDREN: look for the child instead.
        Err(_) => all_pids().into_iter().any(|p| ppid_of(p) == Some(pid)),
    }
}

/// True when the bench container's shell `pid` catches SIGTERM and has
/// started its `sleep`: from then on a SIGTERM ends it at once.
fn trap_ready(pid: i32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let term = 1u64 << (libc::SIGTERM - 1);
    signal_mask(&status, "SigCgt:").is_some_and(|m| m & term != 0) && has_child(pid)
}

/// A pidfd for `pid` (not our child): it turns readable when the process
/// has exited.
fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(std::io::Error::other)?;
    // SAFETY: the kernel just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// When a process exits: a thread of its own blocks in poll(2) on the
/// process's pidfd and notes the instant it wakes, so the time does not
/// depend on what the bench's event loop is busy with.
struct ExitWatch {
    rx: tokio::sync::oneshot::Receiver<Option<Instant>>,
}

impl ExitWatch {
    /// Longest wait; a process that has not exited by then gives None.
    const LIMIT: Duration = Duration::from_secs(30);

    fn start(pid: i32) -> std::io::Result<ExitWatch> {
        let fd = pidfd_open(pid)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(format!("exit-{pid}"))
            .spawn(move || {
                let deadline = Instant::now() + Self::LIMIT;
                let exited = loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let mut p = libc::pollfd {
                        fd: fd.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
                    // SAFETY: one valid pollfd, owned by this thread.
                    let n = unsafe { libc::poll(&mut p, 1, ms) };
                    let now = Instant::now();
                    if n > 0 {
                        break Some(now);
                    }
                    let interrupted = n < 0
                        && std::io::Error::last_os_error().kind()
                            == std::io::ErrorKind::Interrupted;
                    if !interrupted || left.is_zero() {
                        break None;
                    }
                };
                let _ = tx.send(exited);
            })?;
        Ok(ExitWatch { rx })
    }

    /// The instant of the exit, or None when it did not come in time.
    async fn exited(self) -> Option<Instant> {
        tokio::time::timeout(Self::LIMIT + Duration::from_secs(1), self.rx)
            .await
            .ok()?
            .ok()?
    }
}

fn all_pids() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect();
    pids.sort_unstable();
    pids
}

/// The process listening on the unix socket `path` (the daemon), found
/// through the socket's inode in /proc/net/unix and the processes' fds.
fn socket_owner(path: &Path) -> Option<i32> {
    let text = std::fs::read_to_string("/proc/net/unix").ok()?;
    let want = path.to_str()?;
    let inode = text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // Flags 00010000 = listening.
        (f.len() >= 8 && f[7] == want && f[3] == "00010000").then(|| f[6].to_string())
    })?;
    let link = format!("socket:[{inode}]");
    all_pids().into_iter().find(|pid| {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|fds| {
                fds.flatten().any(|fd| {
                    std::fs::read_link(fd.path())
                        .map(|l| l.as_os_str() == link.as_str())
                        .unwrap_or(false)
                })
            })
            .unwrap_or(false)
    })
}

/// The outermost process inside the network namespace bound at `netns`.
fn pid_in_netns(netns: &Path) -> Option<i32> {
    let want = std::fs::metadata(netns).ok()?;
    let inside: Vec<i32> = all_pids()
        .into_iter()
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/net"))
                .map(|m| m.ino() == want.ino() && m.dev() == want.dev())
                .unwrap_or(false)
        })
        .collect();
    inside
        .iter()
        .copied()
        .find(|pid| ppid_of(*pid).is_none_or(|pp| !inside.contains(&pp)))
}

/// The infra process of a sandbox from its verbose status: a `pid` key
/// (peapod), the `info` JSON's `pid` (containerd), or else the process in
/// the sandbox's network namespace.
fn infra_pid(resp: &PodSandboxStatusResponse) -> Option<i32> {
    if let Some(pid) = resp.info.get("pid").and_then(|v| v.trim().parse().ok()) {
        return Some(pid);
    }
    let info: Option<serde_json::Value> = resp
        .info
        .get("info")
        .and_then(|v| serde_json::from_str(v).ok());
    if let Some(pid) = info
        .as_ref()
        .and_then(|j| j.get("pid"))
        .and_then(|p| p.as_i64())
        .filter(|p| *p > 0)
    {
        return i32::try_from(pid).ok();
    }
    let from_spec = info.as_ref().and_then(|j| {
        j.pointer("/runtimeSpec/linux/namespaces")?
            .as_array()?
            .iter()
            .find(|n| n.get("type").and_then(|t| t.as_str()) == Some("network"))?
            .get("path")?
            .as_str()
            .map(str::to_string)
    });
    let netns = from_spec.or_else(|| {
        ["netns", "netns_path", "netnsPath"]
            .iter()
            .find_map(|k| resp.info.get(*k).cloned())
    })?;
    if netns.is_empty() {
        return None;
    }
    pid_in_netns(Path::new(&netns))
}

// ---------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Metric {
    name: String,
    unit: &'static str,
    /// (target, samples) in the order the targets ran.
    values: Vec<(String, Vec<f64>)>,
}

#[derive(Debug, Default)]
struct Report {
    metrics: Vec<Metric>,
    /// Printed under the table (pull sizes, cache-hit warnings).
    notes: Vec<String>,
}

impl Report {
    fn add(&mut self, target: &str, name: &str, unit: &'static str, samples: Vec<f64>) {
        let idx = match self.metrics.iter().position(|m| m.name == name) {
            Some(i) => i,
            None => {
                self.metrics.push(Metric {
                    name: name.to_string(),
                    unit,
                    values: Vec::new(),
                });
                self.metrics.len() - 1
            }
        };
        self.metrics[idx].values.push((target.to_string(), samples));
    }

    fn add_durations(&mut self, target: &str, name: &str, d: &[Duration]) {
        let ms = d.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        self.add(target, name, "ms", ms);
    }
}

/// (median, p90) by nearest rank.
fn stats(samples: &[f64]) -> Option<(f64, f64)> {
    if samples.is_empty() {
        return None;
    }
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    let rank = (0.9 * n as f64).ceil() as usize;
    Some((median, s[rank.clamp(1, n) - 1]))
}

/// (median, tail): the tail is the p90 for costs (ms, KiB) and the p10 for
/// rates (MB/s), so that column is always the slow or expensive end.
fn summary(samples: &[f64], unit: &str) -> Option<(f64, f64)> {
    if unit == "MB/s" {
        let neg: Vec<f64> = samples.iter().map(|v| -v).collect();
        stats(&neg).map(|(m, t)| (-m, -t))
    } else {
        stats(samples)
    }
}

fn fmt_value(v: f64, unit: &str) -> String {
    match unit {
        "ms" => format!("{v:.3}"),
        "MB/s" => format!("{v:.1}"),
        _ => format!("{v:.0}"),
    }
}

/// The table: one row per metric and CRI target (also when it has no
/// samples), a row per pull peer that has samples, and the ratio rows.
fn render(report: &Report, targets: &[Target], peers: &[String]) -> String {
    let subject = targets
        .iter()
        .find(|t| t.name == "peapod")
        .or(targets.first())
        .map(|t| t.name.clone());
    let baseline = targets
        .iter()
        .find(|t| t.name == "containerd")
        .or(targets.last())
        .map(|t| t.name.clone());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<48} {:<20} {:>12} {:>12} {:>6}",
        "metric", "target", "median", "p90", "n"
    );
    for m in &report.metrics {
        let label = format!("{} ({})", m.name, m.unit);
        let samples_of = |name: &str| {
            m.values
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, s)| s.as_slice())
                .unwrap_or(&[])
        };
        let rows = targets.iter().map(|t| t.name.as_str()).chain(
            peers
                .iter()
                .map(String::as_str)
                .filter(|p| !samples_of(p).is_empty()),
        );
        for name in rows {
            let samples = samples_of(name);
            let (med, p90) = match summary(samples, m.unit) {
                Some((med, p90)) => (fmt_value(med, m.unit), fmt_value(p90, m.unit)),
                None => ("-".to_string(), "-".to_string()),
            };
            let _ = writeln!(
                out,
                "{:<48} {:<20} {:>12} {:>12} {:>6}",
                label,
                name,
                med,
                p90,
                samples.len()
            );
        }
        let Some(s) = subject.as_deref() else {
            continue;
        };
        // The main baseline always gets a row (as "-" when it has no
        // samples); a peer only where it measured this metric.
        let baselines = baseline
            .iter()
            .map(String::as_str)
            .chain(
                peers
                    .iter()
                    .map(String::as_str)
                    .filter(|p| !samples_of(p).is_empty()),
            )
            .filter(|b| *b != s);
        for b in baselines {
            let cell = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.3}", a / b),
                _ => "-".to_string(),
            };
            let (sv, bv) = (
                summary(samples_of(s), m.unit),
                summary(samples_of(b), m.unit),
            );
            let _ = writeln!(
                out,
                "{:<48} {:<20} {:>12} {:>12}",
                m.name,
                format!("{s}/{b}"),
                cell(sv.map(|x| x.0), bv.map(|x| x.0)),
                cell(sv.map(|x| x.1), bv.map(|x| x.1)),
            );
        }
    }
    for note in &report.notes {
        let _ = writeln!(out, "note: {note}");
    }
    out
}

// ---------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------

/// What cleanup needs to find everything this run created.
struct Shared {
    run_id: String,
    pods_dir: PathBuf,
    /// The skopeo+umoci peer's OCI layout and bundle.
    pull_dir: PathBuf,
    cgroups: CgroupTree,
    clients: Mutex<Vec<(String, RuntimeServiceClient<Channel>)>>,
    image_clients: Mutex<Vec<(String, ImageServiceClient<Channel>)>>,
    /// Sandbox ids per target that are not removed yet.
    live: Mutex<Vec<(String, String)>>,
    /// Container ids per target that are not removed yet.
    containers: Mutex<Vec<(String, String)>>,
    /// Images per target that the bench pulled and has not removed yet.
    pulled: Mutex<Vec<(String, String)>>,
    /// The runc floor: its directory (bundle, rootfs, `--root`), its runc
    /// and the ids of its containers not deleted yet.
    floor_dir: PathBuf,
    runc: PathBuf,
    floor: Mutex<Vec<String>>,
}

/// Adds or drops one (target, id) pair of a tracking list.
fn track_in(list: &Mutex<Vec<(String, String)>>, target: &str, id: &str) {
    list.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push((target.to_string(), id.to_string()));
}

fn untrack_in(list: &Mutex<Vec<(String, String)>>, target: &str, id: &str) {
    list.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .retain(|(t, i)| !(t == target && i == id));
}

/// The ids a tracking list holds for `target`.
fn tracked_in(list: &Mutex<Vec<(String, String)>>, target: &str) -> Vec<String> {
    list.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|(t, _)| t == target)
        .map(|(_, id)| id.clone())
        .collect()
}

impl Shared {
    fn track(&self, target: &str, id: &str) {
        track_in(&self.live, target, id);
    }

    fn untrack(&self, target: &str, id: &str) {
        untrack_in(&self.live, target, id);
    }
}

async fn call<T, F>(
    target: &str,
    name: &'static str,
    limit: Duration,
    fut: F,
) -> Result<(T, Duration), BenchError>
where
    F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let start = Instant::now();
    match tokio::time::timeout(limit, fut).await {
        Err(_) => Err(BenchError::Timeout {
            target: target.to_string(),
            call: name,
            limit,
        }),
        Ok(Err(status)) => Err(BenchError::Rpc {
            target: target.to_string(),
            call: name,
            code: status.code(),
            message: status.message().to_string(),
        }),
        Ok(Ok(resp)) => {
            let took = start.elapsed();
            Ok((resp.into_inner(), took))
        }
    }
}

fn random_hex(bytes: usize) -> Result<String, BenchError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(BenchError::Random)?;
    Ok(buf.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}

/// A kubelet-style pod UID (a v4 UUID).
fn pod_uid() -> Result<String, BenchError> {
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
fn now_rfc3339() -> String {
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

struct Pod {
    uid: String,
    log_dir: PathBuf,
    /// Kubelet's per-pod directory (`/var/lib/kubelet/pods/<uid>`): the
    /// files a container bind-mounts (/etc/hosts, its termination log).
    kubelet_dir: PathBuf,
    config: PodSandboxConfig,
    id: Option<String>,
}

struct TargetBench<'a> {
    shared: &'a Shared,
    name: String,
    rt: RuntimeServiceClient<Channel>,
    seq: usize,
    pod_net_without_ip: usize,
    /// Containers that StopContainer left in another state than EXITED 0.
    stop_anomalies: Vec<String>,
}

impl TargetBench<'_> {
    /// The shapes kubelet sends (see shared/fixtures/kubelet-cri-calls.json):
    /// a burstable pod with its own cgroup parent, DNS and log directory.
    fn pod_config(&mut self, mode: NetMode) -> Result<(Pod, PodSandboxConfig), BenchError> {
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
    fn prepare(&self, pod: &Pod) -> Result<(), BenchError> {
        self.shared
            .cgroups
            .create(&self.shared.cgroups.pod_path(&pod.uid))?;
        std::fs::create_dir_all(&pod.log_dir).map_err(io_err(&pod.log_dir))
    }

    /// Kubelet's part after RemovePodSandbox. A cgroup the runtime left
    /// behind stays for the final sweep, which reports it.
    fn release(&self, pod: &Pod) {
        let _ = self
            .shared
            .cgroups
            .remove(&self.shared.cgroups.pod_path(&pod.uid));
        let _ = std::fs::remove_dir_all(&pod.log_dir);
        let _ = std::fs::remove_dir_all(&pod.kubelet_dir);
    }

    async fn run(&mut self, mode: NetMode) -> Result<(Pod, Duration), BenchError> {
        let (mut pod, config) = self.pod_config(mode)?;
        self.prepare(&pod)?;
        let req = RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        };
        let res = call(
            &self.name,
            "RunPodSandbox",
            RUN_LIMIT,
            self.rt.run_pod_sandbox(req),
        )
        .await;
        let (resp, took) = match res {
            Ok(r) => r,
            Err(e) => {
                self.release(&pod);
                return Err(e);
            }
        };
        if resp.pod_sandbox_id.is_empty() {
            return Err(BenchError::Unexpected {
                target: self.name.clone(),
                call: "RunPodSandbox",
                what: "empty pod_sandbox_id".into(),
            });
        }
        self.shared.track(&self.name, &resp.pod_sandbox_id);
        pod.id = Some(resp.pod_sandbox_id);
        Ok((pod, took))
    }

    async fn status(
        &mut self,
        id: &str,
        verbose: bool,
    ) -> Result<(PodSandboxStatusResponse, Duration), BenchError> {
        let req = PodSandboxStatusRequest {
            pod_sandbox_id: id.to_string(),
            verbose,
        };
        call(
            &self.name,
            "PodSandboxStatus",
            CALL_LIMIT,
            self.rt.pod_sandbox_status(req),
        )
        .await
    }

    async fn stop(&mut self, id: &str) -> Result<Duration, BenchError> {
        let req = StopPodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        };
        let (_, took) = call(
            &self.name,
            "StopPodSandbox",
            CALL_LIMIT,
            self.rt.stop_pod_sandbox(req),
        )
        .await?;
        Ok(took)
    }

    async fn remove(&mut self, pod: &Pod, id: &str) -> Result<Duration, BenchError> {
        let req = RemovePodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        };
        let (_, took) = call(
            &self.name,
            "RemovePodSandbox",
            CALL_LIMIT,
            self.rt.remove_pod_sandbox(req),
        )
        .await?;
        self.shared.untrack(&self.name, id);
        self.release(pod);
        Ok(took)
    }

    fn check_ready(
        &mut self,
        mode: NetMode,
        resp: &PodSandboxStatusResponse,
    ) -> Result<(), BenchError> {
        let Some(st) = resp.status.as_ref() else {
            return Err(BenchError::Unexpected {
                target: self.name.clone(),
                call: "PodSandboxStatus",
                what: "reply has no status".into(),
            });
        };
        if st.state != PodSandboxState::SandboxReady as i32 {
            return Err(BenchError::Unexpected {
                target: self.name.clone(),
                call: "PodSandboxStatus",
                what: format!("sandbox {} is not READY (state {})", st.id, st.state),
            });
        }
        if mode == NetMode::Pod && st.network.as_ref().is_none_or(|n| n.ip.is_empty()) {
            self.pod_net_without_ip += 1;
        }
        Ok(())
    }

    /// One timed Run → Status → Stop → Remove cycle.
    async fn cycle(&mut self, mode: NetMode) -> Result<[Duration; 4], BenchError> {
        let (pod, run) = self.run(mode).await?;
        let id = pod.id.clone().unwrap_or_default();
        let (resp, status) = self.status(&id, false).await?;
        self.check_ready(mode, &resp)?;
        let stop = self.stop(&id).await?;
        let remove = self.remove(&pod, &id).await?;
        Ok([run, status, stop, remove])
    }

    async fn list(&mut self, ready_only: bool) -> Result<(usize, Duration), BenchError> {
        let filter = PodSandboxFilter {
            id: String::new(),
            state: ready_only.then_some(PodSandboxStateValue {
                state: PodSandboxState::SandboxReady as i32,
            }),
            label_selector: HashMap::new(),
        };
        let req = ListPodSandboxRequest {
            filter: Some(filter),
        };
        let (resp, took) = call(
            &self.name,
            "ListPodSandbox",
            CALL_LIMIT,
            self.rt.list_pod_sandbox(req),
        )
        .await?;
        Ok((resp.items.len(), took))
    }
}

/// The daemon's RSS and PSS with `pods` sandboxes running.
fn record_daemon_memory(report: &mut Report, target: &str, pods: usize, pid: Option<i32>) {
    let (rss, pss) = match pid {
        Some(p) => (rss_kib(p), pss_kib(p)),
        None => (None, None),
    };
    let rss: Vec<f64> = rss.into_iter().collect();
    let pss: Vec<f64> = pss.into_iter().collect();
    report.add(target, &format!("daemon RSS, {pods} pods"), "KiB", rss);
    report.add(target, &format!("daemon PSS, {pods} pods"), "KiB", pss);
}

async fn bench_target(
    shared: &Shared,
    opts: &Options,
    target: &Target,
    pulls: &[PullJob],
    report: &mut Report,
) -> Result<(), BenchError> {
    let channel = peapod_cri_client::connect(&target.socket)
        .await
        .map_err(|source| BenchError::Connect {
            target: target.name.clone(),
            endpoint: target.endpoint.clone(),
            source,
        })?;
    let images = ImageServiceClient::new(channel.clone());
    let mut rt = RuntimeServiceClient::new(channel);
    shared
        .clients
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push((target.name.clone(), rt.clone()));
    shared
        .image_clients
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push((target.name.clone(), images.clone()));
    let (v, _) = call(
        &target.name,
        "Version",
        CALL_LIMIT,
        rt.version(VersionRequest {
            version: "0.1.0".into(),
        }),
    )
    .await?;
    let daemon = opts
        .pids
        .get(&target.name)
        .copied()
        .or_else(|| socket_owner(&target.socket));
    println!(
        "target {}: {} -> {} {} (CRI {}), daemon pid {}",
        target.name,
        target.endpoint,
        v.runtime_name,
        v.runtime_version,
        v.runtime_api_version,
        daemon.map_or("unknown".to_string(), |p| p.to_string())
    );

    let mut b = TargetBench {
        shared,
        name: target.name.clone(),
        rt,
        seq: 0,
        pod_net_without_ip: 0,
        stop_anomalies: Vec::new(),
    };
    let mut ib = ImageBench {
        name: target.name.clone(),
        client: images,
        store: opts.stores.get(&target.name).cloned(),
    };
    if !opts.modes.is_empty() && opts.sandbox_workload {
        bench_pods(&mut b, opts, report, daemon).await?;
    }
    if let Some(image) = &opts.containers {
        bench_containers(&mut b, &mut ib, opts, image, report, daemon).await?;
    }
    for p in pulls {
        ib.bench_pull(p, opts.pull_runs, report).await?;
    }
    Ok(())
}

/// The pod sandbox workloads: lifecycle cycles per network mode, then
/// ListPodSandbox and per-pod memory with `--list-pods` pods running.
async fn bench_pods(
    b: &mut TargetBench<'_>,
    opts: &Options,
    report: &mut Report,
    daemon: Option<i32>,
) -> Result<(), BenchError> {
    for &mode in &opts.modes {
        eprintln!(
            "[{}] {}: warm-up, then {} Run/Status/Stop/Remove cycles",
            b.name,
            mode.label(),
            opts.runs
        );
        // The first sandbox pays for one-time work (containerd pulls its
        // pause image): not measured.
        b.cycle(mode).await?;
        let mut samples: [Vec<Duration>; 4] = Default::default();
        for _ in 0..opts.runs {
            let d = b.cycle(mode).await?;
            for (s, d) in samples.iter_mut().zip(d) {
                s.push(d);
            }
        }
        for (call_name, s) in [
            "RunPodSandbox",
            "PodSandboxStatus",
            "StopPodSandbox",
            "RemovePodSandbox",
        ]
        .iter()
        .zip(&samples)
        {
            report.add_durations(&b.name, &format!("{} {call_name}", mode.label()), s);
        }
    }

    record_daemon_memory(report, &b.name, 0, daemon);

    // The list and per-pod memory workloads run on the cheapest pod kind.
    let Some(&mode) = opts.modes.first() else {
        return Ok(());
    };
    eprintln!(
        "[{}] starting {} {} pods",
        b.name,
        opts.list_pods,
        mode.label()
    );
    let mut pods = Vec::with_capacity(opts.list_pods);
    let filled = async {
        for _ in 0..opts.list_pods {
            let (pod, _) = b.run(mode).await?;
            pods.push(pod);
        }
        Ok::<(), BenchError>(())
    }
    .await;
    let measured = match filled {
        Ok(()) => measure_full(b, opts, report, daemon, mode, &pods).await,
        Err(e) => Err(e),
    };
    eprintln!("[{}] removing {} pods", b.name, pods.len());
    let mut teardown = Ok(());
    for pod in &pods {
        let id = pod.id.clone().unwrap_or_default();
        let r = async {
            b.stop(&id).await?;
            b.remove(pod, &id).await
        }
        .await;
        if let Err(e) = r {
            teardown = Err(e);
        }
    }
    if b.pod_net_without_ip > 0 {
        eprintln!(
            "[{}] warning: {} pod-network sandboxes reported no IP in PodSandboxStatus",
            b.name, b.pod_net_without_ip
        );
    }
    measured?;
    teardown
}

async fn measure_full(
    b: &mut TargetBench<'_>,
    opts: &Options,
    report: &mut Report,
    daemon: Option<i32>,
    mode: NetMode,
    pods: &[Pod],
) -> Result<(), BenchError> {
    let n = pods.len();
    eprintln!(
        "[{}] timing ListPodSandbox with {n} READY pods, {} calls each",
        b.name, opts.list_calls
    );
    for ready_only in [false, true] {
        // Warm-up calls are not measured.
        for _ in 0..3 {
            b.list(ready_only).await?;
        }
        let mut d = Vec::with_capacity(opts.list_calls);
        for _ in 0..opts.list_calls {
            let (count, took) = b.list(ready_only).await?;
            if count < n {
                return Err(BenchError::Unexpected {
                    target: b.name.clone(),
                    call: "ListPodSandbox",
                    what: format!("listed {count} sandboxes, {n} are running"),
                });
            }
            d.push(took);
        }
        let variant = if ready_only {
            "state=READY"
        } else {
            "no filter"
        };
        report.add_durations(&b.name, &format!("ListPodSandbox {variant}, {n} pods"), &d);
    }

    record_daemon_memory(report, &b.name, n, daemon);

    let (mut infra_rss, mut infra_pss) = (Vec::new(), Vec::new());
    let (mut shim_rss, mut shim_pss) = (Vec::new(), Vec::new());
    let (mut total_rss, mut total_pss) = (Vec::new(), Vec::new());
    let mut missing = 0;
    for pod in pods {
        let id = pod.id.clone().unwrap_or_default();
        let (resp, _) = b.status(&id, true).await?;
        b.check_ready(mode, &resp)?;
        let Some(pid) = infra_pid(&resp) else {
            missing += 1;
            continue;
        };
        let (Some(r), Some(p)) = (rss_kib(pid), pss_kib(pid)) else {
            missing += 1;
            continue;
        };
        infra_rss.push(r);
        infra_pss.push(p);
        let (mut tr, mut tp) = (r, p);
        // A parent that is neither init nor the daemon is a per-pod shim.
        if let Some(pp) = ppid_of(pid).filter(|pp| *pp > 1 && Some(*pp) != daemon) {
            if let (Some(r), Some(p)) = (rss_kib(pp), pss_kib(pp)) {
                shim_rss.push(r);
                shim_pss.push(p);
                tr += r;
                tp += p;
            }
        }
        total_rss.push(tr);
        total_pss.push(tp);
    }
    if missing > 0 {
        eprintln!(
            "[{}] warning: no infra process found for {missing} of {n} sandboxes",
            b.name
        );
    }
    let t = b.name.clone();
    report.add(&t, "infra process RSS", "KiB", infra_rss);
    report.add(&t, "infra process PSS", "KiB", infra_pss);
    report.add(&t, "shim (infra's parent) RSS", "KiB", shim_rss);
    report.add(&t, "shim (infra's parent) PSS", "KiB", shim_pss);
    report.add(&t, "per-pod processes RSS", "KiB", total_rss);
    report.add(&t, "per-pod processes PSS", "KiB", total_pss);
    Ok(())
}

// ---------------------------------------------------------------------------
// Containers
// ---------------------------------------------------------------------------

/// The container workload's image as kubelet names it in CreateContainer.
#[derive(Debug, Clone)]
struct BenchImage {
    /// The name in the pod spec (`user_specified_image`).
    name: String,
    /// The image id ImageStatus answers (`image.image`).
    id: String,
}

/// One timed container cycle.
struct ContainerTimes {
    create: Duration,
    start: Duration,
    stop: Duration,
    /// From the StopContainer call to the init's exit (None: not seen).
    to_exit: Option<Duration>,
    /// From the init's exit to StopContainer's reply, in ms; negative when
    /// the reply came before the exit.
    exit_to_reply_ms: Option<f64>,
    remove: Duration,
    stop_pod: Duration,
    remove_pod: Duration,
}

#[derive(Default)]
struct ContainerSamples {
    create: Vec<Duration>,
    start: Vec<Duration>,
    create_start: Vec<Duration>,
    stop: Vec<Duration>,
    to_exit: Vec<Duration>,
    exit_to_reply_ms: Vec<f64>,
    remove: Vec<Duration>,
    stop_pod: Vec<Duration>,
    remove_pod: Vec<Duration>,
}

/// A container workload metric of network mode `mode`.
fn container_metric(mode: NetMode, what: &str) -> String {
    format!("{} container {what}", mode.label())
}

impl ContainerSamples {
    fn push(&mut self, t: ContainerTimes) {
        self.create.push(t.create);
        self.start.push(t.start);
        self.create_start.push(t.create + t.start);
        self.stop.push(t.stop);
        self.to_exit.extend(t.to_exit);
        self.exit_to_reply_ms.extend(t.exit_to_reply_ms);
        self.remove.push(t.remove);
        self.stop_pod.push(t.stop_pod);
        self.remove_pod.push(t.remove_pod);
    }

    fn report(&self, report: &mut Report, target: &str, mode: NetMode) {
        let m = |what| container_metric(mode, what);
        report.add_durations(target, &m("CreateContainer"), &self.create);
        report.add_durations(target, &m("StartContainer"), &self.start);
        report.add_durations(target, &m("Create+Start"), &self.create_start);
        report.add_durations(target, &m("StopContainer (SIGTERM)"), &self.stop);
        report.add_durations(target, &m("stop: call to init exit"), &self.to_exit);
        report.add(
            target,
            &m("stop: init exit to reply"),
            "ms",
            self.exit_to_reply_ms.clone(),
        );
        report.add_durations(target, &m("RemoveContainer"), &self.remove);
        report.add_durations(target, &m("StopPodSandbox"), &self.stop_pod);
        report.add_durations(target, &m("RemovePodSandbox"), &self.remove_pod);
    }
}

/// The container's init pid and its monitor's pid from a verbose
/// ContainerStatus: the `info` JSON's `pid` (peapod and containerd) and
/// `monitorPid` (peapod).
fn container_pids(resp: &ContainerStatusResponse) -> (Option<i32>, Option<i32>) {
    let info: Option<serde_json::Value> = resp
        .info
        .get("info")
        .and_then(|v| serde_json::from_str(v).ok());
    let pid = |key: &str| {
        info.as_ref()
            .and_then(|j| j.get(key))
            .and_then(|p| p.as_i64())
            .filter(|p| *p > 0)
            .and_then(|p| i32::try_from(p).ok())
    };
    (pid("pid"), pid("monitorPid"))
}

fn ms_signed(later: Instant, earlier: Instant) -> f64 {
    if later >= earlier {
        (later - earlier).as_secs_f64() * 1000.0
    } else {
        -((earlier - later).as_secs_f64() * 1000.0)
    }
}

impl TargetBench<'_> {
    /// Kubelet's part before CreateContainer: the container's log
    /// directory, the pod's hosts file and the container's termination log.
    /// Returns the hosts file and the termination log.
    fn prepare_container(&self, pod: &Pod) -> Result<(PathBuf, PathBuf), BenchError> {
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
    fn container_config(
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

    fn pod_id(&self, pod: &Pod) -> Result<String, BenchError> {
        pod.id.clone().ok_or_else(|| BenchError::Unexpected {
            target: self.name.clone(),
            call: "CreateContainer",
            what: "the pod has no sandbox id".into(),
        })
    }

    async fn create_container(
        &mut self,
        pod: &Pod,
        mode: NetMode,
        img: &BenchImage,
    ) -> Result<(String, Duration), BenchError> {
        let pod_id = self.pod_id(pod)?;
        let (hosts, term) = self.prepare_container(pod)?;
        let req = CreateContainerRequest {
            pod_sandbox_id: pod_id,
            config: Some(self.container_config(pod, mode, img, &hosts, &term)),
            sandbox_config: Some(pod.config.clone()),
        };
        let (resp, took) = call(
            &self.name,
            "CreateContainer",
            CALL_LIMIT,
            self.rt.create_container(req),
        )
        .await?;
        if resp.container_id.is_empty() {
            return Err(BenchError::Unexpected {
                target: self.name.clone(),
                call: "CreateContainer",
                what: "empty container_id".into(),
            });
        }
        track_in(&self.shared.containers, &self.name, &resp.container_id);
        Ok((resp.container_id, took))
    }

    async fn start_container(&mut self, id: &str) -> Result<Duration, BenchError> {
        let req = StartContainerRequest {
            container_id: id.to_string(),
        };
        let (_, took) = call(
            &self.name,
            "StartContainer",
            CALL_LIMIT,
            self.rt.start_container(req),
        )
        .await?;
        Ok(took)
    }

    async fn container_status(
        &mut self,
        id: &str,
        verbose: bool,
    ) -> Result<ContainerStatusResponse, BenchError> {
        let req = ContainerStatusRequest {
            container_id: id.to_string(),
            verbose,
        };
        let (resp, _) = call(
            &self.name,
            "ContainerStatus",
            CALL_LIMIT,
            self.rt.container_status(req),
        )
        .await?;
        Ok(resp)
    }

    /// StopContainer with kubelet's deadline (2 minutes plus the timeout).
    async fn stop_container(
        &mut self,
        id: &str,
        timeout: Duration,
    ) -> Result<Duration, BenchError> {
        let req = StopContainerRequest {
            container_id: id.to_string(),
            timeout: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
        };
        let (_, took) = call(
            &self.name,
            "StopContainer",
            CALL_LIMIT + timeout,
            self.rt.stop_container(req),
        )
        .await?;
        Ok(took)
    }

    async fn remove_container(&mut self, id: &str) -> Result<Duration, BenchError> {
        let req = RemoveContainerRequest {
            container_id: id.to_string(),
        };
        let (_, took) = call(
            &self.name,
            "RemoveContainer",
            CALL_LIMIT,
            self.rt.remove_container(req),
        )
        .await?;
        untrack_in(&self.shared.containers, &self.name, id);
        Ok(took)
    }

    /// The init pid of a container that ContainerStatus reports RUNNING.
    fn running_init(&self, resp: &ContainerStatusResponse, id: &str) -> Result<i32, BenchError> {
        let unexpected = |what: String| BenchError::Unexpected {
            target: self.name.clone(),
            call: "ContainerStatus",
            what,
        };
        let st = resp
            .status
            .as_ref()
            .ok_or_else(|| unexpected("reply has no status".into()))?;
        if st.state != ContainerState::ContainerRunning as i32 {
            return Err(unexpected(format!(
                "container {id} is not RUNNING after StartContainer (state {}, exit code {}, reason {:?}, message {:?})",
                st.state, st.exit_code, st.reason, st.message
            )));
        }
        container_pids(resp).0.ok_or_else(|| {
            unexpected(format!(
                "the verbose status of {id} names no init pid (info keys: {:?})",
                resp.info.keys().collect::<Vec<_>>()
            ))
        })
    }

    /// Waits (untimed) until the container's shell has installed its
    /// SIGTERM trap, so that StopContainer measures a prompt exit.
    async fn wait_trap(&self, pid: i32, id: &str) -> Result<(), BenchError> {
        let start = Instant::now();
        while !trap_ready(pid) {
            if start.elapsed() > TRAP_LIMIT {
                return Err(BenchError::Unexpected {
                    target: self.name.clone(),
                    call: "StartContainer",
                    what: format!(
                        "the shell of container {id} (pid {pid}) did not set its SIGTERM trap within {} s",
                        TRAP_LIMIT.as_secs()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    }

    /// After StopContainer: the container must be EXITED with code 0 (its
    /// trap's `exit 0`); anything else is noted for the report.
    fn check_stopped(&mut self, resp: &ContainerStatusResponse, id: &str) {
        let Some(st) = resp.status.as_ref() else {
            self.stop_anomalies
                .push(format!("{id}: no status after StopContainer"));
            return;
        };
        if st.state != ContainerState::ContainerExited as i32 || st.exit_code != 0 {
            self.stop_anomalies.push(format!(
                "{id}: after StopContainer state {} exit code {} reason {:?}",
                st.state, st.exit_code, st.reason
            ));
        }
    }

    /// One timed cycle: RunPodSandbox (not reported here), CreateContainer,
    /// StartContainer, StopContainer (timeout 10 s, the init's exit seen by
    /// a pidfd), RemoveContainer, StopPodSandbox, RemovePodSandbox.
    async fn container_cycle(
        &mut self,
        mode: NetMode,
        img: &BenchImage,
    ) -> Result<ContainerTimes, BenchError> {
        let (pod, _) = self.run(mode).await?;
        let pod_id = self.pod_id(&pod)?;
        let (cid, create) = self.create_container(&pod, mode, img).await?;
        let start = self.start_container(&cid).await?;
        let resp = self.container_status(&cid, true).await?;
        let init = self.running_init(&resp, &cid)?;
        self.wait_trap(init, &cid).await?;
        let watch = ExitWatch::start(init).map_err(|e| BenchError::Unexpected {
            target: self.name.clone(),
            call: "StopContainer",
            what: format!("pidfd_open of the init {init} of {cid}: {e}"),
        })?;
        let called = Instant::now();
        let stop = self.stop_container(&cid, STOP_TIMEOUT).await?;
        let replied = called + stop;
        let exited = watch.exited().await;
        let after = self.container_status(&cid, false).await?;
        self.check_stopped(&after, &cid);
        let remove = self.remove_container(&cid).await?;
        let stop_pod = self.stop(&pod_id).await?;
        let remove_pod = self.remove(&pod, &pod_id).await?;
        Ok(ContainerTimes {
            create,
            start,
            stop,
            to_exit: exited.map(|e| e.saturating_duration_since(called)),
            exit_to_reply_ms: exited.map(|e| ms_signed(replied, e)),
            remove,
            stop_pod,
            remove_pod,
        })
    }
}

/// The container workload of one target: the image, the timed cycles per
/// network mode, then memory with `--running-containers` containers.
async fn bench_containers(
    b: &mut TargetBench<'_>,
    ib: &mut ImageBench,
    opts: &Options,
    image: &str,
    report: &mut Report,
    daemon: Option<i32>,
) -> Result<(), BenchError> {
    let img = ib.ensure_image(b.shared, image).await?;
    eprintln!("[{}] container image {} is {}", b.name, img.name, img.id);
    let measured = async {
        for &mode in &opts.modes {
            eprintln!(
                "[{}] {} containers: warm-up, then {} Create/Start/Stop/Remove cycles",
                b.name,
                mode.label(),
                opts.runs
            );
            b.container_cycle(mode, &img).await?;
            let mut samples = ContainerSamples::default();
            for _ in 0..opts.runs {
                samples.push(b.container_cycle(mode, &img).await?);
            }
            samples.report(report, &b.name, mode);
        }
        if let Some(&mode) = opts.modes.first() {
            if opts.running_containers > 0 {
                bench_running_containers(b, opts, report, daemon, mode, &img).await?;
            }
        }
        Ok::<(), BenchError>(())
    }
    .await;
    if !b.stop_anomalies.is_empty() {
        let n = b.stop_anomalies.len();
        eprintln!(
            "[{}] warning: {n} containers did not end with exit code 0 after StopContainer",
            b.name
        );
        report.notes.push(format!(
            "{}: {n} containers did not end EXITED with exit code 0 after StopContainer, e.g. {}",
            b.name,
            b.stop_anomalies
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    // An image this bench pulled goes again (cleanup does it after a signal).
    let removed = ib.remove_pulled(b.shared, image).await;
    measured?;
    removed
}

/// Daemon memory and the per-container and per-pod processes, with
/// `--running-containers` pods of one running container each.
async fn bench_running_containers(
    b: &mut TargetBench<'_>,
    opts: &Options,
    report: &mut Report,
    daemon: Option<i32>,
    mode: NetMode,
    img: &BenchImage,
) -> Result<(), BenchError> {
    let n = opts.running_containers;
    eprintln!(
        "[{}] starting {n} {} pods with one running container each",
        b.name,
        mode.label()
    );
    let mut live: Vec<(Pod, Option<String>)> = Vec::with_capacity(n);
    let filled = async {
        for _ in 0..n {
            let (pod, _) = b.run(mode).await?;
            live.push((pod, None));
            let last = live.len() - 1;
            let (cid, _) = b.create_container(&live[last].0, mode, img).await?;
            live[last].1 = Some(cid.clone());
            b.start_container(&cid).await?;
        }
        Ok::<(), BenchError>(())
    }
    .await;
    let measured = match filled {
        Ok(()) => measure_running(b, report, daemon, &live).await,
        Err(e) => Err(e),
    };
    eprintln!(
        "[{}] removing {} pods and their containers",
        b.name,
        live.len()
    );
    let mut teardown = Ok(());
    for (pod, cid) in &live {
        let r = async {
            if let Some(c) = cid {
                b.stop_container(c, Duration::ZERO).await?;
                b.remove_container(c).await?;
            }
            let id = b.pod_id(pod)?;
            b.stop(&id).await?;
            b.remove(pod, &id).await
        }
        .await;
        if let Err(e) = r {
            teardown = Err(e);
        }
    }
    measured?;
    teardown.map(|_| ())
}

async fn measure_running(
    b: &mut TargetBench<'_>,
    report: &mut Report,
    daemon: Option<i32>,
    live: &[(Pod, Option<String>)],
) -> Result<(), BenchError> {
    let n = live.len();
    let (rss, pss) = match daemon {
        Some(p) => (rss_kib(p), pss_kib(p)),
        None => (None, None),
    };
    let t = b.name.clone();
    report.add(
        &t,
        &format!("daemon RSS, {n} running containers"),
        "KiB",
        rss.into_iter().collect(),
    );
    report.add(
        &t,
        &format!("daemon PSS, {n} running containers"),
        "KiB",
        pss.into_iter().collect(),
    );
    // A parent that is neither init nor the daemon is a per-pod or
    // per-container process of the runtime.
    let runtime_process = |pid: i32| ppid_of(pid).filter(|pp| *pp > 1 && Some(*pp) != daemon);
    let (mut ctr_rss, mut ctr_pss) = (Vec::new(), Vec::new());
    let (mut pod_rss, mut pod_pss) = (Vec::new(), Vec::new());
    let mut parents: Vec<String> = Vec::new();
    let mut per_pod: Option<String> = None;
    let (mut missing, mut not_monitor) = (0, 0);
    for (pod, cid) in live {
        let Some(cid) = cid else { continue };
        let resp = b.container_status(cid, true).await?;
        let init = b.running_init(&resp, cid)?;
        let monitor = container_pids(&resp).1;
        let Some(parent) = runtime_process(init) else {
            missing += 1;
            continue;
        };
        if monitor.is_some_and(|m| m != parent) {
            not_monitor += 1;
        }
        let name = process_name(parent).unwrap_or_else(|| "?".into());
        if !parents.contains(&name) {
            parents.push(name);
        }
        let (Some(r), Some(p)) = (rss_kib(parent), pss_kib(parent)) else {
            missing += 1;
            continue;
        };
        ctr_rss.push(r);
        ctr_pss.push(p);
        // Per pod: the infra process, its parent and the container's
        // parent, each counted once (containerd's shim is both parents).
        let mut procs = vec![parent];
        let (sresp, _) = b.status(&b.pod_id(pod)?, true).await?;
        if let Some(infra) = infra_pid(&sresp) {
            procs.push(infra);
            procs.extend(runtime_process(infra));
        }
        procs.sort_unstable();
        procs.dedup();
        let (mut tr, mut tp) = (0.0, 0.0);
        for p in &procs {
            tr += rss_kib(*p).unwrap_or(0.0);
            tp += pss_kib(*p).unwrap_or(0.0);
        }
        pod_rss.push(tr);
        pod_pss.push(tp);
        per_pod.get_or_insert_with(|| {
            procs
                .iter()
                .map(|p| process_name(*p).unwrap_or_else(|| "?".into()))
                .collect::<Vec<_>>()
                .join(" + ")
        });
    }
    if missing > 0 {
        eprintln!(
            "[{}] warning: no per-container process measured for {missing} of {n} containers",
            b.name
        );
    }
    report.add(&t, "container's parent (monitor/shim) RSS", "KiB", ctr_rss);
    report.add(&t, "container's parent (monitor/shim) PSS", "KiB", ctr_pss);
    report.add(&t, "per-pod processes, 1 container, RSS", "KiB", pod_rss);
    report.add(&t, "per-pod processes, 1 container, PSS", "KiB", pod_pss);
    let mut note = format!(
        "{t}: with {n} running containers; the container's parent is {} (the init's parent); per pod: {} (without the container's own processes)",
        parents.join("/"),
        per_pod.unwrap_or_else(|| "-".into())
    );
    if not_monitor > 0 {
        let _ = write!(
            note,
            "; for {not_monitor} containers the verbose status's monitorPid is not the init's parent"
        );
    }
    report.notes.push(note);
    Ok(())
}

// ---------------------------------------------------------------------------
// The runc floor
// ---------------------------------------------------------------------------

/// The files the floor's container bind-mounts, as the CRI containers do.
const FLOOR_BINDS: &[(&str, &str)] = &[
    ("/etc/hosts", "hosts"),
    ("/etc/hostname", "hostname"),
    ("/etc/resolv.conf", "resolv.conf"),
    ("/dev/termination-log", "termination-log"),
];

/// The namespaces of a CRI container in `mode`, with the pod's joined by
/// path from the process `holder`: new mount and pid namespaces; the pod's
/// IPC; and in a pod-network pod its network and UTS too (a host-network
/// pod keeps the host's).
fn floor_namespaces(mode: NetMode, holder: i32) -> serde_json::Value {
    use serde_json::json;
    let joined =
        |kind: &str, ns: &str| json!({"type": kind, "path": format!("/proc/{holder}/ns/{ns}")});
    let mut v = vec![json!({"type": "mount"}), json!({"type": "pid"})];
    if mode == NetMode::Pod {
        v.push(joined("network", "net"));
        v.push(joined("uts", "uts"));
    }
    v.push(joined("ipc", "ipc"));
    serde_json::Value::Array(v)
}

/// A `runc spec` config made like the CRI containers: the same process,
/// user, capabilities, oom_score_adj, cpu limits, masked paths, bind
/// mounts and namespaces; no seccomp (Unconfined), no hostname.
fn floor_spec(
    mut spec: serde_json::Value,
    rootfs: &Path,
    files: &Path,
    cgroup: &str,
    namespaces: serde_json::Value,
) -> serde_json::Value {
    use serde_json::json;
    spec["process"] = json!({
        "terminal": false,
        "user": {"uid": 0, "gid": 0},
        "args": ["sh", "-c", CONTAINER_SCRIPT],
        "env": [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOSTNAME=bench"
        ],
        "cwd": "/",
        "capabilities": {
            "bounding": DEFAULT_CAPS,
            "effective": DEFAULT_CAPS,
            "permitted": DEFAULT_CAPS
        },
        "noNewPrivileges": false,
        "oomScoreAdj": 1000
    });
    spec["root"] = json!({"path": rootfs, "readonly": false});
    if let Some(s) = spec.as_object_mut() {
        s.remove("hostname");
    }
    if !spec["mounts"].is_array() {
        spec["mounts"] = json!([]);
    }
    if let Some(mounts) = spec["mounts"].as_array_mut() {
        for (dest, file) in FLOOR_BINDS {
            mounts.push(json!({
                "destination": dest,
                "type": "bind",
                "source": files.join(file),
                "options": ["rbind", "rprivate", "rw"]
            }));
        }
    }
    let linux = &mut spec["linux"];
    linux["namespaces"] = namespaces;
    linux["cgroupsPath"] = json!(cgroup);
    linux["resources"] = json!({
        "devices": [{"allow": false, "access": "rwm"}],
        "cpu": {"shares": 2, "period": 100000}
    });
    linux["maskedPaths"] = json!(MASKED_PATHS);
    linux["readonlyPaths"] = json!(READONLY_PATHS);
    if let Some(l) = linux.as_object_mut() {
        l.remove("seccomp");
    }
    spec
}

/// A minimal root: `busybox` with the two applets the container runs.
fn floor_rootfs(busybox: &Path, rootfs: &Path) -> Result<(), BenchError> {
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp", "root"] {
        let p = rootfs.join(d);
        std::fs::create_dir_all(&p).map_err(io_err(&p))?;
    }
    let bin = rootfs.join("bin/busybox");
    std::fs::copy(busybox, &bin).map_err(io_err(busybox))?;
    for applet in ["sh", "sleep"] {
        let link = rootfs.join("bin").join(applet);
        std::os::unix::fs::symlink("busybox", &link).map_err(io_err(&link))?;
    }
    let passwd = rootfs.join("etc/passwd");
    std::fs::write(&passwd, "root:x:0:0:root:/root:/bin/sh\n").map_err(io_err(&passwd))?;
    let group = rootfs.join("etc/group");
    std::fs::write(&group, "root:x:0:\n").map_err(io_err(&group))
}

/// `runc create` (timed from spawn to exit) and `runc start` of container
/// `id`, then `runc delete --force`. The id is tracked before the create so
/// that cleanup deletes a container an interruption left behind.
async fn floor_run(
    shared: &Shared,
    root: &Path,
    bundle: &Path,
    id: &str,
) -> Result<(Duration, Duration), BenchError> {
    let runc = shared.runc.to_string_lossy().into_owned();
    let root_arg = root.to_string_lossy().into_owned();
    let bundle_arg = bundle.to_string_lossy().into_owned();
    let pid_file = bundle.join("init.pid").to_string_lossy().into_owned();
    let err_path = bundle.join("create.stderr");
    let err_file = std::fs::File::create(&err_path).map_err(io_err(&err_path))?;
    shared
        .floor
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(id.to_string());
    let args = [
        "--root",
        &root_arg,
        "create",
        "--bundle",
        &bundle_arg,
        "--pid-file",
        &pid_file,
        id,
    ];
    let cmd = format!("{runc} {}", args.join(" "));
    // The container inherits runc's stdio: no pipes, or waiting for their
    // EOF would wait for the container.
    let t = Instant::now();
    let child = tokio::process::Command::new(&shared.runc)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(err_file)
        .kill_on_drop(true)
        .status();
    let status = match tokio::time::timeout(CALL_LIMIT, child).await {
        Err(_) => {
            return Err(BenchError::CommandTimeout {
                cmd,
                limit: CALL_LIMIT,
            })
        }
        Ok(Err(source)) => return Err(BenchError::Spawn { cmd, source }),
        Ok(Ok(s)) => s,
    };
    let create = t.elapsed();
    if !status.success() {
        return Err(BenchError::Command {
            cmd,
            status,
            stderr: std::fs::read_to_string(&err_path)
                .unwrap_or_default()
                .trim()
                .to_string(),
        });
    }
    let t = Instant::now();
    run_command(&runc, &["--root", &root_arg, "start", id], CALL_LIMIT).await?;
    let start = t.elapsed();
    run_command(
        &runc,
        &["--root", &root_arg, "delete", "--force", id],
        CALL_LIMIT,
    )
    .await?;
    shared
        .floor
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .retain(|i| i != id);
    Ok((create, start))
}

/// The pod's namespaces for the floor: `sleep` in new IPC, UTS and network
/// namespaces (killed when dropped, also when the bench is interrupted).
struct NsHolder {
    child: tokio::process::Child,
    pid: i32,
}

impl NsHolder {
    async fn start(busybox: &Path) -> Result<NsHolder, BenchError> {
        let cmd = format!(
            "unshare --ipc --uts --net -- {} sleep 3600",
            busybox.display()
        );
        let child = tokio::process::Command::new("unshare")
            .args(["--ipc", "--uts", "--net", "--"])
            .arg(busybox)
            .args(["sleep", "3600"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| BenchError::Spawn {
                cmd: cmd.clone(),
                source,
            })?;
        let pid = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .ok_or_else(|| BenchError::Spawn {
                cmd: cmd.clone(),
                source: std::io::Error::other("exited at once"),
            })?;
        let holder = NsHolder { child, pid };
        // unshare(1) unshares and then execs: wait until the net namespace
        // differs from ours (and the process still lives).
        let ours = std::fs::metadata("/proc/self/ns/net").map(|m| m.ino()).ok();
        let start = Instant::now();
        loop {
            let theirs = std::fs::metadata(format!("/proc/{pid}/ns/net"))
                .map(|m| m.ino())
                .ok();
            if theirs.is_some() && theirs != ours {
                return Ok(holder);
            }
            if start.elapsed() > Duration::from_secs(5) {
                return Err(BenchError::CommandTimeout {
                    cmd,
                    limit: Duration::from_secs(5),
                });
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// The floor: `runc create` + `runc start` of a busybox bundle in each
/// network mode, a warm-up and then `--runs` times.
async fn bench_runc_floor(
    shared: &Shared,
    opts: &Options,
    report: &mut Report,
) -> Result<(), BenchError> {
    let dir = &shared.floor_dir;
    let (rootfs, files, bundle, root) = (
        dir.join("rootfs"),
        dir.join("files"),
        dir.join("bundle"),
        dir.join("root"),
    );
    for d in [&files, &bundle, &root] {
        std::fs::create_dir_all(d).map_err(io_err(d))?;
    }
    floor_rootfs(&opts.busybox, &rootfs)?;
    for (name, text) in [
        ("hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n"),
        ("hostname", "bench\n"),
        (
            "resolv.conf",
            "search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 127.0.0.1\noptions ndots:5\n",
        ),
        ("termination-log", ""),
    ] {
        let p = files.join(name);
        std::fs::write(&p, text).map_err(io_err(&p))?;
    }
    let runc = shared.runc.to_string_lossy().into_owned();
    let version = run_command(&runc, &["--version"], CALL_LIMIT).await?;
    let version = String::from_utf8_lossy(&version)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    run_command(
        &runc,
        &["spec", "--bundle", &bundle.to_string_lossy()],
        CALL_LIMIT,
    )
    .await?;
    let config = bundle.join("config.json");
    let text = std::fs::read_to_string(&config).map_err(io_err(&config))?;
    let base: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| io_err(&config)(std::io::Error::other(e)))?;
    // Like kubelet's pod cgroup: created here, the leaf by runc.
    let cgroup = format!("{}/runc-{}", shared.cgroups.parent, shared.run_id);
    shared.cgroups.create(&cgroup)?;
    let holder = NsHolder::start(&opts.busybox).await?;
    let mut seq = 0;
    let measured = async {
        for &mode in &opts.modes {
            eprintln!(
                "[{RUNC}] {} ({version}): warm-up, then {} runs of runc create + runc start + runc delete --force",
                mode.label(),
                opts.runs
            );
            let (mut creates, mut starts, mut both) = (Vec::new(), Vec::new(), Vec::new());
            for n in 0..=opts.runs {
                seq += 1;
                let id = format!("pbench-{}-{seq}", shared.run_id);
                let spec = floor_spec(
                    base.clone(),
                    &rootfs,
                    &files,
                    &format!("{cgroup}/{id}"),
                    floor_namespaces(mode, holder.pid),
                );
                let json = serde_json::to_vec_pretty(&spec).map_err(std::io::Error::other);
                std::fs::write(&config, json.map_err(io_err(&config))?)
                    .map_err(io_err(&config))?;
                let (create, start) = floor_run(shared, &root, &bundle, &id).await?;
                // Run 0 is the warm-up (page cache, runc's first exec).
                if n > 0 {
                    creates.push(create);
                    starts.push(start);
                    both.push(create + start);
                }
            }
            report.add_durations(RUNC, &container_metric(mode, "CreateContainer"), &creates);
            report.add_durations(RUNC, &container_metric(mode, "StartContainer"), &starts);
            report.add_durations(RUNC, &container_metric(mode, "Create+Start"), &both);
        }
        Ok::<(), BenchError>(())
    }
    .await;
    holder.stop().await;
    let _ = shared.cgroups.remove(&cgroup);
    measured?;
    report.notes.push(format!(
        "{RUNC}: {version}, `runc create --pid-file` and `runc start` of a bundle from {} and `runc spec`, made like peapod's OCI spec for the same CRI container (command, capabilities, oom_score_adj, cpu shares/period, masked paths, 11 mounts of which 4 binds; new mount and pid namespaces, IPC joined by path, pod-net also network and UTS joined by path); its own --root",
        opts.busybox.display()
    ));
    Ok(())
}

// ---------------------------------------------------------------------------
// Image pulls
// ---------------------------------------------------------------------------

/// One `--pull` image and what its manifest says it weighs.
#[derive(Debug)]
struct PullJob {
    image: String,
    /// Short name for metric labels: the reference without its registry.
    label: String,
    layers: usize,
    /// Sum of the manifest's layer sizes (compressed bytes on the wire).
    layer_bytes: u64,
}

impl PullJob {
    fn metric(&self, what: &str) -> String {
        format!("pull {} {what}", self.label)
    }

    fn mb_per_s(&self, d: Duration) -> f64 {
        self.layer_bytes as f64 / 1e6 / d.as_secs_f64().max(1e-9)
    }
}

/// The reference without a leading registry host (`127.0.0.1:5000/big:latest`
/// -> `big:latest`); a first component is a host when it has a dot or a
/// port, or is localhost, as in Docker's reference grammar.
fn image_label(image: &str) -> &str {
    match image.split_once('/') {
        Some((host, rest)) if host.contains(['.', ':']) || host == "localhost" => rest,
        _ => image,
    }
}

/// The repository part of a reference (no tag, no digest).
fn image_repo(image: &str) -> &str {
    if let Some((repo, _)) = image.split_once('@') {
        return repo;
    }
    let name_start = image.rfind('/').map_or(0, |i| i + 1);
    match image[name_start..].rfind(':') {
        Some(i) => &image[..name_start + i],
        None => image,
    }
}

/// The architecture name OCI uses for this build's target.
fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Runs a command to completion within `limit`, returning its stdout.
async fn run_command(program: &str, args: &[&str], limit: Duration) -> Result<Vec<u8>, BenchError> {
    let cmd = format!("{program} {}", args.join(" "));
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = match tokio::time::timeout(limit, child).await {
        Err(_) => return Err(BenchError::CommandTimeout { cmd, limit }),
        Ok(Err(source)) => {
            let source = if source.kind() == std::io::ErrorKind::NotFound {
                std::io::Error::new(
                    source.kind(),
                    format!("'{program}' not found: install the Debian package {program}"),
                )
            } else {
                source
            };
            return Err(BenchError::Spawn { cmd, source });
        }
        Ok(Ok(out)) => out,
    };
    if !out.status.success() {
        return Err(BenchError::Command {
            cmd,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out.stdout)
}

/// `skopeo inspect --raw` of a reference, as JSON.
async fn raw_manifest(image: &str, reference: &str) -> Result<serde_json::Value, BenchError> {
    let url = format!("docker://{reference}");
    let out = run_command(
        "skopeo",
        &["inspect", "--raw", "--tls-verify=false", &url],
        CALL_LIMIT,
    )
    .await?;
    serde_json::from_slice(&out).map_err(|e| BenchError::Manifest {
        image: image.to_string(),
        what: format!("{reference}: not JSON: {e}"),
    })
}

/// The layers of this platform's manifest of `image`, from the registry.
async fn pull_job(image: &str) -> Result<PullJob, BenchError> {
    let manifest_err = |what: String| BenchError::Manifest {
        image: image.to_string(),
        what,
    };
    let mut manifest = raw_manifest(image, image).await?;
    // An index (or Docker manifest list): take this platform's entry.
    if let Some(entries) = manifest.get("manifests").and_then(|m| m.as_array()) {
        let digest = entries
            .iter()
            .find(|e| {
                let platform = e.get("platform");
                let field = |k: &str| platform.and_then(|p| p.get(k)).and_then(|v| v.as_str());
                field("os") == Some("linux") && field("architecture") == Some(oci_arch())
            })
            .and_then(|e| e.get("digest"))
            .and_then(|d| d.as_str())
            .ok_or_else(|| manifest_err(format!("the index has no linux/{} entry", oci_arch())))?
            .to_string();
        let by_digest = format!("{}@{digest}", image_repo(image));
        manifest = raw_manifest(image, &by_digest).await?;
    }
    let layers = manifest
        .get("layers")
        .and_then(|l| l.as_array())
        .ok_or_else(|| manifest_err("no layers array".into()))?;
    let mut layer_bytes = 0u64;
    for (i, l) in layers.iter().enumerate() {
        let size = l
            .get("size")
            .and_then(|s| s.as_u64())
            .ok_or_else(|| manifest_err(format!("layers[{i}] has no size")))?;
        layer_bytes += size;
    }
    Ok(PullJob {
        image: image.to_string(),
        label: image_label(image).to_string(),
        layers: layers.len(),
        layer_bytes,
    })
}

/// Bytes allocated under `root` (each inode once, not crossing mounts), like
/// `du -s`.
fn tree_bytes(root: &Path) -> Result<u64, BenchError> {
    let top = std::fs::symlink_metadata(root).map_err(io_err(root))?;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            // A runtime may delete while we walk.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(&dir)(e)),
        };
        for entry in entries.flatten() {
            let Ok(md) = entry.metadata() else {
                continue;
            };
            if md.dev() != top.dev() {
                continue;
            }
            if md.nlink() > 1 && !md.is_dir() && !seen.insert(md.ino()) {
                continue;
            }
            total += md.blocks() * 512;
            if md.is_dir() {
                dirs.push(entry.path());
            }
        }
    }
    Ok(total)
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// The image workload's view of one CRI target.
struct ImageBench {
    name: String,
    client: ImageServiceClient<Channel>,
    /// `--store-of`: the target's on-disk image store.
    store: Option<PathBuf>,
}

impl ImageBench {
    fn spec(image: &str) -> Option<ImageSpec> {
        Some(ImageSpec {
            image: image.to_string(),
            ..Default::default()
        })
    }

    async fn remove(&mut self, image: &str) -> Result<(), BenchError> {
        let req = RemoveImageRequest {
            image: Self::spec(image),
        };
        call(
            &self.name,
            "RemoveImage",
            CALL_LIMIT,
            self.client.remove_image(req),
        )
        .await?;
        Ok(())
    }

    async fn status(&mut self, image: &str) -> Result<Option<Image>, BenchError> {
        let req = ImageStatusRequest {
            image: Self::spec(image),
            verbose: false,
        };
        let (resp, _) = call(
            &self.name,
            "ImageStatus",
            CALL_LIMIT,
            self.client.image_status(req),
        )
        .await?;
        Ok(resp.image)
    }

    /// Kubelet's way to an image id: ImageStatus, PullImage when absent,
    /// ImageStatus again. An image pulled here is tracked for removal.
    async fn ensure_image(
        &mut self,
        shared: &Shared,
        image: &str,
    ) -> Result<BenchImage, BenchError> {
        let img = match self.status(image).await? {
            Some(img) => img,
            None => {
                eprintln!("[{}] pulling {image}", self.name);
                track_in(&shared.pulled, &self.name, image);
                let req = PullImageRequest {
                    image: Self::spec(image),
                    auth: None,
                    sandbox_config: None,
                };
                call(
                    &self.name,
                    "PullImage",
                    PULL_LIMIT,
                    self.client.pull_image(req),
                )
                .await?;
                self.status(image)
                    .await?
                    .ok_or_else(|| BenchError::Unexpected {
                        target: self.name.clone(),
                        call: "ImageStatus",
                        what: format!("{image} not found after PullImage"),
                    })?
            }
        };
        if img.id.is_empty() {
            return Err(BenchError::Unexpected {
                target: self.name.clone(),
                call: "ImageStatus",
                what: format!("{image} has an empty id"),
            });
        }
        Ok(BenchImage {
            name: image.to_string(),
            id: img.id,
        })
    }

    /// Removes `image` if this bench pulled it.
    async fn remove_pulled(&mut self, shared: &Shared, image: &str) -> Result<(), BenchError> {
        if !tracked_in(&shared.pulled, &self.name)
            .iter()
            .any(|i| i == image)
        {
            return Ok(());
        }
        self.remove(image).await?;
        untrack_in(&shared.pulled, &self.name, image);
        Ok(())
    }

    fn store_bytes(&self) -> Result<Option<u64>, BenchError> {
        self.store.as_deref().map(tree_bytes).transpose()
    }

    /// RemoveImage, and check that the image is gone.
    async fn ensure_absent(&mut self, image: &str) -> Result<(), BenchError> {
        self.remove(image).await?;
        match self.status(image).await? {
            None => Ok(()),
            Some(img) => Err(BenchError::Unexpected {
                target: self.name.clone(),
                call: "ImageStatus",
                what: format!("{image} (id {}) is still listed after RemoveImage", img.id),
            }),
        }
    }

    /// One timed PullImage.
    async fn pull(&mut self, job: &PullJob) -> Result<Duration, BenchError> {
        let req = PullImageRequest {
            image: Self::spec(&job.image),
            auth: None,
            sandbox_config: None,
        };
        let (resp, took) = call(
            &self.name,
            "PullImage",
            PULL_LIMIT,
            self.client.pull_image(req),
        )
        .await?;
        if resp.image_ref.is_empty() {
            return Err(BenchError::Unexpected {
                target: self.name.clone(),
                call: "PullImage",
                what: format!("empty image_ref for {}", job.image),
            });
        }
        Ok(took)
    }

    async fn bench_pull(
        &mut self,
        job: &PullJob,
        runs: usize,
        report: &mut Report,
    ) -> Result<(), BenchError> {
        eprintln!(
            "[{}] pull {}: {runs} cold PullImage calls ({} layers, {:.1} MB compressed)",
            self.name,
            job.image,
            job.layers,
            mb(job.layer_bytes)
        );
        // A RemoveImage of a missing image succeeds.
        self.ensure_absent(&job.image).await?;
        let start_bytes = self.store_bytes()?;
        let (mut durations, mut rates) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
        let mut status_size = 0;
        for run in 1..=runs {
            self.ensure_absent(&job.image).await?;
            let before = self.store_bytes()?;
            let took = self.pull(job).await?;
            let after = self.store_bytes()?;
            let Some(img) = self.status(&job.image).await? else {
                return Err(BenchError::Unexpected {
                    target: self.name.clone(),
                    call: "ImageStatus",
                    what: format!("{} not found after PullImage", job.image),
                });
            };
            status_size = img.size;
            let mut line = format!(
                "[{}] pull {run}/{runs}: {:.3} s, {:.1} MB/s",
                self.name,
                took.as_secs_f64(),
                job.mb_per_s(took)
            );
            if let (Some(b), Some(a)) = (before, after) {
                let grown = a.saturating_sub(b);
                let _ = write!(
                    line,
                    ", store {:.1} MB before, +{:.1} MB by the pull",
                    mb(b),
                    mb(grown)
                );
                if grown < job.layer_bytes / 2 {
                    report.notes.push(format!(
                        "{}: pull {run} of {} added only {:.1} MB to the store: a cache hit?",
                        self.name,
                        job.image,
                        mb(grown)
                    ));
                }
            }
            eprintln!("{line}");
            durations.push(took);
            rates.push(job.mb_per_s(took));
        }
        self.remove(&job.image).await?;
        let mut note = format!(
            "{}: {} is {} layers, {} bytes compressed (manifest layer sizes, used for MB/s); ImageStatus size {status_size}",
            self.name, job.image, job.layers, job.layer_bytes
        );
        if let (Some(s), Some(e)) = (start_bytes, self.store_bytes()?) {
            let _ = write!(
                note,
                "; store {:.1} MB before the first pull, {:.1} MB after the last RemoveImage",
                mb(s),
                mb(e)
            );
        }
        report.notes.push(note);
        report.add_durations(&self.name, &job.metric("PullImage"), &durations);
        report.add(&self.name, &job.metric("throughput"), "MB/s", rates);
        Ok(())
    }
}

/// The skopeo+umoci peer: `skopeo copy` from the registry into a new OCI
/// layout, then `umoci unpack` into a new bundle, timed together; both
/// directories are removed before every run, so nothing is cached.
async fn bench_pull_peer(
    dir: &Path,
    job: &PullJob,
    runs: usize,
    report: &mut Report,
) -> Result<(), BenchError> {
    let name = SKOPEO_UMOCI;
    eprintln!(
        "[{name}] pull {}: {runs} runs of skopeo copy + umoci unpack",
        job.image
    );
    let layout = dir.join("oci");
    let bundle = dir.join("bundle");
    let src = format!("docker://{}", job.image);
    let dst = format!("oci:{}:pull", layout.display());
    let image_arg = format!("{}:pull", layout.display());
    let bundle_arg = bundle.to_string_lossy().into_owned();
    let (mut durations, mut rates) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    for run in 1..=runs {
        for d in [&layout, &bundle] {
            match std::fs::remove_dir_all(d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(d)(e)),
            }
        }
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let start = Instant::now();
        run_command(
            "skopeo",
            &[
                "--insecure-policy",
                "copy",
                "--quiet",
                "--src-tls-verify=false",
                &src,
                &dst,
            ],
            PULL_LIMIT,
        )
        .await?;
        let copied = start.elapsed();
        run_command(
            "umoci",
            &["unpack", "--image", &image_arg, &bundle_arg],
            PULL_LIMIT,
        )
        .await?;
        let took = start.elapsed();
        eprintln!(
            "[{name}] pull {run}/{runs}: {:.3} s (copy {:.3} s, unpack {:.3} s), {:.1} MB/s",
            took.as_secs_f64(),
            copied.as_secs_f64(),
            (took - copied).as_secs_f64(),
            job.mb_per_s(took)
        );
        durations.push(took);
        rates.push(job.mb_per_s(took));
    }
    std::fs::remove_dir_all(dir).map_err(io_err(dir))?;
    report.add_durations(name, &job.metric("PullImage"), &durations);
    report.add(name, &job.metric("throughput"), "MB/s", rates);
    Ok(())
}

/// Stops and removes every sandbox of this run on every target (the tracked
/// ids plus any listed with this run's label), then the cgroup tree.
async fn cleanup(shared: &Shared) -> bool {
    let mut clean = true;
    let clients = shared
        .clients
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    for (name, rt) in &clients {
        clean &= cleanup_containers(shared, name, rt.clone()).await;
    }
    for (name, mut rt) in clients {
        let mut ids = tracked_in(&shared.live, &name);
        let req = ListPodSandboxRequest {
            filter: Some(PodSandboxFilter {
                label_selector: HashMap::from([(RUN_LABEL.to_string(), shared.run_id.clone())]),
                ..Default::default()
            }),
        };
        match call(
            &name,
            "ListPodSandbox",
            CALL_LIMIT,
            rt.list_pod_sandbox(req),
        )
        .await
        {
            Ok((resp, _)) => {
                for item in resp.items {
                    // Only ours: a runtime may ignore the label selector.
                    if item.labels.get(RUN_LABEL) == Some(&shared.run_id) && !ids.contains(&item.id)
                    {
                        ids.push(item.id);
                    }
                }
            }
            Err(e) => eprintln!("cleanup: {e}"),
        }
        if !ids.is_empty() {
            eprintln!("cleanup: {name}: removing {} sandboxes", ids.len());
        }
        for id in ids {
            let stop = StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            };
            if let Err(e) = call(
                &name,
                "StopPodSandbox",
                CALL_LIMIT,
                rt.stop_pod_sandbox(stop),
            )
            .await
            {
                eprintln!("cleanup: {e}");
            }
            let rm = RemovePodSandboxRequest {
                pod_sandbox_id: id.clone(),
            };
            match call(
                &name,
                "RemovePodSandbox",
                CALL_LIMIT,
                rt.remove_pod_sandbox(rm),
            )
            .await
            {
                Ok(_) => shared.untrack(&name, &id),
                Err(e) => {
                    eprintln!("cleanup: {e}");
                    clean = false;
                }
            }
        }
    }
    clean &= cleanup_images(shared).await;
    clean &= cleanup_floor(shared).await;
    let left = shared.cgroups.remove(&shared.cgroups.parent);
    for l in &left {
        eprintln!("cleanup: cgroup not removed: {l}");
    }
    clean &= left.is_empty();
    for dir in [&shared.pods_dir, &shared.pull_dir, &shared.floor_dir] {
        if let Err(e) = std::fs::remove_dir_all(dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!("cleanup: {}: {e}", dir.display());
            }
        }
    }
    clean
}

/// Stops and removes the containers of this run on one target (the tracked
/// ids plus any listed with this run's label), before their sandboxes go.
async fn cleanup_containers(
    shared: &Shared,
    name: &str,
    mut rt: RuntimeServiceClient<Channel>,
) -> bool {
    let mut clean = true;
    let mut ids = tracked_in(&shared.containers, name);
    let req = ListContainersRequest {
        filter: Some(ContainerFilter {
            label_selector: HashMap::from([(RUN_LABEL.to_string(), shared.run_id.clone())]),
            ..Default::default()
        }),
    };
    match call(name, "ListContainers", CALL_LIMIT, rt.list_containers(req)).await {
        Ok((resp, _)) => {
            for c in resp.containers {
                if c.labels.get(RUN_LABEL) == Some(&shared.run_id) && !ids.contains(&c.id) {
                    ids.push(c.id);
                }
            }
        }
        Err(e) => eprintln!("cleanup: {e}"),
    }
    if !ids.is_empty() {
        eprintln!("cleanup: {name}: removing {} containers", ids.len());
    }
    for id in ids {
        let stop = StopContainerRequest {
            container_id: id.clone(),
            timeout: 0,
        };
        if let Err(e) = call(name, "StopContainer", CALL_LIMIT, rt.stop_container(stop)).await {
            eprintln!("cleanup: {e}");
        }
        let rm = RemoveContainerRequest {
            container_id: id.clone(),
        };
        match call(name, "RemoveContainer", CALL_LIMIT, rt.remove_container(rm)).await {
            Ok(_) => untrack_in(&shared.containers, name, &id),
            Err(e) => {
                eprintln!("cleanup: {e}");
                clean = false;
            }
        }
    }
    clean
}

/// Removes the images this run pulled and has not removed yet.
async fn cleanup_images(shared: &Shared) -> bool {
    let mut clean = true;
    let clients = shared
        .image_clients
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    for (name, mut ic) in clients {
        for image in tracked_in(&shared.pulled, &name) {
            eprintln!("cleanup: {name}: removing image {image}");
            let req = RemoveImageRequest {
                image: ImageBench::spec(&image),
            };
            match call(&name, "RemoveImage", CALL_LIMIT, ic.remove_image(req)).await {
                Ok(_) => untrack_in(&shared.pulled, &name, &image),
                Err(e) => {
                    eprintln!("cleanup: {e}");
                    clean = false;
                }
            }
        }
    }
    clean
}

/// Deletes the runc floor's containers that are left (`runc delete --force`
/// kills them and removes their cgroups).
async fn cleanup_floor(shared: &Shared) -> bool {
    let ids = shared
        .floor
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    if ids.is_empty() {
        return true;
    }
    eprintln!("cleanup: {RUNC}: deleting {} containers", ids.len());
    let runc = shared.runc.to_string_lossy().into_owned();
    let root = shared.floor_dir.join("root").to_string_lossy().into_owned();
    let mut clean = true;
    for id in ids {
        match run_command(
            &runc,
            &["--root", &root, "delete", "--force", &id],
            CALL_LIMIT,
        )
        .await
        {
            Ok(_) => {}
            // Interrupted before runc created it.
            Err(BenchError::Command { stderr, .. }) if stderr.contains("does not exist") => {}
            Err(e) => {
                eprintln!("cleanup: {e}");
                clean = false;
                continue;
            }
        }
        shared
            .floor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|i| i != &id);
    }
    clean
}

async fn signalled() -> BenchError {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        // Without handlers the default action (exit) applies anyway.
        _ => std::future::pending::<()>().await,
    }
    BenchError::Interrupted
}

async fn run_all(shared: &Shared, opts: &Options, report: &mut Report) -> Vec<BenchError> {
    let mut errors = Vec::new();
    let mut pulls = Vec::with_capacity(opts.pulls.len());
    for image in &opts.pulls {
        match pull_job(image).await {
            Ok(job) => pulls.push(job),
            Err(e) => {
                eprintln!("pull {image}: {e}");
                errors.push(e);
            }
        }
    }
    for t in &opts.targets {
        if let Err(e) = bench_target(shared, opts, t, &pulls, report).await {
            eprintln!("[{}] failed: {e}", t.name);
            errors.push(e);
        }
    }
    if opts.runc_floor {
        if let Err(e) = bench_runc_floor(shared, opts, report).await {
            eprintln!("[{RUNC}] failed: {e}");
            errors.push(e);
        }
    }
    // Only skopeo+umoci exists (parse_args checks).
    if !opts.pull_peers.is_empty() {
        for job in &pulls {
            if let Err(e) = bench_pull_peer(&shared.pull_dir, job, opts.pull_runs, report).await {
                eprintln!("[{SKOPEO_UMOCI}] failed: {e}");
                errors.push(e);
            }
        }
    }
    errors
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let opts = match parse_args(std::env::args().skip(1).collect()) {
        Ok(o) => o,
        Err(BenchError::Usage(m)) if m == "help" => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("peapod-bench: {e}");
            return ExitCode::from(2);
        }
    };
    match bench(opts).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("peapod-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn bench(opts: Options) -> Result<bool, BenchError> {
    let run_id = random_hex(4)?;
    let cgroups = CgroupTree::discover(&opts.cgroup_parent)?;
    cgroups.create(&opts.cgroup_parent)?;
    let pods_dir = opts.log_root.join(format!("peapod-bench-pods-{run_id}"));
    let pull_dir = opts.log_root.join(format!("peapod-bench-pull-{run_id}"));
    let floor_dir = opts.log_root.join(format!("peapod-bench-runc-{run_id}"));
    let shared = Shared {
        run_id,
        pods_dir,
        pull_dir,
        cgroups,
        clients: Mutex::new(Vec::new()),
        image_clients: Mutex::new(Vec::new()),
        live: Mutex::new(Vec::new()),
        containers: Mutex::new(Vec::new()),
        pulled: Mutex::new(Vec::new()),
        floor_dir,
        runc: opts.runc.clone(),
        floor: Mutex::new(Vec::new()),
    };
    if let Err(e) = std::fs::create_dir_all(&shared.pods_dir) {
        cleanup(&shared).await;
        return Err(io_err(&shared.pods_dir)(e));
    }
    let sandbox_modes = opts
        .modes
        .iter()
        .filter(|_| opts.sandbox_workload)
        .map(|m| m.label().to_string());
    let container_modes = opts.modes.iter().filter_map(|m| {
        opts.containers
            .as_ref()
            .map(|i| format!("{}-containers({i})", m.label()))
    });
    let list_pods = if opts.sandbox_workload && !opts.modes.is_empty() {
        format!(", {} pods for ListPodSandbox", opts.list_pods)
    } else {
        String::new()
    };
    println!(
        "peapod-bench run {}: {} runs per workload, workloads {}{list_pods}, cgroup parent {}",
        shared.run_id,
        opts.runs,
        sandbox_modes
            .chain(container_modes)
            .chain(opts.runc_floor.then(|| "runc-floor".to_string()))
            .chain(opts.pulls.iter().map(|i| format!("pull {i}")))
            .collect::<Vec<_>>()
            .join(" "),
        opts.cgroup_parent
    );
    if opts.containers.is_some() {
        println!(
            "containers: {} running for the memory figures",
            opts.running_containers
        );
    }
    if !opts.pulls.is_empty() {
        println!(
            "pulls: {} cold pulls per image and target{}",
            opts.pull_runs,
            if opts.pull_peers.is_empty() {
                String::new()
            } else {
                format!(", peers {}", opts.pull_peers.join(" "))
            }
        );
    }

    let mut report = Report::default();
    let errors = tokio::select! {
        errs = run_all(&shared, &opts, &mut report) => errs,
        e = signalled() => vec![e],
    };
    let clean = cleanup(&shared).await;
    println!();
    let mut peers = opts.pull_peers.clone();
    if opts.runc_floor {
        peers.push(RUNC.to_string());
    }
    print!("{}", render(&report, &opts.targets, &peers));
    for e in &errors {
        println!("error: {e}");
    }
    if !clean {
        println!("error: cleanup left sandboxes or cgroups behind (see above)");
    }
    Ok(errors.is_empty() && clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn median_and_p90_by_nearest_rank() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(stats(&v), Some((5.5, 9.0)));
        assert_eq!(stats(&[3.0]), Some((3.0, 3.0)));
        assert_eq!(stats(&[]), None);
    }

    #[test]
    fn targets_get_unique_names_and_default_workload() {
        let o = parse_args(args(&[
            "--endpoint",
            "unix:///a/containerd.sock",
            "--endpoint",
            "unix:///b/containerd.sock",
            "--target",
            "peapod=unix:///c/p.sock",
            "--pid-of",
            "peapod=42",
        ]))
        .unwrap();
        let names: Vec<&str> = o.targets.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["containerd", "containerd-2", "peapod"]);
        assert_eq!(o.targets[2].socket, PathBuf::from("/c/p.sock"));
        assert_eq!(o.modes, [NetMode::Host]);
        assert_eq!(o.pids.get("peapod"), Some(&42));
        assert_eq!(o.cgroup_parent, "/peapod-bench");
        assert_eq!(o.list_calls, 50);
    }

    #[test]
    fn both_workloads_and_bad_options() {
        let o = parse_args(args(&[
            "--endpoint",
            "unix:///x.sock",
            "--cni",
            "--no-cni",
            "--runs",
            "70",
        ]))
        .unwrap();
        assert_eq!(o.modes, [NetMode::Host, NetMode::Pod]);
        assert_eq!(o.list_calls, 70);
        for bad in [
            &["--endpoint", "/x.sock"][..],
            &["--endpoint", "unix:///x.sock", "--cgroup-parent", "/"],
            &["--endpoint", "unix:///x.sock", "--pid-of", "nobody=1"],
            &["--runs", "3"],
        ] {
            assert!(matches!(parse_args(args(bad)), Err(BenchError::Usage(_))));
        }
    }

    #[test]
    fn pull_options() {
        let o = parse_args(args(&[
            "--target",
            "containerd=unix:///c.sock",
            "--pull",
            "127.0.0.1:5000/big:latest",
            "--pull-peer",
            "skopeo+umoci",
            "--store-of",
            "containerd=/var/lib/c",
        ]))
        .unwrap();
        // --pull alone runs no pod workload.
        assert!(o.modes.is_empty());
        assert_eq!(o.pulls, ["127.0.0.1:5000/big:latest"]);
        assert_eq!(o.pull_runs, 5);
        assert_eq!(o.pull_peers, [SKOPEO_UMOCI]);
        assert_eq!(
            o.stores.get("containerd"),
            Some(&PathBuf::from("/var/lib/c"))
        );
        let o = parse_args(args(&[
            "--endpoint",
            "unix:///x.sock",
            "--pull",
            "a",
            "--no-cni",
        ]))
        .unwrap();
        assert_eq!(o.modes, [NetMode::Host]);
        for bad in [
            &[
                "--endpoint",
                "unix:///x.sock",
                "--pull-peer",
                "skopeo+umoci",
            ][..],
            &[
                "--endpoint",
                "unix:///x.sock",
                "--pull",
                "a",
                "--pull-peer",
                "ctr",
            ],
            &[
                "--endpoint",
                "unix:///x.sock",
                "--pull",
                "a",
                "--pull-runs",
                "0",
            ],
            &["--endpoint", "unix:///x.sock", "--store-of", "y=/d"],
            &["--endpoint", "unix:///x.sock", "--store-of", "x=rel"],
            &["--target", "skopeo+umoci=unix:///x.sock"],
        ] {
            assert!(
                matches!(parse_args(args(bad)), Err(BenchError::Usage(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn image_reference_parts() {
        assert_eq!(image_label("127.0.0.1:5000/big:latest"), "big:latest");
        assert_eq!(image_label("registry.k8s.io/pause:3.9"), "pause:3.9");
        assert_eq!(image_label("library/busybox"), "library/busybox");
        assert_eq!(
            image_repo("127.0.0.1:5000/big:latest"),
            "127.0.0.1:5000/big"
        );
        assert_eq!(image_repo("127.0.0.1:5000/big"), "127.0.0.1:5000/big");
        assert_eq!(image_repo("h/big@sha256:ab"), "h/big");
    }

    #[test]
    fn rates_report_their_slow_end_and_peers_get_ratios() {
        let mut r = Report::default();
        let rates: Vec<f64> = (1..=10).map(f64::from).collect();
        // The rate of the p90 run by duration: the second slowest of ten.
        assert_eq!(summary(&rates, "MB/s"), Some((5.5, 2.0)));
        r.add("containerd", "pull x throughput", "MB/s", vec![10.0]);
        r.add(SKOPEO_UMOCI, "pull x throughput", "MB/s", vec![5.0]);
        r.add("containerd", "host-net RunPodSandbox", "ms", vec![1.0]);
        let targets = [parse_endpoint("containerd".into(), "unix:///c.sock").unwrap()];
        let out = render(&r, &targets, &[SKOPEO_UMOCI.to_string()]);
        let ratio = out
            .lines()
            .find(|l| l.contains("containerd/skopeo+umoci"))
            .unwrap();
        assert!(ratio.starts_with("pull x throughput"), "{out}");
        assert!(ratio.ends_with("2.000        2.000"), "{out}");
        // No peer row where the peer measured nothing.
        assert_eq!(
            out.lines().filter(|l| l.contains("skopeo+umoci")).count(),
            2,
            "{out}"
        );
    }

    #[test]
    fn container_options() {
        let o = parse_args(args(&[
            "--target",
            "peapod=unix:///p.sock",
            "--containers",
            "127.0.0.1:5000/busybox:latest",
            "--runc-floor",
            "--no-sandbox-workload",
            "--cni",
        ]))
        .unwrap();
        assert_eq!(
            o.containers.as_deref(),
            Some("127.0.0.1:5000/busybox:latest")
        );
        assert!(o.runc_floor && !o.sandbox_workload);
        assert_eq!(o.modes, [NetMode::Pod]);
        assert_eq!(o.running_containers, 50);
        assert_eq!(o.runc, PathBuf::from("runc"));
        // --containers with --pull and no network flag runs host-net pods.
        let o = parse_args(args(&[
            "--endpoint",
            "unix:///x.sock",
            "--pull",
            "a",
            "--containers",
            "b",
        ]))
        .unwrap();
        assert_eq!(o.modes, [NetMode::Host]);
        assert!(o.sandbox_workload && !o.runc_floor);
        for bad in [
            &["--endpoint", "unix:///x.sock", "--runc-floor"][..],
            &["--containers", "b"],
            &["--target", "runc=unix:///x.sock", "--containers", "b"],
            &["--endpoint", "unix:///x.sock", "--containers", "a b"],
        ] {
            assert!(
                matches!(parse_args(args(bad)), Err(BenchError::Usage(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn container_pids_from_verbose_info() {
        let mut r = ContainerStatusResponse::default();
        r.info.insert(
            "info".into(),
            r#"{"sandboxID": "s", "pid": 321, "monitorPid": 320}"#.into(),
        );
        assert_eq!(container_pids(&r), (Some(321), Some(320)));
        let mut r = ContainerStatusResponse::default();
        r.info
            .insert("info".into(), r#"{"pid": 0, "monitorPid": null}"#.into());
        assert_eq!(container_pids(&r), (None, None));
        assert_eq!(
            container_pids(&ContainerStatusResponse::default()),
            (None, None)
        );
    }

    #[test]
    fn caught_signals_and_signed_gaps() {
        let status = "Name:\tsh\nSigIgn:\t0000000000000004\nSigCgt:\t0000000000014002\n";
        let caught = signal_mask(status, "SigCgt:").unwrap();
        assert_ne!(caught & (1 << (libc::SIGTERM - 1)), 0);
        assert_eq!(signal_mask(status, "SigIgn:"), Some(4));
        assert_eq!(signal_mask("Name: x\n", "SigCgt:"), None);
        let t = Instant::now();
        let later = t + Duration::from_millis(3);
        assert!((ms_signed(later, t) - 3.0).abs() < 1e-9);
        assert!((ms_signed(t, later) + 3.0).abs() < 1e-9);
    }

    #[test]
    fn process_names_are_argv0_file_names() {
        let me = i32::try_from(std::process::id()).unwrap();
        let name = process_name(me).unwrap();
        assert!(name.starts_with("peapod_bench"), "{name}");
        assert_eq!(process_name(-1), None);
    }

    #[test]
    fn exit_watch_sees_a_process_exit() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut child = std::process::Command::new("sleep")
                .arg("0.2")
                .spawn()
                .unwrap();
            let pid = i32::try_from(child.id()).unwrap();
            let start = Instant::now();
            let watch = ExitWatch::start(pid).unwrap();
            let exited = watch.exited().await.expect("exit seen");
            assert!(exited.duration_since(start) >= Duration::from_millis(150));
            child.wait().unwrap();
        });
    }

    #[test]
    fn floor_spec_is_made_like_the_cri_containers() {
        let base = serde_json::json!({
            "process": {"terminal": true, "args": ["sh"], "rlimits": []},
            "root": {"path": "rootfs", "readonly": true},
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
            "linux": {
                "namespaces": [{"type": "pid"}, {"type": "network"}],
                "seccomp": {"defaultAction": "SCMP_ACT_ERRNO"}
            }
        });
        let s = floor_spec(
            base,
            Path::new("/b/rootfs"),
            Path::new("/b/files"),
            "/pb/runc-1/c",
            floor_namespaces(NetMode::Pod, 42),
        );
        assert_eq!(s["process"]["terminal"], false);
        assert_eq!(s["process"]["args"][2], CONTAINER_SCRIPT);
        assert_eq!(s["process"]["oomScoreAdj"], 1000);
        assert!(s["process"].get("rlimits").is_none());
        assert_eq!(s["root"]["path"], "/b/rootfs");
        assert_eq!(s["linux"]["cgroupsPath"], "/pb/runc-1/c");
        assert_eq!(s["linux"]["resources"]["cpu"]["shares"], 2);
        assert!(s["linux"].get("seccomp").is_none());
        let ns: Vec<&str> = s["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(ns, ["mount", "pid", "network", "uts", "ipc"]);
        assert_eq!(s["linux"]["namespaces"][2]["path"], "/proc/42/ns/net");
        let host = floor_namespaces(NetMode::Host, 42);
        assert_eq!(host.as_array().unwrap().len(), 3);
        assert_eq!(host[2]["path"], "/proc/42/ns/ipc");
        let mounts = s["mounts"].as_array().unwrap();
        assert_eq!(mounts.len(), 1 + FLOOR_BINDS.len());
        assert_eq!(mounts[1]["source"], "/b/files/hosts");
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mount("/a\\040b/c"), "/a b/c");
        assert_eq!(unescape_mount("/plain"), "/plain");
        assert_eq!(unescape_mount("/end\\04"), "/end\\04");
    }

    #[test]
    fn uid_and_timestamp_shapes() {
        let uid = pod_uid().unwrap();
        let parts: Vec<usize> = uid.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12]);
        let t = now_rfc3339();
        assert_eq!(t.len(), "2026-11-22T10:35:26.707041724Z".len());
        assert!(t.starts_with("20") && t.ends_with('Z'), "{t}");
    }

    #[test]
    fn infra_pid_from_verbose_info() {
        let mut r = PodSandboxStatusResponse::default();
        r.info.insert("pid".into(), "123".into());
        assert_eq!(infra_pid(&r), Some(123));
        let mut r = PodSandboxStatusResponse::default();
        r.info.insert("info".into(), r#"{"pid": 456}"#.into());
        assert_eq!(infra_pid(&r), Some(456));
    }
}
