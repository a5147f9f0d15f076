//! A pod's requests and limits as the kernel holds them: the container's
//! cgroup files for Guaranteed, Burstable and BestEffort pods (the values
//! kubelet sends), oom_score_adj, an OOM kill reported as OOMKilled,
//! UpdateContainerResources merging a partial update, and stats read
//! against the cgroup files.

mod common;

use std::collections::HashMap;
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

fn limits(r: api::LinuxContainerResources) -> impl FnOnce(&mut api::ContainerConfig) {
    move |c| c.linux.as_mut().unwrap().resources = Some(r)
}

/// The hugepage entries kubelet adds to every container.
fn hugepages() -> Vec<api::HugepageLimit> {
    ["2MB", "1GB"]
        .iter()
        .map(|s| api::HugepageLimit {
            page_size: s.to_string(),
            limit: 0,
        })
        .collect()
}

/// The container's cgroup in `controller`'s hierarchy, as the kernel
/// reports it for its init.
fn cg(pid: i32) -> String {
    proc_cgroup(pid, "memory")
}

fn oom_floor() -> i64 {
    // Root without CAP_SYS_RESOURCE (this kind of machine) may not go below
    // its own value; with it, nothing is clamped.
    let st = std::fs::read_to_string("/proc/self/status").unwrap();
    let eff = st
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap();
    if eff & (1 << 24) != 0 {
        -1000
    } else {
        std::fs::read_to_string("/proc/self/oom_score_adj")
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn qos_classes_become_cgroup_files() {
    let d = TestDaemon::start_with(no_cni());
    let image = d.pull("busybox:latest").await;
    let pod = d.host_pod("qos").await;

    // Burstable: requests cpu 250m / memory 64Mi, limits 500m / 128Mi.
    let mut c = d.container_config("burstable", &image, &["sleep", "1000"]);
    limits(api::LinuxContainerResources {
        cpu_period: 100000,
        cpu_quota: 50000,
        cpu_shares: 256,
        memory_limit_in_bytes: 134217728,
        oom_score_adj: 998,
        hugepage_limits: hugepages(),
        memory_swap_limit_in_bytes: 134217728,
        ..Default::default()
    })(&mut c);
    let burstable = d.run(&pod, c).await;
    let p = d.cpid(&burstable).await;
    let path = cg(p);
    assert_eq!(path, format!("{}/{burstable}", pod.cgroup_parent()));
    assert_eq!(cgroup_v1_file("cpu", &path, "cpu.shares"), "256");
    assert_eq!(cgroup_v1_file("cpu", &path, "cpu.cfs_quota_us"), "50000");
    assert_eq!(cgroup_v1_file("cpu", &path, "cpu.cfs_period_us"), "100000");
    assert_eq!(
        cgroup_v1_file("memory", &path, "memory.limit_in_bytes"),
        "134217728"
    );
    assert_eq!(
        cgroup_v1_file("memory", &path, "memory.memsw.limit_in_bytes"),
        "134217728"
    );
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{p}/oom_score_adj"))
            .unwrap()
            .trim(),
        "998"
    );
    // The same cgroup in every hierarchy (kubelet maps stats by the last
    // path element).
    for line in std::fs::read_to_string(format!("/proc/{p}/cgroup"))
        .unwrap()
        .lines()
    {
        assert!(line.ends_with(&format!("/{burstable}")), "{line}");
    }
    let st = d.cstatus(&burstable).await;
    let r = st.resources.unwrap().linux.unwrap();
    assert_eq!(
        (r.cpu_shares, r.cpu_quota, r.memory_limit_in_bytes),
        (256, 50000, 134217728)
    );

    // Guaranteed: cpu 500m, memory 128Mi; oom_score_adj -997, raised to the
    // daemon's own floor when it may not go lower.
    let mut c = d.container_config("guaranteed", &image, &["sleep", "1000"]);
    limits(api::LinuxContainerResources {
        cpu_period: 100000,
        cpu_quota: 50000,
        cpu_shares: 512,
        memory_limit_in_bytes: 134217728,
        oom_score_adj: -997,
        hugepage_limits: hugepages(),
        cpuset_cpus: "0".into(),
        ..Default::default()
    })(&mut c);
    let guaranteed = d.run(&pod, c).await;
    let p = d.cpid(&guaranteed).await;
    let path = cg(p);
    assert_eq!(cgroup_v1_file("cpu", &path, "cpu.shares"), "512");
    assert_eq!(cgroup_v1_file("cpu", &path, "cpu.cfs_quota_us"), "50000");
    assert_eq!(
        cgroup_v1_file("memory", &path, "memory.limit_in_bytes"),
        "134217728"
    );
    assert_eq!(cgroup_v1_file("cpuset", &path, "cpuset.cpus"), "0");
    assert_eq!(proc_status(p)["Cpus_allowed_list"], "0");
    let adj: i64 = std::fs::read_to_string(format!("/proc/{p}/oom_score_adj"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(adj, (-997i64).max(oom_floor()));

    // BestEffort: shares 2, no quota, no memory limit.
    let be = d
        .run(
            &pod,
            d.container_config("besteffort", &image, &["sleep", "1000"]),
        )
        .await;
    let p = d.cpid(&be).await;
    let path = cg(p);
    assert_eq!(cgroup_v1_file("cpu", &path, "cpu.shares"), "2");
    assert_eq!(cgroup_v1_file("cpu", &path, "cpu.cfs_quota_us"), "-1");
    let unlimited: u64 = cgroup_v1_file("memory", &path, "memory.limit_in_bytes")
        .parse()
        .unwrap();
    assert!(unlimited > 1 << 60, "{unlimited}");
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{p}/oom_score_adj"))
            .unwrap()
            .trim(),
        "1000"
    );
    d.remove_all().await;
    d.assert_no_containers_left();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_process_over_its_memory_limit_is_oom_killed_and_reported() {
    let d = TestDaemon::start_with(no_cni());
    let image = d.pull("busybox:latest").await;
    let pod = d.host_pod("oom").await;
    let mut c = d.container_config("hog", &image, &[]);
    c.command = vec![
        "sh".into(),
        "-c".into(),
        "echo start; tail /dev/zero".into(),
    ];
    limits(api::LinuxContainerResources {
        cpu_period: 100000,
        cpu_shares: 2,
        memory_limit_in_bytes: 32 * 1024 * 1024,
        memory_swap_limit_in_bytes: 32 * 1024 * 1024,
        oom_score_adj: 1000,
        ..Default::default()
    })(&mut c);
    let id = d.run(&pod, c).await;
    let st = d.wait_exit(&id, Duration::from_secs(60)).await;
    assert_eq!(st.exit_code, 137);
    assert_eq!(st.reason, "OOMKilled");
    // A SIGKILL without an OOM is not one.
    let other = d
        .run(
            &pod,
            d.container_config("killed", &image, &["sleep", "1000"]),
        )
        .await;
    d.cpid(&other).await;
    d.stop_container(&other, 0).await;
    let st = d.cstatus(&other).await;
    assert_eq!((st.exit_code, st.reason.as_str()), (137, "Error"));
    d.remove_all().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn update_container_resources_merges_a_partial_update() {
    let d = TestDaemon::start_with(no_cni());
    let image = d.pull("busybox:latest").await;
    let pod = d.host_pod("update").await;
    let mut c = d.container_config("u", &image, &["sleep", "1000"]);
    limits(api::LinuxContainerResources {
        cpu_period: 100000,
        cpu_quota: 50000,
        cpu_shares: 256,
        memory_limit_in_bytes: 134217728,
        memory_swap_limit_in_bytes: 134217728,
        oom_score_adj: 998,
        ..Default::default()
    })(&mut c);
    let id = d.run(&pod, c).await;
    let path = cg(d.cpid(&id).await);
    let update = |linux: api::LinuxContainerResources| api::UpdateContainerResourcesRequest {
        container_id: id.clone(),
        linux: Some(linux),
        windows: None,
        annotations: HashMap::new(),
    };
    // The CPU manager sends only cpuset_cpus.
    d.runtime()
        .await
        .update_container_resources(update(api::LinuxContainerResources {
            cpuset_cpus: "0".into(),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(cgroup_v1_file("cpuset", &path, "cpuset.cpus"), "0");
    assert_eq!(cgroup_v1_file("cpu", &path, "cpu.shares"), "256");
    assert_eq!(cgroup_v1_file("cpu", &path, "cpu.cfs_quota_us"), "50000");
    assert_eq!(
        cgroup_v1_file("memory", &path, "memory.limit_in_bytes"),
        "134217728"
    );
    // A resize: more CPU and memory.
    d.runtime()
        .await
        .update_container_resources(update(api::LinuxContainerResources {
            cpu_period: 100000,
            cpu_quota: 100000,
            cpu_shares: 1024,
            memory_limit_in_bytes: 268435456,
            memory_swap_limit_in_bytes: 268435456,
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(cgroup_v1_file("cpu", &path, "cpu.shares"), "1024");
    assert_eq!(cgroup_v1_file("cpu", &path, "cpu.cfs_quota_us"), "100000");
    assert_eq!(
        cgroup_v1_file("memory", &path, "memory.limit_in_bytes"),
        "268435456"
    );
    assert_eq!(cgroup_v1_file("cpuset", &path, "cpuset.cpus"), "0");
    let r = d.cstatus(&id).await.resources.unwrap().linux.unwrap();
    assert_eq!(r.cpuset_cpus, "0");
    assert_eq!(r.cpu_shares, 1024);
    assert_eq!(r.memory_limit_in_bytes, 268435456);
    assert_eq!(r.oom_score_adj, 998);
    // Bad values are refused before anything changes.
    let e = d
        .runtime()
        .await
        .update_container_resources(update(api::LinuxContainerResources {
            cpu_shares: -5,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("linux.cpu_shares"), "{e:?}");
    d.stop_container(&id, 0).await;
    let e = d
        .runtime()
        .await
        .update_container_resources(update(api::LinuxContainerResources {
            cpu_shares: 512,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    d.remove_all().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stats_match_the_cgroup_files() {
    let d = TestDaemon::start_with(no_cni());
    let image = d.pull("busybox:latest").await;
    let pod = d.host_pod("stats").await;
    let mut c = d.container_config("busy", &image, &[]);
    c.command = vec![
        "sh".into(),
        "-c".into(),
        "dd if=/dev/zero of=/blob bs=1M count=4 2>/dev/null; while :; do :; done".into(),
    ];
    limits(api::LinuxContainerResources {
        cpu_period: 100000,
        cpu_shares: 2,
        memory_limit_in_bytes: 134217728,
        oom_score_adj: 1000,
        ..Default::default()
    })(&mut c);
    c.labels.insert("stats".into(), "yes".into());
    let busy = d.run(&pod, c).await;
    let idle = d
        .run(&pod, d.container_config("idle", &image, &["sleep", "1000"]))
        .await;
    let path = cg(d.cpid(&busy).await);
    d.cpid(&idle).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let list = |f: api::ContainerStatsFilter| {
        let d = &d;
        async move {
            d.runtime()
                .await
                .list_container_stats(api::ListContainerStatsRequest { filter: Some(f) })
                .await
                .unwrap()
                .into_inner()
                .stats
        }
    };
    let all = list(api::ContainerStatsFilter::default()).await;
    assert_eq!(all.len(), 2);
    let by_label = list(api::ContainerStatsFilter {
        label_selector: HashMap::from([("stats".to_string(), "yes".to_string())]),
        ..Default::default()
    })
    .await;
    assert_eq!(by_label.len(), 1);
    let s = &by_label[0];
    let attrs = s.attributes.as_ref().unwrap();
    assert_eq!(attrs.id, busy);
    assert_eq!(attrs.metadata.as_ref().unwrap().name, "busy");
    assert_eq!(
        attrs.annotations["io.kubernetes.container.restartCount"],
        "0"
    );
    let cpu = s.cpu.as_ref().unwrap();
    let reported = cpu.usage_core_nano_seconds.as_ref().unwrap().value;
    let after: u64 = cgroup_v1_file("cpuacct", &path, "cpuacct.usage")
        .parse()
        .unwrap();
    assert!(
        reported > 500_000_000,
        "a busy loop for 1.5 s used {reported} ns"
    );
    assert!(reported <= after, "{reported} > {after}");
    let mem = s.memory.as_ref().unwrap();
    let ws = mem.working_set_bytes.as_ref().unwrap().value;
    let usage: u64 = cgroup_v1_file("memory", &path, "memory.usage_in_bytes")
        .parse()
        .unwrap();
    assert!(ws > 0 && ws <= mem.usage_bytes.as_ref().unwrap().value);
    assert!(mem.usage_bytes.as_ref().unwrap().value <= usage * 2 + (1 << 20));
    assert_eq!(mem.available_bytes.as_ref().unwrap().value, 134217728 - ws);
    assert!(mem.page_faults.as_ref().unwrap().value > 0);
    let wl = s.writable_layer.as_ref().unwrap();
    assert!(wl.used_bytes.as_ref().unwrap().value >= 4 << 20, "{wl:?}");
    assert!(wl.inodes_used.as_ref().unwrap().value >= 2);

    // A second sample gives the rate: about one core for the busy loop.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let again = d
        .runtime()
        .await
        .container_stats(api::ContainerStatsRequest {
            container_id: busy.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap();
    let nano_cores = again.cpu.unwrap().usage_nano_cores.unwrap().value;
    assert!(nano_cores > 300_000_000, "{nano_cores}");
    let by_pod = list(api::ContainerStatsFilter {
        pod_sandbox_id: pod.id.clone(),
        ..Default::default()
    })
    .await;
    assert_eq!(by_pod.len(), 2);
    let e = d
        .runtime()
        .await
        .container_stats(api::ContainerStatsRequest {
            container_id: "f".repeat(64),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    d.remove_all().await;
}
