//! The pod network as the sandbox lifecycle uses it: attach a pod, detach
//! it, and find which network is in force. CNI is the real one; tests use
//! a fake.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{Attachment, CniError, CniNetwork};
use crate::config::Config;

/// One network pods attach to.
#[tonic::async_trait]
pub trait PodNetwork: Send + Sync {
    /// The network's name, recorded with each pod so that its detach goes
    /// to the same network.
    fn name(&self) -> &str;

    /// Attaches a pod; its addresses, the primary first.
    async fn add(&self, a: &Attachment<'_>) -> Result<Vec<IpAddr>, CniError>;

    /// Detaches a pod. Idempotent: a pod that is not attached succeeds.
    async fn del(&self, a: &Attachment<'_>) -> Result<(), CniError>;
}

/// Where the network in force comes from.
pub trait NetworkPlugin: Send + Sync {
    /// The network in force, read anew on every call (an operator may
    /// install one after the daemon started); `None` when none exists.
    fn network(&self) -> Result<Option<Arc<dyn PodNetwork>>, CniError>;
}

/// CNI: the first network config in a directory, its plugins in the bin
/// directories.
pub struct CniPlugins {
    conf_dir: PathBuf,
    bin_dirs: Vec<PathBuf>,
    cache_dir: PathBuf,
    exec_timeout: Duration,
}

impl CniPlugins {
    pub fn new(config: &Config) -> CniPlugins {
        CniPlugins {
            conf_dir: config.cni.conf_dir.clone(),
            bin_dirs: config.cni.bin_dirs.clone(),
            cache_dir: config.cni_cache_dir(),
            exec_timeout: Duration::from_secs(config.cni.plugin_timeout_secs),
        }
    }
}

impl NetworkPlugin for CniPlugins {
    fn network(&self) -> Result<Option<Arc<dyn PodNetwork>>, CniError> {
        let net = CniNetwork::load(&self.conf_dir, &self.bin_dirs, &self.cache_dir)?;
        Ok(net.map(|n| Arc::new(n.with_exec_timeout(self.exec_timeout)) as Arc<dyn PodNetwork>))
    }
}

#[tonic::async_trait]
impl PodNetwork for CniNetwork {
    fn name(&self) -> &str {
        CniNetwork::name(self)
    }

    async fn add(&self, a: &Attachment<'_>) -> Result<Vec<IpAddr>, CniError> {
        Ok(CniNetwork::add(self, a).await?.ips)
    }

    async fn del(&self, a: &Attachment<'_>) -> Result<(), CniError> {
        CniNetwork::del(self, a).await
    }
}
