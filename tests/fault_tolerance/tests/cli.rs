//! The command line under bad input and absent services: a short error on
//! stderr (no panic, no backtrace) and a non-zero exit within seconds (an
//! absent service once CONNECT_TIMEOUT_S, set short here, has passed). A
//! hang fails the test (run_cli's time limit).

mod common;

use std::time::Duration;

use fault_tolerance::{CliOutput, database_url, rabbitmq_url, run_cli};

use common::DropSchema;
use uuid::Uuid;

const LIMIT: Duration = Duration::from_secs(60);

fn env(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// Non-zero exit, one `error:` line mentioning `mentions`, no panic.
fn assert_clean_error(out: &CliOutput, mentions: &str) {
    common::assert_one_line_error(out, &[mentions]);
}

#[test]
fn bad_arguments_are_one_line_errors() {
    let none = env(&[]);
    let out = run_cli(&["submit", "--runs", "abc"], &none, LIMIT);
    assert_clean_error(&out, "--runs");
    let out = run_cli(&["submit", "--runs", "0"], &none, LIMIT);
    assert_clean_error(&out, "--runs");
    let out = run_cli(&["submit", "--runs", "10", "--chunk-size=0"], &none, LIMIT);
    assert_clean_error(&out, "chunk-size");
    // Names: one limit for batches and events, said before any service.
    let long = "x".repeat(81);
    let out = run_cli(&["submit", "--runs", "10", "--name", &long], &none, LIMIT);
    assert_clean_error(&out, "--name must be at most 80 characters, not 81");
    let dir = tempfile::tempdir().expect("a scratch dir");
    let file = dir.path().join("long.json");
    let mut event = workload::Event::spring_league();
    event.name = long.clone();
    std::fs::write(&file, serde_json::to_string(&event).expect("JSON")).expect("write");
    let path = file.to_str().expect("a UTF-8 path");
    let out = run_cli(&["submit", "--runs", "10", "--event", path], &none, LIMIT);
    assert_clean_error(&out, "name: must be at most 80 characters, not 81");
    let out = run_cli(&["frobnicate"], &none, LIMIT);
    assert_clean_error(&out, "frobnicate");
    let out = run_cli(&["status", "not-a-uuid"], &none, LIMIT);
    assert_clean_error(&out, "not-a-uuid");
    let out = run_cli(&["purge"], &none, LIMIT);
    assert_clean_error(&out, "required");
    let out = run_cli(&["purge", "--older-than", "a while"], &none, LIMIT);
    assert_clean_error(&out, "30d");
    let out = run_cli(&["purge", "not-a-uuid"], &none, LIMIT);
    assert_clean_error(&out, "not-a-uuid");
    let id = Uuid::new_v4().to_string();
    let out = run_cli(&["purge", &id, "--older-than", "30d"], &none, LIMIT);
    assert_clean_error(&out, "--older-than");
    let out = run_cli(&["cancel", "not-a-uuid"], &none, LIMIT);
    assert_clean_error(&out, "not-a-uuid");
    let out = run_cli(&["cancel", &id, "not-a-uuid"], &none, LIMIT);
    assert_clean_error(&out, "not-a-uuid");
    let out = run_cli(&["cancel"], &none, LIMIT);
    assert_clean_error(&out, "required");
}

#[test]
fn unreachable_postgres_is_a_one_line_error() {
    let e = env(&[
        (
            "DATABASE_URL",
            "postgres://postgres@127.0.0.1:1/postgres".into(),
        ),
        ("RABBITMQ_URL", rabbitmq_url()),
        ("CONNECT_TIMEOUT_S", "1".into()),
    ]);
    for args in [
        &["submit", "--runs", "10"][..],
        &["executor"],
        &["aggregator"],
        &["verifier"],
        &["status"],
        &["cancel", "00000000-0000-0000-0000-000000000000"],
    ] {
        let out = run_cli(args, &e, LIMIT);
        common::assert_one_line_error(&out, &["Postgres", "after 1s (CONNECT_TIMEOUT_S)"]);
    }
}

#[test]
fn unreachable_rabbitmq_is_a_one_line_error() {
    // A private schema: these commands connect to Postgres first and migrate.
    let schema = format!("ft_cli_{}", &Uuid::new_v4().simple().to_string()[..12]);
    let e = env(&[
        ("DATABASE_URL", database_url()),
        ("DB_SCHEMA", schema.clone()),
        ("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:1/%2f".into()),
        ("CONNECT_TIMEOUT_S", "1".into()),
    ]);
    let _drop = DropSchema(schema);
    for args in [
        &["submit", "--runs", "10"][..],
        &["executor"],
        &["aggregator"],
        &["verifier"],
    ] {
        let out = run_cli(args, &e, LIMIT);
        common::assert_one_line_error(&out, &["RabbitMQ", "after 1s (CONNECT_TIMEOUT_S)"]);
    }
}
