//! Memory: the daemon's, and that of the per-pod and per-container
//! processes of a runtime, from /proc (RSS and PSS in KiB).

use std::fmt::Write as _;

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

/// The daemon's RSS and PSS with `pods` sandboxes running.
pub fn record_daemon_memory(report: &mut Report, target: &str, pods: usize, pid: Option<i32>) {
    let (rss, pss) = match pid {
        Some(p) => (rss_kib(p), pss_kib(p)),
        None => (None, None),
    };
    let rss: Vec<f64> = rss.into_iter().collect();
    let pss: Vec<f64> = pss.into_iter().collect();
    report.add(target, &format!("daemon RSS, {pods} pods"), "KiB", rss);
    report.add(target, &format!("daemon PSS, {pods} pods"), "KiB", pss);
}

pub async fn measure_running(
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
