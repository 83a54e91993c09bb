//! The conformance suite on Postgres, plus what only Postgres has: racing
//! claimers in separate connections, connect errors, schema isolation.
//!
//! Needs Postgres at `DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); each test works in its own
//! random schema and drops it afterwards. Fails loudly when Postgres is absent.

// Helpers outside #[test] fns: clippy's allow-unwrap-in-tests misses them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::future::Future;
use std::time::Duration;
use store::prelude::*;

use store::{Claim, Error, PgOptions, PgStore, Store, Uuid};

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

async fn fresh_store() -> PgStore {
    fresh_store_with(PgOptions::default()).await
}

async fn fresh_store_with(options: PgOptions) -> PgStore {
    let url = database_url();
    let options = PgOptions {
        schema: Some(format!("store_test_{}", Uuid::new_v4().simple())),
        ..options
    };
    let store = PgStore::connect_with(&url, options)
        .await
        .unwrap_or_else(|e| {
            panic!("these tests need Postgres at DATABASE_URL={url} (start it, or set DATABASE_URL): {e}")
        });
    store.migrate().await.expect("migrations apply");
    store
}

/// Runs `case` on a fresh schema and drops the schema afterwards, also when
/// the case panics.
async fn with_pg<F, Fut>(case: F)
where
    F: FnOnce(PgStore) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    in_schema(fresh_store().await, case).await;
}

/// Runs `case` on `store` and drops its schema afterwards, also when the
/// case panics.
async fn in_schema<F, Fut>(store: PgStore, case: F)
where
    F: FnOnce(PgStore) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let outcome = tokio::spawn(case(store.clone())).await;
    store.drop_schema().await.expect("drop test schema");
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Claims chunk 0 of `batch` (it must be claimable); returns the attempt.
async fn claim_chunk_0(s: &PgStore, batch: Uuid) -> i32 {
    let Claim::Claimed { attempt } = s
        .claim_chunk(batch, 0, "w", Duration::from_secs(60), 5)
        .await
        .unwrap()
    else {
        panic!("not claimable");
    };
    attempt
}

/// Creates a one-chunk batch of `runs` runs and completes it with `rows`
/// (by default the test rows of width `width`); returns the batch.
async fn one_completed_chunk(
    s: &PgStore,
    runs: i64,
    width: usize,
    rows: Option<store::RunRows>,
) -> (store::Batch, store::RunRows) {
    let b = common::new_batch("one chunk", runs, runs as i32);
    s.create_batches(std::slice::from_ref(&b)).await.unwrap();
    let batch = s.batch(b.id).await.unwrap().unwrap();
    let rows = rows.unwrap_or_else(|| common::rows_for(&batch, 0, width));
    let attempt = claim_chunk_0(s, b.id).await;
    s.complete_chunk(b.id, 0, attempt, &rows, "r")
        .await
        .unwrap();
    (batch, rows)
}

conformance_tests!(with_pg);

