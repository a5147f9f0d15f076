//! The connection against a hand-driven peer over an in-memory pipe: the
//! peer writes frames as client-go would and checks every frame it gets.

use std::future::Future;
use std::io::ErrorKind;
use std::time::Duration;

use bytes::Bytes;
use peapod_spdy::frame::{goaway_status, rst_status};
use peapod_spdy::{
    serve, Connection, Frame, FrameDecoder, HeaderCompressor, HeaderDecompressor, Headers,
    Incoming, Stream,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};

/// Long enough for anything that is going to happen in these tests.
const PATIENCE: Duration = Duration::from_secs(10);
/// How long to wait for something that must not happen.
const QUIET: Duration = Duration::from_millis(200);

async fn soon<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// The client end: frames in, frames out, its own zlib contexts.
struct Peer<IO> {
    io: IO,
    decoder: FrameDecoder,
    deflate: HeaderCompressor,
    inflate: HeaderDecompressor,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Peer<IO> {
    fn new(io: IO) -> Self {
        Peer {
            io,
            decoder: FrameDecoder::new(),
            deflate: HeaderCompressor::new(),
            inflate: HeaderDecompressor::new(),
        }
    }

    async fn send(&mut self, frame: Frame) {
        self.io
            .write_all(&frame.to_vec())
            .await
            .expect("peer write");
    }

    fn syn_stream(&mut self, id: u32, pairs: &[(&str, &str)], fin: bool) -> Frame {
        let mut headers = Headers::new();
        for (name, value) in pairs {
            headers.add(name, value);
        }
        Frame::SynStream {
            stream_id: id,
            associated_stream_id: 0,
            priority: 0,
            slot: 0,
            fin,
            unidirectional: false,
            header_block: self.deflate.compress(&headers).unwrap(),
        }
    }

    async fn open(&mut self, id: u32, pairs: &[(&str, &str)]) {
        let frame = self.syn_stream(id, pairs, false);
        self.send(frame).await;
    }

    async fn data(&mut self, id: u32, data: &[u8], fin: bool) {
        let frame = Frame::Data {
            stream_id: id,
            fin,
            data: Bytes::copy_from_slice(data),
        };
        self.send(frame).await;
    }

    /// The next frame; None at the end of the connection.
    async fn try_next(&mut self) -> Option<Frame> {
        let mut buf = vec![0; 64 * 1024];
        loop {
            if let Some(frame) = self.decoder.next_frame().expect("server frames decode") {
                return Some(frame);
            }
            let n = soon("a frame from the server", self.io.read(&mut buf))
                .await
                .expect("peer read");
            if n == 0 {
                assert_eq!(
                    self.decoder.buffered(),
                    0,
                    "connection ended inside a frame"
                );
                return None;
            }
            self.decoder.feed(&buf[..n]);
        }
    }

    async fn next(&mut self) -> Frame {
        self.try_next().await.expect("a frame, not the end")
    }

    /// Checks that the next frame is a SYN_REPLY for `id` as spdystream
    /// sends it: no flags, an empty header block.
    async fn expect_reply(&mut self, id: u32) {
        match self.next().await {
            Frame::SynReply {
                stream_id,
                fin: false,
                header_block,
            } => {
                assert_eq!(stream_id, id);
                let headers = self.inflate.decompress(&header_block).unwrap();
                assert!(headers.is_empty(), "reply headers {headers:?}");
            }
            other => panic!("expected SYN_REPLY {id}, got {other:?}"),
        }
    }

    async fn expect(&mut self, expected: Frame) {
        assert_eq!(self.next().await, expected);
    }

    /// Sends a PING and expects its echo next: nothing else was sent
    /// before it.
    async fn expect_nothing_else(&mut self, ping_id: u32) {
        self.send(Frame::Ping { id: ping_id }).await;
        self.expect(Frame::Ping { id: ping_id }).await;
    }
}

fn connect() -> (Peer<DuplexStream>, Connection, Incoming) {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let (conn, incoming) = serve(server, Bytes::new());
    (Peer::new(client), conn, incoming)
}

async fn next_stream(incoming: &mut Incoming) -> Stream {
    soon("a stream", incoming.next()).await.expect("a stream")
}

fn data(bytes: &'static [u8], fin: bool, id: u32) -> Frame {
    Frame::Data {
        stream_id: id,
        fin,
        data: Bytes::from_static(bytes),
    }
}

#[tokio::test]
async fn stream_is_answered_and_carries_data_both_ways() {
    let (mut peer, _conn, mut incoming) = connect();
    peer.open(
        1,
        &[("streamtype", "stdout"), ("x-two", "a"), ("x-two", "b")],
    )
    .await;
    peer.expect_reply(1).await;

    let mut stream = next_stream(&mut incoming).await;
    assert_eq!(stream.id, 1);
    assert_eq!(stream.header("StreamType"), Some("stdout"));
    assert_eq!(stream.headers.get_all("x-two"), ["a", "b"]);

    peer.data(1, b"ping", false).await;
    assert_eq!(soon("data", stream.reader.read()).await.unwrap(), "ping");
    stream.writer.write(b"pong").await.unwrap();
    peer.expect(data(b"pong", false, 1)).await;

    peer.data(1, b"", true).await;
    assert_eq!(soon("peer FIN", stream.reader.read()).await, None);
    stream.writer.write(b"after the peer's FIN").await.unwrap();
    peer.expect(data(b"after the peer's FIN", false, 1)).await;

    stream.writer.close().await;
    peer.expect(data(b"", true, 1)).await;
    stream.writer.close().await;
    let error = stream.writer.write(b"late").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::BrokenPipe);
    stream.writer.write(b"").await.unwrap_err();
    peer.expect_nothing_else(1).await;
}

