//! How long a submission will take, said before it is made (`batchline
//! submit`, the console's form and `POST /api/batches`): its runs at the
//! executor seconds per run the store measured for the same workload
//! snapshot — or, before any executor ran it, at a rate calibrated here
//! on a few hundred runs — spread over the pool's executor threads at the
//! fair share the batches would get beside the queue as it is now
//! ([`store::queue::fraction_with`]).
//!
//! It is an estimate of the queue *now*: batches that finish give their
//! share to the others, new ones take part of it. Over
//! [`CONFIRM_OVER_S`] the callers ask before submitting.

use std::time::{Duration, Instant};

use serde::Serialize;
use store::prelude::Scheduling;
use store::queue::{self, QueueRow, QueueView};
use store::{Share, Uuid};
use workload::{Workload, WorkloadSpec};

use crate::executor::simulate;
use crate::submit::SubmitRequest;
use crate::{Error, Result};

/// A submission estimated to take longer than this (seconds) is only
/// made when the person confirms it.
pub const CONFIRM_OVER_S: f64 = 3600.0;

/// Runs timed by the calibration (after a few untimed ones): a bingo run
/// takes about 20 µs in a release build, so this is a few milliseconds.
pub const CALIBRATION_RUNS: i64 = 300;

/// Runs simulated first and not timed (caches, page faults).
const WARM_UP_RUNS: i64 = 20;

/// Where a seconds-per-run figure comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RateSource {
    /// Executors measured it on chunks of the same workload snapshot.
    Measured,
    /// Timed here, on one thread, because nothing was measured yet.
    Calibrated,
}

/// A submission's estimated run time.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Estimate {
    /// Batches in the submission.
    pub batches: usize,
    /// Runs of the whole submission.
    pub runs: i64,
    /// Executor seconds per run.
    pub seconds_per_run: f64,
    pub rate_source: RateSource,
    /// Simulation threads of the executors heard from lately.
    pub executor_threads: i64,
    /// The part of the pool the submission would get now (0 to 1): an
    /// equal part per tenant, its tenant's part split by weight.
    pub fraction: f64,
    /// Seconds at that part of the pool; `None` without executors.
    pub seconds: Option<f64>,
    /// Seconds with the whole pool to itself; `None` without executors.
    pub alone_seconds: Option<f64>,
    /// Whether [`CONFIRM_OVER_S`] is exceeded: callers ask first.
    pub needs_confirmation: bool,
}

impl Estimate {
    /// From the queue now, the submission's share, its batches and runs
    /// per batch, and a seconds-per-run figure.
    pub fn new(
        view: &QueueView,
        share: &Share,
        batches: usize,
        runs_per_batch: i64,
        seconds_per_run: f64,
        rate_source: RateSource,
    ) -> Estimate {
        let rows = rows_of(view);
        // Its batches all join one tenant with one weight: together they
        // get what one batch of the summed weight would.
        let weight = share.weight * batches as f64;
        let fraction = queue::fraction_with(&rows, &share.tenant, weight, true);
        let runs = runs_per_batch.saturating_mul(batches as i64);
        let threads = view.executor_threads;
        let seconds = queue::estimate_s(runs, Some(seconds_per_run), threads, fraction);
        Estimate {
            batches,
            runs,
            seconds_per_run,
            rate_source,
            executor_threads: threads,
            fraction,
            seconds,
            alone_seconds: queue::estimate_s(runs, Some(seconds_per_run), threads, 1.0),
            needs_confirmation: seconds.is_some_and(|s| s > CONFIRM_OVER_S),
        }
    }

    /// Executor seconds of the whole submission on one thread.
    pub fn work_s(&self) -> f64 {
        self.runs as f64 * self.seconds_per_run
    }

    /// One line for people: the time, what it assumes, where the rate
    /// comes from.
    pub fn line(&self) -> String {
        let what = match self.batches {
            1 => "estimated run time".to_string(),
            n => format!("estimated run time of the {n} batches"),
        };
        let rate = format!(
            "{} per run, {}",
            per_run(self.seconds_per_run),
            self.rate_source.says()
        );
        let threads = match self.executor_threads {
            1 => "1 executor thread".to_string(),
            n => format!("{n} executor threads"),
        };
        match (self.seconds, self.alone_seconds) {
            (Some(s), Some(alone)) if self.fraction < 1.0 => format!(
                "{what}: {} at its fair share now, {:.0} % of {threads} ({} alone); {rate}",
                about(s),
                self.fraction * 100.0,
                about(alone),
            ),
            (Some(s), _) => format!("{what}: {} on all {threads}; {rate}", about(s)),
            _ => format!(
                "no estimate: no executor is running, so it waits for one ({} of work for one executor thread; {rate})",
                rough(self.work_s()),
            ),
        }
    }
}

