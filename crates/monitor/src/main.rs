//! `peapod-monitor`: the small single-threaded helper the daemon starts once
//! per pod and once per container. The first argument selects the mode:
//!
//! - `pause`: set up a pod's namespaces and leave behind the pod's infra
//!   process that holds them (see [`pause`]).
//! - `container`: run an OCI runtime's `create` and stay the container's
//!   parent: its stdio, CRI log, control socket and exit status (see
//!   [`container`]).
//! - `exec`: run an OCI runtime's detached `exec` as the subreaper of the
//!   process it starts, and exit with that process (see [`exec`]).
//!
//! Anything else is a usage error (exit 2).

use std::ffi::OsString;
use std::process::ExitCode;

/// Exit code for an unknown mode or a missing mode.
const EXIT_USAGE: u8 = 2;

const USAGE: &str = "usage: peapod-monitor pause [--net] [--ipc] [--uts] [--pid] \
[--hostname NAME] [--sysctl KEY=VALUE]... [--pause-bin PATH]";

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match args.split_first() {
        Some((mode, rest)) if mode == "pause" => pause::main(rest),
        Some((mode, rest)) if mode == "container" => container::main(rest),
        Some((mode, rest)) if mode == "exec" => exec::main(rest),
        _ => {
            eprintln!(
                "{USAGE}\n       {}",
                container::USAGE.trim_start_matches("usage: ")
            );
            ExitCode::from(EXIT_USAGE)
        }
    }
}

mod container;
mod crilog;
mod exec;
mod pause;
mod runtime_log;
mod sys;
