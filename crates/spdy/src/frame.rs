//! SPDY/3 frames (SPDY Protocol Draft 3, section 2.2), big-endian.
//!
//! A control frame has an 8-byte header, then its payload:
//!
//! ```text
//! u16 0x8000 | version (3)   u16 type   u8 flags   u24 payload length
//! ```
//!
//! | type | frame         | payload                                               | flags                |
//! |------|---------------|-------------------------------------------------------|----------------------|
//! | 1    | SYN_STREAM    | u32 stream id, u32 associated id, u8 priority << 5, u8 slot, header block | FIN 1, UNIDIRECTIONAL 2 |
//! | 2    | SYN_REPLY     | u32 stream id, header block                           | FIN 1                |
//! | 3    | RST_STREAM    | u32 stream id, u32 status                             |                      |
//! | 4    | SETTINGS      | u32 count, count × (u8 flags, u24 id, u32 value)      | CLEAR_SETTINGS 1     |
//! | 6    | PING          | u32 id                                                |                      |
//! | 7    | GOAWAY        | u32 last good stream id, u32 status                   |                      |
//! | 8    | HEADERS       | u32 stream id, header block                           | FIN 1                |
//! | 9    | WINDOW_UPDATE | u32 stream id, u32 delta window size                  |                      |
//!
//! Stream ids are 31 bits (the top bit of their word is reserved and
//! ignored on reading). Header blocks stay compressed at this layer (see
//! [`crate::headers`]).
//!
//! A data frame has the top bit clear:
//!
//! ```text
//! u32 stream id (top bit 0)   u8 flags (FIN 1)   u24 length   data
//! ```
//!
//! The decoder checks what moby/spdystream checks, so a frame the Go peer
//! would not send is refused as it would refuse it: stream id 0 (on a
//! stream's frames), RST_STREAM status 0, a PING with flags, GOAWAY and
//! WINDOW_UPDATE whose length is not 8. It also insists on the exact
//! payload length of the fixed-size frames. The version is not checked, as
//! Go does not check it. A control frame of an unknown type is skipped and
//! reported ([`FrameError::UnknownControlType`]) so the connection can go
//! on.
//!
//! Control frames are buffered whole, up to a maximum length. A data frame
//! is not: its payload is handed out in pieces of at most
//! [`MAX_DATA_PIECE`] bytes as they arrive (FIN on the last piece), so a
//! peer may send data frames of any length the format allows (Go allows up
//! to 16 MiB) without the decoder holding them.

use bytes::{Buf, Bytes, BytesMut};

#[cfg(test)]
mod tests;

/// The protocol version written in every control frame.
pub const VERSION: u16 = 3;
/// Bytes of a frame header, control or data.
pub const HEADER_LEN: usize = 8;
/// The longest payload the 24-bit length field can express.
pub const MAX_PAYLOAD_LEN: usize = (1 << 24) - 1;
/// The default cap on a received control frame's payload
/// ([`FrameDecoder::with_max_control_len`]).
pub const DEFAULT_MAX_CONTROL_LEN: usize = 1024 * 1024;
/// The largest piece of a data frame's payload the decoder returns at once.
pub const MAX_DATA_PIECE: usize = 32 * 1024;

const CONTROL_BIT: u32 = 0x8000_0000;
const STREAM_ID_MASK: u32 = 0x7fff_ffff;

const FLAG_FIN: u8 = 0x01;
const FLAG_UNIDIRECTIONAL: u8 = 0x02;
const FLAG_CLEAR_SETTINGS: u8 = 0x01;

/// Control frame types.
pub mod frame_type {
    pub const SYN_STREAM: u16 = 1;
    pub const SYN_REPLY: u16 = 2;
    pub const RST_STREAM: u16 = 3;
    pub const SETTINGS: u16 = 4;
    pub const PING: u16 = 6;
    pub const GOAWAY: u16 = 7;
    pub const HEADERS: u16 = 8;
    pub const WINDOW_UPDATE: u16 = 9;
}

