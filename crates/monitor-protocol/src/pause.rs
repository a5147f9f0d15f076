//! `peapod-monitor pause [--uid-map C:H:L --gid-map C:H:L] [--net] [--ipc]
//! [--uts] [--pid] [--hostname NAME] [--sysctl KEY=VALUE]... [--pause-bin
//! PATH]`: create the pod's namespaces (a user namespace with the given
//! mappings first, so that it owns the others), set its hostname and
//! namespaced sysctls in them, and fork the infra process that holds them. One answer line on stdout
//! ([`crate::Answer`]): `ok <infra pid>` and exit 0, or `error <message>`
//! and exit 1 with nothing left running.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::idmap::{IdMap, UserNamespaceMaps};

/// Linux's HOST_NAME_MAX.
pub const HOSTNAME_MAX: usize = 64;

pub const USAGE: &str = "usage: peapod-monitor pause [--uid-map C:H:L --gid-map C:H:L] \
[--net] [--ipc] [--uts] [--pid] [--hostname NAME] [--sysctl KEY=VALUE]... [--pause-bin PATH]";

/// What the infra process is made with.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PauseConfig {
    /// A new user namespace with these mappings, owning the other new
    /// namespaces; `None`: the host's.
    pub userns: Option<UserNamespaceMaps>,
    /// New namespaces; without one the host's is kept.
    pub net: bool,
    pub ipc: bool,
    pub uts: bool,
    pub pid: bool,
    /// Needs `uts`.
    pub hostname: Option<String>,
    /// Written in the new namespaces; a namespaced one needs its namespace.
    pub sysctls: Vec<Sysctl>,
    /// The program the infra process runs; by default the one embedded in
    /// the monitor.
    pub pause_bin: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sysctl {
    pub key: String,
    pub value: String,
}

impl Sysctl {
    /// The file under /proc/sys that holds this sysctl.
    pub fn proc_path(&self) -> String {
        format!("/proc/sys/{}", self.key.replace('.', "/"))
    }
}

/// A refused argument: `argument <arg>: <reason>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgError {
    pub arg: String,
    pub reason: String,
}

impl std::fmt::Display for ArgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "argument {}: {}", self.arg, self.reason)
    }
}

impl std::error::Error for ArgError {}

fn arg_error(arg: &str, reason: impl Into<String>) -> ArgError {
    ArgError {
        arg: arg.to_string(),
        reason: reason.into(),
    }
}

impl PauseConfig {
    /// The monitor's argv after the binary, mode first.
    pub fn to_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![crate::MODE_PAUSE.into()];
        if let Some(maps) = &self.userns {
            args.extend([
                "--uid-map".into(),
                maps.uid.to_string().into(),
                "--gid-map".into(),
                maps.gid.to_string().into(),
            ]);
        }
        for (set, flag) in [
            (self.net, "--net"),
            (self.ipc, "--ipc"),
            (self.uts, "--uts"),
        ] {
            if set {
                args.push(flag.into());
            }
        }
        if let Some(name) = &self.hostname {
            args.extend(["--hostname".into(), name.into()]);
        }
        if self.pid {
            args.push("--pid".into());
        }
        for s in &self.sysctls {
            args.extend(["--sysctl".into(), format!("{}={}", s.key, s.value).into()]);
        }
        if let Some(path) = &self.pause_bin {
            args.extend(["--pause-bin".into(), path.clone().into()]);
        }
        args
    }

    /// Parses and validates the arguments after the mode.
    pub fn parse(args: &[OsString]) -> Result<PauseConfig, ArgError> {
        let mut config = PauseConfig::default();
        let (mut uid_map, mut gid_map) = (None, None);
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            let Some(flag) = arg.to_str() else {
                return Err(arg_error(&arg.to_string_lossy(), "unknown argument"));
            };
            match flag {
                "--net" => config.net = true,
                "--ipc" => config.ipc = true,
                "--uts" => config.uts = true,
                "--pid" => config.pid = true,
                "--hostname" => config.hostname = Some(utf8_value(flag, iter.next())?),
                "--sysctl" => config
                    .sysctls
                    .push(parse_sysctl(&utf8_value(flag, iter.next())?)?),
                "--pause-bin" => config.pause_bin = Some(path_value(flag, iter.next())?),
                "--uid-map" => uid_map = Some(id_map_value(flag, iter.next())?),
                "--gid-map" => gid_map = Some(id_map_value(flag, iter.next())?),
                _ => return Err(arg_error(flag, "unknown argument")),
            }
        }
        config.userns = match (uid_map, gid_map) {
            (Some(uid), Some(gid)) => Some(UserNamespaceMaps { uid, gid }),
            (None, None) => None,
            (Some(_), None) => return Err(arg_error("--uid-map", "requires --gid-map")),
            (None, Some(_)) => return Err(arg_error("--gid-map", "requires --uid-map")),
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ArgError> {
        if let Some(name) = &self.hostname {
            if !self.uts {
                return Err(arg_error("--hostname", "requires --uts"));
            }
            if name.is_empty() || name.len() > HOSTNAME_MAX {
                return Err(arg_error(
                    "--hostname",
                    format!("{name:?} must be 1 to {HOSTNAME_MAX} bytes"),
                ));
            }
        }
        for sysctl in &self.sysctls {
            self.check_namespace_of(sysctl)?;
        }
        Ok(())
    }

    /// A namespaced sysctl is only written in a namespace of the pod's
    /// own, never in the host's by mistake.
    fn check_namespace_of(&self, sysctl: &Sysctl) -> Result<(), ArgError> {
        let Some((ns, flag)) = sysctl_namespace(&sysctl.key) else {
            return Ok(());
        };
        let created = match flag {
            "--net" => self.net,
            "--ipc" => self.ipc,
            _ => self.uts,
        };
        if created {
            return Ok(());
        }
        Err(arg_error(
            "--sysctl",
            format!(
                "{} is in the {ns} namespace and needs {flag} (refusing to change the host's)",
                sysctl.key
            ),
        ))
    }
}

