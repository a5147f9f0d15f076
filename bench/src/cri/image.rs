//! A target's ImageService, called as kubelet calls it.

use std::path::PathBuf;
use std::time::Duration;

use peapod::api::image_service_client::ImageServiceClient;
use peapod::api::{Image, ImageSpec, ImageStatusRequest, PullImageRequest, RemoveImageRequest};
use tonic::transport::Channel;

use super::{call, CALL_LIMIT, PULL_LIMIT};
use crate::error::BenchError;
use crate::pull::PullJob;
use crate::run::{track_in, tracked_in, untrack_in, Shared};

/// The container workload's image as kubelet names it in CreateContainer.
#[derive(Debug, Clone)]
pub struct BenchImage {
    /// The name in the pod spec (`user_specified_image`).
    pub name: String,
    /// The image id ImageStatus answers (`image.image`).
    pub id: String,
}

/// The image workload's view of one CRI target.
pub struct ImageBench {
    pub name: String,
    pub client: ImageServiceClient<Channel>,
    /// `--store-of`: the target's on-disk image store.
    pub store: Option<PathBuf>,
}

impl ImageBench {
    /// An ImageSpec naming `image`.
    pub fn spec(image: &str) -> Option<ImageSpec> {
        Some(ImageSpec {
            image: image.to_string(),
            ..Default::default()
        })
    }

    pub async fn remove(&mut self, image: &str) -> Result<(), BenchError> {
        let req = RemoveImageRequest {
            image: Self::spec(image),
        };
        call(
            &self.name,
            "RemoveImage",
            CALL_LIMIT,
            self.client.remove_image(req),
        )
        .await?;
        Ok(())
    }

    pub async fn status(&mut self, image: &str) -> Result<Option<Image>, BenchError> {
        let req = ImageStatusRequest {
            image: Self::spec(image),
            verbose: false,
        };
        let (resp, _) = call(
            &self.name,
            "ImageStatus",
            CALL_LIMIT,
            self.client.image_status(req),
        )
        .await?;
        Ok(resp.image)
    }

    /// Kubelet's way to an image id: ImageStatus, PullImage when absent,
    /// ImageStatus again. An image pulled here is tracked for removal.
    pub async fn ensure_image(
        &mut self,
        shared: &Shared,
        image: &str,
    ) -> Result<BenchImage, BenchError> {
        let img = match self.status(image).await? {
            Some(img) => img,
            None => {
                eprintln!("[{}] pulling {image}", self.name);
                track_in(&shared.pulled, &self.name, image);
                let req = PullImageRequest {
                    image: Self::spec(image),
                    auth: None,
                    sandbox_config: None,
                };
                call(
                    &self.name,
                    "PullImage",
                    PULL_LIMIT,
                    self.client.pull_image(req),
                )
                .await?;
                self.status(image)
                    .await?
                    .ok_or_else(|| BenchError::Unexpected {
                        target: self.name.clone(),
                        call: "ImageStatus",
                        what: format!("{image} not found after PullImage"),
                    })?
            }
        };
        if img.id.is_empty() {
            return Err(BenchError::Unexpected {
                target: self.name.clone(),
                call: "ImageStatus",
                what: format!("{image} has an empty id"),
            });
        }
        Ok(BenchImage {
            name: image.to_string(),
            id: img.id,
        })
    }

    /// Removes `image` if this bench pulled it.
    pub async fn remove_pulled(&mut self, shared: &Shared, image: &str) -> Result<(), BenchError> {
        if !tracked_in(&shared.pulled, &self.name)
            .iter()
            .any(|i| i == image)
        {
            return Ok(());
        }
        self.remove(image).await?;
        untrack_in(&shared.pulled, &self.name, image);
        Ok(())
    }

    /// RemoveImage, and check that the image is gone.
    pub async fn ensure_absent(&mut self, image: &str) -> Result<(), BenchError> {
        self.remove(image).await?;
        match self.status(image).await? {
            None => Ok(()),
            Some(img) => Err(BenchError::Unexpected {
                target: self.name.clone(),
                call: "ImageStatus",
                what: format!("{image} (id {}) is still listed after RemoveImage", img.id),
            }),
        }
    }

    /// One timed PullImage.
    pub async fn pull(&mut self, job: &PullJob) -> Result<Duration, BenchError> {
        let req = PullImageRequest {
            image: Self::spec(&job.image),
            auth: None,
            sandbox_config: None,
        };
        let (resp, took) = call(
            &self.name,
            "PullImage",
            PULL_LIMIT,
            self.client.pull_image(req),
        )
        .await?;
        if resp.image_ref.is_empty() {
            return Err(BenchError::Unexpected {
                target: self.name.clone(),
                call: "PullImage",
                what: format!("empty image_ref for {}", job.image),
            });
        }
        Ok(took)
    }
}
