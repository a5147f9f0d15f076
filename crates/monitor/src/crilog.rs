//! The CRI log format kubelet reads (`kuberuntime/logs`): one entry per
//! line, `<timestamp> <stream> <tag> <content>\n`, where the timestamp is
//! RFC 3339 UTC with nanoseconds, the stream is `stdout` or `stderr` and the
//! tag is `F` for the last piece of a line or `P` for a partial piece.
//!
//! [`LineSplitter`] cuts a byte stream into such pieces, [`CriLog`] writes
//! them, one `write(2)` per entry, to a file it can reopen.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;

/// Length of a timestamp, `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
pub const TIMESTAMP_LEN: usize = 30;

/// Room for what precedes the content of an entry: the timestamp, the
/// stream name, the tag, three spaces, and the trailing newline.
const ENTRY_OVERHEAD: usize = TIMESTAMP_LEN + 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static [u8] {
        match self {
            Stream::Stdout => b"stdout",
            Stream::Stderr => b"stderr",
        }
    }
}

/// Whether a piece ends its line (`F`) or more of the line follows (`P`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    Full,
    Partial,
}

impl Tag {
    fn letter(self) -> u8 {
        match self {
            Tag::Full => b'F',
            Tag::Partial => b'P',
        }
    }
}

/// Proleptic Gregorian date of a day counted from 1970-01-01:
/// (year, month 1-12, day 1-31). Works on 400-year eras of 146097 days,
/// each starting on a March 1st so that the leap day ends a year.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Days since 0000-03-01, the start of an era.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097); // 0..=146096
                                            // Leap days inside the era are every 4th year, less every 100th, plus
                                            // the 400th: subtracting them gives a 365-day calendar to divide by.
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    // Months from March: 31,30,31,30,31,31,30,31,30,31,31,28/29 days,
    // which (153 * m + 2) / 5 gives as a running sum.
    let month_from_march = (5 * day_of_year + 2) / 153; // 0..=11
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn put_digits(out: &mut [u8], mut value: u64) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Formats seconds and nanoseconds since the epoch as
/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (always nine fraction digits).
/// Years outside 0000..=9999 are not representable and are clamped.
pub fn format_timestamp(secs: i64, nanos: u32, out: &mut [u8; TIMESTAMP_LEN]) {
    let days = secs.div_euclid(86_400);
    let secs_of_day = secs.rem_euclid(86_400) as u64;
    let (year, month, day) = civil_from_days(days);
    let year = year.clamp(0, 9999) as u64;
    *out = *b"0000-00-00T00:00:00.000000000Z";
    put_digits(&mut out[0..4], year);
    put_digits(&mut out[5..7], u64::from(month));
    put_digits(&mut out[8..10], u64::from(day));
    put_digits(&mut out[11..13], secs_of_day / 3600);
    put_digits(&mut out[14..16], secs_of_day / 60 % 60);
    put_digits(&mut out[17..19], secs_of_day % 60);
    put_digits(&mut out[20..29], u64::from(nanos.min(999_999_999)));
}

/// The wall clock as (seconds, nanoseconds) since the epoch.
pub fn now() -> (i64, u32) {
    clock(libc::CLOCK_REALTIME)
}

/// A clock as (seconds, nanoseconds); zero if it cannot be read. By hand:
/// nix's clock_gettime is behind its `time` feature, which nothing else
/// here needs.
pub fn clock(id: libc::clockid_t) -> (i64, u32) {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into a live timespec.
    if unsafe { libc::clock_gettime(id, &mut ts) } < 0 {
        return (0, 0);
    }
    (ts.tv_sec, ts.tv_nsec as u32)
}

/// The wall clock, formatted.
pub fn timestamp_now() -> [u8; TIMESTAMP_LEN] {
    let (secs, nanos) = now();
    let mut out = [0; TIMESTAMP_LEN];
    format_timestamp(secs, nanos, &mut out);
    out
}

/// Cuts one output stream into log pieces of at most `max` bytes.
///
/// A line ends at `\n`; a `\r` right before it is dropped (a terminal in
/// cooked mode ends lines with `\r\n`). A line longer than `max` becomes
/// `P` pieces of exactly `max` bytes and a final `F` piece. Bytes of an
/// unfinished line stay buffered (at most `max`) until the next read; a
/// lone `\r` at the end of a read is held back until it is known whether a
/// `\n` follows.
#[derive(Debug)]
pub struct LineSplitter {
    max: usize,
    buf: Vec<u8>,
    /// A `\r` was the last byte seen and is not in `buf`.
    cr: bool,
}

