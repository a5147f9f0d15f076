//! The HTTP side: routes, the token's request, and the upgrade to SPDY/3.1
//! or WebSocket (chosen by the request's `Upgrade` header) with the
//! sub-protocol both sides speak.
//!
//! Answers before an upgrade: 404 for an unknown route, or a token that is
//! unknown, used, expired or issued for another route (a token is used up
//! by any request that names it); 405 for a method other than GET and
//! POST; 400 without a usable upgrade (or SPDY without
//! `X-Stream-Protocol-Version`); 403 when no protocol is common, listing
//! the server's in `X-Accepted-Stream-Protocol-Versions`.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONNECTION, UPGRADE};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;
use tracing::{debug, warn};

use super::protocol::{self, Kind, Protocol, Transport};
use super::StreamingServer;

const STREAM_PROTOCOL: &str = "x-stream-protocol-version";
const ACCEPTED_PROTOCOLS: &str = "x-accepted-stream-protocol-versions";
const WS_PROTOCOL: &str = "sec-websocket-protocol";
const WS_KEY: &str = "sec-websocket-key";
const WS_ACCEPT: &str = "sec-websocket-accept";
const SPDY: &str = "SPDY/3.1";

type Body = Full<Bytes>;

/// Answers one request; an accepted upgrade goes on in a task of its own.
pub async fn handle(
    server: Arc<StreamingServer>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, Infallible> {
    Ok(match upgrade(&server, req) {
        Ok(response) => response,
        Err((status, text)) => {
            debug!(%status, "streaming request refused: {text}");
            plain(status, text)
        }
    })
}

type Refusal = (StatusCode, String);

fn upgrade(
    server: &Arc<StreamingServer>,
    mut req: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, Refusal> {
    let (kind, token) = route(req.uri().path()).ok_or(not_found())?;
    if req.method() != Method::GET && req.method() != Method::POST {
        return Err((StatusCode::METHOD_NOT_ALLOWED, "GET or POST only".into()));
    }
    let pending = server.requests.take(token).ok_or(not_found())?;
    if pending.kind() != kind {
        return Err(not_found());
    }
    let transport = transport(req.headers())?;
    let protocol = negotiate(req.headers(), kind, transport)?;
    let response = switching(req.headers(), transport, protocol)?;
    let query = req.uri().query().unwrap_or_default().to_string();
    let on_upgrade = hyper::upgrade::on(&mut req);
    let server = server.clone();
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => TokioIo::new(u),
            Err(e) => return warn!("streaming upgrade failed: {e}"),
        };
        let link = match transport {
            Transport::Spdy => Upgraded::Spdy(upgraded),
            Transport::WebSocket => Upgraded::WebSocket(Box::new(
                WebSocketStream::from_raw_socket(upgraded, Role::Server, None).await,
            )),
        };
        server.serve_session(pending, protocol, link, &query).await;
    });
    Ok(response)
}

/// An upgraded connection.
pub enum Upgraded {
    Spdy(TokioIo<hyper::upgrade::Upgraded>),
    WebSocket(Box<super::websocket::Socket>),
}

/// `/exec/TOKEN`, `/attach/TOKEN`, `/portforward/TOKEN`.
fn route(path: &str) -> Option<(Kind, &str)> {
    let (route, token) = path.strip_prefix('/')?.split_once('/')?;
    let kind = Kind::from_route(route)?;
    (!token.is_empty() && !token.contains('/')).then_some((kind, token))
}

fn not_found() -> Refusal {
    (StatusCode::NOT_FOUND, "no such streaming session".into())
}

fn header_has(headers: &HeaderMap, name: hyper::header::HeaderName, word: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case(word))
}

/// WebSocket when the client asks for it, else SPDY/3.1.
fn transport(headers: &HeaderMap) -> Result<Transport, Refusal> {
    if !header_has(headers, CONNECTION, "upgrade") {
        return Err((StatusCode::BAD_REQUEST, "not an upgrade request".into()));
    }
    if header_has(headers, UPGRADE, "websocket") {
        return Ok(Transport::WebSocket);
    }
    if header_has(headers, UPGRADE, SPDY) {
        return Ok(Transport::Spdy);
    }
    Err((
        StatusCode::BAD_REQUEST,
        format!("upgrade to {SPDY} or websocket"),
    ))
}

fn negotiate(headers: &HeaderMap, kind: Kind, transport: Transport) -> Result<Protocol, Refusal> {
    let name = match transport {
        Transport::Spdy => STREAM_PROTOCOL,
        Transport::WebSocket => WS_PROTOCOL,
    };
    let offered = protocol::offers(headers.get_all(name).iter().filter_map(|v| v.to_str().ok()));
    let supported = protocol::supported(kind, transport);
    if offered.is_empty() {
        return match transport {
            Transport::Spdy => Err((StatusCode::BAD_REQUEST, format!("no {name} header"))),
            Transport::WebSocket => Ok(protocol::WEBSOCKET_DEFAULT),
        };
    }
    protocol::choose(&offered, supported).ok_or_else(|| {
        (
            StatusCode::FORBIDDEN,
            format!("no common protocol among {}", offered.join(", ")),
        )
    })
}

