//! Frames written by moby/spdystream's framer (testdata/go_frames.bin, made
//! by testdata/gen/main.go) decode here, header blocks inflated in order on
//! one context as a connection does. To write the file again:
//!
//! ```text
//! cd crates/spdy/testdata/gen
//! GO111MODULE=off GOPATH=/usr/share/gocode go run main.go gen ..
//! ```
//!
//! The other way round (Go reading what this crate writes) is a manual
//! check, described in main.go and examples/write_frames.rs.

use bytes::Bytes;
use peapod_spdy::{Frame, FrameDecoder, HeaderDecompressor, Headers};

const GO_FRAMES: &[u8] = include_bytes!("../testdata/go_frames.bin");

/// Go writes a header map, so in no particular order.
fn assert_port_forward_headers(headers: &Option<Headers>, streamtype: &str) {
    let headers = headers.as_ref().expect("a header block");
    assert_eq!(headers.len(), 3, "{headers:?}");
    assert_eq!(headers.get("streamtype"), Some(streamtype));
    assert_eq!(headers.get("port"), Some("8080"));
    assert_eq!(headers.get("requestid"), Some("0"));
}

/// The frames in the file and, for those with a header block, its headers.
fn decode_go_frames(chunk_len: usize) -> Vec<(Frame, Option<Headers>)> {
    let mut decoder = FrameDecoder::new();
    let mut inflate = HeaderDecompressor::new();
    let mut decoded = Vec::new();
    for chunk in GO_FRAMES.chunks(chunk_len) {
        decoder.feed(chunk);
        while let Some(frame) = decoder.next_frame().expect("Go's frames decode") {
            let headers = match &frame {
                Frame::SynStream { header_block, .. }
                | Frame::SynReply { header_block, .. }
                | Frame::Headers { header_block, .. } => Some(
                    inflate
                        .decompress(header_block)
                        .expect("Go's header block inflates"),
                ),
                _ => None,
            };
            decoded.push((frame, headers));
        }
    }
    assert_eq!(decoder.buffered(), 0);
    decoded
}

#[test]
fn go_framer_output_decodes() {
    for chunk_len in [GO_FRAMES.len(), 7, 1] {
        let decoded = decode_go_frames(chunk_len);
        let kinds: Vec<String> = decoded
            .iter()
            .map(|(frame, _)| {
                format!("{frame:?}")
                    .split([' ', '{'])
                    .next()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "SynStream",
                "SynStream",
                "SynReply",
                "Headers",
                "Data",
                "Ping"
            ]
        );

        let (first, first_headers) = &decoded[0];
        assert!(matches!(
            first,
            Frame::SynStream {
                stream_id: 1,
                associated_stream_id: 0,
                priority: 0,
                fin: false,
                ..
            }
        ));
        assert_port_forward_headers(first_headers, "error");

        let (second, second_headers) = &decoded[1];
        assert!(matches!(second, Frame::SynStream { stream_id: 3, .. }));
        assert_port_forward_headers(second_headers, "data");

        let (reply, reply_headers) = &decoded[2];
        assert!(matches!(
            reply,
            Frame::SynReply {
                stream_id: 1,
                fin: false,
                ..
            }
        ));
        assert_eq!(reply_headers.as_ref(), Some(&Headers::new()));

        let (_, multi) = &decoded[3];
        assert_eq!(multi.as_ref().unwrap().get_all("x-multi"), ["a", "b"]);

        let data = Frame::Data {
            stream_id: 3,
            fin: true,
            data: Bytes::from_static(b"hello"),
        };
        assert_eq!(decoded[4].0, data);
        assert_eq!(decoded[5].0, Frame::Ping { id: 1 });
    }
}

#[test]
fn go_header_blocks_are_framed_as_documented() {
    let decoded = decode_go_frames(GO_FRAMES.len());
    let blocks: Vec<Bytes> = decoded
        .into_iter()
        .filter_map(|(frame, _)| match frame {
            Frame::SynStream { header_block, .. }
            | Frame::SynReply { header_block, .. }
            | Frame::Headers { header_block, .. } => Some(header_block),
            _ => None,
        })
        .collect();
    assert_eq!(blocks.len(), 4);
    assert_eq!(blocks[0][..6], [0x78, 0xf9, 0xe3, 0xc6, 0xa7, 0xc2]);
    for block in &blocks {
        assert!(block.ends_with(&[0x00, 0x00, 0xff, 0xff]));
    }
}
