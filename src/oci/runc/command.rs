//! Running the runtime's commands: the global options, a time limit, and
//! the runtime's own words when it fails.

use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use super::{CliRuntime, OciError, RuntimeFeatures};

/// How long one runtime command may take before it is killed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

impl CliRuntime {
    /// The runtime with its global options and a JSON log at `log`, ready
    /// for a subcommand.
    pub(super) fn logged_argv(&self, log: &Path) -> Vec<OsString> {
        let mut argv: Vec<OsString> = vec![self.path.clone().into()];
        argv.extend(self.global_args());
        argv.extend([
            "--log".into(),
            log.as_os_str().to_owned(),
            "--log-format".into(),
            "json".into(),
        ]);
        argv
    }

    fn global_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["--root".into(), self.root.clone().into()];
        if self.systemd_cgroup {
            args.push("--systemd-cgroup".into());
        }
        args
    }

    fn command(&self) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.path);
        cmd.args(self.global_args())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    fn spawn_error(&self, e: std::io::Error) -> OciError {
        OciError::Spawn {
            runtime: format!("{} ({})", self.name, self.path.display()),
            message: e.to_string(),
        }
    }

    /// Runs one command; `Ok(stdout)` on success, `Err(message)` with the
    /// runtime's own words on failure.
    pub(super) async fn run(
        &self,
        command: &'static str,
        id: &str,
        args: &[OsString],
    ) -> Result<Result<Vec<u8>, String>, OciError> {
        self.run_within(command, id, args, COMMAND_TIMEOUT).await
    }

    /// [`Self::run`] killed after `limit` instead of the usual time. The
    /// runtime runs in a process group of its own, killed whole at the
    /// limit: what it started (CRIU, for a checkpoint) goes with it.
    pub(super) async fn run_within(
        &self,
        command: &'static str,
        id: &str,
        args: &[OsString],
        limit: Duration,
    ) -> Result<Result<Vec<u8>, String>, OciError> {
        let child = self
            .command()
            .arg(command)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| self.spawn_error(e))?;
        let group = child.id().map(|pid| Pid::from_raw(pid as i32));
        let out = match tokio::time::timeout(limit, child.wait_with_output()).await {
            Ok(out) => out.map_err(|e| self.spawn_error(e))?,
            Err(_) => {
                if let Some(group) = group {
                    let _ = killpg(group, Signal::SIGKILL);
                }
                return Err(self.timeout(command, id, limit));
            }
        };
        if out.status.success() {
            return Ok(Ok(out.stdout));
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let message = error_message(&stderr)
            .unwrap_or_else(|| format!("exited with {} and no message", out.status));
        Ok(Err(message))
    }

    fn timeout(&self, command: &'static str, id: &str, limit: Duration) -> OciError {
        OciError::Timeout {
            runtime: self.name.clone(),
            command,
            id: id.to_string(),
            secs: limit.as_secs(),
        }
    }

    pub(super) fn failed(&self, command: &'static str, id: &str, message: String) -> OciError {
        OciError::Failed {
            runtime: self.name.clone(),
            command,
            id: id.to_string(),
            message,
        }
    }

    /// `<runtime> delete [--force] ID`; a container it does not know is
    /// deleted already.
    pub(super) async fn delete_state(&self, id: &str, force: bool) -> Result<(), OciError> {
        let mut args: Vec<OsString> = Vec::new();
        if force {
            args.push("--force".into());
        }
        args.push(id.into());
        match self.run("delete", id, &args).await? {
            Ok(_) => Ok(()),
            Err(m) if is_gone(&m) => Ok(()),
            Err(m) => Err(self.failed("delete", id, m)),
        }
    }

    /// The first line of `<runtime> --version` (no global options: it
    /// answers before any state is touched).
    pub async fn version(&self) -> Result<String, OciError> {
        let child = tokio::process::Command::new(&self.path)
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| self.spawn_error(e))?;
        let out = match tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output()).await {
            Ok(out) => out.map_err(|e| self.spawn_error(e))?,
            Err(_) => return Err(self.timeout("--version", "", COMMAND_TIMEOUT)),
        };
        let text = String::from_utf8_lossy(&out.stdout);
        match text.lines().map(str::trim).find(|l| !l.is_empty()) {
            Some(first) if out.status.success() => Ok(first.to_string()),
            _ => Err(self.failed(
                "--version",
                "",
                error_message(&String::from_utf8_lossy(&out.stderr))
                    .unwrap_or_else(|| format!("exited with {} and printed nothing", out.status)),
            )),
        }
    }

    /// Runs the container of `bundle` in the foreground (`run`) until it
    /// exits, then deletes its state whatever happened: a trial that shows
    /// whether the runtime works on this host at all.
    pub async fn run_to_exit(&self, id: &str, bundle: &Path) -> Result<(), OciError> {
        let args: Vec<OsString> = vec!["--bundle".into(), bundle.into(), id.into()];
        let ran = self.run("run", id, &args).await;
        let _ = self.delete_state(id, true).await;
        match ran? {
            Ok(_) => Ok(()),
            Err(message) => Err(self.failed("run", id, message)),
        }
    }

    /// `<runtime> features`. Older runtimes have no such command: they
    /// support none of the optional features.
    pub(super) async fn read_features(&self) -> RuntimeFeatures {
        let out = match self.run("features", "", &[]).await {
            Ok(Ok(out)) => out,
            _ => return RuntimeFeatures::default(),
        };
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap_or_default();
        let rro = v["mountOptions"]
            .as_array()
            .is_some_and(|opts| opts.iter().any(|o| o == "rro"));
        RuntimeFeatures {
            recursive_read_only_mounts: rro,
        }
    }
}

