//! The start of the daemon: every stored sandbox reconciled with the host.

use std::sync::Arc;

use tracing::{error, info, warn};

use super::{SandboxDeps, SandboxEntry, SandboxState, Sandboxes};
use crate::config::Config;
use crate::errors::Error;
use crate::store::Store;

impl Sandboxes {
    /// Loads every sandbox from the store and reconciles it with the host:
    /// creations a crash interrupted are rolled back, removals finished,
    /// and sandboxes whose infra process is gone become NOTREADY.
    pub async fn recover(
        config: Arc<Config>,
        store: Arc<Store>,
        deps: SandboxDeps,
    ) -> Result<Arc<Sandboxes>, Error> {
        let this = Sandboxes::new(config, store, deps)?;
        for entry in this.registry.load()? {
            match entry.snapshot().state {
                SandboxState::Creating | SandboxState::Removing => {
                    this.finish_interrupted(&entry).await?
                }
                SandboxState::Ready => this.recover_ready(&entry).await?,
                SandboxState::NotReady => {}
            }
        }
        Ok(this)
    }

    /// A creation or removal a crash cut short: everything released.
    async fn finish_interrupted(&self, entry: &SandboxEntry) -> Result<(), Error> {
        let mut rec = (*entry.snapshot()).clone();
        info!(sandbox = %rec.id, state = ?rec.state, "finishing an interrupted operation: releasing the sandbox");
        match self.release(&mut rec).await {
            Ok(()) => self.registry.remove(entry).await,
            Err(e) => {
                error!(sandbox = %rec.id, "cannot release sandbox: {e}; keeping it NOTREADY for removal");
                self.registry
                    .transition(entry, |r| {
                        *r = rec;
                        r.state = SandboxState::NotReady;
                    })
                    .await
            }
        }
    }

    /// A ready sandbox stays ready while its infra process lives.
    async fn recover_ready(&self, entry: &SandboxEntry) -> Result<(), Error> {
        let rec = entry.snapshot();
        match rec.infra.filter(|p| self.deps.host.is_alive(*p)) {
            Some(p) => self.watch_infra(&rec.id, p),
            None => {
                warn!(sandbox = %rec.id, "infra process is gone: sandbox is NOTREADY");
                self.registry
                    .transition(entry, |r| r.state = SandboxState::NotReady)
                    .await?;
            }
        }
        Ok(())
    }
}
