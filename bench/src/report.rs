//! The results: samples per metric and target, and the table printed at the
//! end with medians, slow ends and ratios.

use std::fmt::Write as _;
use std::time::Duration;

use crate::args::Target;

/// One measured quantity and its samples per target.
#[derive(Debug, Default)]
pub struct Metric {
    pub name: String,
    pub unit: &'static str,
    /// (target, samples) in the order the targets ran.
    pub values: Vec<(String, Vec<f64>)>,
}

/// A metric that is a variant of another (the userns pass of the plain
/// one): under it, each target's ratio of the two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub metric: String,
    pub base: String,
    /// The base's short name in the ratio rows ("peapod/plain").
    pub tag: &'static str,
}

/// Every metric in the order first measured, and the notes.
#[derive(Debug, Default)]
pub struct Report {
    pub metrics: Vec<Metric>,
    /// Printed under the table (pull sizes, cache-hit warnings).
    pub notes: Vec<String>,
    pub relations: Vec<Relation>,
}

impl Report {
    pub fn add(&mut self, target: &str, name: &str, unit: &'static str, samples: Vec<f64>) {
        let idx = match self.metrics.iter().position(|m| m.name == name) {
            Some(i) => i,
            None => {
                self.metrics.push(Metric {
                    name: name.to_string(),
                    unit,
                    values: Vec::new(),
                });
                self.metrics.len() - 1
            }
        };
        self.metrics[idx].values.push((target.to_string(), samples));
    }

    pub fn add_durations(&mut self, target: &str, name: &str, d: &[Duration]) {
        let ms = d.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        self.add(target, name, "ms", ms);
    }

    /// Metric `metric` is a variant of `base`, called `tag` in its ratio
    /// rows; once is enough (every target adds it again).
    pub fn relate(&mut self, metric: &str, base: &str, tag: &'static str) {
        let rel = Relation {
            metric: metric.to_string(),
            base: base.to_string(),
            tag,
        };
        if !self.relations.contains(&rel) {
            self.relations.push(rel);
        }
    }
}

/// (median, p90) by nearest rank.
pub fn stats(samples: &[f64]) -> Option<(f64, f64)> {
    if samples.is_empty() {
        return None;
    }
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    let rank = (0.9 * n as f64).ceil() as usize;
    Some((median, s[rank.clamp(1, n) - 1]))
}

/// (median, tail): the tail is the p90 for costs (ms, KiB) and the p10 for
/// rates (MB/s), so that column is always the slow or expensive end.
fn summary(samples: &[f64], unit: &str) -> Option<(f64, f64)> {
    if unit == "MB/s" {
        let neg: Vec<f64> = samples.iter().map(|v| -v).collect();
        stats(&neg).map(|(m, t)| (-m, -t))
    } else {
        stats(samples)
    }
}

fn fmt_value(v: f64, unit: &str) -> String {
    match unit {
        "ms" => format!("{v:.3}"),
        "MB/s" => format!("{v:.1}"),
        _ => format!("{v:.0}"),
    }
}

impl Metric {
    /// The label of its value rows: name and unit.
    fn label(&self) -> String {
        format!("{} ({})", self.name, self.unit)
    }

    /// The samples of `target` (none when it did not measure this metric).
    fn samples_of(&self, target: &str) -> &[f64] {
        self.values
            .iter()
            .find(|(n, _)| n == target)
            .map(|(_, s)| s.as_slice())
            .unwrap_or(&[])
    }

    /// The peers that measured this metric.
    fn measuring<'a>(&'a self, peers: &'a [String]) -> impl Iterator<Item = &'a str> + 'a {
        peers
            .iter()
            .map(String::as_str)
            .filter(|p| !self.samples_of(p).is_empty())
    }
}

/// The narrowest label column: what the longest labels of the workloads
/// without --userns need.
const LABEL_WIDTH: usize = 48;

/// The table being written: its text and the width of its label column.
struct Table {
    out: String,
    width: usize,
}

impl Table {
    /// A label column as wide as the longest label (the userns metrics are
    /// longer than the rest), at least LABEL_WIDTH.
    fn new(report: &Report) -> Table {
        let longest = report.metrics.iter().map(|m| m.label().len()).max();
        Table {
            out: String::new(),
            width: longest.unwrap_or(0).max(LABEL_WIDTH),
        }
    }

