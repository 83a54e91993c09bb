//! The verifier stage: checks every aggregate against an independent source
//! — the executors' per-run rows in the store — records one verdict per
//! batch, and prints one line per batch.
//!
//! Checks: every run index present exactly once (rows come back in no
//! particular order; a bitset of the batch's runs catches a repeat as it
//! comes and a gap at the end), the summary recomputed
//! from the rows equals the aggregate exactly, and a few runs re-simulated
//! from the batch seed equal their stored rows. The verdict write is
//! idempotent (the first verdict wins); its line is marked printed and then
//! written, so a verifier killed after recording the verdict but before the
//! mark prints it on redelivery, and no line is ever printed twice.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker::{Broker, Consumer, Delivery, Queue};
use fixedbitset::FixedBitSet;
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
                summarize(&store, &stats).await;
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

/// After a verdict: indexes the run rows written meanwhile, so that the next
/// batch's check reads only its own blocks (see
/// [`Store::summarize_new_runs`]). After the ack, off the verdict's path, and
/// never an error: a scan is correct without it, only slower.
async fn summarize<S: Store>(store: &S, stats: &StageStats) {
    let start = Instant::now();
    match store.summarize_new_runs().await {
        Ok(Some(ranges)) => {
            stats.phase("summarize", start.elapsed());
            tracing::debug!(ranges, "run index summarized");
        }
        Ok(None) => tracing::debug!("run index busy (vacuum?); summarizing after the next verdict"),
        Err(e) => tracing::warn!(
            error = %e,
            "could not summarize the run index; checks stay correct, only slower"
        ),
    }
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
/// The rows are read in disjoint run ranges, `parts` at a time, each on its
/// own task and store connection: the check runs once the last chunk is in,
/// so its wall time is the whole pipeline's tail. A range's bitset is
/// dropped as soon as it is scanned, so memory stays bounded (`parts` ×
/// 2^26 bits, 8 MiB each) whatever the batch's size.
pub async fn check<S: Store>(
    store: &S,
    loaded: &LoadedBatch,
    aggregate_json: &str,
    spot_checks: usize,
    parts: usize,
) -> Result<std::result::Result<(), String>> {
    check_in_parts(
        store,
        loaded,
        aggregate_json,
        spot_checks,
        parts,
        MAX_PART_RUNS,
    )
    .await
}

/// [`check`] with ranges of at most `max_part_runs` runs (tests use small
/// ones to scan a modest batch in many parts).
pub async fn check_in_parts<S: Store>(
    store: &S,
    loaded: &LoadedBatch,
    aggregate_json: &str,
    spot_checks: usize,
    parts: usize,
    max_part_runs: i64,
) -> Result<std::result::Result<(), String>> {
    let batch = &loaded.batch;
    let workload = &loaded.workload;
    let aggregate: Summary = match serde_json::from_str(aggregate_json) {
        Ok(s) => s,
        Err(e) => return Ok(Err(format!("stored aggregate unreadable: {e}"))),
    };
    let spots = Arc::new(spot_indices(batch.seed as u64, batch.runs, spot_checks));
    let mut pending = scan_ranges(batch.runs, parts, max_part_runs)
        .into_iter()
        .enumerate();
    let mut tasks = tokio::task::JoinSet::new();
    let mut scans = Vec::new();
    loop {
        while tasks.len() < parts.max(1) {
            let Some((i, range)) = pending.next() else {
                break;
            };
            let (store, spots, batch_id, runs) =
                (store.clone(), spots.clone(), batch.id, batch.runs);
            let mut scan = Scan::new(range.clone(), runs, workload.empty_summary(), spots);
            tasks.spawn(async move {
                store
                    .scan_runs(batch_id, range, |idx, values| scan.row(idx, values))
                    .await?;
                Ok::<_, Error>((i, scan.finish(runs)))
            });
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        let joined =
            joined.map_err(|e| Error::Invalid(format!("a verifier scan task failed: {e}")))?;
        scans.push(joined?);
    }
    // In range order, so the reported gap is the batch's first.
    scans.sort_unstable_by_key(|(i, _)| *i);
    let mut recomputed = workload.empty_summary();
    let mut spot_rows = BTreeMap::new();
    for (_, scanned) in scans {
        let (summary, spots) = match scanned {
            Ok(done) => done,
            Err(reason) => return Ok(Err(reason)),
        };
        if let Err(e) = recomputed.merge(&summary) {
            return Ok(Err(format!("rows do not fold into one summary: {e}")));
        }
        spot_rows.extend(spots);
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

/// Most runs in one part: its bitset is then at most 8 MiB.
const MAX_PART_RUNS: i64 = 1 << 26;

/// `[0, runs)` cut into contiguous ranges of near-equal size: `parts` of
/// them (fewer for small batches, one below 100,000 runs), more when a
/// range would exceed `max_part_runs`. The last ends at `i64::MAX`, so
/// rows past the batch's end are seen and reported rather than ignored.
fn scan_ranges(runs: i64, parts: usize, max_part_runs: i64) -> Vec<Range<i64>> {
    let by_size = (runs / MIN_PART_RUNS).max(1);
    let max_part_runs = max_part_runs.max(1);
    let at_least = (runs + max_part_runs - 1) / max_part_runs;
    let n = i64::try_from(parts.max(1))
        .unwrap_or(1)
        .min(by_size)
        .max(at_least);
    let mut ranges: Vec<_> = (0..n).map(|i| runs * i / n..runs * (i + 1) / n).collect();
    if let Some(last) = ranges.last_mut() {
        last.end = i64::MAX;
    }
    ranges
}

/// One range's scan. Rows come in any order: each run index sets its bit,
/// so a repeat is seen when it comes and a gap when the scan is done.
/// Memory is one bit per run of the range (2,000,000 runs: 250 KB).
struct Scan {
    /// The requested range; the last one is open-ended.
    range: Range<i64>,
    /// Runs of the range that belong to the batch: `range.start..min(range.end, runs)`.
    first: i64,
    seen: FixedBitSet,
    /// Lowest and highest run index stored past the batch's end.
    past_end: Option<(i64, i64)>,
    problem: Option<String>,
    recomputed: Summary,
    spot_rows: BTreeMap<i64, Vec<i32>>,
    spots: Arc<Vec<i64>>,
}

impl Scan {
    fn new(range: Range<i64>, runs: i64, recomputed: Summary, spots: Arc<Vec<i64>>) -> Self {
        let first = range.start;
        let len = usize::try_from(range.end.min(runs) - first).unwrap_or(0);
        Self {
            range,
            first,
            seen: FixedBitSet::with_capacity(len),
            past_end: None,
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
        if !self.range.contains(&idx) {
            self.problem = Some(format!(
                "the store returned run {idx} for a scan of runs {}..{}",
                self.range.start, self.range.end
            ));
            return;
        }
        let Some(bit) = usize::try_from(idx - self.first)
            .ok()
            .filter(|b| *b < self.seen.len())
        else {
            // In the (open) range but not in the batch.
            self.past_end = Some(match self.past_end {
                None => (idx, idx),
                Some((lo, hi)) => (lo.min(idx), hi.max(idx)),
            });
            return;
        };
        if self.seen.put(bit) {
            self.problem = Some(format!("run {idx} stored more than once"));
            return;
        }
        if let Err(e) = self.recomputed.add(values) {
            self.problem = Some(format!("run {idx} has an invalid row: {e}"));
            return;
        }
        if self.spots.binary_search(&idx).is_ok() {
            self.spot_rows.insert(idx, values.to_vec());
        }
    }

    /// The range's summary and spot rows, or why the batch fails.
    fn finish(self, runs: i64) -> std::result::Result<(Summary, BTreeMap<i64, Vec<i32>>), String> {
        if let Some(p) = self.problem {
            return Err(p);
        }
        if let Some(gap) = self.seen.zeroes().next() {
            let end = self
                .seen
                .ones()
                .find(|&b| b > gap)
                .unwrap_or(self.seen.len());
            let missing = self.seen.len() - self.seen.count_ones(..);
            return Err(format!(
                "runs {}..{} missing ({missing} missing in runs {}..{}; the batch has {runs} runs)",
                self.first + gap as i64,
                self.first + end as i64,
                self.first,
                self.first + self.seen.len() as i64,
            ));
        }
        if let Some((lo, hi)) = self.past_end {
            return Err(format!(
                "rows stored past the batch's end: runs {lo}..={hi} (the batch has {runs} runs)"
            ));
        }
        Ok((self.recomputed, self.spot_rows))
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
        assert_eq!(scan_ranges(10, 4, MAX_PART_RUNS), vec![0..i64::MAX]);
        assert_eq!(scan_ranges(0, 2, MAX_PART_RUNS), vec![0..i64::MAX]);
        assert_eq!(
            scan_ranges(500_000, 2, MAX_PART_RUNS),
            vec![0..250_000, 250_000..i64::MAX]
        );
        let r = scan_ranges(1_000_001, 3, MAX_PART_RUNS);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].start, 0);
        assert!(r.windows(2).all(|w| w[0].end == w[1].start));
        assert_eq!(r[2].end, i64::MAX);
        // Not more parts than 50,000-run pieces.
        assert_eq!(scan_ranges(120_000, 8, MAX_PART_RUNS).len(), 2);
        // Huge batches: more parts than asked for, none above the maximum.
        let huge = scan_ranges(10 * MAX_PART_RUNS + 1, 2, MAX_PART_RUNS);
        assert_eq!(huge.len(), 11);
        assert!(huge[..10].iter().all(|r| r.end - r.start <= MAX_PART_RUNS));
        assert_eq!(huge[10].start, (10 * MAX_PART_RUNS + 1) * 10 / 11);
        assert_eq!(huge[10].end, i64::MAX);
    }

    fn sum_scan(range: Range<i64>, runs: i64) -> Scan {
        let workload = workload::Workload::new(&workload::WorkloadSpec::Sum).unwrap();
        Scan::new(range, runs, workload.empty_summary(), Arc::new(vec![0, 4]))
    }

    #[test]
    fn scan_accepts_rows_in_any_order() {
        let mut scan = sum_scan(0..i64::MAX, 6);
        for idx in [5, 0, 3, 1, 4, 2] {
            scan.row(idx, &[idx as i32]);
        }
        let (summary, spots) = scan.finish(6).unwrap();
        assert_eq!(summary.runs(), 6);
        assert_eq!(spots.keys().copied().collect::<Vec<_>>(), vec![0, 4]);
        assert_eq!(spots[&4], vec![4]);
    }

    #[test]
    fn scan_reports_a_repeat_even_out_of_order() {
        let mut scan = sum_scan(10..20, 30);
        for idx in [12, 15, 11, 12] {
            scan.row(idx, &[1]);
        }
        assert_eq!(scan.finish(30).unwrap_err(), "run 12 stored more than once");
    }

    #[test]
    fn scan_reports_the_first_gap_and_how_many_runs_are_missing() {
        let mut scan = sum_scan(10..20, 30);
        for idx in [19, 10, 11, 17, 12, 13, 15] {
            scan.row(idx, &[1]);
        }
        assert_eq!(
            scan.finish(30).unwrap_err(),
            "runs 14..15 missing (3 missing in runs 10..20; the batch has 30 runs)"
        );
        // Nothing at all: the whole range.
        let empty = sum_scan(0..i64::MAX, 4);
        assert!(
            empty
                .finish(4)
                .unwrap_err()
                .starts_with("runs 0..4 missing")
        );
    }

    #[test]
    fn scan_reports_rows_past_the_batch_end_and_outside_its_range() {
        let mut scan = sum_scan(2..i64::MAX, 4);
        for idx in [9, 3, 2, 7] {
            scan.row(idx, &[1]);
        }
        assert_eq!(
            scan.finish(4).unwrap_err(),
            "rows stored past the batch's end: runs 7..=9 (the batch has 4 runs)"
        );
        let mut scan = sum_scan(0..2, 4);
        scan.row(1, &[1]);
        scan.row(2, &[1]);
        assert_eq!(
            scan.finish(4).unwrap_err(),
            "the store returned run 2 for a scan of runs 0..2"
        );
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
