//! The pull workload: cold CRI PullImage calls (RemoveImage before each) of
//! an image whose size the registry's manifest tells, and the same pull by
//! `skopeo copy` + `umoci unpack` as a peer.

use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::command::run_command;
use crate::cri::image::ImageBench;
use crate::cri::{CALL_LIMIT, PULL_LIMIT};
use crate::error::{io_err, BenchError};
use crate::report::Report;

/// The pull peer that is not a CRI endpoint.
pub const SKOPEO_UMOCI: &str = "skopeo+umoci";

/// One `--pull` image and what its manifest says it weighs.
#[derive(Debug)]
pub struct PullJob {
    pub image: String,
    /// Short name for metric labels: the reference without its registry.
    pub label: String,
    pub layers: usize,
    /// Sum of the manifest's layer sizes (compressed bytes on the wire).
    pub layer_bytes: u64,
}

impl PullJob {
    fn metric(&self, what: &str) -> String {
        format!("pull {} {what}", self.label)
    }

    fn mb_per_s(&self, d: Duration) -> f64 {
        self.layer_bytes as f64 / 1e6 / d.as_secs_f64().max(1e-9)
    }
}

/// The reference without a leading registry host (`127.0.0.1:5000/big:latest`
/// -> `big:latest`); a first component is a host when it has a dot or a
/// port, or is localhost, as in Docker's reference grammar.
fn image_label(image: &str) -> &str {
    match image.split_once('/') {
        Some((host, rest)) if host.contains(['.', ':']) || host == "localhost" => rest,
        _ => image,
    }
}

/// The repository part of a reference (no tag, no digest).
fn image_repo(image: &str) -> &str {
    if let Some((repo, _)) = image.split_once('@') {
        return repo;
    }
    let name_start = image.rfind('/').map_or(0, |i| i + 1);
    match image[name_start..].rfind(':') {
        Some(i) => &image[..name_start + i],
        None => image,
    }
}

/// The architecture name OCI uses for this build's target.
fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// `skopeo inspect --raw` of a reference, as JSON.
async fn raw_manifest(image: &str, reference: &str) -> Result<serde_json::Value, BenchError> {
    let url = format!("docker://{reference}");
    let out = run_command(
        "skopeo",
        &["inspect", "--raw", "--tls-verify=false", &url],
        CALL_LIMIT,
    )
    .await?;
    serde_json::from_slice(&out).map_err(|e| BenchError::Manifest {
        image: image.to_string(),
        what: format!("{reference}: not JSON: {e}"),
    })
}

/// The layers of this platform's manifest of `image`, from the registry.
pub async fn pull_job(image: &str) -> Result<PullJob, BenchError> {
    let manifest_err = |what: String| BenchError::Manifest {
        image: image.to_string(),
        what,
    };
    let mut manifest = raw_manifest(image, image).await?;
    // An index (or Docker manifest list): take this platform's entry.
    if let Some(entries) = manifest.get("manifests").and_then(|m| m.as_array()) {
        let digest = entries
            .iter()
            .find(|e| {
                let platform = e.get("platform");
                let field = |k: &str| platform.and_then(|p| p.get(k)).and_then(|v| v.as_str());
                field("os") == Some("linux") && field("architecture") == Some(oci_arch())
            })
            .and_then(|e| e.get("digest"))
            .and_then(|d| d.as_str())
            .ok_or_else(|| manifest_err(format!("the index has no linux/{} entry", oci_arch())))?
            .to_string();
        let by_digest = format!("{}@{digest}", image_repo(image));
        manifest = raw_manifest(image, &by_digest).await?;
    }
    let layers = manifest
        .get("layers")
        .and_then(|l| l.as_array())
        .ok_or_else(|| manifest_err("no layers array".into()))?;
    let mut layer_bytes = 0u64;
    for (i, l) in layers.iter().enumerate() {
        let size = l
            .get("size")
            .and_then(|s| s.as_u64())
            .ok_or_else(|| manifest_err(format!("layers[{i}] has no size")))?;
        layer_bytes += size;
    }
    Ok(PullJob {
        image: image.to_string(),
        label: image_label(image).to_string(),
        layers: layers.len(),
        layer_bytes,
    })
}

/// Bytes allocated under `root` (each inode once, not crossing mounts), like
/// `du -s`.
fn tree_bytes(root: &Path) -> Result<u64, BenchError> {
    let top = std::fs::symlink_metadata(root).map_err(io_err(root))?;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            // A runtime may delete while we walk.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(&dir)(e)),
        };
        for entry in entries.flatten() {
            let Ok(md) = entry.metadata() else {
                continue;
            };
            if md.dev() != top.dev() {
                continue;
            }
            if md.nlink() > 1 && !md.is_dir() && !seen.insert(md.ino()) {
                continue;
            }
            total += md.blocks() * 512;
            if md.is_dir() {
                dirs.push(entry.path());
            }
        }
    }
    Ok(total)
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

impl ImageBench {
    fn store_bytes(&self) -> Result<Option<u64>, BenchError> {
        self.store.as_deref().map(tree_bytes).transpose()
    }

