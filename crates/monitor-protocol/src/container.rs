//! `peapod-monitor container --id ID --config PATH`: the daemon writes a
//! [`ContainerConfig`] as JSON to PATH ([`ContainerConfig::file_path`], in
//! the container's state directory) and starts the monitor with these two
//! arguments. `--id` stays on the command line so that the daemon can find
//! the monitor of a creation a crash cut short by its process arguments.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default of [`ContainerConfig::log_max_line`].
pub const DEFAULT_LOG_MAX_LINE: usize = 16 * 1024;
/// The largest `log_max_line`: the monitor allocates an entry buffer of
/// that size once.
pub const MAX_LOG_MAX_LINE: usize = 1024 * 1024;
/// Default of [`ContainerConfig::drain_timeout`].
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
pub const MAX_DRAIN_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// The config file's name, beside the exit file.
pub const CONFIG_FILE_NAME: &str = "monitor.json";

pub const USAGE: &str = "usage: peapod-monitor container --id ID --config PATH";

/// Everything the monitor needs to create one container. Paths must be
/// absolute; socket paths must be shorter than 108 bytes (`sun_path`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerConfig {
    pub id: String,
    /// The cwd of the runtime command.
    pub bundle: PathBuf,
    /// Where the runtime writes the init's pid (also in `runtime_argv`).
    pub pid_file: PathBuf,
    pub exit_file: PathBuf,
    /// The control socket the monitor creates.
    pub socket: PathBuf,
    /// The CRI log; None: output is read and discarded.
    #[serde(default)]
    pub log_path: Option<PathBuf>,
    #[serde(default = "default_log_max_line")]
    pub log_max_line: usize,
    #[serde(default)]
    pub tty: bool,
    /// With `tty`: where the monitor listens for the runtime's terminal
    /// master (runc's `--console-socket`, also in `runtime_argv`).
    #[serde(default)]
    pub console_socket: Option<PathBuf>,
    #[serde(default)]
    pub stdin: bool,
    /// Close the container's stdin when the first attach session that
    /// writes to it ends.
    #[serde(default)]
    pub stdin_once: bool,
    /// The container cgroup's `memory.oom_control` (v1) or `memory.events` (v2).
    #[serde(default)]
    pub oom_file: Option<PathBuf>,
    /// The runtime's `--log` file, read for the message of a failed create.
    #[serde(default)]
    pub runtime_log: Option<PathBuf>,
    /// How long output is still read after the init exited, while other
    /// processes hold the container's stdout.
    #[serde(
        rename = "drain_timeout_ms",
        with = "millis",
        default = "default_drain_timeout"
    )]
    pub drain_timeout: Duration,
    /// The whole create command, e.g. `runc --root R --log L --log-format
    /// json create --bundle B --pid-file P ID`.
    #[serde(with = "utf8_args")]
    pub runtime_argv: Vec<OsString>,
}

fn default_log_max_line() -> usize {
    DEFAULT_LOG_MAX_LINE
}

fn default_drain_timeout() -> Duration {
    DEFAULT_DRAIN_TIMEOUT
}

/// A duration as whole milliseconds.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// Arguments as JSON strings: a command line that is not UTF-8 cannot be
/// written (the daemon's paths and ids always are).
mod utf8_args {
    use std::ffi::OsString;

    use serde::ser::{Error, SerializeSeq};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(args: &[OsString], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(args.len()))?;
        for arg in args {
            let text = arg
                .to_str()
                .ok_or_else(|| S::Error::custom(format!("argument {arg:?} is not UTF-8")))?;
            seq.serialize_element(text)?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<OsString>, D::Error> {
        Vec::<String>::deserialize(d).map(|v| v.into_iter().map(OsString::from).collect())
    }
}

impl ContainerConfig {
    /// Where the daemon writes this config: [`CONFIG_FILE_NAME`] beside
    /// the exit file, in the container's state directory.
    pub fn file_path(&self) -> PathBuf {
        self.exit_file.with_file_name(CONFIG_FILE_NAME)
    }

    pub fn to_json(&self) -> Result<Vec<u8>, String> {
        serde_json::to_vec_pretty(self).map_err(|e| e.to_string())
    }

    /// Parses and validates a config file's bytes.
    pub fn from_json(bytes: &[u8]) -> Result<ContainerConfig, String> {
        let config: ContainerConfig = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(config)
    }

    /// Strict: relative paths, values out of range and a terminal without
    /// its console socket are errors.
    pub fn validate(&self) -> Result<(), String> {
        if self.id.is_empty() || self.id.contains(['\n', '\r']) {
            return Err(format!("id {:?} is not a one-line name", self.id));
        }
        for (field, path) in self.paths() {
            if let Some(path) = path {
                absolute_path(field, path)?;
            }
        }
        if !(1..=MAX_LOG_MAX_LINE).contains(&self.log_max_line) {
            return Err(format!(
                "log_max_line: {} is not a number from 1 to {MAX_LOG_MAX_LINE}",
                self.log_max_line
            ));
        }
        if self.drain_timeout > MAX_DRAIN_TIMEOUT {
            return Err(format!(
                "drain_timeout_ms: {} is over {}",
                self.drain_timeout.as_millis(),
                MAX_DRAIN_TIMEOUT.as_millis()
            ));
        }
        if self.tty != self.console_socket.is_some() {
            return Err("tty and console_socket go together".into());
        }
        self.validate_runtime_argv()
    }

