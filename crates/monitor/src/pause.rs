//! `peapod-monitor pause`: creates the pod's namespaces and forks the pod's
//! infra process into them.
//!
//! Contract with the daemon (`peapod_monitor_protocol::pause`): exactly one
//! line on stdout, `ok <pid>\n` (the infra process's pid in the caller's
//! PID namespace) and exit 0, or `error <message>\n` and exit 1 with
//! nothing left running. The infra process is not our child once we exit,
//! has its own session, and holds only /dev/null as stdio, so the daemon's
//! pipe sees EOF when we exit.

use std::ffi::{CString, OsString};
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::ExitCode;

use nix::errno::Errno;
use nix::fcntl::{fcntl, open, FcntlArg, OFlag};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{chdir, execve, fork, pipe2, read, sethostname, setsid, ForkResult, Pid};
use peapod_monitor_protocol::pause::{ArgError, PauseConfig, Sysctl};
use peapod_monitor_protocol::Answer;

use crate::sys;

/// argv[0] of the pause program.
const PAUSE_BIN_NAME: &str = "peapod-pause";

/// Exit code of the in-process fallback loop when sigwait fails; looping
/// on the error would spin.
const EXIT_LOOP_FAILED: i32 = 2;

/// Exit code of the forked child when its setup fails (reported through
/// the status pipe first).
const EXIT_CHILD_SETUP: i32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum PauseError {
    #[error("{0}")]
    Argument(#[from] ArgError),
    #[error("setsid: {0}")]
    Setsid(Errno),
    #[error("{0}")]
    Userns(#[from] crate::userns::UsernsError),
    #[error("unshare({flags}): {errno}")]
    Unshare { flags: String, errno: Errno },
    #[error("sethostname {name:?}: {errno}")]
    Sethostname { name: String, errno: Errno },
    #[error("sysctl {key}: open {path}: {errno}")]
    SysctlOpen {
        key: String,
        path: String,
        errno: Errno,
    },
    #[error("sysctl {key}: write {value:?} to {path}: {errno}")]
    SysctlWrite {
        key: String,
        value: String,
        path: String,
        errno: Errno,
    },
    #[error("sysctl {key}: short write to {path}: {written} of {len} bytes")]
    SysctlShortWrite {
        key: String,
        path: String,
        written: usize,
        len: usize,
    },
    #[error("block signals: {0}")]
    BlockSignals(Errno),
    #[error("status pipe: {0}")]
    Pipe(Errno),
    #[error("fork: {0}")]
    Fork(Errno),
    #[error("read infra child status: {0}")]
    ReadStatus(Errno),
    #[error("infra child {pid}: {message}")]
    Child { pid: i32, message: String },
    #[error("write ok line to stdout: {0}")]
    WriteOk(std::io::Error),
}

/// The namespaces to create.
fn clone_flags(config: &PauseConfig) -> CloneFlags {
    let mut flags = CloneFlags::empty();
    flags.set(CloneFlags::CLONE_NEWNET, config.net);
    flags.set(CloneFlags::CLONE_NEWIPC, config.ipc);
    flags.set(CloneFlags::CLONE_NEWUTS, config.uts);
    flags.set(CloneFlags::CLONE_NEWPID, config.pid);
    flags
}

/// Names of the set flags, for error messages.
fn flag_names(flags: CloneFlags) -> String {
    let names: Vec<&str> = [
        (CloneFlags::CLONE_NEWNET, "CLONE_NEWNET"),
        (CloneFlags::CLONE_NEWIPC, "CLONE_NEWIPC"),
        (CloneFlags::CLONE_NEWUTS, "CLONE_NEWUTS"),
        (CloneFlags::CLONE_NEWPID, "CLONE_NEWPID"),
    ]
    .iter()
    .filter(|(f, _)| flags.contains(*f))
    .map(|(_, n)| *n)
    .collect();
    names.join("|")
}

/// The line printed for a failure: one line, whatever the message holds.
fn error_line(err: &PauseError) -> String {
    Answer::Error(err.to_string()).encode()
}

pub fn main(args: &[OsString]) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Nothing else can be told if stdout is gone too.
            let _ = std::io::stdout().write_all(error_line(&err).as_bytes());
            let _ = std::io::stdout().flush();
            ExitCode::FAILURE
        }
    }
}

