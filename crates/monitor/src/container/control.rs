//! The control socket: line requests from the daemon, one reply each,
//! until an `attach` turns the connection into an attach session.

use std::os::fd::OwnedFd;

use nix::errno::Errno;
use nix::poll::PollFlags;
use peapod_monitor_protocol::control::{RequestError, MAX_REQUEST};
use peapod_monitor_protocol::{Reply, Request};

use super::attach::Session;
use super::Monitor;
use crate::sys;

/// Control connections served at once; more are closed on accept.
const MAX_CLIENTS: usize = 8;

/// A control connection and its unfinished request line.
pub(super) struct Client {
    pub fd: OwnedFd,
    buf: [u8; MAX_REQUEST],
    len: usize,
    /// The connection is over: removed after this round of events.
    pub done: bool,
    /// After an accepted `attach`: the session it carries.
    pub session: Option<Box<Session>>,
}

impl Client {
    /// What to poll this connection for; None: not to poll it now.
    pub fn events(&self) -> Option<PollFlags> {
        match &self.session {
            None => Some(PollFlags::POLLIN),
            Some(s) => s.events(),
        }
    }
}

fn error(msg: impl Into<String>) -> Reply {
    Reply::Error(msg.into())
}

impl Monitor {
    pub(super) fn accept_clients(&mut self) {
        while let Ok(Some(fd)) = sys::accept(&self.control) {
            if self.clients.len() < MAX_CLIENTS {
                self.clients.push(Client {
                    fd,
                    buf: [0; MAX_REQUEST],
                    len: 0,
                    done: false,
                    session: None,
                });
            } else {
                let _ = sys::send_reply(&fd, error("too many connections").encode().as_bytes());
            }
        }
    }

    /// Serves a ready connection; one that is over is marked `done`.
    pub(super) fn serve_client(&mut self, i: usize, events: PollFlags) {
        if self.clients[i].session.is_some() {
            self.serve_session(i, events);
        } else {
            self.serve_requests(i);
        }
    }

    fn serve_requests(&mut self, i: usize) {
        let client = &mut self.clients[i];
        let len = client.len;
        match sys::read(&client.fd, &mut client.buf[len..]) {
            Ok(0) => client.done = true,
            Ok(n) => {
                client.len += n;
                self.answer_requests(i);
            }
            Err(Errno::EAGAIN) => {}
            Err(_) => client.done = true,
        }
    }

    /// Answers every complete line in the connection's buffer.
    fn answer_requests(&mut self, i: usize) {
        let mut start = 0;
        while let Some(nl) = self.clients[i].buf[start..self.clients[i].len]
            .iter()
            .position(|&b| b == b'\n')
        {
            let line_buf = self.clients[i].buf;
            let request = Request::parse(&line_buf[start..start + nl]);
            let reply = self.handle_request(request);
            if sys::send_reply(&self.clients[i].fd, reply.encode().as_bytes()).is_err() {
                self.clients[i].done = true;
                return;
            }
            start += nl + 1;
            if let (Ok(Request::Attach { stdin }), Reply::Ok) = (request, &reply) {
                // What follows the line is the session's first frames.
                let first = &line_buf[start..self.clients[i].len];
                self.clients[i].session = Some(Box::new(Session::new(stdin, first)));
                self.serve_session(i, PollFlags::empty());
                return;
            }
        }
        let client = &mut self.clients[i];
        client.buf.copy_within(start..client.len, 0);
        client.len -= start;
        if client.len == MAX_REQUEST {
            let too_long = error("request too long").encode();
            let _ = sys::send_reply(&client.fd, too_long.as_bytes());
            client.done = true;
        }
    }

    fn handle_request(&mut self, request: Result<Request, RequestError>) -> Reply {
        match request {
            Ok(Request::Reopen) => self.reopen_log(),
            Ok(Request::Resize { width, height }) => self.resize(width, height),
            Ok(Request::Attach { stdin }) => self.accept_session(stdin),
            // A terminal is asked for before the sizes are read.
            Err(RequestError::ResizeUsage) if self.pty.is_none() => error("not a terminal"),
            Err(e) => error(e.to_string()),
        }
    }

    fn reopen_log(&mut self) -> Reply {
        match &mut self.log {
            None => error("no log path"),
            Some(log) => match log.reopen() {
                Ok(()) => Reply::Ok,
                Err(e) => error(format!("reopen log: {e}")),
            },
        }
    }

    fn resize(&mut self, width: u16, height: u16) -> Reply {
        let Some(pty) = &self.pty else {
            return error("not a terminal");
        };
        match sys::set_window_size(pty, width, height) {
            Ok(()) => Reply::Ok,
            Err(e) => error(format!("resize: {e}")),
        }
    }
}
