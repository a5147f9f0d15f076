//! The image store: image records in the metadata store, image configs as
//! files by digest, and every layer unpacked once per chain id into a
//! directory that overlayfs takes as a lower layer.
//!
//! On disk, under `<root>/images`:
//! - `layers/<chain id hex>/`  a layer's files, whiteouts in overlayfs form
//! - `blobs/sha256/<hex>`     image configs, verified
//! - `tmp/`                   downloads and unpacks in progress; emptied at
//!   start, so a pull killed half-way leaves nothing behind
//!
//! A layer directory is only ever renamed into `layers/` complete and
//! verified, and an image record is only written once all its layers are
//! there, so whatever is in the store after a crash is whole.
//!
//! Files: `records` (what is stored per image, and the index that finds an
//! image by id, tag or digest), `garbage` (what pulls and containers hold,
//! and deleting what nobody uses), `pull`; `reference`, `manifest`,
//! `registry` and `unpack` serve the pull.

mod garbage;
pub mod manifest;
mod progress;
mod pull;
mod records;
pub mod reference;
pub mod registry;
pub mod unpack;

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use tracing::{info, warn};

use crate::host::fs::usage;
use crate::store::{Store, StoreError, Table};
use garbage::{delete_all, Pins};
use manifest::ManifestError;
use records::Index;
use reference::ReferenceError;
use registry::{RegistryClient, RegistryError, RegistrySettings};
use unpack::UnpackError;

pub use garbage::PinGuard;
pub use records::{ImageRecord, LayerRecord};
pub use registry::Credentials;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("{0}")]
    InvalidArgument(String),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("{reference}: {source}")]
    Manifest {
        reference: String,
        source: ManifestError,
    },
    #[error("layer {digest}: {source}")]
    Unpack { digest: String, source: UnpackError },
    #[error(
        "layer {digest}: its content has diff id {actual}, but the image config says {expected}"
    )]
    DiffId {
        digest: String,
        expected: String,
        actual: String,
    },
    #[error("image store {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