impl RateSource {
    fn says(self) -> &'static str {
        match self {
            RateSource::Measured => "measured by the executors",
            RateSource::Calibrated => "timed here as nothing was measured yet",
        }
    }
}

/// The estimate of `req` against the queue now: the store's measured rate
/// of its workload snapshot, or a calibration on this machine.
pub async fn estimate<S: Scheduling>(store: &S, req: &SubmitRequest) -> Result<Estimate> {
    let snapshot = serde_json::to_string(&req.workload).map_err(|source| Error::Encode {
        what: "workload",
        source,
    })?;
    let (seconds_per_run, source) = match store.seconds_per_run(&snapshot).await? {
        Some(rate) if rate.is_finite() && rate > 0.0 => (rate, RateSource::Measured),
        _ => {
            let spec = req.workload.clone();
            let seed = req.seed.unwrap_or(0) as u64;
            let rate = tokio::task::spawn_blocking(move || calibrate(&spec, seed))
                .await
                .map_err(|source| Error::Task {
                    what: "calibration",
                    source,
                })??;
            (rate, RateSource::Calibrated)
        }
    };
    let view = store.queue().await?;
    Ok(Estimate::new(
        &view,
        &req.share,
        req.count,
        req.runs,
        seconds_per_run,
        source,
    ))
}

/// Seconds per run of `spec`, timed on this thread over
/// [`CALIBRATION_RUNS`] runs. Blocks for that long.
pub fn calibrate(spec: &WorkloadSpec, seed: u64) -> Result<f64> {
    let workload = Workload::new(spec)?;
    simulate(&workload, seed, 0, WARM_UP_RUNS, Duration::ZERO);
    let start = Instant::now();
    simulate(
        &workload,
        seed,
        WARM_UP_RUNS,
        CALIBRATION_RUNS,
        Duration::ZERO,
    );
    // A clock too coarse to see the runs would say zero: a nanosecond a
    // run is still "quick", and never a division by zero later.
    Ok((start.elapsed().as_secs_f64() / CALIBRATION_RUNS as f64).max(1e-9))
}

/// The queue's batches as the rows [`queue::fraction_with`] weighs: only
/// their tenants and weights count.
fn rows_of(view: &QueueView) -> Vec<QueueRow> {
    view.batches
        .iter()
        .map(|b| QueueRow {
            id: Uuid::nil(),
            name: String::new(),
            tenant: b.tenant.clone(),
            weight: b.weight,
            vtime: 0.0,
            workload: String::new(),
            runs: b.runs,
            chunk_size: 1,
            created_at: 0.0,
            waiting: b.chunks_waiting,
            queued: b.chunks_queued,
            running: b.chunks_running,
            runs_done: b.runs_done,
            runs_recent: 0,
            used_s: b.executor_s,
            seconds_per_run: None,
        })
        .collect()
}

/// A duration as people plan with it: `under a second`, `45 s`,
/// `12 min`, `3 h 20 min`, `2 days 5 h`.
pub fn rough(seconds: f64) -> String {
    let s = seconds.max(0.0);
    if s < 1.0 {
        return "under a second".into();
    }
    if s < 90.0 {
        return format!("{} s", s.round() as u64);
    }
    let minutes = (s / 60.0).round() as u64;
    if minutes < 60 {
        return format!("{minutes} min");
    }
    let (h, m) = (minutes / 60, minutes % 60);
    if h < 48 {
        return match m {
            0 => format!("{h} h"),
            m => format!("{h} h {m} min"),
        };
    }
    let hours = (s / 3600.0).round() as u64;
    let (d, h) = (hours / 24, hours % 24);
    match h {
        0 => format!("{d} days"),
        h => format!("{d} days {h} h"),
    }
}

/// [`rough`] said as an estimate: `about 12 min`, `under a second`.
pub fn about(seconds: f64) -> String {
    match rough(seconds) {
        under if seconds < 1.0 => under,
        r => format!("about {r}"),
    }
}

