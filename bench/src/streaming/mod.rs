//! The streaming workload: the URLs of CRI Exec and PortForward, driven by
//! the same SPDY client (tests/clients' `spdy-client`) for every target.
//! One pod (pod network with --cni, else the host's) holds a container
//! running `sleep` (the exec target) and one running two busybox `nc -ll`
//! servers (the port-forward peers). Measured: exec round trips of
//! `echo hi`, port-forward throughput both ways, and memory with many exec
//! sessions open, after which nothing exec'd may be left.

mod client;
mod exec;
mod port_forward;
mod sessions;

pub use client::{check_spdy_client, SPDY_CLIENT};

use std::time::Duration;

use self::client::SpdyClient;
use crate::args::{NetMode, Options};
use crate::containers::BENCH_CONTAINER;
use crate::cri::image::{BenchImage, ImageBench};
use crate::cri::runtime::TargetBench;
use crate::error::BenchError;
use crate::kubelet::{ContainerSpec, Pod};
use crate::report::{stats, Report};

/// The port-forward server's container.
const SERVER_NAME: &str = "server";

/// A streaming workload metric of network mode `mode`.
pub fn streaming_metric(mode: NetMode, what: &str) -> String {
    format!("{} {what}", mode.label())
}

/// The streaming pod's network: the pod's own when --cni asked for it
/// (the port-forward servers then listen only in the pod), else the host's.
pub fn streaming_mode(opts: &Options) -> NetMode {
    if opts.modes.contains(&NetMode::Pod) {
        NetMode::Pod
    } else {
        NetMode::Host
    }
}

/// The streaming pod and its containers, as far as they were made.
#[derive(Default)]
struct StreamingPod {
    pod: Option<Pod>,
    containers: Vec<String>,
}

/// The exec target and the server, once started.
struct Started {
    pod_id: String,
    sleeper: String,
    server: String,
}

/// The streaming workload of one target: the image, the pod, exec round
/// trips, exec sessions with memory, port-forward throughput; the pod is
/// removed again also after a failure.
pub async fn bench_streaming(
    b: &mut TargetBench<'_>,
    ib: &mut ImageBench,
    opts: &Options,
    image: &str,
    report: &mut Report,
    daemon: Option<i32>,
) -> Result<(), BenchError> {
    let client = SpdyClient::new(&opts.spdy_client, &b.shared.streaming_dir, &b.name)?;
    let img = ib.ensure_image(b.shared, image).await?;
    let mode = streaming_mode(opts);
    let mut live = StreamingPod::default();
    let measured = async {
        note_client_start(&client, opts.runs, &b.name, report).await?;
        let s = start_pod(b, mode, &img, opts.port_forward_mib, &mut live).await?;
        exec::bench_exec_round_trips(b, &client, &s.sleeper, opts.runs, mode, report).await?;
        if opts.exec_sessions > 0 {
            let n = opts.exec_sessions;
            sessions::bench_exec_sessions(b, &client, &s.sleeper, n, daemon, report).await?;
        }
        if opts.port_forward_runs > 0 {
            let resp = b.container_status(&s.server, true).await?;
            let server_init = b.running_init(&resp, &s.server)?;
            let size = (opts.port_forward_runs, opts.port_forward_mib);
            port_forward::bench_port_forward(
                b,
                &client,
                &s.pod_id,
                server_init,
                size,
                mode,
                report,
            )
            .await?;
        }
        Ok::<(), BenchError>(())
    }
    .await;
    let teardown = remove_pod(b, &live).await;
    let removed = ib.remove_pulled(b.shared, image).await;
    measured?;
    teardown?;
    removed
}

/// The client's own start and exit (`spdy-client help`, `runs` times), as
/// a note: every exec round trip spawns it, for every target alike.
async fn note_client_start(
    client: &SpdyClient,
    runs: usize,
    target: &str,
    report: &mut Report,
) -> Result<(), BenchError> {
    let mut ms = Vec::with_capacity(runs);
    for _ in 0..runs {
        ms.push(client.start_and_exit().await?.as_secs_f64() * 1000.0);
    }
    let (median, p90) = stats(&ms).unwrap_or_default();
    report.notes.push(format!(
        "{target}: the exec times include spawning the Go spdy-client per run (the same for \
         every target); its own start and exit (`spdy-client help`) takes {median:.3} ms \
         median, {p90:.3} ms p90 here"
    ));
    Ok(())
}

/// RunPodSandbox, then the sleeping container and the port-forward
/// server, each created and started; `live` holds what was made.
async fn start_pod(
    b: &mut TargetBench<'_>,
    mode: NetMode,
    img: &BenchImage,
    mib: usize,
    live: &mut StreamingPod,
) -> Result<Started, BenchError> {
    eprintln!(
        "[{}] {} streaming: a pod with a sleeping container and a port-forward server",
        b.name,
        mode.label()
    );
    let (pod, _) = b.run(mode).await?;
    let pod = live.pod.insert(pod);
    let pod_id = b.pod_id(pod)?;
    let script = port_forward::server_script(mib);
    let server = ContainerSpec {
        name: SERVER_NAME,
        script: &script,
    };
    for spec in [BENCH_CONTAINER, server] {
        let (cid, _) = b.create_container_of(pod, mode, img, spec).await?;
        live.containers.push(cid.clone());
        b.start_container(&cid).await?;
    }
    let [sleeper, server] = [&live.containers[0], &live.containers[1]].map(String::clone);
    Ok(Started {
        pod_id,
        sleeper,
        server,
    })
}

/// Stops and removes the containers and the pod of `live`, also past a
/// failure; the last failure is the result.
async fn remove_pod(b: &mut TargetBench<'_>, live: &StreamingPod) -> Result<(), BenchError> {
    let mut teardown = Ok(());
    for c in &live.containers {
        let r = async {
            b.stop_container(c, Duration::ZERO).await?;
            b.remove_container(c).await
        }
        .await;
        if let Err(e) = r {
            teardown = Err(e);
        }
    }
    if let Some(pod) = &live.pod {
        if let Err(e) = b.stop_and_remove(pod).await {
            teardown = Err(e);
        }
    }
    teardown
}
