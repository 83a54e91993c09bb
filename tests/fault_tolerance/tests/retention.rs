//! Retention against the real binary and services (docs/operations.md,
//! "Retention"): purging races the pipeline — late duplicates, late work
//! and verify messages, a batch purged by force while it runs, the
//! sweepers, the verifier — and no batch that is not purged loses
//! anything, while a purged batch never comes back, not even in part; and
//! `RETENTION_DAYS` purges finished batches only.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;
use store::prelude::*;

use broker::Queue;
use common::*;
use fault_tolerance::Stack;
use store::NewBatch;
use uuid::Uuid;

/// Rows the store holds of `batch`, table by table (all 0 once purged),
/// and whether its run-row partition still exists.
fn remains(s: &Stack, batch: Uuid) -> BTreeMap<&'static str, i64> {
    let mut found = BTreeMap::new();
    for (table, sql) in [
        ("batches", "SELECT count(*) FROM batches WHERE id = $1"),
        ("chunks", "SELECT count(*) FROM chunks WHERE batch_id = $1"),
        (
            "batch_results",
            "SELECT count(*) FROM batch_results WHERE batch_id = $1",
        ),
        (
            "verdicts",
            "SELECT count(*) FROM verdicts WHERE batch_id = $1",
        ),
        (
            "run_results",
            "SELECT count(*) FROM run_results WHERE batch_id = $1",
        ),
        (
            "partition",
            "SELECT count(*) FROM pg_inherits
             WHERE inhrelid = to_regclass(quote_ident(run_results_partition($1)))",
        ),
    ] {
        found.insert(table, s.scalar(sql, batch));
    }
    found
}

fn assert_gone(s: &Stack, batch: Uuid, what: &str) {
    let left: BTreeMap<_, _> = remains(s, batch)
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect();
    assert!(left.is_empty(), "{what} {batch} came back: {left:?}");
    assert_eq!(
        s.scalar("SELECT count(*) FROM purged_batches WHERE id = $1", batch),
        1,
        "{what} {batch} has no purge record"
    );
}

fn stored_results(s: &Stack, batch: Uuid) -> Vec<broker::Message> {
    s.chunks(batch)
        .into_iter()
        .filter_map(|c| Some(result_msg(s, batch, c.chunk, &c.result?)))
        .collect()
}

/// What the named process of the stack logged (its stderr).
fn log_of(s: &Stack, name: &str) -> String {
    std::fs::read_to_string(s.dir().join("logs").join(format!("{name}.log"))).unwrap_or_default()
}

fn tombstoned(s: &Stack, batch: Uuid) -> bool {
    std::fs::read_to_string(s.partition_dir(batch).join("tombstones.log"))
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with(&batch.to_string()))
}

