//! Fair share (issue 20): how the pool is shared between batches that run
//! at the same time, on one pipeline (one executor with `--concurrency` =
//! cores, an aggregator, a verifier), in three steps:
//! - small beside big: a small bingo batch from submit to verdict alone,
//!   then submitted [`SMALL_AFTER`] after a big one started (the big one is
//!   cancelled once the small one has its verdict: only its head start
//!   matters, not its end);
//! - equal batches: two of the same size submitted together, their
//!   `runs_done` sampled from the store's queue view every [`SAMPLE`]; the
//!   largest relative gap once both are past the warm-up;
//! - weights: a weight-2 and a weight-1 batch submitted together (the
//!   weight-2 one twice as large, so both would end together), the ratio
//!   of the executor seconds charged to each while both run: from the
//!   first sample where both have [`RATIO_FROM_CHUNKS`] chunks done to the
//!   last before either ends (the one submitted first has a head start of
//!   the chunks the executor already held, which is not the share).
//!
//! The small batch's goal is "at most twice its time alone plus one
//! chunk": a new batch waits behind the chunks the executor holds and the
//! few the dispatcher keeps queued, then gets half the pool.

use std::time::{Duration, Instant};

use pipeline::submit::{SubmitRequest, submit};
use serde::Serialize;
use store::prelude::*;
use store::{PgStore, QueueView, Share, Uuid};
use workload::WorkloadSpec;

use crate::e2e::{Quiet, round3};
use crate::error::{Error, Result};
use crate::scenario::{Bench, Scenario};

/// Runs of the small batch, of the big one it shares the pool with, of
/// each equal batch, and of the weight-1 batch (the weight-2 one has
/// twice as many); `--quick` divides them by 10.
pub const SMALL_RUNS: i64 = 20_000;
pub const BIG_RUNS: i64 = 2_000_000;
pub const EQUAL_RUNS: i64 = 400_000;
pub const WEIGHT_1_RUNS: i64 = 200_000;
/// How long the big batch runs before the small one is submitted.
const SMALL_AFTER: Duration = Duration::from_secs(3);
/// How often the store's queue view is sampled.
const SAMPLE: Duration = Duration::from_millis(250);
/// How often Postgres is asked for a verdict.
const POLL: Duration = Duration::from_millis(25);
/// Equal batches: samples count once both batches have this many chunks
/// done, so that one chunk of difference (completions come a chunk at a
/// time) is at most a tenth.
const GAP_FROM_CHUNKS: i64 = 10;
/// Weights: the window starts once both batches have this many chunks
/// done (both are being served by then).
const RATIO_FROM_CHUNKS: i64 = 2;