#[tokio::test]
async fn every_stream_is_answered_before_it_is_taken() {
    let (mut peer, _conn, mut incoming) = connect();
    for id in [1, 3, 5] {
        peer.open(id, &[("streamtype", "error")]).await;
        peer.expect_reply(id).await;
    }
    for id in [1, 3, 5] {
        assert_eq!(next_stream(&mut incoming).await.id, id);
    }
}

#[tokio::test]
async fn writes_are_cut_into_32_kib_frames() {
    let (mut peer, _conn, mut incoming) = connect();
    peer.open(1, &[]).await;
    peer.expect_reply(1).await;
    let stream = next_stream(&mut incoming).await;
    let payload: Vec<u8> = (0..80 * 1024).map(|i| i as u8).collect();
    let write = tokio::spawn(async move {
        stream.writer.write(&payload).await.unwrap();
        stream
    });
    let mut lens = Vec::new();
    for _ in 0..3 {
        match peer.next().await {
            Frame::Data {
                stream_id: 1,
                fin: false,
                data,
            } => lens.push(data.len()),
            other => panic!("expected data, got {other:?}"),
        }
    }
    assert_eq!(lens, [32768, 32768, 16384]);
    write.await.unwrap();
}

#[tokio::test]
async fn peer_reset_ends_reads_and_fails_writes() {
    let (mut peer, _conn, mut incoming) = connect();
    peer.open(1, &[]).await;
    peer.expect_reply(1).await;
    let mut stream = next_stream(&mut incoming).await;
    peer.data(1, b"dropped by the reset", false).await;
    peer.send(Frame::RstStream {
        stream_id: 1,
        status: rst_status::CANCEL,
    })
    .await;
    peer.expect_nothing_else(1).await;
    assert_eq!(soon("reset", stream.reader.read()).await, None);
    let error = stream.writer.write(b"x").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ConnectionReset);
    // No RST answers an RST, and no FIN follows one.
    stream.writer.reset().await;
    stream.writer.close().await;
    peer.expect_nothing_else(3).await;
}

#[tokio::test]
async fn peer_reset_after_its_fin_still_fails_writes() {
    let (mut peer, _conn, mut incoming) = connect();
    peer.open(1, &[]).await;
    peer.expect_reply(1).await;
    let mut stream = next_stream(&mut incoming).await;
    peer.data(1, b"", true).await;
    assert_eq!(soon("FIN", stream.reader.read()).await, None);
    peer.send(Frame::RstStream {
        stream_id: 1,
        status: rst_status::CANCEL,
    })
    .await;
    peer.expect_nothing_else(1).await;
    let error = stream.writer.write(b"x").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ConnectionReset);
}

