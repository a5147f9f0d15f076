//! The `peapod` command: `serve` runs the CRI daemon, `version` and
//! `config` print and check what it would run with (arguments in `cli`).

mod cli;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio_stream::wrappers::UnixListenerStream;
use tracing::{info, warn};

use peapod::api::image_service_server::ImageServiceServer;
use peapod::api::runtime_service_server::RuntimeServiceServer;
use peapod::cgroups::{CgroupLayout, CgroupManager};
use peapod::config::{self, Config};
use peapod::container::{ContainerDeps, Containers};
use peapod::host::{Host, HostOps};
use peapod::image::registry::auth_file::{auth_file_path, AUTH_FILE_ENV};
use peapod::image::registry::RegistrySettings;
use peapod::image::{ImageSettings, Images};
use peapod::metrics::{self, GrpcMetricsLayer};
use peapod::pods::Pods;
use peapod::preflight;
use peapod::sandbox::{CniPlugins, PauseMonitor, SandboxDeps, Sandboxes, INFRA_START_TIMEOUT};
use peapod::server::{ContainerEvents, Daemon, ImageApi, RuntimeApi};
use peapod::store::{Store, Table};
use peapod::streaming::StreamingServer;

use cli::{Command, ConfigCommand, LogFormat};

/// kubelet's own limit for CRI messages.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// How often a running pull logs its progress.
const PULL_PROGRESS_LOG_INTERVAL: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let cli = match cli::parse() {
        Ok(cli) => cli,
        Err(usage) => return usage,
    };
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            report(&e);
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(args) => {
            let config = args.config.load()?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(serve(config, args.log_format))?;
        }
        Command::Version => println!(
            "peapod {} (CRI runtime API v1, version {})",
            env!("CARGO_PKG_VERSION"),
            peapod::server::CRI_VERSION
        ),
        Command::Config(ConfigCommand::Default) => print!("{}", config::default_template()),
        Command::Config(ConfigCommand::Show(args)) => print!("{}", args.load()?.to_toml()),
        Command::Config(ConfigCommand::Check { file }) => return check_config(&file),
        Command::Check(args) => return check_host(args),
    }
    Ok(ExitCode::SUCCESS)
}

/// `peapod check`: the host's findings, as text or JSON.
fn check_host(args: cli::CheckArgs) -> anyhow::Result<ExitCode> {
    let config = args.config.load()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let findings = runtime.block_on(preflight::check_host(&config));
    match args.json {
        true => println!("{}", preflight::render_json(&findings)),
        false => print!("{}", preflight::render_text(&findings)),
    }
    Ok(ExitCode::from(preflight::exit_code(&findings)))
}

/// One line with the error's chain; the backtrace only when RUST_BACKTRACE
/// asked for one to be captured.
fn report(e: &anyhow::Error) {
    eprintln!("peapod: {}", chain(e));
    if e.backtrace().status() == std::backtrace::BacktraceStatus::Captured {
        eprintln!("{}", e.backtrace());
    }
}

/// `outer: inner: ...`, without the causes our errors already end with
/// (their messages include their source).
fn chain(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !line.ends_with(&cause) {
            line = format!("{line}: {cause}");
        }
    }
    line
}

/// `peapod config check`: every problem of the file on stderr (exit 1), or
/// one line saying it is valid.
fn check_config(file: &Path) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read config file {}", file.display()))?;
    let problems = config::check(&text);
    if problems.is_empty() {
        println!("{}: OK", file.display());
        return Ok(ExitCode::SUCCESS);
    }
    for problem in &problems {
        eprintln!("{}", problem.in_file(file));
    }
    Ok(ExitCode::FAILURE)
}

fn init_logging(config: &Config, format: LogFormat) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| tracing_subscriber::EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(&config.log_level));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
}

/// Makes the socket path usable: refuses when a daemon answers on it,
/// replaces a stale socket left by a crash.
async fn claim_socket(path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("stat {}", path.display())),
        Ok(_) => {}
    }
    if tokio::net::UnixStream::connect(path).await.is_ok() {
        bail!(
            "another daemon is already serving on {}; stop it first or pick another --socket",
            path.display()
        );
    }
    warn!("replacing stale socket {}", path.display());
    std::fs::remove_file(path).with_context(|| format!("remove stale socket {}", path.display()))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the daemon can only be killed; keep serving.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: finishing in-flight calls, then exiting"),
        _ = int.recv() => info!("SIGINT: finishing in-flight calls, then exiting"),
    }
}

fn image_settings(config: &Config) -> ImageSettings {
    let images = &config.images;
    let set = |p: &Path| (!p.as_os_str().is_empty()).then(|| p.to_path_buf());
    ImageSettings {
        registry: RegistrySettings {
            insecure: images.insecure_registries.clone(),
            mirrors: images
                .mirrors
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            connect_timeout: Duration::from_secs(images.connect_timeout_secs),
            stall_timeout: (images.pull_progress_timeout_secs > 0)
                .then(|| Duration::from_secs(images.pull_progress_timeout_secs)),
            registries_conf: set(&images.registries_conf),
            registries_conf_dir: set(&images.registries_conf_dir),
            auth_file: Some(auth_file_path(
                &images.auth_file,
                std::env::var_os(AUTH_FILE_ENV).as_deref(),
            )),
        },
        max_concurrent_downloads: images.max_concurrent_downloads,
        progress_log_interval: PULL_PROGRESS_LOG_INTERVAL,
    }
}

