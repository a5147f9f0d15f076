//! Image volumes (CRI `Mount.image`, Kubernetes `ImageVolume`) through the
//! CRI socket: a second image's root filesystem mounted read-only into a
//! container, checked as the kernel shows it — the files the container
//! reads, the write it is refused, the mount tables inside the container
//! and on the host — and the image's layers held while the container
//! exists.
//!
//! The volume image is `layers` of hack/build-test-images.sh (four layers
//! with whiteouts and an opaque directory: /a/keep.txt, /dir/old holding
//! only new.txt, /zstd.txt, no /a/gone.txt), the single-layer one `pause`;
//! the container runs `busybox`, which has neither's files.

mod common;

use std::path::{Path, PathBuf};

use common::containers::Pod;
use common::registry::Registry;
use common::*;
use peapod::api;
use tonic::Code;

fn no_cni() -> Options {
    Options {
        cni: false,
        ..Default::default()
    }
}

/// A mount of the image `name` (pulled as `id`) as kubelet sends it: the
/// id, the user's name, read-only.
fn image_volume(id: &str, name: &str, container_path: &str, sub_path: &str) -> api::Mount {
    api::Mount {
        container_path: container_path.into(),
        readonly: true,
        image: Some(api::ImageSpec {
            image: id.into(),
            user_specified_image: Registry::shared().image(name),
            ..Default::default()
        }),
        image_sub_path: sub_path.into(),
        ..Default::default()
    }
}

/// Where peapod stages the image volume of `config.mounts[index]`.
fn staging_path(d: &TestDaemon, id: &str, index: usize) -> PathBuf {
    d.state
        .join("containers")
        .join(id)
        .join("image-volumes")
        .join(index.to_string())
}

/// One line of a mountinfo table.
#[derive(Debug)]
struct MountLine {
    /// The directory of the mounted filesystem that is mounted.
    root: String,
    mount_point: String,
    /// Per-mount options (`ro,nosuid,...`).
    options: Vec<String>,
    fstype: String,
    /// The filesystem's own options (overlayfs' `lowerdir=`).
    super_options: String,
}

