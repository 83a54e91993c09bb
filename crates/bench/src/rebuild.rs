//! The rebuild of a partition from Postgres: a partition whose earlier
//! owner is gone with its disk, `results` completed chunk results of an
//! open batch in the changelog, and an aggregator with an empty directory
//! that takes it over. The figure is its `changelog` phase (the changelog
//! read, decoded, appended and made durable), read from its `/metrics`.

use std::time::{Duration, Instant};
use store::prelude::*;

use broker::Broker;
use pipeline::messages::{ResultMsg, VERSION, nudge};
use serde::Serialize;
use store::{Claim, Completion, NewBatch, PgStore, RunRows, Uuid};
use tokio::task::JoinSet;

use workload::{Workload, WorkloadSpec};

use crate::e2e::{round1, round3};
use crate::error::{Error, Result};
use crate::scenario::{Bench, Scenario};

/// What the rebuild measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RebuildResult {
    /// Completed chunk results in the partition's changelog.
    pub results: i32,
    /// Results the take-over merged from the store (should equal `results`).
    pub merged: u64,
    /// The `changelog` phase: read from Postgres, decoded, appended, fsynced.
    pub changelog_s: f64,
    /// The whole take-over (`rebuild` phase of that partition): epoch,
    /// directory, changelog.
    pub take_over_s: f64,
    pub results_per_s: f64,
    /// Filling the changelog (claims and completions, one chunk at a time).
    pub fill_s: f64,
}

pub async fn run(bench: &Bench, results: i32, timeout: Duration) -> Result<RebuildResult> {
    let measured = bench.in_scenario("aggregator-rebuild", async |s| {
        measure(s, results, timeout).await
    });
    let (result, _stages) = measured.await?;
    Ok(result)
}

async fn measure(s: &mut Scenario, results: i32, timeout: Duration) -> Result<RebuildResult> {
    let store = s.store()?.clone();
    let partitions = store.partitions().await?;
    // Partition 0: a batch of 1-run chunks, all but the last completed, so
    // that it stays open.
    let id = (0..)
        .map(|_| Uuid::new_v4())
        .find(|id| store::partition::of(*id, partitions) == 0)
        .unwrap_or_default();
    let fill = Instant::now();
    fill_changelog(&store, id, results).await?;
    // An earlier owner, gone: the next take-over merges the changelog.
    store.take_partition(0, "bench-gone-replica").await?;
    let fill_s = fill.elapsed().as_secs_f64();

    s.spawn("aggregator", &["aggregator".into()], "aggregator consuming")?;
    s.wait_ready(Duration::from_secs(60))?;
    s.broker()?.publish(vec![nudge(0, "bench")?]).await?;
    let start = Instant::now();
    loop {
        let m = s.scrape("aggregator").await?;
        if let (Some(changelog), Some(rebuild)) =
            (m.phases.get("changelog"), m.phases.get("rebuild"))
            && changelog.count > 0
        {
            let merged = m
                .events
                .get("changelog_results_merged")
                .copied()
                .unwrap_or(0);
            // The other (empty) partitions' take-overs are in `rebuild`
            // too; theirs take milliseconds, and the changelog is in it.
            let take_over_s = rebuild.total_s / rebuild.count.max(1) as f64;
            return Ok(RebuildResult {
                results,
                merged,
                changelog_s: round3(changelog.total_s),
                take_over_s: round3(take_over_s.max(changelog.total_s)),
                results_per_s: round1(f64::from(results) / changelog.total_s.max(1e-9)),
                fill_s: round3(fill_s),
            });
        }
        if start.elapsed() > timeout {
            return Err(Error::Measure(format!(
                "partition 0 not rebuilt from the store after {timeout:?}"
            )));
        }
        s.check_alive()?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Chunks completed at once while filling (each completion is a commit).
const FILLERS: usize = 16;

/// Creates the batch and completes `results` of its chunks as executors
/// would: claim, then the run rows and the stored result in one commit.
async fn fill_changelog(store: &PgStore, id: Uuid, results: i32) -> Result<()> {
    let spec = WorkloadSpec::Sum;
    let batch = NewBatch {
        id,
        name: "bench-rebuild".into(),
        workload: serde_json::to_string(&spec)?,
        seed: 1,
        runs: i64::from(results) + 1,
        chunk_size: 1,
        share: Default::default(),
    };
    store.create_batches(std::slice::from_ref(&batch)).await?;
    let mut fillers = JoinSet::new();
    for first in 0..FILLERS {
        let (store, batch) = (store.clone(), batch.clone());
        let chunks: Vec<i32> = (0..results).skip(first).step_by(FILLERS).collect();
        fillers.spawn(async move { complete(&store, &batch, &chunks).await });
    }
    while let Some(done) = fillers.join_next().await {
        done.map_err(|_| Error::Panicked("a changelog filler"))??;
    }
    Ok(())
}

async fn complete(store: &PgStore, batch: &NewBatch, chunks: &[i32]) -> Result<()> {
    let workload = Workload::new(&WorkloadSpec::Sum)?;
    let mut scratch = workload.scratch();
    let lease = Duration::from_secs(600);
    for &chunk in chunks {
        let Claim::Claimed { attempt } = store
            .claim_chunk(batch.id, chunk, "bench", lease, 5)
            .await?
        else {
            return Err(Error::Measure(format!(
                "chunk {chunk} could not be claimed"
            )));
        };
        let mut summary = workload.empty_summary();
        let mut values = Vec::new();
        workload.run_range(1, chunk as u64, 1, &mut scratch, &mut values, &mut summary);
        let rows = RunRows {
            first_run: i64::from(chunk),
            width: values.len(),
            values,
        };
        let msg = ResultMsg {
            v: VERSION,
            batch_id: batch.id,
            name: batch.name.clone(),
            chunk,
            chunks: batch.chunks(),
            runs_total: batch.runs,
            runs: 1,
            summary,
        };
        let json = serde_json::to_string(&msg)?;
        if store
            .complete_chunk(batch.id, chunk, attempt, &rows, &json)
            .await?
            != Completion::Committed
        {
            return Err(Error::Measure(format!("chunk {chunk} not completed")));
        }
    }
    Ok(())
}
