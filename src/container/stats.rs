//! ContainerStats and ListContainerStats: the container's cgroup and its
//! writable layer, read off the async workers. The writable layer's usage
//! is a walk of the whole directory, so each container's is kept for
//! [`LAYER_USAGE_TTL`] (kubelet asks every 10 s).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{ContainerError, ContainerFilter, ContainerRecord, Containers};
use crate::cgroups::{CgroupStats, CpuSamples};

/// How long a walked writable layer usage is reported before the next walk.
pub const LAYER_USAGE_TTL: Duration = Duration::from_secs(5);

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

/// What the stats of each container keep between calls.
#[derive(Debug, Default)]
pub(super) struct StatsSamples {
    pub(super) cpu: CpuSamples,
    pub(super) layers: LayerUsageCache,
}

impl StatsSamples {
    pub(super) fn forget(&self, id: &str) {
        self.cpu.forget(id);
        self.layers.forget(id);
    }
}

/// A writable layer's (bytes, inodes) and when they were walked.
type LayerUsage = (Instant, (u64, u64));

/// The last walked usage of each container's writable layer.
#[derive(Debug, Default)]
pub(super) struct LayerUsageCache(Mutex<HashMap<String, LayerUsage>>);

impl LayerUsageCache {
    /// The usage of `id`'s layer: the cached one while younger than
    /// [`LAYER_USAGE_TTL`], else `walk()`'s, which is then cached. The lock
    /// is not held during the walk.
    fn get(&self, id: &str, walk: impl FnOnce() -> (u64, u64)) -> (u64, u64) {
        let now = Instant::now();
        let cached = self.lock().get(id).copied();
        if let Some((_, usage)) = cached.filter(|(at, _)| now.duration_since(*at) < LAYER_USAGE_TTL)
        {
            return usage;
        }
        let usage = walk();
        self.lock().insert(id.to_string(), (now, usage));
        usage
    }

    fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, LayerUsage>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn walk_layer(dir: &Path) -> (u64, u64) {
    crate::host::fs::usage(dir).unwrap_or((0, 0))
}

impl Containers {
    fn stats_of(&self, rec: Arc<ContainerRecord>) -> Option<ContainerStatsView> {
        let cgroup = self.deps.cgroups.stats(&rec.cgroup).ok()?;
        // A container removed between list and read has no cgroup left.
        if cgroup.is_empty() {
            return None;
        }
        let timestamp = crate::ids::now_nanos();
        let usage_nano_cores = cgroup
            .cpu_usage_ns
            .map(|usage| self.samples.cpu.nano_cores(&rec.id, timestamp, usage));
        let upper = rec.upper_dir();
        let (writable_bytes, writable_inodes) =
            self.samples.layers.get(&rec.id, || walk_layer(&upper));
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn layer_usage_is_walked_once_per_period_and_per_container() {
        let cache = LayerUsageCache::default();
        let walks = Cell::new(0);
        let walk = |usage| {
            walks.set(walks.get() + 1);
            usage
        };
        assert_eq!(cache.get("a", || walk((10, 1))), (10, 1));
        // Within the period: the cached figure, no walk.
        for _ in 0..5 {
            assert_eq!(cache.get("a", || walk((99, 9))), (10, 1));
        }
        assert_eq!(walks.get(), 1);
        assert_eq!(cache.get("b", || walk((20, 2))), (20, 2));
        assert_eq!(walks.get(), 2);
        // Once older than the period, walked again.
        let old = Instant::now() - LAYER_USAGE_TTL;
        cache.lock().get_mut("a").unwrap().0 = old;
        assert_eq!(cache.get("a", || walk((30, 3))), (30, 3));
        assert_eq!(walks.get(), 3);
        // Removed: the next read walks.
        cache.forget("b");
        assert_eq!(cache.get("b", || walk((40, 4))), (40, 4));
        assert_eq!(walks.get(), 4);
    }
}
