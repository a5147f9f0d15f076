//! Setting up a container's monitor and running the runtime's create.

use std::os::fd::OwnedFd;
use std::path::Path;

use nix::errno::Errno;
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use peapod_monitor_protocol::ContainerConfig;

use super::output::Output;
use super::runtime::{self, Creating};
use super::{Failure, Monitor, READ_BUF};
use crate::crilog::{CriLog, Stream};
use crate::sys;

fn ctx<'a>(what: &'a str, path: &'a Path) -> impl FnOnce(Errno) -> String + 'a {
    move |errno| format!("{what} {}: {errno}", path.display())
}

/// The runtime's (and, without a terminal, the container's) stdio, and
/// the monitor's ends of it.
struct Stdio {
    /// The runtime's 0, 1 and 2.
    child: [OwnedFd; 3],
    /// No tty: the read ends of the container's stdout and stderr.
    outputs: Vec<Output>,
    /// tty: the runtime's own stdout and stderr.
    runtime_out: Option<OwnedFd>,
    /// `stdin` without a tty: the write end of the container's stdin.
    stdin: Option<OwnedFd>,
}

impl Stdio {
    fn new(config: &ContainerConfig) -> Result<Stdio, String> {
        let pipe = || sys::pipe().map_err(|e| format!("pipe: {e}"));
        let null = sys::dev_null().map_err(|e| format!("open /dev/null: {e}"))?;
        let mut outputs = Vec::with_capacity(2);
        let (runtime_out, child_out, child_err) = if config.tty {
            let (r, w) = pipe()?;
            let w2 = w.try_clone().map_err(|e| format!("dup: {e}"))?;
            (Some(r), w, w2)
        } else {
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            outputs.push(Output::new(out_r, Stream::Stdout, config.log_max_line));
            outputs.push(Output::new(err_r, Stream::Stderr, config.log_max_line));
            (None, out_w, err_w)
        };
        for fd in outputs
            .iter()
            .filter_map(|o| o.fd.as_ref())
            .chain(runtime_out.as_ref())
        {
            sys::set_nonblocking(fd).map_err(|e| format!("O_NONBLOCK: {e}"))?;
        }
        // A terminal's input is its master; a stdin pipe is for pipes only.
        let (child_in, stdin) = if config.stdin && !config.tty {
            let (r, w) = pipe()?;
            // Attach sessions write it without ever waiting.
            sys::set_nonblocking(&w).map_err(|e| format!("O_NONBLOCK: {e}"))?;
            (r, Some(w))
        } else {
            (null, None)
        };
        Ok(Stdio {
            child: [child_in, child_out, child_err],
            outputs,
            runtime_out,
            stdin,
        })
    }
}

/// Ignores the signals that would end the monitor and lose an exit
/// status, and takes SIGCHLD through a signalfd.
fn take_signals() -> Result<SignalFd, String> {
    for sig in [
        Signal::SIGPIPE,
        Signal::SIGHUP,
        Signal::SIGTERM,
        Signal::SIGINT,
    ] {
        sys::ignore_signal(sig).map_err(|e| format!("ignore signal {}: {e}", sig as i32))?;
    }
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)
        .map_err(|e| format!("block SIGCHLD: {e}"))?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| format!("signalfd: {e}"))
}

fn open_log(config: &ContainerConfig) -> Result<Option<CriLog>, String> {
    let Some(path) = &config.log_path else {
        return Ok(None);
    };
    CriLog::open(path, config.log_max_line)
        .map(Some)
        .map_err(ctx("open log", path))
}

/// The init's pid, as the runtime wrote it.
fn read_pid_file(path: &Path) -> Result<i32, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("read pid file {}: {e}", path.display()))?;
    text.trim()
        .parse::<i32>()
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| {
            format!(
                "pid file {} holds {:?}, not a pid",
                path.display(),
                text.trim()
            )
        })
}

