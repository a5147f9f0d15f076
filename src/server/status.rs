//! What `Status` and the verbose `*Status` calls report beyond the plain
//! conversions: the runtime's conditions and handlers, and the `info` maps.

use std::collections::HashMap;

use super::Daemon;
use crate::api;
use crate::container::ContainerRecord;
use crate::sandbox::network::{not_ready_message, NOT_READY_REASON};
use crate::sandbox::SandboxRecord;

/// A condition that holds; `message` may still say how.
fn ready(kind: &str, message: String) -> api::RuntimeCondition {
    api::RuntimeCondition {
        r#type: kind.into(),
        status: true,
        reason: String::new(),
        message,
    }
}

fn not_ready(kind: &str, reason: &str, message: String) -> api::RuntimeCondition {
    api::RuntimeCondition {
        r#type: kind.into(),
        status: false,
        reason: reason.into(),
        message,
    }
}

/// RuntimeReady (always, while the daemon answers) and NetworkReady, whose
/// message says which network new pods join.
pub fn conditions(daemon: &Daemon) -> Vec<api::RuntimeCondition> {
    const NETWORK: &str = "NetworkReady";
    let network = match daemon.sandboxes.network() {
        Ok(Some(net)) => ready(NETWORK, format!("pods join {}", net.describe())),
        Ok(None) => not_ready(
            NETWORK,
            NOT_READY_REASON,
            not_ready_message(&daemon.config.cni.conf_dir),
        ),
        Err(e) => not_ready(
            NETWORK,
            NOT_READY_REASON,
            format!("Network plugin returns error: {e}"),
        ),
    };
    vec![ready("RuntimeReady", String::new()), network]
}

/// The runtime handlers with their features; the default one also under
/// the empty name, first.
pub async fn runtime_handlers(daemon: &Daemon) -> Vec<api::RuntimeHandler> {
    // Every OCI runtime takes a user namespace with its mappings: what
    // decides is whether peapod can id-map the containers' mounts.
    let user_namespaces = daemon.containers.user_namespaces();
    let mut handlers: Vec<api::RuntimeHandler> = daemon
        .containers
        .handler_features()
        .await
        .into_iter()
        .map(|(name, f)| api::RuntimeHandler {
            name,
            features: Some(api::RuntimeHandlerFeatures {
                recursive_read_only_mounts: f.recursive_read_only_mounts,
                user_namespaces,
            }),
        })
        .collect();
    let default = handlers
        .iter()
        .find(|h| h.name == daemon.config.default_runtime)
        .and_then(|h| h.features);
    handlers.insert(
        0,
        api::RuntimeHandler {
            name: String::new(),
            features: default,
        },
    );
    handlers
}

/// Verbose Status: the effective config, with the state directory also
/// under the `stateDir` key other runtimes use (conformance tests probe
/// idmapped mounts there).
pub fn runtime_info(daemon: &Daemon) -> HashMap<String, String> {
    let mut config = serde_json::to_value(daemon.config.as_ref()).unwrap_or_default();
    if let Some(object) = config.as_object_mut() {
        object.insert(
            "stateDir".to_string(),
            serde_json::json!(daemon.config.state_dir),
        );
    }
    [("config".to_string(), config.to_string())].into()
}

/// What the runtime supports beyond its handlers.
pub fn runtime_features() -> api::RuntimeFeatures {
    api::RuntimeFeatures {
        // Merge and Strict are both applied (container::user).
        supplemental_groups_policy: true,
        // A user-namespaced pod cannot have the host's network.
        user_namespaces_host_network: false,
    }
}

/// Verbose PodSandboxStatus: where the pod's parts are.
pub fn sandbox_info(daemon: &Daemon, r: &SandboxRecord) -> HashMap<String, String> {
    let detail = serde_json::json!({
        "pid": r.infra.map(|p| p.pid),
        "processStartTime": r.infra.map(|p| p.start_time),
        "netns": r.netns_path,
        "shm": r.shm_path,
        "sandboxDir": r.dir,
        "resolvConf": r.resolv_conf_path(),
        "hostnameFile": r.hostname_path(),
        "cgroup": r.cgroup,
        "cgroupDirs": daemon.sandboxes.cgroup_dirs(r),
        "cniNetwork": r.cni_network,
        "runtimeHandler": r.spec.runtime_handler,
        "sysctls": r.spec.sysctls,
        "state": r.state,
        "resources": r.resources,
    });
    let mut info: HashMap<String, String> = [("info".to_string(), detail.to_string())].into();
    if let Some(p) = r.infra {
        info.insert("pid".to_string(), p.pid.to_string());
    }
    info
}

/// Verbose ContainerStatus: where the container's parts are, and its OCI
/// spec.
pub fn container_info(daemon: &Daemon, rec: &ContainerRecord) -> HashMap<String, String> {
    let detail = serde_json::json!({
        "sandboxID": rec.spec.sandbox_id,
        "pid": rec.init.map(|p| p.pid),
        "monitorPid": rec.monitor.map(|p| p.pid),
        "runtimeHandler": rec.runtime_handler,
        "cgroup": rec.cgroup,
        "rootfs": rec.rootfs(),
        "upperDir": rec.upper_dir(),
        "bundle": rec.bundle(),
        "stopSignal": rec.stop_signal,
        "runtimeSpec": daemon.containers.runtime_spec(rec),
    });
    [("info".to_string(), detail.to_string())].into()
}
