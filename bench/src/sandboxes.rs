//! The pod sandbox workload: Run/Status/Stop/Remove cycles per network mode,
//! then ListPodSandbox and memory with many pods running.

use std::time::Duration;

use peapod::api::{PodSandboxState, PodSandboxStatusResponse};

use crate::args::{NetMode, Options};
use crate::cri::runtime::TargetBench;
use crate::error::BenchError;
use crate::kubelet::Pod;
use crate::memory::{pss_kib, record_daemon_memory, rss_kib};
use crate::procfs::{infra_pid, ppid_of};
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
