//! Purging one batch from a store holding many (docs/operations.md,
//! "Retention"): `batches` finished batches of `runs` run rows each, rows
//! as wide as the default bingo event's, written as executors write them
//! (a claim, then one `COPY` and the completion in one commit per chunk).
//! Then one batch is purged; the figures are the purge's wall time and the
//! run rows' size on disk before and after. The rows' values are not
//! simulated: a purge does not read them.

use std::time::{Duration, Instant};
use store::prelude::*;

use serde::Serialize;
use store::{Claim, Completion, NewBatch, PgStore, Purge, RunRows, Uuid, Verdict};
use tokio::task::JoinSet;
use workload::{Workload, WorkloadSpec};

use crate::e2e::round3;
use crate::error::{Error, Result};
use crate::scenario::Bench;

/// What the purge measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PurgeResult {
    pub batches: usize,
    pub runs_per_batch: i64,
    /// Values per run row (the default bingo event's outcome width).
    pub width: usize,
    /// Writing every batch's rows.
    pub fill_s: f64,
    pub fill_rows_per_s: f64,
    /// `batchline purge` of one batch: its rows, chunks, aggregate and
    /// verdict, and its partition dropped.
    pub purge_s: f64,
    /// The run rows on disk (tables and indexes) before and after.
    pub bytes_before: i64,
    pub bytes_after: i64,
    pub bytes_per_run: f64,
}

/// Chunk size of the filled batches, and how many chunks go in at once.
const CHUNK: i32 = 50_000;
const WRITERS: usize = 2;

pub async fn run(
    bench: &Bench,
    batches: usize,
    runs: i64,
    timeout: Duration,
) -> Result<PurgeResult> {
    let measured = bench.in_scenario("purge", async |s| {
        let store = s.store()?.clone();
        tokio::time::timeout(timeout, measure(&store, batches, runs))
            .await
            .map_err(|_| Error::Measure(format!("purge bench not done after {timeout:?}")))?
    });
    let (result, _stages) = measured.await?;
    Ok(result)
}

async fn measure(store: &PgStore, batches: usize, runs: i64) -> Result<PurgeResult> {
    let width = Workload::new(&WorkloadSpec::bingo_default())?.width();
    let fill = Instant::now();
    let mut ids = Vec::with_capacity(batches);
    for i in 0..batches {
        ids.push(fill_batch(store, i, runs, width).await?);
    }
    let fill_s = fill.elapsed().as_secs_f64();
    let bytes_before = store.run_rows_bytes().await?;

    let victim = ids[batches / 2];
    let start = Instant::now();
    let purged = store.purge_batch(victim, false).await?;
    let purge_s = start.elapsed().as_secs_f64();
    if purged != Purge::Purged {
        return Err(Error::Measure(format!("purge answered {purged:?}")));
    }
    let bytes_after = store.run_rows_bytes().await?;
    let rows = batches as f64 * runs as f64;
    Ok(PurgeResult {
        batches,
        runs_per_batch: runs,
        width,
        fill_s: round3(fill_s),
        fill_rows_per_s: (rows / fill_s.max(1e-9)).round(),
        purge_s: round3(purge_s),
        bytes_before,
        bytes_after,
        bytes_per_run: ((bytes_before as f64 / rows) * 10.0).round() / 10.0,
    })
}

/// One finished batch: every chunk completed with its rows, an aggregate
/// and a verdict.
async fn fill_batch(store: &PgStore, i: usize, runs: i64, width: usize) -> Result<Uuid> {
    let batch = NewBatch {
        id: Uuid::new_v4(),
        name: format!("bench-purge-{i}"),
        workload: serde_json::to_string(&WorkloadSpec::Sum)?,
        seed: 1,
        runs,
        chunk_size: CHUNK,
        share: Default::default(),
    };
    store.create_batches(std::slice::from_ref(&batch)).await?;
    let chunks = batch.chunks();
    let mut writers = JoinSet::new();
    for first in 0..WRITERS {
        let (store, batch) = (store.clone(), batch.clone());
        writers.spawn(async move {
            for chunk in (first as i32..chunks).step_by(WRITERS) {
                complete(&store, &batch, chunk, width).await?;
            }
            Ok::<_, Error>(())
        });
    }
    while let Some(done) = writers.join_next().await {
        done.map_err(|_| Error::Panicked("a purge-bench writer"))??;
    }
    store.save_batch_result(batch.id, "{}", 0, None).await?;
    let verdict = Verdict {
        success: true,
        reason: String::new(),
        line: format!("SUCCESS [{}]", batch.name),
    };
    store.record_verdict(batch.id, &verdict).await?;
    Ok(batch.id)
}

async fn complete(store: &PgStore, batch: &NewBatch, chunk: i32, width: usize) -> Result<()> {
    let Claim::Claimed { attempt } = store
        .claim_chunk(batch.id, chunk, "bench", Duration::from_secs(600), 5)
        .await?
    else {
        return Err(Error::Measure(format!("chunk {chunk} not claimable")));
    };
    let first_run = i64::from(chunk) * i64::from(CHUNK);
    let n = (batch.runs - first_run).min(i64::from(CHUNK)) as usize;
    let rows = RunRows {
        first_run,
        width,
        values: (0..n * width).map(|v| (v % 97) as i32).collect(),
    };
    match store
        .complete_chunk(batch.id, chunk, attempt, &rows, "{}")
        .await?
    {
        Completion::Committed => Ok(()),
        Completion::Fenced => Err(Error::Measure(format!("chunk {chunk} fenced"))),
    }
}
