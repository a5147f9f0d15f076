//! UpdatePodSandboxResources: the pod-level limits of an in-place resize
//! land in the sandbox cgroup peapod owns (read from the kernel's files),
//! kubelet's pod cgroup above it is left alone, the request is kept in
//! the record (verbose PodSandboxStatus) across a restart, a limit the
//! kernel refuses changes nothing, and bad requests name their field.

mod common;

use common::containers::*;
use common::*;
use peapod::api;
use tonic::Code;

const MIB: i64 = 1024 * 1024;

fn no_cni() -> Options {
    Options {
        cni: false,
        ..Default::default()
    }
}

fn request(
    id: &str,
    overhead: Option<api::LinuxContainerResources>,
    resources: Option<api::LinuxContainerResources>,
) -> api::UpdatePodSandboxResourcesRequest {
    api::UpdatePodSandboxResourcesRequest {
        pod_sandbox_id: id.to_string(),
        overhead,
        resources,
    }
}

/// What kubelet sends for a Burstable pod resized to half a CPU and
/// 256 MiB, with a runtime class overhead of 16 MiB.
fn resize() -> (api::LinuxContainerResources, api::LinuxContainerResources) {
    let resources = api::LinuxContainerResources {
        cpu_period: 100_000,
        cpu_quota: 50_000,
        cpu_shares: 512,
        memory_limit_in_bytes: 256 * MIB,
        ..Default::default()
    };
    let overhead = api::LinuxContainerResources {
        memory_limit_in_bytes: 16 * MIB,
        cpu_shares: 10,
        ..Default::default()
    };
    (overhead, resources)
}

async fn update(
    d: &TestDaemon,
    req: api::UpdatePodSandboxResourcesRequest,
) -> Result<(), tonic::Status> {
    d.runtime()
        .await
        .update_pod_sandbox_resources(req)
        .await
        .map(|_| ())
}

/// The `resources` member of the verbose status's info.
async fn recorded(d: &TestDaemon, id: &str) -> serde_json::Value {
    let st = d.status(id).await;
    let info: serde_json::Value = serde_json::from_str(&st.info["info"]).unwrap();
    info["resources"].clone()
}

