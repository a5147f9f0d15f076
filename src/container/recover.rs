//! The start of the daemon: every stored container reconciled with the
//! host.

use std::collections::HashSet;
use std::sync::Arc;

use tracing::{error, info, warn};

use super::{ContainerDeps, ContainerEntry, ContainerState, Containers};
use crate::config::Config;
use crate::errors::Error;
use crate::objects::Registry;
use crate::store::Store;

impl Containers {
    /// Loads every container from the store and reconciles it with the
    /// host: creations a crash interrupted are rolled back, removals
    /// finished, exits that happened while the daemon was down recorded.
    pub async fn recover(
        config: Arc<Config>,
        store: Arc<Store>,
        deps: ContainerDeps,
    ) -> Result<Arc<Containers>, Error> {
        let this = Arc::new_cyclic(|me| Containers {
            config,
            registry: Registry::new(store),
            deps,
            samples: Default::default(),
            me: me.clone(),
        });
        let mut known = HashSet::new();
        for entry in this.registry.load()? {
            known.insert(entry.snapshot().id.clone());
            match entry.snapshot().state {
                ContainerState::Creating | ContainerState::Removing => {
                    this.finish_interrupted(&entry).await?
                }
                ContainerState::Created | ContainerState::Running => {
                    this.recover_live(&entry).await?
                }
                ContainerState::Exited => {}
            }
        }
        this.sweep_orphans(&known);
        this.sweep_checkpoint_staging();
        Ok(this)
    }

    /// A creation or removal a crash cut short: everything released.
    async fn finish_interrupted(&self, entry: &ContainerEntry) -> Result<(), Error> {
        let mut rec = (*entry.snapshot()).clone();
        info!(container = %rec.id, state = ?rec.state, "finishing an interrupted operation: removing the container");
        match self.release(&mut rec).await {
            Ok(()) => {
                self.registry.remove(entry).await?;
                self.release_layers(&rec).await;
                Ok(())
            }
            Err(e) => {
                error!(container = %rec.id, "cannot release container: {e}; keeping it as exited for removal");
                self.registry
                    .transition(entry, |r| {
                        *r = rec;
                        r.state = ContainerState::Exited;
                        r.reason = "Error".into();
                        r.message = format!("interrupted while being set up or removed: {e}");
                    })
                    .await
            }
        }
    }

    /// A container that was running: still watched, or its exit recorded
    /// (by its monitor while the daemon was down, or lost).
    async fn recover_live(&self, entry: &ContainerEntry) -> Result<(), Error> {
        let rec = entry.snapshot();
        let runtime = self.runtime(&rec.runtime_handler).ok();
        let handle = rec.handle();
        let exit = runtime
            .as_ref()
            .and_then(|rt| rt.exit_status(&handle).unwrap_or(None));
        if let Some(exit) = exit {
            info!(container = %rec.id, code = exit.exit_code, "container exited while the daemon was down");
            self.registry
                .transition(entry, |r| r.set_exited(&exit))
                .await?;
        } else if runtime.is_some_and(|rt| rt.is_running(&handle)) {
            self.watch_exit(&rec.id);
            return Ok(());
        } else {
            warn!(container = %rec.id, "the container's monitor is gone without an exit status");
            let mut lost = (*rec).clone();
            self.lost(&mut lost).await;
            self.registry.transition(entry, |r| *r = lost).await?;
        }
        self.clean_up_exited_later(&rec.id);
        Ok(())
    }

    /// Directories of containers the store does not know (a crash between
    /// their creation and the first commit cannot leave any, but a store
    /// restored from a backup can): unmounted and removed.
    fn sweep_orphans(&self, known: &HashSet<String>) {
        for dir in [
            self.config.containers_dir(),
            self.config.container_layers_dir(),
        ] {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if known.contains(&name) {
                    continue;
                }
                warn!(path = %e.path().display(), "removing the directory of an unknown container");
                let _ = self.deps.host.unmount_below(&e.path());
                if let Err(err) = std::fs::remove_dir_all(e.path()) {
                    warn!(path = %e.path().display(), "cannot remove: {err}");
                }
            }
        }
    }
}