/// The 101 answer.
fn switching(
    headers: &HeaderMap,
    transport: Transport,
    protocol: Protocol,
) -> Result<Response<Body>, Refusal> {
    let mut response = Response::new(Body::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    match transport {
        Transport::Spdy => {
            h.insert(UPGRADE, HeaderValue::from_static(SPDY));
            h.insert(STREAM_PROTOCOL, HeaderValue::from_static(protocol.name));
        }
        Transport::WebSocket => {
            let key = headers
                .get(WS_KEY)
                .ok_or((StatusCode::BAD_REQUEST, format!("no {WS_KEY} header")))?;
            let accept = derive_accept_key(key.as_bytes());
            h.insert(UPGRADE, HeaderValue::from_static("websocket"));
            h.insert(
                WS_ACCEPT,
                HeaderValue::from_str(&accept).expect("base64 is a header value"),
            );
            if !protocol.name.is_empty() {
                h.insert(WS_PROTOCOL, HeaderValue::from_static(protocol.name));
            }
        }
    }
    Ok(response)
}

/// A refusal, with the protocols the server speaks when none was common.
fn plain(status: StatusCode, text: String) -> Response<Body> {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    if status == StatusCode::FORBIDDEN {
        let names = [Kind::Exec, Kind::PortForward]
            .into_iter()
            .flat_map(|k| protocol::supported(k, Transport::Spdy));
        for p in names {
            response
                .headers_mut()
                .append(ACCEPTED_PROTOCOLS, HeaderValue::from_static(p.name));
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn routes() {
        assert_eq!(route("/exec/abc"), Some((Kind::Exec, "abc")));
        assert_eq!(
            route("/portforward/x_y-z"),
            Some((Kind::PortForward, "x_y-z"))
        );
        assert_eq!(route("/exec/"), None);
        assert_eq!(route("/exec/a/b"), None);
        assert_eq!(route("/other/abc"), None);
        assert_eq!(route("exec/abc"), None);
    }

    #[test]
    fn transports() {
        let ws = headers(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "WebSocket"),
        ]);
        assert_eq!(transport(&ws), Ok(Transport::WebSocket));
        let spdy = headers(&[("connection", "Upgrade"), ("upgrade", "SPDY/3.1")]);
        assert_eq!(transport(&spdy), Ok(Transport::Spdy));
        let none = headers(&[("upgrade", "SPDY/3.1")]);
        assert_eq!(transport(&none).unwrap_err().0, StatusCode::BAD_REQUEST);
        let other = headers(&[("connection", "upgrade"), ("upgrade", "h2c")]);
        assert_eq!(transport(&other).unwrap_err().0, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn negotiation() {
        let h = headers(&[
            (STREAM_PROTOCOL, "v5.channel.k8s.io"),
            (STREAM_PROTOCOL, "v4.channel.k8s.io, v3.channel.k8s.io"),
        ]);
        let p = negotiate(&h, Kind::Exec, Transport::Spdy).unwrap();
        assert_eq!(p.name, "v4.channel.k8s.io");
        let missing = negotiate(&HeaderMap::new(), Kind::Exec, Transport::Spdy);
        assert_eq!(missing.unwrap_err().0, StatusCode::BAD_REQUEST);
        let ws = negotiate(&HeaderMap::new(), Kind::Attach, Transport::WebSocket).unwrap();
        assert_eq!(ws.name, "");
        let h = headers(&[(STREAM_PROTOCOL, "v9.channel.k8s.io")]);
        let refused = negotiate(&h, Kind::Exec, Transport::Spdy).unwrap_err();
        assert_eq!(refused.0, StatusCode::FORBIDDEN);
        let answer = plain(refused.0, refused.1);
        let listed: Vec<_> = answer
            .headers()
            .get_all(ACCEPTED_PROTOCOLS)
            .iter()
            .collect();
        assert_eq!(listed.len(), 5);
    }

    #[test]
    fn websocket_accept_key() {
        // RFC 6455's example.
        let h = headers(&[(WS_KEY, "dGhlIHNhbXBsZSBub25jZQ==")]);
        let p = protocol::choose(
            &["v4.channel.k8s.io".to_string()],
            protocol::supported(Kind::Exec, Transport::WebSocket),
        )
        .unwrap();
        let response = switching(&h, Transport::WebSocket, p).unwrap();
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(
            response.headers()[WS_ACCEPT],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(response.headers()[WS_PROTOCOL], "v4.channel.k8s.io");
    }
}
