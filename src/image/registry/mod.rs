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
//!
//! The node's files are read on every pull, so an edit takes effect at the
//! next pull without a restart (the daemon also reads them once at start,
//! to refuse to start on a broken one): containers-registries.conf(5)
//! (`registries_conf`: blocked prefixes, locations, more mirrors) and
//! containers-auth.json(5) (`auth_file`: credentials for pulls whose
//! request has none).
//!
//! Files: `endpoints` (mirrors, upstream, plain HTTP or not), `names`
//! (repository names, tags, digests), `credentials` (CRI AuthConfig),
//! `registries_conf` and `auth_file` (the node's files),
//! `challenge` (`WWW-Authenticate`), `auth` (answering a challenge), `token`
//! (bearer tokens and their cache), `manifests` and `blobs` (the fetches),
//! `repository` (one repository's session over its endpoints), `http` and
//! `error` (responses and what goes wrong).

mod auth;
pub mod auth_file;
mod blobs;
mod challenge;
mod credentials;
mod endpoints;
mod error;
mod http;
mod manifests;
mod names;
pub mod registries_conf;
mod repository;
#[cfg(test)]
mod test_support;
mod token;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use auth_file::AuthFile;
pub use blobs::BlobStream;
pub use credentials::Credentials;
pub use endpoints::is_insecure_default;
pub use error::RegistryError;
pub use manifests::{Manifest, MAX_MANIFEST_BYTES};
pub use registries_conf::{ImageName, RegistriesConf};
pub use repository::Repository;

use challenge::Challenge;
use endpoints::{is_insecure_in, url_host_port, Endpoint, DOCKER_HUB, DOCKER_HUB_API};
use http::chain;
use names::validate_repository;
use repository::{RepoInner, Source};
use token::{CachedToken, TokenKey};

/// Sent with every request.
pub const USER_AGENT: &str = concat!("peapod/", env!("CARGO_PKG_VERSION"));

pub const MEDIA_TYPE_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_TYPE_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MEDIA_TYPE_DOCKER_MANIFEST_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";

const MAX_REDIRECTS: usize = 10;

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
    /// A request that receives no byte for this long (waiting for the
    /// response, or inside its body) fails with [`RegistryError::Stalled`];
    /// `None` waits for ever.
    pub stall_timeout: Option<Duration>,
    /// containers-registries.conf(5) and its drop-in directory; `None`:
    /// not read.
    pub registries_conf: Option<PathBuf>,
    pub registries_conf_dir: Option<PathBuf>,
    /// containers-auth.json(5), for pulls without credentials; `None`: not
    /// read.
    pub auth_file: Option<PathBuf>,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        RegistrySettings {
            insecure: Vec::new(),
            mirrors: HashMap::new(),
            connect_timeout: Duration::from_secs(30),
            stall_timeout: Some(Duration::from_secs(300)),
            registries_conf: None,
            registries_conf_dir: None,
            auth_file: None,
        }
    }
}

/// What the node's files held when they were checked at start.
#[derive(Debug)]
pub struct NodeFiles {
    pub registries_conf: RegistriesConf,
    /// The auth file and how many registries it has credentials for;
    /// `None` when there is none.
    pub auth_file: Option<(PathBuf, usize)>,
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
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
        let mut http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(settings.connect_timeout)
            .redirect(redirect)
            .referer(false);
        if let Some(stall) = settings.stall_timeout {
            // Applies to each read and restarts with every byte: exactly
            // "no progress for this long".
            http = http.read_timeout(stall);
        }
        let http = http
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

    /// Reads the node's files as a pull would, to report them (or what is
    /// wrong with them) at start.
    pub fn check_node_files(&self) -> Result<NodeFiles, RegistryError> {
        let registries_conf = self.registries_conf()?;
        let auth_file = match &self.inner.settings.auth_file {
            Some(path) => AuthFile::load(path)?.map(|f| (path.clone(), f.len())),
            None => None,
        };
        Ok(NodeFiles {
            registries_conf,
            auth_file,
        })
    }

