//! The sandbox lifecycle over the fakes of [`crate::testing`]: every step of
//! RunPodSandbox, StopPodSandbox and RemovePodSandbox made to fail, or the
//! daemon to die there, and what is left checked.

use std::collections::HashMap;
use std::sync::Arc;

use super::*;
use crate::testing::{FakeCgroups, FakeHost, FakeInfra, FakeNetwork, Fault, World};

/// A daemon's sandboxes over a fake host; the store and the world outlive
/// a daemon that "crashes".
pub(crate) struct Harness {
    /// Holds the store and the state directory.
    pub _dir: tempfile::TempDir,
    pub config: Arc<Config>,
    pub store: Arc<Store>,
    pub world: World,
}

impl Harness {
    pub fn new() -> Harness {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = Config {
            root_dir: dir.path().join("root"),
            state_dir: dir.path().join("state"),
            ..Config::default()
        };
        let store = Arc::new(Store::open(&config.database_path()).expect("a store"));
        Harness {
            _dir: dir,
            config: Arc::new(config),
            store,
            world: World::new(),
        }
    }

    pub fn deps(&self) -> SandboxDeps {
        SandboxDeps {
            cgroups: Arc::new(FakeCgroups(self.world.clone())),
            host: Arc::new(FakeHost(self.world.clone())),
            network: Arc::new(FakeNetwork(self.world.clone())),
            infra: Arc::new(FakeInfra(self.world.clone())),
        }
    }

    /// A daemon starting over the store and the world.
    pub async fn sandboxes(&self) -> Arc<Sandboxes> {
        Sandboxes::recover(self.config.clone(), self.store.clone(), self.deps())
            .await
            .expect("recovery")
    }

    pub fn stored(&self) -> Vec<SandboxRecord> {
        self.store
            .load_all::<SandboxRecord>(Table::Sandboxes)
            .expect("records")
            .into_iter()
            .map(|(_, r)| r)
            .collect()
    }

    /// Nothing of any sandbox is left: on the host, in the store, on disk.
    pub fn assert_nothing_left(&self, when: &str) {
        assert_eq!(self.world.leftovers(), Vec::<String>::new(), "{when}");
        assert!(
            self.stored().is_empty(),
            "{when}: records {:?}",
            self.stored()
        );
        let dirs = std::fs::read_dir(self.config.sandboxes_dir())
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(dirs, 0, "{when}: sandbox directories left");
    }
}

pub(crate) fn pod_spec(name: &str) -> SandboxSpec {
    SandboxSpec {
        metadata: SandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "default".into(),
            attempt: 0,
        },
        hostname: name.into(),
        log_directory: "/var/log/pods/x".into(),
        dns: Some(DnsConfig {
            servers: vec!["10.0.0.10".into()],
            searches: vec![],
            options: vec![],
        }),
        port_mappings: vec![],
        labels: HashMap::new(),
        annotations: HashMap::new(),
        cgroup_parent: "/kubepods/pod1".into(),
        network: NamespaceMode::Pod,
        pid: NamespaceMode::Pod,
        ipc: NamespaceMode::Pod,
        userns: None,
        sysctls: Default::default(),
        runtime_handler: String::new(),
    }
}

/// Runs `make` with a fault at each operation in turn, from the first to
/// the first that `make` never reaches; `check` gets each run's harness.
async fn at_every_step<F, C>(fault: Fault, make: F, check: C) -> usize
where
    F: AsyncFn(&Harness, Arc<Sandboxes>, usize),
    C: AsyncFn(&Harness, &str),
{
    for n in 1.. {
        let h = Harness::new();
        let sandboxes = h.sandboxes().await;
        make(&h, sandboxes, n).await;
        let hit = h.world.hit();
        if hit.is_empty() {
            return n - 1;
        }
        check(&h, &format!("{fault:?} at step {n} ({})", hit[0])).await;
    }
    unreachable!()
}

