//! The SPDY client every target is reached with: tests/clients'
//! `spdy-client` (Go, on moby/spdystream as kubelet and kubectl), one child
//! process per session. Its command line, output and result JSON are in
//! tests/clients/README.md.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::error::{io_err, BenchError};

/// Where `hack/build-test-clients.sh` puts the client.
pub const SPDY_CLIENT: &str = "target/test-clients/spdy-client";

/// Longest a session may take from spawn to exit, or to its `ready`.
const SESSION_LIMIT: Duration = Duration::from_secs(60);

/// The bench cannot run its streaming workload without the client: an
/// error that says how to build it.
pub fn check_spdy_client(path: &Path) -> Result<(), BenchError> {
    let executable =
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if executable {
        return Ok(());
    }
    Err(BenchError::Setup(format!(
        "{}: no such executable; the streaming workload reaches every target with this SPDY \
         client: build it with `bash hack/build-test-clients.sh` (or give --spdy-client PATH)",
        path.display()
    )))
}

/// The exec part of the client's result JSON.
#[derive(Debug)]
pub struct ExecResult {
    /// The remote exit code (`null` when there was none).
    pub exit_code: Option<i64>,
    /// The error stream as received.
    pub error: String,
    pub message: String,
}

/// One forwarded connection of the client's port-forward result.
#[derive(Debug)]
pub struct ForwardedRequest {
    pub error: String,
    pub bytes_to_remote: u64,
    pub bytes_to_local: u64,
}

/// The port-forward part of the client's result JSON.
#[derive(Debug)]
pub struct PortForwardResult {
    pub message: String,
    pub requests: Vec<ForwardedRequest>,
}

/// A one-shot exec session: when its stdout's first byte came, when the
/// client exited, what it printed and its result.
pub struct ExecRun {
    pub first_byte: Option<Instant>,
    pub exited: Instant,
    pub stdout: Vec<u8>,
    pub result: ExecResult,
}

/// The client as one target's workload runs it: result and stderr files
/// go to `dir`, named after the target.
pub struct SpdyClient {
    path: PathBuf,
    dir: PathBuf,
    target: String,
}

impl SpdyClient {
    pub fn new(path: &Path, dir: &Path, target: &str) -> Result<SpdyClient, BenchError> {
        check_spdy_client(path)?;
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        Ok(SpdyClient {
            path: path.to_path_buf(),
            dir: dir.to_path_buf(),
            target: target.to_string(),
        })
    }

    fn unexpected(&self, call: &'static str, what: String) -> BenchError {
        BenchError::Unexpected {
            target: self.target.clone(),
            call,
            what,
        }
    }

