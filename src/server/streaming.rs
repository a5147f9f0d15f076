//! Exec, Attach and PortForward: the request is checked as the CRI spec
//! asks (the error names the field), then stored for the streaming server,
//! whose URL for it is the answer.

use tonic::Status;

use super::{status_of, Daemon};
use crate::api;
use crate::errors::Error;
use crate::oci::ExecStdio;
use crate::streaming::{AttachRequest, ExecRequest, Pending, TokenError};

pub fn exec_url(daemon: &Daemon, req: api::ExecRequest) -> Result<String, Status> {
    if req.cmd.is_empty() {
        return Err(invalid("cmd", "must not be empty"));
    }
    let stdio = checked_stdio(req.stdin, req.stdout, req.stderr, req.tty)?;
    let container_id = streamable_container(daemon, &req.container_id)?;
    issue(
        daemon,
        Pending::Exec(ExecRequest {
            container_id,
            cmd: req.cmd,
            stdio,
        }),
    )
}

pub fn attach_url(daemon: &Daemon, req: api::AttachRequest) -> Result<String, Status> {
    let stdio = checked_stdio(req.stdin, req.stdout, req.stderr, req.tty)?;
    let container_id = streamable_container(daemon, &req.container_id)?;
    issue(
        daemon,
        Pending::Attach(AttachRequest {
            container_id,
            stdio,
        }),
    )
}

pub fn port_forward_url(daemon: &Daemon, req: api::PortForwardRequest) -> Result<String, Status> {
    if req.pod_sandbox_id.is_empty() {
        return Err(invalid("pod_sandbox_id", "must not be empty"));
    }
    let ports = req
        .port
        .iter()
        .map(|&p| u16::try_from(p).ok().filter(|p| *p > 0))
        .collect::<Option<Vec<u16>>>()
        .ok_or_else(|| invalid("port", "each port must be in 1..=65535"))?;
    let pod = daemon
        .sandboxes
        .status(&req.pod_sandbox_id)
        .map_err(status_of)?;
    if !pod.ready {
        return Err(status_of(Error::FailedPrecondition(format!(
            "pod sandbox {} is not ready",
            pod.record.id
        ))));
    }
    issue(daemon, Pending::PortForward(pod.record.id.clone(), ports))
}

/// The streams asked for, as the CRI spec allows them.
fn checked_stdio(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> Result<ExecStdio, Status> {
    if tty && stderr {
        return Err(invalid(
            "tty",
            "tty and stderr cannot both be set: a terminal merges stderr into stdout",
        ));
    }
    if !(stdin || stdout || stderr) {
        return Err(invalid(
            "stdin",
            "one of stdin, stdout and stderr must be set",
        ));
    }
    Ok(ExecStdio {
        stdin,
        stdout,
        stderr,
        tty,
    })
}

/// The full id of a running container in a ready pod.
fn streamable_container(daemon: &Daemon, id: &str) -> Result<String, Status> {
    if id.is_empty() {
        return Err(invalid("container_id", "must not be empty"));
    }
    daemon.containers.streamable(id).map_err(status_of)
}

fn issue(daemon: &Daemon, pending: Pending) -> Result<String, Status> {
    daemon.streaming.issue(pending).map_err(|e| match e {
        TokenError::Full(_) => Status::resource_exhausted(e.to_string()),
        TokenError::Random(_) => Status::internal(e.to_string()),
    })
}

fn invalid(field: &str, message: &str) -> Status {
    status_of(Error::invalid(field, message))
}
