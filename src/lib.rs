//! peapod: a Kubernetes Container Runtime Interface (CRI) runtime.
//!
//! The daemon (`peapod serve`) answers the CRI v1 `RuntimeService` and
//! `ImageService` on a unix socket. Layers depend downward:
//! `server` (gRPC adapters) → `streaming` (the exec/attach/port-forward
//! server) → `pods`, `events` (the lifecycle events GetContainerEvents
//! streams) → `sandbox`, `container`, `image`
//! (domain) → `objects`, `oci`, `monitor`, `cgroups`, `host`, `store`
//! (mechanisms). Sandboxes hand containers a [`pod::PodContext`].
//! `preflight` (`peapod check`, and the daemon's start-up checks) sits
//! beside `server`: it asks the domain and the mechanisms about the host.
//! `metrics` (peapod's own Prometheus metrics) is below everything that
//! reports to it.

/// Types and client/server code generated from `proto/api.proto`
/// (package `runtime.v1`).
pub mod api {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("runtime.v1");
}

pub mod cgroups;
pub mod config;
pub mod container;
pub mod errors;
pub mod events;
pub mod host;
pub mod ids;
pub mod image;
pub mod metrics;
pub mod monitor;
pub mod notify;
pub mod objects;
pub mod oci;
pub mod pod;
pub mod pods;
pub mod preflight;
pub mod process;
pub mod sandbox;
pub mod server;
pub mod store;
pub mod streaming;
#[cfg(test)]
pub mod testing;
pub mod userns;
