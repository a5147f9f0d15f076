//! The daemon's configuration: embedded defaults, an optional TOML file, and
//! command-line overrides, in that order. Unknown keys and invalid values are
//! errors that name the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cgroups::CgroupDriver;

mod check;
mod doc;

pub use check::{check, Position, Problem};
pub use doc::{default_template, key_summary};

/// Where the daemon looks for a config file when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/peapod/config.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {}", .problem.in_file(.path))]
    Parse { path: PathBuf, problem: Problem },
    #[error("invalid value for `{key}`: {message}")]
    Invalid { key: String, message: String },
}

/// Every setting, with the defaults `peapod serve` runs with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The CRI socket (mode 0660, owned by root).
    pub socket: PathBuf,
    /// Persistent data: the metadata database, images.
    pub root_dir: PathBuf,
    /// Volatile state: netns files, pod directories, sockets.
    pub state_dir: PathBuf,
    /// Log filter (tracing `EnvFilter` syntax); `RUST_LOG` overrides it.
    pub log_level: String,
    /// `cgroupfs` or `systemd`; reported to kubelet through RuntimeConfig.
    pub cgroup_driver: CgroupDriver,
    /// Cgroup parent for pods whose request names none.
    pub default_cgroup_parent: String,
    /// The `peapod-monitor` binary; empty means next to the `peapod` binary.
    pub monitor_path: PathBuf,
    /// Size of the tmpfs mounted as a pod's `/dev/shm`, in bytes.
    pub shm_size: u64,
    pub cni: CniConfig,
    /// Runtime handler used when a request names none.
    pub default_runtime: String,
    /// OCI runtime handlers by name (`RuntimeClass` handlers).
    pub runtimes: BTreeMap<String, RuntimeHandler>,
    pub images: ImagesConfig,
    /// Whether a container's `oom_score_adj` is raised to at least the
    /// daemon's own: the kernel refuses a lower value to a process without
    /// CAP_SYS_RESOURCE, and the OCI runtime then fails to start it.
    pub restrict_oom_score_adj: OomScoreAdjRestriction,
    /// Longest line, in bytes, a container log holds in one record; longer
    /// output is split into partial (`P`) records.
    pub container_log_max_line: usize,
    pub streaming: StreamingConfig,
    pub events: EventsConfig,
    pub metrics: MetricsConfig,
}

/// GetContainerEvents.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Events buffered for a subscriber that does not keep up, at most;
    /// then its stream ends with an error (it lists again).
    pub buffer: usize,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig { buffer: 1000 }
    }
}

impl EventsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.buffer == 0 {
            return Err(invalid("events.buffer", "must be at least 1"));
        }
        Ok(())
    }
}

/// The streaming server (the URLs of Exec, Attach and PortForward).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StreamingConfig {
    /// The address it listens on. Loopback keeps it out of reach of
    /// pods; kubelet on the same node reaches it there.
    pub address: String,
    /// Its TCP port; 0 takes a free one (the URLs carry the real port).
    pub port: u16,
    /// Seconds a URL stays valid before its first use.
    pub token_ttl_secs: u64,
    /// URLs issued and not yet used, at most; then ResourceExhausted.
    pub max_pending: usize,
}

impl Default for StreamingConfig {
    fn default() -> Self {
        StreamingConfig {
            address: "127.0.0.1".to_string(),
            port: 0,
            token_ttl_secs: 60,
            max_pending: 1000,
        }
    }
}

impl StreamingConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        rules::ip_address(&self.address).map_err(|m| invalid("streaming.address", &m))?;
        if self.token_ttl_secs == 0 {
            return Err(invalid("streaming.token_ttl_secs", "must be at least 1"));
        }
        if self.max_pending == 0 {
            return Err(invalid("streaming.max_pending", "must be at least 1"));
        }
        Ok(())
    }
}

/// peapod's own Prometheus endpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `IP:PORT` it listens on; empty: no endpoint.
    pub address: String,
}

