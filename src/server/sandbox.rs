//! Pod sandbox RPCs: request validation and conversion between CRI messages
//! and the sandbox domain types.

use std::collections::BTreeMap;
use std::path::{Component, Path};

use crate::api;
use crate::cgroups;
use crate::config::Config;
use crate::sandbox::{
    DnsConfig, NamespaceMode, PortMapping, SandboxError, SandboxFilter, SandboxMetadata,
    SandboxSpec, SandboxView,
};

fn invalid(field: &str, message: impl Into<String>) -> SandboxError {
    SandboxError::invalid(field, message)
}

/// Validates a RunPodSandbox request and turns it into a spec. Nothing is
/// created before this has passed.
pub fn spec_from_request(
    config: &Config,
    req: api::RunPodSandboxRequest,
) -> Result<SandboxSpec, SandboxError> {
    let c = req.config.ok_or_else(|| invalid("config", "must be set"))?;
    let md = c
        .metadata
        .ok_or_else(|| invalid("config.metadata", "must be set"))?;
    for (field, value) in [
        ("config.metadata.name", &md.name),
        ("config.metadata.namespace", &md.namespace),
        ("config.metadata.uid", &md.uid),
    ] {
        if value.is_empty() {
            return Err(invalid(field, "must not be empty"));
        }
        if value.contains(['/', '\0']) || value.len() > 253 {
            return Err(invalid(field, format!("{value:?} is not a valid name")));
        }
    }

    let handler = req.runtime_handler;
    if !handler.is_empty() && !config.runtimes.contains_key(&handler) {
        return Err(invalid(
            "runtime_handler",
            format!(
                "no runtime handler {handler:?} is configured (known: {})",
                config
                    .runtimes
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }

    if !c.hostname.is_empty() && !valid_hostname(&c.hostname) {
        return Err(invalid(
            "config.hostname",
            format!("{:?} is not a valid hostname", c.hostname),
        ));
    }
    if !c.log_directory.is_empty() {
        check_absolute_clean(&c.log_directory, "config.log_directory")?;
    }

    let linux = c.linux.unwrap_or_default();
    let sc = linux.security_context.unwrap_or_default();
    let ns = sc.namespace_options.unwrap_or_default();
    let network = match api::NamespaceMode::try_from(ns.network) {
        Ok(api::NamespaceMode::Pod) => NamespaceMode::Pod,
        Ok(api::NamespaceMode::Node) => NamespaceMode::Node,
        _ => {
            return Err(invalid(
                "config.linux.security_context.namespace_options.network",
                format!(
                    "mode {} is not supported for a pod (POD or NODE)",
                    ns.network
                ),
            ))
        }
    };
    let pid = match api::NamespaceMode::try_from(ns.pid) {
        Ok(api::NamespaceMode::Pod) => NamespaceMode::Pod,
        Ok(api::NamespaceMode::Container) => NamespaceMode::Container,
        Ok(api::NamespaceMode::Node) => NamespaceMode::Node,
        _ => {
            return Err(invalid(
                "config.linux.security_context.namespace_options.pid",
                format!(
                    "mode {} is not supported for a pod (POD, CONTAINER or NODE)",
                    ns.pid
                ),
            ))
        }
    };
    let ipc = match api::NamespaceMode::try_from(ns.ipc) {
        Ok(api::NamespaceMode::Pod) => NamespaceMode::Pod,
        Ok(api::NamespaceMode::Node) => NamespaceMode::Node,
        _ => {
            return Err(invalid(
                "config.linux.security_context.namespace_options.ipc",
                format!("mode {} is not supported for a pod (POD or NODE)", ns.ipc),
            ))
        }
    };
    if let Some(userns) = &ns.userns_options {
        if userns.mode != api::NamespaceMode::Node as i32 {
            return Err(invalid(
                "config.linux.security_context.namespace_options.userns_options",
                "user namespaces are not supported by peapod yet; use mode NODE",
            ));
        }
    }

    let mut sysctls = BTreeMap::new();
    for (key, value) in linux.sysctls {
        let key = key.replace('/', ".");
        check_sysctl(&key, &value, network, ipc)?;
        sysctls.insert(key, value);
    }

    let cgroup_parent = cgroups::normalize_parent(
        &linux.cgroup_parent,
        config.cgroup_driver,
        &config.default_cgroup_parent,
    )
    .map_err(|e| invalid("config.linux.cgroup_parent", e.to_string()))?;

    let mut port_mappings = Vec::new();
    for (i, p) in c.port_mappings.iter().enumerate() {
        let field = format!("config.port_mappings[{i}]");
        let protocol = match api::Protocol::try_from(p.protocol) {
            Ok(api::Protocol::Tcp) => "tcp",
            Ok(api::Protocol::Udp) => "udp",
            Ok(api::Protocol::Sctp) => "sctp",
            Err(_) => {
                return Err(invalid(
                    &format!("{field}.protocol"),
                    format!("unknown protocol {}", p.protocol),
                ))
            }
        };
        if !(0..=65535).contains(&p.container_port) || !(0..=65535).contains(&p.host_port) {
            return Err(invalid(&field, "ports must be between 0 and 65535"));
        }
        if !p.host_ip.is_empty() && p.host_ip.parse::<std::net::IpAddr>().is_err() {
            return Err(invalid(
                &format!("{field}.host_ip"),
                format!("{:?} is not an IP address", p.host_ip),
            ));
        }
        port_mappings.push(PortMapping {
            protocol: protocol.to_string(),
            container_port: p.container_port,
            host_port: p.host_port,
            host_ip: p.host_ip.clone(),
        });
    }

    let dns = c.dns_config.map(|d| DnsConfig {
        servers: d.servers,
        searches: d.searches,
        options: d.options,
    });
    if let Some(d) = &dns {
        for s in &d.servers {
            if s.parse::<std::net::IpAddr>().is_err() {
                return Err(invalid(
                    "config.dns_config.servers",
                    format!("{s:?} is not an IP address"),
                ));
            }
        }
        if d.searches
            .iter()
            .chain(&d.options)
            .any(|s| s.contains(['\n', '\0', ' ']))
        {
            return Err(invalid(
                "config.dns_config",
                "searches and options must be single words",
            ));
        }
    }

    Ok(SandboxSpec {
        metadata: SandboxMetadata {
            name: md.name,
            uid: md.uid,
            namespace: md.namespace,
            attempt: md.attempt,
        },
        hostname: c.hostname,
        log_directory: c.log_directory,
        dns,
        port_mappings,
        labels: c.labels,
        annotations: c.annotations,
        cgroup_parent,
        network,
        pid,
        ipc,
        sysctls,
        runtime_handler: handler,
    })
}

fn valid_hostname(h: &str) -> bool {
    h.len() <= 64
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// An absolute path without `..`: it cannot leave the place it names.
pub fn check_absolute_clean(p: &str, field: &str) -> Result<(), SandboxError> {
    let path = Path::new(p);
    if !path.is_absolute() {
        return Err(invalid(field, format!("{p:?} must be an absolute path")));
    }
    if p.contains('\0') || path.components().any(|c| c == Component::ParentDir) {
        return Err(invalid(field, format!("{p:?} must not contain '..'")));
    }
    Ok(())
}

/// Only sysctls that are namespaced, and only for a namespace the pod owns:
/// anything else would change the host.
fn check_sysctl(
    key: &str,
    value: &str,
    network: NamespaceMode,
    ipc: NamespaceMode,
) -> Result<(), SandboxError> {
    let field = format!("config.linux.sysctls[{key}]");
    if key.is_empty()
        || key.starts_with('.')
        || key.ends_with('.')
        || key.contains("..")
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(invalid(&field, "not a valid sysctl name"));
    }
    if value.contains(['\n', '\0']) {
        return Err(invalid(&field, "value must be a single line"));
    }
    let is_net = key.starts_with("net.");
    let is_ipc = key == "kernel.sem"
        || key.starts_with("kernel.shm")
        || key.starts_with("kernel.msg")
        || key.starts_with("fs.mqueue.");
    if !is_net && !is_ipc {
        return Err(invalid(
            &field,
            "not a namespaced sysctl (allowed: net.*, kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*)",
        ));
    }
    if is_net && network == NamespaceMode::Node {
        return Err(invalid(
            &field,
            "a host-network pod cannot set network sysctls",
        ));
    }
    if is_ipc && ipc == NamespaceMode::Node {
        return Err(invalid(&field, "a host-IPC pod cannot set IPC sysctls"));
    }
    Ok(())
}

pub fn filter_from_request(f: Option<api::PodSandboxFilter>) -> SandboxFilter {
    let Some(f) = f else {
        return SandboxFilter::default();
    };
    SandboxFilter {
        id: (!f.id.is_empty()).then_some(f.id),
        // A present state message means that state, also when it holds the
        // zero value (READY): presence, not the value, turns the filter on.
        ready: f
            .state
            .map(|s| s.state == api::PodSandboxState::SandboxReady as i32),
        labels: f.label_selector,
    }
}

fn metadata(md: &SandboxMetadata) -> api::PodSandboxMetadata {
    api::PodSandboxMetadata {
        name: md.name.clone(),
        uid: md.uid.clone(),
        namespace: md.namespace.clone(),
        attempt: md.attempt,
    }
}

fn state(v: &SandboxView) -> i32 {
    if v.ready {
        api::PodSandboxState::SandboxReady as i32
    } else {
        api::PodSandboxState::SandboxNotready as i32
    }
}

fn mode(m: NamespaceMode) -> i32 {
    match m {
        NamespaceMode::Pod => api::NamespaceMode::Pod as i32,
        NamespaceMode::Container => api::NamespaceMode::Container as i32,
        NamespaceMode::Node => api::NamespaceMode::Node as i32,
    }
}

pub fn to_pod_sandbox(v: &SandboxView) -> api::PodSandbox {
    let r = &v.record;
    api::PodSandbox {
        id: r.id.clone(),
        metadata: Some(metadata(&r.spec.metadata)),
        state: state(v),
        created_at: r.created_at,
        labels: r.spec.labels.clone(),
        annotations: r.spec.annotations.clone(),
        runtime_handler: r.spec.runtime_handler.clone(),
    }
}

pub fn to_status(v: &SandboxView) -> api::PodSandboxStatus {
    let r = &v.record;
    let network = (r.spec.network == NamespaceMode::Pod).then(|| api::PodSandboxNetworkStatus {
        ip: r.ips.first().cloned().unwrap_or_default(),
        additional_ips: r
            .ips
            .iter()
            .skip(1)
            .map(|ip| api::PodIp { ip: ip.clone() })
            .collect(),
    });
    api::PodSandboxStatus {
        id: r.id.clone(),
        metadata: Some(metadata(&r.spec.metadata)),
        state: state(v),
        created_at: r.created_at,
        network,
        linux: Some(api::LinuxPodSandboxStatus {
            namespaces: Some(api::Namespace {
                options: Some(api::NamespaceOption {
                    network: mode(r.spec.network),
                    pid: mode(r.spec.pid),
                    ipc: mode(r.spec.ipc),
                    target_id: String::new(),
                    userns_options: None,
                }),
            }),
        }),
        labels: r.spec.labels.clone(),
        annotations: r.spec.annotations.clone(),
        runtime_handler: r.spec.runtime_handler.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json_config: serde_json::Value) -> api::RunPodSandboxRequest {
        // Build the request the way the tests' fixtures do: from JSON shapes.
        let md = &json_config["metadata"];
        api::RunPodSandboxRequest {
            config: Some(api::PodSandboxConfig {
                metadata: Some(api::PodSandboxMetadata {
                    name: md["name"].as_str().unwrap_or("").into(),
                    uid: md["uid"].as_str().unwrap_or("").into(),
                    namespace: md["namespace"].as_str().unwrap_or("").into(),
                    attempt: 0,
                }),
                hostname: json_config["hostname"].as_str().unwrap_or("").into(),
                log_directory: json_config["log_directory"].as_str().unwrap_or("").into(),
                ..Default::default()
            }),
            runtime_handler: String::new(),
        }
    }

    #[test]
    fn missing_fields_are_named() {
        let c = Config::default();
        let e = spec_from_request(&c, api::RunPodSandboxRequest::default()).unwrap_err();
        assert!(e.to_string().starts_with("config:"), "{e}");
        let e = spec_from_request(
            &c,
            request(serde_json::json!({"metadata": {"name": "a", "uid": "u"}})),
        )
        .unwrap_err();
        assert!(e.to_string().contains("config.metadata.namespace"), "{e}");
    }

    #[test]
    fn escaping_log_directory_is_refused() {
        let c = Config::default();
        for dir in ["relative/dir", "/var/log/pods/../../etc"] {
            let e = spec_from_request(
                &c,
                request(serde_json::json!({"metadata": {"name": "a", "uid": "u", "namespace": "n"}, "log_directory": dir})),
            )
            .unwrap_err();
            assert!(e.to_string().contains("config.log_directory"), "{e}");
        }
    }

    #[test]
    fn sysctls() {
        use NamespaceMode::*;
        assert!(check_sysctl("net.ipv4.ip_forward", "1", Pod, Pod).is_ok());
        assert!(check_sysctl("kernel.shmmax", "1", Pod, Pod).is_ok());
        assert!(check_sysctl("kernel.msgmax", "1", Pod, Pod).is_ok());
        assert!(check_sysctl("kernel.sem", "1 2 3 4", Pod, Pod).is_ok());
        assert!(check_sysctl("fs.mqueue.msg_max", "1", Pod, Pod).is_ok());
        let e = check_sysctl("kernel.hostname", "x", Pod, Pod).unwrap_err();
        assert!(
            e.to_string()
                .contains("config.linux.sysctls[kernel.hostname]"),
            "{e}"
        );
        assert!(check_sysctl("vm.swappiness", "1", Pod, Pod).is_err());
        assert!(check_sysctl("net.ipv4.ip_forward", "1", Node, Pod).is_err());
        assert!(check_sysctl("kernel.shmmax", "1", Pod, Node).is_err());
        assert!(check_sysctl("net..x", "1", Pod, Pod).is_err());
        assert!(check_sysctl("net.ipv4.ip_forward", "1\n2", Pod, Pod).is_err());
    }

    #[test]
    fn hostnames() {
        assert!(valid_hostname("bb-static-vm"));
        assert!(valid_hostname("a.b"));
        assert!(!valid_hostname("-a"));
        assert!(!valid_hostname("a_b"));
        assert!(!valid_hostname(&"a".repeat(65)));
    }

    #[test]
    fn state_filter_presence_means_ready() {
        let f = filter_from_request(Some(api::PodSandboxFilter {
            state: Some(api::PodSandboxStateValue { state: 0 }),
            ..Default::default()
        }));
        assert_eq!(f.ready, Some(true));
        let f = filter_from_request(Some(api::PodSandboxFilter::default()));
        assert_eq!(f.ready, None);
    }
}
