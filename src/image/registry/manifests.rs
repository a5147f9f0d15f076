//! Fetching manifests and indexes: by tag or digest, size-capped, hashed,
//! and typed by Content-Type or by their own shape.

use bytes::Bytes;
use reqwest::header::CONTENT_TYPE;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::http::read_body;
use super::names::is_valid_tag;
use super::{hex, RegistryError, Repository};
use super::{
    MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST_LIST, MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST,
};

/// Docker schema 1 is deliberately absent: it is deprecated and unsigned
/// content we cannot verify by digest the same way.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

/// Manifests are small JSON documents; anything bigger is a broken or
/// hostile registry.
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;

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

impl Repository {
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
        let src = &self.inner.sources[i];
        let ctx = self.ctx(what, src);
        let url = self.url(src, "manifests", reference)?;
        let mut resp = self.send(src, url, Some(MANIFEST_ACCEPT), &ctx).await?;
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
            .map_err(|e| ctx.transport(&e, "reading body: "))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::registry::test_support::*;
    use crate::image::registry::{Credentials, USER_AGENT};

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
}