/// RST_STREAM status codes (0 is invalid).
pub mod rst_status {
    pub const PROTOCOL_ERROR: u32 = 1;
    pub const INVALID_STREAM: u32 = 2;
    pub const REFUSED_STREAM: u32 = 3;
    pub const UNSUPPORTED_VERSION: u32 = 4;
    pub const CANCEL: u32 = 5;
    pub const INTERNAL_ERROR: u32 = 6;
    pub const FLOW_CONTROL_ERROR: u32 = 7;
    pub const STREAM_IN_USE: u32 = 8;
    pub const STREAM_ALREADY_CLOSED: u32 = 9;
    pub const FRAME_TOO_LARGE: u32 = 11;
}

/// GOAWAY status codes.
pub mod goaway_status {
    pub const OK: u32 = 0;
    pub const PROTOCOL_ERROR: u32 = 1;
    pub const INTERNAL_ERROR: u32 = 2;
}

/// One SETTINGS entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub flags: u8,
    /// 24 bits.
    pub id: u32,
    pub value: u32,
}

/// A SPDY/3 frame. Flags the protocol does not define are dropped on
/// decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        associated_stream_id: u32,
        /// 0 (highest) to 7.
        priority: u8,
        slot: u8,
        fin: bool,
        unidirectional: bool,
        header_block: Bytes,
    },
    SynReply {
        stream_id: u32,
        fin: bool,
        header_block: Bytes,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings {
        clear_settings: bool,
        entries: Vec<Setting>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        fin: bool,
        header_block: Bytes,
    },
    WindowUpdate {
        stream_id: u32,
        delta_window_size: u32,
    },
    Data {
        stream_id: u32,
        fin: bool,
        data: Bytes,
    },
}

impl Frame {
    /// Appends the frame's bytes to `out`.
    ///
    /// # Panics
    ///
    /// If the payload is longer than [`MAX_PAYLOAD_LEN`]: callers cut data
    /// into frames far smaller than that.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Frame::SynStream {
                stream_id,
                associated_stream_id,
                priority,
                slot,
                fin,
                unidirectional,
                header_block,
            } => {
                let flags = flag(*fin, FLAG_FIN) | flag(*unidirectional, FLAG_UNIDIRECTIONAL);
                push_control_header(out, frame_type::SYN_STREAM, flags, 10 + header_block.len());
                push_stream_id(out, *stream_id);
                push_stream_id(out, *associated_stream_id);
                out.extend_from_slice(&[(priority & 0x07) << 5, *slot]);
                out.extend_from_slice(header_block);
            }
            Frame::SynReply {
                stream_id,
                fin,
                header_block,
            } => encode_block_frame(out, frame_type::SYN_REPLY, *stream_id, *fin, header_block),
            Frame::RstStream { stream_id, status } => {
                push_control_header(out, frame_type::RST_STREAM, 0, 8);
                push_stream_id(out, *stream_id);
                out.extend_from_slice(&status.to_be_bytes());
            }
            Frame::Settings {
                clear_settings,
                entries,
            } => encode_settings(out, *clear_settings, entries),
            Frame::Ping { id } => {
                push_control_header(out, frame_type::PING, 0, 4);
                out.extend_from_slice(&id.to_be_bytes());
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                push_control_header(out, frame_type::GOAWAY, 0, 8);
                push_stream_id(out, *last_good_stream_id);
                out.extend_from_slice(&status.to_be_bytes());
            }
            Frame::Headers {
                stream_id,
                fin,
                header_block,
            } => encode_block_frame(out, frame_type::HEADERS, *stream_id, *fin, header_block),
            Frame::WindowUpdate {
                stream_id,
                delta_window_size,
            } => {
                push_control_header(out, frame_type::WINDOW_UPDATE, 0, 8);
                push_stream_id(out, *stream_id);
                out.extend_from_slice(&delta_window_size.to_be_bytes());
            }
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                push_stream_id(out, *stream_id);
                push_flags_and_len(out, flag(*fin, FLAG_FIN), data.len());
                out.extend_from_slice(data);
            }
        }
    }

    /// The frame's bytes.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