impl MetricsConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.address.is_empty() {
            return Ok(());
        }
        rules::socket_address(&self.address).map_err(|m| invalid("metrics.address", &m))
    }

    /// Where the endpoint listens, if it is on.
    pub fn socket_address(&self) -> Option<std::net::SocketAddr> {
        self.address.parse().ok()
    }
}

/// See [`Config::restrict_oom_score_adj`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OomScoreAdjRestriction {
    /// Restrict when the daemon lacks CAP_SYS_RESOURCE.
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ImagesConfig {
    /// Registries (`host` or `host:port`) reached over plain HTTP. localhost,
    /// 127.0.0.0/8 and ::1 always are.
    pub insecure_registries: Vec<String>,
    /// Registry (as in image names, e.g. `docker.io`) → mirror endpoints
    /// (`host[:port]` or `http(s)://host[:port][/prefix]`), tried in order
    /// before the registry itself.
    pub mirrors: BTreeMap<String, Vec<String>>,
    /// Layers one pull downloads at once.
    pub max_concurrent_downloads: usize,
    /// Seconds to wait for a registry connection.
    pub connect_timeout_secs: u64,
    /// Seconds a pull may receive no byte (waiting for a response, or
    /// inside a manifest or blob) before it is cancelled with
    /// DeadlineExceeded, as containerd's `image_pull_progress_timeout`;
    /// 0 waits for ever.
    pub pull_progress_timeout_secs: u64,
    /// containers-registries.conf(5), read at start and by every pull:
    /// `[[registry]]` prefixes that are blocked, pulled from another
    /// `location`, or through `[[registry.mirror]]`s; empty: not read.
    /// Where `mirrors` and `insecure_registries` above speak of the same
    /// registry, they win (see src/image/registry/registries_conf.rs).
    pub registries_conf: PathBuf,
    /// Drop-in `*.conf` files read after `registries_conf`, in name order;
    /// empty: not read.
    pub registries_conf_dir: PathBuf,
    /// containers-auth.json(5): registry credentials for pulls whose
    /// request carries none (kubelet sends them only from image pull
    /// secrets). Empty: `$REGISTRY_AUTH_FILE` when set, else
    /// /etc/containers/auth.json. Read by every such pull; a missing file
    /// means no credentials.
    pub auth_file: PathBuf,
}