/// The operations before `make`'s own are not counted for the fault.
fn fault_after(h: &Harness, n: usize, fault: Fault) {
    h.world.fault_at(h.world.log().len() + n, fault);
}

#[tokio::test]
async fn run_makes_the_pod_and_remove_releases_it() {
    let h = Harness::new();
    let sandboxes = h.sandboxes().await;
    let id = sandboxes.run(pod_spec("web")).await.unwrap();
    let rec = sandboxes.status(&id).unwrap().record;
    assert_eq!(rec.state, SandboxState::Ready);
    assert_eq!(rec.ips, ["10.88.0.2"]);
    assert_eq!(h.world.attachments(), std::slice::from_ref(&id));
    assert_eq!(h.world.cgroups(), std::slice::from_ref(&rec.cgroup));
    assert_eq!(h.world.mounts().len(), 2, "shm and netns");
    assert!(h.world.live_processes().contains(&rec.infra.unwrap().pid));
    assert_eq!(
        std::fs::read_to_string(rec.resolv_conf_path()).unwrap(),
        "nameserver 10.0.0.10\n"
    );
    sandboxes.remove(&id).await.unwrap();
    h.assert_nothing_left("after remove");
    assert!(sandboxes.list(&SandboxFilter::default()).is_empty());
}

#[tokio::test]
async fn a_failure_at_any_step_of_run_leaves_nothing() {
    let steps = at_every_step(
        Fault::Fail,
        async |h, sandboxes, n| {
            fault_after(h, n, Fault::Fail);
            let r = sandboxes.run(pod_spec("web")).await;
            assert_eq!(r.is_err(), !h.world.hit().is_empty(), "{r:?}");
            if r.is_err() {
                assert!(sandboxes.list(&SandboxFilter::default()).is_empty());
            }
        },
        async |h, when| h.assert_nothing_left(when),
    )
    .await;
    assert_eq!(
        steps, 6,
        "shm, cgroup, infra, cgroup of the infra, netns, network"
    );
}

#[tokio::test]
async fn a_crash_at_any_step_of_run_is_undone_by_the_next_start() {
    at_every_step(
        Fault::Crash,
        async |h, sandboxes, n| {
            fault_after(h, n, Fault::Crash);
            let _ = sandboxes.run(pod_spec("web")).await;
        },
        async |h, when| {
            let restarted = h.sandboxes().await;
            h.assert_nothing_left(when);
            // The name is free again.
            restarted.run(pod_spec("web")).await.unwrap();
        },
    )
    .await;
}

#[tokio::test]
async fn a_failed_rollback_keeps_the_sandbox_notready_until_removed() {
    let h = Harness::new();
    let sandboxes = h.sandboxes().await;
    // The network's add fails (the 6th operation), then its del (the 7th,
    // the first of the rollback).
    h.world.fault_at(6, Fault::Fail);
    h.world.fault_at(7, Fault::Fail);
    let err = sandboxes.run(pod_spec("web")).await.unwrap_err();
    assert!(
        err.to_string().contains("injected failure of network add"),
        "{err}"
    );
    let kept = sandboxes.list(&SandboxFilter::default());
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].record.state, SandboxState::NotReady);
    assert_eq!(h.stored()[0].state, SandboxState::NotReady);
    // A retry with the same name finds it taken, by the kept sandbox.
    let again = sandboxes.run(pod_spec("web")).await.unwrap_err();
    assert!(matches!(again, Error::AlreadyExists(_)), "{again}");
    sandboxes.remove(&kept[0].record.id).await.unwrap();
    h.assert_nothing_left("after remove");
}

