//! peapod's own Prometheus endpoint (`[metrics] address`), scraped with
//! curl: the CRI calls, pulls, pods, containers, exits, streaming sessions
//! and starts move by exactly what the test did; the endpoint is a socket
//! of the daemon's own (found in /proc) only when configured; an address
//! that cannot be bound stops the daemon at start.

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::streaming::{exec_request, spdy, Interactive};
use common::*;
use peapod::api;
use tonic::Code;

/// One scrape: the samples by series (labels in name order) and the
/// response's content type.
struct Scrape {
    samples: HashMap<String, f64>,
    content_type: String,
    text: String,
}

impl Scrape {
    /// The sample of `name` with `labels`; 0 when the series is absent (a
    /// counter nothing has incremented yet).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .get(&series(name, labels))
            .copied()
            .unwrap_or(0.0)
    }

    fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.samples.contains_key(&series(name, labels))
    }

    /// The sum of every sample of `name`, whatever its labels.
    fn total(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|(k, _)| k.split('{').next() == Some(name))
            .map(|(_, v)| v)
            .sum()
    }

    /// The series of `name` whose value differs from `before`'s.
    fn changed(&self, before: &Scrape, name: &str) -> Vec<String> {
        let mut keys: Vec<&String> = self.samples.keys().chain(before.samples.keys()).collect();
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .filter(|k| k.split('{').next() == Some(name))
            .filter(|k| self.samples.get(*k) != before.samples.get(*k))
            .cloned()
            .collect()
    }
}

fn series(name: &str, labels: &[(&str, &str)]) -> String {
    let mut pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    pairs.sort();
    match pairs.is_empty() {
        true => name.to_string(),
        false => format!("{name}{{{}}}", pairs.join(",")),
    }
}

/// The text format's samples: `name{k="v",...} value`; labels put in name
/// order so that a series has one spelling.
fn parse(text: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (key, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("value of {line:?}")),
        };
        let key = match key.split_once('{') {
            None => key.to_string(),
            Some((name, labels)) => {
                let labels = labels
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("{line:?}"));
                let mut pairs = split_labels(labels);
                pairs.sort();
                format!("{name}{{{}}}", pairs.join(","))
            }
        };
        assert!(samples.insert(key, value).is_none(), "{line:?} twice");
    }
    samples
}

/// `a="x",b="y,z"` → [`a="x"`, `b="y,z"`]: commas inside quotes stay.
fn split_labels(labels: &str) -> Vec<String> {
    let (mut out, mut current, mut quoted, mut escaped) = (vec![], String::new(), false, false);
    for c in labels.chars() {
        match c {
            ',' if !quoted => out.push(std::mem::take(&mut current)),
            _ => {
                if c == '"' && !escaped {
                    quoted = !quoted;
                }
                escaped = c == '\\' && !escaped;
                current.push(c);
            }
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// `GET http://ADDRESS/metrics` with curl: status, content type, body.
fn get(address: SocketAddr, path: &str, curl_args: &[&str]) -> (u16, String, String) {
    assert!(
        which("curl"),
        "curl not found: install curl (hack/install-deps.sh)"
    );
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code} %{content_type}",
        ])
        .args(curl_args)
        .arg(format!("http://{address}{path}"))
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, last) = text.rsplit_once('\n').unwrap();
    let (code, content_type) = last.split_once(' ').unwrap();
    (
        code.parse().unwrap(),
        content_type.to_string(),
        body.to_string(),
    )
}

fn scrape(address: SocketAddr) -> Scrape {
    let (code, content_type, text) = get(address, "/metrics", &[]);
    assert_eq!(code, 200, "{text}");
    Scrape {
        samples: parse(&text),
        content_type,
        text,
    }
}

/// The TCP addresses (v4 and v6) process `pid` listens on: its socket descriptors
/// matched with the kernel's table of listening sockets.
fn listening(pid: i32) -> Vec<SocketAddr> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let mut out = vec![];
    for table in ["tcp", "tcp6"] {
        let table = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap();
        for line in table.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address, st (0A: LISTEN), inode.
            if f[3] == "0A" && inodes.iter().any(|i| i == f[9]) {
                out.push(socket_address(f[1]));
            }
        }
    }
    out
}

/// `0100007F:1F90` (the kernel's 32-bit words in host order) → 127.0.0.1:8080.
fn socket_address(field: &str) -> SocketAddr {
    let (ip, port) = field.split_once(':').unwrap();
    let bytes: Vec<u8> = (0..ip.len())
        .step_by(8)
        .flat_map(|i| {
            u32::from_str_radix(&ip[i..i + 8], 16)
                .unwrap()
                .to_ne_bytes()
        })
        .collect();
    let ip: IpAddr = match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).unwrap().into(),
        _ => <[u8; 16]>::try_from(bytes).unwrap().into(),
    };
    SocketAddr::new(ip, u16::from_str_radix(port, 16).unwrap())
}

