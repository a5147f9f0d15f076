//! OCI distribution (registry API v2) client: manifests and blobs for
//! PullImage.
//!
//! Endpoints of a registry are its configured mirrors (in order) and then the
//! registry itself. HTTPS everywhere except hosts that are insecure
//! (configured, or loopback), which are spoken to in plain HTTP.
//! Authentication follows the registry's `WWW-Authenticate` challenge (Docker
//! token flow or Basic); tokens are cached per endpoint, scope and
//! credentials. Every byte is hashed: manifests before they are returned,
//! blobs while they stream.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE,
};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

/// Sent with every request.
pub const USER_AGENT: &str = concat!("peapod/", env!("CARGO_PKG_VERSION"));

pub const MEDIA_TYPE_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_TYPE_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MEDIA_TYPE_DOCKER_MANIFEST_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";

/// Docker schema 1 is deliberately absent: it is deprecated and unsigned
/// content we cannot verify by digest the same way.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

/// Manifests are small JSON documents; anything bigger is a broken or
/// hostile registry.
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;
const MAX_TOKEN_BYTES: usize = 1 << 20;
const MAX_ERROR_BODY_BYTES: usize = 64 << 10;
/// A stalled connection (no bytes for this long) fails the pull instead of
/// hanging it.
const READ_TIMEOUT: Duration = Duration::from_secs(120);
/// The token spec's default when the server gives no `expires_in`.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
const MAX_REDIRECTS: usize = 10;
const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry settings: {0}")]
    InvalidSettings(String),
    #[error("AuthConfig `{field}`: {reason}")]
    InvalidCredentials { field: &'static str, reason: String },
    #[error("fetch {what} from {from}: invalid reference: {reason}")]
    InvalidReference {
        what: String,
        from: String,
        reason: String,
    },
    #[error("fetch {what} from {from}: unsupported: {reason}")]
    Unsupported {
        what: String,
        from: String,
        reason: String,
    },
    #[error("fetch {what} from {from}: cannot connect: {detail}")]
    Connect {
        what: String,
        from: String,
        detail: String,
    },
    #[error("fetch {what} from {from}: unauthorized: {message}")]
    Unauthorized {
        what: String,
        from: String,
        message: String,
    },
    #[error("fetch {what} from {from}: not found: {message}")]
    NotFound {
        what: String,
        from: String,
        message: String,
    },
    #[error("fetch {what} from {from}: HTTP {status}: {message}")]
    Http {
        what: String,
        from: String,
        status: u16,
        message: String,
    },
    #[error("fetch {what} from {from}: invalid response: {message}")]
    Protocol {
        what: String,
        from: String,
        message: String,
    },
    #[error("fetch {what} from {from}: digest mismatch: got {actual}")]
    DigestMismatch {
        what: String,
        from: String,
        digest: String,
        actual: String,
    },
    #[error("fetch blob {digest} from {from}: size mismatch: {message}")]
    SizeMismatch {
        from: String,
        digest: String,
        message: String,
    },
    #[error(
        "fetch blob {digest} from {from}: truncated: got {got} of {} bytes{detail}",
        expected.map_or_else(|| "?".to_string(), |n| n.to_string())
    )]
    Truncated {
        from: String,
        digest: String,
        got: u64,
        expected: Option<u64>,
        /// Empty, or ": <why the body ended>".
        detail: String,
    },
}

impl RegistryError {
    /// The registry does not have the manifest or blob (gRPC NotFound).
    pub fn is_not_found(&self) -> bool {
        matches!(self, RegistryError::NotFound { .. })
    }

    pub fn is_unauthorized(&self) -> bool {
        matches!(self, RegistryError::Unauthorized { .. })
    }

    /// Errors that make a mirror useless for this request, so the next
    /// endpoint gets a chance.
    fn falls_through(&self) -> bool {
        match self {
            RegistryError::Connect { .. } | RegistryError::NotFound { .. } => true,
            RegistryError::Http { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RegistrySettings {
    /// Hosts ("host" or "host:port") reached over plain HTTP. localhost,
    /// 127.0.0.0/8 and ::1 (any port) are always insecure. An entry without
    /// a port covers every port of that host.
    pub insecure: Vec<String>,
    /// Registry host (e.g. "docker.io", "127.0.0.1:5000") → mirror endpoints,
    /// tried in order before the upstream. An endpoint is "host[:port]" or a
    /// URL "http(s)://host[:port][/path-prefix]"; without a scheme it is https
    /// unless the host is insecure. Requests go to
    /// `<endpoint>/v2/<repository>/...`.
    pub mirrors: HashMap<String, Vec<String>>,
    pub connect_timeout: Duration,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        RegistrySettings {
            insecure: Vec::new(),
            mirrors: HashMap::new(),
            connect_timeout: Duration::from_secs(30),
        }
    }
}

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

fn is_insecure_in(list: &[String], host: &str) -> bool {
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
fn url_host_port(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// Credentials from the CRI AuthConfig of a PullImage request.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    Anonymous,
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh token, exchanged at the token server.
    IdentityToken(String),
    /// A bearer token sent to the registry as is.
    RegistryToken(String),
}

impl fmt::Debug for Credentials {
    // Never print secrets into logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credentials::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
            Credentials::RegistryToken(_) => f.write_str("RegistryToken(<redacted>)"),
        }
    }
}

impl Credentials {
    /// From CRI AuthConfig fields. Precedence: registry_token, identity_token,
    /// username/password, then `auth` = base64("user:pass").
    pub fn from_auth_config(
        username: &str,
        password: &str,
        auth: &str,
        identity_token: &str,
        registry_token: &str,
    ) -> Result<Self, RegistryError> {
        if !registry_token.is_empty() {
            if !is_header_safe(registry_token) {
                return Err(RegistryError::InvalidCredentials {
                    field: "registry_token",
                    reason: "contains characters not allowed in an HTTP header".into(),
                });
            }
            return Ok(Credentials::RegistryToken(registry_token.to_string()));
        }
        if !identity_token.is_empty() {
            return Ok(Credentials::IdentityToken(identity_token.to_string()));
        }
        if !username.is_empty() {
            return Ok(Credentials::Basic {
                username: username.to_string(),
                password: password.to_string(),
            });
        }
        let auth = auth.trim();
        if !auth.is_empty() {
            // Docker writes padded standard base64; tolerate missing padding.
            let engine = base64::engine::GeneralPurpose::new(
                &base64::alphabet::STANDARD,
                base64::engine::GeneralPurposeConfig::new()
                    .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
            );
            let decoded = engine
                .decode(auth)
                .map_err(|e| RegistryError::InvalidCredentials {
                    field: "auth",
                    reason: format!("not base64: {e}"),
                })?;
            let decoded =
                String::from_utf8(decoded).map_err(|_| RegistryError::InvalidCredentials {
                    field: "auth",
                    reason: "decoded value is not UTF-8".into(),
                })?;
            let Some((user, pass)) = decoded.split_once(':') else {
                return Err(RegistryError::InvalidCredentials {
                    field: "auth",
                    reason: "decoded value is not \"username:password\"".into(),
                });
            };
            if user.is_empty() {
                return Err(RegistryError::InvalidCredentials {
                    field: "auth",
                    reason: "decoded username is empty".into(),
                });
            }
            return Ok(Credentials::Basic {
                username: user.to_string(),
                password: pass.to_string(),
            });
        }
        if !password.is_empty() {
            return Err(RegistryError::InvalidCredentials {
                field: "username",
                reason: "password given without a username".into(),
            });
        }
        Ok(Credentials::Anonymous)
    }

    /// Part of the token cache key, so one pull's token never serves a pull
    /// made with other (or no) credentials.
    fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        match self {
            Credentials::Anonymous => return "anonymous".into(),
            Credentials::Basic { username, password } => {
                h.update(b"basic\0");
                h.update(username.as_bytes());
                h.update(b"\0");
                h.update(password.as_bytes());
            }
            Credentials::IdentityToken(t) => {
                h.update(b"identity\0");
                h.update(t.as_bytes());
            }
            Credentials::RegistryToken(t) => {
                h.update(b"registry\0");
                h.update(t.as_bytes());
            }
        }
        hex(&h.finalize())
    }
}

fn is_header_safe(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7f).contains(&b))
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// One place requests for a registry can go: a mirror or the registry itself.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    /// "scheme://host[:port][/prefix]" without a trailing slash.
    base: String,
    /// "host[:port][/prefix]" for messages (the registry name for upstream).
    display: String,
    /// Set for mirrors: the registry they mirror.
    mirror_of: Option<String>,
}

impl Endpoint {
    fn mirror(spec: &str, registry: &str, insecure: &[String]) -> Result<Endpoint, String> {
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
        })
    }

    fn upstream(registry: &str, insecure: &[String]) -> Result<Endpoint, String> {
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
        let scheme = if is_insecure_in(insecure, registry) || is_insecure_in(insecure, api_host) {
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
        })
    }
}

/// `[a-z0-9]+([._-][a-z0-9]+)*` components joined by '/': keeps the name
/// from escaping its URL path.
fn validate_repository(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 255 {
        return Err(format!(
            "repository name {name:?} must be 1 to 255 characters"
        ));
    }
    for component in name.split('/') {
        let ok = !component.is_empty()
            && component
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            && component
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric())
            && component
                .bytes()
                .last()
                .is_some_and(|b| b.is_ascii_alphanumeric());
        if !ok {
            return Err(format!(
                "repository name {name:?}: component {component:?} is not [a-z0-9]+([._-][a-z0-9]+)*"
            ));
        }
    }
    Ok(())
}

enum DigestCheck {
    Sha256(String),
    Unsupported(String),
    Invalid(String),
}

/// Accepts "sha256:<64 lowercase hex>"; recognises other well-formed
/// digests only to name them as unsupported.
fn check_digest(digest: &str) -> DigestCheck {
    let Some((algorithm, encoded)) = digest.split_once(':') else {
        return DigestCheck::Invalid(format!("{digest:?} is not algorithm:hex"));
    };
    if algorithm == "sha256" {
        if encoded.len() == 64
            && encoded
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return DigestCheck::Sha256(encoded.to_string());
        }
        return DigestCheck::Invalid(format!(
            "{digest:?}: a sha256 digest is 64 lowercase hex digits"
        ));
    }
    let algorithm_ok = !algorithm.is_empty()
        && algorithm
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b));
    let encoded_ok = !encoded.is_empty()
        && encoded
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"=_-".contains(&b));
    if algorithm_ok && encoded_ok {
        DigestCheck::Unsupported(format!(
            "digest {digest}: only sha256 digests are supported"
        ))
    } else {
        DigestCheck::Invalid(format!("{digest:?} is not a valid digest"))
    }
}

