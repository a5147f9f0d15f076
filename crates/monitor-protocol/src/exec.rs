//! `peapod-monitor exec --pid-file PATH -- RUNTIME ARGV...`: run an OCI
//! runtime's detached `exec` (ARGV holds `exec --detach --pid-file PATH`)
//! as the subreaper of the process it starts, and exit with that
//! process: its exit code, or 128 + the signal that killed it; or
//! [`EXIT_RUNTIME`] when the runtime failed (its own log says why). stdio
//! is inherited by the runtime and the process.

use std::ffi::OsString;
use std::path::PathBuf;

/// The runtime's exec failed, or the started process could not be found.
pub const EXIT_RUNTIME: u8 = 255;

pub const USAGE: &str = "usage: peapod-monitor exec --pid-file PATH -- RUNTIME ARGV...";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecArgs {
    /// Where the runtime writes the started process's pid.
    pub pid_file: PathBuf,
    /// The runtime's whole exec command.
    pub runtime_argv: Vec<OsString>,
}

impl ExecArgs {
    /// The monitor's argv after the binary, mode first.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            crate::MODE_EXEC.into(),
            "--pid-file".into(),
            self.pid_file.clone().into(),
            "--".into(),
        ];
        args.extend(self.runtime_argv.iter().cloned());
        args
    }

    /// Parses the arguments after the mode; None for a usage error.
    pub fn parse(args: &[OsString]) -> Option<ExecArgs> {
        let mut pid_file = None;
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.to_str() {
                Some("--pid-file") => pid_file = Some(PathBuf::from(it.next()?)),
                Some("--") => {
                    let runtime_argv: Vec<OsString> = it.cloned().collect();
                    if runtime_argv.is_empty() {
                        return None;
                    }
                    return Some(ExecArgs {
                        pid_file: pid_file?,
                        runtime_argv,
                    });
                }
                _ => return None,
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn arguments() {
        let a = ExecArgs::parse(&os(&["--pid-file", "/p", "--", "runc", "exec"])).unwrap();
        assert_eq!(a.pid_file, PathBuf::from("/p"));
        assert_eq!(a.runtime_argv, os(&["runc", "exec"]));
        assert!(ExecArgs::parse(&os(&["--", "runc"])).is_none());
        assert!(ExecArgs::parse(&os(&["--pid-file", "/p", "--"])).is_none());
        assert!(ExecArgs::parse(&os(&["--bogus"])).is_none());
        assert!(ExecArgs::parse(&os(&["--pid-file"])).is_none());
    }

    #[test]
    fn encode_then_parse() {
        let a = ExecArgs {
            pid_file: "/b/exec.pid".into(),
            runtime_argv: os(&["runc", "exec", "--detach", "--pid-file", "/b/exec.pid", "c"]),
        };
        let argv = a.to_args();
        assert_eq!(&argv[..4], os(&["exec", "--pid-file", "/b/exec.pid", "--"]));
        assert_eq!(ExecArgs::parse(&argv[1..]), Some(a));
    }
}
