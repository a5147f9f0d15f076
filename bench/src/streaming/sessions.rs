//! Memory with exec sessions open: N concurrent `spdy-client exec --stdin`
//! sessions of `cat` (each prints `ready` first), then the daemon's RSS,
//! the container's parent's (shim or monitor) and that of the processes a
//! runtime runs per session; then the sessions end (stdin closed) and no
//! exec'd or per-session process may be left.

use std::time::{Duration, Instant};

use super::client::{Session, SpdyClient};
use crate::cri::runtime::TargetBench;
use crate::error::BenchError;
use crate::memory::{record_daemon_memory, rss_kib};
use crate::procfs::{all_pids, pid_namespace, ppid_of, process_name, start_time};
use crate::report::Report;

/// The exec'd command: `ready` once running, then `cat` until stdin ends.
const SESSION_CMD: [&str; 3] = ["sh", "-c", "echo ready; exec cat"];

/// How long the exec'd and per-session processes may take to go once
/// their sessions ended.
const GONE_LIMIT: Duration = Duration::from_secs(10);

/// How many parents up from an exec'd process are looked at.
const MAX_CHAIN: usize = 8;

/// A process, with its start time against pid reuse.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Proc {
    pid: i32,
    started: Option<u64>,
}

impl Proc {
    fn of(pid: i32) -> Proc {
        Proc {
            pid,
            started: start_time(pid),
        }
    }

    fn alive(self) -> bool {
        self.started.is_some() && start_time(self.pid) == self.started
    }

    fn describe(self) -> String {
        format!(
            "{} ({})",
            self.pid,
            process_name(self.pid).unwrap_or_else(|| "?".into())
        )
    }
}

/// The container the sessions run in: its init and the init's parent (a
/// runtime's per-container shim or monitor).
struct Container<'a> {
    id: &'a str,
    init: i32,
    parent: Option<i32>,
}

/// `n` exec sessions in container `cid`, with memory read while all are
/// open; they are ended again also when that fails.
pub async fn bench_exec_sessions(
    b: &mut TargetBench<'_>,
    client: &SpdyClient,
    cid: &str,
    n: usize,
    daemon: Option<i32>,
    report: &mut Report,
) -> Result<(), BenchError> {
    let resp = b.container_status(cid, true).await?;
    let init = b.running_init(&resp, cid)?;
    let c = Container {
        id: cid,
        init,
        parent: ppid_of(init).filter(|p| *p > 1),
    };
    record_daemon_memory(report, &b.name, "0 exec sessions", daemon);
    add_rss(
        report,
        &b.name,
        "container's parent, 0 exec sessions,",
        c.parent,
    );
    eprintln!("[{}] streaming: opening {n} exec sessions", b.name);
    let mut open = Vec::with_capacity(n);
    let measured = match open_sessions(b, client, cid, n, &mut open).await {
        Ok(()) => measure_sessions(&b.name, report, daemon, &c, n),
        Err(e) => Err(e),
    };
    eprintln!(
        "[{}] streaming: ending {} exec sessions",
        b.name,
        open.len()
    );
    let ended = end_sessions(&b.name, client, open).await;
    let per_session = measured.as_ref().cloned().unwrap_or_default();
    let gone = wait_gone(&b.name, &c, &per_session).await;
    if ended.is_ok() && gone.is_ok() {
        record_daemon_memory(report, &b.name, &format!("{n} exec sessions ended"), daemon);
    }
    measured?;
    ended?;
    gone
}

/// Starts `n` sessions, adding each to `open` once it printed `ready`.
async fn open_sessions(
    b: &mut TargetBench<'_>,
    client: &SpdyClient,
    cid: &str,
    n: usize,
    open: &mut Vec<Session>,
) -> Result<(), BenchError> {
    for i in 0..n {
        let (url, _) = b.exec(cid, &SESSION_CMD, true).await?;
        open.push(client.open_session(&url, i).await?);
    }
    Ok(())
}

/// Ends every session (all stdins closed first); each must report exit
/// code 0. The last failure is the result.
async fn end_sessions(
    target: &str,
    client: &SpdyClient,
    mut open: Vec<Session>,
) -> Result<(), BenchError> {
    for s in &mut open {
        s.close_stdin();
    }
    let mut result = Ok(());
    for s in open {
        match s.end(client).await {
            Ok(r) if r.exit_code == Some(0) => {}
            Ok(r) => {
                result = Err(BenchError::Unexpected {
                    target: target.to_string(),
                    call: "spdy-client exec",
                    what: format!(
                        "`cat` ended with exit code {:?} (error stream {:?}, message {:?}), not 0",
                        r.exit_code, r.error, r.message
                    ),
                })
            }
            Err(e) => result = Err(e),
        }
    }
    result
}

