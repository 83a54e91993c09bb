//! The conformance suite every [`Store`] must pass: one generic async fn per
//! case, instantiated for each backend by `conformance_tests!` in
//! `tests/postgres.rs` and `tests/sqlite.rs`.
//!
//! Leases are short (100 ms) and the tests sleep well past them; no test
//! asserts on how long anything took.

// Test helpers outside #[test] fns: clippy's allow-unwrap-in-tests misses them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ops::Range;
use std::time::Duration;

use store::{
    AttemptFailure, Batch, Cancel, ChunkRef, Claim, Completion, Error, Fence, NewBatch, Purge,
    RunRows, Saved, Share, Store, Uuid, Verdict, VerdictRecord, partition,
};

/// One `#[tokio::test]` per conformance case, each run through `$runner`
/// (which gives the case a fresh, empty, migrated store and cleans up).
#[macro_export]
macro_rules! conformance_tests {
    ($runner:ident) => {
        conformance_tests!($runner:
            batch_round_trip,
            claim_lease_reclaim_fence_complete,
            claim_unknown_chunk,
            renewed_lease_holds_off_other_claims,
            last_chunk_is_short_and_scans_cover_ranges,
            wide_chunk_in_bulk,
            complete_refuses_rows_outside_the_chunk,
            fail_until_exhausted,
            expired_lease_without_attempts_left_fails,
            batch_result_first_write_wins,
            verdict_first_write_wins_then_printed,
            republish_lost_dispatches,
            republish_expired_leases,
            stalled_batches,
            failed_batches_without_verdict,
            progress_counts,
            partitions_are_fixed_when_batches_exist,
            epochs_fence_a_partitions_earlier_owners,
            the_changelog_holds_the_open_batches_results,
            replicas_announce_themselves_with_what_they_own,
            a_restarted_replica_releases_what_its_name_owned,
            purge_removes_a_finished_batch_and_keeps_a_record,
            purge_refuses_a_running_batch_unless_forced,
            nothing_brings_a_purged_batch_back,
            batches_older_than_lists_by_finish,
            cancel_stops_a_running_batch_and_keeps_what_completed,
            cancel_twice_unknown_and_purged,
            cancel_refuses_a_final_batch,
            cancelled_unsealed_lists_what_the_owner_must_seal,
            dispatch_fills_the_queue_in_fair_order,
            dispatch_weighs_batches_and_tenants,
            dispatch_sends_cheap_chunks_together,
            charges_correct_the_estimate_and_learn_the_rate,
            undispatch_and_cancel_leave_nothing_queued,
            the_queue_shows_the_order_served,
        );
    };
    ($runner:ident: $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                $runner(common::$case).await;
            }
        )*
    };
}

const LEASE: Duration = Duration::from_millis(100);
const PAST_LEASE: Duration = Duration::from_millis(400);
const LONG: Duration = Duration::from_secs(3600);
const MAX: i32 = 5;

pub fn new_batch(name: &str, runs: i64, chunk_size: i32) -> NewBatch {
    NewBatch {
        id: Uuid::new_v4(),
        name: name.to_owned(),
        workload: r#"{"kind":"sum"}"#.to_owned(),
        seed: 42,
        runs,
        chunk_size,
        share: Default::default(),
    }
}

/// Deterministic outcomes, negative values included.
pub fn value(run: i64, k: usize) -> i32 {
    ((run * 31 + k as i64 * 7) % 1000 - 500) as i32
}

pub fn rows_for(batch: &Batch, chunk: i32, width: usize) -> RunRows {
    let (first_run, runs) = batch.chunk_range(chunk);
    let mut values = Vec::new();
    for run in first_run..first_run + runs {
        for k in 0..width {
            values.push(value(run, k));
        }
    }
    RunRows {
        first_run,
        width,
        values,
    }
}

async fn create<S: Store>(s: &S, name: &str, runs: i64, chunk_size: i32) -> Batch {
    let new = new_batch(name, runs, chunk_size);
    s.create_batches(std::slice::from_ref(&new)).await.unwrap();
    s.batch(new.id).await.unwrap().expect("batch just created")
}

/// All of a batch's rows, sorted by run (the store gives no order).
async fn scan<S: Store>(s: &S, id: Uuid) -> Vec<(i64, Vec<i32>)> {
    scan_range(s, id, 0..i64::MAX).await
}

async fn scan_range<S: Store>(s: &S, id: Uuid, runs: Range<i64>) -> Vec<(i64, Vec<i32>)> {
    let mut seen = Vec::new();
    s.scan_runs(id, runs, |run, values| seen.push((run, values.to_vec())))
        .await
        .unwrap();
    seen.sort();
    seen
}

/// Claims (must succeed) and completes a chunk with its proper rows.
async fn claim_and_complete<S: Store>(s: &S, batch: &Batch, chunk: i32) {
    let Claim::Claimed { attempt } = s
        .claim_chunk(batch.id, chunk, "w", LONG, MAX)
        .await
        .unwrap()
    else {
        panic!("chunk {chunk} not claimable");
    };
    let rows = rows_for(batch, chunk, 2);
    let done = s
        .complete_chunk(batch.id, chunk, attempt, &rows, &format!("r{chunk}"))
        .await
        .unwrap();
    assert_eq!(done, Completion::Committed);
}

async fn exhaust<S: Store>(s: &S, batch: &Batch, chunk: i32, error: &str) {
    let Claim::Claimed { attempt } = s.claim_chunk(batch.id, chunk, "w", LONG, 1).await.unwrap()
    else {
        panic!("chunk {chunk} not claimable");
    };
    let failed = s
        .fail_attempt(batch.id, chunk, attempt, 1, error)
        .await
        .unwrap();
    assert_eq!(failed, AttemptFailure::Exhausted { attempts: 1 });
}

pub async fn batch_round_trip<S: Store>(s: S) {
    let new = vec![new_batch("one", 25, 10), new_batch("two", 10, 10)];
    s.create_batches(&new).await.unwrap();
    let b = s.batch(new[0].id).await.unwrap().unwrap();
    assert_eq!(
        (
            b.id,
            b.name.as_str(),
            b.workload.as_str(),
            b.seed,
            b.runs,
            b.chunk_size,
            b.chunks
        ),
        (new[0].id, "one", new[0].workload.as_str(), 42, 25, 10, 3)
    );
    assert!(
        b.created_at > 1.6e9,
        "created_at is Unix seconds: {}",
        b.created_at
    );
    assert_eq!(s.batch(new[1].id).await.unwrap().unwrap().chunks, 1);
    assert_eq!(s.batch(Uuid::new_v4()).await.unwrap(), None);
    // A batch id is created once: a second insert fails the whole transaction.
    let again = vec![new_batch("three", 5, 5), new[0].clone()];
    assert!(s.create_batches(&again).await.is_err());
    assert_eq!(s.batch(again[0].id).await.unwrap(), None, "rolled back");
}

