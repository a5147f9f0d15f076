//! Operations on a whole pod: its sandbox and its containers together, in
//! the order kubelet expects (containers first).

use std::sync::Arc;

use crate::container::{ContainerFilter, ContainerState, Containers};
use crate::errors::Error;
use crate::metrics::Census;
use crate::sandbox::{SandboxFilter, SandboxState, Sandboxes};

pub struct Pods {
    sandboxes: Arc<Sandboxes>,
    containers: Arc<Containers>,
}

impl Pods {
    pub fn new(sandboxes: Arc<Sandboxes>, containers: Arc<Containers>) -> Pods {
        Pods {
            sandboxes,
            containers,
        }
    }

    /// StopPodSandbox: the pod's containers, then the sandbox, in a task of
    /// its own, so a client that gives up does not stop it half way. An
    /// unknown pod succeeds (already stopped and removed).
    pub async fn stop(&self, id: &str) -> Result<(), Error> {
        let (sandboxes, containers) = (self.sandboxes.clone(), self.containers.clone());
        let id = id.to_string();
        tokio::spawn(async move {
            let full = match sandboxes.full_id(&id) {
                Ok(full) => full,
                Err(Error::NotFound(_)) => return Ok(()),
                Err(e) => return Err(e),
            };
            containers.stop_sandbox(&full).await?;
            sandboxes.stop(&full).await
        })
        .await
        .map_err(|e| Error::Internal(format!("stop task: {e}")))?
    }

    /// RemovePodSandbox: the pod's containers, then the sandbox. An unknown
    /// pod succeeds (it is already removed).
    pub async fn remove(&self, id: &str) -> Result<(), Error> {
        let (sandboxes, containers) = (self.sandboxes.clone(), self.containers.clone());
        let id = id.to_string();
        tokio::spawn(async move {
            let full = match sandboxes.full_id(&id) {
                Ok(full) => full,
                Err(Error::NotFound(_)) => return Ok(()),
                Err(e) => return Err(e),
            };
            containers.remove_sandbox(&full).await?;
            sandboxes.remove(&full).await
        })
        .await
        .map_err(|e| Error::Internal(format!("remove task: {e}")))?
    }

    /// How many sandboxes and containers are in each state now (every
    /// state listed, those with none too), for the metrics.
    pub fn census(&self) -> Census {
        use SandboxState as P;
        let pods = self.sandboxes.list(&SandboxFilter::default());
        let pod_states = pods.iter().map(|v| v.record.state);
        let containers = self.containers.list(&ContainerFilter::default());
        let container_states = containers.iter().map(|r| r.state);
        use ContainerState as C;
        Census {
            pods: count_by_state(
                &[P::Creating, P::Ready, P::NotReady, P::Removing],
                pod_states,
            ),
            containers: count_by_state(
                &[C::Creating, C::Created, C::Running, C::Exited, C::Removing],
                container_states,
            ),
        }
    }
}

/// `(state, how many)` for each of `all`, named as the store names them.
fn count_by_state<S: serde::Serialize>(
    all: &[S],
    states: impl Iterator<Item = S>,
) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = all.iter().map(|s| (state_name(s), 0)).collect();
    for state in states {
        let name = state_name(&state);
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some((_, n)) => *n += 1,
            None => out.push((name, 1)),
        }
    }
    out
}

fn state_name<S: serde::Serialize>(state: &S) -> String {
    match serde_json::to_value(state) {
        Ok(serde_json::Value::String(name)) => name,
        _ => "unknown".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_is_counted_by_its_stored_name() {
        use SandboxState as P;
        let counts = count_by_state(
            &[P::Ready, P::NotReady],
            [P::Ready, P::Removing, P::Ready].into_iter(),
        );
        let expected = [("ready", 2), ("notready", 0), ("removing", 1)];
        let expected: Vec<(String, u64)> =
            expected.iter().map(|(s, n)| (s.to_string(), *n)).collect();
        assert_eq!(counts, expected);
    }
}