    /// `runs` cold pulls of `job`'s image, then RemoveImage.
    pub async fn bench_pull(
        &mut self,
        job: &PullJob,
        runs: usize,
        report: &mut Report,
    ) -> Result<(), BenchError> {
        eprintln!(
            "[{}] pull {}: {runs} cold PullImage calls ({} layers, {:.1} MB compressed)",
            self.name,
            job.image,
            job.layers,
            mb(job.layer_bytes)
        );
        // A RemoveImage of a missing image succeeds.
        self.ensure_absent(&job.image).await?;
        let start_bytes = self.store_bytes()?;
        let mut durations = Vec::with_capacity(runs);
        let mut status_size = 0;
        for run in 1..=runs {
            let (took, size) = self.cold_pull(job, run, runs, report).await?;
            durations.push(took);
            status_size = size;
        }
        self.remove(&job.image).await?;
        let mut note = format!(
            "{}: {} is {} layers, {} bytes compressed (manifest layer sizes, used for MB/s); ImageStatus size {status_size}",
            self.name, job.image, job.layers, job.layer_bytes
        );
        if let (Some(s), Some(e)) = (start_bytes, self.store_bytes()?) {
            let _ = write!(
                note,
                "; store {:.1} MB before the first pull, {:.1} MB after the last RemoveImage",
                mb(s),
                mb(e)
            );
        }
        report.notes.push(note);
        let rates = durations.iter().map(|d| job.mb_per_s(*d)).collect();
        report.add_durations(&self.name, &job.metric("PullImage"), &durations);
        report.add(&self.name, &job.metric("throughput"), "MB/s", rates);
        Ok(())
    }

    /// Pull `run` of `runs`: RemoveImage, a timed PullImage, ImageStatus,
    /// with a note when the store grew by less than half the image (a cache
    /// hit). Returns the pull's time and ImageStatus's size.
    async fn cold_pull(
        &mut self,
        job: &PullJob,
        run: usize,
        runs: usize,
        report: &mut Report,
    ) -> Result<(Duration, u64), BenchError> {
        self.ensure_absent(&job.image).await?;
        let before = self.store_bytes()?;
        let took = self.pull(job).await?;
        let after = self.store_bytes()?;
        let Some(img) = self.status(&job.image).await? else {
            return Err(BenchError::Unexpected {
                target: self.name.clone(),
                call: "ImageStatus",
                what: format!("{} not found after PullImage", job.image),
            });
        };
        let mut line = format!(
            "[{}] pull {run}/{runs}: {:.3} s, {:.1} MB/s",
            self.name,
            took.as_secs_f64(),
            job.mb_per_s(took)
        );
        if let (Some(b), Some(a)) = (before, after) {
            let grown = a.saturating_sub(b);
            let _ = write!(
                line,
                ", store {:.1} MB before, +{:.1} MB by the pull",
                mb(b),
                mb(grown)
            );
            if grown < job.layer_bytes / 2 {
                report.notes.push(format!(
                    "{}: pull {run} of {} added only {:.1} MB to the store: a cache hit?",
                    self.name,
                    job.image,
                    mb(grown)
                ));
            }
        }
        eprintln!("{line}");
        Ok((took, img.size))
    }
}

/// The skopeo+umoci peer: `skopeo copy` from the registry into a new OCI
/// layout, then `umoci unpack` into a new bundle, timed together; both
/// directories are removed before every run, so nothing is cached.
pub async fn bench_pull_peer(
    dir: &Path,
    job: &PullJob,
    runs: usize,
    report: &mut Report,
) -> Result<(), BenchError> {
    let name = SKOPEO_UMOCI;
    eprintln!(
        "[{name}] pull {}: {runs} runs of skopeo copy + umoci unpack",
        job.image
    );
    let (mut durations, mut rates) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    for run in 1..=runs {
        let (copied, took) = skopeo_umoci_pull(dir, &job.image).await?;
        eprintln!(
            "[{name}] pull {run}/{runs}: {:.3} s (copy {:.3} s, unpack {:.3} s), {:.1} MB/s",
            took.as_secs_f64(),
            copied.as_secs_f64(),
            (took - copied).as_secs_f64(),
            job.mb_per_s(took)
        );
        durations.push(took);
        rates.push(job.mb_per_s(took));
    }
    std::fs::remove_dir_all(dir).map_err(io_err(dir))?;
    report.add_durations(name, &job.metric("PullImage"), &durations);
    report.add(name, &job.metric("throughput"), "MB/s", rates);
    Ok(())
}

/// One pull of `image` by the peer into fresh directories under `dir`:
/// the time of the copy, and of the copy and the unpack together.
async fn skopeo_umoci_pull(dir: &Path, image: &str) -> Result<(Duration, Duration), BenchError> {
    let layout = dir.join("oci");
    let bundle = dir.join("bundle");
    for d in [&layout, &bundle] {
        match std::fs::remove_dir_all(d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(d)(e)),
        }
    }
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let src = format!("docker://{image}");
    let dst = format!("oci:{}:pull", layout.display());
    let image_arg = format!("{}:pull", layout.display());
    let bundle_arg = bundle.to_string_lossy().into_owned();
    let start = Instant::now();
    run_command(
        "skopeo",
        &[
            "--insecure-policy",
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            &src,
            &dst,
        ],
        PULL_LIMIT,
    )
    .await?;
    let copied = start.elapsed();
    run_command(
        "umoci",
        &["unpack", "--image", &image_arg, &bundle_arg],
        PULL_LIMIT,
    )
    .await?;
    Ok((copied, start.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_reference_parts() {
        assert_eq!(image_label("127.0.0.1:5000/big:latest"), "big:latest");
        assert_eq!(image_label("registry.k8s.io/pause:3.9"), "pause:3.9");
        assert_eq!(image_label("library/busybox"), "library/busybox");
        assert_eq!(
            image_repo("127.0.0.1:5000/big:latest"),
            "127.0.0.1:5000/big"
        );
        assert_eq!(image_repo("127.0.0.1:5000/big"), "127.0.0.1:5000/big");
        assert_eq!(image_repo("h/big@sha256:ab"), "h/big");
    }
}
