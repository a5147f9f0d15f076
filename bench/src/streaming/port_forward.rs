//! Port-forward throughput: per transfer a PortForward call and a
//! `spdy-client portforward` session, then one connection through it that
//! downloads or uploads a fixed size from or to a busybox `nc -ll` server in
//! the pod. Timed from the connect to the last byte (download) or to the
//! server's `done` after reading them all (upload): neither waits for a
//! runtime's end-of-connection handling.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::client::{PortForwardResult, SpdyClient};
use super::streaming_metric;
use crate::args::NetMode;
use crate::cri::runtime::TargetBench;
use crate::error::BenchError;
use crate::procfs::tcp_listening;
use crate::report::Report;

/// The server container's ports (in the pod's network namespace).
const DOWNLOAD_PORT: u16 = 18080;
const UPLOAD_PORT: u16 = 18081;

/// What the upload server answers once it has read every byte.
const DONE: &[u8] = b"done\n";

/// Longest one transfer may take.
const TRANSFER_LIMIT: Duration = Duration::from_secs(300);

/// How long the server container may take to listen.
const LISTEN_LIMIT: Duration = Duration::from_secs(30);

const MIB: u64 = 1 << 20;

/// The server container's script: two persistent busybox `nc` servers,
/// one sending `mib` MiB of zeros per connection, one reading `mib` MiB
/// and answering `done`.
pub fn server_script(mib: usize) -> String {
    format!(
        "trap 'exit 0' TERM; \
         nc -ll -p {DOWNLOAD_PORT} -e sh -c 'dd if=/dev/zero bs=1M count={mib} 2>/dev/null' & \
         nc -ll -p {UPLOAD_PORT} -e sh -c \
         'dd of=/dev/null bs=1M count={mib} iflag=fullblock 2>/dev/null; echo done' & \
         wait"
    )
}

#[derive(Debug, Clone, Copy)]
enum Direction {
    Download,
    Upload,
}

impl Direction {
    fn label(self) -> &'static str {
        match self {
            Direction::Download => "download",
            Direction::Upload => "upload",
        }
    }

    fn port(self) -> u16 {
        match self {
            Direction::Download => DOWNLOAD_PORT,
            Direction::Upload => UPLOAD_PORT,
        }
    }

    /// One transfer of `bytes` through 127.0.0.1:`port`: how long it took.
    async fn transfer(self, port: u16, bytes: u64) -> std::io::Result<Duration> {
        match self {
            Direction::Download => download(port, bytes).await,
            Direction::Upload => upload(port, bytes).await,
        }
    }

    /// The byte counts the client's result must show for a transfer.
    fn counts(self, bytes: u64) -> (u64, u64) {
        match self {
            Direction::Download => (0, bytes),
            Direction::Upload => (bytes, DONE.len() as u64),
        }
    }
}

/// `runs` downloads and `runs` uploads of `mib` MiB each, as MB/s.
pub async fn bench_port_forward(
    b: &mut TargetBench<'_>,
    client: &SpdyClient,
    pod_id: &str,
    server_init: i32,
    (runs, mib): (usize, usize),
    mode: NetMode,
    report: &mut Report,
) -> Result<(), BenchError> {
    wait_listening(&b.name, server_init).await?;
    let bytes = mib as u64 * MIB;
    for dir in [Direction::Download, Direction::Upload] {
        eprintln!(
            "[{}] {} streaming: {runs} port-forward {}s of {mib} MiB",
            b.name,
            mode.label(),
            dir.label()
        );
        let mut rates = Vec::with_capacity(runs);
        for _ in 0..runs {
            let took = forward(b, client, pod_id, dir, bytes).await?;
            rates.push(bytes as f64 / 1e6 / took.as_secs_f64().max(1e-9));
        }
        let what = format!("port-forward {} {mib} MiB", dir.label());
        report.add(&b.name, &streaming_metric(mode, &what), "MB/s", rates);
    }
    Ok(())
}

