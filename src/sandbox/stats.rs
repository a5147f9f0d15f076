//! PodSandboxStats and ListPodSandboxStats, the sandbox's part: the pod's
//! cgroup (its `cgroup_parent`, which holds the infra process's and every
//! container's cgroup) and the interfaces of its network namespace. The
//! containers' own figures come from the container layer.
//!
//! Only ready pods have figures: a stopped pod's processes and network
//! namespace are gone. Host-network pods report no network, as containerd
//! does: their interfaces are the node's.

use std::sync::Arc;

use super::{NamespaceMode, SandboxFilter, SandboxRecord, SandboxState, Sandboxes};
use crate::cgroups::CgroupStats;
use crate::errors::Error;

/// The interface other runtimes and kubelet treat as the pod's own.
pub const DEFAULT_INTERFACE: &str = "eth0";

/// One interface's counters, from the pod's `/proc/net/dev`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceStats {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// The pod's interfaces (loopback left out), [`DEFAULT_INTERFACE`] (or
/// else the first) first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkStats {
    pub timestamp: i64,
    pub interfaces: Vec<InterfaceStats>,
}

impl NetworkStats {
    pub fn default_interface(&self) -> Option<&InterfaceStats> {
        self.interfaces.first()
    }
}

/// A pod's usage, as read at `timestamp`.
#[derive(Debug, Clone)]
pub struct SandboxStatsView {
    pub record: Arc<SandboxRecord>,
    pub timestamp: i64,
    /// The pod's cgroup (`cgroup_parent`).
    pub cgroup: CgroupStats,
    /// CPU use since the previous sample, in nanocores.
    pub usage_nano_cores: Option<u64>,
    /// `None` for a host-network pod.
    pub network: Option<NetworkStats>,
}

/// Parses `/proc/net/dev`: two header lines, then `name: 8 receive and 8
/// transmit counters`.
pub fn parse_net_dev(text: &str) -> Vec<InterfaceStats> {
    let mut out: Vec<InterfaceStats> = text
        .lines()
        .skip(2)
        .filter_map(|line| {
            let (name, counters) = line.split_once(':')?;
            let v: Vec<u64> = counters
                .split_whitespace()
                .map(|c| c.parse().ok())
                .collect::<Option<_>>()?;
            (v.len() >= 16).then(|| InterfaceStats {
                name: name.trim().to_string(),
                rx_bytes: v[0],
                rx_packets: v[1],
                rx_errors: v[2],
                rx_dropped: v[3],
                tx_bytes: v[8],
                tx_packets: v[9],
                tx_errors: v[10],
                tx_dropped: v[11],
            })
        })
        .filter(|i| i.name != "lo")
        .collect();
    // Stable: the default interface first, the others in the kernel's order.
    out.sort_by_key(|i| i.name != DEFAULT_INTERFACE);
    out
}

impl Sandboxes {
    /// The interfaces of the pod's network namespace, read through its
    /// infra process (`/proc/<pid>/net/dev` shows the namespace of `pid`);
    /// `None` when the infra process is gone (checked after the read, so a
    /// reused pid is never taken for it).
    fn network_stats(rec: &SandboxRecord) -> Option<NetworkStats> {
        let infra = rec.infra?;
        let text = std::fs::read_to_string(format!("/proc/{}/net/dev", infra.pid)).ok()?;
        let timestamp = crate::ids::now_nanos();
        if !infra.is_alive() {
            return None;
        }
        Some(NetworkStats {
            timestamp,
            interfaces: parse_net_dev(&text),
        })
    }

    /// A ready pod's figures; `None` for one that is not ready or whose
    /// cgroup is gone.
    fn stats_of(&self, record: Arc<SandboxRecord>) -> Option<SandboxStatsView> {
        if record.state != SandboxState::Ready {
            return None;
        }
        let cgroup = self.deps.cgroups.stats(&record.spec.cgroup_parent).ok()?;
        if cgroup.is_empty() {
            return None;
        }
        let timestamp = crate::ids::now_nanos();
        let usage_nano_cores = cgroup
            .cpu_usage_ns
            .map(|usage| self.cpu_samples.nano_cores(&record.id, timestamp, usage));
        let network = match record.spec.network {
            NamespaceMode::Pod => Some(Self::network_stats(&record)?),
            _ => None,
        };
        Some(SandboxStatsView {
            record,
            timestamp,
            cgroup,
            usage_nano_cores,
            network,
        })
    }

    /// PodSandboxStats: NotFound for an unknown pod and for one that is not
    /// ready (it has no processes or network left to measure).
    pub async fn stats(&self, id: &str) -> Result<SandboxStatsView, Error> {
        let record = self.registry.lookup(id)?.snapshot();
        let (this, id) = (self.arc(), record.id.clone());
        tokio::task::spawn_blocking(move || this.stats_of(record))
            .await
            .map_err(|e| Error::Internal(format!("stats task: {e}")))?
            .ok_or_else(|| Error::NotFound(format!("pod sandbox {id} is not ready: no stats")))
    }

    /// ListPodSandboxStats: the ready pods the filter matches.
    pub async fn list_stats(&self, filter: &SandboxFilter) -> Vec<SandboxStatsView> {
        let filter = SandboxFilter {
            ready: Some(true),
            ..filter.clone()
        };
        let records: Vec<Arc<SandboxRecord>> =
            self.list(&filter).into_iter().map(|v| v.record).collect();
        let this = self.arc();
        tokio::task::spawn_blocking(move || {
            records
                .into_iter()
                .filter_map(|r| this.stats_of(r))
                .collect()
        })
        .await
        .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET_DEV: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     840      10    0    0    0     0          0         0      840      10    0    0    0     0       0          0
  net1:     100       1    0    0    0     0          0         0      200       2    0    0    0     0       0          0
  eth0:   12656     111    3    4    0     0          0         0     5302      40    5    6    0     0       0          0
";

    #[test]
    fn net_dev_without_loopback_default_interface_first() {
        let ifs = parse_net_dev(NET_DEV);
        assert_eq!(
            ifs.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
            ["eth0", "net1"]
        );
        assert_eq!(
            ifs[0],
            InterfaceStats {
                name: "eth0".into(),
                rx_bytes: 12656,
                rx_packets: 111,
                rx_errors: 3,
                rx_dropped: 4,
                tx_bytes: 5302,
                tx_packets: 40,
                tx_errors: 5,
                tx_dropped: 6,
            }
        );
        let net = NetworkStats {
            timestamp: 1,
            interfaces: ifs,
        };
        assert_eq!(net.default_interface().unwrap().name, "eth0");
        assert!(parse_net_dev("").is_empty());
    }
}
