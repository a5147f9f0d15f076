//! CNI client: the CNI 1.0 exec protocol as kubelet expects it from a CRI
//! runtime. RunPodSandbox calls [`CniNetwork::add`], StopPodSandbox and
//! RemovePodSandbox call [`CniNetwork::del`] (idempotent), and Status asks
//! [`CniNetwork::load`] whether a network config exists at all.
//!
//! Like libcni, the network is the lexically first loadable file in the conf
//! dir, the result of a successful ADD is cached on disk so DEL and CHECK can
//! pass it as `prevResult`, and plugins are looked up in the bin dirs in order.

use crate::host::DEFAULT_PATH;
use std::io;
use std::net::IpAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

/// Where kubelet-era runtimes look for network configs.
pub const DEFAULT_CONF_DIR: &str = "/etc/cni/net.d";
/// Upstream's install dir first, then Debian's `containernetworking-plugins`.
pub const DEFAULT_BIN_DIRS: [&str; 2] = ["/opt/cni/bin", "/usr/lib/cni"];
/// Per plugin exec; kubelet gives RunPodSandbox 4 minutes in total.
pub const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(60);
/// The `reason` of the NetworkReady condition when no config is loadable.
pub const NOT_READY_REASON: &str = "NetworkPluginNotReady";

/// Plugin output kept for error messages; more is read and dropped so a
/// chatty plugin never blocks on a full pipe.
const OUTPUT_LIMIT: usize = 1 << 20;
const STDERR_IN_ERROR: usize = 2048;
const CONFIG_EXTENSIONS: [&str; 3] = ["conflist", "conf", "json"];
/// Spec 1.0 well-known error: the container is unknown, no cleanup needed.
const ERR_CONTAINER_UNKNOWN: u64 = 3;

#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("reading CNI config dir {path}: {source}")]
    ReadConfDir { path: PathBuf, source: io::Error },
    #[error("invalid {field} {value:?}: {reason}")]
    InvalidArgument {
        field: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("network namespace {path} does not exist")]
    NetnsMissing { path: PathBuf },
    #[error("CNI plugin {plugin:?} not found in {dirs}")]
    PluginNotFound { plugin: String, dirs: String },
    #[error("CNI plugin {plugin:?} ({command}): exec {path}: {source}")]
    PluginSpawn {
        plugin: String,
        command: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("CNI plugin {plugin:?} ({command}): reading its output: {source}")]
    PluginIo {
        plugin: String,
        command: &'static str,
        source: io::Error,
    },
    #[error("CNI plugin {plugin:?} ({command}) failed: {message}")]
    PluginFailed {
        plugin: String,
        command: &'static str,
        /// The CNI error code when the plugin printed a JSON error.
        code: Option<u64>,
        message: String,
    },
    #[error("CNI plugin {plugin:?} ({command}) did not finish within {timeout:?} and was killed")]
    PluginTimeout {
        plugin: String,
        command: &'static str,
        timeout: Duration,
    },
    #[error("CNI plugin {plugin:?} ({command}) returned an invalid result: {reason}")]
    BadResult {
        plugin: String,
        command: &'static str,
        reason: String,
    },
    #[error("CNI result cache {path}: {source}")]
    Cache { path: PathBuf, source: io::Error },
    #[error("CNI CHECK of network {network:?}: no cached ADD result at {path}")]
    NoCachedResult { network: String, path: PathBuf },
}

/// The message for the NetworkReady condition when [`CniNetwork::load`]
/// found nothing.
pub fn not_ready_message(conf_dir: &Path) -> String {
    format!(
        "Network plugin returns error: no valid CNI network config (.conflist, .conf, .json) in {}",
        conf_dir.display()
    )
}

/// One CRI port mapping; only those with `host_port > 0` reach the plugins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortMapping {
    /// "TCP", "UDP" or "SCTP" in any case.
    pub protocol: String,
    pub container_port: i32,
    pub host_port: i32,
    /// Empty: all host addresses.
    pub host_ip: String,
}

/// What one pod sandbox brings to an ADD or DEL.
#[derive(Debug, Clone, Copy)]
pub struct Attachment<'a> {
    pub container_id: &'a str,
    /// The pod's bind-mounted network namespace file.
    pub netns: &'a Path,
    pub ifname: &'a str,
    pub pod_name: &'a str,
    pub pod_namespace: &'a str,
    pub pod_uid: &'a str,
    pub port_mappings: &'a [PortMapping],
    pub pod_cidr: Option<&'a str>,
}

/// The outcome of an ADD.
#[derive(Debug, Clone, PartialEq)]
pub struct CniResult {
    /// The pod's addresses, IPv4 first: kubelet takes the first as primary.
    pub ips: Vec<IpAddr>,
    /// The last plugin's result as it printed it.
    pub raw: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Del,
    Check,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Add => "ADD",
            Op::Del => "DEL",
            Op::Check => "CHECK",
        }
    }
}

/// A loaded network config list plus where its plugins and results live.
#[derive(Debug, Clone)]
pub struct CniNetwork {
    name: String,
    cni_version: String,
    disable_check: bool,
    /// Each plugin's config object as written in the file.
    plugins: Vec<Map<String, Value>>,
    source: PathBuf,
    bin_dirs: Vec<PathBuf>,
    cache_dir: PathBuf,
    exec_timeout: Duration,
}

/// The pieces of a config file that describe the network.
#[derive(Debug)]
struct ParsedList {
    name: String,
    cni_version: String,
    disable_check: bool,
    plugins: Vec<Map<String, Value>>,
}

