//! Memory: the daemon's, and that of the per-pod and per-container
//! processes of a runtime, from /proc (RSS and PSS in KiB).

use std::fmt::Write as _;

use crate::args::NetMode;
use crate::cri::runtime::TargetBench;
use crate::error::BenchError;
use crate::kubelet::Pod;
use crate::procfs::{container_pids, infra_pid, ppid_of, process_name};
use crate::report::Report;

/// A "Key:   123 kB" field of a /proc file, in KiB.
fn proc_kib(path: &str, key: &str) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
}

pub fn rss_kib(pid: i32) -> Option<f64> {
    proc_kib(&format!("/proc/{pid}/status"), "VmRSS:")
}

pub fn pss_kib(pid: i32) -> Option<f64> {
    proc_kib(&format!("/proc/{pid}/smaps_rollup"), "Pss:")
}

/// A process's (RSS, PSS), when both can be read.
fn memory_of(pid: i32) -> Option<(f64, f64)> {
    Some((rss_kib(pid)?, pss_kib(pid)?))
}

/// The parent of `pid` when it is neither init nor the daemon: then it is a
/// per-pod or per-container process of the runtime.
fn runtime_parent(pid: i32, daemon: Option<i32>) -> Option<i32> {
    ppid_of(pid).filter(|pp| *pp > 1 && Some(*pp) != daemon)
}

/// RSS and PSS samples of one kind of process.
#[derive(Default)]
struct Samples {
    rss: Vec<f64>,
    pss: Vec<f64>,
}

impl Samples {
    fn push(&mut self, (rss, pss): (f64, f64)) {
        self.rss.push(rss);
        self.pss.push(pss);
    }

    /// Reports the samples as the metrics "`what` RSS" and "`what` PSS".
    fn report(self, report: &mut Report, target: &str, what: &str) {
        report.add(target, &format!("{what} RSS"), "KiB", self.rss);
        report.add(target, &format!("{what} PSS"), "KiB", self.pss);
    }
}

/// The daemon's RSS and PSS, as "daemon RSS, `with`" (e.g. "0 pods").
pub fn record_daemon_memory(report: &mut Report, target: &str, with: &str, pid: Option<i32>) {
    let (rss, pss) = match pid {
        Some(p) => (rss_kib(p), pss_kib(p)),
        None => (None, None),
    };
    let rss: Vec<f64> = rss.into_iter().collect();
    let pss: Vec<f64> = pss.into_iter().collect();
    report.add(target, &format!("daemon RSS, {with}"), "KiB", rss);
    report.add(target, &format!("daemon PSS, {with}"), "KiB", pss);
}

/// The per-pod processes of sandboxes without containers: the infra
/// process, and its parent where that is a per-pod shim.
#[derive(Default)]
struct PodMemory {
    infra: Samples,
    shim: Samples,
    total: Samples,
}

impl PodMemory {
    /// Adds the pod whose infra process is `infra`; false when its memory
    /// cannot be read.
    fn add(&mut self, infra: i32, daemon: Option<i32>) -> bool {
        let Some((rss, pss)) = memory_of(infra) else {
            return false;
        };
        self.infra.push((rss, pss));
        let (mut total_rss, mut total_pss) = (rss, pss);
        if let Some((r, p)) = runtime_parent(infra, daemon).and_then(memory_of) {
            self.shim.push((r, p));
            total_rss += r;
            total_pss += p;
        }
        self.total.push((total_rss, total_pss));
        true
    }

    fn report(self, report: &mut Report, target: &str) {
        self.infra.report(report, target, "infra process");
        self.shim.report(report, target, "shim (infra's parent)");
        self.total.report(report, target, "per-pod processes");
    }
}

/// The per-pod processes of each of `pods` (READY sandboxes of `mode`).
pub async fn measure_pods(
    b: &mut TargetBench<'_>,
    report: &mut Report,
    daemon: Option<i32>,
    mode: NetMode,
    pods: &[Pod],
) -> Result<(), BenchError> {
    let mut memory = PodMemory::default();
    let mut missing = 0;
    for pod in pods {
        let id = pod.id.clone().unwrap_or_default();
        let (resp, _) = b.status(&id, true).await?;
        b.check_ready(mode, &resp)?;
        let measured = infra_pid(&resp).is_some_and(|pid| memory.add(pid, daemon));
        if !measured {
            missing += 1;
        }
    }
    if missing > 0 {
        eprintln!(
            "[{}] warning: no infra process found for {missing} of {} sandboxes",
            b.name,
            pods.len()
        );
    }
    memory.report(report, &b.name);
    Ok(())
}