fn is_valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(b))
}

/// An authentication challenge from `WWW-Authenticate`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Challenge {
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    Basic,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Parses a `WWW-Authenticate` value (RFC 7235: comma-separated challenges,
/// each a scheme and comma-separated `name=value` parameters whose quoted
/// values may hold commas and backslash escapes) into (lowercase scheme,
/// [(lowercase name, value)]).
fn parse_www_authenticate(value: &str) -> Vec<(String, Vec<(String, String)>)> {
    let s = value.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < s.len() && (s[*i] == b' ' || s[*i] == b'\t') {
            *i += 1;
        }
    };
    let read_token = |i: &mut usize| {
        let start = *i;
        while *i < s.len() && is_tchar(s[*i]) {
            *i += 1;
        }
        String::from_utf8_lossy(&s[start..*i]).into_owned()
    };
    loop {
        while i < s.len() && (s[i] == b',' || s[i] == b' ' || s[i] == b'\t') {
            i += 1;
        }
        if i >= s.len() {
            break;
        }
        let scheme = read_token(&mut i);
        if scheme.is_empty() {
            // Not a token: skip the stray byte.
            i += 1;
            continue;
        }
        let mut params = Vec::new();
        loop {
            let restart = i;
            while i < s.len() && (s[i] == b',' || s[i] == b' ' || s[i] == b'\t') {
                i += 1;
            }
            let name = read_token(&mut i);
            if name.is_empty() {
                if i < s.len() && s[i] != b',' {
                    // Garbage inside a challenge: skip it.
                    i += 1;
                    continue;
                }
                break;
            }
            skip_ws(&mut i);
            if i >= s.len() || s[i] != b'=' {
                // A token without '=' starts the next challenge.
                i = restart;
                break;
            }
            i += 1;
            if i < s.len() && s[i] == b'=' {
                // token68 padding ("abc=="): not a parameter.
                while i < s.len() && s[i] == b'=' {
                    i += 1;
                }
                continue;
            }
            skip_ws(&mut i);
            let mut value = Vec::new();
            if i < s.len() && s[i] == b'"' {
                i += 1;
                while i < s.len() && s[i] != b'"' {
                    if s[i] == b'\\' && i + 1 < s.len() {
                        i += 1;
                    }
                    value.push(s[i]);
                    i += 1;
                }
                // Closing quote (absent when the value is cut off).
                i = (i + 1).min(s.len());
            } else {
                // Lenient: unquoted values up to the next separator, so a
                // bare realm URL with ':' and '/' still parses.
                while i < s.len() && s[i] != b',' && s[i] != b' ' && s[i] != b'\t' {
                    value.push(s[i]);
                    i += 1;
                }
            }
            params.push((
                name.to_ascii_lowercase(),
                String::from_utf8_lossy(&value).into_owned(),
            ));
        }
        out.push((scheme.to_ascii_lowercase(), params));
    }
    out
}

/// The challenge to answer: Bearer when offered (with a realm), else Basic.
fn pick_challenge(headers: &HeaderMap) -> Option<Challenge> {
    let mut basic = false;
    for value in headers.get_all(WWW_AUTHENTICATE) {
        let Ok(value) = value.to_str() else { continue };
        for (scheme, params) in parse_www_authenticate(value) {
            let get = |key: &str| {
                params
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v.clone())
            };
            match scheme.as_str() {
                "bearer" => {
                    if let Some(realm) = get("realm").filter(|r| !r.is_empty()) {
                        return Some(Challenge::Bearer {
                            realm,
                            service: get("service"),
                            scope: get("scope"),
                        });
                    }
                }
                "basic" => basic = true,
                _ => {}
            }
        }
    }
    basic.then_some(Challenge::Basic)
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct TokenKey {
    endpoint: String,
    realm: String,
    service: String,
    scope: String,
    credentials: String,
}

struct CachedToken {
    token: String,
    expires: Instant,
}

struct ClientInner {
    http: reqwest::Client,
    settings: RegistrySettings,
    /// Parsed mirrors by registry host.
    mirrors: HashMap<String, Vec<Endpoint>>,
    tokens: Mutex<HashMap<TokenKey, CachedToken>>,
    /// Last challenge seen per endpoint base: later requests authenticate
    /// up front instead of paying a 401 round trip each.
    challenges: Mutex<HashMap<String, Challenge>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The maps stay consistent even if a holder panicked.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The registry client: one per daemon, shared by all pulls.
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<ClientInner>,
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl RegistryClient {
    pub fn new(settings: RegistrySettings) -> Result<Self, RegistryError> {
        let mut mirrors = HashMap::new();
        for (registry, specs) in &settings.mirrors {
            let endpoints = specs
                .iter()
                .map(|spec| Endpoint::mirror(spec, registry, &settings.insecure))
                .collect::<Result<Vec<_>, _>>()
                .map_err(RegistryError::InvalidSettings)?;
            mirrors.insert(registry.to_ascii_lowercase(), endpoints);
        }
        let insecure = settings.insecure.clone();
        // reqwest drops Authorization (and cookies) itself when a redirect
        // changes host or port (redirect::remove_sensitive_headers), so
        // storage backends never see registry credentials.
        let redirect = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
            }
            let downgrade = attempt
                .previous()
                .last()
                .is_some_and(|prev| prev.scheme() == "https")
                && attempt.url().scheme() == "http"
                && !is_insecure_in(&insecure, &url_host_port(attempt.url()));
            if downgrade {
                let msg = format!("refusing redirect from HTTPS to {}", attempt.url());
                return attempt.error(msg);
            }
            attempt.follow()
        });
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(settings.connect_timeout)
            .read_timeout(READ_TIMEOUT)
            .redirect(redirect)
            .referer(false)
            .build()
            .map_err(|e| RegistryError::InvalidSettings(format!("HTTP client: {}", chain(&e))))?;
        Ok(RegistryClient {
            inner: Arc::new(ClientInner {
                http,
                settings,
                mirrors,
                tokens: Mutex::new(HashMap::new()),
                challenges: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Opens a session for one repository: `registry` is the reference's
    /// domain ("docker.io" for Docker Hub), `repository` its path
    /// ("library/busybox"). Invalid names are reported by the first request.
    pub fn repository(
        &self,
        registry: &str,
        repository: &str,
        credentials: Credentials,
    ) -> Repository {
        let settings = &self.inner.settings;
        let is_hub = registry == DOCKER_HUB || registry == "index.docker.io";
        // Official Docker Hub images live under library/.
        let repository = if is_hub && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_string()
        };
        let mut invalid = validate_repository(&repository).err();
        let mut endpoints = Vec::new();
        match Endpoint::upstream(registry, &settings.insecure) {
            Ok(upstream) => {
                let mut keys = vec![registry.to_ascii_lowercase()];
                if is_hub {
                    keys.extend([DOCKER_HUB, "index.docker.io", DOCKER_HUB_API].map(String::from));
                }
                if let Some(mirrors) = keys.iter().find_map(|k| self.inner.mirrors.get(k)) {
                    endpoints.extend(mirrors.iter().cloned());
                }
                endpoints.push(upstream);
            }
            Err(e) => invalid = Some(e),
        }
        Repository {
            inner: Arc::new(RepoInner {
                client: self.inner.clone(),
                registry: registry.to_string(),
                repository,
                credentials,
                endpoints,
                invalid,
                preferred: AtomicUsize::new(0),
            }),
        }
    }
}

struct RepoInner {
    client: Arc<ClientInner>,
    registry: String,
    repository: String,
    credentials: Credentials,
    /// Mirrors in order, then the upstream registry (always last).
    endpoints: Vec<Endpoint>,
    invalid: Option<String>,
    /// Index of the endpoint that answered last; requests start there.
    preferred: AtomicUsize,
}

/// A session with one repository; cheap to clone.
#[derive(Clone)]
pub struct Repository {
    inner: Arc<RepoInner>,
}

impl fmt::Debug for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Repository")
            .field("registry", &self.inner.registry)
            .field("repository", &self.inner.repository)
            .field("credentials", &self.inner.credentials)
            .finish_non_exhaustive()
    }
}

/// A manifest or index as the registry served it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub bytes: Bytes,
    pub media_type: String,
    /// "sha256:<hex>" of `bytes`.
    pub digest: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestProbe {
    schema_version: Option<i64>,
    media_type: Option<String>,
    manifests: Option<serde::de::IgnoredAny>,
    config: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

/// What a request is for, to build error messages.
struct Ctx<'a> {
    what: &'a str,
    from: String,
}

impl Ctx<'_> {
    fn connect(&self, detail: String) -> RegistryError {
        RegistryError::Connect {
            what: self.what.to_string(),
            from: self.from.clone(),
            detail,
        }
    }
    fn unauthorized(&self, message: String) -> RegistryError {
        RegistryError::Unauthorized {
            what: self.what.to_string(),
            from: self.from.clone(),
            message,
        }
    }
    fn protocol(&self, message: String) -> RegistryError {
        RegistryError::Protocol {
            what: self.what.to_string(),
            from: self.from.clone(),
            message,
        }
    }
    fn unsupported(&self, reason: String) -> RegistryError {
        RegistryError::Unsupported {
            what: self.what.to_string(),
            from: self.from.clone(),
            reason,
        }
    }

    /// Maps a non-success status to an error carrying the registry's message.
    async fn status_error(&self, resp: reqwest::Response, prefix: &str) -> RegistryError {
        let status = resp.status();
        let message = format!("{prefix}{}", registry_message(resp).await);
        let (what, from) = (self.what.to_string(), self.from.clone());
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => RegistryError::Unauthorized {
                what,
                from,
                message,
            },
            StatusCode::NOT_FOUND => RegistryError::NotFound {
                what,
                from,
                message,
            },
            _ => RegistryError::Http {
                what,
                from,
                status: status.as_u16(),
                message,
            },
        }
    }
}