impl Default for ImagesConfig {
    fn default() -> Self {
        ImagesConfig {
            insecure_registries: Vec::new(),
            mirrors: BTreeMap::new(),
            max_concurrent_downloads: 3,
            connect_timeout_secs: 30,
            pull_progress_timeout_secs: 300,
            registries_conf: PathBuf::from("/etc/containers/registries.conf"),
            registries_conf_dir: PathBuf::from("/etc/containers/registries.conf.d"),
            auth_file: PathBuf::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CniConfig {
    /// The first `.conflist`/`.conf`/`.json` file here is the pod network.
    pub conf_dir: PathBuf,
    /// Plugin directories, searched in order.
    pub bin_dirs: Vec<PathBuf>,
    /// Seconds a single plugin invocation may take.
    pub plugin_timeout_secs: u64,
    /// Whether pods get peapod's own network while `conf_dir` holds no
    /// config: a bridge with host-local IPAM, masquerade, portmap, loopback.
    pub default_network: bool,
    /// The default network's IPv4 subnet (CIDR).
    pub default_subnet: String,
    /// The default network's bridge.
    pub default_bridge: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuntimeHandler {
    /// The OCI runtime binary (runc command line).
    pub path: PathBuf,
    /// The runtime's `--root` state directory; empty means its default
    /// under the state dir.
    #[serde(default)]
    pub root: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        let mut runtimes = BTreeMap::new();
        runtimes.insert(
            "runc".to_string(),
            RuntimeHandler {
                path: PathBuf::from("runc"),
                root: PathBuf::new(),
            },
        );
        Config {
            socket: PathBuf::from("/run/peapod/peapod.sock"),
            root_dir: PathBuf::from("/var/lib/peapod"),
            state_dir: PathBuf::from("/run/peapod"),
            log_level: "info".to_string(),
            cgroup_driver: CgroupDriver::Cgroupfs,
            default_cgroup_parent: "/peapod".to_string(),
            monitor_path: PathBuf::new(),
            shm_size: 64 * 1024 * 1024,
            cni: CniConfig::default(),
            default_runtime: "runc".to_string(),
            runtimes,
            images: ImagesConfig::default(),
            restrict_oom_score_adj: OomScoreAdjRestriction::Auto,
            container_log_max_line: crate::monitor::DEFAULT_LOG_MAX_LINE,
            streaming: StreamingConfig::default(),
            events: EventsConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

impl Default for CniConfig {
    fn default() -> Self {
        CniConfig {
            conf_dir: PathBuf::from("/etc/cni/net.d"),
            bin_dirs: vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")],
            plugin_timeout_secs: 60,
            default_network: true,
            default_subnet: "10.88.0.0/16".to_string(),
            default_bridge: "peapod0".to_string(),
        }
    }
}

impl Config {
    /// Parses a TOML document over the defaults. The error names the first
    /// problem's key and where it is in the file.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config = Config::deserialize_text(text).map_err(|e| Problem::from_toml(text, &e));
        let config = config.and_then(|c| {
            c.validate().map_err(|e| Problem::from_invalid(text, e))?;
            Ok(c)
        });
        config.map_err(|problem| ConfigError::Parse {
            path: path.to_path_buf(),
            problem,
        })
    }

    /// The document over the defaults, not validated yet.
    fn deserialize_text(text: &str) -> Result<Config, toml::de::Error> {
        let mut config: Config = toml::from_str(text)?;
        // Handlers a file declares are added to the built-in ones (runc),
        // which stay available unless the file redefines them.
        for (name, handler) in Config::default().runtimes {
            config.runtimes.entry(name).or_insert(handler);
        }
        Ok(config)
    }

    /// Loads `path`, or the default config file when it exists, or the
    /// embedded defaults.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let (path, required) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Config::from_toml(&text, &path),
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                Ok(Config::default())
            }
            Err(source) => Err(ConfigError::Read { path, source }),
        }
    }

    /// Checks every section; the error names the first invalid key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_locations()?;
        self.cni.validate()?;
        self.validate_pod_defaults()?;
        self.validate_log_level()?;
        self.images.validate()?;
        self.validate_container_log()?;
        self.streaming.validate()?;
        self.events.validate()?;
        self.metrics.validate()?;
        self.validate_runtimes()
    }

    fn validate_locations(&self) -> Result<(), ConfigError> {
        for (key, path) in [
            ("socket", &self.socket),
            ("root_dir", &self.root_dir),
            ("state_dir", &self.state_dir),
        ] {
            require_absolute(key, path)?;
        }
        Ok(())
    }

    fn validate_pod_defaults(&self) -> Result<(), ConfigError> {
        if self.shm_size < 4096 {
            return Err(invalid("shm_size", "must be at least 4096 bytes"));
        }
        if !self.default_cgroup_parent.starts_with('/') {
            return Err(invalid(
                "default_cgroup_parent",
                "must be an absolute cgroup path",
            ));
        }
        Ok(())
    }

    fn validate_log_level(&self) -> Result<(), ConfigError> {
        rules::log_filter(&self.log_level).map_err(|m| invalid("log_level", &m))
    }

    fn validate_container_log(&self) -> Result<(), ConfigError> {
        if self.container_log_max_line < 256 {
            return Err(invalid(
                "container_log_max_line",
                "must be at least 256 bytes",
            ));
        }
        Ok(())
    }

    fn validate_runtimes(&self) -> Result<(), ConfigError> {
        if !self.runtimes.contains_key(&self.default_runtime) {
            return Err(invalid(
                "default_runtime",
                &format!("{:?} is not a key of [runtimes]", self.default_runtime),
            ));
        }
        for (name, handler) in &self.runtimes {
            if name.is_empty() {
                return Err(invalid("runtimes", "a handler name must not be empty"));
            }
            if handler.path.as_os_str().is_empty() {
                return Err(invalid(
                    &format!("runtimes.{name}.path"),
                    "must not be empty",
                ));
            }
        }
        Ok(())
    }

    /// The effective configuration as TOML (also the config reference).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    pub fn monitor_binary(&self) -> PathBuf {
        if !self.monitor_path.as_os_str().is_empty() {
            return self.monitor_path.clone();
        }
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|d| d.join("peapod-monitor")))
            .unwrap_or_else(|| PathBuf::from("peapod-monitor"))
    }

    pub fn database_path(&self) -> PathBuf {
        self.root_dir.join("peapod.redb")
    }
    pub fn sandboxes_dir(&self) -> PathBuf {
        self.state_dir.join("sandboxes")
    }
    pub fn netns_dir(&self) -> PathBuf {
        self.state_dir.join("netns")
    }
    pub fn cni_cache_dir(&self) -> PathBuf {
        self.root_dir.join("cni-cache")
    }
    /// host-local's allocations on the default network.
    pub fn cni_ipam_dir(&self) -> PathBuf {
        self.root_dir.join("cni-ipam")
    }
    pub fn images_dir(&self) -> PathBuf {
        self.root_dir.join("images")
    }
    /// Volatile per-container state: OCI bundle, rootfs mount point, exit
    /// file, monitor socket.
    pub fn containers_dir(&self) -> PathBuf {
        self.state_dir.join("containers")
    }
    /// Persistent per-container data: the writable layer.
    pub fn container_layers_dir(&self) -> PathBuf {
        self.root_dir.join("containers")
    }
    /// The `--root` state directory of a runtime handler.
    pub fn runtime_root(&self, handler: &str) -> PathBuf {
        match self.runtimes.get(handler) {
            Some(h) if !h.root.as_os_str().is_empty() => h.root.clone(),
            _ => self.state_dir.join("runtimes").join(handler),
        }
    }
}

