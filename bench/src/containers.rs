//! The container workload: per run a pod with one container through
//! Create/Start/Stop/Remove, with StopContainer timed against the init's
//! exit; then memory with many containers running. With `--userns`, a
//! second pod-network pass whose pods have user namespaces of their own,
//! on the targets that report support for them.

use std::time::{Duration, Instant};

use peapod::api::{ContainerState, ContainerStatusResponse, StatusResponse};

use crate::args::{NetMode, Options};
use crate::cri::image::{BenchImage, ImageBench};
use crate::cri::runtime::TargetBench;
use crate::error::BenchError;
use crate::exit_watch::ExitWatch;
use crate::kubelet::{ContainerSpec, Pod};
use crate::memory::measure_running;
use crate::procfs::{container_pids, trap_ready};
use crate::report::Report;

/// The container workload's container: its name, its command (a shell that
/// exits at once on SIGTERM: a bare `sleep` as PID 1 ignores it) and the
/// StopContainer timeout.
pub const CONTAINER_NAME: &str = "bench";

pub const CONTAINER_SCRIPT: &str = "trap 'exit 0' TERM; sleep 3600 & wait";

pub const BENCH_CONTAINER: ContainerSpec<'static> = ContainerSpec {
    name: CONTAINER_NAME,
    script: CONTAINER_SCRIPT,
};

const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a started container may take to install its SIGTERM trap.
const TRAP_LIMIT: Duration = Duration::from_secs(10);

/// One timed container cycle.
struct ContainerTimes {
    run_pod: Duration,
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
    run_pod: Vec<Duration>,
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

/// One pass of the container workload: its pods' network mode, and
/// whether they have user namespaces of their own (`hostUsers: false`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pass {
    mode: NetMode,
    userns: bool,
}

impl Pass {
    fn plain(mode: NetMode) -> Pass {
        Pass {
            mode,
            userns: false,
        }
    }

    /// "pod-net", or "pod-net userns": what the pass's metrics start with.
    fn label(self) -> String {
        if self.userns {
            format!("{} userns", self.mode.label())
        } else {
            self.mode.label().to_string()
        }
    }

    fn metric(self, what: &str) -> String {
        format!("{} container {what}", self.label())
    }
}

/// A container workload metric of network mode `mode` (pods in the host's
/// user namespace).
pub fn container_metric(mode: NetMode, what: &str) -> String {
    Pass::plain(mode).metric(what)
}

/// Adds `samples` as metric `what` of `pass`. A userns pass's metric is
/// related to the same metric of the plain pass, so that the table gives
/// each target's ratio of the two.
fn add_timed(report: &mut Report, target: &str, pass: Pass, what: &str, samples: &[Duration]) {
    report.add_durations(target, &pass.metric(what), samples);
    if pass.userns {
        report.relate(
            &pass.metric(what),
            &Pass::plain(pass.mode).metric(what),
            "plain",
        );
    }
}

