//! The stats RPCs against the kernel: a pod's and its container's figures
//! read in the same test from their cgroup files and from the pod's
//! network namespace, with counters that move bracketed between a kernel
//! read before and after the RPC; a 64 MiB allocation seen in the working
//! set; the filters, the Stream forms, host-network and stopped pods; the
//! writable layer's cached usage.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::containers::*;
use common::*;
use peapod::api;
use tonic::Code;

const MIB: u64 = 1 << 20;

fn v(x: &Option<api::UInt64Value>) -> u64 {
    x.as_ref().expect("value set").value
}

fn kernel_u64(controller: &str, cgroup: &str, file: &str) -> u64 {
    cgroup_v1_file(controller, cgroup, file).parse().unwrap()
}

fn memory_stat(cgroup: &str, key: &str) -> u64 {
    cgroup_v1_file("memory", cgroup, "memory.stat")
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key} "))?.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in memory.stat of {cgroup}"))
}

/// (rx bytes, rx errors, tx bytes, tx errors) of `ifname`, from
/// /proc/net/dev read by a process inside the network namespace of `pid`.
fn netns_counters(pid: i32, ifname: &str) -> (u64, u64, u64, u64) {
    let text = sh(
        "nsenter",
        &[&format!("--net=/proc/{pid}/ns/net"), "cat", "/proc/net/dev"],
    );
    let line = text
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{ifname}:")))
        .unwrap_or_else(|| panic!("no {ifname} in the pod's /proc/net/dev:\n{text}"));
    let n: Vec<u64> = line
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    (n[0], n[2], n[8], n[10])
}

/// `lo` and the other interfaces of the pod's namespace, by name.
fn netns_interfaces(pid: i32) -> Vec<String> {
    let text = sh(
        "nsenter",
        &[&format!("--net=/proc/{pid}/ns/net"), "cat", "/proc/net/dev"],
    );
    text.lines()
        .skip(2)
        .filter_map(|l| Some(l.split_once(':')?.0.trim().to_string()))
        .collect()
}

fn require_tools() {
    for tool in ["nsenter", "ping"] {
        assert!(
            which(tool),
            "this test needs `{tool}` (apt-get install util-linux iputils-ping)"
        );
    }
}

async fn pod_stats(d: &TestDaemon, id: &str) -> Result<api::PodSandboxStats, tonic::Status> {
    d.runtime()
        .await
        .pod_sandbox_stats(api::PodSandboxStatsRequest {
            pod_sandbox_id: id.to_string(),
        })
        .await
        .map(|r| r.into_inner().stats.unwrap())
}

async fn list_pod_stats(
    d: &TestDaemon,
    filter: Option<api::PodSandboxStatsFilter>,
) -> Vec<api::PodSandboxStats> {
    d.runtime()
        .await
        .list_pod_sandbox_stats(api::ListPodSandboxStatsRequest { filter })
        .await
        .unwrap()
        .into_inner()
        .stats
}

