//! The pod's DNS configuration file.

use std::io;

use super::spec::DnsConfig;

/// The pod's resolv.conf: the DNS config kubelet computed, or the host's.
pub fn resolv_conf(dns: Option<&DnsConfig>) -> io::Result<String> {
    let Some(dns) =
        dns.filter(|d| !(d.servers.is_empty() && d.searches.is_empty() && d.options.is_empty()))
    else {
        return match std::fs::read_to_string("/etc/resolv.conf") {
            Ok(s) => Ok(s),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(e),
        };
    };
    let mut out = String::new();
    if !dns.searches.is_empty() {
        out.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    for s in &dns.servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !dns.options.is_empty() {
        out.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_from_dns_config() {
        let dns = DnsConfig {
            servers: vec!["10.0.0.10".into(), "1.1.1.1".into()],
            searches: vec![
                "default.svc.cluster.local".into(),
                "svc.cluster.local".into(),
            ],
            options: vec!["ndots:5".into()],
        };
        assert_eq!(
            resolv_conf(Some(&dns)).unwrap(),
            "search default.svc.cluster.local svc.cluster.local\nnameserver 10.0.0.10\nnameserver 1.1.1.1\noptions ndots:5\n"
        );
    }

    #[test]
    fn resolv_conf_defaults_to_the_hosts() {
        let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        assert_eq!(resolv_conf(None).unwrap(), host);
        assert_eq!(resolv_conf(Some(&DnsConfig::default())).unwrap(), host);
    }
}