impl CniNetwork {
    /// Loads the lexically first valid config in `conf_dir`; `Ok(None)` when
    /// there is none (the network is not ready). Invalid files are skipped
    /// with a warning so one bad file does not take the node's network down.
    pub fn load(
        conf_dir: &Path,
        bin_dirs: &[PathBuf],
        cache_dir: &Path,
    ) -> Result<Option<CniNetwork>, CniError> {
        let entries = match std::fs::read_dir(conf_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(CniError::ReadConfDir {
                    path: conf_dir.to_path_buf(),
                    source,
                })
            }
        };
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| CniError::ReadConfDir {
                path: conf_dir.to_path_buf(),
                source,
            })?;
            let path = entry.path();
            let wanted = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| CONFIG_EXTENSIONS.contains(&e));
            if wanted && path.is_file() {
                files.push(path);
            }
        }
        files.sort();

        for path in files {
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "skipping unreadable CNI config");
                    continue;
                }
            };
            let is_list = path.extension().and_then(|e| e.to_str()) == Some("conflist");
            match parse_config(&bytes, is_list) {
                Ok(list) => {
                    tracing::debug!(path = %path.display(), network = %list.name, "loaded CNI network config");
                    return Ok(Some(CniNetwork {
                        name: list.name,
                        cni_version: list.cni_version,
                        disable_check: list.disable_check,
                        plugins: list.plugins,
                        source: path,
                        bin_dirs: bin_dirs.to_vec(),
                        cache_dir: cache_dir.to_path_buf(),
                        exec_timeout: DEFAULT_EXEC_TIMEOUT,
                    }));
                }
                Err(reason) => {
                    tracing::warn!(path = %path.display(), %reason, "skipping invalid CNI config");
                }
            }
        }
        Ok(None)
    }

    /// Replaces the per-plugin exec timeout (default [`DEFAULT_EXEC_TIMEOUT`]).
    pub fn with_exec_timeout(mut self, timeout: Duration) -> Self {
        self.exec_timeout = timeout;
        self
    }

    /// The network's `name`, part of every plugin's config and cache file.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The list's `cniVersion` (empty when the file has none).
    pub fn cni_version(&self) -> &str {
        &self.cni_version
    }

    /// The config file this network was loaded from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The plugin types in exec order (ADD order).
    pub fn plugin_types(&self) -> Vec<&str> {
        self.plugins.iter().map(plugin_type).collect()
    }

    /// Where the ADD result for this attachment is cached.
    pub fn cache_path(&self, a: &Attachment<'_>) -> PathBuf {
        self.cache_dir
            .join(format!("{}-{}-{}", self.name, a.container_id, a.ifname))
    }

    /// Runs ADD through every plugin in order, chaining results, and caches
    /// the final one. On error the caller must [`CniNetwork::del`] to undo
    /// whatever the plugins that ran did.
    pub async fn add(&self, a: &Attachment<'_>) -> Result<CniResult, CniError> {
        validate(a)?;
        if !a.netns.exists() {
            return Err(CniError::NetnsMissing {
                path: a.netns.to_path_buf(),
            });
        }
        let netns = a.netns.to_string_lossy().into_owned();
        let caps = capability_args(a);
        let mut prev: Option<Value> = None;
        for plugin in &self.plugins {
            let conf = self.plugin_config(plugin, &caps, prev.as_ref());
            let out = self.exec_plugin(plugin, Op::Add, a, &netns, &conf).await?;
            let ty = plugin_type(plugin);
            let result: Value = serde_json::from_slice(&out).map_err(|e| CniError::BadResult {
                plugin: ty.to_string(),
                command: Op::Add.as_str(),
                reason: if out.iter().all(u8::is_ascii_whitespace) {
                    "no result on stdout".to_string()
                } else {
                    format!("not JSON: {e}")
                },
            })?;
            if !result.is_object() {
                return Err(CniError::BadResult {
                    plugin: ty.to_string(),
                    command: Op::Add.as_str(),
                    reason: "result is not a JSON object".to_string(),
                });
            }
            prev = Some(result);
        }
        // load() rejects lists without plugins, so there is always a result.
        let raw = prev.unwrap_or(Value::Null);
        self.write_cache(a, &raw, &caps).await?;
        Ok(CniResult {
            ips: pod_ips(&raw, a.ifname),
            raw,
        })
    }

    /// Runs DEL through every plugin in reverse order with the cached ADD
    /// result as `prevResult`, then drops the cache. Safe to repeat and safe
    /// after a partial ADD: plugins must treat missing resources as done.
    pub async fn del(&self, a: &Attachment<'_>) -> Result<(), CniError> {
        validate(a)?;
        // The spec lets DEL run without a netns; a path that is no longer a
        // namespace would only make plugins fail on something already gone.
        let netns = if is_netns(a.netns) {
            a.netns.to_string_lossy().into_owned()
        } else {
            tracing::debug!(netns = %a.netns.display(), container_id = a.container_id, "netns gone; CNI DEL without CNI_NETNS");
            String::new()
        };
        let cached = self.read_cache(a).await?;
        // portmap removes nothing unless DEL repeats the ADD's mappings, so
        // what the ADD used wins over what the caller has now.
        let caps = match &cached {
            Some(entry) => entry.caps.clone(),
            None => capability_args(a),
        };
        let prev = cached.map(|entry| entry.result);
        for plugin in self.plugins.iter().rev() {
            let conf = self.plugin_config(plugin, &caps, prev.as_ref());
            match self.exec_plugin(plugin, Op::Del, a, &netns, &conf).await {
                Ok(_) => {}
                // A plugin that is not installed holds nothing we could free;
                // failing here would make the pod impossible to remove.
                Err(e @ CniError::PluginNotFound { .. }) => {
                    tracing::warn!(error = %e, container_id = a.container_id, "CNI DEL: skipping missing plugin");
                }
                Err(CniError::PluginFailed {
                    code: Some(ERR_CONTAINER_UNKNOWN),
                    plugin,
                    message,
                    ..
                }) => {
                    tracing::debug!(%plugin, %message, container_id = a.container_id, "CNI DEL: plugin reports container unknown");
                }
                Err(e) => return Err(e),
            }
        }
        let path = self.cache_path(a);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(CniError::Cache { path, source }),
        }
    }

    /// Runs CHECK through every plugin in order against the cached ADD result.
    /// A no-op when the list sets `disableCheck` or predates CNI 0.4.0.
    pub async fn check(&self, a: &Attachment<'_>) -> Result<(), CniError> {
        validate(a)?;
        if self.disable_check || version_before(&self.cni_version, (0, 4, 0)) {
            return Ok(());
        }
        if !a.netns.exists() {
            return Err(CniError::NetnsMissing {
                path: a.netns.to_path_buf(),
            });
        }
        let Some(cached) = self.read_cache(a).await? else {
            return Err(CniError::NoCachedResult {
                network: self.name.clone(),
                path: self.cache_path(a),
            });
        };
        let netns = a.netns.to_string_lossy().into_owned();
        for plugin in &self.plugins {
            let conf = self.plugin_config(plugin, &cached.caps, Some(&cached.result));
            self.exec_plugin(plugin, Op::Check, a, &netns, &conf)
                .await?;
        }
        Ok(())
    }

    /// The plugin's stdin: its own config with the list's name and version,
    /// the previous result, and those capability args it declares it takes.
    fn plugin_config(
        &self,
        plugin: &Map<String, Value>,
        caps: &Map<String, Value>,
        prev: Option<&Value>,
    ) -> Value {
        let mut conf = plugin.clone();
        conf.insert("name".to_string(), Value::String(self.name.clone()));
        if !self.cni_version.is_empty() {
            conf.insert(
                "cniVersion".to_string(),
                Value::String(self.cni_version.clone()),
            );
        }
        if let Some(prev) = prev {
            conf.insert("prevResult".to_string(), prev.clone());
        }
        let declared = plugin.get("capabilities").and_then(Value::as_object);
        let runtime: Map<String, Value> = caps
            .iter()
            .filter(|(cap, _)| {
                declared
                    .and_then(|d| d.get(cap.as_str()))
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
            })
            .map(|(cap, value)| (cap.clone(), value.clone()))
            .collect();
        if !runtime.is_empty() {
            conf.insert("runtimeConfig".to_string(), Value::Object(runtime));
        }
        Value::Object(conf)
    }

    fn find_plugin(&self, ty: &str) -> Result<PathBuf, CniError> {
        self.bin_dirs
            .iter()
            .map(|d| d.join(ty))
            .find(|p| p.is_file())
            .ok_or_else(|| CniError::PluginNotFound {
                plugin: ty.to_string(),
                dirs: self
                    .bin_dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(":"),
            })
    }

    /// Execs one plugin and returns its stdout on success.
    async fn exec_plugin(
        &self,
        plugin: &Map<String, Value>,
        op: Op,
        a: &Attachment<'_>,
        netns: &str,
        conf: &Value,
    ) -> Result<Vec<u8>, CniError> {
        let ty = plugin_type(plugin);
        let path = self.find_plugin(ty)?;
        let stdin_bytes = conf.to_string().into_bytes();
        let cni_path = self
            .bin_dirs
            .iter()
            .map(|d| d.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(":");
        let cni_args = format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
            a.pod_namespace, a.pod_name, a.container_id, a.pod_uid
        );

        let mut cmd = Command::new(&path);
        // Plugins run iptables, ip6tables, modprobe by name.
        if std::env::var_os("PATH").is_none() {
            cmd.env("PATH", DEFAULT_PATH);
        }
        cmd.env("CNI_COMMAND", op.as_str())
            .env("CNI_CONTAINERID", a.container_id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", a.ifname)
            .env("CNI_ARGS", &cni_args)
            .env("CNI_PATH", &cni_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Own process group: a timeout must also kill the IPAM plugin or
            // iptables the plugin is running.
            .process_group(0)
            .kill_on_drop(true);

        let started = Instant::now();
        let mut child = spawn_retrying(&mut cmd)
            .await
            .map_err(|source| CniError::PluginSpawn {
                plugin: ty.to_string(),
                command: op.as_str(),
                path: path.clone(),
                source,
            })?;
        // Declared after `child` so it is dropped first: if this future is
        // dropped mid-exec, the whole group dies while the leader is unreaped.
        let mut group = GroupKiller::new(child.id());
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();

        let run = async {
            let write = async {
                let Some(mut stdin) = stdin else {
                    return Ok(());
                };
                let written = stdin.write_all(&stdin_bytes).await;
                // Dropping stdin closes it: the plugin reads to EOF.
                drop(stdin);
                match written {
                    // The plugin may exit without reading; its status says why.
                    Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
                    other => other,
                }
            };
            let (written, out, err) = tokio::join!(write, read_capped(stdout), read_capped(stderr));
            let status = child.wait().await;
            (written, out, err, status)
        };

        let (written, out, err, status) = match tokio::time::timeout(self.exec_timeout, run).await {
            Ok(done) => {
                // The leader was reaped (or waiting failed): its pid is free.
                group.disarm();
                done
            }
            Err(_) => {
                group.kill();
                group.disarm();
                let _ = child.start_kill();
                let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
                tracing::warn!(plugin = ty, command = op.as_str(), container_id = a.container_id, timeout = ?self.exec_timeout, "CNI plugin timed out; killed");
                return Err(CniError::PluginTimeout {
                    plugin: ty.to_string(),
                    command: op.as_str(),
                    timeout: self.exec_timeout,
                });
            }
        };
        let io_err = |source| CniError::PluginIo {
            plugin: ty.to_string(),
            command: op.as_str(),
            source,
        };
        written.map_err(io_err)?;
        let out = out.map_err(io_err)?;
        let err = err.map_err(io_err)?;
        let status = status.map_err(io_err)?;
        tracing::debug!(plugin = ty, command = op.as_str(), container_id = a.container_id, elapsed = ?started.elapsed(), %status, "CNI plugin finished");

        if status.success() {
            return Ok(out);
        }
        let (code, message) = plugin_error(&out, &err, status);
        Err(CniError::PluginFailed {
            plugin: ty.to_string(),
            command: op.as_str(),
            code,
            message,
        })
    }

    async fn write_cache(
        &self,
        a: &Attachment<'_>,
        result: &Value,
        caps: &Map<String, Value>,
    ) -> Result<(), CniError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let path = self.cache_path(a);
        let entry = json!({
            "kind": "peapodCniResultV1",
            "networkName": self.name,
            "cniVersion": self.cni_version,
            "containerId": a.container_id,
            "ifName": a.ifname,
            "capabilityArgs": caps,
            "result": result,
        });
        let bytes = entry.to_string().into_bytes();
        let dir = self.cache_dir.clone();
        let tmp = dir.join(format!(
            ".{}.tmp-{}-{}",
            path.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default(),
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let target = path.clone();
        let tmp_for_task = tmp.clone();
        let written = tokio::task::spawn_blocking(move || -> io::Result<()> {
            use std::io::Write;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)?;
            let mut f = std::fs::File::create(&tmp_for_task)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp_for_task, &target)?;
            // Make the rename itself durable.
            std::fs::File::open(&dir)?.sync_all()
        })
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e)));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.map_err(|source| CniError::Cache { path, source })
    }

    /// The cached ADD; an unreadable or garbled cache only costs the plugins
    /// their `prevResult`, which DEL may legitimately lack.
    async fn read_cache(&self, a: &Attachment<'_>) -> Result<Option<CachedAdd>, CniError> {
        let path = self.cache_path(a);
        let bytes = match tokio::fs::read(&path).await {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CniError::Cache { path, source }),
        };
        let mut entry = match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(entry)) => entry,
            Ok(_) => {
                tracing::warn!(path = %path.display(), "CNI result cache is not a JSON object; ignoring it");
                return Ok(None);
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "CNI result cache is not valid JSON; ignoring it");
                return Ok(None);
            }
        };
        let Some(result @ Value::Object(_)) = entry.remove("result") else {
            tracing::warn!(path = %path.display(), "CNI result cache has no result object; ignoring it");
            return Ok(None);
        };
        let caps = match entry.remove("capabilityArgs") {
            Some(Value::Object(caps)) => caps,
            _ => capability_args(a),
        };
        Ok(Some(CachedAdd { result, caps }))
    }
}

