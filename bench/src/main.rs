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
//!
//! The container workload runs one busybox container per pod through
//! CreateContainer, StartContainer, StopContainer and RemoveContainer, and
//! can time `runc create` + `runc start` of a similar bundle as the floor.
//! Containers carry the run label too, and so are found and removed on exit;
//! the floor's runc containers are deleted with `runc delete --force`.
//! With `--userns` it runs a pod-network pass with user namespaces too
//! (kubelet's `hostUsers: false`), on targets that report support.
//!
//! The streaming workload reaches the URLs of CRI Exec and PortForward with
//! the same SPDY client (tests/clients' `spdy-client`) for every target:
//! exec round trips, port-forward throughput, and memory with many exec
//! sessions open.

mod args;
mod cgroups;
mod cleanup;
mod command;
mod containers;
mod cri;
mod error;
mod exit_watch;
mod floor;
mod kubelet;
mod memory;
mod procfs;
mod pull;
mod report;
mod run;
mod sandboxes;
mod streaming;

use std::process::ExitCode;

use peapod::api::image_service_client::ImageServiceClient;
use peapod::api::runtime_service_client::RuntimeServiceClient;
use peapod::api::{VersionRequest, VersionResponse};
use tonic::transport::Channel;

use crate::args::{parse_args, Options, Target, USAGE};
use crate::cleanup::cleanup;
use crate::containers::{bench_containers, USERNS_MODE};
use crate::cri::image::ImageBench;
use crate::cri::runtime::TargetBench;
use crate::cri::{call, connect, CALL_LIMIT};
use crate::error::{io_err, BenchError};
use crate::floor::{bench_runc_floor, RUNC};
use crate::procfs::socket_owner;
use crate::pull::{bench_pull_peer, pull_job, PullJob, SKOPEO_UMOCI};
use crate::report::{render, Report};
use crate::run::Shared;
use crate::sandboxes::bench_pods;
use crate::streaming::{bench_streaming, check_spdy_client, streaming_mode};

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
    // Without its client the streaming workload cannot run: fail before
    // anything else does.
    if opts.streaming.is_some() {
        if let Err(e) = check_spdy_client(&opts.spdy_client) {
            eprintln!("peapod-bench: {e}");
            return ExitCode::from(2);
        }
    }
    match bench(opts).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("peapod-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One run: the workloads until they end or a signal comes, then cleanup
/// and the table. True when every workload ran and cleanup left nothing.
async fn bench(opts: Options) -> Result<bool, BenchError> {
    let shared = Shared::new(&opts)?;
    if let Err(e) = std::fs::create_dir_all(&shared.pods_dir) {
        cleanup(&shared).await;
        return Err(io_err(&shared.pods_dir)(e));
    }
    print_header(&shared.run_id, &opts);
    let mut report = Report::default();
    let errors = tokio::select! {
        errs = run_all(&shared, &opts, &mut report) => errs,
        e = signalled() => vec![e],
    };
    let clean = cleanup(&shared).await;
    print_results(&report, &opts, &errors, clean);
    Ok(errors.is_empty() && clean)
}

/// What this run will do.
fn print_header(run_id: &str, opts: &Options) {
    let list_pods = if opts.sandbox_workload && !opts.modes.is_empty() {
        format!(", {} pods for ListPodSandbox", opts.list_pods)
    } else {
        String::new()
    };
    println!(
        "peapod-bench run {run_id}: {} runs per workload, workloads {}{list_pods}, cgroup parent {}",
        opts.runs,
        workloads(opts).join(" "),
        opts.cgroup_parent
    );
    if opts.containers.is_some() {
        println!(
            "containers: {} running for the memory figures",
            opts.running_containers
        );
    }
    if opts.streaming.is_some() {
        println!(
            "streaming: {} exec round trips by {} (a Go process spawned per run, for every \
             target alike: its start is part of both exec times), {} exec sessions for the \
             memory figures, {} port-forward transfers of {} MiB per direction",
            opts.runs,
            opts.spdy_client.display(),
            opts.exec_sessions,
            opts.port_forward_runs,
            opts.port_forward_mib
        );
    }
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
}

/// The workloads' names in the order they run on each target.
fn workloads(opts: &Options) -> Vec<String> {
    let sandbox_modes = opts
        .modes
        .iter()
        .filter(|_| opts.sandbox_workload)
        .map(|m| m.label().to_string());
    let container_modes = opts.modes.iter().filter_map(|m| {
        opts.containers
            .as_ref()
            .map(|i| format!("{}-containers({i})", m.label()))
    });
    let userns = opts
        .containers
        .as_ref()
        .filter(|_| opts.userns)
        .map(|i| format!("{}-userns-containers({i})", USERNS_MODE.label()));
    let streaming = opts
        .streaming
        .as_ref()
        .map(|i| format!("{}-streaming({i})", streaming_mode(opts).label()));
    sandbox_modes
        .chain(container_modes)
        .chain(userns)
        .chain(streaming)
        .chain(opts.runc_floor.then(|| "runc-floor".to_string()))
        .chain(opts.pulls.iter().map(|i| format!("pull {i}")))
        .collect()
}

/// The table, then the errors.
fn print_results(report: &Report, opts: &Options, errors: &[BenchError], clean: bool) {
    println!();
    let mut peers = opts.pull_peers.clone();
    if opts.runc_floor {
        peers.push(RUNC.to_string());
    }
    print!("{}", render(report, &opts.targets, &peers));
    for e in errors {
        println!("error: {e}");
    }
    if !clean {
        println!("error: cleanup left sandboxes or cgroups behind (see above)");
    }
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

/// Every workload on every target, then the floor and the pull peer; a
/// failure ends only its own part.
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
    if opts.runc_floor {
        if let Err(e) = bench_runc_floor(shared, opts, report).await {
            eprintln!("[{RUNC}] failed: {e}");
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

/// The workloads of one CRI target: sandboxes, containers, streaming,
/// pulls.
async fn bench_target(
    shared: &Shared,
    opts: &Options,
    target: &Target,
    pulls: &[PullJob],
    report: &mut Report,
) -> Result<(), BenchError> {
    let channel = connect(target).await?;
    let images = ImageServiceClient::new(channel.clone());
    let mut rt = RuntimeServiceClient::new(channel);
    shared.register(&target.name, &rt, &images);
    let v = runtime_version(&target.name, &mut rt).await?;
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

    let mut b = TargetBench::new(shared, &target.name, rt);
    let mut ib = ImageBench {
        name: target.name.clone(),
        client: images,
        store: opts.stores.get(&target.name).cloned(),
    };
    if !opts.modes.is_empty() && opts.sandbox_workload {
        bench_pods(&mut b, opts, report, daemon).await?;
    }
    if let Some(image) = &opts.containers {
        bench_containers(&mut b, &mut ib, opts, image, report, daemon).await?;
    }
    if let Some(image) = &opts.streaming {
        bench_streaming(&mut b, &mut ib, opts, image, report, daemon).await?;
    }
    for p in pulls {
        ib.bench_pull(p, opts.pull_runs, report).await?;
    }
    Ok(())
}

async fn runtime_version(
    target: &str,
    rt: &mut RuntimeServiceClient<Channel>,
) -> Result<VersionResponse, BenchError> {
    let req = VersionRequest {
        version: "0.1.0".into(),
    };
    let (v, _) = call(target, "Version", CALL_LIMIT, rt.version(req)).await?;
    Ok(v)
}
