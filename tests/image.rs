//! The ImageService through the CRI socket, against Debian's docker-registry
//! with the images of hack/build-test-images.sh. Unpacked layers are checked
//! the way a container will see them: mounted by the kernel as overlayfs.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::proxy::{Fault, Proxy};
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

fn spec(image: &str) -> Option<api::ImageSpec> {
    Some(api::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    })
}

async fn pull(d: &TestDaemon, image: &str) -> Result<String, tonic::Status> {
    d.pull_with(image, None).await
}

async fn list(d: &TestDaemon) -> Vec<api::Image> {
    d.images()
        .await
        .list_images(api::ListImagesRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .images
}

/// The image's layer directories, bottom first, from verbose ImageStatus.
async fn layer_dirs(d: &TestDaemon, image: &str) -> Vec<PathBuf> {
    let resp = d
        .images()
        .await
        .image_status(api::ImageStatusRequest {
            image: spec(image),
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

/// Entries of a directory under the daemon's image store.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn images_dir(d: &TestDaemon) -> PathBuf {
    d.root.join("images")
}

/// The layers mounted read-only as overlayfs, as a container's root will be.
struct Overlay {
    dir: tempfile::TempDir,
}

impl Overlay {
    fn mount(layers: &[PathBuf]) -> Overlay {
        let dir = tempfile::tempdir().unwrap();
        // overlayfs wants two lower layers when there is no upper one; an
        // empty one at the bottom changes nothing.
        let empty = dir.path().join("empty");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&empty).unwrap();
        std::fs::create_dir(&mnt).unwrap();
        let mut lower: Vec<String> = layers
            .iter()
            .rev()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        lower.push(empty.to_string_lossy().into_owned());
        let target = mnt.to_string_lossy().into_owned();
        sh(
            "mount",
            &[
                "-t",
                "overlay",
                "overlay",
                "-o",
                &format!("ro,lowerdir={}", lower.join(":")),
                &target,
            ],
        );
        Overlay { dir }
    }
    fn root(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }
    fn path(&self, p: &str) -> PathBuf {
        self.root().join(p)
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.root(), nix::mount::MntFlags::MNT_DETACH);
    }
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid C strings and a buffer of the given length.
    let len =
        unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (len >= 0).then(|| buf[..len as usize].to_vec())
}

fn manifest_size(reg: &Registry, repo: &str, reference: &str) -> u64 {
    let m: serde_json::Value = serde_json::from_slice(&reg.get(
        &format!("/v2/{repo}/manifests/{reference}"),
        "application/vnd.oci.image.manifest.v1+json,application/vnd.docker.distribution.manifest.v2+json",
    ))
    .unwrap();
    m["config"]["size"].as_u64().unwrap()
        + m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["size"].as_u64().unwrap())
            .sum::<u64>()
}