impl ContainerSamples {
    fn push(&mut self, t: ContainerTimes) {
        self.run_pod.push(t.run_pod);
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

    /// The pass's metrics; RunPodSandbox only `with_run_pod` (the passes
    /// --userns compares: a pod's user namespace is made there), so that
    /// the table without --userns stays as it was.
    fn report(&self, report: &mut Report, target: &str, pass: Pass, with_run_pod: bool) {
        let mut timed = |what, samples: &[Duration]| add_timed(report, target, pass, what, samples);
        if with_run_pod {
            timed("RunPodSandbox", &self.run_pod);
        }
        timed("CreateContainer", &self.create);
        timed("StartContainer", &self.start);
        timed("Create+Start", &self.create_start);
        timed("StopContainer (SIGTERM)", &self.stop);
        timed("stop: call to init exit", &self.to_exit);
        // A signed gap, not a cost: no ratio to the plain pass.
        report.add(
            target,
            &pass.metric("stop: init exit to reply"),
            "ms",
            self.exit_to_reply_ms.clone(),
        );
        let mut timed = |what, samples: &[Duration]| add_timed(report, target, pass, what, samples);
        timed("RemoveContainer", &self.remove);
        timed("StopPodSandbox", &self.stop_pod);
        timed("RemovePodSandbox", &self.remove_pod);
    }
}

fn ms_signed(later: Instant, earlier: Instant) -> f64 {
    if later >= earlier {
        (later - earlier).as_secs_f64() * 1000.0
    } else {
        -((earlier - later).as_secs_f64() * 1000.0)
    }
}

impl TargetBench<'_> {
    /// The init pid of a container that ContainerStatus reports RUNNING.
    pub fn running_init(
        &self,
        resp: &ContainerStatusResponse,
        id: &str,
    ) -> Result<i32, BenchError> {
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

    /// One timed cycle of `pass`: RunPodSandbox, CreateContainer,
    /// StartContainer, StopContainer (timeout 10 s, the init's exit seen by
    /// a pidfd), RemoveContainer, StopPodSandbox, RemovePodSandbox.
    async fn container_cycle(
        &mut self,
        pass: Pass,
        img: &BenchImage,
    ) -> Result<ContainerTimes, BenchError> {
        let (pod, run_pod) = self.run_pod(pass.mode, pass.userns).await?;
        let pod_id = self.pod_id(&pod)?;
        let (cid, create) = self.create_container(&pod, pass.mode, img).await?;
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
            run_pod,
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
/// network mode (and with `--userns`, in pod network with user namespaces
/// where the target supports them), then memory with
/// `--running-containers` containers.
pub async fn bench_containers(
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
        let userns = opts.userns && userns_supported(b, report).await?;
        for &mode in &opts.modes {
            // The plain pass that a userns pass is compared with reports
            // RunPodSandbox too.
            let compared = opts.userns && mode == USERNS_MODE;
            bench_container_cycles(b, opts.runs, report, Pass::plain(mode), compared, &img).await?;
        }
        if userns {
            let pass = Pass {
                mode: USERNS_MODE,
                userns: true,
            };
            bench_container_cycles(b, opts.runs, report, pass, true, &img).await?;
        }
        if let Some(&mode) = opts.modes.first() {
            if opts.running_containers > 0 {
                bench_running_containers(b, opts, report, daemon, mode, &img).await?;
            }
        }
        Ok::<(), BenchError>(())
    }
    .await;
    note_stop_anomalies(b, report);
    // An image this bench pulled goes again (cleanup does it after a signal).
    let removed = ib.remove_pulled(b.shared, image).await;
    measured?;
    removed
}

/// The network mode of the userns pass: Kubernetes refuses `hostUsers:
/// false` with `hostNetwork`, and peapod does too.
pub const USERNS_MODE: NetMode = NetMode::Pod;

/// Whether target `b` runs the userns pass: its Status must report user
/// namespaces for its default runtime handler. Otherwise a printed line
/// and a note under the table say why it was skipped.
async fn userns_supported(
    b: &mut TargetBench<'_>,
    report: &mut Report,
) -> Result<bool, BenchError> {
    let status = b.runtime_status().await?;
    let Err(why) = default_handler_userns(&status) else {
        return Ok(true);
    };
    let line = format!(
        "{}: {} userns containers skipped: {why}",
        b.name,
        USERNS_MODE.label()
    );
    println!("target {line}");
    report.notes.push(line);
    Ok(false)
}

/// Whether `status` reports user namespace support for the default
/// runtime handler (the one with the empty name, else the first), as
/// kubelet reads it before it runs a pod with `hostUsers: false`; the
/// error says why not.
fn default_handler_userns(status: &StatusResponse) -> Result<(), String> {
    let handlers = &status.runtime_handlers;
    let Some(handler) = handlers
        .iter()
        .find(|h| h.name.is_empty())
        .or(handlers.first())
    else {
        return Err("its Status lists no runtime handlers, so no user namespace support".into());
    };
    if handler.features.is_some_and(|f| f.user_namespaces) {
        return Ok(());
    }
    Err(format!(
        "its Status does not report user_namespaces for the default runtime handler {:?}",
        handler.name
    ))
}

/// A warm-up and then `runs` timed container cycles of `pass`.
async fn bench_container_cycles(
    b: &mut TargetBench<'_>,
    runs: usize,
    report: &mut Report,
    pass: Pass,
    with_run_pod: bool,
    img: &BenchImage,
) -> Result<(), BenchError> {
    eprintln!(
        "[{}] {} containers: warm-up, then {runs} Create/Start/Stop/Remove cycles",
        b.name,
        pass.label(),
    );
    b.container_cycle(pass, img).await?;
    let mut samples = ContainerSamples::default();
    for _ in 0..runs {
        samples.push(b.container_cycle(pass, img).await?);
    }
    samples.report(report, &b.name, pass, with_run_pod);
    Ok(())
}

/// Containers that StopContainer did not leave EXITED with code 0: a
/// warning and a note with the first three.
fn note_stop_anomalies(b: &TargetBench<'_>, report: &mut Report) {
    if b.stop_anomalies.is_empty() {
        return;
    }
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

/// Daemon memory and the per-container and per-pod processes, with
/// `--running-containers` pods of one running container each; they are
/// removed again also when that fails.
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
    let measured = match start_running(b, mode, img, n, &mut live).await {
        Ok(()) => measure_running(b, report, daemon, &live).await,
        Err(e) => Err(e),
    };
    let teardown = remove_running(b, &live).await;
    measured?;
    teardown
}

/// Runs `n` pods of `mode` with one started container each, adding each
/// pod to `live` as it starts and its container once created.
async fn start_running(
    b: &mut TargetBench<'_>,
    mode: NetMode,
    img: &BenchImage,
    n: usize,
    live: &mut Vec<(Pod, Option<String>)>,
) -> Result<(), BenchError> {
    for _ in 0..n {
        let (pod, _) = b.run(mode).await?;
        live.push((pod, None));
        let last = live.len() - 1;
        let (cid, _) = b.create_container(&live[last].0, mode, img).await?;
        live[last].1 = Some(cid.clone());
        b.start_container(&cid).await?;
    }
    Ok(())
}

/// Stops and removes every container and pod of `live`, also past a
/// failure; the last failure is the result.
async fn remove_running(
    b: &mut TargetBench<'_>,
    live: &[(Pod, Option<String>)],
) -> Result<(), BenchError> {
    eprintln!(
        "[{}] removing {} pods and their containers",
        b.name,
        live.len()
    );
    let mut teardown = Ok(());
    for (pod, cid) in live {
        let r = async {
            if let Some(c) = cid {
                b.stop_container(c, Duration::ZERO).await?;
                b.remove_container(c).await?;
            }
            b.stop_and_remove(pod).await
        }
        .await;
        if let Err(e) = r {
            teardown = Err(e);
        }
    }
    teardown
}

#[cfg(test)]
mod tests {
    use peapod::api::{RuntimeHandler, RuntimeHandlerFeatures};

    use super::*;

    #[test]
    fn signed_gaps() {
        let t = Instant::now();
        let later = t + Duration::from_millis(3);
        assert!((ms_signed(later, t) - 3.0).abs() < 1e-9);
        assert!((ms_signed(t, later) + 3.0).abs() < 1e-9);
    }

    fn status_with(handlers: &[(&str, bool)]) -> StatusResponse {
        StatusResponse {
            runtime_handlers: handlers
                .iter()
                .map(|&(name, userns)| RuntimeHandler {
                    name: name.to_string(),
                    features: Some(RuntimeHandlerFeatures {
                        user_namespaces: userns,
                        ..Default::default()
                    }),
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn userns_support_is_the_default_handlers() {
        // containerd 1.6: no handlers at all.
        assert!(default_handler_userns(&StatusResponse::default()).is_err());
        assert!(default_handler_userns(&status_with(&[("", true)])).is_ok());
        // The unnamed handler, wherever it is listed.
        assert!(default_handler_userns(&status_with(&[("kata", true), ("", false)])).is_err());
        assert!(default_handler_userns(&status_with(&[("kata", false), ("", true)])).is_ok());
        // Without an unnamed one, the first.
        assert!(default_handler_userns(&status_with(&[("runc", true), ("kata", false)])).is_ok());
        let no_features = StatusResponse {
            runtime_handlers: vec![RuntimeHandler::default()],
            ..Default::default()
        };
        assert!(default_handler_userns(&no_features).is_err());
    }

    #[test]
    fn userns_metrics_read_as_their_own_rows_related_to_the_plain_ones() {
        let plain = Pass::plain(NetMode::Pod);
        let userns = Pass {
            mode: NetMode::Pod,
            userns: true,
        };
        assert_eq!(
            plain.metric("Create+Start"),
            "pod-net container Create+Start"
        );
        assert_eq!(
            userns.metric("Create+Start"),
            "pod-net userns container Create+Start"
        );
        let mut samples = ContainerSamples::default();
        samples.create.push(Duration::from_millis(2));
        let mut r = Report::default();
        samples.report(&mut r, "peapod", plain, false);
        assert!(r.relations.is_empty());
        assert!(!r.metrics.iter().any(|m| m.name.contains("RunPodSandbox")));
        samples.report(&mut r, "peapod", userns, true);
        let rel = r
            .relations
            .iter()
            .find(|rel| rel.metric == "pod-net userns container CreateContainer")
            .unwrap();
        assert_eq!(rel.base, "pod-net container CreateContainer");
        // The signed gap gets no ratio.
        assert!(!r
            .relations
            .iter()
            .any(|rel| rel.metric.contains("exit to reply")));
    }
}
