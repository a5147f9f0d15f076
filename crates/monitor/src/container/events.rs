//! The monitor's poll loop: what it waits on, and what it does when a
//! descriptor is ready.

use std::os::fd::{AsFd, BorrowedFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::exit::Exit;
use super::runtime::Creating;
use super::Monitor;
use crate::sys;

/// Exits remembered before the init's pid is known.
const EARLY_EXITS: usize = 32;

/// What a polled descriptor is.
#[derive(Clone, Copy)]
enum Slot {
    Signals,
    Output(usize),
    Control,
    Client(usize),
    ConsoleListener,
    ConsoleConn,
    RuntimeOut,
    /// The container's stdin, when attach sessions have data for it.
    Stdin,
}

/// The descriptors one poll waits on.
struct WatchList<'a> {
    fds: Vec<PollFd<'a>>,
    slots: Vec<Slot>,
}

impl<'a> WatchList<'a> {
    fn add(&mut self, fd: BorrowedFd<'a>, events: PollFlags, slot: Slot) {
        self.fds.push(PollFd::new(fd, events));
        self.slots.push(slot);
    }

    fn read(&mut self, fd: &'a impl AsFd, slot: Slot) {
        self.add(fd.as_fd(), PollFlags::POLLIN, slot);
    }
}

impl Monitor {
    /// The main loop: until the init has exited and its output is drained.
    pub(super) fn run(&mut self) {
        loop {
            let timeout = match self.exit {
                None => -1,
                Some(_) => {
                    let open = self.outputs.iter().any(|o| o.fd.is_some());
                    let now = sys::monotonic_ms();
                    if !open || now >= self.drain_deadline {
                        return;
                    }
                    (self.drain_deadline - now).min(i32::MAX as u64) as i32
                }
            };
            self.poll_once(None, timeout);
        }
    }

    /// Waits up to `timeout_ms` (-1: no limit) and serves what is ready.
    pub(super) fn poll_once(&mut self, mut creating: Option<&mut Creating>, timeout_ms: i32) {
        let ready = self.wait(creating.as_deref(), timeout_ms);
        for (slot, events) in ready {
            match slot {
                Slot::Signals => self.reap(creating.as_deref_mut()),
                Slot::Output(i) => {
                    self.read_output(i, creating.as_deref_mut());
                }
                Slot::Control => self.accept_clients(),
                Slot::Client(i) => self.serve_client(i, events),
                Slot::Stdin => self.stdin_ready(),
                Slot::ConsoleListener | Slot::ConsoleConn => {
                    if let Some(c) = creating.as_deref_mut() {
                        self.service_console(c);
                    }
                }
                Slot::RuntimeOut => {
                    if let Some(c) = creating.as_deref_mut() {
                        self.read_runtime_out(c);
                    }
                }
            }
        }
        self.drop_done_clients();
    }

    /// Polls; returns the ready slots and their events.
    fn wait(&self, creating: Option<&Creating>, timeout_ms: i32) -> Vec<(Slot, PollFlags)> {
        let mut list = self.watch_list(creating);
        let timeout = PollTimeout::try_from(timeout_ms).unwrap_or(PollTimeout::NONE);
        // EINTR cannot happen with every caught signal blocked; a
        // timeout is handled by the caller.
        if !matches!(poll(&mut list.fds, timeout), Ok(n) if n > 0) {
            return Vec::new();
        }
        list.fds
            .iter()
            .zip(list.slots)
            .filter_map(|(fd, slot)| Some((slot, fd.revents().filter(|r| !r.is_empty())?)))
            .collect()
    }

    fn watch_list<'a>(&'a self, creating: Option<&'a Creating>) -> WatchList<'a> {
        let mut list = WatchList {
            fds: Vec::with_capacity(8 + self.clients.len()),
            slots: Vec::with_capacity(8 + self.clients.len()),
        };
        list.read(&self.signals, Slot::Signals);
        for (i, out) in self.outputs.iter().enumerate() {
            if let Some(fd) = &out.fd {
                list.read(fd, Slot::Output(i));
            }
        }
        match creating {
            Some(c) => self.watch_creation(c, &mut list),
            // Control requests wait until the container exists.
            None => {
                list.read(&self.control, Slot::Control);
                for (i, client) in self.clients.iter().enumerate() {
                    if let Some(events) = client.events() {
                        list.add(client.fd.as_fd(), events, Slot::Client(i));
                    }
                }
                if let Some(fd) = self.stdin_to_watch() {
                    list.add(fd, PollFlags::POLLOUT, Slot::Stdin);
                }
            }
        }
        list
    }

    fn watch_creation<'a>(&self, c: &'a Creating, list: &mut WatchList<'a>) {
        if let Some(fd) = &c.console_listener {
            if c.console_conn.is_none() && self.pty.is_none() {
                list.read(fd, Slot::ConsoleListener);
            }
        }
        if let Some(fd) = &c.console_conn {
            list.read(fd, Slot::ConsoleConn);
        }
        if let Some(fd) = &c.runtime_out {
            list.read(fd, Slot::RuntimeOut);
        }
    }

    /// Reaps every child that has exited. Only the runtime's create and
    /// the container's init matter; orphans of the container reparented
    /// to us are reaped and forgotten.
    fn reap(&mut self, mut creating: Option<&mut Creating>) {
        while let Ok(Some(_)) = self.signals.read_signal() {}
        while let Some((pid, status)) = sys::reap_one() {
            let exit = Exit::from_wait_status(status, sys::realtime_ns());
            match creating.as_deref_mut() {
                Some(c) if c.pid == pid => c.exit = Some(exit),
                _ if self.init == pid => self.init_exited(exit),
                _ if self.init == 0 => {
                    if self.early_exits.len() == EARLY_EXITS {
                        self.early_exits.remove(0);
                    }
                    self.early_exits.push((pid, exit));
                }
                _ => {}
            }
        }
    }

    pub(super) fn init_exited(&mut self, exit: Exit) {
        if self.exit.is_none() {
            self.exit = Some(exit);
            let drain_ms = u64::try_from(self.config.drain_timeout.as_millis()).unwrap_or(u64::MAX);
            self.drain_deadline = sys::monotonic_ms().saturating_add(drain_ms);
        }
    }
}
