//! `peapod-pause`: the pause loop of a pod's infra process, as a tiny
//! executable.
//!
//! `peapod-monitor pause` sets up the pod's namespaces, forks, and the child
//! execs this file, so that the process holding a pod's namespaces costs
//! kilobytes instead of the ~2 MB of a std binary on glibc. It uses neither
//! std nor libc: four raw system calls, no allocation, no dependencies.
//!
//! Building: not a Cargo target. build.rs compiles this file alone with
//! rustc (`panic=abort`, which a `no_std` executable needs on stable Rust,
//! without imposing it on the daemon) and links it `-static -no-pie`: the C
//! start file calls our `__libc_start_main`, and the result is a static
//! executable of about 12 kB VmRSS. `peapod-monitor` embeds it.
//!
//! Behaviour: exits 0 on SIGTERM or SIGINT, reaps every child on SIGCHLD
//! (as PID 1 of a pod PID namespace, orphans are reparented to it), and
//! otherwise sleeps in `rt_sigtimedwait`. The three signals are blocked
//! rather than handled: a blocked signal is queued even for a namespace's
//! PID 1, which discards signals whose disposition is the default.
//! The monitor blocks them before it forks, so none is lost before this
//! program starts.
#![no_std]
#![no_main]

use core::arch::asm;

/// Kernel ABI numbers (they are facts of the Linux ABI; no libc here).
#[allow(non_upper_case_globals)]
mod sys {
    pub type c_int = i32;
    pub type c_long = i64;
    pub const SIGINT: c_int = 2;
    pub const SIGTERM: c_int = 15;
    pub const SIGCHLD: c_int = 17;
    pub const SIG_BLOCK: c_int = 0;
    pub const WNOHANG: c_int = 1;
    pub const __WALL: c_int = 0x4000_0000;
    pub const EINTR: c_int = 4;
    pub const EAGAIN: c_int = 11;
    #[cfg(target_arch = "x86_64")]
    pub const SYS_rt_sigprocmask: c_long = 14;
    #[cfg(target_arch = "x86_64")]
    pub const SYS_wait4: c_long = 61;
    #[cfg(target_arch = "x86_64")]
    pub const SYS_rt_sigtimedwait: c_long = 128;
    #[cfg(target_arch = "x86_64")]
    pub const SYS_exit_group: c_long = 231;
    #[cfg(target_arch = "aarch64")]
    pub const SYS_exit_group: c_long = 94;
    #[cfg(target_arch = "aarch64")]
    pub const SYS_rt_sigprocmask: c_long = 135;
    #[cfg(target_arch = "aarch64")]
    pub const SYS_rt_sigtimedwait: c_long = 137;
    #[cfg(target_arch = "aarch64")]
    pub const SYS_wait4: c_long = 260;
}
use sys as libc;

/// Bit for `sig` in the kernel's 64-bit signal set.
const fn sig_bit(sig: libc::c_int) -> u64 {
    1u64 << (sig - 1)
}

const WAIT_SET: u64 = sig_bit(libc::SIGTERM) | sig_bit(libc::SIGINT) | sig_bit(libc::SIGCHLD);

/// The kernel's sigset_t size for rt_sig* calls (_NSIG / 8).
const KERNEL_SIGSET_SIZE: isize = 8;

/// Exit code if the kernel refuses the signal calls; looping on an error
/// would spin the CPU.
const EXIT_SYSCALL_FAILED: isize = 2;

/// Exit code of the panic handler.
const EXIT_PANIC: isize = 101;

/// Entry point called by the C runtime's `_start` (crt1.o/Scrt1.o), which
/// is linked as usual: it aligns the stack and passes `main`, argc and argv,
/// none of which we need. glibc is not linked, so this definition is the
/// only one; it never returns.
#[no_mangle]
pub extern "C" fn __libc_start_main() -> ! {
    pause_main()
}

