//! The objects kubelet creates — pod sandboxes and containers — kept alike:
//! one store-backed [`Registry`] per kind holds the in-memory index (lookup
//! by id or unique id prefix, List and Status without waiting), the names
//! kubelet gives them ([`names`]), the scan that reloads them at start, and
//! the one [`Registry::transition`] through which every change of a record
//! goes: it persists the record, swaps it into the index and publishes an
//! [`Event`]. Nothing else writes a record.

pub mod names;
mod registry;

pub use registry::{Entry, Event, Registry};

use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;

use serde::{de::DeserializeOwned, Serialize};

use crate::errors::Error;
use crate::store::Table;

/// A kind of object the registry keeps.
pub trait Record: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {
    type State: Copy + Eq + Debug + Send + Sync + 'static;
    /// kubelet's identity of the object; two live objects never share it.
    type Name: Hash + Eq + Clone + Send + Sync + 'static;
    /// What an entry holds besides the record (per-object locks).
    type Extra: Default + Send + Sync + 'static;
    /// Where the records are stored.
    const TABLE: Table;
    /// What the object is called in messages ("pod sandbox").
    const KIND: &'static str;
    /// The request field that carries its id ("pod_sandbox_id").
    const ID_FIELD: &'static str;
    /// The state of an object being created, which clients do not see.
    const CREATING: Self::State;

    fn id(&self) -> &str;
    fn name(&self) -> Self::Name;
    fn state(&self) -> Self::State;
    /// Whether clients see the object: not while it is being created.
    fn visible(&self) -> bool {
        self.state() != Self::CREATING
    }
}

/// Runs an operation on one object in a task of its own, so that a client
/// that gives up (tonic then drops its handler) never interrupts it half
/// way, holding the object's operation lock for the whole of it.
pub async fn operate<R, T, F, Fut>(entry: Arc<Entry<R>>, what: &str, op: F) -> Result<T, Error>
where
    R: Record,
    T: Send + 'static,
    F: FnOnce(Arc<Entry<R>>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, Error>> + Send + 'static,
{
    tokio::spawn(async move {
        let _op = entry.lock().await;
        op(entry.clone()).await
    })
    .await
    .map_err(|e| Error::Internal(format!("{what} task: {e}")))?
}

/// [`operate`] for a removal of the object `entry` names: no object, or
/// one another removal took while this one waited for its turn, is
/// removed already (removals are idempotent).
pub async fn operate_removal<R, F, Fut>(entry: Option<Arc<Entry<R>>>, op: F) -> Result<(), Error>
where
    R: Record,
    F: FnOnce(Arc<Entry<R>>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), Error>> + Send + 'static,
{
    let Some(entry) = entry else {
        return Ok(());
    };
    operate(entry, "remove", |entry| async move {
        match entry.is_removed() {
            true => Ok(()),
            false => op(entry).await,
        }
    })
    .await
}
