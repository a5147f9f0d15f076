//! The writer task: the only code that writes to the transport and the
//! only user of the deflate context, so header blocks are compressed in
//! the order their frames go out.
//!
//! Frames come from one bounded queue (the reader task's replies, RSTs and
//! PING echoes, the streams' data, and GOAWAY), are encoded in batches and
//! written in queue order. GOAWAY is the last frame: after it the task
//! flushes, shuts the write side down and ends the connection.

use std::sync::Arc;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::debug;

use super::race::{race, Either};
use super::Shared;
use crate::frame::Frame;
use crate::headers::{HeaderCompressor, HeaderError, Headers};

/// Bytes of encoded frames gathered before they are written.
const BATCH_LEN: usize = 256 * 1024;

/// What the writer task is asked to send.
pub(super) enum Outbound {
    /// A frame without a header block.
    Frame(Frame),
    /// SYN_REPLY with an empty header block and no flags.
    Reply { stream_id: u32 },
    /// GOAWAY naming the last stream answered, then the end.
    GoAway { status: u32 },
}

/// Runs until GOAWAY was written, the transport fails, every sender is
/// gone, or the connection ends elsewhere; then ends the connection.
pub(super) async fn run<W>(io: W, queue: mpsc::Receiver<Outbound>, shared: Arc<Shared>)
where
    W: AsyncWrite + Unpin,
{
    let writer = FrameWriter {
        io,
        queue,
        compressor: HeaderCompressor::new(),
        last_replied: 0,
        batch: Vec::new(),
    };
    if let Either::First(Err(e)) = race(writer.write_all_queued(), shared.wait_ended()).await {
        debug!(error = %e, "SPDY connection: write side failed");
    }
    shared.end();
}

#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Header(#[from] HeaderError),
}

struct FrameWriter<W> {
    io: W,
    queue: mpsc::Receiver<Outbound>,
    compressor: HeaderCompressor,
    /// The highest stream id answered with SYN_REPLY: GOAWAY's last good id.
    last_replied: u32,
    batch: Vec<u8>,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    async fn write_all_queued(mut self) -> Result<(), WriteError> {
        while let Some(first) = self.queue.recv().await {
            let mut last = self.encode(first)?;
            while !last && self.batch.len() < BATCH_LEN {
                let Ok(next) = self.queue.try_recv() else {
                    break;
                };
                last = self.encode(next)?;
            }
            self.io.write_all(&self.batch).await?;
            self.batch.clear();
            self.io.flush().await?;
            if last {
                self.io.shutdown().await?;
                return Ok(());
            }
        }
        Ok(())
    }

    /// Adds the message's frame to the batch; true if it was the last one.
    fn encode(&mut self, message: Outbound) -> Result<bool, WriteError> {
        match message {
            Outbound::Frame(frame) => frame.encode(&mut self.batch),
            Outbound::Reply { stream_id } => {
                let header_block = self.compressor.compress(&Headers::new())?;
                self.last_replied = self.last_replied.max(stream_id);
                let reply = Frame::SynReply {
                    stream_id,
                    fin: false,
                    header_block,
                };
                reply.encode(&mut self.batch);
            }
            Outbound::GoAway { status } => {
                let goaway = Frame::GoAway {
                    last_good_stream_id: self.last_replied,
                    status,
                };
                goaway.encode(&mut self.batch);
                return Ok(true);
            }
        }
        Ok(false)
    }
}
