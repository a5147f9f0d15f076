//! [`Registry`]: the records of one kind, in the store and in memory.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::{broadcast, watch, Mutex, MutexGuard};

use super::names::{Names, Taken};
use super::Record;
use crate::errors::Error;
use crate::ids::{lookup, Lookup};
use crate::store::Store;

/// Events kept for a subscriber that falls behind.
const EVENT_BACKLOG: usize = 1024;

/// The order in which events of every registry were published.
static EVENT_SEQ: AtomicU64 = AtomicU64::new(0);

/// One object: its newest record and what serialises changes to it.
pub struct Entry<R: Record> {
    /// Replaced whole on change, so readers (List every second) share it
    /// instead of copying it.
    record: std::sync::RwLock<Arc<R>>,
    /// The state, for waiters (StopContainer waits for an exit).
    state: watch::Sender<R::State>,
    /// Serialises the operations on one object (Start, Stop, Remove...).
    op: Mutex<()>,
    /// Serialises transitions, so the store always ends with the newest
    /// record.
    commit: Mutex<()>,
    /// Set once the object is removed from the store and the index.
    removed: std::sync::atomic::AtomicBool,
    /// The state subscribers were last told of (a stored one); `None`
    /// while they were told of none.
    told: std::sync::Mutex<Option<R::State>>,
    pub extra: R::Extra,
}

impl<R: Record> Entry<R> {
    fn new(rec: R) -> Arc<Self> {
        let (state, _) = watch::channel(rec.state());
        Arc::new(Entry {
            record: std::sync::RwLock::new(Arc::new(rec)),
            state,
            op: Mutex::new(()),
            commit: Mutex::new(()),
            removed: Default::default(),
            told: std::sync::Mutex::new(None),
            extra: R::Extra::default(),
        })
    }

