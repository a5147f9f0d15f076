//! A running pull's progress: bytes received, logged at info every few
//! seconds (with the rate over the last interval) so that an operator
//! watching a slow pull sees it move, or sees it stuck. A pull stuck for
//! longer than `images.pull_progress_timeout_secs` is cancelled by the
//! registry client's read timeout, not here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::info;

/// What one pull has received so far.
#[derive(Debug)]
pub(super) struct PullProgress {
    image: String,
    /// Bytes of the blobs it is to download (those not stored yet), as far
    /// as the manifest and config have told.
    expected: AtomicU64,
    received: AtomicU64,
    started: Instant,
}

impl PullProgress {
    pub(super) fn new(image: String) -> Arc<PullProgress> {
        Arc::new(PullProgress {
            image,
            expected: AtomicU64::new(0),
            received: AtomicU64::new(0),
            started: Instant::now(),
        })
    }

    /// Adds blobs to download.
    pub(super) fn expect(&self, bytes: u64) {
        self.expected.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(super) fn add(&self, bytes: usize) {
        self.received.fetch_add(bytes as u64, Ordering::Relaxed);
        crate::metrics::image_pull_received(bytes as u64);
    }

    pub(super) fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

/// Logs `progress` every `interval` until dropped.
pub(super) struct ProgressLog {
    task: tokio::task::JoinHandle<()>,
}

impl ProgressLog {
    pub(super) fn start(progress: Arc<PullProgress>, interval: Duration) -> ProgressLog {
        let task = tokio::spawn(async move {
            let mut ticks =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            let mut last = 0;
            loop {
                ticks.tick().await;
                let now = progress.received();
                log_progress(&progress, now - last, interval);
                last = now;
            }
        });
        ProgressLog { task }
    }
}

impl Drop for ProgressLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn log_progress(p: &PullProgress, recent: u64, interval: Duration) {
    let received = p.received();
    let expected = p.expected.load(Ordering::Relaxed);
    let rate = (recent as f64 / interval.as_secs_f64()) as u64;
    info!(
        image = %p.image,
        received_bytes = received,
        expected_bytes = expected,
        bytes_per_second = rate,
        elapsed = ?p.started.elapsed(),
        "pulling: {} of {} received, {}/s",
        human_bytes(received),
        human_bytes(expected),
        human_bytes(rate),
    );
}

/// `1.5 MiB`, `300 B`.
pub(super) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 << 20), "5.0 MiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
