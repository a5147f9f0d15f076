//! Writes frames as peapod-spdy encodes them, header blocks compressed on
//! one context, for moby/spdystream's framer to read back:
//!
//! ```text
//! cargo run -p peapod-spdy --example write_frames -- /tmp/rust_frames.bin
//! cd crates/spdy/testdata/gen
//! GO111MODULE=off GOPATH=/usr/share/gocode go run main.go check /tmp/rust_frames.bin
//! ```

use bytes::Bytes;
use peapod_spdy::frame::{goaway_status, rst_status, Frame};
use peapod_spdy::{HeaderCompressor, Headers};

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: write_frames FILE");
        std::process::exit(2);
    };
    let mut out = Vec::new();
    for frame in frames() {
        frame.encode(&mut out);
    }
    if let Err(e) = std::fs::write(&path, out) {
        eprintln!("writing {path}: {e}");
        std::process::exit(1);
    }
}

/// What a connection sends (replies with empty header blocks, data, FIN,
/// RST, a PING echo, GOAWAY), plus header blocks with values, so the Go
/// side inflates several blocks of different sizes on one context.
fn frames() -> Vec<Frame> {
    let mut deflate = HeaderCompressor::new();
    let mut block = |pairs: &[(&str, &str)]| {
        let mut headers = Headers::new();
        for (name, value) in pairs {
            headers.add(name, value);
        }
        deflate.compress(&headers).expect("deflate")
    };
    let port_forward = [
        ("streamtype", "error"),
        ("port", "8080"),
        ("requestid", "0"),
    ];
    vec![
        Frame::SynStream {
            stream_id: 1,
            associated_stream_id: 0,
            priority: 0,
            slot: 0,
            fin: false,
            unidirectional: false,
            header_block: block(&port_forward),
        },
        Frame::SynReply {
            stream_id: 1,
            fin: false,
            header_block: block(&[]),
        },
        Frame::SynReply {
            stream_id: 3,
            fin: false,
            header_block: block(&[]),
        },
        Frame::Headers {
            stream_id: 3,
            fin: false,
            header_block: block(&[("x-multi", "a"), ("x-multi", "b"), ("x-other", "c")]),
        },
        Frame::Data {
            stream_id: 1,
            fin: false,
            data: Bytes::from_static(b"hello"),
        },
        Frame::Data {
            stream_id: 1,
            fin: true,
            data: Bytes::new(),
        },
        Frame::RstStream {
            stream_id: 3,
            status: rst_status::CANCEL,
        },
        Frame::Ping { id: 1 },
        Frame::SynReply {
            stream_id: 5,
            fin: false,
            header_block: block(&[]),
        },
        Frame::GoAway {
            last_good_stream_id: 5,
            status: goaway_status::OK,
        },
    ]
}
