//! Where requests for a registry go: its mirrors in order, then the
//! registry itself; plain HTTP only for insecure hosts.

use std::net::IpAddr;

use reqwest::Url;

pub(super) const DOCKER_HUB: &str = "docker.io";
pub(super) const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// Splits "host", "host:port", "[v6]", "[v6]:port" or a bare IPv6 address
/// into the host (without brackets) and the port.
fn split_host_port(s: &str) -> (&str, Option<&str>) {
    if let Some(rest) = s.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':')),
            None => (rest, None),
        };
    }
    match s.matches(':').count() {
        1 => match s.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (s, None),
        },
        // None, or a bare IPv6 address whose colons are not a port.
        _ => (s, None),
    }
}

/// localhost, 127.0.0.0/8 and ::1, with or without a port: plain HTTP by
/// default, as in containerd and Docker.
pub fn is_insecure_default(host: &str) -> bool {
    let (name, _) = split_host_port(host.trim());
    let name = name.strip_suffix('.').unwrap_or(name);
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

pub(super) fn is_insecure_in(list: &[String], host: &str) -> bool {
    if is_insecure_default(host) {
        return true;
    }
    let (name, port) = split_host_port(host);
    list.iter().any(|entry| {
        let entry = entry.trim();
        let entry = entry
            .strip_prefix("http://")
            .or_else(|| entry.strip_prefix("https://"))
            .unwrap_or(entry)
            .trim_end_matches('/');
        let (entry_name, entry_port) = split_host_port(entry);
        entry_name.eq_ignore_ascii_case(name) && (entry_port.is_none() || entry_port == port)
    })
}

/// "host[:port]" of a URL, the form the insecure list uses.
pub(super) fn url_host_port(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// One place requests for a registry can go: a mirror or the registry itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Endpoint {
    /// "scheme://host[:port][/prefix]" without a trailing slash.
    pub(super) base: String,
    /// "host[:port][/prefix]" for messages (the registry name for upstream).
    pub(super) display: String,
    /// Set for mirrors: the registry they mirror.
    pub(super) mirror_of: Option<String>,
    /// "host[:port]" as image names write it ("docker.io" for Docker
    /// Hub): what node credentials are looked up by.
    pub(super) host: String,
}

impl Endpoint {
    /// Whether this endpoint is spoken to in plain HTTP at `host`
    /// ("host[:port]"), as configured: its token server there may get
    /// credentials over plain HTTP too.
    pub(super) fn is_plain_http_at(&self, host: &str) -> bool {
        self.base
            .strip_prefix("http://")
            .is_some_and(|rest| rest.split('/').next() == Some(host))
    }

    pub(super) fn mirror(
        spec: &str,
        registry: &str,
        insecure: &[String],
    ) -> Result<Endpoint, String> {
        let spec = spec.trim();
        let with_scheme = if spec.contains("://") {
            spec.to_string()
        } else {
            let spec = spec.trim_end_matches('/');
            let host = spec.split('/').next().unwrap_or(spec);
            let scheme = if is_insecure_in(insecure, host) {
                "http"
            } else {
                "https"
            };
            format!("{scheme}://{spec}")
        };
        let url = Url::parse(&with_scheme)
            .map_err(|e| format!("mirror {spec:?} of {registry:?}: {e}"))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(format!(
                "mirror {spec:?} of {registry:?}: scheme must be http or https"
            ));
        }
        if url.host_str().is_none_or(str::is_empty)
            || !url.username().is_empty()
            || url.password().is_some()
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return Err(format!(
                "mirror {spec:?} of {registry:?}: want host[:port] or http(s)://host[:port][/path]"
            ));
        }
        let prefix = url.path().trim_end_matches('/');
        let host_port = url_host_port(&url);
        Ok(Endpoint {
            base: format!("{}://{host_port}{prefix}", url.scheme()),
            display: format!("{host_port}{prefix}"),
            mirror_of: Some(registry.to_string()),
            host: host_port,
        })
    }

    /// The registry `registry` ("host[:port]"; Docker Hub's API for
    /// "docker.io"), over plain HTTP when `plain_http` or when it is
    /// insecure.
    pub(super) fn registry(
        registry: &str,
        insecure: &[String],
        plain_http: bool,
    ) -> Result<Endpoint, String> {
        if registry.is_empty()
            || registry
                .chars()
                .any(|c| matches!(c, '/' | '@' | '?' | '#' | '\\') || c.is_whitespace())
        {
            return Err(format!("registry {registry:?} is not host[:port]"));
        }
        let api_host = if registry == DOCKER_HUB || registry == "index.docker.io" {
            DOCKER_HUB_API
        } else {
            registry
        };
        let scheme = if plain_http
            || is_insecure_in(insecure, registry)
            || is_insecure_in(insecure, api_host)
        {
            "http"
        } else {
            "https"
        };
        let base = format!("{scheme}://{api_host}");
        let url = Url::parse(&base).map_err(|e| format!("registry {registry:?}: {e}"))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("registry {registry:?} has no host"));
        }
        Ok(Endpoint {
            base: format!("{scheme}://{}", url_host_port(&url)),
            display: registry.to_string(),
            mirror_of: None,
            host: registry.to_ascii_lowercase(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::registry::test_support::*;
    use crate::image::registry::{Credentials, RegistryClient, RegistryError};

    #[test]
    fn endpoints() {
        let mut s = settings();
        s.insecure = vec!["reg.internal".into(), "other:5000".into()];
        s.mirrors.insert(
            "docker.io".into(),
            vec![
                "mirror.example".into(),
                "reg.internal:8080".into(),
                "http://plain.example/prefix/".into(),
                "https://localhost:5001".into(),
            ],
        );
        let client = RegistryClient::new(s).unwrap();
        let eps = |registry: &str| -> Vec<String> {
            client
                .repository(registry, "a/b", Credentials::Anonymous)
                .inner
                .sources
                .iter()
                .map(|s| s.endpoint.base.clone())
                .collect()
        };
        assert_eq!(
            eps("docker.io"),
            [
                "https://mirror.example",
                "http://reg.internal:8080",
                "http://plain.example/prefix",
                "https://localhost:5001",
                "https://registry-1.docker.io",
            ]
        );
        assert_eq!(eps("quay.io"), ["https://quay.io"]);
        assert_eq!(eps("localhost:5000"), ["http://localhost:5000"]);
        assert_eq!(eps("127.1.2.3:5000"), ["http://127.1.2.3:5000"]);
        assert_eq!(eps("[::1]:5000"), ["http://[::1]:5000"]);
        assert_eq!(eps("reg.internal:443"), ["http://reg.internal:443"]);
        assert_eq!(eps("other:5000"), ["http://other:5000"]);
        assert_eq!(eps("other:5001"), ["https://other:5001"]);
        assert_eq!(
            client
                .repository("docker.io", "a/b", Credentials::Anonymous)
                .inner
                .sources[2]
                .endpoint
                .display,
            "plain.example/prefix"
        );

        for bad in ["ftp://x", "https://u:p@x", "http://x?q", "http://"] {
            let mut s = settings();
            s.mirrors.insert("r".into(), vec![bad.into()]);
            assert!(
                matches!(
                    RegistryClient::new(s),
                    Err(RegistryError::InvalidSettings(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn insecure_defaults() {
        for h in [
            "localhost",
            "LOCALHOST:5000",
            "127.0.0.1",
            "127.0.0.1:5000",
            "127.255.0.9:1",
            "::1",
            "[::1]",
            "[::1]:5000",
        ] {
            assert!(is_insecure_default(h), "{h}");
        }
        for h in [
            "docker.io",
            "10.0.0.1:5000",
            "[::2]:5000",
            "localhost.example",
            "128.0.0.1",
        ] {
            assert!(!is_insecure_default(h), "{h}");
        }
    }
}