async fn race_for_one_chunk(s: PgStore) {
    let b = common::new_batch("race", 10, 10);
    s.create_batches(std::slice::from_ref(&b)).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.claim_chunk(b.id, 0, &format!("w{i}"), Duration::from_secs(60), 5)
                .await
                .unwrap()
        }));
    }
    let mut claimed = 0;
    for t in tasks {
        match t.await.unwrap() {
            Claim::Claimed { attempt } => {
                assert_eq!(attempt, 1);
                claimed += 1;
            }
            Claim::Leased { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        claimed, 1,
        "exactly one of 8 racing claimers owns the chunk"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_racing_claims_one_winner() {
    with_pg(race_for_one_chunk).await;
}

#[tokio::test]
async fn unreachable_server_is_a_retryable_error() {
    // Port 1 on loopback: nothing listens there, the connection is refused.
    let options = PgOptions {
        connect_timeout: Duration::from_secs(2),
        ..PgOptions::default()
    };
    let err = PgStore::connect_with("postgres://postgres@127.0.0.1:1/postgres", options)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(err.can_be_retried());
    assert!(
        err.to_string().contains("127.0.0.1:1"),
        "names the target: {err}"
    );
}

#[tokio::test]
async fn bad_url_and_schema_are_config_errors() {
    let err = PgStore::connect("not a url").await.unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    let err = PgStore::connect_with_schema(&database_url(), "bad-name; DROP")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
}

#[tokio::test]
async fn schemas_isolate_and_migrate_is_idempotent() {
    let a = fresh_store().await;
    let b = fresh_store().await;
    a.migrate().await.expect("second migrate is a no-op");
    let batch = common::new_batch("isolated", 10, 10);
    a.create_batches(std::slice::from_ref(&batch))
        .await
        .unwrap();
    let seen_in_b = b.batch(batch.id).await;
    let seen_in_a = a.batch(batch.id).await;
    a.drop_schema().await.unwrap();
    b.drop_schema().await.unwrap();
    assert!(seen_in_a.unwrap().is_some());
    assert_eq!(seen_in_b.unwrap(), None);
}

/// A COPY the server rejects part-way (here a trigger refusing run 5, as a
/// disk-full or a constraint would) fails the completing transaction as a
/// whole: the chunk stays running and no row of it is written.
async fn rejected_copy_fails_the_commit(s: PgStore) {
    let mut raw = raw_connection(&s).await;
    let b = common::new_batch("reject", 10, 10);
    s.create_batches(std::slice::from_ref(&b)).await.unwrap();
    let batch = s.batch(b.id).await.unwrap().unwrap();
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_run_5() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.run_index = 5 THEN RAISE EXCEPTION 'run 5 refused'; END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER refuse_run_5 BEFORE INSERT ON run_results
             FOR EACH ROW EXECUTE FUNCTION refuse_run_5();",
    )
    .execute(&mut raw)
    .await
    .unwrap();
    let attempt = claim_chunk_0(&s, b.id).await;
    let err = s
        .complete_chunk(b.id, 0, attempt, &common::rows_for(&batch, 0, 2), "r")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Query(_)), "{err:?}");
    let mut rows = 0;
    s.scan_runs(b.id, 0..i64::MAX, |_, _| rows += 1)
        .await
        .unwrap();
    assert_eq!(rows, 0, "runs 0..5 were rolled back with the rest");
    assert!(matches!(
        s.claim_chunk(b.id, 0, "w2", Duration::from_secs(60), 5)
            .await
            .unwrap(),
        Claim::Leased { .. }
    ));
    // The connection that carried the failed COPY is usable again.
    assert!(s.batch(b.id).await.unwrap().is_some());
}

/// A connection to the store's schema that bypasses the store, to change
/// what it cannot.
async fn raw_connection(s: &PgStore) -> sqlx::PgConnection {
    use sqlx::Connection;
    sqlx::PgConnection::connect_with(&search_path_options(s))
        .await
        .unwrap()
}

fn search_path_options(s: &PgStore) -> sqlx::postgres::PgConnectOptions {
    let schema = s.schema().unwrap().to_owned();
    let options: sqlx::postgres::PgConnectOptions = database_url().parse().unwrap();
    options.options([("search_path", schema)])
}

#[tokio::test]
async fn rejected_copy_fails_the_whole_commit() {
    // One pooled connection, so the checks after the failure run on the very
    // connection that carried the failed COPY.
    let store = fresh_store_with(PgOptions {
        max_connections: 1,
        ..PgOptions::default()
    })
    .await;
    in_schema(store, rejected_copy_fails_the_commit).await;
}

/// Postgres keeps no key on run rows (see the BRIN migration): the chunk
/// fence is what keeps them unique, and the verifier what checks it. So a
/// row written behind the store's back must come out of a scan as often as
/// it is stored, never folded into one.
#[tokio::test]
async fn scan_returns_a_repeated_run_as_often_as_it_is_stored() {
    with_pg(|s| async move {
        let (batch, rows) = one_completed_chunk(&s, 10, 2, None).await;
        sqlx::query(
            "INSERT INTO run_results (batch_id, run_index, outcome)
             VALUES ($1, 5, '\\x0000000700000007')",
        )
        .bind(batch.id)
        .execute(&mut raw_connection(&s).await)
        .await
        .unwrap();
        let mut fives = Vec::new();
        let mut all = 0;
        s.scan_runs(batch.id, 0..i64::MAX, |run, values| {
            all += 1;
            if run == 5 {
                fives.push(values.to_vec());
            }
        })
        .await
        .unwrap();
        assert_eq!(all, 11);
        fives.sort();
        assert_eq!(fives, vec![rows.row(5).to_vec(), vec![7, 7]]);
    })
    .await;
}

