//! Containers: lifecycle, the CRI → OCI spec conversion, security context,
//! mounts and the root filesystem.
//!
//! A container's init is the child of its monitor (`peapod-monitor
//! container`), which outlives the daemon, writes the CRI log and records
//! the exit status in a file; the daemon learns of the exit through a
//! pidfd on the monitor (no polling) and reads that file. Mutating
//! operations run in tasks of their own, so a client that gives up never
//! interrupts them; Status and List read an in-memory index.

mod error;
mod exec;
pub mod mounts;
pub mod rootfs;
pub mod runtime_spec;
pub mod security;
pub mod signals;
mod spec;
mod stats;
pub mod user;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

pub use error::ContainerError;
pub use exec::ExecOutput;
pub use spec::*;
pub use stats::ContainerStatsView;

use crate::cgroups::CgroupLayout;
use crate::config::{Config, OomScoreAdjRestriction};
use crate::image::Images;
use crate::monitor::{self, ContainerConfig, ExitStatus};
use crate::names::{Names, Taken};
use crate::oci::{CliRuntime, CreatePaths, OciRuntime};
use crate::process::ProcessRef;
use crate::sandbox::{SandboxRecord, Sandboxes};
use crate::store::{Store, Table};
use runtime_spec::HostFacts;

/// How long the monitor and the runtime's `create` may take.
const CREATE_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a SIGKILLed container may take to be reported gone.
const KILL_TIMEOUT: Duration = Duration::from_secs(30);

/// Filter of ListContainers; `None` fields match everything.
#[derive(Debug, Default, Clone)]
pub struct ContainerFilter {
    pub id: Option<String>,
    pub state: Option<ContainerState>,
    pub sandbox_id: Option<String>,
    pub labels: HashMap<String, String>,
}

struct Entry {
    /// Replaced whole on change, so readers share it.
    record: RwLock<Arc<ContainerRecord>>,
    /// Serialises Start, Stop, Remove and Update of one container.
    op: tokio::sync::Mutex<()>,
    /// Serialises commits, so the store always ends with the newest record.
    commit: tokio::sync::Mutex<()>,
    /// The state, for waiters (StopContainer waits for Exited).
    state: watch::Sender<ContainerState>,
    /// Held while an exited container's runtime state is deleted and its
    /// root filesystem unmounted in the background; true once the
    /// runtime's delete succeeded.
    runtime_deleted: tokio::sync::Mutex<bool>,
}

impl Entry {
    fn new(rec: ContainerRecord) -> Arc<Entry> {
        let (state, _) = watch::channel(rec.state);
        Arc::new(Entry {
            record: RwLock::new(Arc::new(rec)),
            op: tokio::sync::Mutex::new(()),
            commit: tokio::sync::Mutex::new(()),
            state,
            runtime_deleted: tokio::sync::Mutex::new(false),
        })
    }

    fn snapshot(&self) -> Arc<ContainerRecord> {
        self.record
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn update<R>(&self, f: impl FnOnce(&mut ContainerRecord) -> R) -> R {
        let mut guard = self.record.write().unwrap_or_else(|e| e.into_inner());
        let mut rec = (**guard).clone();
        let out = f(&mut rec);
        let state = rec.state;
        *guard = Arc::new(rec);
        drop(guard);
        self.state.send_replace(state);
        out
    }
}

type CreateResult = Result<String, ContainerError>;

/// A name in a sandbox: kubelet's identity of a container.
type NameKey = (String, ContainerMetadata);

/// All containers of the daemon.
pub struct Containers {
    config: Arc<Config>,
    store: Arc<Store>,
    cgroups: Arc<CgroupLayout>,
    sandboxes: Arc<Sandboxes>,
    images: Arc<Images>,
    runtimes: HashMap<String, Arc<dyn OciRuntime>>,
    host: HostFacts,
    index: RwLock<HashMap<String, Arc<Entry>>>,
    names: Arc<Names<NameKey, ContainerError>>,
    /// The previous CPU sample of each container, for usage_nano_cores.
    cpu_samples: Mutex<HashMap<String, (i64, u64)>>,
    me: Weak<Containers>,
}

/// The chain ids every stored container stacks, once per container: what
/// the image store must keep (see [`Images::open`]).
pub fn held_layers(store: &Store) -> Result<Vec<String>, ContainerError> {
    let records: Vec<(String, ContainerRecord)> = store.load_all(Table::Containers)?;
    Ok(records.into_iter().flat_map(|(_, r)| r.layers).collect())
}

/// The runtime handlers of the config.
pub fn runtimes(config: &Config) -> HashMap<String, Arc<dyn OciRuntime>> {
    let systemd = config.cgroup_driver == crate::cgroups::CgroupDriver::Systemd;
    config
        .runtimes
        .iter()
        .map(|(name, h)| {
            let r: Arc<dyn OciRuntime> = Arc::new(CliRuntime::new(
                name,
                &h.path,
                &config.runtime_root(name),
                systemd,
            ));
            (name.clone(), r)
        })
        .collect()
}

/// Whether this process may lower an `oom_score_adj` (CAP_SYS_RESOURCE in
/// its effective set).
fn has_cap_sys_resource() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    security::own_capability_mask("CapEff").is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}

