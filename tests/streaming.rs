//! The streaming server through clients others wrote: a SPDY client over
//! Debian's spdystream (speaking the channel protocol as kubelet does) and
//! the WebSocket client of the PyPI `kubernetes` package. What is checked
//! is what the clients receive and what the kernel shows (/proc).

mod common;

use std::time::Duration;

use common::containers::*;
use common::streaming::*;
use common::*;
use peapod::api;
use sha2::{Digest, Sha256};
use tonic::Code;

fn no_cni() -> Options {
    Options {
        cni: false,
        ..Default::default()
    }
}

fn config_file(d: &tempfile::TempDir, text: &str) -> String {
    let path = d.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

/// A daemon, a host-network pod and a running busybox container.
async fn running_container(d: &TestDaemon, cmd: &[&str]) -> String {
    let image = d.pull("busybox:latest").await;
    let pod = d.host_pod("stream").await;
    let cfg = d.container_config("app", &image, cmd);
    d.run(&pod, cfg).await
}

fn sleeper() -> &'static [&'static str] {
    &["sleep", "1000"]
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_over_spdy_reports_output_and_exit_codes() {
    let d = TestDaemon::start_with(no_cni());
    let id = running_container(&d, sleeper()).await;

    let url = d
        .exec_url(exec_request(&id, &["sh", "-c", "echo out; echo err >&2"]))
        .await
        .unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let r = run(spdy("exec", &url, &["--stderr"]), b"");
    assert!(r.status.success(), "{}", r.stderr_text());
    assert_eq!(r.stdout_text(), "out\n");
    assert_eq!(r.stderr_text(), "err\n");
    assert_eq!(r.result["protocol"], "v4.channel.k8s.io");
    assert_eq!(r.exit_code(), Some(0), "{:?}", r.result);

    let url = d
        .exec_url(exec_request(&id, &["sh", "-c", "exit 3"]))
        .await
        .unwrap();
    let r = run(spdy("exec", &url, &["--stderr"]), b"");
    assert_eq!(r.exit_code(), Some(3), "{:?}", r.result);
    let status: serde_json::Value =
        serde_json::from_str(r.result["error"].as_str().unwrap()).unwrap();
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["reason"], "ExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "3");

    // An older client gets plain text.
    let url = d
        .exec_url(exec_request(&id, &["sh", "-c", "exit 5"]))
        .await
        .unwrap();
    let r = run(
        spdy(
            "exec",
            &url,
            &["--stderr", "--protocols", "v2.channel.k8s.io"],
        ),
        b"",
    );
    assert_eq!(r.result["protocol"], "v2.channel.k8s.io");
    assert!(
        r.result["error"]
            .as_str()
            .unwrap()
            .contains("non-zero exit code"),
        "{:?}",
        r.result
    );

    // A command that does not exist: the runtime's error, as a failure.
    let url = d
        .exec_url(exec_request(&id, &["/no/such/command"]))
        .await
        .unwrap();
    let r = run(spdy("exec", &url, &["--stderr"]), b"");
    assert_eq!(r.exit_code(), None, "{:?}", r.result);
    assert!(
        r.result["message"]
            .as_str()
            .unwrap()
            .contains("/no/such/command"),
        "{:?}",
        r.result
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_stdin_reaches_the_process_its_end_closes_it_and_tar_copies_both_ways() {
    let d = TestDaemon::start_with(no_cni());
    let id = running_container(&d, sleeper()).await;
    let mut req = exec_request(&id, &["sh", "-c", "wc -c; echo done"]);
    req.stdin = true;
    let data = vec![b'x'; 3 * 1024 * 1024 + 7];
    let url = d.exec_url(req).await.unwrap();
    let r = run(spdy("exec", &url, &["--stdin", "--stderr"]), &data);
    assert_eq!(r.stdout_text().trim(), format!("{}\ndone", data.len()));
    assert_eq!(r.exit_code(), Some(0), "{:?}", r.result);

    // `kubectl cp` into the container: tar over exec's stdin.
    let mut archive = tar::Builder::new(Vec::new());
    let content = b"copied in\n".repeat(5000);
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    archive
        .append_data(&mut header, "dir/file.txt", &content[..])
        .unwrap();
    let archive = archive.into_inner().unwrap();
    let mut req = exec_request(&id, &["tar", "xf", "-", "-C", "/tmp"]);
    req.stdin = true;
    let url = d.exec_url(req).await.unwrap();
    let r = run(spdy("exec", &url, &["--stdin", "--stderr"]), &archive);
    assert_eq!(r.exit_code(), Some(0), "{:?} {}", r.result, r.stderr_text());
    let sum = d.exec_ok(&id, &["sha256sum", "/tmp/dir/file.txt"]).await;
    assert!(
        sum.starts_with(&format!("{:x}", Sha256::digest(&content))),
        "{sum}"
    );

    // And out of it: tar over exec's stdout.
    let url = d
        .exec_url(exec_request(&id, &["tar", "cf", "-", "-C", "/tmp", "dir"]))
        .await
        .unwrap();
    let r = run(spdy("exec", &url, &["--stderr"]), b"");
    let mut out = tar::Archive::new(&r.stdout[..]);
    let mut files = out.entries().unwrap().map(|e| e.unwrap());
    let mut file = files
        .find(|e| e.path().unwrap().ends_with("file.txt"))
        .expect("the file in the archive");
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut got).unwrap();
    assert_eq!(got, content);
}

#[tokio::test(flavor = "multi_thread")]
async fn interactive_shell_with_a_terminal_and_its_size() {
    let d = TestDaemon::start_with(no_cni());
    let id = running_container(&d, sleeper()).await;
    let req = api::ExecRequest {
        container_id: id.clone(),
        cmd: vec!["sh".into()],
        tty: true,
        stdin: true,
        stdout: true,
        stderr: false,
        ..Default::default()
    };
    let url = d.exec_url(req).await.unwrap();
    let mut sh = Interactive::start(spdy(
        "exec",
        &url,
        &["--stdin", "--tty", "--resize", "100x30"],
    ));
    sh.send("tty; echo T=$TERM\n");
    sh.expect("/dev/pts/");
    sh.expect("T=xterm");
    sh.send("stty size\n");
    sh.expect("30 100");
    sh.send("echo $((6 * 7))\n");
    sh.expect("42");
    sh.send("exit 4\n");
    let (_, status) = sh.finish();
    assert!(status.success());

    // critest's tty exec: a command over before its terminal is taken.
    for _ in 0..5 {
        let req = api::ExecRequest {
            container_id: id.clone(),
            cmd: vec!["echo".into(), "-n".into(), "hello".into()],
            tty: true,
            stdin: true,
            stdout: true,
            ..Default::default()
        };
        let url = d.exec_url(req).await.unwrap();
        let r = run(spdy("exec", &url, &["--stdin", "--tty"]), b"");
        assert!(r.stdout_text().contains("hello"), "{r:?}");
        assert_eq!(r.exit_code(), Some(0), "{:?}", r.result);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_goes_away_takes_its_process_with_it() {
    let d = TestDaemon::start_with(no_cni());
    let id = running_container(&d, sleeper()).await;
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", d.pid()))
            .unwrap()
            .count()
    };
    let before = fds();
    for (seconds, tty) in [(737, false), (738, true)] {
        let cmd = format!("echo started; exec sleep {seconds}");
        let mut req = exec_request(&id, &["sh", "-c", &cmd]);
        req.stdin = true;
        req.tty = tty;
        req.stderr = !tty;
        let url = d.exec_url(req).await.unwrap();
        let args: &[&str] = match tty {
            true => &["--stdin", "--tty"],
            false => &["--stdin", "--stderr"],
        };
        let mut client = Interactive::start(spdy("exec", &url, args));
        client.expect("started");
        let name = format!("sleep {seconds}");
        assert_eq!(processes_named(&name).len(), 1, "the exec'd process runs");
        client.child.kill().unwrap();
        client.child.wait().unwrap();
        eventually("the exec'd process is gone", || {
            processes_named(&name).is_empty()
        })
        .await;
    }
    // No exec files are left in the bundle, no descriptor (pipe, terminal,
    // socket) in the daemon.
    eventually("exec files removed", || {
        let bundle = d.state.join("containers").join(&id);
        std::fs::read_dir(&bundle).unwrap().all(|e| {
            !e.unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("exec-")
        })
    })
    .await;
    eventually("the daemon's descriptors back to before", || {
        fds() <= before
    })
    .await;
}

/// Live processes (not zombies) whose command line contains `text`.
fn processes_named(text: &str) -> Vec<i32> {
    use peapod::process::{all_pids, cmdline, ProcessRef};
    all_pids()
        .into_iter()
        .filter(|&p| cmdline(p).join(" ").contains(text))
        .filter(|&p| ProcessRef::of(p).is_some_and(|r| r.is_alive()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_into_a_container_that_exits_during_the_session() {
    let d = TestDaemon::start_with(no_cni());
    let id = running_container(&d, &["sh", "-c", "sleep 2"]).await;
    let url = d
        .exec_url(exec_request(
            &id,
            &["sh", "-c", "echo in; sleep 60; echo never"],
        ))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let r = run(spdy("exec", &url, &["--stderr"]), b"");
    assert!(r.status.success(), "{}", r.stderr_text());
    assert_eq!(r.stdout_text(), "in\n");
    assert!(started.elapsed() < Duration::from_secs(50));
    // Killed with the container's PID namespace: 128 + SIGKILL.
    assert_eq!(r.exit_code(), Some(137), "{:?}", r.result);
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_single_use_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(&dir, "[streaming]\ntoken_ttl_secs = 1\nmax_pending = 3\n");
    let d = TestDaemon::start_with(Options {
        cni: false,
        extra_args: vec!["--config".into(), config],
        ..Default::default()
    });
    let id = running_container(&d, sleeper()).await;
    let marker = |n: &str| format!("touch /tmp/ran-{n}");
    let url = d
        .exec_url(exec_request(&id, &["sh", "-c", &marker("once")]))
        .await
        .unwrap();
    let r = run(spdy("exec", &url, &["--stderr"]), b"");
    assert_eq!(r.exit_code(), Some(0), "{:?}", r.result);
    // Used: 404, and nothing runs again.
    d.exec_ok(&id, &["rm", "/tmp/ran-once"]).await;
    let r = run(spdy("exec", &url, &["--stderr"]), b"");
    assert_eq!(r.result["http_status"], 404, "{:?}", r.result);
    assert_eq!(r.status.code(), Some(2));
    assert!(
        d.exec(&id, &["test", "-e", "/tmp/ran-once"], 10)
            .await
            .unwrap()
            .exit_code
            != 0
    );

    // Expired: 404, nothing runs.
    let url = d
        .exec_url(exec_request(&id, &["sh", "-c", &marker("late")]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = run(spdy("exec", &url, &["--stderr"]), b"");
    assert_eq!(r.result["http_status"], 404, "{:?}", r.result);
    assert!(
        d.exec(&id, &["test", "-e", "/tmp/ran-late"], 10)
            .await
            .unwrap()
            .exit_code
            != 0
    );

    // An unknown token and a token of another route: 404.
    let base = url.rsplit_once("/exec/").unwrap().0;
    let r = run(
        spdy("exec", &format!("{base}/exec/AAAAAAAAAAAAAAAAAAAAAA"), &[]),
        b"",
    );
    assert_eq!(r.result["http_status"], 404);
    let fresh = d.exec_url(exec_request(&id, &["true"])).await.unwrap();
    let token = fresh.rsplit('/').next().unwrap();
    let r = run(spdy("attach", &format!("{base}/attach/{token}"), &[]), b"");
    assert_eq!(r.result["http_status"], 404);

    // At most max_pending wait.
    for _ in 0..3 {
        d.exec_url(exec_request(&id, &["true"])).await.unwrap();
    }
    let err = d.exec_url(exec_request(&id, &["true"])).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_name_the_field() {
    let d = TestDaemon::start_with(no_cni());
    let id = running_container(&d, sleeper()).await;
    let check = |r: Result<String, tonic::Status>, code: Code, field: &str| {
        let e = r.unwrap_err();
        assert_eq!(e.code(), code, "{e:?}");
        assert!(e.message().contains(field), "{field}: {e:?}");
    };
    check(
        d.exec_url(exec_request(&id, &[])).await,
        Code::InvalidArgument,
        "cmd",
    );
    let mut tty_stderr = exec_request(&id, &["true"]);
    tty_stderr.tty = true;
    check(d.exec_url(tty_stderr).await, Code::InvalidArgument, "tty");
    let mut no_streams = exec_request(&id, &["true"]);
    no_streams.stdout = false;
    no_streams.stderr = false;
    check(d.exec_url(no_streams).await, Code::InvalidArgument, "stdin");
    check(
        d.exec_url(exec_request("", &["true"])).await,
        Code::InvalidArgument,
        "container_id",
    );
    check(
        d.exec_url(exec_request("nope", &["true"])).await,
        Code::NotFound,
        "nope",
    );
    let attach = api::AttachRequest {
        container_id: "nope".into(),
        stdin: false,
        tty: false,
        stdout: true,
        stderr: true,
        ..Default::default()
    };
    check(d.attach_url(attach).await, Code::NotFound, "nope");
    let err = d
        .runtime()
        .await
        .port_forward(api::PortForwardRequest {
            pod_sandbox_id: "nope".into(),
            port: vec![80],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // A container that is not running.
    d.stop_container(&id, 0).await;
    check(
        d.exec_url(exec_request(&id, &["true"])).await,
        Code::FailedPrecondition,
        "not running",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_over_websocket_v4_and_v5() {
    let d = TestDaemon::start_with(no_cni());
    let id = running_container(&d, sleeper()).await;
    // (The library has no base64 framing; src/streaming/websocket.rs's
    // unit tests cover it.)
    for protocol in ["v4.channel.k8s.io", "v5.channel.k8s.io"] {
        let url = d
            .exec_url(exec_request(
                &id,
                &["sh", "-c", "echo out; echo err >&2; exit 3"],
            ))
            .await
            .unwrap();
        let r = run(websocket("exec", &url, &["--protocol", protocol]), b"");
        assert!(r.status.success(), "{protocol}: {}", r.stderr_text());
        assert_eq!(r.stdout_text(), "out\n", "{protocol}");
        assert_eq!(r.stderr_text(), "err\n", "{protocol}");
        assert_eq!(r.exit_code(), Some(3), "{protocol}: {:?}", r.result);
    }
    // v5: the end of stdin closes the process's stdin.
    let mut req = exec_request(&id, &["sh", "-c", "cat; echo eof"]);
    req.stdin = true;
    let url = d.exec_url(req).await.unwrap();
    let r = run(
        websocket(
            "exec",
            &url,
            &["--stdin", "--protocol", "v5.channel.k8s.io"],
        ),
        b"hello\n",
    );
    assert_eq!(r.stdout_text(), "hello\neof\n", "{}", r.stderr_text());
    assert_eq!(r.exit_code(), Some(0), "{:?}", r.result);
}

#[tokio::test(flavor = "multi_thread")]
async fn attach_to_a_terminal_and_to_plain_stdio() {
    let d = TestDaemon::start_with(no_cni());
    let image = d.pull("busybox:latest").await;
    let pod = d.host_pod("attach").await;

    // A tty + stdin container, as `kubectl run -it` makes it.
    let mut cfg = d.container_config("tty", &image, &["sh"]);
    cfg.tty = true;
    cfg.stdin = true;
    let tty = d.run(&pod, cfg).await;
    let req = api::AttachRequest {
        container_id: tty.clone(),
        stdin: true,
        tty: true,
        stdout: true,
        stderr: false,
        ..Default::default()
    };
    let url = d.attach_url(req).await.unwrap();
    let mut sh = Interactive::start(spdy(
        "attach",
        &url,
        &["--stdin", "--tty", "--resize", "120x40"],
    ));
    sh.send("stty size; echo attached-$((1+1))\n");
    sh.expect("40 120");
    sh.expect("attached-2");
    sh.send("exit\n");
    let (_, status) = sh.finish();
    assert!(status.success());
    d.wait_exit(&tty, Duration::from_secs(30)).await;

    // A plain container with stdin_once: two sessions read at once; the
    // first session's end of stdin closes the container's stdin.
    let mut cfg = d.container_config(
        "plain",
        &image,
        &[
            "sh",
            "-c",
            "while read l; do echo got-$l; echo err-$l >&2; done; echo bye",
        ],
    );
    cfg.stdin = true;
    cfg.stdin_once = true;
    let plain = d.run(&pod, cfg).await;
    let watch_req = api::AttachRequest {
        container_id: plain.clone(),
        stdin: false,
        tty: false,
        stdout: true,
        stderr: true,
        ..Default::default()
    };
    let watch_url = d.attach_url(watch_req.clone()).await.unwrap();
    let mut watcher = Interactive::start(spdy("attach", &watch_url, &["--stderr"]));
    let url = d
        .attach_url(api::AttachRequest {
            stdin: true,
            ..watch_req
        })
        .await
        .unwrap();
    let mut writer = Interactive::start(spdy("attach", &url, &["--stdin", "--stderr"]));
    std::thread::sleep(Duration::from_millis(500));
    writer.send("one\n");
    writer.expect("got-one");
    watcher.expect("got-one");
    writer.send("two\n");
    watcher.expect("got-two");
    writer.close_stdin();
    watcher.expect("bye");
    let (out, status) = writer.finish();
    assert!(status.success());
    assert!(out.contains("got-two\n"), "{out}");
    let st = d.wait_exit(&plain, Duration::from_secs(30)).await;
    assert_eq!(st.exit_code, 0);
    let (seen, _) = watcher.finish();
    assert!(seen.ends_with("bye\n"), "{seen}");
    // The CRI log has everything, once.
    let lines = read_log(&pod.log_dir().join("plain/0.log"));
    assert_eq!(log_text(&lines, "stdout"), ["got-one", "got-two", "bye"]);
    assert_eq!(log_text(&lines, "stderr"), ["err-one", "err-two"]);
}

/// An echo server on `port` in the container (one process per
/// connection), and a web server on `port + 1` whose index is `hello-pf`.
fn servers(port: u16) -> Vec<String> {
    let script = format!(
        "mkdir -p /www && echo hello-pf > /www/index.html && httpd -p {} -h /www; exec nc -ll -p {port} -e cat",
        port + 1
    );
    vec!["sh".into(), "-c".into(), script]
}

/// An HTTP/1.0 GET of the index through `conn`: the server closes first.
fn http_get(mut conn: std::net::TcpStream) -> String {
    use std::io::{Read, Write};
    conn.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    answer
}

#[tokio::test(flavor = "multi_thread")]
async fn port_forward_into_a_pod_network() {
    require_host();
    let d = TestDaemon::start();
    let image = d.pull("busybox:latest").await;
    let pod = d.pod("pf").await;
    let mut cfg = d.container_config("echo", &image, &[]);
    cfg.command = servers(8080);
    let id = d.run(&pod, cfg).await;
    eventually_listening(&d, &id, 8080).await;
    eventually_listening(&d, &id, 8081).await;
    // The pod's port is not the host's.
    assert!(std::net::TcpStream::connect(("127.0.0.1", 8080)).is_err());

    let url = d.port_forward_url(&pod.id, &[]).await;
    let f = Forwarder::start(&url, &[8080, 9, 8081]);

    // The pod closes first, as a web server does (critest's check).
    let answer = http_get(f.connect(2));
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.ends_with("hello-pf\n"), "{answer}");

    // 64 MiB both ways, checksummed.
    let data: Vec<u8> = (0..64 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let sum = Sha256::digest(&data);
    let back = echo_through(f.connect(0), data);
    assert_eq!(Sha256::digest(&back), sum, "{} bytes back", back.len());

    // A refused port is reported; other connections go on.
    let mut refused = f.connect(1);
    let mut buf = Vec::new();
    use std::io::Read;
    let _ = refused.read_to_end(&mut buf);
    eventually("the refusal reported", || {
        f.stderr_text().contains("refused")
    })
    .await;

    // Ten at once.
    let threads: Vec<_> = (0..10)
        .map(|i| {
            let conn = f.connect(0);
            std::thread::spawn(move || {
                let msg = format!("connection {i}\n").repeat(1000).into_bytes();
                assert_eq!(echo_through(conn, msg.clone()), msg);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }

    // WebSocket: ports in the URL.
    let url = d.port_forward_url(&pod.id, &[8080]).await;
    let r = run(
        websocket("portforward", &url, &["--port", "8080"]),
        b"over websocket\n",
    );
    assert_eq!(r.stdout_text(), "over websocket\n", "{}", r.stderr_text());
}

#[tokio::test(flavor = "multi_thread")]
async fn port_forward_to_a_host_network_pod() {
    let d = TestDaemon::start_with(no_cni());
    let port = free_port();
    let image = d.pull("busybox:latest").await;
    let pod = d.host_pod("hostpf").await;
    let mut cfg = d.container_config("echo", &image, &[]);
    cfg.command = servers(port);
    let id = d.run(&pod, cfg).await;
    eventually_listening(&d, &id, port).await;
    let url = d.port_forward_url(&pod.id, &[]).await;
    let f = Forwarder::start(&url, &[port]);
    let msg = b"host network\n".repeat(100);
    assert_eq!(echo_through(f.connect(0), msg.clone()), msg);
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Waits until the container listens on `port` (from its own view).
async fn eventually_listening(d: &TestDaemon, id: &str, port: u16) {
    let hex = format!(":{port:04X} ");
    for _ in 0..100 {
        let tcp = d
            .exec_ok(id, &["cat", "/proc/net/tcp", "/proc/net/tcp6"])
            .await;
        if tcp.lines().any(|l| l.contains(&hex) && l.contains(" 0A ")) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("nothing listens on {port} in container {id}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_attach_session_stalls_neither_the_container_nor_the_others() {
    use std::io::{Read, Seek, SeekFrom};
    use std::process::Stdio;
    let d = TestDaemon::start_with(no_cni());
    let image = d.pull("busybox:latest").await;
    let pod = d.host_pod("slow").await;
    // 16 MiB in 64 KiB pieces, a millisecond apart: a session that reads
    // keeps up with that even on a loaded machine; one that does not read
    // falls behind the monitor's bounded buffer.
    let pieces = 256;
    let size = pieces * 64 * 1024;
    let script = format!(
        "sleep 3; i=0; while [ $i -lt {pieces} ]; do head -c 65536 /dev/zero | tr '\\0' y; usleep 1000; i=$((i+1)); done; echo; echo done-writing; exec sleep 1000"
    );
    let cfg = d.container_config("chatty", &image, &["sh", "-c", &script]);
    let id = d.run(&pod, cfg).await;
    let req = api::AttachRequest {
        container_id: id.clone(),
        stdout: true,
        stderr: true,
        ..Default::default()
    };
    // One session whose client never reads...
    let dir = tempfile::tempdir().unwrap();
    let slow_result = dir.path().join("slow.json");
    let mut slow = spdy(
        "attach",
        &d.attach_url(req.clone()).await.unwrap(),
        &["--stderr"],
    )
    .arg("--result")
    .arg(&slow_result)
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    // ...and one that reads everything.
    let fast_out = dir.path().join("fast.out");
    let mut fast = spdy("attach", &d.attach_url(req).await.unwrap(), &["--stderr"])
        .stdout(std::fs::File::create(&fast_out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let tail = |path: &std::path::Path| {
        let mut f = std::fs::File::open(path).unwrap();
        let len = f.metadata().unwrap().len();
        f.seek(SeekFrom::Start(len.saturating_sub(64))).unwrap();
        let mut t = String::new();
        let _ = f.read_to_string(&mut t);
        (len, t)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while !tail(&fast_out).1.contains("done-writing") {
        assert!(
            std::time::Instant::now() < deadline,
            "the reading session did not get all output: {} bytes",
            tail(&fast_out).0
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(tail(&fast_out).0, size + "\ndone-writing\n".len() as u64);
    // The container wrote everything, and its log has it.
    let log = pod.log_dir().join("chatty/0.log");
    eventually("the log's last line", || {
        log_text(&read_log(&log), "stdout")
            .last()
            .map(String::as_str)
            == Some("done-writing")
    })
    .await;
    // The slow session was dropped, and says so once its client reads.
    let mut drained = Vec::new();
    slow.stdout
        .take()
        .unwrap()
        .read_to_end(&mut drained)
        .unwrap();
    assert!(
        drained.len() < size as usize,
        "the slow session got everything"
    );
    slow.wait().unwrap();
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&slow_result).unwrap()).unwrap();
    assert!(
        result["message"]
            .as_str()
            .unwrap_or_default()
            .contains("dropped"),
        "{result:?}"
    );
    let _ = fast.kill();
    let _ = fast.wait();
}
