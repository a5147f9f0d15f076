//! Pod sandbox messages: RunPodSandbox's config validated into a
//! [`SandboxSpec`], and sandboxes back as CRI `PodSandbox` and status.

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path};

use super::userns::{userns_from, userns_to_api};
use crate::api;
use crate::cgroups;
use crate::config::Config;
use crate::sandbox::{
    DnsConfig, NamespaceMode, PortMapping, SandboxError, SandboxFilter, SandboxMetadata,
    SandboxSpec, SandboxView,
};
use crate::userns::UserNamespaceMaps;

fn invalid(field: &str, message: impl Into<String>) -> SandboxError {
    SandboxError::invalid(field, message)
}

/// Where the namespace modes of a RunPodSandbox request live.
const NAMESPACE_OPTIONS: &str = "config.linux.security_context.namespace_options";

/// Validates a RunPodSandbox request and turns it into a spec. Nothing is
/// created before this has passed.
pub fn spec_from_request(
    config: &Config,
    req: api::RunPodSandboxRequest,
) -> Result<SandboxSpec, SandboxError> {
    let c = req.config.ok_or_else(|| invalid("config", "must be set"))?;
    let metadata = metadata_from(c.metadata)?;
    let runtime_handler = runtime_handler_from(config, req.runtime_handler)?;
    check_hostname(&c.hostname)?;
    if !c.log_directory.is_empty() {
        check_absolute_clean(&c.log_directory, "config.log_directory")?;
    }
    let linux = c.linux.unwrap_or_default();
    let ns = linux
        .security_context
        .unwrap_or_default()
        .namespace_options
        .unwrap_or_default();
    let namespaces = namespaces_from(&ns)?;
    let sysctls = sysctls_from(linux.sysctls, &namespaces)?;
    let cgroup_parent = cgroup_parent_from(config, &linux.cgroup_parent)?;
    let port_mappings = port_mappings_from(&c.port_mappings)?;
    let dns = dns_from(c.dns_config)?;
    Ok(SandboxSpec {
        metadata,
        hostname: c.hostname,
        log_directory: c.log_directory,
        dns,
        port_mappings,
        labels: c.labels,
        annotations: c.annotations,
        cgroup_parent,
        network: namespaces.network,
        pid: namespaces.pid,
        ipc: namespaces.ipc,
        userns: namespaces.userns,
        sysctls,
        runtime_handler,
    })
}

/// Name, namespace and uid end up in paths and log directories.
fn metadata_from(md: Option<api::PodSandboxMetadata>) -> Result<SandboxMetadata, SandboxError> {
    let md = md.ok_or_else(|| invalid("config.metadata", "must be set"))?;
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
    Ok(SandboxMetadata {
        name: md.name,
        uid: md.uid,
        namespace: md.namespace,
        attempt: md.attempt,
    })
}

/// The requested handler, which must be configured; empty means the default.
fn runtime_handler_from(config: &Config, handler: String) -> Result<String, SandboxError> {
    if handler.is_empty() || config.runtimes.contains_key(&handler) {
        return Ok(handler);
    }
    Err(invalid(
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
    ))
}

fn check_hostname(hostname: &str) -> Result<(), SandboxError> {
    if !hostname.is_empty() && !valid_hostname(hostname) {
        return Err(invalid(
            "config.hostname",
            format!("{hostname:?} is not a valid hostname"),
        ));
    }
    Ok(())
}

/// The pod's namespace modes.
struct PodNamespaces {
    network: NamespaceMode,
    pid: NamespaceMode,
    ipc: NamespaceMode,
    userns: Option<UserNamespaceMaps>,
}

