//! An isolation against the real Postgres and RabbitMQ (`DATABASE_URL`,
//! `RABBITMQ_URL`, local defaults): what it creates, and that a teardown
//! removes exactly that. Fails, saying so, when the services are absent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use broker::{Queue, RabbitBroker, RabbitConfig};
use launcher::{Isolation, Keep, Naming, Services};
use sqlx::{Connection, PgConnection};

fn services() -> Services {
    let var = |k: &str, d: &str| {
        std::env::var(k)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| d.to_owned())
    };
    Services {
        database_url: var(
            "DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/postgres",
        ),
        rabbit: RabbitConfig {
            retry_delay: Duration::from_millis(300),
            ..RabbitConfig::new(var("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"))
        },
        env: launcher::Env::from_pairs(&[("LAUNCHER_TEST_PASSED_ON", "yes")]),
    }
}

fn naming(parent: &std::path::Path) -> Naming {
    Naming {
        stem: "launchertest".into(),
        dir_prefix: "iso-".into(),
        parent: Some(parent.to_owned()),
        partitions: None,
    }
}

async fn create(services: &Services, parent: &std::path::Path) -> Isolation {
    Isolation::create(services, &naming(parent))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "an isolation needs Postgres and RabbitMQ: {}",
                launcher::report(&e)
            )
        })
}

async fn schema_exists(url: &str, schema: &str) -> bool {
    let mut conn = PgConnection::connect(url)
        .await
        .expect("Postgres at DATABASE_URL");
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'batches'",
    )
    .bind(schema)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    n == 1
}

#[tokio::test]
async fn an_isolation_is_created_migrated_and_torn_down() {
    let services = services();
    let parent = tempfile::tempdir().unwrap();
    let iso = create(&services, parent.path()).await;
    assert!(iso.schema().starts_with("launchertest_") && iso.prefix().starts_with("launchertest-"));
    assert!(iso.dir().starts_with(parent.path()) && iso.dir().is_dir());
    assert!(
        schema_exists(&services.database_url, iso.schema()).await,
        "migrated"
    );
    let env = iso.env();
    assert_eq!(env.get("DB_SCHEMA"), Some(iso.schema()));
    assert_eq!(env.get("QUEUE_PREFIX"), Some(iso.prefix()));
    assert_eq!(env.get("RETRY_DELAY_MS"), Some("300"));
    assert_eq!(
        env.get("LAUNCHER_TEST_PASSED_ON"),
        Some("yes"),
        "the services' env"
    );
    assert_eq!(
        env.get("WORKER_DATA_DIR").map(std::path::PathBuf::from),
        Some(iso.dir().join("worker-data"))
    );
    let probe = RabbitBroker::connect(RabbitConfig {
        prefix: iso.prefix().to_owned(),
        ..services.rabbit.clone()
    })
    .await
    .unwrap();
    assert_eq!(probe.queue_stats(Queue::Work).await.unwrap().consumers, 0);

    let (schema, dir) = (iso.schema().to_owned(), iso.dir().to_owned());
    assert_eq!(iso.teardown(Keep::Nothing).await.unwrap(), None);
    assert!(
        !schema_exists(&services.database_url, &schema).await,
        "schema dropped"
    );
    assert!(
        probe.queue_stats(Queue::Work).await.is_err(),
        "queues deleted"
    );
    assert!(!dir.exists(), "directory removed");
}

#[tokio::test]
async fn keep_dir_keeps_only_the_directory() {
    let services = services();
    let parent = tempfile::tempdir().unwrap();
    let iso = create(&services, parent.path()).await;
    let schema = iso.schema().to_owned();
    let kept = iso.teardown(Keep::Dir).await.unwrap().unwrap();
    assert!(kept.is_dir());
    assert!(!schema_exists(&services.database_url, &schema).await);
}

#[tokio::test]
async fn an_absent_service_is_a_clear_error() {
    let mut services = services();
    services.database_url = "postgres://postgres:secret@127.0.0.1:1/postgres".into();
    let parent = tempfile::tempdir().unwrap();
    let err = Isolation::create(&services, &naming(parent.path()))
        .await
        .unwrap_err();
    let text = format!("{err}");
    assert!(text.contains("Postgres at 127.0.0.1:1/postgres"), "{text}");
    assert!(!format!("{err:?}").contains("secret"), "{err:?}");
}