/// The endpoint's address as the daemon last logged it (port 0 in the
/// config takes a free one).
fn logged_address(d: &TestDaemon) -> SocketAddr {
    let log = d.log_text();
    let line = log
        .lines()
        .rev()
        .find_map(|l| l.split("Prometheus metrics on http://").nth(1))
        .unwrap_or_else(|| panic!("no metrics endpoint in the log:\n{log}"));
    line.trim_end_matches("/metrics").parse().unwrap()
}

fn with_metrics_config(dir: &Path) -> Options {
    let file = dir.join("metrics.toml");
    std::fs::write(&file, "[metrics]\naddress = \"127.0.0.1:0\"\n").unwrap();
    Options {
        cni: false,
        extra_args: vec!["--config".into(), file.to_string_lossy().into_owned()],
        ..Default::default()
    }
}

async fn status_of_unknown_pod(d: &TestDaemon) -> Code {
    let r = d
        .runtime()
        .await
        .pod_sandbox_status(api::PodSandboxStatusRequest {
            pod_sandbox_id: "0123456789abcdef".into(),
            verbose: false,
        })
        .await;
    r.expect_err("an unknown pod's status").code()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_endpoint_counts_what_the_daemon_did() {
    let config_dir = tempfile::tempdir().unwrap();
    let mut d = TestDaemon::start_with(with_metrics_config(config_dir.path()));
    let address = logged_address(&d);
    assert!(
        listening(d.pid()).contains(&address),
        "the daemon does not listen on {address}: {:?}",
        listening(d.pid())
    );

    // The CRI calls: each counted once, by method; errors by code.
    let before = scrape(address);
    assert_eq!(
        before.content_type, "text/plain; version=0.0.4; charset=utf-8",
        "the Prometheus text format"
    );
    assert_eq!(before.value("peapod_daemon_starts_total", &[]), 1.0);
    let accept = "Accept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5";
    let (code, content_type, text) = get(address, "/metrics", &["-H", accept]);
    assert_eq!(code, 200);
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(
        text.ends_with("# EOF\n"),
        "OpenMetrics ends with EOF:\n{text}"
    );
    assert_eq!(get(address, "/", &[]).0, 404);
    assert_eq!(get(address, "/metrics", &["-X", "POST"]).0, 405);
    let mut runtime = d.runtime().await;
    runtime
        .version(api::VersionRequest::default())
        .await
        .unwrap();
    for _ in 0..3 {
        let req = api::ListPodSandboxRequest::default();
        runtime.list_pod_sandbox(req).await.unwrap();
    }
    assert_eq!(status_of_unknown_pod(&d).await, Code::NotFound);
    // A server stream, which the server's rpc() wrapper does not see.
    let mut images = d.images().await;
    let req = api::StreamImagesRequest::default();
    let mut stream = images.stream_images(req).await.unwrap().into_inner();
    while stream.message().await.unwrap().is_some() {}
    let after = scrape(address);
    let requests = |s: &Scrape, m| s.value("peapod_grpc_requests_total", &[("method", m)]);
    let delta = |m| requests(&after, m) - requests(&before, m);
    assert_eq!(delta("Version"), 1.0);
    assert_eq!(delta("ListPodSandbox"), 3.0);
    assert_eq!(delta("PodSandboxStatus"), 1.0);
    assert_eq!(delta("StreamImages"), 1.0);
    let all =
        after.total("peapod_grpc_requests_total") - before.total("peapod_grpc_requests_total");
    assert_eq!(all, 6.0, "only the calls the test made");
    let not_found = [("method", "PodSandboxStatus"), ("code", "NotFound")];
    assert_eq!(after.value("peapod_grpc_errors_total", &not_found), 1.0);
    assert_eq!(
        after.changed(&before, "peapod_grpc_errors_total"),
        [series("peapod_grpc_errors_total", &not_found)],
        "no other error"
    );
    let list = [("method", "ListPodSandbox")];
    let count = |s: &Scrape| s.value("peapod_grpc_request_duration_seconds_count", &list);
    assert_eq!(count(&after) - count(&before), 3.0);
    let inf = [("method", "ListPodSandbox"), ("le", "+Inf")];
    assert_eq!(
        after.value("peapod_grpc_request_duration_seconds_bucket", &inf),
        count(&after)
    );
    assert!(after.value("peapod_grpc_request_duration_seconds_sum", &list) > 0.0);
    let stream = [("method", "StreamImages")];
    let streams = after.value("peapod_grpc_request_duration_seconds_count", &stream);
    assert_eq!(streams, 1.0, "the stream's status came with its trailers");

    // Pulls: one from the test registry into an empty store, one of an
    // image that does not exist.
    let before = scrape(address);
    let image = d.pull("busybox:latest").await;
    let missing = d.pull_with("127.0.0.1:1/none/such:image", None).await;
    assert!(missing.is_err(), "{missing:?}");
    let after = scrape(address);
    let delta = |name| after.value(name, &[]) - before.value(name, &[]);
    assert_eq!(delta("peapod_image_pulls_total"), 2.0, "{}", after.text);
    assert_eq!(delta("peapod_image_pull_failures_total"), 1.0);
    assert_eq!(delta("peapod_image_pull_duration_seconds_count"), 2.0);
    let received = delta("peapod_image_pull_received_bytes_total");
    let size = image_size(&d, &image).await as f64;
    assert!(
        size > 0.0 && received >= size && received < size + 65536.0,
        "received {received} bytes for an image of {size} bytes (its manifest's sizes)"
    );

    // A pod and a running container, as the kernel shows them.
    let pod = d.host_pod("metrics").await;
    let cfg = d.container_config("app", &image, &["sleep", "1000"]);
    let id = d.run(&pod, cfg).await;
    let pid = d.cpid(&id).await;
    assert!(process_exists(pid));
    let s = scrape(address);
    assert_eq!(
        s.value("peapod_pods", &[("state", "ready")]),
        1.0,
        "{}",
        s.text
    );
    assert_eq!(s.value("peapod_pods", &[("state", "notready")]), 0.0);
    assert!(
        s.has("peapod_pods", &[("state", "notready")]),
        "every state is listed"
    );
    assert_eq!(s.value("peapod_containers", &[("state", "running")]), 1.0);
    assert_eq!(s.value("peapod_containers", &[("state", "exited")]), 0.0);

    // An exec session, open while the client is connected.
    let exec = open_exec_session(&d, &id).await;
    let s = scrape(address);
    assert_eq!(
        s.value("peapod_streaming_sessions", &[("kind", "exec")]),
        1.0
    );
    assert_eq!(
        s.value("peapod_streaming_sessions", &[("kind", "attach")]),
        0.0
    );
    drop(exec);
    eventually("the exec session is closed", || {
        scrape(address).value("peapod_streaming_sessions", &[("kind", "exec")]) == 0.0
    })
    .await;

    // The container killed: its monitor reports the exit.
    let exits = |s: &Scrape| s.value("peapod_container_exits_total", &[("reason", "Error")]);
    let before = scrape(address);
    d.stop_container(&id, 0).await;
    assert!(!process_exists(pid), "the container's init is gone");
    let after = scrape(address);
    assert_eq!(exits(&after) - exits(&before), 1.0, "{}", after.text);
    assert_eq!(
        after.value("peapod_containers", &[("state", "running")]),
        0.0
    );
    assert_eq!(
        after.value("peapod_containers", &[("state", "exited")]),
        1.0
    );

    // A restart: counted in the store; the pods recovered are counted.
    let started = after.value("peapod_daemon_start_time_seconds", &[]);
    let status = d.terminate();
    assert!(status.success(), "{status}");
    d.spawn();
    let address = logged_address(&d);
    let s = scrape(address);
    assert_eq!(s.value("peapod_daemon_starts_total", &[]), 2.0);
    assert!(s.value("peapod_daemon_start_time_seconds", &[]) > started);
    assert_eq!(s.value("peapod_pods", &[("state", "ready")]), 1.0);
    assert_eq!(s.value("peapod_containers", &[("state", "exited")]), 1.0);
    d.remove_all().await;
}

/// The image's size as its manifest gives it (ImageStatus).
async fn image_size(d: &TestDaemon, image: &str) -> u64 {
    let status = d
        .images()
        .await
        .image_status(api::ImageStatusRequest {
            image: Some(api::ImageSpec {
                image: image.to_string(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    status.image.expect("the image is stored").size
}

/// An exec of a sleeping shell through the SPDY test client, connected
/// until dropped.
async fn open_exec_session(d: &TestDaemon, id: &str) -> Interactive {
    let mut req = exec_request(id, &["sh", "-c", "echo started; exec sleep 741"]);
    req.stdin = true;
    let url = d.exec_url(req).await.unwrap();
    let mut client = Interactive::start(spdy("exec", &url, &["--stdin", "--stderr"]));
    client.expect("started");
    client
}

#[tokio::test(flavor = "multi_thread")]
async fn no_endpoint_unless_configured() {
    let d = TestDaemon::start_with(Options {
        cni: false,
        ..Default::default()
    });
    // The daemon's one TCP listener is the streaming server, which has no
    // /metrics.
    let sockets = listening(d.pid());
    assert_eq!(sockets.len(), 1, "{sockets:?}");
    let (code, _, _) = get(sockets[0], "/metrics", &[]);
    assert_eq!(code, 404);
    assert!(!d.log_text().contains("Prometheus metrics on"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_address_that_cannot_be_bound_stops_the_daemon() {
    require_host();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("peapod.sock");
    let mut child = Command::new(env!("CARGO_BIN_EXE_peapod"))
        .args(["serve", "--socket"])
        .arg(&socket)
        .arg("--root")
        .arg(dir.path().join("root"))
        .arg("--state")
        .arg(dir.path().join("state"))
        .args(["--metrics-address", &address])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the daemon still runs with metrics.address {address} taken");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success());
    assert!(
        err.contains(&format!("metrics.address: cannot listen on {address}")),
        "{err}"
    );
    assert!(!socket.exists(), "the CRI socket was not served");
}
