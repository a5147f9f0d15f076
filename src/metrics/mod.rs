//! peapod's own metrics, in Prometheus' text format: the CRI calls
//! ([`GrpcMetricsLayer`] sees every one), image pulls, container exits,
//! the daemon's starts, the open streaming sessions, and the pods and
//! containers by state (counted from the registries at each scrape, so
//! they cannot drift from what the daemon reports). The metrics live in
//! one process-wide registry, updated whether or not anyone scrapes it;
//! [`serve`] listens only when `metrics.address` is set.
//!
//! Unrelated to the CRI's own metric RPCs (ListPodSandboxMetrics), which
//! report containers' resource usage to kubelet.

mod endpoint;
mod grpc;

use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, SystemTime};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

pub use endpoint::{serve, Format};
pub use grpc::GrpcMetricsLayer;

/// Every metric's name starts with `peapod_`.
const PREFIX: &str = "peapod";

/// Upper bounds of the CRI calls' latency buckets, in seconds.
const RPC_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    120.0,
];
/// Upper bounds of the pulls' duration buckets, in seconds.
const PULL_BUCKETS: [f64; 12] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0,
];

/// The kinds of streaming session, each reported even when none is open.
pub const SESSION_KINDS: [&str; 3] = ["exec", "attach", "portforward"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    method: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

struct Metrics {
    registry: Registry,
    rpc_requests: Family<MethodLabels, Counter>,
    rpc_errors: Family<ErrorLabels, Counter>,
    rpc_duration: HistogramFamily<MethodLabels>,
    pulls: Counter,
    pull_failures: Counter,
    pull_bytes: Counter,
    pull_duration: Histogram,
    container_exits: Family<ReasonLabels, Counter>,
    streaming_sessions: Family<KindLabels, Gauge>,
    daemon_starts: Counter,
    start_time: Gauge<f64, std::sync::atomic::AtomicU64>,
    census: Arc<CensusCollector>,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

fn metrics() -> &'static Metrics {
    METRICS.get_or_init(Metrics::new)
}

impl Metrics {
    fn new() -> Metrics {
        let m = Metrics {
            registry: Registry::with_prefix(PREFIX),
            rpc_requests: Family::default(),
            rpc_errors: Family::default(),
            rpc_duration: Family::new_with_constructor(|| Histogram::new(RPC_BUCKETS)),
            pulls: Counter::default(),
            pull_failures: Counter::default(),
            pull_bytes: Counter::default(),
            pull_duration: Histogram::new(PULL_BUCKETS),
            container_exits: Family::default(),
            streaming_sessions: Family::default(),
            daemon_starts: Counter::default(),
            start_time: Gauge::default(),
            census: Arc::new(CensusCollector::default()),
        };
        for kind in SESSION_KINDS {
            let _ = m.streaming_sessions.get_or_create(&KindLabels { kind });
        }
        m.register()
    }

    fn register(mut self) -> Metrics {
        let r = &mut self.registry;
        r.register(
            "grpc_requests",
            "CRI calls received, by gRPC method",
            self.rpc_requests.clone(),
        );
        r.register(
            "grpc_errors",
            "CRI calls that ended with a gRPC status other than OK, by method and code",
            self.rpc_errors.clone(),
        );
        r.register_with_unit(
            "grpc_request_duration",
            "Time from a CRI call's arrival to its status (a stream's end), by method",
            Unit::Seconds,
            self.rpc_duration.clone(),
        );
        r.register(
            "image_pulls",
            "Image pulls finished, failed ones included",
            self.pulls.clone(),
        );
        r.register(
            "image_pull_failures",
            "Image pulls that failed",
            self.pull_failures.clone(),
        );
        r.register_with_unit(
            "image_pull_received",
            "Bytes of manifests, configs and layers received from registries",
            Unit::Bytes,
            self.pull_bytes.clone(),
        );
        r.register_with_unit(
            "image_pull_duration",
            "Time image pulls took, failed ones included",
            Unit::Seconds,
            self.pull_duration.clone(),
        );
        r.register(
            "container_exits",
            "Container exits their monitors reported, by reason: Completed, Error, \
             OOMKilled, or Lost when the monitor ended without an exit status",
            self.container_exits.clone(),
        );
        r.register(
            "streaming_sessions",
            "Exec, attach and port-forward sessions open on the streaming server",
            self.streaming_sessions.clone(),
        );
        r.register(
            "daemon_starts",
            "Starts of the daemon on this root directory, this one included \
             (kept in the metadata store; restarts are this minus one)",
            self.daemon_starts.clone(),
        );
        r.register_with_unit(
            "daemon_start_time",
            "When this daemon process started, in seconds since the Unix epoch",
            Unit::Seconds,
            self.start_time.clone(),
        );
        r.register_collector(Box::new(self.census.clone()));
        self
    }
}

/// A CRI call arrived.
pub fn rpc_started(method: &str) {
    let labels = MethodLabels {
        method: method.to_string(),
    };
    metrics().rpc_requests.get_or_create(&labels).inc();
}

/// A CRI call ended with `code` (gRPC's name for it, `OK` included) after
/// `elapsed`.
pub fn rpc_finished(method: &str, code: tonic::Code, elapsed: Duration) {
    let m = metrics();
    let labels = MethodLabels {
        method: method.to_string(),
    };
    m.rpc_duration
        .get_or_create(&labels)
        .observe(elapsed.as_secs_f64());
    if code != tonic::Code::Ok {
        let labels = ErrorLabels {
            method: labels.method,
            code: format!("{code:?}"),
        };
        m.rpc_errors.get_or_create(&labels).inc();
    }
}

/// Bytes a pull received from a registry.
pub fn image_pull_received(bytes: u64) {
    metrics().pull_bytes.inc_by(bytes);
}

/// A pull ended, successfully or not, after `elapsed`.
pub fn image_pull_finished(elapsed: Duration, succeeded: bool) {
    let m = metrics();
    m.pulls.inc();
    if !succeeded {
        m.pull_failures.inc();
    }
    m.pull_duration.observe(elapsed.as_secs_f64());
}

/// A container's monitor reported its exit: `reason` is the container's
/// (Completed, Error, OOMKilled) or `Lost`.
pub fn container_exited(reason: &str) {
    let labels = ReasonLabels {
        reason: reason.to_string(),
    };
    metrics().container_exits.get_or_create(&labels).inc();
}

/// The daemon started, for the `starts`th time on its store.
pub fn daemon_started(starts: u64) {
    let m = metrics();
    m.daemon_starts
        .inc_by(starts.saturating_sub(m.daemon_starts.get()));
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    m.start_time.set(now.as_secs_f64());
}

/// An open streaming session of `kind` (one of [`SESSION_KINDS`]), counted
/// until dropped.
pub struct OpenSession {
    gauge: Gauge,
}

pub fn streaming_session(kind: &'static str) -> OpenSession {
    let gauge = metrics()
        .streaming_sessions
        .get_or_create(&KindLabels { kind })
        .clone();
    gauge.inc();
    OpenSession { gauge }
}

impl Drop for OpenSession {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// How many pods and containers are in each state, at one moment.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Census {
    pub pods: Vec<(String, u64)>,
    pub containers: Vec<(String, u64)>,
}

type CensusSource = Box<dyn Fn() -> Census + Send + Sync>;

/// Reports the pods and containers by state from the daemon's registries
/// at each scrape (nothing when no source is set, as in a unit test).
#[derive(Default)]
struct CensusCollector {
    source: RwLock<Option<CensusSource>>,
}

impl std::fmt::Debug for CensusCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CensusCollector").finish()
    }
}

