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

/// Every metric in the order first measured, and the notes.
#[derive(Debug, Default)]
pub struct Report {
    pub metrics: Vec<Metric>,
    /// Printed under the table (pull sizes, cache-hit warnings).
    pub notes: Vec<String>,
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
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<48} {:<20} {:>12} {:>12} {:>6}",
        "metric", "target", "median", "p90", "n"
    );
    for m in &report.metrics {
        render_rows(&mut out, m, targets, peers);
        if let Some(subject) = subject {
            render_ratios(&mut out, m, subject, baseline, peers);
        }
    }
    for note in &report.notes {
        let _ = writeln!(out, "note: {note}");
    }
    out
}

/// A metric's rows: every CRI target, then the peers that measured it.
fn render_rows(out: &mut String, m: &Metric, targets: &[Target], peers: &[String]) {
    let label = format!("{} ({})", m.name, m.unit);
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
        let _ = writeln!(
            out,
            "{:<48} {:<20} {:>12} {:>12} {:>6}",
            label,
            name,
            med,
            p90,
            samples.len()
        );
    }
}

/// A metric's ratio rows, `subject` over each baseline. The main baseline
/// always gets a row (as "-" when it has no samples); a peer only where it
/// measured this metric.
fn render_ratios(
    out: &mut String,
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
        let _ = writeln!(
            out,
            "{:<48} {:<20} {:>12} {:>12}",
            m.name,
            format!("{subject}/{b}"),
            ratio(sv.map(|x| x.0), bv.map(|x| x.0)),
            ratio(sv.map(|x| x.1), bv.map(|x| x.1)),
        );
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
}