/// What a successful ADD left for DEL and CHECK.
struct CachedAdd {
    result: Value,
    caps: Map<String, Value>,
}

/// The runtime values plugins can ask for by capability (CONVENTIONS.md of
/// the CNI repo), keyed by capability name; absent when there is nothing to say.
fn capability_args(a: &Attachment<'_>) -> Map<String, Value> {
    let mut caps = Map::new();
    let ports: Vec<Value> = a
        .port_mappings
        .iter()
        .filter(|p| p.host_port > 0)
        .map(|p| {
            let protocol = if p.protocol.is_empty() {
                "tcp".to_string()
            } else {
                p.protocol.to_ascii_lowercase()
            };
            let mut m = json!({
                "hostPort": p.host_port,
                "containerPort": p.container_port,
                "protocol": protocol,
            });
            if !p.host_ip.is_empty() {
                m["hostIP"] = Value::String(p.host_ip.clone());
            }
            m
        })
        .collect();
    if !ports.is_empty() {
        caps.insert("portMappings".to_string(), Value::Array(ports));
    }
    if let Some(cidr) = a.pod_cidr.filter(|c| !c.is_empty()) {
        caps.insert("ipRanges".to_string(), json!([[{ "subnet": cidr }]]));
    }
    caps
}

fn plugin_type(plugin: &Map<String, Value>) -> &str {
    plugin.get("type").and_then(Value::as_str).unwrap_or("")
}

