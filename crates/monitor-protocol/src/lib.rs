//! The protocol between the peapod daemon and `peapod-monitor`, defined
//! once and compiled by both: the daemon encodes with these types and the
//! monitor parses with them (and the other way round for answers).
//!
//! The monitor's first argument is its mode:
//!
//! - `container` ([`container`]): `peapod-monitor container --id ID
//!   --config PATH`, where PATH holds a [`ContainerConfig`] as JSON. The
//!   monitor answers on stdout with [`Answer`] lines (`monitor <pid>`, then
//!   `ok <init pid>` or `error <message>`), stays the container's parent,
//!   writes its [`ExitStatus`] to the exit file and serves the control
//!   socket ([`control`]: `reopen`, `resize W H`, `attach`; after an
//!   attach the connection carries [`frame`]s).
//! - `pause` ([`pause`]): `peapod-monitor pause [flags]` from a
//!   [`PauseConfig`]; one answer line, `ok <infra pid>` or `error <message>`.
//! - `exec` ([`exec`]): `peapod-monitor exec --pid-file PATH -- RUNTIME
//!   ARGV...` from an [`ExecArgs`]; the exit code is the command's, or
//!   [`exec::EXIT_RUNTIME`] when the runtime failed.
//!
//! Anything else is a usage error: exit code [`EXIT_USAGE`], a usage text on
//! stderr.

pub mod answer;
pub mod container;
pub mod control;
pub mod exec;
pub mod exit;
pub mod frame;
pub mod idmap;
pub mod pause;

pub use answer::Answer;
pub use container::{ContainerArgs, ContainerConfig, DEFAULT_DRAIN_TIMEOUT, DEFAULT_LOG_MAX_LINE};
pub use control::{Reply, Request};
pub use exec::ExecArgs;
pub use exit::ExitStatus;
pub use frame::{Frame, FrameDecoder};
pub use idmap::{IdMap, UserNamespaceMaps};
pub use pause::PauseConfig;

/// The monitor's modes, its first argument.
pub const MODE_CONTAINER: &str = "container";
pub const MODE_PAUSE: &str = "pause";
pub const MODE_EXEC: &str = "exec";

/// The monitor's exit code for an unknown mode, bad arguments or a bad
/// container config.
pub const EXIT_USAGE: u8 = 2;

/// One line, whatever the message holds: the line protocols end every
/// message at the first newline.
pub fn one_line(msg: &str) -> String {
    msg.trim()
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_become_one_line() {
        assert_eq!(one_line(" a\nb\r\nc \n"), "a b  c");
    }
}
