//! The streaming server: where `kubectl exec`, `attach`, `port-forward`
//! and `cp` (and crictl's) reach containers. `Exec`, `Attach` and
//! `PortForward` only check their request, store it under a single-use
//! token ([`tokens`]) and answer with a URL on this server; the client
//! then upgrades an HTTP request to that URL to SPDY/3.1 or WebSocket
//! ([`http`]) and speaks a channel protocol over it ([`protocol`]).
//! kubelet always proxies to it from its own port; the server listens on
//! loopback unless configured otherwise, so pods cannot reach it.

mod attach;
mod dial;
mod exec;
mod http;
mod portforward;
pub mod protocol;
mod session;
mod spdy;
mod tokens;
mod websocket;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tracing::{debug, warn};

pub use attach::AttachRequest;
pub use exec::ExecRequest;
pub use tokens::TokenError;

use crate::config::StreamingConfig;
use crate::container::Containers;
use crate::pod::PodLookup;
use http::Upgraded;
use protocol::{Kind, Protocol};
use session::{Input, Link, Output, Stdio};
use spdy::Wanted;
use tokens::RequestCache;
use websocket::{Socket, WsConnection};

/// A request waiting for its connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    Exec(ExecRequest),
    Attach(AttachRequest),
    /// The sandbox, and the ports the request named (WebSocket clients
    /// may name them in the URL instead; SPDY clients per stream).
    PortForward(String, Vec<u16>),
}

impl Pending {
    fn kind(&self) -> Kind {
        match self {
            Pending::Exec(_) => Kind::Exec,
            Pending::Attach(_) => Kind::Attach,
            Pending::PortForward(..) => Kind::PortForward,
        }
    }
}

pub struct StreamingServer {
    base_url: String,
    requests: RequestCache<Pending>,
    containers: Arc<Containers>,
    pods: Arc<dyn PodLookup>,
}

impl StreamingServer {
    /// Binds the configured address and serves it from now on.
    pub async fn start(
        config: &StreamingConfig,
        containers: Arc<Containers>,
        pods: Arc<dyn PodLookup>,
    ) -> std::io::Result<Arc<StreamingServer>> {
        let address: SocketAddr = (
            config
                .address
                .parse::<std::net::IpAddr>()
                .map_err(std::io::Error::other)?,
            config.port,
        )
            .into();
        let listener = tokio::net::TcpListener::bind(address).await?;
        let server = Arc::new(StreamingServer {
            base_url: format!("http://{}", listener.local_addr()?),
            requests: RequestCache::new(
                Duration::from_secs(config.token_ttl_secs),
                config.max_pending,
            ),
            containers,
            pods,
        });
        tokio::spawn(accept(listener, server.clone()));
        Ok(server)
    }

    /// `http://ADDRESS:PORT`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Stores `pending` and returns the URL that serves it, once.
    pub fn issue(&self, pending: Pending) -> Result<String, TokenError> {
        let route = pending.kind().route();
        let token = self.requests.insert(pending)?;
        Ok(format!("{}/{route}/{token}", self.base_url))
    }

    /// Serves an upgraded connection.
    async fn serve_session(
        &self,
        pending: Pending,
        protocol: Protocol,
        link: Upgraded,
        query: &str,
    ) {
        let _open = crate::metrics::streaming_session(pending.kind().route());
        match pending {
            Pending::Exec(req) => {
                if let Some(stdio) = open_stdio(link, protocol, req.stdio).await {
                    exec::run(&self.containers, req, stdio).await;
                }
            }
            Pending::Attach(req) => {
                if let Some(stdio) = open_stdio(link, protocol, req.stdio).await {
                    attach::run(&self.containers, req, stdio).await;
                }
            }
            Pending::PortForward(sandbox, ports) => {
                let ports = ports_in_query(query).unwrap_or(ports);
                self.serve_port_forward(&sandbox, ports, protocol, link)
                    .await
            }
        }
    }

