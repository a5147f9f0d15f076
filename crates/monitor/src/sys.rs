//! Thin wrappers over the system calls the container monitor makes, so
//! that the monitor's logic reads without `unsafe` blocks everywhere.
//! Errors are plain [`Errno`]s; callers add the context.

use std::ffi::{CStr, CString, OsStr};
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;

fn check(r: libc::c_int) -> Result<libc::c_int, Errno> {
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r)
    }
}

/// Takes ownership of a descriptor the kernel just returned.
fn owned(fd: libc::c_int) -> Result<OwnedFd, Errno> {
    let fd = check(fd)?;
    // SAFETY: the kernel just returned this descriptor and nothing else
    // in this process owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn cstring(s: &OsStr) -> Result<CString, Errno> {
    CString::new(s.as_bytes()).map_err(|_| Errno::EINVAL)
}

/// Writes all of `bytes` to `fd`, giving up on the first error.
pub fn write_all(fd: RawFd, mut bytes: &[u8]) -> Result<(), Errno> {
    while !bytes.is_empty() {
        // SAFETY: writing from a live buffer.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            if Errno::last() == Errno::EINTR {
                continue;
            }
            return Err(Errno::last());
        }
        bytes = &bytes[n as usize..];
    }
    Ok(())
}

/// One `read(2)`; `Ok(0)` is end of file.
pub fn read(fd: RawFd, buf: &mut [u8]) -> Result<usize, Errno> {
    loop {
        // SAFETY: reading into a live, writable buffer of that length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        if Errno::last() != Errno::EINTR {
            return Err(Errno::last());
        }
    }
}

/// One `read(2)` into uninitialized memory (so that a large buffer costs
/// only the pages reads actually fill); returns the bytes read, empty at
/// end of file.
pub fn read_into(fd: RawFd, buf: &mut [MaybeUninit<u8>]) -> Result<&[u8], Errno> {
    loop {
        // SAFETY: the kernel writes at most buf.len() bytes into buf.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            // SAFETY: the first n bytes were just written by read(2).
            return Ok(unsafe { std::slice::from_raw_parts(buf.as_ptr().cast(), n as usize) });
        }
        if Errno::last() != Errno::EINTR {
            return Err(Errno::last());
        }
    }
}

pub fn open(path: &CStr, flags: libc::c_int, mode: libc::mode_t) -> Result<OwnedFd, Errno> {
    // SAFETY: a valid NUL-terminated path.
    owned(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC, mode as libc::c_uint) })
}

pub fn dev_null() -> Result<OwnedFd, Errno> {
    open(c"/dev/null", libc::O_RDWR, 0)
}

/// A pipe, both ends close-on-exec: (read end, write end).
pub fn pipe() -> Result<(OwnedFd, OwnedFd), Errno> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
}

pub fn set_nonblocking(fd: &OwnedFd) -> Result<(), Errno> {
    // SAFETY: fcntl on our own descriptor.
    let flags = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    // SAFETY: as above.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    Ok(())
}

/// A close-on-exec copy of a descriptor, numbered 3 or above.
pub fn dup(fd: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
    // SAFETY: fcntl on a live descriptor.
    owned(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) })
}

pub fn dup2(from: RawFd, to: RawFd) -> Result<(), Errno> {
    // SAFETY: dup2 only replaces `to`; the callers own both numbers.
    check(unsafe { libc::dup2(from, to) })?;
    Ok(())
}

pub fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the descriptor's flags.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// Removes a file, ignoring a file that is already gone.
pub fn unlink(path: &CStr) {
    // SAFETY: a valid NUL-terminated path.
    unsafe { libc::unlink(path.as_ptr()) };
}

fn sockaddr(path: &CStr) -> Result<(libc::sockaddr_un, libc::socklen_t), Errno> {
    // SAFETY: an all-zero sockaddr_un is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.to_bytes();
    // One byte stays for the terminating NUL.
    if bytes.is_empty() || bytes.len() >= addr.sun_path.len() {
        return Err(Errno::ENAMETOOLONG);
    }
    for (slot, &b) in addr.sun_path.iter_mut().zip(bytes) {
        *slot = b as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    Ok((addr, len as libc::socklen_t))
}

/// A listening unix stream socket at `path`, mode 0600, non-blocking,
/// close-on-exec. A file already at `path` (a stale socket) is replaced.
pub fn listen_unix(path: &CStr) -> Result<OwnedFd, Errno> {
    let (addr, len) = sockaddr(path)?;
    // SAFETY: socket(2) with constant arguments.
    let fd = owned(unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    })?;
    unlink(path);
    // bind(2) creates the file with 0777 & ~umask; a umask of 0177 makes
    // it 0600 from the start (fchmod does not apply to a socket's file).
    // SAFETY: umask swaps the process's mask; restored right below.
    let old = unsafe { libc::umask(0o177) };
    // SAFETY: addr is a valid sockaddr_un of length len.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_un).cast(),
            len,
        )
    };
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    check(r)?;
    // SAFETY: listen on our own socket.
    check(unsafe { libc::listen(fd.as_raw_fd(), 16) })?;
    Ok(fd)
}

