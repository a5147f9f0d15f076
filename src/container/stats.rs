//! ContainerStats and ListContainerStats: the container's cgroup and its
//! writable layer, read off the async workers.

use std::sync::Arc;

use super::{ContainerError, ContainerFilter, ContainerRecord, Containers};
use crate::cgroups::CgroupStats;

/// One container's usage, each part with the time it was read.
#[derive(Debug, Clone)]
pub struct ContainerStatsView {
    pub record: Arc<ContainerRecord>,
    pub timestamp: i64,
    pub cgroup: CgroupStats,
    /// CPU use since the previous sample, in nanocores.
    pub usage_nano_cores: Option<u64>,
    pub writable_bytes: u64,
    pub writable_inodes: u64,
    /// The filesystem the writable layers live on.
    pub layers_mountpoint: String,
}

impl Containers {
    fn stats_of(&self, rec: Arc<ContainerRecord>) -> Option<ContainerStatsView> {
        let cgroup = self.deps.cgroups.stats(&rec.cgroup).ok()?;
        // A container removed between list and read has no cgroup left.
        cgroup.cpu_usage_ns.or(cgroup.memory_usage)?;
        let timestamp = crate::ids::now_nanos();
        let usage_nano_cores = cgroup.cpu_usage_ns.map(|usage| {
            let mut samples = self.cpu_samples.lock().unwrap_or_else(|e| e.into_inner());
            let prev = samples.insert(rec.id.clone(), (timestamp, usage));
            match prev {
                Some((t, u)) if timestamp > t && usage >= u => {
                    ((usage - u) as u128 * 1_000_000_000 / (timestamp - t) as u128) as u64
                }
                _ => 0,
            }
        });
        let (writable_bytes, writable_inodes) =
            crate::host::fs::usage(&rec.upper_dir()).unwrap_or((0, 0));
        Some(ContainerStatsView {
            timestamp,
            cgroup,
            usage_nano_cores,
            writable_bytes,
            writable_inodes,
            layers_mountpoint: self
                .config
                .container_layers_dir()
                .to_string_lossy()
                .into_owned(),
            record: rec,
        })
    }

    /// ContainerStats.
    pub async fn stats(&self, id: &str) -> Result<ContainerStatsView, ContainerError> {
        let rec = self.status(id)?;
        let this = self.arc();
        let id = rec.id.clone();
        tokio::task::spawn_blocking(move || this.stats_of(rec))
            .await
            .map_err(|e| ContainerError::internal("stats task", e))?
            .ok_or_else(|| {
                ContainerError::NotFound(format!("container {id} has no cgroup to read"))
            })
    }

    /// ListContainerStats: containers that are created or running (others
    /// have no cgroup); one gone meanwhile is skipped.
    pub async fn list_stats(&self, filter: ContainerFilter) -> Vec<ContainerStatsView> {
        let records: Vec<Arc<ContainerRecord>> = self
            .list(&filter)
            .into_iter()
            .filter(|r| super::live(r.state))
            .collect();
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
