//! What confines containers beyond namespaces (AppArmor, SELinux), and
//! whether peapod can give them the `oom_score_adj` kubelet asks for.

use std::path::Path;

use super::Finding;
use crate::config::OomScoreAdjRestriction;
use crate::container::security::{AppArmorHost, DEFAULT_APPARMOR_PROFILE};
use crate::container::{has_cap_sys_resource, own_oom_score_adj, restricts_oom_score_adj};

/// Present when SELinux is active; holds 1 when enforcing.
const SELINUX_ENFORCE: &str = "/sys/fs/selinux/enforce";

/// The lowest `oom_score_adj` kubelet gives a container (Guaranteed pods,
/// critical pods); a floor at or below it changes nothing.
const LOWEST_KUBELET_CONTAINER_ADJ: i64 = -997;

/// The host's Linux security modules as containers meet them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LsmState {
    apparmor: bool,
    /// Whether peapod's RuntimeDefault AppArmor profile is loaded.
    default_profile: bool,
    /// `Some(enforcing)` when SELinux is active.
    selinux: Option<bool>,
}

pub(super) fn lsm() -> Finding {
    let apparmor = AppArmorHost::default();
    let selinux = Path::new(SELINUX_ENFORCE)
        .exists()
        .then(|| std::fs::read_to_string(SELINUX_ENFORCE).is_ok_and(|s| s.trim() == "1"));
    judge_lsm(LsmState {
        apparmor: apparmor.enabled(),
        default_profile: apparmor.profile_loaded(DEFAULT_APPARMOR_PROFILE),
        selinux,
    })
}

fn judge_lsm(s: LsmState) -> Finding {
    const ID: &str = "lsm";
    match s {
        LsmState {
            selinux: Some(enforcing),
            ..
        } => {
            let mode = if enforcing { "enforcing" } else { "permissive" };
            Finding::ok(
                ID,
                format!("SELinux {mode}: containers get the labels their pods ask for"),
            )
        }
        LsmState {
            apparmor: true,
            default_profile: true,
            ..
        } => Finding::ok(
            ID,
            format!("AppArmor, {DEFAULT_APPARMOR_PROFILE} loaded: RuntimeDefault containers are confined by it"),
        ),
        LsmState { apparmor: true, .. } => Finding::warn(
            ID,
            format!("AppArmor, but no profile {DEFAULT_APPARMOR_PROFILE} loaded: RuntimeDefault containers run unconfined"),
            format!("load an AppArmor profile named {DEFAULT_APPARMOR_PROFILE} (apparmor_parser -r FILE)"),
        ),
        _ => Finding::warn(
            ID,
            "neither AppArmor nor SELinux: containers are confined by namespaces, capabilities and seccomp only; pods asking for an AppArmor profile are refused",
            "boot with AppArmor (apparmor=1 security=apparmor) and securityfs mounted if pods should get AppArmor profiles",
        ),
    }
}

pub(super) fn oom_score_adj(restriction: OomScoreAdjRestriction) -> Finding {
    judge_oom(restriction, has_cap_sys_resource(), own_oom_score_adj())
}

fn judge_oom(restriction: OomScoreAdjRestriction, has_cap: bool, own: i64) -> Finding {
    const ID: &str = "oom-score-adj";
    let cap = if has_cap {
        "CAP_SYS_RESOURCE held"
    } else {
        "no CAP_SYS_RESOURCE"
    };
    let setting = match restriction {
        OomScoreAdjRestriction::Auto => "auto",
        OomScoreAdjRestriction::Always => "always",
        OomScoreAdjRestriction::Never => "never",
    };
    if !restricts_oom_score_adj(restriction, has_cap) {
        if has_cap {
            return Finding::ok(
                ID,
                format!("{cap}: containers get the oom_score_adj kubelet asks for"),
            );
        }
        return Finding::fail(
            ID,
            format!("{cap} and restrict_oom_score_adj = \"never\": containers asking for an oom_score_adj below {own} (this process's own) fail to start"),
            "set restrict_oom_score_adj = \"auto\", or give peapod CAP_SYS_RESOURCE",
        );
    }
    let found = format!(
        "{cap}, restrict_oom_score_adj = \"{setting}\": containers get an oom_score_adj of at least {own} (this process's own)"
    );
    if own <= LOWEST_KUBELET_CONTAINER_ADJ || restriction == OomScoreAdjRestriction::Always {
        return Finding::ok(ID, found);
    }
    Finding::warn(
        ID,
        found,
        format!("give peapod CAP_SYS_RESOURCE, or start it with an oom_score_adj of {LOWEST_KUBELET_CONTAINER_ADJ} or lower (OOMScoreAdjust=), so Guaranteed pods get the low score kubelet gives them"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preflight::Level;

    #[test]
    fn oom_floor_decisions() {
        use OomScoreAdjRestriction::*;
        assert_eq!(judge_oom(Auto, true, 0).level, Level::Ok);
        let f = judge_oom(Auto, false, 0);
        assert_eq!(f.level, Level::Warn);
        assert!(f.found.contains("at least 0"), "{f:?}");
        assert!(f.fix.unwrap().contains("CAP_SYS_RESOURCE"));
        // A daemon started at -999 clamps nothing kubelet asks for.
        assert_eq!(judge_oom(Auto, false, -999).level, Level::Ok);
        assert_eq!(judge_oom(Never, false, 0).level, Level::Fail);
        assert_eq!(judge_oom(Never, true, 0).level, Level::Ok);
        let f = judge_oom(Always, true, 5);
        assert_eq!(f.level, Level::Ok);
        assert!(f.found.contains("at least 5"), "{f:?}");
    }

    #[test]
    fn lsm_decisions() {
        let none = LsmState {
            apparmor: false,
            default_profile: false,
            selinux: None,
        };
        assert_eq!(judge_lsm(none).level, Level::Warn);
        let apparmor = LsmState {
            apparmor: true,
            ..none
        };
        let f = judge_lsm(apparmor);
        assert_eq!(f.level, Level::Warn);
        assert!(f.fix.unwrap().contains(DEFAULT_APPARMOR_PROFILE));
        let confined = LsmState {
            default_profile: true,
            ..apparmor
        };
        assert_eq!(judge_lsm(confined).level, Level::Ok);
        let selinux = LsmState {
            selinux: Some(false),
            ..none
        };
        let f = judge_lsm(selinux);
        assert_eq!(f.level, Level::Ok);
        assert!(f.found.contains("permissive"));
    }
}