    async fn serve_port_forward(
        &self,
        sandbox: &str,
        ports: Vec<u16>,
        protocol: Protocol,
        link: Upgraded,
    ) {
        let target = match self.port_forward_target(sandbox) {
            Ok(t) => t,
            Err(e) => return warn!("port-forward to {sandbox}: {e}"),
        };
        match link {
            Upgraded::Spdy(io) => {
                let (conn, incoming) = peapod_spdy::serve(io, Bytes::new());
                portforward::serve_spdy(conn, incoming, target).await;
            }
            Upgraded::WebSocket(socket) => {
                portforward::serve_websocket(*socket, protocol, ports, target).await;
            }
        }
    }

    /// The pod's network namespace, looked up when the connection comes.
    fn port_forward_target(
        &self,
        sandbox: &str,
    ) -> Result<portforward::Target, crate::errors::Error> {
        let pod = self.pods.pod(sandbox)?;
        let netns = match pod.host_network {
            true => None,
            false => pod.namespaces()?.network.clone(),
        };
        Ok(portforward::Target {
            sandbox_id: pod.id,
            netns,
        })
    }
}

/// `port=N` pairs of a URL's query, if any.
fn ports_in_query(query: &str) -> Option<Vec<u16>> {
    let ports: Vec<u16> = query
        .split('&')
        .filter_map(|kv| kv.strip_prefix("port="))
        .filter_map(|p| p.parse().ok())
        .collect();
    (!ports.is_empty()).then_some(ports)
}

/// The session's streams, once the client has opened them.
async fn open_stdio(link: Upgraded, protocol: Protocol, wanted: Wanted) -> Option<Stdio> {
    match link {
        Upgraded::Spdy(io) => {
            let (conn, incoming) = peapod_spdy::serve(io, Bytes::new());
            match spdy::accept_stdio(conn.clone(), incoming, protocol, wanted).await {
                Ok(stdio) => Some(stdio),
                Err(e) => {
                    debug!("streaming session not started: {e}");
                    conn.close().await;
                    None
                }
            }
        }
        Upgraded::WebSocket(socket) => Some(websocket_stdio(*socket, protocol, wanted).await),
    }
}

/// Channels of exec and attach over WebSocket.
const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;

async fn websocket_stdio(socket: Socket, protocol: Protocol, wanted: Wanted) -> Stdio {
    let mut inputs = Vec::new();
    if wanted.stdin {
        inputs.push(STDIN);
    }
    if wanted.tty {
        inputs.push(RESIZE);
    }
    let (conn, mut receivers): (Arc<WsConnection>, HashMap<u8, _>) =
        WsConnection::serve(socket, protocol, &inputs);
    let stdout = wanted.stdout.then(|| conn.channel(STDOUT));
    let stderr = (wanted.stderr && !wanted.tty).then(|| conn.channel(STDERR));
    let error = conn.channel(ERROR);
    // The first output channel opens with an empty message.
    let first = stdout.as_ref().or(stderr.as_ref()).unwrap_or(&error);
    let _ = first.send(Bytes::new()).await;
    Stdio {
        protocol,
        stdin: receivers.remove(&STDIN).map(Input::Channel),
        resize: receivers.remove(&RESIZE).map(Input::Channel),
        stdout: stdout.map(Output::Channel),
        stderr: stderr.map(Output::Channel),
        error: Output::Channel(error),
        link: Link::WebSocket(conn),
    }
}

/// Accepts connections and serves each over HTTP/1.1 with upgrades.
async fn accept(listener: tokio::net::TcpListener, server: Arc<StreamingServer>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                warn!("streaming server: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let server = server.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| http::handle(server.clone(), req));
            let conn = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                debug!("streaming connection: {e}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_from_a_query() {
        assert_eq!(ports_in_query("port=80&port=8080"), Some(vec![80, 8080]));
        assert_eq!(ports_in_query("other=1"), None);
        assert_eq!(ports_in_query(""), None);
    }
}