fn namespaces_from(ns: &api::NamespaceOption) -> Result<PodNamespaces, SandboxError> {
    use api::NamespaceMode::{Container, Node, Pod};
    let network = pod_namespace_mode(ns.network, "network", &[Pod, Node], "POD or NODE")?;
    let pid = pod_namespace_mode(
        ns.pid,
        "pid",
        &[Pod, Container, Node],
        "POD, CONTAINER or NODE",
    )?;
    let ipc = pod_namespace_mode(ns.ipc, "ipc", &[Pod, Node], "POD or NODE")?;
    let userns_field = format!("{NAMESPACE_OPTIONS}.userns_options");
    let userns = userns_from(ns.userns_options.as_ref(), &userns_field)?;
    if userns.is_some() {
        check_no_host_namespace(&[("network", network), ("pid", pid), ("ipc", ipc)])?;
    }
    Ok(PodNamespaces {
        network,
        pid,
        ipc,
        userns,
    })
}

/// A pod in a user namespace of its own cannot share the host's other
/// namespaces: the host's would not be owned by it (kubelet refuses
/// `hostUsers: false` with host namespaces for the same reason).
fn check_no_host_namespace(modes: &[(&str, NamespaceMode)]) -> Result<(), SandboxError> {
    match modes.iter().find(|(_, mode)| *mode == NamespaceMode::Node) {
        Some((name, _)) => Err(invalid(
            &format!("{NAMESPACE_OPTIONS}.{name}"),
            "NODE cannot be combined with a user namespace of the pod (userns_options mode POD)",
        )),
        None => Ok(()),
    }
}

/// One namespace's mode, if it is one of those a pod may have for it.
fn pod_namespace_mode(
    mode: i32,
    namespace: &str,
    allowed: &[api::NamespaceMode],
    allowed_names: &str,
) -> Result<NamespaceMode, SandboxError> {
    let requested = api::NamespaceMode::try_from(mode).ok();
    match requested.filter(|m| allowed.contains(m)) {
        Some(api::NamespaceMode::Pod) => Ok(NamespaceMode::Pod),
        Some(api::NamespaceMode::Container) => Ok(NamespaceMode::Container),
        Some(api::NamespaceMode::Node) => Ok(NamespaceMode::Node),
        _ => Err(invalid(
            &format!("{NAMESPACE_OPTIONS}.{namespace}"),
            format!("mode {mode} is not supported for a pod ({allowed_names})"),
        )),
    }
}

/// The sysctls in dotted form, each one the pod may set.
fn sysctls_from(
    requested: HashMap<String, String>,
    namespaces: &PodNamespaces,
) -> Result<BTreeMap<String, String>, SandboxError> {
    let mut sysctls = BTreeMap::new();
    for (key, value) in requested {
        let key = key.replace('/', ".");
        check_sysctl(&key, &value, namespaces.network, namespaces.ipc)?;
        sysctls.insert(key, value);
    }
    Ok(sysctls)
}

/// The pod's cgroup as an absolute path for the configured driver; empty
/// means the configured default.
fn cgroup_parent_from(config: &Config, requested: &str) -> Result<String, SandboxError> {
    cgroups::normalize_parent(
        requested,
        config.cgroup_driver,
        &config.default_cgroup_parent,
    )
    .map_err(|e| invalid("config.linux.cgroup_parent", e.to_string()))
}

fn port_mappings_from(ports: &[api::PortMapping]) -> Result<Vec<PortMapping>, SandboxError> {
    ports
        .iter()
        .enumerate()
        .map(|(i, p)| port_mapping_from(&format!("config.port_mappings[{i}]"), p))
        .collect()
}

fn port_mapping_from(field: &str, p: &api::PortMapping) -> Result<PortMapping, SandboxError> {
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
        return Err(invalid(field, "ports must be between 0 and 65535"));
    }
    if !p.host_ip.is_empty() && p.host_ip.parse::<std::net::IpAddr>().is_err() {
        return Err(invalid(
            &format!("{field}.host_ip"),
            format!("{:?} is not an IP address", p.host_ip),
        ));
    }
    Ok(PortMapping {
        protocol: protocol.to_string(),
        container_port: p.container_port,
        host_port: p.host_port,
        host_ip: p.host_ip.clone(),
    })
}

