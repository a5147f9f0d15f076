//! Pod sandboxes: the namespaces a pod's containers share, held by an infra
//! process, with the pod's network (CNI), DNS and hostname files, /dev/shm
//! and cgroup.
//!
//! Every mutating operation runs in a task of its own, so a client whose
//! deadline passes (tonic then drops the handler) never interrupts it half
//! way; a retry of RunPodSandbox with the same metadata joins the work in
//! flight. Status and List read an in-memory index and never wait for an
//! operation on another sandbox.

pub(crate) mod files;
mod infra;
pub mod network;
mod spec;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use tracing::{debug, error, info, warn};

pub use spec::*;

use crate::cgroups::CgroupLayout;
use crate::config::Config;
use crate::names::{Names, Taken};
use crate::process::{self, ProcessRef};
use crate::store::{Store, StoreError, Table};

/// How long the infra process may take to set up its namespaces.
const INFRA_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a killed process may take to disappear.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, thiserror::Error)]
pub enum SandboxError {
    #[error("{0}")]
    NotFound(String),
    #[error("{field}: {message}")]
    InvalidArgument { field: String, message: String },
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Internal(String),
}

impl SandboxError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        SandboxError::InvalidArgument {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

impl From<StoreError> for SandboxError {
    fn from(e: StoreError) -> Self {
        SandboxError::Internal(e.to_string())
    }
}

/// Filter of ListPodSandbox; `None` fields match everything.
#[derive(Debug, Default, Clone)]
pub struct SandboxFilter {
    pub id: Option<String>,
    pub ready: Option<bool>,
    pub labels: HashMap<String, String>,
}

/// A sandbox as Status and List report it.
#[derive(Debug, Clone)]
pub struct SandboxView {
    pub record: Arc<SandboxRecord>,
    pub ready: bool,
}

struct Entry {
    /// Replaced whole on change, so readers (List every second) share it
    /// instead of copying it.
    record: RwLock<Arc<SandboxRecord>>,
    /// Serialises Stop and Remove of one sandbox.
    op: tokio::sync::Mutex<()>,
}

impl Entry {
    fn snapshot(&self) -> Arc<SandboxRecord> {
        self.record
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    /// A copy to work on (Stop, Remove), written back with `update`.
    fn to_owned_record(&self) -> SandboxRecord {
        (*self.snapshot()).clone()
    }
    fn update<R>(&self, f: impl FnOnce(&mut SandboxRecord) -> R) -> R {
        let mut guard = self.record.write().unwrap_or_else(|e| e.into_inner());
        let mut rec = (**guard).clone();
        let out = f(&mut rec);
        *guard = Arc::new(rec);
        out
    }
}

type RunResult = Result<String, SandboxError>;

/// All pod sandboxes of the daemon.
pub struct Sandboxes {
    config: Arc<Config>,
    store: Arc<Store>,
    cgroups: Arc<CgroupLayout>,
    index: RwLock<HashMap<String, Arc<Entry>>>,
    names: Arc<Names<SandboxMetadata, SandboxError>>,
    pod_cidr: RwLock<Option<String>>,
    me: Weak<Sandboxes>,
}

const POD_CIDR_KEY: &str = "pod_cidr";

impl Sandboxes {
    /// Loads every sandbox from the store and reconciles it with the host:
    /// creations a crash interrupted are rolled back, removals finished,
    /// and sandboxes whose infra process is gone become NOTREADY.
    pub async fn recover(
        config: Arc<Config>,
        store: Arc<Store>,
        cgroups: Arc<CgroupLayout>,
    ) -> Result<Arc<Sandboxes>, SandboxError> {
        let pod_cidr = store.get::<String>(Table::Meta, POD_CIDR_KEY)?;
        let this = Arc::new_cyclic(|me| Sandboxes {
            config,
            store,
            cgroups,
            index: RwLock::new(HashMap::new()),
            names: Names::new(),
            pod_cidr: RwLock::new(pod_cidr),
            me: me.clone(),
        });
        let records: Vec<(String, SandboxRecord)> = this.store.load_all(Table::Sandboxes)?;
        for (_, mut rec) in records {
            match rec.state {
                SandboxState::Creating | SandboxState::Removing => {
                    info!(sandbox = %rec.id, state = ?rec.state, "finishing an interrupted operation: releasing the sandbox");
                    match this.release(&mut rec).await {
                        Ok(()) => this.persist_delete(&rec.id).await?,
                        Err(e) => {
                            error!(sandbox = %rec.id, "cannot release sandbox: {e}; keeping it NOTREADY for removal");
                            rec.state = SandboxState::NotReady;
                            this.persist(&rec).await?;
                            this.insert(rec);
                        }
                    }
                }
                SandboxState::Ready => {
                    let alive = rec.infra.map(|p| p.is_alive()).unwrap_or(false);
                    if !alive {
                        warn!(sandbox = %rec.id, "infra process is gone: sandbox is NOTREADY");
                        rec.state = SandboxState::NotReady;
                        this.persist(&rec).await?;
                    }
                    let watch = alive.then_some(rec.infra).flatten();
                    this.insert(rec.clone());
                    if let Some(p) = watch {
                        this.watch_infra(&rec.id, p);
                    }
                }
                SandboxState::NotReady => this.insert(rec),
            }
        }
        Ok(this)
    }

