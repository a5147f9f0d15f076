//! Terminals the daemon holds the master of (an exec'd process with a
//! tty): receiving the master from an OCI runtime's `--console-socket`,
//! reading and writing it without blocking a thread, and its window size.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Receives the descriptor a runtime sends over its console socket
/// (SCM_RIGHTS), waiting at most `timeout`. Any further descriptors in the
/// message are closed.
pub fn receive_master(conn: UnixStream, timeout: Duration) -> io::Result<OwnedFd> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(timeout))?;
    let mut data = [0u8; 512];
    let mut iov = [io::IoSliceMut::new(&mut data)];
    let mut control = nix::cmsg_space!([RawFd; 4]);
    let msg = loop {
        let flags = MsgFlags::MSG_CMSG_CLOEXEC;
        match recvmsg::<()>(conn.as_raw_fd(), &mut iov, Some(&mut control), flags) {
            Err(Errno::EINTR) => {}
            other => break other?,
        }
    };
    let mut received = None;
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            for fd in fds {
                // SAFETY: the kernel just installed this descriptor for us.
                let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                received.get_or_insert(fd);
            }
        }
    }
    received.ok_or_else(|| io::Error::other("the console socket carried no terminal"))
}

/// A terminal's master, shared by its reader, its writer and resizes.
#[derive(Clone)]
pub struct Terminal {
    fd: Arc<AsyncFd<OwnedFd>>,
}

impl Terminal {
    /// Takes over a terminal master; it is made non-blocking. Must be
    /// called within a tokio runtime.
    pub fn new(master: OwnedFd) -> io::Result<Terminal> {
        let flags = nix::fcntl::fcntl(&master, nix::fcntl::FcntlArg::F_GETFL)?;
        let flags = nix::fcntl::OFlag::from_bits_retain(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(&master, nix::fcntl::FcntlArg::F_SETFL(flags))?;
        // SAFETY: an OwnedFd keeps its descriptor open and the same until
        // it is dropped, which only the AsyncFd does.
        let fd = unsafe { AsyncFd::register(master) }.map_err(|e| e.into_parts().1)?;
        Ok(Terminal { fd: Arc::new(fd) })
    }

    /// Sets the window size (TIOCSWINSZ); the process gets SIGWINCH.
    pub fn resize(&self, width: u16, height: u16) -> io::Result<()> {
        let size = libc::winsize {
            ws_row: height,
            ws_col: width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize from a live struct.
        let rc = unsafe {
            libc::ioctl(
                self.fd.get_ref().as_fd().as_raw_fd(),
                libc::TIOCSWINSZ,
                &size,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// The master reads EIO once no process holds the terminal any more:
/// that is its end of file.
fn read_end(e: Errno) -> io::Result<usize> {
    match e {
        Errno::EIO => Ok(0),
        e => Err(e.into()),
    }
}

impl AsyncRead for Terminal {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let read =
                guard.try_io(|fd| nix::unistd::read(fd.get_ref(), unfilled).or_else(read_end));
            match read {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for Terminal {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.fd.poll_write_ready(cx))?;
            match guard.try_io(|fd| nix::unistd::write(fd.get_ref(), data).map_err(io::Error::from))
            {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn open_pty() -> (OwnedFd, OwnedFd) {
        let pty = nix::pty::openpty(None, None).unwrap();
        (pty.master, pty.slave)
    }

    #[tokio::test]
    async fn reads_writes_and_resizes_a_terminal() {
        let (master, slave) = open_pty();
        let mut term = Terminal::new(master).unwrap();
        term.resize(100, 30).unwrap();
        let mut size: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: TIOCGWINSZ fills a live struct.
        assert_eq!(
            unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCGWINSZ, &mut size) },
            0
        );
        assert_eq!((size.ws_col, size.ws_row), (100, 30));
        nix::unistd::write(&slave, b"out").unwrap();
        let mut buf = [0u8; 16];
        let n = term.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"out");
        term.write_all(b"in\n").await.unwrap();
        let mut got = [0u8; 16];
        let n = nix::unistd::read(&slave, &mut got).unwrap();
        assert_eq!(&got[..n], b"in\n");
        drop(slave);
        // Echo of "in\n" may come first; then the end.
        let mut rest = Vec::new();
        term.read_to_end(&mut rest).await.unwrap();
    }

    #[test]
    fn receives_a_descriptor() {
        let (a, b) = UnixStream::pair().unwrap();
        let (master, _slave) = open_pty();
        let fds = [master.as_raw_fd()];
        let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
        let iov = [io::IoSlice::new(b"x")];
        nix::sys::socket::sendmsg::<()>(a.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None)
            .unwrap();
        let got = receive_master(b, Duration::from_secs(1)).unwrap();
        assert!(nix::unistd::isatty(&got).unwrap());
    }

    #[test]
    fn a_message_without_a_descriptor_is_an_error() {
        let (a, b) = UnixStream::pair().unwrap();
        drop(a);
        assert!(receive_master(b, Duration::from_secs(1)).is_err());
    }
}
