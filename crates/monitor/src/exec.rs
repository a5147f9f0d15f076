//! `peapod-monitor exec`: runs an OCI runtime's detached `exec` and waits
//! for the process it started, for ExecSync.
//!
//! A runtime's attached `exec` makes itself the child subreaper and returns
//! only when every process the command left behind has exited, so a probe
//! that starts a background child would hold ExecSync until that child
//! ends. Here the runtime runs detached; this process is the subreaper the
//! started process falls to, and exits as soon as that one process has:
//! with its exit code, or 128 + the signal that killed it.
//!
//! The command line and the exit codes are `peapod_monitor_protocol::exec`'s.
//! stdio is inherited by the runtime and the process (the daemon's pipes).

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{execvp, fork, ForkResult, Pid};
use peapod_monitor_protocol::exec::{ExecArgs, EXIT_RUNTIME, USAGE};
use peapod_monitor_protocol::EXIT_USAGE;

/// 128 + signal for a signalled process, as shells and runtimes report it.
fn code_of(status: WaitStatus) -> Option<u8> {
    match status {
        WaitStatus::Exited(_, code) => Some(code as u8),
        WaitStatus::Signaled(_, sig, _) => Some(128u8.wrapping_add(sig as u8)),
        _ => None,
    }
}

/// Waits for `pid`, reaping whatever else falls to this subreaper.
fn wait_for(pid: Pid) -> Result<WaitStatus, Errno> {
    loop {
        match waitpid(None, Some(WaitPidFlag::__WALL)) {
            Ok(s) if s.pid() == Some(pid) && code_of(s).is_some() => return Ok(s),
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
}

pub fn main(args: &[OsString]) -> ExitCode {
    let Some(args) = ExecArgs::parse(args) else {
        eprintln!("{USAGE}");
        return ExitCode::from(EXIT_USAGE);
    };
    if nix::sys::prctl::set_child_subreaper(true).is_err() {
        return ExitCode::from(EXIT_RUNTIME);
    }
    let Ok(argv) = args
        .runtime_argv
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<Vec<CString>, _>>()
    else {
        return ExitCode::from(EXIT_RUNTIME);
    };
    // SAFETY: single-threaded; the child only execs (or exits).
    let runtime = match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            // The runtime (and through it the command) starts as from a
            // shell, not with this binary's ignored SIGPIPE.
            crate::sys::reset_signal_dispositions();
            let _ = nix::sys::signal::sigprocmask(
                nix::sys::signal::SigmaskHow::SIG_SETMASK,
                Some(&nix::sys::signal::SigSet::empty()),
                None,
            );
            let _ = execvp(&argv[0], &argv);
            // SAFETY: leave the forked child without running anything else.
            unsafe { libc::_exit(EXIT_RUNTIME as i32) }
        }
        Ok(ForkResult::Parent { child }) => child,
        Err(_) => return ExitCode::from(EXIT_RUNTIME),
    };
    // Only the runtime: its detached process may fall to us and exit
    // before the runtime is reaped, and must stay for `wait_for` below.
    loop {
        match waitpid(runtime, Some(WaitPidFlag::__WALL)) {
            Ok(WaitStatus::Exited(_, 0)) => break,
            Err(Errno::EINTR) => {}
            Ok(s) if code_of(s).is_none() => {}
            _ => return ExitCode::from(EXIT_RUNTIME),
        }
    }
    let pid = std::fs::read_to_string(&args.pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok());
    let Some(pid) = pid else {
        return ExitCode::from(EXIT_RUNTIME);
    };
    // The runtime has exited, so its detached process is ours now (exited
    // already or not: a zombie is reparented too).
    match wait_for(Pid::from_raw(pid)).ok().and_then(code_of) {
        Some(code) => ExitCode::from(code),
        None => ExitCode::from(EXIT_RUNTIME),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        let p = Pid::from_raw(1);
        assert_eq!(code_of(WaitStatus::Exited(p, 3)), Some(3));
        assert_eq!(
            code_of(WaitStatus::Signaled(
                p,
                nix::sys::signal::Signal::SIGKILL,
                false
            )),
            Some(137)
        );
    }
}
