//! Sending a request with the Authorization its endpoint's challenge asks
//! for, answering one new challenge.

use base64::Engine as _;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION};
use reqwest::{StatusCode, Url};

use super::challenge::{pick_challenge, Challenge};
use super::error::Ctx;
use super::repository::Source;
use super::token::TokenKey;
use super::{lock, Credentials, RegistryError, Repository};

impl Repository {
    /// Sends a GET, answering one authentication challenge.
    pub(super) async fn send(
        &self,
        src: &Source,
        url: Url,
        accept: Option<&'static str>,
        ctx: &Ctx<'_>,
    ) -> Result<reqwest::Response, RegistryError> {
        let client = &self.inner.client;
        let base = &src.endpoint.base;
        let known = lock(&client.challenges).get(base).cloned();
        let mut auth = self.authorization(src, known.as_ref(), ctx).await?;
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
            let resp = req.send().await.map_err(|e| ctx.transport(&e, ""))?;
            if resp.status() != StatusCode::UNAUTHORIZED
                || retried
                || matches!(src.credentials, Credentials::RegistryToken(_))
            {
                return Ok(resp);
            }
            let Some(challenge) = pick_challenge(resp.headers()) else {
                return Ok(resp);
            };
            lock(&client.challenges).insert(base.clone(), challenge.clone());
            if let Some((_, Some(key))) = &auth {
                // The cached token was refused (revoked, or expired early).
                lock(&client.tokens).remove(key);
            }
            let next = self.authorization(src, Some(&challenge), ctx).await?;
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
        src: &Source,
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
        match (&src.credentials, challenge) {
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
                let (token, key) = self.token(src, realm, service.as_deref(), ctx).await?;
                Ok(Some((header(format!("Bearer {token}"))?, Some(key))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::registry::test_support::*;
    use crate::image::registry::MEDIA_TYPE_OCI_MANIFEST;

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
}
