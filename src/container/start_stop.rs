//! StartContainer and StopContainer.

use std::time::Duration;

use nix::sys::signal::Signal;
use tracing::{info, warn};

use super::{live, ContainerEntry, ContainerRecord, ContainerState, Containers};
use crate::errors::Error;
use crate::objects::operate;

/// How long a SIGKILLed container may take to be reported gone.
pub(super) const KILL_TIMEOUT: Duration = Duration::from_secs(30);

impl Containers {
    /// StartContainer.
    pub async fn start(&self, id: &str) -> Result<(), Error> {
        let entry = self.registry.lookup(id)?;
        let this = self.arc();
        operate(entry, "start", |entry| async move {
            this.start_locked(&entry).await
        })
        .await
    }

    async fn start_locked(&self, entry: &ContainerEntry) -> Result<(), Error> {
        let rec = entry.snapshot();
        if rec.state != ContainerState::Created {
            return Err(Error::FailedPrecondition(format!(
                "container {} is {:?}, not created",
                rec.id, rec.state
            )));
        }
        let runtime = self.runtime(&rec.runtime_handler)?;
        // Taken before the start: a process that exits at once has its
        // finish time recorded (by its monitor) before the start returns,
        // and must not look as if it finished before it began.
        let started = super::now();
        if let Err(e) = runtime.start(&rec.handle()).await {
            return self.start_failed(entry, &rec, e.to_string()).await;
        }
        self.registry
            .transition(entry, |r| {
                r.started_at = if r.finished_at > 0 {
                    started.min(r.finished_at)
                } else {
                    started
                };
                if r.state == ContainerState::Created {
                    r.state = ContainerState::Running;
                }
            })
            .await?;
        info!(container = %rec.id, "container started");
        Ok(())
    }

    /// A start the runtime refused: the container is recorded as exited
    /// before its init is killed, so the report of the kill does not
    /// replace the reason.
    async fn start_failed(
        &self,
        entry: &ContainerEntry,
        rec: &ContainerRecord,
        message: String,
    ) -> Result<(), Error> {
        let stored = self
            .registry
            .transition(entry, |r| {
                r.state = ContainerState::Exited;
                r.started_at = super::now();
                r.finished_at = r.started_at;
                r.exit_code = 128;
                r.reason = "ContainerCannotRun".into();
                r.message = message.clone();
            })
            .await;
        if let Ok(runtime) = self.runtime(&rec.runtime_handler) {
            let _ = runtime.kill(&rec.handle(), KILL_TIMEOUT).await;
        }
        self.clean_up_exited_later(&rec.id);
        stored?;
        Err(Error::Internal(message))
    }

    /// StopContainer: the stop signal, then SIGKILL after `timeout`;
    /// returns when the container has exited. Idempotent, and an unknown
    /// id succeeds (kubelet may stop again what a restart or a removal
    /// already took away).
    pub async fn stop(&self, id: &str, timeout: Duration) -> Result<(), Error> {
        let Some(entry) = self.registry.lookup_if_known(id)? else {
            return Ok(());
        };
        let this = self.arc();
        operate(entry, "stop", move |entry| async move {
            this.stop_locked(&entry, timeout).await
        })
        .await
    }

    pub(super) async fn stop_locked(
        &self,
        entry: &ContainerEntry,
        timeout: Duration,
    ) -> Result<(), Error> {
        let rec = entry.snapshot();
        if live(rec.state) {
            let graceful = rec.state == ContainerState::Running && !timeout.is_zero();
            if !(graceful && self.stop_gracefully(entry, &rec, timeout).await) {
                self.stop_by_force(entry, &rec).await?;
            }
        }
        self.kill_leftovers(&rec).await;
        Ok(())
    }

    /// The stop signal; true when the container exited within `timeout`.
    async fn stop_gracefully(
        &self,
        entry: &ContainerEntry,
        rec: &ContainerRecord,
        timeout: Duration,
    ) -> bool {
        if let Ok(runtime) = self.runtime(&rec.runtime_handler) {
            if let Err(e) = runtime.signal(&rec.handle(), rec.stop_signal) {
                warn!(container = %rec.id, "cannot send signal {}: {e}", rec.stop_signal);
            }
        }
        if wait_exited(entry, timeout).await {
            return true;
        }
        info!(container = %rec.id, "still running {timeout:?} after signal {}: SIGKILL", rec.stop_signal);
        false
    }

    /// SIGKILL, and to every process of the container without a PID
    /// namespace of its own; waits for the exit.
    async fn stop_by_force(
        &self,
        entry: &ContainerEntry,
        rec: &ContainerRecord,
    ) -> Result<(), Error> {
        if let Ok(runtime) = self.runtime(&rec.runtime_handler) {
            let _ = runtime.signal(&rec.handle(), Signal::SIGKILL as i32);
        }
        if !rec.own_pid_namespace {
            let _ = self.deps.cgroups.signal_all(&rec.cgroup, Signal::SIGKILL);
        }
        if !wait_exited(entry, KILL_TIMEOUT).await {
            return Err(Error::Internal(format!(
                "container {} did not exit within {KILL_TIMEOUT:?} of SIGKILL",
                rec.id
            )));
        }
        Ok(())
    }

    /// Without a PID namespace of its own, a container's processes outlive
    /// its init; stopping the container ends them too.
    async fn kill_leftovers(&self, rec: &ContainerRecord) {
        if !rec.own_pid_namespace {
            let _ = self.deps.cgroups.kill_all(&rec.cgroup).await;
        }
    }
}

/// Waits up to `timeout` for the container to have exited.
async fn wait_exited(entry: &ContainerEntry, timeout: Duration) -> bool {
    let mut rx = entry.watch_state();
    tokio::time::timeout(timeout, rx.wait_for(|s| !live(*s)))
        .await
        .is_ok_and(|r| r.is_ok())
}
