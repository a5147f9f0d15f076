//! The empty spec the steps start from, and the parts of a spec as a step
//! reaches them: made empty on first use, so that no step depends on
//! another having run first.

use std::collections::HashMap;
use std::path::PathBuf;

use oci_spec::runtime::{Linux, LinuxResources, Mount, Process, Spec};

/// The runtime-spec version peapod's specs follow.
const OCI_VERSION: &str = "1.0.2";

/// A spec with nothing in it but its version.
pub fn empty_spec() -> Spec {
    let mut spec = Spec::default();
    spec.set_version(OCI_VERSION.to_string());
    spec.set_root(None);
    spec.set_mounts(None);
    spec.set_process(None);
    spec.set_hostname(None);
    spec.set_domainname(None);
    spec.set_hooks(None);
    spec.set_annotations(None);
    spec.set_linux(None);
    spec
}

/// A process with nothing set: no arguments, environment, capabilities
/// or rlimits, uid and gid 0.
fn empty_process() -> Process {
    let mut p = Process::default();
    p.set_terminal(None);
    p.set_console_size(None);
    p.set_user(Default::default());
    p.set_args(None);
    p.set_env(None);
    p.set_cwd(PathBuf::new());
    p.set_capabilities(None);
    p.set_rlimits(None);
    p.set_no_new_privileges(None);
    p.set_apparmor_profile(None);
    p.set_oom_score_adj(None);
    p.set_selinux_label(None);
    p.set_scheduler(None);
    p.set_io_priority(None);
    p
}

/// The Linux part with nothing set: no namespaces, resources, masked
/// paths or devices.
fn empty_linux() -> Linux {
    let mut l = Linux::default();
    l.set_uid_mappings(None);
    l.set_gid_mappings(None);
    l.set_sysctl(None);
    l.set_resources(None);
    l.set_cgroups_path(None);
    l.set_namespaces(None);
    l.set_devices(None);
    l.set_seccomp(None);
    l.set_rootfs_propagation(None);
    l.set_masked_paths(None);
    l.set_readonly_paths(None);
    l.set_mount_label(None);
    l
}

pub fn process_of(spec: &mut Spec) -> &mut Process {
    spec.process_mut().get_or_insert_with(empty_process)
}

pub fn linux_of(spec: &mut Spec) -> &mut Linux {
    spec.linux_mut().get_or_insert_with(empty_linux)
}

pub fn resources_of(spec: &mut Spec) -> &mut LinuxResources {
    linux_of(spec)
        .resources_mut()
        .get_or_insert_with(LinuxResources::default)
}

pub fn mounts_of(spec: &mut Spec) -> &mut Vec<Mount> {
    spec.mounts_mut().get_or_insert_with(Vec::new)
}

pub fn annotations_of(spec: &mut Spec) -> &mut HashMap<String, String> {
    spec.annotations_mut().get_or_insert_with(HashMap::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_empty_spec_holds_only_its_version() {
        let json = serde_json::to_value(empty_spec()).unwrap();
        assert_eq!(json, serde_json::json!({"ociVersion": "1.0.2"}));
    }

    #[test]
    fn parts_are_made_empty_on_first_use() {
        let mut spec = empty_spec();
        process_of(&mut spec);
        resources_of(&mut spec);
        mounts_of(&mut spec);
        annotations_of(&mut spec);
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "ociVersion": "1.0.2",
                "process": {"user": {"uid": 0, "gid": 0}, "cwd": ""},
                "linux": {"resources": {}},
                "mounts": [],
                "annotations": {},
            })
        );
    }

    #[test]
    fn a_part_once_made_is_kept() {
        let mut spec = empty_spec();
        process_of(&mut spec).set_args(Some(vec!["sh".into()]));
        linux_of(&mut spec).set_mount_label(Some("l".into()));
        resources_of(&mut spec);
        mounts_of(&mut spec).push(Mount::default());
        assert_eq!(
            process_of(&mut spec).args().as_deref(),
            Some(&["sh".to_string()][..])
        );
        assert_eq!(linux_of(&mut spec).mount_label().as_deref(), Some("l"));
        assert_eq!(mounts_of(&mut spec).len(), 1);
    }
}
