//! The CRI metrics RPCs (ListMetricDescriptors, ListPodSandboxMetrics,
//! StreamPodSandboxMetrics): the cAdvisor container metrics kubelet serves
//! at `/metrics/cadvisor` when its stats come from the runtime. Names and
//! label keys are cAdvisor's, so dashboards keep working; the values come
//! from the same reads as the stats RPCs.
//!
//! Kubelet asks for the descriptors once and then turns every metric into
//! a Prometheus sample with exactly its descriptor's label keys, dropping
//! one whose label values do not match them in number. The labels are the
//! ones kubelet's cAdvisor shows: `container`, `id` (the cgroup path),
//! `image`, `name`, `namespace`, `pod`, then the family's own (`cpu`,
//! `interface`, `device`, ...). A pod's own figures (its cgroup and its
//! network) have an empty `container`, as cAdvisor's pod-level series do.
//! CRI carries integer values: CPU time is in whole seconds.

use tonic::codegen::BoxStream;
use tonic::{Response, Status};

use super::{rpc, stream_in_chunks, Daemon};
use crate::api;
use crate::api::MetricType::{Counter, Gauge};
use crate::cgroups::CgroupStats;
use crate::container::ContainerStatsView;
use crate::sandbox::{NetworkStats, SandboxFilter, SandboxStatsView};

/// One metric family: what ListMetricDescriptors lists.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: api::MetricType,
    /// Label keys after [`BASE_LABELS`].
    extra_labels: &'static [&'static str],
}

const BASE_LABELS: [&str; 6] = ["container", "id", "image", "name", "namespace", "pod"];

const fn family(
    name: &'static str,
    help: &'static str,
    kind: api::MetricType,
    extra_labels: &'static [&'static str],
) -> Family {
    Family {
        name,
        help,
        kind,
        extra_labels,
    }
}

const CPU_USAGE: Family = family(
    "container_cpu_usage_seconds_total",
    "Cumulative cpu time consumed in seconds.",
    Counter,
    &["cpu"],
);
const MEMORY_USAGE: Family = family(
    "container_memory_usage_bytes",
    "Current memory usage in bytes, counting all memory however recently it was used.",
    Gauge,
    &[],
);
const MEMORY_WORKING_SET: Family = family(
    "container_memory_working_set_bytes",
    "Current working set in bytes.",
    Gauge,
    &[],
);
const MEMORY_RSS: Family = family("container_memory_rss", "Size of RSS in bytes.", Gauge, &[]);
const MEMORY_CACHE: Family = family(
    "container_memory_cache",
    "Number of bytes of page cache memory.",
    Gauge,
    &[],
);
const MEMORY_SWAP: Family = family(
    "container_memory_swap",
    "Container swap usage in bytes.",
    Gauge,
    &[],
);
const MEMORY_FAILURES: Family = family(
    "container_memory_failures_total",
    "Cumulative count of memory allocation failures.",
    Counter,
    &["failure_type", "scope"],
);
const SPEC_MEMORY_LIMIT: Family = family(
    "container_spec_memory_limit_bytes",
    "Memory limit for the container in bytes (0: no limit).",
    Gauge,
    &[],
);
const PROCESSES: Family = family(
    "container_processes",
    "Number of tasks in the container's cgroup, as its pids controller counts them.",
    Gauge,
    &[],
);
const OOM_EVENTS: Family = family(
    "container_oom_events_total",
    "Count of processes the kernel's OOM killer killed in the container.",
    Counter,
    &[],
);
const FS_USAGE: Family = family(
    "container_fs_usage_bytes",
    "Bytes the container's writable layer uses on the filesystem holding it.",
    Gauge,
    &["device"],
);
const FS_INODES_USAGE: Family = family(
    "container_fs_inodes_usage",
    "Inodes the container's writable layer uses on the filesystem holding it.",
    Gauge,
    &["device"],
);

const IF: &[&str] = &["interface"];
const NET_RX_BYTES: Family = family(
    "container_network_receive_bytes_total",
    "Cumulative count of bytes received",
    Counter,
    IF,
);
const NET_RX_PACKETS: Family = family(
    "container_network_receive_packets_total",
    "Cumulative count of packets received",
    Counter,
    IF,
);
const NET_RX_DROPPED: Family = family(
    "container_network_receive_packets_dropped_total",
    "Cumulative count of packets dropped while receiving",
    Counter,
    IF,
);
const NET_RX_ERRORS: Family = family(
    "container_network_receive_errors_total",
    "Cumulative count of errors encountered while receiving",
    Counter,
    IF,
);
const NET_TX_BYTES: Family = family(
    "container_network_transmit_bytes_total",
    "Cumulative count of bytes transmitted",
    Counter,
    IF,
);
const NET_TX_PACKETS: Family = family(
    "container_network_transmit_packets_total",
    "Cumulative count of packets transmitted",
    Counter,
    IF,
);
const NET_TX_DROPPED: Family = family(
    "container_network_transmit_packets_dropped_total",
    "Cumulative count of packets dropped while transmitting",
    Counter,
    IF,
);
const NET_TX_ERRORS: Family = family(
    "container_network_transmit_errors_total",
    "Cumulative count of errors encountered while transmitting",
    Counter,
    IF,
);

