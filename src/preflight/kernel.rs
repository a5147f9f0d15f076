//! The kernel: its version, pidfds, seccomp filters.

use std::io;

use super::Finding;
use crate::process::PidFd;

const OSRELEASE: &str = "/proc/sys/kernel/osrelease";

/// pidfd_open (5.3): how peapod learns of process exits without polling
/// and signals without racing pid reuse.
const REQUIRED: (u32, u32) = (5, 3);

/// Idmapped tmpfs mounts (6.3): a user-namespaced pod's /dev/shm is one.
const USERNS_SHM: (u32, u32) = (6, 3);

pub(super) fn version() -> Finding {
    match std::fs::read_to_string(OSRELEASE) {
        Ok(release) => judge_kernel(release.trim()),
        Err(e) => Finding::fail(
            "kernel",
            format!("cannot read {OSRELEASE}: {e}"),
            "mount procfs on /proc",
        ),
    }
}

/// `6.18.44-fc` → (6, 18).
fn major_minor(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn judge_kernel(release: &str) -> Finding {
    let Some(version) = major_minor(release) else {
        return Finding::warn(
            "kernel",
            release,
            "could not read a version out of the kernel release; peapod needs Linux 5.3, 6.3 for user-namespaced pods",
        );
    };
    if version < REQUIRED {
        return Finding::fail(
            "kernel",
            release,
            "upgrade to Linux 5.3 or later: peapod watches and signals processes through pidfds (pidfd_open)",
        );
    }
    if version < USERNS_SHM {
        return Finding::warn(
            "kernel",
            release,
            "upgrade to Linux 6.3 or later to run pods with a user namespace: their /dev/shm is an idmapped tmpfs mount, which older kernels refuse",
        );
    }
    Finding::ok("kernel", release)
}

pub(super) fn pidfd() -> Finding {
    match PidFd::open(std::process::id() as i32) {
        Ok(_) => Finding::ok("pidfd", "pidfd_open works"),
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => Finding::fail(
            "pidfd",
            format!("pidfd_open: {e}"),
            "upgrade to Linux 5.3 or later",
        ),
        Err(e) => Finding::fail(
            "pidfd",
            format!("pidfd_open: {e}"),
            "allow pidfd_open to peapod (a seccomp filter of the container or service manager peapod runs in may refuse it)",
        ),
    }
}

pub(super) fn seccomp() -> Finding {
    let mode = own_seccomp_mode();
    match seccomp_filters_supported() {
        Ok(true) => Finding::ok(
            "seccomp",
            format!("seccomp filters supported (this process: {mode})"),
        ),
        Ok(false) => Finding::warn(
            "seccomp",
            format!("seccomp filters not supported ({mode})"),
            "use a kernel built with CONFIG_SECCOMP_FILTER: containers with a seccomp profile (RuntimeDefault, Localhost) fail to start without it",
        ),
        Err(e) => Finding::warn(
            "seccomp",
            format!("cannot tell: prctl(PR_GET_SECCOMP): {e}"),
            "use a kernel built with CONFIG_SECCOMP and CONFIG_SECCOMP_FILTER",
        ),
    }
}

/// The `Seccomp:` line of /proc/self/status, as words.
fn own_seccomp_mode() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mode = status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .map(str::trim);
    match mode {
        Some("0") => "Seccomp: 0, unconfined".to_string(),
        Some("1") => "Seccomp: 1, strict".to_string(),
        Some("2") => "Seccomp: 2, filtered".to_string(),
        Some(other) => format!("Seccomp: {other}"),
        None => "no Seccomp field in /proc/self/status".to_string(),
    }
}

/// Whether the kernel takes seccomp filters. PR_SET_SECCOMP with a null
/// filter fails with EFAULT (or EACCES without no_new_privs) when it does,
/// EINVAL when it does not, and changes nothing either way.
fn seccomp_filters_supported() -> io::Result<bool> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) } < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EINVAL) => Ok(false),
            _ => Err(e),
        };
    }
    // SAFETY: a null filter pointer: the kernel faults on reading it and
    // installs nothing.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            std::ptr::null::<libc::c_void>(),
            0,
            0,
        )
    };
    let errno = (r < 0).then(|| io::Error::last_os_error().raw_os_error());
    Ok(!matches!(errno, Some(Some(libc::EINVAL))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preflight::Level;

    #[test]
    fn kernel_thresholds() {
        let level = |r: &str| judge_kernel(r).level;
        assert_eq!(level("4.19.0-21-amd64"), Level::Fail);
        assert_eq!(level("5.2.9"), Level::Fail);
        assert_eq!(level("5.3.0"), Level::Warn);
        assert_eq!(level("5.15.0-91-generic"), Level::Warn);
        assert_eq!(level("6.2.16"), Level::Warn);
        assert_eq!(level("6.3"), Level::Ok);
        assert_eq!(level("6.18.44-fc-v1300"), Level::Ok);
        assert_eq!(level("10.0.1"), Level::Ok);
        assert_eq!(level("weird"), Level::Warn);
        let f = judge_kernel("6.1.0-18-amd64");
        assert_eq!(f.found, "6.1.0-18-amd64");
        assert!(f.fix.unwrap().contains("6.3"));
        assert_eq!(judge_kernel("6.3.1").fix, None);
    }

    #[test]
    fn release_versions() {
        assert_eq!(major_minor("6.18.44-fc-v1300"), Some((6, 18)));
        assert_eq!(major_minor("5.10.0-rc1"), Some((5, 10)));
        assert_eq!(major_minor("6"), None);
        assert_eq!(major_minor(""), None);
    }

    #[test]
    fn this_kernel_takes_seccomp_filters_and_pidfds() {
        // Every kernel peapod supports has both; what the checks report
        // must agree with the kernel's own status file.
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(status.contains("\nSeccomp:"), "no Seccomp field: {status}");
        assert_eq!(seccomp().level, Level::Ok, "{:?}", seccomp());
        assert_eq!(pidfd().level, Level::Ok, "{:?}", pidfd());
    }
}
