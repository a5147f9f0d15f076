//! Processes found through /proc: parents, names, caught signals, a socket's
//! owner, and the pids a runtime's verbose status names.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use peapod::api::{ContainerStatusResponse, PodSandboxStatusResponse};

pub fn ppid_of(pid: i32) -> Option<i32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The process's name: the file name of its argv[0] (comm is cut at 15
/// bytes, and a binary run from a memfd has none), else its comm.
pub fn process_name(pid: i32) -> Option<String> {
    let argv0 = std::fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .and_then(|c| {
            let first = c.split(|b| *b == 0).next()?.to_vec();
            let first = String::from_utf8_lossy(&first).into_owned();
            let name = first.rsplit('/').next()?.to_string();
            (!name.is_empty()).then_some(name)
        });
    argv0.or_else(|| {
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .ok()
            .map(|c| c.trim().to_string())
    })
}

/// A hex signal mask of /proc/PID/status (`SigCgt:` is the caught set).
pub fn signal_mask(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

fn has_child(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
        Ok(c) => !c.trim().is_empty(),
        // A kernel without CONFIG_PROC_CHILDREN: look for the child instead.
        Err(_) => all_pids().into_iter().any(|p| ppid_of(p) == Some(pid)),
    }
}

/// True when the bench container's shell `pid` catches SIGTERM and has
/// started its `sleep`: from then on a SIGTERM ends it at once.
pub fn trap_ready(pid: i32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    let term = 1u64 << (libc::SIGTERM - 1);
    signal_mask(&status, "SigCgt:").is_some_and(|m| m & term != 0) && has_child(pid)
}

pub fn all_pids() -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect();
    pids.sort_unstable();
    pids
}

/// When `pid` started (clock ticks since boot, /proc/PID/stat field 22):
/// with the pid, it names one process even after the pid is reused.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the name, which ends at the last ')': state is 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(22 - 3)?.parse().ok()
}

/// The PID namespace of `pid`, as (device, inode) of /proc/PID/ns/pid.
pub fn pid_namespace(pid: i32) -> Option<(u64, u64)> {
    let m = std::fs::metadata(format!("/proc/{pid}/ns/pid")).ok()?;
    Some((m.dev(), m.ino()))
}

/// True when a TCP socket listens on `port` in the network namespace of
/// `pid` (its /proc/PID/net/tcp or tcp6).
pub fn tcp_listening(pid: i32, port: u16) -> bool {
    let want = format!(":{port:04X}");
    ["tcp", "tcp6"].iter().any(|f| {
        std::fs::read_to_string(format!("/proc/{pid}/net/{f}"))
            .map(|text| {
                text.lines().skip(1).any(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    // st 0A = LISTEN.
                    f.len() > 3 && f[1].ends_with(&want) && f[3] == "0A"
                })
            })
            .unwrap_or(false)
    })
}

/// The process listening on the unix socket `path` (the daemon), found
/// through the socket's inode in /proc/net/unix and the processes' fds.
pub fn socket_owner(path: &Path) -> Option<i32> {
    let text = std::fs::read_to_string("/proc/net/unix").ok()?;
    let want = path.to_str()?;
    let inode = text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // Flags 00010000 = listening.
        (f.len() >= 8 && f[7] == want && f[3] == "00010000").then(|| f[6].to_string())
    })?;
    let link = format!("socket:[{inode}]");
    all_pids().into_iter().find(|pid| {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|fds| {
                fds.flatten().any(|fd| {
                    std::fs::read_link(fd.path())
                        .map(|l| l.as_os_str() == link.as_str())
                        .unwrap_or(false)
                })
            })
            .unwrap_or(false)
    })
}

/// The outermost process inside the network namespace bound at `netns`.
fn pid_in_netns(netns: &Path) -> Option<i32> {
    let want = std::fs::metadata(netns).ok()?;
    let inside: Vec<i32> = all_pids()
        .into_iter()
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/net"))
                .map(|m| m.ino() == want.ino() && m.dev() == want.dev())
                .unwrap_or(false)
        })
        .collect();
    inside
        .iter()
        .copied()
        .find(|pid| ppid_of(*pid).is_none_or(|pp| !inside.contains(&pp)))
}