/// The runtime's processes for pods with one running container each.
#[derive(Default)]
struct ContainerMemory {
    /// The container's parent (a monitor or shim).
    parent: Samples,
    /// The per-pod processes without the container's own.
    pod: Samples,
    /// The names of the containers' parents, each once.
    parents: Vec<String>,
    /// The names of the first measured pod's processes.
    per_pod: Option<String>,
    missing: usize,
    /// Containers whose verbose status names a monitor other than the
    /// init's parent.
    not_monitor: usize,
}

impl ContainerMemory {
    fn note_parent(&mut self, parent: i32) {
        let name = process_name(parent).unwrap_or_else(|| "?".into());
        if !self.parents.contains(&name) {
            self.parents.push(name);
        }
    }

    /// Adds one pod's processes, summed (one that cannot be read counts 0).
    fn add_pod(&mut self, procs: &[i32]) {
        let (mut rss, mut pss) = (0.0, 0.0);
        for p in procs {
            rss += rss_kib(*p).unwrap_or(0.0);
            pss += pss_kib(*p).unwrap_or(0.0);
        }
        self.pod.push((rss, pss));
        self.per_pod.get_or_insert_with(|| {
            procs
                .iter()
                .map(|p| process_name(*p).unwrap_or_else(|| "?".into()))
                .collect::<Vec<_>>()
                .join(" + ")
        });
    }

    fn report(self, report: &mut Report, target: &str, n: usize) {
        self.parent
            .report(report, target, "container's parent (monitor/shim)");
        self.pod
            .report(report, target, "per-pod processes, 1 container,");
        let mut note = format!(
            "{target}: with {n} running containers; the container's parent is {} (the init's parent); per pod: {} (without the container's own processes)",
            self.parents.join("/"),
            self.per_pod.unwrap_or_else(|| "-".into())
        );
        if self.not_monitor > 0 {
            let _ = write!(
                note,
                "; for {} containers the verbose status's monitorPid is not the init's parent",
                self.not_monitor
            );
        }
        report.notes.push(note);
    }
}

/// The daemon's memory and the runtime's per-container and per-pod
/// processes, with the pods and containers of `live` running.
pub async fn measure_running(
    b: &mut TargetBench<'_>,
    report: &mut Report,
    daemon: Option<i32>,
    live: &[(Pod, Option<String>)],
) -> Result<(), BenchError> {
    let n = live.len();
    record_daemon_memory(report, &b.name, &format!("{n} running containers"), daemon);
    let mut memory = ContainerMemory::default();
    for (pod, cid) in live {
        let Some(cid) = cid else { continue };
        measure_container(b, daemon, pod, cid, &mut memory).await?;
    }
    if memory.missing > 0 {
        eprintln!(
            "[{}] warning: no per-container process measured for {} of {n} containers",
            b.name, memory.missing
        );
    }
    memory.report(report, &b.name, n);
    Ok(())
}

/// The parent of container `cid`'s init, and the processes of its pod.
async fn measure_container(
    b: &mut TargetBench<'_>,
    daemon: Option<i32>,
    pod: &Pod,
    cid: &str,
    memory: &mut ContainerMemory,
) -> Result<(), BenchError> {
    let resp = b.container_status(cid, true).await?;
    let init = b.running_init(&resp, cid)?;
    let monitor = container_pids(&resp).1;
    let Some(parent) = runtime_parent(init, daemon) else {
        memory.missing += 1;
        return Ok(());
    };
    if monitor.is_some_and(|m| m != parent) {
        memory.not_monitor += 1;
    }
    memory.note_parent(parent);
    let Some(parent_memory) = memory_of(parent) else {
        memory.missing += 1;
        return Ok(());
    };
    memory.parent.push(parent_memory);
    let (sandbox, _) = b.status(&b.pod_id(pod)?, true).await?;
    memory.add_pod(&pod_processes(parent, infra_pid(&sandbox), daemon));
    Ok(())
}

/// A pod's processes: the container's parent, the infra process and its
/// parent, each once (containerd's shim is both parents).
fn pod_processes(parent: i32, infra: Option<i32>, daemon: Option<i32>) -> Vec<i32> {
    let mut procs = vec![parent];
    if let Some(infra) = infra {
        procs.push(infra);
        procs.extend(runtime_parent(infra, daemon));
    }
    procs.sort_unstable();
    procs.dedup();
    procs
}