/// An error and its causes on one line (reqwest's own message alone says
/// little more than "error sending request").
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Reads at most `limit` bytes of the body; the flag says whether there was
/// more.
async fn read_body(
    resp: &mut reqwest::Response,
    limit: usize,
) -> Result<(BytesMut, bool), reqwest::Error> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = resp.chunk().await? {
        if buf.len() + chunk.len() > limit {
            let room = limit - buf.len();
            buf.extend_from_slice(&chunk[..room]);
            return Ok((buf, true));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok((buf, false))
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorEntry>,
    // Token servers: Docker Hub's {"details": ...} and OAuth2's error fields.
    details: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct ErrorEntry {
    code: Option<String>,
    message: Option<String>,
}

/// The registry's explanation of an error status: the messages of the
/// distribution `errors` body, else a short piece of the text, else the
/// status.
async fn registry_message(mut resp: reqwest::Response) -> String {
    let status = resp.status();
    let body = read_body(&mut resp, MAX_ERROR_BODY_BYTES)
        .await
        .map(|(b, _)| b)
        .unwrap_or_default();
    if let Ok(parsed) = serde_json::from_slice::<ErrorBody>(&body) {
        let messages: Vec<String> = parsed
            .errors
            .iter()
            .filter_map(|e| {
                e.message
                    .clone()
                    .filter(|m| !m.is_empty())
                    .or_else(|| e.code.clone())
            })
            .collect();
        if !messages.is_empty() {
            return messages.join("; ");
        }
        if let Some(m) = parsed
            .details
            .or(parsed.error_description)
            .or(parsed.error)
            .filter(|m| !m.is_empty())
        {
            return m;
        }
    }
    let text = String::from_utf8_lossy(&body);
    let text = text.trim();
    if !text.is_empty() && !text.starts_with('<') {
        let short: String = text.chars().take(200).collect();
        return short.split_whitespace().collect::<Vec<_>>().join(" ");
    }
    status.to_string()
}

impl Repository {
    pub fn registry(&self) -> &str {
        &self.inner.registry
    }

    /// The repository path, with "library/" added for Docker Hub official
    /// images.
    pub fn name(&self) -> &str {
        &self.inner.repository
    }

    fn from(&self, ep: &Endpoint) -> String {
        match &ep.mirror_of {
            Some(registry) => format!(
                "{}/{} (mirror of {registry})",
                ep.display, self.inner.repository
            ),
            None => format!("{}/{}", ep.display, self.inner.repository),
        }
    }

    fn upstream_from(&self) -> String {
        format!("{}/{}", self.inner.registry, self.inner.repository)
    }

    fn check_valid(&self, what: &str) -> Result<(), RegistryError> {
        match &self.inner.invalid {
            Some(reason) => Err(RegistryError::InvalidReference {
                what: what.to_string(),
                from: self.upstream_from(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Endpoint indices to try: from the one that answered last to the
    /// upstream (the ones before it already failed this session).
    fn order(&self) -> std::ops::Range<usize> {
        let len = self.inner.endpoints.len();
        let start = self.inner.preferred.load(Ordering::Relaxed);
        (if start < len { start } else { 0 })..len
    }

    /// Runs `attempt` against each endpoint in order until one succeeds or
    /// fails in a way another endpoint cannot fix.
    async fn with_endpoints<T, F, Fut>(&self, what: &str, attempt: F) -> Result<T, RegistryError>
    where
        F: Fn(usize) -> Fut,
        Fut: std::future::Future<Output = Result<T, RegistryError>>,
    {
        let mut last = None;
        for i in self.order() {
            match attempt(i).await {
                Ok(v) => {
                    self.inner.preferred.store(i, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(e) if self.inner.endpoints[i].mirror_of.is_some() && e.falls_through() => {
                    tracing::warn!(error = %e, "registry mirror failed, trying the next endpoint");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| RegistryError::InvalidReference {
            what: what.to_string(),
            from: self.upstream_from(),
            reason: "no endpoint to try".into(),
        }))
    }

    fn url(&self, ep: &Endpoint, kind: &str, reference: &str) -> Result<Url, RegistryError> {
        let s = format!(
            "{}/v2/{}/{kind}/{reference}",
            ep.base, self.inner.repository
        );
        Url::parse(&s).map_err(|e| RegistryError::InvalidReference {
            what: format!("{kind} {reference}"),
            from: self.from(ep),
            reason: format!("URL {s}: {e}"),
        })
    }

    /// The hex of a `sha256:` digest; other algorithms and malformed
    /// digests are errors about `what`.
    fn sha256_hex(&self, digest: &str, what: &str) -> Result<String, RegistryError> {
        match check_digest(digest) {
            DigestCheck::Sha256(hex) => Ok(hex),
            DigestCheck::Unsupported(reason) => Err(RegistryError::Unsupported {
                what: what.to_string(),
                from: self.upstream_from(),
                reason,
            }),
            DigestCheck::Invalid(reason) => Err(RegistryError::InvalidReference {
                what: what.to_string(),
                from: self.upstream_from(),
                reason,
            }),
        }
    }

    /// GET /v2/<repo>/manifests/<reference>: a tag or a sha256 digest. The
    /// returned digest is computed from the body; for a digest reference
    /// a body that does not match is an error.
    pub async fn manifest(&self, reference: &str) -> Result<Manifest, RegistryError> {
        let what = format!("manifest {reference}");
        self.check_valid(&what)?;
        let expected = if reference.contains(':') {
            Some(self.sha256_hex(reference, &what)?)
        } else if is_valid_tag(reference) {
            None
        } else {
            return Err(RegistryError::InvalidReference {
                what,
                from: self.upstream_from(),
                reason: format!("tag {reference:?} is not [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}"),
            });
        };
        self.with_endpoints(&what, |i| {
            self.manifest_from(i, &what, reference, expected.as_deref())
        })
        .await
    }

    async fn manifest_from(
        &self,
        i: usize,
        what: &str,
        reference: &str,
        expected: Option<&str>,
    ) -> Result<Manifest, RegistryError> {
        let ep = &self.inner.endpoints[i];
        let ctx = Ctx {
            what,
            from: self.from(ep),
        };
        let url = self.url(ep, "manifests", reference)?;
        let mut resp = self.send(ep, url, Some(MANIFEST_ACCEPT), &ctx).await?;
        if !resp.status().is_success() {
            return Err(ctx.status_error(resp, "").await);
        }
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_MANIFEST_BYTES as u64)
        {
            return Err(ctx.protocol(format!(
                "manifest is larger than {MAX_MANIFEST_BYTES} bytes"
            )));
        }
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let (body, more) = read_body(&mut resp, MAX_MANIFEST_BYTES)
            .await
            .map_err(|e| ctx.connect(format!("reading body: {}", chain(&e))))?;
        if more {
            return Err(ctx.protocol(format!(
                "manifest is larger than {MAX_MANIFEST_BYTES} bytes"
            )));
        }
        let body = body.freeze();
        let actual = hex(&Sha256::digest(&body));
        if let Some(expected) = expected {
            if actual != expected {
                return Err(RegistryError::DigestMismatch {
                    what: what.to_string(),
                    from: ctx.from,
                    digest: format!("sha256:{expected}"),
                    actual: format!("sha256:{actual}"),
                });
            }
        }
        let media_type = manifest_media_type(&content_type, &body).map_err(|e| match e {
            MediaTypeError::Schema1 => ctx.unsupported(
                "Docker schema 1 manifest (push the image again with a current client)".into(),
            ),
            MediaTypeError::Unknown(mt) => ctx.unsupported(format!("manifest media type {mt:?}")),
            MediaTypeError::Invalid(msg) => ctx.protocol(msg),
        })?;
        tracing::debug!(
            from = %ctx.from,
            reference,
            digest = %format!("sha256:{actual}"),
            media_type,
            "fetched manifest"
        );
        Ok(Manifest {
            bytes: body,
            media_type,
            digest: format!("sha256:{actual}"),
        })
    }

    /// GET /v2/<repo>/blobs/<digest>, following redirects to storage. The
    /// stream verifies size and digest as it is read.
    pub async fn blob(
        &self,
        digest: &str,
        expected_size: Option<u64>,
    ) -> Result<BlobStream, RegistryError> {
        let what = format!("blob {digest}");
        self.check_valid(&what)?;
        let expected_hex = self.sha256_hex(digest, &what)?;
        self.with_endpoints(&what, |i| {
            self.blob_from(i, &what, digest, &expected_hex, expected_size)
        })
        .await
    }

    async fn blob_from(
        &self,
        i: usize,
        what: &str,
        digest: &str,
        expected_hex: &str,
        expected_size: Option<u64>,
    ) -> Result<BlobStream, RegistryError> {
        let ep = &self.inner.endpoints[i];
        let ctx = Ctx {
            what,
            from: self.from(ep),
        };
        let url = self.url(ep, "blobs", digest)?;
        let resp = self.send(ep, url, None, &ctx).await?;
        if !resp.status().is_success() {
            return Err(ctx.status_error(resp, "").await);
        }
        let content_length = resp.content_length();
        if let (Some(declared), Some(expected)) = (content_length, expected_size) {
            if declared != expected {
                return Err(RegistryError::SizeMismatch {
                    from: ctx.from,
                    digest: digest.to_string(),
                    message: format!(
                        "Content-Length is {declared} bytes, the descriptor says {expected}"
                    ),
                });
            }
        }
        tracing::debug!(from = %ctx.from, digest, size = ?content_length, "fetching blob");
        Ok(BlobStream {
            response: resp,
            hasher: Sha256::new(),
            digest: digest.to_string(),
            expected_hex: expected_hex.to_string(),
            expected_size: expected_size.or(content_length),
            got: 0,
            from: ctx.from,
            finished: false,
        })
    }

    /// Sends a GET, answering one authentication challenge.
    async fn send(
        &self,
        ep: &Endpoint,
        url: Url,
        accept: Option<&'static str>,
        ctx: &Ctx<'_>,
    ) -> Result<reqwest::Response, RegistryError> {
        let client = &self.inner.client;
        let known = lock(&client.challenges).get(&ep.base).cloned();
        let mut auth = self.authorization(ep, known.as_ref(), ctx).await?;
        let mut retried = false;
        loop {
            let mut req = client.http.get(url.clone());
            if let Some(accept) = accept {
                req = req.header(ACCEPT, accept);
            }
            if let Some((value, _)) = &auth {
                req = req.header(AUTHORIZATION, value.clone());
            }
            tracing::trace!(%url, authenticated = auth.is_some(), "registry request");
            let resp = req.send().await.map_err(|e| ctx.connect(chain(&e)))?;
            if resp.status() != StatusCode::UNAUTHORIZED
                || retried
                || matches!(self.inner.credentials, Credentials::RegistryToken(_))
            {
                return Ok(resp);
            }
            let Some(challenge) = pick_challenge(resp.headers()) else {
                return Ok(resp);
            };
            lock(&client.challenges).insert(ep.base.clone(), challenge.clone());
            if let Some((_, Some(key))) = &auth {
                // The cached token was refused (revoked, or expired early).
                lock(&client.tokens).remove(key);
            }
            let next = self.authorization(ep, Some(&challenge), ctx).await?;
            let Some(next) = next else {
                return Err(ctx
                    .status_error(resp, "registry requires credentials: ")
                    .await);
            };
            if auth.as_ref().is_some_and(|(old, _)| *old == next.0) {
                // The same credentials again would get the same answer.
                return Ok(resp);
            }
            auth = Some(next);
            retried = true;
        }
    }

    /// The Authorization header for a challenge (None: send anonymously),
    /// with the token cache key when it is a cached token.
    async fn authorization(
        &self,
        ep: &Endpoint,
        challenge: Option<&Challenge>,
        ctx: &Ctx<'_>,
    ) -> Result<Option<(HeaderValue, Option<TokenKey>)>, RegistryError> {
        let header = |value: String| {
            HeaderValue::from_str(&value)
                .map(|mut v| {
                    v.set_sensitive(true);
                    v
                })
                .map_err(|_| ctx.protocol("token is not a valid HTTP header value".into()))
        };
        match (&self.inner.credentials, challenge) {
            (Credentials::RegistryToken(token), _) => {
                Ok(Some((header(format!("Bearer {token}"))?, None)))
            }
            (_, None) => Ok(None),
            (Credentials::Basic { username, password }, Some(Challenge::Basic)) => {
                let encoded = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{password}"));
                Ok(Some((header(format!("Basic {encoded}"))?, None)))
            }
            (_, Some(Challenge::Basic)) => Ok(None),
            (_, Some(Challenge::Bearer { realm, service, .. })) => {
                let (token, key) = self.token(ep, realm, service.as_deref(), ctx).await?;
                Ok(Some((header(format!("Bearer {token}"))?, Some(key))))
            }
        }
    }

    /// A pull token for this repository from the cache or the token server.
    async fn token(
        &self,
        ep: &Endpoint,
        realm: &str,
        service: Option<&str>,
        ctx: &Ctx<'_>,
    ) -> Result<(String, TokenKey), RegistryError> {
        let client = &self.inner.client;
        let scope = format!("repository:{}:pull", self.inner.repository);
        let key = TokenKey {
            endpoint: ep.base.clone(),
            realm: realm.to_string(),
            service: service.unwrap_or_default().to_string(),
            scope: scope.clone(),
            credentials: self.inner.credentials.fingerprint(),
        };
        {
            let mut tokens = lock(&client.tokens);
            let now = Instant::now();
            tokens.retain(|_, t| t.expires > now);
            if let Some(t) = tokens.get(&key) {
                return Ok((t.token.clone(), key));
            }
        }
        let (token, lifetime) = self.fetch_token(realm, service, &scope, ctx).await?;
        // Renew a little before the server's expiry.
        let keep = lifetime - lifetime / 10;
        lock(&client.tokens).insert(
            key.clone(),
            CachedToken {
                token: token.clone(),
                expires: Instant::now() + keep,
            },
        );
        Ok((token, key))
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        ctx: &Ctx<'_>,
    ) -> Result<(String, Duration), RegistryError> {
        let client = &self.inner.client;
        let credentials = &self.inner.credentials;
        let mut url = Url::parse(realm)
            .map_err(|e| ctx.protocol(format!("token server realm {realm:?} is not a URL: {e}")))?;
        let secure = match url.scheme() {
            "https" => true,
            "http" => is_insecure_in(&client.settings.insecure, &url_host_port(&url)),
            _ => return Err(ctx.protocol(format!("token server realm {realm:?} is not http(s)"))),
        };
        if !secure && *credentials != Credentials::Anonymous {
            return Err(ctx.unauthorized(format!(
                "refusing to send credentials to plain-HTTP token server {realm} (host not insecure)"
            )));
        }
        let req = match credentials {
            Credentials::IdentityToken(refresh) => {
                let mut form = vec![
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh.as_str()),
                    ("scope", scope),
                    ("client_id", "peapod"),
                ];
                if let Some(service) = service {
                    form.push(("service", service));
                }
                client.http.post(url).form(&form)
            }
            _ => {
                {
                    let mut query = url.query_pairs_mut();
                    if let Some(service) = service {
                        query.append_pair("service", service);
                    }
                    query.append_pair("scope", scope);
                    if let Credentials::Basic { username, .. } = credentials {
                        query.append_pair("account", username);
                    }
                }
                let req = client.http.get(url);
                match credentials {
                    Credentials::Basic { username, password } => {
                        req.basic_auth(username, Some(password))
                    }
                    _ => req,
                }
            }
        };
        let mut resp = req
            .send()
            .await
            .map_err(|e| ctx.connect(format!("token server {realm}: {}", chain(&e))))?;
        if !resp.status().is_success() {
            return Err(ctx
                .status_error(resp, &format!("token server {realm}: "))
                .await);
        }
        let (body, more) = read_body(&mut resp, MAX_TOKEN_BYTES)
            .await
            .map_err(|e| ctx.connect(format!("token server {realm}: {}", chain(&e))))?;
        if more {
            return Err(ctx.protocol(format!(
                "token server {realm}: response larger than {MAX_TOKEN_BYTES} bytes"
            )));
        }
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| ctx.protocol(format!("token server {realm}: {e}")))?;
        let token = parsed
            .token
            .filter(|t| !t.is_empty())
            .or(parsed.access_token.filter(|t| !t.is_empty()))
            .ok_or_else(|| {
                ctx.protocol(format!("token server {realm}: no token in the response"))
            })?;
        let lifetime = parsed
            .expires_in
            .filter(|&s| s > 0)
            .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
        tracing::debug!(realm, scope, ?lifetime, "got registry token");
        Ok((token, lifetime))
    }
}

enum MediaTypeError {
    Schema1,
    Unknown(String),
    Invalid(String),
}

/// Content-Type when it is specific, else the body's `mediaType`, else what
/// the body's shape says (OCI allows omitting `mediaType`).
fn manifest_media_type(content_type: &str, body: &[u8]) -> Result<String, MediaTypeError> {
    const SCHEMA1: [&str; 3] = [
        "application/vnd.docker.distribution.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        "application/vnd.docker.distribution.manifest.v1",
    ];
    const KNOWN: [&str; 4] = [
        MEDIA_TYPE_OCI_MANIFEST,
        MEDIA_TYPE_OCI_INDEX,
        MEDIA_TYPE_DOCKER_MANIFEST,
        MEDIA_TYPE_DOCKER_MANIFEST_LIST,
    ];
    if SCHEMA1.contains(&content_type) {
        return Err(MediaTypeError::Schema1);
    }
    let probe: ManifestProbe = serde_json::from_slice(body)
        .map_err(|e| MediaTypeError::Invalid(format!("manifest is not a JSON object: {e}")))?;
    if probe.schema_version == Some(1) {
        return Err(MediaTypeError::Schema1);
    }
    let generic = matches!(
        content_type,
        "" | "application/json" | "text/plain" | "application/octet-stream" | "binary/octet-stream"
    );
    let media_type = if !generic {
        content_type.to_string()
    } else if let Some(mt) = probe.media_type.filter(|m| !m.is_empty()) {
        mt
    } else if probe.manifests.is_some() {
        MEDIA_TYPE_OCI_INDEX.to_string()
    } else if probe.config.is_some() {
        MEDIA_TYPE_OCI_MANIFEST.to_string()
    } else {
        return Err(MediaTypeError::Invalid(
            "cannot tell the manifest's media type (no Content-Type, no mediaType)".into(),
        ));
    };
    if SCHEMA1.contains(&media_type.as_str()) {
        return Err(MediaTypeError::Schema1);
    }
    if !KNOWN.contains(&media_type.as_str()) {
        return Err(MediaTypeError::Unknown(media_type));
    }
    Ok(media_type)
}

/// A blob body being downloaded. Reading it to the end (`Ok(None)`) means
/// the size and the sha256 digest matched.
pub struct BlobStream {
    response: reqwest::Response,
    hasher: Sha256,
    digest: String,
    expected_hex: String,
    expected_size: Option<u64>,
    got: u64,
    from: String,
    finished: bool,
}

impl fmt::Debug for BlobStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobStream")
            .field("digest", &self.digest)
            .field("from", &self.from)
            .field("expected_size", &self.expected_size)
            .field("got", &self.got)
            .finish_non_exhaustive()
    }
}

impl BlobStream {
    /// The next piece of the body. At the end it checks the size and digest
    /// and returns their error instead of `Ok(None)` when they fail.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, RegistryError> {
        if self.finished {
            return Ok(None);
        }
        match self.response.chunk().await {
            Ok(Some(chunk)) => {
                self.got += chunk.len() as u64;
                if let Some(expected) = self.expected_size {
                    if self.got > expected {
                        self.finished = true;
                        return Err(RegistryError::SizeMismatch {
                            from: self.from.clone(),
                            digest: self.digest.clone(),
                            message: format!("body is longer than {expected} bytes"),
                        });
                    }
                }
                self.hasher.update(&chunk);
                Ok(Some(chunk))
            }
            Ok(None) => {
                self.finished = true;
                if let Some(expected) = self.expected_size {
                    if self.got < expected {
                        return Err(self.truncated(String::new()));
                    }
                }
                let actual = hex(&self.hasher.finalize_reset());
                if actual != self.expected_hex {
                    return Err(RegistryError::DigestMismatch {
                        what: format!("blob {}", self.digest),
                        from: self.from.clone(),
                        digest: self.digest.clone(),
                        actual: format!("sha256:{actual}"),
                    });
                }
                Ok(None)
            }
            Err(e) => {
                self.finished = true;
                Err(self.truncated(format!(": {}", chain(&e))))
            }
        }
    }

    fn truncated(&self, detail: String) -> RegistryError {
        RegistryError::Truncated {
            from: self.from.clone(),
            digest: self.digest.clone(),
            got: self.got,
            expected: self.expected_size,
            detail,
        }
    }

    /// The size the body must have: the descriptor's size when given, else
    /// the response's Content-Length.
    pub fn content_length(&self) -> Option<u64> {
        self.expected_size
    }

    /// The digest being fetched.
    pub fn digest(&self) -> &str {
        &self.digest
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::sync::atomic::AtomicUsize;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    // ---- a tiny HTTP/1.1 server: one request per connection ----

    #[derive(Debug, Clone)]
    struct Req {
        method: String,
        target: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Req {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
        fn path(&self) -> &str {
            self.target.split('?').next().unwrap_or_default()
        }
        fn query(&self, key: &str) -> Option<String> {
            let q = self.target.split_once('?')?.1;
            form_get(q, key)
        }
        fn form(&self, key: &str) -> Option<String> {
            form_get(std::str::from_utf8(&self.body).ok()?, key)
        }
    }

    fn percent_decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    let v = u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap();
                    out.push(v);
                    i += 2;
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8(out).unwrap()
    }

    fn form_get(q: &str, key: &str) -> Option<String> {
        q.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (percent_decode(k) == key).then(|| percent_decode(v))
        })
    }

    enum Reply {
        Full {
            status: u16,
            headers: Vec<(String, String)>,
            body: Vec<u8>,
        },
        /// Written as is, then the connection is closed.
        Raw(Vec<u8>),
    }

    fn reply(status: u16, body: impl Into<Vec<u8>>) -> Reply {
        Reply::Full {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    impl Reply {
        fn header(mut self, k: &str, v: &str) -> Reply {
            if let Reply::Full { headers, .. } = &mut self {
                headers.push((k.to_string(), v.to_string()));
            }
            self
        }
    }

    type Handler = dyn Fn(&Req) -> Reply + Send + Sync;

    struct Server {
        addr: SocketAddr,
        log: Arc<Mutex<Vec<Req>>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl Server {
        async fn start(handler: impl Fn(&Req) -> Reply + Send + Sync + 'static) -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let log = Arc::new(Mutex::new(Vec::new()));
            let handler: Arc<Handler> = Arc::new(handler);
            let task_log = log.clone();
            let task = tokio::spawn(async move {
                loop {
                    let Ok((conn, _)) = listener.accept().await else {
                        return;
                    };
                    let handler = handler.clone();
                    let log = task_log.clone();
                    tokio::spawn(async move {
                        let _ = serve_conn(conn, handler, log).await;
                    });
                }
            });
            Server { addr, log, task }
        }

        fn host(&self) -> String {
            self.addr.to_string()
        }

        fn requests(&self) -> Vec<Req> {
            self.log.lock().unwrap().clone()
        }
    }

    async fn serve_conn(
        mut conn: tokio::net::TcpStream,
        handler: Arc<Handler>,
        log: Arc<Mutex<Vec<Req>>>,
    ) -> std::io::Result<()> {
        let mut buf = Vec::new();
        let head_end = loop {
            let mut tmp = [0u8; 4096];
            let n = conn.read(&mut tmp).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&tmp[..n]);
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap().split(' ');
        let method = first.next().unwrap().to_string();
        let target = first.next().unwrap().to_string();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, v)| v.parse().unwrap());
        let mut body = buf[head_end + 4..].to_vec();
        while body.len() < len {
            let mut tmp = [0u8; 4096];
            let n = conn.read(&mut tmp).await?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&tmp[..n]);
        }
        let req = Req {
            method,
            target,
            headers,
            body,
        };
        log.lock().unwrap().push(req.clone());
        match handler(&req) {
            Reply::Full {
                status,
                headers,
                body,
            } => {
                let mut out = format!("HTTP/1.1 {status} X\r\nConnection: close\r\n");
                if !headers
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                {
                    out.push_str(&format!("Content-Length: {}\r\n", body.len()));
                }
                for (k, v) in headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                conn.write_all(out.as_bytes()).await?;
                conn.write_all(&body).await?;
            }
            Reply::Raw(bytes) => conn.write_all(&bytes).await?,
        }
        conn.shutdown().await
    }

    // ---- helpers ----

    fn sha(data: &[u8]) -> String {
        format!("sha256:{}", hex(&Sha256::digest(data)))
    }

    fn settings() -> RegistrySettings {
        RegistrySettings {
            connect_timeout: Duration::from_secs(5),
            ..RegistrySettings::default()
        }
    }

    fn client() -> RegistryClient {
        RegistryClient::new(settings()).unwrap()
    }

    const MANIFEST: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":2},"layers":[]}"#;

    async fn read_all(stream: &mut BlobStream) -> Result<Vec<u8>, RegistryError> {
        let mut out = Vec::new();
        while let Some(c) = stream.chunk().await? {
            out.extend_from_slice(&c);
        }
        Ok(out)
    }

    /// Serves MANIFEST under any tag and `blob` under its digest.
    fn plain_registry(blob: Vec<u8>) -> impl Fn(&Req) -> Reply + Send + Sync + 'static {
        let digest = sha(&blob);
        move |req: &Req| {
            let p = req.path();
            if p.starts_with("/v2/busybox/manifests/") {
                reply(200, MANIFEST).header("Content-Type", MEDIA_TYPE_OCI_MANIFEST)
            } else if p == format!("/v2/busybox/blobs/{digest}") {
                reply(200, blob.clone())
            } else {
                reply(
                    404,
                    r#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}"#,
                )
            }
        }
    }

    // ---- manifests ----

    #[tokio::test]
    async fn manifest_by_tag() {
        let server = Server::start(plain_registry(Vec::new())).await;
        let repo = client().repository(&server.host(), "busybox", Credentials::Anonymous);
        let m = repo.manifest("latest").await.unwrap();
        assert_eq!(&m.bytes[..], MANIFEST.as_bytes());
        assert_eq!(m.digest, sha(MANIFEST.as_bytes()));
        assert_eq!(m.media_type, MEDIA_TYPE_OCI_MANIFEST);
        let reqs = server.requests();
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].method, "GET");
        assert_eq!(reqs[0].path(), "/v2/busybox/manifests/latest");
        assert_eq!(reqs[0].header("user-agent"), Some(USER_AGENT));
        assert!(USER_AGENT.starts_with("peapod/"));
        assert!(reqs[0].header("authorization").is_none());
        let accept = reqs[0].header("accept").unwrap();
        for mt in [
            MEDIA_TYPE_OCI_MANIFEST,
            MEDIA_TYPE_OCI_INDEX,
            MEDIA_TYPE_DOCKER_MANIFEST,
            MEDIA_TYPE_DOCKER_MANIFEST_LIST,
        ] {
            assert!(accept.contains(mt), "Accept {accept:?} lacks {mt}");
        }
        assert!(
            !accept.contains("distribution.manifest.v1"),
            "Accept {accept:?} has schema1"
        );
    }

    #[tokio::test]
    async fn manifest_by_digest() {
        let server = Server::start(plain_registry(Vec::new())).await;
        let repo = client().repository(&server.host(), "busybox", Credentials::Anonymous);
        let good = sha(MANIFEST.as_bytes());
        let m = repo.manifest(&good).await.unwrap();
        assert_eq!(m.digest, good);
        assert_eq!(
            server.requests()[0].path(),
            format!("/v2/busybox/manifests/{good}")
        );

        let bad = format!("sha256:{}", "ab".repeat(32));
        let err = repo.manifest(&bad).await.unwrap_err();
        assert!(
            matches!(&err, RegistryError::DigestMismatch { digest, actual, .. }
                if *digest == bad && *actual == good),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains(&bad) && msg.contains(&good), "{msg}");
        assert!(msg.contains(&format!("{}/busybox", server.host())), "{msg}");

        let err = repo
            .manifest(&format!("sha512:{}", "ab".repeat(64)))
            .await
            .unwrap_err();
        assert!(matches!(err, RegistryError::Unsupported { .. }), "{err:?}");
        assert!(err.to_string().contains("sha512:abab"), "{err}");
        let err = repo.manifest("sha256:xyz").await.unwrap_err();
        assert!(
            matches!(err, RegistryError::InvalidReference { .. }),
            "{err:?}"
        );
        let err = repo.manifest("bad/tag").await.unwrap_err();
        assert!(
            matches!(err, RegistryError::InvalidReference { .. }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn manifest_media_type_from_body_and_shape() {
        let index = r#"{"schemaVersion":2,"manifests":[]}"#;
        let docker = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{}}"#;
        let schema1 = r#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#;
        let server = Server::start(move |req: &Req| match req.path() {
            "/v2/busybox/manifests/json" => {
                reply(200, docker).header("Content-Type", "application/json; charset=utf-8")
            }
            "/v2/busybox/manifests/none" => reply(200, index),
            "/v2/busybox/manifests/typed" => reply(200, index).header(
                "Content-Type",
                "application/vnd.oci.image.index.v1+json; charset=utf-8",
            ),
            "/v2/busybox/manifests/schema1" => reply(200, schema1).header(
                "Content-Type",
                "application/vnd.docker.distribution.manifest.v1+prettyjws",
            ),
            "/v2/busybox/manifests/schema1-json" => {
                reply(200, schema1).header("Content-Type", "application/json")
            }
            "/v2/busybox/manifests/artifact" => {
                reply(200, index).header("Content-Type", "application/vnd.example+json")
            }
            "/v2/busybox/manifests/notjson" => reply(200, "hello"),
            _ => reply(
                404,
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
            ),
        })
        .await;
        let repo = client().repository(&server.host(), "busybox", Credentials::Anonymous);
        assert_eq!(
            repo.manifest("json").await.unwrap().media_type,
            MEDIA_TYPE_DOCKER_MANIFEST
        );
        assert_eq!(
            repo.manifest("none").await.unwrap().media_type,
            MEDIA_TYPE_OCI_INDEX
        );
        assert_eq!(
            repo.manifest("typed").await.unwrap().media_type,
            MEDIA_TYPE_OCI_INDEX
        );
        for tag in ["schema1", "schema1-json", "artifact"] {
            let err = repo.manifest(tag).await.unwrap_err();
            assert!(
                matches!(err, RegistryError::Unsupported { .. }),
                "{tag}: {err:?}"
            );
        }
        let err = repo.manifest("notjson").await.unwrap_err();
        assert!(matches!(err, RegistryError::Protocol { .. }), "{err:?}");
        let err = repo.manifest("missing").await.unwrap_err();
        assert!(err.is_not_found(), "{err:?}");
        assert!(err.to_string().contains("manifest unknown"), "{err}");
        assert!(err.to_string().contains("manifest missing"), "{err}");
    }

    #[tokio::test]
    async fn manifest_size_cap_and_server_error() {
        let big = vec![b' '; MAX_MANIFEST_BYTES + 1];
        let server = Server::start(move |req: &Req| match req.path() {
            "/v2/busybox/manifests/big" => reply(200, big.clone()),
            "/v2/busybox/manifests/chunked" => {
                // No Content-Length: the cap applies while reading.
                let mut raw = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
                raw.extend(std::iter::repeat_n(b' ', MAX_MANIFEST_BYTES + 10));
                Reply::Raw(raw)
            }
            _ => reply(503, "overloaded"),
        })
        .await;
        let repo = client().repository(&server.host(), "busybox", Credentials::Anonymous);
        for tag in ["big", "chunked"] {
            let err = repo.manifest(tag).await.unwrap_err();
            assert!(matches!(err, RegistryError::Protocol { .. }), "{err:?}");
            assert!(err.to_string().contains("larger than"), "{err}");
        }
        let err = repo.manifest("x").await.unwrap_err();
        assert!(
            matches!(&err, RegistryError::Http { status: 503, message, .. } if message == "overloaded"),
            "{err:?}"
        );
    }

    // ---- blobs ----

    #[tokio::test]
    async fn blob_good() {
        let blob: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let digest = sha(&blob);
        let server = Server::start(plain_registry(blob.clone())).await;
        let repo = client().repository(&server.host(), "busybox", Credentials::Anonymous);
        let mut stream = repo.blob(&digest, Some(blob.len() as u64)).await.unwrap();
        assert_eq!(stream.content_length(), Some(blob.len() as u64));
        assert_eq!(read_all(&mut stream).await.unwrap(), blob);
        // Stays at the end.
        assert!(stream.chunk().await.unwrap().is_none());
        // Without a descriptor size, Content-Length is the expectation.
        let mut stream = repo.blob(&digest, None).await.unwrap();
        assert_eq!(stream.content_length(), Some(blob.len() as u64));
        assert_eq!(read_all(&mut stream).await.unwrap(), blob);
    }

    #[tokio::test]
    async fn blob_corrupted() {
        let blob = b"the real layer".to_vec();
        let digest = sha(&blob);
        let served = b"the evil layer".to_vec();
        let path = format!("/v2/busybox/blobs/{digest}");
        let server = Server::start(move |req: &Req| {
            if req.path() == path {
                reply(200, served.clone())
            } else {
                reply(404, "")
            }
        })
        .await;
        let repo = client().repository(&server.host(), "busybox", Credentials::Anonymous);
        let mut stream = repo.blob(&digest, Some(blob.len() as u64)).await.unwrap();
        let err = read_all(&mut stream).await.unwrap_err();
        assert!(
            matches!(&err, RegistryError::DigestMismatch { digest: d, actual, .. }
                if *d == digest && *actual == sha(b"the evil layer")),
            "{err:?}"
        );
        let msg = err.to_string();
        assert_eq!(
            msg,
            format!(
                "fetch blob {digest} from {}/busybox: digest mismatch: got {}",
                server.host(),
                sha(b"the evil layer")
            )
        );
    }

    #[tokio::test]
    async fn blob_truncated() {
        let blob = vec![7u8; 1000];
        let digest = sha(&blob);
        let path = format!("/v2/busybox/blobs/{digest}");
        let short = blob[..400].to_vec();
        let server = Server::start(move |req: &Req| {
            if req.path() != path {
                return reply(404, "");
            }
            match req.header("x-case") {
                // Promises 1000 bytes, sends 400 and closes.
                Some("close") => {
                    let mut raw =
                        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n"
                            .to_vec();
                    raw.extend_from_slice(&short);
                    Reply::Raw(raw)
                }
                // A complete 400-byte response for a 1000-byte descriptor.
                _ => reply(200, short.clone()),
            }
        })
        .await;
        let client = client();
        let repo = client.repository(&server.host(), "busybox", Credentials::Anonymous);

        // Descriptor size known: the Content-Length disagreement is caught
        // before reading.
        let err = repo.blob(&digest, Some(1000)).await;
        let err = err.unwrap_err();
        assert!(
            matches!(&err, RegistryError::SizeMismatch { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains(&digest), "{err}");

        // Unknown size, complete short body: the digest catches it.
        let mut stream = repo.blob(&digest, None).await.unwrap();
        let err = read_all(&mut stream).await.unwrap_err();
        assert!(
            matches!(&err, RegistryError::DigestMismatch { .. }),
            "{err:?}"
        );

        // Connection closed early.
        // The test server picks the broken reply by a header, set here
        // through a client with default headers.
        let mut headers = HeaderMap::new();
        headers.insert("x-case", HeaderValue::from_static("close"));
        let special = RegistryClient {
            inner: Arc::new(ClientInner {
                http: reqwest::Client::builder()
                    .default_headers(headers)
                    .build()
                    .unwrap(),
                settings: settings(),
                mirrors: HashMap::new(),
                tokens: Mutex::new(HashMap::new()),
                challenges: Mutex::new(HashMap::new()),
            }),
        };
        let repo = special.repository(&server.host(), "busybox", Credentials::Anonymous);
        let mut stream = repo.blob(&digest, Some(1000)).await.unwrap();
        let err = read_all(&mut stream).await.unwrap_err();
        assert!(
            matches!(&err, RegistryError::Truncated { digest: d, got: 400, expected: Some(1000), .. } if *d == digest),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(&digest) && msg.contains("400 of 1000"),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn blob_too_long_and_unsupported_digest() {
        let blob = vec![1u8; 64];
        let digest = sha(&blob);
        let server = Server::start(plain_registry(blob.clone())).await;
        let repo = client().repository(&server.host(), "busybox", Credentials::Anonymous);
        // The server's Content-Length (64) disagrees with the descriptor.
        let err = repo.blob(&digest, Some(10)).await.unwrap_err();
        assert!(matches!(err, RegistryError::SizeMismatch { .. }), "{err:?}");

        let sha512 = format!("sha512:{}", "0".repeat(128));
        let err = repo.blob(&sha512, None).await.unwrap_err();
        assert!(matches!(err, RegistryError::Unsupported { .. }), "{err:?}");
        assert!(err.to_string().contains(&sha512), "{err}");
        let err = repo.blob("sha256:../../etc", None).await.unwrap_err();
        assert!(
            matches!(err, RegistryError::InvalidReference { .. }),
            "{err:?}"
        );
        let err = repo
            .blob(&format!("sha256:{}", "1".repeat(64)), None)
            .await
            .unwrap_err();
        assert!(err.is_not_found(), "{err:?}");
        assert!(
            err.to_string().contains("blob unknown to registry"),
            "{err}"
        );
        // Only the last request reached the server.
        assert_eq!(server.requests().len(), 2);
    }

    #[tokio::test]
    async fn blob_redirect_drops_authorization() {
        let blob = b"layer data".to_vec();
        let digest = sha(&blob);
        let storage_blob = blob.clone();
        let storage = Server::start(move |req: &Req| {
            if req.path() == "/storage/object" {
                reply(200, storage_blob.clone())
            } else {
                reply(404, "")
            }
        })
        .await;
        let location = format!("http://{}/storage/object?sig=1", storage.host());
        let registry = Server::start(move |req: &Req| {
            if req.header("authorization") != Some("Bearer secret-token") {
                return reply(401, "");
            }
            if req.path().starts_with("/v2/busybox/blobs/") {
                reply(307, "").header("Location", &location)
            } else {
                reply(404, "")
            }
        })
        .await;
        let repo = client().repository(
            &registry.host(),
            "busybox",
            Credentials::RegistryToken("secret-token".into()),
        );
        let mut stream = repo.blob(&digest, Some(blob.len() as u64)).await.unwrap();
        assert_eq!(read_all(&mut stream).await.unwrap(), blob);
        let reqs = storage.requests();
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].target, "/storage/object?sig=1");
        assert!(
            reqs[0].header("authorization").is_none(),
            "storage got {:?}",
            reqs[0].headers
        );
        assert_eq!(registry.requests().len(), 1);
    }

    // ---- authentication ----

    /// A registry whose token server (same host, /token) wants Basic
    /// user:pass, and whose API wants the token.
    fn bearer_registry(token_hits: Arc<AtomicUsize>) -> impl Fn(&Req) -> Reply + Send + Sync {
        move |req: &Req| {
            let host = req.header("host").unwrap().to_string();
            if req.path() == "/token" {
                token_hits.fetch_add(1, Ordering::SeqCst);
                let basic = format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode("user:pass")
                );
                if req.header("authorization") != Some(basic.as_str()) {
                    return reply(
                        401,
                        r#"{"errors":[{"code":"UNAUTHORIZED","message":"incorrect username or password"}]}"#,
                    );
                }
                assert_eq!(req.query("service").as_deref(), Some("test-registry"));
                let scope = req.query("scope").unwrap();
                let token = match scope.as_str() {
                    "repository:busybox:pull" => "token-busybox",
                    "repository:other:pull" => "token-other",
                    _ => return reply(400, "bad scope"),
                };
                return reply(200, format!(r#"{{"token":"{token}","expires_in":300}}"#));
            }
            let want = if req.path().starts_with("/v2/busybox/") {
                "Bearer token-busybox"
            } else {
                "Bearer token-other"
            };
            if req.header("authorization") != Some(want) {
                let repo = req.path().split('/').nth(2).unwrap();
                let challenge = format!(
                    r#"Bearer realm="http://{host}/token",service="test-registry",scope="repository:{repo}:pull,push""#
                );
                return reply(
                    401,
                    r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
                )
                .header("WWW-Authenticate", &challenge);
            }
            if req.path().contains("/manifests/") {
                reply(200, MANIFEST).header("Content-Type", MEDIA_TYPE_OCI_MANIFEST)
            } else {
                reply(200, "blob")
            }
        }
    }

    fn basic(user: &str, pass: &str) -> Credentials {
        Credentials::Basic {
            username: user.into(),
            password: pass.into(),
        }
    }

    #[tokio::test]
    async fn bearer_flow_and_token_cache() {
        let hits = Arc::new(AtomicUsize::new(0));
        let server = Server::start(bearer_registry(hits.clone())).await;
        let client = client();
        let repo = client.repository(&server.host(), "busybox", basic("user", "pass"));
        repo.manifest("latest").await.unwrap();
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        let reqs = server.requests();
        // anonymous → 401, token, retry with Bearer.
        assert_eq!(reqs.len(), 3, "{reqs:#?}");
        assert!(reqs[0].header("authorization").is_none());
        assert_eq!(reqs[1].path(), "/token");
        assert_eq!(reqs[1].query("account").as_deref(), Some("user"));
        assert_eq!(
            reqs[2].header("authorization"),
            Some("Bearer token-busybox")
        );

        // Cached: the blob goes straight out with the token.
        let mut s = repo.blob(&sha(b"blob"), None).await.unwrap();
        assert_eq!(read_all(&mut s).await.unwrap(), b"blob");
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        assert_eq!(server.requests().len(), 4);

        // A new session with the same credentials reuses the token too.
        let again = client.repository(&server.host(), "busybox", basic("user", "pass"));
        again.manifest("latest").await.unwrap();
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        assert_eq!(server.requests().len(), 5);

        // Another repository: its own scope, fetched up front.
        let other = client.repository(&server.host(), "other", basic("user", "pass"));
        other.manifest("latest").await.unwrap();
        assert_eq!(hits.load(Ordering::SeqCst), 2);
        assert_eq!(server.requests().len(), 7);

        // Other credentials never get the cached token.
        let wrong = client.repository(&server.host(), "busybox", basic("user", "nope"));
        let err = wrong.manifest("latest").await.unwrap_err();
        assert_eq!(hits.load(Ordering::SeqCst), 3);
        assert!(err.is_unauthorized(), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("incorrect username or password"), "{msg}");
        assert!(msg.contains("/token"), "{msg}");
        assert!(msg.contains(&format!("{}/busybox", server.host())), "{msg}");

        let anon = client.repository(&server.host(), "busybox", Credentials::Anonymous);
        let err = anon.manifest("latest").await.unwrap_err();
        assert!(err.is_unauthorized(), "{err:?}");
        assert_eq!(hits.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn rejected_token_is_refetched_once() {
        // The token server issues a new token each time; the registry only
        // accepts the second one, as after a revocation.
        let issued = Arc::new(AtomicUsize::new(0));
        let issued2 = issued.clone();
        let server = Server::start(move |req: &Req| {
            let host = req.header("host").unwrap().to_string();
            if req.path() == "/token" {
                let n = issued2.fetch_add(1, Ordering::SeqCst) + 1;
                return reply(200, format!(r#"{{"access_token":"t{n}"}}"#));
            }
            if req.header("authorization") == Some("Bearer t2") {
                return reply(200, MANIFEST).header("Content-Type", MEDIA_TYPE_OCI_MANIFEST);
            }
            reply(
                401,
                r#"{"errors":[{"code":"DENIED","message":"token revoked"}]}"#,
            )
            .header(
                "WWW-Authenticate",
                &format!(r#"Bearer realm="http://{host}/token""#),
            )
        })
        .await;
        let client = client();
        let repo = client.repository(&server.host(), "busybox", Credentials::Anonymous);
        // t1 is refused after the challenge: Unauthorized, message kept.
        let err = repo.manifest("latest").await.unwrap_err();
        assert!(err.is_unauthorized(), "{err:?}");
        assert!(err.to_string().contains("token revoked"), "{err}");
        // Next request: the cached t1 was dropped, t2 fetched, success.
        repo.manifest("latest").await.unwrap();
        assert_eq!(issued.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn basic_challenge() {
        let good = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("alice:s3cret")
        );
        let server = Server::start(move |req: &Req| {
            if req.header("authorization") == Some(good.as_str()) {
                reply(200, MANIFEST).header("Content-Type", MEDIA_TYPE_OCI_MANIFEST)
            } else {
                reply(
                    401,
                    r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
                )
                .header(
                    "WWW-Authenticate",
                    r#"Basic realm="peapod-test",charset="UTF-8""#,
                )
            }
        })
        .await;
        let client = client();
        let repo = client.repository(&server.host(), "busybox", basic("alice", "s3cret"));
        repo.manifest("latest").await.unwrap();
        assert_eq!(server.requests().len(), 2);
        // The challenge is remembered: credentials go out up front.
        repo.manifest("latest").await.unwrap();
        assert_eq!(server.requests().len(), 3);

        let anon = client.repository(&server.host(), "busybox", Credentials::Anonymous);
        let err = anon.manifest("latest").await.unwrap_err();
        assert!(err.is_unauthorized(), "{err:?}");
        assert!(err.to_string().contains("authentication required"), "{err}");

        let wrong = client.repository(&server.host(), "busybox", basic("alice", "x"));
        let err = wrong.manifest("latest").await.unwrap_err();
        assert!(err.is_unauthorized(), "{err:?}");
        // Wrong Basic credentials are not retried with the same header.
        let n = server.requests().len();
        let _ = wrong.manifest("latest").await.unwrap_err();
        assert_eq!(server.requests().len(), n + 1);

        let idt = client.repository(
            &server.host(),
            "busybox",
            Credentials::IdentityToken("refresh".into()),
        );
        assert!(idt.manifest("latest").await.unwrap_err().is_unauthorized());
    }

    #[tokio::test]
    async fn registry_token_is_sent_directly() {
        let server = Server::start(|req: &Req| {
            if req.header("authorization") == Some("Bearer reg-token") {
                reply(200, MANIFEST).header("Content-Type", MEDIA_TYPE_OCI_MANIFEST)
            } else {
                reply(
                    401,
                    r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad token"}]}"#,
                )
                .header(
                    "WWW-Authenticate",
                    r#"Bearer realm="http://127.0.0.1:1/token""#,
                )
            }
        })
        .await;
        let client = client();
        let repo = client.repository(
            &server.host(),
            "busybox",
            Credentials::RegistryToken("reg-token".into()),
        );
        repo.manifest("latest").await.unwrap();
        assert_eq!(server.requests().len(), 1);
        let repo = client.repository(
            &server.host(),
            "busybox",
            Credentials::RegistryToken("other".into()),
        );
        let err = repo.manifest("latest").await.unwrap_err();
        assert!(err.is_unauthorized(), "{err:?}");
        assert!(err.to_string().contains("bad token"), "{err}");
        assert_eq!(server.requests().len(), 2);
    }

    #[tokio::test]
    async fn identity_token_post() {
        let server = Server::start(|req: &Req| {
            let host = req.header("host").unwrap().to_string();
            if req.path() == "/oauth/token" {
                assert_eq!(req.method, "POST");
                assert_eq!(
                    req.header("content-type"),
                    Some("application/x-www-form-urlencoded")
                );
                assert!(req.header("authorization").is_none());
                let ok = req.form("grant_type").as_deref() == Some("refresh_token")
                    && req.form("refresh_token").as_deref() == Some("refresh-me")
                    && req.form("service").as_deref() == Some("svc")
                    && req.form("scope").as_deref() == Some("repository:team/app:pull")
                    && req.form("client_id").as_deref() == Some("peapod");
                return if ok {
                    reply(200, r#"{"access_token":"oauth-access","expires_in":120}"#)
                } else {
                    reply(
                        400,
                        r#"{"error":"invalid_grant","error_description":"bad form"}"#,
                    )
                };
            }
            if req.header("authorization") == Some("Bearer oauth-access") {
                return reply(200, MANIFEST).header("Content-Type", MEDIA_TYPE_OCI_MANIFEST);
            }
            reply(401, "").header(
                "WWW-Authenticate",
                &format!(r#"Bearer realm="http://{host}/oauth/token",service="svc""#),
            )
        })
        .await;
        let repo = client().repository(
            &server.host(),
            "team/app",
            Credentials::IdentityToken("refresh-me".into()),
        );
        repo.manifest("v1").await.unwrap();
        let paths: Vec<String> = server
            .requests()
            .iter()
            .map(|r| r.path().to_string())
            .collect();
        assert_eq!(
            paths,
            [
                "/v2/team/app/manifests/v1",
                "/oauth/token",
                "/v2/team/app/manifests/v1"
            ]
        );
    }

    #[tokio::test]
    async fn plain_http_token_server_gets_no_credentials() {
        // A registry (loopback, so plain HTTP is fine) whose realm points at
        // a non-insecure plain-HTTP host.
        let server = Server::start(|_req: &Req| {
            reply(401, "").header(
                "WWW-Authenticate",
                r#"Bearer realm="http://auth.example/token""#,
            )
        })
        .await;
        let repo = client().repository(&server.host(), "busybox", basic("u", "p"));
        let err = repo.manifest("latest").await.unwrap_err();
        assert!(err.is_unauthorized(), "{err:?}");
        assert!(err.to_string().contains("plain-HTTP token server"), "{err}");
    }

    // ---- mirrors ----

    async fn closed_port() -> String {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        addr.to_string()
    }

    #[tokio::test]
    async fn mirror_fallthrough_on_connect_error() {
        let blob = b"mirrored".to_vec();
        let digest = sha(&blob);
        let upstream = Server::start(plain_registry(blob.clone())).await;
        let mirror = Server::start(plain_registry(blob.clone())).await;
        let dead = closed_port().await;
        let mut s = settings();
        s.mirrors.insert(
            upstream.host(),
            vec![dead.clone(), format!("http://{}", mirror.host())],
        );
        let client = RegistryClient::new(s).unwrap();
        let repo = client.repository(&upstream.host(), "busybox", Credentials::Anonymous);
        let m = repo.manifest("latest").await.unwrap();
        assert_eq!(m.digest, sha(MANIFEST.as_bytes()));
        let mut stream = repo.blob(&digest, None).await.unwrap();
        assert_eq!(read_all(&mut stream).await.unwrap(), blob);
        assert_eq!(mirror.requests().len(), 2);
        assert!(upstream.requests().is_empty());
    }

    #[tokio::test]
    async fn mirror_404_and_5xx_fall_to_upstream() {
        let blob = b"upstream only".to_vec();
        let digest = sha(&blob);
        let upstream = Server::start(plain_registry(blob.clone())).await;
        let empty = Server::start(|_req: &Req| {
            reply(
                404,
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
            )
        })
        .await;
        let broken = Server::start(|_req: &Req| reply(502, "bad gateway")).await;
        let mut s = settings();
        s.mirrors.insert(
            upstream.host(),
            vec![format!("{}/", broken.host()), empty.host()],
        );
        let client = RegistryClient::new(s).unwrap();
        let repo = client.repository(&upstream.host(), "busybox", Credentials::Anonymous);
        repo.manifest("latest").await.unwrap();
        let mut stream = repo.blob(&digest, None).await.unwrap();
        assert_eq!(read_all(&mut stream).await.unwrap(), blob);
        assert_eq!(broken.requests().len(), 1);
        assert_eq!(empty.requests().len(), 1);
        // Blob went straight to the upstream that answered the manifest.
        assert_eq!(upstream.requests().len(), 2);

        // A mirror's 401 is not hidden by the fallthrough.
        let denying = Server::start(|_req: &Req| {
            reply(403, r#"{"errors":[{"code":"DENIED","message":"no"}]}"#)
        })
        .await;
        let mut s = settings();
        s.mirrors.insert(upstream.host(), vec![denying.host()]);
        let client = RegistryClient::new(s).unwrap();
        let repo = client.repository(&upstream.host(), "busybox", Credentials::Anonymous);
        let err = repo.manifest("latest").await.unwrap_err();
        assert!(err.is_unauthorized(), "{err:?}");
        assert!(err.to_string().contains("(mirror of"), "{err}");
    }

    #[tokio::test]
    async fn mirror_with_path_prefix() {
        let mirror = Server::start(|req: &Req| {
            if req.path() == "/cache/v2/library/busybox/manifests/latest" {
                reply(200, MANIFEST).header("Content-Type", MEDIA_TYPE_OCI_MANIFEST)
            } else {
                reply(404, "")
            }
        })
        .await;
        let mut s = settings();
        s.mirrors.insert(
            "docker.io".into(),
            vec![format!("http://{}/cache/", mirror.host())],
        );
        let client = RegistryClient::new(s).unwrap();
        // Docker Hub's upstream is never contacted here: the mirror answers.
        let repo = client.repository("docker.io", "busybox", Credentials::Anonymous);
        assert_eq!(repo.name(), "library/busybox");
        repo.manifest("latest").await.unwrap();
        assert_eq!(mirror.requests().len(), 1);
    }

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
                .endpoints
                .iter()
                .map(|e| e.base.clone())
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
                .endpoints[2]
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

    #[tokio::test]
    async fn invalid_names_fail_on_use() {
        let client = client();
        for (registry, repo) in [
            ("127.0.0.1:5000", "Busybox"),
            ("127.0.0.1:5000", "a/../b"),
            ("127.0.0.1:5000", "a//b"),
            ("127.0.0.1:5000", "a?b"),
            ("host/x", "busybox"),
            ("", "busybox"),
        ] {
            let r = client.repository(registry, repo, Credentials::Anonymous);
            let err = r.manifest("latest").await.unwrap_err();
            assert!(
                matches!(err, RegistryError::InvalidReference { .. }),
                "{registry} {repo}: {err:?}"
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

    // ---- credentials ----

    #[test]
    fn credentials_from_auth_config() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let c = |u: &str, p: &str, a: &str, i: &str, r: &str| {
            Credentials::from_auth_config(u, p, a, i, r)
        };
        assert_eq!(c("", "", "", "", "").unwrap(), Credentials::Anonymous);
        assert_eq!(c("u", "p", "", "", "").unwrap(), basic("u", "p"));
        assert_eq!(c("u", "", "", "", "").unwrap(), basic("u", ""));
        assert_eq!(
            c("", "", &b64("me:pa:ss"), "", "").unwrap(),
            basic("me", "pa:ss")
        );
        // Unpadded and with a trailing newline.
        assert_eq!(
            c(
                "",
                "",
                &format!("{}\n", b64("ab:c").trim_end_matches('=')),
                "",
                ""
            )
            .unwrap(),
            basic("ab", "c")
        );
        // Username wins over auth.
        assert_eq!(c("u", "p", "!!!", "", "").unwrap(), basic("u", "p"));
        assert_eq!(
            c("u", "p", "", "idt", "").unwrap(),
            Credentials::IdentityToken("idt".into())
        );
        assert_eq!(
            c("u", "p", "", "idt", "rt").unwrap(),
            Credentials::RegistryToken("rt".into())
        );
        for (auth, want) in [
            ("!!!not base64", "not base64"),
            (&b64("nocolon") as &str, "username:password"),
            (&b64(":pass"), "username is empty"),
        ] {
            let err = c("", "", auth, "", "").unwrap_err();
            assert!(
                matches!(
                    &err,
                    RegistryError::InvalidCredentials { field: "auth", .. }
                ),
                "{err:?}"
            );
            assert!(
                err.to_string().contains("`auth`") && err.to_string().contains(want),
                "{err}"
            );
        }
        assert!(matches!(
            c("", "p", "", "", ""),
            Err(RegistryError::InvalidCredentials {
                field: "username",
                ..
            })
        ));
        assert!(matches!(
            c("", "", "", "", "bad\ntoken"),
            Err(RegistryError::InvalidCredentials {
                field: "registry_token",
                ..
            })
        ));
        let dbg = format!("{:?}", basic("u", "secret"));
        assert!(!dbg.contains("secret"), "{dbg}");
    }

    // ---- WWW-Authenticate ----

    fn challenge_of(values: &[&str]) -> Option<Challenge> {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(WWW_AUTHENTICATE, HeaderValue::from_str(v).unwrap());
        }
        pick_challenge(&h)
    }

    fn bearer(realm: &str, service: Option<&str>, scope: Option<&str>) -> Challenge {
        Challenge::Bearer {
            realm: realm.into(),
            service: service.map(String::from),
            scope: scope.map(String::from),
        }
    }

    #[test]
    fn www_authenticate_parsing() {
        assert_eq!(
            challenge_of(&[
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#
            ]),
            Some(bearer(
                "https://auth.docker.io/token",
                Some("registry.docker.io"),
                Some("repository:library/busybox:pull,push")
            ))
        );
        // Case, spacing, escapes, unquoted values, parameter order.
        assert_eq!(
            challenge_of(&[r#"bEaReR  scope = "a,\"b\"" , Service=svc,REALM=https://x/t?a=1"#]),
            Some(bearer("https://x/t?a=1", Some("svc"), Some(r#"a,"b""#)))
        );
        // Several challenges in one header: Bearer preferred over Basic.
        assert_eq!(
            challenge_of(&[r#"Basic realm="r", Bearer realm="https://t",scope="x,y", Negotiate"#]),
            Some(bearer("https://t", None, Some("x,y")))
        );
        // Several headers.
        assert_eq!(
            challenge_of(&[r#"Basic realm="registry""#, r#"Bearer realm="https://t""#]),
            Some(bearer("https://t", None, None))
        );
        assert_eq!(
            challenge_of(&[r#"Basic realm="registry""#]),
            Some(Challenge::Basic)
        );
        assert_eq!(challenge_of(&["Basic"]), Some(Challenge::Basic));
        // Bearer without a realm is unusable.
        assert_eq!(challenge_of(&[r#"Bearer service="x""#]), None);
        assert_eq!(challenge_of(&[r#"Bearer realm="""#]), None);
        assert_eq!(challenge_of(&["Negotiate abc=="]), None);
        assert_eq!(challenge_of(&[""]), None);
        // token68 before another challenge; an unterminated quote.
        assert_eq!(
            challenge_of(&[r#"Negotiate abc==, Bearer realm="https://t"#]),
            Some(bearer("https://t", None, None))
        );
        let parsed = parse_www_authenticate(r#"Bearer realm="r", error="insufficient_scope""#);
        assert_eq!(
            parsed,
            vec![(
                "bearer".to_string(),
                vec![
                    ("realm".to_string(), "r".to_string()),
                    ("error".to_string(), "insufficient_scope".to_string())
                ]
            )]
        );
        // Garbage does not panic.
        for junk in [
            "=",
            ",,,",
            "\"",
            "Bearer ,=,\"",
            "Bearer realm=",
            "Bearer realm=\"\\",
        ] {
            let _ = parse_www_authenticate(junk);
        }
    }

    // ---- against the real registry (Debian's docker-registry) ----

    /// A registry from hack/registry.sh, stopped on drop.
    struct RealRegistry {
        dir: tempfile::TempDir,
        addr: String,
    }

    impl RealRegistry {
        fn start(extra: &[&str]) -> RealRegistry {
            let dir = tempfile::tempdir().unwrap();
            let out = hack_script("registry.sh", &["start", path_str(dir.path())], extra, None);
            RealRegistry {
                dir,
                addr: out.trim().to_string(),
            }
        }

        /// Pushes test images; returns name → manifest digest.
        fn push(&self, images: &[&str], creds: Option<&str>) -> HashMap<String, String> {
            let out = hack_script("build-test-images.sh", &[&self.addr], images, creds);
            out.lines()
                .filter_map(|l| l.split_once(' '))
                .map(|(r, d)| {
                    let name = r.rsplit('/').next().unwrap().split(':').next().unwrap();
                    (name.to_string(), d.to_string())
                })
                .collect()
        }
    }

    impl Drop for RealRegistry {
        fn drop(&mut self) {
            let _ = std::process::Command::new(hack_path("registry.sh"))
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .args(["stop", path_str(self.dir.path())])
                .status();
        }
    }

    fn path_str(p: &std::path::Path) -> &str {
        p.to_str().unwrap()
    }

    fn hack_path(script: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("hack")
            .join(script)
    }

    fn hack_script(script: &str, args: &[&str], more: &[&str], creds: Option<&str>) -> String {
        let mut cmd = std::process::Command::new(hack_path(script));
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(args)
            .args(more);
        if let Some(creds) = creds {
            cmd.env("REGISTRY_CREDS", creds);
        }
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("run hack/{script}: {e}"));
        // The scripts name the Debian package to install when a tool is
        // missing (docker-registry, skopeo, jq, busybox-static).
        assert!(
            out.status.success(),
            "hack/{script} {args:?} {more:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    #[derive(Deserialize)]
    struct Descriptor {
        digest: String,
        size: u64,
    }

    #[derive(Deserialize)]
    struct ImageManifest {
        config: Descriptor,
        layers: Vec<Descriptor>,
    }

    /// Fetches every blob of a manifest, checking the bytes against the
    /// digest independently of the stream's own check.
    async fn pull_blobs(repo: &Repository, manifest: &Manifest) {
        let parsed: ImageManifest = serde_json::from_slice(&manifest.bytes).unwrap();
        for d in std::iter::once(&parsed.config).chain(&parsed.layers) {
            let mut stream = repo.blob(&d.digest, Some(d.size)).await.unwrap();
            let data = read_all(&mut stream).await.unwrap();
            assert_eq!(data.len() as u64, d.size);
            assert_eq!(sha(&data), d.digest);
        }
    }

    #[tokio::test]
    async fn real_registry_pull() {
        let (registry, pushed) = tokio::task::spawn_blocking(|| {
            let r = RealRegistry::start(&[]);
            let pushed = r.push(&["busybox", "busybox-docker"], None);
            (r, pushed)
        })
        .await
        .unwrap();
        let client = client();
        let addr = &registry.addr;

        let repo = client.repository(addr, "busybox", Credentials::Anonymous);
        let m = repo.manifest("latest").await.unwrap();
        assert_eq!(m.digest, pushed["busybox"]);
        assert_eq!(m.media_type, MEDIA_TYPE_OCI_MANIFEST);
        assert_eq!(repo.manifest(&m.digest).await.unwrap(), m);
        pull_blobs(&repo, &m).await;

        let docker = client.repository(addr, "busybox-docker", Credentials::Anonymous);
        let dm = docker.manifest("latest").await.unwrap();
        assert_eq!(dm.digest, pushed["busybox-docker"]);
        assert_eq!(dm.media_type, MEDIA_TYPE_DOCKER_MANIFEST);
        pull_blobs(&docker, &dm).await;

        let err = repo.manifest("no-such-tag").await.unwrap_err();
        assert!(err.is_not_found(), "{err:?}");
        assert!(
            err.to_string()
                .contains(&format!("manifest no-such-tag from {addr}/busybox")),
            "{err}"
        );
        let missing = client.repository(addr, "no/such/repo", Credentials::Anonymous);
        assert!(missing.manifest("latest").await.unwrap_err().is_not_found());
        let absent = format!("sha256:{}", "0".repeat(64));
        assert!(repo.blob(&absent, None).await.unwrap_err().is_not_found());
    }
}
