//! Attach sessions: the container's output as it comes, and its stdin
//! and terminal size, over one connection to its monitor.

use std::path::Path;
use std::time::Duration;

use peapod_monitor_protocol::{Frame, FrameDecoder, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use super::MonitorError;

/// Bytes read from the monitor at once.
const READ_CHUNK: usize = 32 * 1024;

/// An attach session, in two halves that can be used from two tasks.
pub struct AttachSession {
    pub output: AttachOutput,
    pub input: AttachInput,
}

/// What the monitor sends: the container's output, then `End`.
pub struct AttachOutput {
    read: OwnedReadHalf,
    decoder: FrameDecoder,
    chunk: Vec<u8>,
    ended: bool,
}

/// What goes to the monitor: stdin, its close, terminal sizes.
pub struct AttachInput {
    write: OwnedWriteHalf,
}

/// Attaches to a container through its monitor's control socket. With
/// `stdin`, the session may write the container's stdin; the monitor
/// refuses that when the container has none. `timeout` covers the
/// request and its reply, not the session.
pub async fn attach(
    socket: &Path,
    stdin: bool,
    timeout: Duration,
) -> Result<AttachSession, MonitorError> {
    let accepted = super::control::request(socket, Request::Attach { stdin }, timeout).await?;
    let (read, write) = accepted.stream.into_split();
    let mut decoder = FrameDecoder::new();
    decoder.feed(&accepted.rest);
    Ok(AttachSession {
        output: AttachOutput {
            read,
            decoder,
            chunk: vec![0; READ_CHUNK],
            ended: false,
        },
        input: AttachInput { write },
    })
}

impl AttachOutput {
    /// The next frame: `Stdout`, `Stderr`, or `End` once the container
    /// has exited and its output is all sent. `Ok(None)` after `End`, or
    /// when the monitor closed the connection without one (it went away,
    /// or dropped this session for not reading fast enough).
    pub async fn next(&mut self) -> Result<Option<Frame>, MonitorError> {
        let protocol = |e: peapod_monitor_protocol::frame::FrameError| {
            MonitorError::Protocol(format!("attach: {e}"))
        };
        loop {
            if self.ended {
                return Ok(None);
            }
            if let Some(frame) = self.decoder.next_frame().map_err(protocol)? {
                self.ended = frame == Frame::End;
                return Ok(Some(frame));
            }
            let n = self
                .read
                .read(&mut self.chunk)
                .await
                .map_err(|e| MonitorError::Io("read an attach session".into(), e))?;
            if n == 0 {
                return Ok(None);
            }
            self.decoder.feed(&self.chunk[..n]);
        }
    }
}

impl AttachInput {
    /// Data for the container's stdin.
    pub async fn stdin(&mut self, data: &[u8]) -> Result<(), MonitorError> {
        self.send(&Frame::Stdin(data.to_vec())).await
    }

    /// The end of this session's stdin: with `stdin_once` the monitor
    /// closes the container's stdin once what was sent before is written.
    pub async fn close_stdin(&mut self) -> Result<(), MonitorError> {
        self.send(&Frame::CloseStdin).await
    }

    /// Sets the terminal size of a tty container.
    pub async fn resize(&mut self, width: u16, height: u16) -> Result<(), MonitorError> {
        self.send(&Frame::Resize { width, height }).await
    }

    async fn send(&mut self, frame: &Frame) -> Result<(), MonitorError> {
        self.write
            .write_all(&frame.to_bytes())
            .await
            .map_err(|e| MonitorError::Io("write an attach session".into(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, BufReader};

    #[tokio::test]
    async fn frames_both_ways() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("sock");
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            reader.read_line(&mut line).await.unwrap();
            assert_eq!(line, "attach stdin\n");
            // The reply and the first frame in one write.
            let mut out = b"ok\n".to_vec();
            Frame::Stdout(b"hello\n".to_vec()).encode(&mut out);
            reader.get_mut().write_all(&out).await.unwrap();
            let mut input = Vec::new();
            reader.read_to_end(&mut input).await.unwrap();
            let mut decoder = FrameDecoder::new();
            decoder.feed(&input);
            let mut frames = Vec::new();
            while let Some(f) = decoder.next_frame().unwrap() {
                frames.push(f);
            }
            let mut out = Frame::Stderr(b"bye".to_vec()).to_bytes();
            Frame::End.encode(&mut out);
            reader.get_mut().write_all(&out).await.unwrap();
            frames
        });
        let t = Duration::from_secs(5);
        let AttachSession {
            mut output,
            mut input,
        } = attach(&sock, true, t).await.unwrap();
        assert_eq!(
            output.next().await.unwrap(),
            Some(Frame::Stdout(b"hello\n".to_vec()))
        );
        input.stdin(b"data").await.unwrap();
        input.resize(80, 24).await.unwrap();
        input.close_stdin().await.unwrap();
        input.write.shutdown().await.unwrap();
        assert_eq!(
            output.next().await.unwrap(),
            Some(Frame::Stderr(b"bye".to_vec()))
        );
        assert_eq!(output.next().await.unwrap(), Some(Frame::End));
        assert_eq!(output.next().await.unwrap(), None);
        assert_eq!(
            server.await.unwrap(),
            [
                Frame::Stdin(b"data".to_vec()),
                Frame::Resize {
                    width: 80,
                    height: 24
                },
                Frame::CloseStdin
            ]
        );
    }

    #[tokio::test]
    async fn refused_attach() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("sock");
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 64];
            let _ = stream.read(&mut buf).await;
            stream.write_all(b"error no stdin\n").await.unwrap();
        });
        match attach(&sock, true, Duration::from_secs(5)).await {
            Err(MonitorError::Refused(msg)) => assert_eq!(msg, "no stdin"),
            Err(e) => panic!("expected a refusal, got {e}"),
            Ok(_) => panic!("expected a refusal, got a session"),
        }
    }
}