/// Outcomes are stored as bytes for speed; the `run_outcomes` view is how a
/// person reads them in SQL, and must show exactly the values written,
/// signs and extremes included.
#[tokio::test]
async fn run_outcomes_view_shows_the_stored_values() {
    with_pg(|s| async move {
        let rows = store::RunRows {
            first_run: 0,
            width: 4,
            values: vec![
                0,
                1,
                -1,
                255, //
                i32::MIN,
                i32::MAX,
                256,
                -256, //
                7,
                0x0102_0304,
                -0x0102_0304,
                65_536,
            ],
        };
        let (batch, rows) = one_completed_chunk(&s, 3, 4, Some(rows)).await;
        let seen: Vec<(i64, Vec<i32>)> = sqlx::query_as(
            "SELECT run_index, outcome FROM run_outcomes WHERE batch_id = $1 ORDER BY run_index",
        )
        .bind(batch.id)
        .fetch_all(&mut raw_connection(&s).await)
        .await
        .unwrap();
        let want: Vec<(i64, Vec<i32>)> = (0..3).map(|i| (i as i64, rows.row(i).to_vec())).collect();
        assert_eq!(seen, want);
    })
    .await;
}

/// A deployment with run rows from before the outcome became bytes keeps
/// every value: rows written under the first schema (int4[], primary key)
/// read back the same after `migrate` brings the schema up to date (the
/// bytes, then the partition per batch).
#[tokio::test]
async fn upgrading_keeps_rows_written_before_outcomes_became_bytes() {
    let url = database_url();
    let unmigrated = PgStore::connect_with(
        &url,
        PgOptions {
            schema: Some(format!("store_test_{}", Uuid::new_v4().simple())),
            ..PgOptions::default()
        },
    )
    .await
    .expect("these tests need Postgres at DATABASE_URL");
    in_schema(unmigrated, |s| async move {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
        let mut first = sqlx::migrate::Migrator::new(dir).await.unwrap();
        first.migrations = first
            .migrations
            .iter()
            .filter(|m| m.version < 20261124000000)
            .cloned()
            .collect::<Vec<_>>()
            .into();
        assert_eq!(first.migrations.len(), 1, "only the initial schema");
        // Through a pool: `run` on a bare connection is not `Send`.
        let pool = sqlx::pool::PoolOptions::<sqlx::Postgres>::new()
            .max_connections(1)
            .connect_with(search_path_options(&s))
            .await
            .unwrap();
        first.run(&pool).await.unwrap();
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO batches (id, name, workload, seed, runs, chunk_size, chunks)
             VALUES ($1, 'old', '{}', 1, 3, 3, 1)",
        )
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
        let old: Vec<(i64, Vec<i32>)> = vec![
            (0, vec![1, -1, i32::MIN, i32::MAX]),
            (1, vec![0]),
            (2, vec![65_536, -256, 255, 7]),
        ];
        for (run, values) in &old {
            sqlx::query(
                "INSERT INTO run_results (batch_id, run_index, outcome) VALUES ($1, $2, $3)",
            )
            .bind(id)
            .bind(run)
            .bind(values)
            .execute(&pool)
            .await
            .unwrap();
        }
        s.migrate().await.expect("the remaining migrations apply");
        let mut scanned = Vec::new();
        s.scan_runs(id, 0..i64::MAX, |run, values| {
            scanned.push((run, values.to_vec()))
        })
        .await
        .unwrap();
        scanned.sort();
        assert_eq!(scanned, old);
        let viewed: Vec<(i64, Vec<i32>)> = sqlx::query_as(
            "SELECT run_index, outcome FROM run_outcomes WHERE batch_id = $1 ORDER BY run_index",
        )
        .bind(id)
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(viewed, old);
        pool.close().await;
    })
    .await;
}