/// Referenced by `_start`; never called since `__libc_start_main` above
/// does not call it, but kept working in case a start file does.
#[no_mangle]
pub extern "C" fn main() -> ! {
    pause_main()
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("peapod-pause has raw system calls only for x86_64 and aarch64");

/// Raw four-argument system call; returns the kernel's value (negative
/// errno on failure).
///
/// # Safety
/// The arguments must be valid for system call `nr`.
#[cfg(target_arch = "x86_64")]
unsafe fn syscall4(nr: libc::c_long, a: isize, b: isize, c: isize, d: isize) -> isize {
    let ret: isize;
    // SAFETY: the caller guarantees the arguments; `syscall` clobbers only
    // rcx and r11 besides rax.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") nr as isize => ret,
            in("rdi") a,
            in("rsi") b,
            in("rdx") c,
            in("r10") d,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// Raw four-argument system call; returns the kernel's value (negative
/// errno on failure).
///
/// # Safety
/// The arguments must be valid for system call `nr`.
#[cfg(target_arch = "aarch64")]
unsafe fn syscall4(nr: libc::c_long, a: isize, b: isize, c: isize, d: isize) -> isize {
    let ret: isize;
    // SAFETY: the caller guarantees the arguments; `svc 0` returns in x0.
    unsafe {
        asm!(
            "svc 0",
            in("x8") nr as isize,
            inlateout("x0") a => ret,
            in("x1") b,
            in("x2") c,
            in("x3") d,
            options(nostack),
        );
    }
    ret
}

fn exit(code: isize) -> ! {
    loop {
        // SAFETY: exit_group takes a plain integer and does not return.
        unsafe {
            syscall4(libc::SYS_exit_group, code, 0, 0, 0);
        }
    }
}

fn block_signals(set: &u64) -> isize {
    // SAFETY: `set` points to a live 8-byte sigset; no old set requested.
    unsafe {
        syscall4(
            libc::SYS_rt_sigprocmask,
            libc::SIG_BLOCK as isize,
            set as *const u64 as isize,
            0,
            KERNEL_SIGSET_SIZE,
        )
    }
}

/// Sleeps until one signal of `set` is pending and returns its number
/// (negative errno on failure).
fn wait_signal(set: &u64) -> isize {
    // SAFETY: `set` points to a live 8-byte sigset; siginfo and timeout may
    // be null (no info wanted, wait forever).
    unsafe {
        syscall4(
            libc::SYS_rt_sigtimedwait,
            set as *const u64 as isize,
            0,
            0,
            KERNEL_SIGSET_SIZE,
        )
    }
}

/// Reaps every child that has exited, without blocking. SIGCHLDs coalesce,
/// so one signal may stand for many zombies.
fn reap_children() {
    loop {
        // SAFETY: null status and rusage pointers are allowed.
        let pid = unsafe {
            syscall4(
                libc::SYS_wait4,
                -1,
                0,
                (libc::WNOHANG | libc::__WALL) as isize,
                0,
            )
        };
        // 0: children remain but none has exited; negative: ECHILD (none
        // left) or an error, either way nothing to reap now.
        if pid <= 0 {
            return;
        }
    }
}

fn pause_main() -> ! {
    let set = WAIT_SET;
    if block_signals(&set) < 0 {
        exit(EXIT_SYSCALL_FAILED);
    }
    // Children may have exited before we blocked SIGCHLD here (the monitor
    // blocks it already, but do not rely on how we were started).
    reap_children();
    loop {
        let sig = wait_signal(&set);
        if sig == libc::SIGTERM as isize || sig == libc::SIGINT as isize {
            exit(0);
        } else if sig == libc::SIGCHLD as isize {
            reap_children();
        } else if sig == -(libc::EINTR as isize) || sig == -(libc::EAGAIN as isize) {
            // Interrupted (e.g. by SIGSTOP/SIGCONT): wait again.
        } else {
            exit(EXIT_SYSCALL_FAILED);
        }
    }
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    exit(EXIT_PANIC)
}