/// What the section measured (keys in bench/README.md).
#[derive(Debug, Clone, Default, Serialize)]
pub struct FairnessResult {
    pub chunk_size: i32,
    pub concurrency: usize,
    /// The executor's `--chunks-in-flight` (`None`: its default, twice
    /// its concurrency).
    pub chunks_in_flight: Option<u16>,
    pub small_runs: i64,
    pub big_runs: i64,
    /// The small batch from submit to verdict, alone.
    pub small_alone_s: f64,
    /// The same, submitted while the big batch runs.
    pub small_shared_s: f64,
    /// Mean simulation time of one chunk (the executor's `simulate` phase
    /// over the small batch's chunks alone).
    pub chunk_s: f64,
    /// From the big batch's submit to the small one's.
    pub small_after_s: f64,
    /// The big batch's `runs_done` when the small one was submitted and
    /// when it got its verdict.
    pub big_runs_done_at_small_submit: i64,
    pub big_runs_done_at_small_verdict: i64,
    /// Queue view samples while the small batch ran beside the big one.
    pub shared_samples: Vec<SharedSample>,
    pub equal_runs: i64,
    /// Largest |a-b|/max(a,b) over the counted samples.
    pub equal_max_gap: Option<f64>,
    /// Largest |a-b| in chunks over the same samples.
    pub equal_max_gap_chunks: Option<f64>,
    pub equal_counted_samples: usize,
    /// `[seconds since submit, runs_done a, runs_done b]`.
    pub equal_samples: Vec<[f64; 3]>,
    /// Runs of the weight-2 and the weight-1 batch.
    pub weights_runs: [i64; 2],
    /// Executor seconds charged to the weight-2 batch over the weight-1
    /// one's while both ran: from the first sample where both had
    /// [`RATIO_FROM_CHUNKS`] chunks done to the last where neither was
    /// finished.
    pub weights_ratio: Option<f64>,
    /// The same in runs done.
    pub weights_runs_ratio: Option<f64>,
    /// The ratio of all executor seconds charged since the submits, at
    /// the last sample where neither was finished (the first submitted
    /// one's head start included).
    pub weights_ratio_cumulative: Option<f64>,
    /// Seconds since the submits of the window's first and last sample.
    pub weights_window_s: Option<[f64; 2]>,
    /// `[seconds since submit, runs_done w2, runs_done w1, executor_s w2, executor_s w1]`.
    pub weights_samples: Vec<[f64; 5]>,
    pub busy_before: Option<f64>,
    /// WARN / ERROR lines the stages logged.
    pub warnings: Vec<String>,
}

/// One look at the queue while the small batch shares the pool.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SharedSample {
    /// Seconds since the small batch's submit.
    pub t: f64,
    pub small_runs_done: i64,
    /// 1 = served next; `None` when the small batch is no longer listed.
    pub small_position: Option<usize>,
    pub small_chunks_queued: i64,
    pub small_chunks_running: i64,
    pub big_chunks_queued: i64,
    pub big_chunks_running: i64,
}

/// Sizes and settings of the section.
#[derive(Debug, Clone)]
pub struct FairnessSpec {
    /// Every size is divided by this (10 with `--quick`).
    pub divisor: i64,
    pub chunk_size: i32,
    pub concurrency: usize,
    /// The executor's `--chunks-in-flight` (its default when `None`).
    pub chunks_in_flight: Option<u16>,
    pub seed: i64,
    pub timeout: Duration,
    pub quiet: Quiet,
}

pub async fn run(bench: &Bench, spec: &FairnessSpec) -> Result<FairnessResult> {
    let (mut result, stages) = bench
        .in_scenario("fairness", async |s| measure(s, spec).await)
        .await?;
    for s in &stages {
        (result.warnings).extend(s.warnings.iter().map(|w| format!("{}: {w}", s.name)));
    }
    Ok(result)
}

