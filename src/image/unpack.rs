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

use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, BufReader, Cursor, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{
    fchmod, fchmodat, fstat, fstatat, futimens, makedev, mkdirat, mknodat, utimensat,
    FchmodatFlags, Mode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use sha2::{Digest, Sha256};

/// Size of the decompressed chunks handed from the decompressing thread to
/// the writing thread, and of the buffer file data is copied through.
const CHUNK: usize = 1 << 20;
/// Chunks in flight between the two threads.
const PIPE_DEPTH: usize = 4;
/// Read buffer over the (compressed) input.
const INPUT_BUF: usize = 256 << 10;

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
const OPAQUE_XATTR: &CStr = c"trusted.overlay.opaque";

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

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The caller's reader failed; the error is passed through untouched so
    /// digest mismatches and truncated downloads keep their own text.
    #[error("reading layer: {0}")]
    Read(#[source] io::Error),
    #[error("decompressing {format} layer: {source}")]
    Decompress {
        format: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("layer directory {path}: {source}")]
    Dest {
        path: String,
        #[source]
        source: io::Error,
    },
    /// The tar stream itself is malformed or ends early. `at` says where:
    /// `at entry "x"` (its data), `after entry "x"` (the next header) or
    /// `at its start`.
    #[error("malformed layer tar {at}: {source}")]
    Tar {
        at: String,
        #[source]
        source: io::Error,
    },
    /// The entry would write outside the layer directory.
    #[error("tar entry {path:?}: refused: {reason}")]
    Unsafe { path: String, reason: String },
    #[error("tar entry {path:?}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("tar entry {path:?}: {op}: {source}")]
    Io {
        path: String,
        op: String,
        #[source]
        source: io::Error,
    },
    #[error("starting layer unpack thread: {0}")]
    Thread(#[source] io::Error),
}

/// Unpacks one layer from `input` (gzip, zstd or plain tar, detected from the
/// first bytes, not from a media type) into `dest`, an existing empty
/// directory, as an overlayfs lower directory.
///
/// `input` is read to its end, even past the compressed stream, so a digest
/// check wrapped around it sees every byte. On error `dest` holds a partial
/// layer; the caller removes it.
pub fn unpack_layer<R: Read>(input: R, dest: &Path) -> Result<UnpackedLayer, UnpackError> {
    let root = nix::fcntl::open(
        dest,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| UnpackError::Dest {
        path: dest.display().to_string(),
        source: e.into(),
    })?;

    let mut buffered = BufReader::with_capacity(
        INPUT_BUF,
        Input {
            inner: input,
            error: None,
        },
    );
    let head = read_head(&mut buffered)?;
    let src = Cursor::new(head.clone()).chain(buffered);
    let mut source = if head.starts_with(GZIP_MAGIC) {
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
    };

    let (tx, rx) = mpsc::sync_channel::<Chunk>(PIPE_DEPTH);
    let (recycle_tx, recycle_rx) = mpsc::channel::<Vec<u8>>();
    let hash_while_writing = !matches!(source, Source::Plain(_));
    let mut reader_hasher = (!hash_while_writing).then(Sha256::new);

    let (pumped, written) = std::thread::scope(|s| {
        let worker = std::thread::Builder::new()
            .name("layer-unpack".into())
            .spawn_scoped(s, move || {
                let reader = ChunkReader {
                    rx,
                    recycle: recycle_tx,
                    cur: Vec::new(),
                    len: 0,
                    pos: 0,
                    ended: false,
                    hasher: hash_while_writing.then(Sha256::new),
                    size: 0,
                };
                write_layer(reader, root)
            })
            .map_err(UnpackError::Thread)?;
        let pumped = pump(&mut source, tx, &recycle_rx, reader_hasher.as_mut());
        let written = match worker.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        Ok::<_, UnpackError>((pumped, written))
    })?;

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

/// The caller's reader. Its errors are kept here and only a copy goes up
/// through the decompressor, so they can be told apart from decompression
/// errors and returned as they were.
struct Input<R> {
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

type Src<R> = io::Chain<Cursor<Vec<u8>>, BufReader<Input<R>>>;

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

enum Source<R: Read> {
    Plain(Src<R>),
    Gzip(Box<flate2::bufread::MultiGzDecoder<Src<R>>>),
    Zstd(zstd::stream::read::Decoder<'static, Src<R>>),
}

impl<R: Read> Source<R> {
    fn format(&self) -> &'static str {
        match self {
            Source::Plain(_) => "tar",
            Source::Gzip(_) => "gzip",
            Source::Zstd(_) => "zstd",
        }
    }

    fn compressed(&mut self) -> &mut Src<R> {
        match self {
            Source::Plain(s) => s,
            Source::Gzip(d) => d.get_mut(),
            Source::Zstd(d) => d.get_mut(),
        }
    }

    /// Sorts a failed read into the caller's reader failing or the
    /// decompressor rejecting the data.
    fn classify(&mut self, e: io::Error) -> PumpError {
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

/// A piece of the uncompressed stream; `len == 0` marks its end.
struct Chunk {
    buf: Vec<u8>,
    len: usize,
}

enum PumpError {
    Input(io::Error),
    Decompress(io::Error),
    /// The writing thread stopped early; its own error says why.
    WriterGone,
}

/// Decompresses `source` to its end, sending every byte to the writing
/// thread (and hashing it, when given a hasher), then reads the rest of the
/// compressed input.
fn pump<R: Read>(
    source: &mut Source<R>,
    tx: SyncSender<Chunk>,
    recycle: &Receiver<Vec<u8>>,
    mut hasher: Option<&mut Sha256>,
) -> Result<(), PumpError> {
    loop {
        let mut buf = recycle.try_recv().unwrap_or_else(|_| vec![0u8; CHUNK]);
        let mut filled = 0;
        let mut eof = false;
        while filled < buf.len() {
            match source.read(&mut buf[filled..]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(source.classify(e)),
            }
        }
        if filled > 0 {
            if let Some(h) = hasher.as_deref_mut() {
                h.update(&buf[..filled]);
            }
            tx.send(Chunk { buf, len: filled })
                .map_err(|_| PumpError::WriterGone)?;
        }
        if eof {
            // Decompressors stop at the end of their stream; whatever follows
            // must still pass through the caller's reader.
            if let Err(e) = io::copy(source.compressed(), &mut io::sink()) {
                return Err(source.classify(e));
            }
            return tx
                .send(Chunk {
                    buf: Vec::new(),
                    len: 0,
                })
                .map_err(|_| PumpError::WriterGone);
        }
    }
}

/// The writing thread's view of the uncompressed stream. With a hasher,
/// every chunk is hashed as it arrives, so the diff id covers the whole
/// stream, tar or not.
struct ChunkReader {
    rx: Receiver<Chunk>,
    recycle: Sender<Vec<u8>>,
    cur: Vec<u8>,
    len: usize,
    pos: usize,
    ended: bool,
    hasher: Option<Sha256>,
    size: u64,
}

impl ChunkReader {
    fn next_chunk(&mut self) -> io::Result<()> {
        let chunk = self
            .rx
            .recv()
            .map_err(|_| io::Error::other("layer stream stopped"))?;
        if chunk.len == 0 {
            self.ended = true;
            return Ok(());
        }
        if let Some(h) = &mut self.hasher {
            h.update(&chunk.buf[..chunk.len]);
        }
        self.size += chunk.len as u64;
        let old = std::mem::replace(&mut self.cur, chunk.buf);
        if !old.is_empty() {
            // The reading side may have finished; then the buffer is freed.
            let _ = self.recycle.send(old);
        }
        self.len = chunk.len;
        self.pos = 0;
        Ok(())
    }

    /// Consumes the stream after the end of the archive, so the reading side
    /// can hash it to the end.
    fn drain(&mut self) -> io::Result<()> {
        while !self.ended {
            self.pos = self.len;
            self.next_chunk()?;
        }
        Ok(())
    }
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        while self.pos == self.len {
            if self.ended {
                return Ok(0);
            }
            self.next_chunk()?;
        }
        let n = out.len().min(self.len - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Runs on the writing thread: parses the tar and applies every entry.
fn write_layer(mut reader: ChunkReader, root: OwnedFd) -> Result<Written, UnpackError> {
    let tar_err = |last: &str, e: io::Error| UnpackError::Tar {
        at: if last.is_empty() {
            "at its start".to_string()
        } else {
            format!("after entry {last:?}")
        },
        source: e,
    };
    let mut unpacker = Unpacker::new(root).map_err(|e| UnpackError::Dest {
        path: "(layer root)".into(),
        source: e.into(),
    })?;
    let mut last = String::new();
    {
        let mut archive = tar::Archive::new(&mut reader);
        let entries = archive.entries().map_err(|e| tar_err(&last, e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| tar_err(&last, e))?;
            last = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            if unpacker.apply(&mut entry, &last)? {
                unpacker.entries += 1;
            }
        }
    }
    unpacker.finish()?;
    reader.drain().map_err(|e| tar_err(&last, e))?;
    Ok(Written {
        entries: unpacker.entries,
        hasher: reader.hasher,
        size: reader.size,
    })
}

/// What the writing thread reports back.
struct Written {
    entries: u64,
    hasher: Option<Sha256>,
    size: u64,
}

/// Ownership, mode, time and xattrs of one entry.
struct Meta {
    uid: u32,
    gid: u32,
    mode: Mode,
    mtime: TimeSpec,
    xattrs: Vec<(CString, Vec<u8>)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
    HardLink,
    Char,
    Block,
    Fifo,
}

/// One open directory of the current path.
struct Level {
    name: Vec<u8>,
    fd: OwnedFd,
    /// Set-group-id directory: new entries inherit its group, so they need an
    /// explicit chown even when they should belong to our own gid.
    sgid: bool,
}

/// Open directory fds from the layer root down to the directory of the last
/// entry. Every level was opened with `O_NOFOLLOW` relative to the one above.
struct DirStack {
    root: OwnedFd,
    root_sgid: bool,
    levels: Vec<Level>,
    /// Our effective uid/gid: what new entries get without a chown.
    ids: (u32, u32),
}

/// Why a directory path inside the layer could not be opened; the offset is
/// where the failing component ends.
enum ResolveError {
    Symlink(usize),
    NotDir(usize),
    Missing(usize),
    Io(usize, &'static str, Errno),
}

impl DirStack {
    fn top(&self) -> (BorrowedFd<'_>, bool) {
        match self.levels.last() {
            Some(l) => (l.fd.as_fd(), l.sgid),
            None => (self.root.as_fd(), self.root_sgid),
        }
    }

    /// Opens directory `dir` ("a/b", "" for the root), creating missing
    /// components when `create` is set. `stale` drops all cached levels first
    /// (after a directory was removed or its metadata changed).
    fn resolve(
        &mut self,
        dir: &[u8],
        create: bool,
        stale: bool,
    ) -> Result<(BorrowedFd<'_>, bool), ResolveError> {
        if stale {
            self.levels.clear();
            self.root_sgid = is_sgid(
                fstat(self.root.as_fd())
                    .map_err(|e| ResolveError::Io(0, "inspecting layer root", e))?,
            );
        }
        let mut depth = 0;
        let mut start = 0;
        while start < dir.len() {
            let end = dir[start..]
                .iter()
                .position(|b| *b == b'/')
                .map_or(dir.len(), |i| start + i);
            let comp = &dir[start..end];
            start = end + 1;
            if depth < self.levels.len() {
                if self.levels[depth].name == comp {
                    depth += 1;
                    continue;
                }
                self.levels.truncate(depth);
            }
            let (cur, cur_sgid) = self.top();
            let fd = open_dir(cur, comp, create, cur_sgid, self.ids).map_err(|e| match e {
                OpenDirError::Symlink => ResolveError::Symlink(end),
                OpenDirError::NotDir => ResolveError::NotDir(end),
                OpenDirError::Missing => ResolveError::Missing(end),
                OpenDirError::Io(op, e) => ResolveError::Io(end, op, e),
            })?;
            let sgid = is_sgid(
                fstat(fd.as_fd()).map_err(|e| ResolveError::Io(end, "inspecting directory", e))?,
            );
            self.levels.push(Level {
                name: comp.to_vec(),
                fd,
                sgid,
            });
            depth += 1;
        }
        self.levels.truncate(depth);
        Ok(self.top())
    }
}

enum OpenDirError {
    Symlink,
    NotDir,
    Missing,
    Io(&'static str, Errno),
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

/// Opens directory `name` inside `parent` without following a symlink there.
/// A missing one is created (when `create`) as a root-owned 0755 directory,
/// the way a parent the tar does not list should look.
fn open_dir(
    parent: BorrowedFd<'_>,
    name: &[u8],
    create: bool,
    parent_sgid: bool,
    ids: (u32, u32),
) -> Result<OwnedFd, OpenDirError> {
    match openat(parent, name, dir_flags(), Mode::empty()) {
        Ok(fd) => return Ok(fd),
        Err(Errno::ENOENT) if create => {}
        Err(Errno::ENOENT) => return Err(OpenDirError::Missing),
        Err(Errno::ELOOP | Errno::ENOTDIR) => return Err(not_dir(parent, name)),
        Err(e) => return Err(OpenDirError::Io("opening directory", e)),
    }
    match mkdirat(parent, name, Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(OpenDirError::Io("creating directory", e)),
    }
    let fd = openat(parent, name, dir_flags(), Mode::empty()).map_err(|e| match e {
        Errno::ELOOP | Errno::ENOTDIR => not_dir(parent, name),
        e => OpenDirError::Io("opening directory", e),
    })?;
    if parent_sgid || ids != (0, 0) {
        fchown(&fd, Some(Uid::from_raw(0)), Some(Gid::from_raw(0)))
            .map_err(|e| OpenDirError::Io("chown of created directory", e))?;
    }
    // The umask and a set-group-id parent both alter the mode mkdir gave.
    fchmod(&fd, Mode::from_bits_truncate(0o755))
        .map_err(|e| OpenDirError::Io("chmod of created directory", e))?;
    Ok(fd)
}

/// Tells a symlink (an escape attempt) from some other non-directory.
fn not_dir(parent: BorrowedFd<'_>, name: &[u8]) -> OpenDirError {
    match fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFLNK => OpenDirError::Symlink,
        _ => OpenDirError::NotDir,
    }
}

fn is_sgid(st: nix::sys::stat::FileStat) -> bool {
    st.st_mode & libc::S_ISGID != 0
}

/// Splits a normalised path into its directory and final name.
fn split_last(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|b| *b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

/// Normalises a tar path into components joined by single slashes, dropping
/// `.` and empty components. Absolute paths and `..` are refused outright:
/// no legitimate layer needs them. So are paths over PATH_MAX, which also
/// bounds the directory depth (open fds, recursion when replacing a tree).
fn normalize(raw: &[u8]) -> Result<Vec<u8>, &'static str> {
    if raw.first() == Some(&b'/') {
        return Err("absolute path");
    }
    if raw.len() > libc::PATH_MAX as usize {
        return Err("path longer than PATH_MAX");
    }
    if raw.contains(&0) {
        return Err("path contains a NUL byte");
    }
    let mut out = Vec::with_capacity(raw.len());
    for comp in raw.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => continue,
            b".." => return Err("path contains a \"..\" component"),
            _ => {}
        }
        if !out.is_empty() {
            out.push(b'/');
        }
        out.extend_from_slice(comp);
    }
    Ok(out)
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

struct Unpacker {
    dirs: DirStack,
    /// Set when cached directory fds may be wrong (a directory was removed or
    /// its mode changed); the next lookup starts from the root again.
    stale: bool,
    /// Directory mtimes, applied at the end because creating children
    /// changes them. Tar order, later entries for the same path win.
    dir_times: Vec<(Vec<u8>, TimeSpec)>,
    /// Paths where a whiteout device was made: not entries of this layer, so
    /// hard links must not point at them.
    whiteouts: HashSet<Vec<u8>>,
    buf: Vec<u8>,
    entries: u64,
}

impl Unpacker {
    fn new(root: OwnedFd) -> nix::Result<Self> {
        let root_sgid = is_sgid(fstat(root.as_fd())?);
        Ok(Unpacker {
            dirs: DirStack {
                root,
                root_sgid,
                levels: Vec::new(),
                ids: (
                    nix::unistd::geteuid().as_raw(),
                    nix::unistd::getegid().as_raw(),
                ),
            },
            stale: false,
            dir_times: Vec::new(),
            whiteouts: HashSet::new(),
            buf: vec![0u8; CHUNK],
            entries: 0,
        })
    }

    /// Applies one entry; false when it was skipped.
    fn apply<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        shown: &str,
    ) -> Result<bool, UnpackError> {
        let invalid = |reason: String| UnpackError::Invalid {
            path: shown.to_string(),
            reason,
        };
        let etype = entry.header().entry_type();
        let raw = entry.path_bytes();
        let kind = match etype {
            tar::EntryType::Regular if raw.ends_with(b"/") => Kind::Dir,
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                Kind::File
            }
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Symlink => Kind::Symlink,
            tar::EntryType::Link => Kind::HardLink,
            tar::EntryType::Char => Kind::Char,
            tar::EntryType::Block => Kind::Block,
            tar::EntryType::Fifo => Kind::Fifo,
            tar::EntryType::XGlobalHeader => return Ok(false),
            other => {
                tracing::warn!(path = shown, kind = ?other, "skipping tar entry of unsupported type");
                return Ok(false);
            }
        };
        let path = normalize(&raw).map_err(|reason| UnpackError::Unsafe {
            path: shown.to_string(),
            reason: reason.to_string(),
        })?;
        drop(raw);
        let (dir, name) = split_last(&path);

        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            if name == OPAQUE_MARKER {
                return self.opaque(dir, shown).map(|()| true);
            }
            if hidden.starts_with(WHITEOUT_PREFIX) {
                // Other aufs metadata (.wh..wh.plnk and friends) means
                // nothing to overlayfs.
                return Ok(false);
            }
            if hidden.is_empty() || hidden == b"." || hidden == b".." {
                return Err(invalid("whiteout names no file".into()));
            }
            return self.whiteout(dir, hidden, shown).map(|()| true);
        }

        if kind == Kind::HardLink {
            let target = entry
                .link_name_bytes()
                .ok_or_else(|| invalid("hard link without a target".into()))?;
            let target = normalize(&target).map_err(|reason| UnpackError::Unsafe {
                path: shown.to_string(),
                reason: format!("hard link target: {reason}"),
            })?;
            return self.hard_link(&path, &target, shown);
        }

        let meta = read_meta(entry, shown)?;
        if path.is_empty() {
            if kind != Kind::Dir {
                return Err(invalid(
                    "names the layer root but is not a directory".into(),
                ));
            }
            self.root_meta(&meta, shown)?;
            return Ok(true);
        }
        match kind {
            Kind::File => self.file(entry, dir, name, &meta, shown)?,
            Kind::Dir => self.dir(&path, &meta, shown)?,
            Kind::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| invalid("symlink without a target".into()))?
                    .into_owned();
                self.node(dir, name, Node::Symlink(&target), &meta, shown)?;
            }
            Kind::Char | Kind::Block => {
                let h = entry.header();
                let dev = match (h.device_major(), h.device_minor()) {
                    (Ok(Some(major)), Ok(Some(minor))) => makedev(major.into(), minor.into()),
                    _ => return Err(invalid("device without valid major/minor numbers".into())),
                };
                let kind = if kind == Kind::Char {
                    SFlag::S_IFCHR
                } else {
                    SFlag::S_IFBLK
                };
                self.node(dir, name, Node::Device(kind, dev), &meta, shown)?;
            }
            Kind::Fifo => self.node(dir, name, Node::Device(SFlag::S_IFIFO, 0), &meta, shown)?,
            // Returned early above.
            Kind::HardLink => {}
        }
        if !self.whiteouts.is_empty() {
            self.whiteouts.remove(&path);
        }
        Ok(true)
    }

    fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        dir: &[u8],
        name: &[u8],
        meta: &Meta,
        shown: &str,
    ) -> Result<(), UnpackError> {
        let (parent, sgid) = self
            .dirs
            .resolve(dir, true, std::mem::take(&mut self.stale))
            .map_err(|e| resolve_error(e, dir, shown))?;
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let create = || openat(parent, name, flags, Mode::from_bits_truncate(0o600));
        let fd = match create() {
            Err(Errno::EEXIST) => {
                if clear(parent, name).map_err(|e| io_err(shown, "replacing earlier entry", e))? {
                    self.stale = true;
                    forget_dir_times(&mut self.dir_times, dir, name);
                }
                create()
            }
            r => r,
        }
        .map_err(|e| io_err(shown, "creating file", e))?;
        let mut file = File::from(fd);

        let expected = entry.size();
        let mut written = 0u64;
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(UnpackError::Tar {
                        at: format!("at entry {shown:?}"),
                        source: e,
                    })
                }
            };
            file.write_all(&self.buf[..n])
                .map_err(|e| UnpackError::Io {
                    path: shown.to_string(),
                    op: "writing file".into(),
                    source: e,
                })?;
            written += n as u64;
        }
        if written != expected {
            return Err(UnpackError::Tar {
                at: format!("at entry {shown:?}"),
                source: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("file data ends after {written} of {expected} bytes"),
                ),
            });
        }

        // chown drops set-id bits and file capabilities, so: chown, chmod,
        // xattrs, then the time (which none of them touch).
        if sgid || (meta.uid, meta.gid) != self.dirs.ids {
            fchown(
                &file,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
            )
            .map_err(|e| io_err(shown, "chown", e))?;
        }
        fchmod(&file, meta.mode).map_err(|e| io_err(shown, "chmod", e))?;
        for (key, value) in &meta.xattrs {
            set_xattr(XattrTarget::Fd(file.as_fd()), key, value, shown)?;
        }
        futimens(&file, &meta.mtime, &meta.mtime).map_err(|e| io_err(shown, "setting mtime", e))?;
        Ok(())
    }

    fn dir(&mut self, path: &[u8], meta: &Meta, shown: &str) -> Result<(), UnpackError> {
        let (dir, name) = split_last(path);
        let ids = self.dirs.ids;
        let (parent, sgid) = self
            .dirs
            .resolve(dir, true, std::mem::take(&mut self.stale))
            .map_err(|e| resolve_error(e, dir, shown))?;
        let mkdir = || mkdirat(parent, name, Mode::from_bits_truncate(0o700));
        let existed = match mkdir() {
            Ok(()) => false,
            Err(Errno::EEXIST) => {
                let st = fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(|e| io_err(shown, "inspecting earlier entry", e))?;
                if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                    // Same directory listed again: merge, take the new
                    // metadata. Cached fds may carry its old set-gid bit.
                    self.stale = true;
                    true
                } else {
                    unlinkat(parent, name, UnlinkatFlags::NoRemoveDir)
                        .map_err(|e| io_err(shown, "replacing earlier entry", e))?;
                    mkdir().map_err(|e| io_err(shown, "creating directory", e))?;
                    false
                }
            }
            Err(e) => return Err(io_err(shown, "creating directory", e)),
        };
        if existed || sgid || (meta.uid, meta.gid) != ids {
            fchownat(
                parent,
                name,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| io_err(shown, "chown", e))?;
        }
        // Following is fine: `name` was just made or checked to be a
        // directory in a directory we hold open.
        fchmodat(parent, name, meta.mode, FchmodatFlags::FollowSymlink)
            .map_err(|e| io_err(shown, "chmod", e))?;
        for (key, value) in &meta.xattrs {
            set_xattr(XattrTarget::Name(parent, name), key, value, shown)?;
        }
        self.dir_times.push((path.to_vec(), meta.mtime));
        Ok(())
    }

    fn root_meta(&mut self, meta: &Meta, shown: &str) -> Result<(), UnpackError> {
        let root = self.dirs.root.as_fd();
        fchown(
            root,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
        )
        .map_err(|e| io_err(shown, "chown", e))?;
        fchmod(root, meta.mode).map_err(|e| io_err(shown, "chmod", e))?;
        for (key, value) in &meta.xattrs {
            set_xattr(XattrTarget::Fd(root), key, value, shown)?;
        }
        self.dir_times.push((Vec::new(), meta.mtime));
        self.stale = true;
        Ok(())
    }

    /// Symlinks, devices and FIFOs.
    fn node(
        &mut self,
        dir: &[u8],
        name: &[u8],
        node: Node<'_>,
        meta: &Meta,
        shown: &str,
    ) -> Result<(), UnpackError> {
        let ids = self.dirs.ids;
        let (parent, sgid) = self
            .dirs
            .resolve(dir, true, std::mem::take(&mut self.stale))
            .map_err(|e| resolve_error(e, dir, shown))?;
        let make = || match node {
            // The target is stored as is; it is never followed here.
            Node::Symlink(target) => symlinkat(target, parent, name),
            Node::Device(kind, dev) => {
                mknodat(parent, name, kind, Mode::from_bits_truncate(0o600), dev)
            }
        };
        let op = match node {
            Node::Symlink(_) => "creating symlink",
            Node::Device(..) => "creating device node",
        };
        match make() {
            Err(Errno::EEXIST) => {
                if clear(parent, name).map_err(|e| io_err(shown, "replacing earlier entry", e))? {
                    self.stale = true;
                    forget_dir_times(&mut self.dir_times, dir, name);
                }
                make()
            }
            r => r,
        }
        .map_err(|e| io_err(shown, op, e))?;

        if sgid || (meta.uid, meta.gid) != ids {
            fchownat(
                parent,
                name,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| io_err(shown, "chown", e))?;
        }
        if let Node::Device(..) = node {
            // Just created as a device or FIFO, so following cannot happen.
            fchmodat(parent, name, meta.mode, FchmodatFlags::FollowSymlink)
                .map_err(|e| io_err(shown, "chmod", e))?;
        }
        for (key, value) in &meta.xattrs {
            set_xattr(XattrTarget::Name(parent, name), key, value, shown)?;
        }
        utimensat(
            parent,
            name,
            &meta.mtime,
            &meta.mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(|e| io_err(shown, "setting mtime", e))?;
        Ok(())
    }

    /// A hard link to an earlier entry of this layer. Both ends are looked
    /// up the same symlink-free way as any entry path.
    fn hard_link(&mut self, path: &[u8], target: &[u8], shown: &str) -> Result<bool, UnpackError> {
        let invalid = |reason: &str| UnpackError::Invalid {
            path: shown.to_string(),
            reason: reason.to_string(),
        };
        if target.is_empty() {
            return Err(invalid("hard link to the layer root"));
        }
        if path.is_empty() {
            return Err(invalid("hard link names the layer root"));
        }
        if target == path {
            return Ok(false);
        }
        if self.whiteouts.contains(target) {
            return Err(invalid(
                "hard link target is a whiteout, not a file of this layer",
            ));
        }
        let (tdir, tname) = split_last(target);
        let (dir, name) = split_last(path);
        let stale = std::mem::take(&mut self.stale);
        let missing = |e: ResolveError| match e {
            ResolveError::Missing(_) => {
                invalid("hard link target is not an earlier entry of this layer")
            }
            e => resolve_error(e, tdir, shown),
        };
        // Keep the target's directory open while the stack moves to the
        // link's directory (only needed when they differ).
        let tparent_owned = if tdir != dir {
            let (fd, _) = self.dirs.resolve(tdir, false, stale).map_err(missing)?;
            Some(fd.try_clone_to_owned().map_err(|e| UnpackError::Io {
                path: shown.to_string(),
                op: "duplicating directory fd".into(),
                source: e,
            })?)
        } else {
            None
        };
        let (parent, _) = self
            .dirs
            .resolve(dir, true, stale && tparent_owned.is_none())
            .map_err(|e| resolve_error(e, dir, shown))?;
        let tparent = match &tparent_owned {
            Some(fd) => fd.as_fd(),
            None => parent,
        };
        // No AT_SYMLINK_FOLLOW: a symlink target is linked itself.
        let link = || linkat(tparent, tname, parent, name, AtFlags::empty());
        match link() {
            Err(Errno::EEXIST) => {
                if clear(parent, name).map_err(|e| io_err(shown, "replacing earlier entry", e))? {
                    self.stale = true;
                    forget_dir_times(&mut self.dir_times, dir, name);
                }
                link()
            }
            r => r,
        }
        .map_err(|e| match e {
            Errno::ENOENT => invalid("hard link target is not an earlier entry of this layer"),
            Errno::EPERM => invalid("hard link target is a directory"),
            e => io_err(shown, "creating hard link", e),
        })?;
        if !self.whiteouts.is_empty() {
            self.whiteouts.remove(path);
        }
        Ok(true)
    }

    /// `dir/.wh.name`: a 0:0 character device hides `name` of lower layers.
    fn whiteout(&mut self, dir: &[u8], name: &[u8], shown: &str) -> Result<(), UnpackError> {
        let (parent, _) = self
            .dirs
            .resolve(dir, true, std::mem::take(&mut self.stale))
            .map_err(|e| resolve_error(e, dir, shown))?;
        match mknodat(parent, name, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0)) {
            Ok(()) => {}
            // A whiteout applies to lower layers only; a file of this layer
            // with the same name stays.
            Err(Errno::EEXIST) => return Ok(()),
            Err(e) => return Err(io_err(shown, "creating whiteout device", e)),
        }
        let mut full = dir.to_vec();
        if !full.is_empty() {
            full.push(b'/');
        }
        full.extend_from_slice(name);
        self.whiteouts.insert(full);
        Ok(())
    }

    /// `dir/.wh..wh..opq`: `dir` hides everything below it in lower layers.
    fn opaque(&mut self, dir: &[u8], shown: &str) -> Result<(), UnpackError> {
        let (fd, _) = self
            .dirs
            .resolve(dir, true, std::mem::take(&mut self.stale))
            .map_err(|e| resolve_error(e, dir, shown))?;
        fsetxattr(fd, OPAQUE_XATTR, b"y")
            .map_err(|e| io_err(shown, "setting trusted.overlay.opaque", e))
    }

    /// Sets directory mtimes now that nothing will be created in them.
    /// Changing a directory's times does not touch its parent, so order
    /// does not matter; tar order keeps the fd stack warm.
    fn finish(&mut self) -> Result<(), UnpackError> {
        let times = std::mem::take(&mut self.dir_times);
        for (path, ts) in &times {
            let shown = lossy(path);
            if path.is_empty() {
                futimens(self.dirs.root.as_fd(), ts, ts)
                    .map_err(|e| io_err(&shown, "setting mtime", e))?;
                continue;
            }
            let (dir, name) = split_last(path);
            let (parent, _) = self
                .dirs
                .resolve(dir, false, std::mem::take(&mut self.stale))
                .map_err(|e| resolve_error(e, dir, &shown))?;
            utimensat(parent, name, ts, ts, UtimensatFlags::NoFollowSymlink)
                .map_err(|e| io_err(&shown, "setting mtime", e))?;
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum Node<'a> {
    Symlink(&'a [u8]),
    Device(SFlag, libc::dev_t),
}

/// Removes whatever an earlier entry left at `name` so a later entry with
/// the same path can take its place. Returns true when a directory tree was
/// removed.
fn clear(parent: BorrowedFd<'_>, name: &[u8]) -> nix::Result<bool> {
    match unlinkat(parent, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) => Ok(false),
        Err(Errno::EISDIR) => {
            remove_tree(parent, name)?;
            Ok(true)
        }
        Err(e) => Err(e),
    }
}

/// Removes directory `name` and everything in it, never following symlinks.
fn remove_tree(parent: BorrowedFd<'_>, name: &[u8]) -> nix::Result<()> {
    let fd = openat(parent, name, dir_flags(), Mode::empty())?;
    let mut dir = nix::dir::Dir::from_fd(fd)?;
    let mut children = Vec::new();
    for ent in dir.iter() {
        let ent = ent?;
        let n = ent.file_name().to_bytes();
        if n != b"." && n != b".." {
            children.push((ent.file_name().to_owned(), ent.file_type()));
        }
    }
    for (child, ty) in children {
        let child = child.as_bytes();
        if ty == Some(nix::dir::Type::Directory) {
            remove_tree(dir.as_fd(), child)?;
        } else {
            match unlinkat(dir.as_fd(), child, UnlinkatFlags::NoRemoveDir) {
                Err(Errno::EISDIR) => remove_tree(dir.as_fd(), child)?,
                r => r?,
            }
        }
    }
    unlinkat(parent, name, UnlinkatFlags::RemoveDir)
}

/// Drops recorded mtimes of a removed directory tree `dir/name`.
fn forget_dir_times(times: &mut Vec<(Vec<u8>, TimeSpec)>, dir: &[u8], name: &[u8]) {
    let mut gone = dir.to_vec();
    if !gone.is_empty() {
        gone.push(b'/');
    }
    gone.extend_from_slice(name);
    times.retain(|(p, _)| {
        !(p.starts_with(&gone) && (p.len() == gone.len() || p[gone.len()] == b'/'))
    });
}

fn io_err(shown: &str, op: &str, e: Errno) -> UnpackError {
    UnpackError::Io {
        path: shown.to_string(),
        op: op.to_string(),
        source: e.into(),
    }
}

fn resolve_error(e: ResolveError, dir: &[u8], shown: &str) -> UnpackError {
    match e {
        ResolveError::Symlink(end) => UnpackError::Unsafe {
            path: shown.to_string(),
            reason: format!(
                "{:?} is a symlink; paths are never resolved through symlinks",
                lossy(&dir[..end])
            ),
        },
        ResolveError::NotDir(end) => UnpackError::Invalid {
            path: shown.to_string(),
            reason: format!("{:?} is not a directory", lossy(&dir[..end])),
        },
        ResolveError::Missing(end) => UnpackError::Invalid {
            path: shown.to_string(),
            reason: format!("directory {:?} does not exist", lossy(&dir[..end])),
        },
        ResolveError::Io(end, op, e) => UnpackError::Io {
            path: shown.to_string(),
            op: format!("{op} {:?}", lossy(&dir[..end])),
            source: e.into(),
        },
    }
}

/// Reads ownership, mode, mtime (with PAX sub-second precision) and the
/// `SCHILY.xattr.*` PAX records of an entry.
fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>, shown: &str) -> Result<Meta, UnpackError> {
    let invalid = |reason: String| UnpackError::Invalid {
        path: shown.to_string(),
        reason,
    };
    let h = entry.header();
    let old = h.as_old();
    let uid = numeric(h.uid(), &old.uid)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| invalid("invalid uid".into()))?;
    let gid = numeric(h.gid(), &old.gid)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| invalid("invalid gid".into()))?;
    let mode = numeric(h.mode().map(u64::from), &old.mode)
        .ok_or_else(|| invalid("invalid mode".into()))?;
    let secs = numeric(h.mtime(), &old.mtime)
        .and_then(|t| i64::try_from(t).ok())
        .ok_or_else(|| invalid("invalid mtime".into()))?;
    let mut meta = Meta {
        uid,
        gid,
        mode: Mode::from_bits_truncate((mode & 0o7777) as libc::mode_t),
        mtime: TimeSpec::new(secs, 0),
        xattrs: Vec::new(),
    };
    let exts = entry.pax_extensions().map_err(|e| UnpackError::Tar {
        at: format!("at entry {shown:?}"),
        source: e,
    })?;
    for ext in exts.into_iter().flatten() {
        let ext = ext.map_err(|e| UnpackError::Tar {
            at: format!("at entry {shown:?}"),
            source: e,
        })?;
        let key = ext.key_bytes();
        if key == b"mtime" {
            meta.mtime = parse_pax_time(ext.value_bytes()).ok_or_else(|| {
                invalid(format!("invalid PAX mtime {:?}", lossy(ext.value_bytes())))
            })?;
        } else if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
            let name = CString::new(name)
                .ok()
                .filter(|n| !n.is_empty())
                .ok_or_else(|| invalid(format!("invalid xattr name {:?}", lossy(name))))?;
            meta.xattrs.push((name, ext.value_bytes().to_vec()));
        } else if key.starts_with(b"GNU.sparse.") {
            // The data would hold a sparse map the tar crate does not decode.
            return Err(invalid(
                "PAX-format GNU sparse files are not supported".into(),
            ));
        }
    }
    Ok(meta)
}

