//! The framing of an attach session, after the monitor's `ok` to an
//! `attach` request. Each frame is a 1-byte kind, a 4-byte big-endian
//! payload length, and the payload:
//!
//! | kind | name        | direction        | payload                          |
//! |------|-------------|------------------|----------------------------------|
//! | 1    | stdout      | monitor → client | container output                 |
//! | 2    | stderr      | monitor → client | container output (no tty only)   |
//! | 3    | stdin       | client → monitor | data for the container's stdin   |
//! | 4    | close stdin | client → monitor | empty                            |
//! | 5    | resize      | client → monitor | width, height: 2 bytes BE each   |
//! | 6    | end         | monitor → client | empty: the container has exited  |
//!
//! Payloads are at most [`MAX_PAYLOAD`] bytes; longer data goes in several
//! frames.

/// Bytes before the payload: kind and length.
pub const HEADER_LEN: usize = 5;
/// The longest payload a frame may carry.
pub const MAX_PAYLOAD: usize = 64 * 1024;

const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const STDIN: u8 = 3;
const CLOSE_STDIN: u8 = 4;
const RESIZE: u8 = 5;
const END: u8 = 6;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Stdin(Vec<u8>),
    CloseStdin,
    Resize { width: u16, height: u16 },
    End,
}

/// The streams of data frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
    Stdin,
}

impl Stream {
    fn kind(self) -> u8 {
        match self {
            Stream::Stdout => STDOUT,
            Stream::Stderr => STDERR,
            Stream::Stdin => STDIN,
        }
    }
}

