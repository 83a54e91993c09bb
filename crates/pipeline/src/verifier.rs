//! The verifier stage: checks every aggregate against an independent source
//! — the executors' per-run rows in the store — records one verdict per
//! batch, and prints one line per batch.
//!
//! Checks: every run index present exactly once (rows come back in run
//! order, so a gap or a repeat shows as a jump), the summary recomputed
//! from the rows equals the aggregate exactly, and a few runs re-simulated
//! from the batch seed equal their stored rows. The verdict write is
//! idempotent (the first verdict wins); its line is marked printed and then
//! written, so a verifier killed after recording the verdict but before the
//! mark prints it on redelivery, and no line is ever printed twice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker::{Broker, Consumer, Delivery, Queue};
use store::{Store, Verdict, VerdictRecord};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;
use workload::Summary;

use crate::common::{BatchCache, LoadedBatch, Lookup, dead_letter};
use crate::faults::{CrashPoint, Faults};
use crate::messages::{VerifyMsg, decode};
use crate::retry::retrying;
use crate::telemetry::StageStats;
use crate::{Error, Result};

/// Where verdict lines go (stdout in the binary). Must write the whole line
/// before returning.
pub type LineSink = Arc<dyn Fn(&str) -> std::io::Result<()> + Send + Sync>;

/// Verifier settings.
#[derive(Clone, Debug)]
pub struct VerifierConfig {
    pub prefetch: u16,
    /// Runs re-simulated from the seed per batch (first, last and random ones).
    pub spot_checks: usize,
    /// Run ranges each batch's rows are read in, concurrently (see [`check`]).
    pub scan_parts: usize,
    pub faults: Faults,
}

impl Default for VerifierConfig {
    fn default() -> Self {
        Self {
            prefetch: 4,
            spot_checks: 5,
            scan_parts: std::thread::available_parallelism().map_or(1, |n| n.get()),
            faults: Faults::default(),
        }
    }
}

/// The verdict line for a success.
pub fn success_line(name: &str, batch_id: Uuid, runs: i64, chunks: i32, duplicates: i64) -> String {
    format!(
        "SUCCESS [{name}] batch={batch_id} runs={runs} chunks={chunks} duplicates_dropped={duplicates}"
    )
}

/// The verdict line for a failure.
pub fn failure_line(name: &str, batch_id: Uuid, reason: &str) -> String {
    format!("FAILURE [{name}] batch={batch_id} reason={reason}")
}

/// Runs the verifier until `shutdown`.
pub async fn run<B: Broker, S: Store>(
    broker: B,
    store: S,
    cfg: VerifierConfig,
    sink: LineSink,
    stats: StageStats,
    shutdown: CancellationToken,
) -> Result<()> {
    let mut consumer = retrying("consume verify queue", &shutdown, || async {
        Ok(broker.consume(Queue::Verify, cfg.prefetch.max(1)).await?)
    })
    .await?;
    let reporter = tokio::spawn(
        stats
            .clone()
            .report_every(Duration::from_secs(10), shutdown.clone()),
    );
    let cache = BatchCache::default();
    tracing::info!("verifier consuming");
    let outcome = loop {
        let delivery = tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            d = consumer.next() => match d {
                Ok(d) => d,
                Err(e) => break Err(e.into()),
            },
        };
        stats.count("received", 1);
        let tag = delivery.tag;
        match handle(
            &broker, &store, &cfg, &cache, &sink, &stats, &shutdown, &delivery,
        )
        .await
        {
            Ok(()) => {
                if let Err(e) = consumer.ack(tag, false).await {
                    tracing::warn!(error = %e, "ack failed; the verdict is idempotent");
                }
                stats.count("acked", 1);
            }
            Err(Error::Shutdown) => break Ok(()),
            Err(e) => {
                tracing::error!(error = %e, "verification failed; requeueing");
                tokio::time::sleep(Duration::from_secs(1)).await;
                let _ = consumer.nack(tag, true).await;
            }
        }
    };
    reporter.abort();
    outcome
}