/// The runtime's error from what it wrote on stderr: the last line, which
/// runc writes plainly after its log line; a JSON log line gives its msg,
/// and so does a text one (`time=... level=error msg="..."`, all `run`
/// writes).
fn error_message(stderr: &str) -> Option<String> {
    let line = stderr.lines().rev().find(|l| !l.trim().is_empty())?.trim();
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
        if let Some(m) = v["msg"].as_str() {
            return Some(m.to_string());
        }
    }
    Some(text_log_message(line).unwrap_or_else(|| line.to_string()))
}

/// The `msg="..."` of a logrus text line, unquoted (Go's escapes).
fn text_log_message(line: &str) -> Option<String> {
    let quoted = line.split_once(" msg=\"")?.1;
    let mut out = String::new();
    let mut chars = quoted.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => out.extend(chars.next().map(|c| match c {
                'n' => '\n',
                't' => '\t',
                c => c,
            })),
            c => out.push(c),
        }
    }
    None
}

/// Messages that mean "the container is not there (any more)".
fn is_gone(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("does not exist") || m.contains("not found") || m.contains("no such file")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages() {
        let stderr = "time=\"2026-12-03T10:00:00Z\" level=error msg=\"container does not exist\"\ncontainer does not exist\n";
        assert_eq!(error_message(stderr).unwrap(), "container does not exist");
        assert!(is_gone("container does not exist"));
        let json = "{\"level\":\"error\",\"msg\":\"container not running\",\"time\":\"x\"}\n";
        assert_eq!(error_message(json).unwrap(), "container not running");
        assert_eq!(error_message("\n  \n"), None);
        let text = "time=\"2026-12-07T21:00:28Z\" level=error msg=\"runc run failed: a \\\"quoted\\\" word\"\n";
        assert_eq!(
            error_message(text).unwrap(),
            "runc run failed: a \"quoted\" word"
        );
        let lines = "level=error msg=\"criu failed: type DUMP errno 0\\nlog file: /w/dump.log\"\n";
        assert_eq!(
            error_message(lines).unwrap(),
            "criu failed: type DUMP errno 0\nlog file: /w/dump.log"
        );
        assert_eq!(
            error_message("level=error msg=\"unterminated\n").unwrap(),
            "level=error msg=\"unterminated"
        );
    }
}
