//! The container's output: read as it comes, written to the CRI log and
//! sent to attach sessions.

use std::os::fd::OwnedFd;

use nix::errno::Errno;

use super::attach::send_output;
use super::runtime::{push_tail, Creating};
use super::Monitor;
use crate::crilog::{timestamp_now, LineSplitter, Stream};
use crate::sys;

/// Reads per output after the drain, at most (2 MiB with the buffer).
const FINAL_READS: usize = 64;

/// One stream of the container's output: a pipe's read end, or a copy of
/// the terminal's master. `fd` is None once it reached EOF.
pub(super) struct Output {
    pub fd: Option<OwnedFd>,
    pub stream: Stream,
    splitter: LineSplitter,
}

impl Output {
    pub fn new(fd: OwnedFd, stream: Stream, max_line: usize) -> Output {
        Output {
            fd: Some(fd),
            stream,
            splitter: LineSplitter::new(max_line),
        }
    }
}

impl Monitor {
    /// Reads once from an output and logs its complete lines. Returns
    /// whether it read data (false: nothing there, or EOF).
    pub(super) fn read_output(&mut self, i: usize, creating: Option<&mut Creating>) -> bool {
        let out = &mut self.outputs[i];
        let Some(fd) = &out.fd else { return false };
        let data = match sys::read_into(fd, &mut self.read_buf) {
            Ok(data) => data,
            Err(Errno::EAGAIN) => return false,
            // EIO: a terminal whose slave side is closed everywhere.
            Err(_) => &[],
        };
        let ts = timestamp_now();
        if data.is_empty() {
            out.fd = None;
            if let Some(log) = &mut self.log {
                out.splitter
                    .finish(&mut |c, tag| log.write(&ts, out.stream, tag, c));
            }
            return false;
        }
        if let Some(c) = creating {
            if out.stream == Stream::Stderr {
                push_tail(&mut c.stderr_tail, data);
            }
        }
        if let Some(log) = &mut self.log {
            out.splitter
                .feed(data, &mut |c, tag| log.write(&ts, out.stream, tag, c));
        }
        send_output(&mut self.clients, out.stream, data);
        true
    }

    /// After the main loop: what is already in the pipes is still taken,
    /// without waiting for more, and unfinished lines are logged.
    pub(super) fn log_the_rest(&mut self) {
        // Bounded, in case a process left behind keeps writing.
        for i in 0..self.outputs.len() {
            for _ in 0..FINAL_READS {
                if self.outputs[i].fd.is_none() || !self.read_output(i, None) {
                    break;
                }
            }
        }
        let ts = timestamp_now();
        if let Some(log) = &mut self.log {
            for out in &mut self.outputs {
                out.splitter
                    .finish(&mut |c, tag| log.write(&ts, out.stream, tag, c));
            }
        }
    }
}
