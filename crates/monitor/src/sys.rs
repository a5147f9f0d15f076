//! The monitor's system calls that take more than one nix call, and the
//! few nix does not have (each says why it is made by hand). Errors are
//! plain [`Errno`]s; callers add the context.

use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{fcntl, open, FcntlArg, OFlag};
use nix::sys::signal::{signal, SigHandler, Signal};
use nix::sys::socket::{
    accept4, bind, listen, recvmsg, send, socket, AddressFamily, Backlog, ControlMessageOwned,
    MsgFlags, SockFlag, SockType, UnixAddr,
};
use nix::sys::stat::{umask, Mode};

/// Writes all of `bytes` to `fd`, giving up on the first error.
pub fn write_all(fd: impl AsFd, mut bytes: &[u8]) -> Result<(), Errno> {
    let fd = fd.as_fd();
    while !bytes.is_empty() {
        match nix::unistd::write(fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One `read(2)`, retried on EINTR; `Ok(0)` is end of file.
pub fn read(fd: impl AsFd, buf: &mut [u8]) -> Result<usize, Errno> {
    loop {
        match nix::unistd::read(fd.as_fd(), buf) {
            Err(Errno::EINTR) => {}
            other => return other,
        }
    }
}

/// One `read(2)` into uninitialized memory, so that a large buffer costs
/// only the pages reads actually fill (nix reads into initialized
/// buffers only); returns the bytes read, empty at end of file.
pub fn read_into(fd: impl AsFd, buf: &mut [MaybeUninit<u8>]) -> Result<&[u8], Errno> {
    let fd = fd.as_fd().as_raw_fd();
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

pub fn dev_null() -> Result<OwnedFd, Errno> {
    open("/dev/null", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
}

/// A pipe, both ends close-on-exec: (read end, write end).
pub fn pipe() -> Result<(OwnedFd, OwnedFd), Errno> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC)
}

pub fn set_nonblocking(fd: impl AsFd) -> Result<(), Errno> {
    let fd = fd.as_fd();
    let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

/// Whether descriptor `fd` is open. By hand: nix and std only take
/// descriptors known to be open.
pub fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD only reads the descriptor's flags.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// Removes a file, ignoring a file that is already gone.
pub fn unlink(path: &Path) {
    let _ = nix::unistd::unlink(path);
}

/// A listening unix stream socket at `path`, mode 0600, non-blocking,
/// close-on-exec. A file already at `path` (a stale socket) is replaced.
pub fn listen_unix(path: &Path) -> Result<OwnedFd, Errno> {
    let addr = UnixAddr::new(path)?;
    let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
    let fd = socket(AddressFamily::Unix, SockType::Stream, flags, None)?;
    unlink(path);
    // bind(2) creates the file with 0777 & ~umask; a umask of 0177 makes
    // it 0600 from the start (fchmod does not apply to a socket's file).
    let old = umask(Mode::from_bits_truncate(0o177));
    let bound = bind(fd.as_raw_fd(), &addr);
    umask(old);
    bound?;
    listen(&fd, Backlog::new(16)?)?;
    Ok(fd)
}

/// Accepts one connection, non-blocking and close-on-exec; `Ok(None)`
/// when none is pending.
pub fn accept(listener: &OwnedFd) -> Result<Option<OwnedFd>, Errno> {
    let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
    loop {
        match accept4(listener.as_raw_fd(), flags) {
            // SAFETY: accept4 just returned this descriptor; nothing else
            // owns it.
            Ok(fd) => return Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) })),
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => return Ok(None),
            Err(err) => return Err(err),
        }
    }
}

/// Receives one message carrying a descriptor (SCM_RIGHTS), as runc's
/// `--console-socket` sends the terminal's master. `Ok(None)`: nothing
/// yet. `Err(EPIPE)`: the peer closed without sending a descriptor. Any
/// further descriptors in the message are closed.
pub fn recv_fd(conn: &OwnedFd) -> Result<Option<OwnedFd>, Errno> {
    let mut data = [0u8; 512];
    let mut iov = [IoSliceMut::new(&mut data)];
    let mut control = nix::cmsg_space!([RawFd; 4]);
    let msg = loop {
        let flags = MsgFlags::MSG_CMSG_CLOEXEC;
        match recvmsg::<()>(conn.as_raw_fd(), &mut iov, Some(&mut control), flags) {
            Ok(msg) => break msg,
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => return Ok(None),
            Err(err) => return Err(err),
        }
    };
    let mut received: Option<OwnedFd> = None;
    for cmsg in msg.cmsgs()? {
        let ControlMessageOwned::ScmRights(fds) = cmsg else {
            continue;
        };
        for fd in fds {
            // SAFETY: the kernel just installed this descriptor for us.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            // The first is the master; extra ones are dropped (closed).
            received.get_or_insert(fd);
        }
    }
    match received {
        Some(fd) => Ok(Some(fd)),
        // End of stream, or data without a descriptor.
        None if msg.bytes == 0 => Err(Errno::EPIPE),
        None => Err(Errno::EBADMSG),
    }
}