pub async fn claim_lease_reclaim_fence_complete<S: Store>(s: S) {
    let b = create(&s, "lease", 25, 10).await;
    assert_eq!(
        s.claim_chunk(b.id, 0, "w1", LEASE, MAX).await.unwrap(),
        Claim::Claimed { attempt: 1 }
    );
    match s.claim_chunk(b.id, 0, "w2", LEASE, MAX).await.unwrap() {
        Claim::Leased { remaining_s } => assert!(remaining_s > 0.0 && remaining_s <= 0.1 + 1e-3),
        other => panic!("expected Leased, got {other:?}"),
    }
    tokio::time::sleep(PAST_LEASE).await;
    assert_eq!(
        s.claim_chunk(b.id, 0, "w2", LONG, MAX).await.unwrap(),
        Claim::Claimed { attempt: 2 }
    );

    let rows = rows_for(&b, 0, 3);
    // The stale owner (attempt 1) is fenced and writes nothing.
    assert_eq!(
        s.complete_chunk(b.id, 0, 1, &rows, "stale").await.unwrap(),
        Completion::Fenced
    );
    assert!(scan(&s, b.id).await.is_empty());
    assert_eq!(s.chunk_results(b.id).await.unwrap(), vec![]);

    assert_eq!(
        s.complete_chunk(b.id, 0, 2, &rows, "fresh").await.unwrap(),
        Completion::Committed
    );
    let seen = scan(&s, b.id).await;
    assert_eq!(seen.len(), 10);
    for (i, (run, values)) in seen.iter().enumerate() {
        assert_eq!(*run, i as i64);
        assert_eq!(values.as_slice(), rows.row(i));
    }
    assert_eq!(
        s.claim_chunk(b.id, 0, "w3", LEASE, MAX).await.unwrap(),
        Claim::Completed {
            result: "fresh".into()
        }
    );
    // The same attempt retrying its commit (first answer lost) hears
    // Committed again and writes nothing more; the stale attempt is fenced.
    assert_eq!(
        s.complete_chunk(b.id, 0, 2, &rows, "fresh").await.unwrap(),
        Completion::Committed
    );
    assert_eq!(
        s.complete_chunk(b.id, 0, 1, &rows, "stale").await.unwrap(),
        Completion::Fenced
    );
    assert_eq!(scan(&s, b.id).await.len(), 10);
    assert_eq!(
        s.chunk_results(b.id).await.unwrap(),
        vec![(0, "fresh".to_owned())]
    );
}

pub async fn renewed_lease_holds_off_other_claims<S: Store>(s: S) {
    let b = create(&s, "renew", 20, 10).await;
    assert_eq!(
        s.claim_chunk(b.id, 0, "w1", LEASE, MAX).await.unwrap(),
        Claim::Claimed { attempt: 1 }
    );
    // Renewed past the first lease's end: another claim still finds it held.
    assert!(s.renew_lease(b.id, 0, 1, LONG).await.unwrap());
    tokio::time::sleep(PAST_LEASE).await;
    assert!(matches!(
        s.claim_chunk(b.id, 0, "w2", LEASE, MAX).await.unwrap(),
        Claim::Leased { .. }
    ));
    // Renewal cannot shorten anyone else's claim: only the holding attempt
    // renews; not a stale one, not on a chunk never claimed.
    assert!(!s.renew_lease(b.id, 0, 2, LEASE).await.unwrap());
    assert!(!s.renew_lease(b.id, 1, 1, LEASE).await.unwrap());
    // Once the renewals stop, the lease runs out and the chunk passes on.
    assert!(s.renew_lease(b.id, 0, 1, LEASE).await.unwrap());
    tokio::time::sleep(PAST_LEASE).await;
    assert_eq!(
        s.claim_chunk(b.id, 0, "w2", LONG, MAX).await.unwrap(),
        Claim::Claimed { attempt: 2 }
    );
    assert!(
        !s.renew_lease(b.id, 0, 1, LONG).await.unwrap(),
        "attempt 1 lost it"
    );
    assert_eq!(
        s.complete_chunk(b.id, 0, 2, &rows_for(&b, 0, 2), "r")
            .await
            .unwrap(),
        Completion::Committed
    );
    assert!(!s.renew_lease(b.id, 0, 2, LONG).await.unwrap(), "completed");
}

pub async fn claim_unknown_chunk<S: Store>(s: S) {
    let b = create(&s, "unknown", 10, 10).await;
    assert_eq!(
        s.claim_chunk(b.id, 1, "w", LEASE, MAX).await.unwrap(),
        Claim::NotFound
    );
    assert_eq!(
        s.claim_chunk(Uuid::new_v4(), 0, "w", LEASE, MAX)
            .await
            .unwrap(),
        Claim::NotFound
    );
    let rows = RunRows::default();
    assert_eq!(
        s.complete_chunk(Uuid::new_v4(), 0, 1, &rows, "x")
            .await
            .unwrap(),
        Completion::Fenced
    );
}

pub async fn last_chunk_is_short_and_scans_cover_ranges<S: Store>(s: S) {
    let b = create(&s, "short", 25, 10).await;
    // Completed out of order; the scan still comes back by run index.
    for chunk in [2, 0, 1] {
        claim_and_complete(&s, &b, chunk).await;
    }
    let seen = scan(&s, b.id).await;
    let runs: Vec<i64> = seen.iter().map(|(r, _)| *r).collect();
    assert_eq!(runs, (0..25).collect::<Vec<_>>());
    for (run, values) in &seen {
        assert_eq!(values, &vec![value(*run, 0), value(*run, 1)]);
    }
    // A range crossing chunk boundaries: exactly its runs; ranges past the
    // end or empty give nothing.
    assert_eq!(scan_range(&s, b.id, 7..21).await, seen[7..21].to_vec());
    for empty in [25..40, 9..9] {
        let mut n = 0;
        s.scan_runs(b.id, empty, |_, _| n += 1).await.unwrap();
        assert_eq!(n, 0);
    }
    assert_eq!(
        s.chunk_results(b.id).await.unwrap(),
        vec![(0, "r0".into()), (1, "r1".into()), (2, "r2".into())]
    );
}

pub async fn wide_chunk_in_bulk<S: Store>(s: S) {
    // More rows than one multi-row INSERT or one COPY message holds.
    let b = create(&s, "bulk", 2_345, 2_345).await;
    let Claim::Claimed { attempt } = s.claim_chunk(b.id, 0, "w", LONG, MAX).await.unwrap() else {
        panic!("not claimable");
    };
    let mut rows = rows_for(&b, 0, 7);
    rows.values[0] = i32::MIN;
    rows.values[1] = i32::MAX;
    assert_eq!(
        s.complete_chunk(b.id, 0, attempt, &rows, "bulk")
            .await
            .unwrap(),
        Completion::Committed
    );
    let seen = scan(&s, b.id).await;
    assert_eq!(seen.len(), 2_345);
    for (i, (run, values)) in seen.iter().enumerate() {
        assert_eq!((*run, values.as_slice()), (i as i64, rows.row(i)));
    }
}

