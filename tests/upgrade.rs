//! The upgrade: pods and containers made by the previous version of peapod
//! (`hack/previous-version`, built by `hack/build-previous.sh`), its daemon
//! stopped, and this version started on the same root and state: it takes
//! them over — their state, the exits that happened in between, the old
//! monitors' exit files and control sockets — and stops and removes them
//! leaving nothing behind.

mod common;

use std::time::Duration;

use common::containers::*;
use common::*;
use peapod::api;

fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_and_containers_of_the_previous_version_are_taken_over() {
    let mut d = TestDaemon::start_with(Options {
        binaries: Some(Binaries::previous()),
        ..Default::default()
    });
    let image = d.pull("busybox:latest").await;
    let pod = d.pod("upgrade").await;
    let mut c = d.container_config("long", &image, &[]);
    c.command = sh("echo before; trap 'exit 3' TERM; while true; do sleep 0.1; done");
    let long = d.run(&pod, c).await;
    let mut c = d.container_config("short", &image, &[]);
    c.command = sh("sleep 3; echo bye; exit 7");
    let short = d.run(&pod, c).await;
    let mut c = d.container_config("done", &image, &[]);
    c.command = sh("echo done");
    let done = d.run(&pod, c).await;
    d.wait_exit(&done, Duration::from_secs(10)).await;
    let pid = d.cpid(&long).await;
    let infra = d.infra_pid(&pod.id).await;

    // The previous daemon stops; its pods and containers run on, and one
    // container exits meanwhile.
    d.terminate();
    tokio::time::sleep(Duration::from_secs(4)).await;
    d.binaries = Binaries::current();
    d.spawn();

    let st = d.status(&pod.id).await.status.unwrap();
    assert_eq!(st.state, api::PodSandboxState::SandboxReady as i32);
    assert_eq!(d.infra_pid(&pod.id).await, infra);
    let st = d.cstatus(&long).await;
    assert_eq!(st.state, api::ContainerState::ContainerRunning as i32);
    assert_eq!(d.cpid(&long).await, pid);
    let st = d.cstatus(&short).await;
    assert_eq!((st.exit_code, st.reason.as_str()), (7, "Error"));
    let st = d.cstatus(&done).await;
    assert_eq!((st.exit_code, st.reason.as_str()), (0, "Completed"));
    let lines = read_log(&pod.log_dir().join("short/0.log"));
    assert_eq!(log_text(&lines, "stdout"), ["bye"]);

    // The previous version's monitor answers this version's requests.
    let log = pod.log_dir().join("long/0.log");
    std::fs::rename(&log, log.with_extension("log.1")).unwrap();
    d.runtime()
        .await
        .reopen_container_log(api::ReopenContainerLogRequest {
            container_id: long.clone(),
        })
        .await
        .unwrap();
    assert!(log.exists(), "the old monitor reopened the log");
    assert_eq!(d.exec_ok(&long, &["echo", "after"]).await, "after\n");

    // Its exit, recorded by the old monitor, reaches this daemon.
    d.stop_container(&long, 10).await;
    let st = d.cstatus(&long).await;
    assert_eq!((st.exit_code, st.reason.as_str()), (3, "Error"));
    assert!(!process_exists(pid));

    d.remove_all().await;
    d.assert_no_containers_left();
    d.assert_nothing_left(&pod.config.linux.as_ref().unwrap().cgroup_parent);
    assert!(!process_exists(infra));
}