#[allow(clippy::too_many_arguments)]
async fn handle<B: Broker, S: Store>(
    broker: &B,
    store: &S,
    cfg: &VerifierConfig,
    cache: &BatchCache,
    sink: &LineSink,
    stats: &StageStats,
    shutdown: &CancellationToken,
    delivery: &Delivery,
) -> Result<()> {
    let reject = |reason: String| async move {
        retrying("dead-letter", shutdown, || async {
            dead_letter(broker, Queue::Verify, delivery, &reason).await
        })
        .await?;
        stats.count("dead_lettered", 1);
        Ok(())
    };
    let msg = match decode::<VerifyMsg>(&delivery.payload) {
        Ok(m) => m,
        Err(e) => return reject(e.to_string()).await,
    };
    let batch_id = msg.batch_id();
    let loaded = match retrying("load batch", shutdown, || async {
        cache.get(store, batch_id).await
    })
    .await?
    {
        Lookup::Found(b) => b,
        Lookup::Unknown => return reject(format!("unknown batch {batch_id}")).await,
        Lookup::BadWorkload(e) => return reject(format!("batch workload invalid: {e}")).await,
    };
    let span = tracing::info_span!("verify", batch = %batch_id, name = %loaded.batch.name, msg_id = delivery.msg_id.as_deref().unwrap_or(""));
    async {
        let verdict = match &msg {
            VerifyMsg::Failed { reason, .. } => failed(&loaded, reason),
            VerifyMsg::Aggregated { .. } => {
                let stored = retrying("read aggregate", shutdown, || async {
                    Ok(store.batch_result(batch_id).await?)
                })
                .await?;
                let Some((result, duplicates)) = stored else {
                    return reject(format!("no aggregate stored for batch {batch_id}")).await;
                };
                let start = Instant::now();
                let checked =
                    check(store, &loaded, &result, cfg.spot_checks, cfg.scan_parts).await?;
                stats.phase("check", start.elapsed());
                match checked {
                    Ok(()) => Verdict {
                        success: true,
                        reason: String::new(),
                        line: success_line(
                            &loaded.batch.name,
                            batch_id,
                            loaded.batch.runs,
                            loaded.batch.chunks,
                            duplicates,
                        ),
                    },
                    Err(reason) => failed(&loaded, &reason),
                }
            }
        };
        let record = retrying("record verdict", shutdown, || async {
            Ok(store.record_verdict(batch_id, &verdict).await?)
        })
        .await?;
        cfg.faults.maybe_crash(CrashPoint::AfterVerdict);
        let line = match record {
            VerdictRecord::New => Some(verdict.line),
            VerdictRecord::Existing {
                verdict,
                printed: false,
            } => Some(verdict.line),
            VerdictRecord::Existing { printed: true, .. } => None,
        };
        if let Some(line) = line {
            // Marked before it is written: a kill between the two loses the
            // line from this stdout (the verdict stays in the store, for
            // `status` and `submit --wait`) rather than printing it twice;
            // the window is one write of an already committed line.
            retrying("mark printed", shutdown, || async {
                Ok(store.mark_verdict_printed(batch_id).await?)
            })
            .await?;
            sink(&line)
                .map_err(|e| Error::Invalid(format!("cannot write the verdict line: {e}")))?;
            stats.count(
                if line.starts_with("SUCCESS") {
                    "success"
                } else {
                    "failure"
                },
                1,
            );
            tracing::info!("{line}");
        }
        Ok(())
    }
    .instrument(span)
    .await
}

fn failed(loaded: &LoadedBatch, reason: &str) -> Verdict {
    // One line per batch: keep the reason on it.
    let reason = reason.replace(['\n', '\r'], " ");
    Verdict {
        success: false,
        line: failure_line(&loaded.batch.name, loaded.batch.id, &reason),
        reason,
    }
}

/// Checks the stored aggregate against the per-run rows and re-simulated
/// runs. `Ok(Err(reason))` is a FAILURE verdict.
///
/// The rows are read in `parts` disjoint run ranges, concurrently, each on
/// its own task and store connection: the check runs once the last chunk is
/// in, so its wall time is the whole pipeline's tail.
pub async fn check<S: Store>(
    store: &S,
    loaded: &LoadedBatch,
    aggregate_json: &str,
    spot_checks: usize,
    parts: usize,
) -> Result<std::result::Result<(), String>> {
    let batch = &loaded.batch;
    let workload = &loaded.workload;
    let aggregate: Summary = match serde_json::from_str(aggregate_json) {
        Ok(s) => s,
        Err(e) => return Ok(Err(format!("stored aggregate unreadable: {e}"))),
    };
    let spots = Arc::new(spot_indices(batch.seed as u64, batch.runs, spot_checks));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, range) in scan_ranges(batch.runs, parts).into_iter().enumerate() {
        let (store, spots, batch_id) = (store.clone(), spots.clone(), batch.id);
        let mut scan = Scan::new(range.start, workload.empty_summary(), spots);
        // The last range is open-ended; its runs still stop at the batch's.
        let end = range.end.min(batch.runs);
        tasks.spawn(async move {
            store
                .scan_runs(batch_id, range, |idx, values| scan.row(idx, values))
                .await?;
            Ok::<_, Error>((i, end, scan))
        });
    }
    let mut scans = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let joined =
            joined.map_err(|e| Error::Invalid(format!("a verifier scan task failed: {e}")))?;
        scans.push(joined?);
    }
    scans.sort_unstable_by_key(|(i, _, _)| *i);
    let mut recomputed = workload.empty_summary();
    let mut spot_rows = BTreeMap::new();
    for (_, end, scan) in scans {
        if let Some(p) = scan.problem {
            return Ok(Err(p));
        }
        if scan.next < end {
            return Ok(Err(format!(
                "runs {}..{end} missing (the batch has {} runs)",
                scan.next, batch.runs
            )));
        }
        if scan.next > end {
            return Ok(Err(format!(
                "rows stored past the batch's end: runs {end}..{} (the batch has {} runs)",
                scan.next, batch.runs
            )));
        }
        if let Err(e) = recomputed.merge(&scan.recomputed) {
            return Ok(Err(format!("rows do not fold into one summary: {e}")));
        }
        spot_rows.extend(scan.spot_rows);
    }
    if recomputed != aggregate {
        return Ok(Err(format!(
            "aggregate differs from the per-run rows (aggregate counts {} runs, rows {})",
            aggregate.runs(),
            recomputed.runs()
        )));
    }
    let mut scratch = workload.scratch();
    let mut out = vec![0i32; workload.width()];
    for &idx in spots.iter() {
        workload.run(batch.seed as u64, idx as u64, &mut scratch, &mut out);
        match spot_rows.get(&idx) {
            Some(stored) if *stored == out => {}
            Some(stored) => {
                return Ok(Err(format!(
                    "run {idx} re-simulated from the seed gives {out:?}, stored row is {stored:?}"
                )));
            }
            None => return Ok(Err(format!("run {idx} has no stored row"))),
        }
    }
    Ok(Ok(()))
}

