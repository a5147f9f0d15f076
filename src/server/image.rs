//! The CRI `ImageService`: requests are checked and converted here, the
//! image store (`crate::image`) does the work.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{rpc, stream_in_chunks, Daemon};
use crate::api;
use crate::api::image_service_server::ImageService;
use crate::image::manifest::image_user;
use crate::image::registry::RegistryError;
use crate::image::{Credentials, ImageError, ImageRecord};

pub struct ImageApi {
    daemon: Arc<Daemon>,
}

impl ImageApi {
    pub fn new(daemon: Arc<Daemon>) -> Self {
        ImageApi { daemon }
    }
}

/// An image store error as a gRPC status.
fn image_status_of(e: ImageError) -> Status {
    let msg = e.to_string();
    match &e {
        ImageError::Reference(_) | ImageError::InvalidArgument(_) => Status::invalid_argument(msg),
        ImageError::Manifest { .. } => Status::failed_precondition(msg),
        ImageError::Registry(r) => match r {
            RegistryError::NotFound { .. } => Status::not_found(msg),
            RegistryError::Unauthorized { .. } => Status::unauthenticated(msg),
            RegistryError::InvalidCredentials { .. } | RegistryError::InvalidReference { .. } => {
                Status::invalid_argument(msg)
            }
            RegistryError::Unsupported { .. } => Status::failed_precondition(msg),
            RegistryError::Connect { .. } => Status::unavailable(msg),
            RegistryError::Blocked { .. } => Status::permission_denied(msg),
            RegistryError::Stalled { .. } => Status::deadline_exceeded(msg),
            RegistryError::NodeFile { .. } => Status::failed_precondition(msg),
            _ => Status::unknown(msg),
        },
        ImageError::Unpack { .. } | ImageError::DiffId { .. } => Status::unknown(msg),
        ImageError::Io { .. } | ImageError::Store(_) | ImageError::Internal(_) => {
            Status::internal(msg)
        }
    }
}

fn to_api(rec: &ImageRecord) -> api::Image {
    let (uid, username) = image_user(&rec.run.user);
    api::Image {
        id: rec.id.clone(),
        repo_tags: rec.repo_tags.clone(),
        repo_digests: rec.repo_digests.clone(),
        size: rec.size,
        uid: uid.map(|value| api::Int64Value { value }),
        username,
        spec: Some(api::ImageSpec {
            image: rec.id.clone(),
            ..Default::default()
        }),
        pinned: false,
    }
}

/// `image.image` as sent (maybe empty), to name the request in logs.
fn spec_name(spec: &Option<api::ImageSpec>) -> String {
    spec.as_ref().map(|s| s.image.clone()).unwrap_or_default()
}

/// The image a request names: `image.image` must be set.
fn require_name(name: &str) -> Result<(), Status> {
    if name.is_empty() {
        return Err(Status::invalid_argument("image.image: must not be empty"));
    }
    Ok(())
}

fn credentials(auth: Option<api::AuthConfig>) -> Result<Credentials, Status> {
    match auth {
        None => Ok(Credentials::Anonymous),
        Some(a) => Credentials::from_auth_config(
            &a.username,
            &a.password,
            &a.auth,
            &a.identity_token,
            &a.registry_token,
        )
        .map_err(|e| Status::invalid_argument(format!("auth: {e}"))),
    }
}