    /// The result and stderr files of session `what` (stale ones removed).
    fn files(&self, what: &str) -> Result<(PathBuf, PathBuf), BenchError> {
        let result = self.dir.join(format!("{}-{what}.json", self.target));
        let stderr = self.dir.join(format!("{}-{what}.stderr", self.target));
        for f in [&result, &stderr] {
            match std::fs::remove_file(f) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(f)(e)),
                _ => {}
            }
        }
        Ok((result, stderr))
    }

    /// Spawns `spdy-client ARGS --result RESULT` with stdout piped, stderr
    /// to its file and stdin piped or null; killed when dropped.
    fn spawn(
        &self,
        args: &[&str],
        result: &Path,
        stderr: &Path,
        stdin: bool,
    ) -> Result<Child, BenchError> {
        let err_file = std::fs::File::create(stderr).map_err(io_err(stderr))?;
        Command::new(&self.path)
            .args(args)
            .arg("--result")
            .arg(result)
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(err_file)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| BenchError::Spawn {
                cmd: format!("{} {}", self.path.display(), args.join(" ")),
                source,
            })
    }

    /// `spdy-client help`, spawned until its exit: the client's own share
    /// of an exec round trip.
    pub async fn start_and_exit(&self) -> Result<Duration, BenchError> {
        let start = Instant::now();
        let status = Command::new(&self.path)
            .arg("help")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .status()
            .await
            .map_err(|source| BenchError::Spawn {
                cmd: format!("{} help", self.path.display()),
                source,
            })?;
        let took = start.elapsed();
        if !status.success() {
            return Err(self.unexpected("spdy-client help", format!("exited with {status}")));
        }
        Ok(took)
    }

    /// `spdy-client exec URL` without stdin: the instant its stdout's first
    /// byte arrives, its exit, its output and its result. A client that
    /// does not exit 0 is an error.
    pub async fn exec(&self, url: &str) -> Result<ExecRun, BenchError> {
        let (result, stderr) = self.files("exec")?;
        let mut child = self.spawn(&["exec", url], &result, &stderr, false)?;
        let stdout = child.stdout.take();
        let run = async {
            let (first_byte, out) = match stdout {
                Some(s) => read_timed(s).await,
                None => Ok((None, Vec::new())),
            }
            .map_err(io_err(&self.path))?;
            let status = child.wait().await.map_err(io_err(&self.path))?;
            Ok::<_, BenchError>((first_byte, out, status, Instant::now()))
        };
        let (first_byte, stdout, status, exited) = tokio::time::timeout(SESSION_LIMIT, run)
            .await
            .map_err(|_| self.unexpected("spdy-client exec", self.late(url, &stderr)))??;
        self.check_exit("spdy-client exec", status, &stderr)?;
        Ok(ExecRun {
            first_byte,
            exited,
            stdout,
            result: self.exec_result(&result)?,
        })
    }

    /// `spdy-client exec URL --stdin` of a command that prints `ready`
    /// first: the session once that line came.
    pub async fn open_session(&self, url: &str, n: usize) -> Result<Session, BenchError> {
        let (result, stderr) = self.files(&format!("session-{n}"))?;
        let mut child = self.spawn(&["exec", url, "--stdin"], &result, &stderr, true)?;
        let stdin = child.stdin.take();
        let mut stdout = child.stdout.take().map(BufReader::new);
        let mut line = String::new();
        let read = match stdout.as_mut() {
            Some(out) => tokio::time::timeout(SESSION_LIMIT, out.read_line(&mut line)).await,
            None => Ok(Ok(0)),
        };
        if !matches!(read, Ok(Ok(_))) || line != "ready\n" {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(self.unexpected(
                "spdy-client exec",
                format!(
                    "session {n} printed {line:?} instead of \"ready\\n\" ({})",
                    stderr_text(&stderr)
                ),
            ));
        }
        Ok(Session {
            child,
            stdin,
            stdout: stdout.map(BufReader::into_inner),
            result,
            stderr,
            n,
        })
    }

    /// `spdy-client portforward URL --port 0:REMOTE`: the session once it
    /// printed its local port and `ready`.
    pub async fn port_forward(&self, url: &str, remote: u16) -> Result<PortForward, BenchError> {
        let (result, stderr) = self.files("portforward")?;
        let port = format!("0:{remote}");
        let mut child = self.spawn(
            &["portforward", url, "--port", &port],
            &result,
            &stderr,
            true,
        )?;
        let stdin = child.stdin.take();
        let mut stdout = child.stdout.take().map(BufReader::new);
        let local = match stdout.as_mut() {
            Some(out) => tokio::time::timeout(SESSION_LIMIT, local_port(out, remote))
                .await
                .unwrap_or(None),
            None => None,
        };
        let Some(local_port) = local else {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(self.unexpected(
                "spdy-client portforward",
                format!(
                    "no `listening 127.0.0.1:N -> {remote}` and `ready` from {url} ({})",
                    stderr_text(&stderr)
                ),
            ));
        };
        Ok(PortForward {
            child,
            stdin,
            _stdout: stdout,
            local_port,
            result,
            stderr,
        })
    }

    /// Exit status 0 (the session ran), else an error with its stderr.
    fn check_exit(
        &self,
        call: &'static str,
        status: ExitStatus,
        stderr: &Path,
    ) -> Result<(), BenchError> {
        if status.success() {
            return Ok(());
        }
        Err(self.unexpected(
            call,
            format!("exited with {status}: {}", stderr_text(stderr)),
        ))
    }

    fn late(&self, url: &str, stderr: &Path) -> String {
        format!(
            "{url}: no exit within {} s ({})",
            SESSION_LIMIT.as_secs(),
            stderr_text(stderr)
        )
    }

    fn read_result(&self, path: &Path) -> Result<serde_json::Value, BenchError> {
        let text = std::fs::read(path).map_err(io_err(path))?;
        serde_json::from_slice(&text).map_err(|e| {
            self.unexpected("spdy-client", format!("{}: not JSON: {e}", path.display()))
        })
    }

    fn exec_result(&self, path: &Path) -> Result<ExecResult, BenchError> {
        let v = self.read_result(path)?;
        Ok(ExecResult {
            exit_code: v.get("exit_code").and_then(|c| c.as_i64()),
            error: json_str(&v, "error"),
            message: json_str(&v, "message"),
        })
    }

    fn port_forward_result(&self, path: &Path) -> Result<PortForwardResult, BenchError> {
        let v = self.read_result(path)?;
        let requests = v
            .get("requests")
            .and_then(|r| r.as_array())
            .map(|r| {
                r.iter()
                    .map(|q| ForwardedRequest {
                        error: json_str(q, "error"),
                        bytes_to_remote: q
                            .get("bytes_to_remote")
                            .and_then(|b| b.as_u64())
                            .unwrap_or(0),
                        bytes_to_local: q
                            .get("bytes_to_local")
                            .and_then(|b| b.as_u64())
                            .unwrap_or(0),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(PortForwardResult {
            message: json_str(&v, "message"),
            requests,
        })
    }
}

fn json_str(v: &serde_json::Value, key: &str) -> String {
    v.get(key)
        .and_then(|s| s.as_str())
        .unwrap_or_default()
        .to_string()
}

/// The client's stderr, trimmed, for an error message.
fn stderr_text(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let text = text.trim();
    if text.is_empty() {
        "no stderr".to_string()
    } else {
        format!("stderr: {text}")
    }
}

/// Reads `out` to its end: the instant the first byte came, and the bytes.
async fn read_timed(mut out: ChildStdout) -> std::io::Result<(Option<Instant>, Vec<u8>)> {
    let mut first = None;
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = out.read(&mut buf).await?;
        if n == 0 {
            return Ok((first, all));
        }
        first.get_or_insert_with(Instant::now);
        all.extend_from_slice(&buf[..n]);
    }
}

/// The local port of `listening 127.0.0.1:N -> REMOTE`, once `ready` follows.
async fn local_port(out: &mut BufReader<ChildStdout>, remote: u16) -> Option<u16> {
    let mut port = None;
    let mut line = String::new();
    loop {
        line.clear();
        if out.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line == "ready" {
            return port;
        }
        port = parse_listening(line, remote).or(port);
    }
}

fn parse_listening(line: &str, remote: u16) -> Option<u16> {
    let (local, to) = line
        .strip_prefix("listening 127.0.0.1:")?
        .split_once(" -> ")?;
    (to.parse::<u16>().ok()? == remote).then_some(local.parse().ok()?)
}

/// An exec session held open: its stdin is the remote process's.
pub struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    result: PathBuf,
    stderr: PathBuf,
    n: usize,
}

impl Session {
    /// Closes the client's stdin: the remote stdin ends.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Closes stdin and waits for the client's exit: its result.
    pub async fn end(mut self, client: &SpdyClient) -> Result<ExecResult, BenchError> {
        self.close_stdin();
        let stdout = self.stdout.take();
        let run = async {
            let out = match stdout {
                Some(s) => read_timed(s).await.map(|(_, out)| out),
                None => Ok(Vec::new()),
            };
            (out, self.child.wait().await)
        };
        let Ok((_, status)) = tokio::time::timeout(SESSION_LIMIT, run).await else {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
            return Err(client.unexpected(
                "spdy-client exec",
                format!(
                    "session {} did not end within {} s of its stdin's end ({})",
                    self.n,
                    SESSION_LIMIT.as_secs(),
                    stderr_text(&self.stderr)
                ),
            ));
        };
        let status = status.map_err(io_err(&client.path))?;
        client.check_exit("spdy-client exec", status, &self.stderr)?;
        client.exec_result(&self.result)
    }
}

/// A port-forward session: connections to 127.0.0.1:`local_port` reach the
/// remote port.
pub struct PortForward {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Kept open: the client must not meet a closed stdout.
    _stdout: Option<BufReader<ChildStdout>>,
    pub local_port: u16,
    result: PathBuf,
    stderr: PathBuf,
}

impl PortForward {
    /// Closes the client's stdin (it stops) and waits for its exit: its
    /// result.
    pub async fn finish(mut self, client: &SpdyClient) -> Result<PortForwardResult, BenchError> {
        self.stdin = None;
        let Ok(status) = tokio::time::timeout(SESSION_LIMIT, self.child.wait()).await else {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
            return Err(client.unexpected(
                "spdy-client portforward",
                format!(
                    "no exit within {} s of its stdin's end ({})",
                    SESSION_LIMIT.as_secs(),
                    stderr_text(&self.stderr)
                ),
            ));
        };
        let status = status.map_err(io_err(&client.path))?;
        client.check_exit("spdy-client portforward", status, &self.stderr)?;
        client.port_forward_result(&self.result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_lines() {
        assert_eq!(
            parse_listening("listening 127.0.0.1:41701 -> 18080", 18080),
            Some(41701)
        );
        assert_eq!(
            parse_listening("listening 127.0.0.1:41701 -> 80", 18080),
            None
        );
        assert_eq!(parse_listening("ready", 18080), None);
    }

    #[test]
    fn a_missing_client_says_what_to_run() {
        let e = check_spdy_client(Path::new("/nonexistent/spdy-client")).unwrap_err();
        assert!(e.to_string().contains("hack/build-test-clients.sh"), "{e}");
        // A directory is no client either.
        assert!(check_spdy_client(Path::new("/")).is_err());
    }
}
