//! What a forced delete kills: the monitor of a creation a crash cut short,
//! and the container's init and monitor.

use std::time::Duration;

use tracing::warn;

use super::{CliRuntime, ContainerHandle};
use crate::process::{self, ProcessRef};

/// How long a SIGKILLed process may take to be gone.
const KILL_TIMEOUT: Duration = Duration::from_secs(30);

impl CliRuntime {
    /// A creation cut short before the monitor reported itself: the monitor
    /// (detached, so still running) and the runtime's create under it are
    /// found by the container id in its arguments, and go before the
    /// runtime's state is deleted, or they would recreate it.
    pub(super) async fn kill_interrupted_creation(&self, c: &ContainerHandle) {
        if c.monitor.is_some() {
            return;
        }
        let Some(pid) = find_monitor(&c.id) else {
            return;
        };
        warn!(container = %c.id, pid, "killing the monitor of an interrupted creation");
        process::kill_descendants(pid);
        if let Some(p) = ProcessRef::of(pid) {
            let _ = process::kill_and_wait(p, KILL_TIMEOUT).await;
        }
    }

    /// Kills the container's init and monitor where they still run; what
    /// could not be killed.
    pub(super) async fn kill_processes(&self, c: &ContainerHandle) -> Vec<String> {
        let mut problems = Vec::new();
        for p in [c.init, c.monitor].into_iter().flatten() {
            if p.is_alive() {
                if let Err(e) = process::kill_and_wait(p, KILL_TIMEOUT).await {
                    problems.push(format!("kill {}: {e}", p.pid));
                }
            }
        }
        problems
    }
}

/// The monitor process of container `id`, by its arguments.
fn find_monitor(id: &str) -> Option<i32> {
    process::all_pids()
        .into_iter()
        .find(|&pid| crate::monitor::is_container_monitor(&process::cmdline(pid), id))
}