/// Names end up in a file name (the cache) and in plugin env vars.
fn validate(a: &Attachment<'_>) -> Result<(), CniError> {
    let check = |field: &'static str, value: &str| {
        let reason = if value.is_empty() {
            Some("must not be empty")
        } else if value.contains('/') || value.contains('\0') || value == "." || value == ".." {
            Some("must be a plain name")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(CniError::InvalidArgument {
                field,
                value: value.to_string(),
                reason,
            }),
            None => Ok(()),
        }
    };
    check("container_id", a.container_id)?;
    check("ifname", a.ifname)?;
    // CNI_ARGS is `;`-separated `K=V`: a stray separator would forge a key.
    for (field, value) in [
        ("pod_name", a.pod_name),
        ("pod_namespace", a.pod_namespace),
        ("pod_uid", a.pod_uid),
        ("container_id", a.container_id),
    ] {
        if value.contains(';') || value.contains('=') {
            return Err(CniError::InvalidArgument {
                field,
                value: value.to_string(),
                reason: "must not contain ';' or '='",
            });
        }
    }
    Ok(())
}

/// True when `path` is a mounted network namespace (nsfs), not merely a file.
fn is_netns(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
        .unwrap_or(false)
}

/// Retries a spawn that hit ETXTBSY: a plugin binary just written (an
/// upgrade, a test) can still be open for writing in a concurrently forked
/// child for a moment.
async fn spawn_retrying(cmd: &mut Command) -> io::Result<Child> {
    let mut attempts = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempts < 10 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            other => return other,
        }
    }
}

/// SIGKILLs a plugin's process group (it runs as leader) unless disarmed:
/// killing only the plugin would leave the IPAM plugin or iptables it runs.
struct GroupKiller {
    pgid: Option<nix::unistd::Pid>,
}

impl GroupKiller {
    fn new(pid: Option<u32>) -> GroupKiller {
        GroupKiller {
            pgid: pid
                .and_then(|p| i32::try_from(p).ok())
                .map(nix::unistd::Pid::from_raw),
        }
    }

    fn kill(&self) {
        if let Some(pgid) = self.pgid {
            // ESRCH: everyone in the group already exited.
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        }
    }

    /// Must be called once the leader is reaped, when its id may be reused.
    fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads a pipe to EOF keeping at most [`OUTPUT_LIMIT`] bytes.
async fn read_capped<R: AsyncRead + Unpin>(pipe: Option<R>) -> io::Result<Vec<u8>> {
    let mut kept = Vec::new();
    let Some(mut pipe) = pipe else {
        return Ok(kept);
    };
    let mut buf = [0u8; 8192];
    loop {
        let n = pipe.read(&mut buf).await?;
        if n == 0 {
            return Ok(kept);
        }
        let room = OUTPUT_LIMIT.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
}

/// The error code and message of a failed plugin: its JSON error on stdout
/// when it printed one, otherwise its exit status and stderr.
fn plugin_error(stdout: &[u8], stderr: &[u8], status: ExitStatus) -> (Option<u64>, String) {
    if let Ok(Value::Object(e)) = serde_json::from_slice::<Value>(stdout) {
        let code = e.get("code").and_then(Value::as_u64);
        let msg = e.get("msg").and_then(Value::as_str).unwrap_or("");
        let details = e.get("details").and_then(Value::as_str).unwrap_or("");
        if code.is_some() || !msg.is_empty() {
            let mut message = msg.to_string();
            if !details.is_empty() {
                message = format!("{message}: {details}");
            }
            if let Some(code) = code {
                message = format!("{message} (CNI error code {code})");
            }
            return (code, message);
        }
    }
    let mut message = format!("{status}");
    for (what, bytes) in [("stderr", stderr), ("stdout", stdout)] {
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim();
        if !text.is_empty() {
            let tail: String = if text.len() > STDERR_IN_ERROR {
                let mut start = text.len() - STDERR_IN_ERROR;
                while !text.is_char_boundary(start) {
                    start += 1;
                }
                format!("...{}", &text[start..])
            } else {
                text.to_string()
            };
            message = format!("{message}; {what}: {tail}");
        }
    }
    (None, message)
}

/// Parses a config file; the error says why the file is skipped.
fn parse_config(bytes: &[u8], is_list: bool) -> Result<ParsedList, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Object(mut obj) = value else {
        return Err("not a JSON object".to_string());
    };
    let string_field = |obj: &Map<String, Value>, key: &str| -> Result<String, String> {
        match obj.get(key) {
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(format!("{key:?} is not a string")),
        }
    };
    let name = string_field(&obj, "name")?;
    if !valid_network_name(&name) {
        return Err(format!(
            "\"name\" {name:?} must start with a letter or digit followed by letters, digits, '_', '.' or '-'"
        ));
    }
    let cni_version = string_field(&obj, "cniVersion")?;

    // A .conf that is really a list is taken as one rather than rejected.
    let plugins = if is_list || obj.contains_key("plugins") {
        let Some(Value::Array(list)) = obj.remove("plugins") else {
            return Err("\"plugins\" is missing or not a list".to_string());
        };
        if list.is_empty() {
            return Err("\"plugins\" is empty".to_string());
        }
        let mut plugins = Vec::with_capacity(list.len());
        for (i, p) in list.into_iter().enumerate() {
            let Value::Object(p) = p else {
                return Err(format!("plugins[{i}] is not an object"));
            };
            check_plugin_type(&p).map_err(|e| format!("plugins[{i}]: {e}"))?;
            plugins.push(p);
        }
        plugins
    } else {
        check_plugin_type(&obj)?;
        vec![obj.clone()]
    };
    let disable_check = match obj.get("disableCheck") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    };
    Ok(ParsedList {
        name,
        cni_version,
        disable_check,
        plugins,
    })
}

fn check_plugin_type(plugin: &Map<String, Value>) -> Result<(), String> {
    match plugin.get("type") {
        Some(Value::String(t)) if !t.is_empty() && !t.contains('/') && t != "." && t != ".." => {
            Ok(())
        }
        Some(Value::String(t)) => Err(format!("\"type\" {t:?} is not a plugin name")),
        _ => Err("\"type\" is missing or not a string".to_string()),
    }
}

fn valid_network_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Whether a "x.y.z" version is older than `than`; unparsable counts as not.
fn version_before(version: &str, than: (u64, u64, u64)) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u64>());
    match (parts.next(), parts.next(), parts.next()) {
        (Some(Ok(a)), Some(Ok(b)), c) => {
            let c = match c {
                Some(Ok(c)) => c,
                None => 0,
                Some(Err(_)) => return false,
            };
            (a, b, c) < than
        }
        _ => false,
    }
}

