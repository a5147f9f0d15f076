//! The CRI `ImageService`. Pulling is not implemented yet, so the image
//! store is empty: listing and status answer truthfully from it, and
//! ImageFsInfo measures the image directory for kubelet's image GC.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{rpc, unimplemented, Daemon};
use crate::api;
use crate::api::image_service_server::ImageService;

const IMAGES: &str = "image pulls (the image store)";

pub struct ImageApi {
    daemon: Arc<Daemon>,
}

impl ImageApi {
    pub fn new(daemon: Arc<Daemon>) -> Self {
        ImageApi { daemon }
    }
}

/// Bytes and inodes used below `dir` (not following symlinks or mounts).
fn usage(dir: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let root_dev = std::fs::symlink_metadata(dir)?.dev();
    let (mut bytes, mut inodes) = (0u64, 0u64);
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = match std::fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if m.dev() != root_dev || !seen.insert(m.ino()) {
            continue;
        }
        inodes += 1;
        bytes += m.blocks() * 512;
        if m.is_dir() {
            for e in std::fs::read_dir(&p)? {
                stack.push(e?.path());
            }
        }
    }
    Ok((bytes, inodes))
}

/// The mount point of the filesystem holding `path`.
fn mount_point(path: &Path) -> PathBuf {
    use std::os::unix::fs::MetadataExt;
    let Ok(dev) = std::fs::metadata(path).map(|m| m.dev()) else {
        return path.to_path_buf();
    };
    let mut cur = path.to_path_buf();
    while let Some(parent) = cur.parent() {
        match std::fs::metadata(parent) {
            Ok(m) if m.dev() == dev => cur = parent.to_path_buf(),
            _ => break,
        }
    }
    cur
}

#[tonic::async_trait]
impl ImageService for ImageApi {
    async fn list_images(
        &self,
        _req: Request<api::ListImagesRequest>,
    ) -> Result<Response<api::ListImagesResponse>, Status> {
        rpc("ListImages", "", async {
            Ok(api::ListImagesResponse { images: vec![] })
        })
        .await
    }

    async fn image_status(
        &self,
        req: Request<api::ImageStatusRequest>,
    ) -> Result<Response<api::ImageStatusResponse>, Status> {
        let image = req.into_inner().image.map(|i| i.image).unwrap_or_default();
        rpc("ImageStatus", &image, async {
            if image.is_empty() {
                return Err(Status::invalid_argument("image.image: must not be empty"));
            }
            // An unknown image is a null image, not an error.
            Ok(api::ImageStatusResponse {
                image: None,
                info: Default::default(),
            })
        })
        .await
    }

    async fn pull_image(
        &self,
        _req: Request<api::PullImageRequest>,
    ) -> Result<Response<api::PullImageResponse>, Status> {
        Err(unimplemented("PullImage", IMAGES))
    }

    async fn remove_image(
        &self,
        _req: Request<api::RemoveImageRequest>,
    ) -> Result<Response<api::RemoveImageResponse>, Status> {
        Err(unimplemented("RemoveImage", IMAGES))
    }

    async fn image_fs_info(
        &self,
        _req: Request<api::ImageFsInfoRequest>,
    ) -> Result<Response<api::ImageFsInfoResponse>, Status> {
        let dir = self.daemon.config.images_dir();
        rpc("ImageFsInfo", "", async move {
            let measured = tokio::task::spawn_blocking(move || {
                std::fs::create_dir_all(&dir)?;
                let (bytes, inodes) = usage(&dir)?;
                Ok::<_, std::io::Error>((bytes, inodes, mount_point(&dir)))
            })
            .await
            .map_err(|e| Status::internal(format!("image fs task: {e}")))?
            .map_err(|e| Status::internal(format!("measure image store: {e}")))?;
            let (bytes, inodes, mountpoint) = measured;
            let fs = api::FilesystemUsage {
                timestamp: crate::ids::now_nanos(),
                fs_id: Some(api::FilesystemIdentifier {
                    mountpoint: mountpoint.to_string_lossy().into_owned(),
                }),
                used_bytes: Some(api::UInt64Value { value: bytes }),
                inodes_used: Some(api::UInt64Value { value: inodes }),
            };
            Ok(api::ImageFsInfoResponse {
                image_filesystems: vec![fs.clone()],
                container_filesystems: vec![fs],
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_files_and_dirs() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a"), vec![1u8; 10000]).unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        let (bytes, inodes) = usage(d.path()).unwrap();
        assert_eq!(inodes, 3);
        assert!(bytes >= 10000, "{bytes}");
        assert!(mount_point(d.path()).is_absolute());
    }
}
