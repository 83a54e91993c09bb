//! `batchline queue` and `batchline submit`'s estimate as people run them,
//! against the real Postgres (`DATABASE_URL`) and RabbitMQ
//! (`RABBITMQ_URL`): a schema and queue prefix of this test's own, the
//! binary run with a clean environment. Executors are stood in for by
//! their heartbeats and charges, written through the store, so the pool's
//! size and the measured rate are known; nothing is simulated.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output, Stdio};

use broker::{RabbitBroker, RabbitConfig};
use serde_json::Value;
use store::prelude::*;
use store::{PgStore, Uuid};

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.into())
}

/// This test's services and the environment the binary gets.
struct Setup {
    database_url: String,
    rabbitmq_url: String,
    schema: String,
    prefix: String,
}

impl Setup {
    fn new() -> Setup {
        let id = &Uuid::new_v4().simple().to_string()[..16];
        Setup {
            database_url: env_or(
                "DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/postgres",
            ),
            rabbitmq_url: env_or("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
            schema: format!("cli_queue_test_{id}"),
            prefix: format!("cli-queue-test-{id}"),
        }
    }

    /// `batchline ARGS`, stdin not a terminal, nothing inherited but PATH.
    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_batchline"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DATABASE_URL", &self.database_url)
            .env("DB_SCHEMA", &self.schema)
            .env("RABBITMQ_URL", &self.rabbitmq_url)
            .env("QUEUE_PREFIX", &self.prefix)
            .env("CONNECT_TIMEOUT_S", "5")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `batchline ARGS`, which must succeed; its stdout and stderr.
    fn ok(&self, args: &[&str]) -> (String, String) {
        let out = self.run(args);
        let (stdout, stderr) = texts(&out);
        assert!(
            out.status.success(),
            "batchline {args:?} failed (are Postgres at DATABASE_URL and RabbitMQ at RABBITMQ_URL up?)\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        (stdout, stderr)
    }

    /// `batchline ARGS`, which must fail with one `error:` line on stderr
    /// (clap may add its usage below) and nothing on stdout; that line.
    fn refused(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let (stdout, stderr) = texts(&out);
        assert!(
            !out.status.success(),
            "batchline {args:?} succeeded:\n{stdout}"
        );
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "{args:?}: {stderr}");
        errors[0].to_string()
    }

    async fn store(&self) -> PgStore {
        PgStore::connect_with_schema(&self.database_url, &self.schema)
            .await
            .unwrap()
    }

    async fn cleanup(&self) {
        if let Ok(store) = PgStore::connect_with_schema(&self.database_url, &self.schema).await {
            let _ = store.drop_schema().await;
        }
        let config = RabbitConfig {
            prefix: self.prefix.clone(),
            ..RabbitConfig::new(self.rabbitmq_url.clone())
        };
        if let Ok(broker) = RabbitBroker::connect(config).await {
            let _ = broker.delete_topology().await;
        }
    }
}