async fn measure(s: &mut Scenario, spec: &FairnessSpec) -> Result<FairnessResult> {
    s.spawn("aggregator", &["aggregator".into()], "aggregator consuming")?;
    s.spawn("verifier", &["verifier".into()], "verifier consuming")?;
    let mut executor = vec![
        "executor".to_string(),
        "--concurrency".into(),
        spec.concurrency.to_string(),
    ];
    if let Some(n) = spec.chunks_in_flight {
        executor.extend(["--chunks-in-flight".into(), n.to_string()]);
    }
    s.spawn("executor-1", &executor, "executor consuming")?;
    s.wait_ready(Duration::from_secs(60))?;
    let (store, broker) = (s.store()?.clone(), s.broker()?.clone());
    let d = spec.divisor.max(1);
    let mut r = FairnessResult {
        chunk_size: spec.chunk_size,
        concurrency: spec.concurrency,
        chunks_in_flight: spec.chunks_in_flight,
        small_runs: SMALL_RUNS / d,
        big_runs: BIG_RUNS / d,
        equal_runs: EQUAL_RUNS / d,
        weights_runs: [2 * WEIGHT_1_RUNS / d, WEIGHT_1_RUNS / d],
        ..FairnessResult::default()
    };
    let request = |name: &str, runs: i64, count: usize, weight: f64, seed: i64| SubmitRequest {
        name: Some(name.to_owned()),
        runs,
        chunk_size: spec.chunk_size,
        seed: Some(seed),
        workload: WorkloadSpec::bingo_default(),
        count,
        share: Share {
            weight,
            ..Share::default()
        },
    };
    let submit_one = async |req: SubmitRequest| -> Result<Uuid> {
        let submitted = submit(&broker, &store, &req).await?;
        (submitted.batches.first().map(|b| b.id))
            .ok_or_else(|| Error::Measure("submit created no batch".into()))
    };

    // Warm-up: the store learns bingo's cost per run from it, so the
    // timed batches are dispatched on measured estimates.
    let warm = submit_one(request("fair-warm-up", r.small_runs, 1, 1.0, spec.seed)).await?;
    wait_verdict(s, &store, warm, Instant::now(), spec.timeout).await?;

    // The small batch alone.
    r.busy_before = spec.quiet.wait().await;
    let before = s.scrape("executor-1").await?;
    let start = Instant::now();
    let small = submit_one(request("fair-small-alone", r.small_runs, 1, 1.0, spec.seed)).await?;
    r.small_alone_s = round3(wait_verdict(s, &store, small, start, spec.timeout).await?);
    let after = s.scrape("executor-1").await?;
    let simulate = |m: &crate::metrics::StageMetrics| {
        m.phases
            .get("simulate")
            .map_or((0, 0.0), |p| (p.count, p.total_s))
    };
    let ((c0, s0), (c1, s1)) = (simulate(&before), simulate(&after));
    r.chunk_s = round3((s1 - s0) / (c1.saturating_sub(c0)).max(1) as f64);
    tracing::info!(
        secs = r.small_alone_s,
        chunk_s = r.chunk_s,
        "bench: fairness, small batch alone"
    );

    // The small batch beside the big one.
    let big_start = Instant::now();
    let big = submit_one(request("fair-big", r.big_runs, 1, 1.0, spec.seed + 1)).await?;
    tokio::time::sleep(SMALL_AFTER).await;
    r.big_runs_done_at_small_submit = runs_done(&store.queue().await?, big);
    let start = Instant::now();
    r.small_after_s = round3((start - big_start).as_secs_f64());
    let small = submit_one(request(
        "fair-small-shared",
        r.small_runs,
        1,
        1.0,
        spec.seed,
    ))
    .await?;
    let mut next_sample = Instant::now();
    let shared = loop {
        if let Some(secs) = verdict_after(&store, small, start).await? {
            break secs;
        }
        if Instant::now() >= next_sample {
            let q = store.queue().await?;
            r.shared_samples
                .push(shared_sample(&q, small, big, start.elapsed()));
            next_sample += SAMPLE;
        }
        give_up_after(start, spec.timeout, "the small batch beside the big one")?;
        s.check_alive()?;
        tokio::time::sleep(POLL).await;
    };
    r.small_shared_s = round3(shared);
    r.big_runs_done_at_small_verdict = runs_done(&store.queue().await?, big);
    tracing::info!(
        secs = r.small_shared_s,
        alone_s = r.small_alone_s,
        big_runs_done = r.big_runs_done_at_small_verdict,
        "bench: fairness, small batch beside the big one; cancelling the big one"
    );
    pipeline::cancel::cancel(&store, Some(&broker), &[big], "bench: fairness").await?;
    wait_verdict(s, &store, big, Instant::now(), spec.timeout).await?;

    // Two equal batches submitted together (one submit, count 2).
    let submitted = submit(
        &broker,
        &store,
        &request("fair-equal", r.equal_runs, 2, 1.0, spec.seed + 2),
    )
    .await?;
    let ids: Vec<Uuid> = submitted.batches.iter().map(|b| b.id).collect();
    let [a, b] = ids[..] else {
        return Err(Error::Measure(format!(
            "submit of two batches created {ids:?}"
        )));
    };
    let samples = sample_pair(s, &store, [a, b], [r.equal_runs; 2], spec.timeout).await?;
    r.equal_samples = (samples.iter())
        .map(|p| [round3(p.t), p.runs[0] as f64, p.runs[1] as f64])
        .collect();
    let from = GAP_FROM_CHUNKS * i64::from(spec.chunk_size);
    let gap = max_gap(&samples, from, [r.equal_runs; 2]);
    r.equal_max_gap = gap.map(|g| round3(g.relative));
    r.equal_max_gap_chunks = gap.map(|g| round3(g.runs as f64 / f64::from(spec.chunk_size)));
    r.equal_counted_samples = gap.map_or(0, |g| g.counted);
    tracing::info!(max_gap = ?r.equal_max_gap, samples = samples.len(), "bench: fairness, equal batches");
    wait_verdict(s, &store, a, Instant::now(), spec.timeout).await?;
    wait_verdict(s, &store, b, Instant::now(), spec.timeout).await?;

    // Weights 2 and 1 submitted together (two submits back to back).
    let [runs_2, runs_1] = r.weights_runs;
    let heavy = submit_one(request("fair-weight-2", runs_2, 1, 2.0, spec.seed + 4)).await?;
    let light = submit_one(request("fair-weight-1", runs_1, 1, 1.0, spec.seed + 5)).await?;
    let samples = sample_pair(s, &store, [heavy, light], r.weights_runs, spec.timeout).await?;
    r.weights_samples = (samples.iter())
        .map(|p| {
            [
                round3(p.t),
                p.runs[0] as f64,
                p.runs[1] as f64,
                round3(p.executor_s[0]),
                round3(p.executor_s[1]),
            ]
        })
        .collect();
    if let Some(last) = last_both_running(&samples, r.weights_runs) {
        r.weights_ratio_cumulative = ratio(last.executor_s[0], last.executor_s[1]).map(round3);
    }
    let from = RATIO_FROM_CHUNKS * i64::from(spec.chunk_size);
    if let Some(w) = window_ratio(&samples, from, r.weights_runs) {
        r.weights_ratio = Some(round3(w.executor_s));
        r.weights_runs_ratio = w.runs.map(round3);
        r.weights_window_s = Some([round3(w.from_s), round3(w.to_s)]);
    }
    tracing::info!(ratio = ?r.weights_ratio, runs_ratio = ?r.weights_runs_ratio, "bench: fairness, weights 2 and 1");
    wait_verdict(s, &store, heavy, Instant::now(), spec.timeout).await?;
    wait_verdict(s, &store, light, Instant::now(), spec.timeout).await?;
    Ok(r)
}