    fn insert(&self, rec: SandboxRecord) {
        self.names.insert(rec.spec.metadata.clone(), rec.id.clone());
        let id = rec.id.clone();
        let entry = Arc::new(Entry {
            record: RwLock::new(Arc::new(rec)),
            op: tokio::sync::Mutex::new(()),
        });
        self.index
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, entry);
    }

    fn arc(&self) -> Arc<Sandboxes> {
        self.me.upgrade().expect("Sandboxes used after drop")
    }

    async fn persist(&self, rec: &SandboxRecord) -> Result<(), SandboxError> {
        Ok(self
            .store
            .put_async(Table::Sandboxes, rec.id.clone(), rec.clone())
            .await?)
    }

    async fn persist_delete(&self, id: &str) -> Result<(), SandboxError> {
        Ok(self
            .store
            .delete_async(Table::Sandboxes, id.to_string())
            .await?)
    }

    /// Looks a sandbox up by id or unique id prefix.
    fn lookup(&self, id: &str) -> Result<Arc<Entry>, SandboxError> {
        if id.is_empty() {
            return Err(SandboxError::invalid("pod_sandbox_id", "must not be empty"));
        }
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        match crate::ids::lookup(&index, id) {
            crate::ids::Lookup::Found(e) => Ok(e.clone()),
            crate::ids::Lookup::Ambiguous => Err(SandboxError::NotFound(format!(
                "pod sandbox id prefix {id:?} is ambiguous"
            ))),
            crate::ids::Lookup::Missing => Err(SandboxError::NotFound(format!(
                "pod sandbox {id:?} not found"
            ))),
        }
    }

