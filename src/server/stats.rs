//! The CRI stats RPCs: ContainerStats, PodSandboxStats and their List and
//! Stream forms. The figures come from the container and sandbox layers;
//! this file turns them into CRI messages. A `Stream*` call sends the same
//! items as its `List*` counterpart, in chunks.

use std::collections::HashMap;

use tonic::codegen::BoxStream;
use tonic::{Response, Status};

use super::convert::{container::metadata as container_metadata, sandbox::metadata};
use super::{rpc, status_of, stream_in_chunks, Daemon};
use crate::api;
use crate::container::{ContainerFilter, ContainerStatsView};
use crate::sandbox::{InterfaceStats, NetworkStats, SandboxFilter, SandboxStatsView};

fn u64_value(v: Option<u64>) -> Option<api::UInt64Value> {
    v.map(|value| api::UInt64Value { value })
}

pub fn container_filter(f: Option<api::ContainerStatsFilter>) -> ContainerFilter {
    let f = f.unwrap_or_default();
    ContainerFilter {
        id: (!f.id.is_empty()).then_some(f.id),
        state: None,
        sandbox_id: (!f.pod_sandbox_id.is_empty()).then_some(f.pod_sandbox_id),
        labels: f.label_selector,
    }
}

pub fn sandbox_filter(f: Option<api::PodSandboxStatsFilter>) -> SandboxFilter {
    let f = f.unwrap_or_default();
    SandboxFilter {
        id: (!f.id.is_empty()).then_some(f.id),
        ready: None,
        labels: f.label_selector,
    }
}

fn cpu(timestamp: i64, c: &crate::cgroups::CgroupStats, nano_cores: Option<u64>) -> api::CpuUsage {
    api::CpuUsage {
        timestamp,
        usage_core_nano_seconds: u64_value(c.cpu_usage_ns),
        usage_nano_cores: u64_value(nano_cores),
        psi: None,
    }
}

fn memory(timestamp: i64, c: &crate::cgroups::CgroupStats) -> api::MemoryUsage {
    api::MemoryUsage {
        timestamp,
        working_set_bytes: u64_value(c.memory_working_set),
        // kubelet reads an absent value as 0: "no limit" is left out.
        available_bytes: u64_value(c.memory_available()),
        usage_bytes: u64_value(c.memory_usage),
        rss_bytes: u64_value(c.memory_rss),
        page_faults: u64_value(c.page_faults),
        major_page_faults: u64_value(c.major_page_faults),
        psi: None,
    }
}

pub fn to_container_stats(s: &ContainerStatsView) -> api::ContainerStats {
    let r = &s.record;
    let c = &s.cgroup;
    api::ContainerStats {
        attributes: Some(api::ContainerAttributes {
            id: r.id.clone(),
            metadata: Some(container_metadata(&r.spec.metadata)),
            labels: r.spec.labels.clone(),
            annotations: r.spec.annotations.clone(),
        }),
        cpu: Some(cpu(s.timestamp, c, s.usage_nano_cores)),
        memory: Some(memory(s.timestamp, c)),
        writable_layer: Some(api::FilesystemUsage {
            timestamp: s.timestamp,
            fs_id: Some(api::FilesystemIdentifier {
                mountpoint: s.layers_mountpoint.clone(),
            }),
            used_bytes: u64_value(Some(s.writable_bytes)),
            inodes_used: u64_value(Some(s.writable_inodes)),
        }),
        swap: c.swap_usage.map(|usage| api::SwapUsage {
            timestamp: s.timestamp,
            swap_available_bytes: u64_value(c.swap_available()),
            swap_usage_bytes: u64_value(Some(usage)),
        }),
        io: None,
    }
}

fn interface(i: &InterfaceStats) -> api::NetworkInterfaceUsage {
    api::NetworkInterfaceUsage {
        name: i.name.clone(),
        rx_bytes: u64_value(Some(i.rx_bytes)),
        rx_errors: u64_value(Some(i.rx_errors)),
        tx_bytes: u64_value(Some(i.tx_bytes)),
        tx_errors: u64_value(Some(i.tx_errors)),
    }
}

fn network(n: &NetworkStats) -> api::NetworkUsage {
    api::NetworkUsage {
        timestamp: n.timestamp,
        default_interface: n.default_interface().map(interface),
        interfaces: n.interfaces.iter().skip(1).map(interface).collect(),
    }
}

pub fn to_pod_stats(
    s: &SandboxStatsView,
    containers: Vec<api::ContainerStats>,
) -> api::PodSandboxStats {
    let r = &s.record;
    let c = &s.cgroup;
    api::PodSandboxStats {
        attributes: Some(api::PodSandboxAttributes {
            id: r.id.clone(),
            metadata: Some(metadata(&r.spec.metadata)),
            labels: r.spec.labels.clone(),
            annotations: r.spec.annotations.clone(),
        }),
        linux: Some(api::LinuxPodSandboxStats {
            cpu: Some(cpu(s.timestamp, c, s.usage_nano_cores)),
            memory: Some(memory(s.timestamp, c)),
            network: s.network.as_ref().map(network),
            process: Some(api::ProcessUsage {
                timestamp: s.timestamp,
                process_count: u64_value(c.pids),
            }),
            containers,
            io: None,
        }),
        windows: None,
    }
}

/// The stats of the containers the filter matches.
pub async fn list_containers(d: &Daemon, filter: ContainerFilter) -> Vec<api::ContainerStats> {
    let views = d.containers.list_stats(filter).await;
    views.iter().map(to_container_stats).collect()
}

