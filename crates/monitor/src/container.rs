//! `peapod-monitor container`: the parent of one container.
//!
//! Protocol with the daemon, on stdout, one line each:
//! 1. `monitor <pid>`: the monitor proper (M1), forked from the process the
//!    daemon spawned (M0, which exits 0 at once). M1 has its own session
//!    and is the child subreaper for everything the runtime leaves behind.
//! 2. `ok <init pid>` once the runtime's `create` succeeded, after which
//!    stdout and stderr become /dev/null (the daemon's pipe sees EOF); or
//!    `error <message>` and exit 1 (the daemon then deletes the runtime's
//!    state).
//!
//! Then M1 copies the container's output to the CRI log, answers control
//! requests on `--socket` (`reopen`, `resize W H`), reaps the container's
//! init and, once it has exited and its output is drained, writes
//! `--exit-file` atomically, removes the socket and exits 0.
//!
//! Single-threaded and allocation-light: one poll loop over a signalfd
//! (SIGCHLD), the output descriptors, the control socket and its clients.

use std::ffi::{CString, OsString};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use nix::errno::Errno;
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use peapod_monitor_protocol::container::{load, ContainerArgs, USAGE};
use peapod_monitor_protocol::control::{RequestError, MAX_REQUEST};
use peapod_monitor_protocol::{Answer, ContainerConfig, ExitStatus, Request, EXIT_USAGE};

use crate::crilog::{timestamp_now, CriLog, LineSplitter, Stream};
use crate::sys;

/// Control connections served at once; more are closed on accept.
const MAX_CLIENTS: usize = 8;
/// Bytes of the runtime's stderr kept for the error message.
const STDERR_TAIL: usize = 4096;
/// Bytes read from the end of the runtime's log for the error message.
const RUNTIME_LOG_TAIL: u64 = 64 * 1024;
/// Exits remembered before the init's pid is known.
const EARLY_EXITS: usize = 32;
/// Bytes per read of the container's output.
const READ_BUF: usize = 32 * 1024;
/// Reads per output after the drain, at most (2 MiB with the buffer).
const FINAL_READS: usize = 64;
/// Exit code of the forked runtime child when exec fails (as a shell's).
const EXIT_EXEC_FAILED: i32 = 127;

/// The container's config, as the daemon wrote it.
type Options = ContainerConfig;

/// How a process ended, as the exit file records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// The exit code, or 128 + the signal.
    pub code: i32,
    /// The signal that killed it, 0 when it exited.
    pub signal: i32,
    /// When it was reaped, in ns since the epoch.
    pub finished_at: i64,
}

impl Exit {
    fn from_wait_status(status: libc::c_int, finished_at: i64) -> Exit {
        if libc::WIFSIGNALED(status) {
            let signal = libc::WTERMSIG(status);
            Exit {
                code: 128 + signal,
                signal,
                finished_at,
            }
        } else {
            Exit {
                code: libc::WEXITSTATUS(status),
                signal: 0,
                finished_at,
            }
        }
    }

    fn describe(&self) -> String {
        if self.signal != 0 {
            format!("killed by signal {}", self.signal)
        } else {
            format!("exit status {}", self.code)
        }
    }
}

/// The exit file's text.
pub fn exit_file_text(exit: &Exit, oom_killed: bool) -> String {
    ExitStatus {
        exit_code: exit.code,
        signal: exit.signal,
        oom_killed,
        finished_at: exit.finished_at,
    }
    .encode()
}

/// The `oom_kill N` counter of a `memory.oom_control` (v1) or
/// `memory.events` (v2) file.
pub fn parse_oom_kills(text: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once(' ')?;
        (key == "oom_kill").then(|| value.trim().parse().ok())?
    })
}

/// Writes `text` to `<path>.tmp` and renames it over `path`.
fn write_atomically(path: &Path, text: &str) -> Result<(), String> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text).map_err(|e| format!("write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("rename {} to {}: {e}", tmp.display(), path.display())
    })
}

