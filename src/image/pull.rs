//! PullImage: resolve the reference to one platform's manifest, fetch the
//! config, then fetch and unpack the layers concurrently, each straight from
//! the network into its staging directory (no compressed copy is kept), and
//! record the image once every layer is in place.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, Semaphore};
use tracing::{debug, info};

use super::manifest::{self, Descriptor, Document, ImageConfig, ManifestError};
use super::progress::{ProgressLog, PullProgress};
use super::reference::Reference;
use super::registry::{BlobStream, Credentials, ImageName, Repository};
use super::unpack::{self, UnpackedLayer};
use super::{layer_path, ImageError, ImageRecord, Images, LayerRecord};

/// Image configs are small; anything bigger is not one.
const MAX_CONFIG_BYTES: u64 = 16 << 20;
/// Chunks buffered between the download and the unpacker.
const PIPE_DEPTH: usize = 64;

impl Images {
    /// Pulls `reference` and records it; returns the image. Runs to the end
    /// even if the caller goes away, so its work is not wasted and nothing is
    /// left half-done; callers spawn it.
    pub async fn pull(
        self: Arc<Self>,
        reference: String,
        credentials: Credentials,
    ) -> Result<Arc<ImageRecord>, ImageError> {
        let started = std::time::Instant::now();
        let result = self.clone().pull_pinned(reference, credentials).await;
        crate::metrics::image_pull_finished(started.elapsed(), result.is_ok());
        if result.is_err() {
            // What the failed pull did complete (its config, some layers)
            // is no image's: drop it, unless another pull holds it.
            if let Err(e) = self.delete_garbage().await {
                tracing::warn!("cleaning up after a failed pull: {e}");
            }
        }
        result
    }

    async fn pull_pinned(
        self: Arc<Self>,
        reference: String,
        credentials: Credentials,
    ) -> Result<Arc<ImageRecord>, ImageError> {
        let started = std::time::Instant::now();
        let r = Reference::parse(&reference)?;
        let repo = self.open_repository(&r, credentials).await?;
        let progress = PullProgress::new(r.to_string());
        let _log = ProgressLog::start(progress.clone(), self.progress_log_interval);
        let image = self.resolve_manifest(&repo, &r).await?;
        if !self.blob_path(&image.config.digest).is_file() {
            progress.expect(image.config.size);
        }
        let config_bytes = self.fetch_config(&repo, &image.config, &progress).await?;
        let cfg = config_of(&r, &image, &config_bytes)?;
        let chain = manifest::chain_ids(&cfg.diff_ids);
        progress.expect(self.missing_layer_bytes(&image.layers, &chain));
        let mut pinned = chain.clone();
        pinned.push(image.config.digest.clone());
        let _pins = self.pin(&pinned);

        // Config fetched again after the pin: a removal between the two may
        // have deleted it.
        if !self.blob_path(&image.config.digest).is_file() {
            self.fetch_config(&repo, &image.config, &progress).await?;
        }
        self.clone()
            .fetch_layers(&repo, &image.layers, &cfg.diff_ids, &chain, &progress)
            .await?;

        // Layers are files written through the page cache; make them
        // durable before a record says the image is whole.
        sync_filesystem(&self.dir).await?;

        let rec = self.commit(image_record(&r, image, cfg, &chain)).await?;
        info!(
            image = %rec.id,
            reference = %r,
            elapsed = ?started.elapsed(),
            received_bytes = progress.received(),
            "pulled image"
        );
        Ok(rec)
    }

    /// The session that pulls `r`, as the node's registries.conf and auth
    /// file say now (they are read here, off the async threads).
    async fn open_repository(
        &self,
        r: &Reference,
        credentials: Credentials,
    ) -> Result<Repository, ImageError> {
        let registry = self.registry.clone();
        let r = r.clone();
        tokio::task::spawn_blocking(move || {
            let name = ImageName {
                domain: &r.domain,
                path: &r.path,
                tag: r.tag.as_deref(),
                digest: r.digest.as_deref(),
            };
            registry.open(&name, credentials)
        })
        .await
        .map_err(|e| ImageError::Internal(format!("open repository task: {e}")))?
        .map_err(ImageError::from)
    }

    /// Compressed bytes of the layers not unpacked yet: what the pull is
    /// to download, for its progress log.
    fn missing_layer_bytes(&self, layers: &[Descriptor], chain: &[String]) -> u64 {
        layers
            .iter()
            .zip(chain)
            .filter(|(_, chain_id)| !layer_path(&self.dir, chain_id).is_dir())
            .map(|(layer, _)| layer.size)
            .sum()
    }