async fn container_stats(d: &TestDaemon, id: &str) -> api::ContainerStats {
    d.runtime()
        .await
        .container_stats(api::ContainerStatsRequest {
            container_id: id.to_string(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap()
}

async fn list_container_stats(
    d: &TestDaemon,
    filter: api::ContainerStatsFilter,
) -> Vec<api::ContainerStats> {
    d.runtime()
        .await
        .list_container_stats(api::ListContainerStatsRequest {
            filter: Some(filter),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
}

fn pod_id(s: &api::PodSandboxStats) -> String {
    s.attributes.as_ref().unwrap().id.clone()
}

fn container_id(s: &api::ContainerStats) -> String {
    s.attributes.as_ref().unwrap().id.clone()
}

fn assert_between(what: &str, low: u64, value: u64, high: u64) {
    assert!(
        low <= value && value <= high,
        "{what}: {value} is not between the kernel's {low} and {high}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_and_container_stats_match_the_kernel() {
    require_tools();
    let d = TestDaemon::start();
    let image = d.pull("busybox:latest").await;
    let mut config = d.pod_config("stats");
    config.labels.insert("team".into(), "stats".into());
    let pod = d.pod_with(config).await;
    let other = d.pod("other").await;
    let c = d
        .run(&pod, d.container_config("idle", &image, &["sleep", "1000"]))
        .await;
    let c_cgroup = proc_cgroup(d.cpid(&c).await, "memory");
    let pod_cgroup = pod.cgroup_parent();
    let infra = d.infra_pid(&pod.id).await;
    let ip = d.status(&pod.id).await.status.unwrap().network.unwrap().ip;

    // Network: 5 pings of 1000 bytes from the host, each 1042 bytes on the
    // wire (ICMP 8 + IP 20 + Ethernet 14) in each direction.
    let before = netns_counters(infra, "eth0");
    sh(
        "ping",
        &["-c", "5", "-s", "1000", "-i", "0.2", "-W", "2", &ip],
    );
    let k1 = netns_counters(infra, "eth0");
    let cpu1 = kernel_u64("cpuacct", &pod_cgroup, "cpuacct.usage");
    let ccpu1 = kernel_u64("cpuacct", &c_cgroup, "cpuacct.usage");
    let s = pod_stats(&d, &pod.id).await.unwrap();
    let cpu2 = kernel_u64("cpuacct", &pod_cgroup, "cpuacct.usage");
    let ccpu2 = kernel_u64("cpuacct", &c_cgroup, "cpuacct.usage");
    let k2 = netns_counters(infra, "eth0");

    let attrs = s.attributes.as_ref().unwrap();
    assert_eq!(attrs.id, pod.id);
    assert_eq!(attrs.metadata.as_ref().unwrap().name, "stats");
    assert_eq!(attrs.labels["team"], "stats");
    let linux = s.linux.as_ref().unwrap();
    let net = linux
        .network
        .as_ref()
        .expect("a pod network reports its interfaces");
    let eth0 = net.default_interface.as_ref().unwrap();
    assert_eq!(eth0.name, "eth0");
    let others: Vec<String> = net.interfaces.iter().map(|i| i.name.clone()).collect();
    let mut kernel_others = netns_interfaces(infra);
    kernel_others.retain(|n| n != "lo" && n != "eth0");
    assert_eq!(
        others, kernel_others,
        "the other interfaces, loopback left out"
    );
    assert_between("rx_bytes", k1.0, v(&eth0.rx_bytes), k2.0);
    assert_between("rx_errors", k1.1, v(&eth0.rx_errors), k2.1);
    assert_between("tx_bytes", k1.2, v(&eth0.tx_bytes), k2.2);
    assert_between("tx_errors", k1.3, v(&eth0.tx_errors), k2.3);
    assert!(
        v(&eth0.rx_bytes) - before.0 >= 5 * 1042,
        "{before:?} {eth0:?}"
    );
    assert!(
        v(&eth0.tx_bytes) - before.2 >= 5 * 1042,
        "{before:?} {eth0:?}"
    );
    assert!(net.timestamp > 0);

    // CPU, memory and processes of the pod's cgroup.
    let cpu = linux.cpu.as_ref().unwrap();
    assert_between("pod cpu", cpu1, v(&cpu.usage_core_nano_seconds), cpu2);
    let mem = linux.memory.as_ref().unwrap();
    let usage = kernel_u64("memory", &pod_cgroup, "memory.usage_in_bytes");
    assert!(
        v(&mem.usage_bytes).abs_diff(usage) < MIB,
        "pod memory usage {} against the kernel's {usage}",
        v(&mem.usage_bytes)
    );
    let ws = usage - memory_stat(&pod_cgroup, "total_inactive_file");
    assert!(v(&mem.working_set_bytes).abs_diff(ws) < MIB, "{mem:?} {ws}");
    let rss = memory_stat(&pod_cgroup, "total_rss");
    assert!(v(&mem.rss_bytes).abs_diff(rss) < MIB, "{mem:?} {rss}");
    let faults = memory_stat(&pod_cgroup, "total_pgfault");
    assert!(v(&mem.page_faults) <= faults && v(&mem.page_faults) > 0);
    assert!(v(&mem.major_page_faults) <= memory_stat(&pod_cgroup, "total_pgmajfault"));
    assert!(
        mem.available_bytes.is_none(),
        "no pod memory limit: none available"
    );
    let pids = kernel_u64("pids", &pod_cgroup, "pids.current");
    let process = linux.process.as_ref().unwrap();
    assert_eq!(v(&process.process_count), pids, "infra + sleep");
    assert!(pids >= 2);

    // The pod's container, inside, with its own figures.
    assert_eq!(linux.containers.len(), 1);
    let cs = &linux.containers[0];
    assert_eq!(container_id(cs), c);
    assert_between(
        "container cpu",
        ccpu1,
        v(&cs.cpu.as_ref().unwrap().usage_core_nano_seconds),
        ccpu2,
    );
    let swap = cs.swap.as_ref().expect("this host accounts swap (memsw)");
    let memsw = kernel_u64("memory", &c_cgroup, "memory.memsw.usage_in_bytes");
    let cmem = kernel_u64("memory", &c_cgroup, "memory.usage_in_bytes");
    assert!(v(&swap.swap_usage_bytes).abs_diff(memsw - cmem) < MIB);

    // 64 MiB written to the pod's tmpfs /dev/shm is charged to the
    // container: its working set and the pod's grow by that much.
    let working_sets = || async {
        let c_ws = container_stats(&d, &c)
            .await
            .memory
            .unwrap()
            .working_set_bytes;
        let pod_stats = pod_stats(&d, &pod.id).await.unwrap();
        let p_ws = pod_stats.linux.unwrap().memory.unwrap().working_set_bytes;
        (v(&c_ws), v(&p_ws))
    };
    let (c_ws0, p_ws0) = working_sets().await;
    d.exec_ok(
        &c,
        &["dd", "if=/dev/zero", "of=/dev/shm/x", "bs=1M", "count=64"],
    )
    .await;
    let (c_ws1, p_ws1) = working_sets().await;
    let kernel_ws = kernel_u64("memory", &c_cgroup, "memory.usage_in_bytes")
        - memory_stat(&c_cgroup, "total_inactive_file");
    for (what, grew) in [("container", c_ws1 - c_ws0), ("pod", p_ws1 - p_ws0)] {
        assert!(
            grew.abs_diff(64 * MIB) < 4 * MIB,
            "the {what}'s working set grew by {grew} bytes for 64 MiB"
        );
    }
    assert!(
        c_ws1.abs_diff(kernel_ws) < MIB,
        "{c_ws1} against {kernel_ws}"
    );
    println!(
        "working set: container {c_ws0} -> {c_ws1}, pod {p_ws0} -> {p_ws1} (64 MiB = {})",
        64 * MIB
    );

    // Filters: by id, by label; every ready pod without one.
    let ids = |l: Vec<api::PodSandboxStats>| {
        let mut ids: Vec<String> = l.iter().map(pod_id).collect();
        ids.sort();
        ids
    };
    let mut both = vec![pod.id.clone(), other.id.clone()];
    both.sort();
    assert_eq!(ids(list_pod_stats(&d, None).await), both);
    let by_id = api::PodSandboxStatsFilter {
        id: other.id.clone(),
        ..Default::default()
    };
    assert_eq!(
        ids(list_pod_stats(&d, Some(by_id)).await),
        std::slice::from_ref(&other.id)
    );
    let by_label = api::PodSandboxStatsFilter {
        label_selector: HashMap::from([("team".to_string(), "stats".to_string())]),
        ..Default::default()
    };
    let listed = list_pod_stats(&d, Some(by_label.clone())).await;
    assert_eq!(ids(listed.clone()), std::slice::from_ref(&pod.id));
    let inside: Vec<String> = listed[0]
        .linux
        .as_ref()
        .unwrap()
        .containers
        .iter()
        .map(container_id)
        .collect();
    assert_eq!(inside, std::slice::from_ref(&c));
    let nobody = api::PodSandboxStatsFilter {
        label_selector: HashMap::from([("team".to_string(), "none".to_string())]),
        ..Default::default()
    };
    assert!(list_pod_stats(&d, Some(nobody)).await.is_empty());

    // The Stream forms send the same items as the List forms.
    let mut rt = d.runtime().await;
    let mut stream = rt
        .stream_pod_sandbox_stats(api::StreamPodSandboxStatsRequest {
            filter: Some(by_label),
        })
        .await
        .unwrap()
        .into_inner();
    let mut streamed = vec![];
    while let Some(m) = stream.message().await.unwrap() {
        streamed.extend(m.pod_sandbox_stats);
    }
    assert_eq!(ids(streamed), std::slice::from_ref(&pod.id));
    let c2 = d
        .run(
            &other,
            d.container_config("second", &image, &["sleep", "1000"]),
        )
        .await;
    let mut stream = rt
        .stream_container_stats(api::StreamContainerStatsRequest {
            filter: Some(Default::default()),
        })
        .await
        .unwrap()
        .into_inner();
    let mut streamed: Vec<String> = vec![];
    while let Some(m) = stream.message().await.unwrap() {
        streamed.extend(m.container_stats.iter().map(container_id));
    }
    streamed.sort();
    let mut listed: Vec<String> = list_container_stats(&d, Default::default())
        .await
        .iter()
        .map(container_id)
        .collect();
    listed.sort();
    let mut want = vec![c.clone(), c2.clone()];
    want.sort();
    assert_eq!(streamed, want);
    assert_eq!(listed, want);
    let mut stream = rt
        .stream_container_stats(api::StreamContainerStatsRequest {
            filter: Some(api::ContainerStatsFilter {
                pod_sandbox_id: other.id.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(
        first
            .container_stats
            .iter()
            .map(container_id)
            .collect::<Vec<_>>(),
        [c2]
    );
    assert!(stream.message().await.unwrap().is_none());
    d.remove_all().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn host_network_and_stopped_pods() {
    let d = TestDaemon::start_with(Options {
        cni: false,
        ..Default::default()
    });
    let pod = d.host_pod("host").await;
    let s = pod_stats(&d, &pod.id).await.unwrap();
    let linux = s.linux.unwrap();
    assert!(
        linux.network.is_none(),
        "a host-network pod reports no network, as containerd"
    );
    let pids = kernel_u64("pids", &pod.cgroup_parent(), "pids.current");
    assert_eq!(v(&linux.process.unwrap().process_count), pids);
    assert!(linux.containers.is_empty());

    d.runtime()
        .await
        .stop_pod_sandbox(api::StopPodSandboxRequest {
            pod_sandbox_id: pod.id.clone(),
        })
        .await
        .unwrap();
    assert!(
        list_pod_stats(&d, None).await.is_empty(),
        "a stopped pod is skipped"
    );
    let e = pod_stats(&d, &pod.id).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let e = pod_stats(&d, &"f".repeat(64)).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let e = pod_stats(&d, "").await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    d.remove_all().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn writable_layer_usage_follows_the_container_within_the_refresh_period() {
    let d = TestDaemon::start_with(Options {
        cni: false,
        ..Default::default()
    });
    let image = d.pull("busybox:latest").await;
    let pod = d.host_pod("layer").await;
    let c = d
        .run(
            &pod,
            d.container_config("writer", &image, &["sleep", "1000"]),
        )
        .await;
    let filter = api::ContainerStatsFilter {
        id: c.clone(),
        ..Default::default()
    };
    let used = |s: &api::ContainerStats| v(&s.writable_layer.as_ref().unwrap().used_bytes);
    let before = used(&list_container_stats(&d, filter.clone()).await[0]);
    d.exec_ok(
        &c,
        &["dd", "if=/dev/urandom", "of=/blob", "bs=1M", "count=8"],
    )
    .await;
    let written = Instant::now();
    // The layer is walked at most every 5 s, so the file shows within that.
    loop {
        let now = used(&list_container_stats(&d, filter.clone()).await[0]);
        if now >= before + 8 * MIB {
            println!("8 MiB seen after {:?}", written.elapsed());
            break;
        }
        assert!(
            written.elapsed() < Duration::from_secs(7),
            "8 MiB written to the layer not seen after 7 s: {before} -> {now}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // What the cache saves: a layer of 5000 files walked, then not.
    d.exec_ok(
        &c,
        &[
            "sh",
            "-c",
            "mkdir /many && cd /many && seq 5000 | xargs touch",
        ],
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (walked, inodes) = timed_layer_usage(&d, &filter).await;
    let (cached, cached_inodes) = timed_layer_usage(&d, &filter).await;
    assert!(inodes >= 5000, "{inodes} inodes");
    assert_eq!(cached_inodes, inodes);
    println!("ListContainerStats with a walk of {inodes} inodes: {walked:?}; cached: {cached:?}");
    d.remove_all().await;
}

/// How long ListContainerStats takes, and the inodes it reports.
async fn timed_layer_usage(d: &TestDaemon, filter: &api::ContainerStatsFilter) -> (Duration, u64) {
    let start = Instant::now();
    let stats = list_container_stats(d, filter.clone()).await;
    let inodes = v(&stats[0].writable_layer.as_ref().unwrap().inodes_used);
    (start.elapsed(), inodes)
}

/// The sample of `name` whose label values end with `extra`.
fn sample<'a>(metrics: &'a [api::Metric], name: &str, extra: &[&str]) -> &'a api::Metric {
    metrics
        .iter()
        .find(|m| {
            m.name == name
                && m.label_values
                    .ends_with(&extra.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        })
        .unwrap_or_else(|| panic!("no {name} {extra:?} in {metrics:#?}"))
}

fn value_of(metrics: &[api::Metric], name: &str, extra: &[&str]) -> u64 {
    v(&sample(metrics, name, extra).value)
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_agree_with_the_stats_and_the_kernel() {
    require_tools();
    let d = TestDaemon::start();
    let image = d.pull("busybox:latest").await;
    let pod = d.pod("metrics").await;
    let mut config = d.container_config("worker", &image, &[]);
    // About a second of CPU, then idle.
    config.command = vec![
        "sh".into(),
        "-c".into(),
        "i=0; while [ $i -lt 1000000 ]; do i=$((i+1)); done; touch /done; sleep 1000".into(),
    ];
    config.linux.as_mut().unwrap().resources = Some(api::LinuxContainerResources {
        memory_limit_in_bytes: 128 * MIB as i64,
        ..Default::default()
    });
    let c = d.run(&pod, config).await;
    let c_cgroup = proc_cgroup(d.cpid(&c).await, "memory");
    let infra = d.infra_pid(&pod.id).await;
    let mut rt = d.runtime().await;

    // The descriptors: cAdvisor's names and label keys, with help.
    let descriptors = rt
        .list_metric_descriptors(api::ListMetricDescriptorsRequest {})
        .await
        .unwrap()
        .into_inner()
        .descriptors;
    let base = ["container", "id", "image", "name", "namespace", "pod"];
    let keys = |extra: &[&str]| -> Vec<String> {
        base.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    for (name, extra) in [
        ("container_cpu_usage_seconds_total", &["cpu"][..]),
        ("container_memory_working_set_bytes", &[]),
        ("container_memory_rss", &[]),
        ("container_memory_cache", &[]),
        ("container_memory_usage_bytes", &[]),
        ("container_memory_swap", &[]),
        ("container_spec_memory_limit_bytes", &[]),
        ("container_network_receive_bytes_total", &["interface"]),
        ("container_network_transmit_bytes_total", &["interface"]),
        ("container_network_receive_errors_total", &["interface"]),
        ("container_network_transmit_errors_total", &["interface"]),
        ("container_fs_usage_bytes", &["device"]),
        ("container_processes", &[]),
        ("container_oom_events_total", &[]),
    ] {
        let desc = descriptors
            .iter()
            .find(|d| d.name == name)
            .unwrap_or_else(|| panic!("no descriptor {name}"));
        assert!(!desc.help.is_empty(), "{name} has help");
        assert_eq!(desc.label_keys, keys(extra), "{name}");
    }

    let done = d.exec(&c, &["test", "-e", "/done"], 30).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut done = done.exit_code == 0;
    while !done {
        assert!(Instant::now() < deadline, "the busy loop did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
        done = d
            .exec(&c, &["test", "-e", "/done"], 30)
            .await
            .unwrap()
            .exit_code
            == 0;
    }
    sh(
        "ping",
        &[
            "-c",
            "3",
            "-s",
            "500",
            "-i",
            "0.2",
            "-W",
            "2",
            &d.status(&pod.id).await.status.unwrap().network.unwrap().ip,
        ],
    );

    let cpu1 = kernel_u64("cpuacct", &c_cgroup, "cpuacct.usage");
    let net1 = netns_counters(infra, "eth0");
    let listed = rt
        .list_pod_sandbox_metrics(api::ListPodSandboxMetricsRequest {})
        .await
        .unwrap()
        .into_inner()
        .pod_metrics;
    let cpu2 = kernel_u64("cpuacct", &c_cgroup, "cpuacct.usage");
    let net2 = netns_counters(infra, "eth0");
    let stats = container_stats(&d, &c).await;

    assert_eq!(listed.len(), 1);
    let p = &listed[0];
    assert_eq!(p.pod_sandbox_id, pod.id);
    // The pod's own series: its cgroup and its network.
    let rx = sample(
        &p.metrics,
        "container_network_receive_bytes_total",
        &["eth0"],
    );
    assert_eq!(
        rx.label_values,
        [
            "",
            &pod.cgroup_parent(),
            "",
            "",
            "default",
            "metrics",
            "eth0"
        ]
    );
    assert_between("rx bytes", net1.0, v(&rx.value), net2.0);
    let tx = value_of(
        &p.metrics,
        "container_network_transmit_bytes_total",
        &["eth0"],
    );
    assert_between("tx bytes", net1.2, tx, net2.2);
    assert_eq!(
        value_of(&p.metrics, "container_processes", &[]),
        kernel_u64("pids", &pod.cgroup_parent(), "pids.current")
    );

    // The container's series.
    assert_eq!(p.container_metrics.len(), 1);
    let cm = &p.container_metrics[0];
    assert_eq!(cm.container_id, c);
    let m = &cm.metrics;
    let cpu = sample(m, "container_cpu_usage_seconds_total", &["total"]);
    assert_eq!(
        cpu.label_values,
        [
            "worker",
            &c_cgroup,
            &image_label(&d, &c).await,
            &c,
            "default",
            "metrics",
            "total"
        ]
    );
    assert_eq!(cpu.metric_type, api::MetricType::Counter as i32);
    assert_between(
        "cpu seconds",
        cpu1 / 1_000_000_000,
        v(&cpu.value),
        cpu2 / 1_000_000_000,
    );
    assert!(cpu2 >= 1_000_000_000, "the loop used {cpu2} ns of CPU");
    let ws = value_of(m, "container_memory_working_set_bytes", &[]);
    let stats_ws = v(&stats.memory.as_ref().unwrap().working_set_bytes);
    let kernel_ws = kernel_u64("memory", &c_cgroup, "memory.usage_in_bytes")
        - memory_stat(&c_cgroup, "total_inactive_file");
    assert!(
        ws.abs_diff(stats_ws) < MIB,
        "{ws} against ContainerStats' {stats_ws}"
    );
    assert!(
        ws.abs_diff(kernel_ws) < MIB,
        "{ws} against the kernel's {kernel_ws}"
    );
    let rss = value_of(m, "container_memory_rss", &[]);
    assert!(rss.abs_diff(memory_stat(&c_cgroup, "total_rss")) < MIB);
    assert!(rss.abs_diff(v(&stats.memory.as_ref().unwrap().rss_bytes)) < MIB);
    let cache = value_of(m, "container_memory_cache", &[]);
    assert!(cache.abs_diff(memory_stat(&c_cgroup, "total_cache")) < MIB);
    assert_eq!(
        value_of(m, "container_spec_memory_limit_bytes", &[]),
        kernel_u64("memory", &c_cgroup, "memory.limit_in_bytes")
    );
    assert_eq!(
        value_of(m, "container_processes", &[]),
        kernel_u64("pids", &c_cgroup, "pids.current")
    );
    let oom_kills: u64 = cgroup_v1_file("memory", &c_cgroup, "memory.oom_control")
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill ")?.parse().ok())
        .unwrap();
    assert_eq!(value_of(m, "container_oom_events_total", &[]), oom_kills);
    let layer = stats.writable_layer.as_ref().unwrap();
    let device = layer.fs_id.as_ref().unwrap().mountpoint.clone();
    assert_eq!(
        value_of(m, "container_fs_usage_bytes", &[&device]),
        v(&layer.used_bytes),
        "the same (cached) walk of the writable layer"
    );

    // The Stream form sends the same pods.
    let mut stream = rt
        .stream_pod_sandbox_metrics(api::StreamPodSandboxMetricsRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut ids = vec![];
    while let Some(msg) = stream.message().await.unwrap() {
        ids.extend(
            msg.pod_sandbox_metrics
                .into_iter()
                .map(|p| p.pod_sandbox_id),
        );
    }
    assert_eq!(ids, std::slice::from_ref(&pod.id));
    d.remove_all().await;
}

/// The image name the container was created with, as ContainerStatus shows it.
async fn image_label(d: &TestDaemon, id: &str) -> String {
    d.cstatus(id).await.image.unwrap().image
}
