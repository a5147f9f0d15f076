//! Commands the bench runs (runc, skopeo, umoci), each with a time limit.

use std::time::Duration;

use crate::error::BenchError;

/// Runs a command to completion within `limit`, returning its stdout.
pub async fn run_command(
    program: &str,
    args: &[&str],
    limit: Duration,
) -> Result<Vec<u8>, BenchError> {
    let cmd = format!("{program} {}", args.join(" "));
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = match tokio::time::timeout(limit, child).await {
        Err(_) => return Err(BenchError::CommandTimeout { cmd, limit }),
        Ok(Err(source)) => {
            let source = if source.kind() == std::io::ErrorKind::NotFound {
                std::io::Error::new(
                    source.kind(),
                    format!("'{program}' not found: install the Debian package {program}"),
                )
            } else {
                source
            };
            return Err(BenchError::Spawn { cmd, source });
        }
        Ok(Ok(out)) => out,
    };
    if !out.status.success() {
        return Err(BenchError::Command {
            cmd,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out.stdout)
}