/// Accepts one connection, non-blocking and close-on-exec; `Ok(None)`
/// when none is pending.
pub fn accept(listener: &OwnedFd) -> Result<Option<OwnedFd>, Errno> {
    loop {
        // SAFETY: accept4 on our own listening socket, no peer address.
        let fd = unsafe {
            libc::accept4(
                listener.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            )
        };
        if fd >= 0 {
            return owned(fd).map(Some);
        }
        match Errno::last() {
            Errno::EINTR => continue,
            Errno::EAGAIN => return Ok(None),
            err => return Err(err),
        }
    }
}

/// Receives one message carrying a descriptor (SCM_RIGHTS), as runc's
/// `--console-socket` sends the terminal's master. `Ok(None)`: nothing
/// yet. `Err(EPIPE)`: the peer closed without sending a descriptor. Any
/// further descriptors in the message are closed.
pub fn recv_fd(conn: &OwnedFd) -> Result<Option<OwnedFd>, Errno> {
    const MAX_FDS: usize = 4;
    let mut data = [0u8; 512];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // u64 keeps the control buffer aligned for cmsghdr.
    let mut control = [0u64; 16];
    // SAFETY: CMSG_SPACE is a pure computation.
    let space = unsafe { libc::CMSG_SPACE((MAX_FDS * std::mem::size_of::<RawFd>()) as u32) };
    debug_assert!(space as usize <= std::mem::size_of_val(&control));
    // SAFETY: an all-zero msghdr is valid; the pointers are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    let n = loop {
        // SAFETY: msg points at live buffers for the whole call.
        let n = unsafe { libc::recvmsg(conn.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n;
        }
        match Errno::last() {
            Errno::EINTR => continue,
            Errno::EAGAIN => return Ok(None),
            err => return Err(err),
        }
    };
    let mut received: Option<OwnedFd> = None;
    // SAFETY: walking the control messages the kernel filled in, within
    // msg_controllen, with the libc macros made for it.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let payload = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let count = payload / std::mem::size_of::<RawFd>();
                let fds = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                for i in 0..count {
                    let fd = OwnedFd::from_raw_fd(fds.add(i).read_unaligned());
                    // The first is the master; extra ones are dropped (closed).
                    if received.is_none() {
                        received = Some(fd);
                    }
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    match received {
        Some(fd) => Ok(Some(fd)),
        // End of stream, or data without a descriptor.
        None if n == 0 => Err(Errno::EPIPE),
        None => Err(Errno::EBADMSG),
    }
}

/// Sends a short reply on a client connection without ever blocking or
/// raising SIGPIPE.
pub fn send_reply(conn: &OwnedFd, bytes: &[u8]) -> Result<(), Errno> {
    // SAFETY: sending from a live buffer on our own socket.
    let n = unsafe {
        libc::send(
            conn.as_raw_fd(),
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(Errno::last());
    }
    if n as usize != bytes.len() {
        return Err(Errno::EAGAIN);
    }
    Ok(())
}

/// Sets a terminal's window size (TIOCSWINSZ).
pub fn set_window_size(tty: &OwnedFd, width: u16, height: u16) -> Result<(), Errno> {
    let size = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from a live struct.
    check(unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCSWINSZ, &size) })?;
    Ok(())
}

/// Sets the action of `sig` (SIG_IGN or SIG_DFL).
pub fn set_disposition(sig: libc::c_int, handler: libc::sighandler_t) -> Result<(), Errno> {
    // SAFETY: a zeroed sigaction with a plain handler value is valid.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler;
        check(libc::sigaction(sig, &action, std::ptr::null_mut()))?;
    }
    Ok(())
}

/// Wall clock in nanoseconds since the epoch.
pub fn realtime_ns() -> i64 {
    let (secs, nanos) = crate::crilog::now();
    secs.saturating_mul(1_000_000_000)
        .saturating_add(i64::from(nanos))
}

/// Monotonic clock in milliseconds.
pub fn monotonic_ms() -> u64 {
    let (secs, nanos) = crate::crilog::clock(libc::CLOCK_MONOTONIC);
    secs as u64 * 1000 + u64::from(nanos) / 1_000_000
}

/// The parent of a process, from `/proc/<pid>/stat` (field 4, counted
/// after the command name's last `)`).
pub fn parent_pid(pid: i32) -> Option<i32> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    rest.split_whitespace().nth(1)?.parse().ok()
}