/// Waits for `batch`'s verdict (any); seconds since `start`.
async fn wait_verdict(
    s: &mut Scenario,
    store: &PgStore,
    batch: Uuid,
    start: Instant,
    timeout: Duration,
) -> Result<f64> {
    loop {
        if let Some(secs) = verdict_after(store, batch, start).await? {
            return Ok(secs);
        }
        give_up_after(start, timeout, "a verdict")?;
        s.check_alive()?;
        tokio::time::sleep(POLL).await;
    }
}

/// Seconds since `start` when `batch` has its verdict now.
async fn verdict_after(store: &PgStore, batch: Uuid, start: Instant) -> Result<Option<f64>> {
    let progress = store.progress(Some(batch), 1).await?;
    let p = (progress.first())
        .ok_or_else(|| Error::Measure(format!("batch {batch} is not in the store")))?;
    Ok(p.verdict.map(|_| start.elapsed().as_secs_f64()))
}

fn give_up_after(start: Instant, timeout: Duration, what: &str) -> Result<()> {
    if start.elapsed() > timeout {
        return Err(Error::Measure(format!("no {what} after {timeout:?}")));
    }
    Ok(())
}

/// `runs_done` of `batch` in the queue view (0 when not listed).
fn runs_done(q: &QueueView, batch: Uuid) -> i64 {
    q.batches
        .iter()
        .find(|b| b.id == batch)
        .map_or(0, |b| b.runs_done)
}