impl CniConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        require_absolute("cni.conf_dir", &self.conf_dir)?;
        if self.bin_dirs.iter().any(|p| !p.is_absolute()) {
            return Err(invalid(
                "cni.bin_dirs",
                "every entry must be an absolute path",
            ));
        }
        if self.plugin_timeout_secs == 0 {
            return Err(invalid("cni.plugin_timeout_secs", "must be at least 1"));
        }
        if let Err(message) = check_ipv4_subnet(&self.default_subnet) {
            return Err(invalid("cni.default_subnet", &message));
        }
        if !is_interface_name(&self.default_bridge) {
            return Err(invalid(
                "cni.default_bridge",
                &format!(
                    "{:?} is not a network interface name (1 to 15 letters, digits, '_', '.' or '-')",
                    self.default_bridge
                ),
            ));
        }
        Ok(())
    }
}

/// An IPv4 network in CIDR form without host bits, with room for a
/// gateway and pods (host-local refuses anything else).
fn check_ipv4_subnet(cidr: &str) -> Result<(), String> {
    let not_cidr = || format!("{cidr:?} is not an IPv4 CIDR such as 10.88.0.0/16");
    let (addr, prefix) = cidr.split_once('/').ok_or_else(not_cidr)?;
    let addr: std::net::Ipv4Addr = addr.parse().map_err(|_| not_cidr())?;
    let canonical = prefix.bytes().all(|b| b.is_ascii_digit()) && !prefix.starts_with("0");
    let prefix: u32 = match prefix.parse() {
        Ok(p) if p <= 32 && (canonical || prefix == "0") => p,
        _ => return Err(not_cidr()),
    };
    if prefix > 30 {
        return Err(format!("{cidr:?} is too small: at most /30"));
    }
    let host_bits = u32::MAX.checked_shr(prefix).unwrap_or(0);
    if u32::from(addr) & host_bits != 0 {
        return Err(format!("{cidr:?} has host bits set"));
    }
    Ok(())
}

