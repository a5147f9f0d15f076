//! The uncompressed stream in chunks from the decompressing thread to the
//! writing thread, hashed on one side or the other.

use std::io::{self, Read};
use std::sync::mpsc::{Receiver, Sender, SyncSender};

use sha2::{Digest, Sha256};

use super::decompress::Source;
use super::CHUNK;

/// A piece of the uncompressed stream; `len == 0` marks its end.
pub(super) struct Chunk {
    pub(super) buf: Vec<u8>,
    len: usize,
}

pub(super) enum PumpError {
    Input(io::Error),
    Decompress(io::Error),
    /// The writing thread stopped early; its own error says why.
    WriterGone,
}

/// Decompresses `source` to its end, sending every byte to the writing
/// thread (and hashing it, when given a hasher), then reads the rest of the
/// compressed input.
pub(super) fn pump<R: Read>(
    source: &mut Source<R>,
    tx: SyncSender<Chunk>,
    recycle: &Receiver<Vec<u8>>,
    mut hasher: Option<&mut Sha256>,
) -> Result<(), PumpError> {
    loop {
        let mut buf = recycle.try_recv().unwrap_or_else(|_| vec![0u8; CHUNK]);
        let mut filled = 0;
        let mut eof = false;
        while filled < buf.len() {
            match source.read(&mut buf[filled..]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(source.classify(e)),
            }
        }
        if filled > 0 {
            if let Some(h) = hasher.as_deref_mut() {
                h.update(&buf[..filled]);
            }
            tx.send(Chunk { buf, len: filled })
                .map_err(|_| PumpError::WriterGone)?;
        }
        if eof {
            // Decompressors stop at the end of their stream; whatever follows
            // must still pass through the caller's reader.
            if let Err(e) = io::copy(source.compressed(), &mut io::sink()) {
                return Err(source.classify(e));
            }
            return tx
                .send(Chunk {
                    buf: Vec::new(),
                    len: 0,
                })
                .map_err(|_| PumpError::WriterGone);
        }
    }
}

/// The writing thread's view of the uncompressed stream. With a hasher,
/// every chunk is hashed as it arrives, so the diff id covers the whole
/// stream, tar or not.
pub(super) struct ChunkReader {
    rx: Receiver<Chunk>,
    recycle: Sender<Vec<u8>>,
    cur: Vec<u8>,
    len: usize,
    pos: usize,
    ended: bool,
    pub(super) hasher: Option<Sha256>,
    pub(super) size: u64,
}

impl ChunkReader {
    /// Reads what comes through `rx`, handing used buffers back through
    /// `recycle`; hashes the stream when `hash` is set.
    pub(super) fn new(rx: Receiver<Chunk>, recycle: Sender<Vec<u8>>, hash: bool) -> Self {
        ChunkReader {
            rx,
            recycle,
            cur: Vec::new(),
            len: 0,
            pos: 0,
            ended: false,
            hasher: hash.then(Sha256::new),
            size: 0,
        }
    }

    fn next_chunk(&mut self) -> io::Result<()> {
        let chunk = self
            .rx
            .recv()
            .map_err(|_| io::Error::other("layer stream stopped"))?;
        if chunk.len == 0 {
            self.ended = true;
            return Ok(());
        }
        if let Some(h) = &mut self.hasher {
            h.update(&chunk.buf[..chunk.len]);
        }
        self.size += chunk.len as u64;
        let old = std::mem::replace(&mut self.cur, chunk.buf);
        if !old.is_empty() {
            // The reading side may have finished; then the buffer is freed.
            let _ = self.recycle.send(old);
        }
        self.len = chunk.len;
        self.pos = 0;
        Ok(())
    }

    /// Consumes the stream after the end of the archive, so the reading side
    /// can hash it to the end.
    pub(super) fn drain(&mut self) -> io::Result<()> {
        while !self.ended {
            self.pos = self.len;
            self.next_chunk()?;
        }
        Ok(())
    }
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        while self.pos == self.len {
            if self.ended {
                return Ok(0);
            }
            self.next_chunk()?;
        }
        let n = out.len().min(self.len - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
