//! The CRI `RuntimeService`.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::sandbox::{filter_from_request, spec_from_request, to_pod_sandbox, to_status};
use super::{rpc, status_of, unimplemented, Daemon};
use crate::api;
use crate::api::runtime_service_server::RuntimeService;
use crate::cgroups::CgroupDriver;

/// The CRI API version kubelet checks for; any other value and it refuses
/// the runtime.
pub const CRI_VERSION: &str = "0.1.0";

pub struct RuntimeApi {
    daemon: Arc<Daemon>,
}

impl RuntimeApi {
    pub fn new(daemon: Arc<Daemon>) -> Self {
        RuntimeApi { daemon }
    }
}

const CONTAINERS: &str = "containers (create, start, stop, remove, status, logs, exec)";
const STREAMING: &str = "the streaming server (exec, attach, port-forward)";
const STATS: &str = "pod and container stats";

#[tonic::async_trait]
impl RuntimeService for RuntimeApi {
    async fn version(
        &self,
        _req: Request<api::VersionRequest>,
    ) -> Result<Response<api::VersionResponse>, Status> {
        rpc("Version", "", async {
            Ok(api::VersionResponse {
                version: CRI_VERSION.to_string(),
                runtime_name: "peapod".to_string(),
                runtime_version: env!("CARGO_PKG_VERSION").to_string(),
                runtime_api_version: "v1".to_string(),
            })
        })
        .await
    }

    async fn status(
        &self,
        req: Request<api::StatusRequest>,
    ) -> Result<Response<api::StatusResponse>, Status> {
        let verbose = req.into_inner().verbose;
        rpc("Status", "", async {
            let cfg = &self.daemon.config;
            let network = match self.daemon.sandboxes.cni_network() {
                Ok(Some(_)) => api::RuntimeCondition {
                    r#type: "NetworkReady".into(),
                    status: true,
                    reason: String::new(),
                    message: String::new(),
                },
                Ok(None) => api::RuntimeCondition {
                    r#type: "NetworkReady".into(),
                    status: false,
                    reason: "NetworkPluginNotReady".into(),
                    message: format!(
                        "Network plugin returns error: no CNI network config found in {}",
                        cfg.cni.conf_dir.display()
                    ),
                },
                Err(e) => api::RuntimeCondition {
                    r#type: "NetworkReady".into(),
                    status: false,
                    reason: "NetworkPluginNotReady".into(),
                    message: format!("Network plugin returns error: {e}"),
                },
            };
            let runtime = api::RuntimeCondition {
                r#type: "RuntimeReady".into(),
                status: true,
                reason: String::new(),
                message: String::new(),
            };
            let mut info = std::collections::HashMap::new();
            if verbose {
                info.insert(
                    "config".to_string(),
                    serde_json::to_string(cfg.as_ref()).unwrap_or_default(),
                );
            }
            let mut handlers: Vec<api::RuntimeHandler> = cfg
                .runtimes
                .keys()
                .map(|name| api::RuntimeHandler {
                    name: name.clone(),
                    features: Some(api::RuntimeHandlerFeatures {
                        recursive_read_only_mounts: false,
                        user_namespaces: false,
                    }),
                })
                .collect();
            // The default handler is also reachable by the empty name.
            handlers.insert(
                0,
                api::RuntimeHandler {
                    name: String::new(),
                    features: handlers
                        .iter()
                        .find(|h| h.name == cfg.default_runtime)
                        .and_then(|h| h.features),
                },
            );
            Ok(api::StatusResponse {
                status: Some(api::RuntimeStatus {
                    conditions: vec![runtime, network],
                }),
                info,
                runtime_handlers: handlers,
                features: None,
            })
        })
        .await
    }

    async fn runtime_config(
        &self,
        _req: Request<api::RuntimeConfigRequest>,
    ) -> Result<Response<api::RuntimeConfigResponse>, Status> {
        rpc("RuntimeConfig", "", async {
            // Always explicit: the enum's zero value means systemd.
            let driver = match self.daemon.config.cgroup_driver {
                CgroupDriver::Cgroupfs => api::CgroupDriver::Cgroupfs,
                CgroupDriver::Systemd => api::CgroupDriver::Systemd,
            };
            Ok(api::RuntimeConfigResponse {
                linux: Some(api::LinuxRuntimeConfiguration {
                    cgroup_driver: driver as i32,
                }),
            })
        })
        .await
    }

