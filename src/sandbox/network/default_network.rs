//! peapod's own network, in force while the conf dir holds no config: a
//! bridge whose address is the pods' gateway and which masquerades their
//! traffic, host-local IPAM on the configured subnet (its allocations
//! under peapod's root dir), host ports through portmap, and the pod's
//! loopback up.
//!
//! It is built from the config and never read from a file, so a pod
//! attached to it is detached by the same network built anew, after a
//! restart or once a config file has appeared. Those plugins' DEL reads
//! neither the subnet nor the bridge (bridge deletes the pod's interface
//! and the masquerade rules of the addresses it finds on it, host-local
//! frees by container id), so a pod created before the subnet or bridge
//! was changed still gets everything freed.

use std::path::Path;

use serde_json::{json, Map, Value};

use super::{CniError, CniNetwork, NetworkOrigin, DEFAULT_EXEC_TIMEOUT};
use crate::config::Config;

/// The default network's CNI name, recorded with every pod on it; no
/// config file may use it.
pub const DEFAULT_NETWORK_NAME: &str = "peapod-default";
/// The standard plugins the default network runs, all needed in the bin
/// dirs (host-local is bridge's IPAM).
pub const DEFAULT_NETWORK_PLUGINS: [&str; 4] = ["bridge", "host-local", "portmap", "loopback"];
const CNI_VERSION: &str = "1.0.0";

impl CniNetwork {
    /// The default network as `config` describes it.
    pub fn default_network(config: &Config) -> CniNetwork {
        let cni = &config.cni;
        CniNetwork {
            name: DEFAULT_NETWORK_NAME.to_string(),
            cni_version: CNI_VERSION.to_string(),
            disable_check: false,
            plugins: default_plugins(
                &cni.default_bridge,
                &cni.default_subnet,
                &config.cni_ipam_dir(),
            ),
            origin: NetworkOrigin::Default {
                bridge: cni.default_bridge.clone(),
                subnet: cni.default_subnet.clone(),
                conf_dir: cni.conf_dir.clone(),
            },
            bin_dirs: cni.bin_dirs.clone(),
            cache_dir: config.cni_cache_dir(),
            exec_timeout: DEFAULT_EXEC_TIMEOUT,
        }
    }

    /// Fails naming the first plugin of the default network that is not
    /// in the bin dirs: without it no pod could be attached.
    pub fn require_default_plugins(&self) -> Result<(), CniError> {
        for plugin in DEFAULT_NETWORK_PLUGINS {
            if let Err(CniError::PluginNotFound { dirs, .. }) = self.find_plugin(plugin) {
                return Err(CniError::DefaultNetworkPluginMissing {
                    network: DEFAULT_NETWORK_NAME,
                    plugin,
                    dirs,
                });
            }
        }
        Ok(())
    }
}

/// The plugins of the default network's list, in ADD order.
fn default_plugins(bridge: &str, subnet: &str, ipam_dir: &Path) -> Vec<Map<String, Value>> {
    let plugins = [
        json!({
            "type": "bridge",
            "bridge": bridge,
            "isGateway": true,
            "ipMasq": true,
            // Lets a pod reach itself through a Service address.
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{ "subnet": subnet }]],
                "routes": [{ "dst": "0.0.0.0/0" }],
                "dataDir": ipam_dir.to_string_lossy(),
            },
        }),
        json!({ "type": "portmap", "capabilities": { "portMappings": true } }),
        json!({ "type": "loopback" }),
    ];
    plugins
        .into_iter()
        .filter_map(|p| match p {
            Value::Object(p) => Some(p),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> Config {
        let mut config = Config {
            root_dir: dir.join("root"),
            ..Config::default()
        };
        config.cni.conf_dir = dir.join("net.d");
        config.cni.bin_dirs = vec![dir.join("bin")];
        config.cni.default_bridge = "ppd-unit".to_string();
        config.cni.default_subnet = "10.123.4.0/24".to_string();
        config
    }

    #[test]
    fn is_the_configured_bridge_subnet_and_ipam_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path());
        let net = CniNetwork::default_network(&config);
        assert_eq!(net.name(), DEFAULT_NETWORK_NAME);
        assert_eq!(net.plugin_types(), vec!["bridge", "portmap", "loopback"]);
        assert_eq!(net.source(), None);
        let bridge = &net.plugins[0];
        assert_eq!(bridge["bridge"], "ppd-unit");
        assert_eq!(bridge["ipMasq"], true);
        assert_eq!(bridge["ipam"]["type"], "host-local");
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.123.4.0/24");
        assert_eq!(
            bridge["ipam"]["dataDir"],
            dir.path().join("root/cni-ipam").to_string_lossy().as_ref()
        );
        let said = net.describe();
        for part in [DEFAULT_NETWORK_NAME, "ppd-unit", "10.123.4.0/24", "net.d"] {
            assert!(said.contains(part), "{said}");
        }
    }

    #[test]
    fn reads_back_as_a_conflist_file_would() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path());
        let net = CniNetwork::default_network(&config);
        let conf_dir = dir.path().join("copy");
        std::fs::create_dir(&conf_dir).expect("mkdir");
        let file = json!({
            "cniVersion": net.cni_version(),
            "name": net.name(),
            "plugins": net.plugins,
        });
        std::fs::write(conf_dir.join("a.conflist"), file.to_string()).expect("write");
        let loaded = CniNetwork::load(&conf_dir, &[], Path::new("/nonexistent"))
            .expect("load")
            .expect("a config");
        assert_eq!(loaded.name(), net.name());
        assert_eq!(loaded.plugins, net.plugins);
    }

    #[test]
    fn a_missing_plugin_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(dir.path());
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).expect("mkdir");
        let net = CniNetwork::default_network(&config);
        for plugin in ["bridge", "host-local", "loopback"] {
            std::fs::write(bin.join(plugin), "").expect("write");
        }
        let err = net
            .require_default_plugins()
            .expect_err("portmap is missing");
        let text = err.to_string();
        assert!(
            text.contains("\"portmap\"") && text.contains(&bin.display().to_string()),
            "{text}"
        );
        std::fs::write(bin.join("portmap"), "").expect("write");
        net.require_default_plugins().expect("all there");
    }
}
