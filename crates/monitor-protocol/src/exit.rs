//! The exit file: how a container's init ended, written by its monitor
//! (atomically, before the monitor exits) and read by the daemon. The
//! format is `key=value` lines; unknown keys are ignored, so that a
//! daemon reads the files of monitors older and newer than itself.

use serde::{Deserialize, Serialize};

/// How a container's init ended, as its monitor recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// The exit code, or 128 + the signal that killed it.
    pub exit_code: i32,
    /// The signal that killed it; 0 when it exited by itself.
    pub signal: i32,
    /// Killed by SIGKILL while its cgroup counted an OOM kill.
    pub oom_killed: bool,
    /// When the monitor reaped it, in ns since the epoch.
    pub finished_at: i64,
}

impl ExitStatus {
    /// The exit file's text.
    pub fn encode(&self) -> String {
        format!(
            "exit_code={}\nsignal={}\noom_killed={}\nfinished_at={}\n",
            self.exit_code,
            self.signal,
            u8::from(self.oom_killed),
            self.finished_at
        )
    }

    /// Parses an exit file's text.
    pub fn parse(text: &str) -> Result<ExitStatus, String> {
        let mut fields = Fields::default();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| format!("line {line:?} is not key=value"))?;
            fields.set(key, value)?;
        }
        fields.status()
    }
}

/// The values an exit file has given so far.
#[derive(Default)]
struct Fields {
    exit_code: Option<i32>,
    signal: Option<i32>,
    oom_killed: Option<bool>,
    finished_at: Option<i64>,
}

impl Fields {
    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let bad = || format!("{key}: bad value {value:?}");
        match key {
            "exit_code" => self.exit_code = Some(value.parse().map_err(|_| bad())?),
            "signal" => {
                let signal = value.parse::<i32>().ok().filter(|s| (0..=64).contains(s));
                self.signal = Some(signal.ok_or_else(bad)?);
            }
            "oom_killed" => {
                self.oom_killed = Some(match value {
                    "0" => false,
                    "1" => true,
                    _ => return Err(bad()),
                })
            }
            "finished_at" => self.finished_at = Some(value.parse().map_err(|_| bad())?),
            _ => {}
        }
        Ok(())
    }

    fn status(self) -> Result<ExitStatus, String> {
        let missing = |key: &str| format!("no {key}");
        Ok(ExitStatus {
            exit_code: self.exit_code.ok_or_else(|| missing("exit_code"))?,
            signal: self.signal.ok_or_else(|| missing("signal"))?,
            oom_killed: self.oom_killed.ok_or_else(|| missing("oom_killed"))?,
            finished_at: self.finished_at.ok_or_else(|| missing("finished_at"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_ignores_unknown_keys() {
        let s = ExitStatus::parse(
            "exit_code=137\nsignal=9\noom_killed=1\nfinished_at=1795343901812437500\nfuture=x\n",
        )
        .unwrap();
        assert_eq!(
            s,
            ExitStatus {
                exit_code: 137,
                signal: 9,
                oom_killed: true,
                finished_at: 1_795_343_901_812_437_500
            }
        );
    }

    #[test]
    fn bad_files() {
        assert!(ExitStatus::parse("exit_code=0\nsignal=0\noom_killed=0\n")
            .unwrap_err()
            .contains("no finished_at"));
        assert!(
            ExitStatus::parse("exit_code=x\nsignal=0\noom_killed=0\nfinished_at=1")
                .unwrap_err()
                .contains("exit_code")
        );
        assert!(
            ExitStatus::parse("exit_code=0\nsignal=0\noom_killed=2\nfinished_at=1")
                .unwrap_err()
                .contains("oom_killed")
        );
        assert!(
            ExitStatus::parse("exit_code=0\nsignal=65\noom_killed=0\nfinished_at=1")
                .unwrap_err()
                .contains("signal")
        );
        assert!(ExitStatus::parse("garbage").is_err());
    }

    #[test]
    fn encodes_what_earlier_versions_wrote() {
        let status = ExitStatus {
            exit_code: 137,
            signal: 9,
            oom_killed: true,
            finished_at: 1_795_343_901_812_437_500,
        };
        assert_eq!(
            status.encode(),
            "exit_code=137\nsignal=9\noom_killed=1\nfinished_at=1795343901812437500\n"
        );
        let exited = ExitStatus {
            exit_code: 3,
            signal: 0,
            oom_killed: false,
            finished_at: 1,
        };
        for s in [status, exited] {
            assert_eq!(ExitStatus::parse(&s.encode()), Ok(s));
        }
    }
}