    async fn update_runtime_config(
        &self,
        req: Request<api::UpdateRuntimeConfigRequest>,
    ) -> Result<Response<api::UpdateRuntimeConfigResponse>, Status> {
        let cidr = req
            .into_inner()
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
            .unwrap_or_default();
        rpc("UpdateRuntimeConfig", "", async {
            if cidr.is_empty() {
                return Ok(api::UpdateRuntimeConfigResponse {});
            }
            for part in cidr.split(',') {
                let valid = part.split_once('/').is_some_and(|(ip, len)| {
                    ip.parse::<std::net::IpAddr>().is_ok() && len.parse::<u8>().is_ok()
                });
                if !valid {
                    return Err(Status::invalid_argument(format!(
                        "runtime_config.network_config.pod_cidr: {part:?} is not a CIDR"
                    )));
                }
            }
            self.daemon
                .sandboxes
                .set_pod_cidr(cidr.clone())
                .await
                .map_err(status_of)?;
            Ok(api::UpdateRuntimeConfigResponse {})
        })
        .await
    }

    async fn run_pod_sandbox(
        &self,
        req: Request<api::RunPodSandboxRequest>,
    ) -> Result<Response<api::RunPodSandboxResponse>, Status> {
        let req = req.into_inner();
        let name = req
            .config
            .as_ref()
            .and_then(|c| c.metadata.as_ref())
            .map(|m| format!("{}/{}", m.namespace, m.name))
            .unwrap_or_default();
        rpc("RunPodSandbox", &name, async {
            let spec = spec_from_request(&self.daemon.config, req).map_err(status_of)?;
            let id = self.daemon.sandboxes.run(spec).await.map_err(status_of)?;
            Ok(api::RunPodSandboxResponse { pod_sandbox_id: id })
        })
        .await
    }

    async fn stop_pod_sandbox(
        &self,
        req: Request<api::StopPodSandboxRequest>,
    ) -> Result<Response<api::StopPodSandboxResponse>, Status> {
        let id = req.into_inner().pod_sandbox_id;
        rpc("StopPodSandbox", &id, async {
            self.daemon.sandboxes.stop(&id).await.map_err(status_of)?;
            Ok(api::StopPodSandboxResponse {})
        })
        .await
    }

    async fn remove_pod_sandbox(
        &self,
        req: Request<api::RemovePodSandboxRequest>,
    ) -> Result<Response<api::RemovePodSandboxResponse>, Status> {
        let id = req.into_inner().pod_sandbox_id;
        rpc("RemovePodSandbox", &id, async {
            if id.is_empty() {
                return Err(Status::invalid_argument(
                    "pod_sandbox_id: must not be empty",
                ));
            }
            self.daemon.sandboxes.remove(&id).await.map_err(status_of)?;
            Ok(api::RemovePodSandboxResponse {})
        })
        .await
    }

    async fn pod_sandbox_status(
        &self,
        req: Request<api::PodSandboxStatusRequest>,
    ) -> Result<Response<api::PodSandboxStatusResponse>, Status> {
        let req = req.into_inner();
        rpc("PodSandboxStatus", &req.pod_sandbox_id, async {
            let view = self
                .daemon
                .sandboxes
                .status(&req.pod_sandbox_id)
                .map_err(status_of)?;
            let mut info = std::collections::HashMap::new();
            if req.verbose {
                let r = &view.record;
                let detail = serde_json::json!({
                    "pid": r.infra.map(|p| p.pid),
                    "processStartTime": r.infra.map(|p| p.start_time),
                    "netns": r.netns_path,
                    "shm": r.shm_path,
                    "sandboxDir": r.dir,
                    "resolvConf": r.resolv_conf_path(),
                    "hostnameFile": r.hostname_path(),
                    "cgroup": r.cgroup,
                    "cgroupDirs": self.daemon.sandboxes.cgroup_dirs(r),
                    "cniNetwork": r.cni_network,
                    "runtimeHandler": r.spec.runtime_handler,
                    "sysctls": r.spec.sysctls,
                    "state": r.state,
                });
                info.insert("info".to_string(), detail.to_string());
                if let Some(p) = r.infra {
                    info.insert("pid".to_string(), p.pid.to_string());
                }
            }
            Ok(api::PodSandboxStatusResponse {
                status: Some(to_status(&view)),
                info,
                containers_statuses: vec![],
                timestamp: crate::ids::now_nanos(),
            })
        })
        .await
    }