/// A numeric header field; an empty one (all NULs or spaces, as some
/// writers leave unused fields) reads as 0 the way Go's archive/tar does.
fn numeric(parsed: io::Result<u64>, raw: &[u8]) -> Option<u64> {
    match parsed {
        Ok(v) => Some(v),
        Err(_) if raw.iter().all(|b| *b == 0 || *b == b' ') => Some(0),
        Err(_) => None,
    }
}

/// Parses a PAX time: decimal seconds, optionally negative, optionally with
/// a fraction.
fn parse_pax_time(v: &[u8]) -> Option<TimeSpec> {
    let s = std::str::from_utf8(v).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    let mut nanos: i64 = 0;
    for (i, d) in frac.bytes().take(9).enumerate() {
        nanos += i64::from(d - b'0') * 10i64.pow(8 - i as u32);
    }
    Some(if !neg {
        TimeSpec::new(secs, nanos)
    } else if nanos == 0 {
        TimeSpec::new(-secs, 0)
    } else {
        TimeSpec::new(-secs - 1, 1_000_000_000 - nanos)
    })
}

enum XattrTarget<'a> {
    Fd(BorrowedFd<'a>),
    /// An entry that is not open: a directory, symlink or device node.
    Name(BorrowedFd<'a>, &'a [u8]),
}