fn parse_mountinfo(text: &str) -> Vec<MountLine> {
    text.lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            Some(MountLine {
                root: pre.get(3)?.to_string(),
                mount_point: pre.get(4)?.to_string(),
                options: pre.get(5)?.split(',').map(str::to_string).collect(),
                fstype: post.first()?.to_string(),
                super_options: post.get(2).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

/// The host's mounts on `path` (this test runs in the host's mount
/// namespace, as the daemon does).
fn host_mounts_on(path: &Path) -> Vec<MountLine> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let path = path.to_string_lossy();
    parse_mountinfo(&text)
        .into_iter()
        .filter(|m| m.mount_point == path)
        .collect()
}

/// The host's mount points under `dir`.
fn host_mounts_under(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    parse_mountinfo(&text)
        .into_iter()
        .filter(|m| Path::new(&m.mount_point).starts_with(dir))
        .map(|m| m.mount_point)
        .collect()
}

/// The mount at `path` as the container sees it.
async fn container_mount(d: &TestDaemon, id: &str, path: &str) -> MountLine {
    let text = d.exec_ok(id, &["cat", "/proc/self/mountinfo"]).await;
    parse_mountinfo(&text)
        .into_iter()
        .rfind(|m| m.mount_point == path)
        .unwrap_or_else(|| panic!("no mount at {path} in the container:\n{text}"))
}

/// The image's layer directories, bottom first, from verbose ImageStatus.
async fn layer_dirs(d: &TestDaemon, image: &str) -> Vec<PathBuf> {
    let resp = d
        .images()
        .await
        .image_status(api::ImageStatusRequest {
            image: Some(api::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(&resp.info["info"]).unwrap();
    info["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| PathBuf::from(l["dir"].as_str().unwrap()))
        .collect()
}

/// A command's exit code and stderr, whatever the code.
async fn exec_result(d: &TestDaemon, id: &str, cmd: &[&str]) -> (i32, String) {
    let r = d.exec(id, cmd, 30).await.unwrap();
    (r.exit_code, String::from_utf8_lossy(&r.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_volume_shows_the_images_files_read_only() {
    let d = TestDaemon::start_with(no_cni());
    let image = d.pull("busybox:latest").await;
    let layers = d.pull("layers:latest").await;
    let pause = d.pull("pause:3.9").await;
    let pod = d.host_pod("imgvol").await;
    let mut cfg = d.container_config("c", &image, &["sleep", "1000"]);
    cfg.mounts = vec![
        image_volume(&layers, "layers:latest", "/vol", ""),
        image_volume(&layers, "layers:latest", "/sub", "dir/old"),
        image_volume(&pause, "pause:3.9", "/pause", ""),
    ];
    let id = d.run(&pod, cfg).await;

    // The image's files, its layers applied in order: the top layer's
    // whiteout hides /a/gone.txt, its opaque /dir/old holds only new.txt.
    assert_eq!(d.exec_ok(&id, &["cat", "/vol/a/keep.txt"]).await, "keep\n");
    assert_eq!(d.exec_ok(&id, &["cat", "/vol/zstd.txt"]).await, "zstd\n");
    assert_eq!(
        d.exec_ok(&id, &["ls", "-A", "/vol/dir/old"]).await,
        "new.txt\n"
    );
    let (code, _) = exec_result(&d, &id, &["test", "-e", "/vol/a/gone.txt"]).await;
    assert_ne!(code, 0, "a whited-out file shows");
    // The sub path alone, at the container path.
    assert_eq!(d.exec_ok(&id, &["ls", "-A", "/sub"]).await, "new.txt\n");
    assert_eq!(d.exec_ok(&id, &["cat", "/sub/new.txt"]).await, "new\n");
    // A single-layer image.
    let passwd = d.exec_ok(&id, &["cat", "/pause/etc/passwd"]).await;
    assert_eq!(passwd.lines().next(), Some("root:x:0:0:root:/:/bin/sleep"));
    // The container's own root is busybox's, without the volume's files.
    let (code, _) = exec_result(&d, &id, &["test", "-e", "/a/keep.txt"]).await;
    assert_ne!(code, 0, "the volume's files leaked into the rootfs");

    // Writes are refused by the kernel.
    for target in ["/vol/new", "/vol/a/keep.txt", "/sub/new.txt", "/pause/x"] {
        let script = format!("echo x > {target}");
        let (code, stderr) = exec_result(&d, &id, &["sh", "-c", &script]).await;
        assert_ne!(code, 0, "writing {target} succeeded");
        assert!(
            stderr.contains("Read-only file system"),
            "{target}: {stderr}"
        );
    }
    let (code, stderr) = exec_result(&d, &id, &["mkdir", "/vol/d"]).await;
    assert!(
        code != 0 && stderr.contains("Read-only file system"),
        "{stderr}"
    );

    // The container's mount table: read-only, nosuid, nodev overlays; the
    // sub path's mount is rooted at that directory of the image.
    for path in ["/vol", "/sub", "/pause"] {
        let m = container_mount(&d, &id, path).await;
        assert_eq!(m.fstype, "overlay", "{m:?}");
        for option in ["ro", "nosuid", "nodev"] {
            assert!(m.options.iter().any(|o| o == option), "{option}: {m:?}");
        }
        assert!(!m.options.iter().any(|o| o == "noexec"), "{m:?}");
    }
    assert_eq!(container_mount(&d, &id, "/vol").await.root, "/");
    assert_eq!(container_mount(&d, &id, "/sub").await.root, "/dir/old");

    // The host's: one read-only overlay per volume at its staging path,
    // stacking the image's layer directories top first.
    let dirs = layer_dirs(&d, &layers).await;
    let lowerdir: Vec<String> = dirs
        .iter()
        .rev()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    for index in [0, 1] {
        let staged = host_mounts_on(&staging_path(&d, &id, index));
        assert_eq!(staged.len(), 1, "{staged:?}");
        let m = &staged[0];
        assert_eq!(m.fstype, "overlay");
        assert!(m.options.iter().any(|o| o == "ro"), "{m:?}");
        assert!(
            m.super_options
                .contains(&format!("lowerdir={}", lowerdir.join(":"))),
            "{m:?}"
        );
        assert!(!m.super_options.contains("upperdir"), "{m:?}");
    }
    let pause_layer = layer_dirs(&d, &pause).await;
    let staged = host_mounts_on(&staging_path(&d, &id, 2));
    assert_eq!(staged.len(), 1, "{staged:?}");
    assert!(
        staged[0]
            .super_options
            .contains(&format!("lowerdir={}:", pause_layer[0].display())),
        "{staged:?}"
    );

    // ContainerStatus reports the mounts as they were asked for.
    let st = d.cstatus(&id).await;
    let reported: Vec<(String, String, String, String)> = st
        .mounts
        .iter()
        .map(|m| {
            let image = m.image.clone().unwrap_or_default();
            (
                m.container_path.clone(),
                m.host_path.clone(),
                image.image,
                m.image_sub_path.clone(),
            )
        })
        .collect();
    let row = |path: &str, image: &str, sub: &str| {
        (
            path.to_string(),
            String::new(),
            image.to_string(),
            sub.to_string(),
        )
    };
    assert_eq!(
        reported,
        [
            row("/vol", &layers, ""),
            row("/sub", &layers, "dir/old"),
            row("/pause", &pause, ""),
        ]
    );
    assert_eq!(
        st.mounts[0].image.as_ref().unwrap().user_specified_image,
        Registry::shared().image("layers:latest")
    );
    assert!(st.mounts.iter().all(|m| m.readonly));

    d.stop_container(&id, 0).await;
    d.remove_container(&id).await;
    let left = host_mounts_under(&d.state.join("containers").join(&id));
    assert!(left.is_empty(), "mounts left: {left:?}");
    d.remove_all().await;
    d.assert_no_containers_left();
}

/// Every failed creation of `pod` must leave nothing on the host.
async fn refused(d: &TestDaemon, pod: &Pod, cfg: api::ContainerConfig, code: Code, prefix: &str) {
    let e = d.try_create(pod, cfg).await.expect_err("must be refused");
    assert_eq!(e.code(), code, "{e:?}");
    assert!(e.message().starts_with(prefix), "{prefix:?}: {e:?}");
    assert!(d.list_containers(None).await.is_empty());
    let left = host_mounts_under(&d.state.join("containers"));
    assert!(left.is_empty(), "{prefix}: mounts left: {left:?}");
    d.assert_no_containers_left();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_image_volume_leaves_nothing() {
    let d = TestDaemon::start_with(no_cni());
    let image = d.pull("busybox:latest").await;
    let layers = d.pull("layers:latest").await;
    let pod = d.host_pod("refused").await;
    let host_tmp = api::Mount {
        container_path: "/hosttmp".into(),
        host_path: "/tmp".into(),
        ..Default::default()
    };
    let with_mounts = |mounts: Vec<api::Mount>| {
        let mut cfg = d.container_config("c", &image, &["sleep", "1000"]);
        cfg.mounts = mounts;
        cfg
    };

    // An image that was not pulled (kubelet pulls it first).
    let absent = format!("sha256:{}", "e".repeat(64));
    let mut volume = image_volume(&absent, "busybox-user:latest", "/vol", "");
    let cfg = with_mounts(vec![host_tmp.clone(), volume.clone()]);
    let prefix =
        format!("config.mounts[1].image: image \"{absent}\" is not present (pull it first)");
    refused(&d, &pod, cfg, Code::NotFound, &prefix).await;

    // A sub path that is not in the image, or not a directory: refused
    // once staged, and the staging mount undone.
    volume = image_volume(&layers, "layers:latest", "/vol", "no/such/dir");
    let cfg = with_mounts(vec![volume.clone()]);
    let prefix = "config.mounts[0].image_sub_path: \"no/such/dir\" does not exist";
    refused(&d, &pod, cfg, Code::NotFound, prefix).await;
    volume.image_sub_path = "a/keep.txt".into();
    let cfg = with_mounts(vec![host_tmp.clone(), volume.clone()]);
    let prefix = "config.mounts[1].image_sub_path: \"a/keep.txt\" is not a directory";
    refused(&d, &pod, cfg, Code::InvalidArgument, prefix).await;

    // Sub paths that would leave the image, and an image with a host path.
    for bad in ["../etc", "/dir", "dir/../../etc"] {
        volume.image_sub_path = bad.into();
        let cfg = with_mounts(vec![volume.clone()]);
        let prefix = "config.mounts[0].image_sub_path:";
        refused(&d, &pod, cfg, Code::InvalidArgument, prefix).await;
    }
    volume.image_sub_path = String::new();
    volume.host_path = "/tmp".into();
    let cfg = with_mounts(vec![volume]);
    let prefix = "config.mounts[0].host_path: must be empty for an image volume";
    refused(&d, &pod, cfg, Code::InvalidArgument, prefix).await;

    d.remove_all().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_volume_image_removed_under_a_container_keeps_its_layers_until_the_container_goes() {
    let mut d = TestDaemon::start_with(no_cni());
    let image = d.pull("busybox:latest").await;
    let layers = d.pull("layers:latest").await;
    let busybox_dirs = layer_dirs(&d, &image).await;
    // The layers only the volume image has (it shares busybox's bottom).
    let own: Vec<PathBuf> = layer_dirs(&d, &layers)
        .await
        .into_iter()
        .filter(|l| !busybox_dirs.contains(l))
        .collect();
    assert_eq!(own.len(), 3, "{own:?}");
    let pod = d.host_pod("held").await;
    let mut cfg = d.container_config("c", &image, &["sleep", "1000"]);
    cfg.mounts = vec![image_volume(&layers, "layers:latest", "/vol", "")];
    let id = d.run(&pod, cfg).await;
    let staging = staging_path(&d, &id, 0);

    // RemoveImage answers as for the image a container runs: the image
    // goes, the layers in use stay.
    d.images()
        .await
        .remove_image(api::RemoveImageRequest {
            image: Some(api::ImageSpec {
                image: layers.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let gone = d
        .images()
        .await
        .image_status(api::ImageStatusRequest {
            image: Some(api::ImageSpec {
                image: layers.clone(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(gone.image.is_none(), "the image is still listed");
    for l in &own {
        assert!(l.is_dir(), "a layer in use was deleted: {}", l.display());
    }
    assert_eq!(d.exec_ok(&id, &["cat", "/vol/a/keep.txt"]).await, "keep\n");

    // Also across a restart of the daemon.
    d.kill9();
    d.spawn();
    for l in &own {
        assert!(
            l.is_dir(),
            "a layer in use was collected at start: {}",
            l.display()
        );
    }
    assert_eq!(host_mounts_on(&staging).len(), 1, "the staging mount went");
    assert_eq!(d.exec_ok(&id, &["cat", "/vol/zstd.txt"]).await, "zstd\n");

    // An exited container holds no mount; a removed one no layer.
    d.stop_container(&id, 0).await;
    eventually("the staging mount unmounted at the exit", || {
        host_mounts_on(&staging).is_empty()
    })
    .await;
    for l in &own {
        assert!(
            l.is_dir(),
            "a layer went before the container: {}",
            l.display()
        );
    }
    d.remove_container(&id).await;
    for l in &own {
        assert!(!l.exists(), "an unused layer stayed: {}", l.display());
    }
    assert!(
        busybox_dirs.iter().all(|l| l.is_dir()),
        "busybox's layer went"
    );
    let left = host_mounts_under(&d.state.join("containers"));
    assert!(left.is_empty(), "mounts left: {left:?}");
    d.remove_all().await;
    d.assert_no_containers_left();
}
