//! Name/value header blocks (SPDY Protocol Draft 3, section 2.6.10), as
//! SYN_STREAM, SYN_REPLY and HEADERS carry them.
//!
//! Uncompressed, a block is big-endian:
//!
//! ```text
//! u32 number of pairs
//! per pair: u32 name length, name, u32 value length, value
//! ```
//!
//! Names are lowercase and unique (the Go peer drops the connection
//! otherwise); a name with several values carries them joined by a NUL
//! byte. The streaming server sees `streamtype`, `port` and `requestid`.
//!
//! On the wire every block is zlib-compressed (RFC 1950) with the SPDY/3
//! dictionary ([`crate::dictionary`]). A connection keeps one deflate
//! context for all the blocks it sends and one inflate context for all it
//! receives, in frame order, whatever the frame type or stream. Each block
//! is sync-flushed, so a frame holds exactly the compressor's output for
//! its block: the first block of a direction starts `78 F9 E3 C6 A7 C2`
//! (zlib header at level 9 with a preset dictionary, then the dictionary's
//! Adler-32), and every block ends with the sync marker `00 00 FF FF`.
//! Losing one block desynchronises every later one, so a block that does
//! not inflate or parse ends the connection.

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use crate::dictionary::{DICTIONARY, DICTIONARY_ADLER32};

#[cfg(test)]
mod tests;

/// The largest uncompressed header block accepted from the peer. The
/// streaming protocols use three short headers; the cap keeps a small
/// compressed frame from inflating into a large allocation.
pub const MAX_HEADER_BLOCK_LEN: usize = 256 * 1024;

/// Separates the values of one name on the wire.
const VALUE_SEPARATOR: char = '\0';

/// Why a received header block was rejected. Each of them leaves the
/// connection's inflate context unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("header block ends inside {0}")]
    Truncated(&'static str),
    #[error("header block has {0} bytes after its last pair")]
    TrailingBytes(usize),
    #[error("header name {0:?} is not lowercase")]
    UppercaseName(String),
    #[error("header name {0:?} appears twice")]
    DuplicateName(String),
    #[error("header block inflates to more than {MAX_HEADER_BLOCK_LEN} bytes")]
    TooLarge,
    #[error("header block asks for dictionary {0:#010x}, not the SPDY/3 one")]
    WrongDictionary(u32),
    #[error("header block zlib stream ended")]
    StreamEnded,
    #[error("header block does not inflate: {0}")]
    Inflate(String),
    #[error("header block does not deflate: {0}")]
    Deflate(String),
}

/// Headers of a stream: names (lowercase) in the order first added, each
/// with its values in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(String, Vec<String>)>,
}

impl Headers {
    /// No headers.
    pub fn new() -> Headers {
        Headers::default()
    }

    /// Appends `value` to the values of `name` (lowercased). A value
    /// holding a NUL byte becomes several values on the wire.
    pub fn add(&mut self, name: &str, value: &str) {
        let name = name.to_ascii_lowercase();
        match self.entries.iter_mut().find(|(n, _)| *n == name) {
            Some((_, values)) => values.push(value.to_owned()),
            None => self.entries.push((name, vec![value.to_owned()])),
        }
    }

    /// The first value of `name`, compared case-insensitively.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_all(name).first().map(String::as_str)
    }

    /// Every value of `name` (compared case-insensitively), in order.
    pub fn get_all(&self, name: &str) -> &[String] {
        self.entries
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or(&[], |(_, values)| values.as_slice())
    }

    /// Names and their values, in the order the names were first added.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.entries
            .iter()
            .map(|(name, values)| (name.as_str(), values.as_slice()))
    }

    /// How many distinct names there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no headers at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends the uncompressed block (layout in the module docs).
    pub fn encode_block(&self, out: &mut Vec<u8>) {
        push_u32_len(out, self.entries.len());
        for (name, values) in &self.entries {
            push_u32_len(out, name.len());
            out.extend_from_slice(name.as_bytes());
            let joined = values.join("\0");
            push_u32_len(out, joined.len());
            out.extend_from_slice(joined.as_bytes());
        }
    }

    /// Parses an uncompressed block, which must end with its last pair.
    /// Bytes that are not UTF-8 are replaced (lossily) rather than refused:
    /// no header the streaming server reads carries any.
    pub fn decode_block(block: &[u8]) -> Result<Headers, HeaderError> {
        let mut rest = block;
        let count = take_u32(&mut rest, "the pair count")?;
        let mut headers = Headers::new();
        for _ in 0..count {
            let name = take_string(&mut rest, "a name")?;
            let value = take_string(&mut rest, "a value")?;
            headers.push_decoded(name, &value)?;
        }
        if !rest.is_empty() {
            return Err(HeaderError::TrailingBytes(rest.len()));
        }
        Ok(headers)
    }

    fn push_decoded(&mut self, name: String, value: &str) -> Result<(), HeaderError> {
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(HeaderError::UppercaseName(name));
        }
        if self.entries.iter().any(|(n, _)| *n == name) {
            return Err(HeaderError::DuplicateName(name));
        }
        let values = value.split(VALUE_SEPARATOR).map(str::to_owned).collect();
        self.entries.push((name, values));
        Ok(())
    }
}

