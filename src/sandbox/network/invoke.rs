//! Running one plugin: found in the bin dirs, given the CNI environment and
//! its config on stdin, killed with everything it started when it overruns
//! the exec timeout.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::{Child, Command};

use super::plugin_conf::plugin_type;
use super::{Attachment, CniError, CniNetwork, Op};
use crate::host::DEFAULT_PATH;

/// Plugin output kept for error messages; more is read and dropped so a
/// chatty plugin never blocks on a full pipe.
const OUTPUT_LIMIT: usize = 1 << 20;
const STDERR_IN_ERROR: usize = 2048;
/// How long a killed plugin may take to be reaped.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);

/// What a plugin that ran to the end left.
struct PluginOutput {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    status: ExitStatus,
}

impl CniNetwork {
    /// Execs one plugin and returns its stdout on success.
    pub(super) async fn exec_plugin(
        &self,
        plugin: &Map<String, Value>,
        op: Op,
        a: &Attachment<'_>,
        netns: &str,
        conf: &Value,
    ) -> Result<Vec<u8>, CniError> {
        let ty = plugin_type(plugin);
        let path = self.find_plugin(ty)?;
        let mut cmd = self.plugin_command(&path, op, a, netns);
        let started = Instant::now();
        let child = spawn_retrying(&mut cmd)
            .await
            .map_err(|source| CniError::PluginSpawn {
                plugin: ty.to_string(),
                command: op.as_str(),
                path: path.clone(),
                source,
            })?;
        let stdin = conf.to_string().into_bytes();
        let Some(output) = run_within(child, stdin, self.exec_timeout).await else {
            tracing::warn!(plugin = ty, command = op.as_str(), container_id = a.container_id, timeout = ?self.exec_timeout, "CNI plugin timed out; killed");
            return Err(CniError::PluginTimeout {
                plugin: ty.to_string(),
                command: op.as_str(),
                timeout: self.exec_timeout,
            });
        };
        let output = output.map_err(|source| CniError::PluginIo {
            plugin: ty.to_string(),
            command: op.as_str(),
            source,
        })?;
        tracing::debug!(plugin = ty, command = op.as_str(), container_id = a.container_id, elapsed = ?started.elapsed(), status = %output.status, "CNI plugin finished");
        plugin_outcome(ty, op, output)
    }

    pub(super) fn find_plugin(&self, ty: &str) -> Result<PathBuf, CniError> {
        self.bin_dirs
            .iter()
            .map(|d| d.join(ty))
            .find(|p| p.is_file())
            .ok_or_else(|| CniError::PluginNotFound {
                plugin: ty.to_string(),
                dirs: self
                    .bin_dirs
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(":"),
            })
    }

