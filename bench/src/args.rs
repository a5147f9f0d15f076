//! The command line: targets, workloads and the environment to run in.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::BenchError;
use crate::floor::RUNC;
use crate::pull::SKOPEO_UMOCI;

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
    pub running_containers: usize,
    pub runc_floor: bool,
    pub runc: PathBuf,
    pub busybox: PathBuf,
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

pub fn parse_args(args: Vec<String>) -> Result<Options, BenchError> {
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
}