/// Where the scrape counts pods and containers; set once the daemon has
/// recovered them.
pub fn count_objects_with(source: impl Fn() -> Census + Send + Sync + 'static) {
    let census = &metrics().census;
    *census.source.write().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(source));
}

impl Collector for CensusCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let source = self.source.read().unwrap_or_else(|e| e.into_inner());
        let Some(source) = source.as_ref() else {
            return Ok(());
        };
        let census = source();
        encode_by_state(
            &mut encoder,
            "pods",
            "Pod sandboxes known to the daemon, by state.",
            &census.pods,
        )?;
        encode_by_state(
            &mut encoder,
            "containers",
            "Containers known to the daemon, by state.",
            &census.containers,
        )
    }
}

fn encode_by_state(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    counts: &[(String, u64)],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (state, n) in counts {
        let labels = [("state", state.as_str())];
        let gauge = ConstGauge::new(i64::try_from(*n).unwrap_or(i64::MAX));
        gauge.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Everything, in `format`.
pub fn encode(format: Format) -> String {
    let mut text = String::new();
    let registry = &metrics().registry;
    let result = match format {
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut text, registry),
        Format::Prometheus => {
            prometheus_client::encoding::prometheus_text::encode(&mut text, registry)
        }
    };
    // Writing to a String cannot fail.
    result.expect("encode metrics");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn calls_pulls_and_sessions_show_in_both_formats() {
        rpc_started("UnitTestMethod");
        rpc_finished(
            "UnitTestMethod",
            tonic::Code::NotFound,
            Duration::from_millis(3),
        );
        image_pull_received(10);
        let session = streaming_session("attach");
        let text = encode(Format::Prometheus);
        let series = "peapod_grpc_requests_total{method=\"UnitTestMethod\"}";
        assert_eq!(line_value(&text, series), Some(1.0), "{text}");
        let series = "peapod_grpc_errors_total{method=\"UnitTestMethod\",code=\"NotFound\"}";
        assert_eq!(line_value(&text, series), Some(1.0), "{text}");
        let bucket = |le| {
            format!("peapod_grpc_request_duration_seconds_bucket{{method=\"UnitTestMethod\",le=\"{le}\"}}")
        };
        assert_eq!(line_value(&text, &bucket("0.001")), Some(0.0), "{text}");
        assert_eq!(line_value(&text, &bucket("0.005")), Some(1.0), "{text}");
        assert!(text.contains("# TYPE peapod_image_pull_received_bytes_total counter"));
        assert!(
            text.contains("peapod_streaming_sessions{kind=\"exec\"} 0"),
            "{text}"
        );
        assert!(line_value(&text, "peapod_streaming_sessions{kind=\"attach\"}") >= Some(1.0));
        drop(session);
        let open = encode(Format::OpenMetrics);
        assert!(open.ends_with("# EOF\n"), "{open}");
    }

    #[test]
    fn pods_and_containers_come_from_the_census() {
        count_objects_with(|| Census {
            pods: vec![("ready".into(), 2), ("notready".into(), 0)],
            containers: vec![("running".into(), 3)],
        });
        let text = encode(Format::Prometheus);
        assert!(text.contains("# TYPE peapod_pods gauge"), "{text}");
        assert_eq!(line_value(&text, "peapod_pods{state=\"ready\"}"), Some(2.0));
        assert_eq!(
            line_value(&text, "peapod_pods{state=\"notready\"}"),
            Some(0.0)
        );
        assert_eq!(
            line_value(&text, "peapod_containers{state=\"running\"}"),
            Some(3.0)
        );
    }
}