pub async fn complete_refuses_rows_outside_the_chunk<S: Store>(s: S) {
    let b = create(&s, "bad rows", 25, 10).await;
    let Claim::Claimed { attempt } = s.claim_chunk(b.id, 1, "w", LONG, MAX).await.unwrap() else {
        panic!("not claimable");
    };
    let wrong_start = rows_for(&b, 0, 2);
    let too_few = RunRows {
        first_run: 10,
        width: 2,
        values: vec![1; 18],
    };
    for rows in [&wrong_start, &too_few] {
        let err = s
            .complete_chunk(b.id, 1, attempt, rows, "x")
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{err:?}");
        assert!(!err.can_be_retried());
    }
    // Nothing was written and the claim still stands.
    assert!(scan(&s, b.id).await.is_empty());
    assert!(matches!(
        s.claim_chunk(b.id, 1, "w2", LEASE, MAX).await.unwrap(),
        Claim::Leased { .. }
    ));
    assert_eq!(
        s.complete_chunk(b.id, 1, attempt, &rows_for(&b, 1, 2), "ok")
            .await
            .unwrap(),
        Completion::Committed
    );
}

pub async fn fail_until_exhausted<S: Store>(s: S) {
    let b = create(&s, "fail", 10, 10).await;
    for attempt in 1..=3 {
        assert_eq!(
            s.claim_chunk(b.id, 0, "w", LONG, 3).await.unwrap(),
            Claim::Claimed { attempt }
        );
        // A stale attempt number changes nothing.
        assert_eq!(
            s.fail_attempt(b.id, 0, attempt + 1, 3, "stale")
                .await
                .unwrap(),
            AttemptFailure::Fenced
        );
        let expected = if attempt < 3 {
            AttemptFailure::WillRetry { attempt }
        } else {
            AttemptFailure::Exhausted { attempts: 3 }
        };
        let error = format!("boom {attempt}");
        assert_eq!(
            s.fail_attempt(b.id, 0, attempt, 3, &error).await.unwrap(),
            expected
        );
        // A repeat (first answer lost) hears the same answer.
        assert_eq!(
            s.fail_attempt(b.id, 0, attempt, 3, &error).await.unwrap(),
            expected
        );
    }
    // Once a newer attempt claimed, the old one's repeat is fenced.
    assert_eq!(
        s.fail_attempt(b.id, 0, 1, 3, "boom 1").await.unwrap(),
        AttemptFailure::Fenced
    );
    assert_eq!(
        s.claim_chunk(b.id, 0, "w", LONG, 3).await.unwrap(),
        Claim::Failed {
            reason: "boom 3".into()
        }
    );
    assert_eq!(
        s.fail_attempt(b.id, 0, 3, 3, "again").await.unwrap(),
        AttemptFailure::Fenced
    );
    assert_eq!(
        s.complete_chunk(b.id, 0, 3, &rows_for(&b, 0, 1), "late")
            .await
            .unwrap(),
        Completion::Fenced
    );
}

pub async fn expired_lease_without_attempts_left_fails<S: Store>(s: S) {
    let b = create(&s, "expired", 10, 10).await;
    assert_eq!(
        s.claim_chunk(b.id, 0, "w", LEASE, 1).await.unwrap(),
        Claim::Claimed { attempt: 1 }
    );
    tokio::time::sleep(PAST_LEASE).await;
    let expected = Claim::Failed {
        reason: "lease expired after 1 attempts".into(),
    };
    assert_eq!(
        s.claim_chunk(b.id, 0, "w", LEASE, 1).await.unwrap(),
        expected
    );
    assert_eq!(
        s.claim_chunk(b.id, 0, "w", LEASE, 1).await.unwrap(),
        expected
    );
    let p = &s.progress(Some(b.id), 10).await.unwrap()[0];
    assert_eq!((p.running, p.failed), (0, 1));
    // The worker that lost its lease cannot complete any more.
    assert_eq!(
        s.complete_chunk(b.id, 0, 1, &rows_for(&b, 0, 1), "late")
            .await
            .unwrap(),
        Completion::Fenced
    );
}

pub async fn batch_result_first_write_wins<S: Store>(s: S) {
    let b = create(&s, "result", 10, 10).await;
    assert_eq!(s.batch_result(b.id).await.unwrap(), None);
    assert_eq!(
        s.save_batch_result(b.id, "first", 2, None).await.unwrap(),
        Saved::Saved
    );
    assert_eq!(
        s.save_batch_result(b.id, "second", 5, None).await.unwrap(),
        Saved::AlreadySaved
    );
    assert_eq!(
        s.batch_result(b.id).await.unwrap(),
        Some(("first".into(), 2))
    );
}

pub async fn verdict_first_write_wins_then_printed<S: Store>(s: S) {
    let b = create(&s, "verdict", 10, 10).await;
    let success = Verdict {
        success: true,
        reason: String::new(),
        line: format!(
            "SUCCESS [verdict] batch={} runs=10 chunks=1 duplicates_dropped=0",
            b.id
        ),
    };
    let failure = Verdict {
        success: false,
        reason: "late".into(),
        line: "FAILURE …".into(),
    };
    assert_eq!(s.verdict(b.id).await.unwrap(), None);
    assert_eq!(
        s.record_verdict(b.id, &success).await.unwrap(),
        VerdictRecord::New
    );
    assert_eq!(
        s.record_verdict(b.id, &failure).await.unwrap(),
        VerdictRecord::Existing {
            verdict: success.clone(),
            printed: false
        }
    );
    s.mark_verdict_printed(b.id).await.unwrap();
    s.mark_verdict_printed(b.id).await.unwrap();
    assert_eq!(
        s.record_verdict(b.id, &failure).await.unwrap(),
        VerdictRecord::Existing {
            verdict: success.clone(),
            printed: true
        }
    );
    assert_eq!(s.verdict(b.id).await.unwrap(), Some(success));
}

pub async fn republish_lost_dispatches<S: Store>(s: S) {
    let old = create(&s, "lost dispatch", 30, 10).await;
    let first_two: Vec<ChunkRef> = (0..2)
        .map(|chunk| ChunkRef {
            batch_id: old.id,
            chunk,
        })
        .collect();
    s.mark_published(&first_two).await.unwrap();
    // Chunk 1 is running under a live lease: not the sweeper's business;
    // chunk 2 was never dispatched: the dispatcher's.
    assert!(matches!(
        s.claim_chunk(old.id, 1, "w", LONG, MAX).await.unwrap(),
        Claim::Claimed { .. }
    ));
    assert_eq!(
        s.take_chunks_to_republish(LONG, LONG, 100).await.unwrap(),
        vec![],
        "too young"
    );

    let taken = s
        .take_chunks_to_republish(Duration::ZERO, LONG, 100)
        .await
        .unwrap();
    assert_eq!(
        taken,
        vec![ChunkRef {
            batch_id: old.id,
            chunk: 0
        }]
    );
    // Stamped: the next sweep within the grace skips it.
    assert_eq!(
        s.take_chunks_to_republish(Duration::ZERO, LONG, 100)
            .await
            .unwrap(),
        vec![]
    );

    // The limit bounds one sweep.
    let more = create(&s, "more", 50, 10).await;
    let all: Vec<ChunkRef> = (0..5)
        .map(|chunk| ChunkRef {
            batch_id: more.id,
            chunk,
        })
        .collect();
    s.mark_published(&all).await.unwrap();
    let first = s
        .take_chunks_to_republish(Duration::ZERO, LONG, 3)
        .await
        .unwrap();
    let second = s
        .take_chunks_to_republish(Duration::ZERO, LONG, 3)
        .await
        .unwrap();
    assert_eq!((first.len(), second.len()), (3, 2));
    let mut all: Vec<i32> = first.iter().chain(&second).map(|c| c.chunk).collect();
    all.sort_unstable();
    assert_eq!(all, vec![0, 1, 2, 3, 4]);
    assert!(first.iter().chain(&second).all(|c| c.batch_id == more.id));
}

