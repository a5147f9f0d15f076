//! The mounts the pod and container lifecycles make on the host.

use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};

/// Mounts a tmpfs for the pod's /dev/shm.
pub fn mount_shm(path: &Path, size: u64) -> io::Result<()> {
    std::fs::create_dir_all(path)?;
    let data = format!("mode=1777,size={size}");
    mount(
        Some("shm"),
        path,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(data.as_str()),
    )
    .map_err(io::Error::from)
}

/// Bind-mounts `/proc/<pid>/ns/net` on `target`, so the namespace outlives
/// the process and CNI and containers can join it by path.
pub fn bind_netns(pid: i32, target: &Path) -> io::Result<()> {
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(target)?;
    let source = format!("/proc/{pid}/ns/net");
    mount(
        Some(source.as_str()),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(io::Error::from)
}

/// The kernel takes mount options in one page.
const MAX_MOUNT_DATA: usize = 4000;

/// The overlayfs options for `lower` (bottom first) under `upper`.
pub fn overlay_options(lower: &[PathBuf], upper: &Path, work: &Path) -> io::Result<String> {
    // overlayfs lists the top layer first.
    let lowerdir = lower
        .iter()
        .rev()
        .map(|p| escape(&p.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(":");
    let data = format!(
        "lowerdir={lowerdir},upperdir={},workdir={}",
        escape(&upper.to_string_lossy()),
        escape(&work.to_string_lossy())
    );
    if data.len() > MAX_MOUNT_DATA {
        return Err(io::Error::other(format!(
            "the image has too many layers ({}) for one overlay mount ({} bytes of options, the kernel takes {})",
            lower.len(),
            data.len(),
            MAX_MOUNT_DATA
        )));
    }
    Ok(data)
}

/// overlayfs splits its options at `,` and layers at `:`.
fn escape(p: &str) -> String {
    p.replace('\\', "\\\\")
        .replace(':', "\\:")
        .replace(',', "\\,")
}

/// Mounts the container's rootfs at `target`: `lower` (bottom first) under
/// `upper`. An image without layers gets an empty lower directory.
pub fn mount_overlay(
    lower: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> io::Result<()> {
    std::fs::create_dir_all(upper)?;
    std::fs::create_dir_all(work)?;
    std::fs::create_dir_all(target)?;
    let empty;
    let lower = if lower.is_empty() {
        empty = [work.with_file_name("empty")];
        std::fs::create_dir_all(&empty[0])?;
        &empty[..]
    } else {
        lower
    };
    let data = overlay_options(lower, upper, work)?;
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_str()),
    )
    .map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_lists_the_top_layer_first_and_escapes() {
        let lower = [PathBuf::from("/l/bottom"), PathBuf::from("/l/to:p")];
        let o = overlay_options(&lower, Path::new("/u"), Path::new("/w")).unwrap();
        assert_eq!(o, "lowerdir=/l/to\\:p:/l/bottom,upperdir=/u,workdir=/w");
        let many: Vec<PathBuf> = (0..100)
            .map(|i| PathBuf::from(format!("/var/lib/peapod/images/layers/{:064}", i)))
            .collect();
        let e = overlay_options(&many, Path::new("/u"), Path::new("/w")).unwrap_err();
        assert!(e.to_string().contains("too many layers (100)"), "{e}");
    }
}