impl LineSplitter {
    /// `max` is at least 1.
    pub fn new(max: usize) -> LineSplitter {
        LineSplitter {
            max: max.max(1),
            // Grown on demand: most streams never hold a long partial line.
            buf: Vec::new(),
            cr: false,
        }
    }

    /// Appends content of the current line, emitting a `P` piece each
    /// time `max` bytes are buffered and more content follows.
    fn push(&mut self, mut bytes: &[u8], emit: &mut impl FnMut(&[u8], Tag)) {
        while !bytes.is_empty() {
            if self.buf.len() == self.max {
                emit(&self.buf, Tag::Partial);
                self.buf.clear();
            }
            let take = (self.max - self.buf.len()).min(bytes.len());
            self.buf.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
    }

    /// Emits a finished line held in `content` (nothing buffered before it).
    fn emit_line(&self, mut content: &[u8], emit: &mut impl FnMut(&[u8], Tag)) {
        while content.len() > self.max {
            emit(&content[..self.max], Tag::Partial);
            content = &content[self.max..];
        }
        emit(content, Tag::Full);
    }

    /// Feeds bytes just read; calls `emit` for every finished piece.
    pub fn feed(&mut self, mut data: &[u8], emit: &mut impl FnMut(&[u8], Tag)) {
        while let Some(nl) = data.iter().position(|&b| b == b'\n') {
            let seg = &data[..nl];
            let content = seg.strip_suffix(b"\r").unwrap_or(seg);
            if self.buf.is_empty() && !self.cr {
                // The common case: a whole line inside one read, no copy.
                self.emit_line(content, emit);
            } else {
                // A held-back `\r` directly before this `\n` is dropped;
                // one followed by more bytes was content.
                if self.cr && !seg.is_empty() {
                    self.push(b"\r", emit);
                }
                self.cr = false;
                self.push(content, emit);
                emit(&self.buf, Tag::Full);
                self.buf.clear();
            }
            data = &data[nl + 1..];
        }
        if data.is_empty() {
            return;
        }
        if self.cr {
            self.push(b"\r", emit);
        }
        let (rest, cr) = match data.strip_suffix(b"\r") {
            Some(rest) => (rest, true),
            None => (data, false),
        };
        self.push(rest, emit);
        self.cr = cr;
    }

    /// The stream has ended (or is abandoned): what is left of an
    /// unfinished line becomes a `P` piece.
    pub fn finish(&mut self, emit: &mut impl FnMut(&[u8], Tag)) {
        if self.cr {
            self.cr = false;
            self.push(b"\r", emit);
        }
        if !self.buf.is_empty() {
            emit(&self.buf, Tag::Partial);
            self.buf.clear();
        }
    }
}

/// The CRI log file. Every entry is assembled in one buffer and written
/// with one `write(2)` on an `O_APPEND` descriptor, so an entry is never
/// interleaved or split by a reopen. A failed write (disk full, EIO)
/// drops the entry: the container must never block on its log.
#[derive(Debug)]
pub struct CriLog {
    path: PathBuf,
    fd: OwnedFd,
    entry: Vec<u8>,
}

/// Opens (creating) a log file for appending, creating missing parent
/// directories with mode 0755.
fn open_log(path: &Path) -> Result<OwnedFd, Errno> {
    let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_APPEND | OFlag::O_CLOEXEC;
    let mode = Mode::from_bits_truncate(0o640);
    match open(path, flags, mode) {
        Err(Errno::ENOENT) => {}
        other => return other,
    }
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Err(Errno::ENOENT);
    };
    create_dirs(dir)?;
    open(path, flags, mode)
}

