//! Confinement besides the process's own settings: the seccomp profile
//! and the masked and read-only paths, none of which a privileged
//! container gets.

use std::path::Path;

use oci_spec::runtime::{LinuxSeccomp, Spec};

use super::base::linux_of;
use super::process::capabilities;
use super::SpecInputs;
use crate::container::error::ContainerError;
use crate::container::security::{
    default_seccomp, seccomp_from_file, DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS,
};
use crate::container::spec::SeccompSpec;

/// The profile asked for, fitted to the process's capabilities.
fn seccomp(i: &SpecInputs<'_>) -> Result<Option<LinuxSeccomp>, ContainerError> {
    let sec = &i.rec.spec.security;
    if sec.privileged {
        return Ok(None);
    }
    Ok(match &sec.seccomp {
        SeccompSpec::Unconfined => None,
        SeccompSpec::RuntimeDefault => Some(default_seccomp(&capabilities(i)?)),
        SeccompSpec::Localhost(path) => {
            Some(seccomp_from_file(Path::new(path), &capabilities(i)?)?)
        }
    })
}

pub fn with_seccomp(i: &SpecInputs<'_>, spec: &mut Spec) -> Result<(), ContainerError> {
    if let Some(profile) = seccomp(i)? {
        linux_of(spec).set_seccomp(Some(profile));
    }
    Ok(())
}

/// The paths asked for, else the defaults.
fn or_defaults(asked: &[String], defaults: &[&str]) -> Vec<String> {
    if asked.is_empty() {
        defaults.iter().map(|s| s.to_string()).collect()
    } else {
        asked.to_vec()
    }
}

pub fn with_masked_paths(i: &SpecInputs<'_>, spec: &mut Spec) -> Result<(), ContainerError> {
    let sec = &i.rec.spec.security;
    if sec.privileged {
        return Ok(());
    }
    let linux = linux_of(spec);
    linux.set_masked_paths(Some(or_defaults(&sec.masked_paths, &DEFAULT_MASKED_PATHS)));
    linux.set_readonly_paths(Some(or_defaults(
        &sec.readonly_paths,
        &DEFAULT_READONLY_PATHS,
    )));
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::container::runtime_spec::test_support::*;

    fn localhost_profile() -> SeccompSpec {
        SeccompSpec::Localhost(testdata("seccomp-localhost.json").display().to_string())
    }

    #[test]
    fn with_seccomp_sets_the_default_profile_for_the_capabilities() {
        let f = Fixture::plain();
        let j = run(with_seccomp, &f.inputs());
        let caps = capabilities(&f.inputs()).unwrap();
        assert_eq!(
            j["linux"]["seccomp"],
            serde_json::to_value(default_seccomp(&caps)).unwrap()
        );
        assert_changes_only(with_seccomp, &f.inputs(), &["/linux/seccomp"]);
    }

    #[test]
    fn with_seccomp_sets_nothing_when_unconfined_or_privileged() {
        let mut f = Fixture::plain();
        f.rec.spec.security.seccomp = SeccompSpec::Unconfined;
        assert!(run(with_seccomp, &f.inputs()).get("linux").is_none());
        f.rec.spec.security.seccomp = localhost_profile();
        f.rec.spec.security.privileged = true;
        assert!(run(with_seccomp, &f.inputs()).get("linux").is_none());
        assert_changes_only(with_seccomp, &f.inputs(), &[]);
    }

    #[test]
    fn with_seccomp_reads_a_localhost_profile_for_the_capabilities() {
        let mut f = Fixture::plain();
        f.rec.spec.security.seccomp = localhost_profile();
        let names = |f: &Fixture| -> Vec<serde_json::Value> {
            let j = run(with_seccomp, &f.inputs());
            let rules = j["linux"]["seccomp"]["syscalls"]
                .as_array()
                .unwrap()
                .clone();
            rules.iter().map(|r| r["names"][0].clone()).collect()
        };
        assert_eq!(
            names(&f),
            [
                json!("read"),
                json!("chown"),
                json!("mknod"),
                json!("personality")
            ]
        );
        f.rec.spec.security.add_capabilities = strings(&["SYS_PTRACE", "NET_ADMIN"]);
        f.rec.spec.security.drop_capabilities = strings(&["CHOWN"]);
        assert_eq!(
            names(&f),
            [json!("read"), json!("ptrace"), json!("personality")]
        );
        f.rec.spec.security.seccomp = SeccompSpec::Localhost("/nonexistent/profile.json".into());
        let e = with_seccomp(
            &f.inputs(),
            &mut crate::container::runtime_spec::base::empty_spec(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("seccomp.localhost_ref"), "{e}");
    }

    #[test]
    fn with_masked_paths_sets_the_defaults_or_the_requested_ones() {
        let mut f = Fixture::plain();
        let j = run(with_masked_paths, &f.inputs());
        assert_eq!(j["linux"]["maskedPaths"], json!(DEFAULT_MASKED_PATHS));
        assert_eq!(j["linux"]["readonlyPaths"], json!(DEFAULT_READONLY_PATHS));
        f.rec.spec.security.masked_paths = strings(&["/m"]);
        f.rec.spec.security.readonly_paths = strings(&["/r"]);
        let j = run(with_masked_paths, &f.inputs());
        assert_eq!(j["linux"]["maskedPaths"], json!(["/m"]));
        assert_eq!(j["linux"]["readonlyPaths"], json!(["/r"]));
        assert_changes_only(
            with_masked_paths,
            &f.inputs(),
            &["/linux/maskedPaths", "/linux/readonlyPaths"],
        );
        f.rec.spec.security.privileged = true;
        assert!(run(with_masked_paths, &f.inputs()).get("linux").is_none());
    }
}
