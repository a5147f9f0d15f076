//! Exec and attach over SPDY: the client opens one stream per channel,
//! each with a `streamtype` header (`error`, `stdin`, `stdout`, `stderr`,
//! `resize`), one after another, each once the previous one was answered.
//! The session starts when every stream the request asked for is open:
//! the error stream, one per requested stdio stream (no stderr with a
//! terminal), and from v3 on the resize stream with a terminal.

use std::time::Duration;

use peapod_spdy::{Connection, Incoming, Stream};

use super::protocol::{Protocol, Version};
use super::session::{Input, Link, Output, Stdio};

/// How long the client may take to open its streams.
const STREAMS_TIMEOUT: Duration = Duration::from_secs(30);

/// The streams a session asks the client for: those of the request.
pub use crate::oci::ExecStdio as Wanted;

impl Wanted {
    fn count(self, version: Version) -> usize {
        1 + usize::from(self.stdin)
            + usize::from(self.stdout)
            + usize::from(self.stderr && !self.tty)
            + usize::from(self.tty && version >= Version::V3)
    }
}

/// The streams as they are opened.
#[derive(Default)]
struct Opened {
    error: Option<Stream>,
    stdin: Option<Stream>,
    stdout: Option<Stream>,
    stderr: Option<Stream>,
    resize: Option<Stream>,
}

impl Opened {
    fn count(&self) -> usize {
        [
            &self.error,
            &self.stdin,
            &self.stdout,
            &self.stderr,
            &self.resize,
        ]
        .into_iter()
        .filter(|s| s.is_some())
        .count()
    }

    /// Keeps a stream by its type; unknown types and repeats are reset.
    async fn add(&mut self, stream: Stream) {
        let slot = match stream.header("streamtype") {
            Some("error") => &mut self.error,
            Some("stdin") => &mut self.stdin,
            Some("stdout") => &mut self.stdout,
            Some("stderr") => &mut self.stderr,
            Some("resize") => &mut self.resize,
            _ => {
                stream.writer.reset().await;
                return;
            }
        };
        match slot {
            Some(_) => stream.writer.reset().await,
            None => *slot = Some(stream),
        }
    }
}

/// Waits for the client's streams; an error when they do not all come in
/// time or the error stream is missing.
pub async fn accept_stdio(
    conn: Connection,
    mut incoming: Incoming,
    protocol: Protocol,
    wanted: Wanted,
) -> Result<Stdio, String> {
    let mut opened = Opened::default();
    let expected = wanted.count(protocol.version);
    let all_opened = async {
        while opened.count() < expected {
            match incoming.next().await {
                Some(stream) => opened.add(stream).await,
                None => return Err("the client closed the connection".to_string()),
            }
        }
        Ok(())
    };
    match tokio::time::timeout(STREAMS_TIMEOUT, all_opened).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(format!("timed out waiting for {expected} streams")),
    }
    // Streams opened later are not part of the session.
    tokio::spawn(async move {
        while let Some(s) = incoming.next().await {
            s.writer.reset().await;
        }
    });
    stdio(conn, protocol, opened)
}

fn stdio(conn: Connection, protocol: Protocol, opened: Opened) -> Result<Stdio, String> {
    let error = opened.error.ok_or("the client opened no error stream")?;
    let mut inputs = Vec::new();
    let mut input = |s: Option<Stream>| {
        s.map(|s| {
            inputs.push(s.writer);
            Input::Spdy(s.reader)
        })
    };
    let stdin = input(opened.stdin);
    let resize = input(opened.resize);
    let output = |s: Option<Stream>| s.map(|s| Output::Spdy(s.writer));
    Ok(Stdio {
        protocol,
        stdin,
        resize,
        stdout: output(opened.stdout),
        stderr: output(opened.stderr),
        error: Output::Spdy(error.writer),
        link: Link::Spdy { conn, inputs },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_a_session_waits_for() {
        let plain = Wanted {
            stdin: false,
            stdout: true,
            stderr: true,
            tty: false,
        };
        assert_eq!(plain.count(Version::V4), 3);
        let tty = Wanted {
            stdin: true,
            stdout: true,
            stderr: false,
            tty: true,
        };
        assert_eq!(tty.count(Version::V4), 4);
        assert_eq!(tty.count(Version::V2), 3);
        let tty_stderr = Wanted {
            stderr: true,
            ..tty
        };
        assert_eq!(tty_stderr.count(Version::V4), 4);
    }
}
