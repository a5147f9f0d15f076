//! An exec or attach session as both transports give it: the client's
//! stdin and terminal sizes coming in, stdout, stderr and the error
//! stream going out, and the connection's end. SPDY carries each as a
//! stream of its own, WebSocket as a channel of one connection.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::protocol::Protocol;
use super::websocket::{ChannelWriter, WsConnection};

/// How long a client may take to close the connection after the session
/// ended (it reads the last output first).
const CLIENT_CLOSE_WAIT: Duration = Duration::from_secs(60);

/// Data from the client, until its end.
pub enum Input {
    Spdy(peapod_spdy::StreamReader),
    Channel(mpsc::Receiver<Bytes>),
}

impl Input {
    /// The next data; `None` at its end (the client closed it or went away).
    pub async fn read(&mut self) -> Option<Bytes> {
        match self {
            Input::Spdy(r) => r.read().await,
            Input::Channel(rx) => rx.recv().await,
        }
    }

    /// Copies the client's data to `writer` until its end, then shuts the
    /// writer down (a pipe's close, a socket's half-close); stops early
    /// when `writer` fails.
    pub async fn copy_to(mut self, mut writer: impl AsyncWrite + Unpin) {
        while let Some(data) = self.read().await {
            if writer.write_all(&data).await.is_err() {
                return;
            }
        }
        let _ = writer.shutdown().await;
    }
}

/// Data to the client.
#[derive(Clone)]
pub enum Output {
    Spdy(peapod_spdy::StreamWriter),
    Channel(ChannelWriter),
}

impl Output {
    pub async fn write(&self, data: &[u8]) -> io::Result<()> {
        match self {
            Output::Spdy(w) => w.write(data).await,
            Output::Channel(w) => w.write(data).await,
        }
    }

    /// The end of this output (SPDY: FIN; WebSocket channels end with the
    /// connection).
    pub async fn close(&self) {
        if let Output::Spdy(w) = self {
            w.close().await;
        }
    }
}

/// The connection under a session.
pub enum Link {
    /// With the client's streams the session does not write (stdin,
    /// resize), reset at the end.
    Spdy {
        conn: peapod_spdy::Connection,
        inputs: Vec<peapod_spdy::StreamWriter>,
    },
    WebSocket(Arc<WsConnection>),
}

impl Link {
    /// Resolves when the client has gone away.
    pub async fn gone(&self) {
        match self {
            Link::Spdy { conn, .. } => conn.closed().await,
            Link::WebSocket(ws) => ws.gone().await,
        }
    }

    /// Ends the connection after what was written: SPDY waits (bounded)
    /// for the client to close it once it has read everything, as the
    /// client reads the error stream last; WebSocket sends its close.
    async fn finish(self) {
        match self {
            Link::Spdy { conn, inputs } => {
                for s in inputs {
                    s.reset().await;
                }
                let _ = tokio::time::timeout(CLIENT_CLOSE_WAIT, conn.closed()).await;
                conn.close().await;
            }
            Link::WebSocket(ws) => ws.close().await,
        }
    }
}

/// The streams of one exec or attach session.
pub struct Stdio {
    pub protocol: Protocol,
    pub stdin: Option<Input>,
    pub resize: Option<Input>,
    pub stdout: Option<Output>,
    pub stderr: Option<Output>,
    pub error: Output,
    pub link: Link,
}

impl Stdio {
    /// Writes the end message (if any) on the error stream, ends every
    /// output and then the connection.
    pub async fn finish(self, message: Vec<u8>) {
        if !message.is_empty() {
            let _ = self.error.write(&message).await;
        }
        for out in [&self.stdout, &self.stderr].into_iter().flatten() {
            out.close().await;
        }
        self.error.close().await;
        self.link.finish().await;
    }
}

/// A terminal size, as clients send it: `{"Width":80,"Height":24}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct TermSize {
    #[serde(alias = "width", alias = "WIDTH")]
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    #[serde(alias = "height", alias = "HEIGHT")]
    pub height: u16,
}

/// The terminal sizes a client sends on its resize stream; zero sizes
/// (a client that does not know its size) are skipped.
pub struct Sizes {
    input: Input,
    decoder: SizeDecoder,
    ready: std::collections::VecDeque<TermSize>,
}

impl Sizes {
    pub fn new(input: Input) -> Sizes {
        Sizes {
            input,
            decoder: SizeDecoder::default(),
            ready: Default::default(),
        }
    }

    /// The next size; `None` at the end of the stream.
    pub async fn next(&mut self) -> Option<TermSize> {
        loop {
            if let Some(size) = self.ready.pop_front() {
                return Some(size);
            }
            let data = self.input.read().await?;
            let sizes = self.decoder.feed(&data).into_iter();
            self.ready
                .extend(sizes.filter(|s| s.width > 0 && s.height > 0));
        }
    }
}

/// Splits the resize stream into sizes: JSON objects, one after another,
/// in pieces as they arrive.
#[derive(Default)]
pub struct SizeDecoder {
    pending: Vec<u8>,
}

impl SizeDecoder {
    /// The sizes complete with `data`; what cannot be parsed is dropped.
    pub fn feed(&mut self, data: &[u8]) -> Vec<TermSize> {
        self.pending.extend_from_slice(data);
        let mut sizes = Vec::new();
        let mut stream =
            serde_json::Deserializer::from_slice(&self.pending).into_iter::<TermSize>();
        let mut consumed = 0;
        loop {
            match stream.next() {
                Some(Ok(size)) => {
                    consumed = stream.byte_offset();
                    sizes.push(size);
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(_)) => {
                    consumed = self.pending.len();
                    break;
                }
                None => {
                    consumed = stream.byte_offset();
                    break;
                }
            }
        }
        self.pending.drain(..consumed);
        sizes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_in_pieces() {
        let mut d = SizeDecoder::default();
        assert!(d.feed(br#"{"Width":80,"#).is_empty());
        assert_eq!(
            d.feed(b"\"Height\":24}\n{\"Width\":100,\"Height\":30}\n{\"Wi"),
            [
                TermSize {
                    width: 80,
                    height: 24
                },
                TermSize {
                    width: 100,
                    height: 30
                }
            ]
        );
        assert_eq!(
            d.feed(br#"dth":1,"Height":2}"#),
            [TermSize {
                width: 1,
                height: 2
            }]
        );
    }

    #[test]
    fn garbage_is_dropped() {
        let mut d = SizeDecoder::default();
        assert!(d.feed(b"not json").is_empty());
        assert_eq!(d.feed(br#"{"width":5,"height":6}"#).len(), 1);
    }
}