/// `mkdir -p` with mode 0755 (before the umask).
fn create_dirs(dir: &Path) -> Result<(), Errno> {
    let mut missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && *d != Path::new("/"))
        .collect();
    missing.reverse();
    for d in missing {
        match nix::unistd::mkdir(d, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl CriLog {
    /// Opens the log; `max_line` sizes the entry buffer once.
    pub fn open(path: &Path, max_line: usize) -> Result<CriLog, Errno> {
        let fd = open_log(path)?;
        Ok(CriLog {
            path: path.to_path_buf(),
            fd,
            entry: Vec::with_capacity(max_line + ENTRY_OVERHEAD),
        })
    }

    /// Closes the file and opens the path again (after a rename by the log
    /// rotation). On failure the old file stays in use.
    pub fn reopen(&mut self) -> Result<(), Errno> {
        self.fd = open_log(&self.path)?;
        Ok(())
    }

    /// Truncates the last `len` bytes of the file.
    fn cut_tail(&self, len: u64) {
        if let Ok(st) = nix::sys::stat::fstat(&self.fd) {
            let size = (st.st_size as u64).saturating_sub(len);
            let _ = nix::unistd::ftruncate(&self.fd, size as libc::off_t);
        }
    }

    /// Writes one entry; errors drop it.
    pub fn write(&mut self, ts: &[u8; TIMESTAMP_LEN], stream: Stream, tag: Tag, content: &[u8]) {
        self.entry.clear();
        self.entry.extend_from_slice(ts);
        self.entry.push(b' ');
        self.entry.extend_from_slice(stream.name());
        self.entry.push(b' ');
        self.entry.push(tag.letter());
        self.entry.push(b' ');
        self.entry.extend_from_slice(content);
        self.entry.push(b'\n');
        loop {
            match nix::unistd::write(&self.fd, &self.entry) {
                Err(Errno::EINTR) => continue,
                Ok(n) if n > 0 && n < self.entry.len() => {
                    // The disk filled up in the middle of the entry: cut
                    // the torn piece off again (O_APPEND put it at the
                    // end), so that every line in the file is a whole
                    // entry.
                    self.cut_tail(n as u64);
                }
                _ => {}
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(secs: i64, nanos: u32) -> String {
        let mut out = [0; TIMESTAMP_LEN];
        format_timestamp(secs, nanos, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn timestamps_of_known_instants() {
        for (secs, nanos, want) in [
            (0, 0, "1970-01-01T00:00:00.000000000Z"),
            (951_782_400, 1, "2000-02-29T00:00:00.000000001Z"),
            (1_234_567_890, 123_456_789, "2009-02-13T23:31:30.123456789Z"),
            (1_709_251_199, 999_999_999, "2024-02-29T23:59:59.999999999Z"),
            (1_795_343_843, 433_125_851, "2026-11-22T10:37:23.433125851Z"),
            (4_102_444_799, 500, "2099-12-31T23:59:59.000000500Z"),
            (253_402_300_799, 0, "9999-12-31T23:59:59.000000000Z"),
            (-1, 0, "1969-12-31T23:59:59.000000000Z"),
            (-31_536_000, 0, "1969-01-01T00:00:00.000000000Z"),
        ] {
            assert_eq!(ts(secs, nanos), want, "{secs}.{nanos}");
        }
    }

    #[test]
    fn every_day_follows_the_previous_one() {
        // 1900-03-01 .. 2200-03-01: months and days advance one by one,
        // February has 29 days exactly in leap years.
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let mut prev = civil_from_days(-25_508 - 1);
        assert_eq!(prev, (1900, 2, 28));
        for days in -25_508..84_000 {
            let (y, m, d) = civil_from_days(days);
            let (py, pm, pd) = prev;
            if d == 1 {
                let month_len = match pm {
                    2 if leap(py) => 29,
                    2 => 28,
                    4 | 6 | 9 | 11 => 30,
                    _ => 31,
                };
                assert_eq!(pd, month_len, "{prev:?} -> {:?}", (y, m, d));
                assert_eq!((y, m), if pm == 12 { (py + 1, 1) } else { (py, pm + 1) });
            } else {
                assert_eq!((y, m, d), (py, pm, pd + 1));
            }
            prev = (y, m, d);
        }
    }

    #[test]
    fn now_looks_like_a_timestamp() {
        let now = String::from_utf8(timestamp_now().to_vec()).unwrap();
        assert!(now.starts_with("20") && now.ends_with('Z'), "{now}");
        assert_eq!(&now[10..11], "T");
    }

    /// Feeds the reads in order, then finishes; returns the pieces.
    fn split(max: usize, reads: &[&[u8]]) -> Vec<(String, char)> {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        let mut emit = |c: &[u8], t: Tag| {
            out.push((String::from_utf8_lossy(c).into_owned(), t.letter() as char))
        };
        for r in reads {
            s.feed(r, &mut emit);
        }
        s.finish(&mut emit);
        out
    }

    fn pieces(list: &[(&str, char)]) -> Vec<(String, char)> {
        list.iter().map(|(s, t)| (s.to_string(), *t)).collect()
    }

    #[test]
    fn many_lines_in_one_read() {
        assert_eq!(
            split(16, &[b"a\nbb\n\nccc\n"]),
            pieces(&[("a", 'F'), ("bb", 'F'), ("", 'F'), ("ccc", 'F')])
        );
    }

    #[test]
    fn a_line_across_reads() {
        assert_eq!(
            split(16, &[b"hel", b"lo wo", b"rld\nnext", b"\n"]),
            pieces(&[("hello world", 'F'), ("next", 'F')])
        );
    }

    #[test]
    fn partial_line_at_eof() {
        assert_eq!(
            split(16, &[b"done\nhalf"]),
            pieces(&[("done", 'F'), ("half", 'P')])
        );
        assert!(split(16, &[b"x\n"]).len() == 1);
        assert!(split(16, &[]).is_empty());
    }

    #[test]
    fn carriage_return_before_newline_is_dropped() {
        assert_eq!(
            split(16, &[b"a\r\nb\rc\r\n\r\n"]),
            pieces(&[("a", 'F'), ("b\rc", 'F'), ("", 'F')])
        );
        // The \r and \n arrive in different reads.
        assert_eq!(
            split(16, &[b"a\r", b"\nb\r", b"c\n", b"\r", b"\r", b"\n"]),
            pieces(&[("a", 'F'), ("b\rc", 'F'), ("\r", 'F')])
        );
        // A trailing \r at EOF is content.
        assert_eq!(split(16, &[b"a\r"]), pieces(&[("a\r", 'P')]));
    }

    #[test]
    fn long_lines_become_partial_pieces() {
        assert_eq!(
            split(4, &[b"abcdefghij\n"]),
            pieces(&[("abcd", 'P'), ("efgh", 'P'), ("ij", 'F')])
        );
        // Exactly max bytes: one F piece, also when split over reads and
        // when the \r\n comes after a full buffer.
        assert_eq!(split(4, &[b"abcd\n"]), pieces(&[("abcd", 'F')]));
        assert_eq!(split(4, &[b"ab", b"cd", b"\n"]), pieces(&[("abcd", 'F')]));
        assert_eq!(split(4, &[b"abcd", b"\r", b"\n"]), pieces(&[("abcd", 'F')]));
        assert_eq!(
            split(4, &[b"abcd", b"\r", b"x\n"]),
            pieces(&[("abcd", 'P'), ("\rx", 'F')])
        );
        // Across reads, more than max.
        assert_eq!(
            split(4, &[b"abc", b"defgh", b"ijklm"]),
            pieces(&[("abcd", 'P'), ("efgh", 'P'), ("ijkl", 'P'), ("m", 'P')])
        );
        assert_eq!(
            split(4, &[b"abcdefgh\n"]),
            pieces(&[("abcd", 'P'), ("efgh", 'F')])
        );
    }

    #[test]
    fn split_pieces_rejoin_to_the_input() {
        // Any way of cutting the input gives the same pieces.
        let input: Vec<u8> = (0..2000u32)
            .map(|i| match i % 37 {
                0 => b'\n',
                5 => b'\r',
                _ => b'a' + (i % 26) as u8,
            })
            .collect();
        let whole = split(7, &[&input]);
        for cut in [1, 2, 3, 6, 7, 8, 13, 64] {
            let reads: Vec<&[u8]> = input.chunks(cut).collect();
            assert_eq!(split(7, &reads), whole, "reads of {cut}");
        }
        let mut rejoined = Vec::new();
        for (content, tag) in &whole {
            assert!(content.len() <= 7);
            rejoined.extend_from_slice(content.as_bytes());
            if *tag == 'F' {
                rejoined.push(b'\n');
            }
        }
        let expected: Vec<u8> = String::from_utf8(input)
            .unwrap()
            .replace("\r\n", "\n")
            .into_bytes();
        assert_eq!(rejoined, expected);
    }

    #[test]
    fn log_entries_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/c.log");
        let mut log = CriLog::open(&path, 16).unwrap();
        let ts = *b"2026-11-22T10:37:23.433125851Z";
        log.write(&ts, Stream::Stdout, Tag::Full, b"hello");
        log.write(&ts, Stream::Stderr, Tag::Partial, b"");
        std::fs::rename(&path, dir.path().join("a/b/c.log.1")).unwrap();
        log.write(&ts, Stream::Stdout, Tag::Full, b"old");
        log.reopen().unwrap();
        log.write(&ts, Stream::Stdout, Tag::Full, b"new");
        let old = std::fs::read_to_string(dir.path().join("a/b/c.log.1")).unwrap();
        assert_eq!(
            old,
            "2026-11-22T10:37:23.433125851Z stdout F hello\n\
             2026-11-22T10:37:23.433125851Z stderr P \n\
             2026-11-22T10:37:23.433125851Z stdout F old\n"
        );
        let new = std::fs::read_to_string(&path).unwrap();
        assert_eq!(new, "2026-11-22T10:37:23.433125851Z stdout F new\n");
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o640 & !current_umask());
        assert_eq!(mode(&dir.path().join("a")), 0o755 & !current_umask());
    }

    /// The process's umask, read without changing it.
    fn current_umask() -> u32 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
        u32::from_str_radix(line["Umask:".len()..].trim(), 8).unwrap()
    }
}
