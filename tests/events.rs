//! GetContainerEvents: a container's and its pod sandbox's lifecycle
//! events in order, each with the statuses ContainerStatus and
//! PodSandboxStatus answer at that moment, checked against the processes
//! the kernel shows; every subscriber gets every event; a subscriber that
//! stops reading slows no lifecycle operation and is cut off with an error
//! once its buffer is full.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::containers::*;
use common::*;
use peapod::api;
use peapod::api::runtime_service_client::RuntimeServiceClient;
use peapod::api::ContainerEventType as Kind;
use tonic::codec::Streaming;
use tonic::Code;

type Events = Streaming<api::ContainerEventResponse>;

async fn subscribe(d: &TestDaemon) -> Events {
    d.runtime()
        .await
        .get_container_events(api::GetEventsRequest {})
        .await
        .expect("GetContainerEvents")
        .into_inner()
}

/// The next event, or a failure after 10 s.
async fn next(events: &mut Events) -> api::ContainerEventResponse {
    tokio::time::timeout(Duration::from_secs(10), events.message())
        .await
        .expect("an event within 10 s")
        .expect("the stream goes on")
        .expect("an event, not the end")
}

fn kind(e: &api::ContainerEventResponse) -> Kind {
    Kind::try_from(e.container_event_type).expect("a known event type")
}

/// Events up to and including `last` of `id`.
async fn events_until(
    events: &mut Events,
    id: &str,
    last: Kind,
) -> Vec<api::ContainerEventResponse> {
    let mut got = vec![];
    loop {
        let e = next(events).await;
        let done = e.container_id == id && kind(&e) == last;
        got.push(e);
        if done {
            return got;
        }
    }
}

fn steps(events: &[api::ContainerEventResponse]) -> Vec<(String, Kind)> {
    events
        .iter()
        .map(|e| (e.container_id.clone(), kind(e)))
        .collect()
}

fn status_of<'a>(e: &'a api::ContainerEventResponse, id: &str) -> Option<&'a api::ContainerStatus> {
    e.containers_statuses.iter().find(|s| s.id == id)
}

fn pod_status(e: &api::ContainerEventResponse) -> &api::PodSandboxStatus {
    e.pod_sandbox_status
        .as_ref()
        .expect("every event carries its pod sandbox's status")
}

fn no_cni_with(config: Option<&str>) -> (tempfile::TempDir, TestDaemon) {
    let dir = tempfile::tempdir().unwrap();
    let mut extra_args = vec![];
    if let Some(toml) = config {
        let path = dir.path().join("config.toml");
        std::fs::write(&path, toml).unwrap();
        extra_args = vec!["--config".into(), path.to_string_lossy().into_owned()];
    }
    let d = TestDaemon::start_with(Options {
        cni: false,
        extra_args,
        ..Default::default()
    });
    (dir, d)
}