    /// One row; `n` (the sample count) on value rows, not on ratio rows.
    fn row(&mut self, label: &str, target: &str, median: &str, p90: &str, n: Option<&str>) {
        let _ = write!(
            self.out,
            "{label:<w$} {target:<20} {median:>12} {p90:>12}",
            w = self.width
        );
        if let Some(n) = n {
            let _ = write!(self.out, " {n:>6}");
        }
        self.out.push('\n');
    }
}

/// The table: one row per metric and CRI target (also when it has no
/// samples), a row per pull peer that has samples, and the ratio rows.
pub fn render(report: &Report, targets: &[Target], peers: &[String]) -> String {
    let subject = targets
        .iter()
        .find(|t| t.name == "peapod")
        .or(targets.first())
        .map(|t| t.name.as_str());
    let baseline = targets
        .iter()
        .find(|t| t.name == "containerd")
        .or(targets.last())
        .map(|t| t.name.as_str());
    let mut table = Table::new(report);
    table.row("metric", "target", "median", "p90", Some("n"));
    for m in &report.metrics {
        render_rows(&mut table, m, targets, peers);
        if let Some(subject) = subject {
            render_ratios(&mut table, m, subject, baseline, peers);
        }
        render_relations(&mut table, report, m, targets);
    }
    let mut out = table.out;
    for note in &report.notes {
        let _ = writeln!(out, "note: {note}");
    }
    out
}

/// A metric's rows: every CRI target, then the peers that measured it.
fn render_rows(table: &mut Table, m: &Metric, targets: &[Target], peers: &[String]) {
    let label = m.label();
    let rows = targets
        .iter()
        .map(|t| t.name.as_str())
        .chain(m.measuring(peers));
    for name in rows {
        let samples = m.samples_of(name);
        let (med, p90) = match summary(samples, m.unit) {
            Some((med, p90)) => (fmt_value(med, m.unit), fmt_value(p90, m.unit)),
            None => ("-".to_string(), "-".to_string()),
        };
        let n = samples.len().to_string();
        table.row(&label, name, &med, &p90, Some(&n));
    }
}

/// A metric's ratio rows, `subject` over each baseline. The main baseline
/// always gets a row (as "-" when it has no samples); a peer only where it
/// measured this metric.
fn render_ratios(
    table: &mut Table,
    m: &Metric,
    subject: &str,
    baseline: Option<&str>,
    peers: &[String],
) {
    let baselines = baseline
        .into_iter()
        .chain(m.measuring(peers))
        .filter(|b| *b != subject);
    let sv = summary(m.samples_of(subject), m.unit);
    for b in baselines {
        let bv = summary(m.samples_of(b), m.unit);
        table.row(
            &m.name,
            &format!("{subject}/{b}"),
            &ratio(sv.map(|x| x.0), bv.map(|x| x.0)),
            &ratio(sv.map(|x| x.1), bv.map(|x| x.1)),
            None,
        );
    }
}

/// The rows of `m` over the metrics it is a variant of: per target that
/// measured both, "TARGET/TAG" with the ratios of the medians and of the
/// slow ends.
fn render_relations(table: &mut Table, report: &Report, m: &Metric, targets: &[Target]) {
    for rel in report.relations.iter().filter(|r| r.metric == m.name) {
        let Some(base) = report.metrics.iter().find(|b| b.name == rel.base) else {
            continue;
        };
        for t in targets.iter().map(|t| t.name.as_str()) {
            let (Some(v), Some(bv)) = (
                summary(m.samples_of(t), m.unit),
                summary(base.samples_of(t), base.unit),
            ) else {
                continue;
            };
            table.row(
                &m.name,
                &format!("{t}/{}", rel.tag),
                &ratio(Some(v.0), Some(bv.0)),
                &ratio(Some(v.1), Some(bv.1)),
                None,
            );
        }
    }
}

