use super::*;

fn headers(pairs: &[(&str, &str)]) -> Headers {
    let mut headers = Headers::new();
    for (name, value) in pairs {
        headers.add(name, value);
    }
    headers
}

fn encoded(headers: &Headers) -> Vec<u8> {
    let mut block = Vec::new();
    headers.encode_block(&mut block);
    block
}

#[test]
fn uncompressed_block_layout() {
    let block = encoded(&headers(&[("streamtype", "error"), ("port", "8080")]));
    let mut expected = vec![0x00, 0x00, 0x00, 0x02]; // 2 pairs
    expected.extend_from_slice(&[0x00, 0x00, 0x00, 0x0a]); // name length 10
    expected.extend_from_slice(b"streamtype");
    expected.extend_from_slice(&[0x00, 0x00, 0x00, 0x05]); // value length 5
    expected.extend_from_slice(b"error");
    expected.extend_from_slice(&[0x00, 0x00, 0x00, 0x04]); // name length 4
    expected.extend_from_slice(b"port");
    expected.extend_from_slice(&[0x00, 0x00, 0x00, 0x04]); // value length 4
    expected.extend_from_slice(b"8080");
    assert_eq!(block, expected);
    assert_eq!(
        Headers::decode_block(&block),
        Ok(headers(&[("streamtype", "error"), ("port", "8080")]))
    );
}

#[test]
fn several_values_are_joined_with_nul() {
    let h = headers(&[("X-Multi", "a"), ("x-multi", "b")]);
    let block = encoded(&h);
    let expected = [
        0x00, 0x00, 0x00, 0x01, // 1 pair
        0x00, 0x00, 0x00, 0x07, b'x', b'-', b'm', b'u', b'l', b't', b'i', // name, lowercased
        0x00, 0x00, 0x00, 0x03, b'a', 0x00, b'b', // values joined by NUL
    ];
    assert_eq!(block, expected);
    let decoded = Headers::decode_block(&block).unwrap();
    assert_eq!(decoded.get_all("x-multi"), ["a", "b"]);
    assert_eq!(decoded, h);
}

#[test]
fn empty_block_is_a_zero_count() {
    assert_eq!(encoded(&Headers::new()), [0, 0, 0, 0]);
    assert_eq!(Headers::decode_block(&[0, 0, 0, 0]), Ok(Headers::new()));
}

#[test]
fn lookups_ignore_case_and_keep_order() {
    let h = headers(&[("Port", "80"), ("requestid", "1"), ("port", "81")]);
    assert_eq!(h.get("PORT"), Some("80"));
    assert_eq!(h.get_all("port"), ["80", "81"]);
    assert_eq!(h.get("missing"), None);
    assert!(h.get_all("missing").is_empty());
    let names: Vec<&str> = h.iter().map(|(name, _)| name).collect();
    assert_eq!(names, ["port", "requestid"]);
    assert_eq!(h.len(), 2);
}

#[test]
fn blocks_the_go_peer_refuses_are_refused() {
    let uppercase = [0, 0, 0, 1, 0, 0, 0, 1, b'A', 0, 0, 0, 0];
    assert_eq!(
        Headers::decode_block(&uppercase),
        Err(HeaderError::UppercaseName("A".into()))
    );
    let duplicate = [
        0, 0, 0, 2, 0, 0, 0, 1, b'a', 0, 0, 0, 0, 0, 0, 0, 1, b'a', 0, 0, 0, 0,
    ];
    assert_eq!(
        Headers::decode_block(&duplicate),
        Err(HeaderError::DuplicateName("a".into()))
    );
}

#[test]
fn malformed_blocks_are_refused() {
    assert_eq!(
        Headers::decode_block(&[0, 0]),
        Err(HeaderError::Truncated("the pair count"))
    );
    let name_too_long = [0, 0, 0, 1, 0, 0, 0, 9, b'a'];
    assert_eq!(
        Headers::decode_block(&name_too_long),
        Err(HeaderError::Truncated("a name"))
    );
    let no_value = [0, 0, 0, 1, 0, 0, 0, 1, b'a'];
    assert_eq!(
        Headers::decode_block(&no_value),
        Err(HeaderError::Truncated("a value"))
    );
    let trailing = [0, 0, 0, 0, 0xff];
    assert_eq!(
        Headers::decode_block(&trailing),
        Err(HeaderError::TrailingBytes(1))
    );
}

