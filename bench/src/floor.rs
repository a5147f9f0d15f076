//! The runc floor: `runc create` + `runc start` of a busybox bundle made
//! like the CRI containers, the least a runtime built on runc can take.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::PoisonError;
use std::time::{Duration, Instant};

// The default capabilities, masked and read-only paths are peapod's own.
use peapod::container::security::{
    DEFAULT_CAPABILITIES as DEFAULT_CAPS, DEFAULT_MASKED_PATHS as MASKED_PATHS,
    DEFAULT_READONLY_PATHS as READONLY_PATHS,
};

use crate::args::{NetMode, Options};
use crate::command::run_command;
use crate::containers::{container_metric, CONTAINER_SCRIPT};
use crate::cri::CALL_LIMIT;
use crate::error::{io_err, BenchError};
use crate::report::Report;
use crate::run::Shared;

/// The floor of the container workload, not a CRI endpoint.
pub const RUNC: &str = "runc";

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

/// `runc create` and `runc start` of container `id`, then `runc delete
/// --force`. The id is tracked before the create so that cleanup deletes a
/// container an interruption left behind.
async fn floor_run(
    shared: &Shared,
    root: &Path,
    bundle: &Path,
    id: &str,
) -> Result<(Duration, Duration), BenchError> {
    let runc = shared.runc.to_string_lossy().into_owned();
    let root_arg = root.to_string_lossy().into_owned();
    let err_path = bundle.join("create.stderr");
    let err_file = std::fs::File::create(&err_path).map_err(io_err(&err_path))?;
    shared
        .floor
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(id.to_string());
    let create = runc_create(&shared.runc, &root_arg, bundle, id, &err_path, err_file).await?;
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

/// `runc create --pid-file` of container `id`, timed from spawn to exit;
/// runc's stderr goes to `err_path` (opened as `err_file`) for the error.
async fn runc_create(
    runc: &Path,
    root: &str,
    bundle: &Path,
    id: &str,
    err_path: &Path,
    err_file: std::fs::File,
) -> Result<Duration, BenchError> {
    let bundle_arg = bundle.to_string_lossy().into_owned();
    let pid_file = bundle.join("init.pid").to_string_lossy().into_owned();
    let args = [
        "--root",
        root,
        "create",
        "--bundle",
        &bundle_arg,
        "--pid-file",
        &pid_file,
        id,
    ];
    let cmd = format!("{} {}", runc.display(), args.join(" "));
    // The container inherits runc's stdio: no pipes, or waiting for their
    // EOF would wait for the container.
    let t = Instant::now();
    let child = tokio::process::Command::new(runc)
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
            stderr: std::fs::read_to_string(err_path)
                .unwrap_or_default()
                .trim()
                .to_string(),
        });
    }
    Ok(create)
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

/// The floor's directories: the container's root, the files it
/// bind-mounts, its bundle (config.json) and runc's `--root`.
struct FloorDirs {
    rootfs: PathBuf,
    files: PathBuf,
    bundle: PathBuf,
    root: PathBuf,
}

impl FloorDirs {
    /// Makes the directories under `dir`, the busybox root and the files.
    fn make(dir: &Path, busybox: &Path) -> Result<FloorDirs, BenchError> {
        let dirs = FloorDirs {
            rootfs: dir.join("rootfs"),
            files: dir.join("files"),
            bundle: dir.join("bundle"),
            root: dir.join("root"),
        };
        for d in [&dirs.files, &dirs.bundle, &dirs.root] {
            std::fs::create_dir_all(d).map_err(io_err(d))?;
        }
        floor_rootfs(busybox, &dirs.rootfs)?;
        for (name, text) in [
            ("hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n"),
            ("hostname", "bench\n"),
            (
                "resolv.conf",
                "search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 127.0.0.1\noptions ndots:5\n",
            ),
            ("termination-log", ""),
        ] {
            let p = dirs.files.join(name);
            std::fs::write(&p, text).map_err(io_err(&p))?;
        }
        Ok(dirs)
    }

    fn config(&self) -> PathBuf {
        self.bundle.join("config.json")
    }
}

/// The first line of `runc --version`.
async fn runc_version(runc: &str) -> Result<String, BenchError> {
    let version = run_command(runc, &["--version"], CALL_LIMIT).await?;
    Ok(String::from_utf8_lossy(&version)
        .lines()
        .next()
        .unwrap_or("")
        .to_string())
}

