//! peapod's RuntimeDefault seccomp profile.

use std::collections::BTreeSet;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompOperator, LinuxSyscall,
};

use super::super::capabilities::has_capability;
use super::syscalls::{
    ARCH_SYSCALLS, CAPABILITY_GATED, EVENT_SYSCALLS, FILE_SYSCALLS, IPC_SYSCALLS, MEMORY_SYSCALLS,
    MOUNT_INFO_SYSCALLS, NETWORK_SYSCALLS, PROCESS_SYSCALLS, SIGNAL_SYSCALLS, TIME_SYSCALLS,
};
use super::{seccomp_arg, syscall_rule};

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;
/// CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC |
/// CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET.
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;
const AF_VSOCK: u64 = 40;
/// PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32 and the query
/// value 0xffffffff: what ordinary programs (setarch, linux32) use.
const ALLOWED_PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

fn allow<S: AsRef<str>>(names: &[S]) -> LinuxSyscall {
    let names = names.iter().map(|n| n.as_ref().to_string()).collect();
    syscall_rule(names, LinuxSeccompAction::ScmpActAllow, None, Vec::new())
}

/// `name` allowed when its arguments meet `arg`.
fn allow_if(name: &str, arg: LinuxSeccompArg) -> LinuxSyscall {
    syscall_rule(
        vec![name.to_string()],
        LinuxSeccompAction::ScmpActAllow,
        None,
        vec![arg],
    )
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
    let mut rules = vec![allow(&ordinary_syscalls())];
    rules.extend(argument_checked_rules());
    if !has_capability(caps, "CAP_SYS_ADMIN") {
        rules.extend(clone_without_namespaces());
    }
    rules.extend(capability_gated_rule(caps));

    let mut profile = LinuxSeccomp::default();
    profile
        .set_default_action(LinuxSeccompAction::ScmpActErrno)
        .set_default_errno_ret(Some(EPERM))
        .set_architectures(Some(host_seccomp_arches()))
        .set_syscalls(Some(rules));
    profile
}

/// The calls every container may make, whatever their arguments.
fn ordinary_syscalls() -> Vec<&'static str> {
    [
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
    .concat()
}

/// The calls every container may make with some arguments only.
fn argument_checked_rules() -> Vec<LinuxSyscall> {
    // vsock is not network-namespaced: it would reach the host or its
    // hypervisor directly.
    let not_vsock = seccomp_arg(0, AF_VSOCK, None, LinuxSeccompOperator::ScmpCmpNe);
    let mut rules = vec![allow_if("socket", not_vsock)];
    // Execution domains other than these change how the kernel treats the
    // process (e.g. READ_IMPLIES_EXEC); one rule per value, since the
    // conditions of one rule must all hold.
    rules.extend(ALLOWED_PERSONALITIES.into_iter().map(|value| {
        allow_if(
            "personality",
            seccomp_arg(0, value, None, LinuxSeccompOperator::ScmpCmpEq),
        )
    }));
    rules
}

/// For a container without CAP_SYS_ADMIN: threads and forks yes, new
/// namespaces no.
fn clone_without_namespaces() -> [LinuxSyscall; 2] {
    let no_namespace_flag = seccomp_arg(
        0,
        CLONE_NAMESPACE_FLAGS,
        Some(0),
        LinuxSeccompOperator::ScmpCmpMaskedEq,
    );
    [
        allow_if("clone", no_namespace_flag),
        // clone3 passes its flags in memory, out of the filter's sight:
        // ENOSYS makes libc fall back to clone, which is checked above.
        syscall_rule(
            vec!["clone3".to_string()],
            LinuxSeccompAction::ScmpActErrno,
            Some(ENOSYS),
            Vec::new(),
        ),
    ]
}

/// One rule allowing the calls of every capability the container holds,
/// each name once; None when it holds none of those capabilities.
fn capability_gated_rule(caps: &[String]) -> Option<LinuxSyscall> {
    let gated: BTreeSet<&str> = CAPABILITY_GATED
        .iter()
        .filter(|(cap, _)| has_capability(caps, cap))
        .flat_map(|(_, names)| names.iter().copied())
        .collect();
    (!gated.is_empty()).then(|| allow(&gated.into_iter().collect::<Vec<_>>()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::security::capabilities::{CAPABILITIES, DEFAULT_CAPABILITIES};
    use crate::container::security::test_support::strings;

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
}
