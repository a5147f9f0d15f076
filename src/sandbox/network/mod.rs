//! CNI client: the CNI 1.0 exec protocol as kubelet expects it from a CRI
//! runtime. RunPodSandbox calls [`CniNetwork::add`], StopPodSandbox and
//! RemovePodSandbox call [`CniNetwork::del`] (idempotent) on the network
//! the pod was attached to, and Status asks [`NetworkPlugin::network`]
//! which network new pods join.
//!
//! Like libcni, the network is the lexically first loadable file in the conf
//! dir, the result of a successful ADD is cached on disk so DEL and CHECK can
//! pass it as `prevResult`, and plugins are looked up in the bin dirs in order.
//!
//! When the conf dir holds no config, peapod's own default network (a
//! bridge) stands in for it, unless the config turns it off. A pod stays
//! on the network it was attached to: its DEL goes there by the name
//! recorded with it, whichever network new pods now join.
//!
//! - `config`: finding and parsing the network config file;
//! - `default_network`: peapod's own network;
//! - `plugin_conf`: what each plugin reads on stdin;
//! - `invoke`: running one plugin (environment, stdin, output, timeout);
//! - `result`: reading an ADD result;
//! - `cache`: the on-disk cache of ADD results;
//! - `pod_network`: the traits the sandbox lifecycle uses (a fake in tests).

mod cache;
mod config;
mod default_network;
mod invoke;
mod plugin_conf;
mod pod_network;
mod result;
#[cfg(test)]
mod tests;

pub use default_network::{DEFAULT_NETWORK_NAME, DEFAULT_NETWORK_PLUGINS};
pub use pod_network::{CniPlugins, NetworkPlugin, PodNetwork};

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};

use config::version_before;
use plugin_conf::{capability_args, plugin_type};

/// Where kubelet-era runtimes look for network configs.
pub const DEFAULT_CONF_DIR: &str = "/etc/cni/net.d";
/// Upstream's install dir first, then Debian's `containernetworking-plugins`.
pub const DEFAULT_BIN_DIRS: [&str; 2] = ["/opt/cni/bin", "/usr/lib/cni"];
/// Per plugin exec; kubelet gives RunPodSandbox 4 minutes in total.
pub const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(60);
/// The `reason` of the NetworkReady condition when no config is loadable.
pub const NOT_READY_REASON: &str = "NetworkPluginNotReady";

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
    #[error("the default network {network:?} needs the CNI plugin {plugin:?}, which is not in {dirs}: install the standard CNI plugins (containernetworking-plugins) or set cni.bin_dirs")]
    DefaultNetworkPluginMissing {
        network: &'static str,
        plugin: &'static str,
        dirs: String,
    },
    #[error("CNI config {path} names its network {name:?}, which is peapod's default network: give it another name")]
    ReservedNetworkName { path: PathBuf, name: String },
}

