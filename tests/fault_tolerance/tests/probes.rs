//! The probe server of every stage on METRICS_ADDR: `/healthz` answers 200
//! from the start, `/readyz` answers 503 until the stage is connected and
//! consuming and 200 after, `/metrics` carries the stage's counters. The
//! paths the help text names are the ones served (the Kubernetes check
//! reads them from there).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use broker::Queue;
use fault_tolerance::http::{free_addr, get};
use fault_tolerance::proxy::TcpProxy;
use fault_tolerance::{Stack, database_url, run_cli, service_addr};

use common::{PATIENCE, wait_consumers};

/// Polls `path` until its status is `status`; returns the body.
fn wait_status(stack: &mut Stack, addr: SocketAddr, path: &str, status: u16) -> String {
    let mut body = String::new();
    stack.wait_until(
        &format!("{path} on {addr} to answer {status}"),
        PATIENCE,
        |_| match get(addr, path) {
            Some((s, b)) if s == status => {
                body = b;
                true
            }
            _ => false,
        },
    );
    body
}

#[test]
fn every_stage_is_alive_at_once_and_ready_once_connected_and_consuming() {
    let mut stack = Stack::new();
    // Postgres behind a cut proxy: the verifier's connect waits there, so
    // its readiness can be seen before and after.
    let gate = TcpProxy::start(service_addr(&database_url(), 5432));
    gate.cut();
    let held_url = format!("postgres://postgres@{}/postgres", gate.addr);
    let verifier = free_addr();
    stack.spawn(
        "verifier",
        "verifier",
        &[
            ("METRICS_ADDR", &verifier.to_string()),
            ("DATABASE_URL", &held_url),
        ],
    );
    let body = wait_status(&mut stack, verifier, "/readyz", 503);
    assert_eq!(body.trim(), "starting", "not ready while connecting");
    assert_eq!(
        get(verifier, "/healthz"),
        Some((200, "ok\n".into())),
        "alive while connecting"
    );
    gate.heal();
    assert_eq!(wait_status(&mut stack, verifier, "/readyz", 200), "ok\n");

    let executor = free_addr();
    let aggregator = free_addr();
    stack.spawn(
        "executor",
        "executor",
        &[
            ("METRICS_ADDR", &executor.to_string()),
            ("CONCURRENCY", "1"),
        ],
    );
    stack.spawn(
        "aggregator",
        "aggregator",
        &[("METRICS_ADDR", &aggregator.to_string())],
    );
    for addr in [executor, aggregator] {
        wait_status(&mut stack, addr, "/readyz", 200);
        assert_eq!(get(addr, "/healthz"), Some((200, "ok\n".into())));
    }
    wait_consumers(&mut stack, Queue::Work, 1);
    wait_consumers(&mut stack, Queue::Results(0), 1);

    let ids = stack.submit("--runs 2000 --chunk-size 1000 --workload sum");
    let verdicts = stack.wait_for_verdicts(&ids, PATIENCE);
    assert!(verdicts[0].success, "{verdicts:?}");
    for (stage, addr) in [
        ("executor", executor),
        ("aggregator", aggregator),
        ("verifier", verifier),
    ] {
        let (status, metrics) = get(addr, "/metrics").expect("/metrics answers");
        assert_eq!(status, 200);
        assert!(
            metrics.contains(&format!("batchline_events_total{{stage=\"{stage}\"")),
            "{stage}'s counters on /metrics: {metrics}"
        );
        assert_eq!(get(addr, "/nope").map(|(s, _)| s), Some(404));
    }
}

#[test]
fn the_help_names_the_served_paths() {
    let out = run_cli(&["executor", "--help"], &[], Duration::from_secs(30));
    assert!(out.success(), "{}", out.stderr);
    let line = out
        .stdout
        .lines()
        .skip_while(|l| !l.contains("--metrics-addr"))
        .take(3)
        .collect::<String>();
    for path in ["/metrics", "/healthz", "/readyz"] {
        assert!(
            line.contains(path),
            "--metrics-addr help names {path}: {line}"
        );
    }
}
