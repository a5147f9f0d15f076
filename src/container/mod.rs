//! Containers: lifecycle, the CRI → OCI spec conversion, security context,
//! mounts and the root filesystem.

pub mod security;
pub mod user;
