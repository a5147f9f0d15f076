//! The compressed side: the caller's reader, whose errors are kept apart
//! from decompression errors, and the format told by its first bytes.

use std::io::{self, BufReader, Cursor, Read};

use super::pipe::PumpError;
use super::UnpackError;

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
/// Read buffer over the (compressed) input.
const INPUT_BUF: usize = 256 << 10;

/// The caller's reader. Its errors are kept here and only a copy goes up
/// through the decompressor, so they can be told apart from decompression
/// errors and returned as they were.
pub(super) struct Input<R> {
    inner: R,
    error: Option<io::Error>,
}

impl<R: Read> Read for Input<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Err(e) if e.kind() != io::ErrorKind::Interrupted => {
                let copy = io::Error::new(e.kind(), e.to_string());
                self.error = Some(e);
                Err(copy)
            }
            r => r,
        }
    }
}

pub(super) type Src<R> = io::Chain<Cursor<Vec<u8>>, BufReader<Input<R>>>;

/// Reads up to the longest magic number; fewer bytes only at end of input.
fn read_head<R: Read>(input: &mut BufReader<Input<R>>) -> Result<Vec<u8>, UnpackError> {
    let mut head = vec![0u8; ZSTD_MAGIC.len()];
    let mut n = 0;
    while n < head.len() {
        match input.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(UnpackError::Read(input.get_mut().error.take().unwrap_or(e))),
        }
    }
    head.truncate(n);
    Ok(head)
}

pub(super) enum Source<R: Read> {
    Plain(Src<R>),
    Gzip(Box<flate2::bufread::MultiGzDecoder<Src<R>>>),
    Zstd(zstd::stream::read::Decoder<'static, Src<R>>),
}

impl<R: Read> Source<R> {
    /// Wraps the caller's reader in what its first bytes call for: a gzip or
    /// zstd decoder, or nothing for a plain tar.
    pub(super) fn open(input: R) -> Result<Self, UnpackError> {
        let mut buffered = BufReader::with_capacity(
            INPUT_BUF,
            Input {
                inner: input,
                error: None,
            },
        );
        let head = read_head(&mut buffered)?;
        let src = Cursor::new(head.clone()).chain(buffered);
        Ok(if head.starts_with(GZIP_MAGIC) {
            Source::Gzip(Box::new(flate2::bufread::MultiGzDecoder::new(src)))
        } else if head.starts_with(ZSTD_MAGIC) {
            Source::Zstd(zstd::stream::read::Decoder::with_buffer(src).map_err(|e| {
                UnpackError::Decompress {
                    format: "zstd",
                    source: e,
                }
            })?)
        } else {
            Source::Plain(src)
        })
    }

    pub(super) fn format(&self) -> &'static str {
        match self {
            Source::Plain(_) => "tar",
            Source::Gzip(_) => "gzip",
            Source::Zstd(_) => "zstd",
        }
    }

    pub(super) fn compressed(&mut self) -> &mut Src<R> {
        match self {
            Source::Plain(s) => s,
            Source::Gzip(d) => d.get_mut(),
            Source::Zstd(d) => d.get_mut(),
        }
    }

