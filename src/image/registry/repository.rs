//! A session with one repository: the places it can be fetched from in
//! order, the one that answered last, and the URLs and checks shared by
//! every fetch.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use reqwest::Url;

use super::error::Ctx;
use super::names::{check_digest, DigestCheck};
use super::{ClientInner, Credentials, Endpoint, RegistryError};

/// One place a pull can fetch the repository from: an endpoint, the
/// repository's name there (a registries.conf location or mirror may
/// rewrite it) and the credentials that go there.
#[derive(Debug, Clone)]
pub(super) struct Source {
    pub(super) endpoint: Endpoint,
    pub(super) repository: String,
    pub(super) credentials: Credentials,
}

impl Source {
    pub(super) fn new(endpoint: Endpoint, repository: &str) -> Source {
        Source {
            endpoint,
            repository: repository.to_string(),
            credentials: Credentials::Anonymous,
        }
    }
}

pub(super) struct RepoInner {
    pub(super) client: Arc<ClientInner>,
    /// The registry and repository the image name says.
    pub(super) registry: String,
    pub(super) repository: String,
    /// Mirrors in order, then the registry itself (always last).
    pub(super) sources: Vec<Source>,
    pub(super) invalid: Option<String>,
    /// Index of the source that answered last; requests start there.
    pub(super) preferred: AtomicUsize,
}

/// A session with one repository; cheap to clone.
#[derive(Clone)]
pub struct Repository {
    pub(super) inner: Arc<RepoInner>,
}

impl fmt::Debug for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Repository")
            .field("registry", &self.inner.registry)
            .field("repository", &self.inner.repository)
            .field("sources", &self.inner.sources)
            .finish_non_exhaustive()
    }
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

    pub(super) fn from(&self, src: &Source) -> String {
        let ep = &src.endpoint;
        match &ep.mirror_of {
            Some(registry) => format!("{}/{} (mirror of {registry})", ep.display, src.repository),
            None => format!("{}/{}", ep.display, src.repository),
        }
    }

    /// What a request to `src` is for, to name it in errors.
    pub(super) fn ctx<'a>(&self, what: &'a str, src: &Source) -> Ctx<'a> {
        Ctx {
            what,
            from: self.from(src),
            stall_timeout: self.inner.client.settings.stall_timeout,
        }
    }

    pub(super) fn upstream_from(&self) -> String {
        format!("{}/{}", self.inner.registry, self.inner.repository)
    }

    pub(super) fn check_valid(&self, what: &str) -> Result<(), RegistryError> {
        match &self.inner.invalid {
            Some(reason) => Err(RegistryError::InvalidReference {
                what: what.to_string(),
                from: self.upstream_from(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Source indices to try: from the one that answered last to the
    /// registry (the ones before it already failed this session).
    fn order(&self) -> std::ops::Range<usize> {
        let len = self.inner.sources.len();
        let start = self.inner.preferred.load(Ordering::Relaxed);
        (if start < len { start } else { 0 })..len
    }

    /// Runs `attempt` against each endpoint in order until one succeeds or
    /// fails in a way another endpoint cannot fix.
    pub(super) async fn with_endpoints<T, F, Fut>(
        &self,
        what: &str,
        attempt: F,
    ) -> Result<T, RegistryError>
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
                Err(e)
                    if self.inner.sources[i].endpoint.mirror_of.is_some() && e.falls_through() =>
                {
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

    pub(super) fn url(
        &self,
        src: &Source,
        kind: &str,
        reference: &str,
    ) -> Result<Url, RegistryError> {
        let s = format!(
            "{}/v2/{}/{kind}/{reference}",
            src.endpoint.base, src.repository
        );
        Url::parse(&s).map_err(|e| RegistryError::InvalidReference {
            what: format!("{kind} {reference}"),
            from: self.from(src),
            reason: format!("URL {s}: {e}"),
        })
    }

    /// The hex of a `sha256:` digest; other algorithms and malformed
    /// digests are errors about `what`.
    pub(super) fn sha256_hex(&self, digest: &str, what: &str) -> Result<String, RegistryError> {
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
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;
    use crate::image::registry::test_support::*;
    use crate::image::registry::{RegistryClient, MEDIA_TYPE_OCI_MANIFEST};

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
}