fn shared_sample(q: &QueueView, small: Uuid, big: Uuid, t: Duration) -> SharedSample {
    let find = |id: Uuid| q.batches.iter().find(|b| b.id == id);
    let (s, b) = (find(small), find(big));
    SharedSample {
        t: round3(t.as_secs_f64()),
        small_runs_done: s.map_or(0, |e| e.runs_done),
        small_position: s.map(|e| e.position),
        small_chunks_queued: s.map_or(0, |e| e.chunks_queued),
        small_chunks_running: s.map_or(0, |e| e.chunks_running),
        big_chunks_queued: b.map_or(0, |e| e.chunks_queued),
        big_chunks_running: b.map_or(0, |e| e.chunks_running),
    }
}

/// Two batches seen at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
struct PairSample {
    /// Seconds since sampling started.
    t: f64,
    runs: [i64; 2],
    executor_s: [f64; 2],
}

/// Samples both batches every [`SAMPLE`] until either has all its runs
/// done (or left the queue); the last sample is the first such one.
async fn sample_pair(
    s: &mut Scenario,
    store: &PgStore,
    ids: [Uuid; 2],
    runs: [i64; 2],
    timeout: Duration,
) -> Result<Vec<PairSample>> {
    let start = Instant::now();
    let mut samples = Vec::new();
    loop {
        let q = store.queue().await?;
        let mut sample = PairSample {
            t: start.elapsed().as_secs_f64(),
            runs,
            executor_s: [0.0; 2],
        };
        for (i, id) in ids.iter().enumerate() {
            if let Some(e) = q.batches.iter().find(|b| b.id == *id) {
                sample.runs[i] = e.runs_done;
                sample.executor_s[i] = e.executor_s;
            }
        }
        samples.push(sample);
        if sample.runs[0] >= runs[0] || sample.runs[1] >= runs[1] {
            return Ok(samples);
        }
        give_up_after(start, timeout, "end of either batch")?;
        s.check_alive()?;
        tokio::time::sleep(SAMPLE).await;
    }
}

/// The largest gap between two batches' progress.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Gap {
    /// |a-b| / max(a,b).
    relative: f64,
    /// |a-b| in runs at that sample.
    runs: i64,
    /// Samples looked at.
    counted: usize,
}

/// The largest relative gap |a-b|/max(a,b) over the samples where both
/// batches have at least `from` runs done and neither is finished
/// (`total` runs each); `None` without such a sample.
fn max_gap(samples: &[PairSample], from: i64, total: [i64; 2]) -> Option<Gap> {
    let counted: Vec<&PairSample> = (samples.iter())
        .filter(|p| p.runs[0] >= from && p.runs[1] >= from)
        .filter(|p| p.runs[0] < total[0] && p.runs[1] < total[1])
        .collect();
    let worst = counted.iter().max_by(|x, y| {
        let rel = |p: &PairSample| relative_gap(p.runs[0], p.runs[1]);
        rel(x).total_cmp(&rel(y))
    })?;
    Some(Gap {
        relative: relative_gap(worst.runs[0], worst.runs[1]),
        runs: (worst.runs[0] - worst.runs[1]).abs(),
        counted: counted.len(),
    })
}

fn relative_gap(a: i64, b: i64) -> f64 {
    let max = a.max(b);
    if max <= 0 {
        return 0.0;
    }
    (a - b).abs() as f64 / max as f64
}

/// The last sample where neither batch had all its runs done.
fn last_both_running(samples: &[PairSample], total: [i64; 2]) -> Option<&PairSample> {
    (samples.iter())
        .rev()
        .find(|p| p.runs[0] < total[0] && p.runs[1] < total[1])
}

