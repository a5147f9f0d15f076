//! `peapod-monitor container --id ID --config PATH`: the parent of one
//! container. The protocol is `peapod_monitor_protocol`'s; in order:
//!
//! 1. `monitor <pid>` on stdout: the monitor proper (M1), forked from the
//!    process the daemon spawned (M0, which exits 0 at once). M1 has its
//!    own session and is the child subreaper for everything the runtime
//!    leaves behind.
//! 2. `ok <init pid>` once the runtime's `create` succeeded, after which
//!    stdout and stderr become /dev/null (the daemon's pipe sees EOF); or
//!    `error <message>` and exit 1 (the daemon then deletes the runtime's
//!    state).
//!
//! Then M1 copies the container's output to the CRI log (and to attach
//! sessions), answers control requests on the socket, reaps the
//! container's init and, once it has exited and its output is drained,
//! writes the exit file atomically, removes the socket, ends the attach
//! sessions and exits 0.
//!
//! Single-threaded and allocation-light: one poll loop over a signalfd
//! (SIGCHLD), the output descriptors, the control socket and its clients.
//! M0 reads and checks the config before the fork, so that a bad one is a
//! usage error (exit 2) the daemon sees, as a bad command line was.

mod attach;
mod control;
mod create;
mod events;
mod exit;
mod output;
mod runtime;

use std::ffi::OsString;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::process::ExitCode;

use nix::sys::signalfd::SignalFd;
use nix::unistd::ForkResult;
use peapod_monitor_protocol::container::{load, ContainerArgs, USAGE};
use peapod_monitor_protocol::{Answer, ContainerConfig, EXIT_USAGE};

use crate::crilog::CriLog;
use crate::sys;
use control::Client;
use exit::Exit;
use output::Output;

/// Bytes per read of the container's output.
const READ_BUF: usize = 32 * 1024;

pub fn main(args: &[OsString]) -> ExitCode {
    let config = match ContainerArgs::parse(args).and_then(|args| load(&args)) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("peapod-monitor container: {err}\n{USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    // SAFETY: the monitor is single-threaded, so the child may do anything.
    match unsafe { nix::unistd::fork() } {
        Err(errno) => {
            say(&Answer::Error(format!("fork: {errno}")));
            ExitCode::FAILURE
        }
        // M0: done. M1 is never the daemon's child.
        Ok(ForkResult::Parent { .. }) => ExitCode::SUCCESS,
        Ok(ForkResult::Child) => {
            let code = monitor(config);
            // Nothing of M0's (std's atexit work) is left to run.
            std::process::exit(code)
        }
    }
}

/// Tells the daemon something on stdout. Errors are ignored: a daemon
/// that went away must not cost the container its monitor.
fn say(answer: &Answer) {
    let _ = sys::write_all(std::io::stdout().as_fd(), answer.encode().as_bytes());
}

/// Makes 0, 1 and 2 open (0 on /dev/null) and closes everything else the
/// daemon may have leaked to us.
fn tidy_descriptors() {
    sys::close_fds(3, u32::MAX);
    if let Ok(null) = sys::dev_null() {
        let _ = nix::unistd::dup2_stdin(&null);
        if !sys::fd_is_open(1) {
            let _ = nix::unistd::dup2_stdout(&null);
        }
        if !sys::fd_is_open(2) {
            let _ = nix::unistd::dup2_stderr(&null);
        }
    }
}

/// M1's whole life; returns its exit code.
fn monitor(config: ContainerConfig) -> i32 {
    tidy_descriptors();
    // A new session: no terminal, no signal aimed at the daemon's group.
    let _ = nix::unistd::setsid();
    let subreaper = nix::sys::prctl::set_child_subreaper(true);
    say(&Answer::Monitor(std::process::id() as i32));
    if let Err(errno) = subreaper {
        say(&Answer::Error(format!(
            "prctl(PR_SET_CHILD_SUBREAPER): {errno}"
        )));
        return 1;
    }
    let mut m = match Monitor::create(config) {
        Ok(m) => m,
        Err(Failure { msg, sockets }) => {
            say(&Answer::Error(msg));
            for path in sockets.iter().flatten() {
                sys::unlink(path);
            }
            return 1;
        }
    };
    say(&Answer::Ok(m.init));
    // The daemon's pipes go: it reads to EOF.
    if let Ok(null) = sys::dev_null() {
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
    m.run();
    m.finish()
}

/// A failed create: the message, and the sockets to remove.
struct Failure {
    msg: String,
    sockets: [Option<PathBuf>; 2],
}

/// The monitor of one created container.
struct Monitor {
    config: ContainerConfig,
    signals: SignalFd,
    log: Option<CriLog>,
    control: OwnedFd,
    clients: Vec<Client>,
    outputs: Vec<Output>,
    /// tty mode: the terminal's master, for resize and attach.
    pty: Option<OwnedFd>,
    /// `stdin` without a tty: the write end of the container's stdin,
    /// held open for attach sessions.
    stdin: Option<OwnedFd>,
    /// The container has a stdin that is not closed yet (`stdin_once`).
    stdin_open: bool,
    init: i32,
    exit: Option<Exit>,
    /// Monotonic ms after which output is no longer awaited.
    drain_deadline: u64,
    /// Exits seen while the init's pid was not yet known.
    early_exits: Vec<(i32, Exit)>,
    /// Never initialized: only the pages reads fill are ever touched.
    read_buf: Box<[MaybeUninit<u8>]>,
}
