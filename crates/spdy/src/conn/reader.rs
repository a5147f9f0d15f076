//! The reader task: decodes the peer's frames in order and acts on each
//! (see the rules in the parent module's docs). It is the only user of
//! the inflate context, and every frame with a header block goes through
//! it, even one that is then ignored, so later blocks still inflate.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::race::{race, Either};
use super::stream::{self, Stream, StreamEntry};
use super::writer::Outbound;
use super::{Link, LINGER};
use crate::frame::{goaway_status, rst_status, Frame, FrameDecoder, FrameError};
use crate::headers::{HeaderDecompressor, HeaderError, Headers};

/// Bytes asked of the transport per read.
const READ_LEN: usize = 64 * 1024;
/// How long a GOAWAY for a protocol error may take to be queued and
/// written before the connection ends without it.
const GOAWAY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the reader stopped.
#[derive(Debug, thiserror::Error)]
enum ReadEnd {
    #[error("peer closed the connection")]
    PeerClosed,
    #[error("the connection ended")]
    Ended,
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Header(#[from] HeaderError),
}

/// Runs until the peer closes the connection, reading or decoding fails,
/// or the connection ends elsewhere; then ends the connection (after a
/// GOAWAY PROTOCOL_ERROR if the peer broke the protocol).
pub(super) async fn run<R>(io: R, buffered: Bytes, incoming: mpsc::Sender<Stream>, link: Link)
where
    R: AsyncRead + Unpin,
{
    let shared = link.shared.clone();
    let mut decoder = FrameDecoder::new();
    decoder.feed(&buffered);
    let mut reader = FrameReader {
        io,
        decoder,
        inflater: HeaderDecompressor::new(),
        streams: HashMap::new(),
        last_peer_stream_id: 0,
        incoming: Some(incoming),
        link,
    };
    let end = match race(reader.read_all(), shared.wait_ended()).await {
        Either::First(end) => end,
        Either::Second(()) => ReadEnd::Ended,
    };
    match end {
        ReadEnd::Frame(_) | ReadEnd::Header(_) => {
            warn!(error = %end, "SPDY connection: protocol error from the peer");
            reader.end_with_goaway().await;
        }
        ReadEnd::Io(_) => debug!(error = %end, "SPDY connection: read side failed"),
        ReadEnd::PeerClosed | ReadEnd::Ended => {}
    }
    shared.end();
    let peer_still_open = !matches!(end, ReadEnd::PeerClosed | ReadEnd::Io(_));
    if peer_still_open && !shared.aborted.load(Ordering::SeqCst) {
        reader.streams.clear();
        reader.incoming = None;
        let _ = tokio::time::timeout(LINGER, reader.discard_until_peer_closes()).await;
    }
}

struct FrameReader<R> {
    io: R,
    decoder: FrameDecoder,
    inflater: HeaderDecompressor,
    /// Streams the peer opened that may still see frames.
    streams: HashMap<u32, StreamEntry>,
    /// The highest stream id the peer used; new ones must be above it.
    last_peer_stream_id: u32,
    /// None once the peer sent GOAWAY.
    incoming: Option<mpsc::Sender<Stream>>,
    link: Link,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    async fn read_all(&mut self) -> ReadEnd {
        loop {
            if let Err(end) = self.handle_decoded().await {
                return end;
            }
            match self.decoder.read_from(&mut self.io, READ_LEN).await {
                Ok(0) => return ReadEnd::PeerClosed,
                Ok(_) => {}
                Err(e) => return ReadEnd::Io(e),
            }
        }
    }

    /// Reads and drops what the peer still sends, until it closes.
    async fn discard_until_peer_closes(&mut self) {
        let mut buf = vec![0; READ_LEN];
        while let Ok(1..) = self.io.read(&mut buf).await {}
    }

    /// Handles every frame the bytes fed so far complete.
    async fn handle_decoded(&mut self) -> Result<(), ReadEnd> {
        loop {
            match self.decoder.next_frame() {
                Ok(Some(frame)) => self.handle(frame).await?,
                Ok(None) => return Ok(()),
                Err(e) if !e.is_fatal() => debug!(error = %e, "SPDY connection: frame ignored"),
                Err(e) => return Err(e.into()),
            }
        }
    }

    async fn handle(&mut self, frame: Frame) -> Result<(), ReadEnd> {
        match frame {
            Frame::SynStream {
                stream_id,
                fin,
                unidirectional,
                header_block,
                ..
            } => {
                let headers = self.inflater.decompress(&header_block)?;
                self.open_stream(stream_id, headers, fin, unidirectional)
                    .await
            }
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                self.deliver(stream_id, data).await;
                if fin {
                    self.end_peer_side(stream_id);
                }
                Ok(())
            }
            Frame::RstStream { stream_id, .. } => {
                if let Some(entry) = self.streams.remove(&stream_id) {
                    entry.state.mark_reset();
                }
                Ok(())
            }
            Frame::Ping { id } => self.echo_ping(id).await,
            Frame::Headers {
                stream_id,
                fin,
                header_block,
            } => {
                self.inflater.decompress(&header_block)?;
                if fin {
                    self.end_peer_side(stream_id);
                }
                Ok(())
            }
            Frame::SynReply { header_block, .. } => {
                // We open no streams: nothing to reply to.
                self.inflater.decompress(&header_block)?;
                Ok(())
            }
            Frame::GoAway { .. } => {
                debug!("SPDY connection: peer sent GOAWAY");
                self.incoming = None;
                Ok(())
            }
            Frame::Settings { .. } | Frame::WindowUpdate { .. } => Ok(()),
        }
    }

