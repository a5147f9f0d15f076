//! Capabilities: the kernel's names, the default set, and the set a
//! container gets from its add and drop lists.

use std::collections::BTreeSet;

use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

use super::SecurityError;

/// Every capability the kernel defines, indexed by its number (0..=40).
pub(super) const CAPABILITIES: [&str; 41] = [
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

pub(super) fn has_capability(caps: &[String], wanted: &str) -> bool {
    caps.iter().any(|c| normalize_capability(c) == Some(wanted))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::security::test_support::{invalid_field, strings};

    fn all_known() -> Vec<&'static str> {
        CAPABILITIES.to_vec()
    }

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
}