#[tokio::test]
async fn our_reset_sends_cancel_once() {
    let (mut peer, _conn, mut incoming) = connect();
    peer.open(1, &[]).await;
    peer.expect_reply(1).await;
    let mut stream = next_stream(&mut incoming).await;
    let writer = stream.writer.clone();
    writer.reset().await;
    stream.writer.reset().await;
    peer.expect(Frame::RstStream {
        stream_id: 1,
        status: rst_status::CANCEL,
    })
    .await;
    peer.expect_nothing_else(1).await;
    assert_eq!(soon("reset", stream.reader.read()).await, None);
    let error = writer.write(b"x").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ConnectionReset);
    // Data the peer sent before it saw the RST goes nowhere.
    peer.data(1, b"late", false).await;
    peer.expect_nothing_else(3).await;
}

#[tokio::test]
async fn stream_ids_must_be_odd_and_rising() {
    let (mut peer, _conn, mut incoming) = connect();
    peer.open(3, &[("streamtype", "error")]).await;
    peer.expect_reply(3).await;
    for bad in [1, 3, 4] {
        peer.open(bad, &[("streamtype", "error")]).await;
        peer.expect(Frame::RstStream {
            stream_id: bad,
            status: rst_status::PROTOCOL_ERROR,
        })
        .await;
    }
    // The refused streams' header blocks were inflated: the next one reads.
    peer.open(7, &[("streamtype", "stdin")]).await;
    peer.expect_reply(7).await;
    assert_eq!(next_stream(&mut incoming).await.id, 3);
    let seventh = next_stream(&mut incoming).await;
    assert_eq!(
        (seventh.id, seventh.header("streamtype")),
        (7, Some("stdin"))
    );
}

#[tokio::test]
async fn odd_pings_are_echoed_and_even_ones_are_not() {
    let (mut peer, _conn, _incoming) = connect();
    peer.send(Frame::Ping { id: 1 }).await;
    peer.expect(Frame::Ping { id: 1 }).await;
    peer.send(Frame::Ping { id: 2 }).await;
    peer.send(Frame::Ping { id: 0x7fff_ffff }).await;
    peer.expect(Frame::Ping { id: 0x7fff_ffff }).await;
}

#[tokio::test]
async fn settings_window_updates_headers_and_unknown_frames_are_ignored() {
    let (mut peer, _conn, mut incoming) = connect();
    peer.open(1, &[("streamtype", "data")]).await;
    peer.expect_reply(1).await;
    peer.send(Frame::Settings {
        clear_settings: false,
        entries: vec![peapod_spdy::frame::Setting {
            flags: 0,
            id: 7,
            value: 1,
        }],
    })
    .await;
    peer.send(Frame::WindowUpdate {
        stream_id: 1,
        delta_window_size: 1000,
    })
    .await;
    let mut extra = Headers::new();
    extra.add("x-extra", "1");
    let header_block = peer.deflate.compress(&extra).unwrap();
    peer.send(Frame::Headers {
        stream_id: 1,
        fin: false,
        header_block,
    })
    .await;
    // Type 10 does not exist in SPDY/3.
    peer.io
        .write_all(&[0x80, 0x03, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x02, 0xab, 0xcd])
        .await
        .unwrap();
    peer.data(7, b"no such stream", false).await;
    peer.expect_nothing_else(1).await;

    // The zlib context went through the HEADERS block: stream 3 still reads.
    peer.open(3, &[("streamtype", "error")]).await;
    peer.expect_reply(3).await;
    assert_eq!(next_stream(&mut incoming).await.id, 1);
    assert_eq!(
        next_stream(&mut incoming).await.header("streamtype"),
        Some("error")
    );
}

#[tokio::test]
async fn headers_with_fin_end_the_peer_side() {
    let (mut peer, _conn, mut incoming) = connect();
    peer.open(1, &[]).await;
    peer.expect_reply(1).await;
    let mut stream = next_stream(&mut incoming).await;
    let header_block = peer.deflate.compress(&Headers::new()).unwrap();
    peer.send(Frame::Headers {
        stream_id: 1,
        fin: true,
        header_block,
    })
    .await;
    assert_eq!(soon("FIN", stream.reader.read()).await, None);
}

