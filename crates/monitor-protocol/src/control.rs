//! The container monitor's control socket: line requests, one line reply
//! each (`ok` or `error <message>`), several per connection.
//!
//! - `reopen`: reopen the CRI log (after kubelet renamed it).
//! - `resize <width> <height>`: set a tty container's terminal size.
//! - `attach` or `attach stdin`: after the `ok` reply the connection
//!   carries [`crate::frame`]s both ways until the monitor's `End` frame;
//!   no more request lines. `attach stdin` is refused when the container
//!   has no stdin (or its stdin was closed by a `stdin_once` session).
//!
//! `reopen` and `resize` keep the line form earlier monitors understand.

use crate::one_line;

/// Longest request line, newline included; longer ones are refused.
pub const MAX_REQUEST: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Reopen,
    Resize { width: u16, height: u16 },
    Attach { stdin: bool },
}

/// Why a request line was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    Unknown,
    /// `resize` without two sizes of 0 to 65535.
    ResizeUsage,
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RequestError::Unknown => "unknown request",
            RequestError::ResizeUsage => "usage: resize <width> <height>",
        })
    }
}

impl Request {
    /// The line, newline included.
    pub fn encode(&self) -> String {
        match self {
            Request::Reopen => "reopen\n".into(),
            Request::Resize { width, height } => format!("resize {width} {height}\n"),
            Request::Attach { stdin: false } => "attach\n".into(),
            Request::Attach { stdin: true } => "attach stdin\n".into(),
        }
    }

    /// Parses one line (without its `\n`; a `\r` before it is allowed).
    pub fn parse(line: &[u8]) -> Result<Request, RequestError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let text = std::str::from_utf8(line).unwrap_or("");
        let mut words = text.split_ascii_whitespace();
        match (words.next(), words.next(), words.next(), words.next()) {
            (Some("reopen"), None, None, None) => Ok(Request::Reopen),
            (Some("resize"), width, height, None) => {
                let size = |w: Option<&str>| w.and_then(|w| w.parse::<u16>().ok());
                match (size(width), size(height)) {
                    (Some(width), Some(height)) => Ok(Request::Resize { width, height }),
                    _ => Err(RequestError::ResizeUsage),
                }
            }
            (Some("attach"), None, None, None) => Ok(Request::Attach { stdin: false }),
            (Some("attach"), Some("stdin"), None, None) => Ok(Request::Attach { stdin: true }),
            _ => Err(RequestError::Unknown),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Ok,
    Error(String),
}

impl Reply {
    /// The line, newline included.
    pub fn encode(&self) -> String {
        match self {
            Reply::Ok => "ok\n".into(),
            Reply::Error(msg) => format!("error {}\n", one_line(msg)),
        }
    }

    /// Parses one reply line (its `\r\n` or `\n` may be included).
    pub fn parse(line: &str) -> Result<Reply, String> {
        let line = line.trim_end_matches(['\n', '\r']);
        if line == "ok" {
            Ok(Reply::Ok)
        } else if let Some(msg) = line.strip_prefix("error ") {
            Ok(Reply::Error(msg.to_string()))
        } else {
            Err(format!("unexpected reply {line:?}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        for request in [
            Request::Reopen,
            Request::Resize {
                width: 80,
                height: 24,
            },
            Request::Attach { stdin: false },
            Request::Attach { stdin: true },
        ] {
            let line = request.encode();
            assert!(line.len() <= MAX_REQUEST);
            let line = line.strip_suffix('\n').unwrap();
            assert_eq!(Request::parse(line.as_bytes()), Ok(request));
        }
    }

    #[test]
    fn earlier_daemons_lines_still_parse() {
        assert_eq!(Request::parse(b"reopen\r"), Ok(Request::Reopen));
        assert_eq!(
            Request::parse(b"resize  120 40"),
            Ok(Request::Resize {
                width: 120,
                height: 40
            })
        );
    }

    #[test]
    fn bad_requests() {
        assert_eq!(Request::parse(b"bogus"), Err(RequestError::Unknown));
        assert_eq!(Request::parse(b"reopen now"), Err(RequestError::Unknown));
        assert_eq!(Request::parse(b"attach all"), Err(RequestError::Unknown));
        assert_eq!(Request::parse(b"\xff"), Err(RequestError::Unknown));
        for bad in [
            &b"resize"[..],
            b"resize 80",
            b"resize 80 x",
            b"resize 70000 24",
        ] {
            assert_eq!(Request::parse(bad), Err(RequestError::ResizeUsage));
        }
        assert_eq!(Request::parse(b"resize 1 2 3"), Err(RequestError::Unknown));
        assert_eq!(
            RequestError::ResizeUsage.to_string(),
            "usage: resize <width> <height>"
        );
    }

    #[test]
    fn replies() {
        assert_eq!(Reply::parse("ok\n"), Ok(Reply::Ok));
        assert_eq!(Reply::parse("ok\r\n"), Ok(Reply::Ok));
        assert_eq!(
            Reply::parse("error not a terminal\n"),
            Ok(Reply::Error("not a terminal".into()))
        );
        assert_eq!(
            Reply::parse("garbage"),
            Err("unexpected reply \"garbage\"".into())
        );
        assert_eq!(
            Reply::Error("reopen log:\nEACCES".into()).encode(),
            "error reopen log: EACCES\n"
        );
        assert_eq!(Reply::Ok.encode(), "ok\n");
    }
}