/// A batch's run rows are its own partition: purging drops it and gives
/// the space back, the other batches' partitions untouched; a purge that
/// died between its commit and the drop is finished later.
#[tokio::test]
async fn purging_drops_the_batch_partition() {
    with_pg(|s| async move {
        let (gone, _) = one_completed_chunk(&s, 20_000, 4, None).await;
        let (kept, _) = one_completed_chunk(&s, 20_000, 4, None).await;
        let before = s.run_rows_bytes().await.unwrap();
        for b in [&gone, &kept] {
            s.record_verdict(b.id, &verdict_for(b)).await.unwrap();
        }
        let partitions = || async {
            let mut conn = raw_connection(&s).await;
            let names: Vec<String> = sqlx::query_scalar(
                "SELECT inhrelid::regclass::text FROM pg_inherits
                 WHERE inhparent = 'run_results'::regclass ORDER BY 1",
            )
            .fetch_all(&mut conn)
            .await
            .unwrap();
            names
        };
        assert_eq!(partitions().await.len(), 2);

        assert_eq!(
            s.purge_batch(gone.id, false).await.unwrap(),
            store::Purge::Purged
        );
        let left = partitions().await;
        assert_eq!(left.len(), 1, "{left:?}");
        assert!(left[0].ends_with(&kept.id.simple().to_string()), "{left:?}");
        let after = s.run_rows_bytes().await.unwrap();
        assert!(after * 2 <= before + 8192, "{before} -> {after} bytes");
        let mut rows = 0;
        s.scan_runs(kept.id, 0..i64::MAX, |_, _| rows += 1)
            .await
            .unwrap();
        assert_eq!(rows, 20_000);

        // An interrupted purge: committed, partition still there (as if
        // the process died before the drop).
        let mut conn = raw_connection(&s).await;
        sqlx::query("UPDATE purged_batches SET purged_at = now() - interval '2 minutes'")
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query("SELECT run_results_add_partition($1)")
            .bind(gone.id)
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query("UPDATE purged_batches SET runs_dropped_at = NULL")
            .execute(&mut conn)
            .await
            .unwrap();
        assert_eq!(partitions().await.len(), 2);
        assert_eq!(s.finish_purges().await.unwrap(), 1);
        assert_eq!(partitions().await.len(), 1);
        assert_eq!(s.finish_purges().await.unwrap(), 0);
    })
    .await;
}

fn verdict_for(b: &store::Batch) -> store::Verdict {
    store::Verdict {
        success: true,
        reason: String::new(),
        line: format!("SUCCESS [{}]", b.name),
    }
}

/// Two processes' stores on one schema: `a` holds claims, `b` claims too.
async fn claim_holders(s: PgStore) {
    let schema = s.schema().unwrap().to_owned();
    let a = PgStore::connect_with_schema(&database_url(), &schema)
        .await
        .unwrap();
    let b = PgStore::connect_with_schema(&database_url(), &schema)
        .await
        .unwrap();
    a.hold_claims().await.unwrap();
    b.hold_claims().await.unwrap();
    let batch = common::new_batch("holders", 20, 10);
    s.create_batches(std::slice::from_ref(&batch))
        .await
        .unwrap();
    let lease = Duration::from_secs(600);
    for chunk in [0, 1] {
        assert_eq!(
            a.claim_chunk(batch.id, chunk, "a", lease, 5).await.unwrap(),
            Claim::Claimed { attempt: 1 }
        );
    }
    // `a` lives: its long lease holds `b` off.
    assert!(matches!(
        b.claim_chunk(batch.id, 0, "b", lease, 5).await.unwrap(),
        Claim::Leased { .. }
    ));
    // `a`'s process ends (its holder session with it): `b` takes both
    // chunks at once, under new attempts, long before the lease ends.
    a.close().await;
    let taken = wait_claimed(&b, batch.id, 0).await;
    assert_eq!(taken, Claim::Claimed { attempt: 2 });
    assert_eq!(
        b.claim_chunk(batch.id, 1, "b", lease, 5).await.unwrap(),
        Claim::Claimed { attempt: 2 }
    );
    // The holder `b` lives: a claimant without a holder lock waits.
    assert!(matches!(
        s.claim_chunk(batch.id, 0, "s", lease, 5).await.unwrap(),
        Claim::Leased { .. }
    ));
    // A claim that never held a holder lock is trusted until its lease ends.
    let other = common::new_batch("no-holder", 10, 10);
    s.create_batches(std::slice::from_ref(&other))
        .await
        .unwrap();
    assert_eq!(
        s.claim_chunk(other.id, 0, "s", lease, 5).await.unwrap(),
        Claim::Claimed { attempt: 1 }
    );
    assert!(matches!(
        b.claim_chunk(other.id, 0, "b", lease, 5).await.unwrap(),
        Claim::Leased { .. }
    ));
    b.close().await;
}

