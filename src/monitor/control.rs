//! Control requests to a container's monitor: one line each way.

use std::path::Path;
use std::time::Duration;

use peapod_monitor_protocol::{Reply, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::MonitorError;

/// Longest reply line read; the monitor's are far shorter.
const MAX_REPLY: usize = 64 * 1024;

/// Asks the monitor to reopen the CRI log (after the caller renamed it).
/// Returns once the monitor writes to the new file.
pub async fn reopen_log(socket: &Path, timeout: Duration) -> Result<(), MonitorError> {
    request(socket, Request::Reopen, timeout).await.map(drop)
}

/// Sets the terminal size of a tty container.
pub async fn resize(
    socket: &Path,
    width: u32,
    height: u32,
    timeout: Duration,
) -> Result<(), MonitorError> {
    let (Ok(width), Ok(height)) = (u16::try_from(width), u16::try_from(height)) else {
        return Err(MonitorError::Refused(format!(
            "terminal size {width}x{height} out of range"
        )));
    };
    let resize = Request::Resize { width, height };
    request(socket, resize, timeout).await.map(drop)
}

/// An accepted request's connection, and what the monitor sent after
/// its reply line (the first frames of an attach session).
pub(super) struct Accepted {
    pub stream: UnixStream,
    pub rest: Vec<u8>,
}

/// Sends one request and reads its reply, within `timeout`.
pub(super) async fn request(
    socket: &Path,
    request: Request,
    timeout: Duration,
) -> Result<Accepted, MonitorError> {
    let exchange = async {
        let io_err = |what: &str| {
            let what = format!("{what} {}", socket.display());
            move |e| MonitorError::Io(what, e)
        };
        let mut stream = UnixStream::connect(socket)
            .await
            .map_err(io_err("connect to"))?;
        stream
            .write_all(request.encode().as_bytes())
            .await
            .map_err(io_err("write to"))?;
        let (line, rest) = read_reply_line(&mut stream)
            .await
            .map_err(io_err("read from"))?;
        match parse_reply(&line)? {
            Reply::Ok => Ok(Accepted { stream, rest }),
            Reply::Error(msg) => Err(MonitorError::Refused(msg)),
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| MonitorError::Timeout(timeout))?
}

fn parse_reply(line: &str) -> Result<Reply, MonitorError> {
    if line.is_empty() {
        return Err(MonitorError::Protocol(
            "the monitor closed the connection without a reply".into(),
        ));
    }
    Reply::parse(line).map_err(MonitorError::Protocol)
}

/// Reads up to the first newline (or the end of the stream); returns the
/// line and the bytes read after it.
async fn read_reply_line(stream: &mut UnixStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        if let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let rest = buf.split_off(nl + 1);
            return Ok((String::from_utf8_lossy(&buf).into_owned(), rest));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 || buf.len() >= MAX_REPLY {
            return Ok((String::from_utf8_lossy(&buf).into_owned(), Vec::new()));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, BufReader};

    #[tokio::test]
    async fn control_request_replies() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("sock");
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        let server = tokio::spawn(async move {
            let mut requests = Vec::new();
            for reply in ["ok\n", "error not a terminal\n", "garbage\n", ""] {
                let (stream, _) = listener.accept().await.unwrap();
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                reader.read_line(&mut line).await.unwrap();
                requests.push(line);
                reader.get_mut().write_all(reply.as_bytes()).await.unwrap();
            }
            requests
        });
        let t = Duration::from_secs(5);
        reopen_log(&sock, t).await.unwrap();
        assert!(
            matches!(resize(&sock, 80, 24, t).await, Err(MonitorError::Refused(m)) if m == "not a terminal")
        );
        assert!(matches!(
            reopen_log(&sock, t).await,
            Err(MonitorError::Protocol(_))
        ));
        assert!(matches!(
            reopen_log(&sock, t).await,
            Err(MonitorError::Protocol(_))
        ));
        assert_eq!(
            server.await.unwrap(),
            ["reopen\n", "resize 80 24\n", "reopen\n", "reopen\n"]
        );
        assert!(matches!(
            resize(&sock, 70_000, 24, t).await,
            Err(MonitorError::Refused(_))
        ));
        assert!(matches!(
            reopen_log(&dir.path().join("none"), t).await,
            Err(MonitorError::Io(..))
        ));
    }
}