/// Sends what the socket takes now, without ever blocking or raising
/// SIGPIPE; returns how much that was.
pub fn send_some(conn: impl AsFd, bytes: &[u8]) -> Result<usize, Errno> {
    let flags = MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT;
    loop {
        match send(conn.as_fd().as_raw_fd(), bytes, flags) {
            Err(Errno::EINTR) => {}
            other => return other,
        }
    }
}

/// Sends a short reply on a client connection whole or not at all (then
/// EAGAIN), without ever blocking or raising SIGPIPE.
pub fn send_reply(conn: impl AsFd, bytes: &[u8]) -> Result<(), Errno> {
    match send_some(conn, bytes)? {
        n if n == bytes.len() => Ok(()),
        _ => Err(Errno::EAGAIN),
    }
}

nix::ioctl_write_ptr_bad!(set_winsize, libc::TIOCSWINSZ, libc::winsize);

/// Sets a terminal's window size (TIOCSWINSZ).
pub fn set_window_size(tty: impl AsFd, width: u16, height: u16) -> Result<(), Errno> {
    let size = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from a live struct.
    unsafe { set_winsize(tty.as_fd().as_raw_fd(), &size) }?;
    Ok(())
}

/// Ignores `sig` from now on.
pub fn ignore_signal(sig: Signal) -> Result<(), Errno> {
    // SAFETY: SIG_IGN installs no handler code.
    unsafe { signal(sig, SigHandler::SigIgn) }?;
    Ok(())
}

/// Reaps one exited child without waiting: its pid and raw wait status,
/// None when no child has exited. By hand: nix's `WaitStatus` cannot
/// hold a death by a real-time signal, and fails after the child is
/// already reaped.
pub fn reap_one() -> Option<(i32, libc::c_int)> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status into a live int.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG | libc::__WALL) };
        if pid > 0 {
            return Some((pid, status));
        }
        if pid == 0 || Errno::last() != Errno::EINTR {
            return None;
        }
    }
}

/// Puts every signal back to its default action; ignored dispositions
/// (std ignores SIGPIPE; a caller may pass on others) would otherwise
/// survive exec. The raw system call, because glibc refuses to touch the
/// signals it reserves (32 and 33), which can arrive ignored too, and
/// nix's signal numbers stop before the real-time ones.
pub fn reset_signal_dispositions() {
    // The kernel's struct sigaction: handler, flags, restorer, mask; all
    // zero is SIG_DFL with no flags and an empty mask.
    let action = [0u64; 4];
    for sig in 1..=libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: rt_sigaction with a valid kernel sigaction and the
        // kernel's sigset size (8 bytes); no old action is asked for.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                action.as_ptr(),
                std::ptr::null_mut::<u64>(),
                8usize,
            );
        }
    }
}

/// Closes every fd from `from` to `to` inclusive. By hand: nix has no
/// close_range, and the descriptors closed are owned by nothing here.
pub fn close_fds(from: RawFd, to: u32) {
    let Ok(from) = u32::try_from(from) else {
        return;
    };
    if from > to {
        return;
    }
    // SAFETY: close_range only closes descriptors; nothing in this
    // process uses the ones in the range afterwards.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, from, to, 0u32) };
    if rc == 0 {
        return;
    }
    // Kernels before 5.9: close one by one up to the fd limit.
    let open_max = nix::unistd::sysconf(nix::unistd::SysconfVar::OPEN_MAX)
        .ok()
        .flatten()
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(1024);
    for fd in u64::from(from)..=open_max.min(u64::from(to)) {
        if let Ok(fd) = RawFd::try_from(fd) {
            // SAFETY: as above.
            unsafe { libc::close(fd) };
        }
    }
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
