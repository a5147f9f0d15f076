//! An exec session: the command runs in the container with the streams
//! the request asked for; the client's stdin and terminal sizes go to it,
//! its output to the client, until it has exited and its output is read
//! (for a short while at most, when a background child keeps it open).
//! A client that goes away kills it.

use std::time::Instant;

use tokio::io::AsyncReadExt;
use tracing::debug;

use super::protocol::{end_message, Outcome};
use super::session::{Input, Link, Output, Sizes, Stdio};
use crate::container::Containers;
use crate::host::terminal::Terminal;
use crate::oci::{drain_output, ExecReader, ExecSession, ExecStdio, DRAIN_AFTER_EXIT};

/// Bytes read from the process at once.
const CHUNK: usize = 32 * 1024;

/// What an exec URL was issued for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    pub container_id: String,
    pub cmd: Vec<String>,
    pub stdio: ExecStdio,
}

/// Runs the exec of `req` over `stdio`, and ends the session with how it
/// ended.
pub async fn run(containers: &Containers, req: ExecRequest, mut stdio: Stdio) {
    let outcome = match containers
        .exec_attached(&req.container_id, &req.cmd, req.stdio)
        .await
    {
        Ok(session) => serve(session, &mut stdio).await,
        Err(e) => Outcome::Failed(e.to_string()),
    };
    debug!(container = %req.container_id, ?outcome, "exec session ended");
    let message = end_message(stdio.protocol.version, &outcome, Some(&req.cmd));
    stdio.finish(message).await;
}

/// Connects the process to the session until it exits or the client goes.
async fn serve(mut session: ExecSession, stdio: &mut Stdio) -> Outcome {
    let mut tasks = Vec::new();
    if let (Some(input), Some(writer)) = (stdio.stdin.take(), session.stdin.take()) {
        // A terminal stays open at the end of stdin: it is the output too.
        tasks.push(tokio::spawn(input.copy_to(writer)));
    }
    if let (Some(input), Some(terminal)) = (stdio.resize.take(), session.terminal.clone()) {
        tasks.push(tokio::spawn(follow_sizes(input, terminal)));
    }
    let outputs = [
        (session.stdout.take(), stdio.stdout.clone()),
        (session.stderr.take(), stdio.stderr.clone()),
    ]
    .into_iter()
    .filter_map(|(reader, out)| reader.map(|r| tokio::spawn(copy_output(r, out))))
    .collect::<Vec<_>>();
    let outcome = wait_or_kill(&mut session, &stdio.link).await;
    for t in tasks {
        t.abort();
    }
    drain_output(outputs, Instant::now() + DRAIN_AFTER_EXIT).await;
    outcome
}

async fn wait_or_kill(session: &mut ExecSession, link: &Link) -> Outcome {
    tokio::select! {
        exit = session.process.wait() => match exit {
            Ok(code) => Outcome::Exited(code),
            Err(e) => Outcome::Failed(e.to_string()),
        },
        () = link.gone() => {
            session.process.kill().await;
            Outcome::Failed("the client went away".into())
        }
    }
}

/// Applies the client's terminal sizes.
async fn follow_sizes(input: Input, terminal: Terminal) {
    let mut sizes = Sizes::new(input);
    while let Some(size) = sizes.next().await {
        let _ = terminal.resize(size.width, size.height);
    }
}

/// The process's output to the client; read and dropped when the client
/// did not ask for it or stopped taking it, so the process never blocks.
async fn copy_output(mut reader: ExecReader, mut out: Option<Output>) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if let Some(o) = &out {
            if o.write(&buf[..n]).await.is_err() {
                out = None;
            }
        }
    }
}
