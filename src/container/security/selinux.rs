//! SELinux: a container's process label.

use std::path::Path;

use super::SecurityError;

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
    use crate::container::security::test_support::invalid_field;

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
