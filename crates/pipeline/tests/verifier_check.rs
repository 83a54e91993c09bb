//! The verifier's check on batches large enough to be scanned in several
//! run ranges at once: a gap in any range, or an aggregate that differs
//! from the rows, is a FAILURE; a complete batch passes. Runs against a
//! real (SQLite) store; the ranges are scanned on separate connections.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;
use store::prelude::*;

use pipeline::executor::simulate;
use pipeline::verifier::{Done, check, check_in_parts};
use pipeline::{Check, LoadedBatch};
use store::{Claim, NewBatch, SqliteStore, Store};
use uuid::Uuid;
use workload::{Workload, WorkloadSpec};

const RUNS: i64 = 120_000;
const CHUNK: i32 = 10_000;

/// Creates a sum batch, completes every chunk but `skip`, and returns it
/// with the aggregate of the completed chunks (as the aggregator stores it).
async fn batch_without(store: &SqliteStore, skip: Option<i32>) -> (LoadedBatch, String) {
    let spec = WorkloadSpec::Sum;
    let new = NewBatch {
        id: Uuid::new_v4(),
        name: format!("skip-{skip:?}"),
        workload: serde_json::to_string(&spec).unwrap(),
        seed: 7,
        runs: RUNS,
        chunk_size: CHUNK,
        share: Default::default(),
    };
    store
        .create_batches(std::slice::from_ref(&new))
        .await
        .unwrap();
    let batch = store.batch(new.id).await.unwrap().unwrap();
    let workload = Workload::new(&spec).unwrap();
    let mut total = workload.empty_summary();
    for chunk in (0..batch.chunks).filter(|c| Some(*c) != skip) {
        let Claim::Claimed { attempt } = store
            .claim_chunk(batch.id, chunk, "w", Duration::from_secs(60), 5)
            .await
            .unwrap()
        else {
            panic!("chunk {chunk} not claimable");
        };
        let (first, n) = batch.chunk_range(chunk);
        let (rows, summary) = simulate(&workload, 7, first, n, Duration::ZERO);
        store
            .complete_chunk(batch.id, chunk, attempt, &rows, "r")
            .await
            .unwrap();
        total.merge(&summary).unwrap();
    }
    let aggregate = serde_json::to_string(&total).unwrap();
    (LoadedBatch { batch, workload }, aggregate)
}

/// A migrated SQLite store in a fresh directory (removed with the guard).
async fn sqlite() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("v.db")).await.unwrap();
    store.migrate().await.unwrap();
    (dir, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_scanned_concurrently_find_gaps_anywhere() {
    let (_dir, store) = sqlite().await;

    let (whole, aggregate) = batch_without(&store, None).await;
    assert_eq!(
        check(&store, &whole, &aggregate, Done::All, 5, 2)
            .await
            .unwrap(),
        Check::Pass
    );
    // The same batch, the aggregate of one run short: the rows disagree.
    let mut short = whole.workload.empty_summary();
    let (rows, _) = simulate(&whole.workload, 7, 0, RUNS - 1, Duration::ZERO);
    for i in 0..rows.len() {
        short.add(rows.row(i)).unwrap();
    }
    let short = serde_json::to_string(&short).unwrap();
    let err = check(&store, &whole, &short, Done::All, 5, 2)
        .await
        .unwrap()
        .failure();
    assert!(err.starts_with("aggregate differs"), "{err}");

    // A chunk missing from the first range, then from the last (open) one.
    for (skip, want) in [
        (3, "runs 30000..40000 missing"),
        (11, "runs 110000..120000 missing"),
    ] {
        let (gap, aggregate) = batch_without(&store, Some(skip)).await;
        let err = check(&store, &gap, &aggregate, Done::All, 5, 2)
            .await
            .unwrap()
            .failure();
        assert!(err.starts_with(want), "skip {skip}: {err}");
    }
}

/// Batches larger than one part's bitset are scanned in more parts than
/// there are cores, two at a time: a gap in a middle part is still found,
/// and a complete batch still passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_parts_than_cores_are_scanned_a_few_at_a_time() {
    let (_dir, store) = sqlite().await;
    // 12 parts of 10,000 runs, 2 at a time.
    let (whole, aggregate) = batch_without(&store, None).await;
    assert_eq!(
        check_in_parts(&store, &whole, &aggregate, Done::All, 5, 2, 10_000)
            .await
            .unwrap(),
        Check::Pass
    );
    let (gap, aggregate) = batch_without(&store, Some(7)).await;
    let err = check_in_parts(&store, &gap, &aggregate, Done::All, 5, 2, 10_000)
        .await
        .unwrap()
        .failure();
    assert!(err.starts_with("runs 70000..80000 missing"), "{err}");
}

trait Failure {
    /// The reason of a failed check; a test failure when it passed.
    fn failure(self) -> String;
}

impl Failure for Check {
    fn failure(self) -> String {
        match self {
            Check::Fail(reason) => reason,
            Check::Pass => panic!("expected the check to fail"),
        }
    }
}
