//! Per-stage counters and phase timings: one place that both feeds the
//! Prometheus metrics and the throughput line each stage logs every 10 s.
//!
//! A stage records a phase with [`StageStats::phase`] (or `time`), and items
//! and events with [`StageStats::count`]; [`StageStats::report_every`] logs
//! the deltas since the last report. Metrics names:
//! `batchline_events_total{stage,event}` and
//! `batchline_phase_seconds{stage,phase}` (histogram).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

#[derive(Default, Clone)]
struct Totals {
    events: BTreeMap<&'static str, u64>,
    phases: BTreeMap<&'static str, (u64, Duration)>,
}

/// Shared, cheap-to-clone stats of one stage.
#[derive(Clone)]
pub struct StageStats {
    stage: &'static str,
    totals: Arc<Mutex<Totals>>,
    /// A reporter runs: a stage with several loops logs one line, not one
    /// per loop.
    reporting: Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for StageStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageStats")
            .field("stage", &self.stage)
            .finish()
    }
}

impl StageStats {
    pub fn new(stage: &'static str) -> Self {
        Self {
            stage,
            totals: Arc::new(Mutex::new(Totals::default())),
            reporting: Arc::default(),
        }
    }

    pub fn stage(&self) -> &'static str {
        self.stage
    }

    /// Adds `n` to the event counter `event` (received, acked, duplicates, …).
    pub fn count(&self, event: &'static str, n: u64) {
        if n == 0 {
            return;
        }
        metrics::counter!("batchline_events_total", "stage" => self.stage, "event" => event)
            .increment(n);
        if let Ok(mut t) = self.totals.lock() {
            *t.events.entry(event).or_default() += n;
        }
    }

    /// Records that `phase` took `elapsed`.
    pub fn phase(&self, phase: &'static str, elapsed: Duration) {
        metrics::histogram!("batchline_phase_seconds", "stage" => self.stage, "phase" => phase)
            .record(elapsed.as_secs_f64());
        if let Ok(mut t) = self.totals.lock() {
            let e = t.phases.entry(phase).or_default();
            e.0 += 1;
            e.1 += elapsed;
        }
    }

    /// Times an async phase.
    pub async fn time<T>(
        &self,
        phase: &'static str,
        fut: impl std::future::Future<Output = T>,
    ) -> T {
        let start = Instant::now();
        let out = fut.await;
        self.phase(phase, start.elapsed());
        out
    }

    /// Current total of one event counter.
    pub fn total(&self, event: &'static str) -> u64 {
        self.totals
            .lock()
            .map(|t| t.events.get(event).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    fn snapshot(&self) -> Totals {
        self.totals.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Logs throughput and time per phase every `every` until cancelled;
    /// returns at once when another reporter of these stats runs.
    pub async fn report_every(self, every: Duration, shutdown: CancellationToken) {
        use std::sync::atomic::Ordering;
        if self.reporting.swap(true, Ordering::AcqRel) {
            return;
        }
        self.report_loop(every, shutdown).await;
        self.reporting.store(false, Ordering::Release);
    }

    async fn report_loop(&self, every: Duration, shutdown: CancellationToken) {
        let mut last = self.snapshot();
        let mut last_at = Instant::now();
        let mut ticker = tokio::time::interval(every);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let now = self.snapshot();
            let secs = last_at.elapsed().as_secs_f64().max(1e-9);
            last_at = Instant::now();
            let mut line = String::new();
            for (event, total) in &now.events {
                let delta = total - last.events.get(event).copied().unwrap_or(0);
                line.push_str(&format!(" {event}={delta} ({:.0}/s)", delta as f64 / secs));
            }
            let mut phases = String::new();
            for (phase, (n, d)) in &now.phases {
                let (n0, d0) = last.phases.get(phase).copied().unwrap_or_default();
                let (dn, dd) = (n - n0, d.saturating_sub(d0));
                if dn > 0 {
                    phases.push_str(&format!(
                        " {phase}={:.1}ms/{dn}x ({:.0}% of wall)",
                        dd.as_secs_f64() * 1e3 / dn as f64,
                        dd.as_secs_f64() * 100.0 / secs
                    ));
                }
            }
            tracing::info!(
                stage = self.stage,
                "throughput over {secs:.0}s:{line} | phases:{phases}"
            );
            last = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_phases_accumulate() {
        let s = StageStats::new("test");
        s.count("received", 3);
        s.count("received", 2);
        s.phase("claim", Duration::from_millis(5));
        assert_eq!(s.total("received"), 5);
        assert_eq!(s.total("acked"), 0);
        let snap = s.snapshot();
        assert_eq!(snap.phases["claim"].0, 1);
    }
}
