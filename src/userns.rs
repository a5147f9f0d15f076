//! User namespaces: a pod's id mappings, defined once with the monitor
//! that writes them (`peapod_monitor_protocol::idmap`).

pub use peapod_monitor_protocol::idmap::{IdMap, UserNamespaceMaps};