#[tokio::test(flavor = "multi_thread")]
async fn pull_then_status_list_by_every_name() {
    let reg = Registry::shared();
    let mut d = TestDaemon::start_with(no_cni());
    let name = reg.image("busybox");
    assert!(d.image_status(&name).await.is_none(), "not pulled yet");

    let image_ref = pull(&d, &name).await.unwrap();
    // kubelet wants the image id back: sha256 of the config.
    let m: serde_json::Value = serde_json::from_slice(&reg.get(
        "/v2/busybox/manifests/latest",
        "application/vnd.oci.image.manifest.v1+json",
    ))
    .unwrap();
    assert_eq!(image_ref, m["config"]["digest"].as_str().unwrap());

    let digest = reg.digest("busybox:latest");
    let img = d.image_status(&name).await.expect("pulled image");
    assert_eq!(img.id, image_ref);
    assert_eq!(
        img.repo_tags,
        vec![format!("{}:latest", reg.image("busybox"))]
    );
    assert_eq!(
        img.repo_digests,
        vec![format!("{}@{digest}", reg.image("busybox"))]
    );
    assert_eq!(img.size, manifest_size(reg, "busybox", "latest"));
    assert_eq!(img.uid, None, "busybox sets no USER");
    assert_eq!(img.username, "");

    for alias in [
        image_ref.clone(),
        image_ref.trim_start_matches("sha256:").to_string(),
        image_ref[7..19].to_string(),
        format!("{}:latest", reg.image("busybox")),
        format!("{}@{digest}", reg.image("busybox")),
        format!("{}:whatever@{digest}", reg.image("busybox")),
    ] {
        let found = d.image_status(&alias).await;
        assert_eq!(found.map(|i| i.id), Some(image_ref.clone()), "by {alias}");
    }
    assert!(d
        .image_status(&format!("{}:other", reg.image("busybox")))
        .await
        .is_none());

    let all = list(&d).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0], img);
    let mut stream = d
        .images()
        .await
        .stream_images(api::StreamImagesRequest { filter: None })
        .await
        .unwrap()
        .into_inner();
    let mut streamed = Vec::new();
    while let Some(msg) = stream.message().await.unwrap() {
        streamed.extend(msg.images);
    }
    assert_eq!(streamed, all, "StreamImages agrees with ListImages");
    let filtered = d
        .images()
        .await
        .list_images(api::ListImagesRequest {
            filter: Some(api::ImageFilter {
                image: spec(&image_ref[7..19]),
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .images;
    assert_eq!(filtered, vec![img.clone()]);
    let none = d
        .images()
        .await
        .list_images(api::ListImagesRequest {
            filter: Some(api::ImageFilter {
                image: spec(&reg.image("nothing")),
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .images;
    assert!(none.is_empty());

    // The unpacked root works as a root: busybox and its applet links.
    let ov = Overlay::mount(&layer_dirs(&d, &name).await);
    let bb = std::fs::metadata(ov.path("bin/busybox")).unwrap();
    assert_eq!(bb.mode() & 0o7777, 0o755);
    assert!(ov.path("bin/sh").exists());
    let out = std::process::Command::new("chroot")
        .arg(ov.root())
        .args(["/bin/sh", "-c", "echo inside"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "inside\n");
    drop(ov);

    // The store survives a restart.
    d.terminate();
    d.spawn();
    assert_eq!(d.image_status(&name).await, Some(img));
}

#[tokio::test(flavor = "multi_thread")]
async fn layers_apply_whiteouts_owners_modes_xattrs_and_zstd() {
    let reg = Registry::shared();
    let d = TestDaemon::start_with(no_cni());
    let name = reg.image("layers");
    pull(&d, &name).await.unwrap();
    let dirs = layer_dirs(&d, &name).await;
    assert_eq!(dirs.len(), 4);
    let ov = Overlay::mount(&dirs);

    assert!(!ov.path("a/gone.txt").exists(), "whiteout applied");
    assert_eq!(
        std::fs::read_to_string(ov.path("a/keep.txt")).unwrap(),
        "keep\n"
    );
    let keep = std::fs::metadata(ov.path("a/keep.txt")).unwrap();
    let hard = std::fs::metadata(ov.path("a/hard.txt")).unwrap();
    assert_eq!(keep.ino(), hard.ino(), "hard link kept");
    assert_eq!(keep.nlink(), 2);
    assert_eq!(keep.mtime(), 1_700_000_000);
    assert_eq!(entries(&ov.path("dir/old")), vec!["new.txt"], "opaque dir");
    assert_eq!(
        std::fs::read_link(ov.path("link")).unwrap(),
        PathBuf::from("/a/keep.txt")
    );
    let suid = std::fs::metadata(ov.path("bin/suid-test")).unwrap();
    assert_eq!(suid.mode() & 0o7777, 0o4755);
    assert_eq!((suid.uid(), suid.gid()), (0, 0));
    let owned = std::fs::metadata(ov.path("owned.txt")).unwrap();
    assert_eq!(
        (owned.uid(), owned.gid(), owned.mode() & 0o7777),
        (1002, 1003, 0o640)
    );
    let fifo = std::fs::symlink_metadata(ov.path("fifo")).unwrap();
    assert!(fifo.file_type().is_fifo());
    let dev = std::fs::symlink_metadata(ov.path("dev-null-copy")).unwrap();
    assert!(dev.file_type().is_char_device());
    assert_eq!(dev.rdev(), libc::makedev(1, 3));
    assert_eq!(
        xattr(&ov.path("xattr.txt"), "user.peapod").as_deref(),
        Some(&b"peapod-test"[..])
    );
    assert_eq!(
        std::fs::read_to_string(ov.path("zstd.txt")).unwrap(),
        "zstd\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn image_user_platform_and_docker_schema2() {
    let reg = Registry::shared();
    let d = TestDaemon::start_with(no_cni());

    pull(&d, &reg.image("busybox-user")).await.unwrap();
    let u = d.image_status(&reg.image("busybox-user")).await.unwrap();
    assert_eq!(u.uid, Some(api::Int64Value { value: 1002 }));
    assert_eq!(u.username, "");
    pull(&d, &reg.image("busybox-username")).await.unwrap();
    let n = d
        .image_status(&reg.image("busybox-username"))
        .await
        .unwrap();
    assert_eq!(n.uid, None);
    assert_eq!(n.username, "app");

    // The config's fields are kept for containers (verbose shows them).
    pull(&d, &reg.image("busybox-config")).await.unwrap();
    let resp = d
        .images()
        .await
        .image_status(api::ImageStatusRequest {
            image: spec(&reg.image("busybox-config")),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(&resp.info["info"]).unwrap();
    let cfg = &info["imageSpec"]["config"];
    assert_eq!(cfg["WorkingDir"], "/work");
    assert_eq!(cfg["StopSignal"], "SIGINT");

    // The index's host-platform entry, not its first one.
    let id = pull(&d, &reg.image("multiarch")).await.unwrap();
    let dirs = layer_dirs(&d, &reg.image("multiarch")).await;
    let ov = Overlay::mount(&dirs);
    let host = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    assert_eq!(
        std::fs::read_to_string(ov.path("ARCH")).unwrap(),
        format!("{host}\n")
    );
    drop(ov);
    let m = d.image_status(&reg.image("multiarch")).await.unwrap();
    assert_eq!(m.id, id);
    assert_eq!(
        m.repo_digests,
        vec![format!(
            "{}@{}",
            reg.image("multiarch"),
            reg.digest("multiarch:latest")
        )],
        "the repo digest is the index's"
    );

    // Docker schema 2: busybox's layer blob again, so the unpacked layer is
    // shared with the OCI busybox.
    pull(&d, &reg.image("busybox")).await.unwrap();
    let before = entries(&images_dir(&d).join("layers"));
    pull(&d, &reg.image("busybox-docker")).await.unwrap();
    assert_eq!(entries(&images_dir(&d).join("layers")), before);
    let a = layer_dirs(&d, &reg.image("busybox")).await;
    let b = layer_dirs(&d, &reg.image("busybox-docker")).await;
    assert_eq!(a, b);
}

#[tokio::test(flavor = "multi_thread")]
async fn tags_and_remove_semantics() {
    let reg = Registry::start(None, &["busybox", "busybox-user"]);
    reg.copy("busybox:latest", "busybox:v2");
    reg.copy("busybox:latest", "moving:latest");
    let d = TestDaemon::start_with(no_cni());
    let layers = images_dir(&d).join("layers");

    let id1 = pull(&d, &reg.image("busybox")).await.unwrap();
    let id2 = pull(&d, &reg.image("busybox:v2")).await.unwrap();
    assert_eq!(id1, id2, "one image, two tags");
    let img = d.image_status(&id1).await.unwrap();
    assert_eq!(
        img.repo_tags,
        vec![
            format!("{}:latest", reg.image("busybox")),
            format!("{}:v2", reg.image("busybox"))
        ]
    );
    assert_eq!(list(&d).await.len(), 1);
    let layer_count = entries(&layers).len();
    assert!(layer_count > 0);

    // Removing one tag keeps the image under the other.
    d.remove_image(&reg.image("busybox:v2")).await;
    let img = d.image_status(&id1).await.unwrap();
    assert_eq!(
        img.repo_tags,
        vec![format!("{}:latest", reg.image("busybox"))]
    );
    assert!(d.image_status(&reg.image("busybox:v2")).await.is_none());
    assert_eq!(entries(&layers).len(), layer_count);

    // A tag that moves to another image leaves the old one, untagged.
    pull(&d, &reg.image("moving")).await.unwrap();
    reg.copy("busybox-user:latest", "moving:latest");
    let moved = pull(&d, &reg.image("moving")).await.unwrap();
    assert_ne!(moved, id1);
    let old = d.image_status(&id1).await.unwrap();
    assert_eq!(
        old.repo_tags,
        vec![format!("{}:latest", reg.image("busybox"))]
    );
    assert_eq!(
        d.image_status(&reg.image("moving")).await.map(|i| i.id),
        Some(moved.clone())
    );

    // Unknown images: removing them succeeds.
    d.remove_image(&reg.image("never-pulled")).await;
    d.remove_image(&format!("sha256:{}", "0".repeat(64))).await;

    // By id, the image goes with all its names; layers only the removed
    // image used are deleted, shared ones stay.
    d.remove_image(&moved).await;
    assert!(d.image_status(&reg.image("moving")).await.is_none());
    d.remove_image(&id1).await;
    assert!(list(&d).await.is_empty());
    // Deleted by the time RemoveImage answers.
    assert!(entries(&layers).is_empty());
    assert!(entries(&images_dir(&d).join("tmp")).is_empty());
    assert!(entries(&images_dir(&d).join("blobs/sha256")).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_auth_registry() {
    let reg = Registry::start(Some("peapod:s3cret"), &["busybox"]);
    let d = TestDaemon::start_with(no_cni());
    let name = reg.image("busybox");

    let e = pull(&d, &name).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let e = d.pull_as(&name, "peapod", "wrong").await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert!(list(&d).await.is_empty());

    d.pull_as(&name, "peapod", "s3cret").await.unwrap();
    d.remove_image(&name).await;
    use base64::Engine;
    d.pull_with(
        &name,
        Some(api::AuthConfig {
            auth: base64::engine::general_purpose::STANDARD.encode("peapod:s3cret"),
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    assert!(d.image_status(&name).await.is_some());

    let e = d
        .pull_with(
            &name,
            Some(api::AuthConfig {
                auth: "%%%".into(),
                ..Default::default()
            }),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("auth"), "{e:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_token_flow() {
    let reg = Registry::shared();
    let proxy = Proxy::start(&reg.addr, None, Some("alice:pw"));
    let d = TestDaemon::start_with(no_cni());
    let name = format!("{}/busybox", proxy.addr);

    let e = pull(&d, &name).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert!(e.message().contains("bad credentials"), "{e:?}");

    let id = d.pull_as(&name, "alice", "pw").await.unwrap();
    let tokens = proxy.token_requests();
    assert!(
        tokens
            .iter()
            .any(|t| t.contains("scope=repository%3Abusybox%3Apull")
                || t.contains("scope=repository:busybox:pull")),
        "token asked for the repository's pull scope: {tokens:?}"
    );
    assert!(
        tokens.iter().all(|t| t.contains("service=peapod-test")),
        "{tokens:?}"
    );
    d.remove_image(&id).await;
    // One pull's credentials (and the token they got) are not another's.
    let e = pull(&d, &name).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");

    // A registry token is sent as it is; an identity token is exchanged.
    d.pull_with(
        &name,
        Some(api::AuthConfig {
            registry_token: common::proxy::TOKEN.into(),
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    d.remove_image(&id).await;
    d.pull_with(
        &name,
        Some(api::AuthConfig {
            identity_token: "peapod-refresh".into(),
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    assert!(proxy
        .token_requests()
        .iter()
        .any(|t| t.contains("grant_type=refresh_token")));
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupted_or_truncated_blob_fails_and_stores_nothing() {
    let reg = Registry::shared();
    let proxy = Proxy::start(&reg.addr, None, None);
    let d = TestDaemon::start_with(no_cni());
    let name = format!("{}/layers", proxy.addr);
    let m: serde_json::Value = serde_json::from_slice(&reg.get(
        "/v2/layers/manifests/latest",
        "application/vnd.oci.image.manifest.v1+json",
    ))
    .unwrap();
    let layer = m["layers"][1]["digest"].as_str().unwrap().to_string();
    let config = m["config"]["digest"].as_str().unwrap().to_string();

    for fault in [
        Fault::Corrupt(layer.clone()),
        Fault::Truncate(layer.clone()),
        Fault::Corrupt(config.clone()),
    ] {
        proxy.set_fault(fault.clone());
        let e = pull(&d, &name).await.unwrap_err();
        let digest = match &fault {
            Fault::Corrupt(x) | Fault::Truncate(x) => x.clone(),
            _ => unreachable!(),
        };
        assert!(e.message().contains(&digest), "{fault:?}: {e:?}");
        assert!(list(&d).await.is_empty(), "{fault:?}");
        // Nothing half-written, and nothing the failed pull completed
        // lingers either (the config, the layers that did unpack).
        for sub in ["tmp", "layers", "blobs/sha256"] {
            assert!(
                entries(&images_dir(&d).join(sub)).is_empty(),
                "{fault:?}: {sub} not empty"
            );
        }
    }
    // The layer blob was never accepted, so no layer has its chain id: the
    // corrupted layer is the second, and every unpacked dir is verified.
    proxy.set_fault(Fault::None);
    pull(&d, &name).await.unwrap();
    assert_eq!(layer_dirs(&d, &name).await.len(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_pulls_fetch_each_blob_once() {
    let reg = Registry::shared();
    let proxy = Proxy::start(&reg.addr, None, None);
    let d = Arc::new(TestDaemon::start_with(no_cni()));
    let name = format!("{}/layers", proxy.addr);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let d = d.clone();
        let name = name.clone();
        tasks.push(tokio::spawn(async move { pull(&d, &name).await.unwrap() }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    let m: serde_json::Value = serde_json::from_slice(&reg.get(
        "/v2/layers/manifests/latest",
        "application/vnd.oci.image.manifest.v1+json",
    ))
    .unwrap();
    let mut blobs = vec![m["config"]["digest"].as_str().unwrap().to_string()];
    for l in m["layers"].as_array().unwrap() {
        blobs.push(l["digest"].as_str().unwrap().to_string());
    }
    for b in &blobs {
        assert_eq!(proxy.blob_gets(b), 1, "{b}: {:?}", proxy.requests());
    }
    assert_eq!(list(&d).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_during_pull_leaves_nothing_and_keeps_finished_images() {
    let reg = Registry::shared();
    let proxy = Proxy::start(&reg.addr, None, None);
    let mut d = TestDaemon::start_with(no_cni());
    let finished = pull(&d, &reg.image("busybox")).await.unwrap();
    let m: serde_json::Value = serde_json::from_slice(&reg.get(
        "/v2/layers/manifests/latest",
        "application/vnd.oci.image.manifest.v1+json",
    ))
    .unwrap();
    // Layer 2 of `layers` stalls half-way; the others complete.
    proxy.set_fault(Fault::Stall(
        m["layers"][1]["digest"].as_str().unwrap().to_string(),
    ));
    let name = format!("{}/layers", proxy.addr);
    let mut images = d.images().await;
    let pulling = tokio::spawn(async move {
        images
            .pull_image(api::PullImageRequest {
                image: spec(&name),
                ..Default::default()
            })
            .await
    });
    eventually("a layer download is stalled", || proxy.stalled() == 1).await;
    assert!(
        !entries(&images_dir(&d).join("tmp")).is_empty(),
        "an unpack is in progress"
    );
    d.kill9();
    assert!(pulling.await.unwrap().is_err());
    proxy.release();

    d.spawn();
    // Partial unpacks are removed at start; unused layers are moved to
    // tmp/ then deleted in the background.
    eventually("tmp/ emptied", || {
        entries(&images_dir(&d).join("tmp")).is_empty()
    })
    .await;
    let all = list(&d).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].id, finished);
    let busybox_layers: Vec<String> = layer_dirs(&d, &finished)
        .await
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        entries(&images_dir(&d).join("layers")),
        busybox_layers,
        "layers of the unfinished pull are gone, the finished image's stay"
    );
    let ov = Overlay::mount(&layer_dirs(&d, &finished).await);
    assert!(ov.path("bin/busybox").is_file());
    drop(ov);

    proxy.set_fault(Fault::None);
    pull(&d, &format!("{}/layers", proxy.addr)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn mirrors_are_tried_in_order_then_upstream() {
    let reg = Registry::start(None, &["busybox"]);
    reg.copy("busybox:latest", "library/busybox:1.36");
    // A mirror nobody listens on, then the test registry.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let d = TestDaemon::start_with(Options {
        cni: false,
        extra_args: vec![
            "--registry-mirror".into(),
            format!("docker.io=http://{dead_addr}"),
            "--registry-mirror".into(),
            format!("docker.io={}", reg.addr),
        ],
        ..Default::default()
    });
    let id = pull(&d, "busybox:1.36").await.unwrap();
    let img = d
        .image_status("docker.io/library/busybox:1.36")
        .await
        .unwrap();
    assert_eq!(img.id, id);
    assert_eq!(img.repo_tags, vec!["docker.io/library/busybox:1.36"]);
    assert_eq!(
        img.repo_digests,
        vec![format!(
            "docker.io/library/busybox@{}",
            reg.digest("busybox:latest")
        )]
    );
    assert_eq!(d.image_status("busybox:1.36").await.map(|i| i.id), Some(id));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_references_and_missing_images() {
    let reg = Registry::shared();
    let d = TestDaemon::start_with(no_cni());
    for (image, code, needle) in [
        ("", Code::InvalidArgument, "image.image"),
        ("Busybox", Code::InvalidArgument, "lowercase"),
        ("busybox:bad tag", Code::InvalidArgument, "whitespace"),
        ("busybox@sha256:123", Code::InvalidArgument, "sha256"),
    ] {
        let e = pull(&d, image).await.unwrap_err();
        assert_eq!(e.code(), code, "{image}: {e:?}");
        assert!(e.message().contains(needle), "{image}: {e:?}");
    }
    let e = pull(&d, &reg.image("busybox:no-such-tag"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let e = pull(&d, &reg.image("no-such-repo")).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let e = pull(&d, &format!("{addr}/busybox")).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(e.message().contains(&addr.to_string()), "{e:?}");

    // ImageStatus: an unknown image is null, a malformed name is an error.
    assert!(d.image_status(&reg.image("busybox")).await.is_none());
    let e = d
        .images()
        .await
        .image_status(api::ImageStatusRequest {
            image: spec("Not A Name"),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = d
        .images()
        .await
        .remove_image(api::RemoveImageRequest { image: None })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("image.image"));
    assert!(list(&d).await.is_empty());
    assert!(entries(&images_dir(&d).join("tmp")).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn image_fs_info_matches_du() {
    let reg = Registry::shared();
    let d = TestDaemon::start_with(no_cni());
    pull(&d, &reg.image("busybox")).await.unwrap();
    pull(&d, &reg.image("layers")).await.unwrap();
    let dir = images_dir(&d);
    eventually("no deletion in progress", || {
        entries(&dir.join("tmp")).is_empty()
    })
    .await;
    let fs = d
        .images()
        .await
        .image_fs_info(api::ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    let u = &fs.image_filesystems[0];
    let du_bytes: u64 = sh("du", &["-s", "-B1", dir.to_str().unwrap()])
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let du_inodes: u64 = sh("du", &["-s", "--inodes", dir.to_str().unwrap()])
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(u.used_bytes.as_ref().unwrap().value, du_bytes);
    assert_eq!(u.inodes_used.as_ref().unwrap().value, du_inodes);
    let df = sh("df", &["--output=target", dir.to_str().unwrap()]);
    assert_eq!(
        u.fs_id.as_ref().unwrap().mountpoint,
        df.lines().nth(1).unwrap().trim()
    );
    assert!(du_bytes > 1_000_000, "busybox is unpacked: {du_bytes}");
}
