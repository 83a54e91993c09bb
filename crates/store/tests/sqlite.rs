//! The conformance suite on the embedded SQLite store, plus durability
//! across a reopen. Each test gets its own database file in a temp dir.

// Helpers outside #[test] fns: clippy's allow-unwrap-in-tests misses them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use std::future::Future;
use store::prelude::*;

use store::{Claim, SqliteStore, Store};

async fn with_sqlite<F, Fut>(case: F)
where
    F: FnOnce(SqliteStore) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("store.db"))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    case(store.clone()).await;
    store.close().await;
}

conformance_tests!(with_sqlite);

#[tokio::test]
async fn committed_state_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let b = common::new_batch("durable", 10, 10);
    {
        let s = SqliteStore::open(&path).await.unwrap();
        s.migrate().await.unwrap();
        s.create_batches(std::slice::from_ref(&b)).await.unwrap();
        let batch = s.batch(b.id).await.unwrap().unwrap();
        let Claim::Claimed { attempt } = s
            .claim_chunk(b.id, 0, "w", std::time::Duration::from_secs(60), 5)
            .await
            .unwrap()
        else {
            panic!("not claimable");
        };
        let rows = common::rows_for(&batch, 0, 3);
        s.complete_chunk(b.id, 0, attempt, &rows, "kept")
            .await
            .unwrap();
        s.close().await;
    }
    let s = SqliteStore::open(&path).await.unwrap();
    s.migrate().await.expect("re-running migrations is a no-op");
    assert_eq!(
        s.claim_chunk(b.id, 0, "w", std::time::Duration::from_secs(60), 5)
            .await
            .unwrap(),
        Claim::Completed {
            result: "kept".into()
        }
    );
    let mut n = 0;
    s.scan_runs(b.id, 0..i64::MAX, |run, values| {
        assert_eq!(
            values,
            [
                common::value(run, 0),
                common::value(run, 1),
                common::value(run, 2)
            ]
        );
        n += 1;
    })
    .await
    .unwrap();
    assert_eq!(n, 10);
}

#[tokio::test]
async fn the_file_is_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let s = SqliteStore::open(&path).await.unwrap();
    s.migrate().await.unwrap();
    s.close().await;
    // journal_mode=WAL is persistent in the file: a plain connection sees it.
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn open_creates_the_directory_and_refuses_a_non_database() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b/store.db");
    let s = SqliteStore::open(&nested).await.unwrap();
    s.migrate().await.unwrap();
    s.close().await;
    assert!(nested.exists());

    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![b'x'; 4096]).unwrap();
    let err = match SqliteStore::open(&junk).await {
        Ok(s) => s.migrate().await.unwrap_err(),
        Err(e) => e,
    };
    assert!(!err.can_be_retried(), "{err:?}");
    let chain = format!("{:#}", anyhow::Error::from(err));
    assert!(chain.contains("not a database"), "{chain}");
}

#[tokio::test]
async fn duplicate_run_row_fails_the_whole_commit() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let s = SqliteStore::open(&path).await.unwrap();
    s.migrate().await.unwrap();
    let b = common::new_batch("dup", 10, 10);
    s.create_batches(std::slice::from_ref(&b)).await.unwrap();
    let batch = s.batch(b.id).await.unwrap().unwrap();
    let mut raw = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO run_results (batch_id, run_index, outcome) VALUES (?, 5, x'00000007')",
    )
    .bind(b.id)
    .execute(&mut raw)
    .await
    .unwrap();
    raw.close().await.unwrap();
    let Claim::Claimed { attempt } = s
        .claim_chunk(b.id, 0, "w", std::time::Duration::from_secs(60), 5)
        .await
        .unwrap()
    else {
        panic!("not claimable");
    };
    let err = s
        .complete_chunk(b.id, 0, attempt, &common::rows_for(&batch, 0, 2), "r")
        .await
        .unwrap_err();
    assert!(matches!(err, store::Error::Query(_)), "{err:?}");
    let mut rows = Vec::new();
    s.scan_runs(b.id, 0..i64::MAX, |run, values| {
        rows.push((run, values.to_vec()))
    })
    .await
    .unwrap();
    assert_eq!(rows, vec![(5, vec![7])]);
    assert!(matches!(
        s.claim_chunk(b.id, 0, "w2", std::time::Duration::from_secs(60), 5)
            .await
            .unwrap(),
        Claim::Leased { .. }
    ));
}
