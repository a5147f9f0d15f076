//! Reading what an ADD printed: the result object and the pod's IPs in it.

use std::net::IpAddr;

use serde_json::Value;

use super::{CniError, Op};

/// A plugin's ADD output as a result object.
pub(super) fn parse_add_result(plugin: &str, out: &[u8]) -> Result<Value, CniError> {
    let bad = |reason: String| CniError::BadResult {
        plugin: plugin.to_string(),
        command: Op::Add.as_str(),
        reason,
    };
    let result: Value = serde_json::from_slice(out).map_err(|e| {
        bad(if out.iter().all(u8::is_ascii_whitespace) {
            "no result on stdout".to_string()
        } else {
            format!("not JSON: {e}")
        })
    })?;
    if !result.is_object() {
        return Err(bad("result is not a JSON object".to_string()));
    }
    Ok(result)
}

/// The pod's IPs from a result: addresses of the interface named `ifname`
/// (or of no stated interface), IPv4 before IPv6, without duplicates.
/// Also reads the pre-0.3 `ip4`/`ip6` shape.
pub(super) fn pod_ips(result: &Value, ifname: &str) -> Vec<IpAddr> {
    let mut found: Vec<IpAddr> = Vec::new();
    let mut push = |cidr: &str| {
        let addr = cidr.split('/').next().unwrap_or(cidr);
        if let Ok(ip) = addr.parse::<IpAddr>() {
            if !found.contains(&ip) {
                found.push(ip);
            }
        }
    };
    for address in pod_addresses(result, ifname) {
        push(address);
    }
    for key in ["ip4", "ip6"] {
        if let Some(cidr) = result
            .get(key)
            .and_then(|v| v.get("ip"))
            .and_then(Value::as_str)
        {
            push(cidr);
        }
    }
    let (mut v4, v6): (Vec<IpAddr>, Vec<IpAddr>) = found.into_iter().partition(IpAddr::is_ipv4);
    v4.extend(v6);
    v4
}

/// The `ips[].address` entries (CIDR) on the pod's interface: those naming
/// `ifname`, and those naming no interface unless they are loopback.
fn pod_addresses<'r>(result: &'r Value, ifname: &str) -> Vec<&'r str> {
    let interfaces = result.get("interfaces").and_then(Value::as_array);
    let mut addresses = Vec::new();
    for ip in result
        .get("ips")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(address) = ip.get("address").and_then(Value::as_str) else {
            continue;
        };
        let iface = ip
            .get("interface")
            .and_then(Value::as_u64)
            .and_then(|i| interfaces.and_then(|list| list.get(usize::try_from(i).ok()?)));
        let on_pod_interface = match iface {
            Some(iface) => iface.get("name").and_then(Value::as_str) == Some(ifname),
            None => !address.starts_with("127.") && !address.starts_with("::1/"),
        };
        if on_pod_interface {
            addresses.push(address);
        }
    }
    addresses
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pod_ips_ipv4_first_and_only_the_pod_interface() {
        let r = json!({
            "interfaces": [{"name": "cni0"}, {"name": "lo", "sandbox": "/x"}, {"name": "eth0", "sandbox": "/x"}],
            "ips": [
                {"address": "fd00::2/64", "interface": 2},
                {"address": "10.0.0.1/24", "interface": 0},
                {"address": "127.0.0.1/8", "interface": 1},
                {"address": "10.0.0.2/24", "interface": 2},
                {"address": "10.0.0.2/24", "interface": 2}
            ]
        });
        let ips: Vec<String> = pod_ips(&r, "eth0")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(ips, ["10.0.0.2", "fd00::2"]);
        let old = json!({"ip4": {"ip": "10.1.0.3/16"}, "ip6": {"ip": "fd01::3/64"}});
        let ips: Vec<String> = pod_ips(&old, "eth0")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(ips, ["10.1.0.3", "fd01::3"]);
    }
}
