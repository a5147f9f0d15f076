//! Lifecycle events of pod sandboxes and containers, as kubelet's Evented
//! PLEG is told of them (`GetContainerEvents`).
//!
//! They are made from the registries' [`Event`]s, which are published once
//! a change is stored: [`Changes`] merges the two registries' events in the
//! order they were published, [`of_sandbox`] and [`of_container`] name the
//! lifecycle steps a change is, and a [`Fanout`] hands each message to
//! every subscriber through a bounded buffer of its own. A subscriber whose
//! buffer is full is dropped, and its stream ends with [`Ended`] once it
//! has read what was buffered: a client that stops reading never stalls a
//! lifecycle operation or another subscriber.

use std::sync::Mutex;

use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::container::{visible_state, ContainerRecord, ContainerState};
use crate::objects::{Event, Record};
use crate::sandbox::{SandboxRecord, SandboxState};

/// A step of an object's life, as CRI names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    Created,
    Started,
    Stopped,
    Deleted,
}

/// What a sandbox's change is to clients: created (its first visible
/// record), started and stopped as it becomes READY or stops being so,
/// deleted when removed. A pod's sandbox comes READY out of creation, so
/// its first event is created then started, as containerd sends them.
pub fn of_sandbox(e: &Event<SandboxRecord>) -> Vec<Lifecycle> {
    sandbox_steps(e.from, e.record.state, e.removed)
}

fn sandbox_steps(from: Option<SandboxState>, to: SandboxState, removed: bool) -> Vec<Lifecycle> {
    let ready = |s: SandboxState| s == SandboxState::Ready;
    if removed {
        return vec![Lifecycle::Deleted];
    }
    let now = ready(to);
    match from.map(ready) {
        None if now => vec![Lifecycle::Created, Lifecycle::Started],
        None => vec![Lifecycle::Created],
        Some(false) if now => vec![Lifecycle::Started],
        Some(true) if !now => vec![Lifecycle::Stopped],
        Some(_) => vec![],
    }
}

/// What a container's change is to clients, by the states CRI reports
/// (creating shows as created, removing as exited): created, started
/// (created → running), stopped (to exited), deleted when removed.
pub fn of_container(e: &Event<ContainerRecord>) -> Vec<Lifecycle> {
    container_steps(e.from, e.record.state, e.removed)
}

fn container_steps(
    from: Option<ContainerState>,
    to: ContainerState,
    removed: bool,
) -> Vec<Lifecycle> {
    use ContainerState::{Created, Exited, Running};
    if removed {
        return vec![Lifecycle::Deleted];
    }
    let step = match (from.map(visible_state), visible_state(to)) {
        (Some(Created), Running) => Some(Lifecycle::Started),
        (Some(Created | Running), Exited) => Some(Lifecycle::Stopped),
        (None, Running) => Some(Lifecycle::Started),
        (None, Exited) => Some(Lifecycle::Stopped),
        _ => None,
    };
    let created = from.is_none().then_some(Lifecycle::Created);
    created.into_iter().chain(step).collect()
}

/// One registry's event.
#[derive(Clone)]
pub enum Change<S: Record = SandboxRecord, C: Record = ContainerRecord> {
    Sandbox(Event<S>),
    Container(Event<C>),
}

impl<S: Record, C: Record> Change<S, C> {
    fn seq(&self) -> u64 {
        match self {
            Change::Sandbox(e) => e.seq,
            Change::Container(e) => e.seq,
        }
    }
}

/// Why [`Changes`] gave no change.
#[derive(Debug, PartialEq, Eq)]
pub enum Interrupted {
    /// This many events were dropped before they were read: whoever
    /// follows them must list again.
    Missed(u64),
    /// The registries are gone.
    Closed,
}

/// The events of both registries, each object's in order, and objects'
/// among them in the order they were published as far as both are
/// pending at once.
pub struct Changes<S: Record = SandboxRecord, C: Record = ContainerRecord> {
    sandboxes: broadcast::Receiver<Event<S>>,
    containers: broadcast::Receiver<Event<C>>,
    next_sandbox: Option<Change<S, C>>,
    next_container: Option<Change<S, C>>,
}

impl<S: Record, C: Record> Changes<S, C> {
    pub fn new(
        sandboxes: broadcast::Receiver<Event<S>>,
        containers: broadcast::Receiver<Event<C>>,
    ) -> Self {
        Changes {
            sandboxes,
            containers,
            next_sandbox: None,
            next_container: None,
        }
    }

    pub async fn next(&mut self) -> Result<Change<S, C>, Interrupted> {
        self.take_pending()?;
        if self.next_sandbox.is_none() && self.next_container.is_none() {
            tokio::select! {
                r = self.sandboxes.recv() => self.next_sandbox = Some(Change::Sandbox(received(r)?)),
                r = self.containers.recv() => self.next_container = Some(Change::Container(received(r)?)),
            }
            // The other registry may hold an earlier one by now.
            self.take_pending()?;
        }
        Ok(self.earliest())
    }

