//! A target's RuntimeService, called as kubelet calls it.

use std::collections::HashMap;
use std::time::Duration;

use peapod::api::runtime_service_client::RuntimeServiceClient;
use peapod::api::{
    ContainerStatusRequest, ContainerStatusResponse, CreateContainerRequest, ExecRequest,
    ListPodSandboxRequest, PodSandboxFilter, PodSandboxState, PodSandboxStateValue,
    PodSandboxStatusRequest, PodSandboxStatusResponse, PortForwardRequest, RemoveContainerRequest,
    RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest, StatusRequest,
    StatusResponse, StopContainerRequest, StopPodSandboxRequest,
};
use tonic::transport::Channel;

use super::{call, CALL_LIMIT, RUN_LIMIT};
use crate::args::NetMode;
use crate::containers::BENCH_CONTAINER;
use crate::cri::image::BenchImage;
use crate::error::BenchError;
use crate::kubelet::{pod_userns, ContainerSpec, Pod};
use crate::run::{track_in, untrack_in, Shared};

/// The pod and container workloads' view of one CRI target.
pub struct TargetBench<'a> {
    pub shared: &'a Shared,
    pub name: String,
    pub rt: RuntimeServiceClient<Channel>,
    pub seq: usize,
    pub pod_net_without_ip: usize,
    /// Containers that StopContainer left in another state than EXITED 0.
    pub stop_anomalies: Vec<String>,
}

impl<'a> TargetBench<'a> {
    pub fn new(shared: &'a Shared, name: &str, rt: RuntimeServiceClient<Channel>) -> Self {
        TargetBench {
            shared,
            name: name.to_string(),
            rt,
            seq: 0,
            pod_net_without_ip: 0,
            stop_anomalies: Vec::new(),
        }
    }
    /// RunPodSandbox of a new pod, after kubelet's part of its preparation.
    pub async fn run(&mut self, mode: NetMode) -> Result<(Pod, Duration), BenchError> {
        self.run_pod(mode, false).await
    }

    /// RunPodSandbox of a new pod, with `userns` in a user namespace of its
    /// own: a range of host ids no other pod of this target has (the pod's
    /// number picks it).
    pub async fn run_pod(
        &mut self,
        mode: NetMode,
        userns: bool,
    ) -> Result<(Pod, Duration), BenchError> {
        self.seq += 1;
        let userns = userns.then(|| pod_userns(self.seq));
        let mut pod = Pod::new(self.shared, mode, self.seq, userns)?;
        pod.prepare(&self.shared.cgroups)?;
        let req = RunPodSandboxRequest {
            config: Some(pod.config.clone()),
            runtime_handler: String::new(),
        };
        let res = call(
            &self.name,
            "RunPodSandbox",
            RUN_LIMIT,
            self.rt.run_pod_sandbox(req),
        )
        .await;
        let (resp, took) = match res {
            Ok(r) => r,
            Err(e) => {
                pod.release(&self.shared.cgroups);
                return Err(e);
            }
        };
        if resp.pod_sandbox_id.is_empty() {
            return Err(BenchError::Unexpected {
                target: self.name.clone(),
                call: "RunPodSandbox",
                what: "empty pod_sandbox_id".into(),
            });
        }
        self.shared.track(&self.name, &resp.pod_sandbox_id);
        pod.id = Some(resp.pod_sandbox_id);
        Ok((pod, took))
    }

    /// The runtime's Status (not verbose): its conditions, handlers and
    /// features.
    pub async fn runtime_status(&mut self) -> Result<StatusResponse, BenchError> {
        let req = StatusRequest { verbose: false };
        let (resp, _) = call(&self.name, "Status", CALL_LIMIT, self.rt.status(req)).await?;
        Ok(resp)
    }

    /// PodSandboxStatus, verbose or not.
    pub async fn status(
        &mut self,
        id: &str,
        verbose: bool,
    ) -> Result<(PodSandboxStatusResponse, Duration), BenchError> {
        let req = PodSandboxStatusRequest {
            pod_sandbox_id: id.to_string(),
            verbose,
        };
        call(
            &self.name,
            "PodSandboxStatus",
            CALL_LIMIT,
            self.rt.pod_sandbox_status(req),
        )
        .await
    }

