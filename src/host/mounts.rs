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
    let data = format!(
        "{},upperdir={},workdir={}",
        lowerdir_option(lower),
        escape(&upper.to_string_lossy()),
        escape(&work.to_string_lossy())
    );
    fits_one_mount(data, lower.len())
}

/// The overlayfs options for `lower` (bottom first) alone: without an
/// upper layer the kernel makes the overlay read-only.
pub fn read_only_overlay_options(lower: &[PathBuf]) -> io::Result<String> {
    fits_one_mount(lowerdir_option(lower), lower.len())
}

/// `lowerdir=`, which lists the top layer first.
fn lowerdir_option(lower: &[PathBuf]) -> String {
    let dirs = lower
        .iter()
        .rev()
        .map(|p| escape(&p.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(":");
    format!("lowerdir={dirs}")
}

/// `data` when the kernel takes it whole; an error naming the layer count
/// otherwise.
fn fits_one_mount(data: String, layers: usize) -> io::Result<String> {
    if data.len() > MAX_MOUNT_DATA {
        return Err(io::Error::other(format!(
            "the image has too many layers ({layers}) for one overlay mount ({} bytes of options, the kernel takes {MAX_MOUNT_DATA})",
            data.len(),
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

/// Mounts `lower` (bottom first) read-only at `target` with no writable
/// layer (an image volume), creating the directory. An overlay even of a
/// single layer, so that whiteouts stay hidden as in a root filesystem.
pub fn mount_read_only_overlay(lower: &[PathBuf], target: &Path) -> io::Result<()> {
    std::fs::create_dir_all(target)?;
    let mut layers = empty_layers(target, 2usize.saturating_sub(lower.len()))?;
    layers.extend_from_slice(lower);
    let data = read_only_overlay_options(&layers)?;
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(data.as_str()),
    )
    .map_err(io::Error::from)
}

/// `count` empty directories beside `target`, to go under an image of
/// fewer than two layers: overlayfs without an upper layer refuses one
/// lower layer, and one directory given twice.
fn empty_layers(target: &Path, count: usize) -> io::Result<Vec<PathBuf>> {
    (0..count)
        .map(|n| {
            let dir = target.with_extension(format!("empty{n}"));
            std::fs::create_dir_all(&dir)?;
            Ok(dir)
        })
        .collect()
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

    #[test]
    fn a_read_only_overlay_has_lower_layers_only() {
        let lower = [
            PathBuf::from("/l/bottom"),
            PathBuf::from("/l/mid,dle"),
            PathBuf::from("/l/top"),
        ];
        let o = read_only_overlay_options(&lower).unwrap();
        assert_eq!(o, "lowerdir=/l/top:/l/mid\\,dle:/l/bottom");
        let many: Vec<PathBuf> = (0..100)
            .map(|i| PathBuf::from(format!("/var/lib/peapod/images/layers/{:064}", i)))
            .collect();
        let e = read_only_overlay_options(&many).unwrap_err();
        assert!(e.to_string().contains("too many layers (100)"), "{e}");
    }
}