/// What the kernel takes as a link name, kept to plain characters.
fn is_interface_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl ImagesConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.max_concurrent_downloads == 0 {
            return Err(invalid(
                "images.max_concurrent_downloads",
                "must be at least 1",
            ));
        }
        if self.connect_timeout_secs == 0 {
            return Err(invalid("images.connect_timeout_secs", "must be at least 1"));
        }
        for (key, path) in [
            ("images.registries_conf", &self.registries_conf),
            ("images.registries_conf_dir", &self.registries_conf_dir),
            ("images.auth_file", &self.auth_file),
        ] {
            if !path.as_os_str().is_empty() {
                require_absolute(key, path)?;
            }
        }
        for (registry, endpoints) in &self.mirrors {
            rules::mirror(registry, endpoints)
                .map_err(|m| invalid(&format!("images.mirrors.{registry}"), &m))?;
        }
        Ok(())
    }
}

fn invalid(key: &str, message: &str) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.to_string(),
    }
}

fn require_absolute(key: &str, path: &Path) -> Result<(), ConfigError> {
    rules::absolute_path(path).map_err(|m| invalid(key, &m))
}

/// The rules single values follow, shared by [`Config::validate`] and the
/// command line's value parsers (whose errors name the flag).
pub mod rules {
    use std::path::Path;

    pub fn absolute_path(path: &Path) -> Result<(), String> {
        if path.is_absolute() {
            return Ok(());
        }
        Err(format!("{} is not an absolute path", path.display()))
    }

    pub fn log_filter(filter: &str) -> Result<(), String> {
        match tracing_subscriber::EnvFilter::try_new(filter) {
            Ok(_) => Ok(()),
            Err(_) => Err(format!("{filter:?} is not a valid filter")),
        }
    }

    pub fn ip_address(address: &str) -> Result<(), String> {
        match address.parse::<std::net::IpAddr>() {
            Ok(_) => Ok(()),
            Err(_) => Err(format!("{address:?} is not an IP address")),
        }
    }

    pub fn socket_address(address: &str) -> Result<(), String> {
        match address.parse::<std::net::SocketAddr>() {
            Ok(_) => Ok(()),
            Err(_) => Err(format!(
                "{address:?} is not an IP address and port such as 127.0.0.1:9090"
            )),
        }
    }

    pub fn mirror(registry: &str, endpoints: &[impl AsRef<str>]) -> Result<(), String> {
        if registry.is_empty() || endpoints.iter().any(|e| e.as_ref().trim().is_empty()) {
            return Err("registry names and endpoints must not be empty".to_string());
        }
        Ok(())
    }