/// The drill: A finished, B and C running; A is purged while its late
/// results, work and verify messages are queued around the purge, C is
/// purged by force mid-run (its executors, aggregator and verifier hold
/// parts of it), B is refused without `--force`. B and a sentinel batch
/// after everything end SUCCESS with exact aggregates; A and C leave only
/// their purge records, also after the sweepers had time to act on them;
/// nothing is dead-lettered.
#[test]
fn purge_racing_the_pipeline_loses_nothing_unpurged() {
    // One partition: the sentinel's results queue behind every late one.
    let mut s = Stack::with_env(&[("PARTITIONS", "1"), ("STALL_DEADLINE_S", "3")]);
    start_pipeline(&mut s, 2, &[]);
    let a = s.submit("--runs 2000 --chunk-size 250 --seed 1 --name purge-a --workload sum")[0];
    let va = s.wait_for_verdicts(&[a], PATIENCE);
    assert!(va[0].success, "{}", va[0].line);
    let late_a = stored_results(&s, a);
    assert_eq!(late_a.len(), 8);

    // C first: its 80 chunks are ahead of B's 12 in the work queue, so it
    // is mid-run when it is purged, and B is still waiting for its verdict.
    let c = s.submit("--runs 40000 --chunk-size 500 --seed 3 --name purge-c")[0];
    let b = s.submit("--runs 6000 --chunk-size 500 --seed 2 --name purge-b")[0];
    s.wait_until("C has chunks completed and chunks to go", PATIENCE, |s| {
        let done = s
            .chunks(c)
            .iter()
            .filter(|ch| ch.status == "completed")
            .count();
        done >= 3
    });

    // A: late messages before and after its purge.
    s.publish_all(late_a[..4].to_vec());
    s.publish_all(vec![work_msg(a, 0), verify_msg(a)]);
    let out = s.cli(&["purge", &a.to_string()], PATIENCE);
    assert!(out.success(), "purge A: {}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(&format!("purged {a}")),
        "{}",
        out.stdout
    );
    s.publish_all(late_a[4..].to_vec());
    s.publish_all(vec![work_msg(a, 1), verify_msg(a)]);

    // B runs: refused, and untouched.
    let out = s.cli(&["purge", &b.to_string()], PATIENCE);
    assert_eq!(out.code, Some(1), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(&format!("refused {b}")),
        "{}",
        out.stdout
    );

    // C runs: purged by force, then its late results and work arrive.
    let late_c = stored_results(&s, c);
    assert!(
        late_c.len() < 80,
        "C finished before its purge: the drill did not race it"
    );
    let out = s.cli(&["purge", "--force", &c.to_string()], PATIENCE);
    assert!(
        out.success(),
        "purge --force C: {}{}",
        out.stdout,
        out.stderr
    );
    s.publish_all(late_c);
    s.publish_all(vec![work_msg(c, 0), work_msg(c, 23), verify_msg(c)]);

    let vb = s.wait_for_verdicts(&[b], PATIENCE);
    assert!(vb[0].success, "{}", vb[0].line);
    s.assert_batch_exact(b);

    // Behind everything above in the work and results queues.
    let sentinel = s.submit("--runs 500 --chunk-size 250 --name sentinel --workload sum");
    let vs = s.wait_for_verdicts(&sentinel, PATIENCE);
    assert!(vs[0].success, "{}", vs[0].line);
    s.assert_batch_exact(sentinel[0]);

    // Long enough for the sweepers to have re-published anything of A or
    // C they could find (stall deadline 3 s, sweeps every second).
    std::thread::sleep(Duration::from_secs(6));
    assert_gone(&s, a, "A");
    assert_gone(&s, c, "C");
    assert_eq!(s.lines_for(a).len(), 1, "A judged again: {:?}", s.lines());
    assert!(s.lines_for(c).is_empty(), "C judged: {:?}", s.lines());
    s.wait_until("the aggregator dropped C's state", PATIENCE, |s| {
        !s.batch_csv(c).exists() && tombstoned(s, c)
    });
    assert!(
        !s.batch_csv(a).exists(),
        "A's late results started a state file"
    );
    assert_eq!(s.leftover_csvs(), Vec::<String>::new());
    // The race happened where it should: executors met work of purged
    // batches (C's queued chunks, the late work messages) and dropped it,
    // and so did the verifier.
    let executors = log_of(&s, "executor-1") + &log_of(&s, "executor-2");
    assert!(
        executors.contains("work of a purged batch dropped"),
        "no executor met purged work"
    );
    assert!(
        log_of(&s, "verifier").contains("verify message of a purged batch dropped"),
        "the verifier met no purged batch"
    );
    assert_eq!(s.queue_depth(Queue::DeadLetter), 0, "dead-lettered");
    // B and the sentinel are whole and their run rows in their partitions.
    for id in [b, sentinel[0]] {
        assert_eq!(remains(&s, id)["partition"], 1);
        assert!(s.batch_result(id).is_some());
    }
    let out = s.cli(&["status", &c.to_string()], PATIENCE);
    assert!(
        out.success() && out.stdout.contains("purged"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    s.assert_all_alive();
}

/// `RETENTION_DAYS` (here 3 s) purges a batch once it has been finished
/// that long, and never a batch without a verdict however old: one
/// created in the store without its messages published waits 10 s for the
/// sweeper, all the while older than the retention, and is purged only
/// after its verdict.
#[test]
fn retention_days_purges_finished_batches_only() {
    let three_seconds = format!("{}", 3.0 / 86_400.0);
    let mut s = Stack::with_env(&[("RETENTION_DAYS", &three_seconds)]);
    start_pipeline(&mut s, 1, &[]);
    let done = s.submit("--runs 1000 --chunk-size 250 --name kept-3s --workload sum")[0];
    let v = s.wait_for_verdicts(&[done], PATIENCE);
    assert!(v[0].success, "{}", v[0].line);

    let unpublished = NewBatch {
        id: Uuid::new_v4(),
        name: "old-unfinished".into(),
        workload: r#"{"kind":"sum"}"#.into(),
        seed: 5,
        runs: 500,
        chunk_size: 250,
        share: Default::default(),
    };
    let store = s.block_on(store::PgStore::connect_with_schema(
        &fault_tolerance::database_url(),
        s.schema(),
    ));
    let store = store.expect("connect to the stack's schema");
    s.block_on(store.create_batches(std::slice::from_ref(&unpublished)))
        .expect("create a batch without publishing it");
    let unfinished = unpublished.id;

    s.wait_until("the finished batch is purged", PATIENCE, |s| {
        s.scalar("SELECT count(*) FROM purged_batches WHERE id = $1", done) == 1
    });
    assert_gone(&s, done, "the finished batch");
    // Older than the retention, and without a verdict: kept, and it goes
    // on to SUCCESS once the sweeper publishes it.
    let v = s.wait_for_verdicts(&[unfinished], PATIENCE);
    assert!(v[0].success, "{}", v[0].line);
    s.wait_until("the batch is purged after its verdict", PATIENCE, |s| {
        s.scalar(
            "SELECT count(*) FROM purged_batches WHERE id = $1",
            unfinished,
        ) == 1
    });
    assert_gone(&s, unfinished, "the late batch");
    assert_eq!(s.queue_depth(Queue::DeadLetter), 0);
    s.block_on(store.close());
    s.assert_all_alive();
}
