//! The pod network as the sandbox lifecycle uses it: attach a pod, detach
//! it, find which network is in force for new pods and which one a pod
//! was attached to. CNI is the real one; tests use a fake.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{Attachment, CniError, CniNetwork, DEFAULT_NETWORK_NAME};
use crate::config::Config;

/// One network pods attach to.
#[tonic::async_trait]
pub trait PodNetwork: Send + Sync {
    /// The network's name, recorded with each pod so that its detach goes
    /// to the same network.
    fn name(&self) -> &str;

    /// Which network this is and where it comes from, for the operator.
    fn describe(&self) -> String {
        format!("network {:?}", self.name())
    }

    /// Attaches a pod; its addresses, the primary first.
    async fn add(&self, a: &Attachment<'_>) -> Result<Vec<IpAddr>, CniError>;

    /// Detaches a pod. Idempotent: a pod that is not attached succeeds.
    async fn del(&self, a: &Attachment<'_>) -> Result<(), CniError>;
}

/// Where the networks come from.
pub trait NetworkPlugin: Send + Sync {
    /// The network new pods join, read anew on every call (an operator may
    /// install one after the daemon started); `None` when none exists.
    fn network(&self) -> Result<Option<Arc<dyn PodNetwork>>, CniError>;

    /// The network called `name` (the one a pod was attached to), in
    /// force or not, for the pod's detach; `None` when nothing defines it
    /// any more.
    fn network_named(&self, name: &str) -> Result<Option<Arc<dyn PodNetwork>>, CniError>;
}

/// CNI: the first network config in a directory, else peapod's default
/// network; plugins in the bin directories.
pub struct CniPlugins {
    conf_dir: PathBuf,
    bin_dirs: Vec<PathBuf>,
    cache_dir: PathBuf,
    exec_timeout: Duration,
    /// For pods already on it even when new pods do not get it.
    default_network: CniNetwork,
    default_network_enabled: bool,
}

impl CniPlugins {
    pub fn new(config: &Config) -> CniPlugins {
        CniPlugins {
            conf_dir: config.cni.conf_dir.clone(),
            bin_dirs: config.cni.bin_dirs.clone(),
            cache_dir: config.cni_cache_dir(),
            exec_timeout: Duration::from_secs(config.cni.plugin_timeout_secs),
            default_network: CniNetwork::default_network(config),
            default_network_enabled: config.cni.default_network,
        }
    }

    fn shared(&self, net: CniNetwork) -> Arc<dyn PodNetwork> {
        Arc::new(net.with_exec_timeout(self.exec_timeout))
    }
}

impl NetworkPlugin for CniPlugins {
    fn network(&self) -> Result<Option<Arc<dyn PodNetwork>>, CniError> {
        if let Some(net) = CniNetwork::load(&self.conf_dir, &self.bin_dirs, &self.cache_dir)? {
            // Two networks by one name would make a pod's detach ambiguous.
            if net.name() == DEFAULT_NETWORK_NAME {
                return Err(CniError::ReservedNetworkName {
                    path: net.source().unwrap_or(&self.conf_dir).to_path_buf(),
                    name: net.name().to_string(),
                });
            }
            return Ok(Some(self.shared(net)));
        }
        if !self.default_network_enabled {
            return Ok(None);
        }
        self.default_network.require_default_plugins()?;
        Ok(Some(self.shared(self.default_network.clone())))
    }

    fn network_named(&self, name: &str) -> Result<Option<Arc<dyn PodNetwork>>, CniError> {
        // Whether or not it is still on: its pods must be detached.
        if name == DEFAULT_NETWORK_NAME {
            return Ok(Some(self.shared(self.default_network.clone())));
        }
        let net = CniNetwork::load_named(&self.conf_dir, name, &self.bin_dirs, &self.cache_dir)?;
        Ok(net.map(|n| self.shared(n)))
    }
}

#[tonic::async_trait]
impl PodNetwork for CniNetwork {
    fn name(&self) -> &str {
        CniNetwork::name(self)
    }

    fn describe(&self) -> String {
        CniNetwork::describe(self)
    }

    async fn add(&self, a: &Attachment<'_>) -> Result<Vec<IpAddr>, CniError> {
        Ok(CniNetwork::add(self, a).await?.ips)
    }

    async fn del(&self, a: &Attachment<'_>) -> Result<(), CniError> {
        CniNetwork::del(self, a).await
    }
}
