//! Attach sessions: a control connection that asked `attach` gets the
//! container's output as frames from then on, may write the container's
//! stdin, and resizes its terminal. The CRI log is written as it is
//! without sessions: a session never makes the monitor wait. Output a
//! session does not take fast enough is queued up to [`MAX_BACKLOG`];
//! past that the session is disconnected (its client sees the connection
//! close without an end frame), so that it can neither block the
//! container nor miss output silently.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use peapod_monitor_protocol::frame::{encode_data, encoded_len, Stream as FrameStream};
use peapod_monitor_protocol::{Frame, FrameDecoder, Reply};

use super::control::Client;
use super::Monitor;
use crate::crilog::Stream;
use crate::sys;

/// Attach sessions at once; more are refused.
const MAX_SESSIONS: usize = 4;
/// Output queued for one session beyond what its socket holds.
const MAX_BACKLOG: usize = 256 * 1024;
/// How long the last output and end frames may take to go out once the
/// container has exited.
const END_TIMEOUT_MS: u64 = 1000;

/// The state of one attach session.
#[derive(Default)]
pub(super) struct Session {
    /// May write the container's stdin.
    stdin: bool,
    decoder: FrameDecoder,
    /// Encoded frames the socket has not taken yet.
    backlog: Vec<u8>,
    /// Stdin data the container has not taken yet; while there is some,
    /// the client is not read (its stdin waits in its socket).
    pending: Vec<u8>,
    /// The client sent its stdin close, or its input ended.
    input_ended: bool,
    /// The client's input reached its end (or failed): no more reads.
    input_closed: bool,
    /// The client is gone for output (hung up, or a send failed).
    gone: bool,
}

impl Session {
    pub fn new(stdin: bool, first_bytes: &[u8]) -> Session {
        let mut decoder = FrameDecoder::new();
        decoder.feed(first_bytes);
        Session {
            stdin,
            decoder,
            ..Session::default()
        }
    }

    /// What to poll the connection for; None: nothing until the
    /// container takes the pending stdin (a hung-up socket would report
    /// POLLHUP at every poll).
    pub fn events(&self) -> Option<PollFlags> {
        let mut events = PollFlags::empty();
        if !self.pending.is_empty() {
            if self.gone {
                return None;
            }
        } else if !self.input_closed {
            events |= PollFlags::POLLIN;
        }
        if !self.gone && !self.backlog.is_empty() {
            events |= PollFlags::POLLOUT;
        }
        Some(events)
    }

    pub fn has_pending_stdin(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Sends what the socket takes of the backlog.
    fn flush(&mut self, fd: BorrowedFd<'_>) {
        while !self.gone && !self.backlog.is_empty() {
            match sys::send_some(fd, &self.backlog) {
                Ok(0) | Err(Errno::EAGAIN) => return,
                Ok(n) => {
                    self.backlog.drain(..n);
                }
                Err(_) => self.went_away(),
            }
        }
    }

    fn went_away(&mut self) {
        self.gone = true;
        self.backlog = Vec::new();
    }
}

/// Queues output for every session and sends what the sockets take now.
/// A session whose backlog would pass [`MAX_BACKLOG`] is disconnected.
pub(super) fn send_output(clients: &mut [Client], stream: Stream, data: &[u8]) {
    let stream = match stream {
        Stream::Stdout => FrameStream::Stdout,
        Stream::Stderr => FrameStream::Stderr,
    };
    for client in clients.iter_mut().filter(|c| !c.done) {
        let Some(s) = client.session.as_deref_mut() else {
            continue;
        };
        if s.gone {
            continue;
        }
        if s.backlog.len() + encoded_len(data) > MAX_BACKLOG {
            client.done = true;
            continue;
        }
        encode_data(stream, data, &mut s.backlog);
        s.flush(client.fd.as_fd());
    }
}

/// Writes `pending` to the container's stdin as far as it takes it
/// now. Without a stdin (closed) the data is dropped.
fn write_stdin(target: Option<BorrowedFd<'_>>, pending: &mut Vec<u8>) {
    let Some(fd) = target else {
        pending.clear();
        return;
    };
    while !pending.is_empty() {
        match nix::unistd::write(fd, pending) {
            Ok(0) | Err(Errno::EAGAIN) => return,
            Ok(n) => {
                pending.drain(..n);
            }
            Err(Errno::EINTR) => {}
            // EPIPE: the container closed its stdin.
            Err(_) => pending.clear(),
        }
    }
}

/// The container's stdin while it is open: the pipe's write end, or the
/// terminal's master.
fn stdin_target<'a>(
    open: bool,
    pipe: &'a Option<OwnedFd>,
    pty: &'a Option<OwnedFd>,
) -> Option<BorrowedFd<'a>> {
    if !open {
        return None;
    }
    pipe.as_ref().or(pty.as_ref()).map(|fd| fd.as_fd())
}