/// The message for the NetworkReady condition when [`CniNetwork::load`]
/// found nothing and the default network is off.
pub fn not_ready_message(conf_dir: &Path) -> String {
    format!(
        "Network plugin returns error: no valid CNI network config (.conflist, .conf, .json) in {}, and the default network is off (cni.default_network = false)",
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

/// Where a network's config comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkOrigin {
    /// A config file of the conf dir.
    File(PathBuf),
    /// peapod's default network, built from the config.
    Default {
        bridge: String,
        subnet: String,
        /// The conf dir whose emptiness put it in force.
        conf_dir: PathBuf,
    },
}

/// A loaded network config list plus where its plugins and results live.
#[derive(Debug, Clone)]
pub struct CniNetwork {
    name: String,
    cni_version: String,
    disable_check: bool,
    /// Each plugin's config object as written in the file.
    plugins: Vec<Map<String, Value>>,
    origin: NetworkOrigin,
    bin_dirs: Vec<PathBuf>,
    cache_dir: PathBuf,
    exec_timeout: Duration,
}

impl CniNetwork {
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

    /// The config file this network was loaded from; none for the default
    /// network.
    pub fn source(&self) -> Option<&Path> {
        match &self.origin {
            NetworkOrigin::File(path) => Some(path),
            NetworkOrigin::Default { .. } => None,
        }
    }

    /// Which network this is and where it comes from, for the operator.
    pub fn describe(&self) -> String {
        match &self.origin {
            NetworkOrigin::File(path) => {
                format!("CNI network {:?} from {}", self.name, path.display())
            }
            NetworkOrigin::Default {
                bridge,
                subnet,
                conf_dir,
            } => format!(
                "peapod's default network {:?} (bridge {bridge}, subnet {subnet}): no CNI network config in {}",
                self.name,
                conf_dir.display()
            ),
        }
    }

    /// The plugin types in exec order (ADD order).
    pub fn plugin_types(&self) -> Vec<&str> {
        self.plugins.iter().map(plugin_type).collect()
    }

    /// The plugin binaries the list runs: each plugin's `type` and the
    /// IPAM plugin (`ipam.type`) it delegates to, in exec order, each once.
    pub fn plugin_binaries(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for plugin in &self.plugins {
            let ipam = plugin
                .get("ipam")
                .and_then(|i| i.get("type"))
                .and_then(Value::as_str);
            for name in std::iter::once(plugin_type(plugin)).chain(ipam) {
                if !name.is_empty() && !out.contains(&name) {
                    out.push(name);
                }
            }
        }
        out
    }

    /// Those of [`CniNetwork::plugin_binaries`] that no bin dir holds.
    pub fn missing_plugins(&self) -> Vec<&str> {
        self.plugin_binaries()
            .into_iter()
            .filter(|name| self.find_plugin(name).is_err())
            .collect()
    }

    /// The directories plugins are looked up in, in order.
    pub fn bin_dirs(&self) -> &[PathBuf] {
        &self.bin_dirs
    }

    /// Runs ADD through every plugin in order, chaining results, and caches
    /// the final one. On error the caller must [`CniNetwork::del`] to undo
    /// whatever the plugins that ran did.
    pub async fn add(&self, a: &Attachment<'_>) -> Result<CniResult, CniError> {
        validate(a)?;
        require_netns(a)?;
        let netns = a.netns.to_string_lossy().into_owned();
        let caps = capability_args(a);
        let mut prev: Option<Value> = None;
        for plugin in &self.plugins {
            let conf = self.plugin_config(plugin, &caps, prev.as_ref());
            let out = self.exec_plugin(plugin, Op::Add, a, &netns, &conf).await?;
            prev = Some(result::parse_add_result(plugin_type(plugin), &out)?);
        }
        // load() rejects lists without plugins, so there is always a result.
        let raw = prev.unwrap_or(Value::Null);
        self.write_cache(a, &raw, &caps).await?;
        Ok(CniResult {
            ips: result::pod_ips(&raw, a.ifname),
            raw,
        })
    }

    /// Runs DEL through every plugin in reverse order with the cached ADD
    /// result as `prevResult`, then drops the cache. Safe to repeat and safe
    /// after a partial ADD: plugins must treat missing resources as done.
    pub async fn del(&self, a: &Attachment<'_>) -> Result<(), CniError> {
        validate(a)?;
        let netns = netns_for_del(a);
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
            let outcome = self.exec_plugin(plugin, Op::Del, a, &netns, &conf).await;
            tolerate_del_failure(outcome, a)?;
        }
        self.remove_cache(a).await
    }

    /// Runs CHECK through every plugin in order against the cached ADD result.
    /// A no-op when the list sets `disableCheck` or predates CNI 0.4.0.
    pub async fn check(&self, a: &Attachment<'_>) -> Result<(), CniError> {
        validate(a)?;
        if self.disable_check || version_before(&self.cni_version, (0, 4, 0)) {
            return Ok(());
        }
        require_netns(a)?;
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
}

fn require_netns(a: &Attachment<'_>) -> Result<(), CniError> {
    if a.netns.exists() {
        Ok(())
    } else {
        Err(CniError::NetnsMissing {
            path: a.netns.to_path_buf(),
        })
    }
}

/// The spec lets DEL run without a netns; a path that is no longer a
/// namespace would only make plugins fail on something already gone.
fn netns_for_del(a: &Attachment<'_>) -> String {
    if is_netns(a.netns) {
        a.netns.to_string_lossy().into_owned()
    } else {
        tracing::debug!(netns = %a.netns.display(), container_id = a.container_id, "netns gone; CNI DEL without CNI_NETNS");
        String::new()
    }
}

/// The failures a DEL goes on after: they leave nothing to free.
fn tolerate_del_failure(
    outcome: Result<Vec<u8>, CniError>,
    a: &Attachment<'_>,
) -> Result<(), CniError> {
    match outcome {
        Ok(_) => Ok(()),
        // A plugin that is not installed holds nothing we could free;
        // failing here would make the pod impossible to remove.
        Err(e @ CniError::PluginNotFound { .. }) => {
            tracing::warn!(error = %e, container_id = a.container_id, "CNI DEL: skipping missing plugin");
            Ok(())
        }
        Err(CniError::PluginFailed {
            code: Some(ERR_CONTAINER_UNKNOWN),
            plugin,
            message,
            ..
        }) => {
            tracing::debug!(%plugin, %message, container_id = a.container_id, "CNI DEL: plugin reports container unknown");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Names end up in a file name (the cache) and in plugin env vars.
fn validate(a: &Attachment<'_>) -> Result<(), CniError> {
    plain_name("container_id", a.container_id)?;
    plain_name("ifname", a.ifname)?;
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

fn plain_name(field: &'static str, value: &str) -> Result<(), CniError> {
    let reason = if value.is_empty() {
        "must not be empty"
    } else if value.contains('/') || value.contains('\0') || value == "." || value == ".." {
        "must be a plain name"
    } else {
        return Ok(());
    };
    Err(CniError::InvalidArgument {
        field,
        value: value.to_string(),
        reason,
    })
}

/// True when `path` is a mounted network namespace (nsfs), not merely a file.
fn is_netns(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
        .unwrap_or(false)
}