fn push_u32_len(out: &mut Vec<u8>, len: usize) {
    let len = u32::try_from(len).expect("header block parts are far below 4 GiB");
    out.extend_from_slice(&len.to_be_bytes());
}

fn take_u32(rest: &mut &[u8], what: &'static str) -> Result<u32, HeaderError> {
    let Some((word, tail)) = rest.split_first_chunk::<4>() else {
        return Err(HeaderError::Truncated(what));
    };
    *rest = tail;
    Ok(u32::from_be_bytes(*word))
}

fn take_string(rest: &mut &[u8], what: &'static str) -> Result<String, HeaderError> {
    let len = take_u32(rest, what)? as usize;
    if rest.len() < len {
        return Err(HeaderError::Truncated(what));
    }
    let (bytes, tail) = rest.split_at(len);
    *rest = tail;
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

/// The deflate context of the blocks one side sends. Blocks must be
/// compressed in the order their frames are written.
pub struct HeaderCompressor {
    deflate: Compress,
}

impl HeaderCompressor {
    /// A fresh context (level 9, as Go's framer), primed with the SPDY/3
    /// dictionary.
    pub fn new() -> HeaderCompressor {
        let mut deflate = Compress::new(Compression::best(), true);
        deflate
            .set_dictionary(DICTIONARY)
            .expect("a fresh deflate context takes a dictionary");
        HeaderCompressor { deflate }
    }

    /// The compressed, sync-flushed block for `headers`: exactly what the
    /// frame carries.
    pub fn compress(&mut self, headers: &Headers) -> Result<Bytes, HeaderError> {
        let mut block = Vec::new();
        headers.encode_block(&mut block);
        self.compress_block(&block)
    }

    /// Compresses an already encoded (uncompressed) block.
    pub fn compress_block(&mut self, mut block: &[u8]) -> Result<Bytes, HeaderError> {
        // Sync flush is complete once a call returns with room left in the
        // output; give each call more than the 6 bytes a flush marker needs.
        let mut out = Vec::with_capacity(block.len() + 64);
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(block.len() + 64);
            }
            let before = self.deflate.total_in();
            self.deflate
                .compress_vec(block, &mut out, FlushCompress::Sync)
                .map_err(|e| HeaderError::Deflate(e.to_string()))?;
            block = &block[consumed(before, self.deflate.total_in())..];
            if block.is_empty() && out.len() < out.capacity() {
                return Ok(Bytes::from(out));
            }
        }
    }
}

impl Default for HeaderCompressor {
    fn default() -> Self {
        HeaderCompressor::new()
    }
}

/// The inflate context of the blocks one side receives. Blocks must be
/// given in the order their frames arrived.
pub struct HeaderDecompressor {
    inflate: Decompress,
}

impl HeaderDecompressor {
    /// A fresh context; it supplies the SPDY/3 dictionary when the first
    /// block's zlib header asks for it.
    pub fn new() -> HeaderDecompressor {
        HeaderDecompressor {
            inflate: Decompress::new(true),
        }
    }

    /// The headers in one compressed block, the whole of a frame's header
    /// block field.
    pub fn decompress(&mut self, compressed: &[u8]) -> Result<Headers, HeaderError> {
        let block = self.decompress_block(compressed)?;
        Headers::decode_block(&block)
    }

    /// Inflates one compressed block into its uncompressed encoding.
    pub fn decompress_block(&mut self, mut compressed: &[u8]) -> Result<Vec<u8>, HeaderError> {
        // Room for one byte past the cap, to tell a block at the cap from
        // a longer one.
        const LIMIT: usize = MAX_HEADER_BLOCK_LEN + 1;
        let mut out = Vec::with_capacity((compressed.len() * 4).min(LIMIT));
        loop {
            if out.len() == out.capacity() {
                out.reserve_exact((out.len() + 256).min(LIMIT - out.len()));
            }
            let (before_in, before_out) = (self.inflate.total_in(), out.len());
            let status = self
                .inflate
                .decompress_vec(compressed, &mut out, FlushDecompress::Sync);
            compressed = &compressed[consumed(before_in, self.inflate.total_in())..];
            if out.len() > MAX_HEADER_BLOCK_LEN {
                return Err(HeaderError::TooLarge);
            }
            match status {
                Ok(Status::StreamEnd) => return Err(HeaderError::StreamEnded),
                Ok(_) if compressed.is_empty() && out.len() < out.capacity() => return Ok(out),
                Ok(_) if out.len() == before_out && self.inflate.total_in() == before_in => {
                    return Err(HeaderError::Inflate("no progress".into()));
                }
                Ok(_) => {}
                Err(e) => match e.needs_dictionary() {
                    Some(DICTIONARY_ADLER32) => self
                        .inflate
                        .set_dictionary(DICTIONARY)
                        .map(drop)
                        .map_err(|e| HeaderError::Inflate(e.to_string()))?,
                    Some(other) => return Err(HeaderError::WrongDictionary(other)),
                    None => return Err(HeaderError::Inflate(e.to_string())),
                },
            }
        }
    }
}

impl Default for HeaderDecompressor {
    fn default() -> Self {
        HeaderDecompressor::new()
    }
}

fn consumed(before: u64, after: u64) -> usize {
    usize::try_from(after - before).expect("consumed at most the input slice")
}