    fn take_pending(&mut self) -> Result<(), Interrupted> {
        if self.next_sandbox.is_none() {
            self.next_sandbox = pending(&mut self.sandboxes)?.map(Change::Sandbox);
        }
        if self.next_container.is_none() {
            self.next_container = pending(&mut self.containers)?.map(Change::Container);
        }
        Ok(())
    }

    /// The earlier of the two pending changes (one is pending at least).
    fn earliest(&mut self) -> Change<S, C> {
        let sandbox_first = match (&self.next_sandbox, &self.next_container) {
            (Some(s), Some(c)) => s.seq() < c.seq(),
            (s, _) => s.is_some(),
        };
        let slot = match sandbox_first {
            true => &mut self.next_sandbox,
            false => &mut self.next_container,
        };
        slot.take().expect("a pending change")
    }
}

fn received<T>(r: Result<T, RecvError>) -> Result<T, Interrupted> {
    r.map_err(|e| match e {
        RecvError::Lagged(n) => Interrupted::Missed(n),
        RecvError::Closed => Interrupted::Closed,
    })
}

fn pending<T: Clone>(rx: &mut broadcast::Receiver<T>) -> Result<Option<T>, Interrupted> {
    match rx.try_recv() {
        Ok(e) => Ok(Some(e)),
        Err(TryRecvError::Empty) => Ok(None),
        Err(TryRecvError::Lagged(n)) => Err(Interrupted::Missed(n)),
        Err(TryRecvError::Closed) => Err(Interrupted::Closed),
    }
}

/// Why a subscription ended before its subscriber left.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ended {
    #[error(
        "this subscriber fell behind: its buffer of {buffer} events filled up; \
         list pod sandboxes and containers again, then subscribe anew"
    )]
    FellBehind { buffer: usize },
    #[error(
        "the daemon's event hub fell behind and missed {0} changes; \
         list pod sandboxes and containers again, then subscribe anew"
    )]
    Missed(u64),
}

/// Hands every message to every subscriber, each through a buffer of its
/// own of `buffer` messages.
pub struct Fanout<T> {
    buffer: usize,
    subscribers: Mutex<Vec<Subscriber<T>>>,
}

struct Subscriber<T> {
    messages: mpsc::Sender<T>,
    end: oneshot::Sender<Ended>,
}

impl<T> Subscriber<T> {
    /// `None` when the subscriber is gone or was ended for falling behind.
    fn offer(self, message: T, buffer: usize) -> Option<Self> {
        match self.messages.try_send(message) {
            Ok(()) => Some(self),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.end(Ended::FellBehind { buffer });
                None
            }
            Err(mpsc::error::TrySendError::Closed(_)) => None,
        }
    }

    /// The reason is set before the buffer's sender goes, so that the
    /// subscription finds it once it has read what was buffered.
    fn end(self, why: Ended) {
        let _ = self.end.send(why);
    }
}

impl<T: Clone> Fanout<T> {
    pub fn new(buffer: usize) -> Fanout<T> {
        Fanout {
            buffer: buffer.max(1),
            subscribers: Mutex::new(Vec::new()),
        }
    }

    fn subscribers(&self) -> std::sync::MutexGuard<'_, Vec<Subscriber<T>>> {
        self.subscribers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every message from now on.
    pub fn subscribe(&self) -> Subscription<T> {
        let (messages, rx) = mpsc::channel(self.buffer);
        let (end, ended) = oneshot::channel();
        self.subscribers().push(Subscriber { messages, end });
        Subscription {
            messages: rx,
            ended: Some(ended),
        }
    }

    /// Never waits: a subscriber whose buffer is full is ended instead.
    pub fn publish(&self, message: T) {
        let mut subscribers = self.subscribers();
        *subscribers = std::mem::take(&mut *subscribers)
            .into_iter()
            .filter_map(|s| s.offer(message.clone(), self.buffer))
            .collect();
    }

    /// Ends every subscription (after what each has buffered).
    pub fn end_all(&self, why: Ended) {
        for s in std::mem::take(&mut *self.subscribers()) {
            s.end(why.clone());
        }
    }