/// Sets one xattr from the tar.
///
/// Policy: `trusted.overlay.*` from a tar is dropped with a warning, since it
/// would steer overlayfs and only our whiteout conversion may do that.
/// `security.*` xattrs the filesystem or LSM does not support (EOPNOTSUPP)
/// are dropped with a warning, as such labels are host policy. Any other
/// failure, including every `user.*` one, fails the entry.
fn set_xattr(
    target: XattrTarget<'_>,
    key: &CStr,
    value: &[u8],
    shown: &str,
) -> Result<(), UnpackError> {
    let k = key.to_bytes();
    if k.starts_with(b"trusted.overlay.") {
        tracing::warn!(path = shown, xattr = %key.to_string_lossy(), "ignoring overlayfs xattr in layer tar");
        return Ok(());
    }
    let res = match target {
        XattrTarget::Fd(fd) => fsetxattr(fd, key, value),
        XattrTarget::Name(parent, name) => {
            // No lsetxattr relative to a dir fd before Linux 6.13: go through
            // the fd's /proc link, which names the verified directory; the
            // final name is not followed.
            let mut p = format!("/proc/self/fd/{}/", parent.as_raw_fd()).into_bytes();
            p.extend_from_slice(name);
            match CString::new(p) {
                Ok(p) => lsetxattr(&p, key, value),
                Err(_) => Err(Errno::EINVAL),
            }
        }
    };
    match res {
        Ok(()) => Ok(()),
        Err(Errno::EOPNOTSUPP) if k.starts_with(b"security.") => {
            tracing::warn!(path = shown, xattr = %key.to_string_lossy(), "filesystem does not support xattr; dropped");
            Ok(())
        }
        Err(e) => Err(io_err(
            shown,
            &format!("setting xattr {}", key.to_string_lossy()),
            e,
        )),
    }
}

