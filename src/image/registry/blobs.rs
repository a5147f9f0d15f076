//! Fetching blobs: a stream that checks size and sha256 digest as it is
//! read.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest as _, Sha256};

use super::http::chain;
use super::{hex, RegistryError, Repository};

impl Repository {
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
        let src = &self.inner.sources[i];
        let ctx = self.ctx(what, src);
        let url = self.url(src, "blobs", digest)?;
        let resp = self.send(src, url, None, &ctx).await?;
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
            stall_timeout: ctx.stall_timeout,
        })
    }
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
    stall_timeout: Option<Duration>,
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
                match self.stall_timeout {
                    Some(after) if e.is_timeout() => Err(RegistryError::Stalled {
                        what: format!("blob {}", self.digest),
                        from: self.from.clone(),
                        after,
                    }),
                    _ => Err(self.truncated(format!(": {}", chain(&e)))),
                }
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
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use reqwest::header::{HeaderMap, HeaderValue};

    use super::*;
    use crate::image::registry::test_support::*;
    use crate::image::registry::{ClientInner, Credentials, RegistryClient};

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

    #[tokio::test]
    async fn stalled_responses_and_bodies_name_what_stalled() {
        let digest = sha(&[7u8; 1000]);
        let blob_path = format!("/v2/busybox/blobs/{digest}");
        let hold = Duration::from_secs(10);
        let server = Server::start(move |req: &Req| {
            if req.path() == blob_path {
                // Headers and 400 of 1000 bytes, then silence.
                let mut raw = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n".to_vec();
                raw.extend_from_slice(&[7u8; 400]);
                Reply::Stall { raw, hold }
            } else {
                // Not even a status line.
                Reply::Stall {
                    raw: Vec::new(),
                    hold,
                }
            }
        })
        .await;
        let upstream = Server::start(|_req: &Req| {
            reply(200, MANIFEST).header(
                "Content-Type",
                crate::image::registry::MEDIA_TYPE_OCI_MANIFEST,
            )
        })
        .await;
        let mut s = settings();
        s.stall_timeout = Some(Duration::from_millis(300));
        s.mirrors.insert(upstream.host(), vec![server.host()]);
        let client = RegistryClient::new(s).unwrap();

        let started = std::time::Instant::now();
        let repo = client.repository(&server.host(), "busybox", Credentials::Anonymous);
        let mut stream = repo.blob(&digest, Some(1000)).await.unwrap();
        let err = read_all(&mut stream).await.unwrap_err();
        assert!(
            matches!(&err, RegistryError::Stalled { what, .. } if *what == format!("blob {digest}")),
            "{err:?}"
        );
        assert!(err.to_string().contains(&digest), "{err}");
        let err = repo.manifest("latest").await.unwrap_err();
        assert!(
            matches!(&err, RegistryError::Stalled { what, .. } if what == "manifest latest"),
            "{err:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );

        // A stalled mirror is passed over for the next endpoint.
        let repo = client.repository(&upstream.host(), "busybox", Credentials::Anonymous);
        repo.manifest("latest").await.unwrap();
        assert_eq!(upstream.requests().len(), 1);
    }
}