    /// Subscribers still served (those that left are counted until the
    /// next message finds them gone).
    pub fn len(&self) -> usize {
        self.subscribers().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One subscriber's messages.
pub struct Subscription<T> {
    messages: mpsc::Receiver<T>,
    /// Taken once the buffer is read to its end.
    ended: Option<oneshot::Receiver<Ended>>,
}

impl<T> Subscription<T> {
    /// The next message; then, once ended, why; then `None`.
    pub async fn next(&mut self) -> Option<Result<T, Ended>> {
        if let Some(m) = self.messages.recv().await {
            return Some(Ok(m));
        }
        let mut ended = self.ended.take()?;
        ended.try_recv().ok().map(Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn sandbox_changes_are_named_as_containerd_names_them() {
        use Lifecycle::*;
        use SandboxState::*;
        let cases = [
            (None, Ready, false, vec![Created, Started]),
            (None, NotReady, false, vec![Created]),
            (Some(Ready), NotReady, false, vec![Stopped]),
            (Some(Ready), Removing, false, vec![Stopped]),
            (Some(NotReady), Removing, false, vec![]),
            (Some(Removing), NotReady, false, vec![]),
            (Some(NotReady), Ready, false, vec![Started]),
            (Some(Ready), Ready, false, vec![]),
            (Some(Removing), Removing, true, vec![Deleted]),
        ];
        for (from, to, removed, expected) in cases {
            let got = sandbox_steps(from, to, removed);
            assert_eq!(got, expected, "{from:?} -> {to:?} removed={removed}");
        }
    }

    #[test]
    fn container_changes_follow_the_states_cri_reports() {
        use ContainerState::*;
        use Lifecycle::{Created as C, Deleted as D, Started as S, Stopped as X};
        let cases = [
            (None, Created, false, vec![C]),
            (Some(Created), Running, false, vec![S]),
            (Some(Running), Exited, false, vec![X]),
            (Some(Created), Exited, false, vec![X]),
            (Some(Exited), Removing, false, vec![]),
            (Some(Removing), Exited, false, vec![]),
            (Some(Running), Removing, false, vec![X]),
            (Some(Running), Running, false, vec![]),
            (None, Exited, false, vec![C, X]),
            (None, Running, false, vec![C, S]),
            (Some(Removing), Removing, true, vec![D]),
        ];
        for (from, to, removed, expected) in cases {
            let got = container_steps(from, to, removed);
            assert_eq!(got, expected, "{from:?} -> {to:?} removed={removed}");
        }
    }

    #[tokio::test]
    async fn every_subscriber_gets_every_message_and_a_stalled_one_is_ended() {
        let fanout = Fanout::new(3);
        let mut reader = fanout.subscribe();
        let mut stalled = fanout.subscribe();
        let mut got = vec![];
        for i in 0..10 {
            fanout.publish(i);
            got.push(reader.next().await.unwrap().unwrap());
        }
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        assert_eq!(fanout.len(), 1, "the stalled subscriber is dropped");
        for i in 0..3 {
            assert_eq!(stalled.next().await, Some(Ok(i)));
        }
        assert_eq!(
            stalled.next().await,
            Some(Err(Ended::FellBehind { buffer: 3 }))
        );
        assert_eq!(stalled.next().await, None);
    }

    #[tokio::test]
    async fn a_subscriber_that_left_is_forgotten_and_end_all_ends_the_rest() {
        let fanout = Fanout::new(2);
        let gone = fanout.subscribe();
        let mut kept = fanout.subscribe();
        drop(gone);
        fanout.publish("a");
        assert_eq!(fanout.len(), 1);
        fanout.end_all(Ended::Missed(7));
        assert!(fanout.is_empty());
        assert_eq!(kept.next().await, Some(Ok("a")));
        assert_eq!(kept.next().await, Some(Err(Ended::Missed(7))));
        assert_eq!(kept.next().await, None);
    }

    #[derive(Clone, serde::Serialize, serde::Deserialize)]
    struct Thing(u8);

    impl Record for Thing {
        type State = u8;
        type Name = u8;
        type Extra = ();
        const TABLE: crate::store::Table = crate::store::Table::Meta;
        const KIND: &'static str = "thing";
        const ID_FIELD: &'static str = "thing_id";
        const CREATING: u8 = 0;
        fn id(&self) -> &str {
            "thing"
        }
        fn name(&self) -> u8 {
            self.0
        }
        fn state(&self) -> u8 {
            self.0
        }
    }

    fn event(seq: u64) -> Event<Thing> {
        Event {
            from: None,
            record: Arc::new(Thing(1)),
            removed: false,
            at: 0,
            seq,
        }
    }

    #[tokio::test]
    async fn changes_of_both_registries_come_in_publication_order() {
        let (s_tx, s_rx) = broadcast::channel(8);
        let (c_tx, c_rx) = broadcast::channel(8);
        let mut changes = Changes::<Thing, Thing>::new(s_rx, c_rx);
        // Pending in both at once: the earlier first, whatever the registry.
        s_tx.send(event(2)).ok().unwrap();
        c_tx.send(event(1)).ok().unwrap();
        c_tx.send(event(3)).ok().unwrap();
        let mut order = vec![];
        for _ in 0..3 {
            let seq = match changes.next().await {
                Ok(Change::Sandbox(e)) => ("sandbox", e.seq),
                Ok(Change::Container(e)) => ("container", e.seq),
                Err(e) => panic!("{e:?}"),
            };
            order.push(seq);
        }
        assert_eq!(order, [("container", 1), ("sandbox", 2), ("container", 3)]);
        // One waits for the next of either.
        let next = tokio::spawn(async move { (changes.next().await.is_ok(), changes) });
        s_tx.send(event(4)).ok().unwrap();
        let (got, mut changes) = next.await.unwrap();
        assert!(got);
        for _ in 0..9 {
            c_tx.send(event(5)).ok().unwrap();
        }
        assert_eq!(changes.next().await.err(), Some(Interrupted::Missed(1)));
        drop((s_tx, c_tx));
        while changes.next().await.is_ok() {}
        assert_eq!(changes.next().await.err(), Some(Interrupted::Closed));
    }
}