impl Monitor {
    /// Sets everything up, runs the runtime's create and returns once it
    /// has succeeded.
    pub(super) fn create(config: ContainerConfig) -> Result<Monitor, Failure> {
        let sockets = [Some(config.socket.clone()), config.console_socket.clone()];
        Monitor::create_container(config).map_err(|msg| Failure { msg, sockets })
    }

    fn create_container(config: ContainerConfig) -> Result<Monitor, String> {
        let signals = take_signals()?;
        let log = open_log(&config)?;
        let control = sys::listen_unix(&config.socket).map_err(ctx("listen on", &config.socket))?;
        let console_listener = match &config.console_socket {
            Some(path) => Some(sys::listen_unix(path).map_err(ctx("listen on", path))?),
            None => None,
        };
        let stdio = Stdio::new(&config)?;
        let runtime_log_start = config
            .runtime_log
            .as_ref()
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| m.len());
        let pid = runtime::spawn(&config, &stdio.child).map_err(|e| format!("fork: {e}"))?;
        // Only the runtime (and the container after it) holds these now.
        drop(stdio.child);
        let stdin_open = config.stdin;
        let mut m = Monitor {
            config,
            signals,
            log,
            control,
            clients: Vec::new(),
            outputs: stdio.outputs,
            pty: None,
            stdin: stdio.stdin,
            stdin_open,
            init: 0,
            exit: None,
            drain_deadline: 0,
            early_exits: Vec::new(),
            read_buf: Box::new_uninit_slice(READ_BUF),
        };
        let mut c = Creating::new(pid, console_listener, stdio.runtime_out);
        m.run_create(&mut c, runtime_log_start)?;
        // What runc wrote for itself in tty mode (warnings) is not the
        // container's output.
        drop(c);
        let init = read_pid_file(&m.config.pid_file)?;
        m.adopt_init(init)?;
        Ok(m)
    }

    /// Waits for the runtime's create to end; Ok when it succeeded (and,
    /// with a tty, sent the terminal).
    fn run_create(&mut self, c: &mut Creating, runtime_log_start: u64) -> Result<(), String> {
        let runtime_exit = loop {
            if let Some(exit) = c.exit {
                break exit;
            }
            self.poll_once(Some(c), -1);
        };
        if runtime_exit.code != 0 {
            self.drain_runtime_stderr(c);
            return Err(self.create_error(c, &runtime_exit, runtime_log_start));
        }
        if self.config.tty {
            self.take_terminal(c)?;
        }
        Ok(())
    }

    /// tty mode: the terminal's master from the console socket, and a
    /// copy of it as the container's output.
    fn take_terminal(&mut self, c: &mut Creating) -> Result<(), String> {
        // runc may have sent the master and exited before we accepted.
        self.service_console(c);
        if let Some(path) = &self.config.console_socket {
            sys::unlink(path);
        }
        c.console_listener = None;
        c.console_conn = None;
        let Some(pty) = &self.pty else {
            self.drain_runtime_stderr(c);
            let detail = String::from_utf8_lossy(&c.stderr_tail).trim().to_string();
            return Err(format!(
                "the runtime exited 0 without sending a terminal to the console socket{}{}",
                if detail.is_empty() { "" } else { ": " },
                detail
            ));
        };
        let copy = pty.try_clone().map_err(|e| format!("dup: {e}"))?;
        sys::set_nonblocking(&copy).map_err(|e| format!("O_NONBLOCK: {e}"))?;
        let max_line = self.config.log_max_line;
        self.outputs
            .push(Output::new(copy, Stream::Stdout, max_line));
        Ok(())
    }

    /// Takes the init as ours: reaped already, or our child.
    fn adopt_init(&mut self, init: i32) -> Result<(), String> {
        self.init = init;
        if let Some(&(_, exit)) = self.early_exits.iter().rev().find(|(p, _)| *p == init) {
            // Killed before we got here; its output is still drained.
            self.init_exited(exit);
        } else if sys::parent_pid(init) != Some(std::process::id() as i32) {
            return Err(format!(
                "container init {init} is not a child of the monitor (parent {:?})",
                sys::parent_pid(init)
            ));
        }
        self.early_exits = Vec::new();
        Ok(())
    }
}
