//! What each plugin reads on stdin: its own config from the list, with the
//! list's name and version, the previous result, and the runtime values it
//! declares it takes (`runtimeConfig`).

use serde_json::{json, Map, Value};

use super::{Attachment, CniNetwork};

impl CniNetwork {
    /// The plugin's stdin: its own config with the list's name and version,
    /// the previous result, and those capability args it declares it takes.
    pub(super) fn plugin_config(
        &self,
        plugin: &Map<String, Value>,
        caps: &Map<String, Value>,
        prev: Option<&Value>,
    ) -> Value {
        let mut conf = plugin.clone();
        conf.insert("name".to_string(), Value::String(self.name.clone()));
        if !self.cni_version.is_empty() {
            conf.insert(
                "cniVersion".to_string(),
                Value::String(self.cni_version.clone()),
            );
        }
        if let Some(prev) = prev {
            conf.insert("prevResult".to_string(), prev.clone());
        }
        let runtime = declared_capabilities(plugin, caps);
        if !runtime.is_empty() {
            conf.insert("runtimeConfig".to_string(), Value::Object(runtime));
        }
        Value::Object(conf)
    }
}

/// The capability args the plugin's `capabilities` object turns on.
fn declared_capabilities(
    plugin: &Map<String, Value>,
    caps: &Map<String, Value>,
) -> Map<String, Value> {
    let declared = plugin.get("capabilities").and_then(Value::as_object);
    caps.iter()
        .filter(|(cap, _)| {
            declared
                .and_then(|d| d.get(cap.as_str()))
                .and_then(Value::as_bool)
                .unwrap_or(false)
        })
        .map(|(cap, value)| (cap.clone(), value.clone()))
        .collect()
}

/// The runtime values plugins can ask for by capability (CONVENTIONS.md of
/// the CNI repo), keyed by capability name; absent when there is nothing to say.
pub(super) fn capability_args(a: &Attachment<'_>) -> Map<String, Value> {
    let mut caps = Map::new();
    let ports: Vec<Value> = a
        .port_mappings
        .iter()
        .filter(|p| p.host_port > 0)
        .map(|p| {
            let protocol = if p.protocol.is_empty() {
                "tcp".to_string()
            } else {
                p.protocol.to_ascii_lowercase()
            };
            let mut m = json!({
                "hostPort": p.host_port,
                "containerPort": p.container_port,
                "protocol": protocol,
            });
            if !p.host_ip.is_empty() {
                m["hostIP"] = Value::String(p.host_ip.clone());
            }
            m
        })
        .collect();
    if !ports.is_empty() {
        caps.insert("portMappings".to_string(), Value::Array(ports));
    }
    if let Some(cidr) = a.pod_cidr.filter(|c| !c.is_empty()) {
        caps.insert("ipRanges".to_string(), json!([[{ "subnet": cidr }]]));
    }
    caps
}

/// The plugin's `type`: the name of its binary.
pub(super) fn plugin_type(plugin: &Map<String, Value>) -> &str {
    plugin.get("type").and_then(Value::as_str).unwrap_or("")
}
