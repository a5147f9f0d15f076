//! SPDY/3.1 as moby/spdystream speaks it, server side: what kubectl exec,
//! attach and port-forward use between kubelet (client-go) and a CRI
//! runtime's streaming server, after the HTTP upgrade to `SPDY/3.1`.
//!
//! - [`frame`]: the frames and their byte layout; an incremental decoder.
//! - [`headers`]: header blocks and their per-connection zlib contexts.
//! - [`serve`] and its [`Connection`], [`Incoming`] and [`Stream`]s: an
//!   async connection that answers every stream the peer opens and moves
//!   data both ways. No flow control: spdystream has none; backpressure is
//!   TCP's.
//!
//! The Go peer drops the whole connection on frames it does not expect, so
//! this side only ever sends SYN_REPLY, DATA, RST_STREAM (non-zero status),
//! PING echoes and GOAWAY, each as spdystream lays them out.

pub mod conn;
pub mod dictionary;
pub mod frame;
pub mod headers;

pub use conn::{serve, Connection, Incoming, Stream, StreamReader, StreamWriter};
pub use frame::{Frame, FrameDecoder, FrameError};
pub use headers::{HeaderCompressor, HeaderDecompressor, HeaderError, Headers};