const FAMILIES: [&Family; 20] = [
    &CPU_USAGE,
    &MEMORY_USAGE,
    &MEMORY_WORKING_SET,
    &MEMORY_RSS,
    &MEMORY_CACHE,
    &MEMORY_SWAP,
    &MEMORY_FAILURES,
    &SPEC_MEMORY_LIMIT,
    &PROCESSES,
    &OOM_EVENTS,
    &FS_USAGE,
    &FS_INODES_USAGE,
    &NET_RX_BYTES,
    &NET_RX_PACKETS,
    &NET_RX_DROPPED,
    &NET_RX_ERRORS,
    &NET_TX_BYTES,
    &NET_TX_PACKETS,
    &NET_TX_DROPPED,
    &NET_TX_ERRORS,
];

pub fn descriptors() -> Vec<api::MetricDescriptor> {
    FAMILIES
        .iter()
        .map(|f| api::MetricDescriptor {
            name: f.name.to_string(),
            help: f.help.to_string(),
            label_keys: BASE_LABELS
                .iter()
                .chain(f.extra_labels)
                .map(|k| k.to_string())
                .collect(),
        })
        .collect()
}

/// The metrics of one pod or container, all read at `timestamp` and
/// labelled with the same [`BASE_LABELS`] values.
struct Metrics {
    base: Vec<String>,
    timestamp: i64,
    out: Vec<api::Metric>,
}

impl Metrics {
    fn new(base: [&str; 6], timestamp: i64) -> Metrics {
        Metrics {
            base: base.iter().map(|s| s.to_string()).collect(),
            timestamp,
            out: vec![],
        }
    }

    /// One sample of `f`; none when the value is unknown.
    fn push(&mut self, f: &Family, extra: &[&str], value: Option<u64>) {
        debug_assert_eq!(extra.len(), f.extra_labels.len(), "{}", f.name);
        let Some(value) = value else { return };
        let mut label_values = self.base.clone();
        label_values.extend(extra.iter().map(|s| s.to_string()));
        self.out.push(api::Metric {
            name: f.name.to_string(),
            timestamp: self.timestamp,
            metric_type: f.kind as i32,
            label_values,
            value: Some(api::UInt64Value { value }),
        });
    }

    fn cgroup(&mut self, c: &CgroupStats) {
        let seconds = c.cpu_usage_ns.map(|ns| ns / 1_000_000_000);
        self.push(&CPU_USAGE, &["total"], seconds);
        self.push(&MEMORY_USAGE, &[], c.memory_usage);
        self.push(&MEMORY_WORKING_SET, &[], c.memory_working_set);
        self.push(&MEMORY_RSS, &[], c.memory_rss);
        self.push(&MEMORY_CACHE, &[], c.memory_cache);
        self.push(&MEMORY_SWAP, &[], c.swap_usage);
        // The counters read include the cgroup's descendants.
        self.push(&MEMORY_FAILURES, &["pgfault", "hierarchy"], c.page_faults);
        self.push(
            &MEMORY_FAILURES,
            &["pgmajfault", "hierarchy"],
            c.major_page_faults,
        );
        self.push(&SPEC_MEMORY_LIMIT, &[], Some(c.memory_limit.unwrap_or(0)));
        self.push(&PROCESSES, &[], c.pids);
        self.push(&OOM_EVENTS, &[], c.oom_kills);
    }

    /// `device` is the filesystem's mount point (cAdvisor names the
    /// block device; peapod reports where the layers live, as
    /// ContainerStats' `fs_id` does).
    fn writable_layer(&mut self, device: &str, bytes: u64, inodes: u64) {
        self.push(&FS_USAGE, &[device], Some(bytes));
        self.push(&FS_INODES_USAGE, &[device], Some(inodes));
    }

    fn network(&mut self, n: &NetworkStats) {
        for i in &n.interfaces {
            let name = [i.name.as_str()];
            self.push(&NET_RX_BYTES, &name, Some(i.rx_bytes));
            self.push(&NET_RX_PACKETS, &name, Some(i.rx_packets));
            self.push(&NET_RX_DROPPED, &name, Some(i.rx_dropped));
            self.push(&NET_RX_ERRORS, &name, Some(i.rx_errors));
            self.push(&NET_TX_BYTES, &name, Some(i.tx_bytes));
            self.push(&NET_TX_PACKETS, &name, Some(i.tx_packets));
            self.push(&NET_TX_DROPPED, &name, Some(i.tx_dropped));
            self.push(&NET_TX_ERRORS, &name, Some(i.tx_errors));
        }
    }
}

fn container_metrics(pod: &SandboxStatsView, c: &ContainerStatsView) -> api::ContainerMetrics {
    let (r, md) = (&c.record, &pod.record.spec.metadata);
    let base = [
        r.spec.metadata.name.as_str(),
        r.cgroup.as_str(),
        r.image_name.as_str(),
        r.id.as_str(),
        md.namespace.as_str(),
        md.name.as_str(),
    ];
    let mut m = Metrics::new(base, c.timestamp);
    m.cgroup(&c.cgroup);
    m.writable_layer(&c.layers_mountpoint, c.writable_bytes, c.writable_inodes);
    api::ContainerMetrics {
        container_id: r.id.clone(),
        metrics: m.out,
    }
}

