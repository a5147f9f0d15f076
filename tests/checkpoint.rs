//! CheckpointContainer with runc and CRIU. What is expected depends on
//! the host, decided by `criu check` before the RPC: where CRIU works, an
//! archive in CRI-O's layout (read back with tar) while the container
//! keeps running; where CRIU refuses this kernel, FailedPrecondition
//! carrying CRIU's own error lines, with no archive, no partial file and
//! no staging directory left, the container still running. The test says
//! which case it ran and fails if the daemon did the other. Bad requests
//! name their field.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::containers::*;
use common::*;
use peapod::api;
use tonic::Code;

fn no_cni() -> Options {
    Options {
        cni: false,
        ..Default::default()
    }
}

/// Whether `criu check` passes here, and what it said.
fn criu_check() -> (bool, String) {
    assert!(
        which("criu"),
        "criu is missing: install Debian's criu package (hack/install-deps.sh does)"
    );
    let out = Command::new("criu")
        .arg("check")
        .output()
        .expect("run criu check");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said.trim().to_string())
}

async fn checkpoint(
    d: &TestDaemon,
    id: &str,
    location: &Path,
    timeout: i64,
) -> Result<(), tonic::Status> {
    d.runtime()
        .await
        .checkpoint_container(api::CheckpointContainerRequest {
            container_id: id.to_string(),
            location: location.to_string_lossy().into_owned(),
            timeout,
        })
        .await
        .map(|_| ())
}

/// A container counting into /count five times a second, having deleted
/// /etc/group from its image.
async fn counter(d: &TestDaemon, pod: &Pod, image: &str) -> String {
    let script = "rm /etc/group; i=0; while true; do i=$((i+1)); echo $i > /count; sleep 0.2; done";
    let id = d
        .run(
            pod,
            d.container_config("counter", image, &["sh", "-c", script]),
        )
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while d
        .exec(&id, &["cat", "/count"], 5)
        .await
        .map(|r| r.exit_code)
        .ok()
        != Some(0)
    {
        assert!(std::time::Instant::now() < deadline, "/count never written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    id
}

async fn count(d: &TestDaemon, id: &str) -> u64 {
    d.exec_ok(id, &["cat", "/count"])
        .await
        .trim()
        .parse()
        .unwrap()
}

/// The container still runs: its init alive, RUNNING, and still counting.
async fn assert_still_running(d: &TestDaemon, id: &str, pid: i32) {
    assert!(process_exists(pid), "container init {pid} is gone");
    assert_eq!(
        d.cstatus(id).await.state,
        api::ContainerState::ContainerRunning as i32
    );
    let before = count(d, id).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let after = count(d, id).await;
    assert!(
        after > before,
        "the container stopped counting ({before} → {after}): frozen?"
    );
}

/// Files in `dir` (names), recursively absent when `dir` is.
fn names_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_container_is_checkpointed_or_criu_s_reason_is_given() {
    let (criu_works, said) = criu_check();
    let d = TestDaemon::start_with(no_cni());
    let image = d.pull("busybox:latest").await;
    let pod = d.host_pod("ckpt").await;
    let id = counter(&d, &pod, &image).await;
    let pid = d.cpid(&id).await;
    let out = d.dir.path().join("kubelet-checkpoints");
    std::fs::create_dir(&out).unwrap();
    let location = out.join("checkpoint-ckpt_default-counter.tar");

    let result = checkpoint(&d, &id, &location, 60).await;
    if criu_works {
        println!("`criu check` passes here: expecting a checkpoint archive");
        result.unwrap_or_else(|e| panic!("CheckpointContainer: {e:?}\n{}", d.log_text()));
        assert_archive(&location, &id);
    } else {
        println!(
            "`criu check` fails here: expecting FailedPrecondition with CRIU's reason\n\
             criu check said: {said}"
        );
        let err = result.expect_err("CRIU cannot dump on this host, yet the checkpoint succeeded");
        println!(
            "CheckpointContainer answered {:?}: {}",
            err.code(),
            err.message()
        );
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        // CRIU's own log lines, not just the runtime's summary.
        assert!(err.message().contains("Error (criu/"), "{err:?}");
        assert!(
            !location.exists(),
            "an archive was left at {}",
            location.display()
        );
        assert_eq!(names_in(&out), Vec::<String>::new(), "partial files left");
    }
    let staging = d.root.join("checkpoints");
    assert_eq!(
        names_in(&staging),
        Vec::<String>::new(),
        "staging left behind"
    );
    assert_still_running(&d, &id, pid).await;
    d.remove_all().await;
}

/// The archive holds CRI-O's entries, CRIU's images, the spec the
/// container runs with, and the layer's changes.
fn assert_archive(location: &Path, id: &str) {
    let listing = sh("tar", &["-tf", &location.to_string_lossy()]);
    println!("archive:\n{listing}");
    for entry in [
        "config.dump",
        "spec.dump",
        "status.dump",
        "rootfs-diff.tar",
        "deleted.files",
        "checkpoint/inventory.img",
    ] {
        assert!(
            listing.lines().any(|l| l.trim_end_matches('/') == entry),
            "{entry} missing"
        );
    }
    let x = tempfile::tempdir().unwrap();
    let dir = x.path().to_string_lossy().into_owned();
    sh("tar", &["-xf", &location.to_string_lossy(), "-C", &dir]);
    let diff = sh("tar", &["-tf", &format!("{dir}/rootfs-diff.tar")]);
    assert!(
        diff.lines().any(|l| l == "count"),
        "rootfs-diff.tar: {diff}"
    );
    let deleted: Vec<String> =
        serde_json::from_slice(&std::fs::read(x.path().join("deleted.files")).unwrap()).unwrap();
    assert!(deleted.contains(&"/etc/group".to_string()), "{deleted:?}");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(x.path().join("config.dump")).unwrap()).unwrap();
    assert_eq!(config["id"], id);
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(x.path().join("spec.dump")).unwrap()).unwrap();
    assert_eq!(spec["process"]["args"][0], "sh");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_name_their_field() {
    let d = TestDaemon::start_with(no_cni());
    let image = d.pull("busybox:latest").await;
    let pod = d.host_pod("ckpt-bad").await;
    let id = d
        .run(
            &pod,
            d.container_config("sleeper", &image, &["sleep", "3600"]),
        )
        .await;
    let out = d.dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let ok_location = out.join("c.tar");

    for location in [PathBuf::from(""), PathBuf::from("relative/c.tar")] {
        let err = checkpoint(&d, &id, &location, 10).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{location:?}: {err:?}");
        assert!(err.message().contains("location"), "{err:?}");
    }
    let err = checkpoint(&d, &id, &out.join("missing/c.tar"), 10)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("location"), "{err:?}");

    std::fs::write(out.join("taken.tar"), "").unwrap();
    let err = checkpoint(&d, &id, &out.join("taken.tar"), 10)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    assert_eq!(std::fs::read(out.join("taken.tar")).unwrap(), b"");

    let err = checkpoint(&d, "", &ok_location, 10).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("container_id"), "{err:?}");
    let err = checkpoint(&d, "0123456789abcdef", &ok_location, 10)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    let done = d
        .run(&pod, d.container_config("done", &image, &["true"]))
        .await;
    d.wait_exit(&done, Duration::from_secs(10)).await;
    let err = checkpoint(&d, &done, &ok_location, 10).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("not running"), "{err:?}");
    assert!(!ok_location.exists());
    d.remove_all().await;
}

