//! CRI messages to domain types and back, one file per message family.
//! Requests are validated here, before anything is created, and errors name
//! the request field at fault.

pub mod container;
pub mod pod_resources;
mod resources;
pub mod sandbox;
mod security;
mod userns;
