//! Cancelling a running batch (issue 19): 20 times, one batch at a time, a
//! bingo batch of `runs` (2,000,000; chunks of the bench's chunk size) is
//! submitted, runs for [`RUN_BEFORE`], and is cancelled with
//! `pipeline::cancel::cancel` — the call `batchline cancel` makes. Two
//! figures per cancel, from the cancel's commit:
//! - to the last run executed: the largest `cancel_to_stop_ms` the
//!   executor logged for the batch (each chunk it was simulating logs how
//!   long after the commit, by the store's clock, its last run ended);
//! - to the CANCELLED line on the verifier's stdout (measured from the
//!   call's return, a little after the commit).

use std::path::Path;
use std::time::{Duration, Instant};

use broker::{Queue, RabbitBroker};
use pipeline::submit::{SubmitRequest, submit};
use serde::Serialize;
use store::{Cancel, PgStore, Uuid};
use workload::WorkloadSpec;

use crate::e2e::round3;
use crate::error::{Error, Result};
use crate::scenario::{Bench, Scenario};

/// Cancels measured (the figure); `--quick` does [`QUICK_CANCELS`].
pub const CANCELS: usize = 20;
pub const QUICK_CANCELS: usize = 5;
/// Runs of each cancelled batch (before `--quick` divides it).
pub const RUNS: i64 = 2_000_000;
/// How long each batch runs before its cancel.
const RUN_BEFORE: Duration = Duration::from_millis(1_500);
const POLL: Duration = Duration::from_millis(10);
/// The executor has settled once its cancel counters stay put this long
/// with the work queue empty.
const SETTLE: Duration = Duration::from_millis(300);
/// What the executor logs, with the chunk's span, when a cancel stopped it.
const STOP_LINE: &str = "last run ended after the cancel";
const STOP_FIELD: &str = "cancel_to_stop_ms=";

/// What the cancels measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CancelResult {
    pub cancels: usize,
    pub runs: i64,
    pub chunk_size: i32,
    pub concurrency: usize,
    /// From submit to the cancel call.
    pub run_before_cancel_s: f64,
    /// Per cancel: the commit to the batch's last run (the largest
    /// `cancel_to_stop_ms` logged for it); `None` when no chunk was being
    /// simulated at the cancel.
    pub to_last_run_ms: Vec<Option<f64>>,
    /// Per cancel: the cancel call's return to the CANCELLED line.
    pub to_line_ms: Vec<f64>,
    /// Per cancel: the `runs_done` of its CANCELLED line.
    pub runs_done: Vec<i64>,
    /// Per cancel: how long the `cancel` call took.
    pub call_ms: Vec<f64>,
}

/// p50 and max of some milliseconds (`None` without samples).
pub fn p50_max(samples: impl Iterator<Item = f64>) -> (Option<f64>, Option<f64>) {
    let mut v: Vec<f64> = samples.collect();
    if v.is_empty() {
        return (None, None);
    }
    v.sort_by(f64::total_cmp);
    let p50 = v[(v.len() - 1) / 2];
    (Some(round3(p50)), v.last().copied().map(round3))
}

pub async fn run(
    bench: &Bench,
    cancels: usize,
    runs: i64,
    chunk_size: i32,
    concurrency: usize,
    timeout: Duration,
) -> Result<CancelResult> {
    let (result, _stages) = bench
        .in_scenario("cancel", async |s| {
            measure(s, cancels, runs, chunk_size, concurrency, timeout).await
        })
        .await?;
    Ok(result)
}