    /// The plugin's command line: the spec's `CNI_*` environment, piped
    /// stdio, a process group of its own.
    fn plugin_command(&self, path: &Path, op: Op, a: &Attachment<'_>, netns: &str) -> Command {
        let mut cmd = Command::new(path);
        // Plugins run iptables, ip6tables, modprobe by name.
        if std::env::var_os("PATH").is_none() {
            cmd.env("PATH", DEFAULT_PATH);
        }
        cmd.env("CNI_COMMAND", op.as_str())
            .env("CNI_CONTAINERID", a.container_id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", a.ifname)
            .env("CNI_ARGS", cni_args(a))
            .env("CNI_PATH", self.cni_path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Own process group: a timeout must also kill the IPAM plugin or
            // iptables the plugin is running.
            .process_group(0)
            .kill_on_drop(true);
        cmd
    }

    /// `CNI_PATH`: where a plugin finds the plugins it delegates to.
    fn cni_path(&self) -> String {
        self.bin_dirs
            .iter()
            .map(|d| d.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(":")
    }
}

/// `CNI_ARGS`: the pod's identity as kubelet's runtimes pass it.
fn cni_args(a: &Attachment<'_>) -> String {
    format!(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE={};K8S_POD_NAME={};K8S_POD_INFRA_CONTAINER_ID={};K8S_POD_UID={}",
        a.pod_namespace, a.pod_name, a.container_id, a.pod_uid
    )
}

/// Retries a spawn that hit ETXTBSY: a plugin binary just written (an
/// upgrade, a test) can still be open for writing in a concurrently forked
/// child for a moment.
async fn spawn_retrying(cmd: &mut Command) -> io::Result<Child> {
    let mut attempts = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempts < 10 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            other => return other,
        }
    }
}

/// Feeds the plugin `stdin` and collects its output and status; `None`
/// when it overran `timeout` and was killed with its process group.
async fn run_within(
    mut child: Child,
    stdin: Vec<u8>,
    timeout: Duration,
) -> Option<io::Result<PluginOutput>> {
    // Declared after `child` so it is dropped first: if this future is
    // dropped mid-exec, the whole group dies while the leader is unreaped.
    let mut group = GroupKiller::new(child.id());
    match tokio::time::timeout(timeout, communicate(&mut child, stdin)).await {
        Ok(done) => {
            // The leader was reaped (or waiting failed): its pid is free.
            group.disarm();
            Some(done)
        }
        Err(_) => {
            group.kill();
            group.disarm();
            let _ = child.start_kill();
            let _ = tokio::time::timeout(REAP_TIMEOUT, child.wait()).await;
            None
        }
    }
}

/// Writes stdin while reading stdout and stderr, then reaps the plugin.
async fn communicate(child: &mut Child, input: Vec<u8>) -> io::Result<PluginOutput> {
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let (written, stdout, stderr) = tokio::join!(
        write_stdin(stdin, &input),
        read_capped(stdout),
        read_capped(stderr)
    );
    let status = child.wait().await;
    written?;
    Ok(PluginOutput {
        stdout: stdout?,
        stderr: stderr?,
        status: status?,
    })
}

/// Writes all of `input` and closes the pipe.
async fn write_stdin<W: AsyncWrite + Unpin>(stdin: Option<W>, input: &[u8]) -> io::Result<()> {
    let Some(mut stdin) = stdin else {
        return Ok(());
    };
    let written = stdin.write_all(input).await;
    // Dropping stdin closes it: the plugin reads to EOF.
    drop(stdin);
    match written {
        // The plugin may exit without reading; its status says why.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Reads a pipe to EOF keeping at most [`OUTPUT_LIMIT`] bytes.
async fn read_capped<R: AsyncRead + Unpin>(pipe: Option<R>) -> io::Result<Vec<u8>> {
    let mut kept = Vec::new();
    let Some(mut pipe) = pipe else {
        return Ok(kept);
    };
    let mut buf = [0u8; 8192];
    loop {
        let n = pipe.read(&mut buf).await?;
        if n == 0 {
            return Ok(kept);
        }
        let room = OUTPUT_LIMIT.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
}

/// SIGKILLs a plugin's process group (it runs as leader) unless disarmed:
/// killing only the plugin would leave the IPAM plugin or iptables it runs.
struct GroupKiller {
    pgid: Option<nix::unistd::Pid>,
}

impl GroupKiller {
    fn new(pid: Option<u32>) -> GroupKiller {
        GroupKiller {
            pgid: pid
                .and_then(|p| i32::try_from(p).ok())
                .map(nix::unistd::Pid::from_raw),
        }
    }

    fn kill(&self) {
        if let Some(pgid) = self.pgid {
            // ESRCH: everyone in the group already exited.
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        }
    }

    /// Must be called once the leader is reaped, when its id may be reused.
    fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The plugin's stdout when it succeeded, else why it failed.
fn plugin_outcome(ty: &str, op: Op, output: PluginOutput) -> Result<Vec<u8>, CniError> {
    if output.status.success() {
        return Ok(output.stdout);
    }
    let (code, message) = plugin_error(&output.stdout, &output.stderr, output.status);
    Err(CniError::PluginFailed {
        plugin: ty.to_string(),
        command: op.as_str(),
        code,
        message,
    })
}

/// The error code and message of a failed plugin: its JSON error on stdout
/// when it printed one, otherwise its exit status and stderr.
fn plugin_error(stdout: &[u8], stderr: &[u8], status: ExitStatus) -> (Option<u64>, String) {
    if let Some(error) = json_error(stdout) {
        return error;
    }
    let mut message = format!("{status}");
    for (what, bytes) in [("stderr", stderr), ("stdout", stdout)] {
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim();
        if !text.is_empty() {
            message = format!("{message}; {what}: {}", tail(text));
        }
    }
    (None, message)
}

/// The spec's error object (`code`, `msg`, `details`) when stdout holds one.
fn json_error(stdout: &[u8]) -> Option<(Option<u64>, String)> {
    let Ok(Value::Object(e)) = serde_json::from_slice::<Value>(stdout) else {
        return None;
    };
    let code = e.get("code").and_then(Value::as_u64);
    let msg = e.get("msg").and_then(Value::as_str).unwrap_or("");
    let details = e.get("details").and_then(Value::as_str).unwrap_or("");
    if code.is_none() && msg.is_empty() {
        return None;
    }
    let mut message = msg.to_string();
    if !details.is_empty() {
        message = format!("{message}: {details}");
    }
    if let Some(code) = code {
        message = format!("{message} (CNI error code {code})");
    }
    Some((code, message))
}

/// The last [`STDERR_IN_ERROR`] bytes of `text`, marked when cut.
fn tail(text: &str) -> String {
    if text.len() <= STDERR_IN_ERROR {
        return text.to_string();
    }
    let mut start = text.len() - STDERR_IN_ERROR;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &text[start..])
}