fn unified_host() -> bool {
    std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The sandbox cgroup's CPU and memory files as the kernel shows them:
/// (quota, period, shares or weight, memory limit).
fn limits_of(infra: i32) -> (String, String, String, String) {
    if unified_host() {
        let cg = proc_cgroup(infra, "");
        let file = |f: &str| {
            std::fs::read_to_string(format!("/sys/fs/cgroup{cg}/{f}"))
                .unwrap()
                .trim()
                .to_string()
        };
        let max = file("cpu.max");
        let (quota, period) = max.split_once(' ').unwrap();
        return (
            quota.to_string(),
            period.to_string(),
            file("cpu.weight"),
            file("memory.max"),
        );
    }
    let cpu = proc_cgroup(infra, "cpu");
    let memory = proc_cgroup(infra, "memory");
    (
        cgroup_v1_file("cpu", &cpu, "cpu.cfs_quota_us"),
        cgroup_v1_file("cpu", &cpu, "cpu.cfs_period_us"),
        cgroup_v1_file("cpu", &cpu, "cpu.shares"),
        cgroup_v1_file("memory", &memory, "memory.limit_in_bytes"),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resize_bounds_the_sandbox_cgroup_and_is_recorded() {
    let mut d = TestDaemon::start_with(no_cni());
    let pod = d.host_pod("resize").await;
    let infra = d.infra_pid(&pod.id).await;
    let sandbox_cg = proc_cgroup(infra, "memory");
    assert_eq!(sandbox_cg, format!("{}/{}", pod.cgroup_parent(), pod.id));
    let parent_before = limits_of_dir(&pod.cgroup_parent());

    let (overhead, resources) = resize();
    update(&d, request(&pod.id, Some(overhead), Some(resources)))
        .await
        .unwrap_or_else(|e| panic!("UpdatePodSandboxResources: {e:?}\n{}", d.log_text()));

    let (quota, period, shares, memory) = limits_of(infra);
    println!("sandbox cgroup {sandbox_cg}: quota {quota} period {period} shares/weight {shares} memory {memory}");
    assert_eq!((quota.as_str(), period.as_str()), ("50000", "100000"));
    let weight_or_shares = if unified_host() { "20" } else { "512" };
    assert_eq!(shares, weight_or_shares);
    assert_eq!(memory, (256 * MIB).to_string());
    // kubelet's pod cgroup is kubelet's: untouched.
    assert_eq!(limits_of_dir(&pod.cgroup_parent()), parent_before);

    let expect_recorded = |r: &serde_json::Value| {
        assert_eq!(r["resources"]["cpu_quota"], 50_000, "{r}");
        assert_eq!(r["resources"]["cpu_period"], 100_000, "{r}");
        assert_eq!(r["resources"]["cpu_shares"], 512, "{r}");
        assert_eq!(r["resources"]["memory_limit_in_bytes"], 256 * MIB, "{r}");
        assert_eq!(r["overhead"]["memory_limit_in_bytes"], 16 * MIB, "{r}");
        assert_eq!(r["overhead"]["cpu_shares"], 10, "{r}");
    };
    expect_recorded(&recorded(&d, &pod.id).await);

    // Kept across a restart of the daemon.
    d.terminate();
    d.spawn();
    expect_recorded(&recorded(&d, &pod.id).await);
    assert_eq!(limits_of(infra).3, (256 * MIB).to_string());

    d.remove_all().await;
}

/// The memory and CPU files of a cgroup directory (any version), for
/// comparing before and after.
fn limits_of_dir(path: &str) -> Vec<(String, String)> {
    let files = [
        "cpu.cfs_quota_us",
        "cpu.shares",
        "memory.limit_in_bytes",
        "cpu.max",
        "cpu.weight",
        "memory.max",
    ];
    TestDaemon::cgroup_dirs(path)
        .into_iter()
        .flat_map(|dir| files.iter().map(move |f| dir.join(f)))
        .filter_map(|p| {
            let v = std::fs::read_to_string(&p).ok()?;
            Some((p.display().to_string(), v.trim().to_string()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_limit_the_kernel_refuses_changes_nothing() {
    let d = TestDaemon::start_with(no_cni());
    let pod = d.host_pod("refused").await;
    let infra = d.infra_pid(&pod.id).await;
    let (_, resources) = resize();
    update(&d, request(&pod.id, None, Some(resources)))
        .await
        .unwrap();
    let before = limits_of(infra);

    // No such CPU: the kernel refuses the cpuset, after the CPU quota and
    // the memory limit were written.
    let refused = api::LinuxContainerResources {
        cpu_quota: 30_000,
        memory_limit_in_bytes: 128 * MIB,
        cpuset_cpus: "4095".into(),
        ..Default::default()
    };
    let err = update(&d, request(&pod.id, None, Some(refused)))
        .await
        .expect_err("a cpuset of a CPU this host does not have");
    println!("refused: {}", err.message());
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("resources"), "{err:?}");
    assert_eq!(
        limits_of(infra),
        before,
        "the refused update changed the cgroup"
    );
    assert_eq!(
        recorded(&d, &pod.id).await["resources"]["cpu_quota"],
        50_000
    );
    d.remove_all().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_pod_records_the_resize_and_bad_requests_name_the_field() {
    let d = TestDaemon::start_with(no_cni());
    let pod = d.host_pod("stopped").await;

    let err = update(&d, request("", None, None)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("pod_sandbox_id"), "{err:?}");

    let err = update(&d, request("0123456789abcdef", None, None))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    let negative = api::LinuxContainerResources {
        memory_limit_in_bytes: -5,
        ..Default::default()
    };
    let err = update(&d, request(&pod.id, None, Some(negative.clone())))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("resources.memory_limit_in_bytes"),
        "{err:?}"
    );
    let err = update(&d, request(&pod.id, Some(negative), None))
        .await
        .unwrap_err();
    assert!(
        err.message().contains("overhead.memory_limit_in_bytes"),
        "{err:?}"
    );
    let bad_cpuset = api::LinuxContainerResources {
        cpuset_cpus: "zero".into(),
        ..Default::default()
    };
    let err = update(&d, request(&pod.id, None, Some(bad_cpuset)))
        .await
        .unwrap_err();
    assert!(err.message().contains("resources.cpuset_cpus"), "{err:?}");

    d.runtime()
        .await
        .stop_pod_sandbox(api::StopPodSandboxRequest {
            pod_sandbox_id: pod.id.clone(),
        })
        .await
        .unwrap();
    let (overhead, resources) = resize();
    update(&d, request(&pod.id, Some(overhead), Some(resources)))
        .await
        .expect("a stopped pod's resize is recorded");
    assert_eq!(
        recorded(&d, &pod.id).await["resources"]["memory_limit_in_bytes"],
        256 * MIB
    );
    d.remove_all().await;
}
