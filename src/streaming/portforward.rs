//! Port-forward sessions: each forwarded connection is a connection to
//! `localhost:<port>` in the pod's network namespace, copied both ways.
//! The client's end of data half-closes the pod's connection, whose
//! answer still flows back until the pod closes it. When the pod closes
//! first, the client's data in flight gets [`GRACE`], then the forward
//! ends: clients wait for that end (SPDY: of the error stream; WebSocket:
//! of the connection) before they close their side.
//!
//! SPDY: per connection the client opens an error stream and a data
//! stream, both with the headers `port` and `requestid`. A connection
//! that fails is reported on its error stream; the session goes on.
//! WebSocket: the ports are fixed when the connection is made; the i-th
//! port has the data channel 2i and the error channel 2i+1, and each
//! channel's first message is its port (2 bytes, little-endian).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use peapod_spdy::{Connection, Incoming, Stream};
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tracing::debug;

use super::dial::dial;
use super::protocol::Protocol;
use super::session::{Input, Output};
use super::websocket::{Socket, WsConnection};

/// How long the second stream of a pair may take.
const PAIR_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the client's last data may take once the pod closed.
const GRACE: Duration = Duration::from_secs(1);
/// Bytes read from the pod's side at once.
const CHUNK: usize = 32 * 1024;

/// The pod a port-forward session reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub sandbox_id: String,
    /// The pod's network namespace; `None`: the host's.
    pub netns: Option<PathBuf>,
}

/// The streams of one forwarded connection.
#[derive(Default)]
struct Pair {
    error: Option<Stream>,
    data: Option<Stream>,
}

type Pairs = Arc<Mutex<HashMap<String, Pair>>>;

/// Serves a SPDY port-forward connection until the client closes it.
pub async fn serve_spdy(conn: Connection, mut incoming: Incoming, target: Target) {
    let target = Arc::new(target);
    let pairs: Pairs = Arc::default();
    while let Some(stream) = incoming.next().await {
        let Some((port, kind)) = stream_kind(&stream) else {
            stream.writer.reset().await;
            continue;
        };
        let key = pair_key(&stream, kind);
        let complete = {
            let mut pairs = pairs.lock().await;
            let pair = pairs.entry(key.clone()).or_default();
            let slot = match kind {
                Kind::Error => &mut pair.error,
                Kind::Data => &mut pair.data,
            };
            if slot.is_some() {
                stream.writer.reset().await;
                continue;
            }
            *slot = Some(stream);
            match (pair.error.is_some(), pair.data.is_some()) {
                (true, true) => pairs.remove(&key),
                _ => None,
            }
        };
        match complete {
            Some(Pair {
                error: Some(error),
                data: Some(data),
            }) => {
                tokio::spawn(forward_pair(target.clone(), port, error, data));
            }
            _ => {
                tokio::spawn(expire_pair(pairs.clone(), key));
            }
        }
    }
    conn.close().await;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Error,
    Data,
}

/// The port and the kind of a stream; `None` when either is invalid.
fn stream_kind(stream: &Stream) -> Option<(u16, Kind)> {
    let port = stream
        .header("port")?
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)?;
    let kind = match stream.header("streamtype")? {
        "error" => Kind::Error,
        "data" => Kind::Data,
        _ => return None,
    };
    Some((port, kind))
}

/// Pairs are found by `requestid`; clients too old to send one open the
/// error stream just before the data stream (ids 2 apart).
fn pair_key(stream: &Stream, kind: Kind) -> String {
    match stream.header("requestid") {
        Some(id) => id.to_string(),
        None => match kind {
            Kind::Error => format!("stream-{}", stream.id),
            Kind::Data => format!("stream-{}", stream.id.saturating_sub(2)),
        },
    }
}

/// A pair still incomplete after [`PAIR_TIMEOUT`] is given up.
async fn expire_pair(pairs: Pairs, key: String) {
    tokio::time::sleep(PAIR_TIMEOUT).await;
    let Some(pair) = pairs.lock().await.remove(&key) else {
        return;
    };
    if let Some(error) = pair.error {
        let message = format!("timed out waiting for the data stream of request {key}");
        let _ = error.writer.write(message.as_bytes()).await;
        error.writer.close().await;
    }
    if let Some(data) = pair.data {
        data.writer.reset().await;
    }
}

async fn forward_pair(target: Arc<Target>, port: u16, error: Stream, data: Stream) {
    match dial(target.netns.as_deref(), port).await {
        Ok(conn) => {
            forward(conn, Input::Spdy(data.reader), Output::Spdy(data.writer)).await;
            error.writer.close().await;
        }
        Err(e) => {
            let message = dial_error(&target, port, &e);
            debug!("{message}");
            let _ = error.writer.write(message.as_bytes()).await;
            error.writer.close().await;
            data.writer.reset().await;
        }
    }
}

fn dial_error(target: &Target, port: u16, e: &std::io::Error) -> String {
    format!(
        "error forwarding port {port} to pod {}: {e}",
        target.sandbox_id
    )
}

/// Copies both ways until the pod closes (and a little after, see
/// [`GRACE`]).
async fn forward(conn: TcpStream, input: Input, out: Output) {
    let (read, write) = conn.into_split();
    let mut to_pod = tokio::spawn(input.copy_to(write));
    copy_from_pod(read, out).await;
    if tokio::time::timeout(GRACE, &mut to_pod).await.is_err() {
        to_pod.abort();
    }
}

/// The pod's data to the client; its end closes the client's stream.
async fn copy_from_pod(mut read: OwnedReadHalf, out: Output) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if out.write(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
    out.close().await;
}

/// Serves a WebSocket port-forward connection for `ports`, until every
/// port's connection has ended or the client goes away.
pub async fn serve_websocket(socket: Socket, protocol: Protocol, ports: Vec<u16>, target: Target) {
    let data_channels: Vec<u8> = (0..ports.len()).map(|i| (2 * i) as u8).collect();
    let (conn, mut inputs) = WsConnection::serve(socket, protocol, &data_channels);
    let mut forwards = Vec::new();
    for (i, port) in ports.into_iter().enumerate() {
        let (data, error) = (conn.channel((2 * i) as u8), conn.channel((2 * i + 1) as u8));
        let header = Bytes::copy_from_slice(&port.to_le_bytes());
        let _ = data.send(header.clone()).await;
        let _ = error.send(header).await;
        let input = inputs.remove(&((2 * i) as u8));
        let target = &target;
        forwards.push(async move {
            let Some(input) = input else { return };
            match dial(target.netns.as_deref(), port).await {
                Ok(c) => forward(c, Input::Channel(input), Output::Channel(data)).await,
                Err(e) => {
                    let _ = error.write(dial_error(target, port, &e).as_bytes()).await;
                }
            }
        });
    }
    tokio::select! {
        _ = futures_util::future::join_all(forwards) => {}
        () = conn.gone() => {}
    }
    conn.close().await;
}
