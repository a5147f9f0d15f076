//! The node's registry files and long pulls, through the CRI socket against
//! Debian's docker-registry: containers-registries.conf(5) (mirrors,
//! `location` rewrites, `blocked`), containers-auth.json(5) credentials for
//! pulls without an AuthConfig, and the pull progress timeout.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::proxy::{Fault, Proxy};
use common::registry::Registry;
use common::*;
use peapod::api;
use tonic::Code;

/// A daemon whose registries.conf, drop-in dir and auth file are files of
/// this test, in a temporary directory.
struct Node {
    dir: tempfile::TempDir,
}

impl Node {
    fn new() -> Node {
        let node = Node {
            dir: tempfile::Builder::new()
                .prefix("peapod-node-")
                .tempdir()
                .unwrap(),
        };
        std::fs::create_dir(node.conf_dir()).unwrap();
        node
    }

    fn registries_conf(&self) -> PathBuf {
        self.dir.path().join("registries.conf")
    }

    fn conf_dir(&self) -> PathBuf {
        self.dir.path().join("registries.conf.d")
    }

    fn auth_file(&self) -> PathBuf {
        self.dir.path().join("auth.json")
    }

    fn write(&self, path: &Path, text: &str) {
        std::fs::write(path, text).unwrap();
    }

    /// A config file pointing `[images]` at this node's files.
    fn config(&self, progress_timeout_secs: u64) -> PathBuf {
        let path = self.dir.path().join("peapod.toml");
        self.write(
            &path,
            &format!(
                "[images]\n\
                 registries_conf = {:?}\n\
                 registries_conf_dir = {:?}\n\
                 auth_file = {:?}\n\
                 pull_progress_timeout_secs = {progress_timeout_secs}\n",
                self.registries_conf(),
                self.conf_dir(),
                self.auth_file(),
            ),
        );
        path
    }

    fn daemon(&self, progress_timeout_secs: u64) -> TestDaemon {
        TestDaemon::start_with(Options {
            cni: false,
            extra_args: vec![
                "--config".into(),
                self.config(progress_timeout_secs)
                    .to_string_lossy()
                    .into_owned(),
            ],
            ..Default::default()
        })
    }