impl Monitor {
    /// What the poll loop waits on for the container's stdin to take
    /// pending data, if any session has some.
    pub(super) fn stdin_to_watch(&self) -> Option<BorrowedFd<'_>> {
        let pending = self
            .clients
            .iter()
            .any(|c| c.session.as_ref().is_some_and(|s| s.has_pending_stdin()));
        if !pending {
            return None;
        }
        stdin_target(self.stdin_open, &self.stdin, &self.pty)
    }

    /// The answer to `attach`: refused when too many sessions run, or
    /// when stdin is asked for and there is none (any more).
    pub(super) fn accept_session(&self, stdin: bool) -> Reply {
        let sessions = self.clients.iter().filter(|c| c.session.is_some()).count();
        if sessions >= MAX_SESSIONS {
            return Reply::Error("too many attach sessions".into());
        }
        if stdin && !self.stdin_open {
            return Reply::Error(if self.config.stdin {
                "the container's stdin is closed".into()
            } else {
                "the container has no stdin".into()
            });
        }
        Reply::Ok
    }

    /// Serves a ready session: sends its backlog, reads its frames.
    pub(super) fn serve_session(&mut self, i: usize, events: PollFlags) {
        let Monitor {
            clients, read_buf, ..
        } = self;
        let client = &mut clients[i];
        let Some(s) = client.session.as_deref_mut() else {
            return;
        };
        if events.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
            s.went_away();
        }
        if events.contains(PollFlags::POLLOUT) {
            s.flush(client.fd.as_fd());
        }
        let readable = PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR;
        if events.intersects(readable) && s.pending.is_empty() && !s.input_closed {
            match sys::read_into(&client.fd, read_buf) {
                Ok([]) => s.input_closed = true,
                Ok(data) => s.decoder.feed(data),
                Err(Errno::EAGAIN) => {}
                Err(_) => s.input_closed = true,
            }
        }
        self.pump(i);
    }

    /// The container's stdin can take more: every session with pending
    /// data goes on.
    pub(super) fn stdin_ready(&mut self) {
        for i in 0..self.clients.len() {
            let pending = self.clients[i]
                .session
                .as_ref()
                .is_some_and(|s| s.has_pending_stdin());
            if pending {
                self.pump(i);
            }
        }
    }

    /// Moves a session's input along as far as that goes without
    /// waiting: pending stdin to the container, then the next frames;
    /// then the end of its stdin, and of the session once it is gone.
    fn pump(&mut self, i: usize) {
        loop {
            let Monitor {
                clients,
                stdin,
                pty,
                stdin_open,
                ..
            } = self;
            let Some(s) = clients[i].session.as_deref_mut() else {
                return;
            };
            write_stdin(stdin_target(*stdin_open, stdin, pty), &mut s.pending);
            if !s.pending.is_empty() {
                return;
            }
            let frame = match s.decoder.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                // Not frames: the client is not speaking the protocol.
                Err(_) => {
                    clients[i].done = true;
                    return;
                }
            };
            self.apply_frame(i, frame);
        }
        self.end_input_if_done(i);
    }

    fn apply_frame(&mut self, i: usize, frame: Frame) {
        let client = &mut self.clients[i];
        let Some(s) = client.session.as_deref_mut() else {
            return;
        };
        match frame {
            // Stdin of a session without it is dropped.
            Frame::Stdin(data) => {
                if s.stdin && !s.input_ended {
                    s.pending = data;
                }
            }
            Frame::CloseStdin => s.input_ended = true,
            Frame::Resize { width, height } => {
                if let Some(pty) = &self.pty {
                    let _ = sys::set_window_size(pty, width, height);
                }
            }
            // Only the monitor sends these.
            Frame::Stdout(_) | Frame::Stderr(_) | Frame::End => client.done = true,
        }
    }

    /// A session whose input ended closes the container's stdin with
    /// `stdin_once`; one whose client is gone ends.
    fn end_input_if_done(&mut self, i: usize) {
        let client = &mut self.clients[i];
        let Some(s) = client.session.as_deref_mut() else {
            return;
        };
        if s.input_closed {
            s.input_ended = true;
            if s.gone {
                client.done = true;
            }
        }
        if s.stdin && s.input_ended && self.config.stdin_once {
            self.close_stdin();
        }
    }

    /// Closes the container's stdin for good: the pipe's write end goes
    /// (the container reads EOF); a terminal stays, as it carries the
    /// output too, but takes no more input from sessions.
    fn close_stdin(&mut self) {
        self.stdin_open = false;
        self.stdin = None;
    }

    /// Removes finished connections; a session that wrote stdin ends it
    /// with `stdin_once`, as its client going away ends its input.
    pub(super) fn drop_done_clients(&mut self) {
        if !self.clients.iter().any(|c| c.done) {
            return;
        }
        let stdin_ended = self
            .clients
            .iter()
            .any(|c| c.done && c.session.as_ref().is_some_and(|s| s.stdin));
        self.clients.retain(|c| !c.done);
        if stdin_ended && self.config.stdin_once {
            self.close_stdin();
        }
    }

    /// Once the container has exited: an end frame to every session, and
    /// at most [`END_TIMEOUT_MS`] for the sockets to take what is left.
    pub(super) fn end_sessions(&mut self) {
        for client in self.clients.iter_mut().filter(|c| !c.done) {
            if let Some(s) = client.session.as_deref_mut().filter(|s| !s.gone) {
                Frame::End.encode(&mut s.backlog);
                s.flush(client.fd.as_fd());
            }
        }
        let deadline = sys::monotonic_ms().saturating_add(END_TIMEOUT_MS);
        loop {
            let now = sys::monotonic_ms();
            if now >= deadline || !self.flush_sessions(deadline - now) {
                return;
            }
        }
    }

    /// Waits up to `timeout_ms` for sessions with a backlog to take more
    /// of it; false when none has any left.
    fn flush_sessions(&mut self, timeout_ms: u64) -> bool {
        let waiting: Vec<usize> = (0..self.clients.len())
            .filter(|&i| {
                let c = &self.clients[i];
                !c.done
                    && c.session
                        .as_ref()
                        .is_some_and(|s| !s.gone && !s.backlog.is_empty())
            })
            .collect();
        if waiting.is_empty() {
            return false;
        }
        let mut fds: Vec<PollFd> = waiting
            .iter()
            .map(|&i| PollFd::new(self.clients[i].fd.as_fd(), PollFlags::POLLOUT))
            .collect();
        let timeout = PollTimeout::try_from(timeout_ms).unwrap_or(PollTimeout::MAX);
        let _ = poll(&mut fds, timeout);
        let ready: Vec<(usize, PollFlags)> = waiting
            .iter()
            .zip(&fds)
            .filter_map(|(&i, fd)| Some((i, fd.revents()?)))
            .collect();
        drop(fds);
        for (i, events) in ready {
            let client = &mut self.clients[i];
            if let Some(s) = client.session.as_deref_mut() {
                if events.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
                    s.went_away();
                } else if events.contains(PollFlags::POLLOUT) {
                    s.flush(client.fd.as_fd());
                }
            }
        }
        true
    }
}
