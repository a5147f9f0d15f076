//! Each runtime handler: its binary, its version, what its `features`
//! command says, and whether it runs a container on this host at all —
//! found by running one (`true`, with the host's /usr read-only), with
//! the cgroup driver the daemon would use. A runtime that refuses this
//! host (crun on a hybrid cgroup host) says so in its own words.

use std::io;
use std::path::Path;

use serde_json::json;

use super::storage::ProbeDir;
use super::{is_root, Finding, Level};
use crate::cgroups::{CgroupDriver, CgroupLayout};
use crate::config::{Config, RuntimeHandler};
use crate::host::fs::{find_executable, search_path};
use crate::host::DEFAULT_PATH;
use crate::oci::{CliRuntime, OciError, OciRuntime};

/// Host directories the trial container sees read-only: enough for
/// `true` on merged-/usr and older layouts alike.
const HOST_DIRS: [&str; 5] = ["/usr", "/bin", "/sbin", "/lib", "/lib64"];

pub(super) async fn check_all(config: &Config) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (name, handler) in &config.runtimes {
        findings.push(check_handler(config, name, handler).await);
    }
    findings
}

async fn check_handler(config: &Config, name: &str, handler: &RuntimeHandler) -> Finding {
    let id = format!("runtime:{name}");
    // Pods that name no handler use the default one: without it, none run.
    let severity = if name == config.default_runtime {
        Level::Fail
    } else {
        Level::Warn
    };
    let Some(binary) = find_executable(&handler.path) else {
        return Finding::not_ok(
            id,
            severity,
            format!(
                "{} not found (PATH {})",
                handler.path.display(),
                search_path()
            ),
            format!("install {name}, or set runtimes.{name}.path to its binary"),
        );
    };
    let probe = match ProbeDir::new(&config.state_dir, &format!("runtime-{}", plain(name))) {
        Ok(p) => p,
        Err(e) => {
            return Finding::not_ok(
                id,
                severity,
                format!("cannot make a directory to try {name} in: {e}"),
                "make state_dir (or its parent) writable by root",
            )
        }
    };
    let runtime = match probe.subdir("state") {
        Ok(root) => CliRuntime::new(
            name,
            &binary,
            &root,
            config.cgroup_driver == CgroupDriver::Systemd,
            &config.monitor_binary(),
        ),
        Err(e) => {
            return Finding::not_ok(
                id,
                severity,
                format!("cannot make {name}'s state directory: {e}"),
                "make state_dir (or its parent) writable by root",
            )
        }
    };
    let described = describe(&runtime, &binary).await;
    if !is_root() {
        return super::not_root(id, &described);
    }
    match try_container(&runtime, &probe, config.cgroup_driver).await {
        Ok(()) => Finding::ok(id, format!("{described}; ran a container")),
        Err(message) => Finding::not_ok(
            id,
            severity,
            format!("{described}; cannot run a container here: {message}"),
            format!("fix what {name} reports, or point runtimes.{name}.path at a runtime that works on this host"),
        ),
    }
}

/// `runc version 1.1.5 (/usr/sbin/runc), recursive read-only mounts: yes`.
async fn describe(runtime: &CliRuntime, binary: &Path) -> String {
    let version = match runtime.version().await {
        Ok(v) => v,
        Err(e) => format!("version unknown ({e})"),
    };
    let rro = if runtime.features().await.recursive_read_only_mounts {
        "yes"
    } else {
        "no"
    };
    format!(
        "{version} ({}), recursive read-only mounts: {rro}",
        binary.display()
    )
}