#[tokio::test]
async fn syn_stream_with_fin_has_no_data_but_takes_ours() {
    let (mut peer, _conn, mut incoming) = connect();
    let frame = peer.syn_stream(1, &[("streamtype", "error")], true);
    peer.send(frame).await;
    peer.expect_reply(1).await;
    let mut stream = next_stream(&mut incoming).await;
    assert_eq!(soon("no data", stream.reader.read()).await, None);
    stream.writer.write(b"status").await.unwrap();
    peer.expect(data(b"status", false, 1)).await;
}

#[tokio::test]
async fn close_sends_goaway_with_the_last_stream_after_queued_data() {
    let (mut peer, conn, mut incoming) = connect();
    peer.open(1, &[]).await;
    peer.expect_reply(1).await;
    peer.open(3, &[]).await;
    peer.expect_reply(3).await;
    let first = next_stream(&mut incoming).await;
    first.writer.write(b"bye").await.unwrap();
    soon("close", conn.close()).await;
    peer.expect(data(b"bye", false, 1)).await;
    peer.expect(Frame::GoAway {
        last_good_stream_id: 3,
        status: goaway_status::OK,
    })
    .await;
    assert_eq!(peer.try_next().await, None, "write side shut down");

    soon("closed", conn.closed()).await;
    assert!(conn.is_closed());
    soon("second close", conn.close()).await;
    assert!(soon("incoming", incoming.next()).await.is_none());
    let error = first.writer.write(b"x").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotConnected);
    first.writer.reset().await;
}