fn flag(set: bool, bit: u8) -> u8 {
    if set {
        bit
    } else {
        0
    }
}

fn push_control_header(out: &mut Vec<u8>, frame_type: u16, flags: u8, len: usize) {
    out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    out.extend_from_slice(&frame_type.to_be_bytes());
    push_flags_and_len(out, flags, len);
}

fn push_flags_and_len(out: &mut Vec<u8>, flags: u8, len: usize) {
    assert!(len <= MAX_PAYLOAD_LEN, "frame payload of {len} bytes");
    let word = (u32::from(flags) << 24) | len as u32;
    out.extend_from_slice(&word.to_be_bytes());
}

fn push_stream_id(out: &mut Vec<u8>, id: u32) {
    out.extend_from_slice(&(id & STREAM_ID_MASK).to_be_bytes());
}

fn encode_block_frame(out: &mut Vec<u8>, frame_type: u16, stream_id: u32, fin: bool, block: &[u8]) {
    push_control_header(out, frame_type, flag(fin, FLAG_FIN), 4 + block.len());
    push_stream_id(out, stream_id);
    out.extend_from_slice(block);
}

fn encode_settings(out: &mut Vec<u8>, clear_settings: bool, entries: &[Setting]) {
    let flags = flag(clear_settings, FLAG_CLEAR_SETTINGS);
    push_control_header(out, frame_type::SETTINGS, flags, 4 + 8 * entries.len());
    out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for entry in entries {
        let flags_and_id = (u32::from(entry.flags) << 24) | (entry.id & 0x00ff_ffff);
        out.extend_from_slice(&flags_and_id.to_be_bytes());
        out.extend_from_slice(&entry.value.to_be_bytes());
    }
}

/// Why bytes could not be decoded. Only [`FrameError::UnknownControlType`]
/// leaves the decoder usable; after any other error the peer is not
/// speaking SPDY/3 as spdystream does and the connection should end.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// A control frame of a type SPDY/3 does not define. Its payload is
    /// skipped; decoding goes on after it.
    #[error("control frame of unknown type {frame_type} ({length} bytes), ignored")]
    UnknownControlType { frame_type: u16, length: usize },
    #[error("control frame of type {frame_type} with {length} bytes (at most {max})")]
    TooLarge {
        frame_type: u16,
        length: usize,
        max: usize,
    },
    #[error("control frame of type {frame_type}: {reason}")]
    Malformed {
        frame_type: u16,
        reason: &'static str,
    },
    #[error("data frame on stream 0")]
    DataOnStreamZero,
}

impl FrameError {
    /// Whether the decoder cannot go on after this error.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, FrameError::UnknownControlType { .. })
    }
}

/// Where the decoder is in the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DecodeState {
    /// At a frame boundary.
    Header,
    /// Inside a data frame's payload: `remaining` bytes to come.
    Data {
        stream_id: u32,
        fin: bool,
        remaining: usize,
    },
    /// Inside the payload of an unknown control frame.
    Skip { remaining: usize },
}

/// Cuts a byte stream, fed as it is read, into frames.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    state: DecodeState,
    max_control_len: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new()
    }
}

impl FrameDecoder {
    /// A decoder at a frame boundary, with [`DEFAULT_MAX_CONTROL_LEN`].
    pub fn new() -> FrameDecoder {
        FrameDecoder::with_max_control_len(DEFAULT_MAX_CONTROL_LEN)
    }

    /// A decoder refusing control frames whose payload is longer than
    /// `max` bytes ([`FrameError::TooLarge`]).
    pub fn with_max_control_len(max: usize) -> FrameDecoder {
        FrameDecoder {
            buf: BytesMut::new(),
            state: DecodeState::Header,
            max_control_len: max,
        }
    }

    /// Adds bytes just read.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Reads up to `len` more bytes from `io` straight into the decoder's
    /// buffer (no copy through a buffer of the caller's); 0 at its end.
    pub async fn read_from<R>(&mut self, io: &mut R, len: usize) -> std::io::Result<usize>
    where
        R: tokio::io::AsyncRead + Unpin,
    {
        use tokio::io::AsyncReadExt;
        self.buf.reserve(len);
        io.read_buf(&mut self.buf).await
    }

