//! Capabilities, seccomp, AppArmor, SELinux and masked paths of a container:
//! the CRI security context turned into the parts of an OCI runtime spec.
//!
//! Everything here is pure logic over the request and a few host files
//! (whose paths tests can replace); nothing is applied to a process.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Arch, Capabilities, Capability, LinuxCapabilities, LinuxSeccomp, LinuxSeccompAction,
    LinuxSeccompArg, LinuxSeccompArgBuilder, LinuxSeccompFilterFlag, LinuxSeccompOperator,
    LinuxSyscall,
};
use serde::Deserialize;

use crate::api::security_profile::ProfileType;

#[derive(Debug, Clone, thiserror::Error)]
pub enum SecurityError {
    /// A request field is wrong; `field` is its path in the CreateContainerRequest,
    /// e.g. "config.linux.security_context.capabilities.add_capabilities[2]".
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// Something the host lacks (e.g. AppArmor), stated clearly.
    #[error("{0}")]
    Unsupported(String),
}

impl SecurityError {
    fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        SecurityError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

// ---------------------------------------------------------------------------
// Capabilities
// ---------------------------------------------------------------------------

/// Every capability the kernel defines, indexed by its number (0..=40).
const CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",              // 0
    "CAP_DAC_OVERRIDE",       // 1
    "CAP_DAC_READ_SEARCH",    // 2
    "CAP_FOWNER",             // 3
    "CAP_FSETID",             // 4
    "CAP_KILL",               // 5
    "CAP_SETGID",             // 6
    "CAP_SETUID",             // 7
    "CAP_SETPCAP",            // 8
    "CAP_LINUX_IMMUTABLE",    // 9
    "CAP_NET_BIND_SERVICE",   // 10
    "CAP_NET_BROADCAST",      // 11
    "CAP_NET_ADMIN",          // 12
    "CAP_NET_RAW",            // 13
    "CAP_IPC_LOCK",           // 14
    "CAP_IPC_OWNER",          // 15
    "CAP_SYS_MODULE",         // 16
    "CAP_SYS_RAWIO",          // 17
    "CAP_SYS_CHROOT",         // 18
    "CAP_SYS_PTRACE",         // 19
    "CAP_SYS_PACCT",          // 20
    "CAP_SYS_ADMIN",          // 21
    "CAP_SYS_BOOT",           // 22
    "CAP_SYS_NICE",           // 23
    "CAP_SYS_RESOURCE",       // 24
    "CAP_SYS_TIME",           // 25
    "CAP_SYS_TTY_CONFIG",     // 26
    "CAP_MKNOD",              // 27
    "CAP_LEASE",              // 28
    "CAP_AUDIT_WRITE",        // 29
    "CAP_AUDIT_CONTROL",      // 30
    "CAP_SETFCAP",            // 31
    "CAP_MAC_OVERRIDE",       // 32
    "CAP_MAC_ADMIN",          // 33
    "CAP_SYSLOG",             // 34
    "CAP_WAKE_ALARM",         // 35
    "CAP_BLOCK_SUSPEND",      // 36
    "CAP_AUDIT_READ",         // 37
    "CAP_PERFMON",            // 38
    "CAP_BPF",                // 39
    "CAP_CHECKPOINT_RESTORE", // 40
];

/// The capabilities a non-privileged container gets unless it asks
/// otherwise (the same set containerd and Docker grant).
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

const CAP_LAST_CAP: &str = "/proc/sys/kernel/cap_last_cap";

/// Every capability this kernel knows, by number: those up to
/// `/proc/sys/kernel/cap_last_cap`, or all peapod knows when that file
/// cannot be read.
/// Read once: the kernel's list does not change while it runs.
pub fn known_capabilities() -> Vec<&'static str> {
    static KNOWN: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    KNOWN
        .get_or_init(|| {
            let last = std::fs::read_to_string(CAP_LAST_CAP)
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok());
            capabilities_up_to(last)
        })
        .clone()
}

/// A capability mask of this process from `/proc/self/status`, e.g.
/// `CapBnd` or `CapEff`.
pub fn own_capability_mask(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

fn capabilities_up_to(last: Option<usize>) -> Vec<&'static str> {
    let count = last.map_or(CAPABILITIES.len(), |l| {
        l.saturating_add(1).min(CAPABILITIES.len())
    });
    CAPABILITIES[..count].to_vec()
}

/// The canonical `CAP_*` name of a capability given in any case, with or
/// without the `CAP_` prefix (kubelet sends `NET_BIND_SERVICE`).
pub fn normalize_capability(name: &str) -> Option<&'static str> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    CAPABILITIES
        .iter()
        .copied()
        .find(|cap| cap.strip_prefix("CAP_") == Some(bare))
}

/// One entry of an add or drop list: `ALL` or a named capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CapabilityEntry {
    All,
    Named(&'static str),
}

fn parse_capability_list(
    names: &[String],
    list: &str,
) -> Result<Vec<CapabilityEntry>, SecurityError> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            if name.eq_ignore_ascii_case("ALL") {
                return Ok(CapabilityEntry::All);
            }
            normalize_capability(name)
                .map(CapabilityEntry::Named)
                .ok_or_else(|| {
                    SecurityError::invalid(
                        format!("config.linux.security_context.capabilities.{list}[{i}]"),
                        format!("unknown capability {name:?}"),
                    )
                })
        })
        .collect()
}

/// The capabilities of a container's process, sorted `CAP_*` names.
///
/// A privileged container gets every capability the kernel knows (its add
/// and drop lists are not looked at, as in containerd). Otherwise the
/// defaults, replaced by everything when `add` holds `ALL` and by nothing
/// when `drop` holds `ALL`; then the named adds are added and the named
/// drops removed, so `add: [ALL], drop: [CHOWN]` is all but CHOWN and
/// `drop: [ALL], add: [NET_BIND_SERVICE]` is only that one.
pub fn capability_set(
    add: &[String],
    drop: &[String],
    privileged: bool,
) -> Result<Vec<String>, SecurityError> {
    let held = held_capabilities();
    // One the kernel has but this process does not hold, asked for by
    // name: the OCI runtime would fail to start the container with it.
    if !privileged {
        let kernel = known_capabilities();
        for entry in parse_capability_list(add, "add_capabilities")? {
            if let CapabilityEntry::Named(cap) = entry {
                if kernel.contains(&cap) && !held.contains(&cap) {
                    return Err(SecurityError::Unsupported(format!(
                        "config.linux.security_context.capabilities.add_capabilities: {cap} cannot be granted: the runtime itself does not hold it on this host"
                    )));
                }
            }
        }
    }
    capability_set_within(add, drop, privileged, &held)
}

/// The capabilities this process can hand on: those the kernel knows that
/// are in its own bounding set. "All capabilities" (privileged, or `ALL`
/// added) means these, as in other runtimes: root may lack some (e.g.
/// CAP_SYS_RESOURCE in a restricted VM), and the OCI runtime cannot grant
/// what its caller does not hold.
/// Read once: a bounding set only ever shrinks, and peapod drops nothing.
pub fn held_capabilities() -> Vec<&'static str> {
    static HELD: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    HELD.get_or_init(|| {
        let known = known_capabilities();
        match own_capability_mask("CapBnd") {
            Some(mask) => known
                .into_iter()
                .enumerate()
                .filter(|(bit, _)| *bit < 64 && mask & (1u64 << bit) != 0)
                .map(|(_, c)| c)
                .collect(),
            None => known,
        }
    })
    .clone()
}

fn capability_set_within(
    add: &[String],
    drop: &[String],
    privileged: bool,
    known: &[&'static str],
) -> Result<Vec<String>, SecurityError> {
    let mut set: BTreeSet<&'static str> = if privileged {
        known.iter().copied().collect()
    } else {
        let adds = parse_capability_list(add, "add_capabilities")?;
        let drops = parse_capability_list(drop, "drop_capabilities")?;
        let mut set: BTreeSet<&'static str> = DEFAULT_CAPABILITIES.iter().copied().collect();
        if adds.contains(&CapabilityEntry::All) {
            set = known.iter().copied().collect();
        }
        if drops.contains(&CapabilityEntry::All) {
            set.clear();
        }
        for entry in &adds {
            if let CapabilityEntry::Named(cap) = entry {
                set.insert(cap);
            }
        }
        for entry in &drops {
            if let CapabilityEntry::Named(cap) = entry {
                set.remove(cap);
            }
        }
        set
    };
    // A name newer than the running kernel cannot be granted; runc would
    // only warn about it, so it is left out here.
    set.retain(|cap| known.contains(cap));
    Ok(set.into_iter().map(String::from).collect())
}

/// The OCI capability sets for `caps` (names as [`capability_set`] gives
/// them; unknown names are skipped): bounding, effective and permitted.
/// Inheritable and ambient stay empty: runtimes stopped filling the
/// inheritable set after CVE-2022-24769, and ambient would hand the
/// capabilities to non-root processes across exec.
pub fn to_oci_capabilities(caps: &[String]) -> LinuxCapabilities {
    let set: Capabilities = caps.iter().filter_map(|c| oci_capability(c)).collect();
    let mut out = LinuxCapabilities::default();
    out.set_bounding(Some(set.clone()))
        .set_effective(Some(set.clone()))
        .set_permitted(Some(set))
        .set_inheritable(None)
        .set_ambient(None);
    out
}

