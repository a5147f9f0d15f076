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

use std::collections::HashMap;
use std::fmt::Write as _;
use std::future::Future;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use peapod::api::image_service_client::ImageServiceClient;
use peapod::api::runtime_service_client::RuntimeServiceClient;
use peapod::api::security_profile::ProfileType;
use peapod::api::{
    DnsConfig, Image, ImageSpec, ImageStatusRequest, LinuxContainerResources,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, ListPodSandboxRequest, NamespaceMode,
    NamespaceOption, PodSandboxConfig, PodSandboxFilter, PodSandboxMetadata, PodSandboxState,
    PodSandboxStateValue, PodSandboxStatusRequest, PodSandboxStatusResponse, PullImageRequest,
    RemoveImageRequest, RemovePodSandboxRequest, RunPodSandboxRequest, SecurityProfile,
    StopPodSandboxRequest, VersionRequest,
};
use tonic::transport::Channel;

/// Kubelet's deadline for RunPodSandbox; every other call gets 2 minutes.
const RUN_LIMIT: Duration = Duration::from_secs(240);
const CALL_LIMIT: Duration = Duration::from_secs(120);
/// Kubelet puts no deadline on PullImage; this only ends a stuck run.
const PULL_LIMIT: Duration = Duration::from_secs(600);
/// The pull peer that is not a CRI endpoint.
const SKOPEO_UMOCI: &str = "skopeo+umoci";
/// Label on every sandbox this bench creates; its value is the run id.
const RUN_LABEL: &str = "peapod-bench/run";

const USAGE: &str = "\
usage: peapod-bench [OPTIONS]

Targets (at least one; each is measured in turn):
  --endpoint unix:///PATH.sock   a CRI endpoint, named after the socket's file stem
  --target NAME=unix:///PATH.sock  a named CRI endpoint (repeatable)

Workloads:
  --no-cni            host-network pods (namespace_options.network = NODE)
  --cni               pod-network pods (needs a CNI config in the runtime's conf dir)
  --pull IMAGE        cold image pulls (repeatable): per target and run, RemoveImage,
                      then a timed PullImage, then ImageStatus. IMAGE is removed from
                      every target before and after. Throughput is the compressed
                      size (the sum of the manifest's layer sizes, read with
                      `skopeo inspect --raw`, plain HTTP allowed) over the pull time.
                      Of --no-cni, --cni and --pull any may be given; with none,
                      only --no-cni runs.
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
(else the last target) and over skopeo+umoci: below 1 is better for ms and KiB,
above 1 for MB/s.
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
        socket: peapod::client::socket_path(endpoint),
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
    if host || (!pod && pulls.is_empty()) {
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
    /// Sandbox ids per target that are not removed yet.
    live: Mutex<Vec<(String, String)>>,
}

impl Shared {
    fn track(&self, target: &str, id: &str) {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((target.to_string(), id.to_string()));
    }

    fn untrack(&self, target: &str, id: &str) {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(t, i)| !(t == target && i == id));
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
    id: Option<String>,
}

struct TargetBench<'a> {
    shared: &'a Shared,
    name: String,
    rt: RuntimeServiceClient<Channel>,
    seq: usize,
    pod_net_without_ip: usize,
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
        Ok((
            Pod {
                uid,
                log_dir,
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
    let channel = peapod::client::connect(&target.socket)
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
    };
    if !opts.modes.is_empty() {
        bench_pods(&mut b, opts, report, daemon).await?;
    }

    let mut ib = ImageBench {
        name: target.name.clone(),
        client: images,
        store: opts.stores.get(&target.name).cloned(),
    };
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
    for (name, mut rt) in clients {
        let mut ids: Vec<String> = shared
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(t, _)| t == &name)
            .map(|(_, id)| id.clone())
            .collect();
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
    let left = shared.cgroups.remove(&shared.cgroups.parent);
    for l in &left {
        eprintln!("cleanup: cgroup not removed: {l}");
    }
    clean &= left.is_empty();
    for dir in [&shared.pods_dir, &shared.pull_dir] {
        if let Err(e) = std::fs::remove_dir_all(dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!("cleanup: {}: {e}", dir.display());
            }
        }
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
    let shared = Shared {
        run_id,
        pods_dir,
        pull_dir,
        cgroups,
        clients: Mutex::new(Vec::new()),
        live: Mutex::new(Vec::new()),
    };
    if let Err(e) = std::fs::create_dir_all(&shared.pods_dir) {
        cleanup(&shared).await;
        return Err(io_err(&shared.pods_dir)(e));
    }
    println!(
        "peapod-bench run {}: {} runs per workload, workloads {}, {} pods for ListPodSandbox, cgroup parent {}",
        shared.run_id,
        opts.runs,
        opts.modes
            .iter()
            .map(|m| m.label())
            .map(str::to_string)
            .chain(opts.pulls.iter().map(|i| format!("pull {i}")))
            .collect::<Vec<_>>()
            .join(" "),
        opts.list_pods,
        opts.cgroup_parent
    );
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
    print!("{}", render(&report, &opts.targets, &opts.pull_peers));
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