    /// StopPodSandbox.
    pub async fn stop(&mut self, id: &str) -> Result<Duration, BenchError> {
        let req = StopPodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        };
        let (_, took) = call(
            &self.name,
            "StopPodSandbox",
            CALL_LIMIT,
            self.rt.stop_pod_sandbox(req),
        )
        .await?;
        Ok(took)
    }

    /// RemovePodSandbox, then kubelet's part after it.
    pub async fn remove(&mut self, pod: &Pod, id: &str) -> Result<Duration, BenchError> {
        let req = RemovePodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        };
        let (_, took) = call(
            &self.name,
            "RemovePodSandbox",
            CALL_LIMIT,
            self.rt.remove_pod_sandbox(req),
        )
        .await?;
        self.shared.untrack(&self.name, id);
        pod.release(&self.shared.cgroups);
        Ok(took)
    }

    /// StopPodSandbox and RemovePodSandbox of `pod`, as a teardown does.
    pub async fn stop_and_remove(&mut self, pod: &Pod) -> Result<(), BenchError> {
        let id = self.pod_id(pod)?;
        self.stop(&id).await?;
        self.remove(pod, &id).await.map(drop)
    }

    /// ListPodSandbox of all sandboxes or the READY ones: how many it listed.
    pub async fn list(&mut self, ready_only: bool) -> Result<(usize, Duration), BenchError> {
        let filter = PodSandboxFilter {
            id: String::new(),
            state: ready_only.then_some(PodSandboxStateValue {
                state: PodSandboxState::SandboxReady as i32,
            }),
            label_selector: HashMap::new(),
        };
        let req = ListPodSandboxRequest {
            filter: Some(filter),
        };
        let (resp, took) = call(
            &self.name,
            "ListPodSandbox",
            CALL_LIMIT,
            self.rt.list_pod_sandbox(req),
        )
        .await?;
        Ok((resp.items.len(), took))
    }

    /// The sandbox id RunPodSandbox gave `pod`.
    pub fn pod_id(&self, pod: &Pod) -> Result<String, BenchError> {
        pod.id.clone().ok_or_else(|| BenchError::Unexpected {
            target: self.name.clone(),
            call: "CreateContainer",
            what: "the pod has no sandbox id".into(),
        })
    }

    /// CreateContainer of the container workload's container in `pod`.
    pub async fn create_container(
        &mut self,
        pod: &Pod,
        mode: NetMode,
        img: &BenchImage,
    ) -> Result<(String, Duration), BenchError> {
        self.create_container_of(pod, mode, img, BENCH_CONTAINER)
            .await
    }

    /// CreateContainer of container `spec` in `pod`, after kubelet's part;
    /// the container is tracked for cleanup.
    pub async fn create_container_of(
        &mut self,
        pod: &Pod,
        mode: NetMode,
        img: &BenchImage,
        spec: ContainerSpec<'_>,
    ) -> Result<(String, Duration), BenchError> {
        let pod_id = self.pod_id(pod)?;
        let (hosts, term) = pod.prepare_container(spec.name)?;
        let run_id = &self.shared.run_id;
        let req = CreateContainerRequest {
            pod_sandbox_id: pod_id,
            config: Some(pod.container_config(run_id, mode, img, spec, &hosts, &term)),
            sandbox_config: Some(pod.config.clone()),
        };
        let (resp, took) = call(
            &self.name,
            "CreateContainer",
            CALL_LIMIT,
            self.rt.create_container(req),
        )
        .await?;
        if resp.container_id.is_empty() {
            return Err(BenchError::Unexpected {
                target: self.name.clone(),
                call: "CreateContainer",
                what: "empty container_id".into(),
            });
        }
        track_in(&self.shared.containers, &self.name, &resp.container_id);
        Ok((resp.container_id, took))
    }

    pub async fn start_container(&mut self, id: &str) -> Result<Duration, BenchError> {
        let req = StartContainerRequest {
            container_id: id.to_string(),
        };
        let (_, took) = call(
            &self.name,
            "StartContainer",
            CALL_LIMIT,
            self.rt.start_container(req),
        )
        .await?;
        Ok(took)
    }

    pub async fn container_status(
        &mut self,
        id: &str,
        verbose: bool,
    ) -> Result<ContainerStatusResponse, BenchError> {
        let req = ContainerStatusRequest {
            container_id: id.to_string(),
            verbose,
        };
        let (resp, _) = call(
            &self.name,
            "ContainerStatus",
            CALL_LIMIT,
            self.rt.container_status(req),
        )
        .await?;
        Ok(resp)
    }

    /// StopContainer with kubelet's deadline (2 minutes plus the timeout).
    pub async fn stop_container(
        &mut self,
        id: &str,
        timeout: Duration,
    ) -> Result<Duration, BenchError> {
        let req = StopContainerRequest {
            container_id: id.to_string(),
            timeout: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
        };
        let (_, took) = call(
            &self.name,
            "StopContainer",
            CALL_LIMIT + timeout,
            self.rt.stop_container(req),
        )
        .await?;
        Ok(took)
    }

    /// RemoveContainer; the container is no longer tracked.
    pub async fn remove_container(&mut self, id: &str) -> Result<Duration, BenchError> {
        let req = RemoveContainerRequest {
            container_id: id.to_string(),
        };
        let (_, took) = call(
            &self.name,
            "RemoveContainer",
            CALL_LIMIT,
            self.rt.remove_container(req),
        )
        .await?;
        untrack_in(&self.shared.containers, &self.name, id);
        Ok(took)
    }

    /// Exec of `cmd` in container `id` with stdout (and stdin when asked),
    /// no terminal: the streaming URL and how long the call took.
    pub async fn exec(
        &mut self,
        id: &str,
        cmd: &[&str],
        stdin: bool,
    ) -> Result<(String, Duration), BenchError> {
        let req = ExecRequest {
            container_id: id.to_string(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            tty: false,
            stdin,
            stdout: true,
            stderr: false,
            ..Default::default()
        };
        let (resp, took) = call(&self.name, "Exec", CALL_LIMIT, self.rt.exec(req)).await?;
        self.streaming_url("Exec", resp.url).map(|url| (url, took))
    }

    /// PortForward to sandbox `pod_id`: the streaming URL (the ports come
    /// with the client's streams).
    pub async fn port_forward(&mut self, pod_id: &str, port: u16) -> Result<String, BenchError> {
        let req = PortForwardRequest {
            pod_sandbox_id: pod_id.to_string(),
            port: vec![i32::from(port)],
        };
        let (resp, _) = call(
            &self.name,
            "PortForward",
            CALL_LIMIT,
            self.rt.port_forward(req),
        )
        .await?;
        self.streaming_url("PortForward", resp.url)
    }

    /// A streaming URL as the clients take it: absolute, plain HTTP.
    fn streaming_url(&self, call: &'static str, url: String) -> Result<String, BenchError> {
        if !url.starts_with("http://") {
            return Err(BenchError::Unexpected {
                target: self.name.clone(),
                call,
                what: format!("the streaming URL {url:?} is not http://HOST:PORT/..."),
            });
        }
        Ok(url)
    }
}