    pub fn pod_cidr(&self) -> Option<String> {
        self.pod_cidr
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records the pod CIDR kubelet assigns to the node (passed to CNI).
    pub async fn set_pod_cidr(&self, cidr: String) -> Result<(), SandboxError> {
        self.store
            .put_async(Table::Meta, POD_CIDR_KEY.to_string(), cidr.clone())
            .await?;
        *self.pod_cidr.write().unwrap_or_else(|e| e.into_inner()) = Some(cidr);
        Ok(())
    }

    /// The CNI network in force, if a config exists.
    pub fn cni_network(&self) -> Result<Option<network::CniNetwork>, network::CniError> {
        let net = network::CniNetwork::load(
            &self.config.cni.conf_dir,
            &self.config.cni.bin_dirs,
            &self.config.cni_cache_dir(),
        )?;
        Ok(net
            .map(|n| n.with_exec_timeout(Duration::from_secs(self.config.cni.plugin_timeout_secs))))
    }

    /// RunPodSandbox. A call with the metadata of a sandbox still being
    /// created waits for that creation and returns its id.
    pub async fn run(&self, spec: SandboxSpec) -> RunResult {
        let key = spec.metadata.clone();
        let this = self.arc();
        let result = self
            .names
            .create(
                key,
                async move { this.create(spec).await },
                |key, Taken::Exists(id)| {
                    SandboxError::AlreadyExists(format!(
                        "pod sandbox with name {:?}, namespace {:?}, uid {:?}, attempt {} already exists: {}",
                        key.name, key.namespace, key.uid, key.attempt, id
                    ))
                },
                SandboxError::Internal,
            )
            .await;
        if let Ok(id) = &result {
            debug!(sandbox = %id, "sandbox delivered");
        }
        result
    }

    async fn create(&self, spec: SandboxSpec) -> RunResult {
        let network = if spec.network == NamespaceMode::Pod {
            match self.cni_network() {
                Ok(Some(n)) => Some(n),
                Ok(None) => {
                    return Err(SandboxError::FailedPrecondition(format!(
                        "network plugin not ready: no CNI network config in {}",
                        self.config.cni.conf_dir.display()
                    )))
                }
                Err(e) => {
                    return Err(SandboxError::FailedPrecondition(format!(
                        "network plugin not ready: {e}"
                    )))
                }
            }
        } else {
            None
        };

        let id = crate::ids::new_id();
        let mut rec = SandboxRecord {
            dir: self.config.sandboxes_dir().join(&id),
            netns_path: (spec.network == NamespaceMode::Pod)
                .then(|| self.config.netns_dir().join(&id)),
            shm_path: (spec.ipc != NamespaceMode::Node)
                .then(|| self.config.sandboxes_dir().join(&id).join("shm")),
            cgroup: crate::cgroups::child_path(&spec.cgroup_parent, &id),
            id: id.clone(),
            spec,
            state: SandboxState::Creating,
            created_at: crate::ids::now_nanos(),
            infra: None,
            cni_network: None,
            ips: vec![],
        };
        // The record exists before any resource does, so a crash at any
        // point leaves something the next start can roll back.
        self.persist(&rec).await?;

        match self.set_up(&mut rec, network.as_ref()).await {
            Ok(()) => {
                rec.state = SandboxState::Ready;
                if let Err(e) = self.persist(&rec).await {
                    self.roll_back(rec).await;
                    return Err(e);
                }
                let infra = rec.infra;
                self.insert(rec);
                if let Some(p) = infra {
                    self.watch_infra(&id, p);
                }
                info!(sandbox = %id, "pod sandbox ready");
                Ok(id)
            }
            Err(e) => {
                warn!(sandbox = %id, "RunPodSandbox failed: {e}; rolling back");
                self.roll_back(rec).await;
                Err(e)
            }
        }
    }

    async fn roll_back(&self, mut rec: SandboxRecord) {
        match self.release(&mut rec).await {
            Ok(()) => {
                if let Err(e) = self.persist_delete(&rec.id).await {
                    error!(sandbox = %rec.id, "cannot delete record after rollback: {e}");
                }
            }
            Err(e) => {
                // Keep what could not be released visible, so kubelet
                // removes it later instead of it leaking silently.
                error!(sandbox = %rec.id, "rollback incomplete: {e}; keeping the sandbox NOTREADY");
                rec.state = SandboxState::NotReady;
                let _ = self.persist(&rec).await;
                self.insert(rec);
            }
        }
    }

    async fn set_up(
        &self,
        rec: &mut SandboxRecord,
        network: Option<&network::CniNetwork>,
    ) -> Result<(), SandboxError> {
        let internal =
            |what: &str, e: &dyn std::fmt::Display| SandboxError::Internal(format!("{what}: {e}"));
        std::fs::create_dir_all(&rec.dir)
            .map_err(|e| internal(&format!("create {}", rec.dir.display()), &e))?;
        let host_name;
        let hostname = if rec.spec.network == NamespaceMode::Pod && !rec.spec.hostname.is_empty() {
            rec.spec.hostname.as_str()
        } else {
            host_name = nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default();
            host_name.as_str()
        };
        files::write_atomic(
            &rec.hostname_path(),
            format!("{hostname}\n").as_bytes(),
            0o644,
        )
        .map_err(|e| internal("write hostname file", &e))?;
        let resolv = files::resolv_conf(rec.spec.dns.as_ref())
            .map_err(|e| internal("read host resolv.conf", &e))?;
        files::write_atomic(&rec.resolv_conf_path(), resolv.as_bytes(), 0o644)
            .map_err(|e| internal("write resolv.conf", &e))?;
        if let Some(shm) = &rec.shm_path {
            files::mount_shm(shm, self.config.shm_size)
                .map_err(|e| internal("mount /dev/shm tmpfs", &e))?;
        }

        self.cgroups
            .create(&rec.cgroup)
            .map_err(|e| internal(&format!("create cgroup {}", rec.cgroup), &e))?;

        let infra = infra::start(
            &self.config.monitor_binary(),
            &rec.spec,
            INFRA_START_TIMEOUT,
        )
        .await
        .map_err(|e| match e {
            infra::InfraError::Sysctl(m) => SandboxError::invalid("config.linux.sysctls", m),
            e => SandboxError::Internal(e.to_string()),
        })?;
        rec.infra = Some(infra);
        // Into its cgroup first, so that from here on the cgroup names every
        // process of the pod even if the daemon dies.
        self.cgroups
            .add_process(&rec.cgroup, infra.pid)
            .map_err(|e| {
                internal(
                    &format!("move infra process into cgroup {}", rec.cgroup),
                    &e,
                )
            })?;
        if let Some(netns) = &rec.netns_path {
            files::bind_netns(infra.pid, netns)
                .map_err(|e| internal("bind-mount network namespace", &e))?;
        }
        rec.cni_network = network.map(|n| n.name().to_string());
        self.persist(rec).await?;

        if let (Some(net), Some(netns)) = (network, rec.netns_path.clone()) {
            let ports = cni_ports(&rec.spec.port_mappings);
            let cidr = self.pod_cidr();
            let result = net
                .add(&attachment(rec, &netns, &ports, cidr.as_deref()))
                .await
                .map_err(|e| {
                    SandboxError::Internal(format!("CNI network {:?}: {e}", net.name()))
                })?;
            rec.ips = result.ips.iter().map(|ip| ip.to_string()).collect();
        }
        Ok(())
    }

    /// Releases everything a sandbox holds. Idempotent: what is already gone
    /// is skipped, so rollback, Stop, Remove and recovery share it.
    async fn release(&self, rec: &mut SandboxRecord) -> Result<(), SandboxError> {
        self.stop_processes_and_network(rec).await?;
        let mut problems = Vec::new();
        if let Some(netns) = &rec.netns_path {
            if let Err(e) = files::remove_mount_point(netns) {
                problems.push(format!("remove netns {}: {e}", netns.display()));
            }
        }
        if let Some(shm) = &rec.shm_path {
            if let Err(e) = files::unmount_all(shm) {
                problems.push(format!("unmount {}: {e}", shm.display()));
            }
        }
        if problems.is_empty() {
            if let Err(e) = files::remove_dir(&rec.dir) {
                problems.push(format!("remove {}: {e}", rec.dir.display()));
            }
        }
        // Removal retries a busy cgroup for up to a second: off the async
        // workers, which serve List and Status meanwhile.
        let (cgroups, path) = (self.cgroups.clone(), rec.cgroup.clone());
        match tokio::task::spawn_blocking(move || cgroups.remove(&path)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => problems.push(format!("remove cgroup {}: {e}", rec.cgroup)),
            Err(e) => problems.push(format!("remove cgroup {}: {e}", rec.cgroup)),
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SandboxError::Internal(problems.join("; ")))
        }
    }

