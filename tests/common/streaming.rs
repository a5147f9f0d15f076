//! The streaming clients others wrote, as tests run them: a SPDY client
//! over Debian's spdystream (Go) and the WebSocket client of the PyPI
//! `kubernetes` package, both built by `hack/build-test-clients.sh`
//! (see tests/clients/README.md for their command lines and results).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use peapod::api;

use super::TestDaemon;

/// Where `hack/build-test-clients.sh` puts the clients
/// (`PEAPOD_TEST_CLIENTS` overrides it).
fn clients_dir() -> PathBuf {
    match std::env::var_os("PEAPOD_TEST_CLIENTS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-clients"),
    }
}

fn require(path: &Path) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: run `bash hack/build-test-clients.sh` (it builds the streaming \
         test clients; `bash hack/install-deps.sh` installs Go, spdystream and python3-venv)",
        path.display()
    );
    path.to_path_buf()
}

/// `spdy-client MODE URL ARGS...`.
pub fn spdy(mode: &str, url: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(require(&clients_dir().join("spdy-client")));
    cmd.arg(mode).arg(url).args(args);
    cmd
}

/// `ws_client.py MODE URL ARGS...` in the test venv.
pub fn websocket(mode: &str, url: &str, args: &[&str]) -> Command {
    let python = require(&clients_dir().join("venv/bin/python"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/ws_client.py");
    let mut cmd = Command::new(python);
    cmd.arg(script).arg(mode).arg(url).args(args);
    cmd
}

/// What a client printed and its result file.
#[derive(Debug)]
pub struct Run {
    pub status: std::process::ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub result: serde_json::Value,
}

impl Run {
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    pub fn exit_code(&self) -> Option<i64> {
        self.result["exit_code"].as_i64()
    }
}

/// Runs a client to its end with `input` as its stdin (then closed),
/// adding `--result`.
pub fn run(mut cmd: Command, input: &[u8]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let result = dir.path().join("result.json");
    cmd.arg("--result").arg(&result);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a streaming client");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = wait_output(child, Duration::from_secs(120));
    writer.join().unwrap();
    let result = std::fs::read_to_string(&result)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null);
    Run {
        status: out.status,
        stdout: out.stdout,
        stderr: out.stderr,
        result,
    }
}

/// The child's output; after `timeout` it is killed, and what it printed
/// until then shows in the panic.
fn wait_output(mut child: Child, timeout: Duration) -> std::process::Output {
    let mut pipes = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let readers = std::thread::spawn(move || {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let e = std::thread::spawn(move || {
            let _ = pipes.1.read_to_end(&mut err);
            err
        });
        let _ = pipes.0.read_to_end(&mut out);
        (out, e.join().unwrap())
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let (out, err) = readers.join().unwrap();
            panic!(
                "the streaming client did not finish within {timeout:?}; stdout {:?}, stderr {:?}",
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (stdout, stderr) = readers.join().unwrap();
    std::process::Output {
        status,
        stdout,
        stderr,
    }
}

/// A client driven line by line: its stdin, and its stdout read as it
/// comes.
pub struct Interactive {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    output: std::sync::mpsc::Receiver<u8>,
    pub seen: Vec<u8>,
}

impl Interactive {
    pub fn start(mut cmd: Command) -> Interactive {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start a streaming client");
        let stdin = child.stdin.take();
        let mut stdout = child.stdout.take().unwrap();
        let (tx, output) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                for b in &buf[..n] {
                    let _ = tx.send(*b);
                }
            }
        });
        Interactive {
            child,
            stdin,
            output,
            seen: Vec::new(),
        }
    }

    pub fn send(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(text.as_bytes()).unwrap();
        stdin.flush().unwrap();
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits until the output (since the start) contains `text`.
    pub fn expect(&mut self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !String::from_utf8_lossy(&self.seen).contains(text) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(b) => self.seen.push(b),
                Err(_) => panic!(
                    "no {text:?} in the output within 30 s; got {:?}",
                    String::from_utf8_lossy(&self.seen)
                ),
            }
        }
    }

    /// Everything up to the end of the output; then the exit status.
    pub fn finish(mut self) -> (String, std::process::ExitStatus) {
        self.stdin = None;
        while let Ok(b) = self.output.recv_timeout(Duration::from_secs(60)) {
            self.seen.push(b);
        }
        let status = self.child.wait().unwrap();
        (String::from_utf8_lossy(&self.seen).into_owned(), status)
    }
}

impl Drop for Interactive {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `spdy-client portforward`: its local ports, in the order
/// given, and its stderr (where it reports a connection's error).
pub struct Forwarder {
    child: Child,
    _stdin: ChildStdin,
    pub local_ports: Vec<u16>,
    stderr: tempfile::NamedTempFile,
}

impl Forwarder {
    pub fn start(url: &str, remote_ports: &[u16]) -> Forwarder {
        let specs: Vec<String> = remote_ports.iter().map(|p| format!("0:{p}")).collect();
        let args: Vec<&str> = specs.iter().flat_map(|s| ["--port", s.as_str()]).collect();
        let stderr = tempfile::NamedTempFile::new().unwrap();
        let mut child = spdy("portforward", url, &args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr.reopen().unwrap())
            .spawn()
            .expect("start spdy-client portforward");
        let stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut local_ports = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            if line == "ready" {
                break;
            }
            // listening 127.0.0.1:PORT -> REMOTE
            let addr = line.split_whitespace().nth(1).expect("a listening line");
            local_ports.push(addr.rsplit(':').next().unwrap().parse().unwrap());
        }
        std::thread::spawn(move || lines.for_each(drop));
        let f = Forwarder {
            child,
            _stdin: stdin,
            local_ports,
            stderr,
        };
        assert_eq!(
            f.local_ports.len(),
            remote_ports.len(),
            "spdy-client portforward did not get ready: {}",
            f.stderr_text()
        );
        f
    }

    pub fn connect(&self, i: usize) -> TcpStream {
        TcpStream::connect(("127.0.0.1", self.local_ports[i])).unwrap()
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Echoes `data` through `conn` (written whole, then half-closed) and
/// returns what came back.
pub fn echo_through(mut conn: TcpStream, data: Vec<u8>) -> Vec<u8> {
    let mut writer = conn.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        writer.write_all(&data).unwrap();
        writer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    conn.set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    conn.read_to_end(&mut back).unwrap();
    sender.join().unwrap();
    back
}

impl TestDaemon {
    pub async fn exec_url(&self, req: api::ExecRequest) -> Result<String, tonic::Status> {
        self.runtime()
            .await
            .exec(req)
            .await
            .map(|r| r.into_inner().url)
    }

    pub async fn attach_url(&self, req: api::AttachRequest) -> Result<String, tonic::Status> {
        self.runtime()
            .await
            .attach(req)
            .await
            .map(|r| r.into_inner().url)
    }

    pub async fn port_forward_url(&self, sandbox: &str, ports: &[i32]) -> String {
        self.runtime()
            .await
            .port_forward(api::PortForwardRequest {
                pod_sandbox_id: sandbox.to_string(),
                port: ports.to_vec(),
            })
            .await
            .unwrap_or_else(|e| panic!("PortForward: {e:?}"))
            .into_inner()
            .url
    }
}

/// An exec request for `cmd` with stdout and stderr.
pub fn exec_request(container: &str, cmd: &[&str]) -> api::ExecRequest {
    api::ExecRequest {
        container_id: container.to_string(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        tty: false,
        stdin: false,
        stdout: true,
        stderr: true,
        ..Default::default()
    }
}