pub async fn republish_expired_leases<S: Store>(s: S) {
    let b = create(&s, "expired leases", 20, 10).await;
    let all: Vec<ChunkRef> = (0..2)
        .map(|chunk| ChunkRef {
            batch_id: b.id,
            chunk,
        })
        .collect();
    s.mark_published(&all).await.unwrap();
    assert!(matches!(
        s.claim_chunk(b.id, 0, "w", LEASE, MAX).await.unwrap(),
        Claim::Claimed { .. }
    ));
    assert!(matches!(
        s.claim_chunk(b.id, 1, "w", LONG, MAX).await.unwrap(),
        Claim::Claimed { .. }
    ));
    let grace = Duration::from_secs(1);
    assert_eq!(
        s.take_chunks_to_republish(LONG, grace, 100).await.unwrap(),
        vec![],
        "lease not yet expired past the grace"
    );
    tokio::time::sleep(grace + PAST_LEASE * 2).await;
    let expected = vec![ChunkRef {
        batch_id: b.id,
        chunk: 0,
    }];
    assert_eq!(
        s.take_chunks_to_republish(LONG, grace, 100).await.unwrap(),
        expected
    );
    assert_eq!(
        s.take_chunks_to_republish(LONG, grace, 100).await.unwrap(),
        vec![]
    );
    tokio::time::sleep(grace + PAST_LEASE).await;
    assert_eq!(
        s.take_chunks_to_republish(LONG, grace, 100).await.unwrap(),
        expected,
        "still expired after the grace: taken again"
    );
}

pub async fn stalled_batches<S: Store>(s: S) {
    let done = create(&s, "done", 20, 10).await;
    let incomplete = create(&s, "incomplete", 20, 10).await;
    let judged = create(&s, "judged", 10, 10).await;
    for chunk in 0..2 {
        claim_and_complete(&s, &done, chunk).await;
    }
    claim_and_complete(&s, &incomplete, 0).await;
    claim_and_complete(&s, &judged, 0).await;
    let verdict = Verdict {
        success: false,
        reason: "x".into(),
        line: "FAILURE".into(),
    };
    s.record_verdict(judged.id, &verdict).await.unwrap();

    let deadline = Duration::from_secs(1);
    assert_eq!(
        s.take_stalled_batches(deadline, 10).await.unwrap(),
        vec![],
        "too fresh"
    );
    tokio::time::sleep(deadline + PAST_LEASE).await;
    assert_eq!(
        s.take_stalled_batches(deadline, 10).await.unwrap(),
        vec![(done.id, 1)]
    );
    assert_eq!(
        s.take_stalled_batches(deadline, 10).await.unwrap(),
        vec![],
        "just re-published"
    );
    tokio::time::sleep(deadline + PAST_LEASE).await;
    assert_eq!(
        s.take_stalled_batches(deadline, 10).await.unwrap(),
        vec![(done.id, 2)]
    );

    s.save_batch_result(done.id, "agg", 0, None).await.unwrap();
    tokio::time::sleep(deadline + PAST_LEASE).await;
    assert_eq!(
        s.take_stalled_batches(deadline, 10).await.unwrap(),
        vec![],
        "aggregated"
    );
}

pub async fn failed_batches_without_verdict<S: Store>(s: S) {
    let bad = create(&s, "bad", 30, 10).await;
    let good = create(&s, "good", 10, 10).await;
    exhaust(&s, &bad, 2, "disk on fire").await;
    exhaust(&s, &bad, 1, "out of memory").await;
    claim_and_complete(&s, &good, 0).await;

    let failed = s.failed_batches_without_verdict(10).await.unwrap();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, bad.id);
    assert!(
        failed[0].1.contains("chunk 1") && failed[0].1.contains("out of memory"),
        "reason names the first failed chunk and its error: {}",
        failed[0].1
    );
    let verdict = Verdict {
        success: false,
        reason: failed[0].1.clone(),
        line: "FAILURE".into(),
    };
    s.record_verdict(bad.id, &verdict).await.unwrap();
    assert_eq!(s.failed_batches_without_verdict(10).await.unwrap(), vec![]);
}

pub async fn progress_counts<S: Store>(s: S) {
    let older = create(&s, "older", 10, 10).await;
    // Distinct creation times for a stable newest-first order.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let b = create(&s, "mixed", 40, 10).await;
    assert!(matches!(
        s.claim_chunk(b.id, 0, "w", LONG, MAX).await.unwrap(),
        Claim::Claimed { .. }
    ));
    claim_and_complete(&s, &b, 1).await;
    exhaust(&s, &b, 2, "broken").await;

    let p = s.progress(Some(b.id), 10).await.unwrap();
    assert_eq!(p.len(), 1);
    let p = &p[0];
    assert_eq!(
        (p.id, p.name.as_str(), p.runs, p.chunks),
        (b.id, "mixed", 40, 4)
    );
    assert_eq!((p.pending, p.running, p.completed, p.failed), (1, 1, 1, 1));
    assert_eq!(p.attempts, 3);
    assert_eq!(
        (p.aggregated, p.verdict, &p.reason, p.finished_at),
        (false, None, &None, None)
    );
    assert_eq!(p.created_at, b.created_at);

    s.save_batch_result(b.id, "agg", 0, None).await.unwrap();
    let verdict = Verdict {
        success: false,
        reason: "chunk 2 failed: broken".into(),
        line: "FAILURE".into(),
    };
    s.record_verdict(b.id, &verdict).await.unwrap();
    let p = &s.progress(Some(b.id), 10).await.unwrap()[0];
    assert!(p.aggregated);
    assert_eq!(p.verdict, Some(false));
    assert_eq!(p.reason.as_deref(), Some("chunk 2 failed: broken"));
    assert!(p.finished_at.is_some_and(|t| t >= p.created_at));

    let ok = Verdict {
        success: true,
        reason: String::new(),
        line: "SUCCESS".into(),
    };
    s.record_verdict(older.id, &ok).await.unwrap();
    let all = s.progress(None, 10).await.unwrap();
    let ids: Vec<Uuid> = all.iter().map(|p| p.id).collect();
    assert_eq!(ids, vec![b.id, older.id], "newest first");
    assert_eq!(
        (all[1].verdict, all[1].reason.as_deref()),
        (Some(true), None)
    );
    assert_eq!((all[1].pending, all[1].attempts), (1, 0));
    assert_eq!(s.progress(None, 1).await.unwrap().len(), 1);
    assert_eq!(s.progress(Some(Uuid::new_v4()), 10).await.unwrap(), vec![]);
}

