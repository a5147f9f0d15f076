//! The checkpoint archive: an uncompressed tar with the entries CRI-O
//! writes and `checkpointctl` reads —
//!
//! - `checkpoint/`: CRIU's image files (`inventory.img`, ...);
//! - `config.dump`: which container it was (JSON: id, name, image, runtime,
//!   creation and checkpoint times);
//! - `spec.dump`: the container's OCI spec (its `config.json`);
//! - `status.dump`: its status when checkpointed (JSON);
//! - `rootfs-diff.tar`: what the container changed in its root
//!   filesystem, the files of its writable layer;
//! - `deleted.files`: what it deleted from the image (JSON list of paths),
//!   only when it deleted something;
//! - `dump.log`: CRIU's log of the dump.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde_json::json;

use super::super::ContainerRecord;
use crate::errors::Error;

pub const CHECKPOINT_DIR: &str = "checkpoint";
const CONFIG_DUMP: &str = "config.dump";
const SPEC_DUMP: &str = "spec.dump";
const STATUS_DUMP: &str = "status.dump";
const ROOTFS_DIFF: &str = "rootfs-diff.tar";
const DELETED_FILES: &str = "deleted.files";
const DUMP_LOG: &str = "dump.log";

/// Writes the metadata and the root filesystem's changes beside CRIU's
/// images in `staged`, then packs them into the archive at `location`
/// (written beside it and renamed into place once complete).
pub fn write_archive(
    rec: &ContainerRecord,
    spec: &Path,
    staged: &Path,
    location: &Path,
) -> Result<(), Error> {
    let io_err = |what: &str| {
        let what = what.to_string();
        move |e: io::Error| Error::internal(&what, e)
    };
    std::fs::copy(spec, staged.join(SPEC_DUMP)).map_err(io_err("copy the OCI spec"))?;
    write_json(&staged.join(CONFIG_DUMP), &config_dump(rec)).map_err(io_err(CONFIG_DUMP))?;
    write_json(&staged.join(STATUS_DUMP), &status_dump(rec)).map_err(io_err(STATUS_DUMP))?;
    let deleted = write_rootfs_diff(&rec.upper_dir(), &staged.join(ROOTFS_DIFF))
        .map_err(io_err("pack the writable layer"))?;
    if !deleted.is_empty() {
        write_json(&staged.join(DELETED_FILES), &json!(deleted)).map_err(io_err(DELETED_FILES))?;
    }
    let partial = partial_path(location);
    let packed = pack(staged, &partial).and_then(|()| std::fs::rename(&partial, location));
    if let Err(e) = packed {
        let _ = std::fs::remove_file(&partial);
        return Err(Error::internal(
            &format!("write checkpoint archive {}", location.display()),
            e,
        ));
    }
    Ok(())
}

/// Where the archive is written before it is complete: a hidden file in
/// the same directory (so the rename is atomic).
fn partial_path(location: &Path) -> PathBuf {
    let name = location.file_name().unwrap_or_default().to_string_lossy();
    location.with_file_name(format!(".{name}.partial"))
}

fn write_json(path: &Path, value: &serde_json::Value) -> io::Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(value)?)
}

/// The container's identity, as `checkpointctl show` reads it.
fn config_dump(rec: &ContainerRecord) -> serde_json::Value {
    json!({
        "id": rec.id,
        "name": rec.spec.metadata.name,
        "rootfsImage": rec.image_id,
        "rootfsImageRef": rec.image_ref,
        "rootfsImageName": rec.image_name,
        "runtime": rec.runtime_handler,
        "createdTime": rfc3339(rec.created_at),
        "checkpointedTime": rfc3339(crate::ids::now_nanos()),
    })
}

/// The container's status at the checkpoint.
fn status_dump(rec: &ContainerRecord) -> serde_json::Value {
    json!({
        "id": rec.id,
        "sandboxId": rec.spec.sandbox_id,
        "metadata": {"name": rec.spec.metadata.name, "attempt": rec.spec.metadata.attempt},
        "state": rec.state,
        "pid": rec.init.map(|p| p.pid),
        "createdAt": rfc3339(rec.created_at),
        "startedAt": rfc3339(rec.started_at),
        "image": rec.image_name,
        "imageRef": rec.image_ref,
        "labels": rec.spec.labels,
        "annotations": rec.spec.annotations,
        "logPath": rec.log_path,
    })
}