/// Runs a container of `true` to its end; the runtime's own message when
/// it cannot.
async fn try_container(
    runtime: &CliRuntime,
    probe: &ProbeDir,
    driver: CgroupDriver,
) -> Result<(), String> {
    // Unique like the probe directory: `peapod-check-runtime-runc-<pid>-<n>`.
    let id = probe
        .path()
        .file_name()
        .map(|n| n.to_string_lossy().trim_start_matches('.').to_string())
        .unwrap_or_default();
    let cgroup = format!("/{id}");
    let cgroups_path = match driver {
        CgroupDriver::Cgroupfs => cgroup.clone(),
        CgroupDriver::Systemd => format!("system.slice:peapod-check:{id}"),
    };
    let bundle = probe.subdir("bundle").map_err(|e| e.to_string())?;
    write_bundle(&bundle, &cgroups_path).map_err(|e| format!("writing a bundle: {e}"))?;
    let ran = runtime.run_to_exit(&id, &bundle).await;
    if driver == CgroupDriver::Cgroupfs {
        remove_cgroup(&cgroup);
    }
    ran.map_err(|e| match e {
        OciError::Failed { message, .. } => message,
        other => other.to_string(),
    })
}

/// A runtime removes the cgroups of a container it ran; one that failed
/// half-way may leave some.
fn remove_cgroup(path: &str) {
    if let Ok(layout) = CgroupLayout::detect() {
        if layout.exists(path) {
            if let Err(e) = layout.remove(path) {
                tracing::warn!("cannot remove the check's cgroup {path}: {e}");
            }
        }
    }
}

/// An OCI bundle whose root is empty but for the host's /usr, /bin, /lib
/// (read-only) and a /proc, running `true` in new namespaces.
fn write_bundle(bundle: &Path, cgroups_path: &str) -> io::Result<()> {
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir_all(rootfs.join("proc"))?;
    let mut mounts = vec![json!({"destination": "/proc", "type": "proc", "source": "proc"})];
    for dir in HOST_DIRS.iter().filter(|d| Path::new(d).is_dir()) {
        std::fs::create_dir_all(rootfs.join(dir.trim_start_matches('/')))?;
        mounts.push(json!({
            "destination": dir,
            "type": "bind",
            "source": dir,
            "options": ["rbind", "ro", "nosuid", "nodev"],
        }));
    }
    let spec = json!({
        "ociVersion": "1.0.2",
        "process": {
            "args": ["true"],
            "cwd": "/",
            "user": {"uid": 0, "gid": 0},
            "env": [format!("PATH={DEFAULT_PATH}")],
        },
        "root": {"path": "rootfs"},
        "mounts": mounts,
        "linux": {
            "namespaces": [
                {"type": "pid"}, {"type": "mount"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "network"},
            ],
            "cgroupsPath": cgroups_path,
        },
    });
    std::fs::write(bundle.join("config.json"), spec.to_string())
}

/// A handler name as it may appear in a container id and a file name.
fn plain(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn binaries_are_found_by_path_or_in_path() {
        let d = tempfile::tempdir().unwrap();
        let exe = d.path().join("rt");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        assert_eq!(find_executable(&exe), None, "not executable");
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(find_executable(&exe), Some(exe.clone()));
        assert_eq!(find_executable(&d.path().join("nope")), None);
        // `sh` is in every PATH the tests run with.
        let sh = find_executable(Path::new("sh")).expect("sh in PATH");
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{sh:?}");
        assert_eq!(find_executable(Path::new("peapod-no-such-runtime")), None);
    }

    #[test]
    fn handler_names_become_plain() {
        assert_eq!(plain("runc"), "runc");
        assert_eq!(plain("kata/qemu v2"), "kata-qemu-v2");
    }

    #[test]
    fn the_trial_bundle_runs_true_over_the_hosts_usr() {
        let d = tempfile::tempdir().unwrap();
        write_bundle(d.path(), "/peapod-check-x").unwrap();
        let spec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(d.path().join("config.json")).unwrap()).unwrap();
        assert_eq!(spec["process"]["args"], json!(["true"]));
        assert_eq!(spec["linux"]["cgroupsPath"], "/peapod-check-x");
        let destinations: Vec<&str> = spec["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert!(destinations.contains(&"/usr"), "{destinations:?}");
        for dest in destinations {
            assert!(d.path().join("rootfs").join(&dest[1..]).is_dir(), "{dest}");
        }
    }
}
