//! One run of the bench: its id and what it has made on every target, so
//! that cleanup finds all of it.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use peapod::api::image_service_client::ImageServiceClient;
use peapod::api::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

use crate::args::Options;
use crate::cgroups::CgroupTree;
use crate::error::BenchError;

/// Label on every sandbox and container this bench creates; its value is
/// the run id.
pub const RUN_LABEL: &str = "peapod-bench/run";

/// What cleanup needs to find everything this run created.
pub struct Shared {
    pub run_id: String,
    pub pods_dir: PathBuf,
    /// The skopeo+umoci peer's OCI layout and bundle.
    pub pull_dir: PathBuf,
    /// The streaming workload's spdy-client result files.
    pub streaming_dir: PathBuf,
    pub cgroups: CgroupTree,
    pub clients: Mutex<Vec<(String, RuntimeServiceClient<Channel>)>>,
    pub image_clients: Mutex<Vec<(String, ImageServiceClient<Channel>)>>,
    /// Sandbox ids per target that are not removed yet.
    pub live: Mutex<Vec<(String, String)>>,
    /// Container ids per target that are not removed yet.
    pub containers: Mutex<Vec<(String, String)>>,
    /// Images per target that the bench pulled and has not removed yet.
    pub pulled: Mutex<Vec<(String, String)>>,
    /// The runc floor: its directory (bundle, rootfs, `--root`), its runc
    /// and the ids of its containers not deleted yet.
    pub floor_dir: PathBuf,
    pub runc: PathBuf,
    pub floor: Mutex<Vec<String>>,
}

/// Adds or drops one (target, id) pair of a tracking list.
pub fn track_in(list: &Mutex<Vec<(String, String)>>, target: &str, id: &str) {
    list.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push((target.to_string(), id.to_string()));
}

pub fn untrack_in(list: &Mutex<Vec<(String, String)>>, target: &str, id: &str) {
    list.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .retain(|(t, i)| !(t == target && i == id));
}

/// The ids a tracking list holds for `target`.
pub fn tracked_in(list: &Mutex<Vec<(String, String)>>, target: &str) -> Vec<String> {
    list.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter(|(t, _)| t == target)
        .map(|(_, id)| id.clone())
        .collect()
}

impl Shared {
    /// A new run: its id, its cgroup parent (made in every hierarchy) and
    /// the directories it will use under `--log-root`.
    pub fn new(opts: &Options) -> Result<Shared, BenchError> {
        let run_id = random_hex(4)?;
        let cgroups = CgroupTree::discover(&opts.cgroup_parent)?;
        cgroups.create(&opts.cgroup_parent)?;
        let dir = |what: &str| opts.log_root.join(format!("peapod-bench-{what}-{run_id}"));
        Ok(Shared {
            pods_dir: dir("pods"),
            pull_dir: dir("pull"),
            streaming_dir: dir("streaming"),
            floor_dir: dir("runc"),
            run_id,
            cgroups,
            clients: Mutex::new(Vec::new()),
            image_clients: Mutex::new(Vec::new()),
            live: Mutex::new(Vec::new()),
            containers: Mutex::new(Vec::new()),
            pulled: Mutex::new(Vec::new()),
            runc: opts.runc.clone(),
            floor: Mutex::new(Vec::new()),
        })
    }

    /// Keeps a target's clients for cleanup.
    pub fn register(
        &self,
        target: &str,
        rt: &RuntimeServiceClient<Channel>,
        images: &ImageServiceClient<Channel>,
    ) {
        self.clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((target.to_string(), rt.clone()));
        self.image_clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((target.to_string(), images.clone()));
    }

    /// Tracks a sandbox for cleanup.
    pub fn track(&self, target: &str, id: &str) {
        track_in(&self.live, target, id);
    }

    pub fn untrack(&self, target: &str, id: &str) {
        untrack_in(&self.live, target, id);
    }
}

/// `bytes` random bytes in hex (run ids, pod UIDs).
pub fn random_hex(bytes: usize) -> Result<String, BenchError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(BenchError::Random)?;
    Ok(buf.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}