    /// The newest record.
    pub fn snapshot(&self) -> Arc<R> {
        self.record
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether the object was removed (while someone held this entry).
    pub fn is_removed(&self) -> bool {
        self.removed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Follows the object's state.
    pub fn watch_state(&self) -> watch::Receiver<R::State> {
        self.state.subscribe()
    }

    /// Held for the whole of an operation on the object.
    pub async fn lock(&self) -> MutexGuard<'_, ()> {
        self.op.lock().await
    }

    fn told(&self) -> std::sync::MutexGuard<'_, Option<R::State>> {
        self.told.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn swap(&self, rec: Arc<R>) {
        let state = rec.state();
        *self.record.write().unwrap_or_else(|e| e.into_inner()) = rec;
        self.state.send_replace(state);
    }
}

/// A change of one object, as subscribers see it: published once the
/// change is stored, in the order the object's changes were made.
#[derive(Clone)]
pub struct Event<R: Record> {
    /// The state subscribers were last told of; `None` when they were told
    /// of none (the object was being created, or storing its first visible
    /// record failed).
    pub from: Option<R::State>,
    /// The record after the change (its last, when `removed`).
    pub record: Arc<R>,
    pub removed: bool,
    /// When it was published, in nanoseconds since the epoch.
    pub at: i64,
    /// Its place among the events of every registry.
    pub seq: u64,
}

/// Visible objects and those being created, apart, so that an id prefix
/// never matches an object no client has seen.
struct Index<R: Record> {
    visible: HashMap<String, Arc<Entry<R>>>,
    hidden: HashMap<String, Arc<Entry<R>>>,
}

/// Every object of one kind.
pub struct Registry<R: Record> {
    store: Arc<Store>,
    index: RwLock<Index<R>>,
    names: Arc<Names<R::Name, Error>>,
    events: broadcast::Sender<Event<R>>,
}

impl<R: Record> Registry<R> {
    pub fn new(store: Arc<Store>) -> Registry<R> {
        Registry {
            store,
            index: RwLock::new(Index {
                visible: HashMap::new(),
                hidden: HashMap::new(),
            }),
            names: Names::new(),
            events: broadcast::channel(EVENT_BACKLOG).0,
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Index<R>> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Index<R>> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Indexes every stored record (at start, before reconciling them with
    /// the host). A corrupt record is an error, never silently dropped.
    pub fn load(&self) -> Result<Vec<Arc<Entry<R>>>, Error> {
        let records: Vec<(String, R)> = self.store.load_all(R::TABLE)?;
        Ok(records
            .into_iter()
            .map(|(_, rec)| {
                let entry = Entry::new(rec);
                let rec = entry.snapshot();
                // Clients may have seen it before the restart.
                if rec.visible() {
                    *entry.told() = Some(rec.state());
                }
                self.index(&entry);
                entry
            })
            .collect())
    }

    fn index(&self, entry: &Arc<Entry<R>>) {
        let rec = entry.snapshot();
        let id = rec.id().to_string();
        let mut index = self.write();
        if rec.visible() {
            self.names.insert(rec.name(), id.clone());
            index.visible.insert(id, entry.clone());
        } else {
            index.hidden.insert(id, entry.clone());
        }
    }

    /// A new object: stored before anything of it exists, so a crash at
    /// any later point leaves a record the next start reconciles.
    pub async fn add(&self, rec: R) -> Result<Arc<Entry<R>>, Error> {
        self.persist(&rec).await?;
        let entry = Entry::new(rec);
        // Held before the entry can be found, so its first event is
        // published before any change of it.
        let commit = entry.commit.lock().await;
        self.index(&entry);
        let record = entry.snapshot();
        if record.visible() {
            self.publish(&entry, record, false);
        }
        drop(commit);
        Ok(entry)
    }

    /// Changes an object's record with `f`: stored, then swapped into the
    /// index (also when storing failed: memory follows what happened, and
    /// the error is returned), then published, only when stored: clients
    /// are told of durable states alone, and the next stored change is
    /// published from the state they were last told of.
    pub async fn transition<T>(
        &self,
        entry: &Entry<R>,
        f: impl FnOnce(&mut R) -> T,
    ) -> Result<T, Error> {
        let _commit = entry.commit.lock().await;
        let (before, after, out) = Self::changed(entry, f);
        let stored = self.persist(&after).await;
        self.apply(entry, &before, after, stored.is_ok());
        stored.map(|()| out)
    }

    /// [`Self::transition`] without storing (nor publishing): for a step the
    /// next transition stores, whose loss in a crash the next start redoes
    /// anyway.
    pub async fn transition_unsaved<T>(&self, entry: &Entry<R>, f: impl FnOnce(&mut R) -> T) -> T {
        let _commit = entry.commit.lock().await;
        let (before, after, out) = Self::changed(entry, f);
        self.apply(entry, &before, after, false);
        out
    }

    fn changed<T>(entry: &Entry<R>, f: impl FnOnce(&mut R) -> T) -> (Arc<R>, R, T) {
        let before = entry.snapshot();
        let mut after = (*before).clone();
        let out = f(&mut after);
        (before, after, out)
    }

    fn apply(&self, entry: &Entry<R>, before: &R, after: R, stored: bool) {
        let after = Arc::new(after);
        entry.swap(after.clone());
        if !before.visible() && after.visible() {
            self.reveal(&after);
        }
        if stored && after.visible() {
            self.publish(entry, after, false);
        }
    }

    /// Moves an object that clients can now see into the visible index.
    fn reveal(&self, rec: &R) {
        let mut index = self.write();
        if let Some(entry) = index.hidden.remove(rec.id()) {
            self.names.insert(rec.name(), rec.id().to_string());
            index.visible.insert(rec.id().to_string(), entry);
        }
    }

    /// Removes an object from the store, the index and the names.
    pub async fn remove(&self, entry: &Entry<R>) -> Result<(), Error> {
        let _commit = entry.commit.lock().await;
        let rec = entry.snapshot();
        self.store
            .delete_async(R::TABLE, rec.id().to_string())
            .await?;
        {
            let mut index = self.write();
            index.visible.remove(rec.id());
            index.hidden.remove(rec.id());
        }
        entry
            .removed
            .store(true, std::sync::atomic::Ordering::Release);
        if rec.visible() {
            self.names.remove(&rec.name());
        }
        if entry.told().is_some() {
            self.publish(entry, rec, true);
        }
        Ok(())
    }

    async fn persist(&self, rec: &R) -> Result<(), Error> {
        Ok(self
            .store
            .put_async(R::TABLE, rec.id().to_string(), rec.clone())
            .await?)
    }

    /// Tells subscribers of a stored change; called with the entry's
    /// commit lock held, so an object's events keep their order.
    fn publish(&self, entry: &Entry<R>, record: Arc<R>, removed: bool) {
        let now = (!removed).then(|| record.state());
        let from = std::mem::replace(&mut *entry.told(), now);
        // No subscriber is not an error.
        let _ = self.events.send(Event {
            from,
            record,
            removed,
            at: crate::ids::now_nanos(),
            seq: EVENT_SEQ.fetch_add(1, Ordering::Relaxed),
        });
    }

    /// Every change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event<R>> {
        self.events.subscribe()
    }

    /// A visible object by id or unique id prefix.
    pub fn lookup(&self, id: &str) -> Result<Arc<Entry<R>>, Error> {
        if id.is_empty() {
            return Err(Error::invalid(R::ID_FIELD, "must not be empty"));
        }
        match lookup(&self.read().visible, id) {
            Lookup::Found(e) => Ok(e.clone()),
            Lookup::Ambiguous => Err(Error::NotFound(format!(
                "{} id prefix {id:?} is ambiguous",
                R::KIND
            ))),
            Lookup::Missing => Err(Error::NotFound(format!("{} {id:?} not found", R::KIND))),
        }
    }

    /// The object a stop or removal is for; `None` when `id` names none,
    /// as it was removed already (stops and removals of an unknown id
    /// succeed, as the CRI spec says).
    pub fn lookup_if_known(&self, id: &str) -> Result<Option<Arc<Entry<R>>>, Error> {
        match self.lookup(id) {
            Ok(e) => Ok(Some(e)),
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The records of every visible object.
    pub fn records(&self) -> Vec<Arc<R>> {
        self.read().visible.values().map(|e| e.snapshot()).collect()
    }

    /// Creates the object named `name` with `create` in a task of its own,
    /// unless the name is being created (then that creation's result) or
    /// taken (then `exists(name, id)`). See [`Names::create`].
    pub async fn create_named<F>(
        &self,
        name: R::Name,
        create: F,
        exists: impl FnOnce(&R::Name, &str) -> Error,
    ) -> Result<String, Error>
    where
        F: Future<Output = Result<String, Error>> + Send + 'static,
    {
        self.names
            .create(
                name,
                create,
                |name, Taken::Exists(id)| exists(name, id),
                Error::Internal,
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Table;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
    struct Thing {
        id: String,
        name: String,
        state: u8,
    }

    /// State 0 is "being created".
    impl Record for Thing {
        type State = u8;
        type Name = String;
        type Extra = ();
        const TABLE: Table = Table::Meta;
        const KIND: &'static str = "thing";
        const ID_FIELD: &'static str = "thing_id";
        const CREATING: u8 = 0;
        fn id(&self) -> &str {
            &self.id
        }
        fn name(&self) -> String {
            self.name.clone()
        }
        fn state(&self) -> u8 {
            self.state
        }
    }

    fn thing(id: &str, state: u8) -> Thing {
        Thing {
            id: id.into(),
            name: format!("name-{id}"),
            state,
        }
    }

    fn registry() -> (tempfile::TempDir, Arc<Store>, Registry<Thing>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("db")).unwrap());
        let registry = Registry::new(store.clone());
        (dir, store, registry)
    }

    #[tokio::test]
    async fn an_object_being_created_is_stored_but_not_seen_until_it_is_made() {
        let (_dir, store, registry) = registry();
        let mut events = registry.subscribe();
        let entry = registry.add(thing("abc1", 0)).await.unwrap();
        assert_eq!(
            store
                .get::<Thing>(Table::Meta, "abc1")
                .unwrap()
                .unwrap()
                .state,
            0
        );
        assert!(matches!(registry.lookup("abc"), Err(Error::NotFound(_))));
        assert!(registry.records().is_empty());
        assert!(events.try_recv().is_err(), "no event for a hidden object");
        registry.transition(&entry, |t| t.state = 1).await.unwrap();
        assert_eq!(registry.lookup("abc").unwrap().snapshot().state, 1);
        assert_eq!(
            store
                .get::<Thing>(Table::Meta, "abc1")
                .unwrap()
                .unwrap()
                .state,
            1
        );
        let e = events.try_recv().unwrap();
        assert_eq!((e.from, e.record.state, e.removed), (None, 1, false));
        assert_eq!(*entry.watch_state().borrow(), 1);
    }

    #[tokio::test]
    async fn lookups_name_the_field_and_the_kind() {
        let (_dir, _store, registry) = registry();
        registry.add(thing("ab1", 1)).await.unwrap();
        registry.add(thing("ab2", 1)).await.unwrap();
        assert_eq!(
            registry.lookup("").err().unwrap().to_string(),
            "thing_id: must not be empty"
        );
        assert_eq!(
            registry.lookup("ab").err().unwrap().to_string(),
            "thing id prefix \"ab\" is ambiguous"
        );
        assert_eq!(
            registry.lookup("zz").err().unwrap().to_string(),
            "thing \"zz\" not found"
        );
        assert_eq!(registry.lookup("ab2").unwrap().snapshot().id, "ab2");
    }

    #[tokio::test]
    async fn removal_frees_the_name_and_is_published() {
        let (_dir, store, registry) = registry();
        let entry = registry.add(thing("x", 1)).await.unwrap();
        let taken = registry
            .create_named("name-x".into(), async { Ok("never".into()) }, |n, id| {
                Error::AlreadyExists(format!("{n} {id}"))
            })
            .await;
        assert_eq!(taken, Err(Error::AlreadyExists("name-x x".into())));
        let mut events = registry.subscribe();
        registry.remove(&entry).await.unwrap();
        assert!(events.try_recv().unwrap().removed);
        assert_eq!(store.get::<Thing>(Table::Meta, "x").unwrap(), None);
        let again = registry
            .create_named("name-x".into(), async { Ok("y".into()) }, |_, _| {
                Error::Internal("taken".into())
            })
            .await;
        assert_eq!(again, Ok("y".into()));
    }

    /// A thing whose state 9 cannot be stored.
    #[derive(Debug, Clone, Deserialize)]
    struct Fragile(Thing);

    impl Serialize for Fragile {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            if self.0.state == 9 {
                return Err(serde::ser::Error::custom("state 9 cannot be stored"));
            }
            self.0.serialize(s)
        }
    }

    impl Record for Fragile {
        type State = u8;
        type Name = String;
        type Extra = ();
        const TABLE: Table = Table::Meta;
        const KIND: &'static str = "thing";
        const ID_FIELD: &'static str = "thing_id";
        const CREATING: u8 = 0;
        fn id(&self) -> &str {
            &self.0.id
        }
        fn name(&self) -> String {
            self.0.name.clone()
        }
        fn state(&self) -> u8 {
            self.0.state
        }
    }

    #[tokio::test]
    async fn only_stored_changes_are_published_from_the_state_last_published() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("db")).unwrap());
        let registry = Registry::<Fragile>::new(store.clone());
        let mut events = registry.subscribe();
        let entry = registry.add(Fragile(thing("f", 0))).await.unwrap();
        registry
            .transition(&entry, |t| t.0.state = 1)
            .await
            .unwrap();
        let e = events.try_recv().unwrap();
        assert_eq!((e.from, e.record.0.state), (None, 1));
        let failed = registry.transition(&entry, |t| t.0.state = 9).await;
        assert!(failed.is_err());
        assert_eq!(entry.snapshot().0.state, 9, "memory follows what happened");
        assert!(events.try_recv().is_err(), "no event for an unstored state");
        registry.transition_unsaved(&entry, |t| t.0.state = 3).await;
        assert!(events.try_recv().is_err(), "no event for an unsaved state");
        registry
            .transition(&entry, |t| t.0.state = 2)
            .await
            .unwrap();
        let e = events.try_recv().unwrap();
        assert_eq!((e.from, e.record.0.state), (Some(1), 2));
        registry.remove(&entry).await.unwrap();
        let e = events.try_recv().unwrap();
        assert_eq!((e.from, e.removed), (Some(2), true));
        let hidden = registry.add(Fragile(thing("h", 0))).await.unwrap();
        assert!(registry
            .transition(&hidden, |t| t.0.state = 9)
            .await
            .is_err());
        registry.remove(&hidden).await.unwrap();
        assert!(
            events.try_recv().is_err(),
            "nothing of an object whose visible states were never stored"
        );
    }

    #[tokio::test]
    async fn load_indexes_what_the_store_holds() {
        let (_dir, store, registry) = registry();
        store.put(Table::Meta, "seen", &thing("seen", 2)).unwrap();
        store
            .put(Table::Meta, "hidden", &thing("hidden", 0))
            .unwrap();
        let entries = registry.load().unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(registry.records().len(), 1);
        assert!(registry.lookup("hidden").is_err());
        let unsaved = registry
            .transition_unsaved(&registry.lookup("seen").unwrap(), |t| {
                t.state = 3;
                t.state
            })
            .await;
        assert_eq!(unsaved, 3);
        assert_eq!(
            store
                .get::<Thing>(Table::Meta, "seen")
                .unwrap()
                .unwrap()
                .state,
            2
        );
    }
}