async fn measure(
    s: &mut Scenario,
    cancels: usize,
    runs: i64,
    chunk_size: i32,
    concurrency: usize,
    timeout: Duration,
) -> Result<CancelResult> {
    s.spawn("aggregator", &["aggregator".into()], "aggregator consuming")?;
    s.spawn("verifier", &["verifier".into()], "verifier consuming")?;
    let executor = [
        "executor".to_string(),
        "--concurrency".into(),
        concurrency.to_string(),
    ];
    s.spawn("executor-1", &executor, "executor consuming")?;
    s.wait_ready(Duration::from_secs(60))?;
    let (store, broker) = (s.store()?.clone(), s.broker()?.clone());
    let log = s.log_of("executor-1")?;
    let mut r = CancelResult {
        cancels,
        runs,
        chunk_size,
        concurrency,
        run_before_cancel_s: RUN_BEFORE.as_secs_f64(),
        ..CancelResult::default()
    };
    for i in 0..cancels {
        let req = SubmitRequest {
            name: Some(format!("cancel-{i}")),
            runs,
            chunk_size,
            seed: Some(i as i64),
            workload: WorkloadSpec::bingo_default(),
            count: 1,
            share: Default::default(),
        };
        let submitted = submit(&broker, &store, &req).await?;
        let batch = (submitted.batches.first().map(|b| b.id))
            .ok_or_else(|| Error::Measure("submit created no batch".into()))?;
        tokio::time::sleep(RUN_BEFORE).await;
        let called = Instant::now();
        let done = pipeline::cancel::cancel(&store, Some(&broker), &[batch], "bench").await?;
        let committed = Instant::now();
        r.call_ms.push(round3(ms(committed - called)));
        match done.first() {
            Some((_, Cancel::Cancelled { .. })) => {}
            other => {
                return Err(Error::Measure(format!(
                    "cancel {i} of a running batch answered {other:?}"
                )));
            }
        }
        let (line_ms, runs_done) = wait_line(s, batch, committed, timeout).await?;
        r.to_line_ms.push(round3(line_ms));
        r.runs_done.push(runs_done);
        settle(s, &broker, timeout).await?;
        r.to_last_run_ms.push(last_run_ms(&log, batch));
        tracing::info!(
            cancel = i,
            to_last_run_ms = ?r.to_last_run_ms.last().copied().flatten(),
            to_line_ms = line_ms,
            runs_done,
            "bench: cancelled"
        );
        // The next batch starts on an empty store row set of this one.
        drop_batch(&store, batch).await?;
    }
    Ok(r)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Waits for `batch`'s CANCELLED line; milliseconds from `since`, and
/// its `runs_done`.
async fn wait_line(
    s: &mut Scenario,
    batch: Uuid,
    since: Instant,
    timeout: Duration,
) -> Result<(f64, i64)> {
    let id = batch.to_string();
    loop {
        if let Some(line) = s.lines().into_iter().find(|l| l.contains(&id)) {
            let took = ms(since.elapsed());
            let runs_done = (line.strip_prefix("CANCELLED "))
                .and_then(|l| l.split_once(" runs_done="))
                .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
                .ok_or_else(|| Error::Measure(format!("not a CANCELLED line: {line}")))?;
            return Ok((took, runs_done));
        }
        if since.elapsed() > timeout {
            return Err(Error::Measure(format!(
                "no CANCELLED line for {batch} after {timeout:?}"
            )));
        }
        s.check_alive()?;
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until the executor is done with the batch: nothing left in the
/// work queue, and its cancel counters unchanged for [`SETTLE`].
async fn settle(s: &mut Scenario, broker: &RabbitBroker, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    let mut last: Option<(u64, Instant)> = None;
    loop {
        let ready = broker.queue_stats(Queue::Work).await?.ready;
        let events = s.scrape("executor-1").await?.events;
        let count = ["cancel_stopped", "cancelled_dropped"]
            .iter()
            .map(|e| events.get(*e).copied().unwrap_or(0))
            .sum::<u64>();
        match last {
            Some((n, since)) if n == count && ready == 0 => {
                if since.elapsed() >= SETTLE {
                    return Ok(());
                }
            }
            _ => last = Some((count, Instant::now())),
        }
        if start.elapsed() > timeout {
            return Err(Error::Measure(format!(
                "the executor still had work of the cancelled batch after {timeout:?}"
            )));
        }
        tokio::time::sleep(POLL * 5).await;
    }
}

/// The largest `cancel_to_stop_ms` the executor logged for `batch`.
fn last_run_ms(log: &Path, batch: Uuid) -> Option<f64> {
    let text = std::fs::read_to_string(log).ok()?;
    let id = format!("batch={batch}");
    text.lines()
        .filter(|l| l.contains(STOP_LINE) && l.contains(&id))
        .filter_map(|l| {
            let (_, rest) = l.split_once(STOP_FIELD)?;
            rest.split_whitespace().next()?.parse::<f64>().ok()
        })
        .reduce(f64::max)
}

/// Purges the cancelled batch (no `--force` needed), so that 20 batches'
/// rows do not pile up in the scenario's store.
async fn drop_batch(store: &PgStore, batch: Uuid) -> Result<()> {
    use store::prelude::*;
    store.purge_batch(batch, false).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p50_and_max_of_samples() {
        assert_eq!(p50_max([].into_iter()), (None, None));
        assert_eq!(
            p50_max([30.0, 10.0, 20.0, 40.0].into_iter()),
            (Some(20.0), Some(40.0))
        );
    }

    #[test]
    fn the_largest_stop_of_the_batch_is_read_from_the_log() {
        let log = std::env::temp_dir().join(format!("bench-cancel-{}.log", Uuid::new_v4()));
        let (b, other) = (Uuid::new_v4(), Uuid::new_v4());
        let text = format!(
            "2026 INFO chunk{{batch={b} chunk=1}}: pipeline::executor: {STOP_LINE} {STOP_FIELD}12.5\n\
             2026 INFO chunk{{batch={b} chunk=2}}: pipeline::executor: {STOP_LINE} {STOP_FIELD}40.25\n\
             2026 INFO chunk{{batch={other} chunk=2}}: pipeline::executor: {STOP_LINE} {STOP_FIELD}900\n"
        );
        std::fs::write(&log, text).unwrap();
        assert_eq!(last_run_ms(&log, b), Some(40.25));
        assert_eq!(last_run_ms(&log, Uuid::new_v4()), None);
        std::fs::remove_file(&log).unwrap();
    }
}