    /// Sorts a failed read into the caller's reader failing or the
    /// decompressor rejecting the data.
    pub(super) fn classify(&mut self, e: io::Error) -> PumpError {
        match self.compressed().get_mut().1.get_mut().error.take() {
            Some(orig) => PumpError::Input(orig),
            None if matches!(self, Source::Plain(_)) => PumpError::Input(e),
            None => PumpError::Decompress(e),
        }
    }
}

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Plain(s) => s.read(buf),
            Source::Gzip(d) => d.read(buf),
            Source::Zstd(d) => d.read(buf),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::io::{self, Read};

    use crate::image::unpack::test_support::*;
    use crate::image::unpack::{unpack_layer, UnpackError};

    #[test]
    fn multi_member_gzip_and_large_files() {
        let big: Vec<u8> = (0..5_000_000u32)
            .map(|i| (i * 7 + i / 1000) as u8)
            .collect();
        let t = tar_of(&[file("big", &big), file("small", b"s")]);
        let mut input = gzip(&t[..1000]);
        input.extend(gzip(&t[1000..]));
        let (l, u) = unpack_ok(&input);
        assert_eq!(u.diff_id, sha256(&t));
        assert!(fs::read(l.p("big")).unwrap() == big);
    }

    /// Reports how much of the input was read and whether its end was seen.
    struct Counting<'a> {
        data: &'a [u8],
        pos: usize,
        saw_eof: bool,
    }

    impl Read for Counting<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            // Small reads, to exercise the magic detection across reads.
            let n = buf.len().min(self.data.len() - self.pos).min(3);
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            if n == 0 {
                self.saw_eof = true;
            }
            Ok(n)
        }
    }

    #[test]
    fn input_is_read_to_its_end() {
        need_root();
        let t = tar_of(&[file("a", b"a")]);
        for input in [t.clone(), gzip(&t), zstd(&t)] {
            let dir = tempfile::tempdir().unwrap();
            let mut c = Counting {
                data: &input,
                pos: 0,
                saw_eof: false,
            };
            unpack_layer(&mut c, dir.path()).unwrap();
            assert_eq!(c.pos, input.len());
            assert!(c.saw_eof);
        }
    }

    #[test]
    fn truncated_input_is_an_error() {
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let t = tar_of(&[file("big", &big)]);
        let gz = gzip(&t);
        let (_, r) = unpack(&gz[..gz.len() / 2]);
        assert!(
            matches!(r, Err(UnpackError::Decompress { format: "gzip", .. })),
            "{r:?}"
        );
        let (_, r) = unpack(&gz[..gz.len() - 4]);
        assert!(
            matches!(r, Err(UnpackError::Decompress { format: "gzip", .. })),
            "{r:?}"
        );
        let zs = zstd(&t);
        let (_, r) = unpack(&zs[..zs.len() / 2]);
        assert!(
            matches!(r, Err(UnpackError::Decompress { format: "zstd", .. })),
            "{r:?}"
        );
        let (_, r) = unpack(&t[..t.len() / 2]);
        assert!(
            matches!(r, Err(UnpackError::Tar { ref at, .. }) if at == "at entry \"big\""),
            "{r:?}"
        );
    }

    #[derive(Debug)]
    struct DigestMismatch;

    impl std::fmt::Display for DigestMismatch {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("digest mismatch: blob sha256:abc has sha256:def")
        }
    }

    impl std::error::Error for DigestMismatch {}

    /// Hands out `data`, then fails the way the caller's verifying reader
    /// does.
    struct Failing<'a> {
        data: &'a [u8],
    }

    impl Read for Failing<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.data.is_empty() {
                return Err(io::Error::new(io::ErrorKind::InvalidData, DigestMismatch));
            }
            let n = buf.len().min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn reader_errors_come_out_as_read() {
        need_root();
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let t = tar_of(&[file("a", b"a"), file("big", &big)]);
        for (name, input) in [("tar", t.clone()), ("gzip", gzip(&t)), ("zstd", zstd(&t))] {
            for cut in [0, input.len() / 3, input.len()] {
                let dir = tempfile::tempdir().unwrap();
                let r = unpack_layer(
                    Failing {
                        data: &input[..cut],
                    },
                    dir.path(),
                );
                match r {
                    Err(UnpackError::Read(e)) => {
                        assert!(
                            e.get_ref().is_some_and(|i| i.is::<DigestMismatch>()),
                            "{name}/{cut}: original error lost: {e:?}"
                        );
                        let shown = UnpackError::Read(e).to_string();
                        assert!(shown.contains("digest mismatch: blob"), "{shown}");
                    }
                    other => panic!("{name}/{cut}: expected Read, got {other:?}"),
                }
            }
        }
    }
}
