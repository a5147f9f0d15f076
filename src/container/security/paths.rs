//! The paths a non-privileged container gets masked or read-only.

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

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
}
