//! Unpacks OCI image layers into directories that overlayfs uses as lower
//! layers.
//!
//! One layer becomes one standalone "diff" directory holding only that layer's
//! entries. OCI whiteouts are turned into the overlayfs form while unpacking:
//! `dir/.wh.name` becomes a 0:0 character device `dir/name`, and
//! `dir/.wh..wh..opq` becomes the `trusted.overlay.opaque=y` xattr on `dir`.
//!
//! Safety against hostile tars: every path is split into components, `..`
//! and absolute paths are refused, and each directory on the way is opened
//! with `O_NOFOLLOW|O_DIRECTORY` relative to the already verified directory
//! above it. Entries are then created with `*at` calls on the final name only,
//! so no symlink inside the layer (created by an earlier entry or not) is ever
//! followed, whatever it points at.
//!
//! Speed: decompression runs on the calling thread while a second thread
//! parses the tar and writes files; 1 MiB chunks flow between them. The
//! diff id is hashed on whichever side has less to do: the writer's when
//! decompressing (measured: gzip and zstd both cost more than the writes),
//! the reader's for a plain tar.
//! The open directory fds of the current path are kept as a stack, so
//! consecutive entries in the same directory cost no path lookups.
//!
//! Files: `decompress` (format detection, the caller's reader), `pipe` (the
//! chunks between the two threads), `walk` (the tar walk and what each entry
//! is), `entries` (files, directories, symlinks, devices), `hard_link`,
//! `whiteout`, `dirs` (the directory fd stack and `O_NOFOLLOW` opens),
//! `replace` (a later entry taking an earlier one's place), `paths`, `meta`
//! and `xattr` (ownership, mode, times, extended attributes), `error`.

mod decompress;
mod dirs;
mod entries;
mod error;
mod hard_link;
mod meta;
mod paths;
mod pipe;
mod replace;
#[cfg(test)]
mod test_support;
mod walk;
mod whiteout;
mod xattr;

pub use error::UnpackError;

use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::mpsc;

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use sha2::{Digest, Sha256};

use decompress::Source;
use pipe::{pump, Chunk, ChunkReader, PumpError};
use walk::{write_layer, Written};

/// Size of the decompressed chunks handed from the decompressing thread to
/// the writing thread, and of the buffer file data is copied through.
const CHUNK: usize = 1 << 20;
/// Chunks in flight between the two threads.
const PIPE_DEPTH: usize = 4;

/// What one unpacked layer turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackedLayer {
    /// "sha256:<hex>" of the whole uncompressed tar stream (the layer's diff
    /// id), including any padding after the end-of-archive blocks.
    pub diff_id: String,
    /// Bytes of the uncompressed stream.
    pub uncompressed_size: u64,
    /// Number of tar entries applied (files, directories, links, devices,
    /// whiteouts and opaque markers); skipped entries are not counted.
    pub entries: u64,
}

/// Unpacks one layer from `input` (gzip, zstd or plain tar, detected from the
/// first bytes, not from a media type) into `dest`, an existing empty
/// directory, as an overlayfs lower directory.
///
/// `input` is read to its end, even past the compressed stream, so a digest
/// check wrapped around it sees every byte. On error `dest` holds a partial
/// layer; the caller removes it.
pub fn unpack_layer<R: Read>(input: R, dest: &Path) -> Result<UnpackedLayer, UnpackError> {
    let root = open_dest(dest)?;
    let mut source = Source::open(input)?;
    // The side with less to do hashes the stream (see above).
    let hash_while_writing = !matches!(source, Source::Plain(_));
    let mut reader_hasher = (!hash_while_writing).then(Sha256::new);
    let (pumped, written) = decompress_and_write(
        &mut source,
        root,
        hash_while_writing,
        reader_hasher.as_mut(),
    )?;

    // The reading side's failure explains the writer's (it only saw the
    // stream stop), so it wins.
    match pumped {
        Err(PumpError::Input(e)) => return Err(UnpackError::Read(e)),
        Err(PumpError::Decompress(e)) => {
            return Err(UnpackError::Decompress {
                format: source.format(),
                source: e,
            })
        }
        Err(PumpError::WriterGone) | Ok(()) => {}
    }
    let written = written?;
    let hasher = written
        .hasher
        .or(reader_hasher)
        .ok_or_else(|| UnpackError::Tar {
            at: "at its end".into(),
            source: io::Error::other("stream was not hashed"),
        })?;
    Ok(UnpackedLayer {
        diff_id: format!("sha256:{:x}", hasher.finalize()),
        uncompressed_size: written.size,
        entries: written.entries,
    })
}

/// The layer directory, which every entry is then created relative to.
fn open_dest(dest: &Path) -> Result<OwnedFd, UnpackError> {
    nix::fcntl::open(
        dest,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| UnpackError::Dest {
        path: dest.display().to_string(),
        source: e.into(),
    })
}

/// How the decompressing side and the writing side ended.
type SidesEnded = (Result<(), PumpError>, Result<Written, UnpackError>);

/// Decompresses `source` on this thread while a second one writes the layer
/// under `root`; returns how each side ended.
fn decompress_and_write<R: Read>(
    source: &mut Source<R>,
    root: OwnedFd,
    hash_while_writing: bool,
    reader_hasher: Option<&mut Sha256>,
) -> Result<SidesEnded, UnpackError> {
    let (tx, rx) = mpsc::sync_channel::<Chunk>(PIPE_DEPTH);
    let (recycle_tx, recycle_rx) = mpsc::channel::<Vec<u8>>();
    std::thread::scope(|s| {
        let worker = std::thread::Builder::new()
            .name("layer-unpack".into())
            .spawn_scoped(s, move || {
                write_layer(ChunkReader::new(rx, recycle_tx, hash_while_writing), root)
            })
            .map_err(UnpackError::Thread)?;
        let pumped = pump(source, tx, &recycle_rx, reader_hasher);
        let written = match worker.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        Ok((pumped, written))
    })
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    use super::*;
    use crate::image::unpack::test_support::*;

    #[test]
    fn diff_id_covers_the_whole_stream() {
        let mut t = tar_of(&[file("a", b"aaaa"), dir("b/")]);
        // Trailing zero padding after the end-of-archive blocks, as some
        // tools write, is part of the diff id.
        t.extend_from_slice(&[0u8; 10_240]);
        let want = sha256(&t);
        for (name, input) in [("tar", t.clone()), ("gzip", gzip(&t)), ("zstd", zstd(&t))] {
            let (l, u) = unpack_ok(&input);
            assert_eq!(u.diff_id, want, "{name}");
            assert_eq!(u.uncompressed_size, t.len() as u64, "{name}");
            assert_eq!(u.entries, 2, "{name}");
            assert_eq!(fs::read(l.p("a")).unwrap(), b"aaaa", "{name}");
        }
    }

    #[test]
    fn missing_destination_is_reported() {
        let r = unpack_layer(&b""[..], Path::new("/nonexistent/peapod-layer"));
        assert!(matches!(r, Err(UnpackError::Dest { .. })), "{r:?}");
    }

    #[test]
    fn empty_input_is_an_empty_layer() {
        let (_, u) = unpack_ok(b"");
        assert_eq!(u.entries, 0);
        assert_eq!(u.diff_id, sha256(b""));
    }
}