/// Waits (untimed) until both servers listen in the pod.
async fn wait_listening(target: &str, server_init: i32) -> Result<(), BenchError> {
    let start = Instant::now();
    while ![DOWNLOAD_PORT, UPLOAD_PORT]
        .iter()
        .all(|p| tcp_listening(server_init, *p))
    {
        if start.elapsed() > LISTEN_LIMIT {
            return Err(BenchError::Unexpected {
                target: target.to_string(),
                call: "StartContainer",
                what: format!(
                    "the port-forward server (pid {server_init}) did not listen on ports \
                     {DOWNLOAD_PORT} and {UPLOAD_PORT} within {} s",
                    LISTEN_LIMIT.as_secs()
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// One timed transfer through a new port-forward session; the session's
/// result must show one connection without error that moved every byte.
async fn forward(
    b: &mut TargetBench<'_>,
    client: &SpdyClient,
    pod_id: &str,
    dir: Direction,
    bytes: u64,
) -> Result<Duration, BenchError> {
    let url = b.port_forward(pod_id, dir.port()).await?;
    let pf = client.port_forward(&url, dir.port()).await?;
    let moved = tokio::time::timeout(TRANSFER_LIMIT, dir.transfer(pf.local_port, bytes)).await;
    let local_port = pf.local_port;
    let finished = pf.finish(client).await;
    let failed = |what: String| BenchError::Unexpected {
        target: b.name.clone(),
        call: "port-forward",
        what: format!("{} via 127.0.0.1:{local_port}: {what}", dir.label()),
    };
    let took = match moved {
        Err(_) => {
            return Err(failed(format!(
                "not done within {} s",
                TRANSFER_LIMIT.as_secs()
            )))
        }
        Ok(Err(e)) => return Err(failed(e.to_string())),
        Ok(Ok(took)) => took,
    };
    check_forwarded(&finished?, dir.counts(bytes)).map_err(failed)?;
    Ok(took)
}

/// One forwarded connection, no error, the expected byte counts (to the
/// pod, to us).
fn check_forwarded(r: &PortForwardResult, (to_remote, to_local): (u64, u64)) -> Result<(), String> {
    let [q] = r.requests.as_slice() else {
        return Err(format!(
            "the client forwarded {} connections, not 1 (message {:?})",
            r.requests.len(),
            r.message
        ));
    };
    if !q.error.is_empty() || q.bytes_to_remote != to_remote || q.bytes_to_local != to_local {
        return Err(format!(
            "the client moved {} bytes to the pod and {} back (expected {to_remote} and {to_local}), error {:?}",
            q.bytes_to_remote, q.bytes_to_local, q.error
        ));
    }
    Ok(())
}

/// Reads `bytes` from the server: the time from the connect to the last
/// byte. Then half-closes and reads to the end, which must bring nothing.
async fn download(port: u16, bytes: u64) -> std::io::Result<Duration> {
    let start = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    let mut buf = vec![0u8; MIB as usize];
    let mut got = 0u64;
    while got < bytes {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Err(short(got, bytes));
        }
        got += n as u64;
    }
    let took = start.elapsed();
    s.shutdown().await?;
    let extra = drain(&mut s).await?;
    if got + extra != bytes {
        return Err(std::io::Error::other(format!(
            "got {} bytes, {} more than sent",
            got + extra,
            got + extra - bytes
        )));
    }
    Ok(took)
}

/// Writes `bytes` of zeros to the server: the time from the connect to its
/// `done`. Then half-closes and reads to the end.
async fn upload(port: u16, bytes: u64) -> std::io::Result<Duration> {
    let start = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    let buf = vec![0u8; MIB as usize];
    let mut sent = 0u64;
    while sent < bytes {
        let n = (bytes - sent).min(MIB) as usize;
        s.write_all(&buf[..n]).await?;
        sent += n as u64;
    }
    let mut reply = Vec::new();
    let mut chunk = [0u8; 64];
    while reply.len() < DONE.len() {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&chunk[..n]);
    }
    let took = start.elapsed();
    if reply != DONE {
        return Err(std::io::Error::other(format!(
            "the server answered {:?}, not \"done\\n\"",
            String::from_utf8_lossy(&reply)
        )));
    }
    s.shutdown().await?;
    drain(&mut s).await?;
    Ok(took)
}

fn short(got: u64, bytes: u64) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        format!("the connection ended after {got} of {bytes} bytes"),
    )
}

/// Reads to the end: how many bytes came.
async fn drain(s: &mut TcpStream) -> std::io::Result<u64> {
    let mut n = 0u64;
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf).await? {
            0 => return Ok(n),
            k => n += k as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_script_names_both_ports_and_the_size() {
        let s = server_script(4);
        assert!(s.contains("nc -ll -p 18080 -e sh -c 'dd if=/dev/zero bs=1M count=4 2>/dev/null'"));
        assert!(s.contains("count=4 iflag=fullblock"));
        assert!(s.ends_with("& wait"), "{s}");
    }

    #[test]
    fn forwarded_counts_are_checked() {
        use super::super::client::ForwardedRequest;
        let one = |to_remote, to_local, error: &str| PortForwardResult {
            message: String::new(),
            requests: vec![ForwardedRequest {
                error: error.to_string(),
                bytes_to_remote: to_remote,
                bytes_to_local: to_local,
            }],
        };
        assert!(check_forwarded(&one(0, 10, ""), Direction::Download.counts(10)).is_ok());
        assert!(check_forwarded(&one(10, 5, ""), Direction::Upload.counts(10)).is_ok());
        assert!(check_forwarded(&one(0, 9, ""), Direction::Download.counts(10)).is_err());
        assert!(check_forwarded(&one(0, 10, "refused"), Direction::Download.counts(10)).is_err());
        let none = PortForwardResult {
            message: String::new(),
            requests: Vec::new(),
        };
        assert!(check_forwarded(&none, (0, 0)).is_err());
    }
}