    /// Detaches the pod from its network and kills its processes.
    async fn stop_processes_and_network(
        &self,
        rec: &mut SandboxRecord,
    ) -> Result<(), SandboxError> {
        if let Some(name) = rec.cni_network.clone() {
            // DEL runs while the namespace still exists; it is idempotent.
            let net = self
                .cni_network()
                .map_err(|e| SandboxError::Internal(format!("CNI config: {e}")))?;
            match net {
                Some(net) if net.name() == name => {
                    let netns = rec.netns_path.clone().unwrap_or_default();
                    let ports = cni_ports(&rec.spec.port_mappings);
                    let cidr = self.pod_cidr();
                    net.del(&attachment(rec, &netns, &ports, cidr.as_deref()))
                        .await
                        .map_err(|e| {
                            SandboxError::Internal(format!("CNI DEL from network {name:?}: {e}"))
                        })?;
                }
                Some(net) => {
                    warn!(sandbox = %rec.id, "CNI network {name:?} was replaced by {:?}: cannot detach from it", net.name())
                }
                None => {
                    warn!(sandbox = %rec.id, "CNI network {name:?} has no config any more: cannot detach from it")
                }
            }
            rec.cni_network = None;
            rec.ips.clear();
        }
        if let Some(p) = rec.infra {
            match process::kill_and_wait(p, KILL_TIMEOUT).await {
                Ok(true) => {}
                Ok(false) => {
                    return Err(SandboxError::Internal(format!(
                        "infra process {} did not exit after SIGKILL",
                        p.pid
                    )))
                }
                Err(e) => {
                    return Err(SandboxError::Internal(format!(
                        "kill infra process {}: {e}",
                        p.pid
                    )))
                }
            }
        }
        // Anything else left in the pod's cgroup (e.g. a process that joined
        // the pod's namespaces) goes too.
        self.cgroups.kill_all(&rec.cgroup).await.map_err(|e| {
            SandboxError::Internal(format!("kill processes in cgroup {}: {e}", rec.cgroup))
        })
    }

