//! The channel framing over WebSocket: every binary message starts with
//! its channel's byte (exec and attach: 0 stdin, 1 stdout, 2 stderr,
//! 3 error, 4 resize; port-forward: 2i data and 2i+1 error of the i-th
//! port), the rest is the payload. The `base64.` protocols send text
//! messages instead: the channel as an ASCII digit (`'0' + channel`), then
//! the payload in padded base64. In v5 the client may send `[255, c]` to
//! close channel `c` (the end of its stdin). Pings are answered by the
//! WebSocket layer; the close is code 1000.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::sync::{mpsc, watch, Mutex};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tracing::debug;

use super::protocol::{Protocol, Version};

/// The close message of channel protocol v5.
const CLOSE_CHANNEL: u8 = 255;
/// Messages queued for the client before writers wait.
const OUT_QUEUE: usize = 64;
/// Messages queued per input channel before the connection waits.
const IN_QUEUE: usize = 16;

pub type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

enum Out {
    Data(u8, Bytes),
    Close,
}

/// Writes one channel of the connection.
#[derive(Clone)]
pub struct ChannelWriter {
    channel: u8,
    out: mpsc::Sender<Out>,
}

impl ChannelWriter {
    pub async fn write(&self, data: &[u8]) -> io::Result<()> {
        self.send(Bytes::copy_from_slice(data)).await
    }

    /// Sends a message even when it is empty (an empty message announces
    /// a channel; port-forward's first message is the port).
    pub async fn send(&self, data: Bytes) -> io::Result<()> {
        self.out
            .send(Out::Data(self.channel, data))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

/// A WebSocket connection serving channels.
pub struct WsConnection {
    out: mpsc::Sender<Out>,
    gone: watch::Receiver<bool>,
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl WsConnection {
    /// Serves `socket`: messages on the channels in `inputs` reach the
    /// receivers returned for them; everything else from the client is
    /// dropped.
    pub fn serve(
        socket: Socket,
        protocol: Protocol,
        inputs: &[u8],
    ) -> (Arc<WsConnection>, HashMap<u8, mpsc::Receiver<Bytes>>) {
        let (sink, stream) = socket.split();
        let (out, out_rx) = mpsc::channel(OUT_QUEUE);
        let (gone_tx, gone) = watch::channel(false);
        let mut senders = HashMap::new();
        let mut receivers = HashMap::new();
        for &c in inputs {
            let (tx, rx) = mpsc::channel(IN_QUEUE);
            senders.insert(c, tx);
            receivers.insert(c, rx);
        }
        tokio::spawn(read_messages(stream, protocol, senders, gone_tx));
        let writer = tokio::spawn(write_messages(sink, protocol.base64, out_rx));
        let conn = WsConnection {
            out,
            gone,
            writer: Mutex::new(Some(writer)),
        };
        (Arc::new(conn), receivers)
    }

    pub fn channel(&self, channel: u8) -> ChannelWriter {
        ChannelWriter {
            channel,
            out: self.out.clone(),
        }
    }

    /// Resolves when the client closed the connection or it broke.
    pub async fn gone(&self) {
        let mut gone = self.gone.clone();
        let _ = gone.wait_for(|g| *g).await;
    }

    /// Sends what is queued, then the close (1000), and ends the writer.
    pub async fn close(&self) {
        let _ = self.out.send(Out::Close).await;
        if let Some(writer) = self.writer.lock().await.take() {
            let _ = writer.await;
        }
    }
}

/// Dispatches the client's messages to the input channels until the
/// connection ends.
async fn read_messages(
    mut stream: futures_util::stream::SplitStream<Socket>,
    protocol: Protocol,
    mut inputs: HashMap<u8, mpsc::Sender<Bytes>>,
    gone: watch::Sender<bool>,
) {
    while let Some(message) = stream.next().await {
        let Ok(message) = message else { break };
        let Some((channel, payload)) = decode(message, protocol.base64) else {
            continue;
        };
        if channel == CLOSE_CHANNEL && protocol.version >= Version::V5 {
            if let Some(&closed) = payload.first() {
                inputs.remove(&closed);
            }
            continue;
        }
        if payload.is_empty() {
            continue;
        }
        if let Some(tx) = inputs.get(&channel) {
            if tx.send(payload).await.is_err() {
                inputs.remove(&channel);
            }
        }
    }
    debug!("websocket client went away");
    drop(inputs);
    let _ = gone.send(true);
}

/// A client message as (channel, payload); `None` for control messages
/// and malformed ones.
fn decode(message: Message, base64: bool) -> Option<(u8, Bytes)> {
    match message {
        Message::Binary(data) if !base64 => {
            let (&channel, _) = data.split_first()?;
            Some((channel, data.slice(1..)))
        }
        Message::Text(text) if base64 => {
            let text = text.as_str();
            let channel = text.as_bytes().first()?.checked_sub(b'0')?;
            let payload = base64::engine::general_purpose::STANDARD
                .decode(&text[1..])
                .ok()?;
            Some((channel, payload.into()))
        }
        _ => None,
    }
}

/// The message that carries `data` on `channel`.
fn encode(channel: u8, data: &[u8], base64: bool) -> Message {
    if base64 {
        let mut text = String::with_capacity(1 + data.len().div_ceil(3) * 4);
        text.push(char::from(b'0' + channel));
        base64::engine::general_purpose::STANDARD.encode_string(data, &mut text);
        return Message::text(text);
    }
    let mut bytes = Vec::with_capacity(1 + data.len());
    bytes.push(channel);
    bytes.extend_from_slice(data);
    Message::binary(bytes)
}

async fn write_messages(
    mut sink: futures_util::stream::SplitSink<Socket, Message>,
    base64: bool,
    mut out: mpsc::Receiver<Out>,
) {
    while let Some(next) = out.recv().await {
        let message = match next {
            Out::Data(channel, data) => encode(channel, &data, base64),
            Out::Close => {
                let close = CloseFrame {
                    code: CloseCode::Normal,
                    reason: "".into(),
                };
                let _ = sink.send(Message::Close(Some(close))).await;
                break;
            }
        };
        if sink.send(message).await.is_err() {
            break;
        }
    }
    let _ = sink.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_messages_carry_the_channel_first() {
        let m = encode(1, b"hi", false);
        assert_eq!(m, Message::binary(vec![1, b'h', b'i']));
        assert_eq!(
            decode(Message::binary(vec![0, b'x']), false),
            Some((0, Bytes::from_static(b"x")))
        );
        assert_eq!(decode(Message::binary(vec![]), false), None);
        assert_eq!(decode(Message::text("0eA=="), false), None);
    }

    #[test]
    fn base64_messages_are_text() {
        assert_eq!(encode(2, b"hi", true), Message::text("2aGk="));
        assert_eq!(
            decode(Message::text("0aGk="), true),
            Some((0, Bytes::from_static(b"hi")))
        );
        assert_eq!(decode(Message::text("0!!"), true), None);
        assert_eq!(decode(Message::binary(vec![0, 1]), true), None);
    }
}
