//! A server-side SPDY/3.1 connection, as moby/spdystream's peer expects it.
//!
//! Two tasks per connection:
//!
//! - the reader (`reader.rs`) owns the read half, the frame decoder, the
//!   inflate context and the table of open streams. It answers every
//!   SYN_STREAM at once with a SYN_REPLY (empty header block, flags 0):
//!   client-go waits for each reply before it opens the next stream. Peer
//!   stream ids must be odd and rising, else the stream gets RST_STREAM
//!   PROTOCOL_ERROR. DATA goes to the stream's bounded queue; when that
//!   queue is full the reader waits, so the whole connection stops reading
//!   and TCP pushes back on the peer (spdystream does the same: there is
//!   no flow control, SETTINGS and WINDOW_UPDATE are ignored and never
//!   sent). A DATA frame longer than 32 KiB reaches the stream in pieces
//!   (see [`crate::frame`]). PINGs with an odd id are echoed unchanged.
//!   HEADERS are inflated (to keep the zlib context in step) and ignored,
//!   but for their FIN flag. After the peer's GOAWAY no new stream is
//!   accepted (RST_STREAM REFUSED_STREAM); open ones go on. A malformed
//!   frame or header block ends the connection with GOAWAY PROTOCOL_ERROR.
//! - the writer (`writer.rs`) owns the write half and the deflate context
//!   and writes the frames queued by the reader, the streams and
//!   [`Connection::close`], in queue order. The queue is bounded, so
//!   writers wait while the peer is not reading.
//!
//! The connection ends when the peer closes it, on an I/O or protocol
//! error, or after [`Connection::close`] (GOAWAY, then the write side is
//! shut down). Both tasks stop then; they also stop once the peer hangs up
//! when every handle was dropped. When this side ended it, the reader
//! still reads and discards until the peer closes too, for at most
//! [`LINGER`]: closing a TCP socket with unread data sends RST, and an RST
//! makes the peer drop what it has received and not yet read, our last
//! frames included.

mod race;
mod reader;
mod stream;
mod writer;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};

use crate::frame::goaway_status;
use race::{race, Either};
pub use stream::{Stream, StreamReader, StreamWriter};
use writer::Outbound;

/// How long the transport is kept open, reading and discarding, after
/// this side ended the connection.
pub const LINGER: Duration = Duration::from_secs(5);
/// Frames queued for the writer task.
const OUTBOUND_QUEUE: usize = 64;
/// Streams answered and not yet taken with [`Incoming::next`]; beyond
/// that, new streams are refused (RST_STREAM REFUSED_STREAM).
const INCOMING_QUEUE: usize = 128;

/// Serves a SPDY/3.1 connection; `buffered` = bytes already read past the
/// HTTP upgrade. Spawns the connection's reader and writer tasks, so it
/// must be called within a Tokio runtime with time enabled.
pub fn serve<T>(io: T, buffered: Bytes) -> (Connection, Incoming)
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (read_half, write_half) = tokio::io::split(io);
    let (outbound_tx, outbound_rx) = mpsc::channel(OUTBOUND_QUEUE);
    let (incoming_tx, incoming_rx) = mpsc::channel(INCOMING_QUEUE);
    let link = Link {
        outbound: outbound_tx,
        shared: Arc::new(Shared::new()),
    };
    tokio::spawn(writer::run(write_half, outbound_rx, link.shared.clone()));
    tokio::spawn(reader::run(read_half, buffered, incoming_tx, link.clone()));
    let incoming = Incoming {
        streams: incoming_rx,
        shared: link.shared.clone(),
    };
    (Connection { link }, incoming)
}

/// State every handle of a connection sees.
struct Shared {
    /// True once the connection has ended.
    ended: watch::Sender<bool>,
    /// Set when a GOAWAY was queued, so there is only one.
    goaway_queued: AtomicBool,
    /// Set by [`Connection::abort`]: the transport is dropped without
    /// draining what the peer still sends.
    aborted: AtomicBool,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            ended: watch::Sender::new(false),
            goaway_queued: AtomicBool::new(false),
            aborted: AtomicBool::new(false),
        }
    }

    fn end(&self) {
        self.ended.send_replace(true);
    }

    fn has_ended(&self) -> bool {
        *self.ended.borrow()
    }

    async fn wait_ended(&self) {
        // The sender lives in `self`, so waiting cannot fail.
        let _ = self.ended.subscribe().wait_for(|ended| *ended).await;
    }

    /// Claims the connection's one GOAWAY; false if it was claimed before.
    fn claim_goaway(&self) -> bool {
        !self.goaway_queued.swap(true, Ordering::SeqCst)
    }
}

/// What the handles use to reach the writer task.
#[derive(Clone)]
struct Link {
    outbound: mpsc::Sender<Outbound>,
    shared: Arc<Shared>,
}

impl Link {
    /// Queues a message for the writer; false once the writer has stopped.
    async fn send(&self, message: Outbound) -> bool {
        self.outbound.send(message).await.is_ok()
    }
}

/// A handle on the connection, to close it or learn that it ended.
#[derive(Clone)]
pub struct Connection {
    link: Link,
}

impl Connection {
    /// Sends GOAWAY(last stream id received, status 0), flushes everything
    /// queued before it, then shuts the write side down and ends the
    /// connection. Idempotent: later calls wait for the same end.
    ///
    /// While the peer reads nothing this waits; [`Connection::abort`] ends
    /// the connection at once.
    pub async fn close(&self) {
        let shared = &self.link.shared;
        if !shared.has_ended() && shared.claim_goaway() {
            let goaway = Outbound::GoAway {
                status: goaway_status::OK,
            };
            race(self.link.send(goaway), shared.wait_ended()).await;
        }
        shared.wait_ended().await;
    }

    /// Ends the connection now, without GOAWAY: queued frames are dropped
    /// and both tasks stop (the transport closes once they have).
    pub fn abort(&self) {
        let shared = &self.link.shared;
        shared.aborted.store(true, Ordering::SeqCst);
        shared.end();
    }

    /// Resolves once the connection has ended (peer closed, I/O or
    /// protocol error, or close()).
    pub async fn closed(&self) {
        self.link.shared.wait_ended().await;
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.link.shared.has_ended()
    }
}

/// The streams the peer opens, in order.
pub struct Incoming {
    streams: mpsc::Receiver<Stream>,
    shared: Arc<Shared>,
}

impl Incoming {
    /// The next stream the peer opened, already answered with a SYN_REPLY
    /// (empty header block, flags 0). None once the connection has ended
    /// or the peer sent GOAWAY.
    ///
    /// Streams wait here until taken, and their data waits in them: a
    /// stream taken late may have stopped the connection's reading (see
    /// the module docs). Drop `Incoming` when no more streams are wanted;
    /// later ones are then refused. Cancel-safe.
    pub async fn next(&mut self) -> Option<Stream> {
        if self.shared.has_ended() {
            return None;
        }
        match race(self.shared.wait_ended(), self.streams.recv()).await {
            Either::First(()) => None,
            Either::Second(stream) => stream,
        }
    }
}
