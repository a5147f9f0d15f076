//! AppArmor: the profile a container runs under.

use std::path::PathBuf;

use crate::container::spec::AppArmorKind;

use super::SecurityError;

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
        let kind = AppArmorKind::of(profile_type).ok_or_else(|| {
            SecurityError::invalid(
                "config.linux.security_context.apparmor.profile_type",
                format!("unknown profile type {profile_type}"),
            )
        })?;
        if privileged {
            return Ok(None);
        }
        match kind {
            AppArmorKind::Unconfined => Ok(None),
            AppArmorKind::RuntimeDefault => Ok((self.enabled()
                && self.profile_loaded(DEFAULT_APPARMOR_PROFILE))
            .then(|| DEFAULT_APPARMOR_PROFILE.to_string())),
            AppArmorKind::Localhost => self.localhost_profile(localhost_ref).map(Some),
        }
    }

    /// A Localhost profile (`localhost/<name>` or a bare name), which must
    /// be loaded, on a host with AppArmor.
    fn localhost_profile(&self, localhost_ref: &str) -> Result<String, SecurityError> {
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
        Ok(name.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::security::test_support::invalid_field;

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
}