/// Below this many runs a part is not worth its own query.
const MIN_PART_RUNS: i64 = 50_000;

/// `[0, runs)` cut into at most `parts` contiguous ranges of near-equal size
/// (one range for small batches); the last ends at `i64::MAX`, so rows past
/// the batch's end are seen and reported rather than ignored.
fn scan_ranges(runs: i64, parts: usize) -> Vec<std::ops::Range<i64>> {
    let by_size = (runs / MIN_PART_RUNS).max(1);
    let n = i64::try_from(parts.max(1)).unwrap_or(1).min(by_size);
    let mut ranges: Vec<_> = (0..n).map(|i| runs * i / n..runs * (i + 1) / n).collect();
    if let Some(last) = ranges.last_mut() {
        last.end = i64::MAX;
    }
    ranges
}

/// One range's scan: run indices must come in order without gaps or repeats.
struct Scan {
    next: i64,
    problem: Option<String>,
    recomputed: Summary,
    spot_rows: BTreeMap<i64, Vec<i32>>,
    spots: Arc<Vec<i64>>,
}

impl Scan {
    fn new(first: i64, recomputed: Summary, spots: Arc<Vec<i64>>) -> Self {
        Self {
            next: first,
            problem: None,
            recomputed,
            spot_rows: BTreeMap::new(),
            spots,
        }
    }

    fn row(&mut self, idx: i64, values: &[i32]) {
        if self.problem.is_some() {
            return;
        }
        if idx != self.next {
            self.problem = Some(if idx < self.next {
                format!("run {idx} stored more than once")
            } else {
                format!("runs {}..{idx} missing", self.next)
            });
            return;
        }
        self.next = idx + 1;
        if let Err(e) = self.recomputed.add(values) {
            self.problem = Some(format!("run {idx} has an invalid row: {e}"));
            return;
        }
        if self.spots.binary_search(&idx).is_ok() {
            self.spot_rows.insert(idx, values.to_vec());
        }
    }
}

/// First, last and `n - 2` pseudo-random run indices, sorted, distinct.
fn spot_indices(seed: u64, runs: i64, n: usize) -> Vec<i64> {
    if runs <= 0 || n == 0 {
        return Vec::new();
    }
    let mut picks = vec![0, runs - 1];
    let mut x = seed ^ 0x9e37_79b9_7f4a_7c15;
    for _ in 0..n.saturating_sub(2) {
        // splitmix64: cheap, deterministic per batch.
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        picks.push((z % runs as u64) as i64);
    }
    picks.sort_unstable();
    picks.dedup();
    picks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spot_indices_include_ends_and_stay_in_range() {
        let s = spot_indices(42, 1000, 5);
        assert!(s.contains(&0) && s.contains(&999));
        assert!(s.iter().all(|&i| (0..1000).contains(&i)));
        assert!(s.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(spot_indices(1, 1, 5), vec![0]);
        assert!(spot_indices(1, 0, 5).is_empty());
    }

    #[test]
    fn scan_ranges_cover_the_batch_and_leave_the_end_open() {
        assert_eq!(scan_ranges(10, 4), vec![0..i64::MAX]);
        assert_eq!(scan_ranges(0, 2), vec![0..i64::MAX]);
        assert_eq!(scan_ranges(500_000, 2), vec![0..250_000, 250_000..i64::MAX]);
        let r = scan_ranges(1_000_001, 3);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].start, 0);
        assert!(r.windows(2).all(|w| w[0].end == w[1].start));
        assert_eq!(r[2].end, i64::MAX);
        // Not more parts than 50,000-run pieces.
        assert_eq!(scan_ranges(120_000, 8).len(), 2);
    }

    #[test]
    fn lines_match_the_contract() {
        let id = Uuid::nil();
        assert_eq!(
            success_line("x", id, 10, 2, 1),
            "SUCCESS [x] batch=00000000-0000-0000-0000-000000000000 runs=10 chunks=2 duplicates_dropped=1"
        );
        assert_eq!(
            failure_line("x", id, "boom"),
            "FAILURE [x] batch=00000000-0000-0000-0000-000000000000 reason=boom"
        );
    }
}