/// Tells the daemon something on stdout. Errors are ignored: a daemon
/// that went away must not cost the container its monitor.
fn say(answer: &Answer) {
    let _ = sys::write_all(1, answer.encode().as_bytes());
}

pub fn main(args: &[OsString]) -> ExitCode {
    let opts = match ContainerArgs::parse(args).and_then(|args| load(&args)) {
        Ok(opts) => opts,
        Err(err) => {
            eprintln!("peapod-monitor container: {err}\n{USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    // SAFETY: the monitor is single-threaded, so the child may do anything.
    match unsafe { libc::fork() } {
        -1 => {
            say(&Answer::Error(format!("fork: {}", Errno::last())));
            ExitCode::FAILURE
        }
        // M0: done. M1 is never the daemon's child.
        pid if pid > 0 => ExitCode::SUCCESS,
        _ => {
            let code = monitor(opts);
            // Nothing of M0's (std's atexit work) is left to run.
            std::process::exit(code)
        }
    }
}

/// Makes 0, 1 and 2 open (0 on /dev/null) and closes everything else the
/// daemon may have leaked to us.
fn tidy_descriptors() {
    crate::pause::close_fds(3, u32::MAX);
    if let Ok(null) = sys::dev_null() {
        for fd in 0..=2 {
            if fd == 0 || !sys::fd_is_open(fd) {
                let _ = sys::dup2(null.as_raw_fd(), fd);
            }
        }
    }
}

/// M1's whole life; returns its exit code.
fn monitor(opts: Options) -> i32 {
    tidy_descriptors();
    // A new session: no terminal, no signal aimed at the daemon's group.
    let _ = nix::unistd::setsid();
    // SAFETY: prctl with integer arguments.
    let subreaper = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let subreaper_err = (subreaper < 0).then(Errno::last);
    say(&Answer::Monitor(std::process::id() as i32));
    if let Some(errno) = subreaper_err {
        say(&Answer::Error(format!(
            "prctl(PR_SET_CHILD_SUBREAPER): {errno}"
        )));
        return 1;
    }
    let mut m = match Monitor::create(opts) {
        Ok(m) => m,
        Err(Failure { msg, sockets }) => {
            say(&Answer::Error(msg));
            for s in sockets.iter().flatten() {
                sys::unlink(s);
            }
            return 1;
        }
    };
    let init = m.init;
    say(&Answer::Ok(init));
    if let Ok(null) = sys::dev_null() {
        let _ = sys::dup2(null.as_raw_fd(), 1);
        let _ = sys::dup2(null.as_raw_fd(), 2);
    }
    m.run();
    m.finish()
}

/// A failed create: the message, and the sockets to remove.
struct Failure {
    msg: String,
    sockets: [Option<CString>; 2],
}

/// One stream of the container's output: a pipe's read end, or a copy of
/// the terminal's master. `fd` is None once it reached EOF.
struct Output {
    fd: Option<OwnedFd>,
    stream: Stream,
    splitter: LineSplitter,
}

/// A control connection and its unfinished request line.
struct Client {
    fd: OwnedFd,
    buf: [u8; MAX_REQUEST],
    len: usize,
}

/// What only exists while the runtime's create runs.
struct Creating {
    pid: i32,
    exit: Option<Exit>,
    console_listener: Option<OwnedFd>,
    console_conn: Option<OwnedFd>,
    /// tty mode: the runtime's own stdout and stderr.
    runtime_out: Option<OwnedFd>,
    /// The last bytes the runtime wrote on stderr.
    stderr_tail: Vec<u8>,
}

struct Monitor {
    opts: Options,
    socket_path: CString,
    signals: SignalFd,
    log: Option<CriLog>,
    control: OwnedFd,
    clients: Vec<Client>,
    outputs: Vec<Output>,
    /// tty mode: the terminal's master, for resize (and later attach).
    pty: Option<OwnedFd>,
    /// --stdin: the write end of the container's stdin, held open.
    _stdin: Option<OwnedFd>,
    init: i32,
    exit: Option<Exit>,
    /// Monotonic ms after which output is no longer awaited.
    drain_deadline: u64,
    /// Exits seen while the init's pid was not yet known.
    early_exits: Vec<(i32, Exit)>,
    /// Never initialized: only the pages reads fill are ever touched.
    read_buf: Box<[MaybeUninit<u8>]>,
}

/// Poll slots.
#[derive(Clone, Copy)]
enum Slot {
    Signals,
    Output(usize),
    Control,
    Client(usize),
    ConsoleListener,
    ConsoleConn,
    RuntimeOut,
}

const MAX_SLOTS: usize = 6 + MAX_CLIENTS + 2;

fn ctx<'a>(what: &'a str, path: &'a Path) -> impl FnOnce(Errno) -> String + 'a {
    let what = what.to_string();
    move |errno| format!("{what} {}: {errno}", path.display())
}

impl Monitor {
    /// Sets everything up, runs the runtime's create and returns once it
    /// has succeeded.
    fn create(opts: Options) -> Result<Monitor, Failure> {
        let socket_path = sys::cstring(opts.socket.as_os_str()).map_err(|_| Failure {
            msg: "bad socket path".into(),
            sockets: [None, None],
        })?;
        let console_path = opts
            .console_socket
            .as_ref()
            .and_then(|p| sys::cstring(p.as_os_str()).ok());
        let fail = |msg: String| Failure {
            msg,
            sockets: [Some(socket_path.clone()), console_path.clone()],
        };

        // A stray signal must not end the monitor and lose an exit status.
        for sig in [libc::SIGPIPE, libc::SIGHUP, libc::SIGTERM, libc::SIGINT] {
            sys::set_disposition(sig, libc::SIG_IGN)
                .map_err(|e| fail(format!("ignore signal {sig}: {e}")))?;
        }
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)
            .map_err(|e| fail(format!("block SIGCHLD: {e}")))?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|e| fail(format!("signalfd: {e}")))?;

        let log = match &opts.log_path {
            Some(path) => {
                let c = sys::cstring(path.as_os_str()).map_err(|e| fail(e.to_string()))?;
                Some(
                    CriLog::open(c, opts.log_max_line)
                        .map_err(|e| fail(ctx("open log", path)(e)))?,
                )
            }
            None => None,
        };
        let control =
            sys::listen_unix(&socket_path).map_err(|e| fail(ctx("listen on", &opts.socket)(e)))?;
        let console_listener = match (&console_path, &opts.console_socket) {
            (Some(c), Some(path)) => {
                Some(sys::listen_unix(c).map_err(|e| fail(ctx("listen on", path)(e)))?)
            }
            _ => None,
        };

        // The runtime's (and, without a terminal, the container's) stdio.
        let pipe = || sys::pipe().map_err(|e| fail(format!("pipe: {e}")));
        let null = sys::dev_null().map_err(|e| fail(format!("open /dev/null: {e}")))?;
        let mut outputs = Vec::with_capacity(2);
        let (mut runtime_out, child_out, child_err);
        if opts.tty {
            let (r, w) = pipe()?;
            runtime_out = Some(r);
            child_err = w.try_clone().map_err(|e| fail(format!("dup: {e}")))?;
            child_out = w;
        } else {
            runtime_out = None;
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            for (fd, stream) in [(out_r, Stream::Stdout), (err_r, Stream::Stderr)] {
                outputs.push(Output {
                    fd: Some(fd),
                    stream,
                    splitter: LineSplitter::new(opts.log_max_line),
                });
            }
            child_out = out_w;
            child_err = err_w;
        }
        for fd in outputs
            .iter()
            .filter_map(|o| o.fd.as_ref())
            .chain(runtime_out.as_ref())
        {
            sys::set_nonblocking(fd).map_err(|e| fail(format!("O_NONBLOCK: {e}")))?;
        }
        // A terminal's input is its master; a stdin pipe is for pipes only.
        let (child_in, stdin_writer) = if opts.stdin && !opts.tty {
            let (r, w) = pipe()?;
            (r, Some(w))
        } else {
            (null, None)
        };

        let runtime_log_start = opts
            .runtime_log
            .as_ref()
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| m.len());

        let pid = spawn_runtime(&opts, [&child_in, &child_out, &child_err])
            .map_err(|e| fail(format!("fork: {e}")))?;
        // Only the runtime (and the container after it) holds these now.
        drop((child_in, child_out, child_err));

        let mut m = Monitor {
            socket_path: socket_path.clone(),
            signals,
            log,
            control,
            clients: Vec::new(),
            outputs,
            pty: None,
            _stdin: stdin_writer,
            init: 0,
            exit: None,
            drain_deadline: 0,
            early_exits: Vec::new(),
            read_buf: Box::new_uninit_slice(READ_BUF),
            opts,
        };
        let mut c = Creating {
            pid,
            exit: None,
            console_listener,
            console_conn: None,
            runtime_out: runtime_out.take(),
            stderr_tail: Vec::new(),
        };
        while c.exit.is_none() {
            m.poll_once(Some(&mut c), -1);
        }
        let runtime_exit = c.exit.expect("loop ends on exit");

        if runtime_exit.code != 0 {
            m.drain_runtime_stderr(&mut c);
            return Err(fail(m.create_error(&c, &runtime_exit, runtime_log_start)));
        }
        if m.opts.tty {
            // runc may have sent the master and exited before we accepted.
            m.service_console(&mut c);
            if let Some(path) = &console_path {
                sys::unlink(path);
            }
            c.console_listener = None;
            c.console_conn = None;
            let Some(pty) = &m.pty else {
                m.drain_runtime_stderr(&mut c);
                let detail = String::from_utf8_lossy(&c.stderr_tail).trim().to_string();
                return Err(fail(format!(
                    "the runtime exited 0 without sending a terminal to the console socket{}{}",
                    if detail.is_empty() { "" } else { ": " },
                    detail
                )));
            };
            let copy = sys::dup(pty.as_fd()).map_err(|e| fail(format!("dup: {e}")))?;
            sys::set_nonblocking(&copy).map_err(|e| fail(format!("O_NONBLOCK: {e}")))?;
            m.outputs.push(Output {
                fd: Some(copy),
                stream: Stream::Stdout,
                splitter: LineSplitter::new(m.opts.log_max_line),
            });
        }
        // What runc wrote for itself in tty mode (warnings) is not the
        // container's output.
        drop(c);

        let pid_file = &m.opts.pid_file;
        let text = std::fs::read_to_string(pid_file)
            .map_err(|e| fail(format!("read pid file {}: {e}", pid_file.display())))?;
        let init = text
            .trim()
            .parse::<i32>()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| {
                fail(format!(
                    "pid file {} holds {:?}, not a pid",
                    pid_file.display(),
                    text.trim()
                ))
            })?;
        m.init = init;
        if let Some(&(_, exit)) = m.early_exits.iter().rev().find(|(p, _)| *p == init) {
            // Killed before we got here; its output is still drained.
            m.init_exited(exit);
        } else if sys::parent_pid(init) != Some(std::process::id() as i32) {
            return Err(fail(format!(
                "container init {init} is not a child of the monitor (parent {:?})",
                sys::parent_pid(init)
            )));
        }
        m.early_exits = Vec::new();
        Ok(m)
    }

    /// The error line for a failed create: the runtime's last logged
    /// error, else what it wrote on stderr, else how it ended.
    fn create_error(&self, c: &Creating, exit: &Exit, log_start: u64) -> String {
        if let Some(path) = &self.opts.runtime_log {
            if let Some(msg) = read_from(path, log_start)
                .as_deref()
                .and_then(crate::runtime_log::last_error)
            {
                if !msg.trim().is_empty() {
                    return msg;
                }
            }
        }
        let stderr = String::from_utf8_lossy(&c.stderr_tail);
        let stderr = stderr.trim();
        if !stderr.is_empty() {
            return stderr.to_string();
        }
        let argv0 = self.opts.runtime_argv[0].to_string_lossy();
        format!("{argv0} create failed: {}", exit.describe())
    }

    /// Reads whatever the runtime's stderr still holds, without waiting.
    fn drain_runtime_stderr(&mut self, c: &mut Creating) {
        for _ in 0..64 {
            let fd = match &c.runtime_out {
                Some(fd) => fd.as_raw_fd(),
                None => match self.outputs.get(1).and_then(|o| o.fd.as_ref()) {
                    Some(fd) => fd.as_raw_fd(),
                    None => return,
                },
            };
            match sys::read_into(fd, &mut self.read_buf) {
                Ok(data) if !data.is_empty() => push_tail(&mut c.stderr_tail, data),
                _ => return,
            }
        }
    }

    /// Accepts runc's connection on the console socket and receives the
    /// master, as far as that is possible without waiting.
    fn service_console(&mut self, c: &mut Creating) {
        if self.pty.is_some() {
            return;
        }
        if c.console_conn.is_none() {
            if let Some(listener) = &c.console_listener {
                if let Ok(Some(conn)) = sys::accept(listener) {
                    c.console_conn = Some(conn);
                }
            }
        }
        if let Some(conn) = &c.console_conn {
            match sys::recv_fd(conn) {
                Ok(Some(fd)) => {
                    self.pty = Some(fd);
                    c.console_conn = None;
                }
                Ok(None) => {}
                // The runtime hung up without a descriptor: wait for
                // another connection.
                Err(_) => c.console_conn = None,
            }
        }
    }

    /// The main loop: until the init has exited and its output is drained.
    fn run(&mut self) {
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

    fn poll_once(&mut self, mut creating: Option<&mut Creating>, timeout_ms: i32) {
        let mut fds = [libc::pollfd {
            fd: -1,
            events: 0,
            revents: 0,
        }; MAX_SLOTS];
        let mut slots = [Slot::Signals; MAX_SLOTS];
        let mut n = 0;
        let mut add = |fd: RawFd, slot: Slot| {
            fds[n] = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            slots[n] = slot;
            n += 1;
        };
        add(self.signals.as_raw_fd(), Slot::Signals);
        for (i, out) in self.outputs.iter().enumerate() {
            if let Some(fd) = &out.fd {
                add(fd.as_raw_fd(), Slot::Output(i));
            }
        }
        match creating.as_deref() {
            Some(c) => {
                if let Some(fd) = &c.console_listener {
                    if c.console_conn.is_none() && self.pty.is_none() {
                        add(fd.as_raw_fd(), Slot::ConsoleListener);
                    }
                }
                if let Some(fd) = &c.console_conn {
                    add(fd.as_raw_fd(), Slot::ConsoleConn);
                }
                if let Some(fd) = &c.runtime_out {
                    add(fd.as_raw_fd(), Slot::RuntimeOut);
                }
            }
            // Control requests wait until the container exists.
            None => {
                add(self.control.as_raw_fd(), Slot::Control);
                for (i, client) in self.clients.iter().enumerate() {
                    add(client.fd.as_raw_fd(), Slot::Client(i));
                }
            }
        }

        // SAFETY: fds[..n] are initialized pollfds over live descriptors.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), n as libc::nfds_t, timeout_ms) };
        if ready <= 0 {
            // EINTR cannot happen with every caught signal blocked; a
            // timeout is handled by the caller.
            return;
        }
        let mut closed_clients = false;
        for (pfd, slot) in fds[..n].iter().zip(slots) {
            if pfd.revents == 0 {
                continue;
            }
            match slot {
                Slot::Signals => self.reap(creating.as_deref_mut()),
                Slot::Output(i) => {
                    self.read_output(i, creating.as_deref_mut());
                }
                Slot::Control => self.accept_clients(),
                Slot::Client(i) => closed_clients |= !self.serve_client(i),
                Slot::ConsoleListener | Slot::ConsoleConn => {
                    if let Some(c) = creating.as_deref_mut() {
                        self.service_console(c);
                    }
                }
                Slot::RuntimeOut => {
                    if let Some(c) = creating.as_deref_mut() {
                        if let Some(fd) = &c.runtime_out {
                            match sys::read_into(fd.as_raw_fd(), &mut self.read_buf) {
                                Ok(data) if !data.is_empty() => push_tail(&mut c.stderr_tail, data),
                                Err(Errno::EAGAIN) => {}
                                _ => c.runtime_out = None,
                            }
                        }
                    }
                }
            }
        }
        if closed_clients {
            self.clients.retain(|c| c.len != usize::MAX);
        }
    }

    /// Reaps every child that has exited. Only the runtime's create and
    /// the container's init matter; orphans of the container reparented
    /// to us are reaped and forgotten.
    fn reap(&mut self, mut creating: Option<&mut Creating>) {
        while let Ok(Some(_)) = self.signals.read_signal() {}
        loop {
            let mut status = 0;
            // SAFETY: waitpid writes the status into a live int.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG | libc::__WALL) };
            if pid <= 0 {
                if pid < 0 && Errno::last() == Errno::EINTR {
                    continue;
                }
                return;
            }
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

    fn init_exited(&mut self, exit: Exit) {
        if self.exit.is_none() {
            self.exit = Some(exit);
            let drain_ms = u64::try_from(self.opts.drain_timeout.as_millis()).unwrap_or(u64::MAX);
            self.drain_deadline = sys::monotonic_ms().saturating_add(drain_ms);
        }
    }

    /// Reads once from an output and logs its complete lines. Returns
    /// whether it read data (false: nothing there, or EOF).
    fn read_output(&mut self, i: usize, creating: Option<&mut Creating>) -> bool {
        let out = &mut self.outputs[i];
        let Some(fd) = &out.fd else { return false };
        let data = match sys::read_into(fd.as_raw_fd(), &mut self.read_buf) {
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
        true
    }

    fn accept_clients(&mut self) {
        while let Ok(Some(fd)) = sys::accept(&self.control) {
            if self.clients.len() < MAX_CLIENTS {
                self.clients.push(Client {
                    fd,
                    buf: [0; MAX_REQUEST],
                    len: 0,
                });
            } else {
                let _ = sys::send_reply(&fd, b"error too many connections\n");
            }
        }
    }

    /// Reads requests from a client and answers each complete line.
    /// Returns false when the connection is done (marked with
    /// `len == usize::MAX`, removed by the caller).
    fn serve_client(&mut self, i: usize) -> bool {
        let client = &mut self.clients[i];
        let len = client.len;
        let n = match sys::read(client.fd.as_raw_fd(), &mut client.buf[len..]) {
            Ok(0) => {
                client.len = usize::MAX;
                return false;
            }
            Ok(n) => n,
            Err(Errno::EAGAIN) => return true,
            Err(_) => {
                client.len = usize::MAX;
                return false;
            }
        };
        client.len += n;
        let mut start = 0;
        while let Some(nl) = self.clients[i].buf[start..self.clients[i].len]
            .iter()
            .position(|&b| b == b'\n')
        {
            let line_buf = self.clients[i].buf;
            let line = &line_buf[start..start + nl];
            let reply = self.handle_request(line);
            if sys::send_reply(&self.clients[i].fd, reply.as_bytes()).is_err() {
                self.clients[i].len = usize::MAX;
                return false;
            }
            start += nl + 1;
        }
        let client = &mut self.clients[i];
        client.buf.copy_within(start..client.len, 0);
        client.len -= start;
        if client.len == MAX_REQUEST {
            let _ = sys::send_reply(&client.fd, b"error request too long\n");
            client.len = usize::MAX;
            return false;
        }
        true
    }

    fn handle_request(&mut self, line: &[u8]) -> String {
        match Request::parse(line) {
            Ok(Request::Reopen) => match &mut self.log {
                None => "error no log path\n".into(),
                Some(log) => match log.reopen() {
                    Ok(()) => "ok\n".into(),
                    Err(e) => format!("error reopen log: {e}\n"),
                },
            },
            Ok(Request::Resize { width, height }) => {
                let Some(pty) = &self.pty else {
                    return "error not a terminal\n".into();
                };
                match sys::set_window_size(pty, width, height) {
                    Ok(()) => "ok\n".into(),
                    Err(e) => format!("error resize: {e}\n"),
                }
            }
            // A terminal is asked for before the sizes are read.
            Err(RequestError::ResizeUsage) if self.pty.is_none() => "error not a terminal\n".into(),
            Ok(Request::Attach { .. }) => "error unknown request\n".into(),
            Err(e) => format!("error {e}\n"),
        }
    }

    /// After the main loop: logs what is left, writes the exit file,
    /// removes the socket. Returns the exit code of the monitor.
    fn finish(mut self) -> i32 {
        // The drain time is up (or output is closed): what is already in
        // the pipes is still taken, without waiting for more. Bounded, in
        // case a process left behind keeps writing.
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
        // The control socket goes whatever happens below.
        sys::unlink(&self.socket_path);
        let Some(exit) = self.exit else {
            return 1;
        };
        let oom_kills = self
            .opts
            .oom_file
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| parse_oom_kills(&t))
            .unwrap_or(0);
        let oom_killed = oom_kills > 0 && exit.signal == libc::SIGKILL;
        let written = write_atomically(&self.opts.exit_file, &exit_file_text(&exit, oom_killed));
        match written {
            Ok(()) => 0,
            Err(_) => 1,
        }
    }
}

/// Keeps the last STDERR_TAIL bytes.
fn push_tail(tail: &mut Vec<u8>, data: &[u8]) {
    let data = &data[data.len().saturating_sub(STDERR_TAIL)..];
    let excess = (tail.len() + data.len()).saturating_sub(STDERR_TAIL);
    tail.drain(..excess);
    tail.extend_from_slice(data);
}

/// The text of a file from `offset` on (at most its last 64 KiB).
fn read_from(path: &Path, offset: u64) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let start = offset.max(len.saturating_sub(RUNTIME_LOG_TAIL)).min(len);
    file.seek(SeekFrom::Start(start)).ok()?;
    let mut bytes = Vec::new();
    file.take(RUNTIME_LOG_TAIL).read_to_end(&mut bytes).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// Forks the runtime with `stdio` as its 0, 1 and 2 and the bundle as
/// its cwd. Everything it needs is prepared before fork; the child
/// restores default signal handling, so the runtime and the container's
/// init start as from a shell.
fn spawn_runtime(opts: &Options, stdio: [&OwnedFd; 3]) -> Result<i32, Errno> {
    let argv: Vec<CString> = opts
        .runtime_argv
        .iter()
        .map(|a| CString::new(a.clone().into_vec()))
        .collect::<Result<_, _>>()
        .map_err(|_| Errno::EINVAL)?;
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let bundle = sys::cstring(opts.bundle.as_os_str())?;
    let raw = stdio.map(|fd| fd.as_raw_fd());
    let argv0 = opts.runtime_argv[0].as_bytes();

    // SAFETY: single-threaded, so the child may run ordinary code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Errno::last());
    }
    if pid > 0 {
        return Ok(pid);
    }
    // The child.
    let fail = |step: &[u8], errno: Errno| -> ! {
        let mut msg = Vec::with_capacity(128);
        msg.extend_from_slice(step);
        msg.extend_from_slice(b": ");
        msg.extend_from_slice(errno.desc().as_bytes());
        msg.push(b'\n');
        let _ = sys::write_all(2, &msg);
        // SAFETY: leave without running the parent's exit handlers.
        unsafe { libc::_exit(EXIT_EXEC_FAILED) }
    };
    // All three are ≥ 3 (0-2 were open when they were made), so no dup2
    // below overwrites a source still to be copied.
    for (target, fd) in raw.iter().enumerate() {
        if let Err(e) = sys::dup2(*fd, target as RawFd) {
            fail(b"dup2 runtime stdio", e);
        }
    }
    crate::pause::close_fds(3, u32::MAX);
    crate::pause::reset_signal_dispositions();
    if let Err(e) = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None) {
        fail(b"clear signal mask", e);
    }
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::chdir(bundle.as_ptr()) } < 0 {
        let mut step = b"chdir ".to_vec();
        step.extend_from_slice(bundle.as_bytes());
        fail(&step, Errno::last());
    }
    // SAFETY: argv_ptrs is a NULL-terminated array of live C strings.
    unsafe { libc::execvp(argv_ptrs[0], argv_ptrs.as_ptr()) };
    let mut step = b"exec ".to_vec();
    step.extend_from_slice(argv0);
    fail(&step, Errno::last())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses() {
        // Encoded as the kernel reports them to waitpid.
        let exited = |code: i32| code << 8;
        let signaled = |sig: i32| sig;
        assert_eq!(
            Exit::from_wait_status(exited(3), 7),
            Exit {
                code: 3,
                signal: 0,
                finished_at: 7
            }
        );
        assert_eq!(Exit::from_wait_status(exited(0), 7).code, 0);
        let killed = Exit::from_wait_status(signaled(9), 7);
        assert_eq!((killed.code, killed.signal), (137, 9));
        let rt = Exit::from_wait_status(signaled(libc::SIGRTMIN() + 3), 7);
        assert_eq!(rt.code, 128 + libc::SIGRTMIN() + 3);
        assert_eq!(killed.describe(), "killed by signal 9");
    }

    #[test]
    fn exit_file_round_trip() {
        for (exit, oom) in [
            (
                Exit {
                    code: 137,
                    signal: 9,
                    finished_at: 1_795_343_901_812_437_500,
                },
                true,
            ),
            (
                Exit {
                    code: 3,
                    signal: 0,
                    finished_at: 1,
                },
                false,
            ),
        ] {
            let text = exit_file_text(&exit, oom);
            let parsed = ExitStatus::parse(&text).expect("parses");
            assert_eq!(parsed.exit_code, exit.code);
            assert_eq!(parsed.signal, exit.signal);
            assert_eq!(parsed.oom_killed, oom);
            assert_eq!(parsed.finished_at, exit.finished_at);
        }
        assert_eq!(
            exit_file_text(
                &Exit {
                    code: 137,
                    signal: 9,
                    finished_at: 1_795_343_901_812_437_500
                },
                true
            ),
            "exit_code=137\nsignal=9\noom_killed=1\nfinished_at=1795343901812437500\n"
        );
    }

    #[test]
    fn exit_file_is_replaced_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exit");
        write_atomically(&path, "a=1\n").unwrap();
        write_atomically(&path, "b=2\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "b=2\n");
        assert!(!dir.path().join("exit.tmp").exists());
        let missing = dir.path().join("no/such/dir/exit");
        assert!(write_atomically(&missing, "x").is_err());
    }

    #[test]
    fn oom_counters() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        assert_eq!(parse_oom_kills(v1), Some(2));
        let v2 = "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(parse_oom_kills(v2), Some(1));
        assert_eq!(parse_oom_kills("oom_kill_disable 0\n"), None);
    }

    #[test]
    fn stderr_tail_keeps_the_end() {
        let mut tail = Vec::new();
        push_tail(&mut tail, &[b'a'; STDERR_TAIL]);
        push_tail(&mut tail, b"bc");
        assert_eq!(tail.len(), STDERR_TAIL);
        assert!(tail.ends_with(b"abc"));
        push_tail(&mut tail, &vec![b'z'; STDERR_TAIL * 2]);
        assert_eq!(tail, vec![b'z'; STDERR_TAIL]);
    }
}
