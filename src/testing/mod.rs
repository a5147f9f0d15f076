//! Fakes of the seams the pod and container lifecycles use — the host, the
//! cgroups, the pod network, the infra process and the OCI runtime — over
//! one shared [`World`] that records what exists (mounts, cgroups, live
//! processes, network attachments, runtime containers), so that a unit
//! test can make the n-th operation fail or crash and then check that a
//! rollback, a removal or a recovery left nothing behind.

mod host;
mod network;
mod runtime;

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

pub use host::{FakeCgroups, FakeHost};
pub use network::{FakeInfra, FakeNetwork};
pub use runtime::FakeRuntime;

use crate::process::ProcessRef;

/// What happens at an operation the test picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The operation fails.
    Fail,
    /// The daemon dies there: the operation panics, which ends the task
    /// that runs the lifecycle without any of its cleanup.
    Crash,
}

/// A fake process: alive until killed (or, for a monitor, until its
/// container's init ends).
struct Proc {
    alive: watch::Sender<bool>,
    cgroup: Option<String>,
}

/// A container as the fake runtime keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeContainer {
    pub monitor: i32,
    pub init: i32,
    pub started: bool,
    /// The exit code the monitor recorded, once the init ended.
    pub exit_code: Option<i32>,
}

#[derive(Default)]
struct State {
    /// Operations counted so far.
    ops: usize,
    faults: BTreeMap<usize, Fault>,
    /// The operations that were faulted, by name.
    hit: Vec<String>,
    /// Every operation, by name, in order.
    log: Vec<String>,
    mounts: BTreeSet<PathBuf>,
    cgroups: BTreeSet<String>,
    processes: BTreeMap<i32, Proc>,
    next_pid: i32,
    attachments: BTreeSet<String>,
    containers: BTreeMap<String, RuntimeContainer>,
}

/// The host the fakes share; it outlives a daemon that "crashed".
#[derive(Clone, Default)]
pub struct World(Arc<Mutex<State>>);

fn injected(op: &str) -> io::Error {
    io::Error::other(format!("injected failure of {op}"))
}

impl World {
    pub fn new() -> World {
        World::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes operation number `n` (counting from 1) fail or crash.
    pub fn fault_at(&self, n: usize, fault: Fault) {
        self.lock().faults.insert(n, fault);
    }

    /// No fault from now on.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// The operations a fault was injected into.
    pub fn hit(&self) -> Vec<String> {
        self.lock().hit.clone()
    }

    /// Every operation so far, by name.
    pub fn log(&self) -> Vec<String> {
        self.lock().log.clone()
    }

    /// Counts operation `op`; fails or crashes it when the test said so.
    fn step(&self, op: &str) -> io::Result<()> {
        let fault = {
            let mut s = self.lock();
            s.ops += 1;
            s.log.push(op.to_string());
            let fault = s.faults.get(&s.ops).copied();
            if fault.is_some() {
                s.hit.push(op.to_string());
            }
            fault
        };
        match fault {
            None => Ok(()),
            Some(Fault::Fail) => Err(injected(op)),
            Some(Fault::Crash) => panic!("injected crash at {op}"),
        }
    }

    fn spawn(&self) -> ProcessRef {
        let mut s = self.lock();
        s.next_pid += 1;
        let pid = 100_000 + s.next_pid;
        let (alive, _) = watch::channel(true);
        s.processes.insert(
            pid,
            Proc {
                alive,
                cgroup: None,
            },
        );
        ProcessRef { pid, start_time: 1 }
    }

    fn is_alive(&self, pid: i32) -> bool {
        self.lock()
            .processes
            .get(&pid)
            .is_some_and(|p| *p.alive.borrow())
    }

    /// Ends a process; a container's init takes its monitor along, which
    /// records the exit first.
    fn end(&self, pid: i32, exit_code: i32) {
        let mut s = self.lock();
        let monitor = s
            .containers
            .values_mut()
            .find(|c| c.init == pid && c.exit_code.is_none())
            .map(|c| {
                c.exit_code = Some(exit_code);
                c.monitor
            });
        for p in [Some(pid), monitor].into_iter().flatten() {
            if let Some(proc_) = s.processes.get(&p) {
                proc_.alive.send_replace(false);
            }
        }
    }

    async fn exited(&self, pid: i32) {
        let rx = self.lock().processes.get(&pid).map(|p| p.alive.subscribe());
        if let Some(mut rx) = rx {
            let _ = rx.wait_for(|alive| !alive).await;
        }
    }

    /// The processes still running.
    pub fn live_processes(&self) -> Vec<i32> {
        let s = self.lock();
        s.processes
            .iter()
            .filter(|(_, p)| *p.alive.borrow())
            .map(|(pid, _)| *pid)
            .collect()
    }

    pub fn mounts(&self) -> Vec<PathBuf> {
        self.lock().mounts.iter().cloned().collect()
    }

    pub fn cgroups(&self) -> Vec<String> {
        self.lock().cgroups.iter().cloned().collect()
    }

    pub fn attachments(&self) -> Vec<String> {
        self.lock().attachments.iter().cloned().collect()
    }

    pub fn runtime_containers(&self) -> Vec<String> {
        self.lock().containers.keys().cloned().collect()
    }

    /// A process dies (killed by someone else).
    pub fn end_process(&self, pid: i32) {
        self.end(pid, 137);
    }

    /// A container's init ends by itself with `code`.
    pub fn exit_container(&self, id: &str, code: i32) {
        let init = self.lock().containers.get(id).map(|c| c.init);
        if let Some(init) = init {
            self.end(init, code);
        }
    }

    /// The host holds nothing any more: what is left, if anything.
    pub fn leftovers(&self) -> Vec<String> {
        let mut out = Vec::new();
        out.extend(
            self.mounts()
                .iter()
                .map(|m| format!("mount {}", m.display())),
        );
        out.extend(self.cgroups().iter().map(|c| format!("cgroup {c}")));
        out.extend(self.live_processes().iter().map(|p| format!("process {p}")));
        out.extend(self.attachments().iter().map(|a| format!("attachment {a}")));
        out.extend(
            self.runtime_containers()
                .iter()
                .map(|c| format!("runtime container {c}")),
        );
        out
    }
}
