//! A container's exit: learnt from the runtime backend without polling,
//! recorded, and followed at once by the deletion of the runtime's state
//! and the unmount of the root filesystem and image volumes (as containerd
//! and CRI-O do at exit), so an exited container holds no mount and no
//! process.

use tracing::{debug, error, warn};

use super::start_stop::KILL_TIMEOUT;
use super::{live, ContainerEntry, ContainerRecord, ContainerState, Containers};
use crate::oci::ExitStatus;

impl Containers {
    /// Records the container's exit once the runtime reports it.
    pub(super) fn watch_exit(&self, id: &str) {
        let Ok(entry) = self.registry.lookup(id) else {
            return;
        };
        let rec = entry.snapshot();
        let Ok(runtime) = self.runtime(&rec.runtime_handler) else {
            return;
        };
        let me = self.me.clone();
        tokio::spawn(async move {
            if let Err(e) = runtime.wait(&rec.handle()).await {
                warn!(container = %rec.id, "cannot watch the container: {e}");
                return;
            }
            let Some(this) = me.upgrade() else { return };
            this.exited(&entry).await;
        });
    }

    async fn exited(&self, entry: &ContainerEntry) {
        let rec = entry.snapshot();
        if !live(rec.state) {
            return;
        }
        let (exit, message) = self.exit_of(&rec).await;
        let apply = |x: &mut ContainerRecord| {
            if live(x.state) {
                x.set_exited(&exit);
                if let Some(m) = &message {
                    x.message = m.clone();
                }
            }
        };
        count_exit(&rec, apply, message.is_some());
        // Taken before the state changes, so that a RemoveContainer right
        // after the exit waits for the cleanup below instead of racing it.
        let mut deleted = entry.extra.runtime_deleted.lock().await;
        let cleanup = self.clean_up_exited(&rec);
        // Stored before the state changes in memory, so a StopContainer
        // waiting for the exit answers only once it is kept.
        let record = async {
            if let Err(e) = self.registry.transition(entry, apply).await {
                error!(container = %rec.id, "cannot record the exit: {e}");
            }
            debug!(container = %rec.id, code = exit.exit_code, oom = exit.oom_killed, "container exited");
        };
        let (done, ()) = tokio::join!(cleanup, record);
        *deleted = done;
    }

    /// The exit the runtime recorded; when it recorded none (or none that
    /// can be read), the exit is unknown, as when the monitor was killed,
    /// but the container is gone.
    async fn exit_of(&self, rec: &ContainerRecord) -> (ExitStatus, Option<String>) {
        let recorded = match self.runtime(&rec.runtime_handler) {
            Ok(rt) => rt.exit_status(&rec.handle()),
            Err(e) => Err(crate::oci::OciError::Io(e.to_string())),
        };
        if let Ok(Some(exit)) = recorded {
            return (exit, None);
        }
        let mut r = rec.clone();
        self.lost(&mut r).await;
        match recorded {
            Err(e) => {
                error!(container = %rec.id, "cannot read the exit file: {e}");
                r.message = format!("{} ({e})", r.message);
            }
            Ok(_) => {
                warn!(container = %rec.id, "the container's monitor exited without an exit status")
            }
        }
        let exit = ExitStatus {
            exit_code: r.exit_code,
            signal: 0,
            oom_killed: false,
            finished_at: r.finished_at,
        };
        (exit, Some(r.message))
    }

    /// The runtime lost the container without recording its exit: the init
    /// is killed (nobody would report it) and the container marked exited.
    pub(super) async fn lost(&self, rec: &mut ContainerRecord) {
        if let Ok(runtime) = self.runtime(&rec.runtime_handler) {
            let _ = runtime.kill(&rec.handle(), KILL_TIMEOUT).await;
        }
        rec.state = ContainerState::Exited;
        rec.finished_at = super::now();
        rec.exit_code = 255;
        rec.reason = "Error".into();
        rec.message = "the container's monitor exited without recording an exit status".into();
    }

    /// An exited container needs neither the runtime's state and cgroup
    /// nor its root filesystem, image volumes and id-mapped clones
    /// mounted: both go at once,
    /// off RemoveContainer's path. Unmounting syncs the writable layer,
    /// which takes milliseconds. True when the runtime's delete succeeded;
    /// what fails is left for RemoveContainer.
    async fn clean_up_exited(&self, rec: &ContainerRecord) -> bool {
        let id = rec.id.as_str();
        let (host, dir) = (self.deps.host.clone(), rec.dir.clone());
        let unmount =
            tokio::task::spawn_blocking(move || host.unmount_below(&dir).map_err(|e| (dir, e)));
        let delete = async {
            let runtime = self.runtime(&rec.runtime_handler).ok()?;
            runtime
                .delete(&rec.handle(), false)
                .await
                .map_err(|e| debug!(container = %id, "runtime delete after exit: {e}"))
                .ok()
        };
        let (unmounted, deleted) = tokio::join!(unmount, delete);
        if let Ok(Err((path, e))) = unmounted {
            debug!(container = %id, "unmount {} after exit: {e}", path.display());
        }
        deleted.is_some()
    }

    /// [`Self::clean_up_exited`] in the background for a container found
    /// exited at start; a RemoveContainer meanwhile waits for it.
    pub(super) fn clean_up_exited_later(&self, id: &str) {
        let Ok(entry) = self.registry.lookup(id) else {
            return;
        };
        let this = self.arc();
        tokio::spawn(async move {
            let mut deleted = entry.extra.runtime_deleted.lock().await;
            let rec = entry.snapshot();
            *deleted = this.clean_up_exited(&rec).await;
        });
    }
}

/// Counts the exit in the metrics before the state changes, so that whoever
/// sees the container exited sees the exit counted: with the reason the
/// record is given, or `Lost` when the monitor recorded no exit status.
fn count_exit(rec: &ContainerRecord, apply: impl Fn(&mut ContainerRecord), lost: bool) {
    let mut exited = rec.clone();
    apply(&mut exited);
    let reason = match lost {
        true => "Lost",
        false => &exited.reason,
    };
    crate::metrics::container_exited(reason);
}