#[tokio::test]
async fn after_close_the_transport_drains_until_the_peer_closes() {
    let (mut peer, conn, _incoming) = connect();
    soon("close", conn.close()).await;
    peer.expect(Frame::GoAway {
        last_good_stream_id: 0,
        status: goaway_status::OK,
    })
    .await;
    assert_eq!(peer.try_next().await, None);
    // A ping in flight when the GOAWAY came is read and dropped, not left
    // unread (on TCP, unread data makes close send RST).
    for id in [1, 3] {
        peer.send(Frame::Ping { id }).await;
        tokio::time::sleep(QUIET).await;
    }
    peer.io.shutdown().await.unwrap();
    // Then the transport goes: writes to it fail.
    soon("transport released", async {
        while peer.io.write_all(&[0]).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn close_without_streams_names_stream_zero() {
    let (mut peer, conn, _incoming) = connect();
    soon("close", conn.close()).await;
    peer.expect(Frame::GoAway {
        last_good_stream_id: 0,
        status: goaway_status::OK,
    })
    .await;
    assert_eq!(peer.try_next().await, None);
}

#[tokio::test]
async fn buffered_bytes_are_parsed_first() {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let mut peer = Peer::new(client);
    let mut early = Vec::new();
    peer.syn_stream(1, &[("streamtype", "stdin")], false)
        .encode(&mut early);
    data(b"early ", false, 1).encode(&mut early);
    // Cut inside the next frame: the rest comes over the transport.
    let ping = Frame::Ping { id: 5 }.to_vec();
    early.extend_from_slice(&ping[..3]);

    let (_conn, mut incoming) = serve(server, Bytes::from(early));
    peer.io.write_all(&ping[3..]).await.unwrap();
    peer.data(1, b"late", true).await;

    peer.expect_reply(1).await;
    peer.expect(Frame::Ping { id: 5 }).await;
    let mut stream = next_stream(&mut incoming).await;
    assert_eq!(stream.header("streamtype"), Some("stdin"));
    assert_eq!(soon("early", stream.reader.read()).await.unwrap(), "early ");
    assert_eq!(soon("late", stream.reader.read()).await.unwrap(), "late");
    assert_eq!(soon("FIN", stream.reader.read()).await, None);
}

#[tokio::test]
async fn peer_goaway_ends_incoming_but_not_open_streams() {
    let (mut peer, _conn, mut incoming) = connect();
    peer.open(1, &[]).await;
    peer.expect_reply(1).await;
    peer.send(Frame::GoAway {
        last_good_stream_id: 0,
        status: goaway_status::OK,
    })
    .await;
    peer.open(3, &[]).await;
    peer.expect(Frame::RstStream {
        stream_id: 3,
        status: rst_status::REFUSED_STREAM,
    })
    .await;

    let mut stream = next_stream(&mut incoming).await;
    assert!(soon("incoming ends", incoming.next()).await.is_none());
    peer.data(1, b"still here", false).await;
    assert_eq!(
        soon("data", stream.reader.read()).await.unwrap(),
        "still here"
    );
    stream.writer.write(b"me too").await.unwrap();
    peer.expect(data(b"me too", false, 1)).await;
}

#[tokio::test]
async fn streams_are_refused_once_incoming_is_dropped() {
    let (mut peer, _conn, incoming) = connect();
    drop(incoming);
    peer.open(1, &[]).await;
    peer.expect(Frame::RstStream {
        stream_id: 1,
        status: rst_status::REFUSED_STREAM,
    })
    .await;
}

#[tokio::test]
async fn data_for_a_dropped_reader_is_discarded_without_stalling() {
    let (mut peer, _conn, mut incoming) = connect();
    peer.open(1, &[]).await;
    peer.expect_reply(1).await;
    let Stream { reader, writer, .. } = next_stream(&mut incoming).await;
    drop(reader);
    for _ in 0..100 {
        peer.data(1, &[7; 1000], false).await;
    }
    peer.expect_nothing_else(1).await;
    writer.write(b"writes still work").await.unwrap();
    peer.expect(data(b"writes still work", false, 1)).await;
}

#[tokio::test]
async fn malformed_header_block_ends_the_connection_with_protocol_error() {
    let (mut peer, conn, mut incoming) = connect();
    peer.send(Frame::SynStream {
        stream_id: 1,
        associated_stream_id: 0,
        priority: 0,
        slot: 0,
        fin: false,
        unidirectional: false,
        header_block: Bytes::from_static(b"not zlib"),
    })
    .await;
    peer.expect(Frame::GoAway {
        last_good_stream_id: 0,
        status: goaway_status::PROTOCOL_ERROR,
    })
    .await;
    assert_eq!(peer.try_next().await, None);
    soon("closed", conn.closed()).await;
    assert!(soon("incoming", incoming.next()).await.is_none());
}

#[tokio::test]
async fn malformed_frame_ends_the_connection_and_its_streams() {
    let (mut peer, conn, mut incoming) = connect();
    peer.open(1, &[]).await;
    peer.expect_reply(1).await;
    let mut stream = next_stream(&mut incoming).await;
    // RST_STREAM with status 0.
    peer.io
        .write_all(&[0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0])
        .await
        .unwrap();
    peer.expect(Frame::GoAway {
        last_good_stream_id: 1,
        status: goaway_status::PROTOCOL_ERROR,
    })
    .await;
    assert_eq!(peer.try_next().await, None);
    soon("closed", conn.closed()).await;
    assert_eq!(soon("stream ends", stream.reader.read()).await, None);
}

#[tokio::test]
async fn peer_hang_up_ends_everything() {
    let (mut peer, conn, mut incoming) = connect();
    peer.open(1, &[]).await;
    peer.expect_reply(1).await;
    let mut stream = next_stream(&mut incoming).await;
    peer.data(1, b"last words", false).await;
    peer.expect_nothing_else(1).await;
    drop(peer);
    soon("closed", conn.closed()).await;
    assert_eq!(
        soon("buffered data", stream.reader.read()).await.unwrap(),
        "last words"
    );
    assert_eq!(soon("end", stream.reader.read()).await, None);
    let error = stream.writer.write(b"x").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NotConnected);
    assert!(soon("incoming", incoming.next()).await.is_none());
    soon("close after the end", conn.close()).await;
}

#[tokio::test]
async fn tasks_end_and_release_the_transport_when_handles_are_dropped() {
    let (mut peer, conn, mut incoming) = connect();
    peer.open(1, &[]).await;
    peer.expect_reply(1).await;
    let stream = next_stream(&mut incoming).await;
    drop((conn, incoming, stream));
    peer.io.shutdown().await.unwrap();
    // The server's end of the pipe is dropped once both tasks are done.
    assert_eq!(peer.try_next().await, None);
}

#[tokio::test]
async fn abort_ends_at_once() {
    let (mut peer, conn, mut incoming) = connect();
    peer.open(1, &[]).await;
    peer.expect_reply(1).await;
    let mut stream = next_stream(&mut incoming).await;
    conn.abort();
    soon("closed", conn.closed()).await;
    assert_eq!(soon("end", stream.reader.read()).await, None);
    assert_eq!(peer.try_next().await, None);
}

#[tokio::test]
async fn unread_stream_holds_back_the_connection_until_read() {
    let (mut peer, _conn, mut incoming) = connect();
    peer.open(1, &[]).await;
    peer.expect_reply(1).await;
    let mut stream = next_stream(&mut incoming).await;
    // More than the stream's queue and the pipe hold together.
    let frames = 200;
    let sender = tokio::spawn(async move {
        for i in 0..frames {
            peer.data(1, &[i as u8; 4096], false).await;
        }
        peer.send(Frame::Ping { id: 1 }).await;
        peer
    });
    tokio::time::sleep(QUIET).await;
    assert!(!sender.is_finished(), "the peer should be held back");
    for i in 0..frames {
        let piece = soon("data", stream.reader.read()).await.unwrap();
        assert_eq!(piece, vec![i as u8; 4096]);
    }
    let mut peer = soon("sender", sender).await.unwrap();
    peer.expect(Frame::Ping { id: 1 }).await;
}

/// 4 MiB each way at once, through a small pipe; the peer sends frames of
/// many sizes, one larger than the decoder's pieces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_mib_each_way_arrive_intact() {
    const LEN: usize = 4 * 1024 * 1024;
    let upload: Vec<u8> = (0..LEN).map(|i| (i * 7 % 253) as u8).collect();
    let download: Vec<u8> = (0..LEN).map(|i| (i * 13 % 251) as u8).collect();

    let (client, server) = tokio::io::duplex(16 * 1024);
    let (_conn, mut incoming) = serve(server, Bytes::new());
    let mut peer = Peer::new(client);
    peer.open(1, &[("streamtype", "data")]).await;
    peer.expect_reply(1).await;
    let Stream {
        mut reader, writer, ..
    } = next_stream(&mut incoming).await;

    let (peer_read, mut peer_write) = tokio::io::split(peer.io);
    let to_send = upload.clone();
    let uploader = tokio::spawn(async move {
        let sizes = [1, 1000, 32 * 1024, 100_000, 1024 * 1024, 7];
        let mut rest = &to_send[..];
        for size in sizes.iter().cycle() {
            let (chunk, tail) = rest.split_at((*size).min(rest.len()));
            rest = tail;
            let frame = Frame::Data {
                stream_id: 1,
                fin: rest.is_empty(),
                data: Bytes::copy_from_slice(chunk),
            };
            peer_write.write_all(&frame.to_vec()).await.unwrap();
            if rest.is_empty() {
                return peer_write;
            }
        }
        unreachable!()
    });
    let to_write = download.clone();
    let downloader = tokio::spawn(async move {
        writer.write(&to_write[..LEN / 2]).await.unwrap();
        writer.write(&to_write[LEN / 2..]).await.unwrap();
        writer.close().await;
    });
    let receiver = tokio::spawn(async move {
        let mut got = Vec::with_capacity(LEN);
        while let Some(piece) = reader.read().await {
            got.extend_from_slice(&piece);
        }
        got
    });

    let mut peer_in = Peer::new(tokio::io::join(peer_read, tokio::io::sink()));
    let mut got = Vec::with_capacity(LEN);
    loop {
        match peer_in.next().await {
            Frame::Data {
                stream_id: 1,
                fin,
                data,
            } => {
                assert!(data.len() <= 32 * 1024);
                got.extend_from_slice(&data);
                if fin {
                    break;
                }
            }
            other => panic!("expected data, got {other:?}"),
        }
    }
    assert!(got == download, "download differs");
    let uploaded = soon("upload", receiver).await.unwrap();
    assert!(uploaded == upload, "upload differs");
    soon("uploader", uploader).await.unwrap();
    soon("downloader", downloader).await.unwrap();
}