    /// A value of an enumerated key (`cgroup_driver`) from the name the
    /// file gives it: serde's names, so flags and file agree.
    pub fn named<T: serde::de::DeserializeOwned>(name: &str) -> Result<T, String> {
        use serde::de::IntoDeserializer;
        let name: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
            name.into_deserializer();
        T::deserialize(name).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_round_trip() {
        let c = Config::default();
        c.validate().unwrap();
        let text = c.to_toml();
        assert_eq!(Config::from_toml(&text, Path::new("x")).unwrap(), c);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_toml("sockett = \"/x\"", Path::new("c.toml")).unwrap_err();
        assert!(err.to_string().contains("sockett"), "{err}");
        let err = Config::from_toml("[cni]\nconfdir = \"/x\"", Path::new("c.toml")).unwrap_err();
        assert!(err.to_string().contains("confdir"), "{err}");
    }

    #[test]
    fn invalid_values_are_named() {
        let err = Config::from_toml("cgroup_driver = \"foo\"", Path::new("c.toml")).unwrap_err();
        assert!(
            err.to_string().contains("cgroup_driver") || err.to_string().contains("foo"),
            "{err}"
        );
        let err = Config::from_toml("root_dir = \"rel\"", Path::new("c.toml")).unwrap_err();
        assert!(err.to_string().contains("root_dir"), "{err}");
        let err = Config::from_toml("default_runtime = \"kata\"", Path::new("c.toml")).unwrap_err();
        assert!(err.to_string().contains("default_runtime"), "{err}");
        let err =
            Config::from_toml("[cni]\nplugin_timeout_secs = 0", Path::new("c.toml")).unwrap_err();
        assert!(err.to_string().contains("cni.plugin_timeout_secs"), "{err}");
        for subnet in [
            "10.88.0.0",
            "10.88.0.1/16",
            "10.88.0.0/31",
            "fd00::/64",
            "x/8",
        ] {
            let text = format!("[cni]\ndefault_subnet = {subnet:?}");
            let err = Config::from_toml(&text, Path::new("c.toml")).unwrap_err();
            assert!(err.to_string().contains("cni.default_subnet"), "{err}");
        }
        let c = Config::from_toml(
            "[cni]\ndefault_subnet = \"10.9.8.0/24\"",
            Path::new("c.toml"),
        );
        assert_eq!(c.unwrap().cni.default_subnet, "10.9.8.0/24");
        for bridge in ["", "a/b", "sixteen-chars-xx"] {
            let text = format!("[cni]\ndefault_bridge = {bridge:?}");
            let err = Config::from_toml(&text, Path::new("c.toml")).unwrap_err();
            assert!(err.to_string().contains("cni.default_bridge"), "{err}");
        }
    }

    #[test]
    fn partial_file_keeps_other_defaults() {
        let c = Config::from_toml(
            "state_dir = \"/tmp/s\"\n[runtimes.crun]\npath = \"crun\"\n",
            Path::new("c.toml"),
        )
        .unwrap();
        assert_eq!(c.state_dir, PathBuf::from("/tmp/s"));
        assert_eq!(c.socket, Config::default().socket);
        assert_eq!(
            c.runtimes.len(),
            2,
            "declared handlers add to the built-in runc"
        );
        assert_eq!(c.runtimes["crun"].path, PathBuf::from("crun"));
    }

    #[test]
    fn node_registry_files_and_progress_timeout() {
        let d = Config::default().images;
        assert_eq!(
            d.registries_conf,
            PathBuf::from("/etc/containers/registries.conf")
        );
        assert_eq!(
            d.registries_conf_dir,
            PathBuf::from("/etc/containers/registries.conf.d")
        );
        assert_eq!(d.auth_file, PathBuf::new());
        assert_eq!(d.pull_progress_timeout_secs, 300);
        let c = Config::from_toml(
            "[images]\nregistries_conf = \"\"\nauth_file = \"/etc/peapod/auth.json\"\n\
             pull_progress_timeout_secs = 0\n",
            Path::new("c.toml"),
        )
        .unwrap();
        assert_eq!(c.images.registries_conf, PathBuf::new());
        assert_eq!(c.images.pull_progress_timeout_secs, 0);
        for key in ["registries_conf", "registries_conf_dir", "auth_file"] {
            let err = Config::from_toml(
                &format!("[images]\n{key} = \"relative/path\"\n"),
                Path::new("c.toml"),
            )
            .unwrap_err();
            assert!(err.to_string().contains(&format!("images.{key}")), "{err}");
        }
    }

    #[test]
    fn errors_name_the_file_line_and_key() {
        let err = Config::from_toml("\n[cni]\nbogus = 1\n", Path::new("/etc/p.toml")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("config file /etc/p.toml:3:1: cni.bogus: unknown field `bogus`"),
            "{err}"
        );
        let err =
            Config::from_toml("[streaming]\naddress = \"x\"\n", Path::new("c.toml")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "config file c.toml:2:1: streaming.address: \"x\" is not an IP address"
        );
        let err =
            Config::from_toml("[metrics]\naddress = \"9090\"\n", Path::new("c.toml")).unwrap_err();
        assert!(err.to_string().contains("metrics.address"), "{err}");
        let c = Config::from_toml("[metrics]\naddress = \"[::1]:9090\"\n", Path::new("c.toml"));
        assert_eq!(
            c.unwrap().metrics.socket_address(),
            "[::1]:9090".parse().ok()
        );
        assert_eq!(Config::default().metrics.socket_address(), None);
    }

    #[test]
    fn enumerated_values_parse_by_their_file_names() {
        assert_eq!(
            rules::named::<CgroupDriver>("systemd"),
            Ok(CgroupDriver::Systemd)
        );
        let err = rules::named::<CgroupDriver>("nope").unwrap_err();
        assert!(err.contains("nope") && err.contains("cgroupfs"), "{err}");
    }
}