    /// Answers a new stream and hands it to [`super::Incoming`], or resets
    /// it: PROTOCOL_ERROR for an id that is even or not above the last,
    /// REFUSED_STREAM when no more streams are taken.
    async fn open_stream(
        &mut self,
        id: u32,
        headers: Headers,
        fin: bool,
        unidirectional: bool,
    ) -> Result<(), ReadEnd> {
        if id.is_multiple_of(2) || id <= self.last_peer_stream_id {
            debug!(
                id,
                last = self.last_peer_stream_id,
                "SPDY stream id refused"
            );
            return self.send_reset(id, rst_status::PROTOCOL_ERROR).await;
        }
        self.last_peer_stream_id = id;
        let Some(slot) = self.reserve_incoming() else {
            return self.send_reset(id, rst_status::REFUSED_STREAM).await;
        };
        self.send(Outbound::Reply { stream_id: id }).await?;
        self.forget_finished_streams();
        let (stream, entry) = stream::open(id, headers, fin, unidirectional, self.link.clone());
        self.streams.insert(id, entry);
        slot.send(stream);
        Ok(())
    }

    /// A place in the incoming queue; None after GOAWAY, once
    /// [`super::Incoming`] was dropped, or while its queue is full.
    fn reserve_incoming(&mut self) -> Option<mpsc::OwnedPermit<Stream>> {
        let incoming = self.incoming.clone()?;
        match incoming.try_reserve_owned() {
            Ok(slot) => Some(slot),
            Err(mpsc::error::TrySendError::Full(_)) => {
                warn!("SPDY connection: streams are not being taken, refusing a new one");
                None
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.incoming = None;
                None
            }
        }
    }

    /// Drops table entries nothing can come of (checked as new streams
    /// arrive, so the table stays as small as the live streams).
    fn forget_finished_streams(&mut self) {
        self.streams.retain(|_, entry| !entry.is_finished());
    }

    /// Queues data for the stream's reader, waiting while its queue is
    /// full; data for an unknown, ended or reset stream, or one whose
    /// reader was dropped, is dropped.
    async fn deliver(&mut self, id: u32, data: Bytes) {
        if data.is_empty() {
            return;
        }
        let Some(entry) = self.streams.get(&id) else {
            return;
        };
        let Some(queue) = &entry.data else {
            return;
        };
        let delivered = match race(queue.send(data), entry.state.wait_reset()).await {
            Either::First(sent) => sent.is_ok(),
            Either::Second(()) => false,
        };
        if !delivered {
            if let Some(entry) = self.streams.get_mut(&id) {
                entry.data = None;
            }
        }
    }

    /// The peer's side of the stream ended: its reader sees the end once
    /// it has read what came before.
    fn end_peer_side(&mut self, id: u32) {
        if let Some(entry) = self.streams.get_mut(&id) {
            entry.data = None;
        }
    }

    /// Echoes the peer's pings (odd ids); even ids would answer pings of
    /// ours, and we send none.
    async fn echo_ping(&mut self, id: u32) -> Result<(), ReadEnd> {
        if id % 2 == 1 {
            self.send(Outbound::Frame(Frame::Ping { id })).await?;
        }
        Ok(())
    }

    async fn send_reset(&mut self, stream_id: u32, status: u32) -> Result<(), ReadEnd> {
        self.send(Outbound::Frame(Frame::RstStream { stream_id, status }))
            .await
    }

    async fn send(&mut self, message: Outbound) -> Result<(), ReadEnd> {
        match self.link.send(message).await {
            true => Ok(()),
            false => Err(ReadEnd::Ended),
        }
    }

    /// After a protocol error: the streams end at once, then GOAWAY
    /// PROTOCOL_ERROR (unless a GOAWAY was queued before) is written if
    /// that happens within [`GOAWAY_TIMEOUT`].
    async fn end_with_goaway(&mut self) {
        self.streams.clear();
        self.incoming = None;
        let link = self.link.clone();
        let shared = &link.shared;
        let goaway = Outbound::GoAway {
            status: goaway_status::PROTOCOL_ERROR,
        };
        let written = async {
            if !shared.claim_goaway() || link.send(goaway).await {
                shared.wait_ended().await;
            }
        };
        let _ = tokio::time::timeout(GOAWAY_TIMEOUT, written).await;
    }
}