/// Packs the writable layer `upper` into the tar `out`, leaving out the
/// overlay whiteouts (character devices 0:0), whose paths it returns
/// instead (absolute in the container).
fn write_rootfs_diff(upper: &Path, out: &Path) -> io::Result<Vec<String>> {
    let mut tar = tar::Builder::new(BufWriter::new(File::create(out)?));
    tar.follow_symlinks(false);
    let mut deleted = Vec::new();
    if upper.is_dir() {
        add_layer_dir(&mut tar, upper, Path::new(""), &mut deleted)?;
    }
    tar.into_inner()?.flush()?;
    deleted.sort();
    Ok(deleted)
}

fn add_layer_dir<W: Write>(
    tar: &mut tar::Builder<W>,
    root: &Path,
    rel: &Path,
    deleted: &mut Vec<String>,
) -> io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(root.join(rel))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let rel = rel.join(entry.file_name());
        let meta = entry.path().symlink_metadata()?;
        let kind = meta.file_type();
        if kind.is_char_device() && meta.rdev() == 0 {
            deleted.push(format!("/{}", rel.display()));
        } else if kind.is_dir() {
            tar.append_path_with_name(entry.path(), &rel)?;
            add_layer_dir(tar, root, &rel, deleted)?;
        } else if kind.is_file() || kind.is_symlink() {
            tar.append_path_with_name(entry.path(), &rel)?;
        }
        // Sockets, fifos and devices are not carried over (as CRIU's own
        // file dump does not restore them from the layer either).
    }
    Ok(())
}

/// The archive: the files beside CRIU's images, then the images.
fn pack(staged: &Path, out: &Path) -> io::Result<()> {
    let file = File::options().write(true).create_new(true).open(out)?;
    let mut tar = tar::Builder::new(BufWriter::new(file));
    tar.follow_symlinks(false);
    for name in [
        CONFIG_DUMP,
        SPEC_DUMP,
        STATUS_DUMP,
        ROOTFS_DIFF,
        DELETED_FILES,
    ] {
        let path = staged.join(name);
        if path.exists() {
            tar.append_path_with_name(&path, name)?;
        }
    }
    let log = staged.join("work").join(DUMP_LOG);
    if log.exists() {
        tar.append_path_with_name(&log, DUMP_LOG)?;
    }
    tar.append_dir_all(CHECKPOINT_DIR, staged.join(CHECKPOINT_DIR))?;
    let file = tar.into_inner()?.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()
}

/// A time in nanoseconds since the epoch as RFC 3339 UTC with
/// nanoseconds (what Go's JSON decoding of a `time.Time` reads); empty
/// for 0 (never).
fn rfc3339(nanos: i64) -> String {
    if nanos == 0 {
        return String::new();
    }
    let secs = nanos.div_euclid(1_000_000_000) as libc::time_t;
    let frac = nanos.rem_euclid(1_000_000_000);
    // SAFETY: gmtime_r only writes the `tm` it is given.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::gmtime_r(&secs, &mut tm) }.is_null() {
        return String::new();
    }
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{frac:09}Z",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(
            rfc3339(1_796_643_443_433_125_851),
            "2026-12-07T11:37:23.433125851Z"
        );
        assert_eq!(rfc3339(0), "");
    }

    #[test]
    fn the_rootfs_diff_holds_the_layer_and_lists_whiteouts() {
        let d = tempfile::tempdir().unwrap();
        let upper = d.path().join("upper");
        std::fs::create_dir_all(upper.join("var/log")).unwrap();
        std::fs::write(upper.join("var/log/count"), "7\n").unwrap();
        std::os::unix::fs::symlink("count", upper.join("var/log/link")).unwrap();
        nix::sys::stat::mknod(
            &upper.join("var/gone"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .unwrap();
        let out = d.path().join("diff.tar");
        let deleted = write_rootfs_diff(&upper, &out).unwrap();
        assert_eq!(deleted, vec!["/var/gone".to_string()]);
        let mut names: Vec<String> = tar::Archive::new(File::open(&out).unwrap())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        names.sort();
        assert_eq!(names, ["var", "var/log", "var/log/count", "var/log/link"]);
    }

    #[test]
    fn a_missing_layer_is_an_empty_diff() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("diff.tar");
        assert!(write_rootfs_diff(&d.path().join("none"), &out)
            .unwrap()
            .is_empty());
        assert!(out.is_file());
    }

    #[test]
    fn the_partial_archive_is_hidden_beside_the_archive() {
        assert_eq!(
            partial_path(Path::new("/ck/c.tar")),
            PathBuf::from("/ck/.c.tar.partial")
        );
    }
}