fn fsetxattr(fd: BorrowedFd<'_>, key: &CStr, value: &[u8]) -> nix::Result<()> {
    // SAFETY: valid fd, NUL-terminated name, value pointer and length from
    // one slice.
    let r = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            key.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    Errno::result(r).map(drop)
}

fn lsetxattr(path: &CStr, key: &CStr, value: &[u8]) -> nix::Result<()> {
    // SAFETY: NUL-terminated path and name, value pointer and length from
    // one slice.
    let r = unsafe {
        libc::lsetxattr(
            path.as_ptr(),
            key.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    Errno::result(r).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    use std::path::PathBuf;

    fn need_root() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "layer unpack tests must run as root (chown, mknod, trusted.* xattrs, overlay mounts)"
        );
    }

    /// A tar entry written field by field, so paths the tar crate's builder
    /// would refuse (absolute, `..`) can be made.
    struct E<'a> {
        path: &'a [u8],
        kind: tar::EntryType,
        link: &'a [u8],
        data: &'a [u8],
        mode: u32,
        uid: u64,
        gid: u64,
        mtime: u64,
        dev: (u32, u32),
    }

    fn e(path: &str) -> E<'_> {
        E {
            path: path.as_bytes(),
            kind: tar::EntryType::Regular,
            link: b"",
            data: b"",
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 1_600_000_000,
            dev: (0, 0),
        }
    }

    fn file<'a>(path: &'a str, data: &'a [u8]) -> E<'a> {
        E { data, ..e(path) }
    }

    fn dir(path: &str) -> E<'_> {
        E {
            kind: tar::EntryType::Directory,
            mode: 0o755,
            ..e(path)
        }
    }

    fn symlink<'a>(path: &'a str, target: &'a str) -> E<'a> {
        E {
            kind: tar::EntryType::Symlink,
            link: target.as_bytes(),
            mode: 0o777,
            ..e(path)
        }
    }

    fn hardlink<'a>(path: &'a str, target: &'a str) -> E<'a> {
        E {
            kind: tar::EntryType::Link,
            link: target.as_bytes(),
            ..e(path)
        }
    }

    fn append(b: &mut tar::Builder<Vec<u8>>, x: &E<'_>) {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..x.path.len()].copy_from_slice(x.path);
        h.set_link_name_literal(x.link).unwrap();
        h.set_entry_type(x.kind);
        h.set_size(x.data.len() as u64);
        h.set_mode(x.mode);
        h.set_uid(x.uid);
        h.set_gid(x.gid);
        h.set_mtime(x.mtime);
        h.set_device_major(x.dev.0).unwrap();
        h.set_device_minor(x.dev.1).unwrap();
        h.set_cksum();
        b.append(&h, x.data).unwrap();
    }

    fn tar_of(entries: &[E<'_>]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for x in entries {
            append(&mut b, x);
        }
        b.into_inner().unwrap()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        zstd::stream::encode_all(data, 3).unwrap()
    }

    fn sha256(data: &[u8]) -> String {
        format!("sha256:{:x}", Sha256::digest(data))
    }

    struct Layer {
        dir: tempfile::TempDir,
    }

    impl Layer {
        fn p(&self, rel: &str) -> PathBuf {
            self.dir.path().join(rel)
        }
        fn meta(&self, rel: &str) -> fs::Metadata {
            fs::symlink_metadata(self.p(rel))
                .unwrap_or_else(|e| panic!("{rel} in unpacked layer: {e}"))
        }
        fn exists(&self, rel: &str) -> bool {
            fs::symlink_metadata(self.p(rel)).is_ok()
        }
    }

    fn unpack(input: &[u8]) -> (Layer, Result<UnpackedLayer, UnpackError>) {
        need_root();
        let dir = tempfile::tempdir().unwrap();
        let r = unpack_layer(input, dir.path());
        (Layer { dir }, r)
    }

    fn unpack_ok(input: &[u8]) -> (Layer, UnpackedLayer) {
        let (l, r) = unpack(input);
        let u = r.unwrap_or_else(|e| panic!("unpack failed: {e}"));
        (l, u)
    }

    fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
        let p = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        let n = CString::new(name).unwrap();
        let mut buf = vec![0u8; 256];
        // SAFETY: valid C strings and a buffer of the given length.
        let r =
            unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if r < 0 {
            return None;
        }
        buf.truncate(r as usize);
        Some(buf)
    }

    #[test]
    fn regular_file_content_mode_owner_mtime() {
        let t = tar_of(&[
            E {
                mode: 0o640,
                uid: 1234,
                gid: 5678,
                mtime: 1_234_567_890,
                ..file("etc/conf", b"hello layer\n")
            },
            E {
                mode: 0o4755,
                uid: 1000,
                gid: 1000,
                ..file("bin/su", b"\x7fELF")
            },
            E {
                mode: 0o2711,
                ..file("bin/sg", b"x")
            },
        ]);
        let (l, u) = unpack_ok(&gzip(&t));
        assert_eq!(u.entries, 3);
        // Before reading: relatime would move the atime.
        let m = l.meta("etc/conf");
        assert_eq!(fs::read(l.p("etc/conf")).unwrap(), b"hello layer\n");
        assert!(m.file_type().is_file());
        assert_eq!(m.mode() & 0o7777, 0o640);
        assert_eq!((m.uid(), m.gid()), (1234, 5678));
        assert_eq!((m.mtime(), m.mtime_nsec()), (1_234_567_890, 0));
        assert_eq!(m.atime(), 1_234_567_890);
        let su = l.meta("bin/su");
        assert_eq!(
            su.mode() & 0o7777,
            0o4755,
            "setuid bit must survive the chown"
        );
        assert_eq!((su.uid(), su.gid()), (1000, 1000));
        assert_eq!(l.meta("bin/sg").mode() & 0o7777, 0o2711);
        // Parents the tar does not list: root-owned 0755.
        let etc = l.meta("etc");
        assert!(etc.is_dir());
        assert_eq!((etc.mode() & 0o7777, etc.uid(), etc.gid()), (0o755, 0, 0));
    }

    #[test]
    fn directory_mode_owner_and_mtime_after_children() {
        let t = tar_of(&[
            E {
                mode: 0o750,
                uid: 7,
                gid: 8,
                mtime: 1_000_000,
                ..dir("d/")
            },
            E {
                mtime: 2_000_000,
                ..dir("d/sub/")
            },
            file("d/sub/f", b"x"),
            file("d/f", b"y"),
            file("d/.wh.lower", b""),
            E {
                mode: 0o700,
                mtime: 3_000_000,
                ..dir("./")
            },
        ]);
        let (l, _) = unpack_ok(&t);
        let d = l.meta("d");
        assert_eq!((d.mode() & 0o7777, d.uid(), d.gid()), (0o750, 7, 8));
        assert_eq!(d.mtime(), 1_000_000);
        assert_eq!(l.meta("d/sub").mtime(), 2_000_000);
        let root = fs::symlink_metadata(l.dir.path()).unwrap();
        assert_eq!((root.mode() & 0o7777, root.mtime()), (0o700, 3_000_000));
    }

    #[test]
    fn setgid_parent_does_not_leak_its_group() {
        // New entries in a set-gid directory inherit its group; the tar's gid
        // (0 here) must still win.
        let t = tar_of(&[
            E {
                mode: 0o2775,
                gid: 50,
                ..dir("g/")
            },
            file("g/f", b"x"),
            dir("g/sub/"),
            symlink("g/l", "f"),
        ]);
        let (l, _) = unpack_ok(&t);
        assert_eq!(l.meta("g").gid(), 50);
        assert_eq!(l.meta("g").mode() & 0o7777, 0o2775);
        assert_eq!(l.meta("g/f").gid(), 0);
        assert_eq!(l.meta("g/sub").gid(), 0);
        assert_eq!(l.meta("g/sub").mode() & 0o7777, 0o755);
        assert_eq!(l.meta("g/l").gid(), 0);
    }

    #[test]
    fn symlink_target_owner_and_mtime() {
        let t = tar_of(&[
            E {
                uid: 3,
                gid: 4,
                mtime: 1_111_111,
                ..symlink("bin/sh", "/bin/busybox")
            },
            symlink("rel", "../../../etc/shadow"),
        ]);
        let (l, _) = unpack_ok(&t);
        let m = l.meta("bin/sh");
        assert!(m.file_type().is_symlink());
        assert_eq!(
            fs::read_link(l.p("bin/sh")).unwrap(),
            Path::new("/bin/busybox")
        );
        assert_eq!((m.uid(), m.gid(), m.mtime()), (3, 4, 1_111_111));
        assert_eq!(
            fs::read_link(l.p("rel")).unwrap(),
            Path::new("../../../etc/shadow")
        );
    }

    #[test]
    fn hard_links_share_the_inode() {
        let t = tar_of(&[
            file("bin/busybox", b"bb"),
            hardlink("bin/ls", "bin/busybox"),
            hardlink("usr/bin/env", "./bin/busybox"),
            symlink("s", "bin/busybox"),
            hardlink("s2", "s"),
        ]);
        let (l, u) = unpack_ok(&t);
        assert_eq!(u.entries, 5);
        let a = l.meta("bin/busybox");
        let b = l.meta("bin/ls");
        assert_eq!(a.ino(), b.ino());
        assert_eq!(a.nlink(), 3);
        assert_eq!(l.meta("usr/bin/env").ino(), a.ino());
        // A hard link to a symlink links the symlink itself.
        assert_eq!(l.meta("s2").ino(), l.meta("s").ino());
        assert!(l.meta("s2").file_type().is_symlink());
    }

    #[test]
    fn hard_link_to_missing_target_fails() {
        let t = tar_of(&[hardlink("a", "nothere")]);
        let (_, r) = unpack(&t);
        assert!(
            matches!(r, Err(UnpackError::Invalid { ref path, .. }) if path == "a"),
            "{r:?}"
        );
    }

    #[test]
    fn fifo_and_devices() {
        let t = tar_of(&[
            E {
                kind: tar::EntryType::Fifo,
                mode: 0o620,
                ..e("run/fifo")
            },
            E {
                kind: tar::EntryType::Char,
                mode: 0o666,
                dev: (1, 3),
                uid: 5,
                ..e("dev/null")
            },
            E {
                kind: tar::EntryType::Block,
                mode: 0o660,
                dev: (7, 0),
                ..e("dev/loop0")
            },
        ]);
        let (l, _) = unpack_ok(&t);
        let f = l.meta("run/fifo");
        assert!(f.file_type().is_fifo());
        assert_eq!(f.mode() & 0o7777, 0o620);
        let n = l.meta("dev/null");
        assert!(n.file_type().is_char_device());
        assert_eq!(n.rdev(), makedev(1, 3));
        assert_eq!((n.mode() & 0o7777, n.uid()), (0o666, 5));
        let b = l.meta("dev/loop0");
        assert!(b.file_type().is_block_device());
        assert_eq!(b.rdev(), makedev(7, 0));
    }

    #[test]
    fn whiteouts_become_overlay_devices() {
        let t = tar_of(&[
            file("etc/.wh.passwd", b""),
            file(".wh.tmp", b""),
            file(".wh..wh.plnk", b""),
            // Same-layer file with a whiteout's name: the file stays.
            file("keep", b"k"),
            file(".wh.keep", b""),
        ]);
        let (l, u) = unpack_ok(&t);
        assert_eq!(u.entries, 4);
        for w in ["etc/passwd", "tmp"] {
            let m = l.meta(w);
            assert!(m.file_type().is_char_device(), "{w}");
            assert_eq!(m.rdev(), 0, "{w}");
        }
        assert!(!l.exists(".wh..wh.plnk"));
        assert!(!l.exists(".wh.plnk"));
        assert!(!l.exists("etc/.wh.passwd"));
        assert_eq!(fs::read(l.p("keep")).unwrap(), b"k");
    }

    #[test]
    fn real_entry_replaces_same_layer_whiteout() {
        let t = tar_of(&[file(".wh.x", b""), file("x", b"real")]);
        let (l, _) = unpack_ok(&t);
        assert_eq!(fs::read(l.p("x")).unwrap(), b"real");
    }

    #[test]
    fn hard_link_to_whiteout_fails() {
        let t = tar_of(&[file(".wh.x", b""), hardlink("y", "x")]);
        let (l, r) = unpack(&t);
        assert!(matches!(r, Err(UnpackError::Invalid { .. })), "{r:?}");
        assert!(!l.exists("y"));
    }

    #[test]
    fn opaque_marker_sets_xattr() {
        let t = tar_of(&[
            dir("var/"),
            dir("var/cache/"),
            file("var/cache/.wh..wh..opq", b""),
            file("var/cache/new", b"n"),
            // Directory not listed before its marker: created.
            file("opt/app/.wh..wh..opq", b""),
        ]);
        let (l, _) = unpack_ok(&t);
        for d in ["var/cache", "opt/app"] {
            assert_eq!(
                xattr(&l.p(d), "trusted.overlay.opaque").as_deref(),
                Some(&b"y"[..]),
                "{d}"
            );
        }
        assert!(xattr(&l.p("var"), "trusted.overlay.opaque").is_none());
        assert!(!l.exists("var/cache/.wh..wh..opq"));
    }

    #[test]
    fn pax_xattrs_mtime_and_long_names() {
        let long_dir = "d".repeat(120);
        let long_path = format!("{long_dir}/{}", "f".repeat(140));
        let long_target = format!("/{}", "t".repeat(200));
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([
            ("SCHILY.xattr.user.note", &b"hello"[..]),
            ("mtime", &b"1700000000.25"[..]),
        ])
        .unwrap();
        append(&mut b, &file("x", b"data"));
        b.append_pax_extensions([("SCHILY.xattr.trusted.overlay.opaque", &b"y"[..])])
            .unwrap();
        append(&mut b, &dir("sneaky/"));
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o600);
        h.set_size(3);
        b.append_data(&mut h, &long_path, &b"abc"[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "longlink", &long_target).unwrap();
        let t = b.into_inner().unwrap();

        let (l, _) = unpack_ok(&t);
        assert_eq!(
            xattr(&l.p("x"), "user.note").as_deref(),
            Some(&b"hello"[..])
        );
        let m = l.meta("x");
        assert_eq!((m.mtime(), m.mtime_nsec()), (1_700_000_000, 250_000_000));
        assert!(
            xattr(&l.p("sneaky"), "trusted.overlay.opaque").is_none(),
            "overlay xattrs from the tar must be dropped"
        );
        assert_eq!(fs::read(l.p(&long_path)).unwrap(), b"abc");
        assert_eq!(
            fs::read_link(l.p("longlink")).unwrap(),
            Path::new(&long_target)
        );
    }

    #[test]
    fn paths_are_normalised_and_skips_not_counted() {
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([("comment", &b"global"[..])])
            .unwrap();
        // Turn that local PAX header into a global one ('g').
        let mut t = b.into_inner().unwrap();
        t.truncate(t.len() - 1024);
        t[156] = b'g';
        let mut h = tar::Header::from_byte_slice(&t[..512]).clone();
        h.set_cksum();
        t[..512].copy_from_slice(h.as_bytes());
        let mut b = tar::Builder::new(t);
        append(&mut b, &file("./a//b/./c", b"c"));
        append(&mut b, &hardlink("a/b/c", "./a/b/c"));
        append(&mut b, &file("a/.wh..wh.aufs", b""));
        append(
            &mut b,
            &E {
                kind: tar::EntryType::new(b'V'),
                ..e("volume-label")
            },
        );
        let t = b.into_inner().unwrap();
        let (l, u) = unpack_ok(&t);
        assert_eq!(u.entries, 1);
        assert_eq!(fs::read(l.p("a/b/c")).unwrap(), b"c");
        assert_eq!(l.meta("a/b/c").nlink(), 1);
        assert!(!l.exists("volume-label"));
    }

    #[test]
    fn pax_sparse_files_are_refused() {
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([("GNU.sparse.major", &b"1"[..])])
            .unwrap();
        append(&mut b, &file("GNUSparseFile.0/f", b"map"));
        let (_, r) = unpack(&b.into_inner().unwrap());
        assert!(matches!(r, Err(UnpackError::Invalid { .. })), "{r:?}");
    }

    #[test]
    fn later_entries_replace_earlier_ones() {
        let t = tar_of(&[
            file("f", b"one"),
            hardlink("f2", "f"),
            file("f", b"two"),
            dir("d/"),
            dir("d/deep/"),
            file("d/deep/x", b"x"),
            file("d", b"now a file"),
            file("g", b"file"),
            E {
                mode: 0o711,
                ..dir("g/")
            },
            symlink("s", "/etc"),
            file("s", b"not a link"),
            E {
                mode: 0o700,
                uid: 9,
                ..dir("m/")
            },
            file("m/kept", b"k"),
            E {
                mode: 0o755,
                uid: 10,
                ..dir("m/")
            },
        ]);
        let (l, _) = unpack_ok(&t);
        assert_eq!(fs::read(l.p("f")).unwrap(), b"two");
        // The old inode lives on in the hard link, untouched.
        assert_eq!(fs::read(l.p("f2")).unwrap(), b"one");
        assert_eq!(fs::read(l.p("d")).unwrap(), b"now a file");
        assert!(l.meta("g").is_dir());
        assert_eq!(l.meta("g").mode() & 0o7777, 0o711);
        assert!(l.meta("s").is_file());
        let m = l.meta("m");
        assert_eq!((m.mode() & 0o7777, m.uid()), (0o755, 10));
        assert!(l.exists("m/kept"));
    }

    /// Asserts the unpack was refused as unsafe, naming `entry`.
    fn assert_refused(r: Result<UnpackedLayer, UnpackError>, entry: &str) {
        match r {
            Err(UnpackError::Unsafe { ref path, .. }) if path == entry => {}
            other => panic!("expected entry {entry:?} to be refused, got {other:?}"),
        }
    }

    #[test]
    fn escaping_paths_are_refused() {
        for bad in ["/abs", "../x", "a/../../x", "a/b/../c", "./../x", "//etc/x"] {
            let t = tar_of(&[file(bad, b"evil")]);
            let (_, r) = unpack(&t);
            assert_refused(r, bad);
        }
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_entry_type(tar::EntryType::Directory);
        let deep = "d/".repeat(3000);
        b.append_data(&mut h, &deep, io::empty()).unwrap();
        let (_, r) = unpack(&b.into_inner().unwrap());
        assert_refused(r, &deep);
        let t = tar_of(&[hardlink("x", "../outside")]);
        let (_, r) = unpack(&t);
        assert_refused(r, "x");
        let t = tar_of(&[hardlink("x", "/etc/passwd")]);
        let (_, r) = unpack(&t);
        assert_refused(r, "x");
    }

    #[test]
    fn writes_through_symlinks_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        let out = outside.path().to_str().unwrap();
        fs::write(outside.path().join("secret"), b"s").unwrap();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (tar_of(&[symlink("a", out), file("a/evil", b"x")]), "a/evil"),
            (tar_of(&[symlink("a", out), dir("a/evil/")]), "a/evil/"),
            (
                tar_of(&[symlink("a", out), symlink("a/evil", "/x")]),
                "a/evil",
            ),
            (
                tar_of(&[symlink("a", out), file("a/.wh.secret", b"")]),
                "a/.wh.secret",
            ),
            (
                tar_of(&[symlink("a", out), file("a/.wh..wh..opq", b"")]),
                "a/.wh..wh..opq",
            ),
            (
                tar_of(&[
                    dir("d/"),
                    symlink("d/up", "../.."),
                    file("d/up/tmp/evil", b"x"),
                ]),
                "d/up/tmp/evil",
            ),
            (
                tar_of(&[symlink("a", out), hardlink("stolen", "a/secret")]),
                "stolen",
            ),
            (
                tar_of(&[file("f", b"x"), symlink("a", out), hardlink("a/evil", "f")]),
                "a/evil",
            ),
        ];
        for (t, entry) in cases {
            let (l, r) = unpack(&t);
            assert_refused(r, entry);
            let mut names: Vec<_> = fs::read_dir(outside.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            assert_eq!(
                names,
                vec!["secret"],
                "something was written outside the layer"
            );
            assert_eq!(fs::read(outside.path().join("secret")).unwrap(), b"s");
            assert!(!l.exists("stolen"));
            assert!(
                xattr(outside.path(), "trusted.overlay.opaque").is_none(),
                "opaque xattr set through a symlink"
            );
        }
    }

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

    /// Unmounts on drop, so a failing assertion does not leave the mount.
    struct Mounted(PathBuf);

    impl Drop for Mounted {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }

    #[test]
    fn overlayfs_honours_converted_whiteouts() {
        let lower = tar_of(&[
            dir("a/"),
            file("a/keep", b"keep"),
            file("a/gone", b"gone"),
            dir("o/"),
            file("o/old", b"old"),
            dir("o/sub/"),
            file("o/sub/deep", b"deep"),
            file("top", b"top"),
        ]);
        let upper = tar_of(&[
            file("a/.wh.gone", b""),
            dir("o/"),
            file("o/.wh..wh..opq", b""),
            file("o/new", b"new"),
            file(".wh.top", b""),
        ]);
        let (l1, _) = unpack_ok(&gzip(&lower));
        let (l2, _) = unpack_ok(&zstd(&upper));
        let mnt = tempfile::tempdir().unwrap();
        let opts = format!(
            "lowerdir={}:{}",
            l2.dir.path().display(),
            l1.dir.path().display()
        );
        nix::mount::mount(
            Some("overlay"),
            mnt.path(),
            Some("overlay"),
            nix::mount::MsFlags::MS_RDONLY,
            Some(opts.as_str()),
        )
        .unwrap_or_else(|e| panic!("mount -t overlay -o {opts}: {e} (needs overlayfs)"));
        let _guard = Mounted(mnt.path().to_path_buf());
        let m = |p: &str| mnt.path().join(p);
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(mounts.contains(mnt.path().to_str().unwrap()));

        assert_eq!(fs::read(m("a/keep")).unwrap(), b"keep");
        assert_eq!(
            fs::symlink_metadata(m("a/gone")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            fs::symlink_metadata(m("top")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        let mut names: Vec<_> = fs::read_dir(m("o"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["new"], "opaque dir must hide the lower content");
        let mut root: Vec<_> = fs::read_dir(mnt.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        root.sort();
        assert_eq!(root, ["a", "o"]);
    }
}