fn utf8_value(flag: &str, value: Option<&OsString>) -> Result<String, ArgError> {
    let value = value.ok_or_else(|| arg_error(flag, "missing value"))?;
    value
        .to_str()
        .map(str::to_string)
        .ok_or_else(|| arg_error(flag, format!("value {value:?} is not UTF-8")))
}

fn id_map_value(flag: &str, value: Option<&OsString>) -> Result<IdMap, ArgError> {
    let text = utf8_value(flag, value)?;
    IdMap::parse(&text).ok_or_else(|| {
        arg_error(
            flag,
            format!("{text:?} is not CONTAINER:HOST:LENGTH (a non-empty 32-bit range)"),
        )
    })
}

fn path_value(flag: &str, value: Option<&OsString>) -> Result<PathBuf, ArgError> {
    let path = value.ok_or_else(|| arg_error(flag, "missing value"))?;
    if path.is_empty() {
        return Err(arg_error(flag, "empty path"));
    }
    Ok(PathBuf::from(path))
}

fn parse_sysctl(spec: &str) -> Result<Sysctl, ArgError> {
    let (key, value) = spec
        .split_once('=')
        .ok_or_else(|| arg_error("--sysctl", format!("{spec:?} is not KEY=VALUE")))?;
    validate_sysctl_key(key)?;
    Ok(Sysctl {
        key: key.to_string(),
        value: value.to_string(),
    })
}

/// Only keys that map to a file strictly below /proc/sys.
fn validate_sysctl_key(key: &str) -> Result<(), ArgError> {
    let bad = |reason: &str| arg_error("--sysctl", format!("key {key:?}: {reason}"));
    if key.is_empty() {
        return Err(bad("empty"));
    }
    if let Some(c) = key
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '_' | '.' | '-'))
    {
        return Err(bad(&format!("character {c:?} not in [a-z0-9_.-]")));
    }
    if key.contains("..") {
        return Err(bad("contains \"..\""));
    }
    if key.starts_with('.') || key.ends_with('.') {
        return Err(bad("empty path component"));
    }
    Ok(())
}