impl ImageApi {
    fn list(&self, filter: Option<api::ImageFilter>) -> Result<Vec<api::Image>, Status> {
        let wanted = filter
            .and_then(|f| f.image)
            .map(|s| s.image)
            .unwrap_or_default();
        if wanted.is_empty() {
            return Ok(self
                .daemon
                .images
                .list()
                .iter()
                .map(|r| to_api(r))
                .collect());
        }
        // A filter that is not a valid name matches nothing.
        Ok(match self.daemon.images.get(&wanted) {
            Ok(Some(r)) => vec![to_api(&r)],
            _ => vec![],
        })
    }
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
        req: Request<api::ListImagesRequest>,
    ) -> Result<Response<api::ListImagesResponse>, Status> {
        let filter = req.into_inner().filter;
        rpc("ListImages", "", async {
            Ok(api::ListImagesResponse {
                images: self.list(filter)?,
            })
        })
        .await
    }

    async fn stream_images(
        &self,
        req: Request<api::StreamImagesRequest>,
    ) -> Result<Response<tonic::codegen::BoxStream<api::StreamImagesResponse>>, Status> {
        let images = self.list(req.into_inner().filter)?;
        Ok(Response::new(stream_in_chunks(images, |images| {
            api::StreamImagesResponse { images }
        })))
    }

    async fn image_status(
        &self,
        req: Request<api::ImageStatusRequest>,
    ) -> Result<Response<api::ImageStatusResponse>, Status> {
        let req = req.into_inner();
        let verbose = req.verbose;
        let name = spec_name(&req.image);
        rpc("ImageStatus", &name, async {
            require_name(&name)?;
            // An unknown image is a null image, not an error.
            let Some(rec) = self.daemon.images.get(&name).map_err(image_status_of)? else {
                return Ok(api::ImageStatusResponse::default());
            };
            let mut info = std::collections::HashMap::new();
            if verbose {
                info.insert("info".to_string(), self.verbose_info(&rec));
            }
            Ok(api::ImageStatusResponse {
                image: Some(to_api(&rec)),
                info,
            })
        })
        .await
    }

    async fn pull_image(
        &self,
        req: Request<api::PullImageRequest>,
    ) -> Result<Response<api::PullImageResponse>, Status> {
        let req = req.into_inner();
        let name = spec_name(&req.image);
        rpc("PullImage", &name, async {
            require_name(&name)?;
            let creds = credentials(req.auth)?;
            // The pull runs in a task of its own: a client that gives up
            // does not leave a half-unpacked layer behind.
            let images = self.daemon.images.clone();
            let rec = tokio::spawn(images.pull(name.clone(), creds))
                .await
                .map_err(|e| Status::internal(format!("pull task: {e}")))?
                .map_err(image_status_of)?;
            Ok(api::PullImageResponse {
                image_ref: rec.id.clone(),
            })
        })
        .await
    }

    async fn remove_image(
        &self,
        req: Request<api::RemoveImageRequest>,
    ) -> Result<Response<api::RemoveImageResponse>, Status> {
        let req = req.into_inner();
        let name = spec_name(&req.image);
        rpc("RemoveImage", &name, async {
            require_name(&name)?;
            self.daemon
                .images
                .remove(&name)
                .await
                .map_err(image_status_of)?;
            Ok(api::RemoveImageResponse {})
        })
        .await
    }

    async fn image_fs_info(
        &self,
        _req: Request<api::ImageFsInfoRequest>,
    ) -> Result<Response<api::ImageFsInfoResponse>, Status> {
        let images = self.daemon.images.clone();
        rpc("ImageFsInfo", "", async move {
            let measured = tokio::task::spawn_blocking(move || {
                let (bytes, inodes) = images.disk_usage()?;
                Ok::<_, std::io::Error>((bytes, inodes, mount_point(images.dir())))
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

impl ImageApi {
    /// `ImageStatus` verbose info: the record, where its layers are
    /// unpacked, and the image config as pulled.
    fn verbose_info(&self, rec: &ImageRecord) -> String {
        let images = &self.daemon.images;
        let config = images
            .config_json(&rec.id)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .unwrap_or(serde_json::Value::Null);
        let layers: Vec<_> = rec
            .layers
            .iter()
            .map(|l| {
                serde_json::json!({
                    "digest": l.digest,
                    "diffID": l.diff_id,
                    "chainID": l.chain_id,
                    "size": l.size,
                    "dir": images.layer_dir(&l.chain_id),
                })
            })
            .collect();
        serde_json::json!({
            "id": rec.id,
            "manifestDigest": rec.manifest_digest,
            "chainID": rec.layers.last().map(|l| l.chain_id.clone()),
            "layers": layers,
            "imageSpec": config,
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_point_is_absolute() {
        let d = tempfile::tempdir().unwrap();
        assert!(mount_point(d.path()).is_absolute());
    }
}