/// The config `runc spec` writes into `dirs`' bundle.
async fn default_spec(runc: &str, dirs: &FloorDirs) -> Result<serde_json::Value, BenchError> {
    run_command(
        runc,
        &["spec", "--bundle", &dirs.bundle.to_string_lossy()],
        CALL_LIMIT,
    )
    .await?;
    let config = dirs.config();
    let text = std::fs::read_to_string(&config).map_err(io_err(&config))?;
    serde_json::from_str(&text).map_err(|e| io_err(&config)(std::io::Error::other(e)))
}

/// The floor's runs, one after another.
struct Floor<'a> {
    shared: &'a Shared,
    dirs: FloorDirs,
    /// `runc spec`'s config, which every run's is made from.
    base: serde_json::Value,
    /// The pod-like cgroup the containers' cgroups go under.
    cgroup: String,
    /// The process whose namespaces the containers join.
    holder: i32,
    version: String,
    seq: usize,
}

impl Floor<'_> {
    /// A warm-up and then `runs` timed runs in `mode`.
    async fn bench_mode(
        &mut self,
        mode: NetMode,
        runs: usize,
        report: &mut Report,
    ) -> Result<(), BenchError> {
        eprintln!(
            "[{RUNC}] {} ({}): warm-up, then {runs} runs of runc create + runc start + runc delete --force",
            mode.label(),
            self.version
        );
        let (mut creates, mut starts, mut both) = (Vec::new(), Vec::new(), Vec::new());
        for n in 0..=runs {
            self.seq += 1;
            let id = format!("pbench-{}-{}", self.shared.run_id, self.seq);
            self.write_spec(mode, &id)?;
            let (create, start) =
                floor_run(self.shared, &self.dirs.root, &self.dirs.bundle, &id).await?;
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
        Ok(())
    }

    /// The bundle's config.json for container `id` in `mode`.
    fn write_spec(&self, mode: NetMode, id: &str) -> Result<(), BenchError> {
        let spec = floor_spec(
            self.base.clone(),
            &self.dirs.rootfs,
            &self.dirs.files,
            &format!("{}/{id}", self.cgroup),
            floor_namespaces(mode, self.holder),
        );
        let config = self.dirs.config();
        let json = serde_json::to_vec_pretty(&spec).map_err(std::io::Error::other);
        std::fs::write(&config, json.map_err(io_err(&config))?).map_err(io_err(&config))
    }
}

/// The floor: `runc create` + `runc start` of a busybox bundle in each
/// network mode, a warm-up and then `--runs` times.
pub async fn bench_runc_floor(
    shared: &Shared,
    opts: &Options,
    report: &mut Report,
) -> Result<(), BenchError> {
    let dirs = FloorDirs::make(&shared.floor_dir, &opts.busybox)?;
    let runc = shared.runc.to_string_lossy().into_owned();
    let version = runc_version(&runc).await?;
    let base = default_spec(&runc, &dirs).await?;
    // Like kubelet's pod cgroup: created here, the leaf by runc.
    let cgroup = format!("{}/runc-{}", shared.cgroups.parent, shared.run_id);
    shared.cgroups.create(&cgroup)?;
    let holder = NsHolder::start(&opts.busybox).await?;
    let mut floor = Floor {
        shared,
        dirs,
        base,
        cgroup,
        holder: holder.pid,
        version,
        seq: 0,
    };
    let measured = async {
        for &mode in &opts.modes {
            floor.bench_mode(mode, opts.runs, report).await?;
        }
        Ok::<(), BenchError>(())
    }
    .await;
    holder.stop().await;
    let _ = shared.cgroups.remove(&floor.cgroup);
    measured?;
    report.notes.push(format!(
        "{RUNC}: {}, `runc create --pid-file` and `runc start` of a bundle from {} and `runc spec`, made like peapod's OCI spec for the same CRI container (command, capabilities, oom_score_adj, cpu shares/period, masked paths, 11 mounts of which 4 binds; new mount and pid namespaces, IPC joined by path, pod-net also network and UTS joined by path); its own --root",
        floor.version,
        opts.busybox.display()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