    /// Runs `peapod serve` with this node's files and expects it to refuse
    /// to start; returns what it printed.
    fn start_fails(&self) -> String {
        let config = self.config(300);
        let mut child = Command::new(env!("CARGO_BIN_EXE_peapod"))
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .arg("--socket")
            .arg(self.dir.path().join("peapod.sock"))
            .arg("--root")
            .arg(self.dir.path().join("root"))
            .arg("--state")
            .arg(self.dir.path().join("state"))
            .arg("--cni-conf-dir")
            .arg(self.dir.path())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start peapod");
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("peapod started with a broken node file");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        assert!(!out.status.success(), "peapod exited 0");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

async fn pull(d: &TestDaemon, image: &str) -> Result<String, tonic::Status> {
    d.pull_with(image, None).await
}

async fn repo_tags(d: &TestDaemon, image: &str) -> Option<Vec<String>> {
    d.image_status(image).await.map(|i| i.repo_tags)
}

async fn image_count(d: &TestDaemon) -> usize {
    d.images()
        .await
        .list_images(api::ListImagesRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .images
        .len()
}

/// Entries under the daemon's image store directory `sub`.
fn store_entries(d: &TestDaemon, sub: &str) -> Vec<String> {
    std::fs::read_dir(d.root.join("images").join(sub))
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The log without terminal colour codes (`ESC [ ... m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The digest of layer `i` of `name:latest` in `reg`.
fn layer_digest(reg: &Registry, name: &str, i: usize) -> String {
    let m: serde_json::Value = serde_json::from_slice(&reg.get(
        &format!("/v2/{name}/manifests/latest"),
        "application/vnd.oci.image.manifest.v1+json",
    ))
    .unwrap();
    m["layers"][i]["digest"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn registries_conf_mirrors_locations_and_blocked_prefixes() {
    let reg = Registry::shared();
    reg.copy("busybox:latest", "team/blocked/busybox:latest");
    reg.copy("busybox:latest", "team/blocked/allowed/busybox:latest");
    // The mirror: a proxy in front of the registry, with an access log.
    let mirror = Proxy::start(&reg.addr, None, None);
    let node = Node::new();
    // The prefix's own location is down: only the mirror can serve it.
    node.write(
        &node.registries_conf(),
        &format!(
            "unqualified-search-registries = [\"docker.io\"]\n\
             [[registry]]\n\
             prefix = \"mirrored.test/apps\"\n\
             location = \"127.0.0.1:{}/apps\"\n\
             [[registry.mirror]]\n\
             location = \"{}\"\n",
            closed_port(),
            mirror.addr
        ),
    );
    node.write(
        &node.conf_dir().join("10-rewrite.conf"),
        &format!(
            "[[registry]]\nprefix = \"rewritten.test/lib\"\nlocation = \"{}\"\n",
            reg.addr
        ),
    );
    let block_file = node.conf_dir().join("20-block.conf");
    node.write(
        &block_file,
        &format!(
            "[[registry]]\nprefix = \"{0}/team/blocked\"\nblocked = true\n\
             [[registry]]\nprefix = \"{0}/team/blocked/allowed\"\n",
            reg.addr
        ),
    );
    let d = node.daemon(300);

    // Mirror: the image comes through the mirror, named as asked.
    pull(&d, "mirrored.test/apps/busybox").await.unwrap();
    assert!(
        mirror
            .requests()
            .contains(&"GET /v2/busybox/manifests/latest".to_string()),
        "{:?}",
        mirror.requests()
    );
    assert_eq!(
        repo_tags(&d, "mirrored.test/apps/busybox").await,
        Some(vec!["mirrored.test/apps/busybox:latest".to_string()])
    );

    // Location: rewritten.test/lib/busybox is the registry's busybox.
    let id = pull(&d, "rewritten.test/lib/busybox:latest").await.unwrap();
    assert_eq!(
        repo_tags(&d, &id).await.unwrap(),
        [
            "mirrored.test/apps/busybox:latest",
            "rewritten.test/lib/busybox:latest"
        ]
    );

    // Blocked, by the most specific prefix; nothing is fetched or stored.
    let before = image_count(&d).await;
    let blocked = format!("{}/team/blocked/busybox", reg.addr);
    let e = pull(&d, &blocked).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(
        e.message().contains(&block_file.display().to_string())
            && e.message()
                .contains(&format!("\"{}/team/blocked\"", reg.addr)),
        "the error names the rule: {e:?}"
    );
    assert_eq!(image_count(&d).await, before);
    pull(&d, &format!("{}/team/blocked/allowed/busybox", reg.addr))
        .await
        .unwrap();

    // Read on every pull: a later drop-in replaces the rule of the same
    // prefix (and blocks it); a broken one fails pulls with its name until
    // it is gone.
    let late = node.conf_dir().join("30-late.conf");
    node.write(
        &late,
        "[[registry]]\nprefix = \"rewritten.test/lib\"\nblocked = true\n",
    );
    let e = pull(&d, "rewritten.test/lib/busybox").await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    node.write(&late, "[[registry]]\nprefix = \"x.test\"\nblockd = true\n");
    let e = pull(&d, "mirrored.test/apps/busybox").await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message().contains(&late.display().to_string()) && e.message().contains("blockd"),
        "{e:?}"
    );
    std::fs::remove_file(&late).unwrap();
    pull(&d, "rewritten.test/lib/busybox").await.unwrap();

    // A broken file stops the daemon from starting, naming file and key.
    let broken = Node::new();
    broken.write(
        &broken.conf_dir().join("50-bad.conf"),
        "[[registry]]\nlocation = \"a.test\"\n[[registry.mirror]]\nlocation = \"https://m.test\"\n",
    );
    let out = broken.start_fails();
    assert!(
        out.contains("50-bad.conf") && out.contains("registry[0].mirror[0].location"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_file_credentials_for_pulls_without_auth_config() {
    let reg = Registry::start(Some("peapod:s3cret"), &["busybox"]);
    let name = reg.image("busybox");
    let node = Node::new();
    // Keyed the way `docker login` writes it: scheme and API path.
    node.write(
        &node.auth_file(),
        &format!(
            r#"{{"auths": {{"http://{}/v2/": {{"auth": "{}"}}}}}}"#,
            reg.addr,
            b64("peapod:s3cret")
        ),
    );
    let d = node.daemon(300);
    let id = pull(&d, &name).await.unwrap();
    d.remove_image(&id).await;

    // The request's own credentials win over the node's.
    let e = d.pull_as(&name, "peapod", "wrong").await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");

    // Read on every pull; the repository's entry beats the registry's.
    node.write(
        &node.auth_file(),
        &format!(
            r#"{{"auths": {{"{0}": {{"auth": "{1}"}}, "{0}/busybox": {{"auth": "{2}"}}}}}}"#,
            reg.addr,
            b64("peapod:s3cret"),
            b64("peapod:wrong")
        ),
    );
    let e = pull(&d, &name).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");

    node.write(&node.auth_file(), "{\"auths\": {");
    let e = pull(&d, &name).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message()
            .contains(&node.auth_file().display().to_string()),
        "{e:?}"
    );
    assert_eq!(image_count(&d).await, 0);

    // Without the file, the registry wants credentials as before.
    let bare = Node::new();
    let d2 = bare.daemon(300);
    let e = pull(&d2, &name).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");

    // A malformed file stops the daemon from starting.
    bare.write(
        &bare.auth_file(),
        r#"{"auths": {"quay.io": {"auth": "%%%"}}}"#,
    );
    let out = bare.start_fails();
    assert!(
        out.contains(&bare.auth_file().display().to_string()) && out.contains("quay.io"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_blob_is_cancelled_by_the_progress_timeout() {
    let reg = Registry::shared();
    let proxy = Proxy::start(&reg.addr, None, None);
    let stalled = layer_digest(reg, "layers", 1);
    proxy.set_fault(Fault::Stall(stalled.clone()));
    let node = Node::new();
    let d = node.daemon(2);

    let started = Instant::now();
    let e = pull(&d, &format!("{}/layers", proxy.addr))
        .await
        .unwrap_err();
    let took = started.elapsed();
    proxy.release();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert!(e.message().contains(&stalled), "names the blob: {e:?}");
    assert!(
        took < Duration::from_secs(15),
        "cancelled {took:?} after the pull started"
    );
    assert!(took >= Duration::from_secs(2), "too early: {took:?}");
    // Nothing of the image is left: no record, no layer, no config, no
    // half-unpacked directory.
    assert_eq!(image_count(&d).await, 0);
    for sub in ["tmp", "layers", "blobs/sha256"] {
        assert!(
            store_entries(&d, sub).is_empty(),
            "{sub}: {:?}",
            store_entries(&d, sub)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_pull_logs_its_progress_and_is_not_cancelled() {
    let reg = Registry::shared();
    let proxy = Proxy::start(&reg.addr, None, None);
    let slow = layer_digest(reg, "busybox", 0);
    // About 8 s in all, never 2 s without a byte.
    proxy.set_fault(Fault::Throttle {
        digest: slow,
        pieces: 16,
        pause: Duration::from_millis(500),
    });
    let node = Node::new();
    let d = node.daemon(2);
    let name = format!("{}/busybox", proxy.addr);
    pull(&d, &name).await.unwrap();

    let log = strip_ansi(&d.log_text());
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("pulling:") && l.contains(&name))
        .collect();
    assert!(!lines.is_empty(), "no progress line in the log:\n{log}");
    for line in &lines {
        assert!(
            line.contains(" INFO ")
                && line.contains("received_bytes=")
                && line.contains("bytes_per_second="),
            "{line}"
        );
    }
    let received: Vec<u64> = lines
        .iter()
        .filter_map(|l| {
            l.split("received_bytes=")
                .nth(1)?
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert!(
        received.iter().any(|&n| n > 0),
        "progress shows bytes: {lines:?}"
    );
}