/// The ratio of what two batches got between two samples.
#[derive(Debug, Clone, Copy, PartialEq)]
struct WindowRatio {
    executor_s: f64,
    runs: Option<f64>,
    from_s: f64,
    to_s: f64,
}

/// The first batch's executor seconds over the second's, counted from
/// the first sample where both have at least `from` runs done to the
/// last where neither is finished; `None` when that window is empty or
/// the second got nothing in it.
fn window_ratio(samples: &[PairSample], from: i64, total: [i64; 2]) -> Option<WindowRatio> {
    let first = (samples.iter()).find(|p| p.runs[0] >= from && p.runs[1] >= from)?;
    let last = last_both_running(samples, total)?;
    if last.t <= first.t {
        return None;
    }
    let used = |i: usize| last.executor_s[i] - first.executor_s[i];
    let done = |i: usize| (last.runs[i] - first.runs[i]) as f64;
    Some(WindowRatio {
        executor_s: ratio(used(0), used(1))?,
        runs: ratio(done(0), done(1)),
        from_s: first.t,
        to_s: last.t,
    })
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

/// Whether the small batch beside the big one met "at most twice its time
/// alone plus one chunk".
pub fn small_goal_met(alone_s: f64, shared_s: f64, chunk_s: f64) -> bool {
    shared_s <= 2.0 * alone_s + chunk_s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(a: i64, b: i64) -> PairSample {
        PairSample {
            t: a as f64,
            runs: [a, b],
            executor_s: [a as f64, b as f64],
        }
    }

    #[test]
    fn the_gap_counts_samples_past_the_warm_up_while_both_run() {
        let samples = [
            pair(10, 0),       // warm-up: b has nothing yet
            pair(100, 80),     // 0.2
            pair(200, 190),    // 0.05
            pair(300, 330),    // 0.0909…
            pair(1_000, 600),  // a finished: not counted
            pair(1_000, 1000), // both finished
        ];
        let g = max_gap(&samples, 50, [1_000, 1_000]).unwrap();
        assert_eq!((g.relative, g.runs, g.counted), (0.2, 20, 3));
        let g = max_gap(&samples, 150, [1_000, 1_000]).unwrap();
        assert_eq!((g.runs, g.counted), (30, 2));
        assert!((g.relative - 30.0 / 330.0).abs() < 1e-12);
        assert_eq!(max_gap(&samples, 2_000, [1_000, 1_000]), None);
        assert_eq!(relative_gap(0, 0), 0.0);
    }

    #[test]
    fn the_weights_ratio_is_read_before_either_finishes() {
        let samples = [pair(0, 0), pair(40, 20), pair(90, 50), pair(100, 60)];
        let last = last_both_running(&samples, [100, 80]).unwrap();
        assert_eq!(last.runs, [90, 50]);
        assert_eq!(ratio(last.executor_s[0], last.executor_s[1]), Some(1.8));
        assert_eq!(ratio(1.0, 0.0), None);
        assert_eq!(last_both_running(&samples[3..], [100, 80]), None);
    }

    #[test]
    fn the_window_ratio_leaves_out_the_head_start() {
        let samples = [
            pair(0, 0),
            pair(60, 0),    // the first submitted runs alone
            pair(80, 20),   // window starts: both have 20
            pair(180, 70),  // 100 / 50 since
            pair(200, 100), // the first finished
        ];
        let w = window_ratio(&samples, 20, [200, 100]).unwrap();
        assert_eq!((w.executor_s, w.runs), (2.0, Some(2.0)));
        assert_eq!((w.from_s, w.to_s), (80.0, 180.0));
        // Cumulative at the same sample: 180 / 70.
        assert!(window_ratio(&samples, 80, [200, 100]).is_none());
    }

    #[test]
    fn the_small_goal_is_twice_alone_plus_a_chunk() {
        assert!(small_goal_met(1.0, 2.4, 0.4));
        assert!(!small_goal_met(1.0, 2.5, 0.4));
    }
}