    /// The image manifest `r` names: the manifest itself, or this platform's
    /// entry of the index it names.
    async fn resolve_manifest(
        &self,
        repo: &Repository,
        r: &Reference,
    ) -> Result<ResolvedImage, ImageError> {
        let top = repo.manifest(r.manifest_reference()).await?;
        let (manifest_digest, config, layers) =
            match manifest::parse(&top.bytes, &top.media_type, &top.digest)
                .map_err(manifest_error(r))?
            {
                Document::Image { config, layers } => (top.digest.clone(), config, layers),
                Document::Index { manifests } => {
                    self.platform_manifest(repo, r, &top.digest, &manifests)
                        .await?
                }
            };
        Ok(ResolvedImage {
            top_digest: top.digest,
            manifest_digest,
            config,
            layers,
        })
    }

    /// This platform's image manifest from index `index_digest`: its digest,
    /// config and layers.
    async fn platform_manifest(
        &self,
        repo: &Repository,
        r: &Reference,
        index_digest: &str,
        manifests: &[Descriptor],
    ) -> Result<(String, Descriptor, Vec<Descriptor>), ImageError> {
        let wrap = manifest_error(r);
        let chosen =
            manifest::select_platform(manifests, &self.platform, index_digest).map_err(wrap)?;
        let m = repo.manifest(&chosen.digest).await?;
        match manifest::parse(&m.bytes, &m.media_type, &m.digest).map_err(wrap)? {
            Document::Image { config, layers } => Ok((m.digest.clone(), config, layers)),
            Document::Index { .. } => Err(ImageError::InvalidArgument(format!(
                "{r}: index {index_digest} points to another index {}; nested indexes are not pulled",
                m.digest
            ))),
        }
    }