/// The namespace a namespaced sysctl lives in, and the flag that creates it.
fn sysctl_namespace(key: &str) -> Option<(&'static str, &'static str)> {
    if key.starts_with("net.") {
        Some(("network", "--net"))
    } else if key.starts_with("kernel.shm")
        || key.starts_with("kernel.msg")
        || key.starts_with("kernel.sem")
        || key.starts_with("fs.mqueue.")
    {
        Some(("IPC", "--ipc"))
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        Some(("UTS", "--uts"))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    fn parse(list: &[&str]) -> Result<PauseConfig, ArgError> {
        PauseConfig::parse(&args(list))
    }

    fn err_text(list: &[&str]) -> String {
        match parse(list) {
            Ok(config) => panic!("{list:?} parsed: {config:?}"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn no_flags_keep_every_host_namespace() {
        assert_eq!(parse(&[]).expect("empty args"), PauseConfig::default());
    }

    #[test]
    fn all_flags() {
        let config = parse(&[
            "--net",
            "--ipc",
            "--uts",
            "--pid",
            "--hostname",
            "h1",
            "--sysctl",
            "net.ipv4.ip_forward=1",
            "--sysctl",
            "kernel.shmmax=123456789",
            "--sysctl",
            "net.ipv4.ip_local_port_range=1024 65000",
            "--pause-bin",
            "/x/peapod-pause",
        ])
        .expect("valid args");
        assert!(config.net && config.ipc && config.uts && config.pid);
        assert_eq!(config.hostname.as_deref(), Some("h1"));
        assert_eq!(config.sysctls.len(), 3);
        assert_eq!(
            config.sysctls[0].proc_path(),
            "/proc/sys/net/ipv4/ip_forward"
        );
        assert_eq!(config.sysctls[1].proc_path(), "/proc/sys/kernel/shmmax");
        assert_eq!(config.sysctls[2].value, "1024 65000");
        assert_eq!(config.pause_bin, Some(PathBuf::from("/x/peapod-pause")));
    }

    #[test]
    fn encode_then_parse() {
        let config = PauseConfig {
            userns: None,
            net: true,
            ipc: true,
            uts: true,
            pid: true,
            hostname: Some("h".into()),
            sysctls: vec![Sysctl {
                key: "net.ipv4.ip_forward".into(),
                value: "1".into(),
            }],
            pause_bin: Some("/p".into()),
        };
        let argv = config.to_args();
        assert_eq!(
            argv,
            args(&[
                "pause",
                "--net",
                "--ipc",
                "--uts",
                "--hostname",
                "h",
                "--pid",
                "--sysctl",
                "net.ipv4.ip_forward=1",
                "--pause-bin",
                "/p"
            ])
        );
        assert_eq!(PauseConfig::parse(&argv[1..]), Ok(config));
        assert_eq!(PauseConfig::default().to_args(), args(&["pause"]));
    }

    #[test]
    fn user_namespace_mappings_come_first_and_in_pairs() {
        let maps = UserNamespaceMaps {
            uid: IdMap::parse("0:65536:65536").unwrap(),
            gid: IdMap::parse("0:131072:65536").unwrap(),
        };
        let config = PauseConfig {
            userns: Some(maps),
            net: true,
            ..PauseConfig::default()
        };
        let argv = config.to_args();
        assert_eq!(
            argv,
            args(&[
                "pause",
                "--uid-map",
                "0:65536:65536",
                "--gid-map",
                "0:131072:65536",
                "--net"
            ])
        );
        assert_eq!(PauseConfig::parse(&argv[1..]), Ok(config));
        assert!(err_text(&["--uid-map", "0:1:1"]).contains("--uid-map: requires --gid-map"));
        assert!(err_text(&["--gid-map", "0:1:1"]).contains("--gid-map: requires --uid-map"));
        assert!(err_text(&["--uid-map", "0:1:0", "--gid-map", "0:1:1"])
            .contains("\"0:1:0\" is not CONTAINER:HOST:LENGTH"));
        assert!(err_text(&["--uid-map"]).contains("missing value"));
    }

    #[test]
    fn value_may_contain_equals() {
        let config = parse(&["--net", "--sysctl", "net.a=b=c"]).expect("valid");
        assert_eq!(config.sysctls[0].key, "net.a");
        assert_eq!(config.sysctls[0].value, "b=c");
    }

    #[test]
    fn hostname_requires_uts() {
        assert!(err_text(&["--hostname", "h1"]).contains("--hostname: requires --uts"));
        assert!(err_text(&["--uts", "--hostname", ""]).contains("1 to 64 bytes"));
        let long = "a".repeat(65);
        assert!(err_text(&["--uts", "--hostname", &long]).contains("1 to 64 bytes"));
    }

    #[test]
    fn missing_values_and_unknown_flags() {
        assert!(err_text(&["--hostname"]).contains("missing value"));
        assert!(err_text(&["--sysctl"]).contains("missing value"));
        assert!(err_text(&["--pause-bin"]).contains("missing value"));
        assert!(err_text(&["--pause-bin", ""]).contains("empty path"));
        assert!(err_text(&["--bogus"]).contains("--bogus: unknown argument"));
        assert!(err_text(&["net"]).contains("unknown argument"));
    }

    #[test]
    fn bad_sysctl_keys() {
        for (spec, why) in [
            ("net.ipv4.ip_forward", "not KEY=VALUE"),
            ("=1", "empty"),
            ("../../etc/passwd=1", "character '/'"),
            ("/net/ipv4=1", "character '/'"),
            ("net..ipv4=1", "\"..\""),
            ("net.ipv4.=1", "empty path component"),
            (".net=1", "empty path component"),
            ("NET.ipv4=1", "character 'N'"),
            ("net ipv4=1", "character ' '"),
        ] {
            let text = err_text(&["--net", "--ipc", "--sysctl", spec]);
            assert!(text.contains(why), "{spec}: {text}");
        }
    }

    #[test]
    fn namespaced_sysctls_need_their_namespace() {
        assert!(err_text(&["--sysctl", "net.ipv4.ip_forward=1"]).contains("needs --net"));
        assert!(err_text(&["--net", "--sysctl", "kernel.shmmax=1"]).contains("needs --ipc"));
        assert!(err_text(&["--sysctl", "fs.mqueue.msg_max=1"]).contains("needs --ipc"));
        assert!(err_text(&["--sysctl", "kernel.domainname=x"]).contains("needs --uts"));
        // Not namespaced: left to the daemon's allow list.
        assert!(parse(&["--sysctl", "vm.swappiness=1"]).is_ok());
    }

    #[test]
    fn argument_errors_read_as_before() {
        assert_eq!(arg_error("--x", "a b").to_string(), "argument --x: a b");
    }
}
