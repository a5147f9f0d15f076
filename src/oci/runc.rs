//! A runtime with runc's command line: runc itself, crun, youki.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::sync::OnceCell;

use super::{CreatePaths, OciError, OciRuntime, RuntimeFeatures, RuntimeState};

/// How long one runtime command may take before it is killed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

pub struct CliRuntime {
    name: String,
    path: PathBuf,
    root: PathBuf,
    systemd_cgroup: bool,
    features: OnceCell<RuntimeFeatures>,
}

impl CliRuntime {
    /// The runtime with its global options and a JSON log at `log`, ready
    /// for a subcommand.
    fn logged_argv(&self, log: &Path) -> Vec<OsString> {
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

    /// `path` is the binary, `root` its `--root` state directory.
    pub fn new(name: &str, path: &Path, root: &Path, systemd_cgroup: bool) -> CliRuntime {
        CliRuntime {
            name: name.to_string(),
            path: path.to_path_buf(),
            root: root.to_path_buf(),
            systemd_cgroup,
            features: OnceCell::new(),
        }
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
    async fn run(
        &self,
        command: &'static str,
        id: &str,
        args: &[OsString],
    ) -> Result<Result<Vec<u8>, String>, OciError> {
        let child = self
            .command()
            .arg(command)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.spawn_error(e))?;
        let out = match tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output()).await {
            Ok(out) => out.map_err(|e| self.spawn_error(e))?,
            Err(_) => {
                return Err(OciError::Timeout {
                    runtime: self.name.clone(),
                    command,
                    id: id.to_string(),
                    secs: COMMAND_TIMEOUT.as_secs(),
                })
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

    fn failed(&self, command: &'static str, id: &str, message: String) -> OciError {
        OciError::Failed {
            runtime: self.name.clone(),
            command,
            id: id.to_string(),
            message,
        }
    }
}

/// The runtime's error from what it wrote on stderr: the last line, which
/// runc writes plainly after its log line; a JSON log line gives its msg.
fn error_message(stderr: &str) -> Option<String> {
    let line = stderr.lines().rev().find(|l| !l.trim().is_empty())?.trim();
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
        if let Some(m) = v["msg"].as_str() {
            return Some(m.to_string());
        }
    }
    Some(line.to_string())
}

/// Messages that mean "the container is not there (any more)".
fn is_gone(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("does not exist") || m.contains("not found") || m.contains("no such file")
}

/// Messages that mean "there is nothing left to signal".
fn is_not_running(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    is_gone(&m)
        || m.contains("not running")
        || m.contains("already finished")
        || m.contains("no such process")
        || m.contains("container is stopped")
}

#[tonic::async_trait]
impl OciRuntime for CliRuntime {
    fn name(&self) -> &str {
        &self.name
    }

    fn create_argv(&self, id: &str, paths: &CreatePaths<'_>) -> Vec<OsString> {
        let mut argv = self.logged_argv(paths.log);
        argv.extend([
            "create".into(),
            "--bundle".into(),
            paths.bundle.as_os_str().to_owned(),
            "--pid-file".into(),
            paths.pid_file.as_os_str().to_owned(),
        ]);
        if let Some(s) = paths.console_socket {
            argv.push("--console-socket".into());
            argv.push(s.as_os_str().to_owned());
        }
        argv.push(id.into());
        argv
    }

    async fn start(&self, id: &str) -> Result<(), OciError> {
        self.run("start", id, &[id.into()])
            .await?
            .map(|_| ())
            .map_err(|m| self.failed("start", id, m))
    }

    async fn state(&self, id: &str) -> Result<Option<RuntimeState>, OciError> {
        match self.run("state", id, &[id.into()]).await? {
            Ok(out) => {
                let v: serde_json::Value = serde_json::from_slice(&out)
                    .map_err(|e| self.failed("state", id, format!("unreadable state JSON: {e}")))?;
                Ok(Some(RuntimeState {
                    status: v["status"].as_str().unwrap_or_default().to_string(),
                    pid: v["pid"].as_i64().unwrap_or(0) as i32,
                }))
            }
            Err(m) if is_gone(&m) => Ok(None),
            Err(m) => Err(self.failed("state", id, m)),
        }
    }

    async fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), OciError> {
        let mut args: Vec<OsString> = Vec::new();
        if all {
            args.push("--all".into());
        }
        args.push(id.into());
        args.push(signal.to_string().into());
        match self.run("kill", id, &args).await? {
            Ok(_) => Ok(()),
            Err(m) if is_not_running(&m) => Ok(()),
            Err(m) => Err(self.failed("kill", id, m)),
        }
    }

    async fn delete(&self, id: &str, force: bool) -> Result<(), OciError> {
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

    fn exec_argv(
        &self,
        id: &str,
        process_json: &Path,
        pid_file: &Path,
        log: &Path,
    ) -> Vec<OsString> {
        let mut argv = self.logged_argv(log);
        argv.extend([
            "exec".into(),
            "--detach".into(),
            "--process".into(),
            process_json.as_os_str().to_owned(),
            "--pid-file".into(),
            pid_file.as_os_str().to_owned(),
            id.into(),
        ]);
        argv
    }

    async fn update(&self, id: &str, resources_json: &Path) -> Result<(), OciError> {
        let args: Vec<OsString> = vec!["--resources".into(), resources_json.into(), id.into()];
        self.run("update", id, &args)
            .await?
            .map(|_| ())
            .map_err(|m| self.failed("update", id, m))
    }

    async fn features(&self) -> RuntimeFeatures {
        self.features
            .get_or_init(|| async {
                // Older runtimes have no `features` command: they support
                // none of the optional features.
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
            })
            .await
            .clone()
    }
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
        assert!(is_not_running("container not running"));
        assert!(is_not_running("process already finished"));
        assert!(!is_not_running("permission denied"));
        assert_eq!(error_message("\n  \n"), None);
    }

    #[test]
    fn create_command_line() {
        let r = CliRuntime::new("runc", Path::new("/usr/bin/runc"), Path::new("/r"), false);
        let argv = r.create_argv(
            "abc",
            &CreatePaths {
                bundle: Path::new("/b"),
                pid_file: Path::new("/b/pid"),
                log: Path::new("/b/log.json"),
                console_socket: Some(Path::new("/b/console.sock")),
            },
        );
        let argv: Vec<String> = argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            argv,
            [
                "/usr/bin/runc",
                "--root",
                "/r",
                "--log",
                "/b/log.json",
                "--log-format",
                "json",
                "create",
                "--bundle",
                "/b",
                "--pid-file",
                "/b/pid",
                "--console-socket",
                "/b/console.sock",
                "abc"
            ]
        );
    }
}
