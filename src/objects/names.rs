//! Names kubelet gives the objects it creates (a sandbox's metadata, a
//! container's name in its sandbox), and what a second call with a name
//! gets. kubelet retries a RunPodSandbox or CreateContainer whose deadline
//! passed with the same name: the retry joins the creation still in flight,
//! or gets the object its first caller never received. After that, the
//! name is taken until the object is removed.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

type Outcome<E> = Result<String, E>;

enum NameState<E> {
    /// Being created: callers wait for the same result.
    InFlight(watch::Receiver<Option<Outcome<E>>>),
    /// Created; `delivered` once a caller has received the id.
    Done { id: String, delivered: bool },
}

/// What a call with a name gets, when it does not simply wait.
pub enum Taken<'a> {
    /// The id of the object that has the name.
    Exists(&'a str),
}

pub struct Names<K, E> {
    map: Mutex<HashMap<K, NameState<E>>>,
}

impl<K, E> Names<K, E>
where
    K: Hash + Eq + Clone + Send + 'static,
    E: Clone + Send + Sync + 'static,
{
    pub fn new() -> Arc<Self> {
        Arc::new(Names {
            map: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, NameState<E>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records an object that has the name (found at start, or made).
    pub fn insert(&self, key: K, id: String) {
        self.lock().insert(
            key,
            NameState::Done {
                id,
                delivered: true,
            },
        );
    }

    /// Frees the name (its object was removed).
    pub fn remove(&self, key: &K) {
        self.lock().remove(key);
    }

    /// Creates the object named `key` with `create`, in a task of its own
    /// (a caller that gives up does not interrupt it), unless the name is
    /// being created (then the result of that creation) or taken (then
    /// `exists(id)`; or the id itself if its creator never received it).
    /// `internal` makes the error for a creation task that vanished.
    pub async fn create<F>(
        self: &Arc<Self>,
        key: K,
        create: F,
        exists: impl FnOnce(&K, Taken<'_>) -> E,
        internal: fn(String) -> E,
    ) -> Outcome<E>
    where
        F: Future<Output = Outcome<E>> + Send + 'static,
    {
        let mut rx = match self.claim(&key, create) {
            Claim::Wait(rx) => rx,
            Claim::Undelivered(id) => return Ok(id),
            Claim::Taken(id) => return Err(exists(&key, Taken::Exists(&id))),
        };
        let result = match rx.wait_for(|r| r.is_some()).await {
            Ok(r) => r
                .clone()
                .unwrap_or_else(|| Err(internal("no result".into()))),
            Err(_) => Err(internal("the creation task ended without a result".into())),
        };
        if result.is_ok() {
            if let Some(NameState::Done { delivered, .. }) = self.lock().get_mut(&key) {
                *delivered = true;
            }
        }
        result
    }

    /// What a call with `key` gets: the creation to wait for (started now
    /// with `create` when the name is free), or the object of the name.
    fn claim<F>(self: &Arc<Self>, key: &K, create: F) -> Claim<E>
    where
        F: Future<Output = Outcome<E>> + Send + 'static,
    {
        let mut map = self.lock();
        match map.get_mut(key) {
            Some(NameState::InFlight(rx)) => {
                tracing::info!("creation retried while the first call is in flight: joining it");
                Claim::Wait(rx.clone())
            }
            Some(NameState::Done { id, delivered }) if !*delivered => {
                *delivered = true;
                tracing::info!(id = %id, "creation retried after its first caller gave up: returning the object");
                Claim::Undelivered(id.clone())
            }
            Some(NameState::Done { id, .. }) => Claim::Taken(id.clone()),
            None => {
                let (tx, rx) = watch::channel(None);
                map.insert(key.clone(), NameState::InFlight(rx.clone()));
                let (names, key) = (self.clone(), key.clone());
                tokio::spawn(async move {
                    let result = create.await;
                    names.settle(key, &result);
                    let _ = tx.send(Some(result));
                });
                Claim::Wait(rx)
            }
        }
    }

    /// Records how a creation ended: the name is the new object's, or free
    /// again, unless the failed creation kept an object by that name (one
    /// that could not be rolled back).
    fn settle(&self, key: K, result: &Outcome<E>) {
        let mut map = self.lock();
        match result {
            Ok(id) => {
                map.insert(
                    key,
                    NameState::Done {
                        id: id.clone(),
                        delivered: false,
                    },
                );
            }
            Err(_) => {
                if matches!(map.get(&key), Some(NameState::InFlight(_))) {
                    map.remove(&key);
                }
            }
        }
    }
}

/// See [`Names::claim`].
enum Claim<E> {
    Wait(watch::Receiver<Option<Outcome<E>>>),
    /// Created, but its first caller never received it.
    Undelivered(String),
    Taken(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn exists(_: &&'static str, Taken::Exists(id): Taken<'_>) -> String {
        format!("exists: {id}")
    }

    #[tokio::test]
    async fn a_retry_joins_then_the_name_is_taken() {
        let names: Arc<Names<&'static str, String>> = Names::new();
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        let n = names.clone();
        let first = tokio::spawn(async move {
            n.create(
                "a",
                async move {
                    let _ = wait.await;
                    Ok("id1".to_string())
                },
                exists,
                |m| m,
            )
            .await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let n = names.clone();
        let second = tokio::spawn(async move {
            n.create("a", async { Ok("never".to_string()) }, exists, |m| m)
                .await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        go.send(()).unwrap();
        assert_eq!(first.await.unwrap().unwrap(), "id1");
        assert_eq!(second.await.unwrap().unwrap(), "id1");
        let third = names
            .create("a", async { Ok("never".to_string()) }, exists, |m| m)
            .await;
        assert_eq!(third.unwrap_err(), "exists: id1");
        names.remove(&"a");
        let fourth = names
            .create("a", async { Ok("id2".to_string()) }, exists, |m| m)
            .await;
        assert_eq!(fourth.unwrap(), "id2");
    }

    #[tokio::test]
    async fn an_undelivered_result_goes_to_the_retry() {
        let names: Arc<Names<&'static str, String>> = Names::new();
        // The first caller gives up before the creation ends.
        let n = names.clone();
        let first = tokio::spawn(async move {
            n.create(
                "a",
                async {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok("id1".to_string())
                },
                exists,
                |m| m,
            )
            .await
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        first.abort();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let retry = names
            .create("a", async { Ok("never".to_string()) }, exists, |m| m)
            .await;
        assert_eq!(retry.unwrap(), "id1");
        // A failed creation frees the name.
        let failed = names
            .create("b", async { Err("boom".to_string()) }, exists, |m| m)
            .await;
        assert_eq!(failed.unwrap_err(), "boom");
        let again = names
            .create("b", async { Ok("id3".to_string()) }, exists, |m| m)
            .await;
        assert_eq!(again.unwrap(), "id3");
    }
}
