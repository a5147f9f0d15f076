//! Exec round trips: from just before the Exec call to the first byte of
//! `echo hi` on the client's stdout, and to the client's exit with the
//! remote exit status read.

use std::time::{Duration, Instant};

use super::client::{ExecRun, SpdyClient};
use super::streaming_metric;
use crate::args::NetMode;
use crate::cri::runtime::TargetBench;
use crate::error::BenchError;
use crate::report::Report;

const ECHO: [&str; 2] = ["echo", "hi"];
const ECHOED: &[u8] = b"hi\n";

/// One timed round trip, each from just before the Exec call.
struct ExecTimes {
    call: Duration,
    first_byte: Duration,
    exit: Duration,
}

#[derive(Default)]
struct ExecSamples {
    call: Vec<Duration>,
    first_byte: Vec<Duration>,
    exit: Vec<Duration>,
}

impl ExecSamples {
    fn push(&mut self, t: ExecTimes) {
        self.call.push(t.call);
        self.first_byte.push(t.first_byte);
        self.exit.push(t.exit);
    }

    fn report(&self, report: &mut Report, target: &str, mode: NetMode) {
        let m = |what| streaming_metric(mode, what);
        report.add_durations(target, &m("exec: Exec call"), &self.call);
        report.add_durations(target, &m("exec: to first stdout byte"), &self.first_byte);
        report.add_durations(target, &m("exec: to client exit"), &self.exit);
    }
}

/// A warm-up and then `runs` timed round trips in container `cid`.
pub async fn bench_exec_round_trips(
    b: &mut TargetBench<'_>,
    client: &SpdyClient,
    cid: &str,
    runs: usize,
    mode: NetMode,
    report: &mut Report,
) -> Result<(), BenchError> {
    eprintln!(
        "[{}] {} streaming: warm-up, then {runs} exec round trips of `echo hi`",
        b.name,
        mode.label()
    );
    exec_round_trip(b, client, cid).await?;
    let mut samples = ExecSamples::default();
    for _ in 0..runs {
        samples.push(exec_round_trip(b, client, cid).await?);
    }
    samples.report(report, &b.name, mode);
    Ok(())
}

/// Exec of `echo hi` (stdout only), then `spdy-client exec URL`; the
/// output must be `hi\n` and the exit code 0.
async fn exec_round_trip(
    b: &mut TargetBench<'_>,
    client: &SpdyClient,
    cid: &str,
) -> Result<ExecTimes, BenchError> {
    let t0 = Instant::now();
    let (url, call) = b.exec(cid, &ECHO, false).await?;
    let run = client.exec(&url).await?;
    let first = check_echo(&b.name, &run)?;
    Ok(ExecTimes {
        call,
        first_byte: first.saturating_duration_since(t0),
        exit: run.exited.saturating_duration_since(t0),
    })
}

/// The instant of the first byte of a run that printed `hi\n` and
/// reported exit code 0.
fn check_echo(target: &str, run: &ExecRun) -> Result<Instant, BenchError> {
    let r = &run.result;
    match run.first_byte {
        Some(first) if run.stdout == ECHOED && r.exit_code == Some(0) => Ok(first),
        _ => Err(BenchError::Unexpected {
            target: target.to_string(),
            call: "spdy-client exec",
            what: format!(
                "`echo hi` printed {:?} with exit code {:?} (error stream {:?}, message {:?}); \
                 expected \"hi\\n\" and 0",
                String::from_utf8_lossy(&run.stdout),
                r.exit_code,
                r.error,
                r.message
            ),
        }),
    }
}
