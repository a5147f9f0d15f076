//! Whole specs against snapshots in `testdata/`: a change to what `build`
//! writes for the same inputs shows here, field by field.
//!
//! Values that depend on the host rather than on the inputs (the
//! capabilities a privileged container gets, the RuntimeDefault seccomp
//! profile, the RuntimeDefault AppArmor profile, the host's name) are
//! checked against the security module's answer for the same inputs and
//! then replaced by `"<host>"`, so the snapshots hold on any host.
//!
//! The capability sets are sets (`HashSet`s in `oci-spec`, written in no
//! particular order): they are compared sorted.
//!
//! A missing snapshot is written from the current code and the test fails,
//! so that a new snapshot is looked at before it is committed.

use std::path::Path;

use oci_spec::runtime::LinuxDeviceType;
use serde_json::Value;

use super::test_support::*;
use super::{build, HostFacts, SpecInputs};
use crate::container::security;
use crate::container::spec::*;

const HOST: &str = "<host>";

/// Compares `actual` with the snapshot `name`, writing it when missing.
fn assert_snapshot(name: &str, actual: &Value) {
    let path = testdata(name);
    let pretty = serde_json::to_string_pretty(actual).unwrap() + "\n";
    let Ok(text) = std::fs::read_to_string(&path) else {
        std::fs::write(&path, &pretty).unwrap();
        panic!(
            "snapshot {} written: review it and run again",
            path.display()
        );
    };
    let expected: Value = serde_json::from_str(&text).unwrap();
    assert!(
        *actual == expected,
        "spec differs from {}; built:\n{pretty}",
        path.display()
    );
}

/// Checks the value at `pointer` against what the host gives (`None`:
/// absent) and puts the placeholder in its place.
fn host_dependent(spec: &mut Value, pointer: &str, expected: Option<Value>) {
    assert_eq!(spec.pointer(pointer), expected.as_ref(), "{pointer}");
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let object = spec.pointer_mut(parent).unwrap().as_object_mut().unwrap();
    object.insert(key.to_string(), Value::String(HOST.to_string()));
}

/// Sorts the capability sets of `capabilities` (a `process.capabilities`).
fn sort_capability_sets(capabilities: &mut Value) {
    let Some(sets) = capabilities.as_object_mut() else {
        return;
    };
    for set in sets.values_mut() {
        if let Some(names) = set.as_array_mut() {
            names.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
        }
    }
}

fn built(i: &SpecInputs<'_>) -> Value {
    let mut spec = serde_json::to_value(build(i).unwrap()).unwrap();
    if let Some(caps) = spec.pointer_mut("/process/capabilities") {
        sort_capability_sets(caps);
    }
    spec
}

/// See [`every_feature_inputs`].
#[test]
fn snapshot_pod_container_with_every_feature() {
    let spec = built(&Fixture::every_feature().inputs());
    assert_snapshot("every-feature.json", &spec);
}

/// A privileged container of a pod on the host's network and IPC, in the
/// host's PID namespace, with the systemd driver on a cgroup v1 host, its
/// own /dev/shm and /etc/resolv.conf mounts and the host's devices.
#[test]
fn snapshot_host_network_privileged() {
    let mut sec = security_spec();
    sec.privileged = true;
    sec.pid = PidMode::Node;
    sec.add_capabilities = strings(&["NET_ADMIN"]);
    let resources = Resources {
        cpu_shares: 2,
        cpu_period: 100000,
        oom_score_adj: 1000,
        ..Default::default()
    };
    let mut rec = record("agent", sec.clone(), resources);
    rec.spec.args = strings(&["--once"]);
    let mut pod = pod(true);
    pod.cgroup_parent =
        "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podu.slice".into();
    let host = HostFacts {
        cgroup_v2: false,
        hugetlb: false,
        swap: false,
        oom_score_adj_min: None,
        systemd_cgroup: true,
        idmapped_mounts: true,
    };
    let mounts = vec![
        cri_mount("/etc/resolv.conf", "/etc/resolv.conf", Propagation::Private),
        cri_mount("/dev/shm", "/dev/shm", Propagation::Private),
        cri_mount(
            "/var/lib/agent",
            "/var/lib/agent",
            Propagation::Bidirectional,
        ),
    ];
    let devices = vec![
        device("/dev/null", LinuxDeviceType::C, 1, 3, "rwm"),
        device("/dev/sda", LinuxDeviceType::B, 8, 0, "rwm"),
    ];
    let mut spec = built(&SpecInputs {
        rec: &rec,
        pod: &pod,
        image: &image(),
        user: &user(vec![]),
        mounts: &mounts,
        devices: &devices,
        hosts_file: Path::new("/run/peapod/containers/c1d2/hosts"),
        target_pid: None,
        host: &host,
    });
    let caps = security::capability_set(&sec.add_capabilities, &[], true).unwrap();
    let mut oci_caps = serde_json::to_value(security::to_oci_capabilities(&caps)).unwrap();
    sort_capability_sets(&mut oci_caps);
    host_dependent(&mut spec, "/process/capabilities", Some(oci_caps));
    let apparmor = security::apparmor_profile(0, "", true).unwrap();
    host_dependent(
        &mut spec,
        "/process/apparmorProfile",
        apparmor.map(Value::String),
    );
    let hostname = pod.container_hostname();
    let env = spec
        .pointer_mut("/process/env")
        .unwrap()
        .as_array_mut()
        .unwrap();
    let slot = env
        .iter_mut()
        .find(|e| *e == &Value::String(format!("HOSTNAME={hostname}")))
        .expect("HOSTNAME is the host's");
    *slot = Value::String(format!("HOSTNAME={HOST}"));
    assert_snapshot("host-network-privileged.json", &spec);
}

/// A debug container in the PID namespace of another container, with the
/// runtime's default seccomp profile, masked paths and AppArmor.
#[test]
fn snapshot_target_pid_namespace() {
    let mut sec = security_spec();
    sec.pid = PidMode::Target("c0ffee".into());
    sec.run_as_user = Some(0);
    let mut rec = record("debugger", sec.clone(), Resources::default());
    rec.spec.working_dir = "/work".into();
    rec.spec.args = strings(&["sh"]);
    let pod = pod(false);
    let host = HostFacts {
        cgroup_v2: true,
        oom_score_adj_min: Some(0),
        ..Default::default()
    };
    let mut spec = built(&SpecInputs {
        rec: &rec,
        pod: &pod,
        image: &image(),
        user: &user(vec![]),
        mounts: &[],
        devices: &[],
        hosts_file: Path::new("/run/peapod/containers/c1d2/hosts"),
        target_pid: Some(777),
        host: &host,
    });
    let caps = security::capability_set(&[], &[], false).unwrap();
    let seccomp = serde_json::to_value(security::default_seccomp(&caps)).unwrap();
    host_dependent(&mut spec, "/linux/seccomp", Some(seccomp));
    let apparmor = security::apparmor_profile(0, "", false).unwrap();
    host_dependent(
        &mut spec,
        "/process/apparmorProfile",
        apparmor.map(Value::String),
    );
    assert_snapshot("target-pid.json", &spec);
}
