//! What the monitor tells the process that started it, on stdout, one
//! line each. `container` mode: `monitor <pid>` (the long-lived monitor,
//! already detached), then `ok <init pid>` or `error <message>`. `pause`
//! mode: `ok <infra pid>` or `error <message>`.

use crate::one_line;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The monitor proper: not the launcher's child, its own session.
    Monitor(i32),
    /// Success: the container's init, or the pod's infra process.
    Ok(i32),
    /// The step that failed, in one line; the monitor then exits 1.
    Error(String),
}

impl Answer {
    /// The line, newline included.
    pub fn encode(&self) -> String {
        match self {
            Answer::Monitor(pid) => format!("monitor {pid}\n"),
            Answer::Ok(pid) => format!("ok {pid}\n"),
            Answer::Error(msg) => format!("error {}\n", one_line(msg)),
        }
    }

    /// Parses one line (without its newline). Pids are positive.
    pub fn parse(line: &str) -> Result<Answer, String> {
        let pid = |value: &str| {
            value
                .trim()
                .parse::<i32>()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| format!("bad pid in {line:?}"))
        };
        if let Some(value) = line.strip_prefix("monitor ") {
            Ok(Answer::Monitor(pid(value)?))
        } else if let Some(value) = line.strip_prefix("ok ") {
            Ok(Answer::Ok(pid(value)?))
        } else if let Some(msg) = line.strip_prefix("error ") {
            Ok(Answer::Error(msg.to_string()))
        } else {
            Err(format!("unexpected line {line:?}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for answer in [
            Answer::Monitor(12),
            Answer::Ok(1),
            Answer::Error("runc create failed: no such file".into()),
        ] {
            let line = answer.encode();
            assert!(line.ends_with('\n'));
            assert_eq!(Answer::parse(line.trim_end_matches('\n')), Ok(answer));
        }
    }

    #[test]
    fn error_messages_are_one_line() {
        assert_eq!(
            Answer::Error(" bad\nbundle\r\n".into()).encode(),
            "error bad bundle\n"
        );
    }

    #[test]
    fn bad_lines() {
        assert_eq!(Answer::parse("ok 0"), Err("bad pid in \"ok 0\"".into()));
        assert!(Answer::parse("monitor x").unwrap_err().contains("bad pid"));
        assert!(Answer::parse("ok -3").is_err());
        assert_eq!(
            Answer::parse("hello"),
            Err("unexpected line \"hello\"".into())
        );
        assert!(Answer::parse("").is_err());
        assert_eq!(Answer::parse("error "), Ok(Answer::Error(String::new())));
    }
}
