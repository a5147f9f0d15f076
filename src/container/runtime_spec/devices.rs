//! Devices: the nodes created in the container (`linux.devices`) and the
//! device cgroup's rules (`linux.resources.devices`).

use std::path::PathBuf;

use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, Spec};

use super::base::{linux_of, resources_of};
use super::{ResolvedDevice, SpecInputs};
use crate::container::error::ContainerError;

fn device_rule(
    allow: bool,
    kind: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut d = LinuxDeviceCgroup::default();
    d.set_allow(allow);
    d.set_typ(Some(kind));
    d.set_major(major);
    d.set_minor(minor);
    d.set_access(Some(access.to_string()));
    d
}

fn device_node(d: &ResolvedDevice) -> LinuxDevice {
    let mut dev = LinuxDevice::default();
    dev.set_path(PathBuf::from(&d.container_path));
    dev.set_typ(d.kind);
    dev.set_major(d.major);
    dev.set_minor(d.minor);
    dev.set_file_mode(Some(d.mode & 0o7777));
    dev.set_uid(Some(d.uid));
    dev.set_gid(Some(d.gid));
    dev
}

/// A privileged container may use every device; any other only its own,
/// with the permissions asked for, after a rule that denies all.
pub fn with_device_rules(i: &SpecInputs<'_>, spec: &mut Spec) -> Result<(), ContainerError> {
    let privileged = i.rec.spec.security.privileged;
    let mut rules = vec![device_rule(
        privileged,
        LinuxDeviceType::A,
        None,
        None,
        "rwm",
    )];
    if !privileged {
        rules.extend(
            i.devices
                .iter()
                .map(|d| device_rule(true, d.kind, Some(d.major), Some(d.minor), &d.permissions)),
        );
    }
    let res = resources_of(spec);
    res.devices_mut().get_or_insert_with(Vec::new).extend(rules);
    Ok(())
}

/// The device nodes, with the host node's permission bits and owner.
pub fn with_device_nodes(i: &SpecInputs<'_>, spec: &mut Spec) -> Result<(), ContainerError> {
    if i.devices.is_empty() {
        return Ok(());
    }
    let nodes = i.devices.iter().map(device_node);
    let linux = linux_of(spec);
    linux
        .devices_mut()
        .get_or_insert_with(Vec::new)
        .extend(nodes);
    Ok(())
}

#[cfg(test)]
mod tests {
    use oci_spec::runtime::LinuxDeviceType;
    use serde_json::json;

    use super::*;
    use crate::container::runtime_spec::test_support::*;

    fn with_two_devices() -> Fixture {
        let mut f = Fixture::plain();
        f.devices = vec![
            device("/dev/fuse", LinuxDeviceType::C, 10, 229, "rw"),
            device("/dev/sdb", LinuxDeviceType::B, 8, 16, "r"),
        ];
        f
    }

    #[test]
    fn with_device_rules_denies_all_but_the_containers_devices() {
        let f = with_two_devices();
        let j = run(with_device_rules, &f.inputs());
        assert_eq!(
            j["linux"]["resources"]["devices"],
            json!([
                {"allow": false, "type": "a", "access": "rwm"},
                {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rw"},
                {"allow": true, "type": "b", "major": 8, "minor": 16, "access": "r"},
            ])
        );
        assert_changes_only(
            with_device_rules,
            &f.inputs(),
            &["/linux/resources/devices"],
        );
    }

    #[test]
    fn with_device_rules_allows_all_to_a_privileged_container() {
        let mut f = with_two_devices();
        f.rec.spec.security.privileged = true;
        let j = run(with_device_rules, &f.inputs());
        assert_eq!(
            j["linux"]["resources"]["devices"],
            json!([{"allow": true, "type": "a", "access": "rwm"}])
        );
    }

    #[test]
    fn with_device_nodes_creates_the_nodes_only() {
        let mut f = with_two_devices();
        let j = run(with_device_nodes, &f.inputs());
        assert_eq!(
            j["linux"]["devices"][0],
            json!({"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
                   "fileMode": 0o666, "uid": 0, "gid": 6})
        );
        assert_eq!(j["linux"]["devices"][1]["fileMode"], 0o660);
        assert!(j["linux"].get("resources").is_none(), "{j}");
        assert_changes_only(with_device_nodes, &f.inputs(), &["/linux/devices"]);
        f.devices.clear();
        assert!(run(with_device_nodes, &f.inputs()).get("linux").is_none());
    }
}
