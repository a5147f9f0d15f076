//! Byte layouts written out by hand from SPDY Protocol Draft 3, section 2.

use super::*;

/// The frame encodes to `bytes`, and `bytes` decode to the frame, fed
/// whole or one byte at a time.
fn check_layout(frame: Frame, bytes: &[u8]) {
    assert_eq!(frame.to_vec(), bytes, "encoding of {frame:?}");
    assert_eq!(decode_all(&[bytes]), vec![frame.clone()], "whole");
    let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(decode_all(&bytewise), vec![frame], "one byte at a time");
}

/// Every frame the chunks decode to, fed in turn; panics on an error.
fn decode_all(chunks: &[&[u8]]) -> Vec<Frame> {
    let mut decoder = FrameDecoder::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        decoder.feed(chunk);
        while let Some(frame) = decoder.next_frame().expect("decodes") {
            frames.push(frame);
        }
    }
    assert_eq!(decoder.buffered(), 0, "bytes left over");
    frames
}

fn decode_one(bytes: &[u8]) -> Result<Option<Frame>, FrameError> {
    let mut decoder = FrameDecoder::new();
    decoder.feed(bytes);
    decoder.next_frame()
}

#[test]
fn syn_stream_layout() {
    check_layout(
        Frame::SynStream {
            stream_id: 1,
            associated_stream_id: 0,
            priority: 0,
            slot: 0,
            fin: false,
            unidirectional: false,
            header_block: Bytes::from_static(&[0xaa, 0xbb]),
        },
        &[
            0x80, 0x03, // control bit, version 3
            0x00, 0x01, // type 1: SYN_STREAM
            0x00, // flags
            0x00, 0x00, 0x0c, // length: 10 + 2
            0x00, 0x00, 0x00, 0x01, // stream id 1
            0x00, 0x00, 0x00, 0x00, // associated stream id 0
            0x00, // priority 0 << 5
            0x00, // slot
            0xaa, 0xbb, // header block
        ],
    );
}

#[test]
fn syn_stream_flags_and_priority_layout() {
    check_layout(
        Frame::SynStream {
            stream_id: 0x7fff_fffd,
            associated_stream_id: 2,
            priority: 7,
            slot: 9,
            fin: true,
            unidirectional: true,
            header_block: Bytes::new(),
        },
        &[
            0x80, 0x03, 0x00, 0x01, // SYN_STREAM
            0x03, // flags: FIN | UNIDIRECTIONAL
            0x00, 0x00, 0x0a, // length 10
            0x7f, 0xff, 0xff, 0xfd, // stream id, the largest odd one
            0x00, 0x00, 0x00, 0x02, // associated stream id 2
            0xe0, // priority 7 << 5
            0x09, // slot 9
        ],
    );
}

#[test]
fn syn_reply_layout() {
    check_layout(
        Frame::SynReply {
            stream_id: 3,
            fin: false,
            header_block: Bytes::from_static(&[1, 2, 3]),
        },
        &[
            0x80, 0x03, 0x00, 0x02, // SYN_REPLY
            0x00, // flags
            0x00, 0x00, 0x07, // length: 4 + 3
            0x00, 0x00, 0x00, 0x03, // stream id 3
            0x01, 0x02, 0x03, // header block
        ],
    );
}

#[test]
fn rst_stream_layout() {
    check_layout(
        Frame::RstStream {
            stream_id: 5,
            status: rst_status::CANCEL,
        },
        &[
            0x80, 0x03, 0x00, 0x03, // RST_STREAM
            0x00, // flags
            0x00, 0x00, 0x08, // length 8
            0x00, 0x00, 0x00, 0x05, // stream id 5
            0x00, 0x00, 0x00, 0x05, // status 5: CANCEL
        ],
    );
}

#[test]
fn settings_layout() {
    check_layout(
        Frame::Settings {
            clear_settings: true,
            entries: vec![
                Setting {
                    flags: 1,
                    id: 4,
                    value: 100,
                },
                Setting {
                    flags: 0,
                    id: 7,
                    value: 65536,
                },
            ],
        },
        &[
            0x80, 0x03, 0x00, 0x04, // SETTINGS
            0x01, // flags: CLEAR_SETTINGS
            0x00, 0x00, 0x14, // length: 4 + 2 * 8
            0x00, 0x00, 0x00, 0x02, // 2 entries
            0x01, 0x00, 0x00, 0x04, // PERSIST_VALUE, id 4: MAX_CONCURRENT_STREAMS
            0x00, 0x00, 0x00, 0x64, // 100
            0x00, 0x00, 0x00, 0x07, // no flags, id 7: INITIAL_WINDOW_SIZE
            0x00, 0x01, 0x00, 0x00, // 65536
        ],
    );
}

#[test]
fn ping_layout() {
    check_layout(
        Frame::Ping { id: 1 },
        &[
            0x80, 0x03, 0x00, 0x06, // PING
            0x00, // flags
            0x00, 0x00, 0x04, // length 4
            0x00, 0x00, 0x00, 0x01, // id 1
        ],
    );
}