    fn paths(&self) -> [(&'static str, Option<&Path>); 8] {
        [
            ("bundle", Some(&self.bundle)),
            ("pid_file", Some(&self.pid_file)),
            ("exit_file", Some(&self.exit_file)),
            ("socket", Some(&self.socket)),
            ("log_path", self.log_path.as_deref()),
            ("console_socket", self.console_socket.as_deref()),
            ("oom_file", self.oom_file.as_deref()),
            ("runtime_log", self.runtime_log.as_deref()),
        ]
    }

    fn validate_runtime_argv(&self) -> Result<(), String> {
        if self.runtime_argv.is_empty() {
            return Err("runtime_argv: the runtime's command line is required".into());
        }
        if self.runtime_argv.iter().any(|a| a.as_bytes().contains(&0)) {
            return Err("runtime_argv: the runtime's command line contains a NUL byte".into());
        }
        Ok(())
    }
}

fn absolute_path(field: &str, path: &Path) -> Result<(), String> {
    if !path.is_absolute() {
        return Err(format!("{field}: {path:?} is not an absolute path"));
    }
    if path.as_os_str().as_bytes().contains(&0) {
        return Err(format!("{field}: {path:?} contains a NUL byte"));
    }
    Ok(())
}

/// The command line of `container` mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerArgs {
    pub id: String,
    /// The config file.
    pub config: PathBuf,
}

impl ContainerArgs {
    /// The monitor's argv after the binary, mode first.
    pub fn to_args(&self) -> Vec<OsString> {
        vec![
            crate::MODE_CONTAINER.into(),
            "--id".into(),
            self.id.clone().into(),
            "--config".into(),
            self.config.clone().into(),
        ]
    }

    /// Parses the arguments after the mode. Strict: unknown or repeated
    /// flags and missing values are errors.
    pub fn parse(args: &[OsString]) -> Result<ContainerArgs, String> {
        let mut id = None;
        let mut config = None;
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            let flag = arg.to_str().unwrap_or("");
            let slot = match flag {
                "--id" => &mut id,
                "--config" => &mut config,
                _ => return Err(format!("unknown argument {arg:?}")),
            };
            let value = iter
                .next()
                .ok_or_else(|| format!("{flag}: missing value"))?;
            if slot.replace(value.as_os_str()).is_some() {
                return Err(format!("{flag} given twice"));
            }
        }
        let id = id.ok_or("--id is required")?;
        let id = id
            .to_str()
            .filter(|v| !v.is_empty() && !v.contains(['\n', '\r']))
            .ok_or_else(|| format!("--id: {id:?} is not a one-line name"))?;
        let config = config.ok_or("--config is required")?;
        absolute_path("--config", Path::new(config))?;
        Ok(ContainerArgs {
            id: id.to_string(),
            config: PathBuf::from(config),
        })
    }
}

/// Reads and validates the config the arguments name; its id must be
/// the one on the command line.
pub fn load(args: &ContainerArgs) -> Result<ContainerConfig, String> {
    let bytes =
        std::fs::read(&args.config).map_err(|e| format!("read {}: {e}", args.config.display()))?;
    let config = ContainerConfig::from_json(&bytes)
        .map_err(|e| format!("{}: {e}", args.config.display()))?;
    if config.id != args.id {
        return Err(format!(
            "--id {} is not the id of {} ({})",
            args.id,
            args.config.display(),
            config.id
        ));
    }
    Ok(config)
}