#[tokio::test]
async fn a_failure_at_any_step_of_stop_or_remove_is_mended_by_a_retry() {
    for remove in [false, true] {
        at_every_step(
            Fault::Fail,
            async |h, sandboxes, n| {
                let id = sandboxes.run(pod_spec("web")).await.unwrap();
                fault_after(h, n, Fault::Fail);
                let first = match remove {
                    true => sandboxes.remove(&id).await,
                    false => sandboxes.stop(&id).await,
                };
                h.world.clear_faults();
                assert_eq!(first.is_err(), !h.world.hit().is_empty(), "{first:?}");
                if first.is_ok() {
                    return; // the fault was past the operation's last step
                }
                if remove {
                    let kept = sandboxes.status(&id).unwrap().record;
                    assert_eq!(kept.state, SandboxState::NotReady);
                }
                sandboxes.stop(&id).await.unwrap();
                assert!(h.world.attachments().is_empty());
                assert!(h.world.live_processes().is_empty());
                sandboxes.remove(&id).await.unwrap();
            },
            async |h, when| h.assert_nothing_left(when),
        )
        .await;
    }
}

#[tokio::test]
async fn a_crash_at_any_step_of_remove_is_finished_by_the_next_start() {
    let steps = at_every_step(
        Fault::Crash,
        async |h, sandboxes, n| {
            let id = sandboxes.run(pod_spec("web")).await.unwrap();
            fault_after(h, n, Fault::Crash);
            let _ = sandboxes.remove(&id).await;
        },
        async |h, when| {
            h.sandboxes().await;
            h.assert_nothing_left(when);
        },
    )
    .await;
    assert!(steps >= 6, "{steps}");
}

#[tokio::test]
async fn the_infra_process_exit_makes_the_sandbox_notready() {
    let h = Harness::new();
    let sandboxes = h.sandboxes().await;
    let mut events = sandboxes.subscribe();
    let id = sandboxes.run(pod_spec("web")).await.unwrap();
    let ready = events.recv().await.unwrap();
    assert_eq!(
        (ready.from, ready.record.state),
        (None, SandboxState::Ready)
    );
    let infra = sandboxes.status(&id).unwrap().record.infra.unwrap();
    h.world.end_process(infra.pid);
    let changed = events.recv().await.unwrap();
    assert_eq!(
        (changed.from, changed.record.state),
        (Some(SandboxState::Ready), SandboxState::NotReady)
    );
    assert_eq!(h.stored()[0].state, SandboxState::NotReady);
}

#[tokio::test]
async fn a_restart_keeps_live_pods_ready_and_others_notready() {
    let h = Harness::new();
    let sandboxes = h.sandboxes().await;
    let live = sandboxes.run(pod_spec("live")).await.unwrap();
    let dead = sandboxes.run(pod_spec("dead")).await.unwrap();
    let infra = sandboxes.status(&dead).unwrap().record.infra.unwrap();
    drop(sandboxes);
    h.world.end_process(infra.pid);
    let restarted = h.sandboxes().await;
    assert!(restarted.status(&live).unwrap().ready);
    assert!(!restarted.status(&dead).unwrap().ready);
    let name_taken = restarted.run(pod_spec("live")).await.unwrap_err();
    assert!(matches!(name_taken, Error::AlreadyExists(_)));
    assert_eq!(restarted.pod(&live[..8]).unwrap().id, live);
}

#[tokio::test]
async fn a_crash_at_any_step_of_stop_leaves_a_pod_the_next_start_can_remove() {
    let steps = at_every_step(
        Fault::Crash,
        async |h, sandboxes, n| {
            let id = sandboxes.run(pod_spec("web")).await.unwrap();
            fault_after(h, n, Fault::Crash);
            let _ = sandboxes.stop(&id).await;
        },
        async |h, when| {
            let restarted = h.sandboxes().await;
            // kubelet retries the stop that never answered, then removes.
            for pod in restarted.list(&SandboxFilter::default()) {
                restarted.stop(&pod.record.id).await.unwrap();
                assert!(!restarted.status(&pod.record.id).unwrap().ready, "{when}");
                restarted.remove(&pod.record.id).await.unwrap();
            }
            h.assert_nothing_left(when);
        },
    )
    .await;
    assert_eq!(steps, 3, "network, infra, cgroup");
}