async fn serve(config: Config, log_format: LogFormat) -> anyhow::Result<()> {
    init_logging(&config, log_format);
    let config = Arc::new(config);
    for dir in [&config.root_dir, &config.state_dir] {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
            .with_context(|| format!("chmod {}", dir.display()))?;
    }
    claim_socket(&config.socket).await?;
    serve_metrics(&config).await?;
    let daemon = recover(config.clone()).await?;
    // Weak: the daemon's parts (its store) are dropped when serving ends.
    let census = Arc::downgrade(&daemon);
    metrics::count_objects_with(move || {
        census
            .upgrade()
            .map(|d| d.pods.census())
            .unwrap_or_default()
    });
    let listener = listen(&config.socket)?;
    info!(
        "peapod {} serving CRI on {}",
        env!("CARGO_PKG_VERSION"),
        config.socket.display()
    );
    // The socket accepts from here on: a `Type=notify` unit is up.
    if let Err(e) = peapod::notify::ready(&format!("serving CRI on {}", config.socket.display())) {
        warn!("cannot tell the service manager that the daemon is ready: {e}");
    }
    // The host's WARN and FAIL findings in the log, without delaying the
    // socket: `peapod check` prints the same.
    let host_config = config.clone();
    tokio::spawn(
        async move { preflight::log_findings(&preflight::check_host(&host_config).await) },
    );
    serve_cri(daemon, listener).await?;
    let _ = std::fs::remove_file(&config.socket);
    info!("stopped; pods keep running");
    Ok(())
}

/// peapod's Prometheus endpoint, when `metrics.address` asks for one.
async fn serve_metrics(config: &Config) -> anyhow::Result<()> {
    let Some(address) = config.metrics.socket_address() else {
        return Ok(());
    };
    let bound = metrics::serve(address)
        .await
        .with_context(|| format!("metrics.address: cannot listen on {address}"))?;
    info!("Prometheus metrics on http://{bound}/metrics");
    Ok(())
}

/// Counts this start of the daemon in its store: the starts so far.
fn count_start(store: &Store) -> anyhow::Result<u64> {
    const STARTS_KEY: &str = "daemon_starts";
    let starts = store.get::<u64>(Table::Meta, STARTS_KEY)?.unwrap_or(0) + 1;
    store.put(Table::Meta, STARTS_KEY, &starts)?;
    Ok(starts)
}

/// The daemon's parts, wired together, with everything the store holds
/// reconciled with the host.
async fn recover(config: Arc<Config>) -> anyhow::Result<Arc<Daemon>> {
    let store =
        Arc::new(Store::open(&config.database_path()).with_context(|| {
            format!("open metadata store {}", config.database_path().display())
        })?);
    metrics::daemon_started(count_start(&store).context("count the daemon's start")?);
    let layout = CgroupLayout::detect().context("detect cgroup hierarchies")?;
    let facts = peapod::container::host_facts(&config, &layout);
    let cgroups: Arc<dyn CgroupManager> = Arc::new(layout);
    let host: Arc<dyn HostOps> = Arc::new(Host);
    let images = Arc::new(open_images(&config, &store).await?);
    let sandbox_deps = SandboxDeps {
        cgroups: cgroups.clone(),
        host: host.clone(),
        network: Arc::new(CniPlugins::new(&config)),
        infra: Arc::new(PauseMonitor {
            binary: config.monitor_binary(),
            timeout: INFRA_START_TIMEOUT,
        }),
    };
    let sandboxes = Sandboxes::recover(config.clone(), store.clone(), sandbox_deps)
        .await
        .context("recover sandboxes")?;
    let container_deps = ContainerDeps {
        pods: sandboxes.clone(),
        images: images.clone(),
        cgroups,
        host,
        runtimes: peapod::container::runtimes(&config),
        facts,
    };
    let containers = Containers::recover(config.clone(), store, container_deps)
        .await
        .context("recover containers")?;
    let streaming =
        StreamingServer::start(&config.streaming, containers.clone(), sandboxes.clone())
            .await
            .with_context(|| {
                format!(
                    "start the streaming server on {}:{}",
                    config.streaming.address, config.streaming.port
                )
            })?;
    info!("streaming server on {}", streaming.base_url());
    let events =
        ContainerEvents::start(sandboxes.clone(), containers.clone(), config.events.buffer);
    Ok(Arc::new(Daemon {
        config,
        pods: Pods::new(sandboxes.clone(), containers.clone()),
        events,
        sandboxes,
        images,
        containers,
        streaming,
    }))
}

/// The image store, keeping the layers stored containers stack.
async fn open_images(config: &Config, store: &Arc<Store>) -> anyhow::Result<Images> {
    let held = peapod::container::held_layers(store).context("read container records")?;
    let (dir, store, settings) = (config.images_dir(), store.clone(), image_settings(config));
    tokio::task::spawn_blocking(move || Images::open(dir, store, settings, &held))
        .await
        .context("open image store")?
        .context("open image store")
}

/// The CRI socket: mode 0660, owned by root.
fn listen(socket: &Path) -> anyhow::Result<tokio::net::UnixListener> {
    let listener = tokio::net::UnixListener::bind(socket)
        .with_context(|| format!("bind {}", socket.display()))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("chmod {}", socket.display()))?;
    nix::unistd::chown(socket, Some(0.into()), Some(0.into()))
        .with_context(|| format!("chown {}", socket.display()))?;
    Ok(listener)
}

/// Serves the CRI services until SIGTERM or SIGINT.
async fn serve_cri(daemon: Arc<Daemon>, listener: tokio::net::UnixListener) -> anyhow::Result<()> {
    let runtime = RuntimeServiceServer::new(RuntimeApi::new(daemon.clone()))
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let images = ImageServiceServer::new(ImageApi::new(daemon))
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    tonic::transport::Server::builder()
        .layer(GrpcMetricsLayer)
        .add_service(runtime)
        .add_service(images)
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown_signal())
        .await
        .context("serve")
}