#[test]
fn goaway_layout() {
    check_layout(
        Frame::GoAway {
            last_good_stream_id: 7,
            status: goaway_status::PROTOCOL_ERROR,
        },
        &[
            0x80, 0x03, 0x00, 0x07, // GOAWAY
            0x00, // flags
            0x00, 0x00, 0x08, // length 8
            0x00, 0x00, 0x00, 0x07, // last good stream id 7
            0x00, 0x00, 0x00, 0x01, // status 1: PROTOCOL_ERROR
        ],
    );
}

#[test]
fn headers_layout() {
    check_layout(
        Frame::Headers {
            stream_id: 9,
            fin: true,
            header_block: Bytes::from_static(&[0xcc]),
        },
        &[
            0x80, 0x03, 0x00, 0x08, // HEADERS
            0x01, // flags: FIN
            0x00, 0x00, 0x05, // length: 4 + 1
            0x00, 0x00, 0x00, 0x09, // stream id 9
            0xcc, // header block
        ],
    );
}

#[test]
fn window_update_layout() {
    check_layout(
        Frame::WindowUpdate {
            stream_id: 1,
            delta_window_size: 65536,
        },
        &[
            0x80, 0x03, 0x00, 0x09, // WINDOW_UPDATE
            0x00, // flags
            0x00, 0x00, 0x08, // length 8
            0x00, 0x00, 0x00, 0x01, // stream id 1
            0x00, 0x01, 0x00, 0x00, // delta 65536
        ],
    );
}

#[test]
fn data_layout() {
    check_layout(
        Frame::Data {
            stream_id: 1,
            fin: true,
            data: Bytes::from_static(b"hi"),
        },
        &[
            0x00, 0x00, 0x00, 0x01, // stream id 1, top bit clear
            0x01, // flags: FIN
            0x00, 0x00, 0x02, // length 2
            b'h', b'i',
        ],
    );
}

#[test]
fn empty_data_with_fin_layout() {
    check_layout(
        Frame::Data {
            stream_id: 0x0102_0304,
            fin: true,
            data: Bytes::new(),
        },
        &[
            0x01, 0x02, 0x03, 0x04, // stream id
            0x01, // flags: FIN
            0x00, 0x00, 0x00, // length 0
        ],
    );
}

#[test]
fn frames_back_to_back_decode_in_order() {
    let frames = vec![
        Frame::Ping { id: 3 },
        Frame::Data {
            stream_id: 1,
            fin: false,
            data: Bytes::from_static(b"abc"),
        },
        Frame::RstStream {
            stream_id: 1,
            status: rst_status::PROTOCOL_ERROR,
        },
    ];
    let mut bytes = Vec::new();
    for frame in &frames {
        frame.encode(&mut bytes);
    }
    assert_eq!(decode_all(&[&bytes]), frames);
    let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(decode_all(&bytewise), frames);
}

#[test]
fn version_is_not_checked() {
    let ping_v2 = [0x80, 0x02, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 5];
    assert_eq!(decode_one(&ping_v2), Ok(Some(Frame::Ping { id: 5 })));
}

#[test]
fn reserved_bits_and_undefined_flags_are_dropped() {
    let bytes = [
        0x80, 0x03, 0x00, 0x02, // SYN_REPLY
        0xfe, // undefined flags only
        0x00, 0x00, 0x04, // length 4
        0x80, 0x00, 0x00, 0x03, // reserved bit set, stream id 3
    ];
    let frame = Frame::SynReply {
        stream_id: 3,
        fin: false,
        header_block: Bytes::new(),
    };
    assert_eq!(decode_one(&bytes), Ok(Some(frame)));
}

#[test]
fn unknown_control_type_is_reported_then_skipped() {
    let mut bytes = vec![
        0x80, 0x03, 0x00, 0x0a, // type 10 (SPDY/3 has none)
        0x00, 0x00, 0x00, 0x03, // length 3
        0x01, 0x02, 0x03, // payload
    ];
    Frame::Ping { id: 7 }.encode(&mut bytes);
    for chunk_len in [bytes.len(), 1] {
        let mut decoder = FrameDecoder::new();
        let mut results = Vec::new();
        for chunk in bytes.chunks(chunk_len) {
            decoder.feed(chunk);
            loop {
                match decoder.next_frame() {
                    Ok(None) => break,
                    result => results.push(result),
                }
            }
        }
        let unknown = FrameError::UnknownControlType {
            frame_type: 10,
            length: 3,
        };
        assert!(!unknown.is_fatal());
        assert_eq!(results, vec![Err(unknown), Ok(Some(Frame::Ping { id: 7 }))]);
    }
}

