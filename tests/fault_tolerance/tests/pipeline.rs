//! The pipeline's promises, each against the real binary and services:
//! the happy path (aggregate equal to an in-process computation), claim
//! races, duplicate results (in flight and late), terminal failure, poison
//! messages on every queue, and lease expiry after an executor died.

mod common;

use broker::{Queue, REASON_HEADER};
use common::*;
use fault_tolerance::{Stack, expected_summary};
use std::collections::BTreeMap;
use uuid::Uuid;
use workload::WorkloadSpec;

/// Drill 1: 3 bingo batches through 2 executors → 3 SUCCESS lines, each
/// aggregate equal to the same runs computed in this process.
#[test]
fn happy_path_aggregates_equal_an_in_process_computation() {
    let mut s = Stack::new();
    start_pipeline(&mut s, 2, &[]);
    let seed = 4242i64;
    let ids = s
        .submit("--runs 2400 --chunk-size 400 --seed 4242 --name happy --count 3 --workload bingo");
    assert_eq!(ids.len(), 3, "one id per batch");
    let verdicts = s.wait_for_verdicts(&ids, PATIENCE);
    for (i, (id, v)) in ids.iter().zip(&verdicts).enumerate() {
        assert!(v.success, "batch {i}: {}", v.line);
        assert_eq!(v.name, format!("happy-{}", i + 1));
        assert_eq!((v.runs, v.chunks), (Some(2400), Some(6)));
        s.assert_batch_exact(*id);
        let (stored_seed, runs, _) = s.batch_row(*id);
        assert_eq!(stored_seed, seed + i as i64, "batch i uses seed + i");
        let (summary, dups) = s.batch_result(*id).expect("aggregate stored");
        assert_eq!(
            summary,
            expected_summary(&WorkloadSpec::bingo_default(), seed + i as i64, runs as u64),
            "batch {i}: the stored aggregate differs from an in-process computation"
        );
        assert_eq!(Some(dups), v.duplicates_dropped);
    }
    assert_eq!(
        s.lines().len(),
        3,
        "exactly one line per batch: {:?}",
        s.lines()
    );
    // Both executors took part (round robin with prefetch 1).
    let workers = s.block_on(
        sqlx::query_scalar::<_, i64>("SELECT count(DISTINCT worker) FROM chunks")
            .fetch_one(s.pool()),
    );
    assert_eq!(workers.expect("count workers"), 2);
    s.assert_all_alive();
}

/// Two executors receive the same chunk at the same time (every work
/// message duplicated, the copies adjacent): one claim per chunk
/// (attempts = 1), one set of run rows; the loser acks without running.
#[test]
fn claim_race_between_two_executors_claims_each_chunk_once() {
    // Deep enough that the submit sends all 8 chunks at once.
    let mut s = Stack::with_env(&[("DISPATCH_DEPTH", "100")]);
    s.spawn("aggregator", "aggregator", &[]);
    s.spawn("verifier", "verifier", &[]);
    let ids = s.submit("--runs 3000 --chunk-size 375 --seed 7 --name race --workload sum");
    let batch = ids[0];
    // Replace the 8 work messages by adjacent pairs: c0 c0 c1 c1 …
    let originals = s.take(Queue::Work, 8, PATIENCE);
    let mut doubled = Vec::new();
    for d in &originals {
        let m = broker::Message::new(
            Queue::Work,
            d.msg_id.clone().expect("work messages carry a msg_id"),
            d.payload.clone(),
        );
        doubled.push(m.clone());
        doubled.push(m);
    }
    s.publish_all(doubled);
    // Slow chunks (~0.75 s), so both copies are in flight together.
    let slow = [("CONCURRENCY", "1"), ("SIMULATION_DELAY_MS", "2")];
    s.spawn("executor-1", "executor", &slow);
    s.spawn("executor-2", "executor", &slow);

    let v = s.wait_for_verdicts(&ids, PATIENCE);
    assert!(v[0].success, "{}", v[0].line);
    s.assert_batch_exact(batch);
    let chunks = s.chunks(batch);
    assert!(
        chunks.iter().all(|c| c.attempts == 1),
        "every chunk claimed exactly once: {chunks:?}"
    );
    s.wait_until("work and retry queues drained", PATIENCE, |s| {
        s.queue_depth(Queue::Work) == 0 && s.queue_depth(Queue::Retry) == 0
    });
    assert_eq!(s.queue_depth(Queue::DeadLetter), 0, "nothing dead-lettered");
    assert_eq!(s.lines_for(batch).len(), 1);
    s.assert_all_alive();
}

