//! The pod sandbox workload: Run/Status/Stop/Remove cycles per network mode,
//! then ListPodSandbox and memory with many pods running.

use std::time::Duration;

use peapod::api::{PodSandboxState, PodSandboxStatusResponse};

use crate::args::{NetMode, Options};
use crate::cri::runtime::TargetBench;
use crate::error::BenchError;
use crate::kubelet::Pod;
use crate::memory::{measure_pods, record_daemon_memory};
use crate::report::Report;

impl TargetBench<'_> {
    pub fn check_ready(
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
    pub async fn cycle(&mut self, mode: NetMode) -> Result<[Duration; 4], BenchError> {
        let (pod, run) = self.run(mode).await?;
        let id = pod.id.clone().unwrap_or_default();
        let (resp, status) = self.status(&id, false).await?;
        self.check_ready(mode, &resp)?;
        let stop = self.stop(&id).await?;
        let remove = self.remove(&pod, &id).await?;
        Ok([run, status, stop, remove])
    }
}

/// The pod sandbox workloads: lifecycle cycles per network mode, then
/// ListPodSandbox and per-pod memory with `--list-pods` pods running.
pub async fn bench_pods(
    b: &mut TargetBench<'_>,
    opts: &Options,
    report: &mut Report,
    daemon: Option<i32>,
) -> Result<(), BenchError> {
    for &mode in &opts.modes {
        bench_cycles(b, opts.runs, report, mode).await?;
    }
    record_daemon_memory(report, &b.name, "0 pods", daemon);
    // The list and per-pod memory workloads run on the cheapest pod kind.
    let Some(&mode) = opts.modes.first() else {
        return Ok(());
    };
    bench_many_pods(b, opts, report, daemon, mode).await
}

/// A warm-up and then `runs` timed Run/Status/Stop/Remove cycles in `mode`.
async fn bench_cycles(
    b: &mut TargetBench<'_>,
    runs: usize,
    report: &mut Report,
    mode: NetMode,
) -> Result<(), BenchError> {
    eprintln!(
        "[{}] {}: warm-up, then {runs} Run/Status/Stop/Remove cycles",
        b.name,
        mode.label(),
    );
    // The first sandbox pays for one-time work (containerd pulls its
    // pause image): not measured.
    b.cycle(mode).await?;
    let mut samples: [Vec<Duration>; 4] = Default::default();
    for _ in 0..runs {
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
    Ok(())
}

/// ListPodSandbox and memory with `--list-pods` pods of `mode` running;
/// the pods are removed again also when that fails.
async fn bench_many_pods(
    b: &mut TargetBench<'_>,
    opts: &Options,
    report: &mut Report,
    daemon: Option<i32>,
    mode: NetMode,
) -> Result<(), BenchError> {
    eprintln!(
        "[{}] starting {} {} pods",
        b.name,
        opts.list_pods,
        mode.label()
    );
    let mut pods = Vec::with_capacity(opts.list_pods);
    let measured = match start_pods(b, mode, opts.list_pods, &mut pods).await {
        Ok(()) => measure_full(b, opts, report, daemon, mode, &pods).await,
        Err(e) => Err(e),
    };
    let teardown = remove_pods(b, &pods).await;
    if b.pod_net_without_ip > 0 {
        eprintln!(
            "[{}] warning: {} pod-network sandboxes reported no IP in PodSandboxStatus",
            b.name, b.pod_net_without_ip
        );
    }
    measured?;
    teardown
}

/// Runs `n` sandboxes of `mode`, adding each to `pods` as it starts.
async fn start_pods(
    b: &mut TargetBench<'_>,
    mode: NetMode,
    n: usize,
    pods: &mut Vec<Pod>,
) -> Result<(), BenchError> {
    for _ in 0..n {
        let (pod, _) = b.run(mode).await?;
        pods.push(pod);
    }
    Ok(())
}

/// Stops and removes every one of `pods`, also past a failure; the last
/// failure is the result.
async fn remove_pods(b: &mut TargetBench<'_>, pods: &[Pod]) -> Result<(), BenchError> {
    eprintln!("[{}] removing {} pods", b.name, pods.len());
    let mut teardown = Ok(());
    for pod in pods {
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
    teardown
}

/// With `pods` running: ListPodSandbox, the daemon's memory and the
/// per-pod processes' memory.
async fn measure_full(
    b: &mut TargetBench<'_>,
    opts: &Options,
    report: &mut Report,
    daemon: Option<i32>,
    mode: NetMode,
    pods: &[Pod],
) -> Result<(), BenchError> {
    let n = pods.len();
    time_list(b, opts.list_calls, report, n).await?;
    record_daemon_memory(report, &b.name, &format!("{n} pods"), daemon);
    measure_pods(b, report, daemon, mode, pods).await
}

/// ListPodSandbox without and with a state filter, with `n` READY pods:
/// three warm-up calls, then `calls` timed ones each.
async fn time_list(
    b: &mut TargetBench<'_>,
    calls: usize,
    report: &mut Report,
    n: usize,
) -> Result<(), BenchError> {
    eprintln!(
        "[{}] timing ListPodSandbox with {n} READY pods, {calls} calls each",
        b.name
    );
    for ready_only in [false, true] {
        // Warm-up calls are not measured.
        for _ in 0..3 {
            b.list(ready_only).await?;
        }
        let mut d = Vec::with_capacity(calls);
        for _ in 0..calls {
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
    Ok(())
}