/// The static pause program (pause/main.rs), built by build.rs.
const PAUSE_IMAGE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/peapod-pause"));

/// What the infra child execs, prepared before fork: a file named by
/// `--pause-bin`, or (by default) the embedded pause program.
struct ExecTarget {
    path: Option<CString>,
    argv: [CString; 1],
}

fn exec_target(config: &PauseConfig) -> Option<ExecTarget> {
    let path = match &config.pause_bin {
        Some(p) => Some(CString::new(p.as_os_str().as_bytes()).ok()?),
        None => None,
    };
    Some(ExecTarget {
        path,
        argv: [CString::new(PAUSE_BIN_NAME).ok()?],
    })
}

/// Execs the embedded pause program from a memfd, so that nothing needs
/// installing beside the two binaries. Returns only on failure.
fn exec_embedded(argv: &[CString; 1], env: &[&std::ffi::CStr; 0]) {
    let Ok(fd) =
        nix::sys::memfd::memfd_create(c"peapod-pause", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
    else {
        return;
    };
    let mut written = 0;
    while written < PAUSE_IMAGE.len() {
        match nix::unistd::write(&fd, &PAUSE_IMAGE[written..]) {
            Ok(n) if n > 0 => written += n,
            Err(Errno::EINTR) => {}
            _ => return,
        }
    }
    // CLOEXEC is fine for an ELF image: the kernel has mapped it by the
    // time it closes the fd.
    let _ = nix::unistd::fexecve(&fd, argv, env);
}

fn wait_set() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.add(Signal::SIGCHLD);
    set
}

fn write_sysctl(sysctl: &Sysctl) -> Result<(), PauseError> {
    let path = sysctl.proc_path();
    // Opening and writing from this process applies the value to the
    // namespaces it now lives in (net and ipc sysctls are per namespace
    // of the writer).
    let fd = open(
        Path::new(&path),
        OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| PauseError::SysctlOpen {
        key: sysctl.key.clone(),
        path: path.clone(),
        errno,
    })?;
    let bytes = sysctl.value.as_bytes();
    // One write: procfs parses each write call as a whole value.
    let written = nix::unistd::write(&fd, bytes).map_err(|errno| PauseError::SysctlWrite {
        key: sysctl.key.clone(),
        value: sysctl.value.clone(),
        path: path.clone(),
        errno,
    })?;
    if written != bytes.len() {
        return Err(PauseError::SysctlShortWrite {
            key: sysctl.key.clone(),
            path,
            written,
            len: bytes.len(),
        });
    }
    Ok(())
}

fn run(args: &[OsString]) -> Result<(), PauseError> {
    let config = PauseConfig::parse(args)?;
    let target = exec_target(&config);

    // EPERM means we are already a process group leader; the child calls
    // setsid() itself, so the infra process is detached either way.
    match setsid() {
        Ok(_) | Err(Errno::EPERM) => {}
        Err(errno) => return Err(PauseError::Setsid(errno)),
    }

    // First, so that it owns every namespace created after it.
    if let Some(maps) = &config.userns {
        crate::userns::enter(maps)?;
    }
    let flags = clone_flags(&config);
    if !flags.is_empty() {
        unshare(flags).map_err(|errno| PauseError::Unshare {
            flags: flag_names(flags),
            errno,
        })?;
    }
    if let Some(name) = &config.hostname {
        sethostname(name).map_err(|errno| PauseError::Sethostname {
            name: name.clone(),
            errno,
        })?;
    }
    for sysctl in &config.sysctls {
        write_sysctl(sysctl)?;
    }

    // Blocked before fork so that the child never has a moment where a
    // SIGTERM meant for it is discarded (PID 1 of a PID namespace drops
    // signals it has no handler for, but blocked ones stay pending).
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&wait_set()), None)
        .map_err(PauseError::BlockSignals)?;

    // The child reports setup failures here; a successful exec closes
    // it (O_CLOEXEC), so EOF without data means the child is running.
    let (status_read, status_write) = pipe2(OFlag::O_CLOEXEC).map_err(PauseError::Pipe)?;

    // SAFETY: this program is single-threaded, so the child may do
    // anything the parent could.
    match unsafe { fork() }.map_err(PauseError::Fork)? {
        ForkResult::Child => {
            drop(status_read);
            infra_child(status_write, target.as_ref())
        }
        ForkResult::Parent { child } => {
            drop(status_write);
            report_child(status_read, child)
        }
    }
}