    async fn list_pod_sandbox(
        &self,
        req: Request<api::ListPodSandboxRequest>,
    ) -> Result<Response<api::ListPodSandboxResponse>, Status> {
        let filter = filter_from_request(req.into_inner().filter);
        rpc("ListPodSandbox", "", async {
            let items = self
                .daemon
                .sandboxes
                .list(&filter)
                .iter()
                .map(to_pod_sandbox)
                .collect();
            Ok(api::ListPodSandboxResponse { items })
        })
        .await
    }

    // Containers do not exist yet in peapod: listing them truthfully returns
    // none (kubelet lists every second and must get an answer).
    async fn list_containers(
        &self,
        _req: Request<api::ListContainersRequest>,
    ) -> Result<Response<api::ListContainersResponse>, Status> {
        rpc("ListContainers", "", async {
            Ok(api::ListContainersResponse { containers: vec![] })
        })
        .await
    }

    async fn list_container_stats(
        &self,
        _req: Request<api::ListContainerStatsRequest>,
    ) -> Result<Response<api::ListContainerStatsResponse>, Status> {
        rpc("ListContainerStats", "", async {
            Ok(api::ListContainerStatsResponse { stats: vec![] })
        })
        .await
    }

    async fn create_container(
        &self,
        _req: Request<api::CreateContainerRequest>,
    ) -> Result<Response<api::CreateContainerResponse>, Status> {
        Err(unimplemented("CreateContainer", CONTAINERS))
    }

    async fn start_container(
        &self,
        _req: Request<api::StartContainerRequest>,
    ) -> Result<Response<api::StartContainerResponse>, Status> {
        Err(unimplemented("StartContainer", CONTAINERS))
    }

    async fn stop_container(
        &self,
        _req: Request<api::StopContainerRequest>,
    ) -> Result<Response<api::StopContainerResponse>, Status> {
        Err(unimplemented("StopContainer", CONTAINERS))
    }

    async fn remove_container(
        &self,
        _req: Request<api::RemoveContainerRequest>,
    ) -> Result<Response<api::RemoveContainerResponse>, Status> {
        Err(unimplemented("RemoveContainer", CONTAINERS))
    }

    async fn container_status(
        &self,
        _req: Request<api::ContainerStatusRequest>,
    ) -> Result<Response<api::ContainerStatusResponse>, Status> {
        Err(unimplemented("ContainerStatus", CONTAINERS))
    }

    async fn update_container_resources(
        &self,
        _req: Request<api::UpdateContainerResourcesRequest>,
    ) -> Result<Response<api::UpdateContainerResourcesResponse>, Status> {
        Err(unimplemented("UpdateContainerResources", CONTAINERS))
    }

    async fn reopen_container_log(
        &self,
        _req: Request<api::ReopenContainerLogRequest>,
    ) -> Result<Response<api::ReopenContainerLogResponse>, Status> {
        Err(unimplemented("ReopenContainerLog", CONTAINERS))
    }

    async fn exec_sync(
        &self,
        _req: Request<api::ExecSyncRequest>,
    ) -> Result<Response<api::ExecSyncResponse>, Status> {
        Err(unimplemented("ExecSync", CONTAINERS))
    }

    async fn exec(
        &self,
        _req: Request<api::ExecRequest>,
    ) -> Result<Response<api::ExecResponse>, Status> {
        Err(unimplemented("Exec", STREAMING))
    }

    async fn attach(
        &self,
        _req: Request<api::AttachRequest>,
    ) -> Result<Response<api::AttachResponse>, Status> {
        Err(unimplemented("Attach", STREAMING))
    }

    async fn port_forward(
        &self,
        _req: Request<api::PortForwardRequest>,
    ) -> Result<Response<api::PortForwardResponse>, Status> {
        Err(unimplemented("PortForward", STREAMING))
    }

    async fn container_stats(
        &self,
        _req: Request<api::ContainerStatsRequest>,
    ) -> Result<Response<api::ContainerStatsResponse>, Status> {
        Err(unimplemented("ContainerStats", STATS))
    }

    async fn pod_sandbox_stats(
        &self,
        _req: Request<api::PodSandboxStatsRequest>,
    ) -> Result<Response<api::PodSandboxStatsResponse>, Status> {
        Err(unimplemented("PodSandboxStats", STATS))
    }

    async fn list_pod_sandbox_stats(
        &self,
        _req: Request<api::ListPodSandboxStatsRequest>,
    ) -> Result<Response<api::ListPodSandboxStatsResponse>, Status> {
        Err(unimplemented("ListPodSandboxStats", STATS))
    }
}