/// The stats of the ready pods the filter matches, each with its
/// containers' (read once for all pods).
pub async fn list_pods(d: &Daemon, filter: &SandboxFilter) -> Vec<api::PodSandboxStats> {
    let pods = d.sandboxes.list_stats(filter).await;
    if pods.is_empty() {
        return vec![];
    }
    // One pod (a filter by id): only its containers are read.
    let containers = match pods.as_slice() {
        [one] => ContainerFilter {
            sandbox_id: Some(one.record.id.clone()),
            ..Default::default()
        },
        _ => ContainerFilter::default(),
    };
    let mut by_pod: HashMap<String, Vec<api::ContainerStats>> = HashMap::new();
    for c in d.containers.list_stats(containers).await {
        by_pod
            .entry(c.record.spec.sandbox_id.clone())
            .or_default()
            .push(to_container_stats(&c));
    }
    pods.iter()
        .map(|p| to_pod_stats(p, by_pod.remove(&p.record.id).unwrap_or_default()))
        .collect()
}

pub async fn container(
    d: &Daemon,
    req: api::ContainerStatsRequest,
) -> Result<Response<api::ContainerStatsResponse>, Status> {
    let id = req.container_id;
    rpc("ContainerStats", &id, async {
        let s = d.containers.stats(&id).await.map_err(status_of)?;
        Ok(api::ContainerStatsResponse {
            stats: Some(to_container_stats(&s)),
        })
    })
    .await
}

pub async fn list_container(
    d: &Daemon,
    req: api::ListContainerStatsRequest,
) -> Result<Response<api::ListContainerStatsResponse>, Status> {
    let filter = container_filter(req.filter);
    rpc("ListContainerStats", "", async {
        Ok(api::ListContainerStatsResponse {
            stats: list_containers(d, filter).await,
        })
    })
    .await
}

pub async fn stream_container(
    d: &Daemon,
    req: api::StreamContainerStatsRequest,
) -> Result<Response<BoxStream<api::StreamContainerStatsResponse>>, Status> {
    let filter = container_filter(req.filter);
    rpc("StreamContainerStats", "", async {
        let items = list_containers(d, filter).await;
        Ok(stream_in_chunks(items, |container_stats| {
            api::StreamContainerStatsResponse { container_stats }
        }))
    })
    .await
}

pub async fn pod(
    d: &Daemon,
    req: api::PodSandboxStatsRequest,
) -> Result<Response<api::PodSandboxStatsResponse>, Status> {
    let id = req.pod_sandbox_id;
    rpc("PodSandboxStats", &id, async {
        if id.is_empty() {
            return Err(Status::invalid_argument(
                "pod_sandbox_id: must not be empty",
            ));
        }
        let s = d.sandboxes.stats(&id).await.map_err(status_of)?;
        let filter = ContainerFilter {
            sandbox_id: Some(s.record.id.clone()),
            ..Default::default()
        };
        let containers = list_containers(d, filter).await;
        Ok(api::PodSandboxStatsResponse {
            stats: Some(to_pod_stats(&s, containers)),
        })
    })
    .await
}

pub async fn list_pod(
    d: &Daemon,
    req: api::ListPodSandboxStatsRequest,
) -> Result<Response<api::ListPodSandboxStatsResponse>, Status> {
    let filter = sandbox_filter(req.filter);
    rpc("ListPodSandboxStats", "", async {
        Ok(api::ListPodSandboxStatsResponse {
            stats: list_pods(d, &filter).await,
        })
    })
    .await
}

pub async fn stream_pod(
    d: &Daemon,
    req: api::StreamPodSandboxStatsRequest,
) -> Result<Response<BoxStream<api::StreamPodSandboxStatsResponse>>, Status> {
    let filter = sandbox_filter(req.filter);
    rpc("StreamPodSandboxStats", "", async {
        let items = list_pods(d, &filter).await;
        Ok(stream_in_chunks(items, |pod_sandbox_stats| {
            api::StreamPodSandboxStatsResponse { pod_sandbox_stats }
        }))
    })
    .await
}

#[cfg(test)]
mod tests {
    use tokio_stream::StreamExt;

    use super::*;

    fn item(i: usize) -> api::ContainerStats {
        api::ContainerStats {
            attributes: Some(api::ContainerAttributes {
                id: format!("c{i}"),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The Stream form sends the List form's items, in order, in chunks.
    #[tokio::test]
    async fn stream_sends_the_listed_items_in_chunks() {
        let listed: Vec<api::ContainerStats> = (0..250).map(item).collect();
        let messages: Vec<_> = stream_in_chunks(listed.clone(), |container_stats| {
            api::StreamContainerStatsResponse { container_stats }
        })
        .collect()
        .await;
        let sizes: Vec<usize> = messages
            .iter()
            .map(|m| m.as_ref().unwrap().container_stats.len())
            .collect();
        assert_eq!(sizes, [100, 100, 50]);
        let streamed: Vec<api::ContainerStats> = messages
            .into_iter()
            .flat_map(|m| m.unwrap().container_stats)
            .collect();
        assert_eq!(streamed, listed);

        let empty: Vec<_> =
            stream_in_chunks(Vec::<api::PodSandboxStats>::new(), |pod_sandbox_stats| {
                api::StreamPodSandboxStatsResponse { pod_sandbox_stats }
            })
            .collect()
            .await;
        assert_eq!(empty.len(), 1, "one empty message when there is nothing");
    }
}