async fn pod_status_now(d: &TestDaemon, id: &str) -> api::PodSandboxStatus {
    d.status(id).await.status.expect("status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_subscribers_see_a_container_and_its_pod_live_and_go_in_order() {
    let (_cfg, d) = no_cni_with(None);
    let image = d.pull("busybox:latest").await;
    let mut first = subscribe(&d).await;
    let mut second = subscribe(&d).await;

    let pod = d.host_pod("events").await;
    let pod_ready = pod_status_now(&d, &pod.id).await;
    let infra = d.infra_pid(&pod.id).await;
    let id = d
        .create(&pod, d.container_config("app", &image, &["sleep", "3600"]))
        .await;
    let created = d.cstatus(&id).await;
    d.start_c(&id).await;
    let running = d.cstatus(&id).await;
    let pid = d.cpid(&id).await;
    d.stop_container(&id, 0).await;
    let exited = d.cstatus(&id).await;
    d.remove_container(&id).await;
    let mut rt = d.runtime().await;
    rt.stop_pod_sandbox(api::StopPodSandboxRequest {
        pod_sandbox_id: pod.id.clone(),
    })
    .await
    .unwrap();
    let pod_stopped = pod_status_now(&d, &pod.id).await;
    rt.remove_pod_sandbox(api::RemovePodSandboxRequest {
        pod_sandbox_id: pod.id.clone(),
    })
    .await
    .unwrap();

    let events = events_until(&mut first, &pod.id, Kind::ContainerDeletedEvent).await;
    let p = pod.id.clone();
    let c = id.clone();
    assert_eq!(
        steps(&events),
        [
            (p.clone(), Kind::ContainerCreatedEvent),
            (p.clone(), Kind::ContainerStartedEvent),
            (c.clone(), Kind::ContainerCreatedEvent),
            (c.clone(), Kind::ContainerStartedEvent),
            (c.clone(), Kind::ContainerStoppedEvent),
            (c.clone(), Kind::ContainerDeletedEvent),
            (p.clone(), Kind::ContainerStoppedEvent),
            (p.clone(), Kind::ContainerDeletedEvent),
        ]
    );
    let times: Vec<i64> = events.iter().map(|e| e.created_at).collect();
    assert!(
        times[0] > 0 && times.windows(2).all(|w| w[0] <= w[1]),
        "{times:?}"
    );

    // The pod sandbox's own events: its id, its status, no container yet.
    for e in &events[..2] {
        assert_eq!(pod_status(e), &pod_ready);
        assert!(e.containers_statuses.is_empty());
    }
    // The container's: the statuses ContainerStatus answered right after
    // each step, inside the pod's READY status.
    for (e, expected) in events[2..5].iter().zip([&created, &running, &exited]) {
        assert_eq!(pod_status(e), &pod_ready, "{:?}", kind(e));
        assert_eq!(status_of(e, &id), Some(expected), "{:?}", kind(e));
        assert_eq!(e.containers_statuses.len(), 1);
    }
    assert_eq!(running.state, api::ContainerState::ContainerRunning as i32);
    assert_eq!(exited.state, api::ContainerState::ContainerExited as i32);
    assert_eq!(
        exited.exit_code,
        128 + libc::SIGKILL,
        "stopped with timeout 0"
    );
    assert!(
        !process_exists(pid),
        "the container's init {pid} is gone once STOPPED was sent"
    );
    let deleted = &events[5];
    assert_eq!(pod_status(deleted), &pod_ready);
    assert!(
        status_of(deleted, &id).is_none(),
        "a deleted container has no status"
    );
    // The pod sandbox stopped (NOTREADY, its infra process gone), then
    // removed with its last status.
    assert_eq!(pod_status(&events[6]), &pod_stopped);
    assert_eq!(
        pod_stopped.state,
        api::PodSandboxState::SandboxNotready as i32
    );
    assert!(!process_exists(infra), "the infra process {infra} is gone");
    assert_eq!(pod_status(&events[7]), &pod_stopped);

    let seen_too = events_until(&mut second, &pod.id, Kind::ContainerDeletedEvent).await;
    assert_eq!(
        seen_too, events,
        "the second subscriber got the same events"
    );
}

/// What a reading subscriber has seen so far.
#[derive(Clone, Default)]
struct Reader {
    seen: Arc<Mutex<Vec<(String, Kind)>>>,
}

impl Reader {
    fn start(mut events: Events) -> Reader {
        let r = Reader::default();
        let seen = r.seen.clone();
        tokio::spawn(async move {
            while let Ok(Some(e)) = events.message().await {
                seen.lock()
                    .unwrap()
                    .push((e.container_id.clone(), kind(&e)));
            }
        });
        r
    }

    fn len(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn since(&self, from: usize) -> Vec<(String, Kind)> {
        self.seen.lock().unwrap()[from..].to_vec()
    }

    async fn wait_for(&self, step: (String, Kind)) {
        let seen = self.seen.clone();
        eventually(&format!("the reader sees {step:?}"), move || {
            seen.lock().unwrap().contains(&step)
        })
        .await;
    }
}

/// Creates, starts, stops and removes `n` containers one after the other;
/// their ids in order.
async fn churn(d: &TestDaemon, pod: &Pod, image: &str, n: usize) -> Vec<String> {
    let mut ids = vec![];
    for i in 0..n {
        let config = d.container_config(&format!("c{i}"), image, &["sleep", "3600"]);
        let id = d.run(pod, config).await;
        d.stop_container(&id, 0).await;
        d.remove_container(&id).await;
        ids.push(id);
    }
    ids
}

fn lifecycles(ids: &[String]) -> Vec<(String, Kind)> {
    ids.iter()
        .flat_map(|id| {
            [
                Kind::ContainerCreatedEvent,
                Kind::ContainerStartedEvent,
                Kind::ContainerStoppedEvent,
                Kind::ContainerDeletedEvent,
            ]
            .map(|k| (id.clone(), k))
        })
        .collect()
}

const CONTAINERS: usize = 20;
const BUFFER: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_slows_nothing_and_is_cut_off() {
    let (_cfg, d) = no_cni_with(Some(&format!("[events]\nbuffer = {BUFFER}\n")));
    let image = d.pull("busybox:latest").await;
    let reader = Reader::start(subscribe(&d).await);
    let pod = d.host_pod("churn").await;
    reader
        .wait_for((pod.id.clone(), Kind::ContainerStartedEvent))
        .await;

    let start = Instant::now();
    let alone = churn(&d, &pod, &image, CONTAINERS).await;
    let without_stalled = start.elapsed();
    reader
        .wait_for((alone[CONTAINERS - 1].clone(), Kind::ContainerDeletedEvent))
        .await;
    let before_stall = reader.len();

    // Its own connection, whose HTTP/2 window holds 1 KiB of the stream
    // (no more than a kubelet that stopped reading holds), and never read.
    let channel = peapod_cri_client::connect_with_window(&d.socket, 1024)
        .await
        .expect("connect");
    let mut stalled = RuntimeServiceClient::new(channel)
        .get_container_events(api::GetEventsRequest {})
        .await
        .expect("GetContainerEvents")
        .into_inner();
    let start = Instant::now();
    let beside_stalled = churn(&d, &pod, &image, CONTAINERS).await;
    let with_stalled = start.elapsed();
    println!(
        "{CONTAINERS} containers created, started, stopped and removed: \
         {without_stalled:?} with one reading subscriber, \
         {with_stalled:?} with a stalled one (buffer {BUFFER}) beside it"
    );

    reader
        .wait_for((
            beside_stalled[CONTAINERS - 1].clone(),
            Kind::ContainerDeletedEvent,
        ))
        .await;
    let seen = reader.since(0);
    let expected = [
        vec![
            (pod.id.clone(), Kind::ContainerCreatedEvent),
            (pod.id.clone(), Kind::ContainerStartedEvent),
        ],
        lifecycles(&alone),
        lifecycles(&beside_stalled),
    ]
    .concat();
    assert_eq!(
        seen, expected,
        "the reading subscriber saw every event in order"
    );

    // The stalled one, read at last: a prefix of what the reader saw, then
    // the error saying it fell behind.
    let mut got = vec![];
    let error = loop {
        match tokio::time::timeout(Duration::from_secs(10), stalled.message())
            .await
            .expect("the stalled stream answers once read")
        {
            Ok(Some(e)) => got.push((e.container_id.clone(), kind(&e))),
            Ok(None) => panic!(
                "the stalled stream ended without an error after {} events",
                got.len()
            ),
            Err(status) => break status,
        }
    };
    println!(
        "the stalled subscriber got {} of {} events, then: {error:?}",
        got.len(),
        lifecycles(&beside_stalled).len()
    );
    assert_eq!(error.code(), Code::ResourceExhausted, "{error:?}");
    assert!(
        error.message().contains("fell behind")
            && error
                .message()
                .contains(&format!("buffer of {BUFFER} events")),
        "{error:?}"
    );
    assert!(
        got.len() < lifecycles(&beside_stalled).len(),
        "it was cut off"
    );
    assert_eq!(got, reader.since(before_stall)[..got.len()]);
    assert!(!got.is_empty());
}