/// The infra process of a sandbox from its verbose status: a `pid` key
/// (peapod), the `info` JSON's `pid` (containerd), or else the process in
/// the sandbox's network namespace.
pub fn infra_pid(resp: &PodSandboxStatusResponse) -> Option<i32> {
    if let Some(pid) = resp.info.get("pid").and_then(|v| v.trim().parse().ok()) {
        return Some(pid);
    }
    let info: Option<serde_json::Value> = resp
        .info
        .get("info")
        .and_then(|v| serde_json::from_str(v).ok());
    if let Some(pid) = info
        .as_ref()
        .and_then(|j| j.get("pid"))
        .and_then(|p| p.as_i64())
        .filter(|p| *p > 0)
    {
        return i32::try_from(pid).ok();
    }
    let from_spec = info.as_ref().and_then(|j| {
        j.pointer("/runtimeSpec/linux/namespaces")?
            .as_array()?
            .iter()
            .find(|n| n.get("type").and_then(|t| t.as_str()) == Some("network"))?
            .get("path")?
            .as_str()
            .map(str::to_string)
    });
    let netns = from_spec.or_else(|| {
        ["netns", "netns_path", "netnsPath"]
            .iter()
            .find_map(|k| resp.info.get(*k).cloned())
    })?;
    if netns.is_empty() {
        return None;
    }
    pid_in_netns(Path::new(&netns))
}

/// The container's init pid and its monitor's pid from a verbose
/// ContainerStatus: the `info` JSON's `pid` (peapod and containerd) and
/// `monitorPid` (peapod).
pub fn container_pids(resp: &ContainerStatusResponse) -> (Option<i32>, Option<i32>) {
    let info: Option<serde_json::Value> = resp
        .info
        .get("info")
        .and_then(|v| serde_json::from_str(v).ok());
    let pid = |key: &str| {
        info.as_ref()
            .and_then(|j| j.get(key))
            .and_then(|p| p.as_i64())
            .filter(|p| *p > 0)
            .and_then(|p| i32::try_from(p).ok())
    };
    (pid("pid"), pid("monitorPid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_pids_from_verbose_info() {
        let mut r = ContainerStatusResponse::default();
        r.info.insert(
            "info".into(),
            r#"{"sandboxID": "s", "pid": 321, "monitorPid": 320}"#.into(),
        );
        assert_eq!(container_pids(&r), (Some(321), Some(320)));
        let mut r = ContainerStatusResponse::default();
        r.info
            .insert("info".into(), r#"{"pid": 0, "monitorPid": null}"#.into());
        assert_eq!(container_pids(&r), (None, None));
        assert_eq!(
            container_pids(&ContainerStatusResponse::default()),
            (None, None)
        );
    }

    #[test]
    fn caught_signals() {
        let status = "Name:\tsh\nSigIgn:\t0000000000000004\nSigCgt:\t0000000000014002\n";
        let caught = signal_mask(status, "SigCgt:").unwrap();
        assert_ne!(caught & (1 << (libc::SIGTERM - 1)), 0);
        assert_eq!(signal_mask(status, "SigIgn:"), Some(4));
        assert_eq!(signal_mask("Name: x\n", "SigCgt:"), None);
    }

    #[test]
    fn process_names_are_argv0_file_names() {
        let me = i32::try_from(std::process::id()).unwrap();
        let name = process_name(me).unwrap();
        assert!(name.starts_with("peapod_bench"), "{name}");
        assert_eq!(process_name(-1), None);
    }

    #[test]
    fn own_start_time_and_namespace() {
        let me = i32::try_from(std::process::id()).unwrap();
        assert!(start_time(me).is_some_and(|t| t > 0));
        assert_eq!(start_time(me), start_time(me));
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        // A child shares our PID namespace.
        assert!(pid_namespace(me).is_some());
        assert_eq!(pid_namespace(pid), pid_namespace(me));
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(start_time(-1), None);
        assert_eq!(pid_namespace(-1), None);
    }

    #[test]
    fn a_listening_socket_is_seen() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let me = i32::try_from(std::process::id()).unwrap();
        assert!(tcp_listening(me, port));
        drop(l);
        assert!(!tcp_listening(me, port));
    }

    #[test]
    fn infra_pid_from_verbose_info() {
        let mut r = PodSandboxStatusResponse::default();
        r.info.insert("pid".into(), "123".into());
        assert_eq!(infra_pid(&r), Some(123));
        let mut r = PodSandboxStatusResponse::default();
        r.info.insert("info".into(), r#"{"pid": 456}"#.into());
        assert_eq!(infra_pid(&r), Some(456));
    }
}