/// Whether an argv is a container monitor's for container `id` (the
/// argv of this version's monitors and of earlier ones alike).
pub fn is_container_monitor(argv: &[String], id: &str) -> bool {
    argv.first().is_some_and(|a| a.ends_with("peapod-monitor"))
        && argv.get(1).is_some_and(|a| a == crate::MODE_CONTAINER)
        && argv.windows(2).any(|w| w[0] == "--id" && w[1] == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ContainerConfig {
        ContainerConfig {
            id: "c1".into(),
            bundle: "/b".into(),
            pid_file: "/s/pid".into(),
            exit_file: "/s/exit".into(),
            socket: "/s/sock".into(),
            log_path: None,
            log_max_line: DEFAULT_LOG_MAX_LINE,
            tty: false,
            console_socket: None,
            stdin: false,
            stdin_once: false,
            oom_file: None,
            runtime_log: None,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            runtime_argv: vec!["runc".into(), "create".into(), "c1".into()],
        }
    }

    fn full() -> ContainerConfig {
        ContainerConfig {
            log_path: Some("/l/0.log".into()),
            log_max_line: 100,
            tty: true,
            console_socket: Some("/s/console".into()),
            stdin: true,
            stdin_once: true,
            oom_file: Some("/cg/memory.oom_control".into()),
            runtime_log: Some("/s/runc.log".into()),
            drain_timeout: Duration::from_millis(250),
            ..config()
        }
    }

    fn error(config: ContainerConfig) -> String {
        config.validate().expect_err("must be refused")
    }

    #[test]
    fn json_round_trip() {
        for c in [config(), full()] {
            let json = c.to_json().unwrap();
            assert_eq!(ContainerConfig::from_json(&json), Ok(c));
        }
        let text = String::from_utf8(full().to_json().unwrap()).unwrap();
        assert!(text.contains("\"drain_timeout_ms\": 250"), "{text}");
    }

    #[test]
    fn defaults_fill_what_is_left_out() {
        let json = br#"{"id":"c1","bundle":"/b","pid_file":"/s/pid","exit_file":"/s/exit",
            "socket":"/s/sock","runtime_argv":["runc","create","c1"]}"#;
        assert_eq!(ContainerConfig::from_json(json), Ok(config()));
    }

    #[test]
    fn bad_configs() {
        assert!(error(ContainerConfig {
            id: "a\nb".into(),
            ..config()
        })
        .contains("one-line"));
        assert!(error(ContainerConfig {
            log_path: Some("rel.log".into()),
            ..config()
        })
        .contains("log_path: \"rel.log\" is not an absolute path"));
        assert!(error(ContainerConfig {
            log_max_line: 0,
            ..config()
        })
        .contains("not a number from 1"));
        assert!(error(ContainerConfig {
            drain_timeout: MAX_DRAIN_TIMEOUT + Duration::from_millis(1),
            ..config()
        })
        .contains("drain_timeout_ms"));
        assert!(error(ContainerConfig {
            tty: true,
            ..config()
        })
        .contains("tty and console_socket go together"));
        assert!(error(ContainerConfig {
            console_socket: Some("/c".into()),
            ..config()
        })
        .contains("go together"));
        assert!(error(ContainerConfig {
            runtime_argv: vec![],
            ..config()
        })
        .contains("command line is required"));
        assert!(error(ContainerConfig {
            runtime_argv: vec!["a\0b".into()],
            ..config()
        })
        .contains("NUL"));
        let unknown = br#"{"id":"c1","bundle":"/b","pid_file":"/p","exit_file":"/e",
            "socket":"/s","runtime_argv":["runc"],"bogus":1}"#;
        assert!(ContainerConfig::from_json(unknown)
            .unwrap_err()
            .contains("bogus"));
        assert!(ContainerConfig::from_json(b"{").is_err());
    }

    #[test]
    fn a_non_utf8_command_line_is_not_written() {
        use std::os::unix::ffi::OsStringExt;
        let c = ContainerConfig {
            runtime_argv: vec![OsString::from_vec(vec![0xff])],
            ..config()
        };
        assert!(c.to_json().unwrap_err().contains("not UTF-8"));
    }

    #[test]
    fn config_file_is_beside_the_exit_file() {
        assert_eq!(config().file_path(), PathBuf::from("/s/monitor.json"));
    }

    fn os(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn command_line() {
        let args = ContainerArgs {
            id: "c1".into(),
            config: "/s/monitor.json".into(),
        };
        let argv = args.to_args();
        assert_eq!(
            argv,
            os(&["container", "--id", "c1", "--config", "/s/monitor.json"])
        );
        assert_eq!(ContainerArgs::parse(&argv[1..]), Ok(args));
        let strings: Vec<String> = std::iter::once("/usr/bin/peapod-monitor".to_string())
            .chain(argv.iter().map(|a| a.to_string_lossy().into_owned()))
            .collect();
        assert!(is_container_monitor(&strings, "c1"));
        assert!(!is_container_monitor(&strings, "c2"));
    }

    #[test]
    fn bad_command_lines() {
        let err = |list: &[&str]| ContainerArgs::parse(&os(list)).unwrap_err();
        assert!(err(&["--bogus"]).contains("unknown argument \"--bogus\""));
        assert!(err(&["--id"]).contains("--id: missing value"));
        assert!(err(&["--id", "a", "--id", "b"]).contains("--id given twice"));
        assert!(err(&["--config", "/c"]).contains("--id is required"));
        assert!(err(&["--id", "a"]).contains("--config is required"));
        assert!(err(&["--id", "a", "--config", "c"]).contains("not an absolute path"));
        assert!(err(&["--id", "", "--config", "/c"]).contains("one-line"));
    }

    #[test]
    fn load_checks_the_id() {
        let dir = std::env::temp_dir().join(format!("pmp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(CONFIG_FILE_NAME);
        std::fs::write(&path, config().to_json().unwrap()).unwrap();
        let args = |id: &str| ContainerArgs {
            id: id.into(),
            config: path.clone(),
        };
        assert_eq!(load(&args("c1")), Ok(config()));
        assert!(load(&args("c2")).unwrap_err().contains("is not the id"));
        std::fs::remove_file(&path).unwrap();
        assert!(load(&args("c1")).unwrap_err().contains("read "));
        let _ = std::fs::remove_dir(&dir);
    }
}