fn oci_capability(name: &str) -> Option<Capability> {
    let canonical = normalize_capability(name)?;
    serde_json::from_value(serde_json::Value::String(canonical.to_string())).ok()
}

fn has_capability(caps: &[String], wanted: &str) -> bool {
    caps.iter().any(|c| normalize_capability(c) == Some(wanted))
}

// ---------------------------------------------------------------------------
// Seccomp: the RuntimeDefault profile
// ---------------------------------------------------------------------------

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;
/// CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC |
/// CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET.
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;
const AF_VSOCK: u64 = 40;
/// PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32 and the query
/// value 0xffffffff: what ordinary programs (setarch, linux32) use.
const ALLOWED_PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// Files, directories, links, attributes and the mount-free parts of the
/// file system API.
const FILE_SYSCALLS: &[&str] = &[
    "access",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "close",
    "close_range",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "file_getattr",
    "file_setattr",
    "flistxattr",
    "flock",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futimesat",
    "getcwd",
    "getdents",
    "getdents64",
    "getxattr",
    "getxattrat",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "ioctl",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listxattr",
    "listxattrat",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "newfstatat",
    "open",
    "openat",
    "openat2",
    "pread64",
    "preadv",
    "preadv2",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "removexattr",
    "removexattrat",
    "rename",
    "renameat",
    "renameat2",
    "rmdir",
    "sendfile",
    "sendfile64",
    "setxattr",
    "setxattrat",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "tee",
    "truncate",
    "truncate64",
    "umask",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vmsplice",
    "write",
    "writev",
];

/// Reading mount information (not changing it).
const MOUNT_INFO_SYSCALLS: &[&str] = &["listmount", "statmount"];

/// Waiting on many descriptors, event and timer descriptors, async I/O.
const EVENT_SYSCALLS: &[&str] = &[
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "io_cancel",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "io_setup",
    "io_submit",
    "_newselect",
    "pipe",
    "pipe2",
    "poll",
    "ppoll",
    "ppoll_time64",
    "pselect6",
    "pselect6_time64",
    "select",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
];

/// Process life cycle, credentials within the container's own user
/// namespace, limits and scheduling of its own threads. Namespace creation
/// (clone flags, clone3) is handled apart.
const PROCESS_SYSCALLS: &[&str] = &[
    "capget",
    "capset",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "fork",
    "getcpu",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "get_thread_area",
    "gettid",
    "getuid",
    "getuid32",
    "ioprio_get",
    "ioprio_set",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "membarrier",
    "pidfd_open",
    "pidfd_send_signal",
    "prctl",
    "prlimit64",
    "process_mrelease",
    "restart_syscall",
    "rseq",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "sysinfo",
    "ugetrlimit",
    "uname",
    "uretprobe",
    "vfork",
    "wait4",
    "waitid",
    "waitpid",
];

/// The process's own memory. NUMA policy calls are gated on CAP_SYS_NICE.
const MEMORY_SYSCALLS: &[&str] = &[
    "brk",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "madvise",
    "map_shadow_stack",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mremap",
    "mseal",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "remap_file_pages",
];

/// Signals.
const SIGNAL_SYSCALLS: &[&str] = &[
    "kill",
    "pause",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "tgkill",
    "tkill",
];

/// System V and POSIX IPC, which the container's IPC namespace isolates.
const IPC_SYSCALLS: &[&str] = &[
    "ipc",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
];

/// Sockets other than `socket` itself (see the AF_VSOCK rule).
const NETWORK_SYSCALLS: &[&str] = &[
    "accept",
    "accept4",
    "bind",
    "connect",
    "getpeername",
    "getsockname",
    "getsockopt",
    "listen",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "send",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setsockopt",
    "shutdown",
    "socketcall",
    "socketpair",
];

/// Reading clocks, sleeping and interval timers. `adjtimex` and
/// `clock_adjtime` are allowed because a read-only query is harmless and
/// the kernel itself refuses any change (non-zero `modes`, which lie in
/// memory a filter cannot inspect) without CAP_SYS_TIME.
const TIME_SYSCALLS: &[&str] = &[
    "adjtimex",
    "alarm",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "getitimer",
    "gettimeofday",
    "nanosleep",
    "setitimer",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "times",
];

/// Calls that exist only on this host's architecture family.
#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
const ARCH_SYSCALLS: &[&str] = &["arch_prctl", "modify_ldt"];
#[cfg(any(target_arch = "aarch64", target_arch = "arm"))]
const ARCH_SYSCALLS: &[&str] = &[
    "arm_fadvise64_64",
    "arm_sync_file_range",
    "breakpoint",
    "cacheflush",
    "set_tls",
    "sync_file_range2",
];
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "x86",
    target_arch = "aarch64",
    target_arch = "arm"
)))]
const ARCH_SYSCALLS: &[&str] = &[];