/// Results that arrive twice while the batch is in flight are counted once
/// and reported as duplicates_dropped; results that arrive after the batch
/// was finalized are dropped without a second verdict or a new state file.
#[test]
fn duplicate_results_in_flight_and_late_are_dropped() {
    // One partition: the sentinel behind the late results is in their queue.
    let mut s = Stack::with_env(&[("PARTITIONS", "1")]);
    s.spawn("executor-1", "executor", &[("CONCURRENCY", "1")]);
    s.spawn("executor-2", "executor", &[("CONCURRENCY", "1")]);
    s.spawn("verifier", "verifier", &[]);
    let ids = s.submit("--runs 2000 --chunk-size 250 --seed 11 --name dups --workload sum");
    let batch = ids[0];
    s.wait_until("all 8 chunks completed and published", PATIENCE, |s| {
        s.chunks(batch).iter().all(|c| c.status == "completed")
            && s.queue_depth(Queue::Results(0)) == 8
    });
    // Re-order the results: chunks 0..6 twice each, then chunk 7 once. The
    // batch completes only with chunk 7, so all 7 copies arrive in flight.
    let originals = s.take(Queue::Results(0), 8, PATIENCE);
    let stored: BTreeMap<i32, String> = s
        .chunks(batch)
        .into_iter()
        .map(|c| {
            (
                c.chunk,
                c.result.expect("completed chunks store their result"),
            )
        })
        .collect();
    assert_eq!(originals.len(), 8);
    let mut msgs = Vec::new();
    for (chunk, json) in stored.iter().filter(|(c, _)| **c != 7) {
        msgs.push(result_msg(&s, batch, *chunk, json));
        msgs.push(result_msg(&s, batch, *chunk, json));
    }
    msgs.push(result_msg(&s, batch, 7, &stored[&7]));
    s.publish_all(msgs);
    s.spawn("aggregator", "aggregator", &[]);
    let v = s.wait_for_verdicts(&ids, PATIENCE);
    assert!(v[0].success, "{}", v[0].line);
    assert_eq!(v[0].duplicates_dropped, Some(7), "{}", v[0].line);
    s.assert_batch_exact(batch);
    let (_, dups) = s.batch_result(batch).expect("aggregate");
    assert_eq!(dups, 7);

    // Late: every result once more, then a sentinel batch behind them in
    // the results queue (FIFO): when it is verified, they were processed.
    let late: Vec<_> = stored
        .iter()
        .map(|(chunk, json)| result_msg(&s, batch, *chunk, json))
        .collect();
    s.publish_all(late);
    let sentinel = s.submit("--runs 500 --chunk-size 250 --name sentinel --workload sum");
    let v2 = s.wait_for_verdicts(&sentinel, PATIENCE);
    assert!(v2[0].success, "{}", v2[0].line);
    assert_eq!(
        s.lines_for(batch).len(),
        1,
        "no second verdict: {:?}",
        s.lines()
    );
    assert!(
        !s.batch_csv(batch).exists(),
        "a late duplicate must not start a new state file"
    );
    assert_eq!(
        s.batch_result(batch).expect("aggregate").1,
        7,
        "aggregate untouched"
    );
    assert_eq!(s.queue_depth(Queue::DeadLetter), 0);
    s.assert_all_alive();
}

/// A chunk whose simulation always fails is tried MAX_ATTEMPTS (5) times,
/// then its batch gets FAILURE naming the chunk; the other batches succeed.
#[test]
fn terminal_failure_after_five_attempts_fails_only_its_batch() {
    let mut s = Stack::new();
    start_pipeline(&mut s, 2, &[("FAIL_CHUNKS", "doomed-2:3")]);
    let ids = s.submit("--runs 2000 --chunk-size 250 --name doomed --count 3 --workload sum");
    let v = s.wait_for_verdicts(&ids, PATIENCE);
    assert!(v[0].success, "{}", v[0].line);
    assert!(v[2].success, "{}", v[2].line);
    assert!(!v[1].success, "doomed-2 must fail: {}", v[1].line);
    assert_eq!(v[1].name, "doomed-2");
    let reason = v[1].reason.clone().unwrap_or_default();
    assert!(
        reason.contains("chunk 3"),
        "the reason names the chunk: {reason}"
    );
    let chunk3 = s
        .chunks(ids[1])
        .into_iter()
        .find(|c| c.chunk == 3)
        .expect("chunk 3");
    assert_eq!(
        (chunk3.status.as_str(), chunk3.attempts),
        ("failed", 5),
        "{chunk3:?}"
    );
    s.assert_batch_exact(ids[0]);
    s.assert_batch_exact(ids[2]);
    assert_eq!(s.lines().len(), 3, "{:?}", s.lines());
    s.assert_all_alive();
}

