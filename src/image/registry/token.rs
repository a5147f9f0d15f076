//! Bearer tokens: fetched from the challenge's token server with the pull's
//! credentials, cached per endpoint, scope and credentials.

use std::time::{Duration, Instant};

use reqwest::Url;
use serde::Deserialize;

use super::endpoints::{is_insecure_in, url_host_port};
use super::error::Ctx;
use super::http::read_body;
use super::repository::Source;
use super::{lock, Credentials, RegistryError, Repository};

const MAX_TOKEN_BYTES: usize = 1 << 20;
/// The token spec's default when the server gives no `expires_in`.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct TokenKey {
    endpoint: String,
    realm: String,
    service: String,
    scope: String,
    credentials: String,
}

pub(super) struct CachedToken {
    token: String,
    expires: Instant,
}

#[derive(Deserialize)]
struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

impl Repository {
    /// A pull token for this repository from the cache or the token server.
    pub(super) async fn token(
        &self,
        src: &Source,
        realm: &str,
        service: Option<&str>,
        ctx: &Ctx<'_>,
    ) -> Result<(String, TokenKey), RegistryError> {
        let client = &self.inner.client;
        let scope = format!("repository:{}:pull", src.repository);
        let key = TokenKey {
            endpoint: src.endpoint.base.clone(),
            realm: realm.to_string(),
            service: service.unwrap_or_default().to_string(),
            scope: scope.clone(),
            credentials: src.credentials.fingerprint(),
        };
        {
            let mut tokens = lock(&client.tokens);
            let now = Instant::now();
            tokens.retain(|_, t| t.expires > now);
            if let Some(t) = tokens.get(&key) {
                return Ok((t.token.clone(), key));
            }
        }
        let (token, lifetime) = self.fetch_token(src, realm, service, &scope, ctx).await?;
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

    /// Asks the realm's token server for a pull token with this session's
    /// credentials; returns it with its lifetime.
    async fn fetch_token(
        &self,
        src: &Source,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        ctx: &Ctx<'_>,
    ) -> Result<(String, Duration), RegistryError> {
        let url = self.token_server(src, realm, ctx)?;
        let mut resp = self
            .token_request(&src.credentials, url, service, scope)
            .send()
            .await
            .map_err(|e| ctx.transport(&e, &format!("token server {realm}: ")))?;
        if !resp.status().is_success() {
            return Err(ctx
                .status_error(resp, &format!("token server {realm}: "))
                .await);
        }
        let (token, lifetime) = read_token_response(&mut resp, realm, ctx).await?;
        tracing::debug!(realm, scope, ?lifetime, "got registry token");
        Ok((token, lifetime))
    }

    /// The realm as a URL. Credentials go only over HTTPS or to a host that
    /// is insecure by configuration (peapod's, or the registries.conf
    /// `insecure` of the endpoint that sent the challenge).
    fn token_server(&self, src: &Source, realm: &str, ctx: &Ctx<'_>) -> Result<Url, RegistryError> {
        let client = &self.inner.client;
        let url = Url::parse(realm)
            .map_err(|e| ctx.protocol(format!("token server realm {realm:?} is not a URL: {e}")))?;
        let secure = match url.scheme() {
            "https" => true,
            "http" => {
                let host = url_host_port(&url);
                is_insecure_in(&client.settings.insecure, &host)
                    || src.endpoint.is_plain_http_at(&host)
            }
            _ => return Err(ctx.protocol(format!("token server realm {realm:?} is not http(s)"))),
        };
        if !secure && src.credentials != Credentials::Anonymous {
            return Err(ctx.unauthorized(format!(
                "refusing to send credentials to plain-HTTP token server {realm} (host not insecure)"
            )));
        }
        Ok(url)
    }

    /// An identity token is exchanged by an OAuth2 form POST; anything else
    /// asks by GET with the scope in the query (and Basic credentials when
    /// there are some).
    fn token_request(
        &self,
        credentials: &Credentials,
        mut url: Url,
        service: Option<&str>,
        scope: &str,
    ) -> reqwest::RequestBuilder {
        let client = &self.inner.client;
        if let Credentials::IdentityToken(refresh) = credentials {
            let mut form = vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh.as_str()),
                ("scope", scope),
                ("client_id", "peapod"),
            ];
            if let Some(service) = service {
                form.push(("service", service));
            }
            return client.http.post(url).form(&form);
        }
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
            Credentials::Basic { username, password } => req.basic_auth(username, Some(password)),
            _ => req,
        }
    }
}

/// The token (or OAuth2 access token) of a token server's answer and how
/// long it lives.
async fn read_token_response(
    resp: &mut reqwest::Response,
    realm: &str,
    ctx: &Ctx<'_>,
) -> Result<(String, Duration), RegistryError> {
    let (body, more) = read_body(resp, MAX_TOKEN_BYTES)
        .await
        .map_err(|e| ctx.transport(&e, &format!("token server {realm}: ")))?;
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
        .ok_or_else(|| ctx.protocol(format!("token server {realm}: no token in the response")))?;
    let lifetime = parsed
        .expires_in
        .filter(|&s| s > 0)
        .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
    Ok((token, lifetime))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use base64::Engine as _;

    use super::*;
    use crate::image::registry::test_support::*;
    use crate::image::registry::MEDIA_TYPE_OCI_MANIFEST;

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
}