fn read_status(fd: &OwnedFd) -> Result<Vec<u8>, Errno> {
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        match read(fd, &mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(Errno::EINTR) => {}
            Err(errno) => return Err(errno),
        }
    }
}

/// Kills and reaps a child that will not become the infra process.
fn discard_child(child: Pid) {
    let _ = kill(child, Signal::SIGKILL);
    while let Err(Errno::EINTR) = waitpid(child, Some(WaitPidFlag::__WALL)) {}
}

fn report_child(status_read: OwnedFd, child: Pid) -> Result<(), PauseError> {
    let status = match read_status(&status_read) {
        Ok(status) => status,
        Err(errno) => {
            discard_child(child);
            return Err(PauseError::ReadStatus(errno));
        }
    };
    if !status.is_empty() {
        discard_child(child);
        return Err(PauseError::Child {
            pid: child.as_raw(),
            message: String::from_utf8_lossy(&status).into_owned(),
        });
    }
    // EOF without a message also comes from a child that died before
    // exec (killed from outside): do not announce a dead pid.
    match waitpid(child, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
        Ok(WaitStatus::StillAlive) => {}
        Ok(status) => {
            return Err(PauseError::Child {
                pid: child.as_raw(),
                message: format!("ended before it was ready: {status:?}"),
            })
        }
        Err(errno) => {
            discard_child(child);
            return Err(PauseError::Child {
                pid: child.as_raw(),
                message: format!("waitpid: {errno}"),
            });
        }
    }
    let line = Answer::Ok(child.as_raw()).encode();
    let mut stdout = std::io::stdout().lock();
    if let Err(err) = stdout
        .write_all(line.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // Nobody learned the pid: do not leave an unknown pod behind.
        discard_child(child);
        return Err(PauseError::WriteOk(err));
    }
    Ok(())
}

/// Reports a failed setup step to the parent and exits.
fn child_fail(status: RawFd, step: &str, errno: Errno) -> ! {
    let msg = format!("{step}: {errno}");
    // SAFETY: writing a live buffer to our own pipe fd, then _exit,
    // which runs nothing of the parent's state.
    unsafe {
        libc::write(status, msg.as_ptr().cast(), msg.len());
        libc::_exit(EXIT_CHILD_SETUP)
    }
}