/// The pod's IPs from a result: addresses of the interface named `ifname`
/// (or of no stated interface), IPv4 before IPv6, without duplicates.
/// Also reads the pre-0.3 `ip4`/`ip6` shape.
fn pod_ips(result: &Value, ifname: &str) -> Vec<IpAddr> {
    let interfaces = result.get("interfaces").and_then(Value::as_array);
    let mut found: Vec<IpAddr> = Vec::new();
    let mut push = |cidr: &str| {
        let addr = cidr.split('/').next().unwrap_or(cidr);
        if let Ok(ip) = addr.parse::<IpAddr>() {
            if !found.contains(&ip) {
                found.push(ip);
            }
        }
    };
    for ip in result
        .get("ips")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(address) = ip.get("address").and_then(Value::as_str) else {
            continue;
        };
        let iface = ip
            .get("interface")
            .and_then(Value::as_u64)
            .and_then(|i| interfaces.and_then(|list| list.get(usize::try_from(i).ok()?)));
        match iface {
            Some(iface) => {
                if iface.get("name").and_then(Value::as_str) == Some(ifname) {
                    push(address);
                }
            }
            None => {
                if !address.starts_with("127.") && !address.starts_with("::1/") {
                    push(address);
                }
            }
        }
    }
    for key in ["ip4", "ip6"] {
        if let Some(cidr) = result
            .get(key)
            .and_then(|v| v.get("ip"))
            .and_then(Value::as_str)
        {
            push(cidr);
        }
    }
    let (mut v4, v6): (Vec<IpAddr>, Vec<IpAddr>) = found.into_iter().partition(IpAddr::is_ipv4);
    v4.extend(v6);
    v4
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command as StdCommand;

    const LIB_CNI: &str = "/usr/lib/cni";

    fn require_root() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test needs root (network namespaces, bridges, iptables)"
        );
    }

    fn require_plugins() {
        for p in ["bridge", "host-local", "loopback", "portmap"] {
            assert!(
                Path::new(LIB_CNI).join(p).is_file(),
                "{LIB_CNI}/{p} missing: install containernetworking-plugins (hack/install-deps.sh)"
            );
        }
    }

    fn rand_u32() -> u32 {
        getrandom::u32().expect("getrandom")
    }

    /// Runs a command, returning (success, stdout+stderr).
    fn sh(cmd: &str, args: &[&str]) -> (bool, String) {
        let out = StdCommand::new(cmd)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {cmd}: {e}"));
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }

    fn write_script(dir: &Path, name: &str, body: &str) {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    fn iptables_nat() -> String {
        let (ok, text) = sh("iptables", &["-w", "-t", "nat", "-S"]);
        assert!(ok, "iptables -t nat -S failed (install iptables): {text}");
        text
    }

    /// A netns, a bridge name, a subnet and a temp dir of one test; removed
    /// on drop even when the test fails.
    struct Fixture {
        dir: tempfile::TempDir,
        netns: String,
        bridge: String,
        /// "10.a.b" of the /24.
        subnet: String,
        network: String,
        /// The sandbox id every ADD of this test uses.
        cid: String,
        /// A random host port for portmap, so parallel tests do not collide.
        host_port: i32,
    }

    impl Fixture {
        fn new() -> Fixture {
            require_root();
            require_plugins();
            let r = rand_u32();
            let fx = Fixture {
                dir: tempfile::tempdir().expect("tempdir"),
                netns: format!("ppt-{r:08x}"),
                bridge: format!("ppt{:08x}", r),
                subnet: format!("10.{}.{}", 200 + (r >> 8) % 56, r & 0xff),
                network: format!("ppt-net-{r:08x}"),
                cid: format!("{:08x}{:08x}", rand_u32(), rand_u32()),
                host_port: 20000 + (rand_u32() % 10000) as i32,
            };
            let (ok, text) = sh("ip", &["netns", "add", &fx.netns]);
            assert!(ok, "ip netns add {}: {text}", fx.netns);
            fx
        }

        fn netns_path(&self) -> PathBuf {
            PathBuf::from("/run/netns").join(&self.netns)
        }

        fn ipam_dir(&self) -> PathBuf {
            self.dir.path().join("ipam")
        }

        fn cache_dir(&self) -> PathBuf {
            self.dir.path().join("cache")
        }

        fn conf_dir(&self) -> PathBuf {
            self.dir.path().join("net.d")
        }

        /// loopback, bridge, [extra plugins], portmap (if `portmap`) into `dir`.
        fn write_conflist_to(&self, dir: &Path, extra: &[Value], portmap: bool) {
            let mut plugins = vec![
                json!({"type": "loopback"}),
                json!({
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": true,
                    "ipMasq": false,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": self.ipam_dir(),
                        "ranges": [[{"subnet": format!("{}.0/24", self.subnet)}]],
                        "routes": [{"dst": "0.0.0.0/0"}]
                    }
                }),
            ];
            plugins.extend(extra.iter().cloned());
            if portmap {
                plugins.push(json!({"type": "portmap", "capabilities": {"portMappings": true}}));
            }
            let list = json!({"cniVersion": "1.0.0", "name": self.network, "plugins": plugins});
            std::fs::create_dir_all(dir).expect("mkdir net.d");
            std::fs::write(dir.join("10-test.conflist"), list.to_string()).expect("write conflist");
        }

        fn write_conflist(&self, extra: &[Value]) {
            self.write_conflist_to(&self.conf_dir(), extra, true);
        }

        fn load(&self, bin_dirs: &[PathBuf]) -> CniNetwork {
            CniNetwork::load(&self.conf_dir(), bin_dirs, &self.cache_dir())
                .expect("load")
                .expect("a network config")
        }

        fn eth0(&self) -> (bool, String) {
            sh("ip", &["-n", &self.netns, "-o", "addr", "show", "eth0"])
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            // A failed test never reached DEL: drop its portmap rules, which
            // live in the host's nat table, not in the netns or the bridge.
            if std::thread::panicking() {
                // portmap's DEL is a no-op without the mappings.
                let conf = json!({
                    "cniVersion": "1.0.0",
                    "name": self.network,
                    "type": "portmap",
                    "runtimeConfig": {"portMappings": [
                        {"hostPort": self.host_port, "containerPort": 80, "protocol": "tcp"}
                    ]}
                });
                if let Ok(mut child) = StdCommand::new(Path::new(LIB_CNI).join("portmap"))
                    .env("CNI_COMMAND", "DEL")
                    .env("CNI_CONTAINERID", &self.cid)
                    .env("CNI_NETNS", "")
                    .env("CNI_IFNAME", "eth0")
                    .env("CNI_PATH", LIB_CNI)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .spawn()
                {
                    if let Some(mut stdin) = child.stdin.take() {
                        use std::io::Write;
                        let _ = stdin.write_all(conf.to_string().as_bytes());
                    }
                    let _ = child.wait();
                }
            }
            let _ = sh("ip", &["netns", "del", &self.netns]);
            let _ = sh("ip", &["link", "del", &self.bridge]);
        }
    }

    fn attachment<'a>(
        container_id: &'a str,
        netns: &'a Path,
        ports: &'a [PortMapping],
    ) -> Attachment<'a> {
        Attachment {
            container_id,
            netns,
            ifname: "eth0",
            pod_name: "web",
            pod_namespace: "default",
            pod_uid: "0b7c9a52-1d8e-4a4b-9f0e-5d2c7e9b6a11",
            port_mappings: ports,
            pod_cidr: None,
        }
    }

    fn ping(ip: &str) -> (bool, String) {
        if Path::new("/usr/bin/ping").exists() || Path::new("/bin/ping").exists() {
            sh("ping", &["-c1", "-W1", ip])
        } else {
            assert!(
                Path::new("/usr/bin/busybox").exists() || Path::new("/bin/busybox").exists(),
                "no ping: install iputils-ping or busybox-static"
            );
            sh("busybox", &["ping", "-c1", "-W1", ip])
        }
    }

    #[tokio::test]
    async fn add_check_del_with_bridge_portmap_loopback() {
        let fx = Fixture::new();
        fx.write_conflist(&[]);
        let net = fx.load(&[
            PathBuf::from("/nonexistent-cni-bin"),
            PathBuf::from(LIB_CNI),
        ]);
        let host_port = fx.host_port;
        let ports = [
            PortMapping {
                protocol: "TCP".into(),
                container_port: 80,
                host_port,
                host_ip: String::new(),
            },
            // kubelet sends every containerPort; those without a host port stay out.
            PortMapping {
                protocol: "UDP".into(),
                container_port: 53,
                host_port: 0,
                host_ip: String::new(),
            },
        ];
        let netns = fx.netns_path();
        let a = attachment(&fx.cid, &netns, &ports);

        let result = net.add(&a).await.expect("ADD");
        assert_eq!(result.ips.len(), 1, "one IPv4 expected: {:?}", result.raw);
        let ip = result.ips[0].to_string();
        assert!(
            ip.starts_with(&format!("{}.", fx.subnet)),
            "{ip} outside the test subnet"
        );

        // The kernel's view: the address is on eth0 in the pod's netns, lo is up.
        let (ok, text) = fx.eth0();
        assert!(
            ok && text.contains(&format!("inet {ip}/24")),
            "eth0 in netns: {text}"
        );
        let (ok, text) = sh("ip", &["-n", &fx.netns, "-o", "link", "show", "lo"]);
        assert!(ok && text.contains(",UP"), "lo not up in netns: {text}");
        let (ok, text) = ping(&ip);
        assert!(ok, "host cannot ping the pod at {ip}: {text}");

        let alloc = fx.ipam_dir().join(&fx.network).join(&ip);
        assert!(
            alloc.exists(),
            "host-local allocation {} missing",
            alloc.display()
        );
        let dport = format!("--dport {host_port} ");
        assert!(
            iptables_nat().contains(&dport),
            "portmap rule for {host_port} missing"
        );
        let cache = net.cache_path(&a);
        let cached: Value = serde_json::from_slice(&std::fs::read(&cache).expect("cache file"))
            .expect("cache JSON");
        assert_eq!(cached["result"], result.raw);

        // portmap's CHECK wrongly demands IPv6 rules for an IPv4-only pod
        // (containernetworking/plugins#819), so CHECK the same attachment
        // through a list without it: bridge verifies eth0 and its address.
        let no_portmap = fx.dir.path().join("net.d-check");
        fx.write_conflist_to(&no_portmap, &[], false);
        let checker = CniNetwork::load(&no_portmap, &[PathBuf::from(LIB_CNI)], &fx.cache_dir())
            .expect("load")
            .expect("config");
        checker.check(&a).await.expect("CHECK");
        let (ok, text) = sh("ip", &["-n", &fx.netns, "addr", "flush", "dev", "eth0"]);
        assert!(ok, "ip addr flush: {text}");
        let err = checker
            .check(&a)
            .await
            .expect_err("CHECK of an eth0 without its IP");
        assert!(err.to_string().contains("\"bridge\""), "{err}");

        // The caller may have lost the port mappings by now (a restart): the
        // cached ADD still lets portmap find its rules.
        let bare = attachment(&fx.cid, &netns, &[]);
        net.del(&bare).await.expect("DEL");
        let (_, text) = fx.eth0();
        assert!(
            !text.contains("inet "),
            "eth0 still configured after DEL: {text}"
        );
        let (ok, _) = sh("ip", &["-n", &fx.netns, "link", "show", "eth0"]);
        assert!(!ok, "eth0 still exists in the netns after DEL");
        assert!(!alloc.exists(), "host-local allocation survived DEL");
        assert!(
            !iptables_nat().contains(&dport),
            "portmap rule survived DEL"
        );
        assert!(!cache.exists(), "result cache survived DEL");

        net.del(&a).await.expect("second DEL");
    }

    #[tokio::test]
    async fn del_after_netns_is_gone_releases_everything() {
        let fx = Fixture::new();
        fx.write_conflist(&[]);
        let net = fx.load(&[PathBuf::from(LIB_CNI)]);
        let host_port = fx.host_port;
        let ports = [PortMapping {
            protocol: "tcp".into(),
            container_port: 80,
            host_port,
            host_ip: "127.0.0.1".into(),
        }];
        let netns = fx.netns_path();
        let a = attachment(&fx.cid, &netns, &ports);
        let result = net.add(&a).await.expect("ADD");
        let alloc = fx
            .ipam_dir()
            .join(&fx.network)
            .join(result.ips[0].to_string());
        assert!(alloc.exists());
        let dport = format!("--dport {host_port} ");
        assert!(
            iptables_nat().contains(&dport),
            "portmap rule for {host_port} missing"
        );

        let (ok, text) = sh("ip", &["netns", "del", &fx.netns]);
        assert!(ok, "ip netns del: {text}");
        net.del(&a).await.expect("DEL without netns");
        assert!(!alloc.exists(), "host-local allocation survived DEL");
        assert!(
            !iptables_nat().contains(&dport),
            "portmap rule survived DEL"
        );
        net.del(&a).await.expect("second DEL without netns");
    }

    #[tokio::test]
    async fn failed_add_is_rolled_back_by_del() {
        let fx = Fixture::new();
        let bin = fx.dir.path().join("bin");
        std::fs::create_dir_all(&bin).expect("mkdir bin");
        write_script(
            &bin,
            "fail-add",
            r#"cat >/dev/null
if [ "$CNI_COMMAND" = ADD ]; then
  echo '{"cniVersion":"1.0.0","code":111,"msg":"refusing on purpose","details":"injected failure"}'
  exit 1
fi"#,
        );
        fx.write_conflist(&[json!({"type": "fail-add"})]);
        let net = fx.load(&[bin, PathBuf::from(LIB_CNI)]);
        let netns = fx.netns_path();
        let a = attachment(&fx.cid, &netns, &[]);

        let err = net.add(&a).await.expect_err("ADD must fail");
        let msg = err.to_string();
        assert!(
            matches!(
                err,
                CniError::PluginFailed {
                    code: Some(111),
                    ..
                }
            ),
            "unexpected error: {msg}"
        );
        assert!(
            msg.contains("fail-add")
                && msg.contains("refusing on purpose")
                && msg.contains("injected failure"),
            "error lacks plugin name or message: {msg}"
        );
        // bridge ran before the failure: the kernel shows its work.
        let (ok, text) = fx.eth0();
        assert!(
            ok && text.contains("inet "),
            "bridge did not configure eth0: {text}"
        );
        let net_dir = fx.ipam_dir().join(&fx.network);
        let allocated = |d: &Path| {
            std::fs::read_dir(d)
                .map(|it| {
                    it.filter_map(Result::ok)
                        .filter(|e| e.file_name().to_string_lossy().parse::<IpAddr>().is_ok())
                        .count()
                })
                .unwrap_or(0)
        };
        assert_eq!(allocated(&net_dir), 1, "host-local should hold one IP");
        assert!(
            !net.cache_path(&a).exists(),
            "a failed ADD must not be cached"
        );

        net.del(&a).await.expect("rollback DEL");
        let (ok, _) = sh("ip", &["-n", &fx.netns, "link", "show", "eth0"]);
        assert!(!ok, "eth0 survived the rollback");
        assert_eq!(allocated(&net_dir), 0, "IP leaked by the rollback");
    }

    #[tokio::test]
    async fn missing_plugin_is_named_and_skipped_on_del() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("net.d");
        std::fs::create_dir_all(&conf).expect("mkdir");
        std::fs::write(
            conf.join("10-x.conflist"),
            r#"{"cniVersion":"1.0.0","name":"x","plugins":[{"type":"no-such-plugin-ppt"}]}"#,
        )
        .expect("write");
        let netns = dir.path().join("fake-netns");
        std::fs::write(&netns, "").expect("write");
        let net = CniNetwork::load(&conf, &[dir.path().join("bin")], &dir.path().join("cache"))
            .expect("load")
            .expect("config");
        let a = attachment("c1", &netns, &[]);
        let err = net.add(&a).await.expect_err("ADD must fail");
        assert!(matches!(err, CniError::PluginNotFound { .. }), "{err}");
        assert!(err.to_string().contains("no-such-plugin-ppt"), "{err}");
        net.del(&a)
            .await
            .expect("DEL skips a plugin that is not installed");
    }

    fn pid_alive(pid: i32) -> bool {
        // A zombie is dead, only not yet reaped by its parent.
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => {
                let state = stat
                    .rsplit(')')
                    .next()
                    .and_then(|s| s.split_whitespace().next());
                !matches!(state, Some("Z") | Some("X"))
            }
            Err(_) => false,
        }
    }

    #[tokio::test]
    async fn hanging_plugin_is_killed_at_the_timeout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).expect("mkdir");
        let pids = dir.path().join("pids");
        write_script(
            &bin,
            "hang",
            &format!(
                "echo $$ > {p}.sh\nsleep 600 &\necho $! > {p}.sleep\nwait",
                p = pids.display()
            ),
        );
        let conf = dir.path().join("net.d");
        std::fs::create_dir_all(&conf).expect("mkdir");
        std::fs::write(
            conf.join("a.conf"),
            r#"{"cniVersion":"1.0.0","name":"hang","type":"hang"}"#,
        )
        .expect("write");
        let netns = dir.path().join("fake-netns");
        std::fs::write(&netns, "").expect("write");
        let net = CniNetwork::load(&conf, &[bin], &dir.path().join("cache"))
            .expect("load")
            .expect("config")
            .with_exec_timeout(Duration::from_millis(1500));
        let a = attachment("c1", &netns, &[]);

        let started = Instant::now();
        let err = net.add(&a).await.expect_err("ADD must time out");
        assert!(matches!(err, CniError::PluginTimeout { .. }), "{err}");
        assert!(err.to_string().contains("\"hang\""), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );

        let read_pid = |suffix: &str| -> i32 {
            let p = PathBuf::from(format!("{}.{suffix}", pids.display()));
            std::fs::read_to_string(&p)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
                .trim()
                .parse()
                .expect("pid")
        };
        let (sh_pid, sleep_pid) = (read_pid("sh"), read_pid("sleep"));
        let deadline = Instant::now() + Duration::from_secs(3);
        while (pid_alive(sh_pid) || pid_alive(sleep_pid)) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!pid_alive(sh_pid), "plugin {sh_pid} still running");
        assert!(
            !pid_alive(sleep_pid),
            "plugin's child {sleep_pid} still running"
        );

        // A caller that gives up (a dropped request future) kills them too.
        std::fs::remove_file(format!("{}.sh", pids.display())).expect("rm");
        std::fs::remove_file(format!("{}.sleep", pids.display())).expect("rm");
        let patient = net.with_exec_timeout(Duration::from_secs(60));
        let dropped = tokio::time::timeout(Duration::from_millis(1500), patient.add(&a)).await;
        assert!(dropped.is_err(), "ADD should still be running");
        let (sh_pid, sleep_pid) = (read_pid("sh"), read_pid("sleep"));
        let deadline = Instant::now() + Duration::from_secs(3);
        while (pid_alive(sh_pid) || pid_alive(sleep_pid)) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            !pid_alive(sh_pid),
            "plugin {sh_pid} survived its dropped caller"
        );
        assert!(
            !pid_alive(sleep_pid),
            "plugin's child {sleep_pid} survived its dropped caller"
        );
    }

    /// A scripted plugin records what it was given: env, stdin, order.
    #[tokio::test]
    async fn plugins_get_the_spec_env_and_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).expect("mkdir");
        let rec = dir.path().join("rec");
        std::fs::create_dir_all(&rec).expect("mkdir");
        for name in ["rec-a", "rec-b"] {
            write_script(
                &bin,
                name,
                &format!(
                    r#"n=$(ls {rec} | wc -l)
cat > {rec}/$n-{name}-$CNI_COMMAND.json
env | grep '^CNI_' | sort > {rec}/$n-{name}-$CNI_COMMAND.env
[ "$CNI_COMMAND" = ADD ] || exit 0
echo '{{"cniVersion":"1.0.0","interfaces":[{{"name":"veth1"}},{{"name":"eth0","sandbox":"'$CNI_NETNS'"}}],"ips":[{{"address":"fd00::5/64","interface":1}},{{"address":"10.9.0.5/24","gateway":"10.9.0.1","interface":1}},{{"address":"10.9.9.9/24","interface":0}}]}}'"#,
                    rec = rec.display()
                ),
            );
        }
        let conf = dir.path().join("net.d");
        std::fs::create_dir_all(&conf).expect("mkdir");
        std::fs::write(
            conf.join("net.conflist"),
            json!({"cniVersion": "1.0.0", "name": "recnet", "plugins": [
                {"type": "rec-a", "name": "ignored", "cniVersion": "0.3.1",
                 "capabilities": {"portMappings": true, "ipRanges": true, "bandwidth": true}},
                {"type": "rec-b", "capabilities": {"portMappings": false}}
            ]})
            .to_string(),
        )
        .expect("write");
        let netns = dir.path().join("fake-netns");
        std::fs::write(&netns, "").expect("write");
        let cache = dir.path().join("cache");
        let net = CniNetwork::load(&conf, &[dir.path().join("nope"), bin.clone()], &cache)
            .expect("load")
            .expect("config");
        let ports = [PortMapping {
            protocol: "SCTP".into(),
            container_port: 9,
            host_port: 9009,
            host_ip: "192.0.2.7".into(),
        }];
        let mut a = attachment("cid1", &netns, &ports);
        a.pod_cidr = Some("10.9.0.0/16");

        let result = net.add(&a).await.expect("ADD");
        assert_eq!(
            result.ips,
            vec![
                "10.9.0.5".parse::<IpAddr>().unwrap(),
                "fd00::5".parse().unwrap()
            ]
        );
        let cached: Value =
            serde_json::from_slice(&std::fs::read(net.cache_path(&a)).expect("cache file"))
                .expect("cache JSON");
        assert_eq!(cached["result"], result.raw);
        // DEL with the bare sandbox id still hands plugins the ADD's values.
        let mut bare = attachment("cid1", &netns, &[]);
        bare.pod_cidr = None;
        net.del(&bare).await.expect("DEL");

        let read = |n: usize, name: &str, cmd: &str| -> (Value, String) {
            let base = rec.join(format!("{n}-{name}-{cmd}"));
            let stdin = std::fs::read(base.with_extension("json")).expect("stdin record");
            let env = std::fs::read_to_string(base.with_extension("env")).expect("env record");
            (serde_json::from_slice(&stdin).expect("stdin is JSON"), env)
        };
        // Records are numbered in exec order: ADD a, b; DEL b, a.
        let (a_add, env) = read(0, "rec-a", "ADD");
        assert_eq!(a_add["name"], "recnet");
        assert_eq!(a_add["cniVersion"], "1.0.0");
        assert!(a_add.get("prevResult").is_none());
        assert_eq!(
            a_add["runtimeConfig"],
            json!({
                "portMappings": [{"hostPort": 9009, "containerPort": 9, "protocol": "sctp", "hostIP": "192.0.2.7"}],
                "ipRanges": [[{"subnet": "10.9.0.0/16"}]]
            })
        );
        let expected_env = format!(
            "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=cid1;K8S_POD_UID=0b7c9a52-1d8e-4a4b-9f0e-5d2c7e9b6a11\n\
             CNI_COMMAND=ADD\nCNI_CONTAINERID=cid1\nCNI_IFNAME=eth0\nCNI_NETNS={}\nCNI_PATH={}:{}\n",
            netns.display(),
            dir.path().join("nope").display(),
            bin.display()
        );
        assert_eq!(env, expected_env);

        let (b_add, _) = read(2, "rec-b", "ADD");
        assert!(b_add.get("runtimeConfig").is_none(), "{b_add}");
        assert_eq!(b_add["prevResult"]["ips"][1]["address"], "10.9.0.5/24");

        let (b_del, env) = read(4, "rec-b", "DEL");
        assert_eq!(b_del["prevResult"], result.raw);
        // Not a mounted netns: DEL goes without one, as the spec allows.
        assert!(env.contains("CNI_NETNS=\n"), "{env}");
        let (a_del, _) = read(6, "rec-a", "DEL");
        assert_eq!(a_del["prevResult"], result.raw);
        assert_eq!(a_del["runtimeConfig"], a_add["runtimeConfig"]);
        assert!(!net.cache_path(&a).exists());

        // Second DEL: no cache, so no prevResult and the caller's values.
        net.del(&a).await.expect("second DEL");
        let (b_del2, _) = read(8, "rec-b", "DEL");
        assert!(b_del2.get("prevResult").is_none());
        let (a_del2, _) = read(10, "rec-a", "DEL");
        assert_eq!(a_del2["runtimeConfig"], a_add["runtimeConfig"]);
    }

    #[test]
    fn load_takes_the_lexically_first_valid_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path();
        let cache = Path::new("/nonexistent-cache");
        assert!(CniNetwork::load(&conf.join("missing"), &[], cache)
            .expect("load")
            .is_none());
        assert!(CniNetwork::load(conf, &[], cache).expect("load").is_none());

        let files = [
            ("00-broken.conflist", "{not json"),
            (
                "01-noplugins.conflist",
                r#"{"cniVersion":"1.0.0","name":"a","plugins":[]}"#,
            ),
            ("02-notype.conf", r#"{"cniVersion":"1.0.0","name":"b"}"#),
            (
                "03-badname.conf",
                r#"{"cniVersion":"1.0.0","name":"../x","type":"bridge"}"#,
            ),
            (
                "04-readme.md",
                r#"{"cniVersion":"1.0.0","name":"md","type":"bridge"}"#,
            ),
            (
                "10-single.conf",
                r#"{"cniVersion":"0.4.0","name":"single","type":"bridge","bridge":"cni0"}"#,
            ),
            (
                "20-list.conflist",
                r#"{"cniVersion":"1.0.0","name":"list","plugins":[{"type":"bridge"},{"type":"portmap"}]}"#,
            ),
        ];
        for (name, body) in files {
            std::fs::write(conf.join(name), body).expect("write");
        }
        let net = CniNetwork::load(conf, &[], cache)
            .expect("load")
            .expect("config");
        assert_eq!(net.name(), "single");
        assert_eq!(net.cni_version(), "0.4.0");
        assert_eq!(net.plugin_types(), vec!["bridge"]);
        assert_eq!(net.source(), conf.join("10-single.conf"));

        std::fs::remove_file(conf.join("10-single.conf")).expect("rm");
        let net = CniNetwork::load(conf, &[], cache)
            .expect("load")
            .expect("config");
        assert_eq!(net.name(), "list");
        assert_eq!(net.plugin_types(), vec!["bridge", "portmap"]);
        assert!(not_ready_message(conf).contains(&conf.display().to_string()));
    }

    #[test]
    fn pod_ips_ipv4_first_and_only_the_pod_interface() {
        let r = json!({
            "interfaces": [{"name": "cni0"}, {"name": "lo", "sandbox": "/x"}, {"name": "eth0", "sandbox": "/x"}],
            "ips": [
                {"address": "fd00::2/64", "interface": 2},
                {"address": "10.0.0.1/24", "interface": 0},
                {"address": "127.0.0.1/8", "interface": 1},
                {"address": "10.0.0.2/24", "interface": 2},
                {"address": "10.0.0.2/24", "interface": 2}
            ]
        });
        let ips: Vec<String> = pod_ips(&r, "eth0")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(ips, ["10.0.0.2", "fd00::2"]);
        let old = json!({"ip4": {"ip": "10.1.0.3/16"}, "ip6": {"ip": "fd01::3/64"}});
        let ips: Vec<String> = pod_ips(&old, "eth0")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(ips, ["10.1.0.3", "fd01::3"]);
        assert!(version_before("0.3.1", (0, 4, 0)));
        assert!(!version_before("1.0.0", (0, 4, 0)));
    }

    #[test]
    fn invalid_attachment_names_are_rejected() {
        let p = Path::new("/x");
        let mut a = attachment("../etc", p, &[]);
        assert!(matches!(
            validate(&a),
            Err(CniError::InvalidArgument {
                field: "container_id",
                ..
            })
        ));
        a.container_id = "ok";
        a.pod_name = "a;K8S_POD_UID=x";
        assert!(matches!(
            validate(&a),
            Err(CniError::InvalidArgument {
                field: "pod_name",
                ..
            })
        ));
    }
}
