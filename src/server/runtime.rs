//! The CRI `RuntimeService`.

use std::sync::Arc;
use std::time::Duration;

use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};

use super::convert::container;
use super::convert::pod_resources::pod_resources_from;
use super::convert::sandbox::{spec_from_request, to_status};
use super::{lists, pod_metrics, rpc, stats, status, status_of, streaming, Daemon};
use crate::api;
use crate::api::runtime_service_server::RuntimeService;
use crate::cgroups::CgroupDriver;
use crate::container::CheckpointRequest;

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
            let info = match verbose {
                true => status::runtime_info(&self.daemon),
                false => Default::default(),
            };
            Ok(api::StatusResponse {
                status: Some(api::RuntimeStatus {
                    conditions: status::conditions(&self.daemon),
                }),
                info,
                runtime_handlers: status::runtime_handlers(&self.daemon).await,
                features: Some(status::runtime_features()),
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
            if spec.userns.is_some() && !self.daemon.containers.user_namespaces() {
                return Err(Status::failed_precondition(format!(
                    "config.linux.security_context.namespace_options.userns_options: this host \
                     cannot id-map mounts under {}, which user-namespaced pods need",
                    self.daemon.config.state_dir.display()
                )));
            }
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
            self.daemon.pods.stop(&id).await.map_err(status_of)?;
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
            self.daemon.pods.remove(&id).await.map_err(status_of)?;
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
            let info = match req.verbose {
                true => status::sandbox_info(&self.daemon, &view.record),
                false => Default::default(),
            };
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
        let filter = req.into_inner().filter;
        rpc("ListPodSandbox", "", async {
            let items = lists::pod_sandboxes(&self.daemon, filter);
            Ok(api::ListPodSandboxResponse { items })
        })
        .await
    }

    async fn stream_pod_sandboxes(
        &self,
        req: Request<api::StreamPodSandboxesRequest>,
    ) -> Result<Response<BoxStream<api::StreamPodSandboxesResponse>>, Status> {
        let filter = req.into_inner().filter;
        rpc("StreamPodSandboxes", "", async {
            Ok(lists::stream_pod_sandboxes(&self.daemon, filter))
        })
        .await
    }

    async fn list_containers(
        &self,
        req: Request<api::ListContainersRequest>,
    ) -> Result<Response<api::ListContainersResponse>, Status> {
        let filter = req.into_inner().filter;
        rpc("ListContainers", "", async {
            let containers = lists::containers(&self.daemon, filter);
            Ok(api::ListContainersResponse { containers })
        })
        .await
    }

    async fn stream_containers(
        &self,
        req: Request<api::StreamContainersRequest>,
    ) -> Result<Response<BoxStream<api::StreamContainersResponse>>, Status> {
        let filter = req.into_inner().filter;
        rpc("StreamContainers", "", async {
            Ok(lists::stream_containers(&self.daemon, filter))
        })
        .await
    }

    async fn list_container_stats(
        &self,
        req: Request<api::ListContainerStatsRequest>,
    ) -> Result<Response<api::ListContainerStatsResponse>, Status> {
        stats::list_container(&self.daemon, req.into_inner()).await
    }

    async fn container_stats(
        &self,
        req: Request<api::ContainerStatsRequest>,
    ) -> Result<Response<api::ContainerStatsResponse>, Status> {
        stats::container(&self.daemon, req.into_inner()).await
    }

    async fn create_container(
        &self,
        req: Request<api::CreateContainerRequest>,
    ) -> Result<Response<api::CreateContainerResponse>, Status> {
        let req = req.into_inner();
        let name = req
            .config
            .as_ref()
            .and_then(|c| c.metadata.as_ref())
            .map(|m| format!("{}/{}", req.pod_sandbox_id, m.name))
            .unwrap_or_default();
        rpc("CreateContainer", &name, async {
            let spec = container::spec_from_request(req).map_err(status_of)?;
            let id = self
                .daemon
                .containers
                .create(spec)
                .await
                .map_err(status_of)?;
            Ok(api::CreateContainerResponse { container_id: id })
        })
        .await
    }

    async fn start_container(
        &self,
        req: Request<api::StartContainerRequest>,
    ) -> Result<Response<api::StartContainerResponse>, Status> {
        let id = req.into_inner().container_id;
        rpc("StartContainer", &id, async {
            self.daemon.containers.start(&id).await.map_err(status_of)?;
            Ok(api::StartContainerResponse {})
        })
        .await
    }

    async fn stop_container(
        &self,
        req: Request<api::StopContainerRequest>,
    ) -> Result<Response<api::StopContainerResponse>, Status> {
        let req = req.into_inner();
        rpc("StopContainer", &req.container_id, async {
            let timeout = Duration::from_secs(req.timeout.max(0) as u64);
            self.daemon
                .containers
                .stop(&req.container_id, timeout)
                .await
                .map_err(status_of)?;
            Ok(api::StopContainerResponse {})
        })
        .await
    }

    async fn remove_container(
        &self,
        req: Request<api::RemoveContainerRequest>,
    ) -> Result<Response<api::RemoveContainerResponse>, Status> {
        let id = req.into_inner().container_id;
        rpc("RemoveContainer", &id, async {
            if id.is_empty() {
                return Err(Status::invalid_argument("container_id: must not be empty"));
            }
            self.daemon
                .containers
                .remove(&id)
                .await
                .map_err(status_of)?;
            Ok(api::RemoveContainerResponse {})
        })
        .await
    }

    async fn container_status(
        &self,
        req: Request<api::ContainerStatusRequest>,
    ) -> Result<Response<api::ContainerStatusResponse>, Status> {
        let req = req.into_inner();
        rpc("ContainerStatus", &req.container_id, async {
            let rec = self
                .daemon
                .containers
                .status(&req.container_id)
                .map_err(status_of)?;
            let info = match req.verbose {
                true => status::container_info(&self.daemon, &rec),
                false => Default::default(),
            };
            Ok(api::ContainerStatusResponse {
                status: Some(container::to_status(&rec)),
                info,
            })
        })
        .await
    }

    async fn get_container_events(
        &self,
        _req: Request<api::GetEventsRequest>,
    ) -> Result<Response<BoxStream<api::ContainerEventResponse>>, Status> {
        rpc("GetContainerEvents", "", async {
            Ok(self.daemon.events.subscribe())
        })
        .await
    }

    async fn update_container_resources(
        &self,
        req: Request<api::UpdateContainerResourcesRequest>,
    ) -> Result<Response<api::UpdateContainerResourcesResponse>, Status> {
        let req = req.into_inner();
        rpc("UpdateContainerResources", &req.container_id, async {
            let update = container::resources_from(req.linux, "linux").map_err(status_of)?;
            self.daemon
                .containers
                .update_resources(&req.container_id, update)
                .await
                .map_err(status_of)?;
            Ok(api::UpdateContainerResourcesResponse {})
        })
        .await
    }

    async fn reopen_container_log(
        &self,
        req: Request<api::ReopenContainerLogRequest>,
    ) -> Result<Response<api::ReopenContainerLogResponse>, Status> {
        let id = req.into_inner().container_id;
        rpc("ReopenContainerLog", &id, async {
            self.daemon
                .containers
                .reopen_log(&id)
                .await
                .map_err(status_of)?;
            Ok(api::ReopenContainerLogResponse {})
        })
        .await
    }

    async fn exec_sync(
        &self,
        req: Request<api::ExecSyncRequest>,
    ) -> Result<Response<api::ExecSyncResponse>, Status> {
        let req = req.into_inner();
        rpc("ExecSync", &req.container_id, async {
            if req.cmd.is_empty() {
                return Err(Status::invalid_argument("cmd: must not be empty"));
            }
            let timeout = (req.timeout > 0).then(|| Duration::from_secs(req.timeout as u64));
            let out = self
                .daemon
                .containers
                .exec_sync(&req.container_id, req.cmd, timeout)
                .await
                .map_err(status_of)?;
            Ok(api::ExecSyncResponse {
                stdout: out.stdout,
                stderr: out.stderr,
                exit_code: out.exit_code,
            })
        })
        .await
    }

    async fn exec(
        &self,
        req: Request<api::ExecRequest>,
    ) -> Result<Response<api::ExecResponse>, Status> {
        let req = req.into_inner();
        let id = req.container_id.clone();
        rpc("Exec", &id, async {
            let url = streaming::exec_url(&self.daemon, req)?;
            Ok(api::ExecResponse { url })
        })
        .await
    }

    async fn attach(
        &self,
        req: Request<api::AttachRequest>,
    ) -> Result<Response<api::AttachResponse>, Status> {
        let req = req.into_inner();
        let id = req.container_id.clone();
        rpc("Attach", &id, async {
            let url = streaming::attach_url(&self.daemon, req)?;
            Ok(api::AttachResponse { url })
        })
        .await
    }

    async fn port_forward(
        &self,
        req: Request<api::PortForwardRequest>,
    ) -> Result<Response<api::PortForwardResponse>, Status> {
        let req = req.into_inner();
        let id = req.pod_sandbox_id.clone();
        rpc("PortForward", &id, async {
            let url = streaming::port_forward_url(&self.daemon, req)?;
            Ok(api::PortForwardResponse { url })
        })
        .await
    }

    async fn update_pod_sandbox_resources(
        &self,
        req: Request<api::UpdatePodSandboxResourcesRequest>,
    ) -> Result<Response<api::UpdatePodSandboxResourcesResponse>, Status> {
        let req = req.into_inner();
        rpc("UpdatePodSandboxResources", &req.pod_sandbox_id, async {
            let update = pod_resources_from(req.overhead, req.resources).map_err(status_of)?;
            self.daemon
                .sandboxes
                .update_resources(&req.pod_sandbox_id, update)
                .await
                .map_err(status_of)?;
            Ok(api::UpdatePodSandboxResourcesResponse {})
        })
        .await
    }

    async fn checkpoint_container(
        &self,
        req: Request<api::CheckpointContainerRequest>,
    ) -> Result<Response<api::CheckpointContainerResponse>, Status> {
        let req = req.into_inner();
        rpc("CheckpointContainer", &req.container_id, async {
            let checkpoint =
                CheckpointRequest::new(&req.location, req.timeout).map_err(status_of)?;
            self.daemon
                .containers
                .checkpoint(&req.container_id, checkpoint)
                .await
                .map_err(status_of)?;
            Ok(api::CheckpointContainerResponse {})
        })
        .await
    }

    async fn pod_sandbox_stats(
        &self,
        req: Request<api::PodSandboxStatsRequest>,
    ) -> Result<Response<api::PodSandboxStatsResponse>, Status> {
        stats::pod(&self.daemon, req.into_inner()).await
    }

    async fn list_pod_sandbox_stats(
        &self,
        req: Request<api::ListPodSandboxStatsRequest>,
    ) -> Result<Response<api::ListPodSandboxStatsResponse>, Status> {
        stats::list_pod(&self.daemon, req.into_inner()).await
    }

    async fn stream_container_stats(
        &self,
        req: Request<api::StreamContainerStatsRequest>,
    ) -> Result<Response<BoxStream<api::StreamContainerStatsResponse>>, Status> {
        stats::stream_container(&self.daemon, req.into_inner()).await
    }

    async fn stream_pod_sandbox_stats(
        &self,
        req: Request<api::StreamPodSandboxStatsRequest>,
    ) -> Result<Response<BoxStream<api::StreamPodSandboxStatsResponse>>, Status> {
        stats::stream_pod(&self.daemon, req.into_inner()).await
    }

    async fn list_metric_descriptors(
        &self,
        req: Request<api::ListMetricDescriptorsRequest>,
    ) -> Result<Response<api::ListMetricDescriptorsResponse>, Status> {
        pod_metrics::list_descriptors(req.into_inner()).await
    }

    async fn list_pod_sandbox_metrics(
        &self,
        req: Request<api::ListPodSandboxMetricsRequest>,
    ) -> Result<Response<api::ListPodSandboxMetricsResponse>, Status> {
        pod_metrics::list_pod(&self.daemon, req.into_inner()).await
    }

    async fn stream_pod_sandbox_metrics(
        &self,
        req: Request<api::StreamPodSandboxMetricsRequest>,
    ) -> Result<Response<BoxStream<api::StreamPodSandboxMetricsResponse>>, Status> {
        pod_metrics::stream_pod(&self.daemon, req.into_inner()).await
    }
}