pub async fn partitions_are_fixed_when_batches_exist<S: Store>(s: S) {
    // A migrated store has the default count, and asking for it is a no-op.
    assert_eq!(s.partitions().await.unwrap(), partition::DEFAULT_PARTITIONS);
    assert_eq!(s.init_partitions(None).await.unwrap(), 16);
    // No batch yet: the count may still be chosen.
    assert_eq!(s.init_partitions(Some(4)).await.unwrap(), 4);
    assert!(matches!(
        s.init_partitions(Some(0)).await,
        Err(Error::Config { .. })
    ));
    s.create_batches(&[new_batch("fixed", 10, 10)])
        .await
        .unwrap();
    assert_eq!(s.init_partitions(Some(4)).await.unwrap(), 4);
    assert!(matches!(
        s.init_partitions(Some(8)).await,
        Err(Error::Config { .. })
    ));
    assert_eq!(s.partition_status().await.unwrap().len(), 4);
}

pub async fn epochs_fence_a_partitions_earlier_owners<S: Store>(s: S) {
    let b = new_batch("fenced", 10, 10);
    s.create_batches(std::slice::from_ref(&b)).await.unwrap();
    let p = partition::of(b.id, s.partitions().await.unwrap());
    let first = s.take_partition(p, "r1").await.unwrap();
    let second = s.take_partition(p, "r2").await.unwrap();
    assert_eq!(second.epoch, first.epoch + 1);
    assert!(!s.holds_partition(first).await.unwrap());
    assert!(s.holds_partition(second).await.unwrap());
    // The stale owner's aggregate changes nothing; the owner's is saved once.
    assert_eq!(
        s.save_batch_result(b.id, "stale", 1, Some(first))
            .await
            .unwrap(),
        Saved::Fenced
    );
    assert_eq!(s.batch_result(b.id).await.unwrap(), None);
    assert_eq!(
        s.save_batch_result(b.id, "owner", 2, Some(second))
            .await
            .unwrap(),
        Saved::Saved
    );
    assert_eq!(
        s.save_batch_result(b.id, "again", 3, Some(second))
            .await
            .unwrap(),
        Saved::AlreadySaved
    );
    assert_eq!(
        s.batch_result(b.id).await.unwrap(),
        Some(("owner".into(), 2))
    );
    // Hand-over causes: a taker that finds an owner that never let go is a
    // fail-over; one that let go says why.
    let info = |all: Vec<store::PartitionInfo>| all.into_iter().find(|i| i.partition == p).unwrap();
    let now = info(s.partition_status().await.unwrap());
    assert_eq!(now.owner.as_deref(), Some("r2"));
    assert_eq!(now.last_handover_cause.as_deref(), Some("failover"));
    assert!(!s.release_partition(first, "rebalance").await.unwrap());
    assert!(s.release_partition(second, "rebalance").await.unwrap());
    assert_eq!(info(s.partition_status().await.unwrap()).owner, None);
    let third = s.take_partition(p, "r1").await.unwrap();
    let now = info(s.partition_status().await.unwrap());
    assert_eq!(now.last_handover_cause.as_deref(), Some("rebalance"));
    assert_eq!((now.epoch, now.handovers), (third.epoch, 3));
    let other = (p + 1) % s.partitions().await.unwrap();
    let start = s.take_partition(other, "r1").await.unwrap();
    assert_eq!(
        start,
        Fence {
            partition: other,
            epoch: 1
        }
    );
    let started = info_of(&s, other).await;
    assert_eq!(started.last_handover_cause.as_deref(), Some("start"));
}

async fn info_of<S: Store>(s: &S, p: u16) -> store::PartitionInfo {
    s.partition_status()
        .await
        .unwrap()
        .into_iter()
        .find(|i| i.partition == p)
        .unwrap()
}

