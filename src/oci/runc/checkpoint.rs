//! `<runtime> checkpoint --leave-running`: CRIU dumps the container's
//! processes while they keep running. When CRIU fails, its reason is in
//! its own log (`dump.log` in the work directory), not in what the runtime
//! prints, so that is where the error's words come from.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use super::{CliRuntime, ContainerHandle, OciError};
use crate::host::fs::find_executable;

/// The log CRIU writes in the work directory during a dump.
const DUMP_LOG: &str = "dump.log";
/// How many of CRIU's error lines an error quotes.
const REASON_LINES: usize = 4;

impl CliRuntime {
    pub(super) async fn checkpoint_leaving_running(
        &self,
        c: &ContainerHandle,
        images: &Path,
        work: &Path,
        timeout: Duration,
    ) -> Result<(), OciError> {
        if find_executable(Path::new("criu")).is_none() {
            return Err(OciError::CheckpointRefused {
                id: c.id.clone(),
                reason: "CRIU is not installed (no criu in the daemon's PATH): install the \
                         criu package"
                    .to_string(),
            });
        }
        let args: Vec<OsString> = vec![
            "--image-path".into(),
            images.into(),
            "--work-path".into(),
            work.into(),
            "--leave-running".into(),
            c.id.as_str().into(),
        ];
        match self.run_within("checkpoint", &c.id, &args, timeout).await? {
            Ok(_) => Ok(()),
            Err(message) => Err(OciError::CheckpointRefused {
                id: c.id.clone(),
                reason: match criu_reason(&work.join(DUMP_LOG)) {
                    // The runtime's first line; the next names the log,
                    // which is removed with the staging directory.
                    Some(criu) => {
                        let summary = message.lines().next().unwrap_or_default();
                        format!("{criu} ({}: {summary})", self.name)
                    }
                    None => message,
                },
            }),
        }
    }
}

/// CRIU's reason for a failed dump: the last error lines of its log, or
/// its last lines when it logged no error.
fn criu_reason(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let lines: Vec<&str> = text
        .lines()
        .map(without_timestamp)
        .filter(|l| !l.is_empty())
        .collect();
    let errors: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.contains("Error (") || l.contains("Error:"))
        .collect();
    let chosen = match errors.is_empty() {
        true => &lines[..],
        false => &errors[..],
    };
    let tail = &chosen[chosen.len().saturating_sub(REASON_LINES)..];
    (!tail.is_empty()).then(|| tail.join("; "))
}

/// A log line without CRIU's `(00.012345)` time prefix.
fn without_timestamp(line: &str) -> &str {
    let line = line.trim();
    match line.strip_prefix('(').and_then(|l| l.split_once(") ")) {
        Some((time, rest)) if time.chars().all(|c| c.is_ascii_digit() || c == '.') => rest.trim(),
        _ => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_is_criu_s_last_errors() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join(DUMP_LOG);
        std::fs::write(
            &log,
            "(00.01) vdso: Parsing\n\
             (00.02) Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds\n\
             (00.03) Error (criu/kerndat.c:1615): kerndat_vdso_fill_symtable failed\n\
             (00.04) files stat: fs/nr_open 1048576\n",
        )
        .unwrap();
        assert_eq!(
            criu_reason(&log).unwrap(),
            "Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds; \
             Error (criu/kerndat.c:1615): kerndat_vdso_fill_symtable failed"
        );
        std::fs::write(&log, "(00.01) one\n(00.02) two\n").unwrap();
        assert_eq!(criu_reason(&log).unwrap(), "one; two");
        assert_eq!(criu_reason(&d.path().join("none")), None);
    }
}
