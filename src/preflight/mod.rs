//! `peapod check`: a preflight of the host against a config. Each check
//! looks at what the kernel and the installed tools show — by reading
//! /proc and /sys, by trying the mount, system call or container the
//! daemon will need — and says OK, WARN (peapod runs, something is
//! missing) or FAIL (peapod or its pods will not work), with the value
//! found and, for anything not OK, a one-line fix.
//!
//! The daemon runs the same checks at start and logs the WARN and FAIL
//! ones ([`log_findings`]).
//!
//! - `kernel`: the kernel version, pidfd, seccomp;
//! - `storage`: overlayfs, idmapped mounts, the socket directory, free space;
//! - `cgroups`: the cgroup layout and the cgroup driver against the host;
//! - `runtimes`: each runtime handler, run once;
//! - `cni`: the network config and its plugins;
//! - `security`: AppArmor/SELinux, the `oom_score_adj` floor;
//! - `render`: text, JSON, exit code, log lines.

mod cgroups;
mod cni;
mod kernel;
mod render;
mod runtimes;
mod security;
mod storage;

use std::borrow::Cow;

use serde::Serialize;

use crate::config::Config;

pub use render::{exit_code, log_findings, render_json, render_text};

/// How a check came out, in increasing gravity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    /// peapod runs, but something pods may ask for is missing.
    Warn,
    /// peapod, or every pod, will not work until this is fixed.
    Fail,
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// A stable id: `kernel`, `overlayfs`, `idmapped-mounts`, `pidfd`,
    /// `seccomp`, `cgroup-layout`, `cgroup-driver`, `runtime:<handler>`,
    /// `cni`, `lsm`, `oom-score-adj`, `socket-dir`, `disk-space`.
    pub check: Cow<'static, str>,
    pub level: Level,
    /// The value found.
    pub found: String,
    /// One line saying what to do; for every level but OK.
    pub fix: Option<String>,
}

impl Finding {
    pub(crate) fn ok(check: impl Into<Cow<'static, str>>, found: impl Into<String>) -> Finding {
        Finding {
            check: check.into(),
            level: Level::Ok,
            found: found.into(),
            fix: None,
        }
    }

    pub(crate) fn warn(
        check: impl Into<Cow<'static, str>>,
        found: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding::not_ok(check, Level::Warn, found, fix)
    }

    pub(crate) fn fail(
        check: impl Into<Cow<'static, str>>,
        found: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding::not_ok(check, Level::Fail, found, fix)
    }

    pub(crate) fn not_ok(
        check: impl Into<Cow<'static, str>>,
        level: Level,
        found: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            check: check.into(),
            level,
            found: found.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Examines the host against `config`, one finding per check, in a fixed
/// order. Runs each runtime handler once (a container of `true`, with
/// the host's /usr read-only) and makes and removes test mounts and
/// directories next to the configured ones; needs root for those.
pub async fn check_host(config: &Config) -> Vec<Finding> {
    let mut findings = vec![
        kernel::version(),
        storage::overlayfs(&config.root_dir),
        storage::idmapped_mounts(&config.state_dir),
        kernel::pidfd(),
        kernel::seccomp(),
        cgroups::layout(config),
        cgroups::driver(config.cgroup_driver),
    ];
    findings.extend(runtimes::check_all(config).await);
    findings.extend([
        cni::network(config),
        security::lsm(),
        security::oom_score_adj(config.restrict_oom_score_adj),
        storage::socket_dir(&config.socket),
        storage::disk_space(&config.root_dir),
    ]);
    findings
}

/// Whether this process may mount and run containers: the probes that
/// need it say so instead of failing with EPERM.
fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// What a probe that needs root says when run without it.
fn not_root(check: impl Into<Cow<'static, str>>, what: &str) -> Finding {
    Finding::warn(
        check,
        format!(
            "{what}: not tried, this check runs as uid {}",
            nix::unistd::geteuid()
        ),
        "run `peapod check` as root, as the daemon runs",
    )
}
