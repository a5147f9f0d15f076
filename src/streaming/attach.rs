//! An attach session: the running container's output from now on, and
//! its stdin and terminal size, through its monitor (which owns its stdio
//! and keeps writing the CRI log). The session ends when the container
//! exits or the client goes away; the end of the client's stdin reaches
//! the monitor, which closes the container's stdin when the container was
//! created with `stdin_once`.

use std::sync::Arc;

use peapod_monitor_protocol::Frame;
use tokio::sync::Mutex;
use tracing::debug;

use super::protocol::{end_message, Outcome};
use super::session::{Input, Sizes, Stdio};
use crate::container::Containers;
use crate::monitor::{AttachInput, AttachOutput};
use crate::oci::ExecStdio;

/// Why a session ends without the container's end: the monitor drops a
/// session that does not keep up, so that the container and the other
/// sessions never wait for it.
const DROPPED: &str = "the session was dropped: it did not read the container's output as fast \
     as the container wrote it (or the container's monitor went away)";

/// What an attach URL was issued for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachRequest {
    pub container_id: String,
    pub stdio: ExecStdio,
}

/// Runs the attach of `req` over `stdio`, and ends the session.
pub async fn run(containers: &Containers, req: AttachRequest, mut stdio: Stdio) {
    let wants_stdin = req.stdio.stdin && stdio.stdin.is_some();
    let outcome = match containers.attach(&req.container_id, wants_stdin).await {
        Ok(session) => serve(session.output, session.input, &mut stdio).await,
        Err(e) => Outcome::Failed(e.to_string()),
    };
    debug!(container = %req.container_id, ?outcome, "attach session ended");
    let message = end_message(stdio.protocol.version, &outcome, None);
    stdio.finish(message).await;
}

async fn serve(output: AttachOutput, input: AttachInput, stdio: &mut Stdio) -> Outcome {
    let input = Arc::new(Mutex::new(input));
    let mut tasks = Vec::new();
    if let Some(stdin) = stdio.stdin.take() {
        tasks.push(tokio::spawn(copy_input(stdin, input.clone())));
    }
    if let Some(resize) = stdio.resize.take() {
        tasks.push(tokio::spawn(follow_sizes(resize, input.clone())));
    }
    let outcome = tokio::select! {
        outcome = copy_output(output, stdio) => outcome,
        () = stdio.link.gone() => Outcome::Exited(0),
    };
    for t in tasks {
        t.abort();
    }
    outcome
}

/// The container's output to the client until the container exits.
async fn copy_output(mut output: AttachOutput, stdio: &Stdio) -> Outcome {
    loop {
        let (data, out) = match output.next().await {
            Ok(Some(Frame::Stdout(d))) => (d, &stdio.stdout),
            Ok(Some(Frame::Stderr(d))) => (d, &stdio.stderr),
            Ok(Some(Frame::End)) => return Outcome::Exited(0),
            Ok(None) => return Outcome::Failed(DROPPED.into()),
            Ok(Some(_)) => continue,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        if let Some(out) = out {
            if out.write(&data).await.is_err() {
                return Outcome::Exited(0);
            }
        }
    }
}

async fn copy_input(mut stdin: Input, input: Arc<Mutex<AttachInput>>) {
    while let Some(data) = stdin.read().await {
        if input.lock().await.stdin(&data).await.is_err() {
            return;
        }
    }
    let _ = input.lock().await.close_stdin().await;
}

async fn follow_sizes(resize: Input, input: Arc<Mutex<AttachInput>>) {
    let mut sizes = Sizes::new(resize);
    while let Some(size) = sizes.next().await {
        let _ = input.lock().await.resize(size.width, size.height).await;
    }
}