    /// Marks the sandbox NOTREADY when its infra process exits, without
    /// polling: a pidfd becomes readable on exit.
    fn watch_infra(&self, id: &str, p: ProcessRef) {
        let fd = match p.open() {
            Ok(fd) => fd,
            Err(e) => {
                warn!(sandbox = %id, "cannot watch infra process {}: {e}", p.pid);
                return;
            }
        };
        let me = self.me.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            if let Err(e) = fd.exited().await {
                warn!(sandbox = %id, "waiting for infra process: {e}");
                return;
            }
            let Some(this) = me.upgrade() else { return };
            let Ok(entry) = this.lookup(&id) else { return };
            let changed = entry.update(|r| {
                if r.state == SandboxState::Ready && r.infra == Some(p) {
                    r.state = SandboxState::NotReady;
                    true
                } else {
                    false
                }
            });
            if changed {
                warn!(sandbox = %id, "infra process {} exited: sandbox is NOTREADY", p.pid);
                if let Err(e) = this.persist(&entry.snapshot()).await {
                    error!(sandbox = %id, "cannot persist NOTREADY: {e}");
                }
            }
        });
    }

    /// StopPodSandbox: kills the pod's processes and detaches its network;
    /// the sandbox stays, NOTREADY. Idempotent.
    pub async fn stop(&self, id: &str) -> Result<(), SandboxError> {
        let entry = self.lookup(id)?;
        let this = self.arc();
        tokio::spawn(async move {
            let _op = entry.op.lock().await;
            let mut rec = entry.to_owned_record();
            if rec.state == SandboxState::NotReady
                && rec.cni_network.is_none()
                && !rec.infra.is_some_and(|p| p.is_alive())
            {
                return Ok(());
            }
            // NOTREADY before the kill, so the infra watcher finds nothing
            // to change and only this task commits the new state.
            rec.state = SandboxState::NotReady;
            entry.update(|r| r.state = SandboxState::NotReady);
            let result = this.stop_processes_and_network(&mut rec).await;
            entry.update(|r| *r = rec.clone());
            this.persist(&rec).await?;
            result
        })
        .await
        .map_err(|e| SandboxError::Internal(format!("stop task: {e}")))?
    }

    /// RemovePodSandbox: stops the pod if needed and removes everything of
    /// it. An unknown id succeeds (it is already removed).
    pub async fn remove(&self, id: &str) -> Result<(), SandboxError> {
        let entry = match self.lookup(id) {
            Ok(e) => e,
            Err(SandboxError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let this = self.arc();
        tokio::spawn(async move {
            let _op = entry.op.lock().await;
            let mut rec = entry.to_owned_record();
            if this.lookup(&rec.id).is_err() {
                return Ok(()); // removed by a concurrent call
            }
            rec.state = SandboxState::Removing;
            entry.update(|r| r.state = SandboxState::Removing);
            this.persist(&rec).await?;
            if let Err(e) = this.release(&mut rec).await {
                rec.state = SandboxState::NotReady;
                entry.update(|r| *r = rec.clone());
                this.persist(&rec).await?;
                return Err(e);
            }
            this.persist_delete(&rec.id).await?;
            this.index
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&rec.id);
            this.names.remove(&rec.spec.metadata);
            info!(sandbox = %rec.id, "pod sandbox removed");
            Ok(())
        })
        .await
        .map_err(|e| SandboxError::Internal(format!("remove task: {e}")))?
    }

    pub fn status(&self, id: &str) -> Result<SandboxView, SandboxError> {
        let entry = self.lookup(id)?;
        Ok(view(entry.snapshot()))
    }

    pub fn list(&self, filter: &SandboxFilter) -> Vec<SandboxView> {
        // An id filter matches the sandbox with that id or unique prefix.
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
        let mut out: Vec<SandboxView> = entries
            .iter()
            .map(|e| view(e.snapshot()))
            .filter(|v| filter.ready.is_none_or(|r| v.ready == r))
            .filter(|v| {
                filter
                    .labels
                    .iter()
                    .all(|(k, val)| v.record.spec.labels.get(k) == Some(val))
            })
            .collect();
        out.sort_by_key(|v| std::cmp::Reverse(v.record.created_at));
        out
    }

    /// Paths that verbose status reports.
    pub fn cgroup_dirs(&self, rec: &SandboxRecord) -> Vec<PathBuf> {
        self.cgroups.dirs(&rec.cgroup)
    }
}

fn view(record: Arc<SandboxRecord>) -> SandboxView {
    let ready = record.state == SandboxState::Ready;
    SandboxView { record, ready }
}

fn cni_ports(ports: &[PortMapping]) -> Vec<network::PortMapping> {
    ports
        .iter()
        .filter(|p| p.host_port > 0)
        .map(|p| network::PortMapping {
            protocol: p.protocol.clone(),
            container_port: p.container_port,
            host_port: p.host_port,
            host_ip: p.host_ip.clone(),
        })
        .collect()
}

fn attachment<'a>(
    rec: &'a SandboxRecord,
    netns: &'a Path,
    ports: &'a [network::PortMapping],
    cidr: Option<&'a str>,
) -> network::Attachment<'a> {
    network::Attachment {
        container_id: &rec.id,
        netns,
        ifname: "eth0",
        pod_name: &rec.spec.metadata.name,
        pod_namespace: &rec.spec.metadata.namespace,
        pod_uid: &rec.spec.metadata.uid,
        port_mappings: ports,
        pod_cidr: cidr,
    }
}
