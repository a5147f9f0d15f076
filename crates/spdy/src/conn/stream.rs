//! One stream the peer opened: its headers, the data it sends (through a
//! bounded queue filled by the reader task) and our side of it.
//!
//! Our side ends with [`StreamWriter::close`] (an empty DATA frame with
//! FIN, spdystream's Close) or [`StreamWriter::reset`] (RST_STREAM CANCEL,
//! spdystream's Reset). A reset from either side ends both directions.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, watch, Mutex};

use super::race::{race, Either};
use super::writer::Outbound;
use super::Link;
use crate::frame::{rst_status, Frame};
use crate::headers::Headers;

/// The longest DATA frame this side sends.
pub const MAX_DATA_FRAME_LEN: usize = 32 * 1024;
/// Pieces of received data a stream holds before the reader task waits.
const DATA_QUEUE: usize = 16;

/// A stream the peer opened, already answered.
pub struct Stream {
    pub id: u32,
    /// The headers of its SYN_STREAM.
    pub headers: Headers,
    pub reader: StreamReader,
    pub writer: StreamWriter,
}

impl Stream {
    /// The first value of header `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("id", &self.id)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

/// What the reader task and the stream's handles share.
pub(super) struct StreamState {
    id: u32,
    /// True once either side reset the stream.
    reset: watch::Sender<bool>,
    /// Our side is done: we sent FIN, or the peer opened the stream
    /// unidirectional.
    local_closed: AtomicBool,
    /// Held through a whole write, so writes and FIN from clones of the
    /// writer do not interleave.
    write_order: Mutex<()>,
}

impl StreamState {
    pub(super) fn is_reset(&self) -> bool {
        *self.reset.borrow()
    }

    /// Marks the stream reset; false if it already was.
    pub(super) fn mark_reset(&self) -> bool {
        !self.reset.send_replace(true)
    }

    pub(super) async fn wait_reset(&self) {
        // The sender lives in `self`, so waiting cannot fail.
        let _ = self.reset.subscribe().wait_for(|reset| *reset).await;
    }

    pub(super) fn is_local_closed(&self) -> bool {
        self.local_closed.load(Ordering::SeqCst)
    }
}

/// The reader task's side of a stream: where its data goes.
pub(super) struct StreamEntry {
    pub(super) state: Arc<StreamState>,
    /// None once the peer's side ended (FIN).
    pub(super) data: Option<mpsc::Sender<Bytes>>,
}

impl StreamEntry {
    /// Whether nothing can come of this entry any more: the stream was
    /// reset, both sides ended, or every handle on it was dropped.
    pub(super) fn is_finished(&self) -> bool {
        self.state.is_reset()
            || (self.data.is_none() && self.state.is_local_closed())
            || Arc::strong_count(&self.state) == 1
    }
}

/// A stream and its entry in the reader task's table. `peer_fin`: the
/// SYN_STREAM had FIN, so no data will come; `unidirectional`: we may not
/// send.
pub(super) fn open(
    id: u32,
    headers: Headers,
    peer_fin: bool,
    unidirectional: bool,
    link: Link,
) -> (Stream, StreamEntry) {
    let state = Arc::new(StreamState {
        id,
        reset: watch::Sender::new(false),
        local_closed: AtomicBool::new(unidirectional),
        write_order: Mutex::new(()),
    });
    let (data_tx, data_rx) = mpsc::channel(DATA_QUEUE);
    let stream = Stream {
        id,
        headers,
        reader: StreamReader {
            data: data_rx,
            state: state.clone(),
        },
        writer: StreamWriter {
            state: state.clone(),
            link,
        },
    };
    let entry = StreamEntry {
        state,
        data: (!peer_fin).then_some(data_tx),
    };
    (stream, entry)
}

/// The data the peer sends on a stream.
pub struct StreamReader {
    data: mpsc::Receiver<Bytes>,
    state: Arc<StreamState>,
}

impl StreamReader {
    /// The next data the peer sent on this stream; None at its FIN, its
    /// RST, or the connection's end. Data received before the FIN or the
    /// connection's end still comes first; after a reset (either side's)
    /// it is dropped. Cancel-safe: dropping the future loses no data.
    pub async fn read(&mut self) -> Option<Bytes> {
        if self.state.is_reset() {
            return None;
        }
        match race(self.state.wait_reset(), self.data.recv()).await {
            Either::First(()) => None,
            Either::Second(data) => data,
        }
    }
}

impl std::fmt::Debug for StreamReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamReader")
            .field("id", &self.state.id)
            .finish_non_exhaustive()
    }
}

/// Our side of a stream. Clones write to the same stream; a write's
/// frames are never interleaved with another clone's.
#[derive(Clone)]
pub struct StreamWriter {
    state: Arc<StreamState>,
    link: Link,
}

impl StreamWriter {
    /// Sends data (as DATA frames of at most 32 KiB; empty data sends
    /// nothing). Err once the stream was reset, closed by us, or the
    /// connection ended. Waits while the connection's send queue is full;
    /// dropping the future then may leave a prefix of `data` sent.
    pub async fn write(&self, data: &[u8]) -> io::Result<()> {
        let _order = self.state.write_order.lock().await;
        self.check_writable()?;
        for chunk in data.chunks(MAX_DATA_FRAME_LEN) {
            self.check_writable()?;
            let frame = Frame::Data {
                stream_id: self.state.id,
                fin: false,
                data: Bytes::copy_from_slice(chunk),
            };
            if !self.link.send(Outbound::Frame(frame)).await {
                return Err(connection_ended());
            }
        }
        Ok(())
    }

    /// Half-closes our side: an empty DATA frame with FIN. Idempotent;
    /// nothing is sent after a reset or the connection's end.
    pub async fn close(&self) {
        let _order = self.state.write_order.lock().await;
        if self.state.local_closed.swap(true, Ordering::SeqCst)
            || self.state.is_reset()
            || self.link.shared.has_ended()
        {
            return;
        }
        let fin = Frame::Data {
            stream_id: self.state.id,
            fin: true,
            data: Bytes::new(),
        };
        self.link.send(Outbound::Frame(fin)).await;
    }

    /// RST_STREAM with status CANCEL. Idempotent; no-op after the
    /// connection ended or once the peer reset the stream. Ends our
    /// [`StreamReader`] too.
    pub async fn reset(&self) {
        if !self.state.mark_reset() || self.link.shared.has_ended() {
            return;
        }
        let rst = Frame::RstStream {
            stream_id: self.state.id,
            status: rst_status::CANCEL,
        };
        self.link.send(Outbound::Frame(rst)).await;
    }

    /// The stream's id.
    pub fn id(&self) -> u32 {
        self.state.id
    }

    fn check_writable(&self) -> io::Result<()> {
        if self.state.is_reset() {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "SPDY stream was reset",
            ));
        }
        if self.state.is_local_closed() {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "SPDY stream was closed by this side",
            ));
        }
        if self.link.shared.has_ended() {
            return Err(connection_ended());
        }
        Ok(())
    }
}

impl std::fmt::Debug for StreamWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamWriter")
            .field("id", &self.state.id)
            .finish_non_exhaustive()
    }
}

fn connection_ended() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "SPDY connection has ended")
}