/// The memory figures with `n` sessions open: the daemon's, the
/// container's parent's, each session's runtime processes' and the sum.
/// Returns the per-session processes.
fn measure_sessions(
    target: &str,
    report: &mut Report,
    daemon: Option<i32>,
    c: &Container<'_>,
    n: usize,
) -> Result<Vec<Proc>, BenchError> {
    let execd = exec_processes(c.init);
    if execd.len() != n {
        return Err(BenchError::Unexpected {
            target: target.to_string(),
            call: "Exec",
            what: format!(
                "{n} sessions printed `ready` but {} exec'd processes run in container {}",
                execd.len(),
                c.id
            ),
        });
    }
    record_daemon_memory(report, target, &format!("{n} exec sessions"), daemon);
    let with = format!("container's parent, {n} exec sessions,");
    add_rss(report, target, &with, c.parent);
    let mut sessions = SessionMemory::default();
    for e in &execd {
        sessions.add(session_processes(*e, c.parent, daemon));
    }
    let total = [daemon, c.parent]
        .iter()
        .flatten()
        .filter_map(|p| rss_kib(*p))
        .chain(sessions.rss.iter().copied())
        .fold(0.0, |a, b| a + b);
    let what = format!("runtime processes, {n} exec sessions, RSS");
    report.add(
        target,
        "per exec session: runtime processes RSS",
        "KiB",
        sessions.rss,
    );
    report.add(target, &what, "KiB", vec![total]);
    report
        .notes
        .push(session_note(target, n, c, &execd, &sessions.names));
    Ok(sessions.procs)
}

/// The runtime's processes of each session.
#[derive(Default)]
struct SessionMemory {
    /// Their summed RSS per session.
    rss: Vec<f64>,
    /// Their names per session ("none" without), each list once.
    names: Vec<String>,
    procs: Vec<Proc>,
}

impl SessionMemory {
    fn add(&mut self, procs: Vec<i32>) {
        self.rss.push(
            procs
                .iter()
                .filter_map(|p| rss_kib(*p))
                .fold(0.0, |a, b| a + b),
        );
        let names: Vec<String> = procs
            .iter()
            .map(|p| process_name(*p).unwrap_or_else(|| "?".into()))
            .collect();
        let names = if names.is_empty() {
            "none".to_string()
        } else {
            names.join(" + ")
        };
        if !self.names.contains(&names) {
            self.names.push(names);
        }
        self.procs.extend(procs.into_iter().map(Proc::of));
    }
}

/// Who runs the exec'd processes, for the notes.
fn session_note(
    target: &str,
    n: usize,
    c: &Container<'_>,
    execd: &[i32],
    names: &[String],
) -> String {
    let name = |p: Option<i32>| p.and_then(process_name).unwrap_or_else(|| "?".to_string());
    let mut parents: Vec<String> = Vec::new();
    for e in execd {
        let p = name(ppid_of(*e));
        if !parents.contains(&p) {
            parents.push(p);
        }
    }
    format!(
        "{target}: with {n} exec sessions the container's parent is {}, the exec'd processes' \
         parent {}; the runtime's processes per session besides the exec'd one: {} (runtime \
         processes: the daemon, the container's parent and the per-session ones)",
        name(c.parent),
        parents.join("/"),
        names.join("; ")
    )
}

/// The processes exec'd into the container of `init`: in its PID
/// namespace, with a parent outside it.
fn exec_processes(init: i32) -> Vec<i32> {
    let Some(ns) = pid_namespace(init) else {
        return Vec::new();
    };
    all_pids()
        .into_iter()
        .filter(|p| *p != init && pid_namespace(*p) == Some(ns))
        .filter(|p| ppid_of(*p).is_some_and(|pp| pid_namespace(pp) != Some(ns)))
        .collect()
}

/// The runtime's processes of one session: the exec'd process's parents
/// up to the container's parent, the daemon or init (none of them).
fn session_processes(execd: i32, parent: Option<i32>, daemon: Option<i32>) -> Vec<i32> {
    let mut procs = Vec::new();
    let mut p = ppid_of(execd);
    while let Some(pid) = p {
        if pid <= 1 || Some(pid) == parent || Some(pid) == daemon || procs.len() == MAX_CHAIN {
            break;
        }
        procs.push(pid);
        p = ppid_of(pid);
    }
    procs
}

/// Waits until neither an exec'd process nor a per-session process is
/// left; an error naming them after GONE_LIMIT.
async fn wait_gone(
    target: &str,
    c: &Container<'_>,
    per_session: &[Proc],
) -> Result<(), BenchError> {
    let start = Instant::now();
    loop {
        let execd: Vec<Proc> = exec_processes(c.init).into_iter().map(Proc::of).collect();
        let left: Vec<Proc> = execd
            .into_iter()
            .chain(per_session.iter().copied().filter(|p| p.alive()))
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        if start.elapsed() > GONE_LIMIT {
            return Err(BenchError::Unexpected {
                target: target.to_string(),
                call: "Exec",
                what: format!(
                    "{} s after the exec sessions ended these processes are left: {}",
                    GONE_LIMIT.as_secs(),
                    left.iter()
                        .map(|p| p.describe())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One RSS sample of `pid` as metric "`what` RSS" (none when unreadable).
fn add_rss(report: &mut Report, target: &str, what: &str, pid: Option<i32>) {
    let rss: Vec<f64> = pid.and_then(rss_kib).into_iter().collect();
    report.add(target, &format!("{what} RSS"), "KiB", rss);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_parents_up_to_a_stop() {
        let me = i32::try_from(std::process::id()).unwrap();
        let parent = ppid_of(me);
        // Stopping at our parent: nothing in between.
        assert!(session_processes(me, parent, None).is_empty());
        // Else the chain runs up to (not including) init.
        let chain = session_processes(me, None, None);
        assert_eq!(chain.first().copied(), parent.filter(|p| *p > 1));
        assert!(!chain.contains(&1));
    }

    #[test]
    fn a_process_is_alive_until_it_is_gone() {
        let me = i32::try_from(std::process::id()).unwrap();
        assert!(Proc::of(me).alive());
        let gone = Proc {
            pid: me,
            started: start_time(me).map(|t| t + 1),
        };
        assert!(!gone.alive());
    }
}