/// The pod's resolv.conf settings: server addresses, and single-word
/// searches and options (each becomes one line of the file).
fn dns_from(dns: Option<api::DnsConfig>) -> Result<Option<DnsConfig>, SandboxError> {
    let Some(d) = dns else {
        return Ok(None);
    };
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
    Ok(Some(DnsConfig {
        servers: d.servers,
        searches: d.searches,
        options: d.options,
    }))
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

pub(in crate::server) fn metadata(md: &SandboxMetadata) -> api::PodSandboxMetadata {
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
                    userns_options: userns_to_api(r.spec.userns.as_ref()),
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

    /// A change that makes a valid request invalid.
    type Spoil = Box<dyn FnOnce(&mut api::RunPodSandboxRequest)>;

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

    /// A RunPodSandbox request that passes, for tests to spoil one field of.
    fn valid_request() -> api::RunPodSandboxRequest {
        api::RunPodSandboxRequest {
            config: Some(api::PodSandboxConfig {
                metadata: Some(api::PodSandboxMetadata {
                    name: "web".into(),
                    uid: "u1".into(),
                    namespace: "default".into(),
                    attempt: 2,
                }),
                ..Default::default()
            }),
            runtime_handler: String::new(),
        }
    }

    fn error_of(spoil: impl FnOnce(&mut api::RunPodSandboxRequest)) -> String {
        let mut req = valid_request();
        spoil(&mut req);
        spec_from_request(&Config::default(), req)
            .expect_err("request must be refused")
            .to_string()
    }

    fn config_of(req: &mut api::RunPodSandboxRequest) -> &mut api::PodSandboxConfig {
        req.config.as_mut().expect("config")
    }

    fn namespaces_of(req: &mut api::RunPodSandboxRequest) -> &mut api::NamespaceOption {
        config_of(req)
            .linux
            .get_or_insert_with(Default::default)
            .security_context
            .get_or_insert_with(Default::default)
            .namespace_options
            .get_or_insert_with(Default::default)
    }

    #[test]
    fn a_full_request_converts() {
        let mut req = valid_request();
        req.runtime_handler = "runc".into();
        let c = config_of(&mut req);
        c.hostname = "web-0".into();
        c.port_mappings = vec![api::PortMapping {
            protocol: api::Protocol::Sctp as i32,
            container_port: 80,
            host_port: 8080,
            host_ip: "127.0.0.1".into(),
        }];
        c.dns_config = Some(api::DnsConfig {
            servers: vec!["10.0.0.10".into()],
            searches: vec!["svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        });
        let linux = c.linux.get_or_insert_with(Default::default);
        linux.sysctls = [("net/ipv4/ip_forward".to_string(), "1".to_string())].into();
        linux.cgroup_parent = "/kubepods".into();
        let ns = namespaces_of(&mut req);
        ns.pid = api::NamespaceMode::Container as i32;
        ns.ipc = api::NamespaceMode::Node as i32;

        let spec = spec_from_request(&Config::default(), req).expect("valid request");
        assert_eq!(spec.metadata.name, "web");
        assert_eq!(spec.metadata.attempt, 2);
        assert_eq!(spec.runtime_handler, "runc");
        assert_eq!(spec.hostname, "web-0");
        assert_eq!(
            (spec.network, spec.pid, spec.ipc),
            (
                NamespaceMode::Pod,
                NamespaceMode::Container,
                NamespaceMode::Node
            )
        );
        assert_eq!(spec.sysctls["net.ipv4.ip_forward"], "1");
        assert_eq!(spec.cgroup_parent, "/kubepods");
        assert_eq!(spec.port_mappings[0].protocol, "sctp");
        assert_eq!(spec.port_mappings[0].host_port, 8080);
        let dns = spec.dns.expect("dns");
        assert_eq!(dns.servers, ["10.0.0.10"]);
        assert_eq!(dns.options, ["ndots:5"]);
    }

    #[test]
    fn refusals_name_the_field() {
        const NS: &str = "config.linux.security_context.namespace_options";
        let cases: Vec<(Spoil, String)> = vec![
            (
                Box::new(|r| r.runtime_handler = "kata".into()),
                "runtime_handler: no runtime handler \"kata\" is configured (known: runc)".into(),
            ),
            (
                Box::new(|r| config_of(r).hostname = "a_b".into()),
                "config.hostname: \"a_b\" is not a valid hostname".into(),
            ),
            (
                Box::new(|r| namespaces_of(r).network = api::NamespaceMode::Container as i32),
                format!("{NS}.network: mode 1 is not supported for a pod (POD or NODE)"),
            ),
            (
                Box::new(|r| namespaces_of(r).pid = api::NamespaceMode::Target as i32),
                format!("{NS}.pid: mode 3 is not supported for a pod (POD, CONTAINER or NODE)"),
            ),
            (
                Box::new(|r| namespaces_of(r).ipc = 9),
                format!("{NS}.ipc: mode 9 is not supported for a pod (POD or NODE)"),
            ),
            (
                Box::new(|r| {
                    namespaces_of(r).userns_options = Some(api::UserNamespace {
                        mode: api::NamespaceMode::Pod as i32,
                        ..Default::default()
                    })
                }),
                format!("{NS}.userns_options.uids: a user namespace here takes exactly one mapping, got 0"),
            ),
            (
                Box::new(|r| {
                    let m = api::IdMapping {
                        host_id: 65536,
                        container_id: 0,
                        length: 65536,
                    };
                    let ns = namespaces_of(r);
                    ns.network = api::NamespaceMode::Node as i32;
                    ns.userns_options = Some(api::UserNamespace {
                        mode: api::NamespaceMode::Pod as i32,
                        uids: vec![m],
                        gids: vec![m],
                    })
                }),
                format!("{NS}.network: NODE cannot be combined with a user namespace of the pod (userns_options mode POD)"),
            ),
            (
                Box::new(|r| {
                    namespaces_of(r).network = api::NamespaceMode::Node as i32;
                    let linux = config_of(r).linux.as_mut().expect("linux");
                    linux.sysctls = [("net/core/somaxconn".to_string(), "1".to_string())].into();
                }),
                "config.linux.sysctls[net.core.somaxconn]: a host-network pod cannot set network sysctls".into(),
            ),
            (
                Box::new(|r| {
                    config_of(r).port_mappings = vec![
                        api::PortMapping::default(),
                        api::PortMapping {
                            protocol: 7,
                            ..Default::default()
                        },
                    ]
                }),
                "config.port_mappings[1].protocol: unknown protocol 7".into(),
            ),
            (
                Box::new(|r| {
                    config_of(r).port_mappings = vec![api::PortMapping {
                        host_port: 70000,
                        ..Default::default()
                    }]
                }),
                "config.port_mappings[0]: ports must be between 0 and 65535".into(),
            ),
            (
                Box::new(|r| {
                    config_of(r).port_mappings = vec![api::PortMapping {
                        host_ip: "nope".into(),
                        ..Default::default()
                    }]
                }),
                "config.port_mappings[0].host_ip: \"nope\" is not an IP address".into(),
            ),
            (
                Box::new(|r| {
                    config_of(r).dns_config = Some(api::DnsConfig {
                        servers: vec!["dns.example".into()],
                        ..Default::default()
                    })
                }),
                "config.dns_config.servers: \"dns.example\" is not an IP address".into(),
            ),
            (
                Box::new(|r| {
                    config_of(r).dns_config = Some(api::DnsConfig {
                        options: vec!["ndots:5 rotate".into()],
                        ..Default::default()
                    })
                }),
                "config.dns_config: searches and options must be single words".into(),
            ),
            // The first fault found is the one reported: the hostname is
            // checked before the ports.
            (
                Box::new(|r| {
                    let c = config_of(r);
                    c.hostname = "-x".into();
                    c.port_mappings = vec![api::PortMapping {
                        protocol: 7,
                        ..Default::default()
                    }];
                }),
                "config.hostname: \"-x\" is not a valid hostname".into(),
            ),
        ];
        for (spoil, expected) in cases {
            assert_eq!(error_of(spoil), expected);
        }
    }
}