fn push_frame(kind: u8, payload: &[u8], out: &mut Vec<u8>) {
    debug_assert!(payload.len() <= MAX_PAYLOAD);
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

/// Appends `data` as frames of `stream`, as many as its length needs
/// (none for empty data: an empty frame would carry nothing).
pub fn encode_data(stream: Stream, data: &[u8], out: &mut Vec<u8>) {
    for chunk in data.chunks(MAX_PAYLOAD) {
        push_frame(stream.kind(), chunk, out);
    }
}

/// The encoded length of `data` as frames of one stream.
pub fn encoded_len(data: &[u8]) -> usize {
    data.len() + data.len().div_ceil(MAX_PAYLOAD) * HEADER_LEN
}

impl Frame {
    /// Appends the frame's bytes to `out`; data longer than
    /// [`MAX_PAYLOAD`] becomes several frames.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Frame::Stdout(data) => encode_data(Stream::Stdout, data, out),
            Frame::Stderr(data) => encode_data(Stream::Stderr, data, out),
            Frame::Stdin(data) => encode_data(Stream::Stdin, data, out),
            Frame::CloseStdin => push_frame(CLOSE_STDIN, &[], out),
            Frame::Resize { width, height } => {
                let mut size = [0; 4];
                size[..2].copy_from_slice(&width.to_be_bytes());
                size[2..].copy_from_slice(&height.to_be_bytes());
                push_frame(RESIZE, &size, out)
            }
            Frame::End => push_frame(END, &[], out),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    fn decode(kind: u8, payload: &[u8]) -> Result<Frame, FrameError> {
        let empty = |frame: Frame| match payload.len() {
            0 => Ok(frame),
            len => Err(FrameError::BadLength { kind, len }),
        };
        match kind {
            STDOUT => Ok(Frame::Stdout(payload.to_vec())),
            STDERR => Ok(Frame::Stderr(payload.to_vec())),
            STDIN => Ok(Frame::Stdin(payload.to_vec())),
            CLOSE_STDIN => empty(Frame::CloseStdin),
            END => empty(Frame::End),
            RESIZE => match payload {
                [w0, w1, h0, h1] => Ok(Frame::Resize {
                    width: u16::from_be_bytes([*w0, *w1]),
                    height: u16::from_be_bytes([*h0, *h1]),
                }),
                _ => Err(FrameError::BadLength {
                    kind,
                    len: payload.len(),
                }),
            },
            _ => Err(FrameError::UnknownKind(kind)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    UnknownKind(u8),
    /// A payload longer than [`MAX_PAYLOAD`].
    TooLong(u32),
    /// A payload of the wrong length for its kind.
    BadLength {
        kind: u8,
        len: usize,
    },
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::UnknownKind(kind) => write!(f, "unknown frame kind {kind}"),
            FrameError::TooLong(len) => {
                write!(f, "frame payload of {len} bytes (at most {MAX_PAYLOAD})")
            }
            FrameError::BadLength { kind, len } => {
                write!(f, "frame of kind {kind} with a payload of {len} bytes")
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// Cuts a byte stream, fed as it is read, into frames. Holds at most one
/// frame's bytes plus what a read brought beyond it.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
}

impl FrameDecoder {
    pub fn new() -> FrameDecoder {
        FrameDecoder::default()
    }

    /// Adds bytes just read.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes fed and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next whole frame, `Ok(None)` until its last byte was fed. An
    /// error leaves the stream unusable: the peer is not speaking frames.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        let Some(header) = self.buf.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let kind = header[0];
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        if len as usize > MAX_PAYLOAD {
            return Err(FrameError::TooLong(len));
        }
        let end = HEADER_LEN + len as usize;
        if self.buf.len() < end {
            return Ok(None);
        }
        let frame = Frame::decode(kind, &self.buf[HEADER_LEN..end]);
        self.buf.drain(..end);
        frame.map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_kinds() -> Vec<Frame> {
        vec![
            Frame::Stdout(b"out\n".to_vec()),
            Frame::Stderr(b"err".to_vec()),
            Frame::Stdin(vec![0, 1, 2, 255]),
            Frame::CloseStdin,
            Frame::Resize {
                width: 300,
                height: 65535,
            },
            Frame::End,
        ]
    }

    fn decode_all(bytes: &[u8], step: usize) -> Vec<Frame> {
        let mut decoder = FrameDecoder::new();
        let mut frames = Vec::new();
        for chunk in bytes.chunks(step) {
            decoder.feed(chunk);
            while let Some(frame) = decoder.next_frame().unwrap() {
                frames.push(frame);
            }
        }
        assert_eq!(decoder.buffered(), 0);
        frames
    }

    #[test]
    fn round_trip_in_one_read() {
        let mut bytes = Vec::new();
        for frame in all_kinds() {
            frame.encode(&mut bytes);
        }
        assert_eq!(decode_all(&bytes, bytes.len()), all_kinds());
    }

    #[test]
    fn round_trip_from_partial_reads() {
        let mut bytes = Vec::new();
        for frame in all_kinds() {
            frame.encode(&mut bytes);
        }
        for step in [1, 2, 3, 5, 7, 11] {
            assert_eq!(decode_all(&bytes, step), all_kinds(), "reads of {step}");
        }
    }

    #[test]
    fn wire_format() {
        assert_eq!(
            Frame::Stdout(b"hi".to_vec()).to_bytes(),
            b"\x01\0\0\0\x02hi"
        );
        assert_eq!(Frame::CloseStdin.to_bytes(), b"\x04\0\0\0\0");
        assert_eq!(
            Frame::Resize {
                width: 0x0102,
                height: 0x0304
            }
            .to_bytes(),
            b"\x05\0\0\0\x04\x01\x02\x03\x04"
        );
        assert_eq!(Frame::End.to_bytes(), b"\x06\0\0\0\0");
    }

    #[test]
    fn long_data_becomes_several_frames() {
        let data = vec![7u8; 2 * MAX_PAYLOAD + 10];
        let bytes = Frame::Stdin(data.clone()).to_bytes();
        assert_eq!(bytes.len(), encoded_len(&data));
        let frames = decode_all(&bytes, 4096);
        let lens: Vec<usize> = frames
            .iter()
            .map(|f| match f {
                Frame::Stdin(d) => d.len(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(lens, [MAX_PAYLOAD, MAX_PAYLOAD, 10]);
        assert!(Frame::Stdout(Vec::new()).to_bytes().is_empty());
        assert_eq!(encoded_len(&[]), 0);
    }

    #[test]
    fn bad_streams() {
        let mut d = FrameDecoder::new();
        d.feed(b"\x09\0\0\0\0");
        assert_eq!(d.next_frame(), Err(FrameError::UnknownKind(9)));
        let mut d = FrameDecoder::new();
        d.feed(&[1, 0, 1, 0, 1]);
        assert_eq!(d.next_frame(), Err(FrameError::TooLong(65537)));
        let mut d = FrameDecoder::new();
        d.feed(b"\x05\0\0\0\x02ab");
        assert_eq!(
            d.next_frame(),
            Err(FrameError::BadLength { kind: 5, len: 2 })
        );
        let mut d = FrameDecoder::new();
        d.feed(b"\x06\0\0\0\x01x");
        assert!(d.next_frame().is_err());
        // A header alone is not a frame yet.
        let mut d = FrameDecoder::new();
        d.feed(b"\x01\0\0\0\x03ab");
        assert_eq!(d.next_frame(), Ok(None));
        d.feed(b"c");
        assert_eq!(d.next_frame(), Ok(Some(Frame::Stdout(b"abc".to_vec()))));
    }
}