/// Adler-32 (RFC 1950, section 8), written out to check the dictionary
/// independently of zlib.
fn adler32(bytes: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in bytes {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

#[test]
fn dictionary_is_the_spdy3_one() {
    assert_eq!(DICTIONARY.len(), 1423);
    assert_eq!(adler32(DICTIONARY), 0xE3C6_A7C2);
    assert_eq!(DICTIONARY_ADLER32, 0xE3C6_A7C2);
    assert!(DICTIONARY.starts_with(b"\x00\x00\x00\x07options\x00\x00\x00\x04head"));
    assert!(DICTIONARY.ends_with(b"utf-,*,enq=0."));
}

#[test]
fn zlib_backend_sets_dictionaries() {
    // flate2 has set_dictionary with zlib-rs (not with miniz_oxide); the
    // inflate side is exercised by every decompression test.
    let mut deflate = Compress::new(Compression::best(), true);
    assert_eq!(deflate.set_dictionary(DICTIONARY).ok(), Some(0xE3C6_A7C2));
}

#[test]
fn blocks_are_framed_as_go_expects() {
    let mut deflate = HeaderCompressor::new();
    let first = deflate
        .compress(&headers(&[("streamtype", "error")]))
        .unwrap();
    assert_eq!(
        first[..6],
        [0x78, 0xf9, 0xe3, 0xc6, 0xa7, 0xc2],
        "zlib header (level 9, preset dictionary), then the dictionary's Adler-32"
    );
    let later = [
        deflate.compress(&Headers::new()).unwrap(),
        deflate.compress(&headers(&[("port", "8080")])).unwrap(),
    ];
    for block in std::iter::once(&first).chain(&later) {
        assert!(
            block.ends_with(&[0x00, 0x00, 0xff, 0xff]),
            "sync flush marker: {block:x?}"
        );
    }
    for block in &later {
        assert_ne!(
            block[..2],
            [0x78, 0xf9],
            "only the first block has a zlib header"
        );
    }
}

#[test]
fn blocks_round_trip_on_one_context_pair() {
    let blocks = [
        headers(&[
            ("streamtype", "error"),
            ("port", "8080"),
            ("requestid", "0"),
        ]),
        headers(&[("streamtype", "data"), ("port", "8080"), ("requestid", "0")]),
        Headers::new(),
        headers(&[
            ("x-multi", "a"),
            ("x-multi", ""),
            ("x-long", &"z".repeat(100_000)),
        ]),
        headers(&[
            ("streamtype", "error"),
            ("port", "8080"),
            ("requestid", "0"),
        ]),
    ];
    let mut deflate = HeaderCompressor::new();
    let mut inflate = HeaderDecompressor::new();
    for block in &blocks {
        let compressed = deflate.compress(block).unwrap();
        assert_eq!(inflate.decompress(&compressed).as_ref(), Ok(block));
    }
}

#[test]
fn a_repeated_block_shrinks_once_the_context_has_seen_it() {
    let block = headers(&[
        ("streamtype", "error"),
        ("port", "8080"),
        ("requestid", "0"),
    ]);
    let mut deflate = HeaderCompressor::new();
    let first = deflate.compress(&block).unwrap();
    let second = deflate.compress(&block).unwrap();
    assert!(
        second.len() < first.len() - 6,
        "{first:x?} then {second:x?}"
    );
}

#[test]
fn block_for_another_dictionary_is_refused() {
    let mut deflate = Compress::new(Compression::best(), true);
    let adler = deflate.set_dictionary(b"another dictionary").unwrap();
    let mut out = Vec::with_capacity(128);
    deflate
        .compress_vec(&[0, 0, 0, 0], &mut out, FlushCompress::Sync)
        .unwrap();
    let mut inflate = HeaderDecompressor::new();
    assert_eq!(
        inflate.decompress(&out),
        Err(HeaderError::WrongDictionary(adler))
    );
}

#[test]
fn block_inflating_past_the_cap_is_refused() {
    // The block is 13 bytes longer than its value.
    let at_cap = headers(&[("x", &"a".repeat(MAX_HEADER_BLOCK_LEN - 13))]);
    let past_cap = headers(&[("x", &"a".repeat(MAX_HEADER_BLOCK_LEN - 12))]);
    let mut deflate = HeaderCompressor::new();
    let mut inflate = HeaderDecompressor::new();
    let compressed = deflate.compress(&at_cap).unwrap();
    assert!(
        compressed.len() < 4096,
        "compresses well: {}",
        compressed.len()
    );
    assert!(inflate.decompress(&compressed).unwrap() == at_cap);
    let compressed = deflate.compress(&past_cap).unwrap();
    let result = inflate.decompress(&compressed);
    assert!(matches!(result, Err(HeaderError::TooLarge)), "not refused");
}

#[test]
fn garbage_and_partial_blocks_are_refused() {
    let mut inflate = HeaderDecompressor::new();
    assert!(matches!(
        inflate.decompress(&[0x12, 0x34, 0x56]),
        Err(HeaderError::Inflate(_))
    ));

    let mut deflate = HeaderCompressor::new();
    let block = deflate
        .compress(&headers(&[("streamtype", "error")]))
        .unwrap();
    let half = &block[..block.len() / 2];
    let result = HeaderDecompressor::new().decompress(half);
    assert!(
        matches!(result, Err(HeaderError::Truncated(_))),
        "{result:?}"
    );

    let empty = HeaderDecompressor::new().decompress(&[]);
    assert_eq!(empty, Err(HeaderError::Truncated("the pair count")));
}
