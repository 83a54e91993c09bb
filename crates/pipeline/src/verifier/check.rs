//! The verifier's check of one batch: the aggregate recomputed from the
//! per-run rows in the store (every run index present exactly once), and a
//! few runs re-simulated from the batch seed, compared with their rows.
//! For a cancelled batch the same holds over the runs of its completed
//! chunks ([`Done::Chunks`]), and no other run may have a row.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use fixedbitset::FixedBitSet;
use store::Store;
use workload::Summary;

use crate::common::LoadedBatch;
use crate::{Check, Error, Result};

/// Which runs the aggregate covers.
#[derive(Clone, Debug)]
pub enum Done {
    /// Every run of the batch.
    All,
    /// The runs of these chunks, set by chunk number (a cancelled batch's
    /// completed chunks).
    Chunks(FixedBitSet),
}

impl Done {
    /// The completed chunks of a cancelled batch.
    pub fn chunks(chunks: i32, completed: impl IntoIterator<Item = i32>) -> Done {
        let mut set = FixedBitSet::with_capacity(usize::try_from(chunks).unwrap_or(0));
        for c in completed {
            if let Ok(c) = usize::try_from(c)
                && c < set.len()
            {
                set.insert(c);
            }
        }
        Done::Chunks(set)
    }

    /// Whether run `idx` (of a batch of `chunk_size`-run chunks) is covered.
    fn covers(&self, idx: i64, chunk_size: i32) -> bool {
        match self {
            Done::All => true,
            Done::Chunks(set) => {
                usize::try_from(idx / i64::from(chunk_size.max(1))).is_ok_and(|c| set.contains(c))
            }
        }
    }
}

