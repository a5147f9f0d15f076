//! peapod: a Kubernetes Container Runtime Interface (CRI) runtime.
//!
//! The daemon (`peapod serve`) answers the CRI v1 `RuntimeService` and
//! `ImageService` on a unix socket. Layers depend downward:
//! `server` (gRPC adapters) → `sandbox`, `image` (domain) → `store`, `cgroups`,
//! `process` (mechanisms).

/// Types and client/server code generated from `proto/api.proto`
/// (package `runtime.v1`).
pub mod api {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("runtime.v1");
}

pub mod cgroups;
pub mod config;
pub mod container;
pub mod fsutil;
pub mod ids;
pub mod image;
pub mod monitor;
pub mod names;
pub mod oci;
pub mod process;
pub mod sandbox;
pub mod server;
pub mod store;