    /// Bytes fed and not yet returned in frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next frame, or `Ok(None)` until enough bytes were fed. A data
    /// frame longer than [`MAX_DATA_PIECE`] comes out as several
    /// [`Frame::Data`] of the same stream, FIN on the last only.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        loop {
            match self.state {
                DecodeState::Header => return self.next_from_header(),
                DecodeState::Data {
                    stream_id,
                    fin,
                    remaining,
                } => return Ok(self.next_data_piece(stream_id, fin, remaining)),
                DecodeState::Skip { remaining } => {
                    let skipped = remaining.min(self.buf.len());
                    self.buf.advance(skipped);
                    if skipped < remaining {
                        self.state = DecodeState::Skip {
                            remaining: remaining - skipped,
                        };
                        return Ok(None);
                    }
                    self.state = DecodeState::Header;
                }
            }
        }
    }

    fn next_from_header(&mut self) -> Result<Option<Frame>, FrameError> {
        let Some(header) = self.buf.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let first = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let flags = header[4];
        let length = u32::from_be_bytes([0, header[5], header[6], header[7]]) as usize;
        if first & CONTROL_BIT == 0 {
            return self.start_data(first, flags, length);
        }
        let frame_type = (first & 0xffff) as u16;
        if !is_known_type(frame_type) {
            self.buf.advance(HEADER_LEN);
            self.state = DecodeState::Skip { remaining: length };
            return Err(FrameError::UnknownControlType { frame_type, length });
        }
        if length > self.max_control_len {
            return Err(FrameError::TooLarge {
                frame_type,
                length,
                max: self.max_control_len,
            });
        }
        if self.buf.len() < HEADER_LEN + length {
            return Ok(None);
        }
        self.buf.advance(HEADER_LEN);
        let payload = self.buf.split_to(length).freeze();
        decode_control(frame_type, flags, payload).map(Some)
    }

    fn start_data(
        &mut self,
        first: u32,
        flags: u8,
        length: usize,
    ) -> Result<Option<Frame>, FrameError> {
        let stream_id = first & STREAM_ID_MASK;
        if stream_id == 0 {
            return Err(FrameError::DataOnStreamZero);
        }
        self.buf.advance(HEADER_LEN);
        let fin = flags & FLAG_FIN != 0;
        Ok(self.next_data_piece(stream_id, fin, length))
    }

    /// The next piece of the data frame being read: all of what remains
    /// when it is at most [`MAX_DATA_PIECE`] bytes and was all fed, else a
    /// full piece once fed.
    fn next_data_piece(&mut self, stream_id: u32, fin: bool, remaining: usize) -> Option<Frame> {
        let piece = remaining.min(MAX_DATA_PIECE);
        if self.buf.len() < piece {
            self.state = DecodeState::Data {
                stream_id,
                fin,
                remaining,
            };
            return None;
        }
        let data = self.buf.split_to(piece).freeze();
        let last = piece == remaining;
        self.state = if last {
            DecodeState::Header
        } else {
            DecodeState::Data {
                stream_id,
                fin,
                remaining: remaining - piece,
            }
        };
        Some(Frame::Data {
            stream_id,
            fin: fin && last,
            data,
        })
    }
}

fn is_known_type(frame_type: u16) -> bool {
    use frame_type::*;
    matches!(
        frame_type,
        SYN_STREAM | SYN_REPLY | RST_STREAM | SETTINGS | PING | GOAWAY | HEADERS | WINDOW_UPDATE
    )
}

/// Reads a control frame's payload: big-endian words from the front, the
/// header block as the rest.
struct Payload {
    frame_type: u16,
    bytes: Bytes,
}

impl Payload {
    fn malformed(&self, reason: &'static str) -> FrameError {
        FrameError::Malformed {
            frame_type: self.frame_type,
            reason,
        }
    }

