//! CheckpointContainer: a running container's processes dumped by CRIU
//! through the OCI runtime (the container keeps running), packed with its
//! OCI spec, its status and its writable layer's changes into one
//! uncompressed tar archive at the path kubelet gives, laid out as CRI-O's
//! so that `checkpointctl` reads it (see [`archive`]).
//!
//! CRIU writes into a staging directory under `<root>/checkpoints` (the
//! images can be as large as the container's memory, so not on the tmpfs
//! state dir), removed again whatever happens (after a crash, by the next
//! start); the archive is written
//! beside its destination and renamed into place only once complete, so a
//! failure leaves neither.

mod archive;

use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::{info, warn};

use super::{ContainerEntry, ContainerRecord, ContainerState, Containers};
use crate::errors::Error;
use crate::objects::operate;
use crate::oci::OciError;

/// How long CRIU may take when the request gives no timeout.
pub const DEFAULT_CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(240);

/// A checked CheckpointContainer request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRequest {
    /// The archive to write: absolute, in an existing directory, not there
    /// yet.
    pub location: PathBuf,
    pub timeout: Duration,
}

impl CheckpointRequest {
    /// Checks `location` (the request field of that name) and turns a
    /// timeout in seconds (0: the default) into a duration.
    pub fn new(location: &str, timeout_secs: i64) -> Result<CheckpointRequest, Error> {
        let location = PathBuf::from(location);
        if location.as_os_str().is_empty() {
            return Err(Error::invalid("location", "must not be empty"));
        }
        if !location.is_absolute() {
            return Err(Error::invalid(
                "location",
                format!("{} is not an absolute path", location.display()),
            ));
        }
        if location.file_name().is_none() {
            return Err(Error::invalid(
                "location",
                format!("{} names no file", location.display()),
            ));
        }
        let timeout = match timeout_secs {
            t if t > 0 => Duration::from_secs(t as u64),
            _ => DEFAULT_CHECKPOINT_TIMEOUT,
        };
        Ok(CheckpointRequest { location, timeout })
    }
}

impl Containers {
    /// CheckpointContainer.
    pub async fn checkpoint(&self, id: &str, req: CheckpointRequest) -> Result<(), Error> {
        check_destination(&req.location)?;
        let entry = self.registry.lookup(id)?;
        let this = self.arc();
        operate(entry, "checkpoint", |entry| async move {
            this.checkpoint_locked(&entry, req).await
        })
        .await
    }

    async fn checkpoint_locked(
        &self,
        entry: &ContainerEntry,
        req: CheckpointRequest,
    ) -> Result<(), Error> {
        let rec = entry.snapshot();
        if rec.state != ContainerState::Running {
            return Err(Error::FailedPrecondition(format!(
                "container {} is not running: only a running container can be checkpointed",
                rec.id
            )));
        }
        let staging = Staging::create(&self.checkpoints_dir(), &rec.id)?;
        self.dump(&rec, &staging, req.timeout).await?;
        let (rec, location) = (rec.clone(), req.location.clone());
        let spec = rec.bundle().join("config.json");
        let staged = staging.dir.clone();
        tokio::task::spawn_blocking(move || {
            archive::write_archive(&rec, &spec, &staged, &location)
        })
        .await
        .map_err(|e| Error::internal("checkpoint archive task", e))??;
        info!(container = %entry.snapshot().id, location = %req.location.display(), "checkpointed");
        Ok(())
    }

    /// Has CRIU dump the container's processes into the staging directory.
    async fn dump(
        &self,
        rec: &ContainerRecord,
        staging: &Staging,
        timeout: Duration,
    ) -> Result<(), Error> {
        let runtime = self.runtime(&rec.runtime_handler)?;
        runtime
            .checkpoint(&rec.handle(), &staging.images(), &staging.work(), timeout)
            .await
            .map_err(|e| match e {
                e @ OciError::CheckpointRefused { .. } => Error::FailedPrecondition(e.to_string()),
                e @ OciError::Timeout { .. } => Error::DeadlineExceeded(e.to_string()),
                e => Error::Internal(e.to_string()),
            })
    }

    fn checkpoints_dir(&self) -> PathBuf {
        self.config.root_dir.join("checkpoints")
    }

    /// At start, the staging directories of checkpoints a crash cut short
    /// (none runs yet).
    pub(super) fn sweep_checkpoint_staging(&self) {
        let dir = self.checkpoints_dir();
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                warn!("remove checkpoint staging {}: {e}", dir.display());
            }
        }
    }
}

/// The archive's directory must exist and the archive must not.
fn check_destination(location: &Path) -> Result<(), Error> {
    let dir = location.parent().unwrap_or(Path::new("/"));
    if !dir.is_dir() {
        return Err(Error::invalid(
            "location",
            format!("directory {} does not exist", dir.display()),
        ));
    }
    if location.symlink_metadata().is_ok() {
        return Err(Error::AlreadyExists(format!(
            "location: {} exists already",
            location.display()
        )));
    }
    Ok(())
}

/// The directory CRIU dumps into and the archive is assembled from;
/// removed when dropped.
struct Staging {
    dir: PathBuf,
}