fn texts(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn queue_shows_what_submit_estimated_and_long_submissions_need_yes() {
    let setup = Setup::new();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let outcome = std::panic::catch_unwind(|| case(&setup, &rt));
    rt.block_on(setup.cleanup());
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

fn case(setup: &Setup, rt: &tokio::runtime::Runtime) {
    // Empty: a sentence, the pool, and the same as JSON.
    let (table, _) = setup.ok(&["queue"]);
    assert_eq!(
        table,
        "No batch is waiting or running.\nPOOL  no executor running: nothing runs until one starts\n"
    );
    let view = json(&setup.ok(&["queue", "--json"]).0);
    assert_eq!(
        view,
        serde_json::json!({"executor_threads": 0, "chunks_running": 0, "batches": []})
    );

    // Bad arguments: one line, non-zero, nothing created.
    assert!(setup.refused(&["queue", "--bogus"]).contains("--bogus"));
    assert!(
        setup
            .refused(&["queue", "everything"])
            .contains("everything")
    );
    let line = setup.refused(&["submit", "--runs", "10", "--priority", "urgent"]);
    assert!(
        line.contains("priority \"urgent\" is not one of high, normal, low"),
        "{line}"
    );
    let line = setup.refused(&["submit", "--runs", "10", "--tenant", "a b"]);
    assert!(line.contains("tenant \"a b\" has ' '"), "{line}");
    let line = setup.refused(&["submit", "--runs", "10", "--weight", "0"]);
    assert!(line.contains("weight \"0\" is not a number"), "{line}");

    // No executor: submitted, and it says there is no estimate.
    let (ids, said) = setup.ok(&[
        "submit",
        "--workload",
        "sum",
        "--runs",
        "2000",
        "--chunk-size",
        "1000",
        "--tenant",
        "acme",
        "--priority",
        "high",
        "--name",
        "q-high",
    ]);
    let first: Uuid = ids.trim().parse().unwrap();
    assert!(
        said.contains("no estimate: no executor is running, so it waits for one"),
        "{said}"
    );
    assert!(
        said.contains("timed here as nothing was measured yet"),
        "{said}"
    );

    // Two executor threads, and sum measured at 10 ms a run.
    rt.block_on(async {
        let store = setup.store().await;
        store
            .executor_heartbeat("executor-cli-test", 2)
            .await
            .unwrap();
        let charge = store::share::Charge {
            batch_id: first,
            chunk: 0,
            seconds: 1000.0 * 0.01,
        };
        store.charge(&[charge]).await.unwrap();
    });

    // 1,000,000 runs: 10,000 executor seconds at half of 2 threads (two
    // tenants): 10,000 s, over an hour. Without a terminal: refused.
    let long = [
        "submit",
        "--workload",
        "sum",
        "--runs",
        "1000000",
        "--chunk-size",
        "100000",
        "--name",
        "q-long",
    ];
    let out = setup.run(&long);
    let (_, said) = texts(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("estimated run time: about 2 h 47 min at its fair share now, 50 % of 2 executor threads (about 1 h 23 min alone); 10.0 ms per run, measured by the executors"),
        "{said}"
    );
    assert!(
        said.lines()
            .last()
            .unwrap_or_default()
            .contains("not submitted: the batch would run for over an hour; pass --yes"),
        "{said}"
    );
    let view = json(&setup.ok(&["queue", "--json"]).0);
    assert_eq!(view["batches"].as_array().unwrap().len(), 1, "{view}");

    // With --yes it goes in.
    let mut yes = long.to_vec();
    yes.push("--yes");
    let (ids, _) = setup.ok(&yes);
    let second: Uuid = ids.trim().parse().unwrap();

    // The queue: both, in the order served, with tenant and priority; the pool.
    let view = json(&setup.ok(&["queue", "--json"]).0);
    assert_eq!(view["executor_threads"], 2, "{view}");
    let batches = view["batches"].as_array().unwrap();
    let rows: Vec<(String, String, String, i64)> = batches
        .iter()
        .map(|b| {
            (
                b["id"].as_str().unwrap().to_string(),
                b["tenant"].as_str().unwrap().to_string(),
                b["priority"].as_str().unwrap().to_string(),
                b["position"].as_i64().unwrap(),
            )
        })
        .collect();
    let mut expected = [
        (first.to_string(), "acme".to_string(), "high".to_string()),
        (
            second.to_string(),
            "default".to_string(),
            "normal".to_string(),
        ),
    ];
    let mut got: Vec<(String, String, String)> = rows
        .iter()
        .map(|(i, t, p, _)| (i.clone(), t.clone(), p.clone()))
        .collect();
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "{view}");
    assert_eq!(
        rows.iter().map(|r| r.3).collect::<Vec<_>>(),
        [1, 2],
        "{view}"
    );
    for b in batches {
        assert!(b["left_s"].as_f64().is_some_and(|s| s > 0.0), "{b}");
    }
    let (table, _) = setup.ok(&["queue"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("POS  BATCH"), "{table}");
    assert!(
        table.contains("q-high") && table.contains("acme") && table.contains("high"),
        "{table}"
    );
    assert!(
        table.contains("q-long") && table.contains("default"),
        "{table}"
    );
    assert_eq!(
        lines.last().copied(),
        Some("POOL  2 executor thread(s), 0 chunk(s) running"),
        "{table}"
    );
}