pub async fn the_changelog_holds_the_open_batches_results<S: Store>(s: S) {
    let count = s.partitions().await.unwrap();
    // Two batches in one partition (found by trying ids).
    let mut batches = Vec::new();
    let target = loop {
        let b = new_batch("log", 30, 10);
        let p = partition::of(b.id, count);
        if batches.iter().any(|(q, _): &(u16, NewBatch)| *q == p) {
            batches.push((p, b));
            break p;
        }
        batches.push((p, b));
    };
    let ours: Vec<NewBatch> = batches
        .into_iter()
        .filter(|(p, _)| *p == target)
        .map(|(_, b)| b)
        .collect();
    s.create_batches(&ours).await.unwrap();
    for b in &ours {
        let batch = s.batch(b.id).await.unwrap().unwrap();
        for chunk in [0, 2] {
            claim_and_complete(&s, &batch, chunk).await;
        }
    }
    let mut log = s.partition_changelog(target).await.unwrap();
    log.sort();
    let mut want: Vec<(Uuid, i32, String)> = ours
        .iter()
        .flat_map(|b| [(b.id, 0, "r0".to_owned()), (b.id, 2, "r2".to_owned())])
        .collect();
    want.sort();
    assert_eq!(log, want);
    assert!(
        s.partition_changelog((target + 1) % count)
            .await
            .unwrap()
            .is_empty()
    );
    // An aggregated batch leaves the changelog and waits for its verdict.
    s.save_batch_result(ours[0].id, "agg", 0, None)
        .await
        .unwrap();
    let log = s.partition_changelog(target).await.unwrap();
    assert!(log.iter().all(|(id, _, _)| *id == ours[1].id), "{log:?}");
    assert!(
        s.aggregated_without_verdict(LONG, 10)
            .await
            .unwrap()
            .is_empty()
    );
    tokio::time::sleep(PAST_LEASE).await;
    assert_eq!(
        s.aggregated_without_verdict(LEASE, 10).await.unwrap(),
        vec![ours[0].id]
    );
    // Taken once per deadline.
    assert!(
        s.aggregated_without_verdict(LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );
    tokio::time::sleep(PAST_LEASE).await;
    let verdict = Verdict {
        success: true,
        reason: String::new(),
        line: "SUCCESS".into(),
    };
    s.record_verdict(ours[0].id, &verdict).await.unwrap();
    assert!(
        s.aggregated_without_verdict(LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(info_of(&s, target).await.open_batches, 1);
}

pub async fn replicas_announce_themselves_with_what_they_own<S: Store>(s: S) {
    s.replica_heartbeat("r1").await.unwrap();
    s.replica_heartbeat("r2").await.unwrap();
    s.replica_heartbeat("r1").await.unwrap();
    s.take_partition(3, "r2").await.unwrap();
    s.take_partition(1, "r2").await.unwrap();
    let live = s.live_replicas(LONG).await.unwrap();
    let summary: Vec<(&str, Vec<u16>)> = live
        .iter()
        .map(|r| (r.replica.as_str(), r.partitions.clone()))
        .collect();
    assert_eq!(summary, vec![("r1", vec![]), ("r2", vec![1, 3])]);
    assert!(live.iter().all(|r| r.silent_s >= 0.0 && r.silent_s < 60.0));
    tokio::time::sleep(PAST_LEASE).await;
    assert!(s.live_replicas(LEASE).await.unwrap().is_empty());
}

pub async fn a_restarted_replica_releases_what_its_name_owned<S: Store>(s: S) {
    let old = s.take_partition(2, "r1").await.unwrap();
    s.take_partition(0, "r1").await.unwrap();
    s.take_partition(1, "r2").await.unwrap();
    assert_eq!(
        s.release_replica("r1", "restart").await.unwrap(),
        vec![0, 2]
    );
    let status = s.partition_status().await.unwrap();
    let owners: Vec<Option<&str>> = status.iter().map(|p| p.owner.as_deref()).collect();
    assert_eq!(owners[..3], [None, Some("r2"), None]);
    // Nothing else changed: the epochs stay, and the next owner's take
    // records why the last one let go.
    assert!(s.holds_partition(old).await.unwrap());
    s.take_partition(2, "r3").await.unwrap();
    let p2 = &s.partition_status().await.unwrap()[2];
    assert_eq!(p2.last_handover_cause.as_deref(), Some("restart"));
    assert!(s.release_replica("r1", "restart").await.unwrap().is_empty());
}

fn a_verdict(b: &Batch, success: bool) -> Verdict {
    Verdict {
        success,
        reason: String::new(),
        line: format!("SUCCESS [{}] batch={}", b.name, b.id),
    }
}

/// A batch of two chunks, both completed, aggregated and judged.
async fn finished<S: Store>(s: &S, name: &str) -> Batch {
    let b = create(s, name, 20, 10).await;
    claim_and_complete(s, &b, 0).await;
    claim_and_complete(s, &b, 1).await;
    s.save_batch_result(b.id, "agg", 0, None).await.unwrap();
    let v = a_verdict(&b, true);
    assert_eq!(
        s.record_verdict(b.id, &v).await.unwrap(),
        VerdictRecord::New
    );
    b
}

pub async fn purge_removes_a_finished_batch_and_keeps_a_record<S: Store>(s: S) {
    let gone = finished(&s, "gone").await;
    let kept = finished(&s, "kept").await;
    assert_eq!(s.purge_batch(gone.id, false).await.unwrap(), Purge::Purged);

    assert_eq!(s.batch(gone.id).await.unwrap(), None);
    assert!(scan(&s, gone.id).await.is_empty(), "run rows left");
    assert!(s.chunk_results(gone.id).await.unwrap().is_empty());
    assert_eq!(s.batch_result(gone.id).await.unwrap(), None);
    assert_eq!(s.verdict(gone.id).await.unwrap(), None);
    assert!(s.progress(Some(gone.id), 1).await.unwrap().is_empty());
    let record = s.purged_batch(gone.id).await.unwrap().expect("record");
    assert_eq!(
        (
            record.name.as_str(),
            record.runs,
            record.chunks,
            record.success
        ),
        ("gone", 20, 2, Some(true))
    );
    assert!(record.purged_at >= record.created_at);
    assert_eq!(
        s.purged_among(&[kept.id, gone.id]).await.unwrap(),
        vec![gone.id]
    );

    // The other batch lost nothing.
    assert_eq!(scan(&s, kept.id).await.len(), 20);
    assert_eq!(s.chunk_results(kept.id).await.unwrap().len(), 2);
    assert!(s.verdict(kept.id).await.unwrap().is_some());
    assert_eq!(s.purged_batch(kept.id).await.unwrap(), None);

    assert_eq!(
        s.purge_batch(gone.id, false).await.unwrap(),
        Purge::AlreadyPurged
    );
    assert_eq!(
        s.purge_batch(Uuid::new_v4(), true).await.unwrap(),
        Purge::Unknown
    );
    assert_eq!(s.finish_purges().await.unwrap(), 0);
}

pub async fn purge_refuses_a_running_batch_unless_forced<S: Store>(s: S) {
    let b = create(&s, "running", 20, 10).await;
    claim_and_complete(&s, &b, 0).await;
    // Aggregated but not judged yet: still running.
    s.save_batch_result(b.id, "agg", 0, None).await.unwrap();
    assert_eq!(s.purge_batch(b.id, false).await.unwrap(), Purge::Running);
    assert_eq!(
        scan(&s, b.id).await.len(),
        10,
        "a refused purge changed something"
    );
    assert!(s.batch(b.id).await.unwrap().is_some());
    assert_eq!(s.purge_batch(b.id, true).await.unwrap(), Purge::Purged);
    let record = s.purged_batch(b.id).await.unwrap().expect("record");
    assert_eq!(record.success, None);
}

pub async fn nothing_brings_a_purged_batch_back<S: Store>(s: S) {
    let b = create(&s, "late", 20, 10).await;
    // Chunk 0 is claimed by a worker still computing it when the batch is
    // purged by force; chunk 1 was never claimed.
    let Claim::Claimed { attempt } = s.claim_chunk(b.id, 0, "w", LONG, MAX).await.unwrap() else {
        panic!("claimable");
    };
    assert_eq!(s.purge_batch(b.id, true).await.unwrap(), Purge::Purged);

    assert_eq!(
        s.complete_chunk(b.id, 0, attempt, &rows_for(&b, 0, 2), "late")
            .await
            .unwrap(),
        Completion::Fenced
    );
    assert!(!s.renew_lease(b.id, 0, attempt, LONG).await.unwrap());
    assert_eq!(
        s.fail_attempt(b.id, 0, attempt, MAX, "late").await.unwrap(),
        AttemptFailure::Fenced
    );
    assert_eq!(
        s.claim_chunk(b.id, 1, "w", LONG, MAX).await.unwrap(),
        Claim::Purged
    );
    assert_eq!(
        s.save_batch_result(b.id, "agg", 0, None).await.unwrap(),
        Saved::Purged
    );
    assert_eq!(
        s.record_verdict(b.id, &a_verdict(&b, true)).await.unwrap(),
        VerdictRecord::Purged
    );
    s.mark_published(&[ChunkRef {
        batch_id: b.id,
        chunk: 1,
    }])
    .await
    .unwrap();

    assert_eq!(s.batch(b.id).await.unwrap(), None);
    assert!(scan(&s, b.id).await.is_empty());
    assert_eq!(s.batch_result(b.id).await.unwrap(), None);
    assert_eq!(s.verdict(b.id).await.unwrap(), None);
    assert!(
        s.partition_changelog(partition::of(b.id, s.partitions().await.unwrap()))
            .await
            .unwrap()
            .is_empty()
    );
    // A claim of a chunk that never existed is still "not found".
    assert_eq!(
        s.claim_chunk(Uuid::new_v4(), 0, "w", LONG, MAX)
            .await
            .unwrap(),
        Claim::NotFound
    );
}

pub async fn batches_older_than_lists_by_finish<S: Store>(s: S) {
    let done = finished(&s, "done").await;
    let open = create(&s, "open", 10, 10).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fresh = finished(&s, "fresh").await;
    let old: Vec<Uuid> = s
        .batches_older_than(Duration::from_millis(200), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert!(old.contains(&done.id) && old.contains(&open.id), "{old:?}");
    assert!(!old.contains(&fresh.id));
    assert!(
        s.batches_older_than(Duration::from_secs(3600), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A batch of four chunks: 0 completed, 1 running under `attempt`, 2 and 3
/// pending.
async fn half_done<S: Store>(s: &S, name: &str) -> (Batch, i32) {
    let b = create(s, name, 40, 10).await;
    claim_and_complete(s, &b, 0).await;
    let Claim::Claimed { attempt } = s.claim_chunk(b.id, 1, "w", LONG, MAX).await.unwrap() else {
        panic!("claimable");
    };
    (b, attempt)
}

pub async fn cancel_stops_a_running_batch_and_keeps_what_completed<S: Store>(s: S) {
    let (b, attempt) = half_done(&s, "cancelled").await;
    let other = create(&s, "untouched", 20, 10).await;
    assert_eq!(
        s.cancel_batch(b.id, "by mistake").await.unwrap(),
        Cancel::Cancelled {
            chunks: 3,
            completed: 1
        }
    );

    // Pending and running chunks will never run; the completed one stays.
    for chunk in [1, 2, 3] {
        assert_eq!(
            s.claim_chunk(b.id, chunk, "w2", LONG, MAX).await.unwrap(),
            Claim::Cancelled,
            "chunk {chunk}"
        );
    }
    assert_eq!(
        s.claim_chunk(b.id, 0, "w2", LONG, MAX).await.unwrap(),
        Claim::Completed {
            result: "r0".into()
        }
    );
    // The attempt that was running is fenced everywhere.
    assert!(!s.renew_lease(b.id, 1, attempt, LONG).await.unwrap());
    assert_eq!(
        s.complete_chunk(b.id, 1, attempt, &rows_for(&b, 1, 2), "late")
            .await
            .unwrap(),
        Completion::Fenced
    );
    assert_eq!(
        s.fail_attempt(b.id, 1, attempt, MAX, "late").await.unwrap(),
        AttemptFailure::Fenced
    );
    assert_eq!(
        s.chunk_results(b.id).await.unwrap(),
        vec![(0, "r0".to_owned())]
    );
    let rows = scan(&s, b.id).await;
    assert_eq!(
        rows.iter().map(|(run, _)| *run).collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>(),
        "only the completed chunk's runs are stored"
    );

    let p = &s.progress(Some(b.id), 1).await.unwrap()[0];
    assert!(p.cancelled);
    assert_eq!((p.pending, p.running, p.completed, p.failed), (0, 0, 1, 0));
    assert_eq!(p.verdict, None);
    let q = &s.progress(Some(other.id), 1).await.unwrap()[0];
    assert!(!q.cancelled);
    assert_eq!(q.pending, 2);
    assert!(matches!(
        s.claim_chunk(other.id, 0, "w", LONG, MAX).await.unwrap(),
        Claim::Claimed { .. }
    ));

    let found = s
        .cancelled_among(&[other.id, b.id, Uuid::new_v4()])
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0].id, found[0].reason.as_str()),
        (b.id, "by mistake")
    );
    assert!(found[0].at >= b.created_at);
}

pub async fn cancel_twice_unknown_and_purged<S: Store>(s: S) {
    let (b, _) = half_done(&s, "twice").await;
    assert!(matches!(
        s.cancel_batch(b.id, "first").await.unwrap(),
        Cancel::Cancelled { .. }
    ));
    assert_eq!(
        s.cancel_batch(b.id, "second").await.unwrap(),
        Cancel::AlreadyCancelled
    );
    // The second cancel changed nothing, not even the reason.
    let found = s.cancelled_among(&[b.id]).await.unwrap();
    assert_eq!(found[0].reason, "first");
    assert_eq!(
        s.cancel_batch(Uuid::new_v4(), "x").await.unwrap(),
        Cancel::Unknown
    );

    // A cancelled batch has no verdict, yet purges without force.
    assert_eq!(s.purge_batch(b.id, false).await.unwrap(), Purge::Purged);
    assert_eq!(s.cancel_batch(b.id, "x").await.unwrap(), Cancel::Purged);
    assert!(scan(&s, b.id).await.is_empty());
    assert!(s.cancelled_among(&[b.id]).await.unwrap().is_empty());
}

pub async fn cancel_refuses_a_final_batch<S: Store>(s: S) {
    // A verdict.
    let judged = finished(&s, "judged").await;
    assert!(matches!(
        s.cancel_batch(judged.id, "x").await.unwrap(),
        Cancel::Final { why } if why.contains("SUCCESS")
    ));
    // Every chunk completed, no verdict yet: it ends with its own.
    let done = create(&s, "done", 20, 10).await;
    claim_and_complete(&s, &done, 0).await;
    claim_and_complete(&s, &done, 1).await;
    assert!(matches!(
        s.cancel_batch(done.id, "x").await.unwrap(),
        Cancel::Final { why } if why.contains("every chunk completed")
    ));
    // A failed chunk: its FAILURE is on the way; nothing was rolled forward.
    let bad = create(&s, "bad", 30, 10).await;
    exhaust(&s, &bad, 1, "broken").await;
    assert!(matches!(
        s.cancel_batch(bad.id, "x").await.unwrap(),
        Cancel::Final { why } if why.contains("FAILURE")
    ));
    let p = &s.progress(Some(bad.id), 1).await.unwrap()[0];
    assert!(!p.cancelled);
    assert_eq!(
        (p.pending, p.failed),
        (2, 1),
        "the refused cancel rolled back"
    );
    assert!(matches!(
        s.claim_chunk(bad.id, 0, "w", LONG, MAX).await.unwrap(),
        Claim::Claimed { .. }
    ));
    assert!(
        s.cancelled_among(&[judged.id, done.id, bad.id])
            .await
            .unwrap()
            .is_empty()
    );
    // Still not purgeable without force: no verdict and not cancelled.
    assert_eq!(s.purge_batch(done.id, false).await.unwrap(), Purge::Running);
}

pub async fn cancelled_unsealed_lists_what_the_owner_must_seal<S: Store>(s: S) {
    let n = s.partitions().await.unwrap();
    let (b, _) = half_done(&s, "seal me").await;
    let p = partition::of(b.id, n);
    assert!(!s.cancelled_unsealed(p).await.unwrap().contains(&b.id));
    s.cancel_batch(b.id, "x").await.unwrap();
    assert!(s.cancelled_unsealed(p).await.unwrap().contains(&b.id));
    for other in (0..n).filter(|&q| q != p) {
        assert!(!s.cancelled_unsealed(other).await.unwrap().contains(&b.id));
    }
    // Sealed: its partial aggregate is saved.
    s.save_batch_result(b.id, "partial", 0, None).await.unwrap();
    assert!(!s.cancelled_unsealed(p).await.unwrap().contains(&b.id));
}

/// Creates a batch of `chunks` chunks of 10 runs with this tenant and weight.
async fn create_shared<S: Store>(
    s: &S,
    name: &str,
    chunks: i64,
    tenant: &str,
    weight: f64,
) -> Uuid {
    let new = NewBatch {
        share: Share {
            tenant: tenant.to_owned(),
            weight,
        },
        ..new_batch(name, chunks * 10, 10)
    };
    s.create_batches(std::slice::from_ref(&new)).await.unwrap();
    new.id
}

fn charge(batch_id: Uuid, chunk: i32, seconds: f64) -> store::share::Charge {
    store::share::Charge {
        batch_id,
        chunk,
        seconds,
    }
}

fn batches_of(chunks: &[ChunkRef]) -> Vec<Uuid> {
    chunks.iter().map(|c| c.batch_id).collect()
}

pub async fn dispatch_fills_the_queue_in_fair_order<S: Store>(s: S) {
    let a = create_shared(&s, "a", 10, "t", 1.0).await;
    let b = create_shared(&s, "b", 10, "t", 1.0).await;
    let first = s.dispatch(4, 0.0, 100).await.unwrap();
    assert_eq!(
        batches_of(&first),
        vec![a, b, a, b],
        "equal batches alternate"
    );
    let numbers: Vec<i32> = first.iter().map(|c| c.chunk).collect();
    assert_eq!(numbers, vec![0, 0, 1, 1], "each batch's chunks in order");
    assert_eq!(
        s.dispatch(4, 0.0, 100).await.unwrap(),
        vec![],
        "the queue is full"
    );
    // Two leave the queue: two more go out, the queue stays at four.
    for c in &first[..2] {
        assert!(matches!(
            s.claim_chunk(c.batch_id, c.chunk, "w", LONG, MAX)
                .await
                .unwrap(),
            Claim::Claimed { .. }
        ));
    }
    let next = s.dispatch(4, 0.0, 100).await.unwrap();
    assert_eq!(batches_of(&next), vec![a, b]);
    assert_eq!(
        s.dispatch(100, 0.0, 3).await.unwrap().len(),
        3,
        "the limit bounds one dispatch"
    );
    // Everything out: nothing more to dispatch, however deep the queue.
    let rest = s.dispatch(100, 0.0, 100).await.unwrap();
    assert_eq!(rest.len(), 20 - 4 - 2 - 3);
    assert_eq!(s.dispatch(100, 0.0, 100).await.unwrap(), vec![]);
}

pub async fn dispatch_sends_cheap_chunks_together<S: Store>(s: S) {
    // Chunks of 10 runs at the unmeasured 25 µs: 0.25 ms each.
    let a = create_shared(&s, "cheap", 20, "t", 1.0).await;
    let ahead = 0.0019;
    let first = s.dispatch(1, ahead, 100).await.unwrap();
    assert_eq!(
        first.len(),
        8,
        "1.9 ms of work, though the depth is one chunk"
    );
    assert_eq!(
        s.dispatch(1, ahead, 100).await.unwrap(),
        vec![],
        "more than half of it waits"
    );
    for c in &first[..5] {
        s.claim_chunk(a, c.chunk, "w", LONG, MAX).await.unwrap();
    }
    // 0.75 ms left: refilled up to 1.9 ms.
    assert_eq!(s.dispatch(1, ahead, 100).await.unwrap().len(), 5);
}

pub async fn dispatch_weighs_batches_and_tenants<S: Store>(s: S) {
    let heavy = create_shared(&s, "heavy", 100, "t", 2.0).await;
    let light = create_shared(&s, "light", 100, "t", 1.0).await;
    let other = create_shared(&s, "other tenant", 100, "u", 1.0).await;
    let out = s.dispatch(60, 0.0, 60).await.unwrap();
    let count = |id: Uuid| out.iter().filter(|c| c.batch_id == id).count();
    // Tenants half and half; inside t, 2:1.
    assert_eq!((count(heavy), count(light), count(other)), (20, 10, 30));
}

pub async fn charges_correct_the_estimate_and_learn_the_rate<S: Store>(s: S) {
    let a = create_shared(&s, "a", 10, "t", 1.0).await;
    let b = create_shared(&s, "b", 10, "t", 1.0).await;
    let workload = s.batch(a).await.unwrap().unwrap().workload;
    assert_eq!(s.seconds_per_run(&workload).await.unwrap(), None);
    let first = s.dispatch(2, 0.0, 100).await.unwrap();
    assert_eq!(batches_of(&first), vec![a, b]);
    // a's chunk measured a hundred times b's: b is served until it caught up.
    s.charge(&[charge(a, 0, 1.0), charge(b, 0, 0.01)])
        .await
        .unwrap();
    let rate = s.seconds_per_run(&workload).await.unwrap().unwrap();
    assert!(rate > 0.0, "learned from the charges: {rate}");
    for c in &first {
        s.claim_chunk(c.batch_id, c.chunk, "w", LONG, MAX)
            .await
            .unwrap();
    }
    // b is 0.99 s behind, and a chunk is now estimated at 0.7 s (the learned rate).
    let next = s.dispatch(4, 0.0, 100).await.unwrap();
    assert_eq!(batches_of(&next), vec![b, b, a, b]);
    // A charge of a purged or unknown chunk changes nothing and is no error.
    s.charge(&[charge(Uuid::new_v4(), 0, 1.0)]).await.unwrap();
    s.charge(&[]).await.unwrap();
}

pub async fn undispatch_and_cancel_leave_nothing_queued<S: Store>(s: S) {
    let a = create_shared(&s, "a", 3, "t", 1.0).await;
    let out = s.dispatch(2, 0.0, 100).await.unwrap();
    assert_eq!(out.len(), 2);
    s.undispatch(&out).await.unwrap();
    // Given back: dispatched again, first chunk first.
    let again = s.dispatch(2, 0.0, 100).await.unwrap();
    assert_eq!(again, out);
    assert!(matches!(
        s.cancel_batch(a, "test").await.unwrap(),
        Cancel::Cancelled { .. }
    ));
    // Its queued chunks no longer count, and its waiting one never goes out.
    let b = create_shared(&s, "b", 3, "t", 1.0).await;
    assert_eq!(
        batches_of(&s.dispatch(2, 0.0, 100).await.unwrap()),
        vec![b, b]
    );
    assert!(s.queue().await.unwrap().batches.iter().all(|e| e.id != a));
}

pub async fn the_queue_shows_the_order_served<S: Store>(s: S) {
    let view = s.queue().await.unwrap();
    assert_eq!(view.batches, vec![]);
    assert_eq!(view.executor_threads, 0);
    s.executor_heartbeat("e1", 2).await.unwrap();
    s.executor_heartbeat("e2", 1).await.unwrap();
    s.executor_heartbeat("e1", 2).await.unwrap();
    let a = create_shared(&s, "a", 10, "t", 1.0).await;
    let b = create_shared(&s, "b", 10, "t", 4.0).await;
    let out = s.dispatch(3, 0.0, 100).await.unwrap();
    let c = out[0];
    s.claim_chunk(c.batch_id, c.chunk, "w", LONG, MAX)
        .await
        .unwrap();
    let view = s.queue().await.unwrap();
    assert_eq!(view.executor_threads, 3);
    assert_eq!(view.chunks_running, 1);
    let ids: Vec<Uuid> = view.batches.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), 2);
    let entry = |id: Uuid| view.batches.iter().find(|e| e.id == id).unwrap().clone();
    let (ea, eb) = (entry(a), entry(b));
    assert_eq!(
        (ea.priority.as_str(), eb.priority.as_str()),
        ("normal", "high")
    );
    assert_eq!(ea.chunks_waiting + ea.chunks_queued + ea.chunks_running, 10);
    assert_eq!(eb.chunks_waiting + eb.chunks_queued + eb.chunks_running, 10);
    assert_eq!(view.batches[0].position, 1);
    assert_eq!(
        ea.chunks_running + eb.chunks_running,
        1,
        "the claimed chunk runs"
    );
    assert!(
        ea.left_s.is_some() && eb.left_s.is_some(),
        "estimated with executors"
    );
}