impl ImageError {
    fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ImageError + 'a {
        move |source| ImageError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

pub struct ImageSettings {
    pub registry: RegistrySettings,
    /// Layers one pull downloads at once.
    pub max_concurrent_downloads: usize,
    /// How often a running pull logs its progress.
    pub progress_log_interval: std::time::Duration,
}

pub struct Images {
    dir: PathBuf,
    store: Arc<Store>,
    registry: RegistryClient,
    index: RwLock<Index>,
    /// Serialises changes to records (pull commits, removals).
    writer: tokio::sync::Mutex<()>,
    /// One lock per chain id or blob digest being fetched, so concurrent
    /// pulls download and unpack each once.
    fetching: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pins: Pins,
    /// Bytes and inodes of each unpacked layer: layers never change, so
    /// ImageFsInfo (every 10 s from kubelet) walks each one once.
    layer_usage: Mutex<HashMap<String, (u64, u64)>>,
    max_concurrent_downloads: usize,
    progress_log_interval: std::time::Duration,
    platform: manifest::Platform,
}

impl Images {
    /// Opens the store at `dir`: empties `tmp/`, loads the records, and
    /// deletes layers and configs no image refers to (left by a pull that
    /// was killed before it recorded its image).
    /// `held` lists the layers (chain ids) containers stack in their root
    /// filesystems, once per container: they are kept whatever happens to
    /// the images that brought them, until [`Images::release_layers`].
    pub fn open(
        dir: PathBuf,
        store: Arc<Store>,
        settings: ImageSettings,
        held: &[String],
    ) -> Result<Images, ImageError> {
        for sub in ["layers", "tmp", "blobs/sha256"] {
            let p = dir.join(sub);
            std::fs::create_dir_all(&p).map_err(ImageError::io("create", &p))?;
        }
        let tmp = dir.join("tmp");
        for entry in std::fs::read_dir(&tmp).map_err(ImageError::io("read", &tmp))? {
            let p = entry.map_err(ImageError::io("read", &tmp))?.path();
            remove_any(&p).map_err(ImageError::io("remove", &p))?;
        }
        let registry = RegistryClient::new(settings.registry)?;
        log_node_files(&registry.check_node_files()?);
        let mut records: Vec<(String, ImageRecord)> = store.load_all(Table::Images)?;
        // Newest first, so a tag claimed twice (a crash between the two
        // writes of a tag move) goes to the newer image.
        records.sort_by_key(|r| std::cmp::Reverse(r.1.pulled_at));
        let mut index = Index::default();
        for (id, mut rec) in records {
            let missing: Vec<&LayerRecord> = rec
                .layers
                .iter()
                .filter(|l| !layer_path(&dir, &l.chain_id).is_dir())
                .collect();
            if !missing.is_empty() {
                warn!(
                    image = %id,
                    layer = %missing[0].chain_id,
                    "image has lost unpacked layers; forgetting it so that it is pulled again"
                );
                store.delete(Table::Images, &id)?;
                continue;
            }
            let before = rec.repo_tags.len();
            rec.repo_tags.retain(|t| !index.tags.contains_key(t));
            if rec.repo_tags.len() != before {
                store.put(Table::Images, &id, &rec)?;
            }
            index.insert(Arc::new(rec));
        }
        let images = Images {
            dir,
            store,
            registry,
            index: RwLock::new(index),
            writer: tokio::sync::Mutex::new(()),
            fetching: Mutex::new(HashMap::new()),
            pins: Pins {
                counts: Mutex::new(HashMap::new()),
            },
            layer_usage: Mutex::new(HashMap::new()),
            max_concurrent_downloads: settings.max_concurrent_downloads.max(1),
            progress_log_interval: settings.progress_log_interval,
            platform: manifest::Platform::host(),
        };
        images.hold_layers(held);
        // Not waited for: the daemon need not start late for it.
        let doomed = images.collect_garbage()?;
        std::thread::spawn(move || delete_all(doomed));
        info!(
            images = images.read().images.len(),
            dir = %images.dir.display(),
            "image store open"
        );
        Ok(images)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The unpacked directory of a layer, for overlayfs.
    pub fn layer_dir(&self, chain_id: &str) -> PathBuf {
        layer_path(&self.dir, chain_id)
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.dir.join("blobs/sha256").join(hex)
    }

    /// The raw image config of an image.
    pub fn config_json(&self, id: &str) -> std::io::Result<Vec<u8>> {
        std::fs::read(self.blob_path(id))
    }

    /// An image by id, short id, tag or digest reference. `Ok(None)` when
    /// there is none; an error only when `name` is not a valid reference.
    pub fn get(&self, name: &str) -> Result<Option<Arc<ImageRecord>>, ImageError> {
        let index = self.read();
        Ok(index
            .resolve_id(name)?
            .and_then(|id| index.images.get(&id).cloned()))
    }

    /// Every image, oldest pull first.
    pub fn list(&self) -> Vec<Arc<ImageRecord>> {
        let mut all: Vec<_> = self.read().images.values().cloned().collect();
        all.sort_by(|a, b| a.pulled_at.cmp(&b.pulled_at).then(a.id.cmp(&b.id)));
        all
    }

    /// Removes an image, or one tag of it. By id or digest the whole image
    /// goes; by tag only that tag when the image has others. Unknown images
    /// are not an error. Layers no other image uses are deleted.
    pub async fn remove(&self, name: &str) -> Result<(), ImageError> {
        let _w = self.writer.lock().await;
        let (rec, by_tag) = {
            let index = self.read();
            let Some((id, tag)) = index.resolve(name)? else {
                return Ok(());
            };
            let Some(rec) = index.images.get(&id).cloned() else {
                return Ok(());
            };
            (rec, tag)
        };
        if let Some(tag) = by_tag {
            if rec.repo_tags.len() > 1 {
                let mut updated = (*rec).clone();
                updated.repo_tags.retain(|t| *t != tag);
                self.persist(&updated).await?;
                self.write().insert(Arc::new(updated));
                info!(image = %rec.id, %tag, "untagged image");
                return Ok(());
            }
        }
        self.store
            .delete_async(Table::Images, rec.id.clone())
            .await?;
        self.write().remove(&rec.id);
        info!(image = %rec.id, tags = ?rec.repo_tags, "removed image");
        drop(_w);
        // Deleted before the reply, so the space is free when kubelet's
        // image GC next measures ImageFsInfo.
        self.delete_garbage().await
    }

    async fn persist(&self, rec: &ImageRecord) -> Result<(), ImageError> {
        Ok(self
            .store
            .put_async(Table::Images, rec.id.clone(), rec.clone())
            .await?)
    }

    /// Bytes (allocated blocks, as `du`) and inodes the store uses on disk.
    pub fn disk_usage(&self) -> std::io::Result<(u64, u64)> {
        let layers = self.dir.join("layers");
        let (mut bytes, mut inodes) = (0, 0);
        for entry in std::fs::read_dir(&self.dir)? {
            let p = entry?.path();
            if p != layers {
                let (b, i) = usage(&p)?;
                bytes += b;
                inodes += i;
            }
        }
        // The store's own directory and layers/.
        for p in [&self.dir, &layers] {
            bytes += std::fs::symlink_metadata(p)?.blocks() * 512;
            inodes += 1;
        }
        let mut present = HashSet::new();
        for entry in std::fs::read_dir(&layers)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let cached = self
                .layer_usage
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&name)
                .copied();
            let (b, i) = match cached {
                Some(u) => u,
                None => {
                    let u = usage(&entry.path())?;
                    self.layer_usage
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(name.clone(), u);
                    u
                }
            };
            bytes += b;
            inodes += i;
            present.insert(name);
        }
        self.layer_usage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| present.contains(k));
        Ok((bytes, inodes))
    }

    /// A lock for fetching `key` (a chain id or blob digest).
    fn fetch_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.fetching.lock().unwrap_or_else(|e| e.into_inner());
        // Drop locks nobody holds or waits for, so the map stays small.
        map.retain(|_, l| Arc::strong_count(l) > 1);
        map.entry(key.to_string()).or_default().clone()
    }
}

/// Says at start which node files pulls will follow.
fn log_node_files(node: &registry::NodeFiles) {
    let conf = &node.registries_conf;
    if !conf.files.is_empty() {
        info!(files = ?conf.files, rules = conf.len(), "registries.conf read");
    }
    let search = &conf.unqualified_search_registries;
    if search.iter().any(|r| r != reference::DOCKER_HUB) {
        info!(
            unqualified_search_registries = ?search,
            "registries.conf: unqualified-search-registries is not used; \
             kubelet's unqualified image names are docker.io's"
        );
    }
    if let Some((path, registries)) = &node.auth_file {
        info!(path = %path.display(), registries, "registry credentials file read");
    }
}

fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

fn layer_path(dir: &Path, chain_id: &str) -> PathBuf {
    dir.join("layers").join(hex_of(chain_id))
}

/// Removes a file or a whole tree. Layer trees can hold directories without
/// write permission for anyone; root does not care.
fn remove_any(p: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
        Ok(_) => std::fs::remove_file(p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_files_and_dirs_once() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), vec![1u8; 10000]).unwrap();
        std::fs::hard_link(d.path().join("a"), d.path().join("b")).unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        let (bytes, inodes) = usage(d.path()).unwrap();
        assert_eq!(inodes, 3);
        assert!(bytes >= 10000, "{bytes}");
    }
}