/// Drill 7 (poison): garbage, the wrong shape, an unknown version and an
/// unknown batch on each of work, results and verify each land in the
/// dead-letter queue with a reason; the workers live on and the batches
/// around the poison succeed.
#[test]
fn poison_messages_on_every_queue_are_dead_lettered_with_a_reason() {
    // One partition: the batches after the poison follow it in its queue.
    let mut s = Stack::with_env(&[("PARTITIONS", "1")]);
    start_pipeline(&mut s, 2, &[]);
    let before = s.submit("--runs 2000 --chunk-size 250 --name before --workload sum");

    let ghost = Uuid::new_v4();
    let poison: Vec<(Queue, &str, Vec<u8>)> = vec![
        (Queue::Work, "garbage", b"\xff\x00garbage".to_vec()),
        (Queue::Work, "shape", br#"{"v":1,"hello":1}"#.to_vec()),
        (
            Queue::Work,
            "version",
            format!(r#"{{"v":99,"batch_id":"{ghost}","chunk":0}}"#).into_bytes(),
        ),
        (Queue::Work, "unknown", work_msg(ghost, 0).payload),
        (Queue::Results(0), "garbage", b"\xff\x00garbage".to_vec()),
        (
            Queue::Results(0),
            "shape",
            br#"{"v":1,"batch_id":7}"#.to_vec(),
        ),
        (
            Queue::Results(0),
            "version",
            format!(r#"{{"v":99,"batch_id":"{ghost}","chunk":0,"shiny":true}}"#).into_bytes(),
        ),
        (Queue::Results(0), "unknown", result_for_unknown_batch()),
        (Queue::Verify, "garbage", b"not json at all".to_vec()),
        (
            Queue::Verify,
            "shape",
            br#"{"v":1,"kind":"party"}"#.to_vec(),
        ),
        (
            Queue::Verify,
            "version",
            format!(r#"{{"v":99,"kind":"aggregated","batch_id":"{ghost}"}}"#).into_bytes(),
        ),
        (Queue::Verify, "unknown", verify_msg(ghost).payload),
        // Well-formed, for a real batch, but inconsistent with it.
        (Queue::Work, "range", work_msg(before[0], 99).payload),
        (Queue::Results(0), "mismatch", mismatched_result(before[0])),
    ];
    for (queue, kind, payload) in &poison {
        s.publish(
            *queue,
            &format!("poison-{}-{kind}", queue.name()),
            payload.clone(),
        );
    }
    let after = s.submit("--runs 2000 --chunk-size 250 --name after --workload sum");
    let mut ids = before.clone();
    ids.extend(&after);
    let v = s.wait_for_verdicts(&ids, PATIENCE);
    assert!(v.iter().all(|v| v.success), "{v:?}");

    let dead = s.take(Queue::DeadLetter, poison.len(), PATIENCE);
    let mut by_id = BTreeMap::new();
    for d in &dead {
        let reason = d.header(REASON_HEADER).unwrap_or_default().to_string();
        assert!(!reason.is_empty(), "every dead letter has a reason: {d:?}");
        by_id.insert(d.msg_id.clone().unwrap_or_default(), reason);
    }
    for (queue, kind, _) in &poison {
        let id = format!("poison-{}-{kind}", queue.name());
        let reason = by_id
            .get(&id)
            .unwrap_or_else(|| panic!("{id} not dead-lettered; got {by_id:#?}"));
        let expect = match *kind {
            "garbage" => "JSON",
            "shape" => "invalid",
            "version" => "version 99",
            "range" => "out of range",
            "mismatch" => "does not match",
            _ => "unknown batch",
        };
        assert!(
            reason.contains(expect),
            "{id}: reason {reason:?} should mention {expect:?}"
        );
    }
    assert_eq!(
        s.queue_depth(Queue::DeadLetter),
        0,
        "only the poison was dead-lettered"
    );
    for id in &ids {
        s.assert_batch_exact(*id);
    }
    s.assert_all_alive();
}

/// Drill 7 (duplicates): a finished batch's work message, one of its
/// results and its verify message sent again: the work is not redone
/// (attempts stay 1), no second verdict line, no new state file.
#[test]
fn duplicates_on_every_queue_change_nothing() {
    // One partition: the sentinels follow the duplicates in their queue.
    let mut s = Stack::with_env(&[("PARTITIONS", "1")]);
    start_pipeline(&mut s, 2, &[]);
    let ids = s.submit("--runs 2000 --chunk-size 250 --name once --workload sum");
    let batch = ids[0];
    let v = s.wait_for_verdicts(&ids, PATIENCE);
    assert!(v[0].success, "{}", v[0].line);
    let before = s.batch_result(batch).expect("aggregate");

    let stored = s.chunks(batch);
    s.publish_all(vec![work_msg(batch, 0), work_msg(batch, 5)]);
    s.publish_all(vec![result_msg(
        &s,
        batch,
        1,
        stored[1].result.as_deref().expect("result"),
    )]);
    s.publish_all(vec![verify_msg(batch), legacy_verify_msg(batch, 99)]);
    // A terminal-failure message after the verdict changes nothing either.
    let failed = pipeline::messages::VerifyMsg::failed(batch, "late failure");
    s.publish(
        Queue::Verify,
        &failed.msg_id(),
        pipeline::messages::encode(&failed).expect("encodes"),
    );
    // Two sentinels in sequence: each queue is FIFO, and the second one is
    // submitted only after the first is verified, so every duplicate above
    // has been handled by then.
    for name in ["sentinel-1", "sentinel-2"] {
        let sid = s.submit(&format!(
            "--runs 500 --chunk-size 250 --name {name} --workload sum"
        ));
        let sv = s.wait_for_verdicts(&sid, PATIENCE);
        assert!(sv[0].success, "{}", sv[0].line);
    }
    assert_eq!(
        s.lines_for(batch).len(),
        1,
        "one verdict line: {:?}",
        s.lines()
    );
    assert!(
        s.chunks(batch).iter().all(|c| c.attempts == 1),
        "no chunk re-run"
    );
    s.assert_batch_exact(batch);
    assert_eq!(s.batch_result(batch), Some(before), "aggregate unchanged");
    assert!(!s.batch_csv(batch).exists(), "no state file resurrected");
    assert_eq!(s.queue_depth(Queue::DeadLetter), 0);
    s.assert_all_alive();
}

/// An executor that dies right after its claim (CRASH_POINTS=after_claim:1)
/// leaves a lease; when it expires another executor reclaims the chunk
/// (attempt 2) and the batch succeeds. (With the default prefetch of twice
/// the concurrency it may have claimed a second, waiting chunk just before
/// the abort: every chunk it claimed is reclaimed.)
#[test]
fn lease_expiry_after_an_executor_died_mid_claim() {
    let mut s = Stack::with_env(&[("LEASE_S", "3")]);
    s.spawn("aggregator", "aggregator", &[]);
    s.spawn("verifier", "verifier", &[]);
    s.spawn(
        "executor-doomed",
        "executor",
        &[("CONCURRENCY", "1"), ("CRASH_POINTS", "after_claim:1")],
    );
    wait_consumers(&mut s, Queue::Work, 1);
    let ids = s.submit("--runs 2000 --chunk-size 250 --name lease --workload sum");
    let batch = ids[0];
    let status = s.wait_exit("executor-doomed", PATIENCE);
    assert!(
        !status.success(),
        "the crash point aborts the process: {status}"
    );
    let claimed: Vec<_> = s
        .chunks(batch)
        .into_iter()
        .filter(|c| c.attempts > 0)
        .collect();
    assert!(
        (1..=2).contains(&claimed.len()) && claimed.iter().all(|c| c.status == "running"),
        "the dead executor left one or two running claims: {claimed:?}"
    );
    let orphans: Vec<i32> = claimed.iter().map(|c| c.chunk).collect();

    s.spawn("executor-2", "executor", &[("CONCURRENCY", "1")]);
    let v = s.wait_for_verdicts(&ids, PATIENCE);
    assert!(v[0].success, "{}", v[0].line);
    s.assert_batch_exact(batch);
    for c in s.chunks(batch) {
        if orphans.contains(&c.chunk) {
            assert!(c.attempts >= 2, "the orphaned chunk was reclaimed: {c:?}");
        } else {
            assert_eq!(c.attempts, 1, "{c:?}");
        }
    }
    assert!(s.is_alive("executor-2"));
}

/// The verifier checks the run rows themselves, not only the aggregate:
/// with the batches aggregated and the verifier not yet started, one
/// batch gets a run row stored twice and another loses one. Both are
/// FAILUREs naming the run; the untouched batch is a SUCCESS. (Postgres
/// keeps no unique key on run rows, so the verifier is what would see a
/// duplicate that got past the chunk fence.)
#[test]
fn tampered_run_rows_are_failures() {
    let mut s = Stack::new();
    s.spawn("executor-1", "executor", &[("CONCURRENCY", "2")]);
    s.spawn("aggregator", "aggregator", &[]);
    wait_consumers(&mut s, Queue::Work, 1);
    let ids = s.submit("--runs 1000 --chunk-size 250 --name tamper --count 3 --workload sum");
    s.wait_until("3 aggregates", PATIENCE, |s| {
        s.scalar("SELECT count(*) FROM batch_results", Uuid::nil()) == 3
    });
    let tamper = |sql: &str, batch: Uuid| {
        s.block_on(
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(batch)
                .execute(s.pool()),
        )
        .expect("tamper with run rows")
        .rows_affected()
    };
    let copied = tamper(
        "INSERT INTO run_results SELECT batch_id, run_index, outcome FROM run_results
         WHERE batch_id = $1 AND run_index = 17",
        ids[1],
    );
    let deleted = tamper(
        "DELETE FROM run_results WHERE batch_id = $1 AND run_index = 600",
        ids[2],
    );
    assert_eq!((copied, deleted), (1, 1));
    s.spawn("verifier", "verifier", &[]);
    let v = s.wait_for_verdicts(&ids, PATIENCE);
    assert!(v[0].success, "{}", v[0].line);
    assert!(!v[1].success, "{}", v[1].line);
    assert_eq!(v[1].reason.as_deref(), Some("run 17 stored more than once"));
    assert!(!v[2].success, "{}", v[2].line);
    let reason = v[2].reason.as_deref().unwrap_or_default();
    assert!(reason.starts_with("runs 600..601 missing"), "{reason}");
}

/// A chunk that takes longer than the lease is not taken away from a live
/// executor: with a 1-s lease and a sweeper every second, executor A needs
/// 2.5 s per chunk and holds a second one waiting behind it, while B is
/// idle and would reclaim any lease that ran out. A's renewals keep both:
/// every chunk completes on its first attempt, A's two by A.
#[test]
fn a_live_executor_keeps_chunks_longer_than_the_lease() {
    let mut s = Stack::with_env(&[("LEASE_S", "1"), ("SWEEP_INTERVAL_S", "1")]);
    s.spawn("aggregator", "aggregator", &[]);
    s.spawn("verifier", "verifier", &[]);
    s.spawn(
        "executor-a",
        "executor",
        &[
            ("CONCURRENCY", "1"),
            ("SIMULATION_DELAY_MS", "10"),
            ("WORKER_ID", "slow-a"),
        ],
    );
    wait_consumers(&mut s, Queue::Work, 1);
    s.spawn("executor-b", "executor", &[("CONCURRENCY", "1")]);
    wait_consumers(&mut s, Queue::Work, 2);
    let ids = s.submit("--runs 1500 --chunk-size 250 --name renew --workload sum");
    let v = s.wait_for_verdicts(&ids, PATIENCE);
    assert!(v[0].success, "{}", v[0].line);
    let chunks = s.chunks(ids[0]);
    assert!(
        chunks.iter().all(|c| c.attempts == 1),
        "a chunk was reclaimed: {chunks:#?}"
    );
    let by_a = s.scalar(
        "SELECT count(*) FROM chunks WHERE batch_id = $1 AND worker = 'slow-a'",
        ids[0],
    );
    assert!(by_a >= 1, "A completed none of its chunks");
    s.assert_batch_exact(ids[0]);
    s.assert_all_alive();
}