fn own_oom_score_adj() -> i64 {
    std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn host_facts(config: &Config, cgroups: &CgroupLayout) -> HostFacts {
    let restrict = match config.restrict_oom_score_adj {
        OomScoreAdjRestriction::Always => true,
        OomScoreAdjRestriction::Never => false,
        OomScoreAdjRestriction::Auto => !has_cap_sys_resource(),
    };
    let floor = restrict.then(own_oom_score_adj);
    if let Some(f) = floor {
        info!(
            floor = f,
            "containers get an oom_score_adj of at least {f}, this daemon's own: it cannot set lower ones (no CAP_SYS_RESOURCE, or restrict_oom_score_adj = \"always\")"
        );
    }
    let facts = HostFacts {
        cgroup_v2: cgroups.is_v2(),
        hugetlb: cgroups.has_hugetlb(),
        swap: cgroups.has_swap(),
        oom_score_adj_min: floor,
        systemd_cgroup: config.cgroup_driver == crate::cgroups::CgroupDriver::Systemd,
    };
    if !facts.hugetlb {
        info!(
            "no hugetlb controller for the cgroup version in use: hugepage limits are not applied"
        );
    }
    facts
}

fn now() -> i64 {
    crate::ids::now_nanos()
}

impl Containers {
    /// Loads every container from the store and reconciles it with the
    /// host: creations a crash interrupted are rolled back, removals
    /// finished, exits that happened while the daemon was down recorded.
    pub async fn recover(
        config: Arc<Config>,
        store: Arc<Store>,
        cgroups: Arc<CgroupLayout>,
        sandboxes: Arc<Sandboxes>,
        images: Arc<Images>,
    ) -> Result<Arc<Containers>, ContainerError> {
        let host = host_facts(&config, &cgroups);
        let runtimes = runtimes(&config);
        let this = Arc::new_cyclic(|me| Containers {
            config,
            store,
            cgroups,
            sandboxes,
            images,
            runtimes,
            host,
            index: RwLock::new(HashMap::new()),
            names: Names::new(),
            cpu_samples: Mutex::new(HashMap::new()),
            me: me.clone(),
        });
        let records: Vec<(String, ContainerRecord)> = this.store.load_all(Table::Containers)?;
        let mut known = std::collections::HashSet::new();
        for (_, mut rec) in records {
            known.insert(rec.id.clone());
            match rec.state {
                ContainerState::Creating | ContainerState::Removing => {
                    info!(container = %rec.id, state = ?rec.state, "finishing an interrupted operation: removing the container");
                    match this.release(&mut rec).await {
                        Ok(()) => {
                            this.store
                                .delete_async(Table::Containers, rec.id.clone())
                                .await?;
                            this.release_layers(&rec).await;
                        }
                        Err(e) => {
                            error!(container = %rec.id, "cannot release container: {e}; keeping it as exited for removal");
                            rec.state = ContainerState::Exited;
                            rec.reason = "Error".into();
                            rec.message = format!("interrupted while being set up or removed: {e}");
                            this.put(&rec).await?;
                            this.insert(rec);
                        }
                    }
                }
                ContainerState::Created | ContainerState::Running => {
                    let monitor = rec.monitor;
                    let exit = monitor::read_exit_file(&rec.exit_file()).unwrap_or(None);
                    if let Some(exit) = exit {
                        info!(container = %rec.id, code = exit.exit_code, "container exited while the daemon was down");
                        rec.set_exited(&exit);
                        this.put(&rec).await?;
                        let id = rec.id.clone();
                        this.insert(rec);
                        this.clean_up_exited_later(&id);
                    } else if let Some(m) = monitor.filter(|m| m.is_alive()) {
                        let id = rec.id.clone();
                        this.insert(rec);
                        this.watch_monitor(&id, m);
                    } else {
                        warn!(container = %rec.id, "the container's monitor is gone without an exit status");
                        this.lost_monitor(&mut rec).await;
                        this.put(&rec).await?;
                        let id = rec.id.clone();
                        this.insert(rec);
                        this.clean_up_exited_later(&id);
                    }
                }
                ContainerState::Exited => this.insert(rec),
            }
        }
        this.sweep_orphans(&known);
        Ok(this)
    }

    /// Directories of containers the store does not know (a crash between
    /// their creation and the first commit cannot leave any, but a store
    /// restored from a backup can): unmounted and removed.
    fn sweep_orphans(&self, known: &std::collections::HashSet<String>) {
        for dir in [
            self.config.containers_dir(),
            self.config.container_layers_dir(),
        ] {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if known.contains(&name) {
                    continue;
                }
                warn!(path = %e.path().display(), "removing the directory of an unknown container");
                let _ = crate::sandbox::files::unmount_all(&e.path().join("rootfs"));
                if let Err(err) = std::fs::remove_dir_all(e.path()) {
                    warn!(path = %e.path().display(), "cannot remove: {err}");
                }
            }
        }
    }

    /// The monitor is gone and recorded nothing: the init is killed (it has
    /// nobody to report it) and the container marked exited.
    async fn lost_monitor(&self, rec: &mut ContainerRecord) {
        if let Some(init) = rec.init.filter(|p| p.is_alive()) {
            let _ = crate::process::kill_and_wait(init, KILL_TIMEOUT).await;
        }
        rec.state = ContainerState::Exited;
        rec.finished_at = now();
        rec.exit_code = 255;
        rec.reason = "Error".into();
        rec.message = "the container's monitor exited without recording an exit status".into();
    }

    fn arc(&self) -> Arc<Containers> {
        self.me.upgrade().expect("Containers used after drop")
    }

    fn insert(&self, rec: ContainerRecord) {
        self.names.insert(
            (rec.spec.sandbox_id.clone(), rec.spec.metadata.clone()),
            rec.id.clone(),
        );
        let id = rec.id.clone();
        self.index
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, Entry::new(rec));
    }

    async fn put(&self, rec: &ContainerRecord) -> Result<(), ContainerError> {
        Ok(self
            .store
            .put_async(Table::Containers, rec.id.clone(), rec.clone())
            .await?)
    }

    /// Writes the entry's newest record.
    async fn commit(&self, entry: &Entry) -> Result<(), ContainerError> {
        let _c = entry.commit.lock().await;
        self.put(&entry.snapshot()).await
    }

    fn runtime(&self, handler: &str) -> Result<Arc<dyn OciRuntime>, ContainerError> {
        let name = if handler.is_empty() {
            self.config.default_runtime.as_str()
        } else {
            handler
        };
        self.runtimes.get(name).cloned().ok_or_else(|| {
            ContainerError::FailedPrecondition(format!(
                "runtime handler {name:?} is not configured"
            ))
        })
    }

    /// The runtime handlers and what each supports, for Status.
    pub async fn handler_features(&self) -> Vec<(String, crate::oci::RuntimeFeatures)> {
        let mut out = Vec::new();
        for (name, r) in &self.runtimes {
            out.push((name.clone(), r.features().await));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Looks a container up by id or unique id prefix.
    fn lookup(&self, id: &str) -> Result<Arc<Entry>, ContainerError> {
        if id.is_empty() {
            return Err(ContainerError::invalid("container_id", "must not be empty"));
        }
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        match crate::ids::lookup(&index, id) {
            crate::ids::Lookup::Found(e) => Ok(e.clone()),
            crate::ids::Lookup::Ambiguous => Err(ContainerError::NotFound(format!(
                "container id prefix {id:?} is ambiguous"
            ))),
            crate::ids::Lookup::Missing => Err(ContainerError::NotFound(format!(
                "container {id:?} not found"
            ))),
        }
    }

    // ---------------------------------------------------------------- create

    /// CreateContainer. A call with the name of a container still being
    /// created waits for that creation and returns its id.
    pub async fn create(&self, mut spec: ContainerSpec) -> CreateResult {
        // The sandbox by its full id (the request may give a prefix): the
        // record, the name and the pod's stop and remove go by it.
        if let Ok(view) = self.sandboxes.status(&spec.sandbox_id) {
            spec.sandbox_id = view.record.id.clone();
        }
        let key: NameKey = (spec.sandbox_id.clone(), spec.metadata.clone());
        let this = self.arc();
        self.names
            .create(
                key,
                async move { this.do_create(spec).await },
                |key, Taken::Exists(id)| {
                    ContainerError::AlreadyExists(format!(
                        "container named {:?} (attempt {}) already exists in pod sandbox {}: {}",
                        key.1.name, key.1.attempt, key.0, id
                    ))
                },
                ContainerError::Internal,
            )
            .await
    }

    async fn do_create(&self, spec: ContainerSpec) -> CreateResult {
        // ---- checks: nothing is created before they pass ----
        let view = self
            .sandboxes
            .status(&spec.sandbox_id)
            .map_err(|e| match e {
                crate::sandbox::SandboxError::NotFound(m) => ContainerError::NotFound(m),
                e => ContainerError::Internal(e.to_string()),
            })?;
        let sandbox = view.record.clone();
        if !view.ready {
            return Err(ContainerError::FailedPrecondition(format!(
                "pod sandbox {} is not ready",
                sandbox.id
            )));
        }
        let image = self.find_image(&spec)?;
        let runtime = self.runtime(&sandbox.spec.runtime_handler)?;
        let features = runtime.features().await;
        let mounts = mounts::resolve_mounts(&spec.mounts, features.recursive_read_only_mounts)?;
        let mut devices = mounts::resolve_devices(&spec.devices)?;
        if spec.security.privileged {
            let requested: Vec<String> = devices.iter().map(|d| d.container_path.clone()).collect();
            devices.extend(
                mounts::host_devices()
                    .into_iter()
                    .filter(|d| !requested.contains(&d.container_path)),
            );
        }
        let log_path = self.log_path(&sandbox, &spec.log_path)?;
        let target_pid = match &spec.security.pid {
            PidMode::Target(t) => Some(self.target_pid(&sandbox.id, t)?),
            _ => None,
        };
        let stop_signal = if spec.stop_signal != 0 {
            spec.stop_signal
        } else if image.run.stop_signal.is_empty() {
            libc::SIGTERM
        } else {
            signals::parse(&image.run.stop_signal).unwrap_or_else(|| {
                warn!(image = %image.id, signal = %image.run.stop_signal, "unknown stop signal in the image config; using SIGTERM");
                libc::SIGTERM
            })
        };

        let id = crate::ids::new_id();
        let image_name = if !spec.user_specified_image.is_empty() {
            spec.user_specified_image.clone()
        } else if spec.image.starts_with("sha256:") || !image.repo_tags.contains(&spec.image) {
            image
                .repo_tags
                .first()
                .cloned()
                .unwrap_or_else(|| spec.image.clone())
        } else {
            spec.image.clone()
        };
        let image_ref = image
            .repo_digests
            .first()
            .cloned()
            .unwrap_or_else(|| image.id.clone());
        let mut rec = ContainerRecord {
            dir: self.config.containers_dir().join(&id),
            layer_dir: self.config.container_layers_dir().join(&id),
            socket: self
                .config
                .state_dir
                .join("sockets")
                .join(format!("{}.sock", &id[..24])),
            cgroup: crate::cgroups::child_path(&sandbox.spec.cgroup_parent, &id),
            runtime_handler: sandbox.spec.runtime_handler.clone(),
            own_pid_namespace: spec.security.pid == PidMode::Container,
            resources: self.in_force(&spec.resources),
            layers: image.layers.iter().map(|l| l.chain_id.clone()).collect(),
            image_id: image.id.clone(),
            image_name,
            image_ref,
            log_path,
            stop_signal,
            id: id.clone(),
            spec,
            state: ContainerState::Creating,
            created_at: now(),
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            monitor: None,
            init: None,
            user: None,
            runtime_deleted: false,
        };
        self.cgroups
            .check_path(&rec.cgroup)
            .map_err(|e| ContainerError::invalid("sandbox cgroup_parent", e.to_string()))?;

        // The layers are held and the record written before anything is
        // created, so a crash at any point leaves what the next start
        // rolls back.
        self.images.hold_layers(&rec.layers);
        if let Err(e) = self.put(&rec).await {
            self.release_layers(&rec).await;
            return Err(e);
        }
        let setup = self
            .set_up(
                &mut rec,
                &sandbox,
                &image.run,
                &mounts,
                &devices,
                target_pid,
                runtime.as_ref(),
            )
            .await;
        if let Err(e) = setup {
            warn!(container = %id, "CreateContainer failed: {e}; rolling back");
            self.roll_back(rec).await;
            return Err(e);
        }
        rec.state = ContainerState::Created;
        if let Err(e) = self.put(&rec).await {
            self.roll_back(rec).await;
            return Err(e);
        }
        let monitor = rec.monitor;
        self.insert(rec);
        if let Some(m) = monitor {
            self.watch_monitor(&id, m);
        }
        info!(container = %id, sandbox = %sandbox.id, "container created");
        Ok(id)
    }

    /// The limits that will be in force for `requested`: without a hugetlb
    /// controller no hugepage limit is applied, and `oom_score_adj` is
    /// raised to the floor when the daemon may not go lower.
    fn in_force(&self, requested: &Resources) -> Resources {
        let mut r = requested.clone();
        if !self.host.hugetlb {
            r.hugepage_limits.clear();
        }
        r.oom_score_adj =
            runtime_spec::oom_score_adj(r.oom_score_adj, self.host.oom_score_adj_min) as i64;
        r
    }

    fn find_image(
        &self,
        spec: &ContainerSpec,
    ) -> Result<Arc<crate::image::ImageRecord>, ContainerError> {
        for name in [&spec.image, &spec.user_specified_image] {
            if name.is_empty() {
                continue;
            }
            if let Ok(Some(img)) = self.images.get(name) {
                return Ok(img);
            }
        }
        Err(ContainerError::NotFound(format!(
            "config.image.image: image {:?} is not present (pull it first)",
            if spec.image.is_empty() {
                &spec.user_specified_image
            } else {
                &spec.image
            }
        )))
    }

    /// The absolute log file: the sandbox's log directory joined with the
    /// container's relative `log_path`, never outside that directory.
    fn log_path(
        &self,
        sandbox: &SandboxRecord,
        log_path: &str,
    ) -> Result<Option<PathBuf>, ContainerError> {
        if log_path.is_empty() {
            return Ok(None);
        }
        let rel = Path::new(log_path);
        let escapes = rel.is_absolute()
            || log_path.contains('\0')
            || rel
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)));
        if escapes {
            return Err(ContainerError::invalid(
                "config.log_path",
                format!("{log_path:?} must be a relative path inside the sandbox's log directory"),
            ));
        }
        if sandbox.spec.log_directory.is_empty() {
            return Err(ContainerError::invalid(
                "config.log_path",
                "set, but the pod sandbox has no log_directory",
            ));
        }
        Ok(Some(Path::new(&sandbox.spec.log_directory).join(rel)))
    }

    /// The init pid of the running container `target` of the same sandbox.
    fn target_pid(&self, sandbox_id: &str, target: &str) -> Result<i32, ContainerError> {
        let field = "config.linux.security_context.namespace_options.target_id";
        let entry = self.lookup(target).map_err(|_| {
            ContainerError::invalid(field, format!("container {target:?} not found"))
        })?;
        let rec = entry.snapshot();
        if rec.spec.sandbox_id != sandbox_id {
            return Err(ContainerError::invalid(
                field,
                format!("container {target:?} is in another pod sandbox"),
            ));
        }
        match rec.init {
            Some(p) if rec.state == ContainerState::Running && p.is_alive() => Ok(p.pid),
            _ => Err(ContainerError::FailedPrecondition(format!(
                "{field}: container {target:?} is not running"
            ))),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn set_up(
        &self,
        rec: &mut ContainerRecord,
        sandbox: &SandboxRecord,
        image: &crate::image::manifest::RunConfig,
        mounts: &[runtime_spec::ResolvedMount],
        devices: &[runtime_spec::ResolvedDevice],
        target_pid: Option<i32>,
        runtime: &dyn OciRuntime,
    ) -> Result<(), ContainerError> {
        let io = |what: &str, e: &dyn std::fmt::Display| {
            ContainerError::Internal(format!("{what}: {e}"))
        };
        std::fs::create_dir_all(&rec.dir)
            .map_err(|e| io(&format!("create {}", rec.dir.display()), &e))?;
        let lower: Vec<PathBuf> = rec
            .layers
            .iter()
            .map(|c| self.images.layer_dir(c))
            .collect();
        for l in &lower {
            if !l.is_dir() {
                return Err(ContainerError::NotFound(format!(
                    "config.image.image: layer {} of image {} is missing; pull the image again",
                    l.display(),
                    rec.image_id
                )));
            }
        }
        rootfs::mount_overlay(&lower, &rec.upper_dir(), &rec.work_dir(), &rec.rootfs())
            .map_err(|e| io("mount the container's root filesystem", &e))?;

        let sec = &rec.spec.security;
        let req = user::UserRequest {
            run_as_user: sec.run_as_user,
            run_as_group: sec.run_as_group,
            run_as_username: sec.run_as_username.clone(),
            image_user: image.user.clone(),
            supplemental_groups: sec.supplemental_groups.clone(),
        };
        let mut resolved = user::resolve_user(&rec.rootfs(), &req)?;
        if sec.supplemental_groups_strict {
            // Only the primary group and the listed ones.
            let listed: Vec<u32> = sec.supplemental_groups.iter().map(|g| *g as u32).collect();
            resolved.additional_gids.retain(|g| listed.contains(g));
        }
        rec.user = Some(resolved.clone());

        let mounted: Vec<String> = mounts.iter().map(|m| m.container_path.clone()).collect();
        rootfs::create_volumes(&rec.rootfs(), &image.volumes, &mounted)
            .map_err(|e| io("create the image's volumes", &e))?;
        let hosts = rec.dir.join("hosts");
        crate::sandbox::files::write_volatile(
            &hosts,
            rootfs::hosts_file(&sandbox.spec.hostname, &sandbox.ips).as_bytes(),
            0o644,
        )
        .map_err(|e| io("write /etc/hosts", &e))?;

        let oci = runtime_spec::build(&runtime_spec::SpecInputs {
            rec,
            sandbox,
            image,
            user: &resolved,
            mounts,
            devices,
            hosts_file: &hosts,
            target_pid,
            host: &self.host,
        })?;
        let json = serde_json::to_vec_pretty(&oci).map_err(|e| io("encode config.json", &e))?;
        crate::sandbox::files::write_volatile(&rec.dir.join("config.json"), &json, 0o600)
            .map_err(|e| io("write config.json", &e))?;

        if let Some(dir) = rec.socket.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| io(&format!("create {}", dir.display()), &e))?;
        }
        let console = rec.spec.tty.then(|| rec.console_socket());
        let argv = runtime.create_argv(
            &rec.id,
            &CreatePaths {
                bundle: &rec.bundle(),
                pid_file: &rec.pid_file(),
                log: &rec.runtime_log(),
                console_socket: console.as_deref(),
            },
        );
        let config = ContainerConfig {
            id: rec.id.clone(),
            bundle: rec.bundle(),
            pid_file: rec.pid_file(),
            exit_file: rec.exit_file(),
            socket: rec.socket(),
            log_path: rec.log_path.clone(),
            log_max_line: self.config.container_log_max_line,
            tty: rec.spec.tty,
            console_socket: console,
            stdin: rec.spec.stdin,
            stdin_once: rec.spec.stdin_once,
            oom_file: self.cgroups.oom_file(&rec.cgroup),
            runtime_log: Some(rec.runtime_log()),
            // How long output is still read after the init exited, when
            // other processes hold the container's stdout.
            drain_timeout: monitor::DEFAULT_DRAIN_TIMEOUT,
            runtime_argv: argv,
        };
        let launched = monitor::launch(&self.config.monitor_binary(), &config, CREATE_TIMEOUT)
            .await
            .map_err(|e| match e {
                monitor::MonitorError::Runtime(m) => ContainerError::FailedPrecondition(format!(
                    "the OCI runtime {} refused to create the container: {m}",
                    runtime.name()
                )),
                e => ContainerError::Internal(format!("container monitor: {e}")),
            })?;
        rec.monitor = Some(launched.monitor);
        rec.init = Some(launched.init);
        Ok(())
    }

    async fn roll_back(&self, mut rec: ContainerRecord) {
        match self.release(&mut rec).await {
            Ok(()) => {
                if let Err(e) = self
                    .store
                    .delete_async(Table::Containers, rec.id.clone())
                    .await
                {
                    error!(container = %rec.id, "cannot delete record after rollback: {e}");
                }
                self.release_layers(&rec).await;
            }
            Err(e) => {
                // Kept visible, so kubelet removes it later instead of it
                // leaking silently.
                error!(container = %rec.id, "rollback incomplete: {e}; keeping the container as exited");
                rec.state = ContainerState::Exited;
                rec.finished_at = now();
                rec.exit_code = 128;
                rec.reason = "ContainerCannotRun".into();
                rec.message = format!("creation failed and was not fully undone: {e}");
                let _ = self.put(&rec).await;
                self.insert(rec);
            }
        }
    }

    async fn release_layers(&self, rec: &ContainerRecord) {
        if let Err(e) = self.images.release_layers(&rec.layers).await {
            warn!(container = %rec.id, "deleting unused layers: {e}");
        }
    }

    /// Releases everything a container holds: its processes, the runtime's
    /// state, its cgroup, mounts and directories. Idempotent.
    async fn release(&self, rec: &mut ContainerRecord) -> Result<(), ContainerError> {
        let mut problems = Vec::new();
        // A creation cut short before the monitor reported itself: the
        // monitor (detached, so still running) and the runtime's create
        // under it are found by the container id in its arguments, and go
        // before the runtime's state is deleted, or they would recreate it.
        if rec.monitor.is_none() {
            if let Some(pid) = find_monitor(&rec.id) {
                warn!(container = %rec.id, pid, "killing the monitor of an interrupted creation");
                crate::process::kill_descendants(pid);
                if let Some(p) = ProcessRef::of(pid) {
                    let _ = crate::process::kill_and_wait(p, KILL_TIMEOUT).await;
                }
            }
        }
        if !rec.runtime_deleted {
            match self.runtime(&rec.runtime_handler) {
                Ok(rt) => {
                    if let Err(e) = rt.delete(&rec.id, true).await {
                        problems.push(e.to_string());
                    }
                }
                Err(e) => problems.push(e.to_string()),
            }
        }
        for p in [rec.init, rec.monitor].into_iter().flatten() {
            if p.is_alive() {
                if let Err(e) = crate::process::kill_and_wait(p, KILL_TIMEOUT).await {
                    problems.push(format!("kill {}: {e}", p.pid));
                }
            }
        }
        // Whatever else is in its cgroup (a host-PID container's children).
        if let Err(e) = self.cgroups.kill_all(&rec.cgroup).await {
            problems.push(format!("kill the processes of cgroup {}: {e}", rec.cgroup));
        }
        if let Err(e) = crate::sandbox::files::unmount_all(&rec.rootfs()) {
            problems.push(format!("unmount {}: {e}", rec.rootfs().display()));
        }
        for sock in [rec.socket(), rec.console_socket()] {
            match std::fs::remove_file(&sock) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    problems.push(format!("remove {}: {e}", sock.display()))
                }
                _ => {}
            }
        }
        if problems.is_empty() {
            for d in [&rec.dir, &rec.layer_dir] {
                if let Err(e) = crate::sandbox::files::remove_dir(d) {
                    problems.push(format!("remove {}: {e}", d.display()));
                }
            }
        }
        let (cgroups, path) = (self.cgroups.clone(), rec.cgroup.clone());
        match tokio::task::spawn_blocking(move || cgroups.remove(&path)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => problems.push(format!("remove cgroup {}: {e}", rec.cgroup)),
            Err(e) => problems.push(format!("remove cgroup {}: {e}", rec.cgroup)),
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ContainerError::Internal(problems.join("; ")))
        }
    }

    // ----------------------------------------------------------- exits

    /// Records the container's exit when its monitor exits (a pidfd
    /// becomes readable), without polling.
    fn watch_monitor(&self, id: &str, m: ProcessRef) {
        let me = self.me.clone();
        let id = id.to_string();
        let fd = m.open();
        tokio::spawn(async move {
            match fd {
                Ok(fd) => {
                    if let Err(e) = fd.exited().await {
                        warn!(container = %id, "waiting for the monitor: {e}");
                        return;
                    }
                }
                // Already gone between the check and the open.
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                Err(e) => {
                    warn!(container = %id, "cannot watch monitor {}: {e}", m.pid);
                    return;
                }
            }
            let Some(this) = me.upgrade() else { return };
            this.monitor_exited(&id).await;
        });
    }

    async fn monitor_exited(&self, id: &str) {
        let Ok(entry) = self.lookup(id) else { return };
        let rec = entry.snapshot();
        if !live(rec.state) {
            return;
        }
        let (exit, message) = match monitor::read_exit_file(&rec.exit_file()) {
            Ok(Some(exit)) => (exit, None),
            // No status, or none that can be read: the exit is unknown,
            // as when the monitor was killed, but the container is gone.
            lost => {
                let mut r = (*rec).clone();
                self.lost_monitor(&mut r).await;
                if let Err(e) = lost {
                    error!(container = %id, "cannot read the exit file: {e}");
                    r.message = format!("{} ({e})", r.message);
                } else {
                    warn!(container = %id, "the container's monitor exited without an exit status");
                }
                let exit = ExitStatus {
                    exit_code: r.exit_code,
                    signal: 0,
                    oom_killed: false,
                    finished_at: r.finished_at,
                };
                (exit, Some(r.message))
            }
        };
        let apply = |x: &mut ContainerRecord| {
            if live(x.state) {
                x.set_exited(&exit);
                if let Some(m) = &message {
                    x.message = m.clone();
                }
            }
        };
        // Taken before the state changes, so that a RemoveContainer right
        // after the exit waits for the cleanup below instead of racing it.
        let mut deleted = entry.runtime_deleted.lock().await;
        let cleanup = self.clean_up_exited(&rec);
        // Written to the store before the state changes in memory, so a
        // StopContainer waiting for the exit answers only once it is kept.
        let record = async {
            let _c = entry.commit.lock().await;
            let mut stored = (*entry.snapshot()).clone();
            apply(&mut stored);
            if let Err(e) = self.put(&stored).await {
                error!(container = %id, "cannot record the exit: {e}");
            }
            entry.update(apply);
            debug!(container = %id, code = exit.exit_code, oom = exit.oom_killed, "container exited");
        };
        let (done, ()) = tokio::join!(cleanup, record);
        *deleted = done;
    }

    /// An exited container needs neither the runtime's state and cgroup
    /// nor its root filesystem mounted (containerd and CRI-O unmount at
    /// exit too): both go at once, off RemoveContainer's path. Unmounting
    /// syncs the writable layer, which takes milliseconds. True when the
    /// runtime's delete succeeded; what fails is left for RemoveContainer.
    async fn clean_up_exited(&self, rec: &ContainerRecord) -> bool {
        let id = rec.id.as_str();
        let rootfs = rec.rootfs();
        let unmount = tokio::task::spawn_blocking(move || {
            crate::sandbox::files::unmount_all(&rootfs).map_err(|e| (rootfs, e))
        });
        let delete = async {
            match self.runtime(&rec.runtime_handler) {
                Ok(runtime) => match runtime.delete(id, false).await {
                    Ok(()) => true,
                    Err(e) => {
                        debug!(container = %id, "runtime delete after exit: {e}");
                        false
                    }
                },
                Err(_) => false,
            }
        };
        let (unmounted, deleted) = tokio::join!(unmount, delete);
        if let Ok(Err((path, e))) = unmounted {
            debug!(container = %id, "unmount {} after exit: {e}", path.display());
        }
        deleted
    }

    /// [`Self::clean_up_exited`] in the background for a container found
    /// exited at start; a RemoveContainer meanwhile waits for it.
    fn clean_up_exited_later(&self, id: &str) {
        let Ok(entry) = self.lookup(id) else { return };
        let this = self.arc();
        tokio::spawn(async move {
            let mut deleted = entry.runtime_deleted.lock().await;
            let rec = entry.snapshot();
            *deleted = this.clean_up_exited(&rec).await;
        });
    }

    async fn wait_exited(entry: &Entry, timeout: Duration) -> bool {
        let mut rx = entry.state.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|s| !live(*s)))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    // ---------------------------------------------------------- start/stop

    /// StartContainer.
    pub async fn start(&self, id: &str) -> Result<(), ContainerError> {
        let entry = self.lookup(id)?;
        let this = self.arc();
        tokio::spawn(async move {
            let _op = entry.op.lock().await;
            let rec = entry.snapshot();
            if rec.state != ContainerState::Created {
                return Err(ContainerError::FailedPrecondition(format!(
                    "container {} is {:?}, not created",
                    rec.id, rec.state
                )));
            }
            let runtime = this.runtime(&rec.runtime_handler)?;
            // Taken before the start: a process that exits at once has its
            // finish time recorded (by its monitor) before the start
            // returns, and must not look as if it finished before it began.
            let started = now();
            match runtime.start(&rec.id).await {
                Ok(()) => {
                    entry.update(|r| {
                        r.started_at = if r.finished_at > 0 {
                            started.min(r.finished_at)
                        } else {
                            started
                        };
                        if r.state == ContainerState::Created {
                            r.state = ContainerState::Running;
                        }
                    });
                    this.commit(&entry).await?;
                    info!(container = %rec.id, "container started");
                    Ok(())
                }
                Err(e) => {
                    // Recorded as exited before the kill, so the monitor's
                    // report of the kill does not replace the reason.
                    let message = e.to_string();
                    entry.update(|r| {
                        r.state = ContainerState::Exited;
                        r.started_at = now();
                        r.finished_at = r.started_at;
                        r.exit_code = 128;
                        r.reason = "ContainerCannotRun".into();
                        r.message = message.clone();
                    });
                    let committed = this.commit(&entry).await;
                    if let Some(init) = rec.init {
                        let _ = crate::process::kill_and_wait(init, KILL_TIMEOUT).await;
                    }
                    this.clean_up_exited_later(&rec.id);
                    committed?;
                    Err(ContainerError::Internal(message))
                }
            }
        })
        .await
        .map_err(|e| ContainerError::Internal(format!("start task: {e}")))?
    }

    /// StopContainer: the stop signal, then SIGKILL after `timeout`;
    /// returns when the container has exited. Idempotent.
    pub async fn stop(&self, id: &str, timeout: Duration) -> Result<(), ContainerError> {
        let entry = self.lookup(id)?;
        let this = self.arc();
        tokio::spawn(async move {
            let _op = entry.op.lock().await;
            this.stop_locked(&entry, timeout).await
        })
        .await
        .map_err(|e| ContainerError::Internal(format!("stop task: {e}")))?
    }

    async fn stop_locked(&self, entry: &Entry, timeout: Duration) -> Result<(), ContainerError> {
        let rec = entry.snapshot();
        let live = live(rec.state);
        if live {
            let init = rec.init.and_then(|p| p.open().ok());
            if rec.state == ContainerState::Running && !timeout.is_zero() {
                if let Some(fd) = &init {
                    if let Err(e) = fd.signal_raw(rec.stop_signal) {
                        warn!(container = %rec.id, "cannot send signal {}: {e}", rec.stop_signal);
                    }
                }
                if Self::wait_exited(entry, timeout).await {
                    self.kill_leftovers(&rec).await;
                    return Ok(());
                }
                info!(container = %rec.id, "still running {timeout:?} after signal {}: SIGKILL", rec.stop_signal);
            }
            if let Some(fd) = &init {
                let _ = fd.signal(Signal::SIGKILL);
            }
            if !rec.own_pid_namespace {
                let _ = self.cgroups.signal_all(&rec.cgroup, Signal::SIGKILL);
            }
            if !Self::wait_exited(entry, KILL_TIMEOUT).await {
                return Err(ContainerError::Internal(format!(
                    "container {} did not exit within {KILL_TIMEOUT:?} of SIGKILL",
                    rec.id
                )));
            }
        }
        self.kill_leftovers(&rec).await;
        Ok(())
    }

    /// Without a PID namespace of its own, a container's processes outlive
    /// its init; stopping the container ends them too.
    async fn kill_leftovers(&self, rec: &ContainerRecord) {
        if !rec.own_pid_namespace {
            let _ = self.cgroups.kill_all(&rec.cgroup).await;
        }
    }

    /// RemoveContainer: kills it if needed and removes everything of it.
    /// An unknown id succeeds (already removed).
    pub async fn remove(&self, id: &str) -> Result<(), ContainerError> {
        let entry = match self.lookup(id) {
            Ok(e) => e,
            Err(ContainerError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let this = self.arc();
        tokio::spawn(async move {
            let _op = entry.op.lock().await;
            let rec = entry.snapshot();
            if this.lookup(&rec.id).is_err() {
                return Ok(());
            }
            if let Err(e) = this.stop_locked(&entry, Duration::ZERO).await {
                warn!(container = %rec.id, "removing a container that did not stop: {e}");
            }
            entry.update(|r| r.state = ContainerState::Removing);
            // Waits for the runtime delete the exit started (while Removing
            // is committed) instead of running another.
            let (committed, deleted) = tokio::join!(this.commit(&entry), async {
                *entry.runtime_deleted.lock().await
            });
            committed?;
            let mut rec = (*entry.snapshot()).clone();
            rec.runtime_deleted = deleted;
            if let Err(e) = this.release(&mut rec).await {
                entry.update(|r| r.state = ContainerState::Exited);
                this.commit(&entry).await?;
                return Err(e);
            }
            this.store
                .delete_async(Table::Containers, rec.id.clone())
                .await?;
            this.index
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&rec.id);
            this.names
                .remove(&(rec.spec.sandbox_id.clone(), rec.spec.metadata.clone()));
            this.cpu_samples
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&rec.id);
            this.release_layers(&rec).await;
            info!(container = %rec.id, "container removed");
            Ok(())
        })
        .await
        .map_err(|e| ContainerError::Internal(format!("remove task: {e}")))?
    }

    /// The ids of a sandbox's containers.
    pub fn ids_in_sandbox(&self, sandbox_id: &str) -> Vec<String> {
        self.index
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|e| e.snapshot())
            .filter(|r| r.spec.sandbox_id == sandbox_id)
            .map(|r| r.id.clone())
            .collect()
    }

    /// Stops every container of a sandbox at once (StopPodSandbox).
    pub async fn stop_sandbox(&self, sandbox_id: &str) -> Result<(), ContainerError> {
        let mut first = None;
        for id in self.ids_in_sandbox(sandbox_id) {
            if let Err(e) = self.stop(&id, Duration::ZERO).await {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Removes every container of a sandbox (RemovePodSandbox).
    pub async fn remove_sandbox(&self, sandbox_id: &str) -> Result<(), ContainerError> {
        let mut first = None;
        for id in self.ids_in_sandbox(sandbox_id) {
            if let Err(e) = self.remove(&id).await {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    // ------------------------------------------------------------ queries

    pub fn status(&self, id: &str) -> Result<Arc<ContainerRecord>, ContainerError> {
        Ok(self.lookup(id)?.snapshot())
    }

    pub fn list(&self, filter: &ContainerFilter) -> Vec<Arc<ContainerRecord>> {
        let entries: Vec<Arc<Entry>> = match &filter.id {
            Some(id) if !id.is_empty() => self.lookup(id).into_iter().collect(),
            _ => self
                .index
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .cloned()
                .collect(),
        };
        let mut out: Vec<Arc<ContainerRecord>> = entries
            .iter()
            .map(|e| e.snapshot())
            .filter(|r| r.state != ContainerState::Creating)
            .filter(|r| filter.state.is_none_or(|s| visible_state(r.state) == s))
            .filter(|r| {
                filter
                    .sandbox_id
                    .as_ref()
                    .is_none_or(|s| r.spec.sandbox_id.starts_with(s.as_str()))
            })
            .filter(|r| {
                filter
                    .labels
                    .iter()
                    .all(|(k, v)| r.spec.labels.get(k) == Some(v))
            })
            .collect();
        out.sort_by_key(|r| std::cmp::Reverse(r.created_at));
        out
    }

    /// The OCI spec the container was created with (`config.json`).
    pub fn runtime_spec(&self, rec: &ContainerRecord) -> Option<serde_json::Value> {
        let bytes = std::fs::read(rec.dir.join("config.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// ReopenContainerLog.
    pub async fn reopen_log(&self, id: &str) -> Result<(), ContainerError> {
        let rec = self.lookup(id)?.snapshot();
        if rec.state != ContainerState::Running {
            return Err(ContainerError::FailedPrecondition(format!(
                "container {} is not running",
                rec.id
            )));
        }
        monitor::reopen_log(&rec.socket(), Duration::from_secs(10))
            .await
            .map_err(|e| ContainerError::Internal(format!("reopen the log of {}: {e}", rec.id)))
    }

    /// UpdateContainerResources: the update is merged into the limits in
    /// force and applied to the container's cgroup.
    pub async fn update_resources(
        &self,
        id: &str,
        update: Resources,
    ) -> Result<(), ContainerError> {
        let entry = self.lookup(id)?;
        let this = self.arc();
        tokio::spawn(async move {
            let _op = entry.op.lock().await;
            let rec = entry.snapshot();
            if !live(rec.state) {
                return Err(ContainerError::FailedPrecondition(format!(
                    "container {} is not running",
                    rec.id
                )));
            }
            let merged = this.in_force(&rec.resources.merged(&update));
            let oci = runtime_spec::resources(&merged, &this.host)?;
            let json = serde_json::to_vec(&oci)
                .map_err(|e| ContainerError::internal("encode resources", e))?;
            let file = rec.dir.join("resources.json");
            crate::sandbox::files::write_volatile(&file, &json, 0o600)
                .map_err(|e| ContainerError::internal("write resources.json", e))?;
            let runtime = this.runtime(&rec.runtime_handler)?;
            let applied = runtime.update(&rec.id, &file).await;
            let _ = std::fs::remove_file(&file);
            applied.map_err(|e| ContainerError::FailedPrecondition(e.to_string()))?;
            entry.update(|r| r.resources = merged);
            this.commit(&entry).await?;
            info!(container = %rec.id, "resources updated");
            Ok(())
        })
        .await
        .map_err(|e| ContainerError::Internal(format!("update task: {e}")))?
    }

    /// ExecSync.
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: Option<Duration>,
    ) -> Result<ExecOutput, ContainerError> {
        let rec = self.lookup(id)?.snapshot();
        if rec.state != ContainerState::Running {
            return Err(ContainerError::FailedPrecondition(format!(
                "container {} is not running",
                rec.id
            )));
        }
        let runtime = self.runtime(&rec.runtime_handler)?;
        exec::exec_sync(runtime, &self.config.monitor_binary(), &rec, cmd, timeout).await
    }
}

/// Whether a container has (or may still have) a running process.
pub(crate) fn live(s: ContainerState) -> bool {
    matches!(s, ContainerState::Created | ContainerState::Running)
}

/// The monitor process of container `id`, by its arguments.
fn find_monitor(id: &str) -> Option<i32> {
    crate::process::all_pids()
        .into_iter()
        .find(|&pid| monitor::is_container_monitor(&crate::process::cmdline(pid), id))
}

/// The state CRI reports: the transitional ones are shown as what they
/// lead from.
pub fn visible_state(s: ContainerState) -> ContainerState {
    match s {
        ContainerState::Creating => ContainerState::Created,
        ContainerState::Removing => ContainerState::Exited,
        s => s,
    }
}