pub fn to_pod_metrics(
    pod: &SandboxStatsView,
    containers: &[ContainerStatsView],
) -> api::PodSandboxMetrics {
    let (r, md) = (&pod.record, &pod.record.spec.metadata);
    let base = [
        "",
        r.spec.cgroup_parent.as_str(),
        "",
        "",
        md.namespace.as_str(),
        md.name.as_str(),
    ];
    let mut m = Metrics::new(base, pod.timestamp);
    m.cgroup(&pod.cgroup);
    if let Some(n) = &pod.network {
        m.network(n);
    }
    api::PodSandboxMetrics {
        pod_sandbox_id: r.id.clone(),
        metrics: m.out,
        container_metrics: containers
            .iter()
            .filter(|c| c.record.spec.sandbox_id == r.id)
            .map(|c| container_metrics(pod, c))
            .collect(),
    }
}

/// The metrics of every ready pod and its containers.
async fn list(d: &Daemon) -> Vec<api::PodSandboxMetrics> {
    let pods = d.sandboxes.list_stats(&SandboxFilter::default()).await;
    if pods.is_empty() {
        return vec![];
    }
    let containers = d.containers.list_stats(Default::default()).await;
    pods.iter()
        .map(|p| to_pod_metrics(p, &containers))
        .collect()
}

pub async fn list_descriptors(
    _req: api::ListMetricDescriptorsRequest,
) -> Result<Response<api::ListMetricDescriptorsResponse>, Status> {
    rpc("ListMetricDescriptors", "", async {
        Ok(api::ListMetricDescriptorsResponse {
            descriptors: descriptors(),
        })
    })
    .await
}

pub async fn list_pod(
    d: &Daemon,
    _req: api::ListPodSandboxMetricsRequest,
) -> Result<Response<api::ListPodSandboxMetricsResponse>, Status> {
    rpc("ListPodSandboxMetrics", "", async {
        Ok(api::ListPodSandboxMetricsResponse {
            pod_metrics: list(d).await,
        })
    })
    .await
}

pub async fn stream_pod(
    d: &Daemon,
    _req: api::StreamPodSandboxMetricsRequest,
) -> Result<Response<BoxStream<api::StreamPodSandboxMetricsResponse>>, Status> {
    rpc("StreamPodSandboxMetrics", "", async {
        let items = list(d).await;
        Ok(stream_in_chunks(items, |pod_sandbox_metrics| {
            api::StreamPodSandboxMetricsResponse {
                pod_sandbox_metrics,
            }
        }))
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};

    use super::*;
    use crate::sandbox::InterfaceStats;

    /// Every family is emitted with exactly its descriptor's label keys
    /// (kubelet drops a sample whose label values do not match them).
    #[test]
    fn every_metric_matches_its_descriptor() {
        let descriptors: HashMap<String, api::MetricDescriptor> = descriptors()
            .into_iter()
            .map(|d| (d.name.clone(), d))
            .collect();
        assert_eq!(descriptors.len(), FAMILIES.len(), "names are unique");
        let mut m = Metrics::new(["c", "/p/c", "busybox", "id", "ns", "pod"], 7);
        let all = Some(3_500_000_000);
        m.cgroup(&CgroupStats {
            cpu_usage_ns: all,
            memory_usage: all,
            memory_working_set: all,
            memory_rss: all,
            memory_cache: all,
            page_faults: all,
            major_page_faults: all,
            memory_limit: None,
            swap_usage: all,
            swap_limit: None,
            pids: all,
            oom_kills: all,
        });
        m.writable_layer("/var/lib/peapod", 1, 2);
        m.network(&NetworkStats {
            timestamp: 7,
            interfaces: vec![InterfaceStats {
                name: "eth0".into(),
                ..Default::default()
            }],
        });
        let mut seen = BTreeSet::new();
        for metric in &m.out {
            let d = &descriptors[&metric.name];
            assert_eq!(
                metric.label_values.len(),
                d.label_keys.len(),
                "{}",
                metric.name
            );
            assert_eq!(
                &metric.label_values[..6],
                ["c", "/p/c", "busybox", "id", "ns", "pod"]
            );
            assert_eq!(metric.timestamp, 7);
            seen.insert(metric.name.clone());
        }
        assert_eq!(seen, descriptors.keys().cloned().collect());
        let value = |name: &str| {
            m.out
                .iter()
                .find(|x| x.name == name)
                .unwrap()
                .value
                .unwrap()
                .value
        };
        assert_eq!(
            value("container_cpu_usage_seconds_total"),
            3,
            "whole seconds"
        );
        assert_eq!(value("container_spec_memory_limit_bytes"), 0, "no limit");
        let keys = &descriptors["container_network_receive_bytes_total"].label_keys;
        assert_eq!(
            keys,
            &[
                "container",
                "id",
                "image",
                "name",
                "namespace",
                "pod",
                "interface"
            ]
        );
    }
}