    fn registries_conf(&self) -> Result<RegistriesConf, RegistryError> {
        let settings = &self.inner.settings;
        RegistriesConf::load(
            settings.registries_conf.as_deref(),
            settings.registries_conf_dir.as_deref(),
        )
    }

    /// Opens a session for pulling `name`, as the node's files say now:
    /// refused when registries.conf blocks it; its mirrors and location
    /// applied; credentials from the auth file for each place it may come
    /// from when `credentials` is Anonymous (the request had none). Reads
    /// files: call it from a blocking context.
    pub fn open(
        &self,
        name: &ImageName,
        credentials: Credentials,
    ) -> Result<Repository, RegistryError> {
        let conf = self.registries_conf()?;
        let auth_file = match (&credentials, &self.inner.settings.auth_file) {
            (Credentials::Anonymous, Some(path)) => AuthFile::load(path)?,
            _ => None,
        };
        self.session(name, &conf, credentials, auth_file.as_ref())
    }

    /// Opens a session for one repository with peapod's own settings only
    /// (no node files): `registry` is the reference's domain ("docker.io"
    /// for Docker Hub), `repository` its path ("library/busybox"). Invalid
    /// names are reported by the first request.
    pub fn repository(
        &self,
        registry: &str,
        repository: &str,
        credentials: Credentials,
    ) -> Repository {
        let is_hub = registry == DOCKER_HUB || registry == "index.docker.io";
        // Official Docker Hub images live under library/.
        let repository = if is_hub && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_string()
        };
        let name = ImageName {
            domain: registry,
            path: &repository,
            tag: None,
            digest: None,
        };
        self.session(&name, &RegistriesConf::default(), credentials, None)
            .unwrap_or_else(|e| self.invalid_session(&name, e.to_string()))
    }

    /// The session for `name`: where it comes from (see
    /// [`RegistriesConf::route`]) and with which credentials.
    fn session(
        &self,
        name: &ImageName,
        conf: &RegistriesConf,
        credentials: Credentials,
        auth_file: Option<&AuthFile>,
    ) -> Result<Repository, RegistryError> {
        if let Err(reason) = validate_repository(name.path) {
            return Ok(self.invalid_session(name, reason));
        }
        let settings = &self.inner.settings;
        let mut sources =
            match conf.route(name, self.peapod_mirrors(name.domain), &settings.insecure) {
                Ok(sources) => sources,
                Err(RegistryError::InvalidReference { reason, .. }) => {
                    return Ok(self.invalid_session(name, reason))
                }
                Err(e) => return Err(e),
            };
        for source in &mut sources {
            source.credentials = match (&credentials, auth_file) {
                (Credentials::Anonymous, Some(file)) => file
                    .lookup(&source.endpoint.host, &source.repository)
                    .cloned()
                    .unwrap_or(Credentials::Anonymous),
                _ => credentials.clone(),
            };
        }
        Ok(self.new_session(name, sources, None))
    }

    /// `images.mirrors` for `registry` (Docker Hub under any of its names).
    fn peapod_mirrors(&self, registry: &str) -> Option<&[Endpoint]> {
        let mut keys = vec![registry.to_ascii_lowercase()];
        if registry == DOCKER_HUB || registry == "index.docker.io" {
            keys.extend([DOCKER_HUB, "index.docker.io", DOCKER_HUB_API].map(String::from));
        }
        keys.iter()
            .find_map(|k| self.inner.mirrors.get(k))
            .map(Vec::as_slice)
    }

    /// A session whose every request fails with `reason`.
    fn invalid_session(&self, name: &ImageName, reason: String) -> Repository {
        self.new_session(name, Vec::new(), Some(reason))
    }

    fn new_session(
        &self,
        name: &ImageName,
        sources: Vec<Source>,
        invalid: Option<String>,
    ) -> Repository {
        Repository {
            inner: Arc::new(RepoInner {
                client: self.inner.clone(),
                registry: name.domain.to_string(),
                repository: name.path.to_string(),
                sources,
                invalid,
                preferred: AtomicUsize::new(0),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::image::registry::test_support::*;

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
