//! ExecSync: a command run inside a running container (its namespaces,
//! cgroup, user, capabilities and environment, from its OCI spec), with
//! its output collected and a deadline that covers the process and the
//! reading of its output.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use peapod_monitor_protocol::exec::{ExecArgs, EXIT_RUNTIME};
use tokio::io::{AsyncRead, AsyncReadExt};
use tracing::warn;

use super::error::ContainerError;
use super::spec::ContainerRecord;
use crate::oci::{last_error_in_log, OciRuntime};

/// Output kept per stream; the rest is read and dropped, so a chatty
/// command never blocks on a full pipe. kubelet keeps far less of a probe.
pub const OUTPUT_LIMIT: usize = 4 * 1024 * 1024;

/// How long output is still read after the command exited, for a
/// background child that keeps the command's stdout open.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

/// Reads a stream to its end, keeping at most [`OUTPUT_LIMIT`] bytes.
async fn collect(mut r: impl AsyncRead + Unpin, out: Arc<std::sync::Mutex<Vec<u8>>>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
                let room = OUTPUT_LIMIT.saturating_sub(o.len());
                o.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

/// The container's process spec with `cmd` as its arguments.
fn process_json(bundle: &Path, cmd: &[String]) -> Result<Vec<u8>, ContainerError> {
    let path = bundle.join("config.json");
    let bytes = std::fs::read(&path)
        .map_err(|e| ContainerError::internal(&format!("read {}", path.display()), e))?;
    let spec: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| ContainerError::internal(&format!("parse {}", path.display()), e))?;
    let mut process = spec
        .get("process")
        .cloned()
        .ok_or_else(|| ContainerError::Internal(format!("{} has no process", path.display())))?;
    process["args"] = serde_json::json!(cmd);
    process["terminal"] = serde_json::json!(false);
    if let Some(p) = process.as_object_mut() {
        p.remove("consoleSize");
    }
    serde_json::to_vec(&process).map_err(|e| ContainerError::internal("encode process", e))
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(255)
}

pub async fn exec_sync(
    runtime: Arc<dyn OciRuntime>,
    monitor: &Path,
    rec: &ContainerRecord,
    cmd: Vec<String>,
    timeout: Option<Duration>,
) -> Result<ExecOutput, ContainerError> {
    let started = Instant::now();
    let deadline = timeout.map(|t| started + t);
    let tag = &crate::ids::new_id()[..16];
    let dir = rec.bundle();
    let files = [
        dir.join(format!("exec-{tag}.json")),
        dir.join(format!("exec-{tag}.pid")),
        dir.join(format!("exec-{tag}.log")),
    ];
    let [process_file, pid_file, log_file] = &files;
    let cleanup = || {
        for f in &files {
            let _ = std::fs::remove_file(f);
        }
    };
    let json = process_json(&dir, &cmd)?;
    crate::sandbox::files::write_volatile(process_file, &json, 0o600)
        .map_err(|e| ContainerError::internal("write the exec process", e))?;

    let exec = ExecArgs {
        pid_file: pid_file.clone(),
        runtime_argv: runtime.exec_argv(&rec.id, process_file, pid_file, log_file),
    };
    let spawned = tokio::process::Command::new(monitor)
        .args(exec.to_args())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            cleanup();
            return Err(ContainerError::internal(
                &format!("run {}", monitor.display()),
                e,
            ));
        }
    };
    let stdout = Arc::new(std::sync::Mutex::new(Vec::new()));
    let stderr = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut readers = Vec::new();
    if let Some(s) = child.stdout.take() {
        readers.push(tokio::spawn(collect(s, stdout.clone())));
    }
    if let Some(s) = child.stderr.take() {
        readers.push(tokio::spawn(collect(s, stderr.clone())));
    }

    let waited = match deadline {
        Some(d) => tokio::time::timeout_at(d.into(), child.wait()).await.ok(),
        None => Some(child.wait().await),
    };
    let status = match waited {
        Some(Ok(status)) => status,
        Some(Err(e)) => {
            cleanup();
            return Err(ContainerError::internal("wait for the exec process", e));
        }
        None => {
            // The process, not just the runtime's exec command: killing
            // the latter would leave the former running in the container.
            if let Some(pid) = std::fs::read_to_string(pid_file)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
            {
                if let Some(p) = crate::process::ProcessRef::of(pid) {
                    let _ = crate::process::kill_and_wait(p, Duration::from_secs(5)).await;
                }
            }
            // The runtime's exec command and anything left under the
            // wrapper (a subreaper) go with it.
            if let Some(pid) = child.id() {
                crate::process::kill_descendants(pid as i32);
            }
            let _ = child.kill().await;
            for r in &readers {
                r.abort();
            }
            cleanup();
            return Err(ContainerError::DeadlineExceeded(format!(
                "command {:?} timed out after {:?} (timeout {} s)",
                cmd.join(" "),
                started.elapsed(),
                timeout.map(|t| t.as_secs()).unwrap_or(0)
            )));
        }
    };
    // The output's end: EOF, or a little after the exit when a background
    // child still holds the pipes (never past the deadline).
    let mut drain_until = Instant::now() + DRAIN_AFTER_EXIT;
    if let Some(d) = deadline {
        drain_until = drain_until.min(d);
    }
    for r in readers {
        let abort = r.abort_handle();
        if tokio::time::timeout_at(drain_until.into(), r)
            .await
            .is_err()
        {
            abort.abort();
            warn!(container = %rec.id, "exec output still open after the command exited; returning what was read");
        }
    }
    let log = std::fs::read_to_string(log_file).unwrap_or_default();
    let started_ok = pid_file.exists();
    cleanup();
    let runtime_error = last_error_in_log(&log);
    if !started_ok || (status.code() == Some(i32::from(EXIT_RUNTIME)) && runtime_error.is_some()) {
        return Err(ContainerError::Internal(format!(
            "{} exec failed: {}",
            runtime.name(),
            runtime_error.unwrap_or_else(|| format!("the process did not start ({status})"))
        )));
    }
    let take = |b: &Arc<std::sync::Mutex<Vec<u8>>>| {
        std::mem::take(&mut *b.lock().unwrap_or_else(|e| e.into_inner()))
    };
    Ok(ExecOutput {
        stdout: take(&stdout),
        stderr: take(&stderr),
        exit_code: exit_code(status),
    })
}