/// Claims until the chunk is taken: the server ends a closed session's
/// locks a moment after the client hung up.
async fn wait_claimed(s: &PgStore, batch: Uuid, chunk: i32) -> Claim {
    for _ in 0..500 {
        match s
            .claim_chunk(batch, chunk, "b", Duration::from_secs(600), 5)
            .await
            .unwrap()
        {
            Claim::Leased { .. } => tokio::time::sleep(Duration::from_millis(20)).await,
            other => return other,
        }
    }
    panic!("the chunk of a holder that is gone was never taken");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_holders_chunks_are_taken_at_once_and_a_live_ones_are_not() {
    with_pg(claim_holders).await;
}

/// An aggregator replica whose process ends is gone at once: its heartbeat
/// recorded its holder lock, and the lock's session ended with it.
async fn replica_holders(s: PgStore) {
    let schema = s.schema().unwrap().to_owned();
    let a = PgStore::connect_with_schema(&database_url(), &schema)
        .await
        .unwrap();
    a.hold_claims().await.unwrap();
    a.replica_heartbeat("a").await.unwrap();
    s.replica_heartbeat("no-holder").await.unwrap();
    let long = Duration::from_secs(600);
    let names = |live: Vec<store::ReplicaInfo>| -> Vec<String> {
        live.into_iter().map(|r| r.replica).collect()
    };
    assert_eq!(
        names(s.live_replicas(long).await.unwrap()),
        ["a", "no-holder"]
    );
    a.close().await;
    // The server ends a closed session's locks a moment after the client
    // hung up; long before any silence counts.
    for _ in 0..500 {
        if names(s.live_replicas(long).await.unwrap()) == ["no-holder"] {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("a replica whose session ended still counts as alive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_is_gone_when_its_session_ends() {
    with_pg(replica_holders).await;
}

/// docs/operations.md, "Changing the partition count": with every batch
/// finished, deleting the partitions and the batches' partition lets a
/// migration with the new count repartition them all; before that, or
/// without it, a different count is refused.
#[tokio::test]
async fn the_partition_count_changes_only_by_the_documented_migration() {
    with_pg(|s| async move {
        let batches: Vec<_> = (0..20)
            .map(|i| common::new_batch(&format!("b{i}"), 10, 10))
            .collect();
        s.create_batches(&batches).await.unwrap();
        assert_eq!(
            s.partitions().await.unwrap(),
            store::partition::DEFAULT_PARTITIONS
        );
        let refused = s.migrate_with_partitions(Some(4)).await;
        assert!(
            matches!(refused, Err(store::Error::Config { .. })),
            "{refused:?}"
        );

        let mut conn = raw_connection(&s).await;
        sqlx::raw_sql(
            "BEGIN; DELETE FROM partitions; UPDATE batches SET partition = NULL; COMMIT;",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        assert_eq!(s.migrate_with_partitions(Some(4)).await.unwrap(), 4);
        assert_eq!(s.partitions().await.unwrap(), 4);
        let rows: Vec<(Uuid, Option<i16>)> = sqlx::query_as("SELECT id, partition FROM batches")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        assert_eq!(rows.len(), batches.len());
        for (id, partition) in rows {
            let want = i16::try_from(store::partition::of(id, 4)).unwrap();
            assert_eq!(partition, Some(want), "batch {id}");
        }
        // Fixed again: the default does not undo it.
        assert_eq!(s.migrate_with_partitions(None).await.unwrap(), 4);
    })
    .await;
}

/// A deployment upgraded from the single results queue has batches older
/// than its partitions migration; a new one does not (the aggregator
/// looks for the old queue only in the first case).
#[tokio::test]
async fn batches_older_than_the_partitions_mark_an_upgraded_database() {
    with_pg(|s| async move {
        assert!(!s.predates_partitions().await.unwrap(), "empty database");
        let batch = common::new_batch("new", 10, 10);
        s.create_batches(std::slice::from_ref(&batch))
            .await
            .unwrap();
        assert!(
            !s.predates_partitions().await.unwrap(),
            "a batch made since"
        );
        let mut conn = raw_connection(&s).await;
        sqlx::raw_sql("UPDATE batches SET created_at = created_at - interval '1 year'")
            .execute(&mut conn)
            .await
            .unwrap();
        assert!(
            s.predates_partitions().await.unwrap(),
            "a batch from before"
        );
    })
    .await;
}
