//! The command line: targets, workloads and the environment to run in.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::BenchError;
use crate::floor::RUNC;
use crate::pull::SKOPEO_UMOCI;
use crate::streaming::SPDY_CLIENT;

pub const USAGE: &str = "\
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
  --userns            with --containers and --cni: a second pod-network pass of the
                      timed cycles whose pods have user namespaces of their own, as
                      kubelet 1.32 runs `hostUsers: false` (userns_options mode POD in
                      the pod and in its container; uids and gids container 0 ->
                      host 65536 * (100 + pod number), 65536 of them, a range per pod),
                      on each target whose Status reports user_namespaces for its
                      default runtime handler (others are skipped with a line saying
                      so); both pod-network passes then report RunPodSandbox too, and
                      the userns rows get each target's ratio to its plain row
                      (\"peapod/plain\"). The memory figures stay the plain pods'
  --running-containers N
                      pods with a running container for the memory figures (default 50)
  --runc-floor        with --containers: also time `runc create` + `runc start` of a
                      busybox bundle (rootfs from --busybox, config from `runc spec`
                      made like the CRI containers), --runs times plus a warm-up, each
                      followed by `runc delete --force`, as a target named runc
  --runc PATH         the runc of --runc-floor (default: runc from PATH)
  --streaming IMAGE   streaming workload (CRI Exec and PortForward URLs, driven by
                      spdy-client for every target): one pod (pod network with --cni,
                      else the host's) with a container of IMAGE (a busybox) running
                      sleep and one running `nc -ll` servers; --runs Exec round trips of
                      `echo hi` (from just before the Exec call to the client's first
                      stdout byte, and to its exit with the exit status read; the
                      client's own start is part of both); port-forward download and
                      upload throughput; daemon memory with --exec-sessions exec
                      sessions open (`cat` with stdin held open), then a check that
                      ending them leaves no process behind
  --spdy-client PATH  the SPDY client (default target/test-clients/spdy-client; build
                      it with `bash hack/build-test-clients.sh`)
  --exec-sessions N   concurrent exec sessions for the memory figures (default 20)
  --port-forward-runs N
                      transfers per direction through `spdy-client portforward`
                      (default 5)
  --port-forward-mib N
                      MiB per transfer (default 256)
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

#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub endpoint: String,
    pub socket: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetMode {
    Host,
    Pod,
}

impl NetMode {
    pub fn label(self) -> &'static str {
        match self {
            NetMode::Host => "host-net",
            NetMode::Pod => "pod-net",
        }
    }
}

#[derive(Debug)]
pub struct Options {
    pub targets: Vec<Target>,
    pub runs: usize,
    pub modes: Vec<NetMode>,
    pub list_pods: usize,
    pub list_calls: usize,
    pub pulls: Vec<String>,
    pub pull_runs: usize,
    /// Non-CRI pull targets (only skopeo+umoci exists).
    pub pull_peers: Vec<String>,
    /// The sandbox lifecycle, list and per-pod memory workloads.
    pub sandbox_workload: bool,
    /// `--containers`: the image of the container workload.
    pub containers: Option<String>,
    /// `--userns`: the container workload's pass with user namespaces.
    pub userns: bool,
    pub running_containers: usize,
    pub runc_floor: bool,
    pub runc: PathBuf,
    pub busybox: PathBuf,
    /// `--streaming`: the image of the streaming workload.
    pub streaming: Option<String>,
    pub spdy_client: PathBuf,
    pub exec_sessions: usize,
    pub port_forward_runs: usize,
    pub port_forward_mib: usize,
    pub cgroup_parent: String,
    pub pids: HashMap<String, i32>,
    pub stores: HashMap<String, PathBuf>,
    pub log_root: PathBuf,
}

pub fn parse_endpoint(name: String, endpoint: &str) -> Result<Target, BenchError> {
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

/// The flags as given, before the checks that relate them to each other.
struct Flags {
    targets: Vec<Target>,
    runs: usize,
    host: bool,
    pod: bool,
    list_pods: usize,
    list_calls: Option<usize>,
    pulls: Vec<String>,
    pull_runs: usize,
    pull_peers: Vec<String>,
    sandbox_workload: bool,
    containers: Option<String>,
    userns: bool,
    running_containers: usize,
    runc_floor: bool,
    runc: PathBuf,
    busybox: PathBuf,
    streaming: Option<String>,
    spdy_client: PathBuf,
    exec_sessions: usize,
    port_forward_runs: usize,
    port_forward_mib: usize,
    cgroup_parent: String,
    pids: HashMap<String, i32>,
    stores: HashMap<String, PathBuf>,
    log_root: PathBuf,
}

impl Default for Flags {
    fn default() -> Self {
        Flags {
            targets: Vec::new(),
            runs: 50,
            host: false,
            pod: false,
            list_pods: 100,
            list_calls: None,
            pulls: Vec::new(),
            pull_runs: 5,
            pull_peers: Vec::new(),
            sandbox_workload: true,
            containers: None,
            userns: false,
            running_containers: 50,
            runc_floor: false,
            runc: PathBuf::from("runc"),
            busybox: PathBuf::from("/bin/busybox"),
            streaming: None,
            spdy_client: PathBuf::from(SPDY_CLIENT),
            exec_sessions: 20,
            port_forward_runs: 5,
            port_forward_mib: 256,
            cgroup_parent: "/peapod-bench".to_string(),
            pids: HashMap::new(),
            stores: HashMap::new(),
            log_root: std::env::temp_dir(),
        }
    }
}

pub fn parse_args(args: Vec<String>) -> Result<Options, BenchError> {
    let mut flags = Flags::default();
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        let value = || {
            it.next()
                .ok_or_else(|| usage(format!("{flag} needs a value")))
        };
        flags.apply(&flag, value)?;
    }
    flags.check_targets()?;
    unique_names(&mut flags.targets);
    flags.check_target_names()?;
    flags.check_workloads()?;
    let cgroup_parent = cgroup_parent(&flags.cgroup_parent)?;
    flags.check_counts()?;
    Ok(flags.into_options(cgroup_parent))
}

impl Flags {
    /// Takes one flag, and its value from `value` where it has one.
    fn apply(
        &mut self,
        flag: &str,
        mut value: impl FnMut() -> Result<String, BenchError>,
    ) -> Result<(), BenchError> {
        match flag {
            "-h" | "--help" => return Err(usage("help")),
            "--endpoint" => self.targets.push(endpoint_target(&value()?)?),
            "--target" => self.targets.push(named_target(&value()?)?),
            "--runs" => self.runs = parse_number(flag, &value()?)?,
            "--cni" => self.pod = true,
            "--no-cni" => self.host = true,
            "--list-pods" => self.list_pods = parse_number(flag, &value()?)?,
            "--list-calls" => self.list_calls = Some(parse_number(flag, &value()?)?),
            "--pull" => self.pulls.push(image_reference(flag, value()?)?),
            "--pull-runs" => self.pull_runs = parse_number(flag, &value()?)?,
            "--no-sandbox-workload" => self.sandbox_workload = false,
            "--containers" => self.containers = Some(image_reference(flag, value()?)?),
            "--userns" => self.userns = true,
            "--running-containers" => self.running_containers = parse_number(flag, &value()?)?,
            "--runc-floor" => self.runc_floor = true,
            "--runc" => self.runc = PathBuf::from(value()?),
            "--busybox" => self.busybox = PathBuf::from(value()?),
            "--streaming" => self.streaming = Some(image_reference(flag, value()?)?),
            "--spdy-client" => self.spdy_client = PathBuf::from(value()?),
            "--exec-sessions" => self.exec_sessions = parse_number(flag, &value()?)?,
            "--port-forward-runs" => self.port_forward_runs = parse_number(flag, &value()?)?,
            "--port-forward-mib" => self.port_forward_mib = parse_number(flag, &value()?)?,
            "--pull-peer" => self.add_pull_peer(value()?)?,
            "--store-of" => {
                let (name, dir) = store_of(&value()?)?;
                self.stores.insert(name, dir);
            }
            "--cgroup-parent" => self.cgroup_parent = value()?,
            "--log-root" => self.log_root = PathBuf::from(value()?),
            "--pid-of" => {
                let (name, pid) = pid_of(&value()?)?;
                self.pids.insert(name, pid);
            }
            other => return Err(usage(format!("unknown option '{other}'"))),
        }
        Ok(())
    }

    fn add_pull_peer(&mut self, peer: String) -> Result<(), BenchError> {
        if peer != SKOPEO_UMOCI {
            return Err(usage(format!(
                "--pull-peer knows only {SKOPEO_UMOCI}, got '{peer}'"
            )));
        }
        if !self.pull_peers.contains(&peer) {
            self.pull_peers.push(peer);
        }
        Ok(())
    }

    /// There is something to measure: a CRI target, or a pull peer and an
    /// image for it.
    fn check_targets(&self) -> Result<(), BenchError> {
        if self.targets.is_empty() && self.pull_peers.is_empty() {
            return Err(usage("give at least one --endpoint or --target"));
        }
        if !self.pull_peers.is_empty() && self.pulls.is_empty() {
            return Err(usage("--pull-peer needs --pull IMAGE"));
        }
        Ok(())
    }

    /// `--pid-of` and `--store-of` name targets, and no target takes the
    /// name of a peer.
    fn check_target_names(&self) -> Result<(), BenchError> {
        for (flag, names) in [
            ("--pid-of", self.pids.keys().collect::<Vec<_>>()),
            ("--store-of", self.stores.keys().collect()),
        ] {
            for name in names {
                if !self.targets.iter().any(|t| &t.name == name) {
                    return Err(usage(format!("{flag} names '{name}', which is no target")));
                }
            }
        }
        for (peer, flag) in [(SKOPEO_UMOCI, "--pull-peer"), (RUNC, "--runc-floor")] {
            if let Some(t) = self.targets.iter().find(|t| t.name == peer) {
                return Err(usage(format!(
                    "target name '{}' is taken by {flag}",
                    t.name
                )));
            }
        }
        Ok(())
    }

    fn check_workloads(&self) -> Result<(), BenchError> {
        if self.runc_floor && self.containers.is_none() {
            return Err(usage("--runc-floor needs --containers IMAGE"));
        }
        if self.containers.is_some() && self.targets.is_empty() {
            return Err(usage("--containers needs an --endpoint or --target"));
        }
        if self.userns && self.containers.is_none() {
            return Err(usage("--userns needs --containers IMAGE"));
        }
        // Kubernetes refuses hostUsers: false with hostNetwork.
        if self.userns && !self.pod {
            return Err(usage(
                "--userns needs --cni: user-namespaced pods have a network of their own",
            ));
        }
        if self.streaming.is_some() && self.targets.is_empty() {
            return Err(usage("--streaming needs an --endpoint or --target"));
        }
        Ok(())
    }

    fn check_counts(&self) -> Result<(), BenchError> {
        if self.runs == 0 {
            return Err(usage("--runs must be at least 1"));
        }
        if self.pull_runs == 0 {
            return Err(usage("--pull-runs must be at least 1"));
        }
        if self.port_forward_mib == 0 {
            return Err(usage("--port-forward-mib must be at least 1"));
        }
        Ok(())
    }

    /// The network modes asked for; with none, host-network pods unless
    /// only pulls are asked for.
    fn modes(&self) -> Vec<NetMode> {
        let mut modes = Vec::new();
        let pods = self.pulls.is_empty() || self.containers.is_some() || self.streaming.is_some();
        if self.host || (!self.pod && pods) {
            modes.push(NetMode::Host);
        }
        if self.pod {
            modes.push(NetMode::Pod);
        }
        modes
    }

    fn into_options(self, cgroup_parent: String) -> Options {
        Options {
            modes: self.modes(),
            targets: self.targets,
            runs: self.runs,
            list_pods: self.list_pods,
            list_calls: self.list_calls.unwrap_or(self.runs.max(50)),
            pulls: self.pulls,
            pull_runs: self.pull_runs,
            pull_peers: self.pull_peers,
            sandbox_workload: self.sandbox_workload,
            containers: self.containers,
            userns: self.userns,
            running_containers: self.running_containers,
            runc_floor: self.runc_floor,
            runc: self.runc,
            busybox: self.busybox,
            streaming: self.streaming,
            spdy_client: self.spdy_client,
            exec_sessions: self.exec_sessions,
            port_forward_runs: self.port_forward_runs,
            port_forward_mib: self.port_forward_mib,
            cgroup_parent,
            pids: self.pids,
            stores: self.stores,
            log_root: self.log_root,
        }
    }
}

fn usage(what: impl Into<String>) -> BenchError {
    BenchError::Usage(what.into())
}

/// `--endpoint unix:///PATH.sock`: a target named after the socket's file stem.
fn endpoint_target(endpoint: &str) -> Result<Target, BenchError> {
    let stem = Path::new(endpoint.trim_start_matches("unix://"))
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "target".into());
    parse_endpoint(stem, endpoint)
}

/// `--target NAME=unix:///PATH.sock`.
fn named_target(value: &str) -> Result<Target, BenchError> {
    let Some((name, endpoint)) = value.split_once('=') else {
        return Err(usage(format!(
            "--target wants NAME=unix:///path, got '{value}'"
        )));
    };
    parse_endpoint(name.to_string(), endpoint)
}

/// The image of `--pull` or `--containers`.
fn image_reference(flag: &str, value: String) -> Result<String, BenchError> {
    if value.is_empty() || value.contains(char::is_whitespace) {
        return Err(usage(format!(
            "{flag} wants an image reference, got '{value}'"
        )));
    }
    Ok(value)
}

/// `--store-of NAME=/absolute/dir`.
fn store_of(value: &str) -> Result<(String, PathBuf), BenchError> {
    let Some((name, dir)) = value
        .split_once('=')
        .filter(|(n, d)| !n.is_empty() && d.starts_with('/'))
    else {
        return Err(usage(format!(
            "--store-of wants NAME=/absolute/dir, got '{value}'"
        )));
    };
    Ok((name.to_string(), PathBuf::from(dir)))
}

/// `--pid-of NAME=PID`.
fn pid_of(value: &str) -> Result<(String, i32), BenchError> {
    value
        .split_once('=')
        .and_then(|(n, p)| p.parse::<i32>().ok().map(|p| (n.to_string(), p)))
        .ok_or_else(|| usage(format!("--pid-of wants NAME=PID, got '{value}'")))
}

/// Socket stems can repeat (two "containerd.sock"): keep names unique.
fn unique_names(targets: &mut [Target]) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for t in targets {
        let n = seen.entry(t.name.clone()).or_insert(0);
        *n += 1;
        if *n > 1 {
            t.name = format!("{}-{}", t.name, n);
        }
    }
}

