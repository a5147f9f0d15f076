//! Capabilities, seccomp, AppArmor, SELinux and masked paths of a container:
//! the CRI security context turned into the parts of an OCI runtime spec.
//!
//! Everything here is pure logic over the request and a few host files
//! (whose paths tests can replace); nothing is applied to a process.
//!
//! One file per concern: `capabilities`, `seccomp` (the RuntimeDefault
//! profile and Localhost profiles), `apparmor`, `selinux` and the
//! masked and read-only `paths`. Callers use the names re-exported here.

mod apparmor;
mod capabilities;
mod paths;
mod seccomp;
mod selinux;

pub use apparmor::{
    apparmor_enabled, apparmor_profile, apparmor_profile_loaded, AppArmorHost,
    DEFAULT_APPARMOR_PROFILE,
};
pub use capabilities::{
    capability_set, held_capabilities, known_capabilities, normalize_capability,
    own_capability_mask, to_oci_capabilities, DEFAULT_CAPABILITIES,
};
pub use paths::{DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS};
pub use seccomp::{default_seccomp, seccomp_from_file};
pub use selinux::{selinux_enabled, selinux_label};

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

/// Helpers the unit tests of these files share.
#[cfg(test)]
mod test_support {
    use super::SecurityError;

    pub(super) fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    pub(super) fn invalid_field(e: SecurityError) -> (String, String) {
        match e {
            SecurityError::Invalid { field, message } => (field, message),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }
}
