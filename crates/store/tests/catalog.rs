//! [`Catalog`] on Postgres: saved events are idempotent, immutable, kept
//! once a batch ran them, and found from a batch by its snapshot; batch
//! listings filter and page. Each test works in its own schema.
//!
//! Needs Postgres at `DATABASE_URL` (local default); fails loudly without.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use store::catalog::{BatchFilter, EventDeletion, EventSave, NewEvent, VerdictFilter};
use store::prelude::*;
use store::{Catalog, NewBatch, PgStore, Store, Uuid, Verdict};

async fn fresh() -> PgStore {
    let url = std::env::var("DATABASE_URL")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let schema = format!("catalog_test_{}", Uuid::new_v4().simple());
    let store = PgStore::connect_with_schema(&url, &schema)
        .await
        .unwrap_or_else(|e| panic!("these tests need Postgres at DATABASE_URL={url}: {e}"));
    store.migrate().await.expect("migrations apply");
    store
}

fn event(workload: &str) -> NewEvent {
    NewEvent {
        id: Uuid::new_v4(),
        name: "an event".into(),
        workload: workload.into(),
        teams: 2,
        rows: 3,
    }
}

fn batch(name: &str, workload: &str) -> NewBatch {
    NewBatch {
        id: Uuid::new_v4(),
        name: name.into(),
        workload: workload.into(),
        seed: 1,
        runs: 10,
        chunk_size: 5,
        share: Default::default(),
    }
}

#[tokio::test]
async fn events_are_saved_once_never_change_and_stay_once_run() {
    let store = fresh().await;
    let body = r#"{"kind":"bingo","event":{"name":"x"}}"#;
    let first = event(body);
    assert_eq!(
        store.save_event(&first).await.unwrap(),
        EventSave::Saved(first.id)
    );
    let again = event(body);
    assert_eq!(
        store.save_event(&again).await.unwrap(),
        EventSave::AlreadySaved(first.id)
    );

    // The schema itself refuses changes.
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let schema = store.schema().unwrap().to_string();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(
            url.parse::<sqlx::postgres::PgConnectOptions>()
                .unwrap()
                .options([("search_path", schema.as_str())]),
        )
        .await
        .unwrap();
    let update = sqlx::query("UPDATE events SET name = 'changed' WHERE id = $1")
        .bind(first.id)
        .execute(&pool)
        .await;
    assert!(update.is_err(), "events are immutable");
    pool.close().await;

    // A batch that ran it links to it by its snapshot and keeps it.
    let ran = batch("ran", body);
    let other = batch("other", r#"{"kind":"sum"}"#);
    store
        .create_batches(&[ran.clone(), other.clone()])
        .await
        .unwrap();
    let linked = store.batch_event(ran.id).await.unwrap().expect("linked");
    assert_eq!((linked.id, linked.batches), (first.id, 1));
    assert!(store.batch_event(other.id).await.unwrap().is_none());
    assert_eq!(
        store.delete_event(first.id).await.unwrap(),
        EventDeletion::InUse
    );
    assert!(store.event(first.id).await.unwrap().is_some());

    let unused = event(r#"{"kind":"bingo","event":{"name":"y"}}"#);
    store.save_event(&unused).await.unwrap();
    assert_eq!(store.list_events(0, 10).await.unwrap().total, 2);
    assert_eq!(
        store.delete_event(unused.id).await.unwrap(),
        EventDeletion::Deleted
    );
    assert_eq!(
        store.delete_event(unused.id).await.unwrap(),
        EventDeletion::NotFound
    );
    store.drop_schema().await.unwrap();
}

#[tokio::test]
async fn batch_listings_filter_and_page() {
    let store = fresh().await;
    let sum = r#"{"kind":"sum"}"#;
    let mut ids = Vec::new();
    for name in ["Spring-A", "spring-b", "autumn"] {
        let b = batch(name, sum);
        ids.push(b.id);
        // One at a time: newest first is by creation time.
        store.create_batches(&[b]).await.unwrap();
    }
    let verdict = |success| Verdict {
        success,
        reason: if success { String::new() } else { "no".into() },
        line: "l".into(),
    };
    store.record_verdict(ids[0], &verdict(true)).await.unwrap();
    store.record_verdict(ids[2], &verdict(false)).await.unwrap();

    let names = |f: BatchFilter| {
        let store = store.clone();
        async move {
            let page = store.list_batches(&f).await.unwrap();
            let names: Vec<String> = page
                .batches
                .iter()
                .map(|b| b.progress.name.clone())
                .collect();
            (page.total, names)
        }
    };
    let all = BatchFilter {
        limit: 10,
        ..BatchFilter::default()
    };
    assert_eq!(
        names(all.clone()).await,
        (
            3,
            vec!["autumn".into(), "spring-b".into(), "Spring-A".into()]
        )
    );
    let spring = BatchFilter {
        name: Some("SPRING".into()),
        ..all.clone()
    };
    assert_eq!(names(spring).await.0, 2);
    let unfinished = BatchFilter {
        verdict: VerdictFilter::Unfinished,
        ..all.clone()
    };
    assert_eq!(names(unfinished).await, (1, vec!["spring-b".into()]));
    let failed = BatchFilter {
        verdict: VerdictFilter::Failure,
        ..all.clone()
    };
    assert_eq!(names(failed).await, (1, vec!["autumn".into()]));
    let second_page = BatchFilter {
        offset: 2,
        limit: 2,
        ..all.clone()
    };
    assert_eq!(names(second_page).await, (3, vec!["Spring-A".into()]));
    let page = store.list_batches(&all).await.unwrap();
    let listed = &page.batches[2];
    assert_eq!(
        (listed.kind.as_str(), listed.event_name.as_deref()),
        ("sum", None)
    );
    assert_eq!(listed.progress.verdict, Some(true));
    assert_eq!(listed.progress.pending, 2, "chunk counts come along");
    store.drop_schema().await.unwrap();
}
