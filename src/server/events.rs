//! GetContainerEvents: the lifecycle events of pod sandboxes and
//! containers (see [`crate::events`]) as `ContainerEventResponse`s. One
//! task follows both registries and builds each message once, with the
//! pod sandbox status and the statuses of the pod's containers at that
//! moment (the conversions of PodSandboxStatus and ContainerStatus), and
//! hands it to every subscriber. A sandbox's events carry its id as
//! container id, as kubelet's Evented PLEG expects.

use std::sync::Arc;

use tonic::codegen::BoxStream;
use tonic::Status;
use tracing::warn;

use super::convert::{container, sandbox};
use crate::api;
use crate::container::{ContainerFilter, ContainerRecord, Containers};
use crate::events::{Change, Changes, Ended, Fanout, Interrupted, Lifecycle};
use crate::objects::Event;
use crate::sandbox::Sandboxes;

type Message = Arc<api::ContainerEventResponse>;

/// The subscribers of GetContainerEvents.
pub struct ContainerEvents {
    fanout: Fanout<Message>,
}

impl ContainerEvents {
    /// Follows both registries from now on; each subscriber gets a buffer
    /// of `buffer` events.
    pub fn start(
        sandboxes: Arc<Sandboxes>,
        containers: Arc<Containers>,
        buffer: usize,
    ) -> Arc<ContainerEvents> {
        let changes = Changes::new(sandboxes.subscribe(), containers.subscribe());
        let events = Arc::new(ContainerEvents {
            fanout: Fanout::new(buffer),
        });
        tokio::spawn(forward(changes, sandboxes, containers, events.clone()));
        events
    }

    /// One subscriber's stream: every event from now on, until the client
    /// leaves or falls behind (then an error saying so).
    pub fn subscribe(&self) -> BoxStream<api::ContainerEventResponse> {
        let subscription = self.fanout.subscribe();
        Box::pin(futures_util::stream::unfold(
            subscription,
            |mut s| async move {
                let item = s.next().await?;
                Some((item.map(|m| (*m).clone()).map_err(status_of_end), s))
            },
        ))
    }
}

fn status_of_end(why: Ended) -> Status {
    let message = format!("GetContainerEvents: {why}");
    match why {
        Ended::FellBehind { .. } => Status::resource_exhausted(message),
        Ended::Missed(_) => Status::aborted(message),
    }
}

async fn forward(
    mut changes: Changes,
    sandboxes: Arc<Sandboxes>,
    containers: Arc<Containers>,
    events: Arc<ContainerEvents>,
) {
    loop {
        match changes.next().await {
            // Building a message reads the pod's statuses: not for no one.
            Ok(_) if events.fanout.is_empty() => {}
            Ok(change) => {
                for m in messages(&change, &sandboxes, &containers) {
                    events.fanout.publish(Arc::new(m));
                }
            }
            Err(Interrupted::Missed(n)) => {
                warn!("container events: {n} changes were missed; ending every subscription");
                events.fanout.end_all(Ended::Missed(n));
            }
            Err(Interrupted::Closed) => return,
        }
    }
}

/// The messages one change makes (none for a change clients do not see).
fn messages(
    change: &Change,
    sandboxes: &Sandboxes,
    containers: &Containers,
) -> Vec<api::ContainerEventResponse> {
    let (id, steps, pod, statuses, at) = match change {
        Change::Sandbox(e) => {
            let rec = &e.record;
            let pod = sandbox::to_status(&crate::sandbox::view(rec.clone()));
            let statuses = pod_container_statuses(containers, &rec.id, None);
            (
                &rec.id,
                crate::events::of_sandbox(e),
                Some(pod),
                statuses,
                e.at,
            )
        }
        Change::Container(e) => {
            let rec = &e.record;
            let pod = sandboxes.status(&rec.spec.sandbox_id).ok();
            let pod = pod.map(|v| sandbox::to_status(&v));
            let statuses = pod_container_statuses(containers, &rec.spec.sandbox_id, Some(e));
            (&rec.id, crate::events::of_container(e), pod, statuses, e.at)
        }
    };
    steps
        .into_iter()
        .map(|step| api::ContainerEventResponse {
            container_id: id.clone(),
            container_event_type: event_type(step) as i32,
            created_at: at,
            pod_sandbox_status: pod.clone(),
            containers_statuses: statuses.clone(),
        })
        .collect()
}

fn event_type(step: Lifecycle) -> api::ContainerEventType {
    match step {
        Lifecycle::Created => api::ContainerEventType::ContainerCreatedEvent,
        Lifecycle::Started => api::ContainerEventType::ContainerStartedEvent,
        Lifecycle::Stopped => api::ContainerEventType::ContainerStoppedEvent,
        Lifecycle::Deleted => api::ContainerEventType::ContainerDeletedEvent,
    }
}

/// The statuses of a pod's containers, the one `changed` as the change
/// left it (absent once removed), the others as they are now.
fn pod_container_statuses(
    containers: &Containers,
    sandbox_id: &str,
    changed: Option<&Event<ContainerRecord>>,
) -> Vec<api::ContainerStatus> {
    let filter = ContainerFilter {
        sandbox_id: Some(sandbox_id.to_string()),
        ..Default::default()
    };
    let mut records: Vec<Arc<ContainerRecord>> = containers
        .list(&filter)
        .into_iter()
        .filter(|r| r.spec.sandbox_id == sandbox_id)
        .collect();
    if let Some(e) = changed {
        let at = records.iter().position(|r| r.id == e.record.id);
        match (at, e.removed) {
            (Some(i), true) => drop(records.remove(i)),
            (Some(i), false) => records[i] = e.record.clone(),
            (None, false) => records.push(e.record.clone()),
            (None, true) => {}
        }
    }
    records.iter().map(|r| container::to_status(r)).collect()
}