impl Staging {
    fn create(parent: &Path, id: &str) -> Result<Staging, Error> {
        let dir = parent.join(format!("{id}-{}", crate::ids::now_nanos()));
        let staging = Staging { dir };
        for d in [staging.images(), staging.work()] {
            std::fs::create_dir_all(&d)
                .map_err(|e| Error::internal(&format!("create {}", d.display()), e))?;
        }
        Ok(staging)
    }

    /// CRIU's image files: the archive's `checkpoint/`.
    fn images(&self) -> PathBuf {
        self.dir.join(archive::CHECKPOINT_DIR)
    }

    /// CRIU's log and work files.
    fn work(&self) -> PathBuf {
        self.dir.join("work")
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                warn!("remove checkpoint staging {}: {e}", self.dir.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_name_the_location_at_fault() {
        let field = |r: Result<CheckpointRequest, Error>| match r {
            Err(Error::InvalidArgument { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(CheckpointRequest::new("", 0)), "location");
        assert_eq!(field(CheckpointRequest::new("c.tar", 0)), "location");
        assert_eq!(field(CheckpointRequest::new("/", 0)), "location");
        let ok = CheckpointRequest::new("/var/lib/kubelet/checkpoints/c.tar", 0).unwrap();
        assert_eq!(ok.timeout, DEFAULT_CHECKPOINT_TIMEOUT);
        assert_eq!(
            CheckpointRequest::new("/c.tar", 7).unwrap().timeout,
            Duration::from_secs(7)
        );
    }

    #[test]
    fn the_destination_must_be_new_in_an_existing_directory() {
        let d = tempfile::tempdir().unwrap();
        assert!(check_destination(&d.path().join("c.tar")).is_ok());
        assert!(matches!(
            check_destination(&d.path().join("no/c.tar")),
            Err(Error::InvalidArgument { .. })
        ));
        std::fs::write(d.path().join("c.tar"), "").unwrap();
        assert!(matches!(
            check_destination(&d.path().join("c.tar")),
            Err(Error::AlreadyExists(_))
        ));
    }

    #[test]
    fn staging_is_removed_when_dropped() {
        let d = tempfile::tempdir().unwrap();
        let dir = {
            let s = Staging::create(d.path(), "abc").unwrap();
            assert!(s.images().is_dir() && s.work().is_dir());
            s.dir.clone()
        };
        assert!(!dir.exists());
    }

    /// The entries of the archive at `path`, sorted.
    fn entries(path: &Path) -> Vec<String> {
        let file = std::fs::File::open(path).unwrap();
        let mut names: Vec<String> = tar::Archive::new(file)
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        names.sort();
        names
    }

    /// The entries of the tar `name` inside the archive at `path`.
    fn inner_entries(path: &Path, name: &str) -> Vec<String> {
        use std::io::Read;
        let mut archive = tar::Archive::new(std::fs::File::open(path).unwrap());
        let mut inner = Vec::new();
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            if e.path().unwrap() == Path::new(name) {
                e.read_to_end(&mut inner).unwrap();
            }
        }
        tar::Archive::new(&inner[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect()
    }

    #[tokio::test]
    async fn a_dump_is_packed_and_a_refused_one_leaves_nothing() {
        use super::super::tests::{container_spec, with_pod};
        let (h, d, pod) = with_pod().await;
        let id = d
            .containers
            .create(container_spec(&pod, "app"))
            .await
            .unwrap();
        let out = tempfile::tempdir().unwrap();
        let location = out.path().join("c.tar");
        let req = |l: &Path| CheckpointRequest::new(&l.to_string_lossy(), 5).unwrap();
        let created = d.containers.checkpoint(&id, req(&location)).await;
        assert!(
            matches!(created, Err(Error::FailedPrecondition(ref m)) if m.contains("not running")),
            "{created:?}"
        );

        d.containers.start(&id).await.unwrap();
        let rec = d.containers.status(&id).unwrap();
        std::fs::create_dir_all(rec.upper_dir()).unwrap();
        std::fs::write(rec.upper_dir().join("count"), "3\n").unwrap();
        d.containers.checkpoint(&id, req(&location)).await.unwrap();
        assert_eq!(
            entries(&location),
            [
                "checkpoint/",
                "checkpoint/inventory.img",
                "config.dump",
                "dump.log",
                "rootfs-diff.tar",
                "spec.dump",
                "status.dump"
            ]
        );
        assert_eq!(inner_entries(&location, "rootfs-diff.tar"), ["count"]);
        let staging = d.containers.checkpoints_dir();
        assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 0);

        let refused = out.path().join("refused.tar");
        h.world
            .fault_at(h.world.log().len() + 1, crate::testing::Fault::Fail);
        let err = d.containers.checkpoint(&id, req(&refused)).await;
        assert!(matches!(err, Err(Error::FailedPrecondition(_))), "{err:?}");
        assert_eq!(h.world.hit(), ["runtime checkpoint"]);
        assert!(!refused.exists());
        assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 1);
        assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn the_next_start_removes_what_a_crash_left_staged() {
        use super::super::tests::{start, with_pod};
        let (h, d, _pod) = with_pod().await;
        let left = d.containers.checkpoints_dir().join("abc-1/checkpoint");
        std::fs::create_dir_all(&left).unwrap();
        drop(d);
        let d = start(&h).await;
        assert!(!d.containers.checkpoints_dir().exists());
    }
}