    /// Fetches and unpacks the layers, at most `max_concurrent_downloads` at
    /// once; the first failure cancels the downloads still running.
    async fn fetch_layers(
        self: Arc<Self>,
        repo: &Repository,
        layers: &[Descriptor],
        diff_ids: &[String],
        chain: &[String],
        progress: &Arc<PullProgress>,
    ) -> Result<(), ImageError> {
        let cancel = Arc::new(AtomicBool::new(false));
        let limit = Arc::new(Semaphore::new(self.max_concurrent_downloads));
        let mut tasks = tokio::task::JoinSet::new();
        for (i, layer) in layers.iter().enumerate() {
            let this = self.clone();
            let repo = repo.clone();
            let layer = layer.clone();
            let diff_id = diff_ids[i].clone();
            let chain_id = chain[i].clone();
            let cancel = cancel.clone();
            let limit = limit.clone();
            let progress = progress.clone();
            tasks.spawn(async move {
                let _permit = limit
                    .acquire_owned()
                    .await
                    .map_err(|e| ImageError::Internal(format!("download limit: {e}")))?;
                this.ensure_layer(&repo, &layer, &diff_id, &chain_id, &cancel, &progress)
                    .await
            });
        }
        let mut first_error = None;
        while let Some(done) = tasks.join_next().await {
            let result =
                done.unwrap_or_else(|e| Err(ImageError::Internal(format!("layer task: {e}"))));
            if let Err(e) = result {
                cancel.store(true, Ordering::Relaxed);
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Adds a pulled image to the store: merged with the record of the same
    /// id, and taking its tag from any other image that had it.
    async fn commit(&self, pulled: ImageRecord) -> Result<Arc<ImageRecord>, ImageError> {
        let _w = self.writer.lock().await;
        let (mut rec, losers) = {
            let index = self.read();
            let mut rec = match index.images.get(&pulled.id) {
                Some(old) => {
                    let mut r = (**old).clone();
                    r.pulled_at = pulled.pulled_at;
                    r.layers = pulled.layers.clone();
                    r.size = pulled.size;
                    r.manifest_digest = pulled.manifest_digest.clone();
                    r.run = pulled.run.clone();
                    r
                }
                None => pulled.clone(),
            };
            for t in &pulled.repo_tags {
                if !rec.repo_tags.contains(t) {
                    rec.repo_tags.push(t.clone());
                }
            }
            for d in &pulled.repo_digests {
                if !rec.repo_digests.contains(d) {
                    rec.repo_digests.push(d.clone());
                }
            }
            let mut losers = Vec::new();
            for t in &pulled.repo_tags {
                if let Some(other) = index.tags.get(t).filter(|id| **id != pulled.id) {
                    if let Some(o) = index.images.get(other) {
                        let mut o = (**o).clone();
                        o.repo_tags.retain(|x| x != t);
                        losers.push(o);
                    }
                }
            }
            (rec, losers)
        };
        rec.repo_tags.sort();
        rec.repo_digests.sort();
        self.persist(&rec).await?;
        for o in &losers {
            // The old image keeps its digests and stays until it is removed
            // (kubelet's image GC does that by id).
            self.persist(o).await?;
            info!(image = %o.id, tags = ?o.repo_tags, "tag moved to {}", rec.id);
        }
        let rec = Arc::new(rec);
        let mut index = self.write();
        for o in losers {
            index.insert(Arc::new(o));
        }
        index.insert(rec.clone());
        Ok(rec)
    }

    /// The image config, from `blobs/` or downloaded and verified into it.
    async fn fetch_config(
        &self,
        repo: &Repository,
        desc: &Descriptor,
        progress: &PullProgress,
    ) -> Result<Vec<u8>, ImageError> {
        super::reference::validate_digest(&desc.digest).map_err(ImageError::InvalidArgument)?;
        if desc.size > MAX_CONFIG_BYTES {
            return Err(ImageError::InvalidArgument(format!(
                "image config {} is {} bytes; peapod takes configs up to {MAX_CONFIG_BYTES}",
                desc.digest, desc.size
            )));
        }
        let path = self.blob_path(&desc.digest);
        let lock = self.fetch_lock(&desc.digest);
        let _held = lock.lock().await;
        match tokio::fs::read(&path).await {
            Ok(b) => return Ok(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ImageError::io("read", &path)(e)),
        }
        let mut stream = repo.blob(&desc.digest, Some(desc.size)).await?;
        let mut body = Vec::with_capacity(desc.size as usize);
        while let Some(chunk) = stream.chunk().await? {
            progress.add(chunk.len());
            if body.len() as u64 + chunk.len() as u64 > MAX_CONFIG_BYTES {
                return Err(ImageError::InvalidArgument(format!(
                    "image config {} is larger than {MAX_CONFIG_BYTES} bytes",
                    desc.digest
                )));
            }
            body.extend_from_slice(&chunk);
        }
        let tmp = self
            .dir
            .join("tmp")
            .join(format!("config-{}", crate::ids::new_id()));
        if let Err(e) = tokio::fs::write(&tmp, &body).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(ImageError::io("write", &tmp)(e));
        }
        if let Err(e) = tokio::fs::rename(&tmp, &path).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(ImageError::io("rename", &path)(e));
        }
        Ok(body)
    }

    /// Makes sure the layer `chain_id` is unpacked: downloads `layer` and
    /// unpacks it as it arrives, unless it is there already or another pull
    /// is doing it (then this one waits and finds it there).
    async fn ensure_layer(
        &self,
        repo: &Repository,
        layer: &Descriptor,
        diff_id: &str,
        chain_id: &str,
        cancel: &AtomicBool,
        progress: &PullProgress,
    ) -> Result<(), ImageError> {
        super::reference::validate_digest(&layer.digest).map_err(ImageError::InvalidArgument)?;
        let target = layer_path(&self.dir, chain_id);
        let lock = self.fetch_lock(chain_id);
        let _held = lock.lock().await;
        if tokio::fs::symlink_metadata(&target).await.is_ok() {
            debug!(layer = %layer.digest, "layer already unpacked");
            return Ok(());
        }
        if cancel.load(Ordering::Relaxed) {
            return Err(ImageError::Internal("pull cancelled".into()));
        }
        let staging = Staging::create(self.dir.join("tmp").join(format!(
            "layer-{}-{}",
            super::hex_of(chain_id),
            crate::ids::new_id()
        )))?;
        let unpacked = download_and_unpack(repo, layer, &staging.path, cancel, progress).await?;
        if unpacked.diff_id != diff_id {
            return Err(ImageError::DiffId {
                digest: layer.digest.clone(),
                expected: diff_id.to_string(),
                actual: unpacked.diff_id,
            });
        }
        staging.commit(&target)?;
        debug!(
            layer = %layer.digest,
            bytes = unpacked.uncompressed_size,
            entries = unpacked.entries,
            "layer unpacked"
        );
        Ok(())
    }
}

/// What a reference resolved to.
struct ResolvedImage {
    /// The digest the reference named or its tag pointed at (an index's,
    /// for a multi-platform image).
    top_digest: String,
    /// The platform manifest's digest.
    manifest_digest: String,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

/// Names the reference in a manifest or config error.
fn manifest_error(r: &Reference) -> impl Fn(ManifestError) -> ImageError + Copy + '_ {
    move |source| ImageError::Manifest {
        reference: r.to_string(),
        source,
    }
}

/// The image config, which must list one diff id per layer of the manifest.
fn config_of(
    r: &Reference,
    image: &ResolvedImage,
    config_bytes: &[u8],
) -> Result<ImageConfig, ImageError> {
    let wrap = manifest_error(r);
    let cfg = manifest::parse_config(config_bytes, &image.config.digest).map_err(wrap)?;
    if cfg.diff_ids.len() != image.layers.len() {
        return Err(wrap(ManifestError::Config {
            digest: image.config.digest.clone(),
            message: format!(
                "it lists {} diff ids but manifest {} has {} layers",
                cfg.diff_ids.len(),
                image.manifest_digest,
                image.layers.len()
            ),
        }));
    }
    Ok(cfg)
}

/// The record of a pulled image.
fn image_record(
    r: &Reference,
    image: ResolvedImage,
    cfg: ImageConfig,
    chain: &[String],
) -> ImageRecord {
    ImageRecord {
        id: image.config.digest.clone(),
        repo_tags: r.repo_tag().into_iter().collect(),
        repo_digests: vec![r.with_digest(&image.top_digest)],
        size: image.config.size + image.layers.iter().map(|l| l.size).sum::<u64>(),
        manifest_digest: image.manifest_digest,
        layers: image
            .layers
            .iter()
            .zip(cfg.diff_ids.iter().zip(chain.iter()))
            .map(|(l, (diff_id, chain_id))| LayerRecord {
                digest: l.digest.clone(),
                diff_id: diff_id.clone(),
                chain_id: chain_id.clone(),
                size: l.size,
            })
            .collect(),
        run: cfg.run,
        pulled_at: crate::ids::now_nanos(),
    }
}

/// Downloads `layer` and unpacks it into `dest` as it arrives: the download
/// runs here, the unpack on a blocking thread fed through a channel.
async fn download_and_unpack(
    repo: &Repository,
    layer: &Descriptor,
    dest: &Path,
    cancel: &AtomicBool,
    progress: &PullProgress,
) -> Result<UnpackedLayer, ImageError> {
    let mut stream = repo.blob(&layer.digest, Some(layer.size)).await?;
    let (tx, rx) = mpsc::channel::<std::io::Result<Bytes>>(PIPE_DEPTH);
    let dest = dest.to_path_buf();
    let unpacker = tokio::task::spawn_blocking(move || {
        let reader = ChannelReader {
            rx,
            current: Bytes::new(),
        };
        unpack::unpack_layer(reader, &dest)
    });
    let download_error = forward_download(&mut stream, &tx, cancel, progress).await;
    drop(tx);
    let unpacked = unpacker
        .await
        .map_err(|e| ImageError::Internal(format!("unpack task: {e}")))?;
    if let Some(e) = download_error {
        return Err(e);
    }
    unpacked.map_err(|source| ImageError::Unpack {
        digest: layer.digest.clone(),
        source,
    })
}

/// Sends the download to the unpacker until it ends, fails, is cancelled or
/// the unpacker stops. A failure or cancellation also reaches the unpacker,
/// as a read error; it is returned.
async fn forward_download(
    stream: &mut BlobStream,
    tx: &mpsc::Sender<std::io::Result<Bytes>>,
    cancel: &AtomicBool,
    progress: &PullProgress,
) -> Option<ImageError> {
    loop {
        if cancel.load(Ordering::Relaxed) {
            let _ = tx.send(Err(std::io::Error::other("pull cancelled"))).await;
            return Some(ImageError::Internal("pull cancelled".into()));
        }
        match stream.chunk().await {
            Ok(Some(chunk)) => {
                progress.add(chunk.len());
                if tx.send(Ok(chunk)).await.is_err() {
                    // The unpacker stopped; its error says why.
                    return None;
                }
            }
            Ok(None) => return None,
            Err(e) => {
                let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                return Some(ImageError::Registry(e));
            }
        }
    }
}

/// A directory under `tmp/` that is deleted unless it is committed.
struct Staging {
    path: PathBuf,
    committed: bool,
}

impl Staging {
    fn create(path: PathBuf) -> Result<Staging, ImageError> {
        std::fs::create_dir(&path).map_err(ImageError::io("create", &path))?;
        Ok(Staging {
            path,
            committed: false,
        })
    }

    fn commit(mut self, target: &std::path::Path) -> Result<(), ImageError> {
        std::fs::rename(&self.path, target).map_err(ImageError::io("rename", target))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            if let Err(e) = super::remove_any(&self.path) {
                tracing::warn!(path = %self.path.display(), "cannot remove a failed unpack: {e}");
            }
        }
    }
}

/// The blocking unpacker's view of the download: chunks from a channel. A
/// download error arrives as an io error, which fails the unpack.
struct ChannelReader {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Flushes the filesystem holding `dir` (one syncfs, not an fsync per file).
async fn sync_filesystem(dir: &std::path::Path) -> Result<(), ImageError> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let f = std::fs::File::open(&dir).map_err(ImageError::io("open", &dir))?;
        nix::unistd::syncfs(&f).map_err(|e| ImageError::io("sync", &dir)(e.into()))
    })
    .await
    .map_err(|e| ImageError::Internal(format!("sync task: {e}")))?
}