/// Calls that act beyond the container (on the host's kernel, devices,
/// clocks, other processes' memory or the mount table), allowed only when
/// the container holds the capability the kernel checks for them. The
/// filter is a second wall: a container granted the capability gets the
/// call, one without it cannot reach the kernel code at all.
const CAPABILITY_GATED: &[(&str, &[&str])] = &[
    // Mounts, namespaces, host names, BPF, perf, quotas, kernel log.
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "name_to_handle_at",
            "open_tree",
            "open_tree_attr",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    // Restarting or halting the host.
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    // Loading code into the host's kernel.
    (
        "CAP_SYS_MODULE",
        &["delete_module", "finit_module", "init_module"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    // Reading and writing other processes' memory and descriptors.
    (
        "CAP_SYS_PTRACE",
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    // Raw I/O ports.
    ("CAP_SYS_RAWIO", &["ioperm", "iopl"]),
    // Setting the host's clock (clocks are not namespaced).
    (
        "CAP_SYS_TIME",
        &["clock_settime", "clock_settime64", "settimeofday", "stime"],
    ),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    // NUMA placement, which can starve other workloads of local memory.
    (
        "CAP_SYS_NICE",
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
    // Opening files by handle bypasses the path walk (the "shocker" escape).
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
];

fn syscall_rule(
    names: Vec<String>,
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    args: Vec<LinuxSeccompArg>,
) -> LinuxSyscall {
    let mut rule = LinuxSyscall::default();
    rule.set_names(names)
        .set_action(action)
        .set_errno_ret(errno_ret)
        .set_args(if args.is_empty() { None } else { Some(args) });
    rule
}

fn allow<S: AsRef<str>>(names: &[S]) -> LinuxSyscall {
    let names = names.iter().map(|n| n.as_ref().to_string()).collect();
    syscall_rule(names, LinuxSeccompAction::ScmpActAllow, None, Vec::new())
}

fn seccomp_arg(
    index: usize,
    value: u64,
    value_two: Option<u64>,
    op: LinuxSeccompOperator,
) -> LinuxSeccompArg {
    let builder = LinuxSeccompArgBuilder::default()
        .index(index)
        .value(value)
        .op(op);
    let builder = match value_two {
        Some(v) => builder.value_two(v),
        None => builder,
    };
    // Every field has a value, so building cannot fail.
    builder
        .build()
        .expect("seccomp argument with every field set")
}

/// The seccomp architectures of this host: its own and the 32-bit ones its
/// kernel also runs, so a 32-bit binary cannot dodge the filter.
fn host_seccomp_arches() -> Vec<Arch> {
    if cfg!(target_arch = "x86_64") {
        vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    } else if cfg!(target_arch = "aarch64") {
        vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]
    } else {
        Vec::new()
    }
}

/// peapod's RuntimeDefault profile for a container holding `caps`: deny
/// with EPERM by default, allow the ordinary syscalls, and allow the calls
/// gated on a capability only when the container has that capability.
/// Same effect as the well-known Docker/containerd default (io_uring stays
/// denied, as in their current profiles).
pub fn default_seccomp(caps: &[String]) -> LinuxSeccomp {
    let sys_admin = has_capability(caps, "CAP_SYS_ADMIN");
    let ordinary: Vec<&str> = [
        FILE_SYSCALLS,
        MOUNT_INFO_SYSCALLS,
        EVENT_SYSCALLS,
        PROCESS_SYSCALLS,
        MEMORY_SYSCALLS,
        SIGNAL_SYSCALLS,
        IPC_SYSCALLS,
        NETWORK_SYSCALLS,
        TIME_SYSCALLS,
        ARCH_SYSCALLS,
    ]
    .concat();

    let mut rules = vec![allow(&ordinary)];
    // vsock is not network-namespaced: it would reach the host or its
    // hypervisor directly.
    rules.push(syscall_rule(
        vec!["socket".to_string()],
        LinuxSeccompAction::ScmpActAllow,
        None,
        vec![seccomp_arg(
            0,
            AF_VSOCK,
            None,
            LinuxSeccompOperator::ScmpCmpNe,
        )],
    ));
    // Execution domains other than these change how the kernel treats the
    // process (e.g. READ_IMPLIES_EXEC); one rule per value, since the
    // conditions of one rule must all hold.
    for value in ALLOWED_PERSONALITIES {
        rules.push(syscall_rule(
            vec!["personality".to_string()],
            LinuxSeccompAction::ScmpActAllow,
            None,
            vec![seccomp_arg(0, value, None, LinuxSeccompOperator::ScmpCmpEq)],
        ));
    }
    if !sys_admin {
        // Threads and forks yes, new namespaces no.
        rules.push(syscall_rule(
            vec!["clone".to_string()],
            LinuxSeccompAction::ScmpActAllow,
            None,
            vec![seccomp_arg(
                0,
                CLONE_NAMESPACE_FLAGS,
                Some(0),
                LinuxSeccompOperator::ScmpCmpMaskedEq,
            )],
        ));
        // clone3 passes its flags in memory, out of the filter's sight:
        // ENOSYS makes libc fall back to clone, which is checked above.
        rules.push(syscall_rule(
            vec!["clone3".to_string()],
            LinuxSeccompAction::ScmpActErrno,
            Some(ENOSYS),
            Vec::new(),
        ));
    }
    let gated: BTreeSet<&str> = CAPABILITY_GATED
        .iter()
        .filter(|(cap, _)| has_capability(caps, cap))
        .flat_map(|(_, names)| names.iter().copied())
        .collect();
    if !gated.is_empty() {
        rules.push(allow(&gated.into_iter().collect::<Vec<_>>()));
    }

    let mut profile = LinuxSeccomp::default();
    profile
        .set_default_action(LinuxSeccompAction::ScmpActErrno)
        .set_default_errno_ret(Some(EPERM))
        .set_architectures(Some(host_seccomp_arches()))
        .set_syscalls(Some(rules));
    profile
}

// ---------------------------------------------------------------------------
// Seccomp: Localhost profiles
// ---------------------------------------------------------------------------

const SECCOMP_REF_FIELD: &str = "config.linux.security_context.seccomp.localhost_ref";

/// A profile file: the OCI `linux.seccomp` object, or a Docker profile,
/// which is the same plus `archMap`, singular `name`, `includes`/`excludes`
/// and comments.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProfileFile {
    default_action: Option<String>,
    default_errno_ret: Option<u32>,
    architectures: Option<Vec<String>>,
    arch_map: Option<Vec<ArchMapEntry>>,
    flags: Option<Vec<String>>,
    listener_path: Option<PathBuf>,
    listener_metadata: Option<String>,
    syscalls: Option<Vec<SyscallEntry>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMapEntry {
    architecture: String,
    sub_architectures: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SyscallEntry {
    names: Option<Vec<String>>,
    name: Option<String>,
    action: Option<String>,
    errno_ret: Option<u32>,
    args: Option<Vec<ArgEntry>>,
    includes: Option<Condition>,
    excludes: Option<Condition>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArgEntry {
    index: usize,
    value: u64,
    value_two: Option<u64>,
    op: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Condition {
    caps: Option<Vec<String>>,
    arches: Option<Vec<String>>,
    min_kernel: Option<String>,
}

/// What a Docker profile's conditions are evaluated against.
#[derive(Debug, Clone)]
struct ProfileHost {
    /// `std::env::consts::ARCH` of this host.
    arch: &'static str,
    /// Kernel release as (major, minor, patch), if known.
    kernel: Option<(u64, u64, u64)>,
}

impl ProfileHost {
    fn current() -> Self {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .and_then(|r| kernel_release(r.trim()));
        ProfileHost {
            arch: std::env::consts::ARCH,
            kernel,
        }
    }

    /// The SCMP architecture the host runs natively.
    fn native(&self) -> Option<Arch> {
        let name = match self.arch {
            "x86_64" => "SCMP_ARCH_X86_64",
            "x86" => "SCMP_ARCH_X86",
            "aarch64" => "SCMP_ARCH_AARCH64",
            "arm" => "SCMP_ARCH_ARM",
            "riscv64" => "SCMP_ARCH_RISCV64",
            "s390x" => "SCMP_ARCH_S390X",
            "powerpc64" => "SCMP_ARCH_PPC64LE",
            "loongarch64" => "SCMP_ARCH_LOONGARCH64",
            _ => return None,
        };
        parse_arch(name)
    }

    /// Whether an `arches` entry of a profile condition names this host;
    /// profiles use Go's names (`amd64`, `arm64`) or the SCMP ones.
    fn matches_arch(&self, name: &str) -> bool {
        let aliases: &[&str] = match self.arch {
            "x86_64" => &["amd64", "x86_64"],
            "x86" => &["386", "x86", "i386"],
            "aarch64" => &["arm64", "aarch64"],
            "arm" => &["arm"],
            "riscv64" => &["riscv64"],
            "s390x" => &["s390x"],
            "powerpc64" => &["ppc64le", "ppc64"],
            "loongarch64" => &["loong64", "loongarch64"],
            _ => &[],
        };
        aliases.contains(&name) || (self.native().is_some() && parse_arch(name) == self.native())
    }
}

/// Architecture names profile conditions may use (Go's, plus a few usual
/// spellings); anything else is a mistake in the profile.
const CONDITION_ARCHES: &[&str] = &[
    "386",
    "i386",
    "x86",
    "amd64",
    "x86_64",
    "x32",
    "arm",
    "arm64",
    "aarch64",
    "mips",
    "mipsle",
    "mipsel",
    "mips64",
    "mips64le",
    "mipsel64",
    "mips64n32",
    "mips64len32",
    "mipsel64n32",
    "ppc",
    "ppc64",
    "ppc64le",
    "s390",
    "s390x",
    "riscv64",
    "loong64",
    "loongarch64",
    "parisc",
    "parisc64",
    "m68k",
    "sh",
    "sheb",
];

/// (major, minor, patch) from a release such as `6.18.44-fc-v1147` or a
/// profile's `4.8`; None when it does not start with `major.minor`.
fn kernel_release(release: &str) -> Option<(u64, u64, u64)> {
    let numeric: &str = release
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()
        .unwrap_or("");
    let mut parts = numeric.split('.').map(|p| p.parse::<u64>().ok());
    let major = parts.next()??;
    let minor = parts.next()??;
    let patch = parts.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

fn from_json_string<T: for<'de> Deserialize<'de>>(s: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
}

fn parse_arch(s: &str) -> Option<Arch> {
    from_json_string(s)
}

/// Reads a Localhost seccomp profile (`localhost_ref`, an absolute path)
/// and turns it into the OCI form: a Docker profile's `archMap` becomes
/// this host's architectures, and its entries whose `includes`/`excludes`
/// (capabilities in `caps`, host architecture, `minKernel` against the
/// running kernel) do not apply are dropped.
pub fn seccomp_from_file(path: &Path, caps: &[String]) -> Result<LinuxSeccomp, SecurityError> {
    if !path.is_absolute() {
        return Err(SecurityError::invalid(
            SECCOMP_REF_FIELD,
            format!("seccomp profile path {} must be absolute", path.display()),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        let what = if e.kind() == std::io::ErrorKind::NotFound {
            "does not exist".to_string()
        } else {
            format!("cannot be read: {e}")
        };
        SecurityError::invalid(
            SECCOMP_REF_FIELD,
            format!("seccomp profile {} {what}", path.display()),
        )
    })?;
    seccomp_from_json(&text, caps, &ProfileHost::current()).map_err(|message| {
        SecurityError::invalid(
            SECCOMP_REF_FIELD,
            format!("seccomp profile {}: {message}", path.display()),
        )
    })
}

/// The conversion behind [`seccomp_from_file`]; errors name the spot in
/// the profile.
fn seccomp_from_json(
    text: &str,
    caps: &[String],
    host: &ProfileHost,
) -> Result<LinuxSeccomp, String> {
    let file: ProfileFile = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;

    let default_action = match &file.default_action {
        Some(a) => parse_action(a).ok_or_else(|| format!("defaultAction: unknown action {a:?}"))?,
        None => return Err("defaultAction is missing".to_string()),
    };

    let architectures = match (&file.architectures, &file.arch_map) {
        (Some(a), Some(m)) if !a.is_empty() && !m.is_empty() => {
            return Err("architectures and archMap are both set; use one".to_string())
        }
        (_, Some(map)) if !map.is_empty() => {
            let native = host.native();
            let mut arches = Vec::new();
            for (i, entry) in map.iter().enumerate() {
                let arch = parse_arch(&entry.architecture).ok_or_else(|| {
                    format!(
                        "archMap[{i}].architecture: unknown architecture {:?}",
                        entry.architecture
                    )
                })?;
                let mut subs = Vec::new();
                for (j, sub) in entry.sub_architectures.iter().flatten().enumerate() {
                    subs.push(parse_arch(sub).ok_or_else(|| {
                        format!("archMap[{i}].subArchitectures[{j}]: unknown architecture {sub:?}")
                    })?);
                }
                if Some(arch) == native {
                    arches.push(arch);
                    arches.extend(subs);
                }
            }
            arches
        }
        (Some(list), _) => list
            .iter()
            .enumerate()
            .map(|(i, a)| {
                parse_arch(a)
                    .ok_or_else(|| format!("architectures[{i}]: unknown architecture {a:?}"))
            })
            .collect::<Result<_, _>>()?,
        (None, _) => Vec::new(),
    };

    let flags = match &file.flags {
        Some(list) => Some(
            list.iter()
                .enumerate()
                .map(|(i, f)| {
                    from_json_string::<LinuxSeccompFilterFlag>(f)
                        .ok_or_else(|| format!("flags[{i}]: unknown flag {f:?}"))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        None => None,
    };

    let mut rules = Vec::new();
    for (i, entry) in file.syscalls.iter().flatten().enumerate() {
        let at = format!("syscalls[{i}]");
        let names = match (&entry.names, &entry.name) {
            (Some(list), Some(_)) if !list.is_empty() => {
                return Err(format!("{at}: name and names are both set; use one"))
            }
            (Some(list), _) if !list.is_empty() => list.clone(),
            (_, Some(name)) => vec![name.clone()],
            _ => return Err(format!("{at}.names: no syscall named")),
        };
        if let Some(j) = names.iter().position(|n| n.trim().is_empty()) {
            return Err(format!("{at}.names[{j}]: empty syscall name"));
        }
        let action = match &entry.action {
            Some(a) => {
                parse_action(a).ok_or_else(|| format!("{at}.action: unknown action {a:?}"))?
            }
            None => return Err(format!("{at}.action is missing")),
        };
        let mut args = Vec::new();
        for (j, arg) in entry.args.iter().flatten().enumerate() {
            let op = from_json_string::<LinuxSeccompOperator>(&arg.op)
                .ok_or_else(|| format!("{at}.args[{j}].op: unknown operator {:?}", arg.op))?;
            if arg.index > 5 {
                return Err(format!(
                    "{at}.args[{j}].index: {} is not a syscall argument (0 to 5)",
                    arg.index
                ));
            }
            args.push(seccomp_arg(arg.index, arg.value, arg.value_two, op));
        }
        // Validate both conditions before deciding, so a mistake is
        // reported even in an entry that would not apply here.
        let included = condition_holds(
            entry.includes.as_ref(),
            true,
            caps,
            host,
            &format!("{at}.includes"),
        )?;
        let excluded = condition_holds(
            entry.excludes.as_ref(),
            false,
            caps,
            host,
            &format!("{at}.excludes"),
        )?;
        if included && !excluded {
            rules.push(syscall_rule(names, action, entry.errno_ret, args));
        }
    }

    let mut profile = LinuxSeccomp::default();
    profile
        .set_default_action(default_action)
        .set_default_errno_ret(file.default_errno_ret)
        .set_architectures((!architectures.is_empty()).then_some(architectures))
        .set_flags(flags)
        .set_listener_path(file.listener_path)
        .set_listener_metadata(file.listener_metadata)
        .set_syscalls(Some(rules));
    Ok(profile)
}

fn parse_action(s: &str) -> Option<LinuxSeccompAction> {
    from_json_string(s)
}

/// Evaluates an `includes` (`all_must_hold`: every capability present, the
/// host among the arches, the kernel at least minKernel) or an `excludes`
/// (any of them holding excludes the entry). An absent condition gives
/// "include" for includes and "do not exclude" for excludes.
fn condition_holds(
    cond: Option<&Condition>,
    all_must_hold: bool,
    caps: &[String],
    host: &ProfileHost,
    at: &str,
) -> Result<bool, String> {
    let Some(cond) = cond else {
        return Ok(all_must_hold);
    };
    let mut tests = Vec::new();
    if let Some(list) = &cond.caps {
        let mut present = Vec::new();
        for (i, c) in list.iter().enumerate() {
            let cap = normalize_capability(c)
                .ok_or_else(|| format!("{at}.caps[{i}]: unknown capability {c:?}"))?;
            present.push(has_capability(caps, cap));
        }
        if !present.is_empty() {
            tests.push(if all_must_hold {
                present.iter().all(|p| *p)
            } else {
                present.iter().any(|p| *p)
            });
        }
    }
    if let Some(list) = &cond.arches {
        for (i, a) in list.iter().enumerate() {
            if !CONDITION_ARCHES.contains(&a.as_str()) && parse_arch(a).is_none() {
                return Err(format!("{at}.arches[{i}]: unknown architecture {a:?}"));
            }
        }
        if !list.is_empty() {
            tests.push(list.iter().any(|a| host.matches_arch(a)));
        }
    }
    if let Some(min) = &cond.min_kernel {
        let wanted = kernel_release(min)
            .filter(|_| min.chars().all(|c| c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| {
                format!("{at}.minKernel: {min:?} is not a kernel version such as \"4.8\"")
            })?;
        // An unknown running kernel satisfies no minimum.
        tests.push(host.kernel.is_some_and(|k| k >= wanted));
    }
    Ok(if all_must_hold {
        tests.iter().all(|t| *t)
    } else {
        tests.iter().any(|t| *t)
    })
}

// ---------------------------------------------------------------------------
// Masked and read-only paths
// ---------------------------------------------------------------------------

/// Paths kubelet asks to hide from a non-privileged container (its list,
/// in its order): host hardware and kernel state that is not namespaced.
pub const DEFAULT_MASKED_PATHS: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths kubelet asks to make read-only: host-wide kernel knobs.
pub const DEFAULT_READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

// ---------------------------------------------------------------------------
// AppArmor
// ---------------------------------------------------------------------------

/// The AppArmor profile peapod uses for RuntimeDefault, when loaded.
pub const DEFAULT_APPARMOR_PROFILE: &str = "peapod-default";

const APPARMOR_REF_FIELD: &str = "config.linux.security_context.apparmor.localhost_ref";

/// Where the host tells about AppArmor; tests point these at temp files.
#[derive(Debug, Clone)]
pub struct AppArmorHost {
    /// Holds `Y` when AppArmor is enabled.
    pub enabled_file: PathBuf,
    /// One loaded profile a line, as `name (mode)`.
    pub profiles_file: PathBuf,
}

impl Default for AppArmorHost {
    fn default() -> Self {
        AppArmorHost {
            enabled_file: PathBuf::from("/sys/module/apparmor/parameters/enabled"),
            profiles_file: PathBuf::from("/sys/kernel/security/apparmor/profiles"),
        }
    }
}

impl AppArmorHost {
    pub fn enabled(&self) -> bool {
        std::fs::read_to_string(&self.enabled_file).is_ok_and(|s| s.starts_with('Y'))
    }

    /// Whether a profile of that name is loaded (in any mode). An
    /// unreadable list counts as not loaded.
    pub fn profile_loaded(&self, name: &str) -> bool {
        let Ok(list) = std::fs::read_to_string(&self.profiles_file) else {
            return false;
        };
        list.lines().any(|line| {
            let profile = match line.rsplit_once(" (") {
                Some((profile, mode)) if mode.ends_with(')') => profile,
                _ => line,
            };
            profile.trim_end() == name
        })
    }

    /// The AppArmor profile for a container, see [`apparmor_profile`].
    pub fn profile(
        &self,
        profile_type: i32,
        localhost_ref: &str,
        privileged: bool,
    ) -> Result<Option<String>, SecurityError> {
        let kind = ProfileType::try_from(profile_type).map_err(|_| {
            SecurityError::invalid(
                "config.linux.security_context.apparmor.profile_type",
                format!("unknown profile type {profile_type}"),
            )
        })?;
        if privileged {
            return Ok(None);
        }
        match kind {
            ProfileType::Unconfined => Ok(None),
            ProfileType::RuntimeDefault => Ok((self.enabled()
                && self.profile_loaded(DEFAULT_APPARMOR_PROFILE))
            .then(|| DEFAULT_APPARMOR_PROFILE.to_string())),
            ProfileType::Localhost => {
                let name = localhost_ref
                    .strip_prefix("localhost/")
                    .unwrap_or(localhost_ref);
                if name.is_empty() {
                    return Err(SecurityError::invalid(
                        APPARMOR_REF_FIELD,
                        "a Localhost AppArmor profile needs a profile name",
                    ));
                }
                if !self.enabled() {
                    return Err(SecurityError::Unsupported(format!(
                        "AppArmor profile {name} was requested but AppArmor is not enabled on this host"
                    )));
                }
                if !self.profile_loaded(name) {
                    return Err(SecurityError::invalid(
                        APPARMOR_REF_FIELD,
                        format!("AppArmor profile {name} is not loaded on this host"),
                    ));
                }
                Ok(Some(name.to_string()))
            }
        }
    }
}

/// Whether AppArmor is enabled on this host.
pub fn apparmor_enabled() -> bool {
    AppArmorHost::default().enabled()
}

/// Whether this host has loaded an AppArmor profile named `name`.
pub fn apparmor_profile_loaded(name: &str) -> bool {
    AppArmorHost::default().profile_loaded(name)
}

/// The AppArmor profile a container runs under, from the CRI
/// `SecurityProfile` (`profile_type` 0 RuntimeDefault, 1 Unconfined,
/// 2 Localhost): None for Unconfined and for privileged containers;
/// `peapod-default` for RuntimeDefault when AppArmor is on and that
/// profile is loaded, else None (as containerd skips its default on hosts
/// without AppArmor); the named profile for Localhost, which must be
/// loaded, on a host with AppArmor.
pub fn apparmor_profile(
    profile_type: i32,
    localhost_ref: &str,
    privileged: bool,
) -> Result<Option<String>, SecurityError> {
    AppArmorHost::default().profile(profile_type, localhost_ref, privileged)
}

// ---------------------------------------------------------------------------
// SELinux
// ---------------------------------------------------------------------------

/// The SELinux process label `user:role:type:level` of a container's
/// `selinux_options`, or None when all four are empty. Parts left empty
/// stay empty: filling them from the runtime's default context is the
/// caller's business, as is setting a label only when
/// [`selinux_enabled`]. Only `level` may hold ':' (an MLS range such as
/// `s0:c1,c2`).
pub fn selinux_label(
    user: &str,
    role: &str,
    type_: &str,
    level: &str,
) -> Result<Option<String>, SecurityError> {
    if [user, role, type_, level].iter().all(|p| p.is_empty()) {
        return Ok(None);
    }
    for (part, value) in [("user", user), ("role", role), ("type", type_)] {
        if value.contains(':') {
            return Err(SecurityError::invalid(
                format!("config.linux.security_context.selinux_options.{part}"),
                format!("{value:?} must not contain ':'"),
            ));
        }
    }
    Ok(Some(format!("{user}:{role}:{type_}:{level}")))
}

/// Whether SELinux is active on this host (selinuxfs is mounted).
pub fn selinux_enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn all_known() -> Vec<&'static str> {
        CAPABILITIES.to_vec()
    }

    fn invalid_field(e: SecurityError) -> (String, String) {
        match e {
            SecurityError::Invalid { field, message } => (field, message),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    // --- capabilities ---

    #[test]
    fn capability_names_normalize_in_any_spelling() {
        assert_eq!(
            normalize_capability("NET_BIND_SERVICE"),
            Some("CAP_NET_BIND_SERVICE")
        );
        assert_eq!(normalize_capability("cap_sys_admin"), Some("CAP_SYS_ADMIN"));
        assert_eq!(normalize_capability("Cap_Chown"), Some("CAP_CHOWN"));
        assert_eq!(
            normalize_capability("checkpoint_restore"),
            Some("CAP_CHECKPOINT_RESTORE")
        );
        assert_eq!(normalize_capability("ALL"), None);
        assert_eq!(normalize_capability("CAP_"), None);
        assert_eq!(normalize_capability(""), None);
        assert_eq!(normalize_capability("SYS_WHATEVER"), None);
        assert_eq!(normalize_capability(" CHOWN"), None);
    }

    #[test]
    fn capability_table_is_numbered_like_the_kernel() {
        assert_eq!(CAPABILITIES[0], "CAP_CHOWN");
        assert_eq!(CAPABILITIES[21], "CAP_SYS_ADMIN");
        assert_eq!(CAPABILITIES[31], "CAP_SETFCAP");
        assert_eq!(CAPABILITIES[40], "CAP_CHECKPOINT_RESTORE");
        let unique: BTreeSet<_> = CAPABILITIES.iter().collect();
        assert_eq!(unique.len(), CAPABILITIES.len());
        // Every name is one oci-spec knows, so none is lost on the way out.
        for cap in CAPABILITIES {
            assert!(oci_capability(cap).is_some(), "{cap}");
        }
        for cap in DEFAULT_CAPABILITIES {
            assert!(CAPABILITIES.contains(&cap), "{cap}");
        }
    }

    #[test]
    fn known_capabilities_follow_cap_last_cap() {
        assert_eq!(capabilities_up_to(None).len(), 41);
        assert_eq!(capabilities_up_to(Some(100)).len(), 41);
        let old = capabilities_up_to(Some(37));
        assert_eq!(old.len(), 38);
        assert_eq!(old.last(), Some(&"CAP_AUDIT_READ"));
        let host = known_capabilities();
        assert!(host.len() >= 38 && host.contains(&"CAP_SYS_ADMIN"));
    }

    #[test]
    fn default_set_when_nothing_is_asked() {
        let caps = capability_set_within(&[], &[], false, &all_known()).unwrap();
        let mut want = strings(&DEFAULT_CAPABILITIES);
        want.sort();
        assert_eq!(caps, want);
    }

    #[test]
    fn kubelet_drop_all_add_one() {
        // The kitchen-sink pod of the fixture.
        let caps =
            capability_set(&strings(&["NET_BIND_SERVICE"]), &strings(&["ALL"]), false).unwrap();
        assert_eq!(caps, vec!["CAP_NET_BIND_SERVICE"]);
    }

    #[test]
    fn add_all_then_drop_named() {
        let caps = capability_set_within(
            &strings(&["ALL"]),
            &strings(&["CHOWN"]),
            false,
            &all_known(),
        )
        .unwrap();
        assert_eq!(caps.len(), 40);
        assert!(!caps.contains(&"CAP_CHOWN".to_string()));
        assert!(caps.contains(&"CAP_SYS_ADMIN".to_string()));
        let mut sorted = caps.clone();
        sorted.sort();
        assert_eq!(caps, sorted);
    }

    #[test]
    fn add_and_drop_named_on_top_of_defaults() {
        let caps = capability_set_within(
            &strings(&["sys_ptrace", "CAP_NET_ADMIN", "CHOWN"]),
            &strings(&["net_raw", "MKNOD"]),
            false,
            &all_known(),
        )
        .unwrap();
        assert!(caps.contains(&"CAP_SYS_PTRACE".to_string()));
        assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!caps.contains(&"CAP_NET_RAW".to_string()));
        assert!(!caps.contains(&"CAP_MKNOD".to_string()));
        assert_eq!(caps.iter().filter(|c| *c == "CAP_CHOWN").count(), 1);
        assert_eq!(caps.len(), 14 + 2 - 2);
    }

    #[test]
    fn a_drop_wins_over_the_same_add() {
        let caps = capability_set_within(
            &strings(&["SYS_ADMIN"]),
            &strings(&["sys_admin"]),
            false,
            &all_known(),
        )
        .unwrap();
        assert!(!caps.contains(&"CAP_SYS_ADMIN".to_string()));
    }

    #[test]
    fn add_all_and_drop_all_leave_only_named_adds() {
        let caps = capability_set_within(
            &strings(&["all", "KILL"]),
            &strings(&["All"]),
            false,
            &all_known(),
        )
        .unwrap();
        assert_eq!(caps, vec!["CAP_KILL"]);
    }

    #[test]
    fn privileged_gets_every_known_capability() {
        let known = capabilities_up_to(Some(39));
        let caps = capability_set_within(&[], &strings(&["ALL"]), true, &known).unwrap();
        assert_eq!(caps.len(), 40);
        assert!(!caps.contains(&"CAP_CHECKPOINT_RESTORE".to_string()));
        let mut sorted = caps.clone();
        sorted.sort();
        assert_eq!(caps, sorted);
    }

    #[test]
    fn capabilities_newer_than_the_kernel_are_left_out() {
        let known = capabilities_up_to(Some(37));
        let caps = capability_set_within(
            &strings(&["BPF", "PERFMON", "AUDIT_READ"]),
            &[],
            false,
            &known,
        )
        .unwrap();
        assert!(caps.contains(&"CAP_AUDIT_READ".to_string()));
        assert!(!caps.contains(&"CAP_BPF".to_string()));
        assert!(!caps.contains(&"CAP_PERFMON".to_string()));
    }

    #[test]
    fn unknown_capability_names_the_field_and_value() {
        let e = capability_set(&strings(&["CHOWN", "KILL", "NET_FLY"]), &[], false).unwrap_err();
        let (field, message) = invalid_field(e);
        assert_eq!(
            field,
            "config.linux.security_context.capabilities.add_capabilities[2]"
        );
        assert!(message.contains("NET_FLY"), "{message}");

        let e = capability_set(&[], &strings(&["bogus"]), false).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("config.linux.security_context.capabilities.drop_capabilities[0]: "));
        assert!(e.to_string().contains("bogus"));
    }

    #[test]
    fn oci_capabilities_fill_bounding_effective_permitted_only() {
        let caps = strings(&["CAP_NET_BIND_SERVICE", "CAP_KILL"]);
        let oci = to_oci_capabilities(&caps);
        let want: Capabilities = [Capability::NetBindService, Capability::Kill].into();
        assert_eq!(oci.bounding().as_ref(), Some(&want));
        assert_eq!(oci.effective().as_ref(), Some(&want));
        assert_eq!(oci.permitted().as_ref(), Some(&want));
        assert_eq!(oci.inheritable(), &None);
        assert_eq!(oci.ambient(), &None);
        let json = serde_json::to_value(&oci).unwrap();
        assert!(json.get("inheritable").is_none() && json.get("ambient").is_none());
        assert_eq!(json["bounding"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn oci_capabilities_of_the_full_set_and_of_nothing() {
        let all: Vec<String> = strings(&CAPABILITIES);
        assert_eq!(
            to_oci_capabilities(&all).bounding().as_ref().unwrap().len(),
            41
        );
        let none = to_oci_capabilities(&[]);
        assert_eq!(none.effective().as_ref().map(|s| s.len()), Some(0));
    }

    // --- default seccomp ---

    /// The rules naming `name`, with their action, errno and args.
    fn rules_for<'a>(p: &'a LinuxSeccomp, name: &str) -> Vec<&'a LinuxSyscall> {
        p.syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .filter(|r| r.names().iter().any(|n| n == name))
            .collect()
    }

    fn allowed_always(p: &LinuxSeccomp, name: &str) -> bool {
        rules_for(p, name)
            .iter()
            .any(|r| r.action() == LinuxSeccompAction::ScmpActAllow && r.args().is_none())
    }

    fn mentioned(p: &LinuxSeccomp, name: &str) -> bool {
        !rules_for(p, name).is_empty()
    }

    #[test]
    fn default_profile_denies_with_eperm_for_this_hosts_arches() {
        let p = default_seccomp(&[]);
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), Some(1));
        let arches = p.architectures().clone().unwrap();
        if cfg!(target_arch = "x86_64") {
            assert_eq!(
                arches,
                vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
            );
            assert!(allowed_always(&p, "arch_prctl"));
        }
        if cfg!(target_arch = "aarch64") {
            assert_eq!(arches, vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]);
        }
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(json["defaultErrnoRet"], 1);
    }

    #[test]
    fn default_profile_allows_ordinary_syscalls() {
        let p = default_seccomp(&strings(&DEFAULT_CAPABILITIES));
        for name in [
            "read",
            "write",
            "openat",
            "openat2",
            "close",
            "execve",
            "fork",
            "vfork",
            "wait4",
            "mmap",
            "mprotect",
            "futex",
            "rt_sigaction",
            "kill",
            "accept4",
            "sendmsg",
            "clock_gettime",
            "nanosleep",
            "epoll_wait",
            "statx",
            "getdents64",
            "prctl",
            "setuid",
            "setgroups",
            "capset",
            "mknod",
            "rseq",
            "getrandom",
            "pidfd_open",
            "shmget",
            "adjtimex",
            "clock_adjtime",
            "io_submit",
            "uname",
            "chown",
            "exit_group",
            "restart_syscall",
            "listmount",
        ] {
            assert!(allowed_always(&p, name), "{name} should be allowed");
        }
        let total: usize = p.syscalls().as_ref().unwrap()[0].names().len();
        assert!(total > 300, "only {total} ordinary syscalls");
    }

    #[test]
    fn default_profile_lists_no_name_twice_in_a_rule() {
        for caps in [Vec::new(), strings(&CAPABILITIES)] {
            let p = default_seccomp(&caps);
            for rule in p.syscalls().as_ref().unwrap() {
                let unique: BTreeSet<_> = rule.names().iter().collect();
                assert_eq!(unique.len(), rule.names().len(), "{:?}", rule.names());
            }
            // No gated call slips into the ordinary allow list.
            let ordinary = &p.syscalls().as_ref().unwrap()[0];
            for (_, names) in CAPABILITY_GATED {
                for n in *names {
                    assert!(!ordinary.names().iter().any(|o| o == n), "{n}");
                }
            }
        }
    }

    #[test]
    fn dangerous_syscalls_are_never_allowed() {
        let p = default_seccomp(&strings(&CAPABILITIES));
        for name in [
            "add_key",
            "keyctl",
            "request_key",
            "kexec_load",
            "kexec_file_load",
            "userfaultfd",
            "io_uring_setup",
            "io_uring_enter",
            "io_uring_register",
            "swapon",
            "swapoff",
            "pivot_root",
            "uselib",
            "_sysctl",
            "nfsservctl",
            "create_module",
            "vm86",
            "move_pages",
            "migrate_pages",
        ] {
            assert!(!mentioned(&p, name), "{name} must not be in the profile");
        }
    }

    #[test]
    fn socket_is_allowed_except_vsock() {
        let p = default_seccomp(&[]);
        let rules = rules_for(&p, "socket");
        assert_eq!(rules.len(), 1);
        let args = rules[0].args().clone().unwrap();
        assert_eq!(args.len(), 1);
        assert_eq!(args[0].index(), 0);
        assert_eq!(args[0].value(), 40);
        assert_eq!(args[0].op(), LinuxSeccompOperator::ScmpCmpNe);
    }

    #[test]
    fn personality_only_for_known_values() {
        let p = default_seccomp(&strings(&CAPABILITIES));
        let rules = rules_for(&p, "personality");
        let values: Vec<u64> = rules
            .iter()
            .map(|r| {
                let args = r.args().clone().unwrap();
                assert_eq!(args.len(), 1);
                assert_eq!(args[0].op(), LinuxSeccompOperator::ScmpCmpEq);
                args[0].value()
            })
            .collect();
        assert_eq!(values, vec![0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff]);
    }

    #[test]
    fn clone_without_sys_admin_cannot_create_namespaces() {
        let p = default_seccomp(&strings(&DEFAULT_CAPABILITIES));
        assert!(!allowed_always(&p, "clone"));
        let clone = rules_for(&p, "clone");
        assert_eq!(clone.len(), 1);
        let args = clone[0].args().clone().unwrap();
        assert_eq!(args[0].op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        assert_eq!(args[0].value(), 0x7E02_0000);
        assert_eq!(args[0].value_two(), Some(0));
        let json = serde_json::to_value(clone[0]).unwrap();
        assert_eq!(json["args"][0]["value"], 2114060288u64);
        assert_eq!(json["args"][0]["valueTwo"], 0);
        assert_eq!(json["args"][0]["op"], "SCMP_CMP_MASKED_EQ");

        let clone3 = rules_for(&p, "clone3");
        assert_eq!(clone3.len(), 1);
        assert_eq!(clone3[0].action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(clone3[0].errno_ret(), Some(38));
        for name in ["mount", "unshare", "setns", "umount2", "sethostname", "bpf"] {
            assert!(!mentioned(&p, name), "{name}");
        }
    }

    #[test]
    fn sys_admin_allows_mounts_namespaces_and_free_clone() {
        let p = default_seccomp(&strings(&["CAP_SYS_ADMIN"]));
        for name in [
            "clone",
            "clone3",
            "mount",
            "umount",
            "umount2",
            "unshare",
            "setns",
            "sethostname",
            "setdomainname",
            "bpf",
            "perf_event_open",
            "syslog",
            "fsopen",
            "fsmount",
            "fsconfig",
            "fspick",
            "move_mount",
            "open_tree",
            "mount_setattr",
            "quotactl",
            "quotactl_fd",
            "lookup_dcookie",
            "name_to_handle_at",
            "fanotify_init",
        ] {
            assert!(allowed_always(&p, name), "{name}");
        }
        assert_eq!(rules_for(&p, "clone").len(), 1);
        assert_eq!(rules_for(&p, "clone3").len(), 1);
        // Other capabilities' calls stay out.
        for name in [
            "reboot",
            "ptrace",
            "chroot",
            "init_module",
            "open_by_handle_at",
        ] {
            assert!(!mentioned(&p, name), "{name}");
        }
    }

    #[test]
    fn each_capability_unlocks_its_own_syscalls() {
        let cases: &[(&str, &[&str])] = &[
            ("SYS_BOOT", &["reboot"]),
            ("SYS_CHROOT", &["chroot"]),
            (
                "SYS_MODULE",
                &["init_module", "finit_module", "delete_module"],
            ),
            ("SYS_PACCT", &["acct"]),
            (
                "SYS_PTRACE",
                &[
                    "kcmp",
                    "pidfd_getfd",
                    "process_madvise",
                    "process_vm_readv",
                    "process_vm_writev",
                    "ptrace",
                ],
            ),
            ("SYS_RAWIO", &["iopl", "ioperm"]),
            (
                "SYS_TIME",
                &["settimeofday", "stime", "clock_settime", "clock_settime64"],
            ),
            ("SYS_TTY_CONFIG", &["vhangup"]),
            (
                "SYS_NICE",
                &[
                    "get_mempolicy",
                    "mbind",
                    "set_mempolicy",
                    "set_mempolicy_home_node",
                ],
            ),
            ("SYSLOG", &["syslog"]),
            ("BPF", &["bpf"]),
            ("PERFMON", &["perf_event_open"]),
            ("DAC_READ_SEARCH", &["open_by_handle_at"]),
        ];
        let without = default_seccomp(&[]);
        for (cap, names) in cases {
            // Names as kubelet sends them (no prefix) are understood too.
            let with = default_seccomp(&strings(&[cap]));
            for name in *names {
                assert!(allowed_always(&with, name), "{cap} should allow {name}");
                assert!(!mentioned(&without, name), "{name} without {cap}");
            }
            assert!(!mentioned(&with, "mount"), "{cap} must not allow mount");
        }
    }

    #[test]
    fn syslog_granted_by_two_capabilities_is_listed_once() {
        let p = default_seccomp(&strings(&["CAP_SYS_ADMIN", "CAP_SYSLOG"]));
        let count: usize = rules_for(&p, "syslog")
            .iter()
            .map(|r| r.names().iter().filter(|n| *n == "syslog").count())
            .sum();
        assert_eq!(count, 1);
    }

    // --- Localhost seccomp profiles ---

    fn x86_host() -> ProfileHost {
        ProfileHost {
            arch: "x86_64",
            kernel: Some((6, 18, 44)),
        }
    }

    fn names_of(p: &LinuxSeccomp) -> Vec<Vec<String>> {
        p.syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .map(|r| r.names().clone())
            .collect()
    }

    fn profile_err(text: &str) -> String {
        seccomp_from_json(text, &[], &x86_host()).unwrap_err()
    }

    #[test]
    fn kernel_releases_parse() {
        assert_eq!(kernel_release("6.18.44-fc-v1147"), Some((6, 18, 44)));
        assert_eq!(kernel_release("4.8"), Some((4, 8, 0)));
        assert_eq!(kernel_release("5.15.0-91-generic"), Some((5, 15, 0)));
        assert_eq!(kernel_release("6.1+"), Some((6, 1, 0)));
        assert_eq!(kernel_release("6"), None);
        assert_eq!(kernel_release("x.y"), None);
        assert!(ProfileHost::current().kernel.is_some());
    }

    #[test]
    fn oci_shaped_profile_passes_through() {
        let text = r#"{
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 38,
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [
                {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
                 "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]},
                {"names": ["personality"], "action": "SCMP_ACT_LOG",
                 "args": [{"index": 0, "value": 255, "valueTwo": 8, "op": "SCMP_CMP_MASKED_EQ"}]}
            ]
        }"#;
        let p = seccomp_from_json(text, &[], &x86_host()).unwrap();
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), Some(38));
        assert_eq!(
            p.architectures().clone().unwrap(),
            vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86]
        );
        assert_eq!(
            p.flags().clone().unwrap(),
            vec![LinuxSeccompFilterFlag::SeccompFilterFlagLog]
        );
        let rules = p.syscalls().clone().unwrap();
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[1].errno_ret(), Some(13));
        let arg = rules[2].args().clone().unwrap()[0];
        assert_eq!(
            (arg.index(), arg.value(), arg.value_two()),
            (0, 255, Some(8))
        );
        assert_eq!(arg.op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        // What runc reads back is what the file said.
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(
            json["syscalls"][0]["names"],
            serde_json::json!(["read", "write"])
        );
        assert_eq!(json["syscalls"][2]["action"], "SCMP_ACT_LOG");
    }

    #[test]
    fn docker_profile_conditions_are_evaluated() {
        let text = r#"{
            "defaultAction": "SCMP_ACT_ERRNO",
            "archMap": [
                {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
                {"architecture": "SCMP_ARCH_RISCV64", "subArchitectures": null}
            ],
            "syscalls": [
                {"names": ["read"], "action": "SCMP_ACT_ALLOW", "comment": "always"},
                {"name": "getpid", "action": "SCMP_ACT_ALLOW", "args": null},
                {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
                {"names": ["newer"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "99.0"}},
                {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64", "x32"]}},
                {"names": ["set_tls"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm", "arm64"]}},
                {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                 "args": [{"index": 0, "value": 2114060288, "op": "SCMP_CMP_MASKED_EQ"}],
                 "excludes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"]}},
                {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
                 "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["oldcall"], "action": "SCMP_ACT_ALLOW", "excludes": {"minKernel": "5.0"}},
                {"names": ["both"], "action": "SCMP_ACT_ALLOW",
                 "includes": {"caps": ["CAP_SYS_ADMIN", "CAP_NET_ADMIN"]}}
            ]
        }"#;
        let host = x86_host();
        let plain = seccomp_from_json(text, &strings(&["CAP_CHOWN"]), &host).unwrap();
        assert_eq!(
            plain.architectures().clone().unwrap(),
            vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
        );
        assert_eq!(
            names_of(&plain),
            vec![
                vec!["read"],
                vec!["getpid"],
                vec!["ptrace"],
                vec!["arch_prctl"],
                vec!["clone"],
                vec!["clone3"],
            ]
        );
        let clone = &plain.syscalls().as_ref().unwrap()[4];
        assert_eq!(clone.args().as_ref().unwrap()[0].value(), 0x7E02_0000);

        let admin =
            seccomp_from_json(text, &strings(&["SYS_ADMIN", "CAP_NET_ADMIN"]), &host).unwrap();
        assert_eq!(
            names_of(&admin),
            vec![
                vec!["read"],
                vec!["getpid"],
                vec!["mount"],
                vec!["ptrace"],
                vec!["arch_prctl"],
                vec!["both"],
            ]
        );

        let arm = ProfileHost {
            arch: "aarch64",
            kernel: Some((4, 4, 0)),
        };
        let p = seccomp_from_json(text, &[], &arm).unwrap();
        assert_eq!(
            p.architectures().clone().unwrap(),
            vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]
        );
        assert_eq!(
            names_of(&p),
            vec![
                vec!["read"],
                vec!["getpid"],
                vec!["set_tls"],
                vec!["clone"],
                vec!["clone3"],
                vec!["oldcall"],
            ]
        );

        // A kernel that cannot be read meets no minimum and excludes nothing.
        let unknown = ProfileHost {
            arch: "x86_64",
            kernel: None,
        };
        let p = seccomp_from_json(text, &[], &unknown).unwrap();
        let names = names_of(&p);
        assert!(!names.contains(&vec!["ptrace".to_string()]));
        assert!(names.contains(&vec!["oldcall".to_string()]));
    }

    #[test]
    fn arch_map_without_this_host_leaves_native_only() {
        let text = r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "archMap": [{"architecture": "SCMP_ARCH_S390X", "subArchitectures": ["SCMP_ARCH_S390"]}],
            "syscalls": []}"#;
        let p = seccomp_from_json(text, &[], &x86_host()).unwrap();
        assert_eq!(p.architectures(), &None);
        assert_eq!(p.syscalls().as_ref().map(|s| s.len()), Some(0));
    }

    #[test]
    fn profile_mistakes_are_reported_where_they_are() {
        let cases: &[(&str, &str)] = &[
            ("{", "invalid JSON"),
            ("[]", "invalid JSON"),
            (r#"{"syscalls": []}"#, "defaultAction is missing"),
            (
                r#"{"defaultAction": "SCMP_ACT_MAYBE"}"#,
                "defaultAction: unknown action \"SCMP_ACT_MAYBE\"",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_Z80"]}"#,
                "architectures[0]: unknown architecture \"SCMP_ARCH_Z80\"",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["i386"]}]}"#,
                "archMap[0].subArchitectures[0]: unknown architecture",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"], "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}"#,
                "architectures and archMap are both set",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "flags": ["SECCOMP_FILTER_FLAG_FAST"]}"#,
                "flags[0]: unknown flag",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "ALLOW"}]}"#,
                "syscalls[0].action: unknown action \"ALLOW\"",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"]}]}"#,
                "syscalls[0].action is missing",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": [], "action": "SCMP_ACT_ALLOW"}]}"#,
                "syscalls[0].names: no syscall named",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"action": "SCMP_ACT_ALLOW"}]}"#,
                "syscalls[0].names: no syscall named",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read", ""], "action": "SCMP_ACT_ALLOW"}]}"#,
                "syscalls[0].names[1]: empty syscall name",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["a"], "name": "b", "action": "SCMP_ACT_ALLOW"}]}"#,
                "syscalls[0]: name and names are both set",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                    {"names": ["kill"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}]}]}"#,
                "syscalls[1].args[0].op: unknown operator \"SCMP_CMP_ABOUT\"",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}"#,
                "syscalls[0].args[0].index: 6 is not a syscall argument",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["vax"]}}]}"#,
                "syscalls[0].includes.arches[0]: unknown architecture \"vax\"",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_TELEPORT"]}}]}"#,
                "syscalls[0].excludes.caps[0]: unknown capability \"CAP_TELEPORT\"",
            ),
            (
                r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.x"}}]}"#,
                "syscalls[0].includes.minKernel: \"4.x\" is not a kernel version",
            ),
        ];
        for (text, want) in cases {
            let got = profile_err(text);
            assert!(got.contains(want), "for {text}\n got: {got}\nwant: {want}");
        }
    }

    #[test]
    fn profile_file_errors_name_localhost_ref() {
        let dir = tempfile::tempdir().unwrap();
        let (field, message) =
            invalid_field(seccomp_from_file(Path::new("profiles/x.json"), &[]).unwrap_err());
        assert_eq!(field, SECCOMP_REF_FIELD);
        assert!(message.contains("must be absolute"), "{message}");

        let missing = dir.path().join("missing.json");
        let (field, message) = invalid_field(seccomp_from_file(&missing, &[]).unwrap_err());
        assert_eq!(field, SECCOMP_REF_FIELD);
        assert!(message.contains("does not exist"), "{message}");

        let (_, message) = invalid_field(seccomp_from_file(dir.path(), &[]).unwrap_err());
        assert!(message.contains("cannot be read"), "{message}");

        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{\"defaultAction\": ").unwrap();
        let (field, message) = invalid_field(seccomp_from_file(&bad, &[]).unwrap_err());
        assert_eq!(field, SECCOMP_REF_FIELD);
        assert!(message.contains("invalid JSON"), "{message}");
        assert!(message.contains(&bad.display().to_string()), "{message}");
    }

    #[test]
    fn profile_file_is_read_for_this_host() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.json");
        std::fs::write(
            &path,
            r#"{"defaultAction": "SCMP_ACT_LOG", "syscalls": [
                {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                 "excludes": {"caps": ["CAP_DAC_OVERRIDE"]}}]}"#,
        )
        .unwrap();
        let p = seccomp_from_file(&path, &[]).unwrap();
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActLog);
        assert_eq!(names_of(&p), vec![vec!["mkdir"]]);
        let p = seccomp_from_file(&path, &strings(&["DAC_OVERRIDE"])).unwrap();
        assert!(names_of(&p).is_empty());
    }

    #[test]
    fn our_default_profile_reads_back_as_a_localhost_profile() {
        let p = default_seccomp(&strings(&DEFAULT_CAPABILITIES));
        let text = serde_json::to_string(&p).unwrap();
        let back = seccomp_from_json(&text, &[], &x86_host()).unwrap();
        assert_eq!(back, p);
    }

    // --- masked paths ---

    #[test]
    fn masked_and_readonly_paths_are_kubelets() {
        assert_eq!(DEFAULT_MASKED_PATHS[0], "/proc/asound");
        assert_eq!(DEFAULT_MASKED_PATHS[2], "/proc/interrupts");
        assert_eq!(DEFAULT_MASKED_PATHS[11], "/sys/devices/virtual/powercap");
        assert_eq!(DEFAULT_READONLY_PATHS[3], "/proc/sys");
        for p in DEFAULT_MASKED_PATHS
            .iter()
            .chain(DEFAULT_READONLY_PATHS.iter())
        {
            assert!(p.starts_with("/proc/") || p.starts_with("/sys/"), "{p}");
        }
        let unique: BTreeSet<_> = DEFAULT_MASKED_PATHS.iter().collect();
        assert_eq!(unique.len(), 12);
    }

    // --- AppArmor ---

    struct FakeAppArmor {
        _dir: tempfile::TempDir,
        host: AppArmorHost,
    }

    fn apparmor(enabled: Option<&str>, profiles: Option<&str>) -> FakeAppArmor {
        let dir = tempfile::tempdir().unwrap();
        let host = AppArmorHost {
            enabled_file: dir.path().join("enabled"),
            profiles_file: dir.path().join("profiles"),
        };
        if let Some(e) = enabled {
            std::fs::write(&host.enabled_file, e).unwrap();
        }
        if let Some(p) = profiles {
            std::fs::write(&host.profiles_file, p).unwrap();
        }
        FakeAppArmor { _dir: dir, host }
    }

    const LOADED: &str = "peapod-default (enforce)\n\
        /usr/bin/man (enforce)\n\
        my profile with spaces (complain)\n\
        k8s-nginx (enforce)\n";

    const RUNTIME_DEFAULT: i32 = 0;
    const UNCONFINED: i32 = 1;
    const LOCALHOST: i32 = 2;

    #[test]
    fn apparmor_enabled_reads_the_module_parameter() {
        assert!(apparmor(Some("Y\n"), None).host.enabled());
        assert!(!apparmor(Some("N\n"), None).host.enabled());
        assert!(!apparmor(Some(""), None).host.enabled());
        assert!(!apparmor(None, None).host.enabled());
        // The real host: just must not panic.
        let _ = apparmor_enabled();
        let _ = apparmor_profile_loaded("peapod-default");
    }

    #[test]
    fn apparmor_loaded_profiles_are_matched_by_whole_name() {
        let a = apparmor(Some("Y"), Some(LOADED));
        assert!(a.host.profile_loaded("peapod-default"));
        assert!(a.host.profile_loaded("/usr/bin/man"));
        assert!(a.host.profile_loaded("my profile with spaces"));
        assert!(!a.host.profile_loaded("peapod"));
        assert!(!a.host.profile_loaded("k8s"));
        assert!(!a.host.profile_loaded(""));
        assert!(!apparmor(Some("Y"), None)
            .host
            .profile_loaded("peapod-default"));
    }

    #[test]
    fn apparmor_unconfined_and_privileged_get_none() {
        let a = apparmor(Some("Y"), Some(LOADED));
        assert_eq!(a.host.profile(UNCONFINED, "", false).unwrap(), None);
        assert_eq!(a.host.profile(RUNTIME_DEFAULT, "", true).unwrap(), None);
        assert_eq!(
            a.host
                .profile(LOCALHOST, "localhost/k8s-nginx", true)
                .unwrap(),
            None
        );
    }

    #[test]
    fn apparmor_runtime_default_only_where_it_exists() {
        let loaded = apparmor(Some("Y"), Some(LOADED));
        assert_eq!(
            loaded.host.profile(RUNTIME_DEFAULT, "", false).unwrap(),
            Some("peapod-default".to_string())
        );
        let not_loaded = apparmor(Some("Y"), Some("k8s-nginx (enforce)\n"));
        assert_eq!(
            not_loaded.host.profile(RUNTIME_DEFAULT, "", false).unwrap(),
            None
        );
        let disabled = apparmor(Some("N"), Some(LOADED));
        assert_eq!(
            disabled.host.profile(RUNTIME_DEFAULT, "", false).unwrap(),
            None
        );
        let absent = apparmor(None, None);
        assert_eq!(
            absent.host.profile(RUNTIME_DEFAULT, "", false).unwrap(),
            None
        );
    }

    #[test]
    fn apparmor_localhost_profiles() {
        let a = apparmor(Some("Y"), Some(LOADED));
        assert_eq!(
            a.host
                .profile(LOCALHOST, "localhost/k8s-nginx", false)
                .unwrap(),
            Some("k8s-nginx".to_string())
        );
        assert_eq!(
            a.host.profile(LOCALHOST, "k8s-nginx", false).unwrap(),
            Some("k8s-nginx".to_string())
        );
        let (field, message) = invalid_field(
            a.host
                .profile(LOCALHOST, "localhost/k8s-apache", false)
                .unwrap_err(),
        );
        assert_eq!(
            field,
            "config.linux.security_context.apparmor.localhost_ref"
        );
        assert!(
            message.contains("k8s-apache") && message.contains("not loaded"),
            "{message}"
        );
        let (field, _) = invalid_field(a.host.profile(LOCALHOST, "localhost/", false).unwrap_err());
        assert_eq!(field, APPARMOR_REF_FIELD);

        let off = apparmor(Some("N"), Some(LOADED));
        match off.host.profile(LOCALHOST, "localhost/k8s-nginx", false) {
            Err(SecurityError::Unsupported(m)) => assert_eq!(
                m,
                "AppArmor profile k8s-nginx was requested but AppArmor is not enabled on this host"
            ),
            other => panic!("expected Unsupported, got {other:?}"),
        }
    }

    #[test]
    fn apparmor_unknown_profile_type_is_invalid() {
        let a = apparmor(Some("Y"), Some(LOADED));
        let (field, message) = invalid_field(a.host.profile(7, "", false).unwrap_err());
        assert_eq!(field, "config.linux.security_context.apparmor.profile_type");
        assert!(message.contains('7'));
    }

    // --- SELinux ---

    #[test]
    fn selinux_labels() {
        assert_eq!(selinux_label("", "", "", "").unwrap(), None);
        assert_eq!(
            selinux_label("system_u", "system_r", "container_t", "s0:c1,c2").unwrap(),
            Some("system_u:system_r:container_t:s0:c1,c2".to_string())
        );
        assert_eq!(
            selinux_label("", "", "spc_t", "").unwrap(),
            Some("::spc_t:".to_string())
        );
        assert_eq!(
            selinux_label("", "", "", "s0-s0:c0.c1023").unwrap(),
            Some(":::s0-s0:c0.c1023".to_string())
        );
        for (user, role, type_, part) in [
            ("a:b", "", "", "user"),
            ("", "r:x", "", "role"),
            ("", "", "t:y", "type"),
        ] {
            let (field, message) = invalid_field(selinux_label(user, role, type_, "").unwrap_err());
            assert_eq!(
                field,
                format!("config.linux.security_context.selinux_options.{part}")
            );
            assert!(message.contains("':'"), "{message}");
        }
        let _ = selinux_enabled();
    }
}
