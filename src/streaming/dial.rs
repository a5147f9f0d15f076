//! Connections to a port of a pod: to `localhost` inside the pod's
//! network namespace. The socket is made by a thread of its own that
//! entered the namespace (a thread's network namespace is its own, and a
//! socket stays in the namespace it was made in), never by one of the
//! daemon's runtime threads. A pod on the host's network is reached on
//! the host's localhost.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream as StdTcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sched::CloneFlags;
use tokio::net::TcpStream;

/// How long a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to `port` on localhost (IPv4, then IPv6) in the network
/// namespace at `netns`, or the host's when `None`.
pub async fn dial(netns: Option<&Path>, port: u16) -> io::Result<TcpStream> {
    let stream = match netns {
        None => connect_localhost(port)?,
        Some(path) => connect_in(path.to_path_buf(), port).await?,
    };
    stream.set_nonblocking(true)?;
    TcpStream::from_std(stream)
}

async fn connect_in(netns: PathBuf, port: u16) -> io::Result<StdTcpStream> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("peapod-dial".into())
        .spawn(move || {
            let _ = tx.send(enter(&netns).and_then(|()| connect_localhost(port)));
        })?;
    rx.await
        .map_err(|_| io::Error::other("the connecting thread ended without an answer"))?
}

/// Moves the calling thread into the network namespace at `path`.
fn enter(path: &Path) -> io::Result<()> {
    let ns = std::fs::File::open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("open {}: {e}", path.display())))?;
    nix::sched::setns(ns, CloneFlags::CLONE_NEWNET)
        .map_err(|e| io::Error::other(format!("enter {}: {e}", path.display())))
}

/// Blocking, on the calling thread: the thread's namespace counts.
fn connect_localhost(port: u16) -> io::Result<StdTcpStream> {
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    match StdTcpStream::connect_timeout(&v4, CONNECT_TIMEOUT) {
        Ok(s) => Ok(s),
        Err(e4) => {
            let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
            StdTcpStream::connect_timeout(&v6, CONNECT_TIMEOUT).map_err(|_| e4)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn dials_the_hosts_localhost() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(b"hello").await.unwrap();
        });
        let mut conn = dial(None, port).await.unwrap();
        let mut got = Vec::new();
        conn.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_closed_port_is_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err = dial(None, port).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    }

    #[tokio::test]
    async fn a_missing_namespace_is_named() {
        let err = dial(Some(Path::new("/nonexistent/netns")), 80)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/netns"), "{err}");
    }
}
