//! `peapod-monitor`: the small single-threaded helper the daemon starts once
//! per pod and once per container. The first argument selects the mode;
//! the protocol of each is defined in `peapod_monitor_protocol`:
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

use peapod_monitor_protocol::{
    self as protocol, EXIT_USAGE, MODE_CONTAINER, MODE_EXEC, MODE_PAUSE,
};

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match args.split_first() {
        Some((mode, rest)) if mode == MODE_PAUSE => pause::main(rest),
        Some((mode, rest)) if mode == MODE_CONTAINER => container::main(rest),
        Some((mode, rest)) if mode == MODE_EXEC => exec::main(rest),
        _ => {
            eprintln!(
                "{}\n       {}",
                protocol::pause::USAGE,
                protocol::container::USAGE.trim_start_matches("usage: ")
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
mod userns;