/// Without CRIU in the daemon's PATH (runc found through a PATH of its
/// own), FailedPrecondition says CRIU is not installed.
#[tokio::test(flavor = "multi_thread")]
async fn without_criu_the_error_says_so() {
    let bin = tempfile::tempdir().unwrap();
    let runc = Path::new("/usr/sbin/runc");
    assert!(
        runc.exists(),
        "runc is missing: install Debian's runc package"
    );
    std::os::unix::fs::symlink(runc, bin.path().join("runc")).unwrap();
    let path = format!("{}:/usr/bin:/bin", bin.path().display());
    let d = TestDaemon::start_with(Options {
        env: vec![("PATH".into(), path)],
        ..no_cni()
    });
    let image = d.pull("busybox:latest").await;
    let pod = d.host_pod("ckpt-nocriu").await;
    let id = d
        .run(
            &pod,
            d.container_config("sleeper", &image, &["sleep", "3600"]),
        )
        .await;
    let location = d.dir.path().join("c.tar");
    let err = checkpoint(&d, &id, &location, 10).await.unwrap_err();
    println!("without criu: {err:?}");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("CRIU is not installed"), "{err:?}");
    assert!(!location.exists());
    assert_eq!(names_in(&d.root.join("checkpoints")), Vec::<String>::new());
    d.remove_all().await;
}

/// The request's timeout bounds the dump: with a CRIU that never answers
/// (a stand-in in the daemon's PATH), DeadlineExceeded after the timeout,
/// the stand-in killed with the runtime, nothing left, the container still
/// running.
#[tokio::test(flavor = "multi_thread")]
async fn a_dump_past_its_timeout_is_killed_whole() {
    let bin = tempfile::tempdir().unwrap();
    let runc = Path::new("/usr/sbin/runc");
    assert!(
        runc.exists(),
        "runc is missing: install Debian's runc package"
    );
    std::os::unix::fs::symlink(runc, bin.path().join("runc")).unwrap();
    // A sleep no other process has: how the stand-in is found in /proc.
    let fraction = u32::from_str_radix(&rand_hex(4), 16).unwrap();
    let marker = format!("{}.{fraction}", 4000 + std::process::id() % 1000);
    let criu = bin.path().join("criu");
    std::fs::write(&criu, format!("#!/bin/sh\nexec sleep {marker}\n")).unwrap();
    sh("chmod", &["755", &criu.to_string_lossy()]);
    let path = format!("{}:/usr/bin:/bin", bin.path().display());
    let d = TestDaemon::start_with(Options {
        env: vec![("PATH".into(), path)],
        ..no_cni()
    });
    let image = d.pull("busybox:latest").await;
    let pod = d.host_pod("ckpt-slow").await;
    let id = counter(&d, &pod, &image).await;
    let pid = d.cpid(&id).await;
    let location = d.dir.path().join("c.tar");

    let started = std::time::Instant::now();
    let err = checkpoint(&d, &id, &location, 2).await.unwrap_err();
    let took = started.elapsed();
    println!("after {took:?}: {err:?}");
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let stand_ins = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| std::fs::read(e.unwrap().path().join("cmdline")).ok())
            .filter(|c| c == format!("sleep\0{marker}\0").as_bytes())
            .count()
    };
    eventually("the stand-in CRIU killed", || stand_ins() == 0).await;
    assert!(!location.exists());
    assert_eq!(names_in(&d.root.join("checkpoints")), Vec::<String>::new());
    assert_still_running(&d, &id, pid).await;
    d.remove_all().await;
}