#[test]
fn control_frame_over_the_cap_is_refused_before_it_arrives() {
    let mut decoder = FrameDecoder::with_max_control_len(16);
    // A SYN_STREAM header announcing 100 bytes; none of them fed.
    decoder.feed(&[0x80, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x64]);
    let error = decoder.next_frame().unwrap_err();
    assert_eq!(
        error,
        FrameError::TooLarge {
            frame_type: frame_type::SYN_STREAM,
            length: 100,
            max: 16
        }
    );
    assert!(error.is_fatal());
}

#[test]
fn long_data_frame_comes_in_pieces() {
    let payload: Vec<u8> = (0..100 * 1024).map(|i| (i % 251) as u8).collect();
    let bytes = Frame::Data {
        stream_id: 5,
        fin: true,
        data: Bytes::from(payload.clone()),
    }
    .to_vec();
    for chunk_len in [bytes.len(), 1000, 1] {
        let chunks: Vec<&[u8]> = bytes.chunks(chunk_len).collect();
        let pieces = decode_all(&chunks);
        let lens: Vec<usize> = pieces.iter().map(data_len).collect();
        assert_eq!(
            lens,
            [32768, 32768, 32768, 4096],
            "fed {chunk_len} at a time"
        );
        let fins: Vec<bool> = pieces
            .iter()
            .map(|p| matches!(p, Frame::Data { fin: true, .. }))
            .collect();
        assert_eq!(fins, [false, false, false, true]);
        let joined: Vec<u8> = pieces.iter().flat_map(data_bytes).collect();
        assert_eq!(joined, payload);
    }
}

fn data_len(frame: &Frame) -> usize {
    data_bytes(frame).len()
}

fn data_bytes(frame: &Frame) -> Vec<u8> {
    match frame {
        Frame::Data {
            stream_id: 5, data, ..
        } => data.to_vec(),
        other => panic!("not a data frame of stream 5: {other:?}"),
    }
}

fn malformed(frame_type: u16, reason: &'static str) -> Result<Option<Frame>, FrameError> {
    Err(FrameError::Malformed { frame_type, reason })
}

#[test]
fn frames_the_go_peer_refuses_are_refused() {
    use frame_type::*;
    let rst_status_0 = [0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0];
    assert_eq!(decode_one(&rst_status_0), malformed(RST_STREAM, "status 0"));
    let rst_stream_0 = [0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 5];
    assert_eq!(
        decode_one(&rst_stream_0),
        malformed(RST_STREAM, "stream id 0")
    );
    let syn_stream_0 = [0x80, 3, 0, 1, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(
        decode_one(&syn_stream_0),
        malformed(SYN_STREAM, "stream id 0")
    );
    let ping_with_flags = [0x80, 3, 0, 6, 1, 0, 0, 4, 0, 0, 0, 1];
    assert_eq!(
        decode_one(&ping_with_flags),
        malformed(PING, "flags on a ping")
    );
    let goaway_12 = [
        0x80, 3, 0, 7, 0, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    assert_eq!(
        decode_one(&goaway_12),
        malformed(GOAWAY, "wrong payload length")
    );
    let window_update_4 = [0x80, 3, 0, 9, 0, 0, 0, 4, 0, 0, 0, 1];
    assert_eq!(
        decode_one(&window_update_4),
        malformed(WINDOW_UPDATE, "wrong payload length")
    );
    let data_stream_0 = [0, 0, 0, 0, 0, 0, 0, 1, b'x'];
    assert_eq!(
        decode_one(&data_stream_0),
        Err(FrameError::DataOnStreamZero)
    );
}

#[test]
fn truncated_payloads_are_refused() {
    use frame_type::*;
    let short_syn_stream = [0x80, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0, 1, 0, 0];
    assert_eq!(
        decode_one(&short_syn_stream),
        malformed(SYN_STREAM, "payload too short")
    );
    let short_syn_reply = [0x80, 3, 0, 2, 0, 0, 0, 2, 0, 1];
    assert_eq!(
        decode_one(&short_syn_reply),
        malformed(SYN_REPLY, "payload too short")
    );
    let short_ping = [0x80, 3, 0, 6, 0, 0, 0, 2, 0, 1];
    assert_eq!(
        decode_one(&short_ping),
        malformed(PING, "wrong payload length")
    );
    // Two entries announced, one present.
    let settings = [
        0x80, 3, 0, 4, 0, 0, 0, 12, 0, 0, 0, 2, 0, 0, 0, 4, 0, 0, 0, 1,
    ];
    assert_eq!(
        decode_one(&settings),
        malformed(SETTINGS, "entry count does not match the length")
    );
}

#[test]
fn incomplete_frame_waits_for_more() {
    let bytes = Frame::Ping { id: 9 }.to_vec();
    let mut decoder = FrameDecoder::new();
    decoder.feed(&bytes[..11]);
    assert_eq!(decoder.next_frame(), Ok(None));
    assert_eq!(decoder.buffered(), 11);
    decoder.feed(&bytes[11..]);
    assert_eq!(decoder.next_frame(), Ok(Some(Frame::Ping { id: 9 })));
    assert_eq!(decoder.next_frame(), Ok(None));
}
