//! The pod sandboxes and containers ListPodSandbox and ListContainers
//! answer, and their chunked `Stream*` variants: one place for both.

use tonic::codegen::BoxStream;

use super::convert::container::{filter_from_request as container_filter, to_container};
use super::convert::sandbox::{filter_from_request as sandbox_filter, to_pod_sandbox};
use super::{stream_in_chunks, Daemon};
use crate::api;

/// The items of ListPodSandbox.
pub fn pod_sandboxes(
    daemon: &Daemon,
    filter: Option<api::PodSandboxFilter>,
) -> Vec<api::PodSandbox> {
    let filter = sandbox_filter(filter);
    daemon
        .sandboxes
        .list(&filter)
        .iter()
        .map(to_pod_sandbox)
        .collect()
}

/// The items of ListContainers.
pub fn containers(daemon: &Daemon, filter: Option<api::ContainerFilter>) -> Vec<api::Container> {
    let filter = container_filter(filter);
    daemon
        .containers
        .list(&filter)
        .iter()
        .map(|r| to_container(r))
        .collect()
}

/// StreamPodSandboxes: ListPodSandbox's items in chunks.
pub fn stream_pod_sandboxes(
    daemon: &Daemon,
    filter: Option<api::PodSandboxFilter>,
) -> BoxStream<api::StreamPodSandboxesResponse> {
    stream_in_chunks(pod_sandboxes(daemon, filter), |pod_sandboxes| {
        api::StreamPodSandboxesResponse { pod_sandboxes }
    })
}

/// StreamContainers: ListContainers' items in chunks.
pub fn stream_containers(
    daemon: &Daemon,
    filter: Option<api::ContainerFilter>,
) -> BoxStream<api::StreamContainersResponse> {
    stream_in_chunks(containers(daemon, filter), |containers| {
        api::StreamContainersResponse { containers }
    })
}