/// Seconds per run in the unit that reads best: `21.4 µs`, `3.2 ms`, `1.5 s`.
fn per_run(s: f64) -> String {
    if s < 1e-3 {
        format!("{:.1} µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{s:.1} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::QueueEntry;

    fn entry(tenant: &str, weight: f64) -> QueueEntry {
        QueueEntry {
            position: 1,
            id: Uuid::new_v4(),
            name: "b".into(),
            tenant: tenant.into(),
            priority: store::share::label_of(weight),
            weight,
            runs: 1_000,
            runs_done: 0,
            chunks_waiting: 1,
            chunks_queued: 0,
            chunks_running: 0,
            share_now: 0.0,
            runs_per_s: 0.0,
            executor_s: 0.0,
            left_s: None,
        }
    }

    fn share(tenant: &str, weight: f64) -> Share {
        Share {
            tenant: tenant.into(),
            weight,
        }
    }

    #[test]
    fn alone_it_gets_the_whole_pool() {
        let view = QueueView {
            executor_threads: 4,
            ..QueueView::default()
        };
        let e = Estimate::new(
            &view,
            &share("a", 1.0),
            1,
            400_000,
            1e-5,
            RateSource::Measured,
        );
        assert_eq!(e.fraction, 1.0);
        assert!((e.seconds.unwrap() - 1.0).abs() < 1e-9);
        assert_eq!(e.seconds, e.alone_seconds);
        assert!(!e.needs_confirmation);
        assert!(
            e.line().contains("about 1 s on all 4 executor threads"),
            "{}",
            e.line()
        );
    }

    #[test]
    fn beside_another_tenant_it_gets_half_and_several_batches_weigh_together() {
        let view = QueueView {
            executor_threads: 2,
            chunks_running: 0,
            batches: vec![entry("other", 1.0)],
        };
        // 2 batches of 3,600 runs at 1 s per run: 7,200 executor seconds;
        // tenant "a" gets half of 2 threads: 7,200 s, over an hour.
        let e = Estimate::new(
            &view,
            &share("a", 4.0),
            2,
            3_600,
            1.0,
            RateSource::Calibrated,
        );
        assert_eq!(e.runs, 7_200);
        assert!((e.fraction - 0.5).abs() < 1e-12);
        assert!((e.seconds.unwrap() - 7_200.0).abs() < 1e-6);
        assert!((e.alone_seconds.unwrap() - 3_600.0).abs() < 1e-6);
        assert!(e.needs_confirmation);
        let line = e.line();
        assert!(line.starts_with("estimated run time of the 2 batches: about 2 h at its fair share now, 50 % of 2 executor threads (about 1 h alone)"), "{line}");
        assert!(line.contains("timed here"), "{line}");
        // In the same tenant, by weight: 2 × 1 of 1 + 2 × 1.
        let view = QueueView {
            batches: vec![entry("a", 1.0)],
            ..view
        };
        let e = Estimate::new(&view, &share("a", 1.0), 2, 10, 1.0, RateSource::Measured);
        assert!((e.fraction - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn without_executors_there_is_no_estimate_and_nothing_to_confirm() {
        let e = Estimate::new(
            &QueueView::default(),
            &share("a", 1.0),
            1,
            1_000_000,
            1.0,
            RateSource::Measured,
        );
        assert_eq!((e.seconds, e.alone_seconds), (None, None));
        assert!(!e.needs_confirmation);
        assert!(
            e.line().starts_with("no estimate: no executor is running"),
            "{}",
            e.line()
        );
        assert!(e.line().contains("(11 days 14 h of work"), "{}", e.line());
    }

    #[test]
    fn durations_read_as_people_plan() {
        assert_eq!(rough(0.2), "under a second");
        assert_eq!(rough(44.6), "45 s");
        assert_eq!(rough(90.0), "2 min");
        assert_eq!(rough(3_590.0), "1 h");
        assert_eq!(rough(5_400.0), "1 h 30 min");
        assert_eq!(rough(12_000.0), "3 h 20 min");
        assert_eq!(rough(7_200.0), "2 h");
        assert_eq!(rough(3.0 * 86_400.0 + 5.0 * 3_600.0), "3 days 5 h");
        assert_eq!(about(0.5), "under a second");
        assert_eq!(about(720.0), "about 12 min");
        assert_eq!(per_run(2.14e-5), "21.4 µs");
        assert_eq!(per_run(0.0032), "3.2 ms");
    }

    #[test]
    fn calibration_times_the_workload() {
        let rate = calibrate(&WorkloadSpec::Sum, 7).unwrap();
        assert!(rate > 0.0 && rate.is_finite());
    }
}