/// Checks the stored aggregate against the per-run rows and re-simulated
/// runs. [`Check::Fail`] is a FAILURE verdict; `Err` means the check could
/// not be made (the store is away).
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
    done: Done,
    spot_checks: usize,
    parts: usize,
) -> Result<Check> {
    check_in_parts(
        store,
        loaded,
        aggregate_json,
        done,
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
    done: Done,
    spot_checks: usize,
    parts: usize,
    max_part_runs: i64,
) -> Result<Check> {
    let batch = &loaded.batch;
    let aggregate: Summary = match serde_json::from_str(aggregate_json) {
        Ok(s) => s,
        Err(e) => return Ok(Check::Fail(format!("stored aggregate unreadable: {e}"))),
    };
    let mut spots = spot_indices(batch.seed as u64, batch.runs, spot_checks);
    spots.retain(|&idx| done.covers(idx, batch.chunk_size));
    let spots = Arc::new(spots);
    let ranges = scan_ranges(batch.runs, parts, max_part_runs);
    let done = Arc::new(done);
    let scans = scan_all(store, loaded, &spots, &done, ranges, parts).await?;
    let (recomputed, spot_rows) = match fold(loaded, scans) {
        Ok(folded) => folded,
        Err(reason) => return Ok(Check::Fail(reason)),
    };
    // An aggregate summed before ties were counted is compared with the
    // rows summed the same way: exact too, since that is wins + tiebreaks.
    let recomputed = if aggregate.counts_ties() {
        recomputed
    } else {
        recomputed.without_tie_counts()
    };
    if recomputed != aggregate {
        return Ok(Check::Fail(differs(&aggregate, &recomputed)));
    }
    Ok(check_spots(loaded, &spots, &spot_rows))
}

/// The FAILURE reason for an aggregate that differs from its rows: the
/// run counts, and the tied runs when the run counts agree.
fn differs(aggregate: &Summary, rows: &Summary) -> String {
    let mut reason = format!(
        "aggregate differs from the per-run rows (aggregate counts {} runs, rows {}",
        aggregate.runs(),
        rows.runs()
    );
    if let (Some(a), Some(r)) = (aggregate.tied_runs(), rows.tied_runs())
        && a != r
    {
        reason.push_str(&format!("; tied runs: aggregate {a}, rows {r}"));
    }
    reason.push(')');
    reason
}

/// What one range's scan found: its summary and spot rows, or why the
/// batch fails.
type Scanned = std::result::Result<(Summary, BTreeMap<i64, Vec<i32>>), String>;

/// Scans `ranges`, `parts` at a time, each on its own task and store
/// connection; the results in range order.
async fn scan_all<S: Store>(
    store: &S,
    loaded: &LoadedBatch,
    spots: &Arc<Vec<i64>>,
    done: &Arc<Done>,
    ranges: Vec<Range<i64>>,
    parts: usize,
) -> Result<Vec<Scanned>> {
    let (batch_id, runs) = (loaded.batch.id, loaded.batch.runs);
    let mut pending = ranges.into_iter().enumerate();
    let mut tasks = tokio::task::JoinSet::new();
    let mut scans = Vec::new();
    loop {
        while tasks.len() < parts.max(1) {
            let Some((i, range)) = pending.next() else {
                break;
            };
            let store = store.clone();
            let empty = loaded.workload.empty_summary();
            let mut scan = Scan::new(range.clone(), runs, empty, spots.clone());
            scan.done = Some((done.clone(), loaded.batch.chunk_size));
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
        let joined = joined.map_err(|source| Error::Task {
            what: "verifier scan",
            source,
        })?;
        scans.push(joined?);
    }
    // In range order, so the reported gap is the batch's first.
    scans.sort_unstable_by_key(|(i, _)| *i);
    Ok(scans.into_iter().map(|(_, scanned)| scanned).collect())
}

/// The ranges' summaries merged into one, and their spot rows; or the
/// first range's reason to fail.
fn fold(loaded: &LoadedBatch, scans: Vec<Scanned>) -> Scanned {
    let mut recomputed = loaded.workload.empty_summary();
    let mut spot_rows = BTreeMap::new();
    for scanned in scans {
        let (summary, spots) = scanned?;
        recomputed
            .merge(&summary)
            .map_err(|e| format!("rows do not fold into one summary: {e}"))?;
        spot_rows.extend(spots);
    }
    Ok((recomputed, spot_rows))
}

/// Re-simulates the spot-check runs from the seed and compares them with
/// their stored rows.
fn check_spots(loaded: &LoadedBatch, spots: &[i64], spot_rows: &BTreeMap<i64, Vec<i32>>) -> Check {
    let (workload, seed) = (&loaded.workload, loaded.batch.seed as u64);
    let mut scratch = workload.scratch();
    let mut out = vec![0i32; workload.width()];
    for &idx in spots {
        workload.run(seed, idx as u64, &mut scratch, &mut out);
        match spot_rows.get(&idx) {
            Some(stored) if *stored == out => {}
            Some(stored) => {
                return Check::Fail(format!(
                    "run {idx} re-simulated from the seed gives {out:?}, stored row is {stored:?}"
                ));
            }
            None => return Check::Fail(format!("run {idx} has no stored row")),
        }
    }
    Check::Pass
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
    /// Which runs the aggregate covers, and the batch's chunk size; `None`
    /// is every run.
    done: Option<(Arc<Done>, i32)>,
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
            done: None,
        }
    }

    /// Whether run `idx` is one the aggregate covers.
    fn covers(&self, idx: i64) -> bool {
        self.done
            .as_ref()
            .is_none_or(|(done, size)| done.covers(idx, *size))
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
        if !self.covers(idx) {
            self.problem = Some(format!(
                "run {idx} has a row, but its chunk did not complete before the cancel"
            ));
            return;
        }
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
    fn finish(self, runs: i64) -> Scanned {
        if let Some(p) = self.problem {
            return Err(p);
        }
        let first = self.first;
        let gap = self.seen.zeroes().find(|&b| self.covers(first + b as i64));
        if let Some(gap) = gap {
            let end = self
                .seen
                .ones()
                .find(|&b| b > gap)
                .unwrap_or(self.seen.len());
            let missing = self
                .seen
                .zeroes()
                .filter(|&b| self.covers(first + b as i64))
                .count();
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
}
