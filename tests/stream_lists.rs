//! StreamPodSandboxes and StreamContainers: the items ListPodSandbox and
//! ListContainers answer, with the same filters, in messages of at most
//! 100, for 120 host-network pods with a container each (pods whose cgroups
//! the kernel shows).

mod common;

use std::collections::HashMap;
use std::time::Instant;

use common::containers::*;
use common::*;
use peapod::api;

const PODS: usize = 120;

fn group(i: usize) -> &'static str {
    if i.is_multiple_of(2) {
        "even"
    } else {
        "odd"
    }
}

/// A cheap pod: the host's network (no CNI), a label saying its group.
async fn labelled_pod(d: &TestDaemon, i: usize) -> Pod {
    let mut c = d.pod_config(&format!("p{i}"));
    pod_namespace_options(&mut c).network = api::NamespaceMode::Node as i32;
    c.labels.insert("group".into(), group(i).into());
    d.pod_with(c).await
}

async fn stream_pods(
    d: &TestDaemon,
    filter: Option<api::PodSandboxFilter>,
) -> Vec<Vec<api::PodSandbox>> {
    let mut s = d
        .runtime()
        .await
        .stream_pod_sandboxes(api::StreamPodSandboxesRequest { filter })
        .await
        .expect("StreamPodSandboxes")
        .into_inner();
    let mut messages = vec![];
    while let Some(m) = s.message().await.expect("StreamPodSandboxes message") {
        messages.push(m.pod_sandboxes);
    }
    messages
}

async fn list_pods(d: &TestDaemon, filter: Option<api::PodSandboxFilter>) -> Vec<api::PodSandbox> {
    d.runtime()
        .await
        .list_pod_sandbox(api::ListPodSandboxRequest { filter })
        .await
        .expect("ListPodSandbox")
        .into_inner()
        .items
}

async fn stream_containers(
    d: &TestDaemon,
    filter: Option<api::ContainerFilter>,
) -> Vec<Vec<api::Container>> {
    let mut s = d
        .runtime()
        .await
        .stream_containers(api::StreamContainersRequest { filter })
        .await
        .expect("StreamContainers")
        .into_inner();
    let mut messages = vec![];
    while let Some(m) = s.message().await.expect("StreamContainers message") {
        messages.push(m.containers);
    }
    messages
}

fn sizes<T>(messages: &[Vec<T>]) -> Vec<usize> {
    messages.iter().map(Vec::len).collect()
}

fn by_group(g: &str) -> HashMap<String, String> {
    HashMap::from([("group".to_string(), g.to_string())])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_variants_send_the_list_items_in_chunks_with_the_same_filters() {
    let d = TestDaemon::start_with(Options {
        cni: false,
        ..Default::default()
    });
    let image = d.pull("busybox:latest").await;
    let start = Instant::now();
    let mut pods = vec![];
    for i in 0..PODS {
        pods.push(labelled_pod(&d, i).await);
    }
    let pods_took = start.elapsed();
    let start = Instant::now();
    for (i, pod) in pods.iter().enumerate() {
        let mut c = d.container_config("app", &image, &["sleep", "3600"]);
        c.labels.insert("group".into(), group(i).into());
        d.create(pod, c).await;
    }
    println!(
        "{PODS} host-network pods: {pods_took:?}; a created container in each: {:?}",
        start.elapsed()
    );

    // Every pod, in two messages, the items ListPodSandbox answers.
    let streamed = stream_pods(&d, None).await;
    assert_eq!(sizes(&streamed), [100, PODS - 100]);
    let listed = list_pods(&d, None).await;
    assert_eq!(streamed.concat(), listed);
    assert_eq!(listed.len(), PODS);
    for p in &listed {
        let uid = &p.metadata.as_ref().unwrap().uid;
        let cgroup = format!("{}/pod{uid}/{}", d.cgroup_parent, p.id);
        assert!(
            TestDaemon::cgroup_dirs(&cgroup).iter().any(|d| d.is_dir()),
            "pod {} has no cgroup {cgroup} on the host",
            p.id
        );
    }
    // A label filter: half of them, in one message.
    let even = Some(api::PodSandboxFilter {
        label_selector: by_group("even"),
        ..Default::default()
    });
    let streamed = stream_pods(&d, even.clone()).await;
    assert_eq!(sizes(&streamed), [PODS / 2]);
    assert_eq!(streamed.concat(), list_pods(&d, even).await);
    // An id prefix: one.
    let one = Some(api::PodSandboxFilter {
        id: pods[7].id[..12].to_string(),
        ..Default::default()
    });
    let streamed = stream_pods(&d, one).await;
    assert_eq!(sizes(&streamed), [1]);
    assert_eq!(streamed[0][0].id, pods[7].id);
    // Nothing matches: one empty message.
    let none = Some(api::PodSandboxFilter {
        label_selector: by_group("none"),
        ..Default::default()
    });
    assert_eq!(sizes(&stream_pods(&d, none).await), [0]);

    // Every container, likewise.
    let streamed = stream_containers(&d, None).await;
    assert_eq!(sizes(&streamed), [100, PODS - 100]);
    let listed = d.list_containers(None).await;
    assert_eq!(listed.len(), PODS);
    assert_eq!(streamed.concat(), listed);
    let odd = Some(api::ContainerFilter {
        label_selector: by_group("odd"),
        ..Default::default()
    });
    let streamed = stream_containers(&d, odd.clone()).await;
    assert_eq!(sizes(&streamed), [PODS / 2]);
    assert_eq!(streamed.concat(), d.list_containers(odd).await);
    let in_pod = Some(api::ContainerFilter {
        pod_sandbox_id: pods[3].id.clone(),
        state: Some(api::ContainerStateValue {
            state: api::ContainerState::ContainerCreated as i32,
        }),
        ..Default::default()
    });
    let streamed = stream_containers(&d, in_pod.clone()).await;
    assert_eq!(sizes(&streamed), [1]);
    assert_eq!(streamed.concat(), d.list_containers(in_pod).await);
    assert_eq!(streamed[0][0].pod_sandbox_id, pods[3].id);
}