/// `a / b` to three places, or "-" without both (or with a zero `b`).
fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.3}", a / b),
        _ => "-".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::parse_endpoint;
    use crate::pull::SKOPEO_UMOCI;

    #[test]
    fn median_and_p90_by_nearest_rank() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(stats(&v), Some((5.5, 9.0)));
        assert_eq!(stats(&[3.0]), Some((3.0, 3.0)));
        assert_eq!(stats(&[]), None);
    }

    #[test]
    fn rates_report_their_slow_end_and_peers_get_ratios() {
        let mut r = Report::default();
        let rates: Vec<f64> = (1..=10).map(f64::from).collect();
        // The rate of the p90 run by duration: the second slowest of ten.
        assert_eq!(summary(&rates, "MB/s"), Some((5.5, 2.0)));
        r.add("containerd", "pull x throughput", "MB/s", vec![10.0]);
        r.add(SKOPEO_UMOCI, "pull x throughput", "MB/s", vec![5.0]);
        r.add("containerd", "host-net RunPodSandbox", "ms", vec![1.0]);
        let targets = [parse_endpoint("containerd".into(), "unix:///c.sock").unwrap()];
        let out = render(&r, &targets, &[SKOPEO_UMOCI.to_string()]);
        let ratio = out
            .lines()
            .find(|l| l.contains("containerd/skopeo+umoci"))
            .unwrap();
        assert!(ratio.starts_with("pull x throughput"), "{out}");
        assert!(ratio.ends_with("2.000        2.000"), "{out}");
        // No peer row where the peer measured nothing.
        assert_eq!(
            out.lines().filter(|l| l.contains("skopeo+umoci")).count(),
            2,
            "{out}"
        );
    }

    #[test]
    fn the_label_column_fits_the_longest_label() {
        let targets = [parse_endpoint("peapod".into(), "unix:///p.sock").unwrap()];
        let mut r = Report::default();
        r.add(
            "peapod",
            "host-net container stop: init exit to reply",
            "ms",
            vec![1.0],
        );
        // 48 wide, as the table always was.
        let header = format!(
            "{:<48} {:<20} {:>12} {:>12} {:>6}",
            "metric", "target", "median", "p90", "n"
        );
        assert_eq!(
            render(&r, &targets, &[]).lines().next(),
            Some(header.as_str())
        );
        let long = "pod-net userns container stop: init exit to reply";
        r.add("peapod", long, "ms", vec![1.0]);
        let out = render(&r, &targets, &[]);
        let value = out.lines().find(|l| l.starts_with(long)).unwrap();
        assert!(value.starts_with(&format!("{long} (ms) peapod ")), "{out}");
        // Every row's target column starts at the same place.
        let at = |l: &str| l.find("peapod").unwrap();
        assert!(out.lines().skip(1).all(|l| at(l) == at(value)), "{out}");
    }

    #[test]
    fn a_variant_gets_ratios_to_its_base_where_both_were_measured() {
        let mut r = Report::default();
        for (t, plain, userns) in [("peapod", 2.0, 3.0), ("containerd", 4.0, f64::NAN)] {
            r.add(t, "pod-net container X", "ms", vec![plain]);
            if !userns.is_nan() {
                r.add(t, "pod-net userns container X", "ms", vec![userns]);
            }
            r.relate("pod-net userns container X", "pod-net container X", "plain");
        }
        assert_eq!(r.relations.len(), 1);
        let targets = [
            parse_endpoint("peapod".into(), "unix:///p.sock").unwrap(),
            parse_endpoint("containerd".into(), "unix:///c.sock").unwrap(),
        ];
        let out = render(&r, &targets, &[]);
        let rel: Vec<&str> = out.lines().filter(|l| l.contains("/plain")).collect();
        assert_eq!(rel.len(), 1, "{out}");
        assert!(rel[0].starts_with("pod-net userns container X"), "{out}");
        assert!(rel[0].contains("peapod/plain"), "{out}");
        assert!(rel[0].ends_with("1.500        1.500"), "{out}");
        // The target that did not run the variant has an empty row, no ratio.
        assert!(
            out.lines()
                .any(|l| l.starts_with("pod-net userns container X (ms)")
                    && l.contains("containerd")
                    && l.ends_with("-            -      0")),
            "{out}"
        );
    }
}
