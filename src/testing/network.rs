//! The fake pod network and infra process.

use std::net::IpAddr;
use std::sync::Arc;

use super::World;
use crate::process::ProcessRef;
use crate::sandbox::network::{Attachment, CniError};
use crate::sandbox::{InfraError, NetworkPlugin, PodInfra, PodNetwork, SandboxSpec};

/// One network, "fake-net", that records which pods are attached.
#[derive(Clone)]
pub struct FakeNetwork(pub World);

fn cni_error(e: std::io::Error) -> CniError {
    CniError::PluginFailed {
        plugin: "fake".into(),
        command: "ADD",
        code: None,
        message: e.to_string(),
    }
}

impl NetworkPlugin for FakeNetwork {
    fn network(&self) -> Result<Option<Arc<dyn PodNetwork>>, CniError> {
        Ok(Some(Arc::new(self.clone())))
    }

    fn network_named(&self, name: &str) -> Result<Option<Arc<dyn PodNetwork>>, CniError> {
        Ok((name == self.name()).then(|| Arc::new(self.clone()) as Arc<dyn PodNetwork>))
    }
}

#[tonic::async_trait]
impl PodNetwork for FakeNetwork {
    fn name(&self) -> &str {
        "fake-net"
    }

    async fn add(&self, a: &Attachment<'_>) -> Result<Vec<IpAddr>, CniError> {
        self.0.step("network add").map_err(cni_error)?;
        self.0.lock().attachments.insert(a.container_id.to_string());
        Ok(vec!["10.88.0.2".parse().expect("an address")])
    }

    async fn del(&self, a: &Attachment<'_>) -> Result<(), CniError> {
        self.0.step("network del").map_err(cni_error)?;
        self.0.lock().attachments.remove(a.container_id);
        Ok(())
    }
}

/// An infra process that is a fake process of the world.
pub struct FakeInfra(pub World);

#[tonic::async_trait]
impl PodInfra for FakeInfra {
    async fn start(&self, _spec: &SandboxSpec) -> Result<ProcessRef, InfraError> {
        self.0
            .step("start infra")
            .map_err(|e| InfraError::Setup(e.to_string()))?;
        Ok(self.0.spawn())
    }
}