    fn need_exactly(&self, len: usize) -> Result<(), FrameError> {
        if self.bytes.len() != len {
            return Err(self.malformed("wrong payload length"));
        }
        Ok(())
    }

    fn u32(&mut self) -> Result<u32, FrameError> {
        if self.bytes.len() < 4 {
            return Err(self.malformed("payload too short"));
        }
        Ok(self.bytes.get_u32())
    }

    fn u8(&mut self) -> Result<u8, FrameError> {
        if self.bytes.is_empty() {
            return Err(self.malformed("payload too short"));
        }
        Ok(self.bytes.get_u8())
    }

    fn stream_id(&mut self) -> Result<u32, FrameError> {
        let id = self.u32()? & STREAM_ID_MASK;
        if id == 0 {
            return Err(self.malformed("stream id 0"));
        }
        Ok(id)
    }

    fn rest(self) -> Bytes {
        self.bytes
    }
}

fn decode_control(frame_type: u16, flags: u8, bytes: Bytes) -> Result<Frame, FrameError> {
    let mut p = Payload { frame_type, bytes };
    let fin = flags & FLAG_FIN != 0;
    let frame = match frame_type {
        frame_type::SYN_STREAM => {
            let stream_id = p.stream_id()?;
            let associated_stream_id = p.u32()? & STREAM_ID_MASK;
            let priority = p.u8()? >> 5;
            let slot = p.u8()?;
            Frame::SynStream {
                stream_id,
                associated_stream_id,
                priority,
                slot,
                fin,
                unidirectional: flags & FLAG_UNIDIRECTIONAL != 0,
                header_block: p.rest(),
            }
        }
        frame_type::SYN_REPLY => Frame::SynReply {
            stream_id: p.stream_id()?,
            fin,
            header_block: p.rest(),
        },
        frame_type::RST_STREAM => decode_rst_stream(p)?,
        frame_type::SETTINGS => decode_settings(p, flags)?,
        frame_type::PING => decode_ping(p, flags)?,
        frame_type::GOAWAY => {
            p.need_exactly(8)?;
            Frame::GoAway {
                last_good_stream_id: p.u32()? & STREAM_ID_MASK,
                status: p.u32()?,
            }
        }
        frame_type::HEADERS => Frame::Headers {
            stream_id: p.stream_id()?,
            fin,
            header_block: p.rest(),
        },
        frame_type::WINDOW_UPDATE => {
            p.need_exactly(8)?;
            Frame::WindowUpdate {
                stream_id: p.u32()? & STREAM_ID_MASK,
                delta_window_size: p.u32()? & 0x7fff_ffff,
            }
        }
        _ => unreachable!("only known types are decoded"),
    };
    Ok(frame)
}

fn decode_rst_stream(mut p: Payload) -> Result<Frame, FrameError> {
    p.need_exactly(8)?;
    let stream_id = p.stream_id()?;
    let status = p.u32()?;
    if status == 0 {
        return Err(p.malformed("status 0"));
    }
    Ok(Frame::RstStream { stream_id, status })
}

fn decode_settings(mut p: Payload, flags: u8) -> Result<Frame, FrameError> {
    let count = p.u32()? as usize;
    if count.checked_mul(8) != Some(p.bytes.len()) {
        return Err(p.malformed("entry count does not match the length"));
    }
    let entries = (0..count)
        .map(|_| {
            let flags_and_id = p.bytes.get_u32();
            Setting {
                flags: (flags_and_id >> 24) as u8,
                id: flags_and_id & 0x00ff_ffff,
                value: p.bytes.get_u32(),
            }
        })
        .collect();
    Ok(Frame::Settings {
        clear_settings: flags & FLAG_CLEAR_SETTINGS != 0,
        entries,
    })
}

fn decode_ping(mut p: Payload, flags: u8) -> Result<Frame, FrameError> {
    p.need_exactly(4)?;
    if flags != 0 {
        return Err(p.malformed("flags on a ping"));
    }
    Ok(Frame::Ping { id: p.u32()? })
}
