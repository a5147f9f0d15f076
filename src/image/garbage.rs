//! What pulls in progress and containers hold, and deleting the layers and
//! configs that nobody holds and no image refers to.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;

use tracing::{info, warn};

use super::{hex_of, remove_any, ImageError, Images};

/// What a pull in progress holds so removal leaves its layers alone.
pub(super) struct Pins {
    pub(super) counts: Mutex<HashMap<String, usize>>,
}

pub struct PinGuard<'a> {
    pins: &'a Pins,
    keys: Vec<String>,
}

impl Pins {
    fn hold(&self, keys: &[String]) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        for k in keys {
            *counts.entry(k.clone()).or_default() += 1;
        }
    }

    /// Ends one [`Pins::hold`]; true when a key is no longer held at all.
    fn release(&self, keys: &[String]) -> bool {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let mut freed = false;
        for k in keys {
            if let Some(n) = counts.get_mut(k) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(k);
                    freed = true;
                }
            }
        }
        freed
    }
}

impl Drop for PinGuard<'_> {
    fn drop(&mut self) {
        self.pins.release(&self.keys);
    }
}

impl Images {
    /// Collects garbage and waits until it is deleted.
    pub(super) async fn delete_garbage(&self) -> Result<(), ImageError> {
        let doomed = self.collect_garbage()?;
        tokio::task::spawn_blocking(move || delete_all(doomed))
            .await
            .map_err(|e| ImageError::Internal(format!("delete task: {e}")))
    }

    /// Moves layer directories and configs that no image refers to and no
    /// pull in progress holds out of the store, into `tmp/` (which a start
    /// empties, should the deletion be cut short); returns them for
    /// deletion.
    pub(super) fn collect_garbage(&self) -> Result<Vec<PathBuf>, ImageError> {
        // The pins lock is taken first and held while directories are moved
        // away: a pull pins its layers before it looks for them and commits
        // its record before it unpins, so each layer either is pinned, or
        // belongs to a record this index read sees, or is gone before the
        // pull looks.
        let counts = self.pins.counts.lock().unwrap_or_else(|e| e.into_inner());
        let (layers, blobs): (HashSet<String>, HashSet<String>) = {
            let index = self.read();
            (
                index
                    .images
                    .values()
                    .flat_map(|r| r.layers.iter().map(|l| hex_of(&l.chain_id).to_string()))
                    .collect(),
                index
                    .images
                    .keys()
                    .map(|id| hex_of(id).to_string())
                    .collect(),
            )
        };
        let pinned: HashSet<&str> = counts.keys().map(|k| hex_of(k)).collect();
        let mut doomed = Vec::new();
        for (sub, keep) in [("layers", &layers), ("blobs/sha256", &blobs)] {
            let d = self.dir.join(sub);
            for entry in std::fs::read_dir(&d).map_err(ImageError::io("read", &d))? {
                let entry = entry.map_err(ImageError::io("read", &d))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if keep.contains(&name) || pinned.contains(name.as_str()) {
                    continue;
                }
                let to = self
                    .dir
                    .join("tmp")
                    .join(format!("gc-{name}-{}", crate::ids::new_id()));
                std::fs::rename(entry.path(), &to).map_err(ImageError::io("move", &to))?;
                doomed.push(to);
            }
        }
        drop(counts);
        if !doomed.is_empty() {
            info!(count = doomed.len(), "deleting unused layers and configs");
        }
        Ok(doomed)
    }

    /// Keeps layers from collection while a container's rootfs stacks them
    /// (counted: each call needs its own release).
    pub fn hold_layers(&self, chain_ids: &[String]) {
        self.pins.hold(chain_ids);
    }

    /// Ends one [`Images::hold_layers`]; layers no image and no container
    /// uses any more are deleted (looked for only when a layer is no
    /// longer held by anyone).
    pub async fn release_layers(&self, chain_ids: &[String]) -> Result<(), ImageError> {
        if self.pins.release(chain_ids) {
            self.delete_garbage().await
        } else {
            Ok(())
        }
    }

    pub(super) fn pin(&self, keys: &[String]) -> PinGuard<'_> {
        self.pins.hold(keys);
        PinGuard {
            pins: &self.pins,
            keys: keys.to_vec(),
        }
    }
}

pub(super) fn delete_all(paths: Vec<PathBuf>) {
    for p in paths {
        if let Err(e) = remove_any(&p) {
            warn!(path = %p.display(), "cannot delete an unused layer: {e}");
        }
    }
}
