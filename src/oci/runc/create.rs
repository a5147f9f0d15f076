//! `create`: the runtime's create command, run by the container's monitor.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use super::{BundleFiles, CliRuntime, ContainerHandle, ContainerIo, Launched, OciError};
use crate::monitor::{self, ContainerConfig, MonitorError};

/// How long the monitor and the runtime's `create` may take.
const CREATE_TIMEOUT: Duration = Duration::from_secs(90);

/// The paths a create command uses.
struct CreatePaths<'a> {
    bundle: &'a Path,
    pid_file: &'a Path,
    log: &'a Path,
    /// Set for a terminal: the runtime sends the pty master here.
    console_socket: Option<&'a Path>,
}

impl CliRuntime {
    pub(super) async fn create_under_monitor(
        &self,
        c: &ContainerHandle,
        io: &ContainerIo,
    ) -> Result<Launched, OciError> {
        if let Some(dir) = c.socket.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| OciError::Io(format!("create {}: {e}", dir.display())))?;
        }
        let config = self.monitor_config(c, io);
        monitor::launch(&self.monitor, &config, CREATE_TIMEOUT)
            .await
            .map_err(|e| match e {
                MonitorError::Runtime(message) => OciError::Refused {
                    runtime: self.name.clone(),
                    message,
                },
                e => OciError::Monitor(e.to_string()),
            })
    }

    /// What the monitor needs to create the container and stay its parent.
    fn monitor_config(&self, c: &ContainerHandle, io: &ContainerIo) -> ContainerConfig {
        let files = BundleFiles(c);
        let console = io.tty.then(|| files.console_socket());
        let argv = self.create_argv(
            &c.id,
            &CreatePaths {
                bundle: &c.bundle,
                pid_file: &files.pid_file(),
                log: &files.runtime_log(),
                console_socket: console.as_deref(),
            },
        );
        ContainerConfig {
            id: c.id.clone(),
            bundle: c.bundle.clone(),
            pid_file: files.pid_file(),
            exit_file: files.exit_file(),
            socket: c.socket.clone(),
            log_path: io.log_path.clone(),
            log_max_line: io.log_max_line,
            tty: io.tty,
            console_socket: console,
            stdin: io.stdin,
            stdin_once: io.stdin_once,
            oom_file: io.oom_file.clone(),
            runtime_log: Some(files.runtime_log()),
            // How long output is still read after the init exited, when
            // other processes hold the container's stdout.
            drain_timeout: monitor::DEFAULT_DRAIN_TIMEOUT,
            runtime_argv: argv,
        }
    }

    /// The command line that creates container `id` from its bundle.
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_command_line() {
        let r = CliRuntime::new(
            "runc",
            Path::new("/usr/bin/runc"),
            Path::new("/r"),
            false,
            Path::new("/m"),
        );
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