/// `--cgroup-parent` as an absolute path strictly below the cgroup root.
fn cgroup_parent(given: &str) -> Result<String, BenchError> {
    let parent = format!("/{}", given.trim_matches('/'));
    if parent == "/" || parent.split('/').any(|c| c == "..") {
        return Err(usage(format!(
            "--cgroup-parent '{parent}' must be a sub-tree of the cgroup root"
        )));
    }
    Ok(parent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
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
        assert!(!o.userns);
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
            &["--endpoint", "unix:///x.sock", "--cni", "--userns"],
            &[
                "--endpoint",
                "unix:///x.sock",
                "--containers",
                "b",
                "--userns",
            ],
        ] {
            assert!(
                matches!(parse_args(args(bad)), Err(BenchError::Usage(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn userns_option() {
        let o = parse_args(args(&[
            "--target",
            "peapod=unix:///p.sock",
            "--containers",
            "b",
            "--no-cni",
            "--cni",
            "--userns",
        ]))
        .unwrap();
        assert!(o.userns);
        assert_eq!(o.modes, [NetMode::Host, NetMode::Pod]);
    }

    #[test]
    fn streaming_options() {
        let o = parse_args(args(&[
            "--target",
            "peapod=unix:///p.sock",
            "--streaming",
            "127.0.0.1:5000/busybox:latest",
            "--no-sandbox-workload",
            "--cni",
            "--exec-sessions",
            "3",
        ]))
        .unwrap();
        assert_eq!(
            o.streaming.as_deref(),
            Some("127.0.0.1:5000/busybox:latest")
        );
        assert_eq!(o.modes, [NetMode::Pod]);
        assert_eq!(o.spdy_client, PathBuf::from(SPDY_CLIENT));
        assert_eq!(
            (o.exec_sessions, o.port_forward_runs, o.port_forward_mib),
            (3, 5, 256)
        );
        // --streaming with --pull and no network flag runs host-net pods.
        let o = parse_args(args(&[
            "--endpoint",
            "unix:///x.sock",
            "--pull",
            "a",
            "--streaming",
            "b",
        ]))
        .unwrap();
        assert_eq!(o.modes, [NetMode::Host]);
        for bad in [
            &["--streaming", "b"][..],
            &["--endpoint", "unix:///x.sock", "--streaming", "a b"],
            &["--endpoint", "unix:///x.sock", "--port-forward-mib", "0"],
        ] {
            assert!(
                matches!(parse_args(args(bad)), Err(BenchError::Usage(_))),
                "{bad:?}"
            );
        }
    }
}