/// The forked child: becomes the infra process. Never returns.
fn infra_child(status_write: OwnedFd, target: Option<&ExecTarget>) -> ! {
    // Keep the status pipe clear of fds 0-2 before they are replaced.
    let status = match fcntl(&status_write, FcntlArg::F_DUPFD_CLOEXEC(3)) {
        Ok(fd) => fd,
        Err(errno) => child_fail(status_write.as_raw_fd(), "dup status pipe", errno),
    };
    // The dup is now the only copy we keep; the original is closed below
    // with every other fd.
    std::mem::forget(status_write);

    // Our own session and process group: no signal aimed at the daemon's
    // or the monitor's group reaches the pod.
    if let Err(errno) = setsid() {
        child_fail(status, "setsid", errno);
    }
    if let Err(errno) = chdir("/") {
        child_fail(status, "chdir /", errno);
    }
    sys::reset_signal_dispositions();
    if let Err(errno) = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&wait_set()), None) {
        child_fail(status, "set signal mask", errno);
    }
    let null = match open("/dev/null", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty()) {
        Ok(fd) => fd,
        Err(errno) => child_fail(status, "open /dev/null", errno),
    };
    // dup2 clears O_CLOEXEC on the copies, so they survive exec.
    let redirected = nix::unistd::dup2_stdin(&null)
        .and_then(|()| nix::unistd::dup2_stdout(&null))
        .and_then(|()| nix::unistd::dup2_stderr(&null));
    if let Err(errno) = redirected {
        child_fail(status, "redirect stdio to /dev/null", errno);
    }
    drop(null);
    // Everything but stdio and the status pipe goes, including the
    // daemon's pipe if it was inherited on another fd.
    sys::close_fds(3, (status as u32).saturating_sub(1));
    sys::close_fds(status.saturating_add(1), u32::MAX);

    if let Some(target) = target {
        let env: [&std::ffi::CStr; 0] = [];
        // Only returns on failure; fall back to the loop below.
        match &target.path {
            Some(path) => {
                let _ = execve(path, &target.argv, &env);
            }
            None => exec_embedded(&target.argv, &env),
        }
    }
    // No exec: tell the parent we are ready by closing the pipe, then
    // run the same loop in this (larger) process.
    // SAFETY: closing our own fd, not used afterwards.
    unsafe { libc::close(status) };
    pause_loop()
}

/// The pause loop, for when the static pause binary cannot be exec'd:
/// exit 0 on SIGTERM/SIGINT, reap every child on SIGCHLD, sleep
/// otherwise. The signals are already blocked, which is what makes
/// them reach us as PID 1 of a PID namespace.
fn pause_loop() -> ! {
    let set = wait_set();
    reap_children();
    loop {
        match set.wait() {
            Ok(Signal::SIGTERM | Signal::SIGINT) => {
                // SAFETY: exit without running anything inherited.
                unsafe { libc::_exit(0) }
            }
            Ok(_) => reap_children(),
            Err(Errno::EINTR) => {}
            // SAFETY: as above.
            Err(_) => unsafe { libc::_exit(EXIT_LOOP_FAILED) },
        }
    }
}

fn reap_children() {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_flags_keep_every_host_namespace() {
        assert!(clone_flags(&PauseConfig::default()).is_empty());
    }

    #[test]
    fn every_namespace() {
        let config = PauseConfig {
            net: true,
            ipc: true,
            uts: true,
            pid: true,
            ..PauseConfig::default()
        };
        assert_eq!(
            clone_flags(&config),
            CloneFlags::CLONE_NEWNET
                | CloneFlags::CLONE_NEWIPC
                | CloneFlags::CLONE_NEWUTS
                | CloneFlags::CLONE_NEWPID
        );
    }

    #[test]
    fn error_line_is_one_line() {
        let err = PauseError::Argument(ArgError {
            arg: "--x".into(),
            reason: "a\nb\rc".into(),
        });
        assert_eq!(error_line(&err), "error argument --x: a b c\n");
        let err = PauseError::Unshare {
            flags: flag_names(CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWPID),
            errno: Errno::EPERM,
        };
        assert_eq!(
            error_line(&err),
            "error unshare(CLONE_NEWNET|CLONE_NEWPID): EPERM: Operation not permitted\n"
        );
    }

    #[test]
    fn default_pause_program_is_the_embedded_one() {
        let target = exec_target(&PauseConfig::default()).expect("target");
        assert!(target.path.is_none());
        assert_eq!(target.argv[0].to_bytes(), b"peapod-pause");
        // A static ELF executable, not a placeholder.
        assert_eq!(&PAUSE_IMAGE[..4], b"\x7fELF");
        assert!(PAUSE_IMAGE.len() > 1000);
    }
}
